//! The control thread: answers the control socket's (and the metrics endpoint's)
//! [`Request`]s. It owns the JSON of every reply: counters it reads itself (the workers'
//! atomics and periodic reports), the rest asked of the policy thread through typed
//! [`PolicyCommand`]s and of the OpenFlow thread through [`OfClient`], each wait bounded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};
use serde_json::{json, Value};

use crate::config::Config;
use crate::control::local::{self, LocalClient, WithLocal};
use crate::control::protocol::{Reply, Request};
use crate::control::server::{self, Handler, Server};
use crate::flow::key::FlowKey;
use crate::ingest::WorkerStats;
use crate::policy;
use crate::sflow::DecodeError;
use crate::timing::format_unix_ms;

use super::changes::RecentChanges;
use super::ingest::WorkerReport;
use super::names::Names;
use super::openflow::{
    self, dpid_text, OfClient, OfQuery, OfSummary, SwitchView, SwitchesView, TableView,
};
use super::policy::{
    EventApplied, Instances, LatencySummary, PolicyCommand, PolicyStats, PolicyView, RecentEvents,
};
use super::report;

/// How long the control thread waits for the policy or the OpenFlow thread.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// The control thread's state.
pub struct ControlHandler {
    names: Arc<Names>,
    stats: Vec<Arc<WorkerStats>>,
    reports: Receiver<WorkerReport>,
    policy: Sender<PolicyCommand>,
    openflow: OfClient,
    started_ns: u64,
    config: Config,
    /// Each worker's latest report.
    latest: HashMap<usize, WorkerReport>,
}

/// Starts the control thread on `server`; returns it with a client for the daemon's own
/// threads (the metrics endpoint).
pub fn spawn(
    server: Server,
    handler: ControlHandler,
    stop: Arc<AtomicBool>,
) -> std::io::Result<(std::thread::JoinHandle<()>, LocalClient)> {
    let (client, requests) = local::channel();
    let handler = WithLocal::new(Box::new(handler), requests);
    let thread = server::spawn(server, Box::new(handler), stop)?;
    Ok((thread, client))
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
            Request::Switches => {
                match self
                    .openflow
                    .ask(|reply| OfQuery::Switches { reply }, ASK_TIMEOUT)
                {
                    Ok(view) => Reply::ok(switches_json(&view)),
                    Err(e) => Reply::error(e.to_string()),
                }
            }
            Request::Table { dpid } => match openflow::parse_dpid(&dpid) {
                Some(dpid) => match self
                    .openflow
                    .ask(|reply| OfQuery::Table { dpid, reply }, ASK_TIMEOUT)
                {
                    Ok(Some(view)) => Reply::ok(table_json(&view)),
                    Ok(None) => {
                        Reply::error(format!("no switch with dpid {} connected", dpid_text(dpid)))
                    }
                    Err(e) => Reply::error(e.to_string()),
                },
                None => Reply::error(format!(
                    "`{dpid}` is not a datapath id (decimal, 0x-hex, or 16 hex digits)"
                )),
            },
            Request::Event {
                module,
                key,
                state,
                hold,
                then,
            } => self.event(module, key, state, hold, then),
            Request::State {
                module: Some(module),
                key: Some(key),
            } => {
                let asked = (module.clone(), key.clone());
                match self.ask_policy(|reply| PolicyCommand::StateOf { module, key, reply }) {
                    Ok(Ok(state)) => {
                        Reply::ok(json!({"module": asked.0, "key": asked.1, "state": state}))
                    }
                    Ok(Err(e)) => Reply::error(e.to_string()),
                    Err(unanswered) => unanswered,
                }
            }
            Request::State { module, key: None } => {
                match self.ask_policy(|reply| PolicyCommand::Instances { module, reply }) {
                    Ok(instances) => Reply::ok(instances_json(&instances)),
                    Err(unanswered) => unanswered,
                }
            }
            Request::State {
                module: None,
                key: Some(_),
            } => Reply::error("a key needs a module (-e MODULE)"),
            Request::Events { max, key } => {
                match self.ask_policy(|reply| PolicyCommand::Events { max, key, reply }) {
                    Ok(events) => Reply::ok(self.events_json(&events)),
                    Err(unanswered) => unanswered,
                }
            }
            Request::Changes { max } => {
                match self.ask_policy(|reply| PolicyCommand::Changes { max, reply }) {
                    Ok(changes) => Reply::ok(changes_json(&changes)),
                    Err(unanswered) => unanswered,
                }
            }
            Request::Policy => match self.ask_policy(|reply| PolicyCommand::Policy { reply }) {
                Ok(view) => Reply::ok(policy_json(&view)),
                Err(unanswered) => unanswered,
            },
            Request::Check => match self.ask_policy(|reply| PolicyCommand::Check { reply }) {
                Ok(v) => Reply::ok(json!({"ok": v.is_empty(), "violations": v})),
                Err(unanswered) => unanswered,
            },
        }
    }

    fn tick(&mut self) {
        while let Ok(report) = self.reports.try_recv() {
            self.latest.insert(report.worker, report);
        }
    }
}

