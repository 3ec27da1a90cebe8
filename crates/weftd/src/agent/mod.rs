//! The agent: config → lease → subnet.env → peers, kept alive until told
//! to stop. It works on any [`LeaseStore`] without knowing which.

pub mod cni_conf;
mod dataplane;
mod etcd_transport;
mod health;
mod ipsec;
mod lease_loop;
mod metrics;
mod notify;
mod peer_log;
mod renewal;
mod servers;
mod shutdown;
mod status;
mod store_health;
mod subnet_file;
mod wg_rotation;
mod wireguard;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result};
use weft_core::netconf::NetConfig;
use weft_store::etcd::{EtcdKv, EtcdOptions};
use weft_store::kube::{KubeLeaseStore, KubeOptions, NodeIdentity};
use weft_store::local::LocalKv;
use weft_store::{ConfigSource, KvLeaseStore, LeaseStore};

use crate::flags::Flags;
use shutdown::Shutdown;
use status::StatusHandle;

pub use crate::unbuilt::NotBuilt;

/// Runs the agent until SIGTERM/SIGINT. systemd (`Type=notify`) hears
/// `READY=1` when the node first becomes ready and `STOPPING=1` at the
/// first signal.
pub async fn run(flags: Flags) -> Result<()> {
    let notifier = notify::Notifier::from_env();
    let shutdown = Shutdown::install(notifier.clone())?;
    let status = StatusHandle::new(notifier);
    let ttl = Duration::from_secs(flags.subnet_lease_ttl_secs);
    if flags.kube_subnet_mgr {
        let node = NodeIdentity::from_env().context("cannot tell which node this is")?;
        let mut options = KubeOptions::new(node);
        options.api_url = flags.kube_api_url.clone();
        options.kubeconfig = flags.kubeconfig_file.clone();
        options.annotation_prefix = flags.kube_annotation_prefix.clone();
        options.net_config_path = flags.net_config_path.clone();
        options.set_node_network_unavailable = flags.set_node_network_unavailable;
        let store = KubeLeaseStore::connect(options)
            .await
            .context("cannot set up the Kubernetes client")?;
        tracing::info!("using the Kubernetes lease store (node annotations)");
        run_with(store, flags, shutdown, status).await
    } else if let Some(path) = &flags.local_store {
        let kv = LocalKv::open(path)
            .with_context(|| format!("cannot open the local store {}", path.display()))?;
        tracing::info!(path = %path.display(), "using the local lease store");
        let store = KvLeaseStore::new(
            kv,
            flags.etcd_prefix.clone(),
            ConfigSource::File(flags.net_config_path.clone()),
            ttl,
        );
        run_with(store, flags, shutdown, status).await
    } else {
        let options = EtcdOptions {
            endpoints: flags.etcd_endpoints.clone(),
            cafile: flags.etcd_cafile.clone(),
            certfile: flags.etcd_certfile.clone(),
            keyfile: flags.etcd_keyfile.clone(),
            username: flags.etcd_username.clone(),
            password: flags.etcd_password.as_ref().map(|p| p.expose().to_owned()),
        };
        for warning in etcd_transport::warnings(&options.endpoints) {
            tracing::warn!("{warning}");
        }
        let client_cert = options.certfile.is_some() && options.keyfile.is_some();
        if let Some(note) = etcd_transport::note(&options.endpoints, client_cert) {
            tracing::info!("{note}");
        }
        let kv = EtcdKv::connect(&options)
            .await
            .context("cannot set up the etcd client")?;
        tracing::info!(endpoints = ?options.endpoints, "using the etcd lease store");
        let store = KvLeaseStore::new(kv, flags.etcd_prefix.clone(), ConfigSource::StoreKey, ttl);
        run_with(store, flags, shutdown, status).await
    }
}

