use super::*;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn policy(dir: PolicyDir) -> XfrmPolicy {
    XfrmPolicy {
        dir,
        src: net("10.244.1.0/24"),
        dst: net("10.244.2.0/24"),
        priority: 0,
        tmpl: Some(XfrmTmpl {
            src: ip("192.0.2.1"),
            dst: ip("192.0.2.2"),
            proto: PROTO_ESP,
            mode: MODE_TUNNEL,
            reqid: 11,
        }),
    }
}

#[test]
fn policy_round_trips_in_every_direction() {
    for dir in PolicyDir::ALL {
        let p = policy(dir);
        let bytes = policy_payload(&p);
        // xfrm_userpolicy_info (168) + one XFRMA_TMPL (4 + 64).
        assert_eq!(bytes.len(), 168 + 68);
        assert_eq!(parse_policy(&bytes).unwrap(), Some(p));
    }
}

#[test]
fn v6_policy_round_trips() {
    let mut p = policy(PolicyDir::Out);
    p.src = net("fd00:10:244:1::/64");
    p.dst = net("fd00:10:244:2::/64");
    p.tmpl = Some(XfrmTmpl {
        src: ip("2001:db8::1"),
        dst: ip("2001:db8::2"),
        proto: PROTO_ESP,
        mode: MODE_TUNNEL,
        reqid: 11,
    });
    assert_eq!(parse_policy(&policy_payload(&p)).unwrap(), Some(p));
}

/// The fields sit where `include/uapi/linux/xfrm.h` puts them: what the
/// kernel reads, not only what this module reads back.
#[test]
fn policy_layout_is_the_kernels() {
    let bytes = policy_payload(&policy(PolicyDir::Fwd));
    assert_eq!(&bytes[0..4], &[10, 244, 2, 0], "sel.daddr");
    assert_eq!(&bytes[16..20], &[10, 244, 1, 0], "sel.saddr");
    assert_eq!(u16::from_ne_bytes([bytes[40], bytes[41]]), 2, "sel.family");
    assert_eq!((bytes[42], bytes[43]), (24, 24), "prefixlen_d, prefixlen_s");
    assert_eq!(
        &bytes[56..88],
        &[0xff; 32],
        "byte and packet limits = XFRM_INF"
    );
    assert_eq!(
        &bytes[88..120],
        &[0; 32],
        "time limits 0: never (INF would expire at once)"
    );
    assert_eq!(bytes[160], 2, "dir fwd");
    let tmpl = &bytes[168 + 4..];
    assert_eq!(&tmpl[0..4], &[192, 0, 2, 2], "id.daddr");
    assert_eq!(tmpl[20], 50, "id.proto ESP");
    assert_eq!(&tmpl[28..32], &[192, 0, 2, 1], "saddr");
    assert_eq!(
        u32::from_ne_bytes([tmpl[44], tmpl[45], tmpl[46], tmpl[47]]),
        11
    );
    assert_eq!(tmpl[48], 1, "mode tunnel");
}

#[test]
fn delete_payload_names_selector_and_direction() {
    let b = policy_id_payload(PolicyDir::In, net("10.244.2.0/24"), net("10.244.1.0/24"));
    assert_eq!(b.len(), 64);
    assert_eq!(&b[0..4], &[10, 244, 1, 0]);
    assert_eq!(&b[16..20], &[10, 244, 2, 0]);
    assert_eq!(b[60], 0);
}

#[test]
fn short_or_odd_messages_are_errors_not_panics() {
    assert!(parse_policy(&[0u8; 10]).is_err());
    assert!(parse_sa(&[0u8; 100]).is_err());
    let mut b = policy_payload(&policy(PolicyDir::Out));
    b[40] = 99; // unknown family
    assert!(parse_policy(&b).is_err());
    b[160] = 7; // a socket policy direction
    assert_eq!(parse_policy(&b).unwrap(), None);
    // A truncated attribute is ignored, not read past the end.
    let mut c = policy_payload(&policy(PolicyDir::Out));
    c.truncate(168 + 10);
    assert_eq!(parse_policy(&c).unwrap().unwrap().tmpl, None);
}

#[test]
fn sa_is_read_from_the_kernels_layout() {
    let mut b = vec![0u8; 224];
    b[56..60].copy_from_slice(&[192, 0, 2, 2]);
    b[72..76].copy_from_slice(&0xc1a0_0001u32.to_be_bytes());
    b[76] = 50;
    b[80..84].copy_from_slice(&[192, 0, 2, 1]);
    b[160..168].copy_from_slice(&1234u64.to_ne_bytes());
    b[168..176].copy_from_slice(&7u64.to_ne_bytes());
    b[208..212].copy_from_slice(&11u32.to_ne_bytes());
    b[212..214].copy_from_slice(&2u16.to_ne_bytes());
    b[214] = 1;
    put_attr(&mut b, XFRMA_ENCAP, &[0u8; 24]);
    let sa = parse_sa(&b).unwrap();
    assert_eq!(
        sa,
        XfrmSa {
            src: ip("192.0.2.1"),
            dst: ip("192.0.2.2"),
            spi: 0xc1a0_0001,
            proto: 50,
            mode: 1,
            reqid: 11,
            encap: true,
            bytes: 1234,
            packets: 7,
        }
    );
}
