//! weftd, weft's node agent: a drop-in replacement for flanneld.
//!
//! A library as well as a binary so that the integration tests (and later
//! `weft-lab`, which starts agents) can use the same flag table the binary
//! parses with, and so that every `Flags` field is public API rather than
//! dead code until the feature reading it lands.

pub mod agent;
pub mod flags;
pub mod logging;
pub mod memory;
pub mod unbuilt;
