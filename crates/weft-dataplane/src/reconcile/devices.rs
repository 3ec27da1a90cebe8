//! Devices weft owns: created when missing, kept when compatible (a restart
//! never flaps them), updated in place for MTU, MAC and addresses (flannel
//! leaves an MTU change unapplied, #1775), recreated only when a parameter
//! that cannot change in place differs.

use std::collections::HashMap;

use ipnet::IpNet;
use tracing::{info, warn};
use weft_core::plan::{DeviceSpec, IpipDevice, VxlanDevice};

use super::ApplyReport;
use super::Kernel;
use crate::netlink::{LinkInfo, LinkKind, NetlinkError, Scope, VxlanLinkSpec};

/// True for names weft (and flannel) give their devices; such a device that
/// is no longer desired (VNI or backend changed) is removed.
pub fn is_weft_device_name(name: &str) -> bool {
    let numbered = |prefix: &str| {
        name.strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    name == "flannel.ipip"
        || name == "flannel-wg"
        || name == "flannel-wg-v6"
        || numbered("flannel.")
        || numbered("flannel-v6.")
}

fn vxlan_compatible(link: &LinkInfo, spec: &VxlanDevice) -> bool {
    link.vxlan().is_some_and(|v| {
        v.vni == spec.vni
            && v.port == spec.port
            && v.local == Some(spec.local)
            && v.underlay_index.is_none_or(|i| i == spec.underlay_index)
            && v.gbp == spec.gbp
            && v.learning == spec.learning
    })
}

fn ipip_compatible(link: &LinkInfo, spec: &IpipDevice) -> bool {
    link.ipip()
        .is_some_and(|i| i.local == Some(spec.local) && i.remote.is_none_or(|r| r.is_unspecified()))
}

async fn create<K: Kernel>(nl: &K, spec: &DeviceSpec) -> Result<u32, NetlinkError> {
    match spec {
        DeviceSpec::Vxlan(v) => {
            nl.create_vxlan(&VxlanLinkSpec {
                name: v.name.clone(),
                vni: v.vni,
                port: v.port,
                local: v.local,
                underlay_index: Some(v.underlay_index),
                learning: v.learning,
                gbp: v.gbp,
                mtu: v.mtu,
                mac: Some(v.mac),
            })
            .await
        }
        DeviceSpec::Ipip(i) => nl.create_ipip(&i.name, i.local, i.mtu).await,
        // The WireGuard layer creates these (a kernel link or a TUN with a
        // userspace implementation behind it); a missing one is an error
        // the agent answers by reopening the device.
        DeviceSpec::Wireguard(w) => Err(NetlinkError::NotFound {
            op: format!("looking for WireGuard device {}", w.name),
            message: "it is not open; the WireGuard layer recreates it".to_owned(),
        }),
    }
}

fn wireguard_compatible(link: &LinkInfo) -> bool {
    matches!(link.kind, LinkKind::Wireguard | LinkKind::Tun)
}

/// Makes one device match its spec; returns its index.
/// Whether an existing link can serve as `spec` (otherwise it is
/// recreated: a parameter that cannot change in place differs).
pub fn compatible(link: &LinkInfo, spec: &DeviceSpec) -> bool {
    match spec {
        DeviceSpec::Vxlan(v) => vxlan_compatible(link, v),
        DeviceSpec::Ipip(i) => ipip_compatible(link, i),
        DeviceSpec::Wireguard(_) => wireguard_compatible(link),
    }
}

pub async fn ensure<K: Kernel>(
    nl: &K,
    spec: &DeviceSpec,
    report: &mut ApplyReport,
) -> Result<u32, NetlinkError> {
    let existing = nl.link_by_name(spec.name()).await?;
    let compatible = existing.as_ref().is_some_and(|l| compatible(l, spec));
    let link = match existing {
        Some(link) if compatible => link,
        Some(link) => {
            warn!(device = %link.name, kind = link.kind.name(), "existing device has an incompatible configuration; recreating it");
            nl.delete_link(link.index).await?;
            let index = create(nl, spec).await?;
            report.devices_recreated += 1;
            nl.link_by_index(index).await?.ok_or_else(|| gone(spec))?
        }
        None => {
            let index = create(nl, spec).await?;
            info!(device = spec.name(), "created device");
            report.devices_created += 1;
            nl.link_by_index(index).await?.ok_or_else(|| gone(spec))?
        }
    };
    let mtu = spec.mtu();
    let mac = match spec {
        DeviceSpec::Vxlan(v) => Some(v.mac),
        _ => None,
    };
    if link.mtu != mtu {
        info!(device = %link.name, from = link.mtu, to = mtu, "changing device MTU");
        nl.set_link_mtu(link.index, mtu).await?;
        report.devices_updated += 1;
    }
    if let Some(mac) = mac
        && link.mac != Some(mac)
    {
        info!(device = %link.name, %mac, "setting the VTEP MAC");
        if let Err(e) = nl.set_link_mac(link.index, mac).await {
            // Some kernels refuse a MAC change on a running device.
            warn!(device = %link.name, error = %e, "MAC change refused while up; retrying with the device down");
            nl.set_link_down(link.index).await?;
            nl.set_link_mac(link.index, mac).await?;
        }
        report.devices_updated += 1;
    }
    if !link.admin_up || mac.is_some_and(|m| link.mac != Some(m)) {
        nl.set_link_up(link.index).await?;
    }
    if let DeviceSpec::Vxlan(v) = spec {
        let want = v.tx_checksum_offload;
        match nl.tx_checksum(&v.name).await {
            Ok(on) if on == want => {}
            Ok(_) => {
                nl.set_tx_checksum(&v.name, want).await?;
                report.devices_updated += 1;
            }
            Err(e) => warn!(device = %v.name, error = %e, "cannot read TX checksum offload"),
        }
    }
    if spec.addresses().iter().any(|a| matches!(a, IpNet::V6(_))) {
        nl.quiet_ipv6(&link.name);
    }
    ensure_addresses(nl, link.index, &spec.addresses(), report).await?;
    Ok(link.index)
}

fn gone(spec: &DeviceSpec) -> NetlinkError {
    NetlinkError::NotFound {
        op: format!("reading back device {}", spec.name()),
        message: "it vanished right after being created".to_owned(),
    }
}

/// Exactly the desired global addresses on the device (its subnet's
/// network address per family, as host prefixes).
async fn ensure_addresses<K: Kernel>(
    nl: &K,
    index: u32,
    want: &[IpNet],
    report: &mut ApplyReport,
) -> Result<(), NetlinkError> {
    let addrs = nl.addresses(index).await?;
    let mut present: Vec<IpNet> = Vec::new();
    for a in addrs.iter().filter(|a| a.scope != Scope::Link) {
        if want.contains(&a.prefix) {
            present.push(a.prefix);
        } else {
            info!(index, address = %a.prefix, "removing a stray address from our device");
            match nl.del_address(index, a.prefix).await {
                Ok(()) => report.addresses_changed += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
    }
    for w in want.iter().filter(|w| !present.contains(w)) {
        nl.add_address(index, *w).await?;
        report.addresses_changed += 1;
    }
    Ok(())
}

/// Deletes weft-named devices that the desired state no longer has.
pub async fn remove_undesired<K: Kernel>(
    nl: &K,
    desired: &HashMap<String, u32>,
    report: &mut ApplyReport,
) -> Result<(), NetlinkError> {
    for link in nl.links().await? {
        if is_weft_device_name(&link.name) && !desired.contains_key(&link.name) {
            info!(device = %link.name, "removing a device no longer wanted");
            match nl.delete_link(link.index).await {
                Ok(()) => report.devices_deleted += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_weft_device_names() {
        for n in [
            "flannel.1",
            "flannel.4096",
            "flannel-v6.1",
            "flannel.ipip",
            "flannel-wg",
            "flannel-wg-v6",
        ] {
            assert!(is_weft_device_name(n), "{n}");
        }
        for n in [
            "flannel.",
            "flannel.x",
            "flannel-wgx",
            "eth0",
            "cni0",
            "flannel.1a",
            "xflannel.1",
        ] {
            assert!(!is_weft_device_name(n), "{n}");
        }
    }
}
