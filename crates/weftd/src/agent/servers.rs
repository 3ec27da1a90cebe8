//! The health server (`/healthz`, `/readyz`, flanneld's contract, and
//! `/metrics`; what the probes decide is in `health.rs`) and the local
//! status API on a root-only Unix socket.

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
    let for_metrics = status.clone();
    let app = Router::new()
        .route(
            "/healthz",
            get({
                let status = status.clone();
                move || {
                    let status = status.clone();
                    async move { answer(status.liveness(), "flanneld is running") }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let status = for_metrics.clone();
                async move {
                    // The weft_ready gauge follows /readyz, which changes
                    // with time alone (a lease expiring unrenewed).
                    let _ = status.readiness();
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        status.metrics().encode(),
                    )
                }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let status = status.clone();
                async move { answer(status.readiness(), "flanneld is ready") }
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

/// 200 with flanneld's body, or 503 with the one-line reason.
fn answer(verdict: Result<(), String>, ok: &'static str) -> (StatusCode, String) {
    match verdict {
        Ok(()) => (StatusCode::OK, ok.to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
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
    let rotation = status.clone();
    let renumber = status.clone();
    let app = Router::new()
        .route(
            "/v1/status",
            get(move || {
                let status = status.clone();
                async move { axum::Json(status.view()) }
            }),
        )
        .route(
            "/v1/wireguard/rotate-key",
            axum::routing::post(move || {
                let status = rotation.clone();
                async move {
                    match status.request_rotation().await {
                        Ok(public_key) => (StatusCode::OK, public_key),
                        Err(why) => (StatusCode::CONFLICT, why),
                    }
                }
            }),
        )
        .route(
            "/v1/public-ip/{addr}",
            axum::routing::post(
                move |axum::extract::Path(addr): axum::extract::Path<String>| {
                    let status = renumber.clone();
                    async move {
                        let Ok(addr) = addr.parse::<std::net::IpAddr>() else {
                            return (
                                StatusCode::BAD_REQUEST,
                                format!("{addr:?} is not an IP address"),
                            );
                        };
                        match status.request_public_ip(addr).await {
                            Ok(published) => (StatusCode::OK, published),
                            Err(why) => (StatusCode::CONFLICT, why),
                        }
                    }
                },
            ),
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
