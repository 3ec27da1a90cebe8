//! The Internet checksum (RFC 1071) and the IPv4/IPv6 pseudo headers, as
//! the segmentation and coalescing of TCP packets need them.
//!
//! Sums are carried unfolded in a `u64` so that pieces (pseudo header, TCP
//! header, payload) add up without copying them together; every piece but
//! the last must be of even length.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The ones' complement sum of `data` added to `initial`, unfolded.
pub fn sum(data: &[u8], initial: u64) -> u64 {
    let mut acc = initial;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

/// Folds an unfolded sum to 16 bits (not complemented).
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // The loop leaves at most 0xffff.
    acc as u16
}

/// The checksum to store in a header: the complement of the folded sum.
pub fn finish(acc: u64) -> u16 {
    !fold(acc)
}

/// The IPv4 pseudo header's sum for an upper-layer packet of `len` bytes.
pub fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u64 {
    sum(&src.octets(), 0) + sum(&dst.octets(), 0) + u64::from(proto) + len as u64
}

/// The IPv6 pseudo header's sum for an upper-layer packet of `len` bytes.
pub fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, len: usize) -> u64 {
    sum(&src.octets(), 0) + sum(&dst.octets(), 0) + u64::from(proto) + len as u64
}

/// The IPv4 header checksum of `header` (its checksum field is skipped).
pub fn ipv4_header(header: &[u8]) -> u16 {
    let acc = sum(header.get(..10).unwrap_or(header), 0) + sum(header.get(12..).unwrap_or(&[]), 0);
    finish(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksum_matches_the_textbook_example() {
        // The example header of the Wikipedia "IPv4 header checksum" article.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_header(&header), 0xb861);
        let mut with = header;
        with[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(fold(sum(&with, 0)), 0xffff);
    }

    #[test]
    fn odd_lengths_pad_with_a_zero_byte() {
        assert_eq!(fold(sum(&[0x01], 0)), 0x0100);
        assert_eq!(fold(sum(&[0x01, 0x02, 0x03], 0)), 0x0402);
        assert_eq!(fold(sum(&[0xff, 0xff, 0x00, 0x01], 0)), 0x0001);
    }

    #[test]
    fn sums_of_pieces_add_up() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1001).collect();
        let whole = fold(sum(&data, 0));
        let pieces = fold(sum(&data[600..], sum(&data[..600], 0)));
        assert_eq!(whole, pieces);
    }
}
