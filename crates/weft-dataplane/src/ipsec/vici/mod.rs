//! VICI, charon's control protocol: the wire format (pure) and a blocking
//! client. Written here because the one Rust client on crates.io
//! (`rsvici`) is async-only and pulls its own runtime plumbing for the six
//! commands weft sends; the format is small and fully documented.

mod client;
mod wire;

pub use client::{Vici, ViciError};
pub use wire::{Message, Packet, Value, WireError, decode, encode};
