//! The one list of flanneld's flags. The parser, the `FLANNELD_*` lookup and
//! `--help` all read this table, so a flag added here is parsed, documented
//! and environment-configurable at once.

use super::{Flags, value};

/// Stores one textual value into [`Flags`], or says why it does not fit.
pub(super) type Setter = fn(&mut Flags, &str) -> Result<(), String>;

/// How a flag takes its value on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// `-name` means true; a value only as `-name=VALUE`.
    Bool,
    /// `-name VALUE` or `-name=VALUE`; the last occurrence wins.
    Value(&'static str),
    /// Like `Value`, but every occurrence adds an element.
    Repeated(&'static str),
}

impl Kind {
    pub(super) fn is_bool(self) -> bool {
        self == Kind::Bool
    }
}

/// Sections of `--help`, in display order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Group {
    General,
    Etcd,
    Kube,
    Interface,
    Rules,
    Health,
    Logging,
    Weft,
}

impl Group {
    pub(super) const ALL: [Group; 8] = [
        Group::General,
        Group::Etcd,
        Group::Kube,
        Group::Interface,
        Group::Rules,
        Group::Health,
        Group::Logging,
        Group::Weft,
    ];

    pub(super) fn title(self) -> &'static str {
        match self {
            Group::General => "General",
            Group::Etcd => "etcd lease store (the default)",
            Group::Kube => "Kubernetes lease store (--kube-subnet-mgr)",
            Group::Interface => "External interface and addresses",
            Group::Rules => "Masquerade, forwarding and routes",
            Group::Health => "Health server",
            Group::Logging => "Logging (klog-compatible)",
            Group::Weft => "weft extensions (not in flanneld)",
        }
    }
}

/// One flag: its flanneld name, how it parses, its default as flanneld
/// prints it (empty = unset), and its help text.
pub(super) struct FlagSpec {
    pub name: &'static str,
    pub kind: Kind,
    pub group: Group,
    pub default: &'static str,
    pub help: &'static str,
    pub set: Setter,
}

impl FlagSpec {
    /// `FLANNELD_<NAME>` with `-` as `_`, or `None` for `version`, which
    /// flanneld checks before reading the environment.
    pub(super) fn env_var(&self) -> Option<String> {
        (self.name != "version")
            .then(|| format!("FLANNELD_{}", self.name.to_uppercase().replace('-', "_")))
    }
}

/// Finds a flag by its exact name (Go flag names are case-sensitive).
pub(super) fn lookup(name: &str) -> Option<&'static FlagSpec> {
    FLAGS.iter().find(|spec| spec.name == name)
}

/// One table row. The last argument says where the value goes:
/// `field = parse` stores `parse(value)?`, `field += parse` appends it.
macro_rules! flag {
    (@spec $name:literal, $kind:expr, $group:ident, $default:literal, $help:literal,
     $set:expr) => {
        FlagSpec {
            name: $name,
            kind: $kind,
            group: Group::$group,
            default: $default,
            help: $help,
            set: $set,
        }
    };
    ($name:literal, $kind:expr, $group:ident, $default:literal, $help:literal,
     $field:ident = $parse:expr $(,)?) => {
        flag!(@spec $name, $kind, $group, $default, $help, |f, v| {
            f.$field = $parse(v)?;
            Ok(())
        })
    };
    ($name:literal, $kind:expr, $group:ident, $default:literal, $help:literal,
     $field:ident += $parse:expr $(,)?) => {
        flag!(@spec $name, $kind, $group, $default, $help, |f, v| {
            f.$field.push($parse(v)?);
            Ok(())
        })
    };
}

use Kind::{Bool, Repeated, Value};

