//! The OpenFlow thread: a mio loop over the switch listener and every switch connection,
//! each driven by its sans-IO [`Session`].
//!
//! The policy thread reaches it only through a bounded channel: [`OfSink`] (its
//! [`RuleSink`]) lowers compiled rules into entry-level updates ([`crate::lower`]) and wakes
//! the loop with a [`mio::Waker`]. The loop always drains that channel at once and owns the
//! one desired table for all switches (the sink keeps none; see `lower`'s docs for why);
//! each session only records which keys changed, so a switch that is slow to read (its
//! bounded output queue full) gets, once it catches up, the latest form of every changed
//! entry, each once — coalesced, nothing dropped. While a switch's
//! queue is full it is not read either (back-pressure instead of unbounded buffering).
//!
//! Reactive mode (the policy uses `learn`): PACKET_INs from the learning table are answered
//! inside [`Session::handle_input`], on this thread, as they are read — before the loop
//! gets to syncs or queries — and written with the next flush; the sessions shed them when
//! their output queue is full (see the session's docs). The lowering adds the learning
//! table's miss entry to the desired table ([`TranslateConfig`]).
//!
//! The control thread asks for `switches`, `table` and `stats` through [`OfClient`]; this
//! thread answers with typed views of the sessions' own state ([`SwitchesView`],
//! [`TableView`], [`OfSummary`]) and formats no JSON. Reads go through one scratch buffer owned by
//! the thread; flow-mods are encoded straight into each session's reused output buffer.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::io::RateLimit;
use crate::lower::table::{desired_delta, desired_table, TranslateErrors};
use crate::lower::translate::TranslateConfig;
use crate::openflow::learning::LearningConfig;
use crate::openflow::session::{
    FlowModError, Phase, Session, SessionConfig, SessionEvent, SessionStats,
};
use crate::openflow::table::{diff, ofctl_line, Desired, DesiredDelta, FlowOp, FlowTable};
use crate::openflow::{DropMeter, Features, Port};
use crate::policy::{Delta, Rule};
use crossbeam_channel::{bounded, Receiver, Sender};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::policy::RuleSink;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Longest wait in the loop, so shutdown is noticed promptly.
const TICK: Duration = Duration::from_millis(100);
/// Bound of the policy → OpenFlow channel (each item is a whole delta).
const UPDATE_QUEUE: usize = 1024;
/// How long the policy thread waits for room in that channel before it gives up on this
/// update (and sends it, merged with the next one, next time).
const UPDATE_TIMEOUT: Duration = Duration::from_secs(2);
/// Switch connections accepted at once.
const MAX_SWITCHES: usize = 4096;
/// Bytes read from a switch per call.
const READ_CHUNK: usize = 64 * 1024;

/// A change of the desired table, as the policy thread ships it.
pub enum Update {
    /// The whole table (at start, after a restore, after a lost delta).
    Full(Desired),
    /// Entries that changed.
    Delta(DesiredDelta),
}

/// What the control thread may ask the OpenFlow thread; each query carries the bounded
/// channel its typed answer goes to (the control thread formats the JSON).
pub enum OfQuery {
    /// Every connected switch with its counters.
    Switches { reply: Sender<SwitchesView> },
    /// One switch's installed and desired tables (`None`: no switch with that dpid).
    Table {
        dpid: u64,
        reply: Sender<Option<TableView>>,
    },
    /// Totals over all switches, for `stats`.
    Summary { reply: Sender<OfSummary> },
}

/// Why an [`OfClient::ask`] got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OfUnanswered {
    #[error("the OpenFlow thread is not answering")]
    NotTaken,
    #[error("the OpenFlow thread did not answer in time")]
    TimedOut,
}

/// The answer to [`OfQuery::Switches`].
#[derive(Clone, Debug)]
pub struct SwitchesView {
    pub listen: SocketAddr,
    /// Connections accepted and closed since start.
    pub accepted: u64,
    pub closed: u64,
    /// Entries in the desired table.
    pub desired: usize,
    /// Oldest connection first.
    pub switches: Vec<SwitchView>,
}

