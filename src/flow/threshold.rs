//! Threshold crossings with hysteresis, checked inline on every rate update (sFlow-RT
//! semantics), in a fixed-capacity table.
//!
//! An event fires when a key's rate goes above `value` while the key is armed. The key is
//! then disarmed until its rate has stayed at or below `value` for `timeout`, after which it
//! re-arms and may fire again. There is no periodic scan: between two updates of a key its
//! smoothed rate only decays, deterministically with `τ`, so from the last rate `r` seen at
//! `t` the moment it fell to `value` is `t + τ·ln(r / value)`; when the key is next seen,
//! `now ≥ below + timeout` means it re-armed in the meantime.
//!
//! Per-key thresholds keep that projection without a logarithm on the per-sample path: a
//! disarmed key stores its *level*, the highest `r·e^{(t−L)/τ}` seen (forward decay from a
//! landmark `L`, as the sketch does). The projected below time `L + τ·ln(level / value)` is
//! monotone in the level, so "still above, push the re-arm out" is a multiply and a max, and
//! "re-armed by now" is `level·e^{timeout/τ} ≤ value·e^{(now−L)/τ}`, whose right side is one
//! number per timestamp.
//!
//! `by_flow = false` keeps one armed state for the whole threshold: one event, naming the key
//! that crossed, then silence until *every* key has been below `value` for `timeout`. The
//! latest projected "below" time over all keys seen above is one number, so this is `O(1)`.
//!
//! **Capacity.** Disarmed keys live in a table of `capacity` entries (open addressing, no
//! allocation after construction). When a new key crosses and the table is full, the entry
//! projected to re-arm soonest is evicted only if it has re-armed already (exactly what
//! would have happened anyway). Otherwise every held key is still disarmed, and evicting
//! one would let it fire a duplicate on its next sample: the new crossing is *suppressed*
//! instead (no event, the key stays untracked and armed) and counted in
//! [`ThresholdState::suppressed`]. So a key fires at most once until it re-arms, however
//! many keys are above. Entries that re-armed but whose key was never seen again stay
//! counted in [`ThresholdState::triggered`] until evicted.

use super::key::FlowKey;
use super::sketch::{sanitize_tau, ForwardDecay};
use super::topk::{SlotHeap, SlotIndex};

/// Largest accepted table capacity; larger requests are clamped.
pub const MAX_CAPACITY: usize = 1 << 24;

/// One threshold on a flow's rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThresholdConfig {
    /// Rate per second above which an event fires.
    pub value: f64,
    /// One armed state per key (true) or one for the whole threshold (false).
    pub by_flow: bool,
    /// How long a rate must stay at or below `value` before the key re-arms (hysteresis).
    pub timeout_ns: u64,
    /// Most keys tracked as disarmed at once (at least one is always tracked).
    pub capacity: usize,
}

/// A threshold crossing: `key`'s rate was `value` at `now_ns`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Crossing {
    /// The key whose rate crossed.
    pub key: FlowKey,
    /// Its rate per second when it crossed.
    pub value: f64,
    /// When it crossed.
    pub now_ns: u64,
}

/// Armed/disarmed state of one threshold.
#[derive(Debug, Clone)]
pub struct ThresholdState {
    cfg: ThresholdConfig,
    tau_ns: f64,
    /// Per slot: the disarmed key.
    keys: Vec<FlowKey>,
    hashes: Vec<u64>,
    /// Per slot: the key's level (see the module docs), in landmark units of `decay`.
    level: Vec<f64>,
    /// Per slot: the timeout is waived (the policy let the key back in), so the key re-arms
    /// as soon as its rate is below `value`.
    waived: Vec<bool>,
    /// Slots in use, keyed by re-arm order ([`ThresholdState::rearm_key`]) for eviction.
    /// Keys may lag behind a level that rose since (rises are frequent, evictions rare):
    /// eviction brings a stale minimum up to date before it trusts it.
    rearm: SlotHeap<f64>,
    index: SlotIndex,
    /// Slots not in use.
    free: Vec<u32>,
    /// Landmark clock of the levels.
    decay: ForwardDecay,
    /// `e^{timeout/τ}`: a level re-arms once `level · grow ≤ value · up`.
    grow: f64,
    /// `by_flow = false`: `None` when armed, else the projected time every key is below.
    global_below_at: Option<u64>,
    /// Crossings not fired because the table was full of keys still disarmed.
    suppressed: u64,
}

