//! Coalescing of decrypted packets before they are written to the TUN (RX:
//! tunnel → pod), the userspace counterpart of the kernel's TCP GRO:
//! consecutive in-order segments of one TCP flow in a batch become one
//! super-packet written once with a GSO `virtio_net_hdr`, instead of one
//! write per segment. Everything else is written as it came.
//!
//! A segment joins a flow's super-packet only when the kernel's own GRO
//! would merge it: same IP header but for length/ID/checksum, no
//! fragments, same TCP ports, ack, header and options, only ACK (PSH on the
//! last one), the next sequence number, no more payload than the first
//! segment's, and a valid TCP checksum (the super-packet's checksum is left
//! to the kernel to complete, so a bad one would otherwise be laundered).

use crate::csum;
use crate::gso::{be16, be32, v4_at, v6_at};
use crate::vnet::{self, VnetHdr};

/// Flows with a super-packet under way at once; the oldest is flushed to
/// make room.
const MAX_FLOWS: usize = 8;
/// Segments in one super-packet at most.
const MAX_SEGS: usize = 64;
/// IP total length at most (IPv4's limit, kept for IPv6 too).
const MAX_LEN: usize = 65_535;

const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;

/// A TCP segment that may be merged, as parsed.
struct Segment {
    v4: bool,
    ip_len: usize,
    tcp_len: usize,
    payload: usize,
    seq: u32,
    psh: bool,
}

struct Group {
    /// Headers of the first segment, then the payloads in order.
    buf: Vec<u8>,
    v4: bool,
    ip_len: usize,
    tcp_len: usize,
    mss: usize,
    segs: usize,
    next_seq: u32,
    psh: bool,
    /// A short segment or PSH ended it: nothing more may join.
    closed: bool,
}

/// Reused between batches (the buffers keep their capacity).
#[derive(Default)]
pub struct Coalescer {
    groups: Vec<Group>,
    spare: Vec<Vec<u8>>,
}

impl Coalescer {
    /// Writes every packet of `batch` through `write(header, packet)`,
    /// merged where it can.
    pub fn run<P: AsRef<[u8]>>(&mut self, batch: &[P], mut write: impl FnMut(&VnetHdr, &[u8])) {
        for p in batch {
            let p = p.as_ref();
            match parse(p) {
                Some(seg) => self.add(p, &seg, &mut write),
                None => {
                    if let Some(i) = self.group_of(p) {
                        self.flush(i, &mut write);
                    }
                    write(&VnetHdr::default(), p);
                }
            }
        }
        while !self.groups.is_empty() {
            self.flush(0, &mut write);
        }
    }

    fn add(&mut self, p: &[u8], seg: &Segment, write: &mut impl FnMut(&VnetHdr, &[u8])) {
        if let Some(i) = self.group_of(p) {
            if can_join(&self.groups[i], p, seg) {
                let g = &mut self.groups[i];
                g.buf
                    .extend_from_slice(&p[seg.ip_len + seg.tcp_len..][..seg.payload]);
                g.segs += 1;
                g.next_seq = seg.seq.wrapping_add(seg.payload as u32);
                g.psh = seg.psh;
                g.closed = seg.psh || seg.payload < g.mss;
                return;
            }
            self.flush(i, write);
        } else if self.groups.len() == MAX_FLOWS {
            self.flush(0, write);
        }
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(&p[..seg.ip_len + seg.tcp_len + seg.payload]);
        self.groups.push(Group {
            buf,
            v4: seg.v4,
            ip_len: seg.ip_len,
            tcp_len: seg.tcp_len,
            mss: seg.payload,
            segs: 1,
            next_seq: seg.seq.wrapping_add(seg.payload as u32),
            psh: seg.psh,
            closed: seg.psh,
        });
    }

    /// The group of `p`'s flow (same addresses and ports), if any.
    fn group_of(&self, p: &[u8]) -> Option<usize> {
        self.groups.iter().position(|g| same_flow(g, p))
    }