/// One switch connection's state, as `switches` lists it.
#[derive(Clone, Debug)]
pub struct SwitchView {
    pub dpid: Option<u64>,
    pub address: SocketAddr,
    pub phase: Phase,
    pub features: Option<Features>,
    pub ports: Vec<Port>,
    pub connected_since_unix_ms: u64,
    /// How long it has been connected when the view was taken.
    pub connected_ms: u64,
    pub stats: SessionStats,
    pub unconfirmed: usize,
    pub pending_barriers: usize,
    /// Present when reactive learning is on.
    pub learning: Option<MacTableView>,
    /// Entries the switch holds (as far as the session knows).
    pub installed: usize,
    /// Ready, nothing queued, and the installed table is the desired one.
    pub in_sync: bool,
    /// The last rejected flow-mods, oldest first.
    pub recent_errors: Vec<FlowModError>,
}

/// A session's MAC learning table counts.
#[derive(Clone, Copy, Debug)]
pub struct MacTableView {
    pub learnt: u64,
    pub evicted: u64,
    pub capacity: usize,
}

/// The answer to [`OfQuery::Table`]: tables as `ovs-ofctl -O OpenFlow13 dump-flows` lines,
/// by table, highest priority first.
#[derive(Clone, Debug)]
pub struct TableView {
    pub dpid: u64,
    pub address: SocketAddr,
    pub phase: Phase,
    pub installed: Vec<String>,
    pub desired: Vec<String>,
    /// What a sync would send, each with the entry it concerns (a delete shows the
    /// installed entry).
    pub differences: Vec<(FlowOp, String)>,
    /// No difference and nothing queued.
    pub in_sync: bool,
    /// Learnt flows live on the switch, outside both tables.
    pub learning: Option<LearningConfig>,
    pub installed_meters: BTreeMap<u32, DropMeter>,
    pub desired_meters: BTreeMap<u32, DropMeter>,
}

/// The answer to [`OfQuery::Summary`]: totals over the connected switches.
#[derive(Clone, Debug)]
pub struct OfSummary {
    pub listen: SocketAddr,
    pub switches: usize,
    pub ready: usize,
    pub accepted: u64,
    pub closed: u64,
    pub desired_entries: usize,
    pub flow_mods: u64,
    pub flow_mods_confirmed: u64,
    pub flow_mod_errors: u64,
    pub pending_barriers: u64,
    pub malformed: u64,
    pub learning_table: Option<u8>,
    pub packet_ins: u64,
    pub learn_flows: u64,
    pub learn_floods: u64,
    pub packet_ins_shed: u64,
}

