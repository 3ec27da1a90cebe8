//! `--help`, rendered from the flag table so it can never miss a flag.

use std::fmt::Write as _;

use super::table::{FLAGS, FlagSpec, Group, Kind};

const WIDTH: usize = 80;
const INDENT: &str = "        ";

const INTRO: &str = "weftd is weft's node agent and a drop-in replacement for flanneld: it \
leases this node a subnet of the cluster network, connects it to the other nodes and writes \
the subnet file the CNI plugin reads.";

const SPELLING: &str = "Flags are spelled the way Go's flag package spells them, as for \
flanneld: -name and --name are the same flag, and a value follows as --name=VALUE or \
--name VALUE. A boolean flag is switched on by its name alone (--ip-masq) and takes an \
explicit value only after '=' (--ip-masq=false); the values are 1, t, T, TRUE, true, True, \
0, f, F, FALSE, false and False.";

const ENVIRONMENT: &[&str] = &[
    "Every flag that is not on the command line is read from FLANNELD_<NAME>: the flag name \
     upper-cased, '-' replaced by '_' (FLANNELD_ETCD_ENDPOINTS, FLANNELD_IFACE_REGEX, \
     FLANNELD_V). The command line always wins, and empty variables are ignored. A \
     repeatable flag takes the variable as one value (FLANNELD_IFACE=eth0,eth1 names one \
     interface called \"eth0,eth1\"); FLANNELD_ETCD_ENDPOINTS is split on commas as the flag \
     is. FLANNELD_VERSION has no effect.",
    "Unlike flanneld, a variable whose value does not parse (FLANNELD_HEALTHZ_PORT=abc) \
     stops weftd with exit status 1 and names the variable; flanneld logs it and carries on \
     with the default, hiding the typo.",
    "RUST_LOG (tracing filter syntax, e.g. RUST_LOG=weftd=debug), when set, overrides -v.",
];

const EXIT_STATUS: &str = "0 after --help, --version or a clean shutdown; 1 when the \
configuration, the environment or the agent fails; 2 for a command-line error, or for a \
flag or net-conf.json backend whose feature is not built yet.";

/// The full `--help` text. `extra` is appended before the exit-status
/// section (weftd lists its not-yet-built features there).
pub fn render(extra: &str) -> String {
    let mut out = String::from("Usage: weftd [FLAG]...\n\n");
    wrap_into(&mut out, INTRO, "");
    out.push('\n');
    wrap_into(&mut out, SPELLING, "");
    for group in Group::ALL {
        let _ = writeln!(out, "\n{}:", group.title());
        for spec in FLAGS.iter().filter(|spec| spec.group == group) {
            render_flag(&mut out, spec);
        }
    }
    out.push_str("\nEnvironment:\n");
    for (i, paragraph) in ENVIRONMENT.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        wrap_into(&mut out, paragraph, "  ");
    }
    if !extra.is_empty() {
        out.push('\n');
        out.push_str(extra);
    }
    out.push_str("\nExit status:\n");
    wrap_into(&mut out, EXIT_STATUS, "  ");
    out
}

fn render_flag(out: &mut String, spec: &FlagSpec) {
    let _ = match spec.kind {
        Kind::Bool => writeln!(out, "  --{}[=BOOL]", spec.name),
        Kind::Value(metavar) => writeln!(out, "  --{} {metavar}", spec.name),
        Kind::Repeated(metavar) => writeln!(out, "  --{} {metavar}  (repeatable)", spec.name),
    };
    wrap_into(out, spec.help, INDENT);
    let default = match (spec.default, spec.kind) {
        ("", Kind::Repeated(_)) => "none",
        ("", _) => "unset",
        (default, _) => default,
    };
    let env = spec
        .env_var()
        .unwrap_or_else(|| "none (ignored)".to_owned());
    let (default, env) = (format!("[default: {default}]"), format!("[env: {env}]"));
    // One line when it fits, else one each; never split inside a bracket.
    if INDENT.len() + default.len() + 1 + env.len() <= WIDTH {
        let _ = writeln!(out, "{INDENT}{default} {env}");
    } else {
        let _ = writeln!(out, "{INDENT}{default}\n{INDENT}{env}");
    }
}

/// Appends `text` word-wrapped to [`WIDTH`] columns, each line prefixed by
/// `indent`. A word longer than a line gets a line of its own.
pub(crate) fn wrap_into(out: &mut String, text: &str, indent: &str) {
    let mut line = String::from(indent);
    for word in text.split_whitespace() {
        if line.len() > indent.len() && line.len() + 1 + word.len() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = String::from(indent);
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if line.len() > indent.len() {
        out.push_str(&line);
        out.push('\n');
    }
}

/// The configuration reference in Markdown (docs/configuration.md), made
/// from the same table as `--help`; a test fails when the file drifts.
/// `extra` (weftd's not-yet-built section, in Markdown) goes before the
/// exit-status section, as in `--help`. Written by the test that keeps
/// the file true.
#[cfg(test)]
pub fn reference_markdown(extra: &str) -> String {
    let mut out = String::from(
        "# weftd configuration reference\n\n\
         Generated from weftd's flag table (`crates/weftd/src/flags/table.rs`); a test \
         fails when this file and the flags drift. Regenerate it with \
         `WEFT_BLESS=1 cargo test -p weftd docs_match_the_flag_table`.\n\n",
    );
    out.push_str(&format!("{INTRO}\n\n{SPELLING}\n\n"));
    out.push_str("## Flags, environment and `--config` file\n\n");
    out.push_str(
        "Each flag can also come from its `FLANNELD_*` variable and from the YAML file \
         given with `--config` (keys are flag names without dashes). Precedence: command \
         line, then environment, then file.\n",
    );
    for group in Group::ALL {
        let _ = write!(
            out,
            "\n### {}\n\n| flag | default | environment | meaning |\n| --- | --- | --- | --- |\n",
            group.title()
        );
        for spec in FLAGS.iter().filter(|spec| spec.group == group) {
            let flag = match spec.kind {
                Kind::Bool => format!("`--{}`", spec.name),
                Kind::Value(m) => format!("`--{} {m}`", spec.name),
                Kind::Repeated(m) => format!("`--{} {m}` (repeatable)", spec.name),
            };
            let default = match spec.default {
                "" => "—".to_owned(),
                d => format!("`{d}`"),
            };
            let env = spec
                .env_var()
                .map_or_else(|| "—".to_owned(), |e| format!("`{e}`"));
            let help = spec
                .help
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .replace('|', "\\|");
            let _ = writeln!(out, "| {flag} | {default} | {env} | {help} |");
        }
    }
    out.push_str("\n## Environment\n\n");
    for paragraph in ENVIRONMENT {
        let text = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
        let _ = writeln!(out, "{text}\n");
    }
    out.push_str(
        "Other variables, as flanneld reads them: `NODE_NAME` (or `POD_NAME` and \
`POD_NAMESPACE`) names the node in Kubernetes mode; `WIREGUARD_KEY_FILE` overrides the \
WireGuard key file `/run/flannel/wgkey`; `NOTIFY_SOCKET` (set by systemd for a \
`Type=notify` unit) is told `READY=1` once the node is first ready and `STOPPING=1` at \
SIGTERM.\n\n",
    );
    out.push_str(extra);
    let _ = writeln!(out, "## Exit status\n\n{EXIT_STATUS}");
    out
}
