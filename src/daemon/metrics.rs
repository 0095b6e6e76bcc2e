//! The metrics thread: serves `GET /metrics` (when configured) from the very `stats` reply
//! `reflexctl stats` gets, asked of the control thread in-process, so the two never
//! disagree. Its listener is bound before any thread starts, so a busy port fails fast.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::control::local::LocalClient;
use crate::control::protocol::Request;
use crate::metrics::{exposition, http, OpenflowMetrics};

/// How long a scrape waits for the control thread.
const STATS_TIMEOUT: Duration = Duration::from_secs(2);
/// Scrapes closer together than this get the previous body.
const REUSE_FOR: Duration = Duration::from_millis(100);

/// The metrics endpoint could not listen.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for metrics on tcp {addr}: {source}")]
pub struct MetricsBindError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// Binds the endpoint if configured.
pub fn bind(listen: Option<SocketAddr>) -> Result<Option<http::Server>, MetricsBindError> {
    let Some(addr) = listen else {
        return Ok(None);
    };
    let server = http::Server::bind(addr).map_err(|source| MetricsBindError { addr, source })?;
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