/// Why the OpenFlow side could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenflowStartError {
    #[error("cannot listen for OpenFlow on tcp {addr}: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
    #[error("cannot create the OpenFlow poller: {0}")]
    Poller(#[source] io::Error),
    #[error("cannot create waker: {0}")]
    Waker(#[source] io::Error),
    #[error("cannot register the OpenFlow listener: {0}")]
    Register(#[source] io::Error),
    #[error("cannot start the OpenFlow thread: {0}")]
    Thread(#[source] io::Error),
}

/// The listener, bound before any thread starts so a busy port fails cleanly.
pub struct OpenflowServer {
    listener: TcpListener,
    addr: SocketAddr,
}

impl OpenflowServer {
    /// Binds `addr` (TCP).
    pub fn bind(addr: SocketAddr) -> Result<OpenflowServer, OpenflowStartError> {
        let listen_err = |source| OpenflowStartError::Listen { addr, source };
        let std_listener = std::net::TcpListener::bind(addr).map_err(listen_err)?;
        std_listener.set_nonblocking(true).map_err(listen_err)?;
        let addr = std_listener.local_addr().unwrap_or(addr);
        Ok(OpenflowServer {
            listener: TcpListener::from_std(std_listener),
            addr,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// The policy thread's handle: a [`RuleSink`] shipping desired-table updates.
pub struct OfSink {
    tx: Sender<Update>,
    waker: Arc<Waker>,
    /// The update the OpenFlow thread did not take in time: the next change is merged into
    /// it and both go together (no copy of the desired table is kept here).
    unsent: Option<Update>,
    translate: TranslateConfig,
}

impl OfSink {
    fn ship(&mut self, update: Update) {
        match self.tx.send_timeout(update, UPDATE_TIMEOUT) {
            Ok(()) => {
                self.unsent = None;
                let _ = self.waker.wake();
            }
            Err(e) => {
                self.unsent = Some(e.into_inner());
                tracing::error!(
                    "OpenFlow thread not taking rule updates; this change follows with the next one"
                );
            }
        }
    }
}

fn log_translate_errors(errors: &TranslateErrors) {
    for (key, e) in errors {
        tracing::error!(
            table = key.table,
            priority = key.priority,
            pattern = %key.pattern,
            error = %e,
            "rule cannot be expressed in OpenFlow 1.3; not installed"
        );
    }
}

impl RuleSink for OfSink {
    fn full(&mut self, rules: &[Rule], meters: &[(u32, u32)]) {
        let (desired, errors) = desired_table(rules, meters, &self.translate);
        log_translate_errors(&errors);
        // A whole table supersedes whatever was not shipped.
        self.ship(Update::Full(desired));
    }

    fn delta(&mut self, delta: &Delta, meters: &[(u32, u32)]) {
        let (d, errors) = desired_delta(delta, meters, &self.translate);
        log_translate_errors(&errors);
        let update = match self.unsent.take() {
            None => Update::Delta(d),
            Some(Update::Full(mut whole)) => {
                whole.apply(&d);
                Update::Full(whole)
            }
            Some(Update::Delta(mut earlier)) => {
                earlier.merge(d);
                Update::Delta(earlier)
            }
        };
        self.ship(update);
    }
}

/// The control thread's handle.
#[derive(Clone)]
pub struct OfClient {
    tx: Sender<OfQuery>,
    waker: Arc<Waker>,
}

impl OfClient {
    /// Sends a query and waits (bounded) for its typed answer.
    pub fn ask<T>(
        &self,
        query: impl FnOnce(Sender<T>) -> OfQuery,
        timeout: Duration,
    ) -> Result<T, OfUnanswered> {
        let (tx, rx) = bounded(1);
        if self.tx.send_timeout(query(tx), timeout).is_err() {
            return Err(OfUnanswered::NotTaken);
        }
        let _ = self.waker.wake();
        rx.recv_timeout(timeout).map_err(|_| OfUnanswered::TimedOut)
    }
}

struct Conn {
    stream: TcpStream,
    addr: SocketAddr,
    session: Session,
    since_unix_ms: u64,
    /// Reading stopped because the output queue was full; resume when it drains.
    read_paused: bool,
    /// The peer closed or the socket failed.
    gone: Option<String>,
}

struct OfThread {
    poll: Poll,
    listener: TcpListener,
    listen: SocketAddr,
    conns: HashMap<Token, Conn>,
    next_token: usize,
    desired: Desired,
    updates: Receiver<Update>,
    queries: Receiver<OfQuery>,
    cfg: SessionConfig,
    scratch: Vec<u8>,
    accepted: u64,
    closed: u64,
    malformed_log: RateLimit,
    metrics: Arc<crate::metrics::OpenflowMetrics>,
    /// Counts of sessions already closed, so the exported totals never go down.
    retired_flow_mods: u64,
    retired_errors: u64,
}

/// Starts the OpenFlow thread; returns it with the policy thread's sink and the control
/// thread's client.
pub fn spawn(
    server: OpenflowServer,
    cfg: SessionConfig,
    stale_flow_guard: bool,
    stop: Arc<AtomicBool>,
    metrics: Arc<crate::metrics::OpenflowMetrics>,
) -> Result<(std::thread::JoinHandle<()>, OfSink, OfClient), OpenflowStartError> {
    metrics.mark_wired();
    let poll = Poll::new().map_err(OpenflowStartError::Poller)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(OpenflowStartError::Waker)?);
    let mut listener = server.listener;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(OpenflowStartError::Register)?;
    let (update_tx, update_rx) = bounded(UPDATE_QUEUE);
    let (query_tx, query_rx) = bounded(64);
    let mut t = OfThread {
        poll,
        listener,
        listen: server.addr,
        conns: HashMap::new(),
        next_token: 2,
        desired: Desired::default(),
        updates: update_rx,
        queries: query_rx,
        cfg,
        scratch: vec![0; READ_CHUNK],
        accepted: 0,
        closed: 0,
        malformed_log: RateLimit::new(1_000_000_000),
        metrics,
        retired_flow_mods: 0,
        retired_errors: 0,
    };
    let handle = std::thread::Builder::new()
        .name("reflex-openflow".into())
        .spawn(move || {
            if let Err(e) = t.run(&stop) {
                tracing::error!(error = %e, "OpenFlow thread stopped");
            }
        })
        .map_err(OpenflowStartError::Thread)?;
    Ok((
        handle,
        OfSink {
            tx: update_tx,
            waker: waker.clone(),
            unsent: None,
            translate: TranslateConfig {
                learning_table: cfg.learning.map(|l| l.table_id),
                stale_flow_guard,
            },
        },
        OfClient {
            tx: query_tx,
            waker,
        },
    ))
}

impl OfThread {
    fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        tracing::info!(openflow = %self.listen, "OpenFlow listening");
        while !stop.load(Ordering::Relaxed) {
            let now = crate::io::now_ns();
            let wait = self
                .conns
                .values()
                .filter_map(|c| c.session.poll_timeout())
                .min()
                .map_or(TICK, |t| {
                    Duration::from_nanos(t.saturating_sub(now)).min(TICK)
                });
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    token => {
                        if let Some(c) = self.conns.get_mut(&token) {
                            if event.is_readable() || event.is_read_closed() {
                                read(c, &mut self.scratch);
                            }
                        }
                    }
                }
            }
            self.take_updates();
            self.answer_queries();
            self.service_all();
        }
        tracing::info!("OpenFlow thread stopping");
        Ok(())
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, addr)) => {
                    if self.conns.len() >= MAX_SWITCHES {
                        tracing::warn!(%addr, "too many switch connections; refused");
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let token = Token(self.next_token);
                    self.next_token += 1;
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        tracing::warn!(%addr, error = %e, "cannot register switch connection");
                        continue;
                    }
                    self.accepted += 1;
                    tracing::info!(%addr, "switch connected");
                    let now = crate::io::now_ns();
                    self.conns.insert(
                        token,
                        Conn {
                            stream,
                            addr,
                            session: Session::new(now, self.cfg),
                            since_unix_ms: crate::io::clock::unix_ms(now),
                            read_paused: false,
                            gone: None,
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "OpenFlow accept failed");
                    return;
                }
            }
        }
    }

    fn take_updates(&mut self) {
        while let Ok(u) = self.updates.try_recv() {
            match u {
                Update::Full(d) => {
                    self.desired = d;
                    for c in self.conns.values_mut() {
                        c.session.mark_resync();
                    }
                }
                Update::Delta(d) => {
                    self.desired.apply(&d);
                    for c in self.conns.values_mut() {
                        for (k, _) in &d.flows {
                            c.session.mark_dirty(k);
                        }
                    }
                }
            }
        }
    }

    fn answer_queries(&mut self) {
        while let Ok(q) = self.queries.try_recv() {
            // A requester that gave up is no error here.
            match q {
                OfQuery::Switches { reply } => {
                    let _ = reply.send(self.switches_view());
                }
                OfQuery::Table { dpid, reply } => {
                    let _ = reply.send(self.table_view(dpid));
                }
                OfQuery::Summary { reply } => {
                    let _ = reply.send(self.summary());
                }
            }
        }
    }

    /// Timers, syncs, writes, resumed reads, events and closing, for every connection.
    fn service_all(&mut self) {
        let now = crate::io::now_ns();
        let mut done = Vec::new();
        for (token, c) in self.conns.iter_mut() {
            loop {
                if c.session.poll_timeout().is_some_and(|t| t <= now) {
                    c.session.handle_timeout(now);
                }
                c.session.sync(&self.desired);
                write(c);
                // Output drained below the bound: take what the switch sent meanwhile.
                if c.read_paused && c.session.wants_input() && c.gone.is_none() {
                    read(c, &mut self.scratch);
                    continue;
                }
                break;
            }
            while let Some(e) = c.session.poll_event() {
                log_event(c, e, &mut self.malformed_log, now);
            }
            if c.session.is_closed() || c.gone.is_some() {
                done.push(*token);
            }
        }
        for token in done {
            if let Some(mut c) = self.conns.remove(&token) {
                let _ = self.poll.registry().deregister(&mut c.stream);
                let _ = c.stream.shutdown(std::net::Shutdown::Both);
                self.closed += 1;
                self.retired_flow_mods += c.session.stats().flow_mods;
                self.retired_errors += c.session.stats().flow_mod_errors;
                let why = c
                    .session
                    .close_reason()
                    .map(|r| r.to_string())
                    .or(c.gone.take())
                    .unwrap_or_default();
                tracing::info!(addr = %c.addr, dpid = ?c.session.dpid().map(dpid_text), reason = %why, "switch session ended");
            }
        }
        self.publish_metrics();
    }

    /// Monotonic totals for the metrics endpoint: closed sessions' counts plus live ones.
    fn publish_metrics(&self) {
        let live =
            |f: &dyn Fn(&Session) -> u64| self.conns.values().map(|c| f(&c.session)).sum::<u64>();
        let ready = self
            .conns
            .values()
            .filter(|c| c.session.phase() == Phase::Ready)
            .count();
        let m = &self.metrics;
        m.switches.store(ready as u64, Ordering::Relaxed);
        m.connections.store(self.accepted, Ordering::Relaxed);
        m.flow_mods.store(
            self.retired_flow_mods + live(&|s| s.stats().flow_mods),
            Ordering::Relaxed,
        );
        m.errors.store(
            self.retired_errors + live(&|s| s.stats().flow_mod_errors),
            Ordering::Relaxed,
        );
    }

    fn switches_view(&self) -> SwitchesView {
        let now_ms = crate::io::clock::unix_ms(crate::io::now_ns());
        let mut conns: Vec<&Conn> = self.conns.values().collect();
        conns.sort_by_key(|c| c.since_unix_ms);
        let switches = conns
            .into_iter()
            .map(|c| {
                let s = &c.session;
                SwitchView {
                    dpid: s.dpid(),
                    address: c.addr,
                    phase: s.phase(),
                    features: s.features().copied(),
                    ports: s.ports().values().cloned().collect(),
                    connected_since_unix_ms: c.since_unix_ms,
                    connected_ms: now_ms.saturating_sub(c.since_unix_ms),
                    stats: s.stats(),
                    unconfirmed: s.unconfirmed(),
                    pending_barriers: s.pending_barriers(),
                    learning: s.mac_table().map(|t| {
                        let (learnt, evicted) = t.counts();
                        MacTableView {
                            learnt,
                            evicted,
                            capacity: t.capacity(),
                        }
                    }),
                    installed: s.installed().len(),
                    in_sync: confirmed_in_sync(s, &self.desired.flows),
                    recent_errors: s.recent_errors().cloned().collect(),
                }
            })
            .collect();
        SwitchesView {
            listen: self.listen,
            accepted: self.accepted,
            closed: self.closed,
            desired: self.desired.flows.len(),
            switches,
        }
    }

    fn summary(&self) -> OfSummary {
        let sum =
            |f: &dyn Fn(&Session) -> u64| self.conns.values().map(|c| f(&c.session)).sum::<u64>();
        OfSummary {
            listen: self.listen,
            switches: self.conns.len(),
            ready: self
                .conns
                .values()
                .filter(|c| c.session.phase() == Phase::Ready)
                .count(),
            accepted: self.accepted,
            closed: self.closed,
            desired_entries: self.desired.flows.len(),
            flow_mods: sum(&|s| s.stats().flow_mods),
            flow_mods_confirmed: sum(&|s| s.stats().flow_mods_confirmed),
            flow_mod_errors: sum(&|s| s.stats().flow_mod_errors),
            pending_barriers: sum(&|s| s.pending_barriers() as u64),
            malformed: sum(&|s| s.stats().malformed),
            learning_table: self.cfg.learning.map(|l| l.table_id),
            packet_ins: sum(&|s| s.stats().packet_ins),
            learn_flows: sum(&|s| s.stats().learn_flows),
            learn_floods: sum(&|s| s.stats().learn_floods),
            packet_ins_shed: sum(&|s| s.stats().packet_ins_shed),
        }
    }

    /// The newest connection with `dpid`, if any.
    fn table_view(&self, dpid: u64) -> Option<TableView> {
        let c = self
            .conns
            .values()
            .filter(|c| c.session.dpid() == Some(dpid))
            .max_by_key(|c| c.since_unix_ms)?;
        let installed = c.session.installed();
        // As dump-flows lists them: by table, highest priority first.
        let lines = |t: &FlowTable| -> Vec<String> {
            let mut entries: Vec<_> = t.iter().collect();
            entries.sort_by_key(|(k, _)| (k.table_id, std::cmp::Reverse(k.priority)));
            entries.iter().map(|(k, i)| ofctl_line(k, i)).collect()
        };
        let differences: Vec<(FlowOp, String)> = diff(installed, &self.desired.flows)
            .into_iter()
            .map(|(op, k, i)| {
                let shown = match op {
                    FlowOp::Delete => installed.get(k).unwrap_or(&[]),
                    _ => i,
                };
                (op, ofctl_line(k, shown))
            })
            .collect();
        Some(TableView {
            dpid,
            address: c.addr,
            phase: c.session.phase(),
            installed: lines(installed),
            desired: lines(&self.desired.flows),
            in_sync: differences.is_empty() && confirmed_in_sync(&c.session, &self.desired.flows),
            differences,
            learning: self.cfg.learning,
            installed_meters: c.session.installed_meters().clone(),
            desired_meters: self.desired.meters.clone(),
        })
    }
}

