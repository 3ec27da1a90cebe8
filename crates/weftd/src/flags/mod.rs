//! flanneld's command line, parsed the way Go's `flag` package parses it.
//!
//! weftd must be a drop-in for `flanneld`: DaemonSets, systemd units and K3s
//! pass flannel's flags in Go spellings (`-iface eth0`, `--ip-masq`,
//! `-v=2`), and operators configure it through `FLANNELD_*` variables. clap
//! cannot express Go's rules (single-dash long names, a value flag swallowing
//! the next argument even when it starts with `-`, booleans that take a value
//! only after `=`), so this module is a small table-driven parser instead:
//! `table.rs` lists every flag once (name, kind, default, help, setter), and
//! the parser, the `FLANNELD_*` lookup and `--help` are all driven by it.
//!
//! Differences from flanneld, on purpose:
//! - A `FLANNELD_*` variable whose value does not parse is an error naming
//!   the variable (exit 1). flanneld only logs "Failed to set flag FLANNELD
//!   from env" and runs with the default, which hides typos.
//! - A usage error exits 2 (Go's `flag` default). flanneld's own usage
//!   function calls `os.Exit(0)`, so it exits 0 even on an unknown flag.
//! - A stray argument (`--ip-masq false`) is an error. Go stops parsing there
//!   and flanneld silently ignores it and every flag after it.
//! - IP-valued flags are parsed here, so `--public-ip=10.0.0.300` fails at
//!   startup with the flag's name instead of deep inside interface selection.
//! - `--version` prints to stdout (flanneld: stderr); `--help` prints to
//!   stdout (flanneld: stderr).
//! - Integers are decimal only (Go also accepts `0x1f`, `0o17`, `1_000`).

mod config_file;
mod help;
#[cfg(test)]
mod reference_doc_test;
mod table;
#[cfg(test)]
mod tests;
mod value;

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

#[cfg(test)]
pub use help::reference_markdown;
pub use help::render as help_text;
pub(crate) use help::wrap_into;

