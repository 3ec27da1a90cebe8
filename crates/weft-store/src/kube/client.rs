//! The API client: built like flannel's `clientcmd.BuildConfigFromFlags`,
//! and every failure sorted into "wait and retry" or "tell the operator".

use std::path::Path;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::StoreError;

pub(crate) const STORE: &str = "kube";

/// Longest a single API call (other than a watch) may take; a hung server
/// must look like an outage, not freeze the agent.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// flannel's order: a kubeconfig file if given (its server replaced by
/// `--kube-api-url` when that is given too); else `--kube-api-url` alone;
/// else the in-cluster service account.
pub(crate) async fn build(
    api_url: Option<&str>,
    kubeconfig: Option<&Path>,
) -> Result<Client, StoreError> {
    let refused = |detail: String| StoreError::refused(STORE, detail);
    let url = api_url
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<http::Uri>()
                .map_err(|e| refused(format!("--kube-api-url {u:?} is not a URL: {e}")).because(e))
        })
        .transpose()?;
    let mut config = match (kubeconfig, &url) {
        (Some(path), _) => {
            let file = Kubeconfig::read_from(path).map_err(|e| {
                refused(format!(
                    "cannot read the kubeconfig {}: {e}; fix the file or point --kubeconfig-file at a valid one",
                    path.display()
                ))
                .because(e)
            })?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| {
                    refused(format!(
                        "the kubeconfig {} is unusable: {e}",
                        path.display()
                    ))
                    .because(e)
                })?
        }
        (None, Some(url)) => Config::new(url.clone()),
        (None, None) => Config::incluster().map_err(|e| {
            refused(format!(
                "neither --kubeconfig-file nor --kube-api-url was given and the in-cluster \
                 config is unavailable ({e}): run weftd in a pod with a service account, or \
                 give --kubeconfig-file"
            ))
            .because(e)
        })?,
    };
    if let (Some(url), Some(_)) = (url, kubeconfig) {
        config.cluster_url = url;
    }
    config.connect_timeout = Some(Duration::from_secs(10));
    Client::try_from(config)
        .map_err(|e| refused(format!("cannot set up the Kubernetes client: {e}")).because(e))
}

/// What went wrong with one API call; the client's error is kept where
/// there is one.
pub(crate) enum Failure {
    NotFound,
    /// 409: a resourceVersion precondition failed; read again.
    Conflict,
    /// 410: the resourceVersion is too old; list again.
    Gone,
    /// The server or the network; retry with backoff. No source: the call
    /// timed out.
    Transient {
        detail: String,
        source: Option<kube::Error>,
    },
    /// Retrying will not help (403, 401, 400, 422…).
    Permanent {
        code: u16,
        message: String,
        source: kube::Error,
    },
}

/// As the variants' fields without their sources: log lines show
/// failures with `{:?}`.
impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NotFound => f.write_str("NotFound"),
            Failure::Conflict => f.write_str("Conflict"),
            Failure::Gone => f.write_str("Gone"),
            Failure::Transient { detail, .. } => f.debug_tuple("Transient").field(detail).finish(),
            Failure::Permanent { code, message, .. } => f
                .debug_struct("Permanent")
                .field("code", code)
                .field("message", message)
                .finish(),
        }
    }
}

pub(crate) fn classify(e: kube::Error) -> Failure {
    match &e {
        kube::Error::Api(s) => match s.code {
            404 => Failure::NotFound,
            409 => Failure::Conflict,
            410 => Failure::Gone,
            408 | 429 | 500..=599 => Failure::Transient {
                detail: format!("{} ({})", s.message, s.code),
                source: Some(e),
            },
            code => Failure::Permanent {
                code,
                message: s.message.clone(),
                source: e,
            },
        },
        other => Failure::Transient {
            detail: other.to_string(),
            source: Some(e),
        },
    }
}

/// Runs one API call with [`REQUEST_TIMEOUT`].
pub(crate) async fn call<T>(
    fut: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(r) => r.map_err(classify),
        Err(_) => Err(Failure::Transient {
            detail: format!("no answer within {REQUEST_TIMEOUT:?}"),
            source: None,
        }),
    }
}

/// Turns a failure that the caller does not handle into a store error,
/// naming the fix for the usual permission mistakes.
pub(crate) fn store_error(what: &str, f: Failure) -> StoreError {
    match f {
        Failure::Transient { detail, source } => {
            let e = StoreError::unavailable(STORE, format!("{what}: {detail}"));
            match source {
                Some(source) => e.because(source),
                None => e,
            }
        }
        Failure::Permanent {
            code,
            message,
            source,
        } => {
            let detail = match code {
                403 => format!(
                    "{what}: {message}. The agent's ClusterRole needs: nodes get, list, watch; \
                     nodes/status patch (the ClusterRole `weft` in deploy/base/kube-weft.yml)"
                ),
                401 => format!(
                    "{what}: {message}: the API server does not accept these credentials; check \
                     the kubeconfig or the service account token"
                ),
                code => format!("{what}: {message} ({code})"),
            };
            StoreError::refused(STORE, detail).because(source)
        }
        Failure::NotFound => StoreError::refused(STORE, format!("{what}: not found")),
        Failure::Conflict | Failure::Gone => StoreError::unavailable(
            STORE,
            format!("{what}: the object kept changing; will retry"),
        ),
    }
}
