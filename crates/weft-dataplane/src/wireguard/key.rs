//! The node's WireGuard private key and its file, with flannel's semantics
//! (`/run/flannel/wgkey`, or `$WIREGUARD_KEY_FILE`; flannel-compat §3.4):
//! generated once, kept across agent restarts so that peers need not learn a
//! new public key, mode 0400, content the base64 key without a newline.

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use weft_core::wg_key::{WgKey, WgKeyError};
use x25519_dalek::{PublicKey, StaticSecret};

use super::WgError;

/// A Curve25519 private key. Its bytes never appear in `Debug` output, and
/// it has no `Display`: only [`PrivateKey::public_key`] is for showing.
#[derive(Clone)]
pub struct PrivateKey(StaticSecret);

impl PrivateKey {
    /// A new random key, clamped as `wg genkey` (and flannel's
    /// `wgtypes.GeneratePrivateKey`) clamp it, so the file reads the same as
    /// what the kernel reports back.
    pub fn generate() -> PrivateKey {
        let mut bytes = StaticSecret::random().to_bytes();
        bytes[0] &= 248;
        bytes[31] &= 127;
        bytes[31] |= 64;
        let key = PrivateKey(StaticSecret::from(bytes));
        bytes.fill(0);
        key
    }

    /// A key from its 32 bytes (tests, and keys read from elsewhere).
    pub fn from_bytes(bytes: [u8; 32]) -> PrivateKey {
        PrivateKey(StaticSecret::from(bytes))
    }

    /// Parses the base64 form `wg genkey` prints. The error never repeats
    /// the input.
    pub fn from_base64(s: &str) -> Result<PrivateKey, WgKeyError> {
        WgKey::from_base64(s).map(|k| PrivateKey::from_bytes(k.0))
    }

    /// The public key, as published in the lease's BackendData.
    pub fn public_key(&self) -> WgKey {
        WgKey(PublicKey::from(&self.0).to_bytes())
    }

    /// The raw bytes, for the kernel's SET_DEVICE.
    pub(crate) fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The key in the form the userspace implementation takes.
    pub(crate) fn secret(&self) -> StaticSecret {
        self.0.clone()
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(<redacted>, public {})", self.public_key())
    }
}

/// The mode flannel gives the key file.
const KEY_FILE_MODE: u32 = 0o400;

/// Loads the private key from `path`, or generates one and writes it there.
/// Returns the key and whether it was created.
///
/// - Missing: a new key is written, parent directories made (0755), the
///   file created 0400 under a temporary name and linked into place, so no
///   reader ever sees a partial key or a wider mode, and two agents racing
///   end up with the same key.
/// - Present: parsed; a trailing newline (an operator's `echo`) is accepted.
///   A mode other than 0400 is fixed, with a warning: the key may have been
///   readable by others.
/// - Unparsable: an error naming the file, never its content.
pub fn load_or_create_key(path: &Path) -> Result<(PrivateKey, bool), WgError> {
    match fs::metadata(path) {
        Ok(meta) => load(path, &meta).map(|k| (k, false)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => match create(path) {
            Ok(key) => {
                tracing::info!(path = %path.display(), public_key = %key.public_key(), "generated a new WireGuard private key");
                Ok((key, true))
            }
            // Lost a race with another writer: theirs is the key.
            Err(CreateError::Exists) => {
                let meta = fs::metadata(path).map_err(io_error(path, "reading"))?;
                load(path, &meta).map(|k| (k, false))
            }
            Err(CreateError::Io(op, source)) => Err(WgError::KeyFileIo {
                path: path.to_path_buf(),
                op,
                source,
            }),
        },
        Err(e) => Err(io_error(path, "reading")(e)),
    }
}

fn io_error(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> WgError {
    let path = path.to_path_buf();
    move |source| WgError::KeyFileIo { path, op, source }
}

fn load(path: &Path, meta: &fs::Metadata) -> Result<PrivateKey, WgError> {
    if !meta.is_file() {
        return Err(WgError::KeyFileInvalid {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode != KEY_FILE_MODE {
        tracing::warn!(
            path = %path.display(),
            mode = %format!("{mode:04o}"),
            "WireGuard key file had the wrong mode: setting it to 0400 (consider the key exposed if others could read it)"
        );
        fs::set_permissions(path, fs::Permissions::from_mode(KEY_FILE_MODE))
            .map_err(io_error(path, "setting mode 0400"))?;
    }
    let content = fs::read(path).map_err(io_error(path, "reading"))?;
    let invalid = || WgError::KeyFileInvalid {
        path: path.to_path_buf(),
    };
    let text = std::str::from_utf8(&content).map_err(|_| invalid())?;
    PrivateKey::from_base64(text.trim_end_matches(['\n', '\r'])).map_err(|_| invalid())
}

enum CreateError {
    Exists,
    Io(&'static str, io::Error),
}

fn create(path: &Path) -> Result<PrivateKey, CreateError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&dir)
        .map_err(|e| CreateError::Io("creating its directory", e))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp); // left over by a crash of this very pid
    let key = PrivateKey::generate();
    let written = write_new(&tmp, &key)
        .map_err(|e| CreateError::Io("writing", e))
        .and_then(|()| match fs::hard_link(&tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(CreateError::Exists),
            Err(e) => Err(CreateError::Io("moving into place", e)),
        });
    let _ = fs::remove_file(&tmp);
    written.map(|()| key)
}

/// Creates `tmp` with mode 0400 from the start and writes the key to it.
pub(super) fn write_new(tmp: &Path, key: &PrivateKey) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(KEY_FILE_MODE)
        .open(tmp)?;
    // The umask can only remove bits; set the mode anyway in case the
    // filesystem ignored it.
    file.set_permissions(fs::Permissions::from_mode(KEY_FILE_MODE))?;
    let mut text = WgKey(key.to_bytes()).to_base64().into_bytes();
    let result = file.write_all(&text).and_then(|()| file.sync_all());
    // Best effort: leave no copy of the key in freed memory.
    text.fill(0);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_clamped_like_wg_genkey() {
        let b = PrivateKey::generate().to_bytes();
        assert_eq!(b[0] & 7, 0);
        assert_eq!(b[31] & 0x80, 0);
        assert_eq!(b[31] & 0x40, 0x40);
    }

    #[test]
    fn public_key_matches_a_known_vector() {
        // RFC 7748 §6.1, Alice's key pair.
        let sk = [
            0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2,
            0x66, 0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5,
            0x1d, 0xb9, 0x2c, 0x2a,
        ];
        let pk = [
            0x85, 0x20, 0xf0, 0x09, 0x89, 0x30, 0xa7, 0x54, 0x74, 0x8b, 0x7d, 0xdc, 0xb4, 0x3e,
            0xf7, 0x5a, 0x0d, 0xbf, 0x3a, 0x0d, 0x26, 0x38, 0x1a, 0xf4, 0xeb, 0xa4, 0xa9, 0x8e,
            0xaa, 0x9b, 0x4e, 0x6a,
        ];
        assert_eq!(PrivateKey::from_bytes(sk).public_key(), WgKey(pk));
    }

    #[test]
    fn debug_shows_only_the_public_key() {
        let key = PrivateKey::from_bytes([0x42; 32]);
        let shown = format!("{key:?}");
        assert!(!shown.contains(&WgKey([0x42; 32]).to_base64()), "{shown}");
        assert!(shown.contains(&key.public_key().to_base64()));
    }
}
