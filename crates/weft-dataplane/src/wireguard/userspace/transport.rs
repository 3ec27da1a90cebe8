//! The TUN gotatun runs on: weft's own with offloads when the kernel
//! grants them, gotatun's plain one otherwise. One type either way, so the
//! device has one type too.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use gotatun::packet::{Ip, Packet, PacketBufPool};
use gotatun::tun::tun_async_device::TunDevice;
use gotatun::tun::{IpRecv, IpSend, MtuWatcher};

use super::tun_offload::{OffloadRx, OffloadTx, Opened, TunError, open_tun};

/// Whether the fallback was logged at info already (once per process).
static FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

pub(crate) enum TunRx {
    Plain(TunDevice),
    Offload(OffloadRx),
}

pub(crate) enum TunTx {
    Plain(TunDevice),
    Offload(OffloadTx),
}

#[derive(Debug, thiserror::Error)]
pub(super) enum OpenError {
    #[error(transparent)]
    Offload(#[from] TunError),
    #[error(transparent)]
    Plain(#[from] gotatun::tun::tun_async_device::Error),
}

/// Opens TUN `name` (MTU `mtu` about to be set), with offloads if the
/// kernel has them, else gotatun's plain TUN.
pub(super) fn open(name: &str, mtu: u16) -> Result<(TunTx, TunRx), OpenError> {
    match open_tun(name, mtu)? {
        Opened::Offload(rx, tx) => {
            tracing::debug!(device = name, "TUN with checksum and TSO offloads");
            Ok((TunTx::Offload(tx), TunRx::Offload(rx)))
        }
        Opened::Refused(e) => {
            if FALLBACK_LOGGED.swap(true, Ordering::Relaxed) {
                tracing::debug!(device = name, error = %e, "TUN offloads refused, plain TUN");
            } else {
                tracing::info!(
                    device = name,
                    error = %e,
                    "the kernel refused TUN offloads (TUNSETOFFLOAD): userspace WireGuard uses a \
                     plain TUN, one packet per read and write"
                );
            }
            let tun = TunDevice::from_name(name)?;
            Ok((TunTx::Plain(tun.clone()), TunRx::Plain(tun)))
        }
    }
}

impl IpSend for TunTx {
    async fn send(&mut self, packet: Packet<Ip>) -> io::Result<()> {
        match self {
            TunTx::Plain(t) => t.send(packet).await,
            TunTx::Offload(t) => t.send(packet).await,
        }
    }
}

impl IpRecv for TunRx {
    async fn recv<'a>(
        &'a mut self,
        pool: &mut PacketBufPool,
    ) -> io::Result<impl Iterator<Item = Packet<Ip>> + Send + 'a> {
        Ok(match self {
            TunRx::Plain(t) => Either::Left(t.recv(pool).await?),
            TunRx::Offload(t) => Either::Right(t.recv(pool).await?),
        })
    }

    fn mtu(&self) -> MtuWatcher {
        match self {
            TunRx::Plain(t) => t.mtu(),
            TunRx::Offload(t) => t.mtu(),
        }
    }
}

/// One of two iterators.
enum Either<A, B> {
    Left(A),
    Right(B),
}

impl<T, A: Iterator<Item = T>, B: Iterator<Item = T>> Iterator for Either<A, B> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        match self {
            Either::Left(a) => a.next(),
            Either::Right(b) => b.next(),
        }
    }
}
