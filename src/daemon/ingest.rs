//! The ingest worker threads: one per socket of the SO_REUSEPORT group, each a thin
//! `recvmmsg` loop around its own [`IngestCore`], so the per-datagram path shares nothing,
//! takes no lock and allocates nothing. A worker sends threshold crossings ([`Event`]) to
//! the policy thread, periodic [`WorkerReport`]s to the control thread, and takes
//! [`Rearm`]s back from the policy thread between batches.

use std::net::{IpAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::flow::engine::TopSnapshot;
use crate::flow::key::FlowKey;
use crate::flow::ThresholdId;
use crate::ingest::{AgentDetection, AgentEntry, IngestCore, WorkerStats};
use crate::io::mmsg::{BatchWait, RecvBatch};

/// A threshold crossing on its way to the policy thread: typed throughout (the threshold's
/// id, the whole flow key), `Copy`, no text and no allocation; the policy thread projects
/// the key onto each reacting module's key.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Event {
    /// Unique per daemon run: worker index in the top byte, a counter below.
    pub id: u64,
    pub threshold: ThresholdId,
    pub flow: u16,
    pub key: FlowKey,
    pub value: f64,
    pub agent: IpAddr,
    /// When the batch holding the deciding datagram came out of `recvmmsg`.
    pub recv_ns: u64,
    /// When the worker decided.
    pub detected_ns: u64,
}

/// Periodic state a worker hands to the control thread (off the per-datagram path).
#[derive(Clone, Debug)]
pub struct WorkerReport {
    pub worker: usize,
    pub now_ns: u64,
    pub top: Vec<TopSnapshot>,
    pub agents: Vec<AgentEntry>,
    pub kernel_drops: Option<u64>,
    pub rcvbuf: usize,
}

/// Everything a worker thread needs besides its core.
pub struct WorkerShell {
    pub id: usize,
    /// Keys the policy let back in, whose thresholds re-arm before the next batch.
    pub rearm: Receiver<Rearm>,
    pub socket: UdpSocket,
    pub batch: usize,
    /// When to pause after a short batch (see [`BatchWait`]).
    pub batch_wait: BatchWait,
    pub stop: Arc<AtomicBool>,
    pub events: Sender<Event>,
    pub reports: Sender<WorkerReport>,
    pub stats: Arc<WorkerStats>,
    /// Cadence of reports, in nanoseconds.
    pub report_every_ns: u64,
}

/// A threshold to re-arm for one key (the policy let that key back in).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rearm {
    pub threshold: ThresholdId,
    pub key: FlowKey,
}

/// Receives, decodes and measures until `stop` is set.
fn run_worker(shell: WorkerShell, mut core: IngestCore) {
    let mut batch = RecvBatch::new(shell.batch);
    let mut next_event: u64 = (shell.id as u64) << 56;
    let mut next_report = 0u64;
    let mut malformed_log = crate::io::RateLimit::new(1_000_000_000);
    let rcvbuf = crate::io::udp::rcvbuf(&shell.socket);
    while !shell.stop.load(Ordering::Relaxed) {
        let called_ns = crate::io::now_ns();
        let n = match batch.recv(&shell.socket) {
            Ok(n) => n,
            Err(e) => {
                shell.stats.recv_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(worker = shell.id, error = %e, "sFlow receive failed");
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
        };
        let recv_ns = crate::io::now_ns();
        while let Ok(r) = shell.rearm.try_recv() {
            core.rearm(r.threshold, &r.key);
        }
        for i in 0..n {
            let (bytes, truncated) = batch.datagram(i);
            if truncated {
                core.truncated();
                continue;
            }
            let events = &shell.events;
            let stats = &shell.stats;
            let result = core.datagram(bytes, recv_ns, &mut |d: AgentDetection| {
                let event = Event {
                    id: next_event,
                    threshold: d.detection.threshold,
                    flow: d.detection.flow,
                    key: d.detection.key,
                    value: d.detection.value,
                    agent: d.agent,
                    recv_ns,
                    detected_ns: crate::io::now_ns(),
                };
                next_event += 1;
                if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                    events.try_send(event)
                {
                    stats.events_dropped.fetch_add(1, Ordering::Relaxed);
                }
            });
            if let Err(e) = result {
                if let Some(suppressed) = malformed_log.allow(recv_ns) {
                    tracing::warn!(
                        worker = shell.id,
                        from = ?batch.source(i),
                        error = %e,
                        suppressed,
                        "malformed sFlow datagram dropped"
                    );
                }
            }
        }
        if n > 0 {
            core.end_batch(&shell.stats);
        }
        if recv_ns >= next_report {
            next_report = recv_ns + shell.report_every_ns;
            let report = WorkerReport {
                worker: shell.id,
                now_ns: recv_ns,
                top: core.engine().snapshot(recv_ns),
                agents: core.agents().entries().copied().collect(),
                kernel_drops: crate::io::udp::kernel_drops(&shell.socket),
                rcvbuf,
            };
            let _ = shell.reports.try_send(report);
        }
        if let Some(pause) = shell.batch_wait.after(n, recv_ns.saturating_sub(called_ns)) {
            std::thread::sleep(pause);
        }
    }
}

/// Starts worker `shell.id` on a thread of its own, pinned to `pin` if given.
pub fn spawn(
    shell: WorkerShell,
    core: IngestCore,
    pin: Option<core_affinity::CoreId>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let id = shell.id;
    std::thread::Builder::new()
        .name(format!("reflex-ingest-{id}"))
        .spawn(move || {
            if let Some(core_id) = pin {
                if !core_affinity::set_for_current(core_id) {
                    tracing::warn!(worker = id, "could not pin to a core");
                }
            }
            run_worker(shell, core)
        })
}
