//! weft's CNI plugin, installed as `flannel`.
//!
//! A meta-plugin, like flannel's own: it reads the node's subnet from
//! `/run/flannel/subnet.env` (written by the agent), turns the conflist's
//! `delegate` options into a `bridge` + `host-local` configuration
//! (flannel-compat §5.3), saves that configuration for DEL and runs the
//! delegate. Everything that decides is a pure function (`delegate`,
//! `netconf`, `args`); the edges (`subnet`, `state`, `exec`) are thin.
//!
//! It starts once per pod, so it stays small: no async runtime, no argument
//! parser, serde_json and weft-core only.

pub mod args;
pub mod commands;
pub mod delegate;
pub mod error;
pub mod exec;
pub mod netconf;
pub mod state;
pub mod subnet;
#[cfg(test)]
mod test_files;
pub mod version;

use std::io::{Read, Write};

pub use error::{CniError, code};

/// The largest network configuration accepted on stdin. A conflist entry
/// is a few hundred bytes; the runtime's `runtimeConfig` (port mappings,
/// bandwidth) can add some kilobytes. More is not a configuration.
pub const MAX_STDIN_BYTES: u64 = 1 << 20;

/// Writes one log line on stderr, the only channel for logs: stdout is the
/// result. A closed stderr is not worth failing a pod for.
pub fn log(msg: &str) {
    let _ = writeln!(std::io::stderr(), "flannel (weft): {msg}");
}

/// What a human sees when running the binary without `CNI_COMMAND`
/// (libcni's plugins print the same kind of line and exit 0).
pub fn about() -> String {
    format!(
        "CNI plugin flannel (weft {})\nCNI protocol versions supported: {}",
        env!("CARGO_PKG_VERSION"),
        version::SUPPORTED.join(", ")
    )
}

/// Reads the network configuration, refusing more than `MAX_STDIN_BYTES`.
pub fn read_stdin(input: impl Read) -> Result<Vec<u8>, CniError> {
    let mut buf = Vec::new();
    input
        .take(MAX_STDIN_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CniError::new(code::IO, format!("error reading from stdin: {e}")))?;
    if buf.len() as u64 > MAX_STDIN_BYTES {
        return Err(CniError::new(
            code::DECODE,
            format!("the network configuration on stdin is larger than {MAX_STDIN_BYTES} bytes"),
        ));
    }
    Ok(buf)
}

/// One whole invocation: environment through `get`, configuration from
/// `stdin`. Returns the bytes for stdout and the exit status.
pub fn main_with(get: impl Fn(&str) -> Option<String>, stdin: impl Read) -> (Vec<u8>, i32) {
    let args = match args::parse(get) {
        Ok(a) => a,
        Err(e) => return failure(version::LATEST, &e),
    };
    let input = if args.command == args::Command::Version {
        Vec::new()
    } else {
        match read_stdin(stdin) {
            Ok(b) => b,
            Err(e) => return failure(version::LATEST, &e),
        }
    };
    let reply = commands::run(&args, &input);
    match reply.result {
        Ok(out) => (out, 0),
        Err(e) => failure(&reply.cni_version, &e),
    }
}

fn failure(cni_version: &str, e: &CniError) -> (Vec<u8>, i32) {
    log(&e.to_string());
    let mut out = serde_json::to_vec(&e.to_json(cni_version)).unwrap_or_default();
    out.push(b'\n');
    (out, 1)
}
