//! reflexd's wiring: binds every socket first (so a busy port fails before anything runs),
//! then starts the ingest workers, the OpenFlow thread, the policy thread and the control
//! thread, and stops them all on SIGTERM/SIGINT.
//!
//! Threads share nothing mutable on the measurement path: workers publish counters through
//! their own atomics and send events and periodic reports over bounded channels.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use crossbeam_channel::{bounded, Receiver, Sender};
use serde_json::{json, Value};

use crate::config::{Built, Config};
use crate::control::protocol::{Reply, Request};
use crate::control::server::{self, Handler, Server};
use crate::flow::definition::FlowDef;
use crate::flow::engine::FlowEngine;
use crate::flow::key::FlowKey;
use crate::flow::{FlowSet, ThresholdId};
use crate::ingest::{self, Event, IngestCore, WorkerReport, WorkerShell, WorkerStats};
use crate::sflow::DecodeError;
// The daemon's threads (policy, openflow, changes) print times and keep latencies this way.
use crate::timing::{format_unix_ms, latency_histogram};

pub mod changes;
pub mod openflow;
pub mod policy;
pub mod report;

use openflow::{OfClient, OfQuery, OpenflowServer};
use policy::{PolicyQuery, PolicyRequest, PolicyThread};

/// How long the control thread waits for the policy thread.
const POLICY_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Bound of the event channel towards the policy thread.
const EVENT_QUEUE: usize = 65536;
/// Bound of each worker's re-arm queue (keys let back in by the policy).
const REARM_QUEUE: usize = 4096;
/// Agents each worker tracks for sequence gaps.
const MAX_AGENTS: usize = 4096;
/// How often workers report top keys and agents.
const REPORT_EVERY: Duration = Duration::from_millis(100);

/// Names needed to print events and flows (for people: logs and control replies).
pub struct Names {
    defs: Vec<FlowDef>,
    thresholds: Vec<String>,
}

impl Names {
    fn new(flows: &FlowSet) -> Names {
        Names {
            defs: flows.defs().cloned().collect(),
            thresholds: flows.thresholds().map(|(_, n, _)| n.to_owned()).collect(),
        }
    }
    fn flow_name(&self, i: u16) -> &str {
        self.defs.get(i as usize).map_or("?", |d| d.name.as_str())
    }
    fn threshold_name(&self, t: ThresholdId) -> &str {
        self.thresholds.get(t.index()).map_or("?", |s| s.as_str())
    }
    fn key_text(&self, flow: u16, key: &FlowKey) -> String {
        self.defs
            .get(flow as usize)
            .map_or_else(|| format!("{key:?}"), |d| d.format_key(key))
    }
}