impl ControlHandler {
    /// A handler reading the workers' `stats` and `reports`, asking `policy` and `openflow`.
    pub fn new(
        names: Arc<Names>,
        stats: Vec<Arc<WorkerStats>>,
        reports: Receiver<WorkerReport>,
        policy: Sender<PolicyCommand>,
        openflow: OfClient,
        started_ns: u64,
        config: Config,
    ) -> ControlHandler {
        ControlHandler {
            names,
            stats,
            reports,
            policy,
            openflow,
            started_ns,
            config,
            latest: HashMap::new(),
        }
    }

    /// Sends a command to the policy thread and waits (bounded) for its typed answer; if
    /// none comes, the error reply to give instead.
    fn ask_policy<T>(&self, command: impl FnOnce(Sender<T>) -> PolicyCommand) -> Result<T, Reply> {
        let (tx, rx) = bounded(1);
        if self.policy.send_timeout(command(tx), ASK_TIMEOUT).is_err() {
            return Err(Reply::error("the policy thread is not answering"));
        }
        rx.recv_timeout(ASK_TIMEOUT)
            .map_err(|_| Reply::error("the policy thread did not answer in time"))
    }

    fn event(
        &self,
        module: String,
        key: String,
        state: String,
        hold: Option<f64>,
        then: Option<String>,
    ) -> Reply {
        let hold_ns = match hold {
            Some(h) if !(h.is_finite() && h > 0.0) => {
                return Reply::error("hold must be a positive number of seconds")
            }
            Some(h) => Some((h * 1e9) as u64),
            None => None,
        };
        let event = policy::Event {
            module,
            key,
            state,
            hold_ns,
            then,
        };
        let asked = event.clone();
        let applied: EventApplied =
            match self.ask_policy(|reply| PolicyCommand::Event { event, reply }) {
                Ok(Ok(applied)) => applied,
                Ok(Err(e)) => return Reply::error(e.to_string()),
                Err(unanswered) => return unanswered,
            };
        let ev = asked;
        tracing::info!(module = %ev.module, key = %ev.key, state = %ev.state, hold = ?hold, changed = applied.changed, "control event");
        Reply::ok(json!({
            "module": ev.module,
            "key": ev.key,
            "from": applied.from,
            "state": ev.state,
            "changed": applied.changed,
            "hold_s": hold,
            "journaled": applied.journaled,
            "rules": {
                "added": applied.rules_added,
                "modified": applied.rules_modified,
                "removed": applied.rules_removed,
            },
        }))
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
        // Without the policy thread's answer, its fields read null.
        let policy = self
            .ask_policy(|reply| PolicyCommand::Stats { reply })
            .map_or(Value::Null, |s| policy_stats_json(&s));
        // Without the OpenFlow thread's answer, `openflow` reads null.
        let openflow = self
            .openflow
            .ask(|reply| OfQuery::Summary { reply }, ASK_TIMEOUT)
            .map_or(Value::Null, |s| openflow_summary_json(&s));
        json!({
            "uptime_s": (crate::io::now_ns() - self.started_ns) as f64 / 1e9,
            "workers": self.stats.len(),
            "flows": self.names.defs().iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
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
                "suppressed": sum(&|s| s.events_suppressed.load(r)),
                "retried": sum(&|s| s.events_retried.load(r)),
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
        let defs = self.names.defs();
        let Some(fi) = defs.iter().position(|d| d.name == name) else {
            let known: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
            return Reply::error(format!("no flow `{name}` (defined: {})", known.join(", ")));
        };
        let def = &defs[fi];
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

    fn events_json(&self, recent: &RecentEvents) -> Value {
        let names = &self.names;
        let events: Vec<Value> = recent
            .events
            .iter()
            .map(|r| {
                let e = &r.event;
                json!({
                    "id": e.id,
                    "unix_ms": r.unix_ms,
                    "time": format_unix_ms(r.unix_ms),
                    "threshold": names.threshold_name(e.threshold),
                    "flow": names.flow_name(e.flow),
                    "key": names.key_text(e.flow, &e.key),
                    "agent": e.agent.to_string(),
                    "value": e.value,
                    "latency_us": r.latency_ns as f64 / 1e3,
                    "decide_us": e.detected_ns.saturating_sub(e.recv_ns) as f64 / 1e3,
                    "outcome": r.outcome,
                })
            })
            .collect();
        json!({"total": recent.total, "events": events})
    }
}

/// The policy thread's part of `stats`.
fn policy_stats_json(s: &PolicyStats) -> Value {
    let pct = |l: &LatencySummary| {
        json!({
            "count": l.count,
            "p50_us": l.p50_ns as f64 / 1e3,
            "p99_us": l.p99_ns as f64 / 1e3,
            "max_us": l.max_ns as f64 / 1e3,
            "sum_us": l.mean_ns * l.count as f64 / 1e3,
        })
    };
    json!({
        "delivered": s.delivered,
        "latency": pct(&s.delivery),
        "reaction_latency": pct(&s.reaction),
        "journal_errors": s.journal_errors,
        "fsm_changes": s.fsm_changes,
        "rearms_sent": s.rearms_sent,
        "rearms_dropped": s.rearms_dropped,
    })
}

/// The `switches` reply.
fn switches_json(view: &SwitchesView) -> Value {
    json!({
        "listen": view.listen.to_string(),
        "accepted": view.accepted,
        "closed": view.closed,
        "desired": view.desired,
        "switches": view.switches.iter().map(switch_json).collect::<Vec<_>>(),
    })
}

/// One switch in the `switches` reply.
fn switch_json(s: &SwitchView) -> Value {
    let st = &s.stats;
    let ports: Vec<Value> = s
        .ports
        .iter()
        .map(|p| json!({"port_no": p.port_no, "name": p.name}))
        .collect();
    let errors: Vec<Value> = s
        .recent_errors
        .iter()
        .map(|e| {
            json!({
                "xid": e.xid,
                "op": e.op,
                "entry": e.entry,
                "type": e.type_name,
                "code": e.code_name,
            })
        })
        .collect();
    // Reactive-learning counters, null when learning is off.
    let learning = s.learning.map_or(Value::Null, |t| {
        json!({
            "flows": st.learn_flows,
            "floods": st.learn_floods,
            "hairpins": st.learn_hairpins,
            "ignored": st.learn_ignored,
            "shed": st.packet_ins_shed,
            "other": st.packet_ins_other,
            "learnt_at_connect": st.learnt_at_connect,
            "errors": st.learn_errors,
            "macs_learnt": t.learnt,
            "macs_evicted": t.evicted,
            "mac_capacity": t.capacity,
        })
    });
    json!({
        "dpid": s.dpid.map(dpid_text),
        "address": s.address.to_string(),
        "phase": s.phase.name(),
        "n_tables": s.features.map(|f| f.n_tables),
        "n_buffers": s.features.map(|f| f.n_buffers),
        "ports": ports,
        "connected_since": format_unix_ms(s.connected_since_unix_ms),
        "connected_s": s.connected_ms as f64 / 1e3,
        "msgs_in": st.msgs_in,
        "msgs_out": st.msgs_out,
        "bytes_in": st.bytes_in,
        "bytes_out": st.bytes_out,
        "flow_mods": st.flow_mods,
        "flow_mods_confirmed": st.flow_mods_confirmed,
        "meter_mods": st.meter_mods,
        "unconfirmed": s.unconfirmed,
        "barriers": st.barriers,
        "pending_barriers": s.pending_barriers,
        "errors": st.errors,
        "flow_mod_errors": st.flow_mod_errors,
        "malformed": st.malformed,
        "partial_inputs": st.partial_inputs,
        "echo_requests": st.echo_requests,
        "packet_ins": st.packet_ins,
        "learning": learning,
        "installed": s.installed,
        "in_sync": s.in_sync,
        "recent_errors": errors,
    })
}

/// The `table` reply.
fn table_json(t: &TableView) -> Value {
    let meters = |m: &std::collections::BTreeMap<u32, crate::openflow::DropMeter>| -> Vec<Value> {
        m.iter()
            .map(|(id, meter)| json!({"id": id, "rate_pps": meter.rate}))
            .collect()
    };
    let differences: Vec<Value> = t
        .differences
        .iter()
        .map(|(op, entry)| json!({"op": op.name(), "entry": entry}))
        .collect();
    json!({
        "dpid": dpid_text(t.dpid),
        "address": t.address.to_string(),
        "phase": t.phase.name(),
        "installed": t.installed,
        "desired": t.desired,
        "differences": differences,
        "in_sync": t.in_sync,
        "learning": t.learning.map(|l| json!({
            "table": l.table_id,
            "cookie": format!("0x{:016x}", l.cookie),
        })),
        "meters": {
            "installed": meters(&t.installed_meters),
            "desired": meters(&t.desired_meters),
        },
    })
}

/// The OpenFlow thread's part of `stats`.
fn openflow_summary_json(s: &OfSummary) -> Value {
    json!({
        "listen": s.listen.to_string(),
        "switches": s.switches,
        "ready": s.ready,
        "accepted": s.accepted,
        "closed": s.closed,
        "desired_entries": s.desired_entries,
        "flow_mods": s.flow_mods,
        "flow_mods_confirmed": s.flow_mods_confirmed,
        "flow_mod_errors": s.flow_mod_errors,
        "pending_barriers": s.pending_barriers,
        "malformed": s.malformed,
        "learning_table": s.learning_table,
        "packet_ins": s.packet_ins,
        "learn_flows": s.learn_flows,
        "learn_floods": s.learn_floods,
        "packet_ins_shed": s.packet_ins_shed,
    })
}

/// The `state` reply without a key.
fn instances_json(i: &Instances) -> Value {
    let modules: Vec<Value> = i
        .modules
        .iter()
        .map(|d| json!({"name": d.name, "states": d.states, "initial": d.initial}))
        .collect();
    json!({"modules": modules, "instances": i.instances})
}

/// The `changes` reply.
fn changes_json(recent: &RecentChanges) -> Value {
    let changes: Vec<Value> = recent
        .changes
        .iter()
        .map(|r| {
            json!({
                "unix_ms": r.unix_ms,
                "time": format_unix_ms(r.unix_ms),
                "module": r.module,
                "key": r.key,
                "from": r.from,
                "to": r.to,
                "cause": r.cause.name(),
            })
        })
        .collect();
    json!({"total": recent.total, "changes": changes})
}

/// The `policy` reply.
fn policy_json(view: &PolicyView) -> Value {
    let rules: Vec<Value> = view
        .rules
        .iter()
        .map(|r| {
            json!({
                "table": r.table,
                "priority": r.priority,
                "match": r.pattern.to_string(),
                "actions": format_actions(&r.actions),
            })
        })
        .collect();
    let meters: Vec<Value> = view
        .meters
        .iter()
        .map(|(id, rate)| json!({"id": id, "rate_pps": rate}))
        .collect();
    json!({"main": view.main, "rules": rules, "meters": meters})
}

/// Actions in ovs-ofctl's words.
pub fn format_actions(actions: &[policy::Action]) -> String {
    if actions.is_empty() {
        return "drop".into();
    }
    actions
        .iter()
        .map(|a| match a {
            policy::Action::Meter(id) => format!("meter:{id}"),
            policy::Action::Set(f, v) => format!("set_field:{}->{}", v, f.name()),
            policy::Action::Output(o) => format!("output:{o}"),
            policy::Action::Group(b) => format!("group({} buckets)", b.len()),
            policy::Action::Goto(t) => format!("goto_table:{t}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::learning::LearningConfig;
    use crate::openflow::session::Phase;
    use crate::openflow::table::FlowOp;
    use crate::openflow::DropMeter;

    #[test]
    fn a_table_view_reads_as_the_table_reply() {
        let meter = |rate| DropMeter {
            rate,
            ..DropMeter::default()
        };
        let view = TableView {
            dpid: 7,
            address: "127.0.0.1:40000".parse().expect("address"),
            phase: Phase::Ready,
            installed: vec![" table=0, priority=0 actions=drop".into()],
            desired: vec![],
            differences: vec![(FlowOp::Delete, " table=0, priority=0 actions=drop".into())],
            in_sync: false,
            learning: Some(LearningConfig {
                table_id: 251,
                ..LearningConfig::default()
            }),
            installed_meters: [(1, meter(100))].into(),
            desired_meters: [(1, meter(100)), (2, meter(5))].into(),
        };
        assert_eq!(
            table_json(&view),
            json!({
                "dpid": "0000000000000007",
                "address": "127.0.0.1:40000",
                "phase": "ready",
                "installed": [" table=0, priority=0 actions=drop"],
                "desired": [],
                "differences": [{"op": "delete", "entry": " table=0, priority=0 actions=drop"}],
                "in_sync": false,
                "learning": {"table": 251, "cookie": "0x5245464c00000001"},
                "meters": {
                    "installed": [{"id": 1, "rate_pps": 100}],
                    "desired": [{"id": 1, "rate_pps": 100}, {"id": 2, "rate_pps": 5}],
                },
            })
        );
    }
}
