//! Named network namespaces, made natively and compatible with `ip netns`.
//!
//! A named namespace is a bind mount of a namespace file onto
//! `/run/netns/<name>`: the mount keeps the namespace alive with no process
//! in it, and `ip netns list/exec` find it there, so people can look around
//! a lab with the tools they know.
//!
//! Work inside a namespace runs on a dedicated thread through
//! `weft_dataplane::netns` (the one helper the agent's tests, `weft check`
//! and the benchmarks use too): the caller's threads never change
//! namespace.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use weft_dataplane::netlink::Netlink;
use weft_dataplane::netns::{self as ns, Netns};

use crate::LabError;
use crate::error::IoContext as _;
use crate::names::NETNS_DIR;

/// `/run/netns/<name>`.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Whether `/run/netns/<name>` exists (mounted or a leftover empty file).
pub fn netns_exists(name: &str) -> bool {
    netns_path(name).exists()
}

/// Creates the named namespace `name`; fails if it already exists (the
/// caller removes leftovers first, so an existing one is somebody else's).
pub fn create_netns(name: &str) -> Result<(), LabError> {
    std::fs::create_dir_all(NETNS_DIR).ctx(|| format!("cannot create {NETNS_DIR}"))?;
    let path = netns_path(name);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .ctx(|| {
            format!(
                "cannot create {} for network namespace {name}",
                path.display()
            )
        })?;
    let mounted = ns::on_thread(&Netns::Fresh, || {
        mount(
            Some("/proc/thread-self/ns/net"),
            &path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .ctx(|| {
            format!(
                "cannot bind-mount network namespace {name} onto {}",
                path.display()
            )
        })
    })
    .map_err(|cause| LabError::Netns {
        what: format!("creating network namespace {name}"),
        cause,
    })
    .and_then(|mounted| mounted);
    if mounted.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    mounted
}

/// Removes the named namespace `name` (unmount, then unlink). Returns
/// whether there was anything to remove; a missing one is not an error, so
/// teardown is idempotent. The namespace itself disappears once no process
/// is left in it.
pub fn remove_netns(name: &str) -> Result<bool, LabError> {
    let path = netns_path(name);
    if !path.exists() {
        return Ok(false);
    }
    match umount2(&path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (a crash between create and mount).
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => {
            return Err(LabError::sys(
                format!("cannot unmount {}", path.display()),
                e,
            ));
        }
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(LabError::io(format!("cannot remove {}", path.display()), e)),
    }
}

/// The names of every named namespace on the host.
pub fn list_netns() -> Result<Vec<String>, LabError> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LabError::io(format!("cannot list {NETNS_DIR}"), e)),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Opens `/run/netns/<name>`, for `setns` or for moving a link there.
pub fn open_netns(name: &str) -> Result<File, LabError> {
    let path = netns_path(name);
    File::open(&path).ctx(|| format!("cannot open network namespace {name} ({})", path.display()))
}

/// Runs `f` on a dedicated thread that has entered namespace `name`.
///
/// Everything `f` opens (sockets, netlink connections) and spawns (child
/// processes inherit the spawning thread's namespace) belongs to `name`.
pub fn in_netns<T: Send>(
    name: &str,
    f: impl FnOnce() -> Result<T, LabError> + Send,
) -> Result<T, LabError> {
    ns::on_thread(&Netns::At(netns_path(name)), f)
        .map_err(|cause| LabError::Netns {
            what: format!("working in network namespace {name}"),
            cause,
        })
        .and_then(|r| r)
}

/// Runs the async `f` with a netlink connection inside namespace `name`.
///
/// The runtime is a current-thread one built after entering, so the
/// netlink socket and its driver task both live in `name`.
pub fn with_netlink<T, F, Fut>(name: &str, f: F) -> Result<T, LabError>
where
    T: Send,
    F: FnOnce(Netlink) -> Fut + Send,
    Fut: Future<Output = Result<T, LabError>>,
{
    ns::with_runtime(&Netns::At(netns_path(name)), || async move {
        let netlink = Netlink::connect()
            .ctx(|| format!("cannot open netlink in network namespace {name}"))?;
        f(netlink).await
    })
    .map_err(|cause| LabError::Netns {
        what: format!("working in network namespace {name}"),
        cause,
    })
    .and_then(|r| r)
}

/// Spawns `command` inside namespace `name`; the child stays there for its
/// whole life (it inherits the spawning thread's namespace), without any
/// `pre_exec` code.
pub fn spawn_in(name: &str, command: &mut Command) -> Result<Child, LabError> {
    let program = command.get_program().to_string_lossy().into_owned();
    in_netns(name, || {
        command
            .spawn()
            .ctx(|| format!("cannot start {program} in network namespace {name}"))
    })
}
