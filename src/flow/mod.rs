//! Flows and thresholds in sFlow-RT's vocabulary, measured in bounded memory.

pub mod definition;
pub mod field;
pub mod filter;
pub mod key;
pub mod sample;
