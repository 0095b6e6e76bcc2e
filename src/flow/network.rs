//! Network-wide rates and thresholds: a key's rate is the sum over every ingest worker,
//! whichever socket the kernel hashed each agent's datagrams to, and a crossing fires one
//! event, not one per worker.
//!
//! **Why this shape.** Each worker still updates only its own count-min sketch on every
//! sample (no shared write on the per-sample path), but the counters sit in [`SketchCells`]
//! that the other workers can read with relaxed atomic loads. Landmarks lie on a grid fixed
//! by `τ` alone, so workers' counters are in the same units but for a moment around a grid
//! point (then one `exp` converts). A sample is a *candidate* when its worker's own estimate
//! is above `value / workers`: if the sum is above `value`, some worker's share is, so no
//! crossing escapes, and only heavy keys ever pay for the sum, which is the count-min
//! estimate of the merged sketch (min over rows of the sum of the workers' counters: never
//! below the key's true network-wide rate, and tighter than the sum of the workers'
//! estimates). One worker reads nothing and behaves as before.
//!
//! **One event per crossing.** Each worker keeps its own [`ThresholdState`] (hysteresis,
//! capacity, waivers), fed with the network-wide sums, as a local filter. When it says
//! "fire", the worker asks the threshold's [`FireGate`]: a fixed table of `AtomicU64`, one
//! word per slot packing a key tag, a "timeout waived" bit and the key's network-wide
//! projected re-arm time (ms-granular). Firing is a compare-exchange from an armed slot (no
//! entry, another key's, or a re-arm time passed) to a disarmed one: exactly one worker wins
//! a crossing. Workers that see the key above `value` while it is disarmed push the re-arm
//! time out (`fetch_max`-like), so a worker that saw the key only now and then does not
//! fire it again; the slot changes at most once per millisecond of re-arm time. A flooding
//! key would otherwise read the other workers' (hot) counter lines at every sample: while
//! it is disarmed each worker re-reads its sum at most once per `τ/64` (a small per-worker
//! cache), which can move the re-arm earlier by at most about that much.
//!
//! **Limits.** A key may sit in any slot of its bucket (8 slots, one cache line); keys are
//! told apart by a 25-bit tag and their bucket (a collision of both may suppress an event;
//! the odds are below one in a billion per pair). A slot held by another disarmed key is
//! never taken over (that key would fire a duplicate): when the whole bucket is disarmed,
//! the crossing is suppressed and the caller counts it ([`GateVerdict::Full`]), as
//! [`ThresholdState`] does with a full table. Two workers firing the same key in the same
//! instant that a slot of its bucket re-arms may both win (one extra event, never a missed
//! one). Re-arm times are rounded up to 2²⁰ ns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::sketch::{DecayedCountMin, SketchCells};
use super::spec::{FlowSet, ThresholdScope};
#[cfg(doc)]
use super::threshold::ThresholdState;

/// Most workers sharing one network (the candidate test divides by this count).
pub const MAX_WORKERS: usize = 1024;

/// Every worker's sketch counters and every network-scope threshold's gate, built once and
/// shared (`Arc`) by the workers' engines.
#[derive(Debug)]
pub struct Network {
    workers: usize,
    /// Per flow, per worker.
    cells: Vec<Vec<Arc<SketchCells>>>,
    /// Per threshold: the gate when its scope is the network.
    gates: Vec<Option<Arc<FireGate>>>,
}

