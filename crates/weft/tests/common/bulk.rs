//! Bulk TCP with every byte checked: a seeded pattern written one way and
//! verified the other, so misplaced, lost or altered data does not go
//! unnoticed (the WireGuard tests push 16 MiB through the tunnel with it).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use super::TestLab;

/// The byte at `i` of a stream seeded with `seed`: misplaced, lost or
/// altered data does not go unnoticed.
pub fn pattern(seed: u64, i: u64) -> u8 {
    let mut x = (i / 8).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed;
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 32;
    (x >> ((i % 8) * 8)) as u8
}

pub fn send_pattern(s: &mut TcpStream, seed: u64, len: u64) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(buf.len() as u64) as usize;
        for (k, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern(seed, at + k as u64);
        }
        s.write_all(&buf[..n]).unwrap();
        at += n as u64;
    }
}

pub fn check_pattern(s: &mut TcpStream, seed: u64, len: u64) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0;
    while at < len {
        let want = (len - at).min(buf.len() as u64) as usize;
        let n = s.read(&mut buf[..want]).unwrap();
        assert!(n > 0, "stream ended after {at} of {len} bytes");
        for (k, b) in buf[..n].iter().enumerate() {
            assert_eq!(
                *b,
                pattern(seed, at + k as u64),
                "byte {} differs",
                at + k as u64
            );
        }
        at += n as u64;
    }
}

/// Bulk TCP both ways on one connection between two pods (large writes:
/// TSO super-packets into the sending tunnel, merged writes out of the
/// receiving one), every byte checked.
pub fn bulk_tcp_is_intact(lab: &TestLab, from: &str, to: &str) {
    const LEN: u64 = 16 << 20;
    const PORT: u16 = 5299;
    let listener = lab
        .lab()
        .in_netns(to, || {
            TcpListener::bind(("0.0.0.0", PORT)).map_err(|e| weft_lab::LabError::io("bind", e))
        })
        .unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        check_pattern(&mut s, 1, LEN);
        send_pattern(&mut s, 2, LEN);
    });
    let target = format!("{}:{PORT}", lab.pod_ip(to));
    let mut s = lab
        .lab()
        .in_netns(from, move || {
            TcpStream::connect(&target).map_err(|e| weft_lab::LabError::io("connect", e))
        })
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    send_pattern(&mut s, 1, LEN);
    check_pattern(&mut s, 2, LEN);
    server.join().unwrap();
}
