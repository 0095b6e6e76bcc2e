//! Time-decayed count-min sketch: smoothed per-key rates in memory fixed at construction.
//!
//! Semantics follow sFlow-RT's smoothing: a key's decayed count is
//! `C(now) = Σ wᵢ·e^{-(now - tᵢ)/τ}` and its rate is `C/τ` per second, so a key sending a
//! constant `r` per second converges to `r`.
//!
//! **Forward decay.** Instead of decaying every counter as time passes, each weight is
//! stored multiplied by `e^{(t - L)/τ}` relative to a landmark `L`, and an estimate is read
//! back multiplied by `e^{-(now - L)/τ}`. Decay is a common factor, so it never touches the
//! counters on update. When the exponent exceeds [`RENORM_EXPONENT`] all counters are scaled
//! down once and `L` moves to `now` (one pass over the table every 64·τ, amortised to
//! nothing). The factor is cached per timestamp: updates in one received batch share
//! `now_ns`, so the hot path usually computes no `exp()` at all.
//!
//! **Error bound.** With conservative update, an estimate is never below the key's true
//! decayed count (up to float rounding), and with probability at least `1 - δ` it exceeds it
//! by at most `ε·N`, where `N` is the total decayed mass of all keys ([`Self::total_rate`]
//! in rate units), `ε = e / width` and `δ = e^{-depth}`. Decay scales every counter and `N`
//! by the same factor, so the classic count-min bound holds at every instant.
//!
//! **Counters are `f64`.** Landmark scaling multiplies weights by up to `e^64 ≈ 6·10²⁷`,
//! beyond what `f32` can hold once byte weights are summed, and the never-underestimate
//! guarantee needs every increment to register: an `f32` counter at 2²⁴ units silently
//! drops weight-1 increments. The default 4 × 4096 table is 128 KiB, which stays in L2.
//!
//! Memory is `width × depth` counters whatever the number of distinct keys: a flood of
//! spoofed sources raises estimates (within the bound above) but grows nothing.

use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Arc;

use super::key::FlowKey;

/// Largest accepted width (counters per row), after rounding up to a power of two.
pub const MAX_WIDTH: usize = 1 << 22;
/// Smallest width; narrower requests are rounded up to it.
pub const MIN_WIDTH: usize = 16;
/// Largest accepted depth (rows); `δ = e^{-16}` is already below one in eight million.
pub const MAX_DEPTH: usize = 16;
/// Shortest accepted smoothing time, in seconds.
pub const MIN_TAU_SECS: f64 = 1e-3;
/// Longest accepted smoothing time, in seconds.
pub const MAX_TAU_SECS: f64 = 1e6;
/// Landmark exponent `(now - L)/τ` beyond which stored values are renormalised.
pub const RENORM_EXPONENT: f64 = 64.0;

/// Why a sketch could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SketchError {
    /// Width was zero or above [`MAX_WIDTH`].
    #[error("sketch width must be between 1 and {}", MAX_WIDTH)]
    Width,
    /// Depth was zero or above [`MAX_DEPTH`].
    #[error("sketch depth must be between 1 and {}", MAX_DEPTH)]
    Depth,
    /// Smoothing time was not finite or outside [`MIN_TAU_SECS`]..=[`MAX_TAU_SECS`].
    #[error(
        "smoothing time must be between {} and {} seconds",
        MIN_TAU_SECS,
        MAX_TAU_SECS
    )]
    Tau,
}

/// Clamps a smoothing time for constructors that cannot fail (NaN becomes one second).
pub(crate) fn sanitize_tau(tau_secs: f64) -> f64 {
    if tau_secs.is_nan() {
        1.0
    } else {
        tau_secs.clamp(MIN_TAU_SECS, MAX_TAU_SECS)
    }
}

