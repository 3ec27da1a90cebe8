//! Device offload features through the ethtool generic netlink family
//! (`ETHTOOL_MSG_FEATURES_GET`/`_SET`), without the `ethtool` binary.
//!
//! Why weft needs it: with TX checksum offload on, some kernels and NIC
//! drivers corrupt checksums of packets leaving a vxlan device (flannel
//! #1279, seen with kube-proxy's NodePort SNAT; vmxnet3); flannel only
//! documents the workaround `ethtool -K flannel.1 tx-checksum-ip-generic
//! off`. weft applies it on such nodes and keeps offload on elsewhere
//! (`weft_core::offload_policy`), as the planner decides.
//!
//! Why hand-built messages: the `ethtool` crate (0.3) only reads features,
//! and the genetlink crate would pull a second netlink-proto. The family is
//! small: a header naming the device, and bitsets of features by name.

use std::sync::Arc;

use netlink_packet_core::{
    DecodeError, NLA_F_NESTED, NLA_TYPE_MASK, NetlinkDeserializable, NetlinkHeader,
    NetlinkSerializable, NlasIterator,
};
use netlink_proto::ConnectionHandle;
use netlink_sys::protocols::NETLINK_GENERIC;
use tokio::sync::OnceCell;

use super::{Netlink, NetlinkError, conn};

/// The feature flannel #1279 is about.
pub const TX_CHECKSUM_FEATURE: &str = "tx-checksum-ip-generic";

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;

const ETHTOOL_GENL_NAME: &str = "ethtool";
const ETHTOOL_GENL_VERSION: u8 = 1;
const ETHTOOL_MSG_FEATURES_GET: u8 = 11;
const ETHTOOL_MSG_FEATURES_SET: u8 = 12;
const ETHTOOL_A_HEADER_DEV_NAME: u16 = 2;
const ETHTOOL_A_HEADER_FLAGS: u16 = 3;
const ETHTOOL_FLAG_OMIT_REPLY: u32 = 1 << 1;
const ETHTOOL_A_FEATURES_HEADER: u16 = 1;
const ETHTOOL_A_FEATURES_WANTED: u16 = 3;
const ETHTOOL_A_FEATURES_ACTIVE: u16 = 4;
const ETHTOOL_A_BITSET_NOMASK: u16 = 1;
const ETHTOOL_A_BITSET_BITS: u16 = 3;
const ETHTOOL_A_BITSET_BITS_BIT: u16 = 1;
const ETHTOOL_A_BITSET_BIT_NAME: u16 = 2;
const ETHTOOL_A_BITSET_BIT_VALUE: u16 = 3;

/// A generic netlink message with its attributes kept as raw bytes.
#[derive(Debug, Clone)]
pub(crate) struct GenlRaw {
    family: u16,
    cmd: u8,
    version: u8,
    attrs: Vec<u8>,
}

impl NetlinkSerializable for GenlRaw {
    fn message_type(&self) -> u16 {
        self.family
    }

    fn buffer_len(&self) -> usize {
        4 + self.attrs.len()
    }

    fn serialize(&self, buffer: &mut [u8]) {
        buffer[0] = self.cmd;
        buffer[1] = self.version;
        buffer[2] = 0;
        buffer[3] = 0;
        buffer[4..].copy_from_slice(&self.attrs);
    }
}

impl NetlinkDeserializable for GenlRaw {
    type Error = DecodeError;

    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Self, DecodeError> {
        if payload.len() < 4 {
            return Err(DecodeError::buffer_too_small(payload.len(), 4));
        }
        Ok(GenlRaw {
            family: header.message_type,
            cmd: payload[0],
            version: payload[1],
            attrs: payload[4..].to_vec(),
        })
    }
}

/// Appends one attribute (header, value, padding to 4 bytes).
fn put(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(buf.len() + (len.next_multiple_of(4) - len), 0);
}

/// Appends a nested attribute; the ethtool family validates strictly and
/// requires NLA_F_NESTED.
fn put_nested(buf: &mut Vec<u8>, kind: u16, inner: &[u8]) {
    put(buf, kind | NLA_F_NESTED, inner);
}

