//! What the unit tests of the plugin's file readers (`subnet.rs`,
//! `state.rs`) share: files in a private directory, and the FIFO that
//! would hang a reader that opened it blindly.

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::CniError;

/// A private directory holding `name` with `contents`, and the file's path.
pub(crate) fn file_with(name: &str, contents: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    (dir, path)
}

/// Makes a FIFO at `fifo` and returns the error `load` gives, run on its
/// own thread: a reader that opened the FIFO would wait for a writer that
/// never comes, so a `load` still blocked after 10 s fails the test.
pub(crate) fn fifo_refusal<T: Debug + Send + 'static>(
    fifo: &Path,
    load: impl FnOnce() -> Result<T, CniError> + Send + 'static,
) -> CniError {
    nix::unistd::mkfifo(fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(load()));
    rx.recv_timeout(Duration::from_secs(10))
        .expect("load blocked on a FIFO")
        .unwrap_err()
}
