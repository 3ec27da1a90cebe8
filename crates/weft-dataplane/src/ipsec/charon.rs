//! strongSwan's IKE daemon: found where flannel looks for it, started by
//! the agent (or one already serving the VICI socket used instead),
//! restarted when it dies, stopped at shutdown if the agent started it.
//!
//! Why a pid file of our own: charon outlives an agent that is killed
//! outright (weft cannot set a parent-death signal without unsafe code),
//! and it still holds every tunnel then. The next agent finds the socket
//! answering and the pid in `<run dir>/charon.weft.pid`: that charon is
//! its own, adopted with its SAs (no renegotiation at all), and stopped at
//! the next shutdown. A charon whose pid is not in that file belongs to
//! someone else: used, never stopped.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::IpsecError;

/// flannel's VICI socket (`unix:///var/run/charon.vici`).
pub const VICI_SOCKET: &str = "/var/run/charon.vici";

/// Where flannel looks for charon, in its order: PATH, Alpine and Arch
/// (and flannel's image), Debian and Ubuntu, CentOS and RHEL, openSUSE.
pub const CHARON_CANDIDATES: [&str; 5] = [
    "charon",
    "/usr/lib/strongswan/charon",
    "/usr/lib/ipsec/charon",
    "/usr/libexec/strongswan/charon",
    "/usr/libexec/ipsec/charon",
];

/// How long a starting charon may take to open its socket (TCG VMs are
/// slow; a real node takes well under a second).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The first charon of [`CHARON_CANDIDATES`] that is an executable file.
pub fn find_charon() -> Result<PathBuf, IpsecError> {
    for candidate in CHARON_CANDIDATES {
        let found = if candidate.contains('/') {
            Some(PathBuf::from(candidate))
        } else {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(candidate))
                    .find(|p| is_executable(p))
            })
        };
        if let Some(path) = found.filter(|p| is_executable(p)) {
            return Ok(path);
        }
    }
    Err(IpsecError::NoCharon)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The charon the agent talks to.
#[derive(Debug)]
pub struct Charon {
    binary: PathBuf,
    socket: PathBuf,
    pid_file: PathBuf,
    /// The charon the agent owns (started it, or adopted its own from a
    /// killed predecessor): stopped at shutdown.
    owned: Option<Owned>,
    /// Counts starts: a new charon has none of the connections and keys,
    /// so the caller reloads everything when it changes.
    pub generation: u64,
}

#[derive(Debug)]
enum Owned {
    Child(Child),
    Adopted(Pid),
}

impl Charon {
    /// Uses the charon serving `socket`, or starts `binary`.
    pub fn start(binary: PathBuf, socket: PathBuf, run_dir: &Path) -> Result<Charon, IpsecError> {
        let mut charon = Charon {
            binary,
            socket,
            pid_file: run_dir.join("charon.weft.pid"),
            owned: None,
            generation: 0,
        };
        if charon.answers() {
            match charon.our_previous_pid() {
                Some(pid) => {
                    tracing::info!(%pid, "adopting the charon a previous weftd started (its tunnels stay up)");
                    charon.owned = Some(Owned::Adopted(pid));
                }
                None => tracing::info!(
                    socket = %charon.socket.display(),
                    "using the charon already serving VICI (not ours: left running at shutdown)"
                ),
            }
            charon.generation = 1;
            return Ok(charon);
        }
        charon.spawn()?;
        Ok(charon)
    }

    fn answers(&self) -> bool {
        UnixStream::connect(&self.socket).is_ok()
    }

    /// The pid our pid file names, if that process is a live charon.
    fn our_previous_pid(&self) -> Option<Pid> {
        let pid: i32 = std::fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        (exe.file_name() == Some(std::ffi::OsStr::new("charon"))).then(|| Pid::from_raw(pid))
    }

    fn spawn(&mut self) -> Result<(), IpsecError> {
        let child = Command::new(&self.binary)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|source| IpsecError::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        let pid = child.id();
        if let Some(dir) = self.pid_file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = std::fs::write(&self.pid_file, format!("{pid}\n")) {
            tracing::warn!(
                "cannot write {}: {e}; a charon left by a killed weftd will not be recognised",
                self.pid_file.display()
            );
        }
        self.owned = Some(Owned::Child(child));
        self.generation += 1;
        let started = Instant::now();
        while !self.answers() {
            if let Some(Owned::Child(c)) = &mut self.owned
                && let Ok(Some(status)) = c.try_wait()
            {
                self.owned = None;
                return Err(IpsecError::CharonExited {
                    binary: self.binary.clone(),
                    status: status.to_string(),
                });
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(IpsecError::CharonSilent {
                    socket: self.socket.clone(),
                    waited: START_TIMEOUT,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::info!(binary = %self.binary.display(), pid, "started charon");
        Ok(())
    }

    /// Restarts charon if it died (or stopped answering, for one we did
    /// not start). `Ok(true)` when a new charon runs.
    pub fn ensure(&mut self) -> Result<bool, IpsecError> {
        let dead = match &mut self.owned {
            Some(Owned::Child(c)) => match c.try_wait() {
                Ok(Some(status)) => {
                    tracing::warn!("charon exited ({status}); restarting it");
                    true
                }
                _ => false,
            },
            Some(Owned::Adopted(pid)) => kill(*pid, None).is_err(),
            None => !self.answers(),
        };
        if !dead {
            return Ok(false);
        }
        self.owned = None;
        self.spawn()?;
        Ok(true)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Stops the charon the agent owns: SIGTERM (charon deletes its SAs
    /// and tells the peers), SIGKILL after five seconds.
    pub fn stop(&mut self) {
        let pid = match &self.owned {
            Some(Owned::Child(c)) => Pid::from_raw(c.id() as i32),
            Some(Owned::Adopted(p)) => *p,
            None => return,
        };
        let _ = kill(pid, Signal::SIGTERM);
        let started = Instant::now();
        loop {
            let gone = match &mut self.owned {
                Some(Owned::Child(c)) => !matches!(c.try_wait(), Ok(None)),
                _ => kill(pid, None).is_err(),
            };
            if gone {
                break;
            }
            if started.elapsed() > Duration::from_secs(5) {
                let _ = kill(pid, Signal::SIGKILL);
                if let Some(Owned::Child(c)) = &mut self.owned {
                    let _ = c.wait();
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(&self.pid_file);
        self.owned = None;
        tracing::info!("stopped charon");
    }
}

impl Drop for Charon {
    fn drop(&mut self) {
        self.stop();
    }
}