fn strz(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// One feature of a bitset's bit list (`ETHTOOL_A_BITSET_BITS_BIT`): its
/// name, and the value flag when `on`.
fn bitset_bit(name: &str, on: bool) -> Vec<u8> {
    let mut bit = Vec::new();
    put(&mut bit, ETHTOOL_A_BITSET_BIT_NAME, &strz(name));
    if on {
        put(&mut bit, ETHTOOL_A_BITSET_BIT_VALUE, &[]);
    }
    let mut wrapped = Vec::new();
    put_nested(&mut wrapped, ETHTOOL_A_BITSET_BITS_BIT, &bit);
    wrapped
}

/// The attributes nested directly in `attrs` with type `kind`.
fn children(attrs: &[u8], kind: u16) -> impl Iterator<Item = &[u8]> {
    NlasIterator::new(attrs)
        .filter_map(Result::ok)
        .filter(move |nla| nla.kind() & NLA_TYPE_MASK == kind)
        .map(|nla| nla.into_inner())
        .filter_map(|buf| {
            let len = u16::from_ne_bytes([*buf.first()?, *buf.get(1)?]) as usize;
            buf.get(4..len)
        })
}

/// Whether `feature` is set in a verbose bitset: without a mask
/// (NOMASK) the listed bits are the set ones; with a mask each listed bit
/// says its value with the VALUE flag.
fn bitset_has(bitset: &[u8], feature: &str) -> Option<bool> {
    let nomask = children(bitset, ETHTOOL_A_BITSET_NOMASK).next().is_some();
    let wanted = strz(feature);
    for bits in children(bitset, ETHTOOL_A_BITSET_BITS) {
        for bit in children(bits, ETHTOOL_A_BITSET_BITS_BIT) {
            let named = children(bit, ETHTOOL_A_BITSET_BIT_NAME).any(|n| n == wanted.as_slice());
            if named {
                return Some(nomask || children(bit, ETHTOOL_A_BITSET_BIT_VALUE).next().is_some());
            }
        }
    }
    // Not listed: clear in a NOMASK bitset, unknown otherwise.
    nomask.then_some(false)
}

/// The ethtool side of a [`Netlink`]: a generic netlink connection opened in
/// the same namespace, and the family id, resolved once.
#[derive(Clone, Debug)]
pub(crate) struct EthtoolClient {
    handle: ConnectionHandle<GenlRaw>,
    family: Arc<OnceCell<u16>>,
}

impl EthtoolClient {
    pub(crate) fn open(runtime: &tokio::runtime::Handle) -> Result<EthtoolClient, NetlinkError> {
        Ok(EthtoolClient {
            handle: conn::open(NETLINK_GENERIC, runtime)?,
            family: Arc::new(OnceCell::new()),
        })
    }

    async fn family(&self) -> Result<u16, NetlinkError> {
        self.family
            .get_or_try_init(|| self.resolve_family())
            .await
            .copied()
    }

    async fn resolve_family(&self) -> Result<u16, NetlinkError> {
        let op = || "looking up the ethtool generic netlink family".to_string();
        let mut attrs = Vec::new();
        put(&mut attrs, CTRL_ATTR_FAMILY_NAME, &strz(ETHTOOL_GENL_NAME));
        let request = GenlRaw {
            family: GENL_ID_CTRL,
            cmd: CTRL_CMD_GETFAMILY,
            version: 1,
            attrs,
        };
        let reply = conn::get(&self.handle, request, 0, op)
            .await
            .map_err(|e| match e {
                NetlinkError::NotFound { op, message } => NetlinkError::NotSupported {
                    op,
                    message: format!(
                        "{message}; the kernel lacks ethtool netlink (CONFIG_ETHTOOL_NETLINK)"
                    ),
                },
                other => other,
            })?;
        children(&reply.attrs, CTRL_ATTR_FAMILY_ID)
            .find_map(|v| Some(u16::from_ne_bytes([*v.first()?, *v.get(1)?])))
            .ok_or_else(|| NetlinkError::Protocol {
                op: op(),
                detail: "no family id in the answer".into(),
            })
    }

    fn header(device: &str, flags: u32) -> Vec<u8> {
        let mut header = Vec::new();
        put(&mut header, ETHTOOL_A_HEADER_DEV_NAME, &strz(device));
        if flags != 0 {
            put(&mut header, ETHTOOL_A_HEADER_FLAGS, &flags.to_ne_bytes());
        }
        header
    }

    async fn feature(&self, device: &str, feature: &str) -> Result<Option<bool>, NetlinkError> {
        let op = || format!("reading ethtool feature {feature} of {device}");
        let mut attrs = Vec::new();
        put_nested(
            &mut attrs,
            ETHTOOL_A_FEATURES_HEADER,
            &Self::header(device, 0),
        );
        let request = GenlRaw {
            family: self.family().await?,
            cmd: ETHTOOL_MSG_FEATURES_GET,
            version: ETHTOOL_GENL_VERSION,
            attrs,
        };
        let reply = conn::get(&self.handle, request, 0, op).await?;
        Ok(children(&reply.attrs, ETHTOOL_A_FEATURES_ACTIVE)
            .next()
            .and_then(|active| bitset_has(active, feature)))
    }

    async fn set_feature(&self, device: &str, feature: &str, on: bool) -> Result<(), NetlinkError> {
        let state = if on { "on" } else { "off" };
        let op = || format!("setting ethtool feature {feature} {state} on {device}");
        let mut wanted = Vec::new();
        put_nested(&mut wanted, ETHTOOL_A_BITSET_BITS, &bitset_bit(feature, on));
        let mut attrs = Vec::new();
        put_nested(
            &mut attrs,
            ETHTOOL_A_FEATURES_HEADER,
            &Self::header(device, ETHTOOL_FLAG_OMIT_REPLY),
        );
        put_nested(&mut attrs, ETHTOOL_A_FEATURES_WANTED, &wanted);
        let request = GenlRaw {
            family: self.family().await?,
            cmd: ETHTOOL_MSG_FEATURES_SET,
            version: ETHTOOL_GENL_VERSION,
            attrs,
        };
        conn::ack(&self.handle, request, 0, op).await?;
        // The kernel accepts a wish it cannot grant (a fixed feature) and
        // only reports it in the reply we omitted: check the result.
        match self.feature(device, feature).await? {
            Some(active) if active == on => Ok(()),
            _ => Err(NetlinkError::NotSupported {
                op: op(),
                message: format!("{device} does not let {feature} change"),
            }),
        }
    }
}

impl Netlink {
    /// Turns a device's TX checksum offload (`tx-checksum-ip-generic`) on or
    /// off, as `ethtool -K <name> tx-checksum-ip-generic on|off` does, to
    /// what the planner chose for the vxlan device (flannel #1279).
    pub async fn set_tx_checksum(&self, name: &str, on: bool) -> Result<(), NetlinkError> {
        self.ethtool
            .set_feature(name, TX_CHECKSUM_FEATURE, on)
            .await
    }

    /// Whether a device's TX checksum offload is active (`ethtool -k`);
    /// false for a device that has no such feature.
    pub async fn tx_checksum(&self, name: &str) -> Result<bool, NetlinkError> {
        Ok(self
            .ethtool
            .feature(name, TX_CHECKSUM_FEATURE)
            .await?
            .unwrap_or(false))
    }

    /// Whether the ethtool feature named `feature` (as `ethtool -k` names
    /// it) is active on device `name`; `None` if the kernel did not say.
    pub async fn ethtool_feature(
        &self,
        name: &str,
        feature: &str,
    ) -> Result<Option<bool>, NetlinkError> {
        self.ethtool.feature(name, feature).await
    }

    /// Sets the ethtool feature named `feature` on device `name`, and checks
    /// that the kernel applied it (`NotSupported` for a fixed feature).
    pub async fn set_ethtool_feature(
        &self,
        name: &str,
        feature: &str,
        on: bool,
    ) -> Result<(), NetlinkError> {
        self.ethtool.set_feature(name, feature, on).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nomask_bitset_lists_the_set_bits() {
        let mut bits = bitset_bit("tx-scatter-gather", false);
        bits.extend(bitset_bit(TX_CHECKSUM_FEATURE, false));
        let mut set = Vec::new();
        put(&mut set, ETHTOOL_A_BITSET_NOMASK, &[]);
        put_nested(&mut set, ETHTOOL_A_BITSET_BITS, &bits);
        assert_eq!(bitset_has(&set, TX_CHECKSUM_FEATURE), Some(true));
        assert_eq!(bitset_has(&set, "rx-gro-hw"), Some(false));
    }

    #[test]
    fn masked_bitset_says_values_with_the_flag() {
        let mut bits = bitset_bit("tx-scatter-gather", true);
        bits.extend(bitset_bit(TX_CHECKSUM_FEATURE, false));
        let mut set = Vec::new();
        put_nested(&mut set, ETHTOOL_A_BITSET_BITS, &bits);
        assert_eq!(bitset_has(&set, TX_CHECKSUM_FEATURE), Some(false));
        assert_eq!(bitset_has(&set, "tx-scatter-gather"), Some(true));
        assert_eq!(bitset_has(&set, "rx-gro-hw"), None);
    }

    #[test]
    fn attributes_are_padded_to_four_bytes() {
        let mut buf = Vec::new();
        put(&mut buf, 2, b"abc\0\0");
        assert_eq!(buf.len(), 12);
        assert_eq!(u16::from_ne_bytes([buf[0], buf[1]]), 9);
    }
}