/// Reads until WouldBlock, EOF, or the session's output queue is full.
fn read(c: &mut Conn, scratch: &mut [u8]) {
    c.read_paused = false;
    loop {
        if c.gone.is_some() || c.session.is_closed() {
            return;
        }
        if !c.session.wants_input() {
            c.read_paused = true;
            return;
        }
        match c.stream.read(scratch) {
            Ok(0) => {
                c.gone = Some("switch closed the connection".into());
                return;
            }
            Ok(n) => {
                let now = crate::io::now_ns();
                c.session.handle_input(now, scratch.get(..n).unwrap_or(&[]));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                c.gone = Some(format!("read failed: {e}"));
                return;
            }
        }
    }
}

/// Writes until WouldBlock or nothing is left.
fn write(c: &mut Conn) {
    while c.gone.is_none() {
        let pending = c.session.poll_transmit();
        if pending.is_empty() {
            return;
        }
        match c.stream.write(pending) {
            Ok(0) => {
                c.gone = Some("switch stopped accepting data".into());
                return;
            }
            Ok(n) => c.session.advance_transmit(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                c.gone = Some(format!("write failed: {e}"));
                return;
            }
        }
    }
}

fn log_event(c: &Conn, e: SessionEvent, malformed_log: &mut RateLimit, now: u64) {
    let dpid = c.session.dpid().map(dpid_text);
    match e {
        SessionEvent::Ready {
            dpid,
            ports,
            installed,
        } => {
            tracing::info!(addr = %c.addr, dpid = %dpid_text(dpid), ports, installed, "switch ready; reconciling its table")
        }
        SessionEvent::FlowModFailed(f) => tracing::warn!(
            addr = %c.addr, dpid = ?dpid, xid = f.xid, op = f.op, entry = %f.entry,
            error = %format!("{}/{}", f.type_name, f.code_name),
            "switch rejected a flow-mod"
        ),
        SessionEvent::SwitchError {
            xid,
            type_name,
            code_name,
        } => {
            tracing::warn!(addr = %c.addr, dpid = ?dpid, xid, error = %format!("{type_name}/{code_name}"), "switch sent an error")
        }
        SessionEvent::Malformed { msg_type, error } => {
            if let Some(suppressed) = malformed_log.allow(now) {
                tracing::warn!(addr = %c.addr, dpid = ?dpid, msg_type, error = error.name(), suppressed, "malformed OpenFlow message skipped");
            }
        }
        SessionEvent::Closed(reason) => {
            tracing::warn!(addr = %c.addr, dpid = ?dpid, reason = %reason, "closing switch session")
        }
    }
}

