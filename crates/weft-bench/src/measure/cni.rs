//! CNI: ADD and DEL latency per pod through weft's plugin (`flannel`) on
//! a lab node whose agent wrote subnet.env, and the plugin's own share.
//!
//! The plugin is a meta-plugin: almost all of an ADD is its delegate
//! (`bridge`, which runs `host-local`). Its own share is measured two
//! ways, each against a baseline taken in the same loop: (1) the full ADD
//! minus `bridge` run directly with the very configuration the plugin
//! saved for its delegate; (2) the plugin with a stub delegate that only
//! prints a result, minus the stub run alone. `VERSION` (no delegate, no
//! file) is the floor of starting the binary.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use serde_json::json;
use weft_bench::results::{Cni, CniOp};
use weft_bench::stats::{Summary, finite, ms};
use weft_lab::{Backend, Lab, LabError, LabSpec};

use super::Ctx;

const SYSTEM_PLUGINS: &str = "/usr/lib/cni";

struct Node<'a> {
    lab: &'a Lab,
    config: String,
    plugin: PathBuf,
    cni_path: String,
}

impl Node<'_> {
    /// Runs `program` in node1's namespace as a runtime runs a plugin;
    /// returns the time from spawn to exit and stdout.
    fn call(
        &self,
        program: &Path,
        cmd: &str,
        id: &str,
        pod: &str,
        path: &str,
        stdin: &str,
    ) -> Result<(f64, String)> {
        let netns = weft_lab::netns_path(pod).display().to_string();
        let program = program.to_path_buf();
        let (took, out) = self.lab.in_netns("node1", || {
            let t = Instant::now();
            let mut child = Command::new(&program)
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .env("CNI_COMMAND", cmd)
                .env("CNI_CONTAINERID", id)
                .env("CNI_NETNS", &netns)
                .env("CNI_IFNAME", "eth0")
                .env("CNI_PATH", path)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| LabError::io(format!("cannot run {}", program.display()), e))?;
            if let Some(mut i) = child.stdin.take() {
                let _ = i.write_all(stdin.as_bytes());
            }
            let out = child
                .wait_with_output()
                .map_err(|e| LabError::io("waiting for a CNI plugin", e))?;
            Ok((t.elapsed(), out))
        })?;
        if !out.status.success() {
            bail!(
                "{} {cmd} failed: {}{}",
                program.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok((ms(took), String::from_utf8_lossy(&out.stdout).into_owned()))
    }

    fn flannel(&self, cmd: &str, id: &str, pod: &str) -> Result<f64> {
        Ok(self
            .call(&self.plugin, cmd, id, pod, &self.cni_path, &self.config)?
            .0)
    }
}

/// A stub `bridge` (and `host-local`) that reads its input and prints a
/// fixed result, in a directory of its own.
fn stub_dir(dir: &Path) -> Result<PathBuf> {
    let stubs = dir.join("bench-stub-plugins");
    std::fs::create_dir_all(&stubs)?;
    let result = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": "/run/netns/stub"}],
        "ips": [{"address": "10.244.250.2/24", "gateway": "10.244.250.1", "interface": 0}],
    });
    for name in ["bridge", "host-local"] {
        let path = stubs.join(name);
        std::fs::write(
            &path,
            format!("#!/bin/sh\ncat >/dev/null\nprintf '%s' '{result}'\n"),
        )?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(stubs)
}

#[derive(Default)]
struct Samples {
    add: Vec<f64>,
    del: Vec<f64>,
    add_direct: Vec<f64>,
    del_direct: Vec<f64>,
    add_stub: Vec<f64>,
    stub_alone: Vec<f64>,
    version: Vec<f64>,
}

