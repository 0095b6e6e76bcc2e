//! Top-k heavy hitters: the `k` keys with the largest smoothed rates, in preallocated
//! fixed-size tables (no allocation after construction, `O(log k)` per offer).
//!
//! Each ingest thread offers every updated key with the rate its sketch just returned.
//! Values are kept in forward-decay landmark units (`rate · e^{(now - L)/τ}`), so decay is
//! one common factor: it never reorders entries and an offer never touches other entries.
//! The table owns its own landmark and `τ` (given at construction) rather than borrowing the
//! sketch's, so it accepts a rate from any source (sketch, exact counter, test) and the two
//! renormalise independently. An entry not offered again decays exactly as its key's sketch
//! estimate would, so the snapshot stays right for keys that went quiet.
//!
//! Admission: a new key replaces the current minimum only if its rate is larger (the
//! "space-saving without error inheritance" rule; the sketch supplies the estimate, so a
//! newcomer does not inherit the evicted count).
//!
//! The two small building blocks here — an open-addressing index from key hash to slot and a
//! slot-addressed binary min-heap — are shared with the threshold table.

use super::key::FlowKey;
use super::sketch::{sanitize_tau, ForwardDecay};

/// Largest accepted capacity; larger requests are clamped.
pub const MAX_K: usize = 1 << 20;

const EMPTY: u32 = u32::MAX;

/// Open-addressing (linear probing) index from a key hash to a slot number, sized for a
/// fixed number of slots at load factor ≤ 1/2. Deletion shifts entries back, so there are no
/// tombstones and probe sequences never lengthen with churn.
#[derive(Debug, Clone)]
pub(crate) struct SlotIndex {
    hashes: Vec<u64>,
    slots: Vec<u32>,
    mask: usize,
}

impl SlotIndex {
    /// An index for at most `n` slots (`n ≤ u32::MAX - 1`).
    pub(crate) fn new(n: usize) -> Self {
        let size = (2 * n.max(1)).next_power_of_two();
        Self {
            hashes: vec![0; size],
            slots: vec![EMPTY; size],
            mask: size - 1,
        }
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        (hash ^ (hash >> 32)) as usize & self.mask
    }

