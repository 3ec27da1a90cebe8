//! Each node's own `/run`, as a real node has.
//!
//! Namespaces share the filesystem, and some paths are fixed by flannel's
//! contract rather than by flags: `/run/flannel/wgkey` (the WireGuard
//! private key) and `/var/run/wireguard/<ifname>.sock` (userspace
//! WireGuard's control socket). Without separation every node would share
//! one key and one socket. So every agent runs in a private mount
//! namespace where `/run` is its node's `run/` directory (which survives
//! agent restarts, as `/run` survives a flanneld restart), with the lab's
//! real state directory `/run/weft-lab` mounted back inside so the paths
//! on its command line still work.
//!
//! Nothing changes for the host: the mounts exist only in the agent's
//! mount namespace (made private first, so nothing propagates back), and
//! the namespace ends with the agent. The copies of `/run/netns/*` mounts
//! that a new mount namespace inherits do not keep other labs' network
//! namespaces alive: unlinking `/run/netns/<ns>` (as `down` and
//! `ip netns del` do) detaches its mounts in every mount namespace.

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::Path;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

use crate::LabError;
use crate::error::IoContext as _;
use crate::names::STATE_ROOT;

/// Moves the calling thread into a new mount namespace whose `/run` is
/// `node_run`. Call it on a dedicated thread (see [`crate::in_netns`]) and
/// spawn the agent from there: the child inherits the namespace.
pub fn enter_private_run(node_run: &Path) -> Result<(), LabError> {
    std::fs::create_dir_all(node_run).ctx(|| format!("cannot create {}", node_run.display()))?;
    unshare(CloneFlags::CLONE_NEWNS)
        .ctx(|| "cannot create a mount namespace for the agent".to_owned())?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .ctx(|| "cannot make the agent's mounts private".to_owned())?;
    // The way back to the lab's real state once /run is covered. Opened
    // after unshare: a bind mount's source must be in the new namespace.
    let lab_root = File::open(STATE_ROOT).ctx(|| format!("cannot open {STATE_ROOT}"))?;
    mount(
        Some(node_run),
        "/run",
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .ctx(|| format!("cannot mount {} on /run for the agent", node_run.display()))?;
    std::fs::create_dir_all(STATE_ROOT)
        .ctx(|| format!("cannot create {STATE_ROOT} in the agent's /run"))?;
    let source = format!("/proc/thread-self/fd/{}", lab_root.as_raw_fd());
    mount(
        Some(source.as_str()),
        STATE_ROOT,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .ctx(|| format!("cannot mount {STATE_ROOT} back into the agent's /run"))
}