impl ThresholdState {
    /// State for `cfg` on rates smoothed with time constant `tau_secs` (the flow's `t`).
    pub fn new(cfg: ThresholdConfig, tau_secs: f64) -> Self {
        let n = if cfg.by_flow {
            cfg.capacity.clamp(1, MAX_CAPACITY)
        } else {
            0
        };
        let cfg = ThresholdConfig {
            capacity: n.max(1),
            ..cfg
        };
        let tau_secs = sanitize_tau(tau_secs);
        Self {
            cfg,
            tau_ns: tau_secs * 1e9,
            keys: vec![FlowKey::EMPTY; n],
            hashes: vec![0; n],
            level: vec![0.0; n],
            waived: vec![false; n],
            rearm: SlotHeap::new(n),
            index: SlotIndex::new(n),
            free: (0..n as u32).rev().collect(),
            decay: ForwardDecay::new(tau_secs),
            grow: (cfg.timeout_ns as f64 / (tau_secs * 1e9)).exp(),
            global_below_at: None,
            suppressed: 0,
        }
    }

    /// The configuration in force (capacity after clamping).
    pub fn config(&self) -> &ThresholdConfig {
        &self.cfg
    }

    /// When a rate of `rate` at `now_ns`, left to decay, falls to the threshold; `now_ns`
    /// if it is not above it. A non-positive threshold is never reached by decay.
    #[inline]
    fn projected_below(&self, rate: f64, now_ns: u64) -> u64 {
        // Written so that NaN rates count as not above and NaN thresholds as unreachable.
        let above = rate > self.cfg.value;
        if !above {
            return now_ns;
        }
        let reachable = self.cfg.value > 0.0;
        if !reachable {
            return u64::MAX;
        }
        // Float-to-int `as` saturates (and maps NaN to 0), so this cannot wrap.
        let dt = (self.tau_ns * (rate / self.cfg.value).ln()).ceil() as u64;
        now_ns.saturating_add(dt)
    }

    /// Whether a rate at or below the threshold from `below_ns` has re-armed by `now_ns`.
    /// A saturated re-arm time means never (infinite timeout, or a threshold decay cannot
    /// reach).
    #[inline]
    fn rearmed(&self, below_ns: u64, now_ns: u64) -> bool {
        let at = below_ns.saturating_add(self.cfg.timeout_ns);
        at != u64::MAX && now_ns >= at
    }

    /// Checks the key's freshly updated `rate` at `now_ns`; returns the crossing if an event
    /// fires.
    #[inline]
    #[must_use]
    pub fn check(&mut self, key: &FlowKey, hash: u64, rate: f64, now_ns: u64) -> Option<Crossing> {
        self.check_with_evidence(key, hash, rate, now_ns, true)
    }

    /// Like [`check`](Self::check), but an armed key may fire only when `evident` (the
    /// caller judged there are enough samples behind `rate`). Hysteresis of keys already
    /// disarmed follows the rate alone, so weak evidence never re-arms a key early.
    #[inline]
    pub fn check_with_evidence(
        &mut self,
        key: &FlowKey,
        hash: u64,
        rate: f64,
        now_ns: u64,
        evident: bool,
    ) -> Option<Crossing> {
        if self.cfg.by_flow {
            self.check_flow(key, hash, rate, now_ns, evident)
        } else {
            self.check_global(key, rate, now_ns, evident)
        }
    }

    #[inline]
    fn fire(key: &FlowKey, rate: f64, now_ns: u64) -> Option<Crossing> {
        Some(Crossing {
            key: *key,
            value: rate,
            now_ns,
        })
    }