impl Network {
    /// Counters for `workers` workers (clamped to 1..=[`MAX_WORKERS`]) of every flow of
    /// `set`, and a gate per network-scope threshold; fixed memory from here on.
    pub fn new(set: &FlowSet, workers: usize) -> Network {
        let workers = workers.clamp(1, MAX_WORKERS);
        let cells = set
            .flows
            .iter()
            .map(|f| {
                let len = DecayedCountMin::cells_len(f.sketch_width, f.sketch_depth);
                (0..workers)
                    .map(|_| Arc::new(SketchCells::zeroed(len)))
                    .collect()
            })
            .collect();
        let gates = set
            .thresholds
            .iter()
            .map(|t| {
                (t.scope == ThresholdScope::Network).then(|| {
                    let tau = set.flows.get(t.flow).map_or(1.0, |f| f.def.t);
                    Arc::new(FireGate::new(
                        t.config.value,
                        t.config.timeout_ns,
                        tau,
                        t.config.by_flow.then_some(t.config.capacity),
                    ))
                })
            })
            .collect();
        Network {
            workers,
            cells,
            gates,
        }
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Every worker's counters of flow `flow`.
    pub(crate) fn cells(&self, flow: usize) -> &[Arc<SketchCells>] {
        self.cells.get(flow).map_or(&[], Vec::as_slice)
    }

    /// The gate of threshold `threshold`, if its scope is the network.
    pub(crate) fn gate(&self, threshold: usize) -> Option<&Arc<FireGate>> {
        self.gates.get(threshold).and_then(Option::as_ref)
    }

    /// Bytes of counters and gates (fixed at construction).
    pub fn memory_bytes(&self) -> usize {
        let cells: usize = self.cells.iter().flatten().map(|c| c.memory_bytes()).sum();
        let gates: usize = self.gates.iter().flatten().map(|g| g.memory_bytes()).sum();
        cells + gates
    }
}

/// Time unit of the gate's re-arm times: 2²⁰ ns ≈ 1.05 ms.
const UNIT_SHIFT: u32 = 20;
/// Bits of re-arm time (in units): 2⁵⁸ ns ≈ 9 years of the daemon's monotonic clock.
const TIME_BITS: u32 = 38;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;
/// Set when the policy waived the timeout: the key re-arms as soon as it is below `value`.
const WAIVED: u64 = 1 << TIME_BITS;
const TAG_SHIFT: u32 = TIME_BITS + 1;

/// Slots a key may occupy in a gate (one cache line of words).
const BUCKET: usize = 8;

/// What the gate says to a worker whose local state says fire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub(crate) enum GateVerdict {
    /// This worker reports the crossing.
    Fire,
    /// The key is disarmed network-wide already (another worker fired it).
    Held,
    /// Every slot of the key's bucket holds another disarmed key: suppressed, to be counted.
    Full,
}

