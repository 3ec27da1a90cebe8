//! The standard WireGuard UAPI socket (`<dir>/<name>.sock`, the
//! cross-platform configuration protocol) for the in-process device, so
//! that `wg show`, `wg set` and monitoring tools work on it as on any other.
//!
//! Why not gotatun's `UapiServer::default_unix_socket`: it hard-codes
//! `/var/run/wireguard`, and lab nodes share one filesystem, so the
//! directory must be a parameter; it also leaves the socket's mode to the
//! umask, while anyone who can connect can read the private key.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use gotatun::device::uapi::UapiClient;
use tokio::net::UnixListener;

/// The socket is root's alone: `get=1` answers with the private key.
const SOCKET_MODE: u32 = 0o600;

/// A served UAPI socket. Dropping it stops serving and removes the socket
/// file, unless another instance has replaced it meanwhile.
pub(crate) struct UapiSocket {
    path: PathBuf,
    /// Identifies our socket file among its possible successors.
    inode: (u64, u64),
    task: tokio::task::AbortHandle,
}

impl UapiSocket {
    /// Binds `<dir>/<name>.sock` and serves it on the current runtime, each
    /// connection handed to gotatun's protocol handler through `client`.
    ///
    /// A socket that answers belongs to someone else: refused. A stale one
    /// left by a crash is replaced atomically: the new one is
    /// bound under a temporary name, given mode 0600, then renamed over the
    /// final path, so nobody ever reaches a socket with a wider mode.
    pub(crate) fn serve(
        dir: &Path,
        name: &str,
        client: UapiClient,
    ) -> Result<UapiSocket, (PathBuf, &'static str, io::Error)> {
        let path = dir.join(format!("{name}.sock"));
        let fail = |op: &'static str| {
            let path = path.clone();
            move |e: io::Error| (path, op, e)
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(fail("creating its directory"))?;
        // A socket someone still answers on is not stale: replacing it
        // would hijack another device's control channel (lab nodes sharing
        // a filesystem and a device name).
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(fail("checking for a live socket")(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another WireGuard process serves it: give each node its own UAPI directory or device name",
            )));
        }
        let tmp = dir.join(format!(".{name}.sock.{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let listener = std::os::unix::net::UnixListener::bind(&tmp).map_err(fail("binding"))?;
        let placed = fs::set_permissions(&tmp, fs::Permissions::from_mode(SOCKET_MODE))
            .and_then(|()| fs::rename(&tmp, &path));
        if let Err(e) = placed {
            let _ = fs::remove_file(&tmp);
            return Err(fail("moving into place")(e));
        }
        let meta = fs::metadata(&path).map_err(fail("reading back"))?;
        listener
            .set_nonblocking(true)
            .map_err(fail("making non-blocking"))?;
        let listener = UnixListener::from_std(listener).map_err(fail("registering"))?;
        let task = tokio::spawn(accept_loop(listener, client)).abort_handle();
        Ok(UapiSocket {
            path,
            inode: (meta.dev(), meta.ino()),
            task,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UapiSocket {
    fn drop(&mut self) {
        self.task.abort();
        let ours = fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.inode);
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Accepts connections until aborted. gotatun's protocol handler for a
/// connection is blocking and runs on a thread of its own, which ends when
/// the client hangs up (`wg` does after each command).
async fn accept_loop(listener: UnixListener, client: UapiClient) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let stream = stream.into_std().and_then(|s| {
                    s.set_nonblocking(false)?;
                    Ok(s)
                });
                match stream {
                    Ok(s) => client.clone().wrap_read_write(s),
                    Err(e) => tracing::warn!(error = %e, "UAPI connection dropped"),
                }
            }
            Err(e) => {
                // Out of file descriptors, most likely: do not spin.
                tracing::warn!(error = %e, "accepting a UAPI connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