    fn check_global(
        &mut self,
        key: &FlowKey,
        rate: f64,
        now_ns: u64,
        evident: bool,
    ) -> Option<Crossing> {
        let above = rate > self.cfg.value;
        match self.global_below_at {
            None if above && !evident => None,
            None if above => {
                self.global_below_at = Some(self.projected_below(rate, now_ns));
                Self::fire(key, rate, now_ns)
            }
            None => None,
            Some(b) if self.rearmed(b, now_ns) => {
                if above && !evident {
                    None
                } else if above {
                    self.global_below_at = Some(self.projected_below(rate, now_ns));
                    Self::fire(key, rate, now_ns)
                } else {
                    self.global_below_at = None;
                    None
                }
            }
            Some(b) => {
                if above {
                    // Another key (or this one) is above: the all-below time moves out.
                    self.global_below_at = Some(b.max(self.projected_below(rate, now_ns)));
                }
                None
            }
        }
    }

    #[inline]
    fn check_flow(
        &mut self,
        key: &FlowKey,
        hash: u64,
        rate: f64,
        now_ns: u64,
        evident: bool,
    ) -> Option<Crossing> {
        if let Some(scale) = self.decay.advance(now_ns) {
            self.rescale(scale);
        }
        let up = self.decay.up();
        let above = rate > self.cfg.value;
        if !above && self.rearm.len() == 0 {
            // Armed and below, with no key held: nothing to look up.
            return None;
        }
        let keys = &self.keys;
        let Some(slot) = self.index.find(hash, |s| keys.get(s) == Some(key)) else {
            // Untracked keys are armed.
            if !above || !evident {
                return None;
            }
            let limit = self.cfg.value * up;
            if !self.insert(key, hash, self.level_of(rate, up), limit) {
                self.suppressed += 1;
                return None;
            }
            return Self::fire(key, rate, now_ns);
        };
        // A level at or below this one has decayed to `value` by now.
        let limit = self.cfg.value * up;
        let level = self.level[slot];
        if self.slot_rearmed(slot, level, limit) {
            // It stayed below for the whole timeout (or was let back in) since we last saw
            // it: re-armed.
            if above && !evident {
                // Armed, above, but not enough samples yet: stays armed, untouched.
                return None;
            }
            if above {
                // Fires and is disarmed again, with the normal timeout.
                self.waived[slot] = false;
                self.level[slot] = self.level_of(rate, up);
                self.rearm.set(slot, self.rearm_key(slot));
                return Self::fire(key, rate, now_ns);
            }
            self.remove(slot);
            return None;
        }
        if above {
            // Still above: the re-arm moves out (the heap catches up at eviction).
            let l = self.level_of(rate, up);
            if l > level {
                self.level[slot] = l;
            }
        } else if level > limit && self.reachable() {
            // Below now although the projection said later: below from now on.
            self.level[slot] = limit;
            self.rearm.set(slot, self.rearm_key(slot));
        }
        None
    }

    /// A threshold that decay can reach (the configuration accepts no other).
    #[inline]
    fn reachable(&self) -> bool {
        self.cfg.value > 0.0 && self.cfg.value.is_finite()
    }

    /// The level of `rate` above the threshold at the timestamp whose factor is `up`;
    /// infinite (never below) if the threshold cannot be reached by decay.
    #[inline]
    fn level_of(&self, rate: f64, up: f64) -> f64 {
        if self.reachable() {
            rate * up
        } else {
            f64::INFINITY
        }
    }

    /// Whether `slot`, at `level`, has re-armed by the timestamp whose limit is `limit`.
    #[inline]
    fn slot_rearmed(&self, slot: usize, level: f64, limit: f64) -> bool {
        if self.waived[slot] {
            level <= limit
        } else {
            self.grow.is_finite() && level * self.grow <= limit
        }
    }

    /// The slot's place in re-arm order: `e^{(rearm − L)/τ} · value`, never NaN.
    #[inline]
    fn rearm_key(&self, slot: usize) -> f64 {
        let level = self.level[slot];
        if self.waived[slot] {
            level
        } else {
            (level * self.grow).max(level)
        }
    }

