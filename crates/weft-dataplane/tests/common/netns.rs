//! Run a test in a fresh network namespace of its own, and read kernel state
//! back with the independent tools (`ip`, `bridge`, `ethtool`).
//!
//! The namespace belongs to a dedicated thread (`unshare(CLONE_NEWNET)` acts
//! on the calling thread only); the tokio runtime is a current-thread one
//! built *after* the unshare on that thread, so every netlink socket and
//! every child process (`ip ...`) lives in the new namespace. When the thread
//! ends nothing refers to the namespace any more and the kernel frees it: no
//! leak, and the root namespace is never touched.

use std::future::Future;
use std::process::Command;

use weft_dataplane::netlink::{Netlink, NetlinkError, VxlanLinkSpec};
use weft_dataplane::netns::{Netns, with_runtime};

/// A failure saying how to run these tests unless run as root: a test that cannot
/// run must not pass.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root (network namespaces): run it as root (CI does: scripts/test.sh), or skip these tests visibly with `cargo nextest run --workspace --profile unprivileged`"
    );
}

/// Runs `f` on a new thread in a new network namespace, on a current-thread
/// runtime, and fails the test if `f` fails or panics (or without root).
pub fn in_new_netns<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>>,
{
    require_root();
    match with_runtime(&Netns::Fresh, f) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("test failed: {e:#}"),
        Err(e) => panic!("{e}"),
    }
}

/// Runs a command in the current thread's namespace and returns its stdout;
/// fails on a non-zero exit.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program).args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// Fails the test unless every item of a batch succeeded, saying how many
/// failed and the first failure.
pub fn assert_batch_ok(results: &[Result<(), NetlinkError>]) {
    let failed: Vec<&NetlinkError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed, first: {:?}",
        failed.len(),
        results.len(),
        failed.first()
    );
}

/// `ip <args>`.
pub fn ip(args: &[&str]) -> anyhow::Result<String> {
    run("ip", args)
}

/// `ip -j <args>`, parsed.
pub fn ip_json(args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let mut all = vec!["-j"];
    all.extend_from_slice(args);
    Ok(serde_json::from_str(&ip(&all)?)?)
}

/// The test underlay: a veth `eth0` (peer `eth0p`), both up, with
/// 192.0.2.1/24 on `eth0`, as on a lab node. Returns `eth0`'s index.
pub async fn underlay(nl: &Netlink) -> anyhow::Result<u32> {
    nl.create_veth("eth0", "eth0p").await?;
    let eth0 = nl
        .link_by_name("eth0")
        .await?
        .ok_or_else(|| anyhow::anyhow!("eth0 missing"))?;
    let peer = nl
        .link_by_name("eth0p")
        .await?
        .ok_or_else(|| anyhow::anyhow!("eth0p missing"))?;
    nl.add_address(eth0.index, "192.0.2.1/24".parse()?).await?;
    nl.set_link_up(peer.index).await?;
    nl.set_link_up(eth0.index).await?;
    Ok(eth0.index)
}

/// The VTEP MAC of the golden files.
pub const VTEP_MAC: &str = "1e:1f:68:f0:dd:61";

/// `flannel.1` as flannel creates it on the test underlay (§3.1), up.
pub fn flannel1_spec(underlay: u32) -> anyhow::Result<VxlanLinkSpec> {
    Ok(VxlanLinkSpec {
        name: "flannel.1".into(),
        vni: 1,
        port: 8472,
        local: "192.0.2.1".parse()?,
        underlay_index: Some(underlay),
        learning: false,
        gbp: false,
        mtu: 1450,
        mac: Some(VTEP_MAC.parse()?),
    })
}

/// Underlay plus an up `flannel.1`; returns (underlay, flannel.1) indexes.
pub async fn vxlan_node(nl: &Netlink) -> anyhow::Result<(u32, u32)> {
    let ul = underlay(nl).await?;
    let vx = nl.create_vxlan(&flannel1_spec(ul)?).await?;
    nl.set_link_up(vx).await?;
    Ok((ul, vx))
}

/// [`in_new_netns`] on a [`vxlan_node`], where most netlink tests start:
/// `f` gets the connection and the underlay's and `flannel.1`'s indexes.
pub fn in_vxlan_node<F, Fut>(f: F)
where
    F: FnOnce(Netlink, u32, u32) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>>,
{
    in_new_netns(|| async move {
        let nl = Netlink::connect()?;
        let (ul, vx) = vxlan_node(&nl).await?;
        f(nl, ul, vx).await
    })
}
