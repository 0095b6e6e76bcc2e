//! Flows and thresholds in sFlow-RT's vocabulary, measured in bounded memory.

pub mod definition;
pub mod engine;
pub mod field;
pub mod filter;
pub mod key;
pub mod network;
pub mod sample;
pub mod sketch;
pub mod spec;
pub mod threshold;
pub mod topk;

pub use network::Network;
pub use spec::{FlowSet, FlowSpec, ThresholdId, ThresholdScope, ThresholdSpec};
