//! The lab's long-lived processes (agents, etcd): identify, signal, wait.
//!
//! They are started by one `weft lab` invocation and stopped by another,
//! so they are found again through pid files and `/proc`. A pid alone is
//! never trusted: pids are reused, so a process is only signalled when its
//! `/proc/<pid>/cmdline` shows the expected program *and* an argument that
//! carries this lab's state directory ([`crate::LabName::process_marker`]).

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::LabError;

/// A process the lab started, as recognised in `/proc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected<'a> {
    /// The program's file name (`weftd`, `etcd`).
    pub program: &'a str,
    /// A string one of its arguments must contain.
    pub marker: &'a str,
}

impl Expected<'_> {
    /// Whether `pid` is a live (not zombie) process of this kind.
    pub fn matches(&self, pid: i32) -> bool {
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let mut args = raw.split(|b| *b == 0).map(String::from_utf8_lossy);
        let Some(argv0) = args.next() else {
            return false;
        };
        let program_ok = Path::new(argv0.as_ref())
            .file_name()
            .is_some_and(|f| f == self.program);
        program_ok && args.any(|a| a.contains(self.marker)) && is_alive(pid)
    }

    /// Every live process of this kind, found by scanning `/proc`: catches
    /// processes whose pid file was lost (a crash while starting them).
    pub fn find_all(&self) -> Vec<i32> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut pids: Vec<i32> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
            .filter(|pid| self.matches(*pid))
            .collect();
        pids.sort_unstable();
        pids
    }
}

/// Whether `pid` runs and is not a zombie. Processes a `weft lab` command
/// started are reparented when that command exits; whether a zombie is
/// reaped then is up to the host's init, so a zombie counts as gone.
pub fn is_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) S ...": comm may contain spaces and parentheses.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z') | Some('X'))
}

/// Reads a pid file; `None` when missing or unreadable.
pub fn read_pid_file(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 1)
}

/// Writes a pid file.
pub fn write_pid_file(path: &Path, pid: u32) -> Result<(), LabError> {
    std::fs::write(path, format!("{pid}\n"))
        .map_err(|e| LabError::io(format!("cannot write {}", path.display()), e))
}

/// Sends `signal` to `pid`; a process that is already gone is not an error.
pub fn signal(pid: i32, signal: Signal) -> Result<(), LabError> {
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
        Err(e) => Err(LabError::sys(
            format!("cannot send {signal} to process {pid}"),
            e,
        )),
    }
}

/// Waits until `pid` is gone; `false` on timeout.
pub fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !is_alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `first`, waits up to `grace`, then SIGKILLs. Returns whether the
/// process is gone.
pub fn terminate(pid: i32, first: Signal, grace: Duration) -> Result<bool, LabError> {
    signal(pid, first)?;
    if wait_gone(pid, grace) {
        return Ok(true);
    }
    if first != Signal::SIGKILL {
        signal(pid, Signal::SIGKILL)?;
    }
    Ok(wait_gone(pid, Duration::from_secs(5)))
}

/// The last `lines` lines of a log file (at most the last 64 KiB read), or
/// a note saying why there are none.
pub fn tail(path: &Path, lines: usize) -> String {
    const WINDOW: u64 = 64 * 1024;
    let Ok(mut file) = std::fs::File::open(path) else {
        return format!("({} does not exist)", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(WINDOW)));
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let out = all[start..].join("\n");
    if out.trim().is_empty() {
        "(the log is empty)".to_owned()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_recognised_by_program_and_marker() {
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(is_alive(me));
        let exe = std::env::current_exe().unwrap();
        let program = exe.file_name().unwrap().to_str().unwrap();
        // cargo test passes no argument containing this marker.
        let nobody = Expected {
            program,
            marker: "/run/weft-lab/no-such-lab/",
        };
        assert!(!nobody.matches(me));
        assert!(!is_alive(i32::MAX));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = std::env::temp_dir().join(format!("weft-lab-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("x.log");
        std::fs::write(&log, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail(&log, 2), "c\nd");
        assert!(tail(&dir.join("missing"), 2).contains("does not exist"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