/// The forward-decay clock shared by the sketch and the top-k table: a landmark, and the
/// scale factors for the most recent timestamp.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ForwardDecay {
    landmark_ns: u64,
    /// Landmarks are multiples of this (`τ·RENORM_EXPONENT/2`), so that clocks of the same
    /// `τ` on different workers agree on the landmark whenever their times are close.
    grid_ns: u64,
    inv_tau_ns: f64,
    cached_now: u64,
    up: f64,
    down: f64,
}

impl ForwardDecay {
    /// A clock with its landmark at time zero; `tau_secs` must already be sane.
    pub(crate) fn new(tau_secs: f64) -> Self {
        Self {
            landmark_ns: 0,
            grid_ns: ((tau_secs * 1e9 * RENORM_EXPONENT / 2.0) as u64).max(1),
            inv_tau_ns: 1.0 / (tau_secs * 1e9),
            cached_now: 0,
            up: 1.0,
            down: 1.0,
        }
    }

    /// `(now - L)/τ`, clamped below so that times far before the landmark cannot underflow
    /// the scale factor to zero (callers promise monotone time; this only limits damage).
    #[inline]
    fn exponent(&self, now_ns: u64) -> f64 {
        let x = if now_ns >= self.landmark_ns {
            (now_ns - self.landmark_ns) as f64 * self.inv_tau_ns
        } else {
            -((self.landmark_ns - now_ns) as f64 * self.inv_tau_ns)
        };
        x.max(-RENORM_EXPONENT)
    }

    /// Moves the clock to `now_ns`. Returns `Some(scale)` when the landmark moved and every
    /// stored value must be multiplied by `scale` before the new factors apply.
    #[inline]
    pub(crate) fn advance(&mut self, now_ns: u64) -> Option<f64> {
        if now_ns == self.cached_now {
            return None;
        }
        self.cached_now = now_ns;
        let x = self.exponent(now_ns);
        if x > RENORM_EXPONENT {
            // The new landmark is the grid point at or before `now`: at most half the
            // renormalisation exponent behind it.
            let landmark = self.align(now_ns);
            let moved = (landmark - self.landmark_ns) as f64 * self.inv_tau_ns;
            self.landmark_ns = landmark;
            self.up = ((now_ns - landmark) as f64 * self.inv_tau_ns).exp();
            self.down = 1.0 / self.up;
            // May underflow to zero after a long silence: everything stored has decayed.
            return Some((-moved).exp());
        }
        self.up = x.exp();
        self.down = 1.0 / self.up;
        None
    }

    /// [`advance`](Self::advance), taking the factors from `hint` when it is a clock of the
    /// same `τ` and landmark already at `now_ns`: the same values without another `exp`.
    /// The sketch, the top-k and the thresholds of one flow move in lockstep, so one `exp`
    /// per timestamp serves all three.
    #[inline]
    pub(crate) fn advance_like(&mut self, now_ns: u64, hint: &ForwardDecay) -> Option<f64> {
        if now_ns != self.cached_now
            && hint.cached_now == now_ns
            && hint.landmark_ns == self.landmark_ns
            && hint.inv_tau_ns == self.inv_tau_ns
        {
            self.cached_now = now_ns;
            self.up = hint.up;
            self.down = hint.down;
            return None;
        }
        self.advance(now_ns)
    }

    /// The grid point at or before `now_ns`.
    #[inline]
    fn align(&self, now_ns: u64) -> u64 {
        now_ns - now_ns % self.grid_ns
    }

    /// The landmark, in nanoseconds (a multiple of the grid).
    #[inline]
    pub(crate) fn landmark_ns(&self) -> u64 {
        self.landmark_ns
    }

    /// Factor turning landmark units into a value at `now_ns` for a clock of this `τ` whose
    /// landmark is `landmark_ns` (another worker's): this clock's own factor when the
    /// landmarks agree, as they do but around a grid point.
    #[inline]
    pub(crate) fn down_from(&self, landmark_ns: u64, now_ns: u64) -> f64 {
        if landmark_ns == self.landmark_ns {
            return self.down_at(now_ns);
        }
        let x = if now_ns >= landmark_ns {
            (now_ns - landmark_ns) as f64 * self.inv_tau_ns
        } else {
            -((landmark_ns - now_ns) as f64 * self.inv_tau_ns)
        };
        (-x.max(-RENORM_EXPONENT)).exp()
    }

