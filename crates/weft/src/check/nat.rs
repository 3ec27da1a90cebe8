//! A node behind NAT: the address it advertises (`--public-ip`, K3s's
//! `--flannel-external-ip`) is not on its interface. Which backends can
//! cross a 1:1 NAT, and what each costs (docs/multicloud.md).

use std::net::Ipv4Addr;

use weft_core::netconf::{BackendConfig, NetConfig};

use super::Finding;

/// Findings for a node that advertises `public` while its interface holds
/// `iface_addr`; nothing when the two are the same (no NAT).
pub fn findings(
    cfg: &NetConfig,
    public: Option<Ipv4Addr>,
    iface_addr: Option<Ipv4Addr>,
) -> Vec<Finding> {
    let (Some(public), Some(local)) = (public, iface_addr) else {
        return Vec::new();
    };
    if public == local {
        return Vec::new();
    }
    let seen = format!("advertised {public}, interface {local}: behind NAT");
    let finding = match &cfg.backend {
        BackendConfig::HostGw => Finding::fail(
            "NAT",
            format!(
                "{seen}; host-gw routes pods via the peers' advertised addresses, which must be on one L2 segment"
            ),
            "weftd refuses this (\"your PublicIP differs from interface IP\"): use wireguard (encrypted) or vxlan between networks",
        ),
        BackendConfig::Vxlan(_) => Finding::warn(
            "NAT",
            format!(
                "{seen}; vxlan crosses a 1:1 NAT (UDP port forwarded) but carries pod traffic in clear between the networks"
            ),
            "use wireguard for nodes in different networks or clouds",
        ),
        BackendConfig::Ipip(_) => Finding::warn(
            "NAT",
            format!(
                "{seen}; ipip (IP protocol 4) crosses only a NAT that forwards every protocol, which most cloud NATs do not"
            ),
            "use wireguard for nodes in different networks or clouds",
        ),
        BackendConfig::Ipsec(o) if !o.udp_encap => Finding::warn(
            "NAT",
            format!("{seen}; ipsec without UDPEncap sends bare ESP, which most NATs drop"),
            "set \"UDPEncap\": true in the ipsec backend, or use wireguard",
        ),
        BackendConfig::Ipsec(_) => Finding::warn(
            "NAT",
            format!(
                "{seen}; weft's ipsec tunnels are not yet known to come up across NAT, UDPEncap or not (docs/multicloud.md)"
            ),
            "use wireguard for nodes in different networks or clouds",
        ),
        _ => Finding::ok(
            "NAT",
            format!(
                "{seen}; {} crosses a 1:1 NAT with its UDP port forwarded",
                cfg.backend.config_type()
            ),
        ),
    };
    vec![finding]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Level;

    fn level(backend: &str, public: &str, local: &str) -> Option<Level> {
        let cfg = weft_core::netconf::parse(&format!(
            r#"{{"Network":"10.244.0.0/16","Backend":{backend}}}"#
        ))
        .unwrap_or_else(|e| unreachable!("{e}"));
        findings(&cfg, public.parse().ok(), local.parse().ok())
            .first()
            .map(|f| f.level)
    }

    #[test]
    fn each_backend_is_judged_for_nat() {
        let (public, private) = ("192.0.2.1", "172.16.1.1");
        assert_eq!(
            level(r#"{"Type":"host-gw"}"#, public, private),
            Some(Level::Fail)
        );
        assert_eq!(
            level(r#"{"Type":"vxlan"}"#, public, private),
            Some(Level::Warn)
        );
        assert_eq!(
            level(r#"{"Type":"ipip"}"#, public, private),
            Some(Level::Warn)
        );
        assert_eq!(
            level(r#"{"Type":"wireguard"}"#, public, private),
            Some(Level::Ok)
        );
        // No NAT, or nothing advertised: nothing to say.
        assert_eq!(level(r#"{"Type":"host-gw"}"#, private, private), None);
        assert_eq!(level(r#"{"Type":"host-gw"}"#, "", private), None);
    }
}
