//! The only home of syscalls and `unsafe`: UDP sockets with SO_REUSEPORT, batched
//! `recvmmsg`/`sendmmsg`, kernel drop counters, core pinning, CPU time and the monotonic
//! clock.
//!
//! Everything above this module works on byte slices and `now_ns` values handed down from
//! here, so it can be tested without sockets.

pub mod clock;
pub mod mmsg;
pub mod rusage;
pub mod udp;

pub use clock::now_ns;

/// The numeric id of a Unix group, or `None` if there is no such group.
pub fn group_id(name: &str) -> Option<u32> {
    let cname = std::ffi::CString::new(name).ok()?;
    // SAFETY: getgrnam takes a NUL-terminated name and returns null or a pointer to a
    // static struct that we read immediately. Only the control thread calls this.
    let entry = unsafe { libc::getgrnam(cname.as_ptr()) };
    if entry.is_null() {
        return None;
    }
    // SAFETY: non-null result of getgrnam, read before any other getgr* call.
    Some(unsafe { (*entry).gr_gid })
}

/// Lets a log line through at most once per `period_ns`, counting what it held back, so
/// a flood of bad input cannot flood the log.
pub struct RateLimit {
    period_ns: u64,
    next_ns: u64,
    suppressed: u64,
}

impl RateLimit {
    /// A limiter allowing one line per `period_ns`.
    pub fn new(period_ns: u64) -> RateLimit {
        RateLimit {
            period_ns,
            next_ns: 0,
            suppressed: 0,
        }
    }

    /// `Some(lines suppressed since the last one)` if a line may be logged at `now_ns`.
    pub fn allow(&mut self, now_ns: u64) -> Option<u64> {
        if now_ns >= self.next_ns {
            self.next_ns = now_ns.saturating_add(self.period_ns);
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}
