//! Per-sample cost of the flow statistics path: build key, hash, sketch `add`, top-k
//! `offer`, threshold `check` — as one ingest thread runs it for every flow sample — and,
//! as the peer, an exact per-key map of decayed counts on the same stream (what the
//! sketch replaces: its memory grows with every distinct key).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use reflex::flow::key::FlowKey;
use reflex::flow::sketch::DecayedCountMin;
use reflex::flow::threshold::{ThresholdConfig, ThresholdState};
use reflex::flow::topk::TopK;

/// Updates per measured iteration.
const BATCH: usize = 4096;
/// Distinct keys in the Zipf stream.
const KEYS: usize = 1_000_000;
const TAU: f64 = 2.0;

struct Pipeline {
    sketch: DecayedCountMin,
    topk: TopK,
    threshold: ThresholdState,
    now: u64,
}

impl Pipeline {
    fn new(threshold: f64) -> Self {
        Self {
            sketch: DecayedCountMin::new(4096, 4, TAU).unwrap(),
            topk: TopK::new(100, TAU),
            threshold: ThresholdState::new(
                ThresholdConfig {
                    value: threshold,
                    by_flow: true,
                    timeout_ns: 10_000_000_000,
                    capacity: 4096,
                },
                TAU,
            ),
            now: 1_000_000_000,
        }
    }

    /// One batch of samples; samples of one datagram (8 here) share a timestamp.
    #[inline]
    fn run(&mut self, ids: &[u32]) -> usize {
        let mut events = 0;
        for (i, id) in ids.iter().enumerate() {
            if i % 8 == 0 {
                self.now += 10_000;
            }
            let mut key = FlowKey::EMPTY;
            key.push(&id.to_be_bytes());
            let h = key.hash64();
            let r = self.sketch.add(&key, h, 256.0, self.now);
            self.topk.offer(&key, h, r, self.now);
            if self.threshold.check(&key, h, r, self.now).is_some() {
                events += 1;
            }
        }
        events
    }
}

/// Zipf(1.1) ranks over `KEYS`, from a fixed-seed xorshift.
fn zipf_ids(n: usize) -> Vec<u32> {
    let mut acc = 0.0;
    let mut cdf: Vec<f64> = (1..=KEYS)
        .map(|k| {
            acc += (k as f64).powf(-1.1);
            acc
        })
        .collect();
    for c in &mut cdf {
        *c /= acc;
    }
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            cdf.partition_point(|&c| c < u).min(KEYS - 1) as u32
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("flow_stats");
    g.throughput(Throughput::Elements(BATCH as u64));

    // 1M distinct keys, skewed; the sample sequence is long so batches differ.
    let ids = zipf_ids(1 << 20);
    let mut p = Pipeline::new(1e7);
    let mut off = 0;
    g.bench_function("zipf_1m_keys", |b| {
        b.iter(|| {
            let batch = &ids[off..off + BATCH];
            off = (off + BATCH) % ids.len();
            black_box(p.run(batch))
        })
    });

    // One key carrying everything; it stays above the threshold (disarmed path).
    let heavy = vec![7u32; BATCH];
    let mut p = Pipeline::new(1000.0);
    g.bench_function("single_heavy_key", |b| b.iter(|| black_box(p.run(&heavy))));

    // The sketch alone on the Zipf stream, for reference.
    let mut sketch = DecayedCountMin::new(4096, 4, TAU).unwrap();
    let mut now = 1_000_000_000u64;
    let mut off = 0;
    g.bench_function("sketch_add_only_zipf", |b| {
        b.iter(|| {
            let mut acc = 0.0;
            for (i, id) in ids[off..off + BATCH].iter().enumerate() {
                if i % 8 == 0 {
                    now += 10_000;
                }
                let mut key = FlowKey::EMPTY;
                key.push(&id.to_be_bytes());
                acc += sketch.add(&key, key.hash64(), 256.0, now);
            }
            off = (off + BATCH) % ids.len();
            black_box(acc)
        })
    });

    // The peer: an exact HashMap of (decayed count, last update) per key, same stream.
    let mut exact: std::collections::HashMap<FlowKey, (f64, u64)> =
        std::collections::HashMap::new();
    let mut now = 1_000_000_000u64;
    let mut off = 0;
    g.bench_function("exact_hashmap_zipf", |b| {
        b.iter(|| {
            let mut acc = 0.0;
            for (i, id) in ids[off..off + BATCH].iter().enumerate() {
                if i % 8 == 0 {
                    now += 10_000;
                }
                let mut key = FlowKey::EMPTY;
                key.push(&id.to_be_bytes());
                let e = exact.entry(key).or_insert((0.0, now));
                let dt = (now - e.1) as f64 * 1e-9;
                e.0 = e.0 * (-dt / TAU).exp() + 256.0;
                e.1 = now;
                acc += e.0 / TAU;
            }
            off = (off + BATCH) % ids.len();
            black_box(acc)
        })
    });
    eprintln!("exact map: {} keys after the run", exact.len());
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
