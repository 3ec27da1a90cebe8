//! A TUN device with the kernel's offloads on (`IFF_VNET_HDR`,
//! `TUNSETOFFLOAD` with checksum and TSO for IPv4 and IPv6), as gotatun's
//! [`IpRecv`] and [`IpSend`]:
//!
//! - reading (pod → tunnel), one read returns up to 64 KiB of one TCP flow,
//!   cut into MTU-sized packets for gotatun by [`gso::split`];
//! - writing (tunnel → pod), a task drains what gotatun has decrypted and
//!   merges consecutive TCP segments ([`Coalescer`]) into one write each.
//!
//! Both cut the per-packet system calls and kernel passes that dominated
//! the profile of the plain TUN.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use gotatun::packet::{Ip, Packet, PacketBufPool};
use gotatun::tun::{IpRecv, IpSend, MtuWatcher};
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::libc;
use nix::sys::stat::Mode;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};

use crate::netlink::Netlink;
use weft_offload::gro::Coalescer;
use weft_offload::gso;
use weft_offload::vnet::{self, VnetHdr};

/// Largest read: a 64 KiB super-packet after its vnet header.
const READ_BUF: usize = vnet::LEN + 65_535;
/// Packets the writer takes off the queue at most per round.
const WRITE_BATCH: usize = 256;
/// Depth of the queue between gotatun and the writer.
const WRITE_QUEUE: usize = 1024;
/// How often the link's MTU is read back (gotatun's TUN does the same).
const MTU_POLL: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub(super) enum TunError {
    #[error("opening /dev/net/tun: {0}")]
    Open(#[source] Errno),
    #[error("creating TUN {name} with a vnet header (TUNSETIFF): {source}")]
    SetIff {
        name: String,
        #[source]
        source: Errno,
    },
    #[error("registering the TUN with the runtime: {0}")]
    Register(#[source] io::Error),
    #[error("the TUN name {0:?} is too long")]
    Name(String),
}

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags, padded
/// to the size of the kernel's union.
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// TUNSETIFF.
#[allow(unsafe_code)]
fn tun_set_iff(fd: &OwnedFd, req: &IfReqFlags) -> Result<(), Errno> {
    // SAFETY: `fd` is an open descriptor of /dev/net/tun and `req` points
    // to a live, fully initialised struct of `struct ifreq`'s size and
    // layout, which TUNSETIFF only reads (and writes the name back into).
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, req as *const IfReqFlags) };
    Errno::result(r).map(drop)
}

/// TUNSETOFFLOAD: the offloads the kernel may hand over on reads.
#[allow(unsafe_code)]
fn tun_set_offload(fd: &OwnedFd, flags: libc::c_uint) -> Result<(), Errno> {
    // SAFETY: `fd` is an open TUN descriptor; TUNSETOFFLOAD takes its
    // argument by value and touches no memory of ours.
    let r = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            libc::c_ulong::from(flags),
        )
    };
    Errno::result(r).map(drop)
}

/// Registers the TUN with the runtime's reactor.
#[allow(unsafe_code)]
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd takes the OwnedFd by value: the descriptor stays
    // open, and the same file, for as long as the AsyncFd holds it, and
    // OwnedFd::as_raw_fd always returns that descriptor.
    unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)
}

/// How [`open_tun`] ended when it did not fail.
pub(super) enum Opened {
    Offload(OffloadRx, OffloadTx),
    /// The kernel refused the offloads (the TUN is closed again): the
    /// caller opens a plain TUN instead.
    Refused(Errno),
}

/// Creates TUN `name` with a vnet header and the offloads. Must be called
/// within the tokio runtime (it registers the descriptor and starts the
/// writer and the MTU watch).
pub(super) fn open_tun(name: &str, mtu: u16) -> Result<Opened, TunError> {
    let fd = open(
        "/dev/net/tun",
        OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(TunError::Open)?;
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short,
        _pad: [0; 22],
    };
    if name.len() >= libc::IFNAMSIZ || name.as_bytes().contains(&0) {
        return Err(TunError::Name(name.to_string()));
    }
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    tun_set_iff(&fd, &req).map_err(|source| TunError::SetIff {
        name: name.to_string(),
        source,
    })?;
    if let Err(e) = tun_set_offload(&fd, libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6) {
        return Ok(Opened::Refused(e));
    }
    let fd = Arc::new(register(fd).map_err(TunError::Register)?);
    let (mtu_tx, mtu_rx) = watch::channel(mtu);
    tokio::spawn(watch_mtu(name.to_string(), mtu_tx));
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    tokio::spawn(writer(Arc::clone(&fd), rx));
    Ok(Opened::Offload(
        OffloadRx {
            fd,
            buf: vec![0; READ_BUF],
            out: Vec::new(),
            mtu: mtu_rx.into(),
        },
        OffloadTx { tx },
    ))
}

