#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Routes through the netlink layer, cross-checked with `ip route`.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::netns::{assert_batch_ok, in_new_netns, in_vxlan_node, ip, ip_json};
use ipnet::IpNet;
use weft_dataplane::netlink::{
    Family, Netlink, NetlinkError, RouteKind, RouteSpec, Scope, WEFT_ROUTE_PROTOCOL,
};

/// flannel's per-peer vxlan route: `10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink`.
fn peer_route(vx: u32) -> RouteSpec {
    RouteSpec::unicast("10.244.2.0/24".parse().unwrap())
        .via("10.244.2.0".parse().unwrap())
        .dev(vx)
        .onlink()
}

#[test]
fn onlink_route_replace_list_delete() {
    in_vxlan_node(|nl, _, vx| async move {
        let route = peer_route(vx);
        nl.replace_route(&route).await?;
        nl.replace_route(&route).await?; // idempotent

        let ours: Vec<_> = nl
            .routes(Family::V4)
            .await?
            .into_iter()
            .filter(|r| r.protocol == WEFT_ROUTE_PROTOCOL)
            .collect();
        assert_eq!(ours.len(), 1, "{ours:?}");
        let r = &ours[0];
        assert_eq!(r.dst, "10.244.2.0/24".parse::<IpNet>()?);
        assert_eq!(r.gateway, Some("10.244.2.0".parse()?));
        assert_eq!(r.oif, Some(vx));
        assert!(r.onlink);
        assert_eq!(
            (r.kind, r.scope, r.table),
            (RouteKind::Unicast, Scope::Universe, 254)
        );
        assert_eq!(RouteSpec::from(r), route);

        // iproute2 sees the same route, with our protocol number; the line
        // matches routes-vxlan.txt with `proto 87` for `proto boot`.
        let shown = ip(&["-d", "route", "show", "10.244.2.0/24"])?;
        assert_eq!(
            shown.trim(),
            "unicast 10.244.2.0/24 via 10.244.2.0 dev flannel.1 proto 87 scope global onlink"
        );
        let by_proto = ip(&["route", "show", "proto", "87"])?;
        assert_eq!(
            by_proto.trim(),
            "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"
        );

        nl.delete_route(&route).await?;
        assert_eq!(ip(&["route", "show", "proto", "87"])?.trim(), "");
        let gone = nl.delete_route(&route).await.unwrap_err();
        assert!(gone.is_not_found(), "{gone}");
        Ok(())
    });
}

#[test]
fn delete_never_touches_routes_of_another_protocol() {
    in_vxlan_node(|nl, _, vx| async move {
        ip(&[
            "route",
            "add",
            "10.244.3.0/24",
            "via",
            "10.244.3.0",
            "dev",
            "flannel.1",
            "onlink",
            "proto",
            "boot",
        ])?;
        let ours = RouteSpec::unicast("10.244.3.0/24".parse()?)
            .via("10.244.3.0".parse()?)
            .dev(vx)
            .onlink();
        assert!(nl.delete_route(&ours).await.unwrap_err().is_not_found());
        let kept = ip(&["-d", "route", "show", "10.244.3.0/24"])?;
        assert!(kept.contains("proto boot"), "{kept}");
        Ok(())
    });
}

#[test]
fn blackhole_route() {
    in_new_netns(|| async {
        let nl = Netlink::connect()?;
        let bh = RouteSpec::blackhole("10.244.6.0/24".parse()?);
        nl.replace_route(&bh).await?;
        nl.replace_route(&bh).await?;
        assert_eq!(
            ip(&["route", "show", "proto", "87"])?.trim(),
            "blackhole 10.244.6.0/24"
        );
        let listed = nl.routes(Family::V4).await?;
        let r = listed.iter().find(|r| r.dst == bh.dst).unwrap();
        assert_eq!(r.kind, RouteKind::Blackhole);
        nl.delete_route(&bh).await?;
        assert!(nl.delete_route(&bh).await.unwrap_err().is_not_found());
        Ok(())
    });
}

#[test]
fn errors_name_the_route_and_the_reason() {
    in_vxlan_node(|nl, ul, vx| async move {
        // Without onlink the gateway must be reachable: it is not.
        let bad = RouteSpec::unicast("10.244.2.0/24".parse()?)
            .via("10.244.2.0".parse()?)
            .dev(vx);
        let e = nl.replace_route(&bad).await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("replacing route 10.244.2.0/24 via 10.244.2.0 dev "),
            "{text}"
        );
        assert!(
            matches!(e, NetlinkError::Kernel { errno: 101, .. }),
            "{e:?}"
        );
        // host-gw's route via a peer on the underlay works.
        let hostgw = RouteSpec::unicast("10.244.2.0/24".parse()?)
            .via("192.0.2.2".parse()?)
            .dev(ul);
        nl.replace_route(&hostgw).await?;
        // A missing device is NotFound.
        let nodev = RouteSpec::unicast("10.244.9.0/24".parse()?).dev(9999);
        assert!(nl.replace_route(&nodev).await.unwrap_err().is_not_found());
        Ok(())
    });
}

