//! Which etcd member the agent talks to, and when it moves on.
//!
//! Why not etcd-client's own balancing: it puts every endpoint behind one
//! tower power-of-two-choices balancer whose load measure is always 0 and
//! whose per-endpoint connection reports itself *ready* right after a
//! failed connect (to hand the error to the next request). A killed member
//! refuses connections within microseconds, so it sits in the ready set
//! almost all the time and receives its share of requests, each failing at
//! once: with two of three members down, two requests in three failed, and
//! the agent's watch took up to 17 s to come back after quorum returned.
//!
//! Instead the agent holds one client per member and uses one member at a
//! time, as etcd's own Go client pins an endpoint: the first is chosen at
//! random (so a cluster's agents spread over the members), and it is
//! abandoned for the next in the list when it proves unusable:
//!
//! - a connect that fails (killed member: refused; partitioned member:
//!   the 5 s connect timeout), or a member's own "no leader" answer: the
//!   request never took effect, so it is sent again at once to the next
//!   member, trying each member once per request;
//! - a request that times out (10 s) or a connection lost mid-request: the
//!   request may have taken effect, so it is not sent again here (the
//!   caller retries with a fresh read), but the next request goes to the
//!   next member;
//! - a watch stream that fails (the member died, HTTP/2 keepalive found the
//!   connection dead, or etcd cancelled it for lack of a leader): the watch
//!   resumes on the next member.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use etcd_client::{Client, ConnectOptions};
use tokio::sync::OnceCell;
use tracing::{debug, info};

/// What a failed request says about the member that served it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The member cannot serve, and the request never took effect: send it
    /// to the next member now.
    Resend,
    /// The member cannot serve, but the request may have taken effect:
    /// move on for the next request; report this failure.
    MoveOn,
    /// The member answered (a refusal, a failed condition): report it.
    Keep,
}

/// gRPC codes (stable numbers from the gRPC spec).
const CANCELLED: i32 = 1;
const UNKNOWN: i32 = 2;
const DEADLINE_EXCEEDED: i32 = 4;
const INTERNAL: i32 = 13;
const UNAVAILABLE: i32 = 14;

/// Classifies a client error (see the module's list).
pub(crate) fn verdict(e: &etcd_client::Error) -> Verdict {
    use etcd_client::Error as E;
    match e {
        E::TransportError(_) if never_sent(e) => Verdict::Resend,
        E::TransportError(_) => Verdict::MoveOn,
        E::GRpcStatus(status) => {
            let code = status.code() as i32;
            let from_client = std::error::Error::source(status).is_some();
            if never_sent(e) {
                Verdict::Resend
            } else if code == UNAVAILABLE && !from_client {
                // The member itself said so ("etcdserver: no leader"):
                // nothing was proposed.
                Verdict::Resend
            } else if from_client
                && matches!(
                    code,
                    UNAVAILABLE | CANCELLED | DEADLINE_EXCEEDED | INTERNAL | UNKNOWN
                )
            {
                // Timeouts, keepalive failures, connections lost midway.
                Verdict::MoveOn
            } else if code == DEADLINE_EXCEEDED {
                Verdict::MoveOn
            } else {
                Verdict::Keep
            }
        }
        E::WatchError(_) => Verdict::MoveOn,
        _ => Verdict::Keep,
    }
}

