//! The server's HTTP contract, checked on the wire with a bare HTTP/1.1
//! client: status codes, `Status` bodies, list/watch semantics, patches.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_kube_testserver::{NodeSpec, ServerOptions, TestServer};

struct Reply {
    code: u16,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    /// Watch events, one per line.
    fn events(&self) -> Vec<Value> {
        self.body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn dechunk(raw: &str) -> String {
    let mut out = String::new();
    let mut rest = raw;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Reply { code, body }
}

/// Polls `cond` every 10 ms until it holds; panics naming `what` after 10 s.
async fn poll_until<F: Future<Output = bool>>(what: &str, cond: impl Fn() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        // Poll interval: a listener's state has no notification.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    http(addr, "GET", path, &[], "").await
}

/// A GET carrying `token` as its bearer.
async fn get_with_token(addr: SocketAddr, path: &str, token: &str) -> Reply {
    let bearer = format!("Bearer {token}");
    http(addr, "GET", path, &[("Authorization", &bearer)], "").await
}

/// A POST to the control API, which takes no token.
async fn post(addr: SocketAddr, path: &str, body: &str) -> Reply {
    http(addr, "POST", path, &[], body).await
}

async fn patch(addr: SocketAddr, path: &str, ct: &str, body: Value) -> Reply {
    http(
        addr,
        "PATCH",
        path,
        &[("Content-Type", ct)],
        &body.to_string(),
    )
    .await
}

/// A patch of node `a`'s status subresource, where flannel writes.
async fn patch_a_status(s: &TestServer, ct: &str, body: Value) -> Reply {
    patch(s.addr(), "/api/v1/nodes/a/status", ct, body).await
}

const SMP: &str = "application/strategic-merge-patch+json";
const MERGE: &str = "application/merge-patch+json";

fn assert_status(r: &Reply, code: u16, reason: &str) {
    assert_eq!(r.code, code, "{}", r.body);
    let s = r.json();
    assert_eq!(s["kind"], "Status");
    assert_eq!(s["apiVersion"], "v1");
    assert_eq!(s["status"], "Failure");
    assert_eq!(s["code"], code);
    assert_eq!(s["reason"], reason);
}

async fn server(opts: ServerOptions) -> TestServer {
    TestServer::start(opts, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap()
}

/// A server holding one node, `a`, as the patch tests start.
async fn server_with_node_a() -> TestServer {
    let s = server(ServerOptions::default()).await;
    s.add_node(NodeSpec::new("a")).unwrap();
    s
}

/// A watch from a version the server compacted away just before.
async fn watch_from_compacted(opts: ServerOptions) -> Reply {
    let s = server(opts).await;
    s.add_node(NodeSpec::new("a")).unwrap();
    let rv = s.resource_version();
    s.compact();
    get(
        s.addr(),
        &format!("/api/v1/nodes?watch=true&resourceVersion={rv}"),
    )
    .await
}

#[tokio::test]
async fn list_get_and_not_found() {
    let s = server(ServerOptions::default()).await;
    s.add_node(NodeSpec::new("a").internal_ip("192.0.2.1".parse().unwrap()))
        .unwrap();
    s.add_node(NodeSpec::new("b")).unwrap();
    let list = get(s.addr(), "/api/v1/nodes").await.json();
    assert_eq!(list["kind"], "NodeList");
    assert_eq!(
        list["metadata"]["resourceVersion"],
        s.resource_version().to_string()
    );
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items[0].get("kind").is_none(), "list items carry no kind");
    // kube-controller-manager's allocator: in order from the first block.
    assert_eq!(items[0]["spec"]["podCIDRs"], json!(["10.244.0.0/24"]));
    assert_eq!(items[1]["spec"]["podCIDR"], "10.244.1.0/24");
    let a = get(s.addr(), "/api/v1/nodes/a").await.json();
    assert_eq!(a["kind"], "Node");
    assert_eq!(
        a["status"]["addresses"][0],
        json!({"type": "InternalIP", "address": "192.0.2.1"})
    );
    let r = get(s.addr(), "/api/v1/nodes/zz").await;
    assert_status(&r, 404, "NotFound");
    assert_eq!(r.json()["message"], r#"nodes "zz" not found"#);
    assert_status(&get(s.addr(), "/api/v1/secrets").await, 404, "NotFound");
    assert_status(
        &http(s.addr(), "DELETE", "/api/v1/nodes/a", &[], "").await,
        405,
        "MethodNotAllowed",
    );
}

#[tokio::test]
async fn watch_replays_bookmarks_and_times_out() {
    let s = server(ServerOptions {
        bookmark_interval: Duration::from_millis(300),
        ..ServerOptions::default()
    })
    .await;
    s.add_node(NodeSpec::new("a")).unwrap();
    let rv = s.resource_version();
    s.add_node(NodeSpec::new("b")).unwrap();
    s.annotate("a", &[("x.example.com/k", Some("v"))]).unwrap();
    s.delete_node("b").unwrap();
    let r = get(s.addr(), &format!("/api/v1/nodes?watch=true&resourceVersion={rv}&timeoutSeconds=1&allowWatchBookmarks=true")).await;
    assert_eq!(r.code, 200);
    let ev = r.events();
    let types: Vec<&str> = ev.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(&types[..3], ["ADDED", "MODIFIED", "DELETED"]);
    assert!(
        types[3..].iter().all(|t| *t == "BOOKMARK") && types.len() > 3,
        "{types:?}"
    );
    let last = ev.last().unwrap();
    assert_eq!(
        last["object"]["metadata"]["resourceVersion"],
        s.resource_version().to_string()
    );
    // Without a version: the current state first.
    let r = get(s.addr(), "/api/v1/nodes?watch=true&timeoutSeconds=1").await;
    let ev = r.events();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["type"], "ADDED");
    assert_eq!(ev[0]["object"]["metadata"]["name"], "a");
}

#[tokio::test]
async fn a_compacted_version_is_gone() {
    let r = watch_from_compacted(ServerOptions::default()).await;
    assert_eq!(r.code, 200);
    let ev = r.events();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["type"], "ERROR");
    assert_eq!(ev[0]["object"]["code"], 410);
    assert_eq!(ev[0]["object"]["reason"], "Expired");

    let r = watch_from_compacted(ServerOptions {
        gone_as_http_status: true,
        ..ServerOptions::default()
    })
    .await;
    assert_status(&r, 410, "Expired");
}

#[tokio::test]
async fn strategic_merge_merges_conditions_and_merge_patch_replaces() {
    let s = server_with_node_a().await;
    let cond = json!({"status": {"conditions": [{"type": "NetworkUnavailable", "status": "False", "reason": "FlannelIsUp"}]}});
    let n = patch_a_status(&s, SMP, cond.clone()).await.json();
    let types: Vec<&str> = n["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Ready", "NetworkUnavailable"]);
    let n = patch_a_status(&s, MERGE, cond).await.json();
    assert_eq!(n["status"]["conditions"].as_array().unwrap().len(), 1);
    // Annotations through status; spec changes through status are dropped.
    let body = json!({"metadata": {"annotations": {"flannel.alpha.coreos.com/public-ip": "192.0.2.1"}}, "spec": {"podCIDR": "10.1.0.0/24"}});
    let n = patch_a_status(&s, SMP, body).await.json();
    assert_eq!(
        n["metadata"]["annotations"]["flannel.alpha.coreos.com/public-ip"],
        "192.0.2.1"
    );
    assert_eq!(n["spec"]["podCIDR"], "10.244.0.0/24");
    // And the main resource drops status changes, and refuses a new podCIDR.
    let n = patch(
        s.addr(),
        "/api/v1/nodes/a",
        MERGE,
        json!({"status": {"conditions": []}}),
    )
    .await
    .json();
    assert_eq!(n["status"]["conditions"].as_array().unwrap().len(), 1);
    let r = patch(
        s.addr(),
        "/api/v1/nodes/a",
        MERGE,
        json!({"spec": {"podCIDR": "10.9.0.0/24"}}),
    )
    .await;
    assert_status(&r, 422, "Invalid");
}

