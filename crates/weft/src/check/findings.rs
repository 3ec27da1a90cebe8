//! One result of `weft check`.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    pub fn label(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

/// What was checked, what was seen, and — unless it is fine — the fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub name: String,
    pub level: Level,
    pub seen: String,
    pub fix: Option<String>,
}

impl Finding {
    pub fn ok(name: &str, seen: impl Into<String>) -> Finding {
        Finding {
            name: name.to_owned(),
            level: Level::Ok,
            seen: seen.into(),
            fix: None,
        }
    }

    pub fn warn(name: &str, seen: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            name: name.to_owned(),
            level: Level::Warn,
            seen: seen.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn fail(name: &str, seen: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            name: name.to_owned(),
            level: Level::Fail,
            seen: seen.into(),
            fix: Some(fix.into()),
        }
    }
}
