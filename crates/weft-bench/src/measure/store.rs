//! Writing leases straight into the scale lab's etcd, from inside the
//! store's namespace, with timing of a single write as the agents' watch
//! sees it.
//!
//! A resident thread enters the store namespace and builds a tokio runtime
//! there (its worker threads inherit the namespace), so the etcd client's
//! connections exist in the lab and nowhere else.
//!
//! Every lease is attached to one etcd lease of flanneld's TTL (24 h), as
//! flanneld's own are: flanneld reads each key's TTL (`TimeToLive` of its
//! etcd lease) and skips a key without one, so bare keys would be no
//! peers at all to a real flanneld (`--flanneld`). weftd reads no TTL.

use std::time::Instant;

use anyhow::{Context as _, Result, anyhow};
use etcd_client::{Client, DeleteOptions, PutOptions, Txn, TxnOp, WatchOptions};
use tokio::runtime::Runtime;
use weft_core::etcd_key;
use weft_dataplane::netns::{Resident, named};

use super::feed::TimedPut;

/// etcd's limit on operations per transaction is 128 by default.
const TXN_OPS: usize = 100;
/// flanneld's lease TTL (`subnetTTL`), seconds.
const LEASE_TTL_SECS: i64 = 86_400;

/// The etcd of a lab, reachable from this process.
pub struct Store {
    resident: Resident<(Runtime, Client)>,
    /// The etcd lease every key written is attached to.
    lease: i64,
}

impl Store {
    /// Connects to etcd at 127.0.0.1:2379 inside `netns` (the lab's store).
    pub fn open(netns: &str) -> Result<Store> {
        let resident = Resident::start(named(netns), || -> Result<(Runtime, Client)> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            let client = rt
                .block_on(Client::connect(["http://127.0.0.1:2379"], None))
                .context("cannot connect to the lab's etcd")?;
            Ok((rt, client))
        })
        .with_context(|| format!("cannot enter the store's namespace {netns}"))??;
        let mut store = Store { resident, lease: 0 };
        store.lease = store
            .call(|mut c| async move { Ok(c.lease_grant(LEASE_TTL_SECS, None).await?.id()) })?;
        Ok(store)
    }

    /// Runs `op` with a client on the store's thread.
    fn call<T, Fut>(&self, op: impl FnOnce(Client) -> Fut + Send + 'static) -> Result<T>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T>>,
    {
        self.resident
            .run(move |(rt, client)| rt.block_on(op(client.clone())))?
    }

    /// Writes every pair, in order, [`TXN_OPS`] per transaction.
    pub fn put(&self, kvs: Vec<(String, String)>) -> Result<()> {
        let lease = self.lease;
        self.call(move |mut c| async move { put_many(&mut c, kvs, lease).await })
    }

    /// Deletes every key under `prefix`.
    pub fn delete_prefix(&self, prefix: &str) -> Result<()> {
        let prefix = prefix.to_owned();
        self.call(|mut c| async move {
            c.delete(prefix, Some(DeleteOptions::new().with_prefix()))
                .await?;
            Ok(())
        })
    }

    /// Writes one key and waits until a watch on it reports the write.
    pub fn timed_put(&self, key: String, value: String) -> Result<TimedPut> {
        let lease = self.lease;
        self.call(move |mut c| async move { timed_put(&mut c, key, value, lease).await })
    }

    /// Replaces net-conf.json under flannel's config key (no etcd lease:
    /// lease 0 is none).
    pub fn set_config(&self, net_conf: &str) -> Result<()> {
        let kvs = vec![(
            etcd_key::config_key(etcd_key::DEFAULT_PREFIX),
            net_conf.to_owned(),
        )];
        self.call(|mut c| async move { put_many(&mut c, kvs, 0).await })
    }
}

async fn put_many(c: &mut Client, kvs: Vec<(String, String)>, lease: i64) -> Result<()> {
    for chunk in kvs.chunks(TXN_OPS) {
        let ops: Vec<TxnOp> = chunk
            .iter()
            .map(|(k, v)| {
                TxnOp::put(
                    k.as_str(),
                    v.as_str(),
                    Some(PutOptions::new().with_lease(lease)),
                )
            })
            .collect();
        c.txn(Txn::new().and_then(ops)).await?;
    }
    Ok(())
}

async fn timed_put(c: &mut Client, key: String, value: String, lease: i64) -> Result<TimedPut> {
    let mut stream = c.watch(key.as_str(), None::<WatchOptions>).await?;
    // The first answer confirms the watch exists; only then may the write go.
    stream.message().await?;
    let sent = Instant::now();
    c.put(
        key.as_str(),
        value,
        Some(PutOptions::new().with_lease(lease)),
    )
    .await?;
    loop {
        match stream.message().await? {
            Some(resp) if !resp.events().is_empty() => {
                return Ok(TimedPut {
                    sent,
                    confirmed: Instant::now(),
                });
            }
            Some(_) => {}
            None => return Err(anyhow!("the etcd watch ended")),
        }
    }
}
