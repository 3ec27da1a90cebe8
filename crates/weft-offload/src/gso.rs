//! Segmentation of what a TUN with offloads hands over (TX: pod → tunnel):
//! a TCP super-packet (TSO, up to 64 KiB) is cut into MTU-sized segments
//! the way the kernel's own GSO would (IP length, ID and checksum, TCP
//! sequence number, flags and checksum per segment); a single packet whose
//! checksum was left to the device (`NEEDS_CSUM`) gets it filled in.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::csum;
use crate::vnet::{self, VnetHdr};

/// The largest IP + TCP header a segment may have: IPv4 with options or
/// IPv6 with extension headers, then TCP with options.
const MAX_HEADER: usize = 256;

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GsoError {
    #[error("GSO type {0:#x} is not one weft asked for")]
    UnsupportedType(u8),
    #[error("the packet is too short for the headers it announces ({0} bytes)")]
    Truncated(usize),
    #[error("GSO type {gso_type:#x} on an IP version {version} packet")]
    VersionMismatch { gso_type: u8, version: u8 },
    #[error("the headers are {0} bytes, more than weft segments")]
    HeaderTooLong(usize),
    #[error("GSO without a segment size")]
    ZeroSegmentSize,
}

/// Calls `emit(headers, payload)` for each packet in `pkt` (which follows
/// `hdr`): one for a plain packet (all of it in `headers`, its pending
/// checksum completed in place), one per segment for a TCP super-packet.
pub fn split(
    hdr: &VnetHdr,
    pkt: &mut [u8],
    mut emit: impl FnMut(&[u8], &[u8]),
) -> Result<(), GsoError> {
    match hdr.gso_type & !vnet::GSO_ECN {
        vnet::GSO_NONE => {
            if hdr.flags & vnet::F_NEEDS_CSUM != 0 {
                complete_checksum(hdr, pkt)?;
            }
            emit(pkt, &[]);
            Ok(())
        }
        t @ (vnet::GSO_TCPV4 | vnet::GSO_TCPV6) => split_tcp(t, hdr, pkt, emit),
        other => Err(GsoError::UnsupportedType(other)),
    }
}

