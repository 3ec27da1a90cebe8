//! gotatun's UDP socket with UDP GSO on the sending side: a batch of
//! encrypted packets to one peer, all of one size (the last may be
//! shorter), goes out as one `sendmsg` with `UDP_SEGMENT` instead of one
//! datagram each in a `sendmmsg`. The kernel then routes, filters and
//! queues one buffer per run instead of per packet (and a receiver with UDP
//! GRO, as gotatun and the kernel's WireGuard both have, takes it whole).
//! Receiving is gotatun's own (recvmmsg with UDP GRO).
//!
//! When the kernel refuses the first GSO send, the socket falls back to
//! gotatun's `sendmmsg` for good (logged once, at info).

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gotatun::packet::Packet;
use gotatun::udp::socket::{UdpSocket, UdpSocketFactory};
use gotatun::udp::{UdpSend, UdpTransportFactory, UdpTransportFactoryParams};
use nix::errno::Errno;
use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrStorage, sendmsg};
use tokio::io::Interest;

/// Segments in one GSO send at most (the kernel's UDP_MAX_SEGMENTS is 64
/// on older kernels).
const MAX_SEGMENTS: usize = 64;
/// Bytes in one GSO send at most (an IP datagram's 64 KiB, less headers).
const MAX_BYTES: usize = 65_000;

/// Binds gotatun's socket and wraps its sending half.
#[derive(Default)]
pub(crate) struct GsoUdpFactory {
    inner: UdpSocketFactory,
}

impl GsoUdpFactory {
    /// With socket buffers of `bytes` (as far as `net.core.[rw]mem_max`
    /// lets them be).
    pub(crate) fn with_buffers(bytes: usize) -> GsoUdpFactory {
        GsoUdpFactory {
            inner: UdpSocketFactory {
                recv_buffer_size: Some(bytes),
                send_buffer_size: Some(bytes),
            },
        }
    }
}

impl UdpTransportFactory for GsoUdpFactory {
    type Send = GsoUdpSend;
    type Recv = UdpSocket;

    async fn bind(
        &mut self,
        params: &UdpTransportFactoryParams,
    ) -> io::Result<(GsoUdpSend, UdpSocket)> {
        let (tx, rx) = self.inner.bind(params).await?;
        Ok((
            GsoUdpSend {
                inner: tx,
                gso: Arc::new(AtomicBool::new(true)),
            },
            rx,
        ))
    }
}

#[derive(Clone)]
pub(crate) struct GsoUdpSend {
    inner: UdpSocket,
    /// False once the kernel refused a GSO send.
    gso: Arc<AtomicBool>,
}

/// Whether the fallback was logged at info already (once per process).
static FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

impl GsoUdpSend {
    /// One `sendmsg` of `packets` to `dest`, segmented at the first one's
    /// size when there are several.
    async fn send_run(&self, packets: &[(Packet, SocketAddr)], dest: SocketAddr) -> io::Result<()> {
        let socket = self.inner.socket();
        let fd = socket.as_raw_fd();
        let addr = SockaddrStorage::from(dest);
        let seg = packets.first().map_or(0, |(p, _)| p.len()) as u16;
        let mut iov = [IoSlice::new(&[]); MAX_SEGMENTS];
        for (slot, (p, _)) in iov.iter_mut().zip(packets) {
            *slot = IoSlice::new(&p[..]);
        }
        let iov = &iov[..packets.len().min(MAX_SEGMENTS)];
        let gso = [ControlMessage::UdpGsoSegments(&seg)];
        let cmsgs: &[ControlMessage] = if packets.len() > 1 { &gso } else { &[] };
        socket
            .async_io(Interest::WRITABLE, || {
                sendmsg(fd, iov, cmsgs, MsgFlags::MSG_DONTWAIT, Some(&addr))
                    .map_err(io::Error::from)
            })
            .await
            .map(drop)
    }
}

impl UdpSend for GsoUdpSend {
    type SendManyBuf = <UdpSocket as UdpSend>::SendManyBuf;

    async fn send_to(&self, packet: Packet, destination: SocketAddr) -> io::Result<()> {
        self.inner.send_to(packet, destination).await
    }

