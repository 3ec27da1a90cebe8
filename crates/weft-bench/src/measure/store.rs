//! Writing leases straight into the scale lab's etcd, from inside the
//! store's namespace, with timing of a single write as the agents' watch
//! sees it.
//!
//! A dedicated thread enters the store namespace and builds a tokio
//! runtime there (its worker threads inherit the namespace), so the etcd
//! client's connections exist in the lab and nowhere else; the benchmark
//! talks to it through a channel.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow};
use etcd_client::{Client, DeleteOptions, Txn, TxnOp, WatchOptions};
use weft_core::etcd_key;

use super::feed::TimedPut;

/// etcd's limit on operations per transaction is 128 by default.
const TXN_OPS: usize = 100;

enum Cmd {
    Put(Vec<(String, String)>, mpsc::Sender<Result<()>>),
    DeletePrefix(String, mpsc::Sender<Result<()>>),
    Timed(String, String, mpsc::Sender<Result<TimedPut>>),
}

/// The etcd of a lab, reachable from this process.
pub struct Store {
    tx: Option<mpsc::Sender<Cmd>>,
    thread: Option<JoinHandle<()>>,
}

impl Store {
    /// Connects to etcd at 127.0.0.1:2379 inside `netns` (the lab's store).
    pub fn open(netns: &str) -> Result<Store> {
        let file = std::fs::File::open(weft_lab::netns_path(netns))
            .with_context(|| format!("cannot open network namespace {netns}"))?;
        let (tx, rx) = mpsc::channel::<Cmd>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let thread = std::thread::spawn(move || {
            let setup = (|| -> Result<(tokio::runtime::Runtime, Client)> {
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .context("cannot enter the store's namespace")?;
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()?;
                let client = rt
                    .block_on(Client::connect(["http://127.0.0.1:2379"], None))
                    .context("cannot connect to the lab's etcd")?;
                Ok((rt, client))
            })();
            let (rt, client) = match setup {
                Ok(ok) => {
                    let _ = ready_tx.send(Ok(()));
                    ok
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            while let Ok(cmd) = rx.recv() {
                let mut c = client.clone();
                match cmd {
                    Cmd::Put(kvs, reply) => {
                        let _ = reply.send(rt.block_on(put_many(&mut c, kvs)));
                    }
                    Cmd::DeletePrefix(prefix, reply) => {
                        let r = rt.block_on(async {
                            c.delete(prefix, Some(DeleteOptions::new().with_prefix()))
                                .await
                                .map(|_| ())
                                .map_err(anyhow::Error::from)
                        });
                        let _ = reply.send(r);
                    }
                    Cmd::Timed(key, value, reply) => {
                        let _ = reply.send(rt.block_on(timed_put(&mut c, key, value)));
                    }
                }
            }
        });
        ready_rx
            .recv()
            .map_err(|_| anyhow!("the etcd thread ended"))??;
        Ok(Store {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    fn call<T>(&self, make: impl FnOnce(mpsc::Sender<Result<T>>) -> Cmd) -> Result<T> {
        let (reply, answer) = mpsc::channel();
        self.tx
            .as_ref()
            .ok_or_else(|| anyhow!("the etcd thread is closed"))?
            .send(make(reply))
            .map_err(|_| anyhow!("the etcd thread ended"))?;
        answer
            .recv()
            .map_err(|_| anyhow!("the etcd thread ended"))?
    }

    /// Writes every pair, in order, [`TXN_OPS`] per transaction.
    pub fn put(&self, kvs: Vec<(String, String)>) -> Result<()> {
        self.call(|r| Cmd::Put(kvs, r))
    }

    /// Deletes every key under `prefix`.
    pub fn delete_prefix(&self, prefix: &str) -> Result<()> {
        self.call(|r| Cmd::DeletePrefix(prefix.to_owned(), r))
    }

    /// Writes one key and waits until a watch on it reports the write.
    pub fn timed_put(&self, key: String, value: String) -> Result<TimedPut> {
        self.call(|r| Cmd::Timed(key, value, r))
    }

    /// Replaces net-conf.json under flannel's config key.
    pub fn set_config(&self, net_conf: &str) -> Result<()> {
        self.put(vec![(
            etcd_key::config_key(etcd_key::DEFAULT_PREFIX),
            net_conf.to_owned(),
        )])
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
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
