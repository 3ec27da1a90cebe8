//! The backend's UDP ports: free (or held by weft's own device), and not
//! dropped by a firewall rule on this host (flannel #2388: VXLAN silently
//! dropped; firewalld needs the port opened).

use std::net::UdpSocket;
use std::process::Command;

use weft_core::netconf::{BackendConfig, NetConfig};
use weft_dataplane::netlink::{LinkInfo, LinkKind, Netlink};

use super::Finding;

/// The UDP ports the configured backend listens on.
pub fn backend_ports(cfg: Option<&NetConfig>) -> Vec<(u16, &'static str)> {
    match cfg.map(|c| &c.backend) {
        None => vec![(8472, "vxlan")],
        Some(BackendConfig::Vxlan(o)) => vec![(o.port, "vxlan")],
        Some(BackendConfig::Wireguard(o)) => {
            let mut ports = Vec::new();
            if cfg.is_some_and(|c| c.enable_ipv4) {
                ports.push((o.listen_port, "wireguard"));
            }
            if cfg.is_some_and(|c| c.enable_ipv6) && o.listen_port_v6 != o.listen_port {
                ports.push((o.listen_port_v6, "wireguard IPv6"));
            }
            ports
        }
        Some(_) => Vec::new(),
    }
}

/// weft's own devices of this namespace that hold UDP ports, with those
/// ports, for telling our own listener from a stranger's: vxlan devices
/// (their port is an attribute of the link), and the WireGuard device of
/// each configured port (`flannel-wg`, `flannel-wg-v6`), kernel or
/// userspace (a TUN link whose socket is weftd's).
fn own_devices(cfg: Option<&NetConfig>) -> Vec<(String, u16)> {
    let links = links();
    let mut own: Vec<(String, u16)> = links
        .iter()
        .filter_map(|l| l.vxlan().map(|v| (l.name.clone(), v.port)))
        .collect();
    let Some(BackendConfig::Wireguard(o)) = cfg.map(|c| &c.backend) else {
        return own;
    };
    let v6_device = if o.listen_port_v6 == o.listen_port {
        "flannel-wg"
    } else {
        "flannel-wg-v6"
    };
    for (device, port) in [("flannel-wg", o.listen_port), (v6_device, o.listen_port_v6)] {
        let path = match links.iter().find(|l| l.name == device).map(|l| &l.kind) {
            Some(LinkKind::Wireguard) => "kernel",
            Some(LinkKind::Tun) => "userspace",
            _ => continue,
        };
        own.push((format!("{device} ({path} WireGuard)"), port));
    }
    own
}

/// Every link of this namespace (none if netlink cannot be reached: the
/// port findings then say "another program", as without this).
fn links() -> Vec<LinkInfo> {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    rt.block_on(async {
        let Ok(nl) = Netlink::connect() else {
            return Vec::new();
        };
        nl.links().await.unwrap_or_default()
    })
}

/// Lines of the host's firewall that drop or reject UDP to `port` on input.
pub fn dropping_rules(port: u16, iptables_save: &str, nft_ruleset: &str) -> Vec<String> {
    let mut found = Vec::new();
    let dport = format!("--dport {port}");
    for line in iptables_save.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let is_input = line.starts_with("-A INPUT ");
        let udp = words.windows(2).any(|w| w == ["-p", "udp"]);
        let drops = line.contains("-j DROP") || line.contains("-j REJECT");
        if is_input
            && udp
            && drops
            && (line.contains(&format!("{dport} ")) || line.ends_with(&dport))
        {
            found.push(format!("iptables: {line}"));
        }
    }
    let mut in_input_chain = false;
    for line in nft_ruleset.lines() {
        let t = line.trim();
        if t.starts_with("chain ") {
            in_input_chain = false;
        }
        if t.contains("hook input") {
            in_input_chain = true;
        }
        let hits_port =
            t.contains(&format!("udp dport {port} ")) || t.ends_with(&format!("udp dport {port}"));
        if in_input_chain && hits_port && (t.contains("drop") || t.contains("reject")) {
            found.push(format!("nftables: {t}"));
        }
    }
    found
}

fn tool_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

pub fn ports(cfg: Option<&NetConfig>) -> Vec<Finding> {
    let mut out = Vec::new();
    let ports = backend_ports(cfg);
    if ports.is_empty() {
        return out;
    }
    let devices = own_devices(cfg);
    let ipt = tool_output("iptables-save", &["-t", "filter"]);
    let ip6t = tool_output("ip6tables-save", &["-t", "filter"]);
    let nft = tool_output("nft", &["list", "ruleset"]);
    for (port, what) in ports {
        let name = format!("udp port {port}");
        match UdpSocket::bind(("0.0.0.0", port)) {
            Ok(_) => out.push(Finding::ok(&name, format!("free for {what}"))),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                match devices.iter().find(|(_, p)| *p == port) {
                    Some((dev, _)) => out.push(Finding::ok(&name, format!("in use by {dev} ({what})"))),
                    None => out.push(Finding::fail(
                        &name,
                        format!("in use by another program; {what} needs it"),
                        format!("find it with `ss -ulpn 'sport = :{port}'` and stop it, or change the backend's port in net-conf.json"),
                    )),
                }
            }
            Err(e) => out.push(Finding::warn(
                &name,
                format!("cannot test: {e}"),
                "run weft check as root",
            )),
        }
        let mut rules = dropping_rules(port, &ipt, &nft);
        rules.extend(
            dropping_rules(port, &ip6t, "")
                .into_iter()
                .map(|r| r.replacen("iptables", "ip6tables", 1)),
        );
        if !rules.is_empty() {
            out.push(Finding::fail(
                &format!("firewall {port}/udp"),
                format!("{what} traffic is dropped on this host: {}", rules.join("; ")),
                format!(
                    "allow it: iptables -I INPUT -p udp --dport {port} -j ACCEPT (firewalld: firewall-cmd --permanent --add-port={port}/udp; also open it in cloud security groups)"
                ),
            ));
        } else {
            out.push(Finding::ok(
                &format!("firewall {port}/udp"),
                "no host rule drops it",
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_iptables_and_nft_drops() {
        let ipt = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p udp -m udp --dport 8472 -j DROP\n-A INPUT -p tcp -m tcp --dport 8472 -j DROP\n-A FORWARD -p udp -m udp --dport 8472 -j DROP\nCOMMIT\n";
        let nft = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\tudp dport 8472 drop\n\t}\n\tchain out {\n\t\ttype filter hook output priority filter;\n\t\tudp dport 8472 drop\n\t}\n}\n";
        let found = dropping_rules(8472, ipt, nft);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("-A INPUT -p udp"));
        assert!(found[1].starts_with("nftables: udp dport 8472 drop"));
        assert!(dropping_rules(51820, ipt, nft).is_empty());
        assert!(
            dropping_rules(84, ipt, nft).is_empty(),
            "8472 must not match port 84"
        );
    }
}