    /// Factor turning a value at the current timestamp into landmark units.
    #[inline]
    pub(crate) fn up(&self) -> f64 {
        self.up
    }

    /// Factor turning landmark units into a value at the current timestamp.
    #[inline]
    pub(crate) fn down(&self) -> f64 {
        self.down
    }

    /// Factor turning landmark units into a value at `now_ns`, without moving the clock.
    #[inline]
    pub(crate) fn down_at(&self, now_ns: u64) -> f64 {
        if now_ns == self.cached_now {
            self.down
        } else {
            (-self.exponent(now_ns)).exp()
        }
    }

    /// Resets the landmark to the grid point at or before the most recent timestamp.
    pub(crate) fn reset(&mut self) {
        self.landmark_ns = self.align(self.cached_now);
        self.up = ((self.cached_now - self.landmark_ns) as f64 * self.inv_tau_ns).exp();
        self.down = 1.0 / self.up;
    }
}

/// Per-row (xor seed, odd multiplier) pairs, derived at compile time with splitmix64 so that
/// rows hash independently from one 64-bit key hash.
const ROW_MIX: [(u64, u64); MAX_DEPTH] = row_mix();

const fn row_mix() -> [(u64, u64); MAX_DEPTH] {
    const fn splitmix(state: u64) -> u64 {
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    let mut out = [(0u64, 0u64); MAX_DEPTH];
    let mut state: u64 = 0x5EED_F10A_7C0D_E001;
    let mut i = 0;
    while i < MAX_DEPTH {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let seed = splitmix(state);
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mult = splitmix(state) | 1;
        out[i] = (seed, mult);
        i += 1;
    }
    out
}

/// One sketch's counters (`f64` bits in atomics), written by the worker that owns the
/// sketch and readable by every other worker without a lock: plain relaxed loads and
/// stores, no read-modify-write, since each counter has a single writer.
///
/// The rare renormalisation (every ~32·τ) rescales every counter; it is bracketed by a
/// sequence number (odd while it runs) so that a reader can tell a consistent read from one
/// that mixed scales, and retry.
#[derive(Debug)]
pub struct SketchCells {
    counters: Box<[AtomicU64]>,
    /// Landmark of the counters' units, in nanoseconds.
    landmark_ns: AtomicU64,
    /// Odd while the owner rescales.
    renorm_seq: AtomicU64,
}

impl SketchCells {
    /// `len` zero counters with their landmark at time zero.
    pub(crate) fn zeroed(len: usize) -> SketchCells {
        SketchCells {
            counters: (0..len).map(|_| AtomicU64::new(0)).collect(),
            landmark_ns: AtomicU64::new(0),
            renorm_seq: AtomicU64::new(0),
        }
    }

    /// Bytes held; fixed at construction.
    pub(crate) fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.counters.len() * std::mem::size_of::<AtomicU64>()
    }

    #[inline(always)]
    fn get(&self, i: usize) -> Option<f64> {
        self.counters
            .get(i)
            .map(|c| f64::from_bits(c.load(Ordering::Relaxed)))
    }

    /// Adds the counters at `at` into `sums` (landmark units scaled by `scale(landmark)`),
    /// read consistently with respect to renormalisation (retried a few times if one ran
    /// meanwhile; a renormalisation takes microseconds every ~32·τ).
    #[inline]
    pub(crate) fn add_into(&self, at: &[usize], sums: &mut [f64], scale: impl Fn(u64) -> f64) {
        let mut read = [0.0f64; MAX_DEPTH];
        let mut landmark = 0;
        for _ in 0..4 {
            let seq = self.renorm_seq.load(Ordering::Acquire);
            landmark = self.landmark_ns.load(Ordering::Relaxed);
            for (r, &i) in read.iter_mut().zip(at) {
                *r = self.get(i).unwrap_or(0.0);
            }
            fence(Ordering::Acquire);
            if seq % 2 == 0 && self.renorm_seq.load(Ordering::Relaxed) == seq {
                break;
            }
        }
        let f = scale(landmark);
        for (s, r) in sums.iter_mut().zip(read) {
            *s += r * f;
        }
    }
}

