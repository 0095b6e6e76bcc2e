//! The terminal, for `reflexctl top`: is it one, its size, key presses without Enter, and
//! putting it back the way it was.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// Whether `fd` is a terminal.
pub fn is_tty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// (columns, rows) of the terminal on `fd`, if it is one.
pub fn size(fd: RawFd) -> Option<(usize, usize)> {
    // SAFETY: TIOCGWINSZ fills a winsize we own; failure leaves it zeroed and returns -1.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0 && ws.ws_row > 0).then_some((ws.ws_col as usize, ws.ws_row as usize))
}

/// Key presses arrive one by one and are not echoed while this lives; signals (Ctrl-C)
/// still work. Dropping it restores the saved settings.
pub struct KeyMode {
    fd: RawFd,
    saved: libc::termios,
}

impl KeyMode {
    /// Switches the terminal on `fd` to unbuffered, unechoed input.
    pub fn enter(fd: RawFd) -> io::Result<KeyMode> {
        // SAFETY: tcgetattr fills a termios we own.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let saved = t;
        t.c_lflag &= !(libc::ICANON | libc::ECHO);
        t.c_cc[libc::VMIN] = 0;
        t.c_cc[libc::VTIME] = 0;
        // SAFETY: tcsetattr with a termios derived from the current one.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(KeyMode { fd, saved })
    }
}

impl Drop for KeyMode {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `enter`.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved);
        }
    }
}

/// Waits up to `timeout` for a byte on `fd`. `Ok(None)` on timeout or on a signal.
pub fn read_byte(fd: RawFd, timeout: Duration) -> io::Result<Option<u8>> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one pollfd we own.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(None)
        } else {
            Err(e)
        };
    }
    if n == 0 || pfd.revents & libc::POLLIN == 0 {
        return Ok(None);
    }
    let mut b = 0u8;
    // SAFETY: reads at most one byte into `b`.
    let r = unsafe { libc::read(fd, (&mut b as *mut u8).cast(), 1) };
    Ok((r == 1).then_some(b))
}
