//! Round trips: the message weft sends to create a link, encoded to bytes
//! and decoded as the kernel's answer would be, reads back as the link
//! weft asked for — so the compatibility check ("can this flannel.1 be
//! kept?") compares like with like.

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{Emitable, Parseable};
use netlink_packet_route::link::LinkMessage;
use weft_core::mac::Mac;

use super::{LinkKind, VxlanLinkSpec, ipip, link_of, vxlan};

fn through_the_wire(message: &LinkMessage) -> LinkMessage {
    let mut bytes = vec![0u8; message.buffer_len()];
    message.emit(&mut bytes);
    LinkMessage::parse(bytes.as_slice())
        .unwrap_or_else(|e| panic!("our own message does not parse: {e}"))
}

#[test]
fn a_vxlan_device_reads_back_as_asked() {
    for (local, port, gbp) in [
        (IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 8472, false),
        (
            "2001:db8::1".parse().unwrap_or_else(|_| unreachable!()),
            4789,
            true,
        ),
    ] {
        let spec = VxlanLinkSpec {
            name: "flannel.1".into(),
            vni: 1,
            port,
            local,
            underlay_index: Some(2),
            learning: false,
            gbp,
            mtu: 1450,
            mac: Some(Mac([0x02, 0x42, 0, 0, 0, 1])),
        };
        let link = link_of(through_the_wire(&vxlan::create_message(&spec)))
            .unwrap_or_else(|| panic!("no link"));
        assert_eq!(
            (link.name.as_str(), link.mtu, link.mac),
            ("flannel.1", 1450, spec.mac)
        );
        let v = link
            .vxlan()
            .unwrap_or_else(|| panic!("not vxlan: {:?}", link.kind));
        assert_eq!(
            (v.vni, v.port, v.local, v.underlay_index, v.learning, v.gbp),
            (1, port, Some(local), Some(2), false, gbp)
        );
    }
}

#[test]
fn an_ipip_device_reads_back_as_asked() {
    let local = Ipv4Addr::new(192, 0, 2, 1);
    let link = link_of(through_the_wire(&ipip::create_message(
        "flannel.ipip",
        local,
        1480,
    )))
    .unwrap_or_else(|| panic!("no link"));
    assert_eq!((link.name.as_str(), link.mtu), ("flannel.ipip", 1480));
    assert!(
        matches!(&link.kind, LinkKind::Ipip(i) if i.local == Some(local) && i.remote.is_none())
    );
}
