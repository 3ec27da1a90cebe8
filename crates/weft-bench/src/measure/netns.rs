//! Namespaces the benchmark makes for itself, outside any lab: throwaway
//! anonymous ones (for timing the kernel alone, with nothing else in the
//! way) and named pod namespaces for the CNI measurements.
//!
//! A network namespace belongs to a thread, so everything here runs on a
//! dedicated thread that enters the namespace first; the caller's threads
//! never change namespace and the root namespace is never touched.

use std::fs::OpenOptions;
use std::future::Future;
use std::path::PathBuf;

use anyhow::{Context as _, Result, anyhow};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use weft_dataplane::netlink::Netlink;

/// Runs `f` on a new thread inside a new, empty network namespace. The
/// namespace disappears when the thread ends (nothing else refers to it).
pub fn in_fresh_netns<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET).context("cannot create a network namespace")?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(anyhow!("a benchmark thread panicked")))
    })
}

/// Runs the async `f` with a netlink connection in a new, empty network
/// namespace (current-thread runtime built after entering it, so the
/// socket and its driver live there).
pub fn with_fresh_netlink<T, F, Fut>(f: F) -> Result<T>
where
    T: Send,
    F: FnOnce(Netlink) -> Fut + Send,
    Fut: Future<Output = Result<T>>,
{
    in_fresh_netns(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let nl = Netlink::connect()?;
            f(nl).await
        })
    })
}

/// Creates the named namespace `/run/netns/<name>` (as `ip netns add`).
/// Callers name it inside a lab's pattern (`<lab>-node1-podN`) so that the
/// lab's teardown removes it even if the benchmark is interrupted.
pub fn create_named(name: &str) -> Result<()> {
    let path = PathBuf::from("/run/netns").join(name);
    std::fs::create_dir_all("/run/netns")?;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let made = in_fresh_netns(|| {
        mount(
            Some("/proc/thread-self/ns/net"),
            &path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| format!("cannot bind-mount a namespace on {}", path.display()))
    });
    if made.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    made
}

/// Removes a namespace made by [`create_named`]; a missing one is fine.
pub fn remove_named(name: &str) -> Result<()> {
    let path = PathBuf::from("/run/netns").join(name);
    if !path.exists() {
        return Ok(());
    }
    let _ = umount2(&path, MntFlags::MNT_DETACH);
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))
}
