//! What a flow engine is built from: flows and thresholds as the caller states them (the
//! daemon's configuration, a test, a bench), and [`FlowSet`], the same specs validated once.
//!
//! Every worker's [`FlowEngine`](super::engine::FlowEngine) is built from one `FlowSet`, so
//! a set that was accepted builds an engine on every worker; queries use the set's
//! definitions to print keys. [`ThresholdId`] is how crossings and re-arms name a threshold.

use super::definition::{FlowDef, ValueKind};
use super::sketch::DecayedCountMin;
use super::threshold::ThresholdConfig;

/// Index of a threshold in its [`FlowSet`] (the order the specs were given in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThresholdId(pub u16);

impl ThresholdId {
    /// The index as a `usize`.
    #[inline]
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// Whose rate a threshold watches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThresholdScope {
    /// The key's rate summed over every ingest worker (every agent, wherever its datagrams
    /// land): one event per crossing, the same whatever the number of workers.
    #[default]
    Network,
    /// The key's rate as one ingest worker measures it from the datagrams it receives, with
    /// an armed state per worker (Reflex before network-wide thresholds). The kernel keeps
    /// each agent's datagrams on one worker, so this is sFlow-RT's per-agent threshold when
    /// there is one worker per agent; several agents hashed to one worker add up, and two
    /// workers may each fire for the same key. For a strictly per-agent rate put `agent`
    /// among the flow's keys (with the network scope).
    Agent,
}

/// A flow as stated: sFlow-RT's definition plus the memory its sketch and top-k take.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowSpec {
    /// Name, `[A-Za-z0-9_-]+`.
    pub name: String,
    /// sFlow-RT's comma list of key fields (`ipsource,ipdestination`).
    pub keys: String,
    /// What is counted.
    pub value: ValueKind,
    /// sFlow-RT filter text.
    pub filter: Option<String>,
    /// Smoothing time constant, seconds.
    pub t: f64,
    /// Counters per sketch row.
    pub sketch_width: usize,
    /// Sketch rows.
    pub sketch_depth: usize,
    /// Keys the top-k keeps.
    pub top: usize,
}

impl FlowSpec {
    /// A flow counting frames by `keys`, with the configuration's defaults for the rest.
    pub fn new(name: &str, keys: &str) -> FlowSpec {
        FlowSpec {
            name: name.to_owned(),
            keys: keys.to_owned(),
            value: ValueKind::Frames,
            filter: None,
            t: 1.0,
            sketch_width: 4096,
            sketch_depth: 4,
            top: 64,
        }
    }
}

/// A threshold on a flow's per-key rate, as stated.
#[derive(Clone, Debug, PartialEq)]
pub struct ThresholdSpec {
    /// Name (reactions refer to it).
    pub name: String,
    /// The flow whose rates it watches.
    pub flow: String,
    /// Rate per second above which it fires.
    pub value: f64,
    /// One armed state per key (true) or one for the whole flow.
    pub by_flow: bool,
    /// Seconds at or below `value` before a key re-arms.
    pub timeout_s: f64,
    /// Keys tracked as triggered at once (fixed memory).
    pub capacity: usize,
    /// Samples' worth of evidence needed before an event.
    pub min_samples: f64,
    /// Network-wide (default) or per worker.
    pub scope: ThresholdScope,
}

impl ThresholdSpec {
    /// A per-key threshold on `flow` at `value`/s, with the configuration's defaults.
    pub fn new(name: &str, flow: &str, value: f64) -> ThresholdSpec {
        ThresholdSpec {
            name: name.to_owned(),
            flow: flow.to_owned(),
            value,
            by_flow: true,
            timeout_s: 10.0,
            capacity: 4096,
            min_samples: 1.0,
            scope: ThresholdScope::Network,
        }
    }
}

/// Why flow specs cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("flow `{flow}`: {message}")]
pub struct EngineError {
    pub flow: String,
    pub message: String,
}

#[derive(Clone, Debug)]
pub(crate) struct BuiltFlow {
    pub(crate) def: FlowDef,
    pub(crate) sketch_width: usize,
    pub(crate) sketch_depth: usize,
    pub(crate) top: usize,
}

#[derive(Clone, Debug)]
pub(crate) struct BuiltThreshold {
    pub(crate) name: String,
    pub(crate) flow: usize,
    pub(crate) config: ThresholdConfig,
    pub(crate) min_samples: f64,
    pub(crate) scope: ThresholdScope,
}

