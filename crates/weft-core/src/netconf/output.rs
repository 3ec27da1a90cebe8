//! The effective configuration, written back as net-conf.json.
//!
//! The shape is flannel's own flat one (`Network`, `SubnetLen`, …,
//! `Backend`) rather than weft's nested types, so what `weft config
//! validate` prints is a config file an operator can keep, diff against the
//! original, or hand to flannel. Each enabled family's four fields are
//! written; a disabled family's are left out. Unknown keys are not written:
//! they had no effect.

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::NetConfig;

impl Serialize for NetConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(p) = &self.ipv4 {
            m.serialize_entry("Network", &p.network.to_string())?;
            m.serialize_entry("SubnetLen", &p.subnet_len)?;
            m.serialize_entry("SubnetMin", &p.subnet_min.to_string())?;
            m.serialize_entry("SubnetMax", &p.subnet_max.to_string())?;
        }
        if let Some(p) = &self.ipv6 {
            m.serialize_entry("IPv6Network", &p.network.to_string())?;
            m.serialize_entry("IPv6SubnetLen", &p.subnet_len)?;
            m.serialize_entry("IPv6SubnetMin", &p.subnet_min.to_string())?;
            m.serialize_entry("IPv6SubnetMax", &p.subnet_max.to_string())?;
        }
        m.serialize_entry("EnableIPv4", &self.enable_ipv4)?;
        m.serialize_entry("EnableIPv6", &self.enable_ipv6)?;
        m.serialize_entry("EnableNFTables", &self.enable_nftables)?;
        m.serialize_entry("Backend", &self.backend)?;
        m.end()
    }
}
