//! The health server (`/healthz`, `/readyz`, flanneld's contract, and
//! `/metrics`) and the
//! local status API on a root-only Unix socket.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;

use super::shutdown::Shutdown;
use super::status::StatusHandle;

/// Starts the health server. Bodies and codes are flanneld's, because
/// probes and dashboards written for flanneld check them.
pub async fn spawn_health(
    addr: SocketAddr,
    status: StatusHandle,
    shutdown: Shutdown,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for /healthz (--healthz-ip/--healthz-port)")
    })?;
    let metrics = status.metrics().clone();
    let app = Router::new()
        .route("/healthz", get(|| async { "flanneld is running" }))
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.encode(),
                    )
                }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let status = status.clone();
                async move {
                    if status.is_ready() {
                        (StatusCode::OK, "flanneld is ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "flanneld is not ready yet")
                    }
                }
            }),
        );
    tracing::info!(%addr, "health server listening");
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.requested().await })
            .await;
        if let Err(e) = served {
            tracing::error!("health server stopped: {e}");
        }
    });
    Ok(())
}

/// Starts the status API on a Unix socket, mode 0600: it shows leases and
/// peers, which only root on the node should read.
pub async fn spawn_status(path: &Path, status: StatusHandle, shutdown: Shutdown) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // A socket left by a crashed run would make bind fail.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove stale {}", path.display())),
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("cannot listen on {} (--status-socket)", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    let app = Router::new().route(
        "/v1/status",
        get(move || {
            let status = status.clone();
            async move { axum::Json(status.view()) }
        }),
    );
    let owned: PathBuf = path.to_path_buf();
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.requested().await })
            .await;
        if let Err(e) = served {
            tracing::error!("status socket stopped: {e}");
        }
        let _ = std::fs::remove_file(&owned);
    });
    Ok(())
}
