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