    /// Moves the levels' clock to `now_ns` with `hint`'s factors when it can (see
    /// [`ForwardDecay::advance_like`]).
    #[inline]
    pub(crate) fn sync_clock(&mut self, now_ns: u64, hint: &ForwardDecay) {
        if let Some(scale) = self.decay.advance_like(now_ns, hint) {
            self.rescale(scale);
        }
    }

    /// The landmark moved: every level (and heap key) is multiplied by `scale`.
    fn rescale(&mut self, scale: f64) {
        for l in &mut self.level {
            *l *= scale;
        }
        self.rearm.map_priorities(|k| k * scale);
    }

    /// Waives the hysteresis timeout of a disarmed `key` (per-key thresholds): it re-arms
    /// as soon as its smoothed rate is at or below `value`, not `timeout` later. Used when
    /// the policy lets a blocked key back in: a new flood after re-admission is caught at
    /// once, while late samples of the flood that got it blocked (still above `value`)
    /// keep it disarmed instead of blocking it again. False if the key was armed.
    pub fn rearm(&mut self, key: &FlowKey, hash: u64) -> bool {
        if !self.cfg.by_flow {
            return false;
        }
        let keys = &self.keys;
        match self.index.find(hash, |s| keys.get(s) == Some(key)) {
            Some(slot) => {
                self.waived[slot] = true;
                self.rearm.set(slot, self.rearm_key(slot));
                true
            }
            None => false,
        }
    }

    /// Holds `key` as disarmed; false if the table is full of keys still disarmed at the
    /// timestamp whose limit is `limit` (see the module docs).
    fn insert(&mut self, key: &FlowKey, hash: u64, level: f64, limit: f64) -> bool {
        let slot = match self.free.pop() {
            Some(s) => s as usize,
            None => {
                // Full: the entry projected to re-arm soonest may go if it has re-armed. Heap
                // keys only lag behind rises, so a minimum that is up to date is the true one.
                let victim = loop {
                    let Some((stored, victim)) = self.rearm.peek() else {
                        return false;
                    };
                    let current = self.rearm_key(victim);
                    if current > stored {
                        self.rearm.set(victim, current);
                    } else {
                        break victim;
                    }
                };
                if !self.slot_rearmed(victim, self.level[victim], limit) {
                    return false;
                }
                self.index.remove(self.hashes[victim], victim);
                victim
            }
        };
        self.keys[slot] = *key;
        self.hashes[slot] = hash;
        self.waived[slot] = false;
        self.level[slot] = level;
        self.index.insert(hash, slot);
        self.rearm.set(slot, self.rearm_key(slot));
        true
    }

    fn remove(&mut self, slot: usize) {
        self.index.remove(self.hashes[slot], slot);
        self.rearm.remove(slot);
        self.free.push(slot as u32);
    }

    /// Keys currently held as disarmed (for `by_flow = false`, 1 while disarmed). Some may
    /// have re-armed since they were last seen.
    pub fn triggered(&self) -> usize {
        if self.cfg.by_flow {
            self.rearm.len()
        } else {
            usize::from(self.global_below_at.is_some())
        }
    }

    /// Crossings not fired because the table was full of keys still disarmed (each a
    /// sample above `value` of a key the table could not hold).
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// Bytes held; fixed at construction.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.keys.capacity() * std::mem::size_of::<FlowKey>()
            + self.hashes.capacity() * 8
            + self.level.capacity() * 8
            + self.waived.capacity()
            + self.free.capacity() * 4
            + self.rearm.memory_bytes()
            + self.index.memory_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

    fn key(n: u32) -> FlowKey {
        FlowKey::from_bytes(&n.to_be_bytes()).unwrap()
    }

    fn cfg(by_flow: bool, capacity: usize) -> ThresholdConfig {
        ThresholdConfig {
            value: 100.0,
            by_flow,
            timeout_ns: 2 * SEC,
            capacity,
        }
    }

    fn check(s: &mut ThresholdState, n: u32, rate: f64, now: u64) -> Option<Crossing> {
        let k = key(n);
        s.check(&k, k.hash64(), rate, now)
    }

