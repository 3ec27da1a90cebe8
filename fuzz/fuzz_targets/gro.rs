//! Decrypted packets on their way to a pod (tunnel → TUN): a batch that
//! `weft_offload::gro::Coalescer` merges into as few writes as it can.
//! The input is the batch: each packet preceded by its 2-byte length.
//! Properties: no panic; no write over 64 KiB; a merged write announces a
//! segment size and its headers fit in it; nothing is written from
//! nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_offload::gro::Coalescer;
use weft_offload::vnet;

fuzz_target!(|data: &[u8]| {
    let mut batch: Vec<&[u8]> = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
        let take = len.min(rest.len());
        batch.push(&rest[..take]);
        rest = &rest[take..];
    }
    let input: usize = batch.iter().map(|p| p.len()).sum();
    let mut written = 0usize;
    let mut coalescer = Coalescer::default();
    coalescer.run(&batch, |hdr, packet| {
        written += packet.len();
        assert!(packet.len() <= 65_535 + 60, "a write of {} bytes", packet.len());
        if hdr.gso_type != vnet::GSO_NONE {
            assert!(hdr.gso_size > 0, "a merged write without a segment size");
            assert!(usize::from(hdr.hdr_len) < packet.len(), "headers as long as the write");
        }
    });
    // Merging drops repeated headers, never adds bytes.
    assert!(written <= input, "{written} bytes written from {input}");
});