/// A count-min sketch of exponentially decayed weights with conservative update.
///
/// Its counters live in [`SketchCells`] that other workers may read (see
/// [`crate::flow::network`]); only this sketch writes them.
#[derive(Debug)]
pub struct DecayedCountMin {
    /// `depth` rows of `width` counters, row-major, in landmark units.
    cells: Arc<SketchCells>,
    width: usize,
    depth: usize,
    /// `64 - log2(width)`: row indices are the top bits of a multiply-mix.
    shift: u32,
    decay: ForwardDecay,
    /// Sum of every weight added, in landmark units (the `N` of the error bound).
    total: f64,
    inv_tau_secs: f64,
}

impl Clone for DecayedCountMin {
    /// A copy with counters of its own.
    fn clone(&self) -> Self {
        let cells = SketchCells::zeroed(self.cells.counters.len());
        for (to, from) in cells.counters.iter().zip(self.cells.counters.iter()) {
            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        cells
            .landmark_ns
            .store(self.decay.landmark_ns(), Ordering::Relaxed);
        Self {
            cells: Arc::new(cells),
            ..*self
        }
    }
}

impl DecayedCountMin {
    /// Checks the parameters [`DecayedCountMin::new`] takes, without allocating.
    pub fn check(width: usize, depth: usize, tau_secs: f64) -> Result<(), SketchError> {
        if width == 0 || width > MAX_WIDTH {
            return Err(SketchError::Width);
        }
        if depth == 0 || depth > MAX_DEPTH {
            return Err(SketchError::Depth);
        }
        if !(MIN_TAU_SECS..=MAX_TAU_SECS).contains(&tau_secs) {
            return Err(SketchError::Tau);
        }
        Ok(())
    }

    /// Builds a sketch of `depth` rows of `width` counters (rounded up to a power of two, at
    /// least [`MIN_WIDTH`]) with smoothing time `tau_secs`.
    pub fn new(width: usize, depth: usize, tau_secs: f64) -> Result<Self, SketchError> {
        Self::check(width, depth, tau_secs)?;
        let cells = Arc::new(SketchCells::zeroed(Self::cells_len(width, depth)));
        Ok(Self::on_cells(cells, width, depth, tau_secs))
    }

    /// Counters a sketch of this (checked) width and depth holds.
    pub(crate) fn cells_len(width: usize, depth: usize) -> usize {
        width.next_power_of_two().max(MIN_WIDTH) * depth
    }

    /// A sketch writing `cells` (zeroed, [`Self::cells_len`] long, written by no other
    /// sketch), with parameters already checked.
    pub(crate) fn on_cells(
        cells: Arc<SketchCells>,
        width: usize,
        depth: usize,
        tau_secs: f64,
    ) -> Self {
        let width = width.next_power_of_two().max(MIN_WIDTH);
        let tau_secs = sanitize_tau(tau_secs);
        Self {
            cells,
            width,
            depth,
            shift: 64 - width.trailing_zeros(),
            decay: ForwardDecay::new(tau_secs),
            total: 0.0,
            inv_tau_secs: 1.0 / tau_secs,
        }
    }

    /// The counter index of each row for the key with this hash (the first `depth` used).
    #[inline]
    pub(crate) fn slots(&self, hash: u64) -> [usize; MAX_DEPTH] {
        let mut at = [0usize; MAX_DEPTH];
        for (row, i) in at.iter_mut().enumerate().take(self.depth) {
            *i = row * self.width + self.row_index(row, hash);
        }
        at
    }

