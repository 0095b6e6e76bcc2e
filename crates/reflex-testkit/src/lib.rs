//! Test and load tooling for Reflex, kept out of the daemon's library: what the `reflex-load`
//! tool, the integration tests and the benchmarks drive reflexd with.
//!
//! - [`load`]: the sans-IO traffic model (seedable rng, Zipf ranks, Ethernet/IPv4 frames,
//!   background traffic and scheduled attacks as sFlow v5 datagrams).
//! - [`sflow`]: the emitting half of the sFlow v5 codec, round-tripping with
//!   [`reflex::sflow`]'s decoder.
//! - [`switch`]: the emulated OpenFlow 1.3 switch — one sans-IO state machine that
//!   `reflex-load`, the benchmarks and the tests all play, in memory against a library
//!   session or through a scripted blocking driver for step-by-step integration tests.

pub mod load;
pub mod sflow;
pub mod switch;
