//! The Prometheus endpoint: `reflexd --metrics ADDR` (or `[metrics] listen`) serves
//! `GET /metrics` in the text exposition format 0.0.4 from a thread of its own.
//!
//! The numbers are the ones `reflexctl stats` prints: each scrape asks the control thread
//! for `stats` through an in-process [`LocalClient`](crate::control::local::LocalClient)
//! and [`exposition::render`]s the reply. [`exposition`] and the request parsing in
//! [`http`] are sans-IO; [`http::Server`] is the small mio shell around them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::control::local::LocalClient;
use crate::control::protocol::Request;

pub mod exposition;
pub mod http;

/// How long a scrape waits for the control thread.
const STATS_TIMEOUT: Duration = Duration::from_secs(2);
/// Scrapes closer together than this get the previous body.
const REUSE_FOR: Duration = Duration::from_millis(100);

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

/// Binds the endpoint if configured (before anything starts, so a busy port fails fast).
pub fn bind(listen: Option<SocketAddr>) -> anyhow::Result<Option<http::Server>> {
    let Some(addr) = listen else {
        return Ok(None);
    };
    let server = http::Server::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen for metrics on tcp {addr}: {e}"))?;
    Ok(Some(server))
}

/// Serves `server` (if any) on its own thread until `stop` is set; each scrape asks
/// `control` for `stats`.
pub fn spawn(
    server: Option<http::Server>,
    control: LocalClient,
    openflow: Arc<OpenflowMetrics>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    let Some(server) = server else {
        return Ok(None);
    };
    tracing::info!(metrics = %server.local_addr(), "serving Prometheus metrics on /metrics");
    // A scrape flood must not turn into a flood of `stats` on the control thread.
    let mut cached: Option<(Instant, String)> = None;
    let source = move || -> Result<String, String> {
        if let Some((at, body)) = &cached {
            if at.elapsed() < REUSE_FOR {
                return Ok(body.clone());
            }
        }
        let reply = control.request(Request::Stats, STATS_TIMEOUT);
        match (reply.ok, reply.result) {
            (true, Some(stats)) => {
                let body = exposition::render(&stats, &openflow);
                cached = Some((Instant::now(), body.clone()));
                Ok(body)
            }
            _ => Err(reply.error.unwrap_or_else(|| "no stats".into())),
        }
    };
    let handle = std::thread::Builder::new()
        .name("reflex-metrics".into())
        .spawn(move || {
            if let Err(e) = server.run(source, &stop) {
                tracing::error!(error = %e, "metrics endpoint stopped");
            }
        })?;
    Ok(Some(handle))
}