/// Where a key stands in its bucket.
enum Scan<'a> {
    Held(&'a AtomicU64, u64),
    Vacant(&'a AtomicU64, u64),
    Full,
}

/// Who fires a network-wide crossing: one word per slot, armed or disarmed until a time
/// (see the module docs). Lock-free: every change is one compare-exchange.
#[derive(Debug)]
pub struct FireGate {
    slots: Box<[AtomicU64]>,
    mask: usize,
    /// `by_flow = false`: one slot for every key.
    whole_flow: bool,
    value: f64,
    tau_ns: f64,
    timeout_units: u64,
}

impl FireGate {
    /// A gate for a threshold at `value` with hysteresis `timeout_ns` on rates smoothed with
    /// `tau_secs`; `per_key` is the capacity of a per-key threshold (`None`: one state for
    /// the whole flow). Slots are twice the capacity, rounded up to a power of two.
    pub(crate) fn new(value: f64, timeout_ns: u64, tau_secs: f64, per_key: Option<usize>) -> Self {
        let n = per_key.map_or(1, |c| {
            (2 * c.clamp(1, super::threshold::MAX_CAPACITY)).next_power_of_two()
        });
        FireGate {
            slots: (0..n).map(|_| AtomicU64::new(0)).collect(),
            mask: n - 1,
            whole_flow: per_key.is_none(),
            value,
            tau_ns: super::sketch::sanitize_tau(tau_secs) * 1e9,
            timeout_units: timeout_ns >> UNIT_SHIFT,
        }
    }

    /// The slots `hash`'s key may occupy.
    #[inline]
    fn bucket(&self, hash: u64) -> &[AtomicU64] {
        let width = BUCKET.min(self.slots.len());
        let start = hash as usize & self.mask & !(width - 1);
        self.slots.get(start..start + width).unwrap_or(&[])
    }

    /// One pass over a bucket: the slot holding `tag` disarmed at `now_units`, else the
    /// first slot armed then (free or re-armed). One pass, so that a worker that misses a
    /// concurrent claim of this key reads the claimed slot's old word and loses its own CAS.
    #[inline]
    fn scan(bucket: &[AtomicU64], tag: u64, now_units: u64) -> Scan<'_> {
        let mut vacant = None;
        for slot in bucket {
            let word = slot.load(Ordering::Acquire);
            if Self::live(word, now_units) {
                if word >> TAG_SHIFT == tag {
                    return Scan::Held(slot, word);
                }
            } else if vacant.is_none() {
                vacant = Some((slot, word));
            }
        }
        match vacant {
            Some((slot, word)) => Scan::Vacant(slot, word),
            None => Scan::Full,
        }
    }

    #[inline]
    fn tag(&self, hash: u64) -> u64 {
        if self.whole_flow {
            1
        } else {
            // The bits that place a key within its bucket tell keys of one bucket apart too.
            (hash >> TAG_SHIFT) ^ (hash & (BUCKET as u64 - 1))
        }
    }

    #[inline]
    fn units(ns: u64) -> u64 {
        (ns >> UNIT_SHIFT).min(TIME_MASK)
    }

    /// Whether `word` holds `tag` and is disarmed at `now_units`.
    #[inline]
    fn live(word: u64, now_units: u64) -> bool {
        word != 0 && word & TIME_MASK > now_units
    }

    /// The re-arm time, in units rounded up, of a key whose network-wide rate is `rate` at
    /// `now_ns`: when decay brings it to `value`, plus the timeout unless waived.
    #[inline]
    fn rearm_units(&self, rate: f64, now_ns: u64, waived: bool) -> u64 {
        let above = if rate > self.value && self.value > 0.0 {
            // Saturating float-to-int: an infinite rate never re-arms.
            (self.tau_ns * (rate / self.value).ln()).ceil() as u64
        } else {
            0
        };
        let below = now_ns.saturating_add(above);
        let units = below.saturating_add((1 << UNIT_SHIFT) - 1) >> UNIT_SHIFT;
        let timeout = if waived { 0 } else { self.timeout_units };
        units.saturating_add(timeout).min(TIME_MASK)
    }

    #[inline]
    fn pack(tag: u64, waived: bool, units: u64) -> u64 {
        tag << TAG_SHIFT | if waived { WAIVED } else { 0 } | units
    }

    /// A worker's local threshold state says `hash`'s key fires at `rate` (network-wide) at
    /// `now_ns`: [`GateVerdict::Fire`] if this worker is the one to report it (the key was
    /// armed network-wide and is now disarmed, by this call).
    pub(crate) fn try_fire(&self, hash: u64, rate: f64, now_ns: u64) -> GateVerdict {
        let bucket = self.bucket(hash);
        if bucket.is_empty() {
            return GateVerdict::Fire;
        }
        let tag = self.tag(hash);
        let now = Self::units(now_ns);
        let next = Self::pack(tag, false, self.rearm_units(rate, now_ns, false));
        loop {
            let (slot, word) = match Self::scan(bucket, tag, now) {
                Scan::Held(..) => return GateVerdict::Held,
                Scan::Full => return GateVerdict::Full,
                Scan::Vacant(slot, word) => (slot, word),
            };
            // Lost to a concurrent change: look again (it may be this key, fired elsewhere).
            if slot
                .compare_exchange(word, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return GateVerdict::Fire;
            }
        }
    }

    /// The disarmed key `hash` was seen at `rate` (network-wide, above `value`) at `now_ns`:
    /// its re-arm time moves out if that is later. Slots other disarmed keys hold are left
    /// alone; if the key holds none, a vacant one takes it (its crossing was fired elsewhere
    /// and its slot re-armed or lost since).
    pub(crate) fn extend(&self, hash: u64, rate: f64, now_ns: u64) {
        let bucket = self.bucket(hash);
        let tag = self.tag(hash);
        let now = Self::units(now_ns);
        loop {
            let (slot, word, ours) = match Self::scan(bucket, tag, now) {
                Scan::Held(slot, word) => (slot, word, true),
                Scan::Vacant(slot, word) => (slot, word, false),
                Scan::Full => return,
            };
            let waived = ours && word & WAIVED != 0;
            let units = self.rearm_units(rate, now_ns, waived);
            if ours && word & TIME_MASK >= units {
                return;
            }
            let next = Self::pack(tag, waived, units);
            if slot
                .compare_exchange(word, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return;
            }
        }
    }

    /// The policy let `hash`'s key back in: its timeout is waived (once, however many
    /// workers are told), so it re-arms as soon as its rate is at or below `value`.
    pub(crate) fn waive(&self, hash: u64) {
        let tag = self.tag(hash);
        for slot in self.bucket(hash) {
            let mut word = slot.load(Ordering::Acquire);
            loop {
                if word == 0 || word >> TAG_SHIFT != tag || word & WAIVED != 0 {
                    break;
                }
                let units = (word & TIME_MASK).saturating_sub(self.timeout_units);
                let next = Self::pack(tag, true, units);
                match slot.compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => break,
                    Err(seen) => word = seen,
                }
            }
        }
    }

    /// Whether `hash`'s key is disarmed network-wide at `now_ns`.
    pub fn disarmed(&self, hash: u64, now_ns: u64) -> bool {
        matches!(
            Self::scan(self.bucket(hash), self.tag(hash), Self::units(now_ns)),
            Scan::Held(..)
        )
    }

    /// Bytes held; fixed at construction.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.slots.len() * 8
    }
}

