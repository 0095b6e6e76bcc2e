//! The per-worker measurement engine: every flow definition with its sketch, top-k and
//! thresholds, updated inline for each sample.
//!
//! One engine belongs to one ingest thread. It writes only its own sketch counters; with
//! several workers it also reads the others' (relaxed atomic loads) when a key is a
//! candidate for a network-wide threshold, and settles who fires in the threshold's gate
//! (one compare-exchange): see [`crate::flow::network`]. So the per-sample path takes no lock
//! and allocates nothing. Threshold crossings are decided here, on the estimate the sample
//! just updated, rather than by a periodic scan. Queries ([`FlowEngine::snapshot`],
//! [`FlowEngine::rate`]) give network-wide rates, the ones the thresholds compare.

use std::sync::Arc;

use crate::flow::definition::FlowDef;
use crate::flow::key::FlowKey;
use crate::flow::network::{FireGate, GateVerdict, Network, RecentReads};
use crate::flow::sample::Sample;
use crate::flow::sketch::{DecayedCountMin, SketchCells, MAX_DEPTH};
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
    /// The smoothed rate per second that crossed (network-wide unless the threshold's scope
    /// is the agent).
    pub value: f64,
}

/// One threshold as a worker holds it.
struct Watch {
    id: ThresholdId,
    state: ThresholdState,
    /// Samples of evidence needed.
    min_samples: f64,
    /// Network scope: the gate shared by the workers, and the keys whose sum was read lately.
    network: Option<(Arc<FireGate>, RecentReads)>,
    /// Crossings the gate suppressed (its bucket full of other disarmed keys).
    gate_suppressed: u64,
}

struct FlowState {
    def: FlowDef,
    sketch: DecayedCountMin,
    top: TopK,
    thresholds: Vec<Watch>,
    tau_secs: f64,
    /// Every worker's counters of this flow (this one's included); empty when alone.
    peers: Vec<Arc<SketchCells>>,
}

impl FlowState {
    /// The key's network-wide rate at `now_ns`: the count-min estimate of the workers'
    /// sketches added together (min over rows of the sums); `local` when alone.
    #[inline]
    fn network_rate(
        sketch: &DecayedCountMin,
        peers: &[Arc<SketchCells>],
        hash: u64,
        local: f64,
        now_ns: u64,
    ) -> f64 {
        if peers.len() <= 1 {
            return local;
        }
        let depth = sketch.depth().min(MAX_DEPTH);
        let at = sketch.slots(hash);
        let mut sums = [0.0f64; MAX_DEPTH];
        let clock = sketch.clock();
        for cells in peers {
            cells.add_into(&at[..depth], &mut sums[..depth], |landmark| {
                clock.down_from(landmark, now_ns)
            });
        }
        let min = sums[..depth].iter().copied().fold(f64::INFINITY, f64::min);
        // The owner's own estimate can only be lower if a read raced a rescale; never go
        // below what this worker alone measured.
        (min * sketch.inv_tau_secs()).max(local)
    }
}

/// All flows of one worker.
pub struct FlowEngine {
    flows: Vec<FlowState>,
    /// Workers sharing the network (1 when alone).
    workers: f64,
}

/// A flow's top keys at one moment, for queries.
#[derive(Clone, Debug, PartialEq)]
pub struct TopSnapshot {
    pub flow: u16,
    pub top: Vec<(FlowKey, f64)>,
}

impl FlowEngine {
    /// Builds every flow and threshold of `set` for a worker alone, with memory fixed from
    /// here on.
    pub fn new(set: &FlowSet) -> Result<FlowEngine, EngineError> {
        FlowEngine::for_worker(set, &Network::new(set, 1), 0)
    }

    /// Builds worker `worker`'s engine of `network` (built from the same `set`): it writes
    /// that worker's counters and reads the others'.
    pub fn for_worker(
        set: &FlowSet,
        network: &Network,
        worker: usize,
    ) -> Result<FlowEngine, EngineError> {
        let mut flows = Vec::with_capacity(set.flows.len());
        for (fi, f) in set.flows.iter().enumerate() {
            let peers = network.cells(fi);
            let Some(own) = peers.get(worker) else {
                return Err(EngineError {
                    flow: f.def.name.clone(),
                    message: format!(
                        "worker {worker} of a network of {} workers",
                        network.workers()
                    ),
                });
            };
            DecayedCountMin::check(f.sketch_width, f.sketch_depth, f.def.t).map_err(|e| {
                EngineError {
                    flow: f.def.name.clone(),
                    message: e.to_string(),
                }
            })?;
            let sketch =
                DecayedCountMin::on_cells(own.clone(), f.sketch_width, f.sketch_depth, f.def.t);
            flows.push(FlowState {
                def: f.def.clone(),
                sketch,
                top: TopK::new(f.top, f.def.t),
                thresholds: Vec::new(),
                tau_secs: f.def.t,
                peers: if peers.len() > 1 {
                    peers.to_vec()
                } else {
                    Vec::new()
                },
            });
        }
        for (ti, t) in set.thresholds.iter().enumerate() {
            let flow = &mut flows[t.flow];
            let state = ThresholdState::new(t.config, flow.tau_secs);
            let network = network
                .gate(ti)
                .map(|g| (g.clone(), RecentReads::new(flow.tau_secs)));
            flow.thresholds.push(Watch {
                id: ThresholdId(ti as u16),
                state,
                min_samples: t.min_samples,
                network,
                gate_suppressed: 0,
            });
        }
        Ok(FlowEngine {
            flows,
            workers: network.workers() as f64,
        })
    }

