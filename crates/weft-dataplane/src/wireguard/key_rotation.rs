//! Replacing the node's key file with a new key (`weft wireguard
//! rotate-key`, docs/wireguard.md "Key rotation").
//!
//! Why a rename and nothing else: the file is the node's only record of its
//! key, and the agent can be killed at any instant. The new key is written
//! to a temporary file (mode 0400 from its creation, fsynced), then renamed
//! over the key file, then the directory is fsynced. `rename(2)` is atomic:
//! at every instant the key file holds either the whole old key or the whole
//! new one, never both, never half. The rename is the rotation's commit
//! point; whatever the agent did not yet do after it (switch the device,
//! publish the lease) a restart does from the file. The old key has no other
//! copy on disk, so it is gone once the rename is done.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::WgError;
use super::key::{PrivateKey, write_new};

/// The prefix of a rotation's temporary file, beside the key file:
/// `.<name>.rotate-<pid>`.
fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.rotate-")
}

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes a new key to `path`, replacing the old one atomically, and
/// returns it. On error the file still holds the old key (and no temporary
/// file is left behind).
pub fn rotate_key_file(path: &Path) -> Result<PrivateKey, WgError> {
    stage_key_file(path)?.commit()
}

/// A new key written beside the key file, not yet in its place: the state
/// a rotation is in just before its commit point. Split from
/// [`Staged::commit`] so that the agent can be stopped (and SIGKILLed, in
/// the crash tests) exactly between the two.
#[derive(Debug)]
pub struct Staged {
    path: PathBuf,
    tmp: PathBuf,
    key: PrivateKey,
    committed: bool,
}

/// Writes a new key to a temporary file beside `path` (mode 0400 from its
/// creation, fsynced). The key file is untouched; on error no temporary
/// file is left behind.
pub fn stage_key_file(path: &Path) -> Result<Staged, WgError> {
    let tmp = dir_of(path).join(format!("{}{}", temp_prefix(path), std::process::id()));
    let _ = fs::remove_file(&tmp); // left by a crash of this very pid
    let key = PrivateKey::generate();
    if let Err(source) = write_new(&tmp, &key) {
        let _ = fs::remove_file(&tmp);
        return Err(WgError::KeyFileIo {
            path: path.to_path_buf(),
            op: "writing the new key",
            source,
        });
    }
    Ok(Staged {
        path: path.to_path_buf(),
        tmp,
        key,
        committed: false,
    })
}

impl Staged {
    /// The commit point: renames the new key over the key file and fsyncs
    /// the directory. On a failed rename the file still holds the old key.
    /// After the rename the new key is the node's, whatever follows: a
    /// failed directory fsync is only logged, because an error here would
    /// make the caller keep the old key on its devices while the file
    /// already holds the new one.
    pub fn commit(mut self) -> Result<PrivateKey, WgError> {
        fs::rename(&self.tmp, &self.path).map_err(|source| WgError::KeyFileIo {
            path: self.path.clone(),
            op: "moving the new key into place",
            source,
        })?;
        self.committed = true;
        // Make the rename itself durable: without this a power cut could
        // bring the old key back after the peers were told the new one.
        if let Err(e) = File::open(dir_of(&self.path)).and_then(|d| d.sync_all()) {
            tracing::warn!(path = %self.path.display(), "the new WireGuard key is in place but its directory could not be synced: {e}");
        }
        Ok(self.key.clone())
    }
}

/// A staged key dropped without its commit (an error, or a rotation
/// abandoned) takes its temporary file with it: the old key stays.
impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Removes what an interrupted rotation left: temporary files that were
/// never renamed into place (the rotation did not commit; the key file
/// still holds the old key, which stays). Returns how many were removed.
pub fn remove_rotation_leftovers(path: &Path) -> usize {
    let prefix = temp_prefix(path);
    let Ok(entries) = fs::read_dir(dir_of(path)) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix)
            && fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::warn!(path = %path.display(), removed, "a WireGuard key rotation was interrupted before it committed: the node keeps its current key");
    }
    removed
}

/// When the key in `path` was made (the file's modification time: the key
/// is written once and only ever replaced by a rename), for `weft status`
/// and the seconds-since-rotation metric.
pub fn key_made_at(path: &Path) -> io::Result<SystemTime> {
    fs::metadata(path)?.modified()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::super::key::load_or_create_key;
    use super::*;
    use weft_core::wg_key::WgKey;

    /// A new key file `wgkey` in a new temporary directory (removed when
    /// the returned guard drops), its path and the public key it holds.
    fn key_file() -> (tempfile::TempDir, PathBuf, WgKey) {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = d.path().join("wgkey");
        let public = load(&path).public_key();
        (d, path, public)
    }

    fn load(path: &Path) -> PrivateKey {
        load_or_create_key(path)
            .unwrap_or_else(|e| panic!("load: {e}"))
            .0
    }

    #[test]
    fn rotation_replaces_the_key_and_leaves_no_copy_of_the_old_one() {
        let (d, path, old) = key_file();
        let new = rotate_key_file(&path).unwrap_or_else(|e| panic!("rotate: {e}"));
        assert_ne!(new.public_key(), old);
        assert_eq!(load(&path).public_key(), new.public_key());
        let mode = fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o400);
        let names: Vec<String> = fs::read_dir(d.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec!["wgkey".to_string()],
            "only the key file remains"
        );
    }

    /// SIGKILL while the temporary file was being written (or before the
    /// rename): the file still holds the old key, and the next start removes
    /// the leftover, partial or whole.
    #[test]
    fn a_crash_before_the_rename_keeps_the_old_key() {
        let (d, path, old) = key_file();
        let partial = d.path().join(format!("{}4242", temp_prefix(&path)));
        fs::write(&partial, b"AAAA").unwrap_or_else(|e| panic!("{e}"));
        let whole = d.path().join(format!("{}4243", temp_prefix(&path)));
        super::super::key::write_new(&whole, &PrivateKey::generate())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(remove_rotation_leftovers(&path), 2);
        assert_eq!(load(&path).public_key(), old);
        assert!(!partial.exists() && !whole.exists());
        assert_eq!(remove_rotation_leftovers(&path), 0);
    }

    /// SIGKILL after the rename, before the device or the lease changed:
    /// the file holds the new key and nothing else; the next start uses it.
    #[test]
    fn a_crash_after_the_rename_keeps_the_new_key() {
        let (_d, path, _) = key_file();
        let new = rotate_key_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(remove_rotation_leftovers(&path), 0);
        assert_eq!(load(&path).public_key(), new.public_key());
    }

    #[test]
    fn a_failed_rotation_keeps_the_old_key_and_leaves_nothing() {
        let (d, path, old) = key_file();
        // A directory where the temporary file would go makes the write fail.
        let blocker = d
            .path()
            .join(format!("{}{}", temp_prefix(&path), std::process::id()));
        fs::create_dir(&blocker).unwrap_or_else(|e| panic!("{e}"));
        fs::create_dir(blocker.join("x")).unwrap_or_else(|e| panic!("{e}"));
        assert!(rotate_key_file(&path).is_err());
        assert_eq!(load(&path).public_key(), old);
    }

    #[test]
    fn the_key_age_is_the_files() {
        let (_d, path, _) = key_file();
        let made = key_made_at(&path).unwrap_or_else(|e| panic!("{e}"));
        let age = SystemTime::now().duration_since(made).unwrap_or_default();
        assert!(age.as_secs() < 60);
    }
}
