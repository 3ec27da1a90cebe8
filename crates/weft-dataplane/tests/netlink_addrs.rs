#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Addresses through the netlink layer, cross-checked with `ip -j addr`.

mod common;

use common::netns::{in_new_netns, in_vxlan_node, ip_json};
use ipnet::IpNet;
use weft_dataplane::netlink::{Netlink, Scope};

/// The addresses `ip` reports on `dev`, as "addr/len".
fn ip_addrs(dev: &str) -> anyhow::Result<Vec<String>> {
    let j = ip_json(&["addr", "show", "dev", dev])?;
    Ok(j[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect())
}

#[test]
fn add_is_idempotent_list_and_delete() {
    in_vxlan_node(|nl, _, vx| async move {
        let v4: IpNet = "10.244.6.0/32".parse()?;
        nl.add_address(vx, v4).await?;
        nl.add_address(vx, v4).await?; // replace: no EEXIST
        let v6: IpNet = "fd00:10:244:6::/128".parse()?;
        nl.add_address(vx, v6).await?;

        let ours = nl.addresses(vx).await?;
        assert_eq!(
            ours.iter().filter(|a| a.prefix == v4).count(),
            1,
            "{ours:?}"
        );
        let a = ours.iter().find(|a| a.prefix == v4).unwrap();
        assert_eq!(a.scope, Scope::Universe);
        assert!(a.permanent);
        assert!(ours.iter().any(|a| a.prefix == v6));
        // The kernel's own fe80:: link-local address is listed with link scope.
        assert!(ours.iter().all(|a| a.index == vx));

        let seen = ip_addrs("flannel.1")?;
        assert!(seen.contains(&"10.244.6.0/32".to_string()), "{seen:?}");
        assert!(
            seen.contains(&"fd00:10:244:6::/128".to_string()),
            "{seen:?}"
        );

        nl.del_address(vx, v4).await?;
        nl.del_address(vx, v6).await?;
        assert!(
            !ip_addrs("flannel.1")?
                .iter()
                .any(|a| a.starts_with("10.244.6.0") || a.starts_with("fd00"))
        );
        let gone = nl.del_address(vx, v4).await.unwrap_err();
        assert!(gone.is_not_found(), "{gone}");
        Ok(())
    });
}

#[test]
fn ipv4_subnet_address_gets_a_broadcast() {
    in_new_netns(|| async {
        let nl = Netlink::connect()?;
        let br = nl.create_bridge("cni0", None).await?;
        nl.add_address(br, "10.244.6.1/24".parse()?).await?;
        let j = ip_json(&["addr", "show", "dev", "cni0"])?;
        let info = &j[0]["addr_info"][0];
        assert_eq!(info["local"], "10.244.6.1");
        assert_eq!(info["broadcast"], "10.244.6.255");
        let listed = nl.addresses(br).await?;
        let v4: Vec<IpNet> = listed
            .iter()
            .map(|a| a.prefix)
            .filter(|p| matches!(p, IpNet::V4(_)))
            .collect();
        assert_eq!(v4, vec!["10.244.6.1/24".parse::<IpNet>()?]);
        Ok(())
    });
}
