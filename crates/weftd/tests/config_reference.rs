//! docs/configuration.md is generated from the flag table; this fails when
//! the two drift (a flag added, a default or help text changed) and says
//! how to regenerate the file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

#[test]
fn docs_match_the_flag_table() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let want = weftd::flags::reference_markdown(&weftd::unbuilt::reference_section());
    if std::env::var_os("WEFT_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/configuration.md is out of date with the flags: run \
         `WEFT_BLESS=1 cargo test -p weftd --test config_reference` and commit the result"
    );
}
