//! weft's benchmark as data: the results of a run ([`results`]), kept as
//! JSON, and their rendering as docs/PERFORMANCE.md ([`render`]).
//!
//! The measurements themselves (labs, agents, traffic; root only) are the
//! `weft-bench` binary's; this library needs neither root nor a lab, so the
//! format and the Markdown are unit-tested here, and tests that check the
//! figures of a run (tests/bench_ratios.rs) read them typed, not scraped.

pub mod render;
pub mod results;
pub mod stats;

pub use render::render;
pub use results::{Results, ResultsError};