/// Whether a request certainly never reached a member: its connection
/// could not be made (tonic wraps every connector failure in
/// `ConnectError`).
pub(crate) fn never_sent(e: &etcd_client::Error) -> bool {
    // etcd-client's error exposes no source: start from what it wraps.
    let mut source: Option<&(dyn std::error::Error + 'static)> = match e {
        etcd_client::Error::GRpcStatus(status) => Some(status),
        etcd_client::Error::TransportError(transport) => Some(transport),
        _ => None,
    };
    while let Some(err) = source {
        if err.is::<tonic::ConnectError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// The members, one lazily connected client each, and the one in use.
pub(crate) struct Members {
    urls: Vec<String>,
    options: ConnectOptions,
    clients: Vec<OnceCell<Client>>,
    current: AtomicUsize,
    /// The member that last served a request (`usize::MAX`: none yet):
    /// a move is logged once it has served, not at every member tried
    /// while none can (an outage is logged once, by the watch).
    served: AtomicUsize,
}

impl Members {
    /// `first` picks the member to start with (random in the agent).
    pub(crate) fn new(urls: Vec<String>, options: ConnectOptions, first: usize) -> Arc<Members> {
        let n = urls.len().max(1);
        Arc::new(Members {
            clients: urls.iter().map(|_| OnceCell::new()).collect(),
            urls,
            options,
            current: AtomicUsize::new(first % n),
            served: AtomicUsize::new(usize::MAX),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.urls.len()
    }

    /// The member in use now.
    pub(crate) fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.urls.len().max(1)
    }

    /// Member `i`'s client, connected on first use (with a user name that
    /// is when it authenticates, so it needs the member up).
    pub(crate) async fn client(&self, i: usize) -> Result<Client, etcd_client::Error> {
        self.clients[i]
            .get_or_try_init(|| Client::connect([&self.urls[i]], Some(self.options.clone())))
            .await
            .cloned()
    }

    /// Leaves member `i` for the next one, unless another request already
    /// did.
    pub(crate) fn abandon(&self, i: usize, why: &dyn std::fmt::Display) {
        let next = (i + 1) % self.urls.len().max(1);
        if self
            .current
            .compare_exchange(i, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
            && next != i
        {
            debug!(
                from = %self.urls[i],
                to = %self.urls[next],
                "leaving etcd member: {why}"
            );
        }
    }

    /// Member `i` served a request: logs a move to it.
    pub(crate) fn served(&self, i: usize) {
        let before = self.served.swap(i, Ordering::Relaxed);
        if before != i && before != usize::MAX {
            info!(
                member = %self.urls[i],
                before = %self.urls.get(before).map_or("", String::as_str),
                "now using another etcd member"
            );
        }
    }

    /// Runs one request on the member in use, moving on as [`verdict`]
    /// says; each member is tried at most once.
    pub(crate) async fn call<T, F, Fut>(&self, op: F) -> Result<T, etcd_client::Error>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut tried = 0;
        loop {
            let i = self.current();
            tried += 1;
            let result = match self.client(i).await {
                Ok(client) => op(client).await,
                Err(e) => Err(e),
            };
            let Err(e) = result else {
                self.served(i);
                return result;
            };
            match verdict(&e) {
                Verdict::Resend if tried < self.len() => {
                    debug!(member = %self.urls[i], "etcd request not served ({e}); sending it to the next member");
                    self.abandon(i, &e);
                }
                Verdict::Resend | Verdict::MoveOn => {
                    self.abandon(i, &e);
                    return Err(e);
                }
                Verdict::Keep => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: tonic::Code, msg: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::new(code, msg))
    }

    #[test]
    fn server_answers_are_classified() {
        assert_eq!(
            verdict(&status(tonic::Code::Unavailable, "etcdserver: no leader")),
            Verdict::Resend
        );
        assert_eq!(
            verdict(&status(tonic::Code::FailedPrecondition, "x")),
            Verdict::Keep
        );
        assert_eq!(
            verdict(&status(tonic::Code::DeadlineExceeded, "x")),
            Verdict::MoveOn
        );
        assert_eq!(
            verdict(&status(tonic::Code::InvalidArgument, "x")),
            Verdict::Keep
        );
    }

    /// A member that refuses the connection: the request never reached
    /// it, so it goes to the next member at once.
    #[tokio::test]
    async fn a_refused_connection_is_resent() {
        // Port 1 on loopback: nothing listens, the kernel refuses at once.
        let e = match Client::connect(["http://127.0.0.1:1"], None).await {
            Ok(mut client) => match client.get("k", None).await {
                Err(e) => e,
                Ok(_) => panic!("a refused connection answered"),
            },
            Err(e) => e,
        };
        assert!(never_sent(&e), "{e:?}");
        assert_eq!(verdict(&e), Verdict::Resend);
    }

    /// Two dead members before a live one: each request is sent on until
    /// it reaches the live one, and the next request starts there.
    #[tokio::test]
    async fn requests_move_past_dead_members() {
        let members = Members::new(
            vec![
                "http://127.0.0.1:1".into(),
                "http://127.0.0.1:2".into(),
                "http://127.0.0.1:3".into(),
            ],
            ConnectOptions::new(),
            0,
        );
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let r: Result<(), _> = members
            .call(|mut c| {
                calls.fetch_add(1, Ordering::Relaxed);
                async move { c.get("k", None).await.map(|_| ()) }
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 3, "each member tried once");
        assert_eq!(members.current(), 0, "wrapped around to the first");
    }
}