    /// `1/τ`: landmark units times the decay factor, times this, is a rate per second.
    #[inline]
    pub(crate) fn inv_tau_secs(&self) -> f64 {
        self.inv_tau_secs
    }

    /// Counters per row (a power of two).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of rows.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The additive error factor `ε = e / width` of the count-min bound.
    pub fn epsilon(&self) -> f64 {
        std::f64::consts::E / self.width as f64
    }

    /// The failure probability `δ = e^{-depth}` of the count-min bound.
    pub fn delta(&self) -> f64 {
        (-(self.depth as f64)).exp()
    }

    #[inline]
    fn row_index(&self, row: usize, hash: u64) -> usize {
        let (seed, mult) = ROW_MIX[row];
        ((hash ^ seed).wrapping_mul(mult) >> self.shift) as usize
    }

    /// The key's smallest counter, in landmark units.
    #[inline]
    fn min_units(&self, hash: u64) -> f64 {
        let mut min = f64::INFINITY;
        for row in 0..self.depth {
            if let Some(c) = self.cells.get(row * self.width + self.row_index(row, hash)) {
                min = min.min(c);
            }
        }
        min
    }

    #[cold]
    #[inline(never)]
    fn rescale(&mut self, scale: f64) {
        // Seqlock writer: odd, rescale, publish the landmark, even.
        let cells = &*self.cells;
        let seq = cells.renorm_seq.load(Ordering::Relaxed);
        cells
            .renorm_seq
            .store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        for c in cells.counters.iter() {
            let v = f64::from_bits(c.load(Ordering::Relaxed)) * scale;
            c.store(v.to_bits(), Ordering::Relaxed);
        }
        cells
            .landmark_ns
            .store(self.decay.landmark_ns(), Ordering::Relaxed);
        cells
            .renorm_seq
            .store(seq.wrapping_add(2), Ordering::Release);
        self.total *= scale;
    }

    /// Adds `weight` (frames or bytes) for the key at `now_ns` with conservative update and
    /// returns the key's new estimated rate per second.
    ///
    /// `key` is not stored (the sketch keeps no keys); it travels with `hash` so that callers
    /// pass both together and a keyed-hash variant would need no API change. A weight that
    /// is not a positive finite number adds nothing.
    #[inline]
    pub fn add(&mut self, key: &FlowKey, hash: u64, weight: f64, now_ns: u64) -> f64 {
        let _ = key;
        if let Some(scale) = self.decay.advance(now_ns) {
            self.rescale(scale);
        }
        // The default depth with its rows unrolled; any other depth through the same code.
        let target = match self.depth {
            4 => self.update_rows::<4>(hash, weight),
            _ => self.update_rows_dyn(hash, weight),
        };
        target * self.decay.down() * self.inv_tau_secs
    }

    /// The conservative update of `weight` over the counters at `at` (one per row, computed
    /// once for the read and the write); returns the key's new estimate in landmark units
    /// (its old one if `weight` is not positive and finite).
    #[inline(always)]
    fn update_at(&mut self, at: &[usize], weight: f64) -> f64 {
        // Selects rather than branches (which row holds the minimum is a coin toss, so a
        // branch would mispredict); counters are never NaN, so no `f64::min` NaN handling.
        let cells = &*self.cells;
        let mut current = f64::INFINITY;
        for &i in at {
            let c = cells.get(i).unwrap_or(f64::INFINITY);
            current = if c < current { c } else { current };
        }
        // Positive and finite as two comparisons (NaN fails both).
        if !(weight > 0.0 && weight <= f64::MAX) {
            return current;
        }
        let inc = weight * self.decay.up();
        let target = current + inc;
        for &i in at {
            if let Some(c) = cells.counters.get(i) {
                // Conservative update: raise only counters below the new estimate. Single
                // writer: a load and a store, no read-modify-write.
                if f64::from_bits(c.load(Ordering::Relaxed)) < target {
                    c.store(target.to_bits(), Ordering::Relaxed);
                }
            }
        }
        self.total += inc;
        target
    }

