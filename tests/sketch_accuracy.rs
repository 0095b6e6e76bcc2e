//! Accuracy of the decayed count-min sketch and top-k table against exact decayed counts,
//! on skewed (Zipf) and uniform streams, and fixed memory under a flood of distinct keys.

use reflex::flow::key::FlowKey;
use reflex::flow::sketch::DecayedCountMin;
use reflex::flow::threshold::{ThresholdConfig, ThresholdState};
use reflex::flow::topk::TopK;

/// Deterministic xorshift64* generator: no dependency, same stream every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Samples ranks `0..n` with probability proportional to `1 / (rank + 1)^s`.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                acc += (k as f64).powf(-s);
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Self { cdf }
    }

    fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

fn key(id: u64) -> FlowKey {
    FlowKey::from_bytes(&id.to_be_bytes()).unwrap()
}

const SEC: u64 = 1_000_000_000;
/// An arbitrary origin three days into a monotonic clock.
const ORIGIN: u64 = 3 * 86_400 * SEC;
const KEYS: usize = 100_000;
const UPDATES: u64 = 1_000_000;
/// 20 µs apart: 20 s in all, 80 τ at τ = 0.25 s, so the landmark moves during the run.
const STEP_NS: u64 = 20_000;
const TAU: f64 = 0.25;

/// Exact decayed count per key, decayed lazily from its last update (a different method
/// from the sketch's forward decay, on purpose).
struct Exact {
    value: Vec<f64>,
    last: Vec<u64>,
}

impl Exact {
    fn new(n: usize) -> Self {
        Self {
            value: vec![0.0; n],
            last: vec![0; n],
        }
    }

    fn decay(v: f64, from: u64, to: u64) -> f64 {
        v * (-((to - from) as f64) / (TAU * 1e9)).exp()
    }

    fn add(&mut self, id: usize, w: f64, now: u64) {
        self.value[id] = Self::decay(self.value[id], self.last[id], now) + w;
        self.last[id] = now;
    }

    fn rate(&self, id: usize, now: u64) -> f64 {
        Self::decay(self.value[id], self.last[id], now) / TAU
    }
}

struct Outcome {
    sketch: DecayedCountMin,
    exact: Exact,
    topk: TopK,
    end: u64,
}

fn run(mut pick: impl FnMut(&mut Rng) -> usize, seed: u64) -> Outcome {
    let mut rng = Rng(seed);
    let mut sketch = DecayedCountMin::new(4096, 5, TAU).unwrap();
    let mut topk = TopK::new(10, TAU);
    let mut exact = Exact::new(KEYS);
    let keys: Vec<FlowKey> = (0..KEYS as u64).map(key).collect();
    let hashes: Vec<u64> = keys.iter().map(FlowKey::hash64).collect();
    let mut now = ORIGIN;
    for i in 0..UPDATES {
        // Batches of 8 samples share a timestamp, like samples of one datagram.
        if i % 8 == 0 {
            now += 8 * STEP_NS;
        }
        let id = pick(&mut rng);
        // Sampling-rate-like weights: 1..=4 frames per sample.
        let w = (1 + rng.next() % 4) as f64;
        exact.add(id, w, now);
        let r = sketch.add(&keys[id], hashes[id], w, now);
        topk.offer(&keys[id], hashes[id], r, now);
    }
    Outcome {
        sketch,
        exact,
        topk,
        end: now + 1000,
    }
}

/// Checks the count-min guarantees at `o.end`; returns (largest error / εN, fraction of
/// keys within εN).
fn check_bounds(o: &Outcome) -> (f64, f64) {
    let now = o.end;
    let total_exact: f64 = (0..KEYS).map(|id| o.exact.rate(id, now)).sum();
    let total = o.sketch.total_rate(now);
    assert!(
        (total - total_exact).abs() <= 1e-9 * total_exact,
        "total {total} vs exact {total_exact}"
    );
    let bound = o.sketch.epsilon() * total;
    let mut within = 0usize;
    let mut worst: f64 = 0.0;
    for id in 0..KEYS {
        let truth = o.exact.rate(id, now);
        let est = o.sketch.rate(key(id as u64).hash64(), now);
        assert!(
            est >= truth - 1e-9 * (truth + total),
            "key {id}: estimate {est} below truth {truth}"
        );
        let err = est - truth;
        worst = worst.max(err / bound);
        if err <= bound {
            within += 1;
        }
    }
    (worst, within as f64 / KEYS as f64)
}

