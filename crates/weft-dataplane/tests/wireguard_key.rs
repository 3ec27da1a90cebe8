#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The private key file, with flannel's `/run/flannel/wgkey` semantics, in
//! temporary directories (no root needed).

use std::fs;
use std::os::unix::fs::PermissionsExt;

use weft_core::wg_key::WgKey;
use weft_dataplane::wireguard::{PrivateKey, WgError, load_or_create_key};

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// A 0400 key file `wgkey` holding `text`, in a new temporary directory
/// (removed when the returned guard drops).
fn key_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wgkey");
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
    (dir, path)
}

#[test]
fn missing_file_is_created_0400_with_a_base64_key_and_reloaded_equal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/flannel/wgkey");

    let (key, created) = load_or_create_key(&path).unwrap();
    assert!(created);
    assert_eq!(mode(&path), 0o400);
    assert_eq!(mode(path.parent().unwrap()) & 0o755, 0o755);
    let content = fs::read_to_string(&path).unwrap();
    assert_eq!(content.len(), 44, "base64 of 32 bytes, no newline");
    let parsed = PrivateKey::from_base64(&content).expect("the file holds a key");
    assert_eq!(parsed.public_key(), key.public_key());
    // No temporary file left behind.
    assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);

    let (again, created) = load_or_create_key(&path).unwrap();
    assert!(!created);
    assert_eq!(again.public_key(), key.public_key());
}

#[test]
fn a_trailing_newline_is_accepted() {
    // The RFC 7748 test key, as `wg genkey > file` would leave it.
    let (_dir, path) = key_file("dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=\n");
    let (key, created) = load_or_create_key(&path).unwrap();
    assert!(!created);
    assert_eq!(
        key.public_key(),
        WgKey::from_base64("hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=").unwrap()
    );
}

#[test]
fn bad_content_is_an_error_naming_the_file_but_not_the_content() {
    let secretish = "c2VjcmV0LWJ1dC13cm9uZy1sZW5ndGgtc2VjcmV0LWtleQ==";
    let (_dir, path) = key_file(secretish);

    let err = load_or_create_key(&path).unwrap_err();
    assert!(matches!(err, WgError::KeyFileInvalid { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        !message.contains(secretish),
        "the error repeats the file's content"
    );
    assert!(!format!("{err:?}").contains(secretish));
    // The file is left alone for the operator to look at.
    assert_eq!(fs::read_to_string(&path).unwrap(), secretish);
}

#[test]
fn a_world_readable_file_is_fixed_to_0400() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wgkey");
    let (key, _) = load_or_create_key(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();

    let (again, created) = load_or_create_key(&path).unwrap();
    assert!(!created);
    assert_eq!(mode(&path), 0o400);
    assert_eq!(again.public_key(), key.public_key());
}

#[test]
fn a_directory_in_place_of_the_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_or_create_key(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn debug_of_a_key_shows_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wgkey");
    let (key, _) = load_or_create_key(&path).unwrap();
    let on_disk = fs::read_to_string(&path).unwrap();
    let shown = format!("{key:?}");
    assert!(!shown.contains(&on_disk));
    assert!(shown.contains("redacted"));
}