/// Every flanneld flag, typed. Field names follow the flag names; durations
/// carry their unit in the name because flannel's flags are bare integers.
///
/// `Debug` is derived and safe to log: the etcd password is a [`Secret`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flags {
    /// `--etcd-endpoints`, split on commas (blanks trimmed, empty items dropped).
    pub etcd_endpoints: Vec<String>,
    /// `--etcd-prefix`: key prefix holding `config` and `subnets/`.
    pub etcd_prefix: String,
    /// `--etcd-keyfile`: client TLS key (TLS only when key and cert are both set).
    pub etcd_keyfile: Option<PathBuf>,
    /// `--etcd-certfile`: client TLS certificate.
    pub etcd_certfile: Option<PathBuf>,
    /// `--etcd-cafile`: CA bundle used to verify etcd.
    pub etcd_cafile: Option<PathBuf>,
    /// `--etcd-username`: etcd basic-auth user.
    pub etcd_username: Option<String>,
    /// `--etcd-password`: etcd basic-auth password, redacted in logs.
    pub etcd_password: Option<Secret>,
    /// `--iface` (repeatable): interface names or IPs, tried in order.
    pub iface: Vec<String>,
    /// `--iface-regex` (repeatable): regexes over interface IPs, then names.
    pub iface_regex: Vec<String>,
    /// `--iface-can-reach`: pick the interface that routes to this address.
    pub iface_can_reach: Option<IpAddr>,
    /// `--subnet-file`: where subnet.env is written.
    pub subnet_file: PathBuf,
    /// `--public-ip`: IPv4 address advertised to peers.
    pub public_ip: Option<Ipv4Addr>,
    /// `--public-ipv6`: IPv6 address advertised to peers.
    pub public_ipv6: Option<Ipv6Addr>,
    /// `--subnet-lease-renew-margin`, minutes. Signed so that a negative value
    /// gets flannel's range message from [`Flags::validate`], not a parse error.
    pub subnet_lease_renew_margin_minutes: i64,
    /// `--ip-masq`: install masquerade rules for traffic leaving the cluster network.
    pub ip_masq: bool,
    /// `--ip-masq-fully-random-disable`: plain MASQUERADE without `--random-fully`.
    pub ip_masq_fully_random_disable: bool,
    /// `--kube-subnet-mgr`: use the Kubernetes API instead of etcd.
    pub kube_subnet_mgr: bool,
    /// `--kube-api-url`: API server URL (unset: kubeconfig or in-cluster).
    pub kube_api_url: Option<String>,
    /// `--kube-annotation-prefix`: validated by the Kubernetes store, not here.
    pub kube_annotation_prefix: String,
    /// `--kubeconfig-file`: kubeconfig path (unset: in-cluster service account).
    pub kubeconfig_file: Option<PathBuf>,
    /// `--version`. Always false in [`Invocation::Run`]; kept so the table can
    /// treat it like any other flag.
    pub version: bool,
    /// `--healthz-ip`: listen address of the health server.
    pub healthz_ip: IpAddr,
    /// `--healthz-port`: 0 disables the health server.
    pub healthz_port: u16,
    /// `--iptables-resync`, seconds between rule (and blackhole route) checks.
    pub iptables_resync_secs: u64,
    /// `--iptables-forward-rules`: install FORWARD accept rules for the cluster network.
    pub iptables_forward_rules: bool,
    /// `--ip-blackhole-route`: blackhole route for the node's own subnet.
    pub ip_blackhole_route: bool,
    /// `--net-config-path`: net-conf.json in Kubernetes mode.
    pub net_config_path: PathBuf,
    /// `--set-node-network-unavailable`: Kubernetes mode sets NetworkUnavailable=False.
    pub set_node_network_unavailable: bool,
    /// klog's `-v`: verbosity, mapped onto tracing levels by `logging`.
    pub v: u32,
    /// klog's `-vmodule` (syntax-checked; has no Rust equivalent).
    pub vmodule: Option<String>,
    /// klog's `-log_backtrace_at` (syntax-checked; has no Rust equivalent).
    pub log_backtrace_at: Option<String>,
    /// `--local-store` (weft): the SQLite lease file used instead of etcd.
    pub local_store: Option<PathBuf>,
    /// `--subnet-lease-ttl` (weft), seconds: lease lifetime in etcd or the local store.
    pub subnet_lease_ttl_secs: u64,
    /// `--status-socket` (weft): the local API for `weft status`; `None` disables it.
    pub status_socket: Option<PathBuf>,
    /// `--config` (weft): a YAML file of flags, lowest precedence.
    pub config: Option<PathBuf>,
    /// `--log-format` (weft): `text` (default) or `json`.
    pub log_format: String,
    /// `--wireguard-path` (weft): `auto`, `kernel` or `userspace`.
    pub wireguard_path: String,
    /// `--wireguard-key-rotation` (weft): rotate this node's WireGuard key
    /// once it is this old; `None` (the default) never rotates on a timer.
    pub wireguard_key_rotation: Option<std::time::Duration>,
    /// `--cni-conf-file` (weft): where to install flannel's CNI conflist
    /// once subnet.env is written; `None` installs nothing.
    pub cni_conf_file: Option<PathBuf>,
}

impl Flags {
    /// The interface flags, as the interface choice takes them
    /// (`weft_dataplane::external`).
    pub fn interface_choice(&self) -> weft_dataplane::external::InterfaceChoice {
        weft_dataplane::external::InterfaceChoice {
            iface: self.iface.clone(),
            iface_regex: self.iface_regex.clone(),
            iface_can_reach: self.iface_can_reach,
            public_ip: self.public_ip,
            public_ipv6: self.public_ipv6,
        }
    }
}

