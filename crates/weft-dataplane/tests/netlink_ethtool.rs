#![allow(clippy::unwrap_used, clippy::expect_used)]
//! TX checksum offload through ethtool netlink (flannel #1279), cross-checked
//! with `ethtool -k` when the Debian `ethtool` package is installed.

mod common;

use common::netns::{in_vxlan_node, run};
use weft_dataplane::drvinfo;

/// `ethtool -k <dev>`'s line for tx-checksum-ip-generic, or `None` without
/// the ethtool binary.
fn ethtool_says(dev: &str) -> Option<String> {
    let out = run("ethtool", &["-k", dev]).ok()?;
    out.lines()
        .map(str::trim)
        .find(|l| l.starts_with("tx-checksum-ip-generic:"))
        .map(str::to_string)
}

#[test]
fn tx_checksum_off_and_on_again() {
    in_vxlan_node(|nl, _, _| async move {
        assert!(
            nl.tx_checksum("flannel.1").await?,
            "a new vxlan device offloads tx checksums"
        );

        nl.set_tx_checksum("flannel.1", false).await?;
        assert!(!nl.tx_checksum("flannel.1").await?);
        let line = ethtool_says("flannel.1")
            .expect("needs ethtool for the cross-check: apt-get install -y ethtool (scripts/install-deps.sh does)");
        assert_eq!(line, "tx-checksum-ip-generic: off");
        nl.set_tx_checksum("flannel.1", false).await?; // idempotent

        nl.set_tx_checksum("flannel.1", true).await?;
        assert!(nl.tx_checksum("flannel.1").await?);
        if let Some(line) = ethtool_says("flannel.1") {
            assert_eq!(line, "tx-checksum-ip-generic: on");
        }
        Ok(())
    });
}

#[test]
fn ethtool_errors() {
    in_vxlan_node(|nl, _, _| async move {
        let missing = nl.set_tx_checksum("nosuchdev", false).await.unwrap_err();
        assert!(missing.is_not_found(), "{missing}");
        // A fixed feature cannot change: the kernel accepts the wish, we
        // notice it was not granted.
        let fixed = nl
            .set_ethtool_feature("flannel.1", "tx-checksum-ipv4", true)
            .await
            .unwrap_err();
        assert!(fixed.is_not_supported(), "{fixed}");
        assert_eq!(
            nl.ethtool_feature("flannel.1", "tx-checksum-ipv4").await?,
            Some(false)
        );
        Ok(())
    });
}

/// The underlay's driver, which the TX checksum offload choice reads
/// (`weft_core::offload_policy`), cross-checked with `ethtool -i`.
#[test]
fn drivers_as_ethtool_names_them() {
    in_vxlan_node(|_nl, _, _| async move {
        assert_eq!(drvinfo::driver("eth0")?.as_deref(), Some("veth"));
        assert_eq!(drvinfo::driver("flannel.1")?.as_deref(), Some("vxlan"));
        if let Ok(out) = run("ethtool", &["-i", "eth0"]) {
            assert!(out.lines().any(|l| l == "driver: veth"), "{out}");
        }
        let missing = drvinfo::driver("nosuchdev").unwrap_err();
        assert!(
            matches!(missing, drvinfo::DrvInfoError::NoSuchDevice(_)),
            "{missing}"
        );
        // Whatever lo says, it is an answer, not an error.
        drvinfo::driver("lo")?;
        Ok(())
    });
}
