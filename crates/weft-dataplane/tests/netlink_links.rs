#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Links through the netlink layer, cross-checked with `ip -d -j link show`.

mod common;

use common::netns::{VTEP_MAC, flannel1_spec, in_new_netns, in_vxlan_node, ip, ip_json, underlay};
use weft_core::mac::Mac;
use weft_dataplane::netlink::{LinkKind, Netlink, NetlinkError, OperState};

#[test]
fn vxlan_device_matches_flannel() {
    in_vxlan_node(|nl, ul, vx| async move {
        // Read back with iproute2, the fields of the golden link-vxlan.txt.
        let j = ip_json(&["-d", "link", "show", "flannel.1"])?;
        let link = &j[0];
        assert_eq!(link["mtu"], 1450);
        assert_eq!(link["address"], VTEP_MAC);
        let data = &link["linkinfo"]["info_data"];
        assert_eq!(link["linkinfo"]["info_kind"], "vxlan");
        assert_eq!(data["id"], 1);
        assert_eq!(data["local"], "192.0.2.1");
        assert_eq!(data["link"], "eth0");
        assert_eq!(data["port"], 8472);
        assert_eq!(data["learning"], false);
        assert!(
            data.get("gbp").is_none(),
            "gbp set although not asked: {data}"
        );
        // The text form, as in the golden file.
        let text = ip(&["-d", "link", "show", "flannel.1"])?;
        assert!(
            text.contains(
                "vxlan id 1 local 192.0.2.1 dev eth0 srcport 0 0 dstport 8472 nolearning"
            ),
            "{text}"
        );
        assert!(text.contains("mtu 1450"), "{text}");

        // And through our own reading.
        let info = nl
            .link_by_name("flannel.1")
            .await?
            .expect("flannel.1 listed");
        assert_eq!(info.index, vx);
        assert_eq!(info.mtu, 1450);
        assert_eq!(info.mac, Some(VTEP_MAC.parse()?));
        assert!(info.admin_up && info.lower_up);
        assert_eq!(info.oper_state, OperState::Unknown);
        let v = info.vxlan().expect("vxlan kind");
        assert_eq!((v.vni, v.port, v.underlay_index), (1, 8472, Some(ul)));
        assert_eq!(v.local, Some("192.0.2.1".parse()?));
        assert!(!v.learning && !v.gbp);
        assert_eq!(
            nl.link_by_index(vx).await?.map(|l| l.name),
            Some("flannel.1".into())
        );
        assert!(nl.links().await?.iter().any(|l| l.name == "flannel.1"));
        Ok(())
    });
}

#[test]
fn vxlan_options_gbp_learning_and_ipv6() {
    in_new_netns(|| async {
        let nl = Netlink::connect()?;
        let ul = underlay(&nl).await?;
        nl.add_address(ul, "2001:db8::1/64".parse()?).await?;
        let mut spec = flannel1_spec(ul)?;
        spec.gbp = true;
        spec.learning = true;
        spec.mac = None;
        spec.port = 0; // kernel default
        let vx = nl.create_vxlan(&spec).await?;
        let data = &ip_json(&["-d", "link", "show", "flannel.1"])?[0]["linkinfo"]["info_data"];
        assert_eq!(data["gbp"], true);
        assert_eq!(data["learning"], true);
        assert_eq!(data["port"], 8472);
        let v = nl.link_by_index(vx).await?.unwrap();
        assert!(v.vxlan().unwrap().gbp && v.vxlan().unwrap().learning);

        let mut v6 = flannel1_spec(ul)?;
        v6.name = "flannel-v6.1".into();
        v6.local = "2001:db8::1".parse()?;
        nl.create_vxlan(&v6).await?;
        let data = &ip_json(&["-d", "link", "show", "flannel-v6.1"])?[0]["linkinfo"]["info_data"];
        assert_eq!(data["local6"], "2001:db8::1");
        let info = nl.link_by_name("flannel-v6.1").await?.unwrap();
        assert_eq!(info.vxlan().unwrap().local, Some("2001:db8::1".parse()?));
        Ok(())
    });
}

