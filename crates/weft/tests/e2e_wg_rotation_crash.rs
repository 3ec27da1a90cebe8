//! A crash mid-rotation leaves the node with one consistent key (issue 21):
//! the agent is SIGKILLed at each step of a rotation (a debug build stalls
//! there when `WEFTD_TEST_ROTATION_STALL` names the step) and restarted;
//! then its key file, its device (`wg show`) and its lease (the node's
//! backend-data annotation: a Kubernetes lab, as flannel peers read it)
//! hold the same key, the peers reach the node again on it, and no
//! temporary key file is left. On the userspace path here; the kernel
//! path, where the device outlives the agent with the old key, runs the
//! same cases in the VM (`vm_kernel.rs`). The cases are `common/rotation.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::rotation::kill_at;
use common::{TestLab, require_root};
use weft_lab::{Backend, StoreKind};

#[test]
fn sigkill_mid_rotation_leaves_one_consistent_key() {
    require_root();
    let mut lab = TestLab::up_with("rot-kill", Backend::Wireguard, |spec| {
        spec.store = StoreKind::Kube;
    });
    kill_at(&mut lab, "before-commit", false);
    kill_at(&mut lab, "after-commit", true);
    kill_at(&mut lab, "after-switch", true);
}
