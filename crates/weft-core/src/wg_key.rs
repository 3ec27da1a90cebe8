//! WireGuard keys in the base64 form flannel publishes (`"PublicKey":"…="`)
//! and `wg` prints.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 32-byte Curve25519 key (public key or pre-shared key).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WgKey(pub [u8; 32]);

/// Why a key string was refused. The message never repeats the input: the
/// string may be a secret (a PSK).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a WireGuard key: expected 44 characters of base64 encoding 32 bytes (as `wg genkey` prints)"
)]
pub struct WgKeyError;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn sextet(c: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u32)
}

impl WgKey {
    /// Standard padded base64, 44 characters.
    pub fn to_base64(&self) -> String {
        let mut out = String::with_capacity(44);
        for chunk in self.0.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// Parses exactly the form `to_base64` writes (44 characters, one `=`).
    pub fn from_base64(s: &str) -> Result<WgKey, WgKeyError> {
        let bytes = s.as_bytes();
        if bytes.len() != 44 || bytes[43] != b'=' {
            return Err(WgKeyError);
        }
        let mut out = [0u8; 32];
        let mut acc: u32 = 0;
        let mut bits = 0;
        let mut pos = 0;
        for &c in &bytes[..43] {
            acc = (acc << 6) | sextet(c).ok_or(WgKeyError)?;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                if pos < 32 {
                    out[pos] = (acc >> bits) as u8;
                    pos += 1;
                }
                acc &= (1 << bits) - 1;
            }
        }
        // 43 sextets carry 258 bits: the 2 left over must be zero, or two
        // different strings would decode to the same key.
        if pos != 32 || acc != 0 {
            return Err(WgKeyError);
        }
        Ok(WgKey(out))
    }
}

impl fmt::Display for WgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for WgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WgKey({})", self.to_base64())
    }
}

impl FromStr for WgKey {
    type Err = WgKeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WgKey::from_base64(s)
    }
}

impl Serialize for WgKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for WgKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        WgKey::from_base64(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_known_encoding() {
        // `printf '\0%.0s' $(seq 32) | base64` and a patterned key.
        assert_eq!(
            WgKey([0; 32]).to_base64(),
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        );
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = i as u8;
        }
        let s = WgKey(k).to_base64();
        assert_eq!(s, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
        assert_eq!(WgKey::from_base64(&s), Ok(WgKey(k)));
    }

    #[test]
    fn refuses_wrong_forms() {
        for bad in [
            "",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8==",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh*=",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=",
        ] {
            assert_eq!(WgKey::from_base64(bad), Err(WgKeyError), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn round_trips(bytes in proptest::array::uniform32(0u8..)) {
            let k = WgKey(bytes);
            proptest::prop_assert_eq!(WgKey::from_base64(&k.to_base64()), Ok(k));
        }
    }
}