#[test]
fn mtu_and_mac_change_in_place() {
    in_vxlan_node(|nl, _, vx| async move {
        nl.set_link_mtu(vx, 1400).await?;
        assert_eq!(ip_json(&["link", "show", "flannel.1"])?[0]["mtu"], 1400);
        assert_eq!(nl.link_by_index(vx).await?.unwrap().mtu, 1400);

        let mac: Mac = "0e:2a:01:02:03:04".parse()?;
        nl.set_link_mac(vx, mac).await?;
        assert_eq!(
            ip_json(&["link", "show", "flannel.1"])?[0]["address"],
            "0e:2a:01:02:03:04"
        );

        // Delete and recreate with a different MTU, as the reconciler does
        // for an incompatible device.
        nl.delete_link(vx).await?;
        assert!(nl.link_by_name("flannel.1").await?.is_none());
        let mut spec = flannel1_spec(nl.link_by_name("eth0").await?.unwrap().index)?;
        spec.mtu = 1370;
        let vx = nl.create_vxlan(&spec).await?;
        assert_eq!(ip_json(&["link", "show", "flannel.1"])?[0]["mtu"], 1370);
        nl.set_link_down(vx).await?;
        assert!(!nl.link_by_index(vx).await?.unwrap().admin_up);
        Ok(())
    });
}

#[test]
fn errors_are_sorted() {
    in_vxlan_node(|nl, ul, vx| async move {
        let again = nl.create_vxlan(&flannel1_spec(ul)?).await.unwrap_err();
        assert!(matches!(again, NetlinkError::Exists { .. }), "{again}");
        assert!(again.to_string().contains("flannel.1"), "{again}");

        nl.delete_link(vx).await?;
        let gone = nl.delete_link(vx).await.unwrap_err();
        assert!(gone.is_not_found(), "{gone}");
        assert!(nl.link_by_index(vx).await?.is_none());
        assert!(nl.set_link_up(vx).await.unwrap_err().is_not_found());

        // This kernel has no WireGuard module (LAB.md): the cue to fall back
        // to userspace WireGuard.
        match nl.create_wireguard("flannel-wg", Some(1420)).await {
            Err(e @ NetlinkError::NotSupported { .. }) => {
                let text = e.to_string();
                assert!(text.contains("wireguard"), "{text}");
            }
            Err(e) => panic!("unexpected error: {e}"),
            Ok(index) => {
                eprintln!("this kernel has WireGuard; checking the device instead");
                assert_eq!(
                    nl.link_by_index(index).await?.unwrap().kind,
                    LinkKind::Wireguard
                );
            }
        }
        Ok(())
    });
}

#[test]
fn ipip_device_or_not_supported() {
    in_new_netns(|| async {
        let nl = Netlink::connect()?;
        underlay(&nl).await?;
        match nl
            .create_ipip("flannel.ipip", "192.0.2.1".parse()?, 1480)
            .await
        {
            Ok(index) => {
                let info = nl.link_by_index(index).await?.unwrap();
                assert_eq!(info.ipip().unwrap().local, Some("192.0.2.1".parse()?));
                assert_eq!(info.mtu, 1480);
                let data =
                    &ip_json(&["-d", "link", "show", "flannel.ipip"])?[0]["linkinfo"]["info_data"];
                assert_eq!(data["local"], "192.0.2.1");
                assert_eq!(data["remote"], "any");
            }
            Err(e @ NetlinkError::NotSupported { .. }) => {
                assert!(e.to_string().contains("ipip"), "{e}");
                eprintln!("skipping the ipip read-back: this kernel has no ipip ({e})");
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
        Ok(())
    });
}

#[test]
fn lab_links_bridge_veth_rename_and_netns() {
    in_new_netns(|| async {
        let nl = Netlink::connect()?;
        let br = nl.create_bridge("br0", Some(1500)).await?;
        nl.create_veth("n1", "n1-br").await?;
        let port = nl.link_by_name("n1-br").await?.unwrap();
        assert_eq!(port.kind, LinkKind::Veth);
        nl.set_link_controller(port.index, Some(br)).await?;
        assert_eq!(
            nl.link_by_index(port.index).await?.unwrap().controller,
            Some(br)
        );
        assert_eq!(ip_json(&["link", "show", "n1-br"])?[0]["master"], "br0");
        assert_eq!(nl.link_by_index(br).await?.unwrap().kind, LinkKind::Bridge);

        let n1 = nl.link_by_name("n1").await?.unwrap();
        nl.rename_link(n1.index, "eth9").await?;
        assert_eq!(nl.link_by_index(n1.index).await?.unwrap().name, "eth9");

        // Hand one end to another namespace: it disappears from this one.
        let other = std::thread::spawn(|| -> anyhow::Result<std::fs::File> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
            Ok(std::fs::File::open("/proc/thread-self/ns/net")?)
        })
        .join()
        .unwrap()?;
        use std::os::fd::AsFd;
        nl.move_link_to_netns(n1.index, other.as_fd()).await?;
        assert!(nl.link_by_name("eth9").await?.is_none());
        Ok(())
    });
}
