//! Unit tests of the pure parts: podCIDR parsing, the annotations weft
//! writes (flannel's rules), and how a peer node becomes a lease.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use weft_core::lease::{LeaseAttrs, LeaseDecodeError, RawJson};
use weft_core::peer::PeerRejection;

use super::keys::AnnotationKeys;
use super::{client, node};

/// The backend-data annotation flannel writes for a vxlan node with
/// VtepMAC ee:a4:86:c3:7f:56 (several tests' nodes carry it).
const VXLAN_DATA: (&str, &str) = (
    "flannel.alpha.coreos.com/backend-data",
    r#"{"VNI":1,"VtepMAC":"ee:a4:86:c3:7f:56"}"#,
);
/// The backend-type annotation beside it.
const VXLAN_TYPE: (&str, &str) = ("flannel.alpha.coreos.com/backend-type", "vxlan");

fn keys() -> AnnotationKeys {
    AnnotationKeys::new("flannel.alpha.coreos.com").unwrap()
}

fn node_with(cidrs: &[&str], annotations: &[(&str, &str)]) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some("n1".into()),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: cidrs.first().map(|c| (*c).to_owned()),
            pod_cidrs: Some(cidrs.iter().map(|c| (*c).to_owned()).collect()),
            ..Default::default()
        }),
        status: None,
    }
}