async fn run_with<S: LeaseStore>(
    store: S,
    mut flags: Flags,
    shutdown: Shutdown,
    status: StatusHandle,
) -> Result<()> {
    if flags.healthz_port > 0 {
        let addr = SocketAddr::new(flags.healthz_ip, flags.healthz_port);
        servers::spawn_health(addr, status.clone(), shutdown.clone()).await?;
    }
    if let Some(path) = &flags.status_socket {
        servers::spawn_status(path, status.clone(), shutdown.clone()).await?;
    }

    let cfg = tokio::select! {
        cfg = store.network_config() => cfg.context("cannot read the network configuration")?,
        _ = shutdown.requested() => return Ok(()),
    };
    log_config(&cfg);
    // Before anything else touches the host or the store: a node that
    // cannot run its backend must not hold a subnet.
    crate::unbuilt::check_backend(&cfg)?;
    status.set_identity(store.kind(), cfg.backend.config_type());
    store_health::follow(store.health(), status.clone());

    let (stored_ip, stored_ipv6) = tokio::select! {
        r = store.stored_public_ips() => r?,
        _ = shutdown.requested() => return Ok(()),
    };
    if stored_ip.is_some() || stored_ipv6.is_some() {
        tracing::info!(public_ip = ?stored_ip, public_ipv6 = ?stored_ipv6, "the store assigns this node's public addresses");
        flags.public_ip = stored_ip.or(flags.public_ip);
        flags.public_ipv6 = stored_ipv6.or(flags.public_ipv6);
    }
    let ext = weft_dataplane::external::detect(&flags.interface_choice(), &cfg).await?;
    tracing::info!(
        interface = %ext.name,
        public_ip = ?ext.ext_addr,
        public_ipv6 = ?ext.ext_addr_v6,
        mtu = ext.mtu,
        "using the external interface"
    );
    let previous = tokio::select! {
        r = store.previous_attrs(ext.ext_addr, ext.ext_addr_v6) => r,
        _ = shutdown.requested() => return Ok(()),
    };
    let previous = match previous {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("cannot read what this node published before: {e}");
            None
        }
    };
    let (dataplane, attrs) =
        dataplane::Dataplane::prepare(&flags, &cfg, &ext, previous.as_ref(), status.clone())
            .await?;
    let (lease_tx, lease_rx) = tokio::sync::watch::channel(None);
    let (snapshot_tx, snapshot_rx) = tokio::sync::watch::channel(None);
    let (rotate_tx, rotate_rx) = tokio::sync::mpsc::channel(4);
    let (republish_tx, republish_rx) = tokio::sync::watch::channel(None);
    let publish = lease_loop::Publish {
        lease: lease_tx,
        snapshot: snapshot_tx,
        backend: republish_rx,
    };
    if dataplane.has_wireguard() {
        status.set_rotator(rotate_tx);
    }
    let (public_ip_tx, public_ip_rx) = tokio::sync::mpsc::channel(4);
    status.set_public_ip_requests(public_ip_tx);
    let mut dataplane_task = tokio::spawn(dataplane.run(
        lease_rx,
        snapshot_rx,
        dataplane::Requests {
            rotate: rotate_rx,
            public_ip: public_ip_rx,
        },
        republish_tx,
        shutdown.clone(),
    ));
    tokio::select! {
        leases = lease_loop::run(store, &flags, &cfg, attrs, &status, &publish, &shutdown) => {
            leases?;
            // The dataplane stops on the same shutdown signal; wait for it
            // so nothing is half-applied when the process exits.
            match dataplane_task.await {
                Ok(result) => result?,
                Err(e) => anyhow::bail!("the dataplane task failed: {e}"),
            }
        }
        done = &mut dataplane_task => {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(e) => anyhow::bail!("the dataplane task failed: {e}"),
            }
        }
    }
    tracing::info!("Exiting cleanly...");
    Ok(())
}

fn log_config(cfg: &NetConfig) {
    for pool in cfg.pools() {
        tracing::info!(
            network = %pool.network,
            subnet_len = pool.subnet_len,
            subnet_min = %pool.subnet_min,
            subnet_max = %pool.subnet_max,
            "network config"
        );
    }
    tracing::info!(backend = cfg.backend.config_type(), "backend");
}
