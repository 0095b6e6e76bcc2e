//! `stats` (the control reply, as JSON) → Prometheus text exposition format 0.0.4.
//!
//! Every family is written once, `# HELP` and `# TYPE` first, then all its samples; counter
//! names end in `_total`; label values are escaped. A field missing from the stats (an
//! older daemon, a subsystem not running) is exported as 0 rather than left out, so
//! queries and alerts do not silently match nothing; the HELP text says when a number is
//! only a placeholder.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use serde_json::Value;

use super::OpenflowMetrics;

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Kind of a metric family.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Summary,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Summary => "summary",
        }
    }
}

struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.name());
    }

    fn sample(&mut self, name: &str, labels: &[(&str, String)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.text, "{k}=\"{v}\"");
            }
            self.text.push('}');
        }
        self.text.push(' ');
        self.text.push_str(&number(value));
        self.text.push('\n');
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// A sample value as Prometheus spells it.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// Per-worker counters from `stats.per_worker`: (json field, metric, help).
const WORKER_COUNTERS: &[(&str, &str, &str)] = &[
    (
        "datagrams",
        "reflex_sflow_datagrams_total",
        "sFlow datagrams received, by ingest worker.",
    ),
    (
        "bytes",
        "reflex_sflow_bytes_total",
        "Bytes of sFlow datagrams received (UDP payload), by ingest worker.",
    ),
    (
        "batches",
        "reflex_sflow_batches_total",
        "recvmmsg batches that returned datagrams, by ingest worker.",
    ),
    (
        "truncated",
        "reflex_sflow_truncated_total",
        "Datagrams longer than the receive buffer (cut), by ingest worker.",
    ),
    (
        "lost_datagrams",
        "reflex_sflow_lost_datagrams_total",
        "Datagrams missing from agents' sequence numbers (gaps), by ingest worker.",
    ),
    (
        "agent_restarts",
        "reflex_sflow_sequence_restarts_total",
        "Agent sequence numbers that went back (agent restarted), by ingest worker.",
    ),
    (
        "recv_errors",
        "reflex_sflow_recv_errors_total",
        "Failed receive calls, by ingest worker.",
    ),
    (
        "detections",
        "reflex_events_detected_total",
        "Threshold crossings detected, by ingest worker.",
    ),
    (
        "events_dropped",
        "reflex_events_dropped_total",
        "Threshold events dropped because the policy thread's queue and the worker's backlog were full, by ingest worker.",
    ),
    (
        "events_suppressed",
        "reflex_events_suppressed_total",
        "Threshold crossings not fired because the table of disarmed keys was full (each key fires at most once until it re-arms), by ingest worker.",
    ),
    (
        "events_retried",
        "reflex_events_retried_total",
        "Threshold events the policy thread's queue refused at first and took later from the worker's backlog, by ingest worker.",
    ),
];

