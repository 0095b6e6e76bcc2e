//! Shared helpers: bounded durations, loopback addresses, progress lines, JSON output.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Longest run any subcommand accepts.
pub const MAX_DURATION_SECS: f64 = 3600.0;

/// Parses a duration in seconds (`10`, `2.5`, `500ms`, `3s`), within (0, 3600].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else {
        (text.strip_suffix('s').unwrap_or(text), 1.0)
    };
    let secs = number
        .trim()
        .parse::<f64>()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 10, 2.5s, 500ms)"))?
        * scale;
    if !(secs > 0.0 && secs <= MAX_DURATION_SECS) {
        return Err(format!(
            "duration must be > 0 and at most {MAX_DURATION_SECS} s (got {text})"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `addr` if it is loopback, a clear error otherwise.
pub fn loopback(addr: SocketAddr, what: &str) -> anyhow::Result<SocketAddr> {
    reflex_testkit::load::ensure_loopback(addr).context(what.to_string())
}

/// Fails unless `value` is within `min..=max`.
pub fn within<T: PartialOrd + std::fmt::Display>(
    what: &str,
    value: T,
    min: T,
    max: T,
) -> anyhow::Result<T> {
    if value < min || value > max {
        bail!("{what} must be in {min}..={max} (got {value})");
    }
    Ok(value)
}

/// Prints a progress line to stderr at most once a second.
pub struct Progress {
    next: Instant,
    quiet: bool,
}

impl Progress {
    /// A progress printer (silent if `quiet`).
    pub fn new(quiet: bool) -> Progress {
        Progress {
            next: Instant::now() + Duration::from_secs(1),
            quiet,
        }
    }

    /// Calls `line` and prints its result if a second has passed since the last line.
    pub fn tick(&mut self, line: impl FnOnce() -> String) {
        if self.quiet {
            return;
        }
        let now = Instant::now();
        if now >= self.next {
            self.next = now + Duration::from_secs(1);
            eprintln!("{}", line());
        }
    }
}

/// Prints `value` as one JSON line on stdout.
pub fn print_json(value: &serde_json::Value) {
    println!("{value}");
}
