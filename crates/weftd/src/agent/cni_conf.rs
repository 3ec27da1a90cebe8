//! `--cni-conf-file`: weftd installs flannel's CNI conflist itself, as K3s
//! does, instead of leaving it to the DaemonSet's init container.
//!
//! The conflist is written only once subnet.env is (the moment the node can
//! serve pods): a container runtime that finds a conflist marks the node's
//! network ready, and the flannel plugin needs subnet.env to wire a pod.
//! Runtimes watch the directory, so the file is replaced atomically and only
//! when its content differs: an identical file is never touched.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use anyhow::{Context as _, Result};

pub use weft_core::cni_conflist::FLANNEL_CONFLIST;

/// What [`install`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// The file was missing or different and now holds the conflist.
    Written,
    /// The file already held exactly the conflist; it was not touched.
    Unchanged,
}

/// Makes `path` hold [`FLANNEL_CONFLIST`]: nothing is written when it
/// already does; otherwise a temporary file in the same directory (named
/// `.<name>.tmp`, which runtimes ignore: they load only `.conf`,
/// `.conflist` and `.json`) is written, flushed, given mode 0644 whatever
/// the umask and renamed over `path`, so a runtime reads the old file or
/// the new one, never half. The directory is created if missing.
pub fn install(path: &Path) -> Result<Installed> {
    install_content(path, FLANNEL_CONFLIST)
}

fn install_content(path: &Path, content: &str) -> Result<Installed> {
    match fs::read(path) {
        Ok(existing) if existing == content.as_bytes() => return Ok(Installed::Unchanged),
        // Missing, different, or unreadable (a directory, no permission):
        // writing says what is wrong if it cannot be fixed by replacing it.
        _ => {}
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().with_context(|| {
        format!(
            "cannot install the CNI conflist at {}: not a file path",
            path.display()
        )
    })?;
    fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot install the CNI conflist at {}: cannot create {}",
            path.display(),
            dir.display()
        )
    })?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let result = (|| -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(content.as_bytes())?;
        file.set_permissions(fs::Permissions::from_mode(0o644))?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e)
            .with_context(|| format!("cannot install the CNI conflist at {}", path.display()));
    }
    Ok(Installed::Written)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    #[test]
    fn conflist_is_flannels() {
        let conf: serde_json::Value = serde_json::from_str(FLANNEL_CONFLIST).unwrap();
        assert_eq!(
            conf,
            serde_json::json!({
                "name": "cbr0",
                "cniVersion": "0.3.1",
                "plugins": [
                    {"type": "flannel", "delegate": {"hairpinMode": true, "isDefaultGateway": true}},
                    {"type": "portmap", "capabilities": {"portMappings": true}},
                ],
            })
        );
    }

    /// One source of truth: the ConfigMap the init container copies from
    /// holds the same bytes weftd writes.
    #[test]
    fn conflist_is_the_manifests_cni_conf_json() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/base/kube-flannel-cfg.yml");
        let text = fs::read_to_string(&path).unwrap();
        let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(
            doc["data"]["cni-conf.json"].as_str(),
            Some(FLANNEL_CONFLIST),
            "{} and FLANNEL_CONFLIST differ",
            path.display()
        );
    }

    #[test]
    fn writes_the_conflist_with_mode_0644_creating_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etc/cni/net.d/10-flannel.conflist");
        assert_eq!(install(&path).unwrap(), Installed::Written);
        assert_eq!(fs::read_to_string(&path).unwrap(), FLANNEL_CONFLIST);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["10-flannel.conflist"], "no temporary file left");
    }

    #[test]
    fn identical_file_is_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("10-flannel.conflist");
        install(&path).unwrap();
        // A mode the writer would never set: untouched means it survives.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let before = fs::metadata(&path).unwrap();
        assert_eq!(install(&path).unwrap(), Installed::Unchanged);
        let after = fs::metadata(&path).unwrap();
        assert_eq!(after.ino(), before.ino());
        assert_eq!(after.mtime_nsec(), before.mtime_nsec());
        assert_eq!(after.mode() & 0o777, 0o600);
    }

    #[test]
    fn a_different_file_is_replaced_by_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("10-flannel.conflist");
        fs::write(&path, "{\"name\": \"other\"}\n").unwrap();
        let before = fs::metadata(&path).unwrap().ino();
        // A reader holding the old file keeps reading the old content.
        let held = fs::File::open(&path).unwrap();
        assert_eq!(install(&path).unwrap(), Installed::Written);
        assert_eq!(fs::read_to_string(&path).unwrap(), FLANNEL_CONFLIST);
        assert_ne!(fs::metadata(&path).unwrap().ino(), before);
        assert_eq!(
            std::io::read_to_string(held).unwrap(),
            "{\"name\": \"other\"}\n"
        );
    }

    #[test]
    fn errors_name_the_path_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        // The directory cannot be created: a file is in the way.
        fs::write(dir.path().join("net.d"), "").unwrap();
        let path = dir.path().join("net.d/10-flannel.conflist");
        let message = format!("{:#}", install(&path).unwrap_err());
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(
            message.contains("ot a directory") || message.contains("exists"),
            "{message}"
        );

        // The path is a directory: it cannot be replaced by a file.
        let path = dir.path().join("conflist-dir");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("keep"), "").unwrap();
        let message = format!("{:#}", install(&path).unwrap_err());
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(path.join("keep").exists());
    }
}