#[test]
fn zipf_stream_estimates_within_bound_and_topk_finds_heavy_hitters() {
    let zipf = Zipf::new(KEYS, 1.1);
    let o = run(|rng| zipf.sample(rng), 0x9E37_79B9_7F4A_7C15);
    let (worst, within) = check_bounds(&o);
    // δ = e^-5 < 0.7 % per key, so at least 99 % of keys must be within εN.
    assert!(within >= 0.99, "only {within} within εN (worst {worst} εN)");

    // Heavy hitters specifically: the true top 100 are all within the bound.
    let mut truth: Vec<(f64, usize)> = (0..KEYS).map(|id| (o.exact.rate(id, o.end), id)).collect();
    truth.sort_by(|a, b| b.0.total_cmp(&a.0));
    let bound = o.sketch.epsilon() * o.sketch.total_rate(o.end);
    for &(t, id) in &truth[..100] {
        let est = o.sketch.rate(key(id as u64).hash64(), o.end);
        assert!(
            est - t <= bound,
            "heavy key {id}: {est} vs {t} (bound {bound})"
        );
    }

    // Top-k recall of the true top 10.
    let mut snap = Vec::new();
    o.topk.snapshot(o.end, &mut snap);
    assert_eq!(snap.len(), 10);
    let found = truth[..10]
        .iter()
        .filter(|(_, id)| snap.iter().any(|(k, _)| *k == key(*id as u64)))
        .count();
    assert!(found >= 9, "top-10 recall {found}/10");
    // Reported rates are sketch estimates: never below the truth.
    for (k, r) in &snap {
        let id = u64::from_be_bytes(k.as_bytes().try_into().unwrap()) as usize;
        assert!(*r >= o.exact.rate(id, o.end) * (1.0 - 1e-9));
    }
    for w in snap.windows(2) {
        assert!(w[0].1 >= w[1].1, "snapshot is sorted descending");
    }
}

#[test]
fn uniform_stream_estimates_within_bound() {
    let o = run(
        |rng| (rng.next() % KEYS as u64) as usize,
        0xD1B5_4A32_D192_ED03,
    );
    let (worst, within) = check_bounds(&o);
    assert!(within >= 0.99, "only {within} within εN (worst {worst} εN)");
}

#[test]
fn memory_is_fixed_under_a_flood_of_distinct_keys_and_attacker_stands_out() {
    let mut sketch = DecayedCountMin::new(4096, 4, 1.0).unwrap();
    let mut topk = TopK::new(16, 1.0);
    let mut threshold = ThresholdState::new(
        ThresholdConfig {
            value: 50_000.0,
            by_flow: true,
            timeout_ns: 5 * SEC,
            capacity: 1024,
        },
        1.0,
    );
    let before = (
        sketch.memory_bytes(),
        topk.memory_bytes(),
        threshold.memory_bytes(),
    );
    let attacker = key(u64::MAX);
    let ah = attacker.hash64();
    let mut rng = Rng(42);
    let mut events = Vec::new();
    let mut now = ORIGIN;
    // 1M spoofed sources plus one attacker sending every 10th sample, 1 µs apart: the
    // attacker runs at 100k samples/s, each spoofed source at about one sample in total.
    for i in 0..1_000_000u64 {
        now += 1000;
        let (k, h) = if i % 10 == 0 {
            (attacker, ah)
        } else {
            let k = key(rng.next());
            (k, k.hash64())
        };
        let r = sketch.add(&k, h, 1.0, now);
        topk.offer(&k, h, r, now);
        if let Some(c) = threshold.check(&k, h, r, now) {
            events.push(c);
        }
    }
    let after = (
        sketch.memory_bytes(),
        topk.memory_bytes(),
        threshold.memory_bytes(),
    );
    assert_eq!(before, after);
    assert_eq!(events.len(), 1, "only the attacker crosses, once");
    assert_eq!(events[0].key, attacker);
    let mut snap = Vec::new();
    topk.snapshot(now, &mut snap);
    assert_eq!(snap[0].0, attacker);
    assert!(snap.len() <= 16);
}