impl Default for Flags {
    /// flanneld's defaults (flannel-compat §1).
    fn default() -> Self {
        Self {
            etcd_endpoints: vec![
                "http://127.0.0.1:4001".to_owned(),
                "http://127.0.0.1:2379".to_owned(),
            ],
            etcd_prefix: "/coreos.com/network".to_owned(),
            etcd_keyfile: None,
            etcd_certfile: None,
            etcd_cafile: None,
            etcd_username: None,
            etcd_password: None,
            iface: Vec::new(),
            iface_regex: Vec::new(),
            iface_can_reach: None,
            subnet_file: PathBuf::from("/run/flannel/subnet.env"),
            public_ip: None,
            public_ipv6: None,
            subnet_lease_renew_margin_minutes: 60,
            ip_masq: false,
            ip_masq_fully_random_disable: false,
            kube_subnet_mgr: false,
            kube_api_url: None,
            kube_annotation_prefix: "flannel.alpha.coreos.com".to_owned(),
            kubeconfig_file: None,
            version: false,
            healthz_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            healthz_port: 0,
            iptables_resync_secs: 5,
            iptables_forward_rules: true,
            ip_blackhole_route: false,
            net_config_path: PathBuf::from("/etc/kube-flannel/net-conf.json"),
            set_node_network_unavailable: true,
            v: 0,
            vmodule: None,
            log_backtrace_at: None,
            local_store: None,
            subnet_lease_ttl_secs: 24 * 60 * 60,
            status_socket: Some(PathBuf::from("/run/flannel/weftd.sock")),
            config: None,
            log_format: "text".to_owned(),
            wireguard_path: "auto".to_owned(),
            wireguard_key_rotation: None,
            cni_conf_file: None,
        }
    }
}

/// The message flanneld prints for a renew margin out of range; kept
/// byte-identical because operators grep for it.
pub const RENEW_MARGIN_MESSAGE: &str =
    "Invalid subnet-lease-renew-margin option, out of acceptable range";

impl Flags {
    /// Startup checks that flanneld makes before touching any datastore
    /// (flannel-compat §1 step 3), plus one flanneld lacks: a non-positive
    /// `--iptables-resync` makes Go's ticker panic, weftd refuses it.
    /// Failing here exits 1, as flanneld does.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=1439).contains(&self.subnet_lease_renew_margin_minutes) {
            return Err(RENEW_MARGIN_MESSAGE.to_owned());
        }
        if self.subnet_lease_ttl_secs < 5 {
            return Err(
                "Invalid subnet-lease-ttl option: a lease must live at least 5 seconds".to_owned(),
            );
        }
        if self.iptables_resync_secs == 0 {
            return Err(
                "Invalid iptables-resync option: the resync period must be at least 1 second"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

/// A string that must never reach a log. `Debug` prints `<redacted>` and
/// there is no `Display`, so the only way to the text is [`Secret::expose`],
/// which is easy to find in review.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it (the etcd client).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Invocation {
    /// `-h`, `-help` or `--help`: print [`help_text`] and exit 0.
    Help,
    /// `--version`: print the version and exit 0. Decided before any
    /// `FLANNELD_*` variable is read, as in flanneld, so a bad variable
    /// cannot stop `--version`.
    Version,
    /// Run the agent with these flags (command line, then `FLANNELD_*`).
    Run(Box<Flags>),
}

/// Why the command line or environment was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlagError {
    /// A bad command line, worded like Go's `flag` package.
    #[error("{0}")]
    Usage(String),
    /// One or more `FLANNELD_*` variables that do not parse, one per line,
    /// each naming the variable.
    #[error("{}", .0.join("\n"))]
    Env(Vec<String>),
    /// The `--config` file cannot be read, or has unknown keys or bad values.
    #[error("{}", .0.join("\n"))]
    Config(Vec<String>),
}

impl FlagError {
    /// Exit status: 2 for usage errors (Go's `flag.ExitOnError`), 1 for a bad
    /// environment (a configuration error, like every other one at startup).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            Self::Env(_) | Self::Config(_) => 1,
        }
    }
}

/// Parses `args` (the arguments after the program name) with Go `flag`
/// semantics, then fills every flag not given on the command line from
/// `env("FLANNELD_<NAME>")` when that returns a non-empty value.
///
/// `env` is injected so that precedence is testable without mutating the
/// process environment (which is `unsafe` in edition 2024).
pub fn parse_from<I, S>(
    args: I,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Invocation, FlagError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    parse_with_files(args, env, |path| std::fs::read_to_string(path))
}

