//! The `CNI_*` environment: which command, for which container, where.
//!
//! Checked before anything else, as libcni's `skel` does, because the
//! container ID becomes a file name under `dataDir` and the interface name
//! reaches the kernel: neither may carry a path or whitespace.

use crate::error::{CniError, code};

/// The spec's commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    /// Spec 1.1: is the plugin ready to service ADD?
    Status,
    /// Spec 1.1: garbage-collect attachments the runtime no longer knows.
    Gc,
}

impl Command {
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            _ => return None,
        })
    }

    /// The name as it goes into the delegate's `CNI_COMMAND`.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }

    /// The variables this command cannot run without (CNI spec "Parameters").
    fn required(self) -> &'static [&'static str] {
        match self {
            Command::Add | Command::Check => {
                &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]
            }
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
            Command::Gc => &["CNI_PATH"],
            Command::Version | Command::Status => &[],
        }
    }
}

/// One invocation's environment, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniArgs {
    pub command: Command,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    /// `CNI_PATH`: colon-separated directories to find delegates in.
    pub path: String,
}

/// Reads and validates the `CNI_*` variables through `get` (the process
/// environment in the binary, a map in tests). `CNI_COMMAND` must be set;
/// the caller handles its absence (a human running the binary by hand).
pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<CniArgs, CniError> {
    let var = |name: &str| get(name).unwrap_or_default();
    let raw = var("CNI_COMMAND");
    let command = Command::parse(&raw).ok_or_else(|| {
        CniError::new(
            code::INVALID_ENV,
            format!(
                "unknown CNI_COMMAND: {:?} (expected ADD, DEL, CHECK, VERSION, STATUS or GC)",
                truncate(&raw)
            ),
        )
    })?;
    let missing: Vec<&str> = command
        .required()
        .iter()
        .copied()
        .filter(|name| var(name).is_empty())
        .collect();
    if !missing.is_empty() {
        return Err(CniError::new(
            code::INVALID_ENV,
            format!(
                "required env variables [{}] missing: the container runtime sets them for {}",
                missing.join(","),
                command.as_str()
            ),
        ));
    }
    let args = CniArgs {
        command,
        container_id: var("CNI_CONTAINERID"),
        netns: var("CNI_NETNS"),
        ifname: var("CNI_IFNAME"),
        path: var("CNI_PATH"),
    };
    if !args.container_id.is_empty() {
        validate_container_id(&args.container_id)?;
    }
    if !args.ifname.is_empty() {
        validate_ifname(&args.ifname)?;
    }
    Ok(args)
}

/// libcni's rule (`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`): the ID is a file name
/// under `dataDir`, so `/` and a leading `.` (hence `..`) must never pass.
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    if is_plain_name(id) {
        return Ok(());
    }
    Err(CniError::new(
        code::INVALID_ENV,
        format!(
            "invalid characters in CNI_CONTAINERID {:?}: it must start with a letter or digit and contain only letters, digits, '_', '.' and '-'",
            truncate(id)
        ),
    ))
}

/// The same rule for the network name: libcni refuses other names, and
/// host-local uses the name as a directory.
pub fn is_plain_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// libcni's interface-name rule: the kernel's 15-byte limit, and no `/`,
/// `:` or whitespace.
fn validate_ifname(name: &str) -> Result<(), CniError> {
    let problem = if name.len() > 15 {
        Some("is longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("is . or ..")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        Some("contains / or : or whitespace")
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(p) => Err(CniError::new(
            code::INVALID_ENV,
            format!("CNI_IFNAME {:?} {p}", truncate(name)),
        )),
    }
}

/// Hostile input is echoed back, but never more than a line's worth.
pub fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/run/netns/pod"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ];

    #[test]
    fn parses_an_add() {
        let a = parse(env(ADD)).unwrap();
        assert_eq!(a.command, Command::Add);
        assert_eq!(a.container_id, "abc123");
        assert_eq!(a.ifname, "eth0");
    }

    #[test]
    fn names_every_missing_variable() {
        let e = parse(env(&[("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "eth0")])).unwrap_err();
        e.assert_says(code::INVALID_ENV, "[CNI_CONTAINERID,CNI_NETNS,CNI_PATH]");
        // DEL does not need a netns: the pod may already be gone.
        let e = parse(env(&[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "x")])).unwrap_err();
        e.assert_msg_has("[CNI_IFNAME,CNI_PATH]");
        assert!(parse(env(&[("CNI_COMMAND", "VERSION")])).is_ok());
    }

    #[test]
    fn refuses_unknown_commands() {
        let e = parse(env(&[("CNI_COMMAND", "FROB")])).unwrap_err();
        assert_eq!(e.code, code::INVALID_ENV);
        assert!(e.msg.contains("FROB"));
    }

    #[test]
    fn refuses_container_ids_that_are_paths() {
        for bad in ["../etc", "a/b", "..", ".hidden", "a b", "-x"] {
            let mut pairs = ADD.to_vec();
            pairs[1] = ("CNI_CONTAINERID", bad);
            let e = parse(env(&pairs)).unwrap_err();
            assert_eq!(e.code, code::INVALID_ENV, "{bad}");
        }
        assert!(validate_container_id("a..b_c-1.2").is_ok());
    }

    #[test]
    fn refuses_bad_interface_names() {
        for bad in ["eth0/x", "a:b", "0123456789abcdef", "..", "e 0"] {
            let mut pairs = ADD.to_vec();
            pairs[3] = ("CNI_IFNAME", bad);
            assert_eq!(
                parse(env(&pairs)).unwrap_err().code,
                code::INVALID_ENV,
                "{bad}"
            );
        }
    }
}
