//! External interface and address selection (flannel-compat §1) over dummy
//! interfaces in a fresh network namespace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;

use weft_core::netconf;
use weft_dataplane::external::{
    ExternalError, ExternalInterface, InterfaceChoice as Flags, detect,
};

/// `ip ARGS`, split at white space; it must succeed.
fn ip(args: &str) {
    let args: Vec<&str> = args.split_whitespace().collect();
    common::netns::ip(&args).unwrap();
}

/// Runs `f` in a new netns holding (veths: this kernel has no dummy
/// driver): `eth0` 192.0.2.1/24 (default route),
/// `eth1` 198.51.100.1/24 and 2001:db8:1::1/64, `wan0` 203.0.113.5/24.
fn in_netns(f: impl FnOnce() + Send + 'static) {
    common::netns::require_root();
    let t = std::thread::spawn(move || {
        weft_dataplane::netns::enter(&weft_dataplane::netns::Netns::Fresh).unwrap();
        for (name, addrs) in [
            ("eth0", vec!["192.0.2.1/24"]),
            ("eth1", vec!["198.51.100.1/24", "2001:db8:1::1/64"]),
            ("wan0", vec!["203.0.113.5/24"]),
        ] {
            ip(&format!("link add {name} type veth peer name {name}p"));
            ip(&format!("link set {name}p up"));
            ip(&format!("link set {name} up"));
            for a in addrs {
                ip(&format!("addr add {a} dev {name} nodad"));
            }
        }
        ip("route add default via 192.0.2.254 dev eth0");
        f();
    });
    if let Err(panic) = t.join() {
        std::panic::resume_unwind(panic);
    }
}

fn run(flags: Flags, cfg: &str) -> Result<ExternalInterface, ExternalError> {
    let cfg = netconf::parse(cfg).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(detect(&flags, &cfg))
}

const V4: &str = r#"{"Network":"10.244.0.0/16"}"#;