    #[test]
    fn fires_once_on_crossing_and_not_while_above() {
        let mut s = ThresholdState::new(cfg(true, 16), 1.0);
        assert_eq!(check(&mut s, 1, 50.0, SEC), None);
        assert_eq!(s.triggered(), 0);
        let c = check(&mut s, 1, 150.0, SEC + MS).unwrap();
        assert_eq!(
            c,
            Crossing {
                key: key(1),
                value: 150.0,
                now_ns: SEC + MS
            }
        );
        assert_eq!(s.triggered(), 1);
        for i in 2..1000 {
            assert_eq!(check(&mut s, 1, 150.0 + i as f64, SEC + i * MS), None);
        }
        // Another key is independent.
        assert!(check(&mut s, 2, 101.0, 2 * SEC).is_some());
        assert_eq!(s.triggered(), 2);
    }

    /// Rate 2·value at t0, then silence: it falls to value at t0 + τ·ln 2, so it re-arms at
    /// t0 + τ·ln 2 + timeout and not a moment earlier.
    #[test]
    fn rearms_only_after_timeout_below_computed_from_decay() {
        let tau = 1.0;
        let t0 = 10 * SEC;
        let cross = t0 + (tau * 1e9 * 2f64.ln()) as u64;
        let rearm = cross + 2 * SEC;
        for (probe, fires) in [(rearm - MS, false), (rearm + MS, true)] {
            let mut s = ThresholdState::new(cfg(true, 16), tau);
            assert!(check(&mut s, 1, 200.0, t0).is_some());
            // A new burst at `probe` lifts the rate above value again.
            let got = check(&mut s, 1, 300.0, probe);
            assert_eq!(got.is_some(), fires, "probe at {probe}");
        }
        // Seen below after the timeout: the entry is dropped (re-armed, untracked).
        let mut s = ThresholdState::new(cfg(true, 16), tau);
        assert!(check(&mut s, 1, 200.0, t0).is_some());
        assert_eq!(check(&mut s, 1, 1.0, rearm + MS), None);
        assert_eq!(s.triggered(), 0);
        assert!(check(&mut s, 1, 101.0, rearm + 2 * MS).is_some());
    }

    #[test]
    fn staying_above_keeps_pushing_rearm_out() {
        let mut s = ThresholdState::new(cfg(true, 4), 1.0);
        assert!(check(&mut s, 1, 200.0, 0).is_some());
        // Above every second for a minute: never fires again.
        for i in 1..60 {
            assert_eq!(check(&mut s, 1, 200.0, i * SEC), None);
        }
        // Projected below from 59 + ln 2 s; seen below at 60 s, above again at 61 s (before
        // the timeout): no event.
        assert_eq!(check(&mut s, 1, 90.0, 60 * SEC), None);
        assert_eq!(check(&mut s, 1, 150.0, 61 * SEC), None);
        // 150 at 61 s is below from 61 + ln 1.5 ≈ 61.41 s and re-arms at ≈ 63.41 s.
        assert_eq!(check(&mut s, 1, 101.0, 63 * SEC), None);
        // 101 at 63 s is below from 63 + ln 1.01 ≈ 63.01 s: re-arms at ≈ 65.01 s.
        assert_eq!(check(&mut s, 1, 80.0, 64 * SEC), None);
        assert!(check(&mut s, 1, 150.0, 65 * SEC + 100 * MS).is_some());
    }

    #[test]
    fn zero_timeout_rearms_as_soon_as_below() {
        let mut c = cfg(true, 4);
        c.timeout_ns = 0;
        let mut s = ThresholdState::new(c, 1.0);
        assert!(check(&mut s, 1, 200.0, 0).is_some());
        // Still above at 0.5 s (200 e^-0.5 = 121): no event.
        assert_eq!(check(&mut s, 1, 130.0, SEC / 2), None);
        // 130 at 0.5 s falls to 100 at 0.5 + ln 1.3 ≈ 0.762 s.
        assert!(check(&mut s, 1, 130.0, SEC).is_some());
    }

