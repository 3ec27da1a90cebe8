//! The vxlan device's TX checksum offload as the planner sets it: the
//! node's facts through [`crate::offload_policy::decide`], net-conf first.

use super::*;

fn offload(conf: &str, kernel: &str, driver: Option<&str>) -> bool {
    let c = cfg(conf);
    let u = Underlay {
        driver: driver.map(str::to_owned),
        ..underlay()
    };
    let d = plan(&PlanInput {
        cfg: &c,
        own: &own(),
        underlay: &u,
        local: &local(),
        peers: &[],
        blackhole: false,
        kernel_release: kernel,
    })
    .unwrap();
    let [DeviceSpec::Vxlan(v)] = d.devices.as_slice() else {
        panic!("one vxlan device expected: {:?}", d.devices)
    };
    v.tx_checksum_offload
}

const DEFAULT: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#;
const OFF: &str =
    r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","TxChecksumOffload":false}}"#;
const ON: &str =
    r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","TxChecksumOffload":true}}"#;

#[test]
fn unset_follows_the_kernel_and_the_driver() {
    assert!(offload(DEFAULT, "6.1.0-28-amd64", Some("virtio_net")));
    assert!(offload(DEFAULT, "6.1.0-28-amd64", None));
    assert!(!offload(DEFAULT, "5.4.0-42-generic", Some("virtio_net")));
    assert!(!offload(DEFAULT, "6.8.0-45-generic", Some("vmxnet3")));
}

#[test]
fn net_conf_wins_both_ways() {
    assert!(!offload(OFF, "6.18.44", Some("veth")));
    assert!(offload(ON, "4.14.0", Some("vmxnet3")));
}