#[tokio::test]
async fn patch_errors_have_the_real_shape() {
    let s = server_with_node_a().await;
    let stale =
        json!({"metadata": {"resourceVersion": "1", "annotations": {"a.example.com/x": "1"}}});
    let r = patch_a_status(&s, SMP, stale).await;
    assert_status(&r, 409, "Conflict");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("the object has been modified")
    );
    let rv = s.node("a").unwrap()["metadata"]["resourceVersion"].clone();
    let fresh =
        json!({"metadata": {"resourceVersion": rv, "annotations": {"a.example.com/x": "1"}}});
    assert_eq!(patch_a_status(&s, SMP, fresh).await.code, 200);
    let r = patch_a_status(&s, "application/json-patch+json", json!([])).await;
    assert_status(&r, 415, "UnsupportedMediaType");
    let r = patch_a_status(
        &s,
        SMP,
        json!({"metadata": {"annotations": {"Bad_Key/x": "1"}}}),
    )
    .await;
    assert_status(&r, 422, "Invalid");
    let r = patch_a_status(
        &s,
        SMP,
        json!({"metadata": {"annotations": {"a.example.com/x": 1}}}),
    )
    .await;
    assert_status(&r, 400, "BadRequest");
    let r = patch(s.addr(), "/api/v1/nodes/zz/status", SMP, json!({})).await;
    assert_status(&r, 404, "NotFound");
    s.forbid("patch", "nodes/status");
    let r = patch_a_status(&s, SMP, json!({})).await;
    assert_status(&r, 403, "Forbidden");
    assert_eq!(
        r.json()["message"],
        r#"nodes "a" is forbidden: User "system:serviceaccount:kube-flannel:flannel" cannot patch resource "nodes/status" in API group "" at the cluster scope"#
    );
}