    #[test]
    fn global_threshold_fires_once_for_all_keys() {
        let mut s = ThresholdState::new(cfg(false, 16), 1.0);
        assert!(check(&mut s, 1, 200.0, 0).is_some());
        assert_eq!(s.triggered(), 1);
        // Other keys above: no more events.
        assert_eq!(check(&mut s, 2, 400.0, SEC), None);
        assert_eq!(check(&mut s, 3, 150.0, SEC), None);
        // Key 1 falls below at ln 2 s, but key 2 (400 at 1 s) only at 1 + ln 4 ≈ 2.386 s;
        // re-arm at ≈ 4.386 s.
        assert_eq!(check(&mut s, 1, 300.0, 4 * SEC), None);
        // Key 1 at 300 pushes it to 4 + ln 3 ≈ 5.099 s, re-arm ≈ 7.099 s.
        assert_eq!(check(&mut s, 4, 50.0, 7 * SEC), None);
        let c = check(&mut s, 5, 120.0, 7 * SEC + 200 * MS).unwrap();
        assert_eq!(c.key, key(5));
        // Seen below after re-arm: armed, nothing held.
        assert_eq!(check(&mut s, 5, 1.0, 20 * SEC), None);
        assert_eq!(s.triggered(), 0);
    }

    #[test]
    fn full_table_suppresses_new_crossings_instead_of_evicting_disarmed_keys() {
        let mut s = ThresholdState::new(cfg(true, 2), 1.0);
        assert_eq!(s.config().capacity, 2);
        // Key 1: 1000 at 0 → below at ln 10 ≈ 2.30 s, re-arm ≈ 4.30 s.
        assert!(check(&mut s, 1, 1000.0, 0).is_some());
        // Key 2: 110 at 0 → below at ≈ 0.095 s, re-arm ≈ 2.095 s.
        assert!(check(&mut s, 2, 110.0, 0).is_some());
        // Key 3 crosses while full at 1 s, both held keys still disarmed: suppressed.
        assert_eq!(check(&mut s, 3, 500.0, SEC), None);
        assert_eq!(s.suppressed(), 1);
        assert_eq!(s.triggered(), 2);
        // Neither held key fires again.
        assert_eq!(check(&mut s, 1, 1000.0, SEC + MS), None);
        assert_eq!(check(&mut s, 2, 120.0, SEC + 2 * MS), None);
        // 120 at 1.002 s keeps key 2 disarmed until ≈ 1.002 + ln 1.2 + 2 ≈ 3.19 s. Key 3
        // is still suppressed at 3 s, and fires once key 2 re-armed (its entry is evicted).
        assert_eq!(check(&mut s, 3, 500.0, 3 * SEC), None);
        assert_eq!(s.suppressed(), 2);
        assert!(check(&mut s, 3, 500.0, 3_300 * MS).is_some());
        assert_eq!(s.triggered(), 2);
        // Key 1 is still held and disarmed.
        assert_eq!(check(&mut s, 1, 1000.0, 3_301 * MS), None);
        assert_eq!(s.suppressed(), 2);
    }

    #[test]
    fn table_memory_is_fixed_under_a_flood_and_no_key_fires_twice() {
        let mut s = ThresholdState::new(cfg(true, 64), 1.0);
        let bytes = s.memory_bytes();
        let mut fired = vec![0u32; 100_000];
        for round in 0..2u64 {
            for i in 0..100_000u32 {
                let now = SEC + round * 100 * MS + u64::from(i);
                if check(&mut s, i, 1000.0, now).is_some() {
                    fired[i as usize] += 1;
                }
            }
        }
        assert!(fired.iter().all(|&n| n <= 1), "a key fired twice");
        let events = fired.iter().filter(|&&n| n == 1).count() as u64;
        assert_eq!(events, 64, "the table holds 64 disarmed keys");
        assert_eq!(events + s.suppressed(), 2 * 100_000 - 64);
        assert_eq!(s.triggered(), 64);
        assert_eq!(s.memory_bytes(), bytes);
    }