fn vxlan(ip: &str, mac: &str) -> LeaseAttrs {
    LeaseAttrs {
        public_ip: Some(ip.parse().unwrap()),
        backend_type: "vxlan".into(),
        backend_data: Some(RawJson::parse(&format!(r#"{{"VNI":1,"VtepMAC":"{mac}"}}"#)).unwrap()),
        ..Default::default()
    }
}

#[test]
fn pod_cidrs_follow_flannel() {
    let n = node_with(&["10.244.1.0/24", "fd00::/64"], &[]);
    let c = node::pod_cidrs(&n).unwrap().unwrap();
    assert_eq!(c.v4.unwrap().to_string(), "10.244.1.0/24");
    assert_eq!(c.v6.unwrap().to_string(), "fd00::/64");
    assert!(node::pod_cidrs(&node_with(&[], &[])).unwrap().is_none());
    let three = node_with(&["10.0.0.0/24", "10.0.1.0/24", "fd00::/64"], &[]);
    assert!(
        node::pod_cidrs(&three)
            .unwrap_err()
            .contains("IPv4/IPv6 only or dualstack")
    );
    assert!(node::pod_cidrs(&node_with(&["nonsense"], &[])).is_err());
}

/// Go's net.ParseCIDR (flannel) has refused leading zeros since Go 1.17;
/// other tools read 010 as octal 8, so a podCIDR written so is refused, not
/// guessed at, and a long one is cut in the message.
#[test]
fn pod_cidrs_refuse_leading_zeros_and_cut_long_values() {
    let e = node::pod_cidrs(&node_with(&["10.244.010.0/24"], &[])).unwrap_err();
    assert!(
        e.contains("\"10.244.010.0/24\" is not a CIDR: an IPv4 octet has a leading zero"),
        "{e}"
    );
    assert!(
        node::pod_cidrs(&node_with(
            &["10.244.1.0/24", "fd00::ffff:010.0.0.0/120"],
            &[]
        ))
        .is_err()
    );
    assert!(node::pod_cidrs(&node_with(&["10.244.1.0/+24"], &[])).is_err());
    let e = node::pod_cidrs(&node_with(&[&"9".repeat(10_000)], &[])).unwrap_err();
    assert!(e.len() < 200, "{e}");
}

#[test]
fn vxlan_annotations_are_flannels() {
    let k = keys();
    let n = node_with(&["10.244.1.0/24"], &[]);
    let want = node::desired(&k, &vxlan("192.0.2.1", "ee:a4:86:c3:7f:56"), &n);
    let expect: BTreeMap<String, String> = [
        VXLAN_DATA,
        VXLAN_TYPE,
        ("flannel.alpha.coreos.com/kube-subnet-manager", "true"),
        ("flannel.alpha.coreos.com/public-ip", "192.0.2.1"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .collect();
    assert_eq!(want, expect);
}

#[test]
fn host_gw_publishes_null_data_and_overwrites_apply() {
    let k = keys();
    let attrs = LeaseAttrs {
        public_ip: Some("192.0.2.1".parse().unwrap()),
        public_ipv6: Some("2001:db8::1".parse().unwrap()),
        backend_type: "host-gw".into(),
        ..Default::default()
    };
    let n = node_with(
        &["10.244.1.0/24"],
        &[
            (
                "flannel.alpha.coreos.com/public-ip-overwrite",
                "203.0.113.7",
            ),
            (
                "flannel.alpha.coreos.com/public-ipv6-overwrite",
                "not-an-ip",
            ),
        ],
    );
    let want = node::desired(&k, &attrs, &n);
    assert_eq!(want["flannel.alpha.coreos.com/backend-data"], "null");
    assert_eq!(want["flannel.alpha.coreos.com/backend-v6-data"], "null");
    assert_eq!(want["flannel.alpha.coreos.com/public-ip"], "203.0.113.7");
    // A malformed overwrite is ignored, not published.
    assert_eq!(want["flannel.alpha.coreos.com/public-ipv6"], "2001:db8::1");
}

#[test]
fn ipv6_only_vxlan_writes_no_ipv4_keys() {
    let k = keys();
    let attrs = LeaseAttrs {
        public_ipv6: Some("2001:db8::1".parse().unwrap()),
        backend_type: "vxlan".into(),
        backend_v6_data: Some(
            RawJson::parse(r#"{"VNI":1,"VtepMAC":"2e:51:00:00:00:01"}"#).unwrap(),
        ),
        ..Default::default()
    };
    let want = node::desired(&k, &attrs, &node_with(&["fd00::/64"], &[]));
    assert!(!want.contains_key("flannel.alpha.coreos.com/backend-data"));
    assert!(!want.contains_key("flannel.alpha.coreos.com/public-ip"));
    assert_eq!(want["flannel.alpha.coreos.com/public-ipv6"], "2001:db8::1");
}

#[test]
fn missing_lists_only_what_differs() {
    let k = keys();
    let attrs = vxlan("192.0.2.1", "ee:a4:86:c3:7f:56");
    let n = node_with(
        &["10.244.1.0/24"],
        &[
            ("flannel.alpha.coreos.com/backend-type", "vxlan"),
            ("flannel.alpha.coreos.com/public-ip", "192.0.2.9"),
        ],
    );
    let m = node::missing(&node::desired(&k, &attrs, &n), &n);
    assert!(!m.contains_key("flannel.alpha.coreos.com/backend-type"));
    assert_eq!(m["flannel.alpha.coreos.com/public-ip"], "192.0.2.1");
    assert_eq!(m.len(), 3);
}

#[test]
fn peer_lease_reads_a_flannel_node() {
    let k = keys();
    let n = node_with(
        &["10.244.2.0/24"],
        &[
            VXLAN_DATA,
            VXLAN_TYPE,
            ("flannel.alpha.coreos.com/kube-subnet-manager", "true"),
            ("flannel.alpha.coreos.com/public-ip", "192.0.2.2"),
        ],
    );
    assert!(node::is_managed(&k, &n));
    let lease = node::peer_lease(&k, true, false, &n).unwrap();
    assert_eq!(lease.subnets.v4.unwrap().to_string(), "10.244.2.0/24");
    assert_eq!(lease.attrs, vxlan("192.0.2.2", "ee:a4:86:c3:7f:56"));
    assert_eq!(lease.expiration, None);
}

#[test]
fn peer_lease_refuses_malformed_annotations() {
    let k = keys();
    let bad_ip = node_with(
        &["10.244.2.0/24"],
        &[("flannel.alpha.coreos.com/public-ip", "300.1.1.1")],
    );
    assert!(matches!(
        node::peer_lease(&k, true, false, &bad_ip),
        Err(PeerRejection::BadValue(_))
    ));
    let bad_json = node_with(
        &["10.244.2.0/24"],
        &[("flannel.alpha.coreos.com/backend-data", "{nope")],
    );
    let e = node::peer_lease(&k, true, false, &bad_json).unwrap_err();
    assert!(e.to_string().contains("backend-data"), "{e}");
    let huge = "x".repeat(5000);
    let big = node_with(
        &["10.244.2.0/24"],
        &[("flannel.alpha.coreos.com/backend-type", &huge)],
    );
    assert!(matches!(
        node::peer_lease(&k, true, false, &big),
        Err(PeerRejection::BadValue(LeaseDecodeError::TooLarge(5000)))
    ));
    assert!(matches!(
        node::peer_lease(&k, true, false, &node_with(&[], &[])),
        Err(PeerRejection::NoSubnet)
    ));
}

#[test]
fn previous_attrs_and_stored_ips() {
    let k = keys();
    let n = node_with(
        &["10.244.1.0/24"],
        &[
            VXLAN_DATA,
            VXLAN_TYPE,
            ("flannel.alpha.coreos.com/public-ip", "192.0.2.1"),
            ("flannel.alpha.coreos.com/node-public-ip", "198.51.100.4"),
            ("flannel.alpha.coreos.com/node-public-ipv6", "garbage"),
        ],
    );
    assert_eq!(
        node::published_attrs(&k, &n),
        Some(vxlan("192.0.2.1", "ee:a4:86:c3:7f:56"))
    );
    assert_eq!(node::published_attrs(&k, &node_with(&[], &[])), None);
    let (v4, v6) = node::stored_public_ips(&k, &n);
    assert_eq!(v4, Some("198.51.100.4".parse().unwrap()));
    assert_eq!(v6, None);
}

/// A refusal keeps the API server's answer behind its message, typed; the
/// failure's `{:?}`, shown in log lines, is as it was.
#[test]
fn api_errors_stay_behind_the_store_error() {
    use kube::core::Status;
    let forbidden = Status::failure(r#"nodes "n1" is forbidden"#, "Forbidden").with_code(403);
    let f = client::classify(kube::Error::Api(forbidden.boxed()));
    assert_eq!(
        format!("{f:?}"),
        r#"Permanent { code: 403, message: "nodes \"n1\" is forbidden" }"#
    );
    let err = client::store_error("cannot patch node \"n1\"", f);
    assert!(!err.is_retryable());
    // The rule weft needs and the manifest that grants it, nothing more.
    let text = err.to_string();
    assert!(
        text.contains("nodes get, list, watch; nodes/status patch"),
        "{text}"
    );
    assert!(text.contains("deploy/base/kube-weft.yml"), "{text}");
    assert!(!text.contains("pods"), "{text}");
    let api = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<kube::Error>());
    assert!(
        matches!(api, Some(kube::Error::Api(s)) if s.code == 403),
        "{err:?}"
    );

    let busy = Status::failure("etcdserver: too many requests", "").with_code(503);
    let f = client::classify(kube::Error::Api(busy.boxed()));
    assert_eq!(
        format!("{f:?}"),
        r#"Transient("etcdserver: too many requests (503)")"#
    );
    assert!(client::store_error("cannot list nodes", f).is_retryable());
}

/// A WireGuard key rotation reaches the annotations at the next renew:
/// the node carries the old key's backend data, the lease the new key's,
/// and the patch renew writes holds both families' data and nothing else.
/// Both in one patch matters to flannel peers: on a dual-stack node,
/// flannel's kube subnet manager ignores an update whose v6 data did not
/// change, even when the v4 data did (handleUpdateLeaseEvent).
#[test]
fn a_rotated_wireguard_key_is_patched_into_both_data_annotations() {
    let k = keys();
    let wg = |key: &str, port: u16| {
        Some(RawJson::parse(&format!(r#"{{"PublicKey":"{key}","Port":{port}}}"#)).unwrap())
    };
    let attrs = |key: &str| LeaseAttrs {
        public_ip: Some("192.0.2.1".parse().unwrap()),
        public_ipv6: Some("2001:db8::1".parse().unwrap()),
        backend_type: "wireguard".into(),
        backend_data: wg(key, 51820),
        backend_v6_data: wg(key, 51821),
    };
    let old = attrs("b2xkb2xkb2xkb2xkb2xkb2xkb2xkb2xkb2xkb2xkb2w=");
    let new = attrs("bmV3bmV3bmV3bmV3bmV3bmV3bmV3bmV3bmV3bmV3bmU=");
    let bare = node_with(&["10.244.1.0/24", "fd00::/64"], &[]);
    let published: Vec<(String, String)> = node::desired(&k, &old, &bare).into_iter().collect();
    let published: Vec<(&str, &str)> = published
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let n = node_with(&["10.244.1.0/24", "fd00::/64"], &published);
    assert!(node::missing(&node::desired(&k, &old, &n), &n).is_empty());
    let patch = node::missing(&node::desired(&k, &new, &n), &n);
    assert_eq!(
        patch.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "flannel.alpha.coreos.com/backend-data",
            "flannel.alpha.coreos.com/backend-v6-data"
        ]
    );
    assert!(patch.values().all(|v| v.contains("bmV3")), "{patch:?}");
}
