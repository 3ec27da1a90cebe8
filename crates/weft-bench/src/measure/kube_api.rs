//! Writing peer Nodes into a lab's Kubernetes API test server, through its
//! control API (`/weft-test/v1/`, weft-kube-testserver's `control.rs`),
//! from inside the server's namespace.
//!
//! Each synthetic peer is the Node a kubelet registers (the server fills
//! in labels, addresses and conditions as `kubectl get node -o json` shows
//! them) with flannel's four annotations and the podCIDR of
//! [`Peer::new`]: the shape of weft-store's kubectl fixture.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Value, json};
use weft_lab::{Lab, StoreState};

use super::feed::{Feed, TimedPut};
use super::leases::{Peer, SAMPLE_BASE};
use super::probe::http_request;

/// flannel's default `--kube-annotation-prefix`.
const PREFIX: &str = "flannel.alpha.coreos.com/";
/// The Node every agent skips (another backend): [`Feed::skip`].
const SKIPPED: &str = "bench-skipped";
/// An annotation weft neither reads nor writes: setting it is a Node
/// update that changes no lease, as a kubelet's status update.
const TOUCH: &str = "bench.weft.example/touched";
const TIMEOUT: Duration = Duration::from_secs(10);

/// The control API of one lab's test server.
#[derive(Debug, Clone)]
pub struct KubeApi {
    netns: String,
    addr: SocketAddr,
}

/// Peer `i`'s Node name.
pub fn node_name(i: u32) -> String {
    format!("peer{i:05}")
}

/// The registration of peer `p` as a Node named `name`, flannel's
/// annotations on it, announcing `backend`.
fn registration(name: &str, p: &Peer, backend: &str) -> String {
    let data = weft_core::backend_data::VxlanData {
        vni: 1,
        vtep_mac: p.mac,
    }
    .encode();
    let annotation = |k: &str| format!("{PREFIX}{k}");
    json!({
        "name": name,
        "internalIP": p.public.to_string(),
        "podCIDRs": [p.subnet.to_string()],
        "annotations": {
            annotation("backend-data"): data.as_str(),
            annotation("backend-type"): backend,
            annotation("kube-subnet-manager"): "true",
            annotation("public-ip"): p.public.to_string(),
        },
    })
    .to_string()
}

/// Peer `p`'s index, from its subnet (the inverse of [`Peer::new`]).
fn index(p: &Peer) -> u32 {
    (u32::from(p.subnet.network()) - u32::from(Peer::new(0).subnet.network())) >> 8
}

impl KubeApi {
    /// The test server of `lab` (a `--store kube` lab).
    pub fn of(lab: &Lab) -> Result<KubeApi> {
        let StoreState::Kube(k) = &lab.state().store else {
            bail!("lab {} does not run the Kubernetes store", lab.name());
        };
        let addr = k
            .endpoint
            .trim_start_matches("http://")
            .parse()
            .with_context(|| format!("the test server's endpoint {:?}", k.endpoint))?;
        Ok(KubeApi {
            netns: k.netns.clone(),
            addr,
        })
    }

    /// Runs `f` on a thread inside the server's namespace, `f` given a
    /// function making one request (method, path under the control API,
    /// JSON body) and failing on any status but 2xx.
    fn with<T: Send>(
        &self,
        f: impl FnOnce(&dyn Fn(&str, &str, Option<String>) -> Result<Value>) -> Result<T> + Send,
    ) -> Result<T> {
        let addr = self.addr;
        let request = move |method: &str, path: &str, body: Option<String>| -> Result<Value> {
            let full = format!("/weft-test/v1/{path}");
            let (code, reply) = http_request(addr, method, &full, body.as_deref(), TIMEOUT)?;
            if !(200..300).contains(&code) {
                bail!("{method} {full}: {code} {reply}");
            }
            serde_json::from_str(&reply).with_context(|| format!("{method} {full}: {reply}"))
        };
        let mut out = None;
        weft_lab::in_netns(&self.netns, || {
            out = Some(f(&request));
            Ok(())
        })?;
        out.ok_or_else(|| anyhow!("the request thread ended"))?
    }

    /// Registers peers `from..to`, one Node each, in order (creation
    /// order is screening order).
    pub fn add_peers(&self, from: u32, to: u32) -> Result<()> {
        self.with(|call| {
            for i in from..to {
                let body = registration(&node_name(i), &Peer::new(i), "vxlan");
                call("POST", "nodes", Some(body))?;
            }
            Ok(())
        })
    }
}

impl Feed for KubeApi {
    fn add_timed(&self, peer: &Peer) -> Result<TimedPut> {
        let body = registration(&node_name(index(peer)), peer, "vxlan");
        self.with(|call| {
            let sent = Instant::now();
            call("POST", "nodes", Some(body))?;
            Ok(TimedPut {
                sent,
                confirmed: Instant::now(),
            })
        })
    }

    fn remove(&self, peers: &[Peer]) -> Result<()> {
        self.with(|call| {
            for p in peers {
                call("DELETE", &format!("nodes/{}", node_name(index(p))), None)?;
            }
            Ok(())
        })
    }

    /// An annotation weft ignores, set on the peer's Node.
    fn renew(&self, peer: &Peer, n: usize) -> Result<()> {
        let path = format!("nodes/{}/annotations", node_name(index(peer)));
        let body = json!({ TOUCH: n.to_string() }).to_string();
        self.with(|call| call("POST", &path, Some(body)).map(|_| ()))
    }

    /// A Node of another backend, registered by the first call; each later
    /// call switches its backend-type between two other backends, so that
    /// every call is a new version of a skipped peer.
    fn skip(&self, n: usize) -> Result<()> {
        let (path, body) = if n == 0 {
            let p = Peer::new(SAMPLE_BASE - 1);
            ("nodes".to_owned(), registration(SKIPPED, &p, "host-gw"))
        } else {
            let backend = if n % 2 == 1 { "ipip" } else { "host-gw" };
            (
                format!("nodes/{SKIPPED}/annotations"),
                json!({ format!("{PREFIX}backend-type"): backend }).to_string(),
            )
        };
        self.with(|call| call("POST", &path, Some(body)).map(|_| ()))
    }

    fn unskip(&self) -> Result<()> {
        self.with(|call| call("DELETE", &format!("nodes/{SKIPPED}"), None).map(|_| ()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_flannel_nodes() {
        let p = Peer::new(257);
        assert_eq!(index(&p), 257);
        let node: Value = serde_json::from_str(&registration("peer00257", &p, "vxlan")).unwrap();
        assert_eq!(node["podCIDRs"][0], "10.2.1.0/24");
        assert_eq!(node["internalIP"], "172.16.1.2");
        let a = &node["annotations"];
        assert_eq!(a["flannel.alpha.coreos.com/kube-subnet-manager"], "true");
        assert_eq!(a["flannel.alpha.coreos.com/public-ip"], "172.16.1.2");
        assert_eq!(
            a["flannel.alpha.coreos.com/backend-data"],
            r#"{"VNI":1,"VtepMAC":"0e:2a:00:00:01:01"}"#
        );
        assert_eq!(node_name(SAMPLE_BASE + 3), "peer50003");
    }
}