    /// [`update_at`](Self::update_at) over exactly `D` rows, unrolled.
    #[inline]
    fn update_rows<const D: usize>(&mut self, hash: u64, weight: f64) -> f64 {
        let at: [usize; D] =
            std::array::from_fn(|row| row * self.width + self.row_index(row % MAX_DEPTH, hash));
        self.update_at(&at, weight)
    }

    /// [`update_at`](Self::update_at) over any depth.
    fn update_rows_dyn(&mut self, hash: u64, weight: f64) -> f64 {
        let mut at = [0usize; MAX_DEPTH];
        let depth = self.depth.min(MAX_DEPTH);
        for (row, i) in at.iter_mut().enumerate().take(depth) {
            *i = row * self.width + self.row_index(row, hash);
        }
        self.update_at(&at[..depth], weight)
    }

    /// The decay clock, as of the last [`add`](Self::add) (a hint for the flow's top-k and
    /// thresholds).
    #[inline]
    pub(crate) fn clock(&self) -> &ForwardDecay {
        &self.decay
    }

    /// Estimated rate per second of the key with this hash at `now_ns`; never below the
    /// true decayed rate (up to float rounding).
    pub fn rate(&self, hash: u64, now_ns: u64) -> f64 {
        self.min_units(hash) * self.decay.down_at(now_ns) * self.inv_tau_secs
    }

    /// Rate per second of all keys together at `now_ns` (the `N` of the error bound, as a
    /// rate).
    pub fn total_rate(&self, now_ns: u64) -> f64 {
        self.total * self.decay.down_at(now_ns) * self.inv_tau_secs
    }

    /// Bytes held by the sketch; fixed at construction.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + std::mem::size_of::<SketchCells>()
            + self.cells.counters.len() * std::mem::size_of::<AtomicU64>()
    }