    /// The slot whose hash is `hash` and for which `matches(slot)` holds.
    #[inline]
    pub(crate) fn find(&self, hash: u64, matches: impl Fn(usize) -> bool) -> Option<usize> {
        let mut i = self.home(hash);
        for _ in 0..=self.mask {
            let slot = *self.slots.get(i)?;
            if slot == EMPTY {
                return None;
            }
            if self.hashes.get(i) == Some(&hash) && matches(slot as usize) {
                return Some(slot as usize);
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Records `slot` under `hash`; the caller guarantees it is absent and within capacity.
    pub(crate) fn insert(&mut self, hash: u64, slot: usize) {
        let mut i = self.home(hash);
        for _ in 0..=self.mask {
            if self.slots[i] == EMPTY {
                self.slots[i] = slot as u32;
                self.hashes[i] = hash;
                return;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Removes the entry for `slot` stored under `hash`, if present.
    pub(crate) fn remove(&mut self, hash: u64, slot: usize) {
        let Some(mut hole) = self.position(hash, slot) else {
            return;
        };
        let mut j = hole;
        for _ in 0..self.mask {
            j = (j + 1) & self.mask;
            if self.slots[j] == EMPTY {
                break;
            }
            let home = self.home(self.hashes[j]);
            // The entry at j may fill the hole if the hole lies on its probe path [home, j].
            if (j.wrapping_sub(home) & self.mask) >= (j.wrapping_sub(hole) & self.mask) {
                self.slots[hole] = self.slots[j];
                self.hashes[hole] = self.hashes[j];
                hole = j;
            }
        }
        self.slots[hole] = EMPTY;
    }

    fn position(&self, hash: u64, slot: usize) -> Option<usize> {
        let mut i = self.home(hash);
        for _ in 0..=self.mask {
            let s = self.slots[i];
            if s == EMPTY {
                return None;
            }
            if s as usize == slot {
                return Some(i);
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Forgets every entry.
    pub(crate) fn clear(&mut self) {
        self.slots.fill(EMPTY);
    }

    /// Heap bytes held.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.hashes.capacity() * 8 + self.slots.capacity() * 4
    }
}

/// A binary min-heap of `(priority, slot)` for slots `0..n`, with a slot → position map so
/// any slot's priority can be changed or removed in `O(log n)`.
#[derive(Debug, Clone)]
pub(crate) struct SlotHeap<P> {
    heap: Vec<(P, u32)>,
    pos: Vec<u32>,
}

impl<P: Copy + PartialOrd> SlotHeap<P> {
    /// A heap for slots `0..n`, allocated once.
    pub(crate) fn new(n: usize) -> Self {
        Self {
            heap: Vec::with_capacity(n),
            pos: vec![EMPTY; n],
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// The smallest priority and its slot.
    #[inline]
    pub(crate) fn peek(&self) -> Option<(P, usize)> {
        self.heap.first().map(|&(p, s)| (p, s as usize))
    }

    /// Priority of `slot`, if present.
    #[inline]
    pub(crate) fn get(&self, slot: usize) -> Option<P> {
        let i = *self.pos.get(slot)?;
        self.heap.get(i as usize).map(|e| e.0)
    }

    /// All `(priority, slot)` entries in heap order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (P, usize)> + '_ {
        self.heap.iter().map(|&(p, s)| (p, s as usize))
    }

    /// Applies `f` to every priority; `f` must preserve their order (e.g. positive scaling).
    pub(crate) fn map_priorities(&mut self, f: impl Fn(P) -> P) {
        for e in &mut self.heap {
            e.0 = f(e.0);
        }
    }

    /// Inserts `slot` or, if present, changes its priority.
    #[inline]
    pub(crate) fn set(&mut self, slot: usize, p: P) {
        let Some(&i) = self.pos.get(slot) else {
            return;
        };
        if i != EMPTY {
            let i = i as usize;
            let old = self.heap[i].0;
            self.heap[i].0 = p;
            if p < old {
                self.sift_up(i);
            } else {
                self.sift_down(i);
            }
            return;
        }
        if self.heap.len() >= self.pos.len() {
            return;
        }
        let i = self.heap.len();
        self.heap.push((p, slot as u32));
        self.pos[slot] = i as u32;
        self.sift_up(i);
    }

    /// Removes `slot` if present.
    pub(crate) fn remove(&mut self, slot: usize) {
        let Some(&i) = self.pos.get(slot) else {
            return;
        };
        if i == EMPTY {
            return;
        }
        let i = i as usize;
        let last = self.heap.len() - 1;
        self.heap.swap(i, last);
        self.heap.pop();
        self.pos[slot] = EMPTY;
        if i < self.heap.len() {
            self.pos[self.heap[i].1 as usize] = i as u32;
            self.sift_down(i);
            self.sift_up(i);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.heap.clear();
        self.pos.fill(EMPTY);
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.heap.capacity() * std::mem::size_of::<(P, u32)>() + self.pos.capacity() * 4
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.pos[self.heap[a].1 as usize] = a as u32;
        self.pos[self.heap[b].1 as usize] = b as u32;
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[i].0 < self.heap[parent].0 {
                self.swap(i, parent);
                i = parent;
            } else {
                break;
            }
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let l = 2 * i + 1;
            if l >= n {
                break;
            }
            let r = l + 1;
            let c = if r < n && self.heap[r].0 < self.heap[l].0 {
                r
            } else {
                l
            };
            if self.heap[c].0 < self.heap[i].0 {
                self.swap(i, c);
                i = c;
            } else {
                break;
            }
        }
    }
}

/// The `k` keys with the largest smoothed rates.
#[derive(Debug, Clone)]
pub struct TopK {
    keys: Vec<FlowKey>,
    hashes: Vec<u64>,
    /// Per slot: the key's value in landmark units.
    values: Vec<f64>,
    /// Slots keyed by value for eviction of the smallest. A key may lag behind its value's
    /// rises (a heavy key is offered at every sample; it need not sift each time): the
    /// minimum is brought up to date before it is trusted.
    heap: SlotHeap<f64>,
    index: SlotIndex,
    k: usize,
    decay: ForwardDecay,
}

impl TopK {
    /// A table for the `k` largest keys (clamped to [`MAX_K`]) whose rates are smoothed with
    /// time constant `tau_secs` — the same `t` as the sketch feeding it (clamped to the
    /// sketch's accepted range).
    pub fn new(k: usize, tau_secs: f64) -> Self {
        let k = k.min(MAX_K);
        Self {
            keys: vec![FlowKey::EMPTY; k],
            hashes: vec![0; k],
            values: vec![0.0; k],
            heap: SlotHeap::new(k),
            index: SlotIndex::new(k),
            k,
            decay: ForwardDecay::new(sanitize_tau(tau_secs)),
        }
    }

    /// Offers the key's current rate (the estimate `add()` just returned); keeps it if it is
    /// among the `k` largest. Negative, NaN or infinite rates are ignored.
    #[inline]
    pub fn offer(&mut self, key: &FlowKey, hash: u64, rate: f64, now_ns: u64) {
        if let Some(v) = self.units(rate, now_ns) {
            self.offer_units(key, hash, v);
        }
    }

    /// [`offer`](Self::offer) for a source under which a key's rate never falls except by
    /// decay, as a conservative-update sketch's estimates: once the table is full, a rate
    /// not above the smallest one held can neither enter nor change a member (a member is
    /// at least that large already), so the key is not even looked up. Most keys of a
    /// long-tailed stream end here.
    #[inline]
    pub fn offer_rising(&mut self, key: &FlowKey, hash: u64, rate: f64, now_ns: u64) {
        let Some(v) = self.units(rate, now_ns) else {
            return;
        };
        if self.heap.len() >= self.k {
            // Heap keys are lower bounds of their members' values (rises lag), so this is
            // at most the true minimum.
            if let Some((stored, _)) = self.heap.peek() {
                if v <= stored {
                    return;
                }
            }
        }
        self.offer_units(key, hash, v);
    }

    /// `rate` in landmark units at `now_ns`, with the clock moved there; `None` for a rate
    /// to ignore.
    #[inline]
    fn units(&mut self, rate: f64, now_ns: u64) -> Option<f64> {
        if self.k == 0 || !(rate >= 0.0 && rate.is_finite()) {
            return None;
        }
        if let Some(scale) = self.decay.advance(now_ns) {
            self.rescale(scale);
        }
        Some(rate * self.decay.up())
    }

    /// Offers a value already in landmark units.
    #[inline]
    fn offer_units(&mut self, key: &FlowKey, hash: u64, v: f64) {
        let keys = &self.keys;
        if let Some(slot) = self.index.find(hash, |s| keys.get(s) == Some(key)) {
            let Some(current) = self.values.get_mut(slot) else {
                return;
            };
            if v > *current {
                // A rise: the heap key may lag (see `heap`).
                *current = v;
            } else if v < *current {
                *current = v;
                self.heap.set(slot, v);
            }
            return;
        }
        let len = self.heap.len();
        let slot = if len < self.k {
            len
        } else {
            match self.minimum() {
                Some((min, slot)) if v > min => {
                    self.index.remove(self.hashes[slot], slot);
                    slot
                }
                _ => return,
            }
        };
        self.keys[slot] = *key;
        self.hashes[slot] = hash;
        self.values[slot] = v;
        self.index.insert(hash, slot);
        self.heap.set(slot, v);
    }

    /// The smallest held value and its slot, after bringing lagging heap keys up to date.
    #[inline]
    fn minimum(&mut self) -> Option<(f64, usize)> {
        loop {
            let (stored, slot) = self.heap.peek()?;
            let current = *self.values.get(slot)?;
            if current > stored {
                self.heap.set(slot, current);
            } else {
                return Some((stored, slot));
            }
        }
    }

    /// Moves the decay clock to `now_ns` with `hint`'s factors when it can (see
    /// [`ForwardDecay::advance_like`]); [`offer`](Self::offer) at `now_ns` then computes none.
    #[inline]
    pub(crate) fn sync_clock(&mut self, now_ns: u64, hint: &ForwardDecay) {
        if let Some(scale) = self.decay.advance_like(now_ns, hint) {
            self.rescale(scale);
        }
    }

    fn rescale(&mut self, scale: f64) {
        self.heap.map_priorities(|v| v * scale);
        for v in &mut self.values {
            *v *= scale;
        }
    }

    /// Writes the held keys with their rates at `now_ns`, largest first, into `out` (cleared
    /// first; its capacity is reused).
    pub fn snapshot(&self, now_ns: u64, out: &mut Vec<(FlowKey, f64)>) {
        out.clear();
        let down = self.decay.down_at(now_ns);
        for (_, slot) in self.heap.iter() {
            if let (Some(key), Some(v)) = (self.keys.get(slot), self.values.get(slot)) {
                out.push((*key, v * down));
            }
        }
        out.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
    }

    /// Rate of `key` at `now_ns` if it is held.
    pub fn rate(&self, key: &FlowKey, hash: u64, now_ns: u64) -> Option<f64> {
        let slot = self.index.find(hash, |s| self.keys.get(s) == Some(key))?;
        self.heap.get(slot)?;
        Some(self.values.get(slot)? * self.decay.down_at(now_ns))
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.heap.len() == 0
    }

    /// Maximum number of keys held.
    pub fn capacity(&self) -> usize {
        self.k
    }

    /// Forgets every key.
    pub fn clear(&mut self) {
        self.heap.clear();
        self.index.clear();
        self.decay.reset();
    }

    /// Bytes held; fixed at construction.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.keys.capacity() * std::mem::size_of::<FlowKey>()
            + self.hashes.capacity() * 8
            + self.values.capacity() * 8
            + self.heap.memory_bytes()
            + self.index.memory_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn key(n: u32) -> FlowKey {
        FlowKey::from_bytes(&n.to_be_bytes()).unwrap()
    }

    fn offer(t: &mut TopK, n: u32, rate: f64, now: u64) {
        let k = key(n);
        t.offer(&k, k.hash64(), rate, now);
    }

    #[test]
    fn keeps_the_k_largest_in_order() {
        let mut t = TopK::new(3, 1.0);
        for (n, r) in [
            (1, 10.0),
            (2, 50.0),
            (3, 5.0),
            (4, 40.0),
            (5, 1.0),
            (6, 30.0),
        ] {
            offer(&mut t, n, r, SEC);
        }
        let mut out = Vec::new();
        t.snapshot(SEC, &mut out);
        let same = |got: &[(FlowKey, f64)], want: &[(u32, f64)]| {
            got.len() == want.len()
                && got
                    .iter()
                    .zip(want)
                    .all(|(g, w)| g.0 == key(w.0) && (g.1 - w.1).abs() < 1e-9 * w.1)
        };
        assert!(same(&out, &[(2, 50.0), (4, 40.0), (6, 30.0)]), "{out:?}");
        assert_eq!(t.len(), 3);
        // A re-offer of a held key updates it in place, including downwards.
        offer(&mut t, 2, 20.0, SEC);
        t.snapshot(SEC, &mut out);
        assert!(same(&out, &[(4, 40.0), (6, 30.0), (2, 20.0)]), "{out:?}");
        assert_eq!(t.len(), 3);
        // A newcomer below the minimum is rejected.
        offer(&mut t, 7, 19.0, SEC);
        assert_eq!(t.rate(&key(7), key(7).hash64(), SEC), None);
    }

    #[test]
    fn values_decay_with_tau_and_survive_renormalisation() {
        let tau = 0.01;
        let mut t = TopK::new(4, tau);
        offer(&mut t, 1, 100.0, SEC);
        let mut out = Vec::new();
        t.snapshot(SEC + 5_000_000, &mut out);
        let expect = 100.0 * (-0.5f64).exp();
        assert!((out[0].1 - expect).abs() < 1e-9 * expect);
        // A day later (millions of tau), offers still compare correctly.
        let later = SEC + 86_400 * SEC;
        offer(&mut t, 2, 7.0, later);
        offer(&mut t, 3, 9.0, later + 1000);
        t.snapshot(later + 1000, &mut out);
        assert_eq!(out[0].0, key(3));
        assert_eq!(out[1].0, key(2));
        assert!((out[0].1 - 9.0).abs() < 1e-9);
        assert!(out[2].1 < 1e-300, "old key decayed away");
    }

    #[test]
    fn quiet_heavy_key_is_displaced_by_live_one() {
        let mut t = TopK::new(1, 1.0);
        offer(&mut t, 1, 100.0, 0);
        // 10 tau later key 1 has decayed to 100 e^-10 ≈ 0.0045.
        offer(&mut t, 2, 0.01, 10 * SEC);
        let mut out = Vec::new();
        t.snapshot(10 * SEC, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, key(2));
    }

    #[test]
    fn ignores_bad_rates_and_zero_capacity() {
        let mut t = TopK::new(2, 1.0);
        offer(&mut t, 1, f64::NAN, SEC);
        offer(&mut t, 2, -1.0, SEC);
        offer(&mut t, 3, f64::INFINITY, SEC);
        assert!(t.is_empty());
        let mut z = TopK::new(0, 1.0);
        offer(&mut z, 1, 1.0, SEC);
        assert_eq!(z.len(), 0);
        let mut out = vec![(key(9), 1.0)];
        z.snapshot(SEC, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn churn_keeps_index_consistent_and_memory_fixed() {
        let mut t = TopK::new(8, 1.0);
        let bytes = t.memory_bytes();
        let mut x: u64 = 0x1234_5678;
        for i in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x % 64) as u32;
            offer(&mut t, n, (x % 1000) as f64, SEC + u64::from(i));
            // Every held key is findable through the index.
            let mut out = Vec::new();
            if i % 997 == 0 {
                t.snapshot(SEC + u64::from(i), &mut out);
                for (k, r) in &out {
                    let found = t.rate(k, k.hash64(), SEC + u64::from(i));
                    assert_eq!(found, Some(*r));
                }
                let mut ks: Vec<_> = out.iter().map(|e| e.0).collect();
                ks.sort();
                ks.dedup();
                assert_eq!(ks.len(), out.len(), "no duplicate keys");
            }
        }
        assert_eq!(t.len(), 8);
        assert_eq!(t.memory_bytes(), bytes);
        t.clear();
        assert!(t.is_empty());
        offer(&mut t, 1, 1.0, 2 * SEC);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn index_handles_colliding_hashes() {
        // Same hash, different keys: both held, each found by key equality.
        let mut t = TopK::new(4, 1.0);
        t.offer(&key(1), 42, 5.0, SEC);
        t.offer(&key(2), 42, 6.0, SEC);
        assert_eq!(t.rate(&key(1), 42, SEC), Some(5.0));
        assert_eq!(t.rate(&key(2), 42, SEC), Some(6.0));
    }

    #[test]
    fn slot_index_backward_shift_keeps_probe_chains() {
        let mut idx = SlotIndex::new(8);
        // All share one home bucket: a probe chain of 8.
        for s in 0..8 {
            idx.insert(16, s);
        }
        idx.remove(16, 3);
        for s in 0..8 {
            let found = idx.find(16, |x| x == s);
            assert_eq!(found, if s == 3 { None } else { Some(s) });
        }
    }

    proptest::proptest! {
        /// With rates that never fall per key (a sketch's estimates), skipping the lookup of
        /// keys below the smallest held leaves the table exactly as `offer` leaves it.
        #[test]
        fn offer_rising_holds_what_offer_holds(
            offers in proptest::collection::vec((0u32..40, 0.0f64..50.0), 1..400),
            k in 1usize..8,
        ) {
            let mut plain = TopK::new(k, 1.0);
            let mut rising = TopK::new(k, 1.0);
            let mut level = [0.0f64; 40];
            let now = 3_000_000_000;
            for (n, step) in offers {
                level[n as usize] += step;
                let kk = FlowKey::from_bytes(&n.to_be_bytes()).unwrap();
                plain.offer(&kk, kk.hash64(), level[n as usize], now);
                rising.offer_rising(&kk, kk.hash64(), level[n as usize], now);
                let (mut a, mut b) = (Vec::new(), Vec::new());
                plain.snapshot(now, &mut a);
                rising.snapshot(now, &mut b);
                let sorted = |mut v: Vec<(FlowKey, f64)>| {
                    v.sort_by(|x, y| x.0.as_bytes().cmp(y.0.as_bytes()));
                    v.into_iter().map(|(k, r)| (k, r.to_bits())).collect::<Vec<_>>()
                };
                proptest::prop_assert_eq!(sorted(a), sorted(b));
            }
        }

        /// As the engine uses it: a sketch's estimates offered at moving times (with jumps
        /// past the renormalisation point), both tables on the sketch's clock. `offer_rising`
        /// keeps the same keys as `offer`, with the same values up to rounding.
        #[test]
        fn offer_rising_on_a_sketch_holds_what_offer_holds(
            offers in proptest::collection::vec(
                (0u32..60, 1.0f64..1500.0, proptest::prop_oneof![
                    20 => 0u64..3_000_000,
                    1 => 0u64..100_000_000_000,
                ]),
                1..500,
            ),
            k in 1usize..10,
        ) {
            use crate::flow::sketch::DecayedCountMin;
            let tau = 1.0;
            let mut sketch = DecayedCountMin::new(64, 4, tau).unwrap();
            let mut plain = TopK::new(k, tau);
            let mut rising = TopK::new(k, tau);
            let mut now = SEC;
            for (n, weight, step) in offers {
                now += step;
                let kk = key(n);
                let hash = kk.hash64();
                let rate = sketch.add(&kk, hash, weight, now);
                plain.sync_clock(now, sketch.clock());
                rising.sync_clock(now, sketch.clock());
                plain.offer(&kk, hash, rate, now);
                rising.offer_rising(&kk, hash, rate, now);
                let (mut a, mut b) = (Vec::new(), Vec::new());
                plain.snapshot(now, &mut a);
                rising.snapshot(now, &mut b);
                a.sort_by(|x, y| x.0.as_bytes().cmp(y.0.as_bytes()));
                b.sort_by(|x, y| x.0.as_bytes().cmp(y.0.as_bytes()));
                proptest::prop_assert_eq!(a.len(), b.len());
                for ((ka, va), (kb, vb)) in a.iter().zip(&b) {
                    proptest::prop_assert_eq!(ka, kb);
                    proptest::prop_assert!((va - vb).abs() <= 1e-9 * va.abs().max(1e-300), "{} vs {}", va, vb);
                }
            }
        }

        /// Lagging heap keys change nothing: the table holds exactly what an eagerly
        /// ordered one holds (a member takes its new rate, a newcomer replaces the smallest
        /// only if larger), offer after offer.
        #[test]
        fn lazy_heap_keys_hold_the_same_keys_as_eager_ones(
            offers in proptest::collection::vec((0u32..24, 0.0f64..1000.0), 1..300),
        ) {
            let k = 6;
            let mut top = TopK::new(k, 1.0);
            let mut held: Vec<(u32, f64)> = Vec::new();
            let now = 7_000_000_000;
            for (n, rate) in offers {
                let kk = FlowKey::from_bytes(&n.to_be_bytes()).unwrap();
                top.offer(&kk, kk.hash64(), rate, now);
                if let Some(e) = held.iter_mut().find(|e| e.0 == n) {
                    e.1 = rate;
                } else if held.len() < k {
                    held.push((n, rate));
                } else {
                    let (i, min) = held
                        .iter()
                        .enumerate()
                        .min_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
                        .map(|(i, e)| (i, e.1))
                        .unwrap();
                    if rate > min {
                        held[i] = (n, rate);
                    }
                }
                let mut want: Vec<u32> = held.iter().map(|e| e.0).collect();
                want.sort_unstable();
                let mut snap = Vec::new();
                top.snapshot(now, &mut snap);
                let mut got: Vec<u32> = snap
                    .iter()
                    .map(|(key, _)| u32::from_be_bytes(key.as_bytes().try_into().unwrap()))
                    .collect();
                got.sort_unstable();
                proptest::prop_assert_eq!(&got, &want);
                for (key, r) in &snap {
                    let n = u32::from_be_bytes(key.as_bytes().try_into().unwrap());
                    let expected = held.iter().find(|e| e.0 == n).unwrap().1;
                    proptest::prop_assert!((r - expected).abs() <= 1e-9 * expected.max(1.0));
                }
            }
        }
    }
}