/// A datapath id as OVS prints it: 16 hex digits.
pub fn dpid_text(dpid: u64) -> String {
    format!("{dpid:016x}")
}

/// Parses a datapath id: `0x`-prefixed hex, 16 hex digits (as printed), decimal, or
/// colon-separated hex bytes.
pub fn parse_dpid(text: &str) -> Option<u64> {
    let t = text.trim();
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok();
    }
    if t.contains(':') {
        let hex: String = t.split(':').collect();
        return (hex.len() <= 16).then(|| u64::from_str_radix(&hex, 16).ok())?;
    }
    if t.len() == 16 {
        return u64::from_str_radix(t, 16).ok();
    }
    t.parse().ok().or_else(|| u64::from_str_radix(t, 16).ok())
}

/// Whether a switch holds exactly the desired table as far as it has confirmed: ready,
/// nothing left to send, and every flow-mod sent answered by its barrier (the installed
/// view counts what was sent, so without the last two a switch that never reads or never
/// answers barriers would show as in sync).
fn confirmed_in_sync(s: &Session, desired: &FlowTable) -> bool {
    s.phase() == Phase::Ready
        && !s.has_backlog()
        && s.unconfirmed() == 0
        && s.pending_barriers() == 0
        && s.installed() == desired
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpids_parse_in_every_usual_spelling() {
        assert_eq!(parse_dpid("1"), Some(1));
        assert_eq!(parse_dpid("0x1f"), Some(31));
        assert_eq!(parse_dpid("000000000000001f"), Some(31));
        assert_eq!(parse_dpid("00:00:00:00:00:00:00:1f"), Some(31));
        assert_eq!(parse_dpid("abc"), Some(0xabc));
        assert_eq!(parse_dpid("zz"), None);
        assert_eq!(dpid_text(31), "000000000000001f");
    }
}