    fn max_number_of_packets_to_send(&self) -> usize {
        self.inner.max_number_of_packets_to_send()
    }

    async fn send_many_to(
        &self,
        send_buf: &mut Self::SendManyBuf,
        packets: &mut Vec<(Packet, SocketAddr)>,
    ) -> io::Result<()> {
        if !self.gso.load(Ordering::Relaxed) {
            return self.inner.send_many_to(send_buf, packets).await;
        }
        let mut result = Ok(());
        let mut at = 0;
        while at < packets.len() {
            let run = next_run(packets, at);
            let dest = packets[run.start].1;
            match self.send_run(&packets[run.clone()], dest).await {
                Ok(()) => {}
                // EIO: no checksum offload on the route's device; EINVAL:
                // a kernel without UDP_SEGMENT. Neither will change.
                Err(e)
                    if run.len() > 1
                        && matches!(
                            Errno::from_raw(e.raw_os_error().unwrap_or(0)),
                            Errno::EIO | Errno::EINVAL | Errno::ENOPROTOOPT
                        ) =>
                {
                    self.gso.store(false, Ordering::Relaxed);
                    log_fallback(&e);
                    packets.drain(..run.start);
                    return self.inner.send_many_to(send_buf, packets).await;
                }
                // Like gotatun's sendmmsg path: the rest is still sent, the
                // error reported (and the lost packets left to TCP & co).
                Err(e) => result = Err(e),
            }
            at = run.end;
        }
        packets.clear();
        result
    }

    fn local_addr(&self) -> io::Result<Option<SocketAddr>> {
        self.inner.local_addr().map(Some)
    }

    fn set_fwmark(&self, mark: u32) -> io::Result<()> {
        self.inner.set_fwmark(mark)
    }
}

fn log_fallback(e: &io::Error) {
    if FALLBACK_LOGGED.swap(true, Ordering::Relaxed) {
        tracing::debug!(error = %e, "UDP GSO refused, sendmmsg");
    } else {
        tracing::info!(
            error = %e,
            "the kernel refused UDP GSO (UDP_SEGMENT): userspace WireGuard sends one datagram per \
             packet (sendmmsg)"
        );
    }
}

/// The packets from `at` that can go in one GSO send: same destination,
/// same size as the first (the last may be shorter), within the limits.
fn next_run(packets: &[(Packet, SocketAddr)], at: usize) -> Range<usize> {
    run_of(packets.iter().map(|(p, d)| (p.len(), *d)), at)
}

fn run_of(items: impl Iterator<Item = (usize, SocketAddr)>, at: usize) -> Range<usize> {
    let mut items = items.skip(at);
    let Some((size, dest)) = items.next() else {
        return at..at;
    };
    let (mut end, mut bytes) = (at + 1, size);
    for (len, d) in items {
        if d != dest || len > size || end - at >= MAX_SEGMENTS || bytes + len > MAX_BYTES {
            break;
        }
        end += 1;
        bytes += len;
        if len < size {
            break;
        }
    }
    at..end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(items: &[(usize, SocketAddr)]) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < items.len() {
            let r = run_of(items.iter().copied(), at);
            at = r.end;
            out.push(r);
        }
        out
    }

    #[test]
    fn runs_split_at_destination_size_and_limits() {
        let a: SocketAddr = "192.0.2.1:51820"
            .parse()
            .unwrap_or(SocketAddr::from(([0; 4], 0)));
        let b: SocketAddr = "192.0.2.2:51820"
            .parse()
            .unwrap_or(SocketAddr::from(([0; 4], 0)));
        let items = [
            (1452, a),
            (1452, a),
            (800, a), // shorter: ends the run
            (1452, a),
            (1452, b), // another peer
            (1452, b),
            (1500, b), // bigger: a new run
            (96, b),
        ];
        assert_eq!(runs(&items), vec![0..3, 3..4, 4..6, 6..8]);
        let many = vec![(1000, a); 150];
        assert_eq!(runs(&many), vec![0..64, 64..128, 128..150]);
        let big = vec![(1452, a); 60];
        // 44 × 1452 = 63 888 ≤ 65 000 < 45 × 1452.
        assert_eq!(runs(&big)[0], 0..44);
    }
}
