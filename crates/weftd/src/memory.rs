//! glibc malloc settings for a long-lived agent that should stay small.
//!
//! By default glibc gives threads that allocate concurrently their own
//! arenas (up to eight per core) and keeps freed memory in each of them,
//! and it raises its trim threshold after large frees, so memory freed
//! after a burst (a relist of 5 000 nodes, a cold start) stays resident.
//! weftd's threads allocate little and rarely contend, so one arena and a
//! fixed trim threshold cost nothing measurable and save about a third of
//! its resident memory at 5 000 peers (docs/PERFORMANCE.md). An operator
//! who set `MALLOC_ARENA_MAX` or `MALLOC_TRIM_THRESHOLD_` keeps their value.

use std::time::{Duration, Instant};

/// Memory above this much at the top of the heap goes back to the kernel.
const TRIM_THRESHOLD: i32 = 128 * 1024;

/// Applies the settings. Call it first thing in `main`, before any thread
/// is started.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn tune_allocator() {
    use nix::libc;
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes allocator parameters and is called
        // before weftd starts any thread; a refusal (return 0) leaves
        // glibc's default in place, which is correct, only larger.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    }
    if std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_none() {
        // SAFETY: as above.
        unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) };
    }
}

/// Other C libraries (musl) have no arenas to limit.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_allocator() {}

/// Hands memory freed inside the heap back to the kernel. glibc returns
/// only the top of the heap by itself; what a burst (a cold start's
/// listing and first plan, a relist) freed below memory still in use stays
/// resident: at 10 000 peers, 3.2 of 17 MiB of weftd's own memory one
/// second after a cold start (docs/PERFORMANCE.md).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release_freed() {
    // SAFETY: malloc_trim only returns free pages of glibc's heap to the
    // kernel (madvise), under the allocator's own lock; live allocations
    // are untouched.
    unsafe { nix::libc::malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_freed() {}

/// A change of this many peers or kernel entries frees enough to be worth
/// a trim at once.
const TRIM_AFTER_CHANGES: usize = 64;
/// Otherwise, at most this often: a trim walks the whole heap (about a
/// millisecond at 10 000 peers), and a quiet node frees little.
const TRIM_EVERY: Duration = Duration::from_secs(60);

/// When to call [`release_freed`] after a reconcile pass: after the first
/// pass, after one that changed many peers or entries, and otherwise once
/// a minute (which catches what a relist freed with no kernel change).
#[derive(Debug, Default)]
pub struct Trimmer {
    last: Option<(Instant, usize)>,
}

impl Trimmer {
    /// After a pass over `peers` peers that made `changes` kernel changes.
    pub fn after_pass(&mut self, peers: usize, changes: usize) {
        let now = Instant::now();
        if self.due(peers, changes, now) {
            release_freed();
            self.last = Some((now, peers));
        }
    }

    fn due(&self, peers: usize, changes: usize, now: Instant) -> bool {
        match self.last {
            None => true,
            Some((at, before)) => {
                changes >= TRIM_AFTER_CHANGES
                    || peers.abs_diff(before) >= TRIM_AFTER_CHANGES
                    || now.saturating_duration_since(at) >= TRIM_EVERY
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trimmed(peers: usize, at: Instant) -> Trimmer {
        Trimmer {
            last: Some((at, peers)),
        }
    }

    #[test]
    fn the_first_pass_trims() {
        assert!(Trimmer::default().due(0, 0, Instant::now()));
    }

    #[test]
    fn a_quiet_pass_waits_for_the_minute() {
        let now = Instant::now();
        let t = trimmed(5_000, now);
        assert!(!t.due(5_010, 3, now + Duration::from_secs(10)));
        assert!(t.due(5_010, 3, now + TRIM_EVERY));
    }

    #[test]
    fn many_changes_trim_at_once() {
        let now = Instant::now();
        let t = trimmed(5_000, now);
        assert!(t.due(5_000, TRIM_AFTER_CHANGES, now));
        assert!(t.due(5_000 - TRIM_AFTER_CHANGES, 0, now), "peers that left");
        assert!(t.due(5_000 + TRIM_AFTER_CHANGES, 0, now), "peers that came");
    }
}
