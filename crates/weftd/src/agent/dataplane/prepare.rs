//! Setting the dataplane up before the lease: the underlay's facts, what
//! this node publishes (VTEP MACs, the WireGuard key), the rule manager.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use weft_core::Family;
use weft_core::backend_data::VxlanData;
use weft_core::lease::LeaseAttrs;
use weft_core::mac::Mac;
use weft_core::netconf::{BackendConfig, NetConfig};
use weft_core::offload_policy;
use weft_core::plan::{self, LocalIdentity, Underlay};
use weft_dataplane::drvinfo;
use weft_dataplane::external::ExternalInterface;
use weft_dataplane::netlink::Netlink;
use weft_dataplane::reconcile::Reconciler;
use weft_dataplane::rules::{Rules, RulesBackend};

use super::super::ipsec::IpsecState;
use super::super::status::StatusHandle;
use super::super::wireguard::WireguardState;
use super::Dataplane;
use crate::flags::Flags;

async fn underlay_of(nl: &Netlink, ext: &ExternalInterface) -> Result<Underlay> {
    let addrs = nl.addresses(ext.index).await?;
    let link = nl
        .link_by_index(ext.index)
        .await?
        .with_context(|| format!("the external interface {} disappeared", ext.name))?;
    Ok(Underlay {
        index: ext.index,
        name: link.name,
        mtu: link.mtu,
        addr_v4: ext.iface_addr,
        addr_v6: ext.iface_addr_v6,
        connected: addrs.iter().map(|a| a.prefix.trunc()).collect(),
        driver: driver_of(&ext.name),
    })
}

/// The external interface's driver, for the TX checksum offload choice; a
/// failure only costs that choice its driver rule, so it is a warning.
fn driver_of(name: &str) -> Option<String> {
    drvinfo::driver(name).unwrap_or_else(|e| {
        tracing::warn!("{e}; the vxlan TX checksum offload choice ignores the driver");
        None
    })
}

