//! `weftd --cni-conf-file` (issue 5): the agent installs flannel's conflist
//! itself, as K3s does, once its subnet.env is written; a restart leaves
//! an identical file alone, and a deleted or changed one is put back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::PathBuf;
use std::time::Duration;

use common::{TestLab, root, wait_until};
use weft_lab::Backend;
use weftd::agent::cni_conf::FLANNEL_CONFLIST;

/// Inside the agent's mount namespace `/run` is the node's own `run/`
/// directory (see weft-lab's runfs), so each node gets its own file and
/// the host's /etc/cni is never touched.
const IN_AGENT: &str = "/run/cni/net.d/10-flannel.conflist";

fn conflist_on_host(lab: &TestLab, node: &str) -> PathBuf {
    lab.lab()
        .node(node)
        .unwrap()
        .dir
        .join("run/cni/net.d/10-flannel.conflist")
}

#[test]
fn agent_installs_the_conflist_once_ready_and_keeps_it() {
    if !root() {
        return;
    }
    let flag = format!("--cni-conf-file={IN_AGENT}");
    let mut lab = TestLab::up_with("e2cni", Backend::HostGw, |spec| {
        spec.nodes = 1;
        spec.pods_per_node = 0;
        spec.agent_args = vec![flag];
    });
    // `up` returns once the agent is ready (subnet.env written, /readyz
    // true); by then the conflist is there, exactly flannel's.
    let path = conflist_on_host(&lab, "node1");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), FLANNEL_CONFLIST);
    let before = std::fs::metadata(&path).unwrap();
    assert_eq!(before.permissions().mode() & 0o777, 0o644);
    let dir_entries: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        dir_entries,
        ["10-flannel.conflist"],
        "no temporary file left"
    );

    // A restart finds the same content and does not touch the file: a
    // runtime watching the directory sees no event.
    lab.lab_mut().restart("node1").unwrap();
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(after.ino(), before.ino(), "the file was replaced");
    assert_eq!(after.modified().unwrap(), before.modified().unwrap());

    // Deleted or changed: back at the next resync (every 10 s).
    std::fs::remove_file(&path).unwrap();
    wait_until(Duration::from_secs(25), "the conflist to come back", || {
        std::fs::read_to_string(&path).is_ok_and(|t| t == FLANNEL_CONFLIST)
    });
    std::fs::write(&path, "{\"name\": \"someone-else\"}\n").unwrap();
    wait_until(
        Duration::from_secs(25),
        "the conflist to be restored",
        || std::fs::read_to_string(&path).is_ok_and(|t| t == FLANNEL_CONFLIST),
    );
    assert!(lab.lab().agent_status("node1").unwrap().ready);
}
