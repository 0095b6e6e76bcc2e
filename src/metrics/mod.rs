//! The Prometheus endpoint: `reflexd --metrics ADDR` (or `[metrics] listen`) serves
//! `GET /metrics` in the text exposition format 0.0.4 from a thread of its own
//! (`daemon::metrics`).
//!
//! The numbers are the ones `reflexctl stats` prints: each scrape asks the control thread
//! for `stats` through an in-process [`LocalClient`](crate::control::local::LocalClient)
//! and [`exposition::render`]s the reply. [`exposition`] and the request parsing in
//! [`http`] are sans-IO; [`http::Server`] is the small mio shell around them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

pub mod exposition;
pub mod http;

/// `[metrics]` in the configuration.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// TCP address of the HTTP endpoint (e.g. "127.0.0.1:9108"); absent = off.
    pub listen: Option<SocketAddr>,
}

/// Counters the OpenFlow side fills (`reflex_openflow_*`). Until something calls
/// [`OpenflowMetrics::mark_wired`], they are exported as 0 with `reflex_openflow_wired 0`,
/// so a dashboard can tell "no data" from "no switches".
#[derive(Debug, Default)]
pub struct OpenflowMetrics {
    wired: AtomicBool,
    /// Switches with a completed handshake, now.
    pub switches: AtomicU64,
    /// FLOW_MOD messages sent, all switches.
    pub flow_mods: AtomicU64,
    /// OFPT_ERROR messages received from switches.
    pub errors: AtomicU64,
    /// Switch (re)connections accepted.
    pub connections: AtomicU64,
}

impl OpenflowMetrics {
    /// Declares that an OpenFlow server keeps these counters up to date.
    pub fn mark_wired(&self) {
        self.wired.store(true, Ordering::Relaxed);
    }

    /// Whether an OpenFlow server fills these counters.
    pub fn is_wired(&self) -> bool {
        self.wired.load(Ordering::Relaxed)
    }
}
