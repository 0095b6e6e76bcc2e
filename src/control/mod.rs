//! Control socket: JSON lines between `reflexctl` and `reflexd`.
//!
//! [`protocol`] is the sans-IO part (requests, replies, line framing); [`server`] is the
//! mio shell that serves many clients without letting any one of them block the daemon.

pub mod client;
pub mod local;
pub mod protocol;
pub mod server;
