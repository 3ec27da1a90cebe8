//! net-conf.json: the cluster-wide network configuration.
//!
//! Parsed the way flannel parses it (Go `encoding/json`: keys matched
//! case-insensitively, backend options too), with flannel's defaults and
//! computed values, and validated with flannel's exact messages. Unlike
//! flannel, validation applies whichever store the config came from.

mod backend;
mod backend_parse;
mod error;
pub(crate) mod json_ci;
mod output;
mod parse;
mod pool;

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::prefix::{self, Family};

pub use backend::{
    BackendConfig, DEFAULT_ESP_PROPOSAL, IpipOptions, IpsecOptions, IpsecPsk, REDACTED,
    VXLAN_DEFAULT_PORT, VxlanOptions, WireguardMode, WireguardOptions, WireguardPsk,
};
pub use error::NetConfError;
pub use parse::parse;

/// A validated network configuration with every default filled in.
///
/// It serializes (see `output.rs`) in flannel's own flat net-conf.json
/// shape, so the effective configuration `weft config validate` prints can
/// be fed back to weft or flannel (pre-shared keys aside, which read
/// `"<redacted>"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// Give pods IPv4 addresses. flannel's default is true, so an
    /// IPv6-only cluster must say `"EnableIPv4": false`.
    pub enable_ipv4: bool,
    /// Give pods IPv6 addresses (default false).
    pub enable_ipv6: bool,
    /// Use nftables rather than iptables for masquerade/forward rules.
    pub enable_nftables: bool,
    /// The IPv4 pool; present exactly when `enable_ipv4`.
    pub ipv4: Option<SubnetPool>,
    /// The IPv6 pool; present exactly when `enable_ipv6`.
    pub ipv6: Option<SubnetPool>,
    /// How pod traffic crosses between nodes.
    pub backend: BackendConfig,
    /// Keys, as written, that mean nothing to flannel or weft (typos such as
    /// `SubnetLenn`; backend options as `Backend.VNII`): flannel ignores
    /// them silently, weft reports them.
    pub unknown_keys: Vec<String>,
}

impl NetConfig {
    /// The pool of one family, if that family is enabled.
    pub fn pool(&self, family: Family) -> Option<&SubnetPool> {
        match family {
            Family::V4 => self.ipv4.as_ref(),
            Family::V6 => self.ipv6.as_ref(),
        }
    }

    /// The enabled pools, IPv4 first.
    pub fn pools(&self) -> impl Iterator<Item = &SubnetPool> {
        self.ipv4.iter().chain(self.ipv6.iter())
    }
}

/// One family's cluster network and the range node subnets are cut from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SubnetPool {
    #[serde(rename = "Network")]
    pub network: IpNet,
    #[serde(rename = "SubnetLen")]
    pub subnet_len: u8,
    /// Network address of the lowest subnet that may be leased.
    #[serde(rename = "SubnetMin")]
    pub subnet_min: IpAddr,
    /// Network address of the highest subnet that may be leased.
    #[serde(rename = "SubnetMax")]
    pub subnet_max: IpAddr,
}

impl SubnetPool {
    pub fn family(&self) -> Family {
        Family::of_net(self.network)
    }

    /// True when `subnet` is one this pool could hand out: the right length,
    /// aligned, and between SubnetMin and SubnetMax. Flannel uses the same
    /// test to decide whether an old lease is still compatible.
    pub fn holds_subnet(&self, subnet: IpNet) -> bool {
        if Family::of_net(subnet) != self.family() || subnet.prefix_len() != self.subnet_len {
            return false;
        }
        let addr = subnet.addr();
        if !prefix::is_aligned(addr, self.subnet_len) {
            return false;
        }
        let v = prefix::addr_to_u128(addr);
        prefix::addr_to_u128(self.subnet_min) <= v && v <= prefix::addr_to_u128(self.subnet_max)
    }
}