    /// Forgets every key.
    pub fn clear(&mut self) {
        self.decay.reset();
        let cells = &*self.cells;
        let seq = cells.renorm_seq.load(Ordering::Relaxed);
        cells
            .renorm_seq
            .store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        for c in cells.counters.iter() {
            c.store(0, Ordering::Relaxed);
        }
        cells
            .landmark_ns
            .store(self.decay.landmark_ns(), Ordering::Relaxed);
        cells
            .renorm_seq
            .store(seq.wrapping_add(2), Ordering::Release);
        self.total = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn key(n: u32) -> FlowKey {
        FlowKey::from_bytes(&n.to_be_bytes()).unwrap()
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    #[test]
    fn rejects_bad_dimensions_and_rounds_width() {
        assert_eq!(
            DecayedCountMin::new(0, 4, 1.0).unwrap_err(),
            SketchError::Width
        );
        assert_eq!(
            DecayedCountMin::new(MAX_WIDTH + 1, 4, 1.0).unwrap_err(),
            SketchError::Width
        );
        assert_eq!(
            DecayedCountMin::new(64, 0, 1.0).unwrap_err(),
            SketchError::Depth
        );
        assert_eq!(
            DecayedCountMin::new(64, 17, 1.0).unwrap_err(),
            SketchError::Depth
        );
        for tau in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e7] {
            assert_eq!(
                DecayedCountMin::new(64, 4, tau).unwrap_err(),
                SketchError::Tau
            );
        }
        let s = DecayedCountMin::new(1000, 3, 1.0).unwrap();
        assert_eq!(s.width(), 1024);
        assert_eq!(s.depth(), 3);
        assert_eq!(DecayedCountMin::new(1, 1, 1.0).unwrap().width(), MIN_WIDTH);
    }

    #[test]
    fn constant_rate_converges_to_r() {
        // 1000 frames/s as weight 10 every 10 ms, tau = 2 s: after 20 s (10 tau) the
        // sawtooth sits within its ripple (Δ/τ = 0.5 %) of r.
        let mut s = DecayedCountMin::new(256, 4, 2.0).unwrap();
        let k = key(1);
        let h = k.hash64();
        let mut last = 0.0;
        for i in 0..2000u64 {
            last = s.add(&k, h, 10.0, i * 10_000_000);
        }
        assert!(close(last, 1000.0, 0.01), "rate {last}");
        // Closed form for the value just after the n-th update.
        let q = (-0.01f64 / 2.0).exp();
        let exact = 10.0 * (1.0 - q.powi(2000)) / (1.0 - q) / 2.0;
        assert!(close(last, exact, 1e-9), "{last} vs {exact}");
    }

    #[test]
    fn step_then_silence_decays_exponentially() {
        let tau = 0.5;
        let mut s = DecayedCountMin::new(256, 4, tau).unwrap();
        let k = key(7);
        let h = k.hash64();
        let t0 = 123 * SEC;
        let r0 = s.add(&k, h, 500.0, t0);
        assert!(close(r0, 500.0 / tau, 1e-12));
        for dt in [1u64, SEC / 10, SEC, 3 * SEC, 10 * SEC] {
            let expect = r0 * (-(dt as f64) / 1e9 / tau).exp();
            assert!(close(s.rate(h, t0 + dt), expect, 1e-9), "dt {dt}");
        }
        // An update later adds to the decayed value.
        let r1 = s.add(&k, h, 500.0, t0 + SEC);
        let expect = r0 * (-1.0f64 / tau).exp() + 500.0 / tau;
        assert!(close(r1, expect, 1e-9));
    }

    #[test]
    fn renormalisation_is_invisible_over_days() {
        // tau = 10 ms, so a day is 8.64e6 tau: the landmark moves many thousand times.
        let tau = 0.01;
        let mut s = DecayedCountMin::new(64, 4, tau).unwrap();
        let k = key(3);
        let h = k.hash64();
        let day = 86_400 * SEC;
        let mut t = 5 * day;
        for _ in 0..1000 {
            // A burst of 10 updates 1 ms apart, then 7 seconds of silence (700 tau).
            let mut exact = 0.0;
            let mut r = 0.0;
            for j in 0..10u64 {
                let now = t + j * 1_000_000;
                exact = exact * (-0.001f64 / tau).exp() + 3.0;
                r = s.add(&k, h, 3.0, now);
            }
            assert!(close(r, exact / tau, 1e-9), "{r} vs {}", exact / tau);
            t += 7 * SEC;
            // Long silence: all of it has decayed.
            assert!(s.rate(h, t) < 1e-200);
        }
        // Between renormalisations too: read 30 tau after the last burst.
        let base = s.add(&k, h, 1.0, t);
        let later = s.rate(h, t + 300_000_000);
        assert!(close(later, base * (-30.0f64).exp(), 1e-9));
    }

    #[test]
    fn estimate_never_below_truth_and_conservative_update_helps() {
        // Tiny sketch, many keys: heavy collisions, but no key is ever underestimated.
        let mut s = DecayedCountMin::new(16, 2, 1.0).unwrap();
        let mut truth = vec![0.0f64; 200];
        for i in 0..200u32 {
            let k = key(i);
            let w = (i % 7 + 1) as f64;
            truth[i as usize] += w;
            s.add(&k, k.hash64(), w, SEC);
        }
        let mut total = 0.0;
        for i in 0..200u32 {
            let est = s.rate(key(i).hash64(), SEC);
            assert!(est >= truth[i as usize] * (1.0 - 1e-12));
            total += truth[i as usize];
        }
        assert!(close(s.total_rate(SEC), total, 1e-12));
    }

    #[test]
    fn bad_weights_add_nothing_and_clear_forgets() {
        let mut s = DecayedCountMin::new(64, 4, 1.0).unwrap();
        let k = key(9);
        let h = k.hash64();
        s.add(&k, h, 4.0, SEC);
        for w in [f64::NAN, -1.0, 0.0, f64::INFINITY] {
            assert!(close(s.add(&k, h, w, SEC), 4.0, 1e-12));
        }
        assert!(close(s.total_rate(SEC), 4.0, 1e-12));
        let bytes = s.memory_bytes();
        s.clear();
        assert_eq!(s.rate(h, SEC), 0.0);
        assert_eq!(s.total_rate(SEC), 0.0);
        assert_eq!(s.memory_bytes(), bytes);
        assert!(close(s.add(&k, h, 2.0, 2 * SEC), 2.0, 1e-12));
    }

    #[test]
    fn unrolled_rows_update_like_the_general_loop() {
        // The depth-4 path and the any-depth path, on clones fed the same stream, keep
        // bit-identical counters and return the same estimates.
        let mut fast = DecayedCountMin::new(64, 4, 1.0).unwrap();
        let mut general = fast.clone();
        let mut now = SEC;
        for i in 0..5000u64 {
            now += (i * 7919) % 3_000_000;
            let k = key((i * i % 611) as u32);
            let h = k.hash64();
            let w = [1.0, 1500.0, 0.0, f64::NAN, 64.0][(i % 5) as usize];
            let a = fast.add(&k, h, w, now);
            if let Some(scale) = general.decay.advance(now) {
                general.rescale(scale);
            }
            let units = general.update_rows_dyn(h, w);
            let b = units * general.decay.down() * general.inv_tau_secs;
            assert_eq!(a.to_bits(), b.to_bits(), "step {i}");
        }
        let bits = |s: &DecayedCountMin| -> Vec<u64> {
            s.cells
                .counters
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect()
        };
        assert_eq!(bits(&fast), bits(&general));
        assert_eq!(fast.total.to_bits(), general.total.to_bits());
    }

    #[test]
    fn time_before_landmark_does_not_poison() {
        let mut s = DecayedCountMin::new(64, 4, 0.001).unwrap();
        let k = key(1);
        let h = k.hash64();
        s.add(&k, h, 1.0, 10 * SEC); // moves the landmark to 10 s
        let r = s.add(&k, h, 1.0, 0); // far in the past: clamped, stays finite
        assert!(r.is_finite() && r > 0.0);
        assert!(s.rate(h, 10 * SEC).is_finite());
        assert!(s.rate(h, u64::MAX).is_finite());
    }

    #[test]
    fn a_clock_advanced_like_another_matches_its_own_advance() {
        let mut hint = ForwardDecay::new(0.5);
        let mut own = ForwardDecay::new(0.5);
        let mut like = ForwardDecay::new(0.5);
        let mut other_tau = ForwardDecay::new(2.0);
        let mut now = 1u64;
        // Steps of up to 20 s cross the renormalisation point (x > 64 at τ = 0.5 s) often.
        for i in 0..2000u64 {
            now += (i * 7_919_993_u64) % 20_000_000_000;
            let a = hint.advance(now);
            let b = own.advance(now);
            let c = like.advance_like(now, &hint);
            assert_eq!(a.map(f64::to_bits), b.map(f64::to_bits));
            assert_eq!(b.map(f64::to_bits), c.map(f64::to_bits), "step {i}");
            assert_eq!(own.up().to_bits(), like.up().to_bits());
            assert_eq!(own.down().to_bits(), like.down().to_bits());
            assert_eq!(own.landmark_ns, like.landmark_ns);
            // A clock of another τ never takes the hint's factors.
            let mut alone = other_tau;
            let d = other_tau.advance_like(now, &hint);
            assert_eq!(d.map(f64::to_bits), alone.advance(now).map(f64::to_bits));
            assert_eq!(other_tau.up().to_bits(), alone.up().to_bits());
        }
    }

    #[test]
    fn row_constants_are_distinct_and_odd() {
        for (i, a) in ROW_MIX.iter().enumerate() {
            assert_eq!(a.1 & 1, 1);
            for b in &ROW_MIX[i + 1..] {
                assert_ne!(a.0, b.0);
                assert_ne!(a.1, b.1);
            }
        }
    }
}
