//! docs/configuration.md is generated from the flag table; this fails when
//! the two drift (a flag added, a default or help text changed) and says
//! how to regenerate the file.

use std::path::PathBuf;

#[test]
fn docs_match_the_flag_table() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let want = super::reference_markdown(&crate::unbuilt::reference_section());
    if std::env::var_os("WEFT_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap_or_else(|e| panic!("{e}"));
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/configuration.md is out of date with the flags: run \
         `WEFT_BLESS=1 cargo test -p weftd docs_match_the_flag_table` and commit the result"
    );
}
