//! Node settings: the configuration, sysctls, the external interface and
//! its MTU, and the lease store.

use std::time::Duration;

use weft_core::netconf::{self, BackendConfig, NetConfig};
use weft_store::etcd::EtcdKv;
use weft_store::kv::Kv;

use super::{CheckInput, Finding};

fn read_sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

pub fn load_config(input: &CheckInput, out: &mut Vec<Finding>) -> Option<NetConfig> {
    let Some(path) = &input.net_config else {
        out.push(Finding::warn(
            "net-conf.json",
            "no --net-config given: checks assume the vxlan backend and IPv4",
            "pass --net-config /etc/kube-flannel/net-conf.json (or the file weftd reads) for exact checks",
        ));
        return None;
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            out.push(Finding::fail(
                "net-conf.json",
                format!("cannot read {}: {e}", path.display()),
                "point --net-config at the file weftd uses",
            ));
            return None;
        }
    };
    match netconf::parse(&text) {
        Ok(cfg) => {
            out.push(Finding::ok(
                "net-conf.json",
                format!(
                    "{} is valid: backend {}",
                    path.display(),
                    cfg.backend.config_type()
                ),
            ));
            Some(cfg)
        }
        Err(e) => {
            out.push(Finding::fail(
                "net-conf.json",
                format!("{}: {e}", path.display()),
                e.hint().unwrap_or_else(|| {
                    "fix the file (weft config validate shows every default)".to_owned()
                }),
            ));
            None
        }
    }
}

pub fn sysctls(cfg: Option<&NetConfig>) -> Vec<Finding> {
    let mut out = Vec::new();
    let v4 = cfg.is_none_or(|c| c.enable_ipv4);
    let v6 = cfg.is_some_and(|c| c.enable_ipv6);
    if v4 {
        out.push(match read_sysctl("/proc/sys/net/ipv4/ip_forward").as_deref() {
            Some("1") => Finding::ok("ip_forward", "net.ipv4.ip_forward = 1"),
            other => Finding::fail(
                "ip_forward",
                format!("net.ipv4.ip_forward = {}", other.unwrap_or("unreadable")),
                "sysctl -w net.ipv4.ip_forward=1 (and persist it in /etc/sysctl.d/): without it pods cannot reach other nodes",
            ),
        });
    }
    if v6 {
        out.push(
            match read_sysctl("/proc/sys/net/ipv6/conf/all/forwarding").as_deref() {
                Some("1") => Finding::ok("ipv6 forwarding", "net.ipv6.conf.all.forwarding = 1"),
                other => Finding::fail(
                    "ipv6 forwarding",
                    format!(
                        "net.ipv6.conf.all.forwarding = {}",
                        other.unwrap_or("unreadable")
                    ),
                    "sysctl -w net.ipv6.conf.all.forwarding=1",
                ),
            },
        );
    }
    if cfg.is_none_or(|c| !c.enable_nftables) {
        let path = if v4 {
            "/proc/sys/net/bridge/bridge-nf-call-iptables"
        } else {
            "/proc/sys/net/bridge/bridge-nf-call-ip6tables"
        };
        out.push(if std::path::Path::new(path).exists() {
            Finding::ok("br_netfilter", format!("{path} exists"))
        } else {
            Finding::warn(
                "br_netfilter",
                format!("{path} is missing: bridged pod traffic bypasses iptables (kube-proxy services on the same node break); flanneld refuses to start here"),
                "modprobe br_netfilter (and list it in /etc/modules-load.d/), or set \"EnableNFTables\": true",
            )
        });
    }
    match read_sysctl("/proc/sys/net/ipv4/conf/all/rp_filter").as_deref() {
        Some("1") => out.push(Finding::warn(
            "rp_filter",
            "net.ipv4.conf.all.rp_filter = 1 (strict): replies that arrive on another interface than the route back are dropped",
            "sysctl -w net.ipv4.conf.all.rp_filter=2 (loose) on multi-homed nodes",
        )),
        Some(v) => out.push(Finding::ok("rp_filter", format!("net.ipv4.conf.all.rp_filter = {v}"))),
        None => {}
    }
    out
}