/// A worker's memory of the disarmed keys whose network-wide sum it read lately, so that a
/// flood does not read the other workers' counters at every sample (direct-mapped, fixed).
#[derive(Debug, Clone)]
pub(crate) struct RecentReads {
    /// (key hash, read again from this time on).
    entries: Box<[(u64, u64)]>,
    period_ns: u64,
}

/// Entries of [`RecentReads`].
const RECENT_ENTRIES: usize = 256;

impl RecentReads {
    /// Sums re-read at most once per `τ/64`.
    pub(crate) fn new(tau_secs: f64) -> Self {
        RecentReads {
            entries: vec![(0, 0); RECENT_ENTRIES].into_boxed_slice(),
            period_ns: (super::sketch::sanitize_tau(tau_secs) * 1e9 / 64.0) as u64,
        }
    }

    /// Whether the key's sum was read less than a period ago.
    #[inline]
    pub(crate) fn fresh(&self, hash: u64, now_ns: u64) -> bool {
        self.entries
            .get(hash as usize % RECENT_ENTRIES)
            .is_some_and(|&(h, until)| h == hash && now_ns < until)
    }

    /// Notes a read of the key's sum at `now_ns`.
    #[inline]
    pub(crate) fn note(&mut self, hash: u64, now_ns: u64) {
        if let Some(e) = self.entries.get_mut(hash as usize % RECENT_ENTRIES) {
            *e = (hash, now_ns.saturating_add(self.period_ns));
        }
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.entries.len() * 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

    #[test]
    fn one_worker_wins_a_crossing_and_extensions_hold_it() {
        let gate = FireGate::new(100.0, 2 * SEC, 1.0, Some(16));
        let h = 0xDEAD_BEEF_0123_4567;
        assert_eq!(gate.try_fire(h, 200.0, 10 * SEC), GateVerdict::Fire);
        // Another worker's state says fire for the same crossing: suppressed.
        assert_ne!(gate.try_fire(h, 300.0, 10 * SEC + MS), GateVerdict::Fire);
        assert!(gate.disarmed(h, 10 * SEC + MS));
        // 200 at 10 s is below at 10 + ln 2 s: re-arm at ≈ 12.69 s.
        assert!(gate.disarmed(h, 12_650 * MS));
        assert!(!gate.disarmed(h, 12_700 * MS));
        // Seen above at 12 s by another worker: re-arm moves to ≈ 14.69 s.
        gate.extend(h, 200.0, 12 * SEC);
        assert_ne!(gate.try_fire(h, 200.0, 14_600 * MS), GateVerdict::Fire);
        assert_eq!(gate.try_fire(h, 200.0, 14_800 * MS), GateVerdict::Fire);
    }

    #[test]
    fn waiving_drops_the_timeout_once() {
        let gate = FireGate::new(100.0, 10 * SEC, 1.0, Some(16));
        let h = 42u64 << 40 | 7;
        assert_eq!(gate.try_fire(h, 200.0, 10 * SEC), GateVerdict::Fire);
        gate.waive(h);
        gate.waive(h); // every worker is told: no second subtraction
                       // Below from 10.69 s, no timeout.
        assert!(gate.disarmed(h, 10_650 * MS));
        assert!(!gate.disarmed(h, 10_720 * MS));
        // Extensions keep the waiver until the next event.
        gate.extend(h, 200.0, 10_500 * MS);
        assert!(!gate.disarmed(h, 11_220 * MS));
        assert_eq!(gate.try_fire(h, 200.0, 11_300 * MS), GateVerdict::Fire);
        assert!(gate.disarmed(h, 20 * SEC));
    }

    #[test]
    fn a_whole_flow_gate_has_one_state() {
        let gate = FireGate::new(100.0, SEC, 1.0, None);
        assert_eq!(gate.try_fire(1, 150.0, SEC), GateVerdict::Fire);
        assert_ne!(gate.try_fire(2, 150.0, SEC), GateVerdict::Fire);
        assert_eq!(gate.try_fire(3, 150.0, 3 * SEC), GateVerdict::Fire);
    }

    #[test]
    fn racing_workers_fire_exactly_once() {
        let gate = Arc::new(FireGate::new(100.0, SEC, 1.0, Some(64)));
        let fired = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for k in 0..2000u64 {
                        let h = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                        if gate.try_fire(h, 500.0, SEC) == GateVerdict::Fire {
                            fired.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        // 2000 keys over 128 slots: a slot held by a disarmed key is never taken over, so
        // exactly 128 keys fire, once each, and the others are suppressed (no duplicates).
        assert_eq!(fired.load(Ordering::Relaxed), 128);
        // Keys that own their slot alone fire once: check with a table larger than the keys.
        let gate = Arc::new(FireGate::new(100.0, SEC, 1.0, Some(4096)));
        let fired = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for k in 0..16u64 {
                        if gate.try_fire(k, 500.0, SEC) == GateVerdict::Fire {
                            fired.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(fired.load(Ordering::Relaxed), 16);
    }

    #[test]
    fn a_full_bucket_suppresses_and_never_takes_over() {
        let gate = FireGate::new(100.0, SEC, 1.0, Some(4));
        // 8 slots, one bucket: eight keys fire, the ninth is suppressed.
        for k in 0..8u64 {
            assert_eq!(gate.try_fire(k << 40, 200.0, SEC), GateVerdict::Fire);
        }
        assert_eq!(gate.try_fire(8 << 40, 200.0, SEC), GateVerdict::Full);
        for k in 0..8u64 {
            assert!(gate.disarmed(k << 40, SEC + MS));
            assert_eq!(gate.try_fire(k << 40, 200.0, SEC + MS), GateVerdict::Held);
        }
        // Once the held keys re-arm (1 + ln 2 + 1 s), the ninth takes a slot.
        assert_eq!(gate.try_fire(8 << 40, 200.0, 3 * SEC), GateVerdict::Fire);
    }

    #[test]
    fn recent_reads_expire() {
        let mut r = RecentReads::new(0.64);
        assert!(!r.fresh(5, SEC));
        r.note(5, SEC);
        assert!(r.fresh(5, SEC + 9 * MS));
        assert!(!r.fresh(5, SEC + 10 * MS));
        assert!(!r.fresh(5 + 256, SEC));
    }
}
