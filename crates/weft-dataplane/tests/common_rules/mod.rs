//! Helpers of the rules tests: specs, fixtures, and network namespaces on
//! dedicated threads. Every kernel-touching step runs on a thread that has
//! unshared its network namespace, so the host's rules are never touched.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::process::{Command, Stdio};
use std::sync::Arc;

use weft_dataplane::netns::Resident;
use weft_dataplane::rules::{Drift, FamilyRules, Rules, RulesBackend, RulesError, RulesSpec};

pub const NETWORK: &str = "10.244.0.0/16";
pub const SUBNET: &str = "10.244.6.0/24";
pub const NETWORK6: &str = "fd00:10:244::/56";
pub const SUBNET6: &str = "fd00:10:244:6::/64";

pub fn family(network: &str, subnet: &str) -> FamilyRules {
    FamilyRules::new(network.parse().unwrap(), subnet.parse().unwrap())
}

/// The golden node: IPv4 only, 10.244.6.0/24 of 10.244.0.0/16.
pub fn spec_v4(masquerade: bool, forward: bool) -> RulesSpec {
    RulesSpec {
        families: vec![family(NETWORK, SUBNET)],
        masquerade,
        fully_random: true,
        forward,
    }
}

pub fn spec_dual() -> RulesSpec {
    RulesSpec {
        families: vec![family(NETWORK, SUBNET), family(NETWORK6, SUBNET6)],
        masquerade: true,
        fully_random: true,
        forward: true,
    }
}

pub fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/common_rules/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The lines of flannel's layout in `iptables-save` output (or restore
/// input): chain declarations, jumps from built-in chains, chain rules.
#[derive(Debug, PartialEq, Eq, Default)]
pub struct Layout {
    pub chains: Vec<String>,
    pub jumps: Vec<String>,
    pub rules: Vec<String>,
}

pub fn layout(text: &str) -> Layout {
    let mut l = Layout::default();
    for line in text.lines() {
        if line.starts_with(":FLANNEL-") {
            l.chains.push(line.to_owned());
        } else if line.starts_with("-A FLANNEL-") {
            l.rules.push(line.to_owned());
        } else if (line.starts_with("-A POSTROUTING ") || line.starts_with("-A FORWARD "))
            && line.contains("flanneld")
        {
            l.jumps.push(line.to_owned());
        }
    }
    l
}

/// `iptables-save` output without its `#` comment lines (timestamps).
pub fn strip_comments(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A failure saying how to run these tests unless run as root: a test that cannot
/// run must not pass (the `unprivileged` nextest profile skips them
/// visibly instead).
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root (network namespaces): run it as root (CI does: scripts/test.sh), or skip these tests visibly with `cargo nextest run --workspace --profile unprivileged`"
    );
}

/// A thread living in a fresh network namespace; work is sent to it.
pub struct Netns(Resident<()>);

impl Netns {
    pub fn new() -> Netns {
        let resident = Resident::start(weft_dataplane::netns::Netns::Fresh, || Ok::<(), ()>(()))
            .expect("a fresh network namespace")
            .expect("no set-up to fail");
        let ns = Netns(resident);
        ns.sh(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// The thread's id: `ip link set … netns <tid>` moves a device here.
    pub fn tid(&self) -> i32 {
        self.0.tid()
    }

    /// Runs `f` inside the namespace; a panic in `f` is re-raised here.
    pub fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        self.0
            .run(move |()| f())
            .expect("the namespace thread ended")
    }

    /// Runs a future inside the namespace on a current-thread runtime built
    /// there (worker threads of a multi-thread runtime would not be in it).
    pub fn block_on<Fut, R>(&self, make: impl FnOnce() -> Fut + Send + 'static) -> R
    where
        Fut: Future<Output = R>,
        R: Send + 'static,
    {
        self.run(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(make())
        })
    }

    /// Runs a command inside the namespace; stdout, or Err(stderr).
    pub fn try_sh(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let stdin = stdin.map(str::to_owned);
        self.run(move || {
            let mut child = Command::new(&args[0])
                .args(&args[1..])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("{}: {e}", args[0]));
            {
                use std::io::Write;
                let mut pipe = child.stdin.take().unwrap();
                if let Some(input) = stdin {
                    pipe.write_all(input.as_bytes()).unwrap();
                }
            }
            let out = child.wait_with_output().unwrap();
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                Err(format!(
                    "{args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        })
    }

    pub fn sh(&self, args: &[&str]) -> String {
        self.try_sh(args, None).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn apply(&self, rules: &Arc<Rules>, spec: &RulesSpec) -> Result<(), RulesError> {
        let (rules, spec) = (rules.clone(), spec.clone());
        self.block_on(move || async move { rules.apply(&spec).await })
    }

    pub fn check(&self, rules: &Arc<Rules>, spec: &RulesSpec) -> Drift {
        let (rules, spec) = (rules.clone(), spec.clone());
        self.block_on(move || async move { rules.check(&spec).await })
            .unwrap_or_else(|e| panic!("check failed: {e}"))
    }

    pub fn cleanup(&self, rules: &Arc<Rules>, target: RulesBackend) -> Result<(), RulesError> {
        let rules = rules.clone();
        self.block_on(move || async move { rules.cleanup(target).await })
    }

    /// `iptables-save -t filter` then `-t nat` (the golden's order), without
    /// comment lines.
    pub fn iptables_save(&self, v6: bool) -> String {
        let tool = if v6 {
            "ip6tables-save"
        } else {
            "iptables-save"
        };
        let filter = self.sh(&[tool, "-t", "filter"]);
        let nat = self.sh(&[tool, "-t", "nat"]);
        strip_comments(&format!("{filter}{nat}"))
    }

    /// `nft -j list ruleset`, parsed.
    pub fn nft_ruleset(&self) -> serde_json::Value {
        serde_json::from_str(&self.sh(&["nft", "-j", "list", "ruleset"])).unwrap()
    }
}

pub fn rules(backend: RulesBackend) -> Arc<Rules> {
    Arc::new(Rules::new(backend))
}

/// A fresh namespace (failing without root) where new `backend` rules
/// have applied `spec`: where most rules tests start.
pub fn applied(backend: RulesBackend, spec: &RulesSpec) -> (Netns, Arc<Rules>) {
    require_root();
    let ns = Netns::new();
    let r = rules(backend);
    ns.apply(&r, spec).unwrap();
    (ns, r)
}
