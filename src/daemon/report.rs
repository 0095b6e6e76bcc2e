//! Pieces of the control replies that the operator's tools (metrics, `reflexctl top`,
//! `reflexctl record`) rely on: per-worker ingest counters and the thresholds on a flow.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::config::Config;
use crate::ingest::WorkerStats;
use crate::sflow::DecodeError;

use super::ingest::WorkerReport;

/// Each worker's counters, in worker order (`stats.per_worker`).
pub fn per_worker(stats: &[Arc<WorkerStats>], latest: &HashMap<usize, WorkerReport>) -> Value {
    let r = Ordering::Relaxed;
    let rows: Vec<Value> = stats
        .iter()
        .enumerate()
        .map(|(id, s)| {
            let mut errors = serde_json::Map::new();
            for kind in DecodeError::ALL {
                errors.insert(
                    kind.name().to_owned(),
                    json!(s.decode_errors[kind.index()].load(r)),
                );
            }
            let report = latest.get(&id);
            json!({
                "worker": id,
                "datagrams": s.datagrams.load(r),
                "bytes": s.bytes.load(r),
                "batches": s.batches.load(r),
                "flow_samples": s.flow_samples.load(r),
                "counter_samples": s.counter_samples.load(r),
                "other_samples": s.other_samples.load(r),
                "truncated": s.truncated.load(r),
                "decode_errors": errors,
                "lost_datagrams": s.lost_datagrams.load(r),
                "agent_restarts": s.agent_restarts.load(r),
                "recv_errors": s.recv_errors.load(r),
                "detections": s.detections.load(r),
                "events_dropped": s.events_dropped.load(r),
                "events_suppressed": s.events_suppressed.load(r),
                "events_retried": s.events_retried.load(r),
                "kernel_drops": report.and_then(|w| w.kernel_drops),
                "rcvbuf": report.map(|w| w.rcvbuf),
            })
        })
        .collect();
    Value::Array(rows)
}

/// The thresholds whose metric is flow `flow` (`flows.thresholds`).
pub fn thresholds_on(config: &Config, flow: &str) -> Value {
    let rows: Vec<Value> = config
        .thresholds
        .iter()
        .filter(|t| t.metric == flow)
        .map(|t| json!({"name": t.name, "value": t.value, "timeout": t.timeout}))
        .collect();
    Value::Array(rows)
}