    /// Accounts one sample in every flow whose filter it passes; reports crossings to `on`.
    #[inline]
    pub fn observe(&mut self, sample: &Sample, now_ns: u64, on: &mut impl FnMut(Detection)) {
        let workers = self.workers;
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
            let needed = |min_samples: f64| min_samples * weight * (1.0 - 1e-9);
            let (sketch, peers, tau) = (&flow.sketch, &flow.peers, flow.tau_secs);
            // The network-wide sum, read at most once per sample.
            let mut sum = None;
            for watch in flow.thresholds.iter_mut() {
                watch.state.sync_clock(now_ns, clock);
                let fired = match &mut watch.network {
                    None => {
                        let evident = rate * tau >= needed(watch.min_samples);
                        watch
                            .state
                            .check_with_evidence(&key, hash, rate, now_ns, evident)
                            .map(|c| c.value)
                    }
                    Some((gate, recent)) => {
                        let value = watch.state.config().value;
                        // Not a candidate: this worker's share cannot tip the sum over.
                        if rate * workers <= value || recent.fresh(hash, now_ns) {
                            continue;
                        }
                        let s = *sum.get_or_insert_with(|| {
                            FlowState::network_rate(sketch, peers, hash, rate, now_ns)
                        });
                        let evident = s * tau >= needed(watch.min_samples);
                        let local = watch
                            .state
                            .check_with_evidence(&key, hash, s, now_ns, evident);
                        if s > value && evident {
                            // Disarmed (by this crossing or an earlier one): the sum is not
                            // read again for a while.
                            recent.note(hash, now_ns);
                        }
                        match local {
                            Some(c) => match gate.try_fire(hash, c.value, now_ns) {
                                GateVerdict::Fire => Some(c.value),
                                GateVerdict::Held => None,
                                GateVerdict::Full => {
                                    watch.gate_suppressed += 1;
                                    None
                                }
                            },
                            None => {
                                if s > value && evident {
                                    gate.extend(hash, s, now_ns);
                                }
                                None
                            }
                        }
                    }
                };
                if let Some(value) = fired {
                    on(Detection {
                        threshold: watch.id,
                        flow: fi as u16,
                        key,
                        value,
                    });
                }
            }
        }
    }

    /// Re-arms `threshold` for `key` (waives its timeout, network-wide for a network-scope
    /// threshold); false if the key was armed already on this worker or the threshold is not
    /// per key.
    pub fn rearm(&mut self, threshold: ThresholdId, key: &FlowKey) -> bool {
        let hash = key.hash64();
        self.flows
            .iter_mut()
            .flat_map(|f| f.thresholds.iter_mut())
            .filter(|w| w.id == threshold)
            .fold(false, |done, w| {
                if let Some((gate, _)) = &w.network {
                    if w.state.config().by_flow {
                        gate.waive(hash);
                    }
                }
                w.state.rearm(key, hash) || done
            })
    }

    /// Crossings not fired because a table of disarmed keys was full (this worker's
    /// threshold states and the network gates), over every threshold: each key still fires
    /// at most once until it re-arms.
    pub fn suppressed(&self) -> u64 {
        self.flows
            .iter()
            .flat_map(|f| f.thresholds.iter())
            .map(|w| w.state.suppressed() + w.gate_suppressed)
            .sum()
    }

    /// The current top keys of every flow with their network-wide rates (allocates: call
    /// it off the per-sample path).
    pub fn snapshot(&self, now_ns: u64) -> Vec<TopSnapshot> {
        self.flows
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let mut top = Vec::new();
                f.top.snapshot(now_ns, &mut top);
                if f.peers.len() > 1 {
                    for (key, rate) in &mut top {
                        *rate = FlowState::network_rate(
                            &f.sketch,
                            &f.peers,
                            key.hash64(),
                            *rate,
                            now_ns,
                        );
                    }
                    top.sort_by(|a, b| b.1.total_cmp(&a.1));
                }
                TopSnapshot {
                    flow: i as u16,
                    top,
                }
            })
            .collect()
    }

    /// The estimated network-wide rate of one key in flow `flow`, if that flow exists.
    pub fn rate(&self, flow: usize, key: &FlowKey, now_ns: u64) -> Option<f64> {
        self.flows.get(flow).map(|f| {
            let hash = key.hash64();
            let local = f.sketch.rate(hash, now_ns);
            FlowState::network_rate(&f.sketch, &f.peers, hash, local, now_ns)
        })
    }

    /// Bytes of sketch, top-k and threshold memory this worker holds (fixed at
    /// construction; the counters other workers read are counted by their owners).
    pub fn memory_bytes(&self) -> usize {
        self.flows
            .iter()
            .map(|f| {
                f.sketch.memory_bytes()
                    + f.top.memory_bytes()
                    + f.thresholds
                        .iter()
                        .map(|w| {
                            w.state.memory_bytes()
                                + w.network.as_ref().map_or(0, |(_, r)| r.memory_bytes())
                        })
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
