//! reflexd's wiring: binds every socket first (so a busy port fails before anything runs),
//! builds the bounded channels between the threads, starts the ingest workers, the OpenFlow
//! thread, the policy thread, the control thread and the metrics thread (one file each
//! here), and stops them all on SIGTERM/SIGINT.
//!
//! Threads share nothing mutable on the measurement path: workers publish counters through
//! their own atomics and send events and periodic reports over bounded channels.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::bounded;

use crate::config::{Built, Config};
use crate::control::server::{Server, ServerError};
use crate::flow::engine::{EngineError, FlowEngine};
use crate::ingest::{IngestCore, WorkerStats};

pub mod changes;
pub mod control;
pub mod event_log;
pub mod ingest;
pub mod metrics;
pub mod names;
pub mod openflow;
pub mod policy;
pub mod report;

use control::ControlHandler;
use ingest::{Event, WorkerReport, WorkerShell};
use metrics::MetricsBindError;
use names::Names;
use openflow::{OpenflowServer, OpenflowStartError};
use policy::{PolicyCommand, PolicyStartError, PolicyThread};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Control(#[from] ServerError),
    #[error("cannot listen for sFlow on udp {addr}: {source}")]
    Sflow {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Openflow(#[from] OpenflowStartError),
    #[error(transparent)]
    Metrics(#[from] MetricsBindError),
    #[error("cannot install signal handler: {0}")]
    Signal(#[source] std::io::Error),
    #[error(transparent)]
    Flows(#[from] EngineError),
    #[error(transparent)]
    Policy(#[from] PolicyStartError),
    #[error("cannot start the {thread} thread: {source}")]
    Thread {
        thread: &'static str,
        source: std::io::Error,
    },
}

/// The error of a thread that could not be started.
fn thread_error(thread: &'static str) -> impl FnOnce(std::io::Error) -> DaemonError {
    move |source| DaemonError::Thread { thread, source }
}

/// Command-line overrides applied on top of the configuration.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub sflow: Option<SocketAddr>,
    pub control: Option<PathBuf>,
    pub workers: Option<usize>,
    pub openflow: Option<SocketAddr>,
    pub state_dir: Option<PathBuf>,
    pub metrics: Option<SocketAddr>,
}

/// Bound of the control → policy command channel.
const COMMAND_QUEUE: usize = 64;
/// Bound of the event channel towards the policy thread.
const EVENT_QUEUE: usize = 65536;
/// Bound of each worker's re-arm queue (keys let back in by the policy).
const REARM_QUEUE: usize = 4096;
/// Agents each worker tracks for sequence gaps.
const MAX_AGENTS: usize = 4096;
/// How often workers report top keys and agents.
const REPORT_EVERY: Duration = Duration::from_millis(100);

/// Runs the daemon until SIGTERM or SIGINT, with the cores `built` from `config` (by
/// [`Config::build`], the function `--check-config` runs).
pub fn run(mut config: Config, built: Built, overrides: Overrides) -> Result<(), DaemonError> {
    if let Some(addr) = overrides.sflow {
        config.sflow.listen = addr;
    }
    if let Some(path) = overrides.control {
        config.control.socket = path;
    }
    if let Some(n) = overrides.workers {
        config.sflow.workers = n;
    }
    if let Some(addr) = overrides.openflow {
        config.openflow.listen = addr;
    }
    if let Some(dir) = overrides.state_dir {
        config.state.dir = dir;
    }
    if let Some(addr) = overrides.metrics {
        config.metrics.listen = Some(addr);
    }
    let workers = config.worker_count();
    let Built {
        flows,
        policy: engine,
        learning,
    } = built;
    let names = Arc::new(Names::new(&flows));

    // Bind everything before starting anything.
    let control = Server::bind(&config.control.socket, config.control.group.as_deref())?;
    let sockets = crate::io::udp::bind_ingest_group(
        config.sflow.listen,
        workers,
        config.sflow.rcvbuf,
        Duration::from_millis(100),
    )
    .map_err(|source| DaemonError::Sflow {
        addr: config.sflow.listen,
        source,
    })?;
    let openflow_server = OpenflowServer::bind(config.openflow.listen)?;
    let metrics_server = metrics::bind(config.metrics.listen)?;
    let rcvbuf = sockets.first().map_or(0, crate::io::udp::rcvbuf);
    tracing::info!(
        sflow = %config.sflow.listen,
        workers,
        rcvbuf,
        control = %config.control.socket.display(),
        openflow = %openflow_server.local_addr(),
        "reflexd listening"
    );

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).map_err(DaemonError::Signal)?;
    }
    // SIGHUP conventionally asks a daemon to reload; until reload exists it is said and
    // ignored instead of ending the daemon (its default action) without a word.
    let hangup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hangup.clone())
        .map_err(DaemonError::Signal)?;

    // The OpenFlow server fills these (`mark_wired`, then the counters); else they read 0.
    let openflow_metrics = Arc::new(crate::metrics::OpenflowMetrics::default());

    let (event_tx, event_rx) = bounded::<Event>(EVENT_QUEUE);
    let (report_tx, report_rx) = bounded::<WorkerReport>(workers * 4);
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut threads = Vec::new();
    let mut stats = Vec::new();
    let mut rearm_txs = Vec::new();
    // Every worker's sketches and the thresholds' gates: rates and crossings network-wide.
    let network = crate::flow::Network::new(&flows, sockets.len());
    for (id, socket) in sockets.into_iter().enumerate() {
        let (rearm_tx, rearm_rx) = bounded(REARM_QUEUE);
        rearm_txs.push(rearm_tx);
        let core = IngestCore::new(FlowEngine::for_worker(&flows, &network, id)?, MAX_AGENTS);
        let worker_stats = Arc::new(WorkerStats::default());
        stats.push(worker_stats.clone());
        let shell = WorkerShell {
            id,
            rearm: rearm_rx,
            socket,
            batch: config.sflow.batch,
            batch_wait: crate::io::mmsg::BatchWait::new(
                std::time::Duration::from_micros(config.sflow.batch_wait_us),
                config.sflow.batch,
            ),
            stop: stop.clone(),
            events: event_tx.clone(),
            reports: report_tx.clone(),
            stats: worker_stats,
            report_every_ns: REPORT_EVERY.as_nanos() as u64,
        };
        let pin = config
            .sflow
            .pin
            .then(|| cores.get(id % cores.len().max(1)).copied())
            .flatten();
        threads.push(ingest::spawn(shell, core, pin).map_err(thread_error("ingest"))?);
    }
    drop(event_tx);
    drop(report_tx);

    let session_config = crate::openflow::session::SessionConfig {
        echo_interval_ns: (config.openflow.echo_interval * 1e9) as u64,
        echo_timeout_ns: (config.openflow.echo_timeout * 1e9) as u64,
        learning,
        mac_capacity: config.openflow.learning_macs,
        ..Default::default()
    };
    if let Some(l) = session_config.learning {
        tracing::info!(
            table = l.table_id,
            idle_timeout = l.idle_timeout,
            macs = config.openflow.learning_macs,
            "reactive MAC learning on"
        );
    }
    let (openflow_thread, sink, openflow) = openflow::spawn(
        openflow_server,
        session_config,
        config.openflow.stale_flow_guard,
        stop.clone(),
        openflow_metrics.clone(),
    )?;
    threads.push(openflow_thread);

    let policy = PolicyThread::new(
        engine,
        Some(&config.state.dir),
        config.state.compact_after,
        Box::new(sink),
        names.clone(),
    )?
    .with_rearm(rearm_txs);
    let (command_tx, command_rx) = bounded::<PolicyCommand>(COMMAND_QUEUE);
    threads.push(
        policy
            .spawn(event_rx, command_rx, stop.clone())
            .map_err(thread_error("policy"))?,
    );

    let handler = ControlHandler::new(
        names,
        stats,
        report_rx,
        command_tx,
        openflow,
        crate::io::now_ns(),
        config.clone(),
    );
    let (control_thread, local) =
        control::spawn(control, handler, stop.clone()).map_err(thread_error("control"))?;
    threads.extend(
        metrics::spawn(metrics_server, local, openflow_metrics, stop.clone())
            .map_err(thread_error("metrics"))?,
    );

    while !stop.load(Ordering::Relaxed) {
        if hangup.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                "SIGHUP: reloading the configuration is not supported yet; running on unchanged \
                 (SIGTERM stops reflexd)"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::info!("stopping");
    for t in threads {
        let _ = t.join();
    }
    let _ = control_thread.join();
    tracing::info!("stopped");
    Ok(())
}