#[tokio::test]
async fn tokens_pods_and_the_control_api() {
    let s = server(ServerOptions {
        token: Some("t0k".into()),
        ..ServerOptions::default()
    })
    .await;
    assert_status(&get(s.addr(), "/api/v1/nodes").await, 401, "Unauthorized");
    let ok = get_with_token(s.addr(), "/api/v1/nodes", "t0k").await;
    assert_eq!(ok.code, 200);
    // The control API needs no token (test only).
    let n = post(
        s.addr(),
        "/weft-test/v1/nodes",
        r#"{"name":"w1","internalIP":"192.0.2.7"}"#,
    )
    .await;
    assert_eq!(n.code, 200, "{}", n.body);
    assert_eq!(n.json()["spec"]["podCIDR"], "10.244.0.0/24");
    let p = post(
        s.addr(),
        "/weft-test/v1/pods",
        r#"{"namespace":"kube-flannel","name":"p","nodeName":"w1"}"#,
    )
    .await;
    assert_eq!(p.code, 200);
    let pod = get_with_token(s.addr(), "/api/v1/namespaces/kube-flannel/pods/p", "t0k").await;
    assert_eq!(pod.json()["spec"]["nodeName"], "w1");
    let a = post(
        s.addr(),
        "/weft-test/v1/nodes/w1/annotations",
        r#"{"x.example.com/k":"v"}"#,
    )
    .await;
    assert_eq!(a.json()["metadata"]["annotations"]["x.example.com/k"], "v");
    let d = http(s.addr(), "DELETE", "/weft-test/v1/nodes/w1", &[], "").await;
    assert_eq!(d.code, 200);
    // The released block is not reused at once (the allocator moves on).
    s.add_node(NodeSpec::new("w2")).unwrap();
    assert_eq!(s.node("w2").unwrap()["spec"]["podCIDR"], "10.244.1.0/24");
}

#[tokio::test]
async fn stopping_refuses_connections_and_starting_serves_again() {
    let s = server_with_node_a().await;
    let addr = s.addr();
    s.stop_serving().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the port must refuse connections"
    );
    s.start_serving().await.unwrap();
    assert_eq!(s.addr(), addr);
    assert_eq!(get(addr, "/api/v1/nodes/a").await.code, 200);
    // An outage through the control API ends by itself.
    let r = post(addr, "/weft-test/v1/outage?seconds=1", "").await;
    assert_eq!(r.code, 200);
    let asked = tokio::time::Instant::now();
    // The outage starts on a task of its own, soon after the reply.
    poll_until("the outage to refuse connections", || async {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    poll_until("the port to serve again after the outage", || async {
        TcpStream::connect(addr).await.is_ok()
    })
    .await;
    assert!(
        asked.elapsed() >= Duration::from_millis(900),
        "a 1 s outage ended after {:?}",
        asked.elapsed()
    );
    assert_eq!(get(addr, "/healthz").await.code, 200);
}
