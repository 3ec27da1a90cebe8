#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Neighbour and FDB entries, cross-checked with `ip neigh` and `bridge fdb`
//! against the golden neigh-vxlan.txt and fdb-vxlan.txt.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::netns::{assert_batch_ok, in_vxlan_node, ip, run};
use weft_core::mac::Mac;
use weft_dataplane::netlink::NeighState;

const PEER_MAC: &str = "2e:1d:8b:97:dc:f0";

#[test]
fn permanent_neighbour_like_flannel() {
    in_vxlan_node(|nl, _, vx| async move {
        let mac: Mac = PEER_MAC.parse()?;
        let peer: IpAddr = "10.244.1.0".parse()?;
        nl.replace_neighbour(vx, peer, mac).await?;
        nl.replace_neighbour(vx, peer, mac).await?; // idempotent

        // Same line as the golden neigh-vxlan.txt.
        let shown = ip(&["neigh", "show", "dev", "flannel.1"])?;
        assert_eq!(
            shown.trim(),
            "10.244.1.0 lladdr 2e:1d:8b:97:dc:f0 PERMANENT"
        );

        // Besides ours, the kernel may hold its own multicast entries
        // (ff02::16 NOARP, for MLD): weft looks at permanent ones only.
        let listed: Vec<_> = nl
            .neighbours(vx)
            .await?
            .into_iter()
            .filter(|n| n.state == NeighState::Permanent)
            .collect();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(
            (listed[0].ip, listed[0].mac, listed[0].state),
            (peer, Some(mac), NeighState::Permanent)
        );

        // Replace moves it to a new MAC.
        let other: Mac = "0e:2a:00:00:00:02".parse()?;
        nl.replace_neighbour(vx, peer, other).await?;
        assert!(ip(&["neigh", "show", "dev", "flannel.1"])?.contains("0e:2a:00:00:00:02"));

        nl.delete_neighbour(vx, peer).await?;
        assert_eq!(ip(&["neigh", "show", "dev", "flannel.1"])?.trim(), "");
        let gone = nl.delete_neighbour(vx, peer).await.unwrap_err();
        assert!(gone.is_not_found(), "{gone}");

        // IPv6 (NDP) works the same way.
        let v6: IpAddr = "fd00:10:244:1::".parse()?;
        nl.replace_neighbour(vx, v6, mac).await?;
        assert!(
            ip(&["-6", "neigh", "show", "dev", "flannel.1"])?
                .contains("fd00:10:244:1:: lladdr 2e:1d:8b:97:dc:f0 PERMANENT")
        );
        nl.delete_neighbour(vx, v6).await?;
        Ok(())
    });
}

#[test]
fn self_fdb_entry_like_flannel() {
    in_vxlan_node(|nl, _, vx| async move {
        let mac: Mac = PEER_MAC.parse()?;
        let vtep: IpAddr = "192.0.2.2".parse()?;
        nl.replace_fdb(vx, mac, vtep).await?;
        nl.replace_fdb(vx, mac, vtep).await?; // idempotent

        // Same line as the golden fdb-vxlan.txt.
        let shown = run("bridge", &["fdb", "show", "dev", "flannel.1"])?;
        assert_eq!(
            shown.trim(),
            "2e:1d:8b:97:dc:f0 dst 192.0.2.2 self permanent"
        );

        let listed = nl.fdb(vx).await?;
        assert_eq!(listed.len(), 1, "{listed:?}");
        let e = &listed[0];
        assert_eq!(
            (e.mac, e.dst, e.is_self, e.permanent),
            (mac, Some(vtep), true, true)
        );

        nl.delete_fdb(vx, mac, vtep).await?;
        assert_eq!(
            run("bridge", &["fdb", "show", "dev", "flannel.1"])?.trim(),
            ""
        );
        let gone = nl.delete_fdb(vx, mac, vtep).await.unwrap_err();
        assert!(gone.is_not_found(), "{gone}");
        Ok(())
    });
}

#[test]
fn batches_of_neighbours_and_fdb_entries() {
    in_vxlan_node(|nl, _, vx| async move {
        let peers: Vec<(IpAddr, Mac, IpAddr)> = (0..600u32)
            .map(|i| {
                let subnet = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 244, 0, 0)) + (i << 8));
                let vtep = Ipv4Addr::from(u32::from(Ipv4Addr::new(192, 0, 2, 0)) + 1000 + i);
                let b = i.to_be_bytes();
                (
                    IpAddr::V4(subnet),
                    Mac([0x0e, 0x2a, b[0], b[1], b[2], b[3]]),
                    IpAddr::V4(vtep),
                )
            })
            .collect();
        let neighs: Vec<(IpAddr, Mac)> = peers.iter().map(|p| (p.0, p.1)).collect();
        let fdbs: Vec<(Mac, IpAddr)> = peers.iter().map(|p| (p.1, p.2)).collect();
        assert_batch_ok(&nl.replace_neighbours(vx, &neighs).await);
        assert_batch_ok(&nl.replace_fdbs(vx, &fdbs).await);
        let listed = nl.neighbours(vx).await?;
        let permanent = listed
            .iter()
            .filter(|n| n.state == NeighState::Permanent)
            .count();
        assert_eq!(permanent, 600, "{listed:?}");
        assert_eq!(nl.fdb(vx).await?.len(), 600);
        assert_eq!(
            ip(&["neigh", "show", "dev", "flannel.1"])?.lines().count(),
            600
        );
        assert_eq!(
            run("bridge", &["fdb", "show", "dev", "flannel.1"])?
                .lines()
                .count(),
            600
        );

        let ips: Vec<IpAddr> = neighs.iter().map(|n| n.0).collect();
        assert_batch_ok(&nl.delete_neighbours(vx, &ips).await);
        assert_batch_ok(&nl.delete_fdbs(vx, &fdbs).await);
        // Only the kernel's own multicast entries (ff02::16 NOARP, MLD) stay.
        let left = nl.neighbours(vx).await?;
        assert!(
            left.iter().all(|n| n.state == NeighState::Noarp),
            "{left:?}"
        );
        assert!(nl.fdb(vx).await?.is_empty());
        Ok(())
    });
}
