//! The ingest worker threads: one per socket of the SO_REUSEPORT group, each a thin
//! `recvmmsg` loop around its own [`IngestCore`], so the per-datagram path shares nothing,
//! takes no lock and allocates nothing. A worker sends threshold crossings ([`Event`]) to
//! the policy thread, periodic [`WorkerReport`]s to the control thread, and takes
//! [`Rearm`]s back from the policy thread between batches. An event the policy thread's
//! queue refuses (full) waits in a small fixed [`EventBacklog`] and is offered again before
//! newer events and at every batch: the key that crossed is disarmed and will not fire
//! again, so its one event must not be lost to a moment of congestion.

use std::collections::VecDeque;
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

/// Events a worker keeps while the policy thread's queue is full (fixed capacity).
pub const EVENT_BACKLOG: usize = 1024;

/// Events the policy thread's queue refused, kept in order to be offered again; a fixed
/// capacity, so the per-datagram path never allocates. An event that finds the queue and
/// the backlog both full is dropped, counted and handed back to the caller, which re-arms
/// its key so that the crossing fires again on the key's next sample above the threshold
/// instead of being silenced for good.
pub struct EventBacklog {
    events: VecDeque<Event>,
    capacity: usize,
}

impl EventBacklog {
    /// A backlog of up to `capacity` events (at least one), allocated now.
    pub fn new(capacity: usize) -> EventBacklog {
        let capacity = capacity.max(1);
        EventBacklog {
            events: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Sends `event` to `queue` after any kept before it, or keeps it if the queue is full;
    /// returns it when it had to be dropped (queue and backlog full).
    pub fn send(
        &mut self,
        event: Event,
        queue: &Sender<Event>,
        stats: &WorkerStats,
    ) -> Option<Event> {
        if !self.events.is_empty() {
            self.flush(queue, stats);
        }
        if !self.events.is_empty() {
            return self.keep(event, stats);
        }
        match queue.try_send(event) {
            Ok(()) => None,
            Err(TrySendError::Full(event)) => self.keep(event, stats),
            Err(TrySendError::Disconnected(_)) => {
                stats.events_dropped.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Offers the kept events again, oldest first, until the queue is full.
    pub fn flush(&mut self, queue: &Sender<Event>, stats: &WorkerStats) {
        while let Some(&event) = self.events.front() {
            match queue.try_send(event) {
                Ok(()) => {
                    self.events.pop_front();
                    stats.events_retried.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Full(_)) => return,
                Err(TrySendError::Disconnected(_)) => {
                    let lost = self.events.len() as u64;
                    self.events.clear();
                    stats.events_dropped.fetch_add(lost, Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True if no event waits.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    fn keep(&mut self, event: Event, stats: &WorkerStats) -> Option<Event> {
        if self.events.len() < self.capacity {
            self.events.push_back(event);
            None
        } else {
            stats.events_dropped.fetch_add(1, Ordering::Relaxed);
            Some(event)
        }
    }
}

/// Receives, decodes and measures until `stop` is set.
fn run_worker(shell: WorkerShell, mut core: IngestCore) {
    let mut batch = RecvBatch::new(shell.batch);
    let mut next_event: u64 = (shell.id as u64) << 56;
    let mut next_report = 0u64;
    let mut malformed_log = crate::io::RateLimit::new(1_000_000_000);
    let rcvbuf = crate::io::udp::rcvbuf(&shell.socket);
    let mut backlog = EventBacklog::new(EVENT_BACKLOG);
    // Dropped events' keys, re-armed after the batch (fixed capacity: beyond it a key stays
    // disarmed until its timeout, and the drop is still counted).
    let mut dropped: Vec<(ThresholdId, FlowKey)> = Vec::with_capacity(EVENT_BACKLOG);
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
        backlog.flush(&shell.events, &shell.stats);
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
                if let Some(lost) = backlog.send(event, events, stats) {
                    if dropped.len() < dropped.capacity() {
                        dropped.push((lost.threshold, lost.key));
                    }
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
        // Crossings that could not be queued fire again on their keys' next samples above.
        for (threshold, key) in dropped.drain(..) {
            core.rearm(threshold, &key);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn event(id: u64) -> Event {
        Event {
            id,
            threshold: ThresholdId(0),
            flow: 0,
            key: FlowKey::from_bytes(&[10, 0, 0, id as u8]).unwrap_or_default(),
            value: 1000.0,
            agent: IpAddr::V4(Ipv4Addr::LOCALHOST),
            recv_ns: id,
            detected_ns: id,
        }
    }

    #[test]
    fn a_crossing_refused_by_a_full_queue_is_delivered_later_in_order() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let stats = WorkerStats::default();
        let mut backlog = EventBacklog::new(4);
        assert!(backlog.send(event(1), &tx, &stats).is_none());
        // The queue is full: kept, not lost.
        assert!(backlog.send(event(2), &tx, &stats).is_none());
        assert!(backlog.send(event(3), &tx, &stats).is_none());
        assert_eq!(backlog.len(), 2);
        assert_eq!(rx.try_recv().map(|e| e.id), Ok(1));
        // The next batch offers them again, oldest first.
        backlog.flush(&tx, &stats);
        assert_eq!(rx.try_recv().map(|e| e.id), Ok(2));
        // A newer event waits behind the older one.
        assert!(backlog.send(event(4), &tx, &stats).is_none());
        assert_eq!(rx.try_recv().map(|e| e.id), Ok(3));
        backlog.flush(&tx, &stats);
        assert_eq!(rx.try_recv().map(|e| e.id), Ok(4));
        assert!(backlog.is_empty());
        assert_eq!(stats.events_retried.load(Ordering::Relaxed), 3);
        assert_eq!(stats.events_dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_full_backlog_counts_what_it_drops() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let stats = WorkerStats::default();
        let mut backlog = EventBacklog::new(2);
        // One queued, two kept, the last two handed back to be re-armed.
        let handed_back: Vec<u64> = (0..5)
            .filter_map(|id| backlog.send(event(id), &tx, &stats))
            .map(|e| e.id)
            .collect();
        assert_eq!(handed_back, [3, 4]);
        assert_eq!(backlog.len(), 2);
        assert_eq!(stats.events_dropped.load(Ordering::Relaxed), 2);
        drop(rx);
        backlog.flush(&tx, &stats);
        assert!(backlog.is_empty());
        assert_eq!(stats.events_dropped.load(Ordering::Relaxed), 4);
    }
}
