//! The per-worker measurement engine: every flow definition with its sketch, top-k and
//! thresholds, updated inline for each sample.
//!
//! One engine belongs to one ingest thread; nothing in it is shared, so the per-sample path
//! takes no lock and allocates nothing. Threshold crossings are decided here, on the
//! estimate the sample just updated, rather than by a periodic scan.

use crate::flow::definition::FlowDef;
use crate::flow::key::FlowKey;
use crate::flow::sample::Sample;
use crate::flow::sketch::DecayedCountMin;
use crate::flow::spec::{FlowSet, ThresholdId};
use crate::flow::threshold::ThresholdState;
use crate::flow::topk::TopK;

pub use crate::flow::spec::EngineError;

/// A threshold crossing found while observing a sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    /// The threshold that crossed.
    pub threshold: ThresholdId,
    /// Index of the flow (the threshold's metric) in the [`FlowSet`].
    pub flow: u16,
    pub key: FlowKey,
    /// The smoothed rate per second that crossed.
    pub value: f64,
}

struct FlowState {
    def: FlowDef,
    sketch: DecayedCountMin,
    top: TopK,
    /// (threshold, state, samples of evidence needed).
    thresholds: Vec<(ThresholdId, ThresholdState, f64)>,
    tau_secs: f64,
}

/// All flows of one worker.
pub struct FlowEngine {
    flows: Vec<FlowState>,
}

/// A flow's top keys at one moment, for queries.
#[derive(Clone, Debug, PartialEq)]
pub struct TopSnapshot {
    pub flow: u16,
    pub top: Vec<(FlowKey, f64)>,
}

impl FlowEngine {
    /// Builds every flow and threshold of `set`, with memory fixed from here on.
    pub fn new(set: &FlowSet) -> Result<FlowEngine, EngineError> {
        let mut flows = Vec::with_capacity(set.flows.len());
        for f in &set.flows {
            let sketch =
                DecayedCountMin::new(f.sketch_width, f.sketch_depth, f.def.t).map_err(|e| {
                    EngineError {
                        flow: f.def.name.clone(),
                        message: e.to_string(),
                    }
                })?;
            flows.push(FlowState {
                def: f.def.clone(),
                sketch,
                top: TopK::new(f.top, f.def.t),
                thresholds: Vec::new(),
                tau_secs: f.def.t,
            });
        }
        for (ti, t) in set.thresholds.iter().enumerate() {
            let flow = &mut flows[t.flow];
            let state = ThresholdState::new(t.config, flow.tau_secs);
            flow.thresholds
                .push((ThresholdId(ti as u16), state, t.min_samples));
        }
        Ok(FlowEngine { flows })
    }

    /// Accounts one sample in every flow whose filter it passes; reports crossings to `on`.
    #[inline]
    pub fn observe(&mut self, sample: &Sample, now_ns: u64, on: &mut impl FnMut(Detection)) {
        for (fi, flow) in self.flows.iter_mut().enumerate() {
            let Some(key) = flow.def.key(sample) else {
                continue;
            };
            let hash = key.hash64();
            let weight = flow.def.value_of(sample);
            let rate = flow.sketch.add(&key, hash, weight, now_ns);
            // One `exp` per timestamp for the three (they share τ and move together).
            let clock = flow.sketch.clock();
            flow.top.sync_clock(now_ns, clock);
            // Sketch estimates only rise (up to decay): most tail keys stop at the minimum.
            flow.top.offer_rising(&key, hash, rate, now_ns);
            // The smoothed count is rate × τ; evidence is that count in units of this
            // sample's weight (its sampling rate, for frames).
            let count = rate * flow.tau_secs;
            for (ti, state, min_samples) in flow.thresholds.iter_mut() {
                state.sync_clock(now_ns, clock);
                let evident = count >= *min_samples * weight * (1.0 - 1e-9);
                if let Some(c) = state.check_with_evidence(&key, hash, rate, now_ns, evident) {
                    on(Detection {
                        threshold: *ti,
                        flow: fi as u16,
                        key: c.key,
                        value: c.value,
                    });
                }
            }
        }
    }

    /// Re-arms `threshold` for `key`; false if the key was armed already or the threshold
    /// is not per key.
    pub fn rearm(&mut self, threshold: ThresholdId, key: &FlowKey) -> bool {
        let hash = key.hash64();
        self.flows
            .iter_mut()
            .flat_map(|f| f.thresholds.iter_mut())
            .filter(|(ti, _, _)| *ti == threshold)
            .fold(false, |done, (_, state, _)| state.rearm(key, hash) || done)
    }