/// Fills in a checksum the kernel left partial: the sum from `csum_start`
/// to the end, stored at `csum_start + csum_offset`.
fn complete_checksum(hdr: &VnetHdr, pkt: &mut [u8]) -> Result<(), GsoError> {
    let start = usize::from(hdr.csum_start);
    let at = start + usize::from(hdr.csum_offset);
    if at + 2 > pkt.len() {
        return Err(GsoError::Truncated(pkt.len()));
    }
    let c = csum::finish(csum::sum(&pkt[start..], 0));
    // As the kernel's skb_checksum_help: 0 would mean "none" for UDP.
    let c = if c == 0 { 0xffff } else { c };
    pkt[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

fn split_tcp(
    gso_type: u8,
    hdr: &VnetHdr,
    pkt: &[u8],
    mut emit: impl FnMut(&[u8], &[u8]),
) -> Result<(), GsoError> {
    let version = pkt.first().map_or(0, |b| b >> 4);
    let v4 = match (gso_type, version) {
        (vnet::GSO_TCPV4, 4) => true,
        (vnet::GSO_TCPV6, 6) => false,
        _ => return Err(GsoError::VersionMismatch { gso_type, version }),
    };
    // csum_start is where TCP begins (the kernel sets it for TSO); the
    // header length in the vnet header is not trusted (wireguard-go found
    // kernels that got it wrong), it is recomputed from the TCP header.
    let ip_len = usize::from(hdr.csum_start);
    let min_ip = if v4 {
        usize::from(pkt[0] & 0x0f) * 4
    } else {
        40
    };
    if ip_len < min_ip.max(20) || ip_len + 20 > pkt.len() {
        return Err(GsoError::Truncated(pkt.len()));
    }
    let tcp_len = usize::from(pkt[ip_len + 12] >> 4) * 4;
    let hdr_len = ip_len + tcp_len;
    if tcp_len < 20 || hdr_len > pkt.len() {
        return Err(GsoError::Truncated(pkt.len()));
    }
    if hdr_len > MAX_HEADER {
        return Err(GsoError::HeaderTooLong(hdr_len));
    }
    let mss = usize::from(hdr.gso_size);
    if mss == 0 {
        return Err(GsoError::ZeroSegmentSize);
    }
    let (headers, payload) = pkt.split_at(hdr_len);
    let seq0 = be32(&headers[ip_len + 4..]);
    let flags0 = headers[ip_len + 13];
    let id0 = be16(&headers[4..]);
    let count = payload.len().div_ceil(mss).max(1);
    let mut h = [0u8; MAX_HEADER];
    let mut chunks = payload.chunks(mss);
    for i in 0..count {
        let chunk = chunks.next().unwrap_or(&[]);
        let h = &mut h[..hdr_len];
        h.copy_from_slice(headers);
        let seg_tcp_len = tcp_len + chunk.len();
        let pseudo = if v4 {
            let total = (hdr_len + chunk.len()) as u16;
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h[4..6].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
            h[10..12].copy_from_slice(&[0, 0]);
            let c = csum::ipv4_header(&h[..ip_len]);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            csum::pseudo_v4(v4_at(h, 12), v4_at(h, 16), 6, seg_tcp_len)
        } else {
            let payload_len = (hdr_len + chunk.len() - 40) as u16;
            h[4..6].copy_from_slice(&payload_len.to_be_bytes());
            csum::pseudo_v6(v6_at(h, 8), v6_at(h, 24), 6, seg_tcp_len)
        };
        let tcp = &mut h[ip_len..];
        let seq = seq0.wrapping_add((i * mss) as u32);
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        let mut flags = flags0;
        if i + 1 < count {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            flags &= !TCP_CWR;
        }
        tcp[13] = flags;
        tcp[16..18].copy_from_slice(&[0, 0]);
        let c = csum::finish(csum::sum(chunk, csum::sum(tcp, pseudo)));
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        emit(h, chunk);
    }
    Ok(())
}

pub fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

pub fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

pub fn v4_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

pub fn v6_at(b: &[u8], at: usize) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(o)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A naive RFC 1071 checksum, 16 bits at a time, as a reference.
    pub(crate) fn reference_sum(parts: &[&[u8]]) -> u16 {
        let bytes: Vec<u8> = parts.concat();
        let mut acc: u32 = 0;
        for pair in bytes.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |b| u32::from(*b));
            acc += hi | lo;
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// True when the TCP checksum of IPv4 or IPv6 packet `p` verifies.
    pub(crate) fn tcp_checksum_ok(p: &[u8]) -> bool {
        let (ip_len, pseudo) = if p[0] >> 4 == 4 {
            let ip_len = usize::from(p[0] & 0xf) * 4;
            let tcp_len = (usize::from(be16(&p[2..])) - ip_len) as u16;
            let mut ph = Vec::new();
            ph.extend_from_slice(&p[12..20]);
            ph.extend_from_slice(&[0, 6]);
            ph.extend_from_slice(&tcp_len.to_be_bytes());
            (ip_len, ph)
        } else {
            let tcp_len = u32::from(be16(&p[4..]));
            let mut ph = Vec::new();
            ph.extend_from_slice(&p[8..40]);
            ph.extend_from_slice(&tcp_len.to_be_bytes());
            ph.extend_from_slice(&[0, 0, 0, 6]);
            (40, ph)
        };
        reference_sum(&[&pseudo, &p[ip_len..]]) == 0xffff
    }

    /// An IPv4 TCP packet 10.0.0.1:1000 → 10.0.0.2:2000 with `payload`, its
    /// checksums computed by the reference; timestamps option if `opts`.
    pub(crate) fn tcp4(seq: u32, flags: u8, id: u16, payload: &[u8], opts: bool) -> Vec<u8> {
        let tcp_len = if opts { 32 } else { 20 };
        let total = 20 + tcp_len + payload.len();
        let mut p = vec![
            0x45, 0x00, 0, 0, 0, 0, 0x40, 0x00, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[4..6].copy_from_slice(&id.to_be_bytes());
        let c = !reference_sum(&[&p]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(&1000u16.to_be_bytes());
        p.extend_from_slice(&2000u16.to_be_bytes());
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&77u32.to_be_bytes());
        p.push(((tcp_len / 4) as u8) << 4);
        p.push(flags);
        p.extend_from_slice(&[0xfa, 0xf0, 0, 0, 0, 0]);
        if opts {
            p.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 5, 0, 0, 0, 9]);
        }
        p.extend_from_slice(payload);
        let mut ph = Vec::new();
        ph.extend_from_slice(&p[12..20]);
        ph.extend_from_slice(&[0, 6]);
        ph.extend_from_slice(&((tcp_len + payload.len()) as u16).to_be_bytes());
        let c = !reference_sum(&[&ph, &p[20..]]);
        p[36..38].copy_from_slice(&c.to_be_bytes());
        p
    }

    /// The same flow over IPv6 (fd00::1 → fd00::2).
    pub(crate) fn tcp6(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[6, 64]);
        p.extend_from_slice(
            &"fd00::1"
                .parse::<Ipv6Addr>()
                .unwrap_or(Ipv6Addr::LOCALHOST)
                .octets(),
        );
        p.extend_from_slice(
            &"fd00::2"
                .parse::<Ipv6Addr>()
                .unwrap_or(Ipv6Addr::LOCALHOST)
                .octets(),
        );
        p.extend_from_slice(&1000u16.to_be_bytes());
        p.extend_from_slice(&2000u16.to_be_bytes());
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&77u32.to_be_bytes());
        p.extend_from_slice(&[0x50, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
        p.extend_from_slice(payload);
        let mut ph = Vec::new();
        ph.extend_from_slice(&p[8..40]);
        ph.extend_from_slice(&((20 + payload.len()) as u32).to_be_bytes());
        ph.extend_from_slice(&[0, 0, 0, 6]);
        let c = !reference_sum(&[&ph, &p[40..]]);
        p[56..58].copy_from_slice(&c.to_be_bytes());
        p
    }

    fn collect(hdr: &VnetHdr, pkt: &mut [u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let r = split(hdr, pkt, |h, p| out.push([h, p].concat()));
        assert_eq!(r, Ok(()));
        out
    }

    /// The header TSO hands over with a TCP super-packet: `hdr_len` bytes
    /// of headers, the TCP header (checksum field at 16) at `csum_start`.
    fn tso(gso_type: u8, hdr_len: u16, gso_size: u16, csum_start: u16) -> VnetHdr {
        VnetHdr {
            flags: vnet::F_NEEDS_CSUM,
            gso_type,
            hdr_len,
            gso_size,
            csum_start,
            csum_offset: 16,
        }
    }

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn a_hand_made_segment_has_the_hand_computed_checksums() {
        // 10.0.0.1:1000 → 10.0.0.2:2000, seq 1, ack 77, ACK, window 0xfaf0,
        // payload "hi": checksums worked out by hand (one's complement sums
        // of the 16-bit words).
        let p = tcp4(1, 0x10, 0x1234, b"hi", false);
        assert_eq!(be16(&p[10..]), 0x1498);
        assert_eq!(be16(&p[36..]), 0x2c70);
        let mut super_pkt = p.clone();
        super_pkt[36..38].copy_from_slice(&[0x12, 0x34]);
        let hdr = tso(vnet::GSO_TCPV4, 40, 1000, 20);
        assert_eq!(collect(&hdr, &mut super_pkt), vec![p]);
    }

    #[test]
    fn tcpv4_super_packet_splits_like_the_kernel() {
        let data = payload(3000);
        let mut super_pkt = tcp4(5000, 0x18 | 0x01 | 0x80, 100, &data, true);
        // As TSO hands it over: TCP checksum holds only a partial sum.
        super_pkt[36..38].copy_from_slice(&[0xab, 0xcd]);
        let hdr = tso(vnet::GSO_TCPV4, 52, 1400, 20);
        let segs = collect(&hdr, &mut super_pkt);
        assert_eq!(segs.len(), 3);
        let expect = [
            tcp4(5000, 0x10 | 0x80, 100, &data[..1400], true),
            tcp4(6400, 0x10, 101, &data[1400..2800], true),
            tcp4(7800, 0x18 | 0x01, 102, &data[2800..], true),
        ];
        for (s, e) in segs.iter().zip(expect.iter()) {
            assert_eq!(s, e);
            assert!(tcp_checksum_ok(s));
        }
    }

    #[test]
    fn tcpv6_super_packet_splits() {
        let data = payload(2500);
        let mut super_pkt = tcp6(1, 0x18, &data);
        super_pkt[56..58].copy_from_slice(&[0, 0]);
        let hdr = tso(vnet::GSO_TCPV6, 60, 1200, 40);
        let segs = collect(&hdr, &mut super_pkt);
        let expect = [
            tcp6(1, 0x10, &data[..1200]),
            tcp6(1201, 0x10, &data[1200..2400]),
            tcp6(2401, 0x18, &data[2400..]),
        ];
        assert_eq!(segs, expect);
    }

    #[test]
    fn partial_checksum_of_a_single_packet_is_completed() {
        let good = tcp4(9, 0x18, 7, &payload(333), false);
        let mut p = good.clone();
        // The kernel leaves the pseudo header's folded sum in the field.
        let ph = csum::pseudo_v4(v4_at(&p, 12), v4_at(&p, 16), 6, p.len() - 20);
        p[36..38].copy_from_slice(&csum::fold(ph).to_be_bytes());
        let hdr = VnetHdr {
            flags: vnet::F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        assert_eq!(collect(&hdr, &mut p), vec![good]);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let mut p = tcp4(1, 0x10, 1, &payload(10), false);
        let mut hdr = VnetHdr {
            flags: vnet::F_NEEDS_CSUM,
            gso_type: vnet::GSO_TCPV6,
            gso_size: 5,
            csum_start: 20,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        assert!(split(&hdr, &mut p, |_, _| {}).is_err());
        hdr.gso_type = vnet::GSO_TCPV4;
        hdr.csum_start = 200;
        assert!(split(&hdr, &mut p, |_, _| {}).is_err());
        hdr.csum_start = 20;
        hdr.gso_size = 0;
        assert!(split(&hdr, &mut p, |_, _| {}).is_err());
        hdr.gso_type = 3;
        assert!(split(&hdr, &mut p, |_, _| {}).is_err());
        hdr.gso_type = vnet::GSO_NONE;
        hdr.csum_offset = 60;
        assert!(split(&hdr, &mut p, |_, _| {}).is_err());
        let mut short = [0x45u8, 0];
        hdr.gso_type = vnet::GSO_TCPV4;
        assert!(split(&hdr, &mut short, |_, _| {}).is_err());
    }
}