#[test]
fn ipv6_route() {
    in_vxlan_node(|nl, ul, _| async move {
        nl.add_address(ul, "2001:db8::1/64".parse()?).await?;
        let mut v6 = common::netns::flannel1_spec(ul)?;
        v6.name = "flannel-v6.1".into();
        v6.local = "2001:db8::1".parse()?;
        let vx6 = nl.create_vxlan(&v6).await?;
        nl.set_link_up(vx6).await?;
        let r = RouteSpec::unicast("fd00:10:244:2::/64".parse()?)
            .via("fd00:10:244:2::".parse()?)
            .dev(vx6)
            .onlink();
        nl.replace_route(&r).await?;
        nl.replace_route(&r).await?;
        let shown = ip(&["-6", "route", "show", "proto", "87"])?;
        assert!(
            shown.contains("fd00:10:244:2::/64 via fd00:10:244:2:: dev flannel-v6.1"),
            "{shown}"
        );
        let listed = nl.routes(Family::V6).await?;
        assert!(listed.iter().any(|x| RouteSpec::from(x) == r), "{listed:?}");
        nl.delete_route(&r).await?;
        assert!(nl.delete_route(&r).await.unwrap_err().is_not_found());
        Ok(())
    });
}

#[test]
fn metric_round_trips() {
    in_vxlan_node(|nl, _, vx| async move {
        let r = peer_route(vx).metric(17);
        nl.replace_route(&r).await?;
        let shown = ip(&["route", "show", "proto", "87"])?;
        assert_eq!(
            shown.trim(),
            "10.244.2.0/24 via 10.244.2.0 dev flannel.1 metric 17 onlink"
        );
        let listed = nl.routes(Family::V4).await?;
        assert!(listed.iter().any(|x| RouteSpec::from(x) == r), "{listed:?}");
        nl.delete_route(&r).await?;
        Ok(())
    });
}

#[test]
fn route_get_tells_onlink_peers() {
    in_vxlan_node(|nl, ul, _| async move {
        // A peer on the underlay segment: one route, no gateway.
        let on = nl.route_get("192.0.2.2".parse()?).await?.unwrap();
        assert_eq!((on.gateway, on.oif), (None, Some(ul)));
        assert_eq!(on.prefsrc, Some("192.0.2.1".parse()?));
        // Behind a router: a gateway.
        nl.replace_route(
            &RouteSpec::unicast("198.51.100.0/24".parse()?).via("192.0.2.254".parse()?),
        )
        .await?;
        let via = nl.route_get("198.51.100.7".parse()?).await?.unwrap();
        assert_eq!(via.gateway, Some("192.0.2.254".parse()?));
        // No route at all.
        assert_eq!(nl.route_get("203.0.113.1".parse()?).await?, None);
        Ok(())
    });
}

#[test]
fn batch_of_1000_routes_all_appear() {
    in_vxlan_node(|nl, _, vx| async move {
        let routes: Vec<RouteSpec> = (0..1000u32)
            .map(|i| {
                let net = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + (i << 8));
                RouteSpec::unicast(IpNet::new(IpAddr::V4(net), 24).unwrap())
                    .via(IpAddr::V4(net))
                    .dev(vx)
                    .onlink()
            })
            .collect();
        let results = nl.replace_routes(&routes).await;
        assert_eq!(results.len(), 1000);
        assert_batch_ok(&results);
        let listed = nl.routes(Family::V4).await?;
        assert_eq!(
            listed
                .iter()
                .filter(|r| r.protocol == WEFT_ROUTE_PROTOCOL)
                .count(),
            1000
        );
        let shown = ip_json(&["route", "show", "proto", "87"])?;
        assert_eq!(shown.as_array().unwrap().len(), 1000);

        // Per-item errors land on the right item: one bad route in the middle.
        let mut mixed = routes[..10].to_vec();
        mixed[5] = RouteSpec::unicast("10.99.0.0/24".parse()?)
            .via("10.99.0.1".parse()?)
            .dev(vx);
        let results = nl.replace_routes(&mixed).await;
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.is_err(), i == 5, "item {i}: {r:?}");
        }
        assert!(
            results[5]
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("10.99.0.0/24")
        );

        assert_batch_ok(&nl.delete_routes(&routes).await);
        assert_eq!(ip(&["route", "show", "proto", "87"])?.trim(), "");
        let again = nl.delete_routes(&routes[..3]).await;
        assert!(again.iter().all(|r| r.as_ref().unwrap_err().is_not_found()));
        Ok(())
    });
}

#[test]
fn a_batch_that_fails_entirely_reports_every_item() {
    in_vxlan_node(|nl, _, vx| async move {
        // No onlink: every gateway is unreachable, every item fails with an
        // extended-ack message (the largest answers the kernel queues).
        let bad: Vec<RouteSpec> = (0..3000u32)
            .map(|i| {
                let net = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + (i << 8));
                RouteSpec::unicast(IpNet::new(IpAddr::V4(net), 24).unwrap())
                    .via(IpAddr::V4(net))
                    .dev(vx)
            })
            .collect();
        let results = nl.replace_routes(&bad).await;
        for (i, r) in results.iter().enumerate() {
            match r {
                Err(NetlinkError::Kernel { errno: 101, .. }) => {}
                other => panic!("item {i}: {other:?}"),
            }
        }
        // The connection survived.
        assert!(nl.link_by_index(vx).await?.is_some());
        Ok(())
    });
}
