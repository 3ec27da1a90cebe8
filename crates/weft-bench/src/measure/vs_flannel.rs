//! Real flannel beside weft, in the same run (`--flanneld PATH`).
//!
//! The scale part runs flanneld on the scale lab's node, alternating with
//! weftd (`scale.rs`); the data plane part brings up a second vxlan lab
//! whose agents are flanneld (`dataplane.rs`). The labs run flanneld with
//! flanneld's flags only (weft-lab's flanneld mode). This module checks
//! the binary, says what it is, and turns both agents' samples into the
//! figures of the report.
//!
//! flanneld needs what it needs on a real node: `iptables`, and the
//! `br_netfilter` module (without it flanneld exits at start, "Failed to
//! check br_netfilter"). The benchmark does not load the module, since it
//! changes how the host's own bridges are filtered; it warns instead.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use weft_bench::results::FlannelAtK;
use weft_bench::stats::{Summary, ratios};

use super::scale::{AtK, summarize};

/// The smallest K at which flanneld is measured (besides the idle K = 0):
/// where the goals are set. A run without such a K (`--short`)
/// measures it at its largest K instead.
const FROM_K: u32 = 5_000;

/// The flanneld of `--flanneld`, checked: a file, executable; absolute,
/// since the labs start it from their own directories.
pub fn check_binary(path: &Path) -> Result<PathBuf> {
    let meta = std::fs::metadata(path).with_context(|| {
        format!(
            "--flanneld {}: no such file (pass the path of a flanneld binary)",
            path.display()
        )
    })?;
    if !meta.is_file() {
        bail!("--flanneld {}: not a file", path.display());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        bail!(
            "--flanneld {}: not executable (chmod +x it)",
            path.display()
        );
    }
    std::fs::canonicalize(path).with_context(|| format!("--flanneld {}", path.display()))
}

/// Why flanneld will refuse to start on this host, if it will: the
/// `br_netfilter` module is not loaded.
pub fn host_warning() -> Option<String> {
    let probe = Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables");
    (!probe.exists()).then(|| {
        "flanneld checks for the br_netfilter module at start and exits without it; \
         load it (`modprobe br_netfilter`) before measuring flannel"
            .to_owned()
    })
}

/// `<path> (<first line of --version>)`, for the report. flanneld prints
/// its version on stderr, weftd on stdout: the first non-empty line of
/// either. Waits at most 10 s.
pub fn describe(path: &Path) -> String {
    let version = version(path).unwrap_or_else(|e| format!("--version failed: {e:#}"));
    format!("{} ({version})", path.display())
}

fn version(path: &Path) -> Result<String> {
    let mut child = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("did not exit within 10 s");
        }
        // Poll interval of the wait for the process to exit.
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output()?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no version printed")
        .to_owned())
}

/// Whether flanneld is measured at `k` of the peer counts `ks`.
pub fn measured_at(ks: &[u32], k: u32) -> bool {
    let largest = ks.iter().copied().max().unwrap_or(0);
    k == 0 || k >= FROM_K || (largest < FROM_K && k == largest)
}

/// flanneld's figures at one K, and weft's over them. flanneld's cold
/// starts ran in the same runs as weft's, so the bare netlink baseline of
/// those runs is its baseline too.
pub fn compare(weft: &AtK, flannel: &AtK) -> FlannelAtK {
    let mut f = flannel.clone();
    f.raw_ms.clone_from(&weft.raw_ms);
    f.cpu = None;
    FlannelAtK {
        flannel: summarize(&f),
        cold_vs_flannel: Summary::of(&ratios(&weft.cold_ms, &flannel.cold_ms)),
        rss_vs_flannel: Summary::of(&ratios(&weft.rss_kib, &flannel.rss_kib)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flannel_is_measured_idle_and_from_5000_or_at_the_largest_k() {
        let full = [100, 1_000, 5_000, 10_000];
        let at: Vec<u32> = [0, 100, 1_000, 5_000, 10_000]
            .into_iter()
            .filter(|&k| measured_at(&full, k))
            .collect();
        assert_eq!(at, vec![0, 5_000, 10_000]);
        let short = [100, 1_000];
        let at: Vec<u32> = [0, 100, 1_000]
            .into_iter()
            .filter(|&k| measured_at(&short, k))
            .collect();
        assert_eq!(at, vec![0, 1_000]);
    }

    #[test]
    fn weft_over_flannel_run_by_run_on_the_same_baseline() {
        let weft = AtK {
            k: 5_000,
            cold_ms: vec![100.0, 200.0],
            raw_ms: vec![50.0, 100.0],
            rss_kib: vec![1024.0, 2048.0],
            ..AtK::default()
        };
        let flannel = AtK {
            k: 5_000,
            cold_ms: vec![400.0, 400.0],
            rss_kib: vec![4096.0, 4096.0],
            ..AtK::default()
        };
        let c = compare(&weft, &flannel);
        let cold = c.cold_vs_flannel.unwrap();
        assert_eq!((cold.min, cold.max), (0.25, 0.5));
        let rss = c.rss_vs_flannel.unwrap();
        assert_eq!((rss.min, rss.max), (0.25, 0.5));
        // flanneld against the bare netlink of the same runs.
        let base = c.flannel.cold_ratio.unwrap();
        assert_eq!((base.min, base.max), (4.0, 8.0));
        assert!(c.flannel.cpu.is_none());
    }

    #[test]
    fn a_missing_or_non_executable_binary_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("flanneld");
        let err = check_binary(&missing).unwrap_err().to_string();
        assert!(err.contains("no such file"), "{err}");
        std::fs::write(&missing, "#!/bin/sh\n").unwrap();
        let err = check_binary(&missing).unwrap_err().to_string();
        assert!(err.contains("not executable"), "{err}");
        std::fs::set_permissions(&missing, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            check_binary(&missing).unwrap(),
            missing.canonicalize().unwrap()
        );
        assert!(check_binary(dir.path()).is_err());
    }
}
