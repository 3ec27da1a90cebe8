//! Serving: an accept loop that owns every connection, so that stopping the
//! server closes them all (clients see the API go away, as when an API
//! server restarts), and starting it again listens on the same address.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, Method, Uri};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::{JoinHandle, JoinSet};

use crate::api;
use crate::options::ServerOptions;
use crate::state::State;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid cluster CIDR settings: {0}")]
    Cidr(#[from] crate::alloc::AllocError),
    #[error("cannot write the kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: std::io::Error,
    },
}

/// State and serving machinery shared by the handle, the handlers and the
/// control API.
pub struct Shared {
    state: Mutex<State>,
    addr: Mutex<SocketAddr>,
    serving: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    /// The objects. Never held across an await.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        *self.addr.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops accepting and closes every connection and watch.
    pub(crate) async fn stop_serving(&self) {
        let task = self
            .serving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        self.lock().close_watches();
    }

    /// Listens again on the same address.
    pub(crate) async fn start_serving(self: &Arc<Self>) -> Result<(), ServerError> {
        if self
            .serving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            return Ok(());
        }
        let listener = bind(self.addr())?;
        let bound = listener
            .local_addr()
            .map_err(|source| ServerError::Listen {
                addr: self.addr(),
                source,
            })?;
        *self.addr.lock().unwrap_or_else(|p| p.into_inner()) = bound;
        let task = tokio::spawn(accept_loop(listener, router(Arc::clone(self))));
        *self.serving.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        Ok(())
    }
}

fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let err = |source| ServerError::Listen { addr, source };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(err)?;
    // Restarting on the same port must not wait out TIME_WAIT.
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(1024).map_err(err)
}

fn router(shared: Arc<Shared>) -> Router {
    async fn handler(
        AxState(shared): AxState<Arc<Shared>>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> axum::response::Response {
        api::dispatch(shared, method, uri, headers, body).await
    }
    Router::new().fallback(handler).with_state(shared)
}

async fn accept_loop(listener: TcpListener, app: Router) {
    // Dropping the set (when this task is aborted) aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else { continue };
                let service = TowerToHyperService::new(app.clone());
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// A running test API server. Dropping it stops serving.
pub struct TestServer {
    pub(crate) shared: Arc<Shared>,
}

impl TestServer {
    /// Starts serving on `listen` (port 0 picks a free port).
    pub async fn start(opts: ServerOptions, listen: SocketAddr) -> Result<TestServer, ServerError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(opts)?),
            addr: Mutex::new(listen),
            serving: Mutex::new(None),
        });
        shared.start_serving().await?;
        Ok(TestServer { shared })
    }

    /// Starts on a free loopback port with default options.
    pub async fn local() -> Result<TestServer, ServerError> {
        Self::start(
            ServerOptions::default(),
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr()
    }

    /// `http://ADDR`, what `--kube-api-url` takes.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Stops serving: the port refuses connections and open watches end.
    /// The objects are kept.
    pub async fn stop_serving(&self) {
        self.shared.stop_serving().await;
    }

    /// Serves again on the same address.
    pub async fn start_serving(&self) -> Result<(), ServerError> {
        self.shared.start_serving().await
    }

    /// A kubeconfig for this server (with the token, if one is set).
    pub fn kubeconfig(&self) -> String {
        let token = self.shared.lock().opts.token.clone();
        kubeconfig(&self.url(), token.as_deref())
    }

    /// Writes [`Self::kubeconfig`] to `path` atomically (a reader never
    /// sees half a file, so its existence can mean "ready").
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), ServerError> {
        let err = |source| ServerError::Kubeconfig {
            path: path.display().to_string(),
            source,
        };
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.kubeconfig()).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self
            .shared
            .serving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

/// A minimal kubeconfig naming one cluster, one user and one context.
pub fn kubeconfig(server: &str, token: Option<&str>) -> String {
    let user = match token {
        Some(t) => format!("  user:\n    token: {t}\n"),
        None => "  user: {}\n".to_owned(),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: weft-test\n  cluster:\n    server: {server}\n\
         users:\n- name: weft\n{user}contexts:\n- name: weft-test\n  context:\n    cluster: weft-test\n    user: weft\n\
         current-context: weft-test\n"
    )
}
