//! Reflex: an SDN controller that turns sFlow v5 measurements into OpenFlow 1.3 flow-table
//! changes within milliseconds.
//!
//! Data flows one way: [`io`] → [`sflow`] → [`packet`] → [`flow`] → [`policy`] → [`lower`] →
//! [`openflow`] → [`io`]. Protocol cores are sans-IO (bytes and `now` in, typed values out);
//! only [`io`] makes syscalls, and [`daemon`] is the one shell that owns threads and sockets.
//! ARCHITECTURE.md (at the repository root) draws the threads, channels and import rules.

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