    #[test]
    fn odd_rates_and_thresholds_never_panic() {
        let mut c = cfg(true, 0);
        c.value = 0.0;
        let mut s = ThresholdState::new(c, f64::NAN);
        assert_eq!(s.config().capacity, 1);
        assert!(check(&mut s, 1, 1.0, u64::MAX).is_some());
        assert_eq!(check(&mut s, 1, f64::INFINITY, u64::MAX), None);
        assert_eq!(check(&mut s, 2, f64::NAN, 0), None);
        let mut c = cfg(false, 1);
        c.timeout_ns = u64::MAX;
        let mut s = ThresholdState::new(c, 1.0);
        assert!(check(&mut s, 1, f64::INFINITY, 5).is_some());
        assert_eq!(check(&mut s, 1, 1.0, u64::MAX), None);
    }

    /// The per-key rules with exact nanosecond projections (`below = t + τ·ln(r/value)`),
    /// one entry per disarmed key and no capacity limit: what the level form must do.
    struct Exact {
        value: f64,
        tau_ns: f64,
        timeout_ns: u64,
        held: std::collections::HashMap<u32, (u64, bool)>,
    }

    impl Exact {
        fn projected(&self, rate: f64, now: u64) -> u64 {
            if rate > self.value {
                now + (self.tau_ns * (rate / self.value).ln()).ceil() as u64
            } else {
                now
            }
        }

        /// Whether it fires; `None` when `now` is within 10 µs of a re-arm time, where
        /// rounding may decide either way.
        fn check(&mut self, k: u32, rate: f64, now: u64, evident: bool) -> Option<bool> {
            let above = rate > self.value;
            let Some(&(below, waived)) = self.held.get(&k) else {
                if above && evident {
                    self.held.insert(k, (self.projected(rate, now), false));
                    return Some(true);
                }
                return Some(false);
            };
            let at = below + if waived { 0 } else { self.timeout_ns };
            if now.abs_diff(at) < 10_000 {
                return None;
            }
            if now >= at {
                if above && !evident {
                    return Some(false);
                }
                if above {
                    self.held.insert(k, (self.projected(rate, now), false));
                    return Some(true);
                }
                self.held.remove(&k);
                return Some(false);
            }
            let b = if above {
                below.max(self.projected(rate, now))
            } else {
                below.min(now)
            };
            self.held.insert(k, (b, waived));
            Some(false)
        }

        fn rearm(&mut self, k: u32) -> bool {
            match self.held.get_mut(&k) {
                Some(e) => {
                    e.1 = true;
                    true
                }
                None => false,
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn level_form_agrees_with_exact_projections(
            tau_ms in 100u64..3000,
            timeout_ms in 0u64..5000,
            steps in proptest::collection::vec(
                (0u32..4, 0.0f64..400.0, 0u64..800, proptest::bool::weighted(0.9),
                 proptest::bool::weighted(0.05)),
                1..120,
            ),
        ) {
            let c = ThresholdConfig {
                value: 100.0,
                by_flow: true,
                timeout_ns: timeout_ms * MS,
                capacity: 16,
            };
            let mut s = ThresholdState::new(c, tau_ms as f64 / 1000.0);
            let mut exact = Exact {
                value: 100.0,
                tau_ns: tau_ms as f64 * 1e6,
                timeout_ns: timeout_ms * MS,
                held: Default::default(),
            };
            let mut now = 5 * SEC;
            for (k, rate, dt_ms, evident, rearm) in steps {
                now += dt_ms * MS;
                if rearm {
                    let kk = key(k);
                    proptest::prop_assert_eq!(s.rearm(&kk, kk.hash64()), exact.rearm(k));
                    continue;
                }
                let Some(want) = exact.check(k, rate, now, evident) else {
                    break;
                };
                let kk = key(k);
                let got = s.check_with_evidence(&kk, kk.hash64(), rate, now, evident).is_some();
                proptest::prop_assert_eq!(got, want, "key {} rate {} at {} ns", k, rate, now);
                proptest::prop_assert_eq!(s.triggered(), exact.held.len());
            }
        }
    }
}
