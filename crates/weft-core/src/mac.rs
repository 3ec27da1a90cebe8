//! Ethernet MAC addresses as flannel publishes them (`"VtepMAC":"2e:1d:8b:97:dc:f0"`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 48-bit MAC address, printed lower-case and colon-separated as Go's
/// `net.HardwareAddr.String()` does, so leases stay byte-identical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

/// Why a MAC string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex octets like 0e:2a:01:02:03:04")]
pub struct MacParseError(pub String);

impl Mac {
    /// A locally administered unicast address made from random bytes: the
    /// same rule flannel applies (`(b0 & 0xfe) | 0x02`), so a generated VTEP
    /// MAC never collides with a vendor-assigned one and is never multicast.
    pub fn local_unicast(mut random: [u8; 6]) -> Mac {
        random[0] = (random[0] & 0xfe) | 0x02;
        Mac(random)
    }

    /// A locally administered unicast address derived from `seed` (the
    /// node's public IP and the device): the same node gets the same VTEP
    /// MAC after a reboot, with nothing stored, so peers' neighbour and FDB
    /// entries stay valid (flannel's random MACs broke them, #1795).
    pub fn derived(seed: &[u8]) -> Mac {
        // FNV-1a, 64-bit: stable across versions and platforms, which is all
        // that matters here (not secrecy).
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in seed {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let b = hash.to_be_bytes();
        Mac::local_unicast([b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// True for an address a peer may legitimately advertise as its VTEP:
    /// not all-zero, not broadcast, not multicast.
    pub fn is_valid_unicast(&self) -> bool {
        self.0 != [0; 6] && self.0[0] & 0x01 == 0
    }

    pub fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

impl FromStr for Mac {
    type Err = MacParseError;

    /// Accepts `:` or `-` separators and either case, as Go's
    /// `net.ParseMAC` does for 48-bit addresses.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.chars().take(64).collect());
        // `xx:xx:xx:xx:xx:xx`, one separator throughout. Byte by byte: every
        // peer's MAC is parsed on every reconcile pass.
        let bytes = s.as_bytes();
        if bytes.len() != 17 {
            return Err(err());
        }
        let sep = bytes[2];
        if sep != b':' && sep != b'-' {
            return Err(err());
        }
        let mut out = [0u8; 6];
        for (i, slot) in out.iter_mut().enumerate() {
            let at = i * 3;
            if i > 0 && bytes[at - 1] != sep {
                return Err(err());
            }
            // Exactly two hex digits: no sign, which Go's net.ParseMAC (and
            // so flannel) refuses.
            let digit = |b: u8| char::from(b).to_digit(16).ok_or_else(err);
            *slot =
                u8::try_from(digit(bytes[at])? << 4 | digit(bytes[at + 1])?).map_err(|_| err())?;
        }
        Ok(Mac(out))
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_flannel_form() {
        let m: Mac = "2e:1d:8b:97:dc:f0".parse().unwrap();
        assert_eq!(m.to_string(), "2e:1d:8b:97:dc:f0");
        let upper: Mac = "2E-1D-8B-97-DC-F0".parse().unwrap();
        assert_eq!(upper, m);
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "",
            "2e:1d:8b:97:dc",
            "2e:1d:8b:97:dc:f0:00",
            "zz:1d:8b:97:dc:f0",
            "2e1d8b97dcf0",
            "2e:1d:8b:97:dc:f",
            "+2:42:c6:33:64:01",
            "-2-42-c6-33-64-01",
            "2e:+d:8b:97:dc:f0",
            "2e:1d:8b:97:dc:+0",
            "2e:1d-8b:97:dc:f0",
            "2e:1d:8b:97:dc:f\u{e9}",
            "2e 1d 8b 97 dc f0",
            " 2:42:c6:33:64:01",
            "2e:1d:8b:97:dc:é",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn derived_macs_are_stable_distinct_and_local() {
        let a = Mac::derived(b"192.0.2.1/flannel.1");
        assert_eq!(a, Mac::derived(b"192.0.2.1/flannel.1"));
        assert_ne!(a, Mac::derived(b"192.0.2.2/flannel.1"));
        assert_eq!(a.0[0] & 0x03, 0x02, "locally administered unicast");
    }

    #[test]
    fn generated_macs_are_local_unicast() {
        let m = Mac::local_unicast([0xff; 6]);
        assert_eq!(m.0[0], 0xfe);
        assert!(m.is_valid_unicast());
        assert!(!Mac([0xff; 6]).is_valid_unicast());
        assert!(!Mac([0; 6]).is_valid_unicast());
    }
}