/// Every flag of flannel-compat §1, in `--help` order within each group.
pub(super) static FLAGS: &[FlagSpec] = &[
    flag!(
        "subnet-file",
        Value("FILE"),
        General,
        "/run/flannel/subnet.env",
        "Where to write the environment file (FLANNEL_NETWORK, FLANNEL_SUBNET, FLANNEL_MTU, \
         FLANNEL_IPMASQ and their IPv6 twins) that the CNI plugin reads.",
        subnet_file = value::path
    ),
    flag!(
        "version",
        Bool,
        General,
        "false",
        "Print the version to stdout and exit.",
        version = value::parse_go_bool
    ),
    flag!(
        "etcd-endpoints",
        Value("URLS"),
        Etcd,
        "http://127.0.0.1:4001,http://127.0.0.1:2379",
        "Comma-separated etcd client URLs.",
        etcd_endpoints = value::endpoints
    ),
    flag!(
        "etcd-prefix",
        Value("PREFIX"),
        Etcd,
        "/coreos.com/network",
        "etcd key prefix holding the network configuration (PREFIX/config) and the subnet \
         leases (PREFIX/subnets/).",
        etcd_prefix = value::string
    ),
    flag!(
        "etcd-keyfile",
        Value("FILE"),
        Etcd,
        "",
        "TLS client key for etcd, given with --etcd-certfile. TLS is on when --etcd-cafile \
         is set (weft, unlike flanneld, does not need a client certificate for TLS).",
        etcd_keyfile = value::opt_path
    ),
    flag!(
        "etcd-certfile",
        Value("FILE"),
        Etcd,
        "",
        "TLS client certificate for etcd (see --etcd-keyfile).",
        etcd_certfile = value::opt_path
    ),
    flag!(
        "etcd-cafile",
        Value("FILE"),
        Etcd,
        "",
        "CA certificates that verify the etcd server. Required for TLS: weft does not trust \
         the system's roots for etcd, and never skips verification.",
        etcd_cafile = value::opt_path
    ),
    flag!(
        "etcd-username",
        Value("USER"),
        Etcd,
        "",
        "User name for etcd authentication.",
        etcd_username = value::opt_string
    ),
    flag!(
        "etcd-password",
        Value("PASSWORD"),
        Etcd,
        "",
        "Password for etcd authentication. Never logged. Prefer FLANNELD_ETCD_PASSWORD: a \
         command line is visible to every user of the host.",
        etcd_password = value::secret
    ),
    flag!(
        "subnet-lease-renew-margin",
        Value("MINUTES"),
        Etcd,
        "60",
        "Renew the etcd subnet lease this many minutes before it expires (leases last 24 \
         hours). From 1 to 1439; checked in every mode.",
        subnet_lease_renew_margin_minutes = value::parse_int
    ),
    flag!(
        "kube-subnet-mgr",
        Bool,
        Kube,
        "false",
        "Take this node's subnet from the Kubernetes API (the node's spec.podCIDR) instead \
         of from etcd.",
        kube_subnet_mgr = value::parse_go_bool
    ),
    flag!(
        "kube-api-url",
        Value("URL"),
        Kube,
        "",
        "Kubernetes API server URL. Leave unset in a pod: the in-cluster service account is \
         used.",
        kube_api_url = value::opt_string
    ),
    flag!(
        "kubeconfig-file",
        Value("FILE"),
        Kube,
        "",
        "kubeconfig file to reach the API server. Leave unset in a pod.",
        kubeconfig_file = value::opt_path
    ),
    flag!(
        "kube-annotation-prefix",
        Value("PREFIX"),
        Kube,
        "flannel.alpha.coreos.com",
        "Prefix of the node annotations that carry leases. It may contain one '/'; without \
         one, '/' is appended.",
        kube_annotation_prefix = value::string
    ),
    flag!(
        "net-config-path",
        Value("FILE"),
        Kube,
        "/etc/kube-flannel/net-conf.json",
        "net-conf.json read in Kubernetes mode (etcd mode reads PREFIX/config instead).",
        net_config_path = value::path
    ),
    flag!(
        "set-node-network-unavailable",
        Bool,
        Kube,
        "true",
        "Set the node's NetworkUnavailable condition to False once the network is up.",
        set_node_network_unavailable = value::parse_go_bool
    ),
    flag!(
        "iface",
        Repeated("NAME|IP"),
        Interface,
        "",
        "Interface for traffic between nodes, by name or by one of its addresses. Repeat it \
         to list candidates, tried in order; the first that exists wins. Unset: the interface \
         of the default route.",
        iface += value::non_empty
    ),
    flag!(
        "iface-regex",
        Repeated("REGEX"),
        Interface,
        "",
        "Regular expression matched against interface addresses, then interface names; \
         tried after every --iface. Repeatable.",
        iface_regex += value::non_empty
    ),
    flag!(
        "iface-can-reach",
        Value("IP"),
        Interface,
        "",
        "Use the interface and source address the kernel would use to reach IP (what \
         'ip route get IP' shows); tried after --iface-regex.",
        iface_can_reach = value::opt_ip
    ),
    flag!(
        "public-ip",
        Value("IPV4"),
        Interface,
        "",
        "IPv4 address other nodes use to reach this one, e.g. behind NAT. Unset: the \
         interface's own address.",
        public_ip = value::opt_ipv4
    ),
    flag!(
        "public-ipv6",
        Value("IPV6"),
        Interface,
        "",
        "IPv6 address other nodes use to reach this one. Unset: the interface's own address.",
        public_ipv6 = value::opt_ipv6
    ),
    flag!(
        "ip-masq",
        Bool,
        Rules,
        "false",
        "Masquerade traffic from pods to destinations outside the cluster network.",
        ip_masq = value::parse_go_bool
    ),
    flag!(
        "ip-masq-fully-random-disable",
        Bool,
        Rules,
        "false",
        "Masquerade without --random-fully (port allocation fully randomised is the default).",
        ip_masq_fully_random_disable = value::parse_go_bool
    ),
    flag!(
        "iptables-forward-rules",
        Bool,
        Rules,
        "true",
        "Accept forwarded traffic from and to the cluster network (FORWARD chain rules).",
        iptables_forward_rules = value::parse_go_bool
    ),
    flag!(
        "iptables-resync",
        Value("SECONDS"),
        Rules,
        "5",
        "How often to check that the masquerade and forward rules, and the blackhole route, \
         are still in place.",
        iptables_resync_secs = value::parse_int
    ),
    flag!(
        "ip-blackhole-route",
        Bool,
        Rules,
        "false",
        "Add a blackhole route for this node's subnet, so traffic to unused pod addresses is \
         dropped instead of leaving by the default route (for setups without a bridge, e.g. \
         Canal).",
        ip_blackhole_route = value::parse_go_bool
    ),
    flag!(
        "healthz-ip",
        Value("IP"),
        Health,
        "0.0.0.0",
        "Address the health server (/healthz, /readyz, /metrics) listens on. /metrics shows \
         lease, peer and reconcile figures (no keys or credentials); 127.0.0.1 keeps all three \
         on the node.",
        healthz_ip = value::ip
    ),
    flag!(
        "healthz-port",
        Value("PORT"),
        Health,
        "0",
        "Port of the health server; 0 disables it. /healthz answers 503 when the reconcile \
         loop has not finished a pass in 30 s (3 resync periods); /readyz 200 only while a \
         lease is held, unexpired and programmed (subnet.env written); 503 bodies say why.",
        healthz_port = value::parse_int
    ),
    flag!(
        "v",
        Value("LEVEL"),
        Logging,
        "0",
        "Log verbosity: 0 info, 1 to 4 debug, 5 and more trace. RUST_LOG, when set, \
         overrides it.",
        v = value::parse_int
    ),
    flag!(
        "vmodule",
        Value("PATTERN=N,..."),
        Logging,
        "",
        "klog's per-file verbosity. Accepted for flanneld command lines but has no effect \
         (it names Go files); use RUST_LOG.",
        vmodule = value::vmodule
    ),
    flag!(
        "log_backtrace_at",
        Value("FILE:LINE"),
        Logging,
        "",
        "klog's stack trace at a log line. Accepted for flanneld command lines but has no \
         effect.",
        log_backtrace_at = value::backtrace_at
    ),
    flag!(
        "local-store",
        Value("FILE"),
        Weft,
        "",
        "Keep leases in this local SQLite file instead of etcd: for a single host, or for \
         several agents sharing one file (as `weft lab` runs them). The network config then \
         comes from --net-config-path.",
        local_store = value::opt_path
    ),
    flag!(
        "subnet-lease-ttl",
        Value("SECONDS"),
        Weft,
        "86400",
        "Lifetime of a lease in etcd or the local store; renewed --subnet-lease-renew-margin \
         minutes (at most half the lifetime) before it lapses. flanneld uses 24 h; shorten it \
         only for tests and labs, where a vanished node should lose its subnet quickly.",
        subnet_lease_ttl_secs = value::parse_int
    ),
    flag!(
        "status-socket",
        Value("FILE"),
        Weft,
        "/run/flannel/weftd.sock",
        "Unix socket (mode 0600, root only) where `weft status` reads what the agent holds: \
         its lease and every peer. Empty disables it.",
        status_socket = value::opt_path
    ),
    flag!(
        "config",
        Value("FILE"),
        Weft,
        "",
        "Read flags from this YAML file, as K3s reads config.yaml: keys are flag names \
         without dashes (`etcd-endpoints: http://10.0.0.5:2379`, `iface: [eth1]`). The \
         command line wins over FLANNELD_* variables, which win over the file. Unknown keys \
         and bad values are errors.",
        config = value::opt_path
    ),
    flag!(
        "log-format",
        Value("text|json"),
        Weft,
        "text",
        "Log line format: `text` for people, `json` (one object per line) for collectors.",
        log_format = value::log_format
    ),
    flag!(
        "wireguard-path",
        Value("auto|kernel|userspace"),
        Weft,
        "auto",
        "Which WireGuard implementation the wireguard backend runs: the kernel module when \
         present and weft's in-process userspace one otherwise (auto), or only one of them. \
         `kernel` refuses to start where the module is missing (for users who must not run \
         userspace crypto); `userspace` never uses the module.",
        wireguard_path = value::wireguard_path
    ),
    flag!(
        "wireguard-key-rotation",
        Value("DURATION"),
        Weft,
        "0",
        "Rotate this node's WireGuard key once it is this old (Go duration syntax: 720h, \
         90m, 1h30m; at least 1s), as `weft wireguard rotate-key` does: weft peers follow at \
         once without losing traffic, flannel peers when they see the lease change. The age \
         is the key file's, so it counts across restarts. 0 never rotates on a timer.",
        wireguard_key_rotation = value::opt_go_duration
    ),
    flag!(
        "cni-conf-file",
        Value("FILE"),
        Weft,
        "",
        "Install flannel's CNI conflist here once subnet.env is written, as K3s does (e.g. \
         /etc/cni/net.d/10-flannel.conflist): network cbr0, the flannel plugin with \
         hairpinMode and isDefaultGateway, then portmap — the content of deploy/'s \
         cni-conf.json. Written atomically with mode 0644, its directory created if missing; \
         a file that already holds exactly this content is left untouched, and one deleted or \
         changed is put back within 10 seconds. Unset: weftd writes no conflist (the \
         DaemonSet's init container installs it).",
        cni_conf_file = value::opt_path
    ),
];
