//! Flows and thresholds in sFlow-RT's vocabulary, measured in bounded memory.

pub mod key;
pub mod sketch;
pub mod threshold;
pub mod topk;
