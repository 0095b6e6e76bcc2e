//! Reflex: an SDN controller that turns sFlow v5 measurements into OpenFlow 1.3 flow-table
//! changes within milliseconds.
//!
//! Data flows one way: [`io`] → [`sflow`] → [`packet`] → [`flow`] → policy → openflow → [`io`].
//! Protocol cores are sans-IO (bytes and `now` in, actions out); only [`io`] touches sockets.

pub mod config;
pub mod control;
pub mod daemon;
pub mod flow;
pub mod ingest;
pub mod io;
pub mod journal;
pub mod lower;
pub mod metrics;
pub mod openflow;
pub mod packet;
pub mod policy;
pub mod sflow;
pub mod timing;