/// Renders the `stats` reply (and the OpenFlow counters) as a scrape body.
pub fn render(stats: &Value, openflow: &OpenflowMetrics) -> String {
    let mut o = Out {
        text: String::with_capacity(8192),
    };
    let sflow = &stats["sflow"];
    let events = &stats["events"];
    let workers: Vec<&Value> = stats["per_worker"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let wlabel = |w: &Value| vec![("worker", w["worker"].to_string())];

    o.family(
        "reflex_build_info",
        Kind::Gauge,
        "Always 1; the version label says which reflexd this is.",
    );
    o.sample(
        "reflex_build_info",
        &[("version", env!("CARGO_PKG_VERSION").to_owned())],
        1.0,
    );
    o.single(
        "reflex_uptime_seconds",
        Kind::Gauge,
        "Seconds since reflexd started.",
        num(&stats["uptime_s"]),
    );
    o.single(
        "reflex_ingest_workers",
        Kind::Gauge,
        "sFlow ingest worker threads.",
        num(&stats["workers"]),
    );

    for (field, name, help) in WORKER_COUNTERS {
        o.family(name, Kind::Counter, help);
        for w in &workers {
            o.sample(name, &wlabel(w), num(&w[*field]));
        }
    }

    o.family(
        "reflex_sflow_samples_total",
        Kind::Counter,
        "sFlow samples decoded, by ingest worker and kind (flow, counter, other).",
    );
    for w in &workers {
        for (kind, field) in [
            ("flow", "flow_samples"),
            ("counter", "counter_samples"),
            ("other", "other_samples"),
        ] {
            let mut l = wlabel(w);
            l.push(("kind", kind.to_owned()));
            o.sample("reflex_sflow_samples_total", &l, num(&w[field]));
        }
    }

    o.family(
        "reflex_sflow_decode_errors_total",
        Kind::Counter,
        "Malformed sFlow datagrams, by ingest worker and error kind.",
    );
    for w in &workers {
        if let Some(kinds) = w["decode_errors"].as_object() {
            for (kind, n) in kinds {
                let mut l = wlabel(w);
                l.push(("kind", kind.clone()));
                o.sample("reflex_sflow_decode_errors_total", &l, num(n));
            }
        }
    }

    o.family(
        "reflex_sflow_kernel_drops_total",
        Kind::Counter,
        "Datagrams the kernel dropped on a worker's full socket buffer (SO_RXQ_OVFL); \
         0 until the worker's first report.",
    );
    for w in &workers {
        o.sample(
            "reflex_sflow_kernel_drops_total",
            &wlabel(w),
            num(&w["kernel_drops"]),
        );
    }

    o.single(
        "reflex_sflow_untracked_agents_total",
        Kind::Counter,
        "Datagrams from agents beyond the per-worker tracking limit (no gap accounting).",
        num(&sflow["untracked_agents"]),
    );

    let agents: Vec<&Value> = stats["agents"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let alabels = |a: &Value| {
        vec![
            ("agent", a["agent"].as_str().unwrap_or("?").to_owned()),
            ("sub_agent", a["sub_agent"].to_string()),
            ("worker", a["worker"].to_string()),
        ]
    };
    for (field, name, help) in [
        (
            "datagrams",
            "reflex_sflow_agent_datagrams_total",
            "sFlow datagrams received, by agent (and the worker that received them).",
        ),
        (
            "lost",
            "reflex_sflow_agent_lost_datagrams_total",
            "Sequence-number gaps (datagrams lost on the way), by agent.",
        ),
        (
            "restarts",
            "reflex_sflow_agent_restarts_total",
            "Sequence numbers that went back (agent restarts), by agent.",
        ),
        (
            "sample_drops",
            "reflex_sflow_agent_sample_drops_total",
            "Samples the agent itself reports dropping (sFlow `drops` field), by agent.",
        ),
    ] {
        o.family(name, Kind::Counter, help);
        for a in &agents {
            o.sample(name, &alabels(a), num(&a[field]));
        }
    }

    o.single(
        "reflex_events_delivered_total",
        Kind::Counter,
        "Threshold events taken by the policy thread.",
        num(&events["delivered"]),
    );
    summary(
        &mut o,
        "reflex_event_latency_seconds",
        "Datagram received (recvmmsg return) to threshold event taken by the policy thread.",
        &events["latency"],
    );
    summary(
        &mut o,
        "reflex_reaction_latency_seconds",
        "Datagram received to the reaction's rule delta handed to the OpenFlow side.",
        &events["reaction_latency"],
    );
    o.single(
        "reflex_fsm_changes_total",
        Kind::Counter,
        "FSM instances that changed state (threshold reactions, control events, timers).",
        num(&events["fsm_changes"]),
    );
    o.single(
        "reflex_journal_errors_total",
        Kind::Counter,
        "FSM journal writes or compactions that failed (changes that will not survive a restart).",
        num(&events["journal_errors"]),
    );

    let wired = openflow.is_wired();
    let note = if wired {
        ""
    } else {
        " Always 0: no OpenFlow server feeds this metric in this build (reflex_openflow_wired 0)."
    };
    let r = Ordering::Relaxed;
    o.single(
        "reflex_openflow_wired",
        Kind::Gauge,
        "1 when an OpenFlow server fills the reflex_openflow_* metrics, 0 when they are placeholders.",
        if wired { 1.0 } else { 0.0 },
    );
    o.single(
        "reflex_openflow_switches",
        Kind::Gauge,
        &format!("Switches connected with a completed OpenFlow handshake.{note}"),
        openflow.switches.load(r) as f64,
    );
    o.single(
        "reflex_openflow_connections_total",
        Kind::Counter,
        &format!("Switch connections accepted (reconnects included).{note}"),
        openflow.connections.load(r) as f64,
    );
    o.single(
        "reflex_openflow_flow_mods_total",
        Kind::Counter,
        &format!("FLOW_MOD messages sent to switches.{note}"),
        openflow.flow_mods.load(r) as f64,
    );
    o.single(
        "reflex_openflow_errors_total",
        Kind::Counter,
        &format!("OpenFlow ERROR messages received from switches.{note}"),
        openflow.errors.load(r) as f64,
    );
    o.text
}

/// A latency summary from `{count, p50_us, p99_us, max_us, sum_us}`.
fn summary(o: &mut Out, name: &str, help: &str, v: &Value) {
    o.family(name, Kind::Summary, help);
    for (q, field) in [("0.5", "p50_us"), ("0.99", "p99_us"), ("1", "max_us")] {
        o.sample(name, &[("quantile", q.to_owned())], num(&v[field]) / 1e6);
    }
    o.sample(&format!("{name}_sum"), &[], num(&v["sum_us"]) / 1e6);
    o.sample(&format!("{name}_count"), &[], num(&v["count"]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stats() -> Value {
        json!({
            "uptime_s": 12.5,
            "workers": 2,
            "sflow": {"untracked_agents": 0},
            "per_worker": [
                {"worker": 0, "datagrams": 10, "bytes": 13440, "flow_samples": 70,
                 "counter_samples": 1, "other_samples": 0, "decode_errors": {"short": 2, "version": 0},
                 "kernel_drops": 3, "lost_datagrams": 1},
                {"worker": 1, "datagrams": 5, "bytes": 6720, "kernel_drops": null,
                 "decode_errors": {"short": 0, "version": 1}}
            ],
            "agents": [{"agent": "127.0.0.1", "sub_agent": 0, "worker": 0, "datagrams": 10,
                        "lost": 1, "restarts": 0, "sample_drops": 0}],
            "events": {"delivered": 4, "fsm_changes": 1, "journal_errors": 0,
                       "latency": {"count": 4, "p50_us": 40.0, "p99_us": 120.0, "max_us": 130.0, "sum_us": 300.0},
                       "reaction_latency": {"count": 1, "p50_us": 50.0, "p99_us": 50.0, "max_us": 50.0, "sum_us": 50.0}},
        })
    }

    #[test]
    fn families_come_once_with_help_and_type_first() {
        let text = render(&stats(), &OpenflowMetrics::default());
        let mut seen = std::collections::HashSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_owned();
                assert!(seen.insert(name.clone()), "family {name} twice");
                current = name;
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                assert!(rest.starts_with(&format!("{current} ")), "{line}");
            } else {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(name.starts_with(&current), "{line} outside {current}");
            }
        }
    }

    #[test]
    fn samples_carry_worker_kind_and_agent_labels() {
        let text = render(&stats(), &OpenflowMetrics::default());
        for want in [
            "reflex_uptime_seconds 12.5\n",
            "reflex_sflow_datagrams_total{worker=\"0\"} 10\n",
            "reflex_sflow_datagrams_total{worker=\"1\"} 5\n",
            "reflex_sflow_samples_total{worker=\"0\",kind=\"flow\"} 70\n",
            "reflex_sflow_decode_errors_total{worker=\"0\",kind=\"short\"} 2\n",
            "reflex_sflow_decode_errors_total{worker=\"1\",kind=\"version\"} 1\n",
            "reflex_sflow_kernel_drops_total{worker=\"0\"} 3\n",
            "reflex_sflow_kernel_drops_total{worker=\"1\"} 0\n",
            "reflex_sflow_agent_lost_datagrams_total{agent=\"127.0.0.1\",sub_agent=\"0\",worker=\"0\"} 1\n",
            "reflex_event_latency_seconds{quantile=\"0.99\"} 0.00012\n",
            "reflex_event_latency_seconds_sum 0.0003\n",
            "reflex_event_latency_seconds_count 4\n",
            "reflex_fsm_changes_total 1\n",
            "reflex_openflow_wired 0\n",
            "reflex_openflow_flow_mods_total 0\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(text.contains("no OpenFlow server feeds this metric"));
        let build = format!(
            "reflex_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&build), "{text}");
    }

    #[test]
    fn wired_openflow_counters_are_exported_without_the_placeholder_note() {
        let of = OpenflowMetrics::default();
        of.mark_wired();
        of.flow_mods.store(7, Ordering::Relaxed);
        of.switches.store(1, Ordering::Relaxed);
        let text = render(&stats(), &of);
        assert!(text.contains("reflex_openflow_wired 1\n"));
        assert!(text.contains("reflex_openflow_flow_mods_total 7\n"));
        assert!(text.contains("reflex_openflow_switches 1\n"));
        assert!(!text.contains("no OpenFlow server feeds"));
    }

    #[test]
    fn missing_fields_are_zero_and_odd_values_are_escaped() {
        let text = render(
            &json!({"agents": [{"agent": "a\"b\\c\nd"}]}),
            &OpenflowMetrics::default(),
        );
        assert!(text.contains("reflex_uptime_seconds 0\n"));
        assert!(text.contains(r#"agent="a\"b\\c\nd""#), "{text}");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(-3.0), "-3");
        assert_eq!(number(0.25), "0.25");
    }
}
