//! What starting weftd costs at all, and the size of each binary: the
//! baselines of the footprint figures that are not measured in a lab.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use weft_bench::results::BinarySizes;
use weft_bench::stats::{Summary, ms};

/// Size of a file in KiB; `None` when missing.
fn size_kib(path: &Path) -> Option<f64> {
    std::fs::metadata(path)
        .ok()
        .map(|m| m.len() as f64 / 1024.0)
}

/// The release binaries in `bin_dir`, and Go programs of the same kind for scale.
pub fn sizes(bin_dir: &Path) -> BinarySizes {
    BinarySizes {
        weftd: size_kib(&bin_dir.join("weftd")),
        weft: size_kib(&bin_dir.join("weft")),
        flannel: size_kib(&bin_dir.join("flannel")),
        cni_bridge: size_kib(Path::new("/usr/lib/cni/bridge")),
        wireguard_go: size_kib(Path::new("/usr/bin/wireguard-go")),
    }
}

/// Start-to-exit of `weftd --version`: the floor of starting the binary.
pub fn exec_ms(weftd: &Path, runs: usize) -> Option<Summary> {
    let v: Vec<f64> = (0..runs.max(5))
        .filter_map(|_| {
            let t = Instant::now();
            let ok = Command::new(weftd)
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .ok()?
                .success();
            ok.then(|| ms(t.elapsed()))
        })
        .collect();
    Summary::of(&v)
}
