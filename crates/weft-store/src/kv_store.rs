//! The lease store shared by etcd and the local file: everything flannel's
//! etcd subnet manager does, over the [`Kv`] seam.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use std::net::{Ipv4Addr, Ipv6Addr};
use tracing::{info, warn};
use weft_core::etcd_key;

use weft_core::lease::{Lease, LeaseAttrs, LeaseSubnets};
use weft_core::netconf::{self, NetConfig};

use crate::backoff::Backoff;
use crate::health::StoreHealth;
use crate::kv::{Kv, KvEntry, KvError, Ttl};
use crate::warm::WarmSlot;
use crate::{AcquireRequest, LeaseStore, SnapshotSender, StoreError, acquire, peer_watch};

/// Where the network configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `<prefix>/config` in the store itself (etcd, as flannel does).
    StoreKey,
    /// A file (`--net-config-path`), for the local store.
    File(PathBuf),
}

/// A [`LeaseStore`] over any [`Kv`].
pub struct KvLeaseStore<K: Kv> {
    kv: K,
    prefix: String,
    config: ConfigSource,
    ttl: Duration,
    health: StoreHealth,
    /// The subnet directory as the last start-up step listed it, for the
    /// next one (`warm.rs`).
    warm: WarmSlot,
}

impl<K: Kv> KvLeaseStore<K> {
    /// `prefix` is `--etcd-prefix` (the local store uses the same layout);
    /// `ttl` is the lease lifetime, 24 h unless a test shortens it.
    pub fn new(kv: K, prefix: impl Into<String>, config: ConfigSource, ttl: Duration) -> Self {
        KvLeaseStore {
            kv,
            prefix: prefix.into(),
            config,
            ttl,
            health: StoreHealth::default(),
            warm: WarmSlot::default(),
        }
    }

    /// The underlying key-value store (tests write malformed entries with it).
    pub fn kv(&self) -> &K {
        &self.kv
    }

    pub fn lease_ttl(&self) -> Duration {
        self.ttl
    }

    fn map_err(&self, e: KvError) -> StoreError {
        StoreError::from_kv(self.kv.name(), e)
    }

    /// The key's entry, if any, with the store's error mapping.
    async fn entry(&self, key: &str) -> Result<Option<KvEntry>, StoreError> {
        self.kv.get(key).await.map_err(|e| self.map_err(e))
    }

    /// Rewrites the entry if it is still as read; false if it moved on.
    async fn rewrite(&self, entry: &KvEntry, value: &[u8], ttl: Ttl) -> Result<bool, StoreError> {
        self.kv
            .replace(&entry.key, entry.mod_rev, value, ttl)
            .await
            .map_err(|e| self.map_err(e))
    }

    async fn config_from_key(&self) -> Result<NetConfig, StoreError> {
        let key = etcd_key::config_key(&self.prefix);
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        loop {
            let wait = match self.kv.get(&key).await {
                Ok(Some(entry)) => match std::str::from_utf8(&entry.value)
                    .map_err(|_| "the value is not UTF-8".to_owned())
                    .and_then(|text| netconf::parse(text).map_err(|e| e.to_string()))
                {
                    Ok(cfg) => return Ok(cfg),
                    Err(e) => format!(
                        "the network config at {key} is invalid: {e}; fix it with etcdctl put"
                    ),
                },
                Ok(None) => format!(
                    "network config not found at {key}. Did you create your config using the etcd v3 API (etcdctl put {key} ...)?"
                ),
                Err(e @ KvError::Refused { .. }) => return Err(self.map_err(e)),
                Err(e) => format!("{} is unreachable: {e}", self.kv.name()),
            };
            let delay = backoff.next_delay();
            warn!("{wait}; retrying in {delay:.1?}");
            tokio::time::sleep(delay).await;
        }
    }
}

fn file_config(path: &PathBuf) -> Result<NetConfig, StoreError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        StoreError::refused(
            "local",
            format!(
                "cannot read the network config {}: {e}; write net-conf.json there or point --net-config-path at it",
                path.display()
            ),
        )
        .because(e)
    })?;
    Ok(netconf::parse(&text)?)
}

impl<K: Kv> LeaseStore for KvLeaseStore<K> {
    fn kind(&self) -> &'static str {
        self.kv.name()
    }

    async fn network_config(&self) -> Result<NetConfig, StoreError> {
        match &self.config {
            ConfigSource::StoreKey => self.config_from_key().await,
            ConfigSource::File(path) => file_config(path),
        }
    }

    async fn previous_attrs(
        &self,
        public_ip: Option<Ipv4Addr>,
        public_ipv6: Option<Ipv6Addr>,
    ) -> Result<Option<LeaseAttrs>, StoreError> {
        let probe = LeaseAttrs {
            public_ip,
            public_ipv6,
            ..Default::default()
        };
        let listing = self
            .kv
            .list(&etcd_key::subnets_dir(&self.prefix))
            .await
            .map_err(|e| self.map_err(e))?;
        let found = listing
            .entries
            .iter()
            .filter_map(|e| LeaseAttrs::from_json(&e.value).ok())
            .find(|attrs| acquire::same_node(&probe, attrs));
        self.warm.keep(listing, None);
        Ok(found)
    }

    async fn acquire(&self, cfg: &NetConfig, req: &AcquireRequest) -> Result<Lease, StoreError> {
        let listed = self.warm.take().map(|w| w.listing);
        let (lease, listing) =
            acquire::acquire(&self.kv, &self.prefix, self.ttl, cfg, req, listed).await?;
        let key = etcd_key::lease_key(&self.prefix, &lease.subnets);
        self.warm.keep(listing, Some(key));
        Ok(lease)
    }

    async fn renew(&self, lease: &Lease) -> Result<Lease, StoreError> {
        let key = etcd_key::lease_key(&self.prefix, &lease.subnets);
        let gone = || StoreError::LeaseGone { key: key.clone() };
        let entry = self.entry(&key).await?.ok_or_else(gone)?;
        let ttl = if entry.expires {
            Ttl::For(self.ttl)
        } else {
            Ttl::Forever
        };
        let value = lease.attrs.to_json().into_bytes();
        if !self.rewrite(&entry, &value, ttl).await? {
            // Changed under us: re-read once so a concurrent rewrite is not
            // mistaken for a lost lease.
            let entry = self.entry(&key).await?.ok_or_else(gone)?;
            if !self.rewrite(&entry, &value, ttl).await? {
                return Err(gone());
            }
        }
        Ok(Lease {
            subnets: lease.subnets,
            attrs: lease.attrs.clone(),
            expiration: match ttl {
                Ttl::For(d) => Some(SystemTime::now() + d),
                Ttl::Forever => None,
            },
        })
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let key = etcd_key::lease_key(&self.prefix, &lease.subnets);
        if let Some(entry) = self.entry(&key).await? {
            self.kv
                .delete(&key, entry.mod_rev)
                .await
                .map_err(|e| self.map_err(e))?;
            info!(%key, "released our lease");
        }
        Ok(())
    }

    async fn watch_peers(&self, cfg: NetConfig, own: LeaseSubnets, tx: SnapshotSender) {
        let warm = self.warm.take_last();
        peer_watch::watch_peers(&self.kv, &self.prefix, &cfg, own, tx, &self.health, warm).await
    }

    fn health(&self) -> StoreHealth {
        self.health.clone()
    }
}
