//! `weft config …`: net-conf.json at the operator's desk.

use std::io::{self, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use weft_core::netconf::{self, NetConfError, NetConfig};

/// `weft config validate FILE`: prints the effective configuration (exit 0)
/// or the validation error (exit 1).
pub fn validate(path: &Path) -> ExitCode {
    let text = match read(path) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    match netconf::parse(&text) {
        Ok(config) => match print_config(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::FAILURE
            }
        },
        Err(err) => {
            print_error(&err);
            ExitCode::FAILURE
        }
    }
}

/// The file's text; `-` is standard input.
fn read(path: &Path) -> Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        io::stdin()
            .read_to_string(&mut text)
            .context("cannot read net-conf.json from standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read net-conf.json file {}", path.display()))
}

/// Warnings on stderr, then the effective configuration on stdout.
fn print_config(config: &NetConfig) -> Result<()> {
    for key in &config.unknown_keys {
        eprintln!("warning: unknown key {key:?} ignored");
    }
    let json = serde_json::to_string_pretty(config).context("cannot encode the configuration")?;
    let mut out = io::stdout().lock();
    writeln!(out, "{json}")
        .and_then(|()| out.flush())
        .context("cannot write to standard output")
}

/// flannel's message on the first line, then how to fix it.
fn print_error(err: &NetConfError) {
    eprintln!("error: {err}");
    if let Some(hint) = err.hint() {
        eprintln!("hint: {hint}");
    }
}