    fn flush(&mut self, i: usize, write: &mut impl FnMut(&VnetHdr, &[u8])) {
        let mut g = self.groups.remove(i);
        if g.segs == 1 {
            write(&VnetHdr::default(), &g.buf);
        } else {
            let hdr = finish_super_packet(&mut g);
            write(&hdr, &g.buf);
        }
        self.spare.push(g.buf);
    }
}

/// Fixes the merged packet's headers and returns its GSO header.
fn finish_super_packet(g: &mut Group) -> VnetHdr {
    let total = g.buf.len();
    let tcp_total = total - g.ip_len;
    let pseudo = if g.v4 {
        g.buf[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        g.buf[10..12].copy_from_slice(&[0, 0]);
        let c = csum::ipv4_header(&g.buf[..g.ip_len]);
        g.buf[10..12].copy_from_slice(&c.to_be_bytes());
        csum::pseudo_v4(v4_at(&g.buf, 12), v4_at(&g.buf, 16), 6, tcp_total)
    } else {
        g.buf[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        csum::pseudo_v6(v6_at(&g.buf, 8), v6_at(&g.buf, 24), 6, tcp_total)
    };
    let tcp = &mut g.buf[g.ip_len..];
    if g.psh {
        tcp[13] |= TCP_PSH;
    }
    // CHECKSUM_PARTIAL: the field holds the pseudo header's folded sum,
    // the kernel adds the rest (or each segment's, if it resegments).
    tcp[16..18].copy_from_slice(&csum::fold(pseudo).to_be_bytes());
    VnetHdr {
        flags: vnet::F_NEEDS_CSUM,
        gso_type: if g.v4 {
            vnet::GSO_TCPV4
        } else {
            vnet::GSO_TCPV6
        },
        hdr_len: (g.ip_len + g.tcp_len) as u16,
        gso_size: g.mss as u16,
        csum_start: g.ip_len as u16,
        csum_offset: 16,
    }
}

/// `p` as a mergeable TCP segment: unfragmented, no IPv6 extension
/// headers, only ACK (and PSH), some payload, a checksum that verifies.
fn parse(p: &[u8]) -> Option<Segment> {
    let (v4, ip_len, total) = match p.first()? >> 4 {
        4 => {
            let ip_len = usize::from(p[0] & 0x0f) * 4;
            if p.len() < 20 || ip_len < 20 || p[9] != 6 || be16(&p[6..]) & 0x3fff != 0 {
                return None;
            }
            (true, ip_len, usize::from(be16(&p[2..])))
        }
        6 => {
            if p.len() < 40 || p[6] != 6 {
                return None;
            }
            (false, 40, 40 + usize::from(be16(&p[4..])))
        }
        _ => return None,
    };
    if total != p.len() || ip_len + 20 > total {
        return None;
    }
    let tcp = &p[ip_len..];
    let tcp_len = usize::from(tcp[12] >> 4) * 4;
    if tcp_len < 20 || tcp_len > tcp.len() {
        return None;
    }
    let flags = tcp[13];
    let payload = tcp.len() - tcp_len;
    if flags & !TCP_PSH != TCP_ACK || payload == 0 {
        return None;
    }
    let pseudo = if v4 {
        csum::pseudo_v4(v4_at(p, 12), v4_at(p, 16), 6, tcp.len())
    } else {
        csum::pseudo_v6(v6_at(p, 8), v6_at(p, 24), 6, tcp.len())
    };
    if csum::fold(csum::sum(tcp, pseudo)) != 0xffff {
        return None;
    }
    Some(Segment {
        v4,
        ip_len,
        tcp_len,
        payload,
        seq: be32(&tcp[4..]),
        psh: flags & TCP_PSH != 0,
    })
}

/// Same addresses and ports (and IP version).
fn same_flow(g: &Group, p: &[u8]) -> bool {
    let b = &g.buf;
    let (addrs, ip_len) = if g.v4 {
        (12..20, g.ip_len)
    } else {
        (8..40, 40)
    };
    p.first().map(|v| v >> 4) == Some(if g.v4 { 4 } else { 6 })
        && p.get(addrs.clone()) == b.get(addrs)
        && p.len() >= ip_len + 4
        && ip_len == header_len(p)
        && p[ip_len..ip_len + 4] == b[g.ip_len..g.ip_len + 4]
}

fn header_len(p: &[u8]) -> usize {
    match p.first().map(|v| v >> 4) {
        Some(4) => usize::from(p[0] & 0x0f) * 4,
        _ => 40,
    }
}

fn can_join(g: &Group, p: &[u8], seg: &Segment) -> bool {
    if g.closed
        || g.segs >= MAX_SEGS
        || seg.v4 != g.v4
        || seg.ip_len != g.ip_len
        || seg.tcp_len != g.tcp_len
        || seg.seq != g.next_seq
        || seg.payload > g.mss
        || g.buf.len() + seg.payload > MAX_LEN
    {
        return false;
    }
    let b = &g.buf;
    let ip_same = if g.v4 {
        // All but total length (2..4), ID (4..6) and checksum (10..12).
        b[0..2] == p[0..2] && b[6..10] == p[6..10] && b[12..g.ip_len] == p[12..g.ip_len]
    } else {
        // All but the payload length (4..6).
        b[0..4] == p[0..4] && b[6..40] == p[6..40]
    };
    let (bt, pt) = (&b[g.ip_len..], &p[g.ip_len..]);
    // Ports, ack, data offset; then the options; the flags were checked.
    ip_same
        && bt[0..4] == pt[0..4]
        && bt[8..13] == pt[8..13]
        && bt[20..g.tcp_len] == pt[20..g.tcp_len]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gso;
    use crate::gso::tests::{tcp_checksum_ok, tcp4, tcp6};

    fn payload(n: usize, salt: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(3) ^ salt).collect()
    }

    fn run(batch: &[Vec<u8>]) -> Vec<(VnetHdr, Vec<u8>)> {
        let mut out = Vec::new();
        Coalescer::default().run(batch, |h, p| out.push((*h, p.to_vec())));
        out
    }

    /// What the kernel would make of a written packet: its segments.
    fn resegment(h: &VnetHdr, p: &[u8]) -> Vec<Vec<u8>> {
        let mut p = p.to_vec();
        let mut out = Vec::new();
        let r = gso::split(h, &mut p, |a, b| out.push([a, b].concat()));
        assert_eq!(r, Ok(()));
        out
    }

    #[test]
    fn in_order_segments_of_one_flow_become_one_super_packet() {
        let (a, b, c) = (payload(1000, 1), payload(1000, 2), payload(400, 3));
        let batch = vec![
            tcp4(100, TCP_ACK, 1, &a, true),
            tcp4(1100, TCP_ACK, 2, &b, true),
            tcp4(2100, TCP_ACK | TCP_PSH, 3, &c, true),
        ];
        let out = run(&batch);
        assert_eq!(out.len(), 1);
        let (h, p) = &out[0];
        assert_eq!(
            *h,
            VnetHdr {
                flags: vnet::F_NEEDS_CSUM,
                gso_type: vnet::GSO_TCPV4,
                hdr_len: 52,
                gso_size: 1000,
                csum_start: 20,
                csum_offset: 16,
            }
        );
        assert_eq!(p.len(), 52 + 2400);
        assert_eq!(be16(&p[2..]), 2452);
        // A valid IPv4 header checksum.
        assert_eq!(csum::fold(csum::sum(&p[..20], 0)), 0xffff);
        // The partial TCP checksum is the pseudo header's sum (hand-made:
        // 10.0.0.1 + 10.0.0.2 + proto 6 + TCP length 2432 = 0x1d89).
        assert_eq!(be16(&p[36..]), 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 6 + 2432);
        // Segmented again, it gives back the packets (IDs aside: the
        // kernel numbers them from the first).
        let again = resegment(h, p);
        let expect = [
            tcp4(100, TCP_ACK, 1, &a, true),
            tcp4(1100, TCP_ACK, 2, &b, true),
            tcp4(2100, TCP_ACK | TCP_PSH, 3, &c, true),
        ];
        assert_eq!(again, expect);
    }

    #[test]
    fn ipv6_segments_merge_too() {
        let (a, b) = (payload(1200, 5), payload(1200, 6));
        let batch = vec![tcp6(7, TCP_ACK, &a), tcp6(1207, TCP_ACK, &b)];
        let out = run(&batch);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0.gso_type, vnet::GSO_TCPV6);
        let again = resegment(&out[0].0, &out[0].1);
        assert_eq!(again, batch);
        assert!(again.iter().all(|s| tcp_checksum_ok(s)));
    }

    #[test]
    fn what_may_not_merge_is_written_as_it_came() {
        let a = payload(1000, 1);
        let mut bad = tcp4(2100, TCP_ACK, 3, &a, false);
        bad[60] ^= 0xff;
        let batch = vec![
            tcp4(100, TCP_ACK, 1, &a, false),
            // A gap in the sequence: starts a new super-packet.
            tcp4(5000, TCP_ACK, 2, &a, false),
            // A bad checksum: written alone (for the kernel to drop).
            bad.clone(),
            // Pure ACK and FIN: alone.
            tcp4(6000, TCP_ACK, 4, &[], false),
            tcp4(6000, TCP_ACK | 0x01, 5, &a, false),
            // Bigger than the first segment of its group: new group.
            tcp4(7000, TCP_ACK, 6, &a, false),
            tcp4(8000, TCP_ACK, 7, &payload(1001, 2), false),
        ];
        let out = run(&batch);
        assert!(out.iter().all(|(h, _)| *h == VnetHdr::default()));
        let written: Vec<Vec<u8>> = out.into_iter().map(|(_, p)| p).collect();
        assert_eq!(written.len(), batch.len());
        for p in &batch {
            assert!(written.contains(p));
        }
    }

    #[test]
    fn interleaved_flows_merge_separately() {
        let a = payload(800, 9);
        let mut other = tcp4(0, TCP_ACK, 1, &a, false);
        // Another source port, checksum adjusted by recomputing.
        other[20..22].copy_from_slice(&1001u16.to_be_bytes());
        other[36..38].copy_from_slice(&[0, 0]);
        let ph = csum::pseudo_v4(v4_at(&other, 12), v4_at(&other, 16), 6, other.len() - 20);
        let c = csum::finish(csum::sum(&other[20..], ph));
        other[36..38].copy_from_slice(&c.to_be_bytes());
        let mut other2 = other.clone();
        other2[24..28].copy_from_slice(&800u32.to_be_bytes());
        other2[36..38].copy_from_slice(&[0, 0]);
        let c = csum::finish(csum::sum(&other2[20..], ph));
        other2[36..38].copy_from_slice(&c.to_be_bytes());
        let batch = vec![
            tcp4(0, TCP_ACK, 1, &a, false),
            other,
            tcp4(800, TCP_ACK, 2, &a, false),
            other2,
        ];
        let out = run(&batch);
        assert_eq!(out.len(), 2);
        for (h, p) in &out {
            assert_eq!(h.gso_type, vnet::GSO_TCPV4);
            assert_eq!(p.len(), 40 + 1600);
            assert!(resegment(h, p).iter().all(|s| tcp_checksum_ok(s)));
        }
    }

    #[test]
    fn non_tcp_and_garbage_pass_through() {
        let batch = vec![vec![0x45, 0, 0, 20], vec![], vec![0x60; 10]];
        let out = run(&batch);
        assert_eq!(out.len(), 3);
    }
}