#[test]
fn default_route_interface_and_its_address() {
    in_netns(|| {
        let ext = run(Flags::default(), V4).unwrap();
        assert_eq!(ext.name, "eth0");
        assert_eq!(ext.ext_addr, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(ext.iface_addr, ext.ext_addr);
    });
}

#[test]
fn iface_by_name_by_ip_and_first_match_wins() {
    in_netns(|| {
        let by_name = Flags {
            iface: vec!["missing0".into(), "eth1".into(), "wan0".into()],
            ..Flags::default()
        };
        assert_eq!(run(by_name, V4).unwrap().name, "eth1");
        let by_ip = Flags {
            iface: vec!["203.0.113.5".into()],
            ..Flags::default()
        };
        let ext = run(by_ip, V4).unwrap();
        assert_eq!(ext.name, "wan0");
        assert_eq!(ext.ext_addr, Some("203.0.113.5".parse().unwrap()));
    });
}

#[test]
fn iface_regex_matches_addresses_before_names() {
    in_netns(|| {
        let by_addr = Flags {
            iface_regex: vec![r"^198\.51\.".into()],
            ..Flags::default()
        };
        assert_eq!(run(by_addr, V4).unwrap().name, "eth1");
        let by_name = Flags {
            iface_regex: vec!["^wan0$".into()],
            ..Flags::default()
        };
        assert_eq!(run(by_name, V4).unwrap().name, "wan0");
        let bad = Flags {
            iface_regex: vec!["(".into()],
            ..Flags::default()
        };
        let err = format!("{:#}", run(bad, V4).unwrap_err());
        assert!(err.contains("not a valid regular expression"), "{err}");
    });
}

#[test]
fn iface_can_reach_uses_the_route() {
    in_netns(|| {
        let flags = Flags {
            iface_can_reach: Some("203.0.113.77".parse().unwrap()),
            ..Flags::default()
        };
        assert_eq!(run(flags, V4).unwrap().name, "wan0");
    });
}

#[test]
fn nothing_matching_is_flannels_error_listing_interfaces() {
    in_netns(|| {
        let flags = Flags {
            iface: vec!["nope0".into()],
            iface_regex: vec!["^zzz".into()],
            ..Flags::default()
        };
        let err = format!("{:#}", run(flags, V4).unwrap_err());
        assert!(err.contains("Failed to find interface to use that matches the interfaces and/or regexes provided"), "{err}");
        assert!(err.contains("eth1:[198.51.100.1"), "{err}");
    });
}

#[test]
fn public_ip_selects_its_interface_or_is_refused() {
    in_netns(|| {
        let on_iface = Flags {
            public_ip: Some("198.51.100.1".parse().unwrap()),
            ..Flags::default()
        };
        assert_eq!(run(on_iface, V4).unwrap().name, "eth1");
        let nowhere = Flags {
            public_ip: Some("100.64.0.9".parse().unwrap()),
            ..Flags::default()
        };
        let err = format!("{:#}", run(nowhere, V4).unwrap_err());
        assert!(
            err.contains("Failed to find any valid interface to use") && err.contains("--iface"),
            "{err}"
        );
    });
}

#[test]
fn dual_stack_needs_one_interface_for_both_default_routes() {
    in_netns(|| {
        ip("route add default via 2001:db8:1::254 dev eth1");
        let dual =
            r#"{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56"}"#;
        let err = format!("{:#}", run(Flags::default(), dual).unwrap_err());
        assert!(err.contains("must be the same"), "{err}");
        let chosen = Flags {
            iface: vec!["eth1".into()],
            ..Flags::default()
        };
        let ext = run(chosen, dual).unwrap();
        assert_eq!(ext.ext_addr_v6, Some("2001:db8:1::1".parse().unwrap()));
    });
}

const V6: &str = r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56"}"#;

#[test]
fn public_ipv6_selects_its_interface_or_is_refused() {
    in_netns(|| {
        let on_iface = Flags {
            public_ipv6: Some("2001:db8:1::1".parse().unwrap()),
            ..Flags::default()
        };
        let ext = run(on_iface, V6).unwrap();
        assert_eq!(ext.name, "eth1");
        assert_eq!(ext.ext_addr_v6, Some("2001:db8:1::1".parse().unwrap()));
        assert_eq!(ext.ext_addr, None);
        let nowhere = Flags {
            public_ipv6: Some("2001:db8:ff::9".parse().unwrap()),
            ..Flags::default()
        };
        let err = format!("{:#}", run(nowhere, V6).unwrap_err());
        assert!(
            err.contains("Failed to find any valid interface to use")
                && err.contains("--public-ipv6 2001:db8:ff::9")
                && err.contains("--iface"),
            "{err}"
        );
    });
}

/// The interface's own address and the one peers are told, of one family.
fn addresses(ext: &ExternalInterface, v6: bool) -> (Option<IpAddr>, Option<IpAddr>) {
    if v6 {
        (
            ext.iface_addr_v6.map(IpAddr::V6),
            ext.ext_addr_v6.map(IpAddr::V6),
        )
    } else {
        (ext.iface_addr.map(IpAddr::V4), ext.ext_addr.map(IpAddr::V4))
    }
}

#[test]
fn external_ip_differs_from_the_interface_address() {
    // K3s --flannel-external-ip: tunnels leave eth0, peers are told the NAT
    // address; a NAT'd IPv6 node the same on eth1.
    in_netns(|| {
        let v4 = Flags {
            iface: vec!["eth0".into()],
            public_ip: Some("100.64.0.9".parse().unwrap()),
            ..Flags::default()
        };
        let v6 = Flags {
            iface: vec!["eth1".into()],
            public_ipv6: Some("2001:db8:ff::9".parse().unwrap()),
            ..Flags::default()
        };
        for (flags, cfg, is_v6, name, own, told) in [
            (v4, V4, false, "eth0", "192.0.2.1", "100.64.0.9"),
            (v6, V6, true, "eth1", "2001:db8:1::1", "2001:db8:ff::9"),
        ] {
            let ext = run(flags, cfg).unwrap();
            assert_eq!(ext.name, name);
            assert_eq!(
                addresses(&ext, is_v6),
                (Some(own.parse().unwrap()), Some(told.parse().unwrap()))
            );
        }
    });
}
