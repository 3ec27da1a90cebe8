//! Writing leases straight into the scale lab's etcd, from inside the
//! store's namespace, with timing of a single write as the agents' watch
//! sees it.
//!
//! A resident thread enters the store namespace and builds a tokio runtime
//! there (its worker threads inherit the namespace), so the etcd client's
//! connections exist in the lab and nowhere else.

use std::time::Instant;

use anyhow::{Context as _, Result, anyhow};
use etcd_client::{Client, DeleteOptions, Txn, TxnOp, WatchOptions};
use tokio::runtime::Runtime;
use weft_core::etcd_key;
use weft_dataplane::netns::{Resident, named};

use super::feed::TimedPut;

/// etcd's limit on operations per transaction is 128 by default.
const TXN_OPS: usize = 100;

/// The etcd of a lab, reachable from this process.
pub struct Store {
    resident: Resident<(Runtime, Client)>,
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
        Ok(Store { resident })
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
        self.call(|mut c| async move { put_many(&mut c, kvs).await })
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
        self.call(|mut c| async move { timed_put(&mut c, key, value).await })
    }

    /// Replaces net-conf.json under flannel's config key.
    pub fn set_config(&self, net_conf: &str) -> Result<()> {
        self.put(vec![(
            etcd_key::config_key(etcd_key::DEFAULT_PREFIX),
            net_conf.to_owned(),
        )])
    }
}

async fn put_many(c: &mut Client, kvs: Vec<(String, String)>) -> Result<()> {
    for chunk in kvs.chunks(TXN_OPS) {
        let ops: Vec<TxnOp> = chunk
            .iter()
            .map(|(k, v)| TxnOp::put(k.as_str(), v.as_str(), None))
            .collect();
        c.txn(Txn::new().and_then(ops)).await?;
    }
    Ok(())
}

async fn timed_put(c: &mut Client, key: String, value: String) -> Result<TimedPut> {
    let mut stream = c.watch(key.as_str(), None::<WatchOptions>).await?;
    // The first answer confirms the watch exists; only then may the write go.
    stream.message().await?;
    let sent = Instant::now();
    c.put(key.as_str(), value, None).await?;
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