fn measure(ctx: &Ctx, lab: &Lab) -> Result<Samples> {
    let paths = lab.name().node_paths("node1");
    let node = Node {
        lab,
        config: json!({
            "cniVersion": "1.0.0",
            "name": "cbr0",
            "type": "flannel",
            "subnetFile": paths.subnet_env,
            "dataDir": paths.cni_data,
            "ipam": {"dataDir": paths.ipam_data},
            "delegate": {"hairpinMode": true, "isDefaultGateway": true},
        })
        .to_string(),
        plugin: ctx.bin_dir.join("flannel"),
        cni_path: format!("{}:{SYSTEM_PLUGINS}", ctx.bin_dir.display()),
    };
    let pods = [
        lab.name().netns_of("node1-pod1"),
        lab.name().netns_of("node1-pod2"),
    ];
    for p in &pods {
        weft_lab::create_netns(p)?;
    }
    // The delegate configuration the plugin builds, read back from its file.
    node.flannel("ADD", "warm", &pods[0])?;
    let delegate = std::fs::read_to_string(paths.cni_data.join("warm"))
        .context("the plugin saved no delegate configuration")?;
    node.flannel("DEL", "warm", &pods[0])?;
    let bridge = Path::new(SYSTEM_PLUGINS).join("bridge");
    let stubs = stub_dir(&paths.dir)?;
    let stub_path = format!("{}:{}", ctx.bin_dir.display(), stubs.display());
    let n = if ctx.short { 10 } else { 30 };
    let mut s = Samples::default();
    for i in 0..n {
        if i % 10 == 0 {
            ctx.say(format!("cni: pods {}–{} of {n}", i + 1, (i + 10).min(n)));
        }
        let (f, b) = (format!("f{i}"), format!("b{i}"));
        let direct = |cmd: &str| node.call(&bridge, cmd, &b, &pods[1], SYSTEM_PLUGINS, &delegate);
        if i % 2 == 0 {
            s.add.push(node.flannel("ADD", &f, &pods[0])?);
            s.add_direct.push(direct("ADD")?.0);
            s.del.push(node.flannel("DEL", &f, &pods[0])?);
            s.del_direct.push(direct("DEL")?.0);
        } else {
            s.add_direct.push(direct("ADD")?.0);
            s.add.push(node.flannel("ADD", &f, &pods[0])?);
            s.del_direct.push(direct("DEL")?.0);
            s.del.push(node.flannel("DEL", &f, &pods[0])?);
        }
        let id = format!("s{i}");
        s.add_stub.push(
            node.call(&node.plugin, "ADD", &id, &pods[0], &stub_path, &node.config)?
                .0,
        );
        node.call(&node.plugin, "DEL", &id, &pods[0], &stub_path, &node.config)?;
        s.stub_alone.push(
            node.call(&stubs.join("bridge"), "ADD", &id, &pods[0], "", &delegate)?
                .0,
        );
        s.version
            .push(node.call(&node.plugin, "VERSION", "", &pods[0], "", "")?.0);
    }
    for p in &pods {
        weft_lab::remove_netns(p)?;
    }
    Ok(s)
}

/// Runs the CNI part in a one-node lab of its own.
pub fn run(ctx: &Ctx) -> Result<Cni> {
    let mut spec = LabSpec::new("bench-cni")?;
    spec.nodes = 1;
    spec.pods_per_node = 0;
    spec.backend = Backend::Vxlan;
    spec.bin_dir = ctx.bin_dir.clone();
    ctx.say("cni: bringing lab bench-cni up (1 node)");
    let lab = Lab::up(&spec)?;
    let measured = measure(ctx, &lab);
    if let Err(e) = lab.down() {
        ctx.say(format!("cni: teardown: {e}"));
    }
    let s = measured?;
    let sum = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x + y).collect::<Vec<_>>();
    let diff = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x - y).collect::<Vec<_>>();
    let op = |full: &[f64], direct: &[f64]| {
        let own = Summary::of(&diff(full, direct));
        let plugin = Summary::of(full);
        CniOp {
            plugin_ms: plugin,
            bridge_ms: Summary::of(direct),
            own_ms: own,
            own_share_pct: own
                .zip(plugin)
                .and_then(|(d, f)| finite(100.0 * d.median / f.median)),
        }
    };
    Ok(Cni {
        pods: s.add.len(),
        add: op(&s.add, &s.add_direct),
        del: op(&s.del, &s.del_direct),
        add_del: op(&sum(&s.add, &s.del), &sum(&s.add_direct, &s.del_direct)),
        version_ms: Summary::of(&s.version),
        stub_add_ms: Summary::of(&diff(&s.add_stub, &s.stub_alone)),
        stub_alone_ms: Summary::of(&s.stub_alone),
    })
}
