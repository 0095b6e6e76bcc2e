//! Zipf-distributed ranks by rejection-inversion (Hörmann & Derflinger, 1996): O(1) memory
//! and time per draw whatever the number of ranks, so a background of millions of sources
//! costs nothing to set up.

use super::rng::Rng;

/// Ranks `1..=n` with `P(k) ∝ k^-s`.
#[derive(Clone, Debug)]
pub struct Zipf {
    n: f64,
    s: f64,
    t: f64,
    q: f64,
}

/// Why a Zipf distribution cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum ZipfError {
    /// There must be at least one rank.
    #[error("a Zipf distribution needs at least one rank")]
    NoRanks,
    /// The exponent must be finite and non-negative.
    #[error("the Zipf exponent must be finite and >= 0 (got {0})")]
    BadExponent(f64),
}

impl Zipf {
    /// The distribution over `1..=n` with exponent `s` (s = 0 is uniform, ~1 is typical).
    pub fn new(n: u64, s: f64) -> Result<Zipf, ZipfError> {
        if n == 0 {
            return Err(ZipfError::NoRanks);
        }
        if !s.is_finite() || s < 0.0 {
            return Err(ZipfError::BadExponent(s));
        }
        let n = n as f64;
        let q = if s == 1.0 { 0.0 } else { 1.0 / (1.0 - s) };
        let t = if s == 1.0 {
            1.0 + n.ln()
        } else {
            (n.powf(1.0 - s) - s) * q
        };
        Ok(Zipf { n, s, t, q })
    }

    /// Inverse of the (unnormalised) integral of the hat function.
    fn inv_cdf(&self, p: f64) -> f64 {
        let pt = p * self.t;
        if pt <= 1.0 {
            pt
        } else if self.s == 1.0 {
            (pt - 1.0).exp()
        } else {
            (pt * (1.0 - self.s) + self.s).powf(self.q)
        }
    }

    /// One rank in `1..=n`.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        // The acceptance probability is at least ~1/2 for every s, so the loop is short;
        // the bound only guards against float pathologies.
        for _ in 0..64 {
            let inv_b = self.inv_cdf(rng.f64());
            let x = (inv_b + 1.0).floor();
            let mut ratio = x.powf(-self.s);
            if x > 1.0 {
                ratio *= inv_b.powf(self.s);
            }
            if rng.f64() < ratio && x <= self.n {
                return x as u64;
            }
        }
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(n: u64, s: f64, draws: usize) -> Vec<usize> {
        let z = Zipf::new(n, s).unwrap();
        let mut rng = Rng::new(42);
        let mut h = vec![0usize; n as usize + 1];
        for _ in 0..draws {
            let k = z.sample(&mut rng);
            assert!((1..=n).contains(&k));
            h[k as usize] += 1;
        }
        h
    }

    #[test]
    fn frequencies_follow_the_power_law() {
        let (n, s, draws) = (100u64, 1.0, 200_000);
        let h = histogram(n, s, draws);
        let norm: f64 = (1..=n).map(|k| (k as f64).powf(-s)).sum();
        for k in [1usize, 2, 5, 10, 50] {
            let expected = draws as f64 * (k as f64).powf(-s) / norm;
            let got = h[k] as f64;
            // Generous bounds: several standard deviations at these counts.
            assert!(
                (got - expected).abs() < 0.1 * expected + 4.0 * expected.sqrt(),
                "rank {k}: {got} vs {expected}"
            );
        }
        // Rank 1 is about twice rank 2 and ten times rank 10 for s = 1.
        let r12 = h[1] as f64 / h[2] as f64;
        assert!((1.8..2.2).contains(&r12), "{r12}");
    }

    #[test]
    fn other_exponents_and_sizes() {
        let h = histogram(1000, 1.3, 100_000);
        assert!(h[1] > h[2] && h[2] > h[4] && h[4] > h[16]);
        // s = 0 is uniform.
        let u = histogram(10, 0.0, 100_000);
        for c in &u[1..] {
            assert!((9_000..11_000).contains(c), "{u:?}");
        }
        // One rank: always 1. A huge n needs no table.
        assert!(histogram(1, 1.0, 100)[1] == 100);
        let big = Zipf::new(50_000_000, 1.1).unwrap();
        let mut rng = Rng::new(3);
        assert!((0..1000).all(|_| (1..=50_000_000).contains(&big.sample(&mut rng))));
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert_eq!(Zipf::new(0, 1.0).unwrap_err(), ZipfError::NoRanks);
        assert!(matches!(Zipf::new(5, -1.0), Err(ZipfError::BadExponent(_))));
        assert!(Zipf::new(5, f64::NAN).is_err());
    }
}