/// The external interface and MTU findings, and the interface's name (the
/// offload check reads its driver).
pub fn interface(input: &CheckInput, cfg: Option<&NetConfig>) -> (Vec<Finding>, Option<String>) {
    let fallback;
    let cfg = match cfg {
        Some(c) => c,
        None => match netconf::parse(r#"{"Network":"10.244.0.0/16"}"#) {
            Ok(c) => {
                fallback = c;
                &fallback
            }
            Err(_) => return (Vec::new(), None),
        },
    };
    let choice = weft_dataplane::external::InterfaceChoice {
        iface: input.iface.iter().cloned().collect(),
        public_ip: input.public_ip,
        ..Default::default()
    };
    let detected = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(weft_dataplane::external::detect(&choice, cfg))
                .map_err(anyhow::Error::from)
        });
    let ext = match detected {
        Ok(ext) => ext,
        Err(e) => {
            let fail = Finding::fail(
                "external interface",
                format!("{e:#}"),
                "give the interface peers reach this node on with --iface (or weftd --iface / --public-ip)",
            );
            return (vec![fail], None);
        }
    };
    let addrs = [
        ext.ext_addr.map(|a| a.to_string()),
        ext.ext_addr_v6.map(|a| a.to_string()),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ");
    let mut out = vec![Finding::ok(
        "external interface",
        format!("{} ({addrs}), MTU {}", ext.name, ext.mtu),
    )];
    let configured = match &cfg.backend {
        BackendConfig::Vxlan(o) => o.mtu,
        BackendConfig::Wireguard(o) => o.mtu,
        _ => None,
    };
    let base = configured.unwrap_or(ext.mtu);
    let overhead = cfg.backend.encap_overhead();
    let pod = base.saturating_sub(overhead);
    let floor = if cfg.enable_ipv6 { 1280 } else { 576 };
    out.push(if pod >= floor {
        Finding::ok(
            "pod MTU",
            format!("{base} − {overhead} ({}) = {pod}", cfg.backend.config_type()),
        )
    } else {
        Finding::fail(
            "pod MTU",
            format!("{base} − {overhead} ({}) = {pod}, below {floor}", cfg.backend.config_type()),
            "raise the underlay MTU or Backend.MTU, or use a backend with less overhead (host-gw has none)",
        )
    });
    if configured.is_some_and(|m| m > ext.mtu) {
        out.push(Finding::warn(
            "backend MTU",
            format!(
                "Backend.MTU {base} is larger than {}'s MTU {}",
                ext.name, ext.mtu
            ),
            "set Backend.MTU to at most the interface's MTU, or leave it out",
        ));
    }
    out.extend(super::nat::findings(cfg, ext.ext_addr, ext.iface_addr));
    (out, Some(ext.name))
}

pub fn store(input: &CheckInput) -> Vec<Finding> {
    if input.etcd.endpoints.is_empty() {
        return Vec::new();
    }
    let options = &input.etcd;
    let key = weft_core::etcd_key::config_key(&input.etcd_prefix);
    let result = super::query(async {
        let kv = EtcdKv::connect(options).await.map_err(|e| e.to_string())?;
        tokio::time::timeout(Duration::from_secs(5), kv.get(&key))
            .await
            .map_err(|_| "no answer within 5 s".to_owned())?
            .map_err(|e| e.to_string())
    });
    let reachable = result.is_ok();
    let mut findings = vec![match result {
        Ok(Some(_)) => Finding::ok(
            "etcd",
            format!("{} reachable; {key} exists", input.etcd.endpoints.join(",")),
        ),
        Ok(None) => Finding::fail(
            "etcd",
            format!("reachable, but {key} does not exist: weftd waits until it does"),
            format!(
                "etcdctl put {key} '{{\"Network\":\"10.244.0.0/16\",\"Backend\":{{\"Type\":\"vxlan\"}}}}'"
            ),
        ),
        Err(e) => Finding::fail(
            "etcd",
            format!("{} unreachable: {e}", input.etcd.endpoints.join(",")),
            "check --etcd-endpoints, the TLS and login flags, and that etcd listens on an address this node can reach",
        ),
    }];
    if reachable {
        findings.push(super::clock::against(&input.etcd.endpoints[0]));
    }
    findings
}
