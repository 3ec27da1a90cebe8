//! SIGINT/SIGTERM handling: the first signal asks every task to stop (and
//! tells systemd `STOPPING=1`, as flanneld does); a second one ends the
//! process at once, as flanneld does.

use anyhow::{Context as _, Result};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use super::notify::Notifier;

/// A handle every long-running task selects on.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Installs the handlers. Must run inside the runtime.
    pub fn install(notifier: Notifier) -> Result<Shutdown> {
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received: shutting down"),
                _ = int.recv() => tracing::info!("SIGINT received: shutting down"),
            }
            notifier.stopping();
            tx.send_replace(true);
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            tracing::warn!("second signal: exiting immediately");
            std::process::exit(1);
        });
        Ok(Shutdown(rx))
    }

    /// A shutdown the test asks for by sending `true`.
    #[cfg(test)]
    pub fn for_tests() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown(rx))
    }

    /// Resolves once shutdown was requested.
    pub async fn requested(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }
}
