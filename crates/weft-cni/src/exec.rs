//! Running a delegate plugin as the CNI spec requires: found by name in
//! `CNI_PATH`, the same `CNI_*` environment with `CNI_COMMAND` set, the
//! configuration on stdin, the result on stdout.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use serde_json::Value;

use crate::args::Command;
use crate::error::{CniError, code};

/// The first `<dir>/<plugin>` that is a file, over the colon-separated
/// `CNI_PATH` (libcni's `FindInPath`). `plugin` has passed
/// `delegate::check_plugin_name`.
pub fn find(plugin: &str, cni_path: &str) -> Result<PathBuf, CniError> {
    cni_path
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join(plugin))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::new(
                code::INVALID_NETCONF,
                format!(
                    "delegate plugin {plugin:?} not found in CNI_PATH {cni_path:?}: install the CNI \
                     reference plugins there (Debian: containernetworking-plugins; upstream: \
                     github.com/containernetworking/plugins) or set \"delegate\": {{\"type\": …}} \
                     in the conflist to a plugin that is installed"
                ),
            )
        })
}

/// Runs the delegate `exe` (found by `find` for `plugin`) for `command`
/// with `conf` on stdin and returns its stdout.
/// A failure carries the delegate's own code, message and details, with the
/// delegate named in front of the message.
pub fn invoke(
    exe: &Path,
    plugin: &str,
    command: Command,
    conf: &[u8],
) -> Result<Vec<u8>, CniError> {
    let mut child = Process::new(exe)
        .env("CNI_COMMAND", command.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            CniError::new(
                code::IO,
                format!("cannot run delegate {}: {e}", exe.display()),
            )
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin that exits without reading its stdin is judged by its exit
        // status and output, not by our broken pipe.
        if let Err(e) = stdin.write_all(conf)
            && e.kind() != ErrorKind::BrokenPipe
        {
            crate::log(&format!("writing to delegate {plugin}: {e}"));
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::new(code::IO, format!("waiting for delegate {plugin}: {e}")))?;
    // The delegate's log lines belong in the runtime's log next to ours.
    if !out.stderr.is_empty() {
        let _ = std::io::stderr().write_all(&out.stderr);
    }
    if out.status.success() {
        return Ok(out.stdout);
    }
    Err(delegate_error(
        plugin,
        &out.stdout,
        &out.stderr,
        &out.status.to_string(),
    ))
}

/// The delegate's error JSON with context, or a generic error quoting its
/// stderr when it died without one.
fn delegate_error(plugin: &str, stdout: &[u8], stderr: &[u8], status: &str) -> CniError {
    if let Ok(Value::Object(e)) = serde_json::from_slice::<Value>(stdout)
        && let Some(c) = e.get("code").and_then(Value::as_u64)
    {
        let text = |k: &str| {
            e.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        return CniError::new(
            u32::try_from(c).unwrap_or(code::INTERNAL),
            format!("delegate {plugin} failed: {}", text("msg")),
        )
        .with_details(text("details"));
    }
    let said = String::from_utf8_lossy(if stdout.is_empty() { stderr } else { stdout });
    let said = said.trim();
    // The end of a crash log says the most; 1024 characters of it.
    let start = said.char_indices().rev().nth(1023).map_or(0, |(i, _)| i);
    let tail = &said[start..];
    CniError::new(
        code::INTERNAL,
        format!("delegate {plugin} failed ({status}) without a CNI error result"),
    )
    .with_details(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_the_delegates_error_through_with_context() {
        let e = delegate_error(
            "bridge",
            br#"{"cniVersion":"1.0.0","code":7,"msg":"bad mtu","details":"x"}"#,
            b"",
            "exit status: 1",
        );
        assert_eq!(
            e,
            CniError::new(7, "delegate bridge failed: bad mtu").with_details("x")
        );
    }

    #[test]
    fn a_silent_crash_quotes_stderr() {
        let e = delegate_error("bridge", b"", b"panic: boom\n", "signal: 6");
        e.assert_says(code::INTERNAL, "signal: 6");
        assert_eq!(e.details, "panic: boom");
    }

    #[test]
    fn finds_the_first_match_in_cni_path() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(b.path().join("bridge"), "").unwrap();
        std::fs::create_dir(a.path().join("bridge-dir")).unwrap();
        let path = format!("{}::{}", a.path().display(), b.path().display());
        assert_eq!(find("bridge", &path).unwrap(), b.path().join("bridge"));
        // A directory of that name is not a plugin.
        assert!(find("bridge-dir", &path).is_err());
        let e = find("macvlan", &path).unwrap_err();
        e.assert_says(code::INVALID_NETCONF, "containernetworking-plugins");
    }
}
