//! Names for what crosses the threads as numbers (flow index, threshold id, flow key), so
//! logs and control replies speak the configuration's words. Built once at start, shared
//! read-only.

use crate::flow::definition::FlowDef;
use crate::flow::key::FlowKey;
use crate::flow::{FlowSet, ThresholdId};

/// Names needed to print events and flows (for people: logs and control replies).
pub struct Names {
    defs: Vec<FlowDef>,
    thresholds: Vec<String>,
}

impl Names {
    /// The names of `flows`' definitions and thresholds.
    pub fn new(flows: &FlowSet) -> Names {
        Names {
            defs: flows.defs().cloned().collect(),
            thresholds: flows.thresholds().map(|(_, n, _)| n.to_owned()).collect(),
        }
    }

    /// The flow definitions, in index order.
    pub fn defs(&self) -> &[FlowDef] {
        &self.defs
    }

    /// Flow `i`'s name (`?` if there is none).
    pub fn flow_name(&self, i: u16) -> &str {
        self.defs.get(i as usize).map_or("?", |d| d.name.as_str())
    }

    /// The threshold's name (`?` if there is none).
    pub fn threshold_name(&self, t: ThresholdId) -> &str {
        self.thresholds.get(t.index()).map_or("?", |s| s.as_str())
    }

    /// `key` as flow `flow` prints its keys.
    pub fn key_text(&self, flow: u16, key: &FlowKey) -> String {
        self.defs
            .get(flow as usize)
            .map_or_else(|| format!("{key:?}"), |d| d.format_key(key))
    }
}