/// [`parse_from`] with the `--config` file reader injected (for tests).
/// Precedence: command line, then `FLANNELD_*`, then the `--config` file.
pub fn parse_with_files<I, S>(
    args: I,
    env: impl Fn(&str) -> Option<String>,
    read: impl Fn(&std::path::Path) -> std::io::Result<String>,
) -> Result<Invocation, FlagError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut flags = Flags::default();
    let mut set_on_command_line: HashSet<&'static str> = HashSet::new();
    let mut args = args.into_iter().map(Into::into);
    // The last flag parsed, if it was a boolean without `=`: used to explain
    // `--ip-masq false`, which Go would treat as the end of the flags.
    let mut bare_bool: Option<&'static str> = None;

    while let Some(arg) = args.next() {
        if arg == "--" {
            // Go's terminator. flanneld takes no positional arguments.
            return match args.next() {
                Some(extra) => Err(unexpected_argument(&extra, None)),
                None => break,
            };
        }
        let Some(body) = arg.strip_prefix('-').filter(|body| !body.is_empty()) else {
            return Err(unexpected_argument(&arg, bare_bool));
        };
        let body = body.strip_prefix('-').unwrap_or(body);
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(FlagError::Usage(format!("bad flag syntax: {arg}")));
        }
        let (name, inline_value) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (body, None),
        };
        let Some(spec) = table::lookup(name) else {
            if name == "h" || name == "help" {
                return Ok(Invocation::Help);
            }
            return Err(FlagError::Usage(format!(
                "flag provided but not defined: -{name}"
            )));
        };

        bare_bool = None;
        if spec.kind.is_bool() {
            let value = inline_value.unwrap_or("true");
            (spec.set)(&mut flags, value).map_err(|e| {
                FlagError::Usage(format!("invalid boolean value {value:?} for -{name}: {e}"))
            })?;
            if inline_value.is_none() {
                bare_bool = Some(spec.name);
            }
        } else {
            let value = match inline_value {
                Some(value) => value.to_owned(),
                // Like Go, the next argument is the value even if it starts with '-'.
                None => args
                    .next()
                    .ok_or_else(|| FlagError::Usage(format!("flag needs an argument: -{name}")))?,
            };
            (spec.set)(&mut flags, &value).map_err(|e| {
                FlagError::Usage(format!("invalid value {value:?} for flag -{name}: {e}"))
            })?;
        }
        set_on_command_line.insert(spec.name);
    }

    if flags.version {
        return Ok(Invocation::Version);
    }

    let mut problems = Vec::new();
    for spec in table::FLAGS {
        let Some(var) = spec.env_var() else { continue };
        if set_on_command_line.contains(spec.name) {
            continue;
        }
        let Some(value) = env(&var).filter(|value| !value.is_empty()) else {
            continue;
        };
        if let Err(e) = (spec.set)(&mut flags, &value) {
            problems.push(format!(
                "invalid value {value:?} in {var} (flag -{}): {e}",
                spec.name
            ));
        }
        set_on_command_line.insert(spec.name);
    }
    if !problems.is_empty() {
        return Err(FlagError::Env(problems));
    }
    if let Some(path) = flags.config.clone() {
        let shown = path.display().to_string();
        let text = read(&path)
            .map_err(|e| FlagError::Config(vec![format!("cannot read --config {shown}: {e}")]))?;
        config_file::apply(&text, &shown, &mut flags, &set_on_command_line)
            .map_err(FlagError::Config)?;
    }
    Ok(Invocation::Run(Box::new(flags)))
}

/// A non-flag argument. flanneld takes none; Go would silently stop parsing
/// here, which is how `--ip-masq false` turns masquerading *on* and drops
/// every later flag, so say so.
fn unexpected_argument(arg: &str, after_bool: Option<&str>) -> FlagError {
    match after_bool {
        Some(flag) if value::parse_go_bool(arg).is_ok() => FlagError::Usage(format!(
            "unexpected argument {arg:?} after -{flag}: a boolean flag takes its value \
             after '=', as in -{flag}={arg}"
        )),
        _ => FlagError::Usage(format!(
            "unexpected argument {arg:?}: weftd takes only flags"
        )),
    }
}
