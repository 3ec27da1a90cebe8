//! The packet work behind weft's userspace WireGuard on a TUN device with
//! offloads: the virtio-net header (`vnet`), Internet checksums (`csum`),
//! cutting a TSO super-packet into MTU-sized segments (`gso`, pod →
//! tunnel) and merging decrypted TCP segments into one write (`gro`,
//! tunnel → pod).
//!
//! Why a crate of its own: these functions read bytes that pods (and, after
//! decryption, peers) control, so they are fuzzed (`fuzz/`), and keeping
//! them free of I/O and of the dataplane's dependencies lets the fuzz
//! targets build them alone, quickly, with sanitizers.

pub mod csum;
pub mod gro;
pub mod gso;
pub mod vnet;
