//! Running `nft`, `iptables-save` and `iptables-restore`.
//!
//! Input goes on stdin and arguments are passed as a vector: nothing ever
//! reaches a shell. The child inherits the calling thread's network
//! namespace, which is what lets tests (and the lab) program a namespace by
//! calling from a thread that entered it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::RulesError;
use super::error::ToolKind;

/// How long one tool run may take. `-w` makes iptables wait for the xtables
/// lock (kube-proxy holds it on big clusters, flannel #933); this bound keeps
/// a wedged lock holder from stalling the reconciler forever.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the tools live. The defaults are looked up in `PATH`; a distribution
/// that must pin `iptables-legacy-restore` (or a test) sets them explicitly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    pub nft: PathBuf,
    /// Used only for `--version`, to learn what `iptables-restore` supports.
    pub iptables: PathBuf,
    pub iptables_save: PathBuf,
    pub iptables_restore: PathBuf,
    pub ip6tables_save: PathBuf,
    pub ip6tables_restore: PathBuf,
}

impl Default for Tools {
    fn default() -> Tools {
        Tools {
            nft: "nft".into(),
            iptables: "iptables".into(),
            iptables_save: "iptables-save".into(),
            iptables_restore: "iptables-restore".into(),
            ip6tables_save: "ip6tables-save".into(),
            ip6tables_restore: "ip6tables-restore".into(),
        }
    }
}

/// Runs `program args…` with `stdin` as input; returns stdout on success.
/// `target` names what is being worked on, for the error.
pub(crate) async fn run(
    kind: ToolKind,
    program: &Path,
    args: &[&str],
    stdin: Option<&str>,
    target: &str,
) -> Result<String, RulesError> {
    let command = command_line(program, args);
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            RulesError::ToolMissing {
                tool: program.display().to_string(),
                remedy: kind.remedy(),
            }
        } else {
            RulesError::Spawn {
                command: command.clone(),
                target: target.to_owned(),
                source,
            }
        }
    })?;

    let pipe = child.stdin.take();
    let feed = async move {
        if let (Some(mut pipe), Some(input)) = (pipe, stdin) {
            // A tool that rejects its input may exit before reading all of
            // it; the broken pipe is then reported through its exit status
            // and stderr, which say more.
            let _ = pipe.write_all(input.as_bytes()).await;
            let _ = pipe.shutdown().await;
        }
    };
    let waited = tokio::time::timeout(TOOL_TIMEOUT, async {
        let ((), out) = tokio::join!(feed, child.wait_with_output());
        out
    })
    .await
    .map_err(|_| RulesError::Timeout {
        command: command.clone(),
        target: target.to_owned(),
        secs: TOOL_TIMEOUT.as_secs(),
        hint: kind.hint(),
    })?;
    let output = waited.map_err(|source| RulesError::Spawn {
        command: command.clone(),
        target: target.to_owned(),
        source,
    })?;

    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    Err(RulesError::Failed {
        command,
        target: target.to_owned(),
        status: output.status.to_string(),
        stderr: with_failing_line(&stderr, stdin),
        hint: kind.hint(),
    })
}

fn command_line(program: &Path, args: &[&str]) -> String {
    let mut s = program.display().to_string();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

/// iptables-restore reports "Error occurred at line: N" without the line;
/// quoting it saves the operator from reconstructing the generated input.
/// (Errors the kernel raises at commit point at `COMMIT`, which says
/// nothing, so that line is not quoted.)
fn with_failing_line(stderr: &str, stdin: Option<&str>) -> String {
    let line_no = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Error occurred at line: "))
        .and_then(|n| n.trim().parse::<usize>().ok());
    match (line_no, stdin) {
        (Some(n), Some(input)) if n > 0 => match input.lines().nth(n - 1) {
            Some(line) if line != "COMMIT" => format!("{stderr} (input line {n}: `{line}`)"),
            _ => stderr.to_owned(),
        },
        _ => stderr.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_line_is_quoted() {
        let err = "iptables-restore v1.8.9 (nf_tables): Chain 'BOGUS' does not exist\n\
                   Error occurred at line: 2\nTry `iptables-restore -h'";
        let got = with_failing_line(err, Some("*nat\n-A X -j BOGUS\nCOMMIT\n"));
        assert!(got.ends_with("(input line 2: `-A X -j BOGUS`)"), "{got}");
        assert_eq!(with_failing_line("boom", None), "boom");
    }
}