/// The reading half: TUN → gotatun (to be encrypted).
pub(super) struct OffloadRx {
    fd: Arc<AsyncFd<OwnedFd>>,
    buf: Vec<u8>,
    out: Vec<Packet<Ip>>,
    mtu: MtuWatcher,
}

impl OffloadRx {
    async fn read(&mut self) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            let buf = &mut self.buf;
            match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(io::Error::from)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}

impl IpRecv for OffloadRx {
    async fn recv<'a>(
        &'a mut self,
        pool: &mut PacketBufPool,
    ) -> io::Result<impl Iterator<Item = Packet<Ip>> + Send + 'a> {
        self.out.clear();
        while self.out.is_empty() {
            let n = self.read().await?;
            let (buf, out) = (&mut self.buf, &mut self.out);
            let Some(hdr) = buf.get(..n).and_then(VnetHdr::parse) else {
                continue;
            };
            let r = gso::split(&hdr, &mut buf[vnet::LEN..n], |h, p| {
                if let Some(packet) = to_packet(pool, h, p) {
                    out.push(packet);
                }
            });
            if let Err(e) = r {
                tracing::debug!(error = %e, "dropping a packet read from the TUN");
            }
        }
        Ok(self.out.drain(..))
    }

    fn mtu(&self) -> MtuWatcher {
        self.mtu.clone()
    }
}

/// `headers` then `payload` in a buffer of the pool (or a fresh one if too
/// big for it).
fn to_packet(pool: &PacketBufPool, headers: &[u8], payload: &[u8]) -> Option<Packet<Ip>> {
    let len = headers.len() + payload.len();
    let mut packet = pool.get();
    if len <= packet.len() {
        packet[..headers.len()].copy_from_slice(headers);
        packet[headers.len()..len].copy_from_slice(payload);
        packet.truncate(len);
    } else {
        packet = Packet::copy_from(&[headers, payload].concat()[..]);
    }
    packet.try_into_ip().ok()
}

/// The writing half: gotatun (decrypted) → the writer task → TUN.
pub(super) struct OffloadTx {
    tx: mpsc::Sender<Packet<[u8]>>,
}

impl IpSend for OffloadTx {
    async fn send(&mut self, packet: Packet<Ip>) -> io::Result<()> {
        self.tx
            .send(packet.into_bytes())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the TUN writer stopped"))
    }
}

/// Takes whatever is queued, merges, writes; ends when gotatun drops its
/// sending half.
async fn writer(fd: Arc<AsyncFd<OwnedFd>>, mut rx: mpsc::Receiver<Packet<[u8]>>) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut coalescer = Coalescer::default();
    while rx.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        coalescer.run(&batch, |hdr, packet| write_one(fd.get_ref(), hdr, packet));
        batch.clear();
    }
}

/// One write. A TUN write does not wait (the kernel takes the packet or
/// drops it), so a failure is logged and the packet counted lost, as a
/// drop on the wire would be.
fn write_one(fd: &OwnedFd, hdr: &VnetHdr, packet: &[u8]) {
    let h = hdr.encode();
    let iov = [IoSlice::new(&h), IoSlice::new(packet)];
    if let Err(e) = nix::sys::uio::writev(fd, &iov) {
        tracing::debug!(error = %e, len = packet.len(), gso = hdr.gso_type, "TUN write failed");
    }
}

/// Keeps `tx` at the link's MTU until nobody listens or the link is gone.
async fn watch_mtu(name: String, tx: watch::Sender<u16>) {
    let Ok(nl) = Netlink::connect() else {
        return;
    };
    loop {
        tokio::time::sleep(MTU_POLL).await;
        if tx.is_closed() {
            return;
        }
        match nl.link_by_name(&name).await {
            Ok(Some(link)) => {
                let mtu = u16::try_from(link.mtu).unwrap_or(u16::MAX);
                tx.send_if_modified(|m| {
                    let changed = *m != mtu;
                    *m = mtu;
                    changed
                });
            }
            Ok(None) => return,
            Err(_) => {}
        }
    }
}
