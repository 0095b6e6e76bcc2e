//! Flows and thresholds in sFlow-RT's vocabulary, measured in bounded memory.

pub mod key;