/// Flow and threshold specs, validated: every engine built from it is built the same way.
#[derive(Clone, Debug)]
pub struct FlowSet {
    pub(crate) flows: Vec<BuiltFlow>,
    pub(crate) thresholds: Vec<BuiltThreshold>,
}

impl FlowSet {
    /// Checks every flow (keys, filter, smoothing, sketch size) and resolves every
    /// threshold's flow.
    pub fn new(flows: &[FlowSpec], thresholds: &[ThresholdSpec]) -> Result<FlowSet, EngineError> {
        let mut built = Vec::with_capacity(flows.len());
        for f in flows {
            let err = |message: String| EngineError {
                flow: f.name.clone(),
                message,
            };
            let def = FlowDef::new(&f.name, &f.keys, f.value, f.filter.as_deref(), f.t)
                .map_err(|e| err(e.to_string()))?;
            DecayedCountMin::check(f.sketch_width, f.sketch_depth, f.t)
                .map_err(|e| err(e.to_string()))?;
            built.push(BuiltFlow {
                def,
                sketch_width: f.sketch_width,
                sketch_depth: f.sketch_depth,
                top: f.top,
            });
        }
        if thresholds.len() > usize::from(u16::MAX) {
            return Err(EngineError {
                flow: String::new(),
                message: format!("{} thresholds, more than {}", thresholds.len(), u16::MAX),
            });
        }
        let mut resolved = Vec::with_capacity(thresholds.len());
        for t in thresholds {
            let Some(flow) = built.iter().position(|f| f.def.name == t.flow) else {
                return Err(EngineError {
                    flow: t.flow.clone(),
                    message: format!("threshold `{}` names no such flow", t.name),
                });
            };
            resolved.push(BuiltThreshold {
                name: t.name.clone(),
                flow,
                config: ThresholdConfig {
                    value: t.value,
                    by_flow: t.by_flow,
                    timeout_ns: (t.timeout_s * 1e9) as u64,
                    capacity: t.capacity,
                },
                min_samples: t.min_samples,
                scope: t.scope,
            });
        }
        Ok(FlowSet {
            flows: built,
            thresholds: resolved,
        })
    }

    /// The flow definitions, indexed as detections name them.
    pub fn defs(&self) -> impl ExactSizeIterator<Item = &FlowDef> {
        self.flows.iter().map(|f| &f.def)
    }

    /// One flow's definition.
    pub fn def(&self, flow: usize) -> Option<&FlowDef> {
        self.flows.get(flow).map(|f| &f.def)
    }

    /// Every threshold: its id, name and the definition of the flow it watches.
    pub fn thresholds(&self) -> impl ExactSizeIterator<Item = (ThresholdId, &str, &FlowDef)> {
        self.thresholds.iter().enumerate().map(|(i, t)| {
            (
                ThresholdId(i as u16),
                t.name.as_str(),
                &self.flows[t.flow].def,
            )
        })
    }

    /// A threshold's name.
    pub fn threshold_name(&self, id: ThresholdId) -> Option<&str> {
        self.thresholds.get(id.index()).map(|t| t.name.as_str())
    }

    /// The index of the flow a threshold watches.
    pub fn threshold_flow(&self, id: ThresholdId) -> Option<usize> {
        self.thresholds.get(id.index()).map(|t| t.flow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_checked_and_thresholds_resolved() {
        let flows = [FlowSpec::new("a", "ipsource"), FlowSpec::new("b", "vlan")];
        let set = FlowSet::new(&flows, &[ThresholdSpec::new("t", "b", 1.0)]).unwrap();
        assert_eq!(set.threshold_flow(ThresholdId(0)), Some(1));
        assert_eq!(set.threshold_name(ThresholdId(0)), Some("t"));
        assert_eq!(set.defs().len(), 2);
        let e = FlowSet::new(&flows, &[ThresholdSpec::new("t", "c", 1.0)]).unwrap_err();
        assert!(e.to_string().contains("names no such flow"), "{e}");
        let mut narrow = FlowSpec::new("n", "ipsource");
        narrow.sketch_depth = 0;
        let e = FlowSet::new(&[narrow], &[]).unwrap_err();
        assert!(e.to_string().starts_with("flow `n`: sketch depth"), "{e}");
        let e = FlowSet::new(&[FlowSpec::new("k", "ipsrc")], &[]).unwrap_err();
        assert!(e.to_string().contains("unknown flow key"), "{e}");
    }
}
