//! CNI spec versions: which a request may carry, and which the delegate is
//! handed.

use crate::error::{CniError, code};

/// Every version flannel's plugin accepts (`version.All` of libcni 1.3).
pub const SUPPORTED: [&str; 7] = [
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// The newest version; what VERSION reports and what an error carries when
/// the request's own version is unknown.
pub const LATEST: &str = "1.1.0";

/// The spec's default when a configuration has no `cniVersion`.
pub const DEFAULT: &str = "0.1.0";

/// Refuses a version this plugin does not speak, with the spec's code 1.
pub fn check(version: &str) -> Result<(), CniError> {
    if SUPPORTED.contains(&version) {
        return Ok(());
    }
    let shown = shown(version);
    Err(CniError::new(
        code::INCOMPATIBLE_VERSION,
        format!(
            "incompatible CNI versions: config is {shown}, plugin supports {}",
            SUPPORTED.join(", ")
        ),
    )
    .with_details(format!("config is {shown}, plugin supports {SUPPORTED:?}")))
}

/// The longest part of a refused version a message repeats: a real one is
/// five characters, and anything echoed reaches the runtime's event log.
const MAX_SHOWN_CHARS: usize = 64;

/// `version` quoted and escaped for a message, cut to `MAX_SHOWN_CHARS`
/// characters (`…` marks the cut).
fn shown(version: &str) -> String {
    match version.char_indices().nth(MAX_SHOWN_CHARS) {
        Some((cut, _)) => format!("{:?}…", &version[..cut]),
        None => format!("{version:?}"),
    }
}

/// True when `version` is at least `min` (both in `SUPPORTED`, compared by
/// position; unknown versions compare as older than everything).
pub fn at_least(version: &str, min: &str) -> bool {
    let pos = |v: &str| SUPPORTED.iter().position(|s| *s == v);
    matches!((pos(version), pos(min)), (Some(v), Some(m)) if v >= m)
}

/// The version the delegate is handed for a request of `version`.
///
/// Spec 1.1.0 changed nothing in ADD, DEL and CHECK, and a 1.0.0 result is
/// a valid 1.1.0 one (1.1 only adds optional fields), but the reference
/// plugins Debian ships (1.1.1) speak at most 1.0.0 and refuse 1.1.0
/// outright. So a 1.1.0 request goes to the delegate as 1.0.0 and the
/// result is relabelled; flannel's plugin passes 1.1.0 through and fails
/// with such plugins.
pub fn for_delegate(version: &str) -> &str {
    if version == "1.1.0" { "1.0.0" } else { version }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_flannels_versions_only() {
        for v in SUPPORTED {
            assert!(check(v).is_ok(), "{v}");
        }
        let e = check("2.0.0").unwrap_err();
        e.assert_says(code::INCOMPATIBLE_VERSION, "\"2.0.0\"");
        assert!(check("").is_err());
    }

    #[test]
    fn a_refused_version_is_quoted_escaped_and_cut() {
        let e = check(&"9".repeat(100_000)).unwrap_err();
        assert!(e.msg.len() < 300 && e.details.len() < 300, "{e}");
        e.assert_msg_has(&format!("\"{}\"…", "9".repeat(64)));
        let e = check("1.0.0\n\u{1b}[2J").unwrap_err();
        assert!(!e.to_string().chars().any(char::is_control), "{e}");
        e.assert_msg_has(r#""1.0.0\n\u{1b}[2J""#);
        // Exactly the limit is shown whole.
        let e = check(&"7".repeat(64)).unwrap_err();
        assert!(!e.msg.contains('…'), "{}", e.msg);
    }

    #[test]
    fn orders_versions() {
        assert!(at_least("0.4.0", "0.4.0"));
        assert!(at_least("1.0.0", "0.4.0"));
        assert!(!at_least("0.3.1", "0.4.0"));
        assert!(!at_least("9.9.9", "0.1.0"));
    }

    #[test]
    fn hands_1_0_0_for_1_1_0() {
        assert_eq!(for_delegate("1.1.0"), "1.0.0");
        assert_eq!(for_delegate("0.3.1"), "0.3.1");
    }
}
