#![allow(clippy::unwrap_used)]
//! The ipsec dataplane's pure parts: policies and charon's messages.

use super::fixtures::{settings, tunnel};
use super::*;
use vici::Message;

#[test]
fn three_policies_as_flannel_installs_them() {
    let outward = ["10.244.1.0/24", "10.244.2.0/24", "192.0.2.1", "192.0.2.2"];
    let inward = ["10.244.2.0/24", "10.244.1.0/24", "192.0.2.2", "192.0.2.1"];
    let wanted = [
        (PolicyDir::Out, outward),
        (PolicyDir::In, inward),
        (PolicyDir::Fwd, inward),
    ];
    for (p, (dir, [src, dst, tmpl_src, tmpl_dst])) in policies_of(&tunnel()).iter().zip(wanted) {
        assert_eq!(p.dir, dir);
        let t = p.tmpl.unwrap();
        assert_eq!(
            [
                p.src.to_string(),
                p.dst.to_string(),
                t.src.to_string(),
                t.dst.to_string()
            ],
            [src, dst, tmpl_src, tmpl_dst],
            "{dir}"
        );
        assert_eq!((t.proto, t.mode, t.reqid), (PROTO_ESP, MODE_TUNNEL, 11));
    }
}

#[test]
fn only_reqid_11_esp_tunnels_inside_the_cluster_are_ours() {
    let cluster = vec!["10.244.0.0/16".parse().unwrap()];
    let [out, ..] = policies_of(&tunnel());
    assert!(is_ours(&out, &cluster));
    let mut other = out.clone();
    other.tmpl = other.tmpl.map(|t| XfrmTmpl { reqid: 12, ..t });
    assert!(!is_ours(&other, &cluster));
    let mut outside = out.clone();
    outside.dst = "172.16.0.0/24".parse().unwrap();
    assert!(!is_ours(&outside, &cluster));
    let mut bypass = out;
    bypass.tmpl = None;
    assert!(!is_ours(&bypass, &cluster));
}

#[test]
fn the_connection_is_flannels() {
    let m = connection(&tunnel(), &settings());
    let conn = m
        .sub("192.0.2.1-10.244.1.0/24-10.244.2.0/24-192.0.2.2")
        .unwrap();
    assert_eq!(conn.strs("local_addrs"), vec!["192.0.2.1"]);
    assert_eq!(conn.strs("remote_addrs"), vec!["192.0.2.2"]);
    assert_eq!(conn.strs("proposals"), vec!["aes256-sha256-modp4096"]);
    assert_eq!(conn.str("version").as_deref(), Some("2"));
    assert_eq!(conn.str("keyingtries").as_deref(), Some("0"));
    assert_eq!(conn.str("encap").as_deref(), Some("yes"));
    assert_eq!(
        conn.sub("local").unwrap().str("auth").as_deref(),
        Some("psk")
    );
    assert_eq!(
        conn.sub("remote").unwrap().str("auth").as_deref(),
        Some("psk")
    );
    let child = conn
        .sub("children")
        .unwrap()
        .sub("10.244.1.0/24-10.244.2.0/24")
        .unwrap();
    assert_eq!(child.strs("local_ts"), vec!["10.244.1.0/24"]);
    assert_eq!(child.strs("remote_ts"), vec!["10.244.2.0/24"]);
    assert_eq!(
        child.strs("esp_proposals"),
        vec!["aes128gcm16-sha256-prfsha256-ecp256"]
    );
    for (k, v) in [
        ("start_action", "start"),
        ("close_action", "trap"),
        ("dpd_action", "restart"),
        ("mode", "tunnel"),
        ("reqid", "11"),
        ("rekey_time", "1h"),
        ("policies", "no"),
    ] {
        assert_eq!(child.str(k).as_deref(), Some(v), "{k}");
    }
}

#[test]
fn the_psk_goes_to_charon_and_nowhere_else() {
    let m = config::shared_key(
        "weft-psk-192.0.2.2",
        "192.0.2.2".parse().unwrap(),
        &settings(),
    );
    assert_eq!(m.str("type").as_deref(), Some("IKE"));
    assert_eq!(m.str("data").unwrap().len(), 96);
    assert_eq!(m.strs("owners"), vec!["192.0.2.2"]);
    assert!(!format!("{:?}", settings()).contains("kkkk"));
}

#[test]
fn duplicate_sas_of_a_pair_read_as_one_tunnel_with_summed_bytes() {
    let child = |state: &str, spi: &str, bytes: &str| {
        Message::new()
            .kv("state", state)
            .kv("spi-in", spi)
            .kv("spi-out", spi)
            .kv("bytes-in", bytes)
            .kv("bytes-out", bytes)
    };
    let ike = |state: &str, c: Message| {
        Message::new().section(
            "conn-a",
            Message::new()
                .kv("state", state)
                .section("child-sas", Message::new().section("c-1", c)),
        )
    };
    let events = [
        ike("CONNECTING", child("CREATED", "c1", "0")),
        ike("ESTABLISHED", child("INSTALLED", "c2", "100")),
        ike("ESTABLISHED", child("INSTALLED", "c3", "50")),
    ];
    let views = views_of(&events);
    let v = &views["conn-a"];
    assert_eq!(
        (v.ike_state.as_str(), v.child_state.as_str()),
        ("ESTABLISHED", "INSTALLED")
    );
    assert_eq!(v.spi_in, "c2");
    assert_eq!((v.bytes_in, v.bytes_out), (150, 150));
    assert!(views_of(&[Message::new().kv("garbage", "x")]).is_empty());
}