/// Runs the daemon until SIGTERM or SIGINT, with the cores `built` from `config` (by
/// [`Config::build`], the function `--check-config` runs).
pub fn run(mut config: Config, built: Built, overrides: Overrides) -> anyhow::Result<()> {
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
    .with_context(|| format!("cannot listen for sFlow on udp {}", config.sflow.listen))?;
    let openflow_server = OpenflowServer::bind(config.openflow.listen)?;
    let metrics = crate::metrics::bind(config.metrics.listen)?;
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
        signal_hook::flag::register(sig, stop.clone()).context("cannot install signal handler")?;
    }

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
        threads.push(
            std::thread::Builder::new()
                .name(format!("reflex-ingest-{id}"))
                .spawn(move || {
                    if let Some(core_id) = pin {
                        if !core_affinity::set_for_current(core_id) {
                            tracing::warn!(worker = id, "could not pin to a core");
                        }
                    }
                    ingest::run_worker(shell, core)
                })?,
        );
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
    let (policy_tx, policy_rx) = bounded::<PolicyRequest>(64);
    {
        let stop = stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name("reflex-policy".into())
                .spawn(move || policy.run(event_rx, policy_rx, stop))?,
        );
    }

    let handler = ControlHandler {
        names,
        stats,
        reports: report_rx,
        latest: HashMap::new(),
        policy: policy_tx,
        openflow,
        started_ns: crate::io::now_ns(),
        config: config.clone(),
    };
    let (local, local_rx) = crate::control::local::channel();
    let handler = crate::control::local::WithLocal::new(Box::new(handler), local_rx);
    let control_thread = server::spawn(control, Box::new(handler), stop.clone())?;
    threads.extend(crate::metrics::spawn(
        metrics,
        local,
        openflow_metrics,
        stop.clone(),
    )?);

    while !stop.load(Ordering::Relaxed) {
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

struct ControlHandler {
    names: Arc<Names>,
    stats: Vec<Arc<WorkerStats>>,
    reports: Receiver<WorkerReport>,
    latest: HashMap<usize, WorkerReport>,
    policy: Sender<PolicyRequest>,
    openflow: OfClient,
    started_ns: u64,
    config: Config,
}

impl Handler for ControlHandler {
    fn handle(&mut self, request: Request) -> Reply {
        self.tick();
        match request {
            Request::Ping => Reply::ok(json!({
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_s": (crate::io::now_ns() - self.started_ns) as f64 / 1e9,
            })),
            Request::Stats => Reply::ok(self.stats_json()),
            Request::Flows { name, max } => self.flows_json(&name, max),
            Request::Switches => self.openflow.ask(OfQuery::Switches, POLICY_TIMEOUT),
            Request::Table { dpid } => match openflow::parse_dpid(&dpid) {
                Some(dpid) => self.openflow.ask(OfQuery::Table { dpid }, POLICY_TIMEOUT),
                None => Reply::error(format!(
                    "`{dpid}` is not a datapath id (decimal, 0x-hex, or 16 hex digits)"
                )),
            },
            other => self.ask_policy(PolicyQuery::Control(other)),
        }
    }

    fn tick(&mut self) {
        while let Ok(report) = self.reports.try_recv() {
            self.latest.insert(report.worker, report);
        }
    }
}

impl ControlHandler {
    /// Forwards a request to the policy thread and waits (bounded) for its answer.
    fn ask_policy(&self, query: PolicyQuery) -> Reply {
        let (tx, rx) = bounded(1);
        if self
            .policy
            .send_timeout(PolicyRequest { query, reply: tx }, POLICY_TIMEOUT)
            .is_err()
        {
            return Reply::error("the policy thread is not answering");
        }
        rx.recv_timeout(POLICY_TIMEOUT)
            .unwrap_or_else(|_| Reply::error("the policy thread did not answer in time"))
    }

    fn stats_json(&self) -> Value {
        let r = Ordering::Relaxed;
        let sum = |f: &dyn Fn(&WorkerStats) -> u64| self.stats.iter().map(|s| f(s)).sum::<u64>();
        // Datagrams first (acquire): workers publish it last (release), so every other
        // counter read below is at least as new as the datagram count it is shown with.
        let datagrams = sum(&|s| s.datagrams.load(Ordering::Acquire));
        let mut errors = serde_json::Map::new();
        for kind in DecodeError::ALL {
            let n = sum(&|s| s.decode_errors[kind.index()].load(r));
            errors.insert(kind.name().to_owned(), json!(n));
        }
        let kernel_drops: u64 = self.latest.values().filter_map(|w| w.kernel_drops).sum();
        let mut agents: Vec<Value> = Vec::new();
        for w in self.latest.values() {
            for a in &w.agents {
                agents.push(json!({
                    "agent": a.agent.address.to_string(),
                    "sub_agent": a.agent.sub_agent,
                    "worker": w.worker,
                    "datagrams": a.datagrams,
                    "lost": a.lost,
                    "restarts": a.restarts,
                    "sample_drops": a.drops,
                }));
            }
        }
        let policy = self.ask_policy(PolicyQuery::EventStats);
        let policy = policy.result.unwrap_or(Value::Null);
        let openflow = self
            .openflow
            .ask(OfQuery::Summary, POLICY_TIMEOUT)
            .result
            .unwrap_or(Value::Null);
        json!({
            "uptime_s": (crate::io::now_ns() - self.started_ns) as f64 / 1e9,
            "workers": self.stats.len(),
            "flows": self.names.defs.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            "per_worker": report::per_worker(&self.stats, &self.latest),
            "sflow": {
                "listen": self.config.sflow.listen.to_string(),
                "datagrams": datagrams,
                "bytes": sum(&|s| s.bytes.load(r)),
                "batches": sum(&|s| s.batches.load(r)),
                "flow_samples": sum(&|s| s.flow_samples.load(r)),
                "counter_samples": sum(&|s| s.counter_samples.load(r)),
                "other_samples": sum(&|s| s.other_samples.load(r)),
                "truncated": sum(&|s| s.truncated.load(r)),
                "decode_errors": errors,
                "kernel_drops": kernel_drops,
                "lost_datagrams": sum(&|s| s.lost_datagrams.load(r)),
                "agent_restarts": sum(&|s| s.agent_restarts.load(r)),
                "untracked_agents": sum(&|s| s.untracked_agents.load(r)),
                "recv_errors": sum(&|s| s.recv_errors.load(r)),
            },
            "events": {
                "detected": sum(&|s| s.detections.load(r)),
                "delivered": policy["delivered"],
                "dropped": sum(&|s| s.events_dropped.load(r)),
                "latency": policy["latency"],
                "reaction_latency": policy["reaction_latency"],
                "journal_errors": policy["journal_errors"],
                "fsm_changes": policy["fsm_changes"],
                "rearms_sent": policy["rearms_sent"],
                "rearms_dropped": policy["rearms_dropped"],
            },
            "openflow": openflow,
            "agents": agents,
        })
    }

    fn flows_json(&self, name: &str, max: usize) -> Reply {
        let Some(fi) = self.names.defs.iter().position(|d| d.name == name) else {
            let known: Vec<&str> = self.names.defs.iter().map(|d| d.name.as_str()).collect();
            return Reply::error(format!("no flow `{name}` (defined: {})", known.join(", ")));
        };
        let def = &self.names.defs[fi];
        let now = crate::io::now_ns();
        // Workers report network-wide rates (the ones thresholds compare): a key in several
        // workers' top lists takes the largest (they differ only by when each worker
        // reported), each snapshot decayed to now.
        let mut merged: HashMap<FlowKey, f64> = HashMap::new();
        for w in self.latest.values() {
            let decay = (-((now.saturating_sub(w.now_ns)) as f64 / 1e9) / def.t).exp();
            if let Some(snap) = w.top.iter().find(|s| s.flow as usize == fi) {
                for (key, rate) in &snap.top {
                    let rate = rate * decay;
                    let seen = merged.entry(*key).or_default();
                    *seen = seen.max(rate);
                }
            }
        }
        let mut rows: Vec<(FlowKey, f64)> = merged.into_iter().collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
        rows.truncate(max);
        let top: Vec<Value> = rows
            .iter()
            .map(|(k, rate)| json!({"key": def.format_key(k), "rate": rate}))
            .collect();
        Reply::ok(json!({
            "name": def.name,
            "keys": def.keys().iter().map(|k| k.name()).collect::<Vec<_>>().join(","),
            "value": format!("{:?}", def.value).to_lowercase(),
            "filter": def.filter.as_ref().map(|f| f.to_string()),
            "t": def.t,
            "thresholds": report::thresholds_on(&self.config, &def.name),
            "top": top,
        }))
    }
}