    /// The current top keys of every flow (allocates: call it off the per-sample path).
    pub fn snapshot(&self, now_ns: u64) -> Vec<TopSnapshot> {
        self.flows
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let mut top = Vec::new();
                f.top.snapshot(now_ns, &mut top);
                TopSnapshot {
                    flow: i as u16,
                    top,
                }
            })
            .collect()
    }

    /// The estimated rate of one key in flow `flow`, if that flow exists.
    pub fn rate(&self, flow: usize, key: &FlowKey, now_ns: u64) -> Option<f64> {
        self.flows
            .get(flow)
            .map(|f| f.sketch.rate(key.hash64(), now_ns))
    }

    /// Bytes of sketch, top-k and threshold memory held (fixed at construction).
    pub fn memory_bytes(&self) -> usize {
        self.flows
            .iter()
            .map(|f| {
                f.sketch.memory_bytes()
                    + f.top.memory_bytes()
                    + f.thresholds
                        .iter()
                        .map(|(_, t, _)| t.memory_bytes())
                        .sum::<usize>()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::sample::testing::icmp_sample;
    use crate::flow::spec::{FlowSpec, ThresholdSpec};

    const MS: u64 = 1_000_000;

    fn engine(min_samples: f64) -> FlowEngine {
        let mut flow = FlowSpec::new("ddos", "ipsource");
        flow.t = 0.5;
        let mut threshold = ThresholdSpec::new("ddos", "ddos", 100.0);
        threshold.min_samples = min_samples;
        FlowEngine::new(&FlowSet::new(&[flow], &[threshold]).unwrap()).unwrap()
    }

    /// Feeds `n` samples 1 ms apart at 1-in-`rate` sampling; returns the detections.
    fn feed(e: &mut FlowEngine, n: u64, rate: u32) -> Vec<Detection> {
        let mut s = icmp_sample();
        s.sampling_rate = rate;
        let mut out = Vec::new();
        for i in 0..n {
            e.observe(&s, (1000 + i) * MS, &mut |d| out.push(d));
        }
        out
    }

    #[test]
    fn one_heavily_weighted_sample_is_not_evidence_enough() {
        // One 1-in-100 sample alone is a 200/s estimate with t = 0.5: above 100/s.
        let mut sfl_rt = engine(1.0);
        assert_eq!(feed(&mut sfl_rt, 1, 100).len(), 1);
        let mut gated = engine(4.0);
        assert!(feed(&mut gated, 3, 100).is_empty());
        let fired = feed(&mut gated, 1, 100);
        assert_eq!(fired.len(), 1, "the fourth sample is evidence");
        assert!(fired[0].value > 700.0, "{:?}", fired[0]);
    }

    #[test]
    fn rate_still_decides_when_evidence_is_plentiful() {
        // 1-in-10: 50 frames (5 samples) are needed for 100/s at t = 0.5; 4 samples are not.
        let mut e = engine(4.0);
        assert!(feed(&mut e, 4, 10).is_empty());
        assert_eq!(feed(&mut e, 2, 10).len(), 1);
        // Disarmed: no second event while it stays above.
        assert!(feed(&mut e, 50, 10).is_empty());
    }

    #[test]
    fn a_rearmed_key_waits_for_its_rate_to_fall_but_not_for_the_timeout() {
        // t = 0.5 s, value 100/s, timeout 10 s: a flood at 1 kframes/s, sampled 1-in-10.
        let mut e = engine(1.0);
        let s = icmp_sample();
        let key = e.flows[0].def.key(&s).unwrap();
        let flood = |e: &mut FlowEngine, from_ms: u64| {
            let mut fired = 0;
            for i in 0..100 {
                e.observe(&s, (from_ms + i * 10) * MS, &mut |_| fired += 1);
            }
            fired
        };
        assert_eq!(flood(&mut e, 1000), 1);
        assert!(e.rearm(ThresholdId(0), &key));
        // A late sample of the same flood: the rate is still above, so no second event.
        e.observe(&s, 2000 * MS, &mut |_| panic!("stale evidence fired"));
        // 3 s later the rate has decayed below 100/s, well inside the 10 s timeout: a new
        // flood fires again. Without the re-arm it would not until 10 s below.
        assert_eq!(flood(&mut e, 5000), 1);
        // The waiver is spent: the key is disarmed again with the normal timeout, also when
        // the first sample after the re-arm is already above (re-armed and fired in place).
        assert_eq!(flood(&mut e, 9000), 0);
        assert!(e.rearm(ThresholdId(0), &key));
        let mut heavy = s;
        heavy.sampling_rate = 100;
        let mut fired = 0;
        // One 1-in-100 sample is a 200/s estimate: fires in place on the re-armed slot...
        e.observe(&heavy, 13_000 * MS, &mut |_| fired += 1);
        assert_eq!(fired, 1);
        // ...which spends the waiver: the next one, 2 s later, is inside the timeout again.
        e.observe(&heavy, 15_000 * MS, &mut |_| fired += 1);
        assert_eq!(fired, 1);
        assert!(
            !e.rearm(ThresholdId(0), &FlowKey::EMPTY),
            "an armed key has nothing to re-arm"
        );
    }
}
