//! The per-container scratch file `<dataDir>/<containerID>`: the exact
//! configuration the delegate got at ADD, so DEL can hand it the same one
//! even after subnet.env or the conflist changed. The format is flannel's
//! (the delegate JSON, nothing else), so pods created by flannel's plugin
//! stay deletable after a node moves to weft, and the other way round.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{CniError, code};

/// A saved configuration larger than this is not one this plugin wrote.
const MAX_STATE_BYTES: u64 = 1 << 20;

/// The file for a container. `id` has passed `args::validate_container_id`,
/// so it is a single path component.
pub fn path(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join(id)
}

/// Writes the file atomically and durably: a crash leaves either no file or
/// the whole one, never a torn file DEL would choke on. Directory 0700 and
/// file 0600 as flannel makes them (the configuration may carry secrets of
/// third-party delegates).
pub fn save(data_dir: &Path, id: &str, bytes: &[u8]) -> Result<(), CniError> {
    let io = |what: &str, e: std::io::Error| {
        CniError::new(
            code::IO,
            format!("cannot {what} in {}: {e}", data_dir.display()),
        )
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(|e| io("create the state directory", e))?;
    // A leading dot cannot collide with a container ID (those start with a
    // letter or digit); the pid keeps two concurrent ADDs apart.
    let tmp = data_dir.join(format!(".{id}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path(data_dir, id))?;
        File::open(data_dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io(&format!("save the delegate configuration of {id}"), e)
    })
}

/// The saved bytes, or `None` when there is no file (DEL of a container
/// never added, or deleted twice).
pub fn load(data_dir: &Path, id: &str) -> Result<Option<Vec<u8>>, CniError> {
    let p = path(data_dir, id);
    let not_regular = || {
        CniError::new(
            code::IO,
            format!(
                "cannot read {}: not a regular file, so not a delegate configuration this \
                 plugin saved",
                p.display()
            ),
        )
    };
    // Checked before opening: opening a FIFO waits for a writer, and DEL
    // must not hang on whatever someone left in dataDir.
    match fs::metadata(&p) {
        Ok(meta) if !meta.is_file() => return Err(not_regular()),
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CniError::new(
                code::IO,
                format!("cannot read {}: {e}", p.display()),
            ));
        }
    }
    let file = match File::open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CniError::new(
                code::IO,
                format!("cannot read {}: {e}", p.display()),
            ));
        }
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err(not_regular());
    }
    let mut bytes = Vec::new();
    file.take(MAX_STATE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CniError::new(code::IO, format!("cannot read {}: {e}", p.display())))?;
    if bytes.len() as u64 > MAX_STATE_BYTES {
        return Err(CniError::new(
            code::IO,
            format!(
                "{} is larger than {MAX_STATE_BYTES} bytes: not a delegate configuration",
                p.display()
            ),
        ));
    }
    Ok(Some(bytes))
}

/// Removes the file; already gone is fine.
pub fn remove(data_dir: &Path, id: &str) -> Result<(), CniError> {
    let p = path(data_dir, id);
    match fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CniError::new(
            code::IO,
            format!("cannot remove {}: {e}", p.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::test_files::fifo_refusal;

    #[test]
    fn saves_private_files_and_reads_them_back() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/flannel");
        save(&dir, "c1", b"{\"type\":\"bridge\"}").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("c1")), 0o600);
        assert_eq!(
            load(&dir, "c1").unwrap().as_deref(),
            Some(&b"{\"type\":\"bridge\"}"[..])
        );
        // Only the file itself: no temporary left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        save(&dir, "c1", b"{}").unwrap();
        assert_eq!(load(&dir, "c1").unwrap().as_deref(), Some(&b"{}"[..]));
    }

    #[test]
    fn missing_file_is_none_and_remove_is_idempotent() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(load(root.path(), "nope").unwrap(), None);
        remove(root.path(), "nope").unwrap();
        save(root.path(), "c", b"{}").unwrap();
        remove(root.path(), "c").unwrap();
        remove(root.path(), "c").unwrap();
        assert_eq!(load(root.path(), "c").unwrap(), None);
    }

    /// A FIFO left in dataDir would block DEL's open: refused at once.
    #[test]
    fn a_fifo_is_refused_without_waiting() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().to_owned();
        let e = fifo_refusal(&path(&dir, "c1"), move || load(&dir, "c1"));
        e.assert_says(code::IO, "not a regular file");
    }

    #[test]
    fn refuses_oversized_files() {
        let root = tempfile::tempdir().unwrap();
        fs::write(
            root.path().join("big"),
            vec![b' '; (MAX_STATE_BYTES + 1) as usize],
        )
        .unwrap();
        assert_eq!(load(root.path(), "big").unwrap_err().code, code::IO);
    }
}