/// `uname -r`; empty if unreadable, which the offload choice treats as a
/// kernel that may lack the fix.
fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The VTEP MAC of a vxlan device: the one the device already has (a
/// restart keeps it, so peers' entries stay valid), else the one our lease
/// published last time (a reboot removed the device; flannel #1795), else
/// one derived from our public IP and the device name (stable too).
async fn vtep_mac(
    nl: &Netlink,
    device: &str,
    public: IpAddr,
    published: Option<&weft_core::lease::RawJson>,
) -> Result<Mac> {
    if let Some(link) = nl.link_by_name(device).await?
        && let Some(mac) = link.mac
        && link.vxlan().is_some()
        && mac.is_valid_unicast()
    {
        return Ok(mac);
    }
    if let Ok(data) = VxlanData::decode(published) {
        return Ok(data.vtep_mac);
    }
    Ok(Mac::derived(format!("{public}/{device}").as_bytes()))
}

impl Dataplane<Netlink> {
    /// Sets the dataplane up and says what this node publishes (public IPs,
    /// backend type and data).
    pub async fn prepare(
        flags: &Flags,
        cfg: &NetConfig,
        ext: &ExternalInterface,
        previous: Option<&LeaseAttrs>,
        status: StatusHandle,
    ) -> Result<(Dataplane, LeaseAttrs)> {
        let nl = Netlink::connect().context("cannot open netlink")?;
        let underlay = underlay_of(&nl, ext).await?;
        let kernel_release = kernel_release();
        let mut attrs = LeaseAttrs {
            public_ip: ext.ext_addr,
            public_ipv6: ext.ext_addr_v6,
            backend_type: cfg.backend.type_name().to_owned(),
            ..Default::default()
        };
        let mut local = LocalIdentity::default();
        let mut wireguard = None;
        let mut ipsec = None;
        match &cfg.backend {
            BackendConfig::Vxlan(opts) => {
                // The planner makes the same choice on every pass, from the
                // same facts; said once here so the log shows why.
                let offload = offload_policy::decide(
                    &kernel_release,
                    underlay.driver.as_deref(),
                    opts.tx_checksum_offload,
                );
                tracing::info!(interface = %underlay.name, "vxlan TX checksum offload {offload}");
                for family in Family::ALL {
                    let (Some(_), Some(public)) = (cfg.pool(family), public_of(ext, family)) else {
                        continue;
                    };
                    let device = plan::vxlan_device_name(family, opts.vni);
                    let published = previous.and_then(|p| p.backend_data_for(family));
                    let mac = vtep_mac(&nl, &device, public, published).await?;
                    let data = VxlanData {
                        vni: opts.vni,
                        vtep_mac: mac,
                    }
                    .encode();
                    match family {
                        Family::V4 => {
                            local.vtep_mac_v4 = Some(mac);
                            attrs.backend_data = Some(data);
                        }
                        Family::V6 => {
                            local.vtep_mac_v6 = Some(mac);
                            attrs.backend_v6_data = Some(data);
                        }
                    }
                }
            }
            BackendConfig::HostGw => {
                if ext.ext_addr.is_some() && ext.ext_addr != ext.iface_addr
                    || ext.ext_addr_v6.is_some() && ext.ext_addr_v6 != ext.iface_addr_v6
                {
                    bail!(
                        "your PublicIP differs from interface IP, meaning that probably you're on a NAT, which is not supported by host-gw backend"
                    );
                }
            }
            BackendConfig::Wireguard(opts) => {
                let policy = flags
                    .wireguard_path
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!(e))?;
                let mut state = WireguardState::prepare(cfg, opts, policy, &mut attrs)?;
                state.rotation.period = flags.wireguard_key_rotation;
                status.set_wireguard(None, state.views());
                wireguard = Some(state);
            }
            BackendConfig::Ipip(_) | BackendConfig::None => {}
            BackendConfig::Ipsec(opts) => {
                if !flags.ip_masq {
                    tracing::warn!(
                        "ipsec without --ip-masq: the CNI bridge plugin then masquerades pod traffic to other nodes behind this node's address, which no ipsec policy (pod subnet to pod subnet) matches, so it leaves UNENCRYPTED; run with --ip-masq, as kube-flannel.yml does"
                    );
                }
                let state = IpsecState::prepare(cfg, opts, ext.ext_addr)?;
                status.set_ipsec(state.views());
                ipsec = Some(state);
            }
        }
        let rules = (flags.ip_masq || flags.iptables_forward_rules).then(|| {
            Rules::new(if cfg.enable_nftables {
                RulesBackend::Nftables
            } else {
                RulesBackend::Iptables
            })
        });
        Ok((
            Dataplane {
                reconciler: Reconciler::new(nl),
                cfg: cfg.clone(),
                underlay,
                kernel_release,
                local,
                blackhole: flags.ip_blackhole_route,
                rules,
                rules_policy: super::keepers::RulesPolicy {
                    cfg: std::sync::Arc::new(cfg.clone()),
                    masquerade: flags.ip_masq,
                    forward: flags.iptables_forward_rules,
                    fully_random: !flags.ip_masq_fully_random_disable,
                },
                rules_resync: Duration::from_secs(flags.iptables_resync_secs.max(1)),
                subnet_file: flags.subnet_file.clone(),
                cni_conf_file: flags.cni_conf_file.clone(),
                ip_masq: flags.ip_masq,
                status,
                written: None,
                wireguard,
                ipsec,
                applied: None,
                follows_interface: super::Follows {
                    v4: flags.public_ip.is_none(),
                    v6: flags.public_ipv6.is_none(),
                },
                renumbered: None,
                peer_log: Default::default(),
                trimmer: Default::default(),
            },
            attrs,
        ))
    }
}

fn public_of(ext: &ExternalInterface, family: Family) -> Option<IpAddr> {
    match family {
        Family::V4 => ext.ext_addr.map(IpAddr::V4),
        Family::V6 => ext.ext_addr_v6.map(IpAddr::V6),
    }
}
