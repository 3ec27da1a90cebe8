//! Working inside a network namespace: one way for the lab, `weft check`'s
//! probes, the benchmarks and the tests.
//!
//! A network namespace belongs to a *thread*: `unshare`/`setns` act on the
//! calling thread only. So the work always runs on a dedicated thread that
//! enters the namespace and ends afterwards, and the caller's threads (and
//! the tokio runtimes of library users) never change namespace. A netlink
//! socket binds to the namespace of the thread that opens it, so
//! [`with_runtime`] builds its runtime *after* entering, on that thread.

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns, unshare};

/// Which namespace to work in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Netns {
    /// A new, empty one, gone when the thread ends (unless something keeps
    /// it: a bind mount, a process, an open file).
    Fresh,
    /// An existing one, by its file (`/run/netns/<name>`,
    /// `/proc/<pid>/ns/net`).
    At(PathBuf),
}

/// Why a namespace could not be entered.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot create a network namespace (unshare; needs root): {0}")]
    Create(#[source] nix::Error),
    #[error("cannot open network namespace {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot enter network namespace {path} (setns; needs root): {source}")]
    Enter {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("cannot start an async runtime in the namespace: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("the namespace's resident thread has ended")]
    ResidentGone,
}

/// Moves the *calling thread* into `target`. Only for a thread of the
/// caller's own that ends afterwards; [`on_thread`] makes one.
pub fn enter(target: &Netns) -> Result<(), NetnsError> {
    match target {
        Netns::Fresh => unshare(CloneFlags::CLONE_NEWNET).map_err(NetnsError::Create),
        Netns::At(path) => {
            let file = File::open(path).map_err(|source| NetnsError::Open {
                path: path.clone(),
                source,
            })?;
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
                path: path.clone(),
                source,
            })
        }
    }
}

/// Runs `f` on a dedicated thread inside `target`; everything `f` opens
/// (sockets, netlink connections) and spawns (children inherit the
/// spawning thread's namespace) belongs there. A panic in `f` is raised
/// again in the caller.
pub fn on_thread<T: Send>(target: &Netns, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| -> Result<T, NetnsError> {
            enter(target)?;
            Ok(f())
        });
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Runs the async `f` on a current-thread runtime built inside `target`
/// (so its netlink sockets and their driver tasks live there).
pub fn with_runtime<T, F, Fut>(target: &Netns, f: F) -> Result<T, NetnsError>
where
    T: Send,
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = T>,
{
    on_thread(target, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(NetnsError::Runtime)?;
        Ok(runtime.block_on(f()))
    })?
}

/// `/run/netns/<name>`, where `ip netns` keeps named namespaces.
pub fn named(name: &str) -> Netns {
    Netns::At(Path::new("/run/netns").join(name))
}

mod resident;
pub use resident::Resident;
