//! One monotonic clock for the whole process, in nanoseconds since the first read.
//!
//! Cores never read it: the I/O shell reads it once per batch and passes `now_ns` down, so
//! every sample of a batch shares one timestamp and tests can use a fake clock.

use std::sync::OnceLock;
use std::time::Instant;

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Nanoseconds since the process's clock origin (monotonic, never goes back).
#[inline]
pub fn now_ns() -> u64 {
    origin().elapsed().as_nanos() as u64
}

/// The wall-clock time corresponding to a `now_ns` value, as Unix milliseconds.
pub fn unix_ms(at_ns: u64) -> u64 {
    let since_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let now = now_ns();
    since_unix.saturating_sub(now.saturating_sub(at_ns)) / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_monotonic_and_unix_time_is_recent() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        // 2020-01-01 in Unix ms: any sane machine clock is past it.
        assert!(unix_ms(b) > 1_577_836_800_000);
    }
}
