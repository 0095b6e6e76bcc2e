//! Just enough HTTP/1.1 for a Prometheus scraper: `GET` (or `HEAD`) `/metrics`, one request
//! per connection, `Connection: close`.
//!
//! [`route`] and [`response`] are sans-IO. [`Server`] is a mio loop that never waits on a
//! client: requests are capped at [`MAX_REQUEST`] bytes, and a connection that has not
//! finished (request read and answer written) within [`CLIENT_TIMEOUT`] is dropped, so slow
//! or silent clients cost a slot for a few seconds at most.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use super::exposition::CONTENT_TYPE;

/// Longest request head accepted.
pub const MAX_REQUEST: usize = 8192;
/// Time a client has to send its request and read the answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CLIENTS: usize = 32;
const TICK: Duration = Duration::from_millis(100);
const LISTENER: Token = Token(0);

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// The scrape; `head` = HEAD (headers only).
    Metrics {
        head: bool,
    },
    /// `/`: a pointer to `/metrics`.
    Index {
        head: bool,
    },
    NotFound,
    MethodNotAllowed,
    BadRequest,
    TooLarge,
}

/// Routes a request from the bytes received so far; `None` while the head is incomplete.
pub fn route(buf: &[u8]) -> Option<Route> {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| buf.windows(2).position(|w| w == b"\n\n"));
    let Some(end) = end else {
        return (buf.len() > MAX_REQUEST).then_some(Route::TooLarge);
    };
    if end > MAX_REQUEST {
        return Some(Route::TooLarge);
    }
    let Ok(head) = std::str::from_utf8(&buf[..end]) else {
        return Some(Route::BadRequest);
    };
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Some(Route::BadRequest);
    };
    if !version.trim_end().starts_with("HTTP/1.") || !target.starts_with('/') {
        return Some(Route::BadRequest);
    }
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => {
            return Some(Route::MethodNotAllowed)
        }
        _ => return Some(Route::BadRequest),
    };
    let path = target.split(['?', '#']).next().unwrap_or(target);
    Some(match path {
        "/metrics" => Route::Metrics { head },
        "/" => Route::Index { head },
        _ => Route::NotFound,
    })
}

/// A complete response with `Connection: close`; `head` leaves the body out.
pub fn response(status: u16, content_type: &str, body: &[u8], head: bool) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n",
        body.len()
    );
    if status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if !head {
        out.extend_from_slice(body);
    }
    out
}

/// The response to a routed request; `scrape` produces the metrics body.
pub fn answer(route: Route, scrape: &mut dyn FnMut() -> Result<String, String>) -> Vec<u8> {
    const TEXT: &str = "text/plain; charset=utf-8";
    match route {
        Route::Metrics { head } => match scrape() {
            Ok(body) => response(200, CONTENT_TYPE, body.as_bytes(), head),
            Err(e) => response(
                503,
                TEXT,
                format!("stats unavailable: {e}\n").as_bytes(),
                head,
            ),
        },
        Route::Index { head } => response(200, TEXT, b"reflexd: metrics at /metrics\n", head),
        Route::NotFound => response(404, TEXT, b"not found; try /metrics\n", false),
        Route::MethodNotAllowed => response(405, TEXT, b"only GET and HEAD\n", false),
        Route::BadRequest => response(400, TEXT, b"bad request\n", false),
        Route::TooLarge => response(431, TEXT, b"request too large\n", false),
    }
}

struct Conn {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    answered: bool,
    deadline: Instant,
}

/// A bound metrics listener.
pub struct Server {
    poll: Poll,
    listener: TcpListener,
    addr: SocketAddr,
    conns: HashMap<Token, Conn>,
    next_token: usize,
    client_timeout: Duration,
}

impl Server {
    /// Binds `addr`.
    pub fn bind(addr: SocketAddr) -> io::Result<Server> {
        let mut listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Server {
            poll,
            listener,
            addr,
            conns: HashMap::new(),
            next_token: 1,
            client_timeout: CLIENT_TIMEOUT,
        })
    }

    /// Gives clients `timeout` instead of [`CLIENT_TIMEOUT`].
    pub fn with_client_timeout(mut self, timeout: Duration) -> Server {
        self.client_timeout = timeout;
        self
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `stop` is set.
    pub fn run(
        mut self,
        mut scrape: impl FnMut() -> Result<String, String>,
        stop: &AtomicBool,
    ) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        while !stop.load(Ordering::Relaxed) {
            if let Err(e) = self.poll.poll(&mut events, Some(TICK)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    token => {
                        let done = self
                            .conns
                            .get_mut(&token)
                            .is_none_or(|c| serve(c, &mut scrape));
                        if done {
                            self.close(token);
                        }
                    }
                }
            }
            let now = Instant::now();
            let expired: Vec<Token> = self
                .conns
                .iter()
                .filter(|(_, c)| c.deadline <= now)
                .map(|(t, _)| *t)
                .collect();
            for t in expired {
                self.close(t);
            }
        }
        Ok(())
    }

    fn close(&mut self, token: Token) {
        if let Some(mut c) = self.conns.remove(&token) {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if self.conns.len() >= MAX_CLIENTS {
                        // Best effort; the socket is closed when dropped.
                        let _ = stream.write(&response(503, "text/plain", b"busy\n", false));
                        continue;
                    }
                    let token = Token(self.next_token);
                    self.next_token += 1;
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                        .is_ok()
                    {
                        self.conns.insert(
                            token,
                            Conn {
                                stream,
                                input: Vec::new(),
                                output: Vec::new(),
                                answered: false,
                                deadline: Instant::now() + self.client_timeout,
                            },
                        );
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    return;
                }
            }
        }
    }
}

/// Reads, answers and writes for one connection; true when it is done.
fn serve(c: &mut Conn, scrape: &mut dyn FnMut() -> Result<String, String>) -> bool {
    let mut buf = [0u8; 2048];
    while !c.answered {
        match c.stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => {
                c.input.extend_from_slice(&buf[..n]);
                if let Some(r) = route(&c.input) {
                    c.output = answer(r, scrape);
                    c.answered = true;
                    c.input = Vec::new();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
    while !c.output.is_empty() {
        match c.stream.write(&c.output) {
            Ok(0) => return true,
            Ok(n) => {
                c.output.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
    if c.answered {
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
    }
    c.answered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_route_by_method_and_path() {
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(Route::Metrics { head: false })
        );
        assert_eq!(
            route(b"HEAD /metrics?x=1 HTTP/1.0\n\n"),
            Some(Route::Metrics { head: true })
        );
        assert_eq!(
            route(b"GET / HTTP/1.1\r\n\r\n"),
            Some(Route::Index { head: false })
        );
        assert_eq!(route(b"GET /nope HTTP/1.1\r\n\r\n"), Some(Route::NotFound));
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Some(Route::MethodNotAllowed)
        );
        for bad in [
            &b"hello\r\n\r\n"[..],
            b"GET /metrics\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics SMTP/1.1\r\n\r\n",
            b"get /metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1 extra\r\n\r\n",
            b"\xff\xfe /metrics HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(route(bad), Some(Route::BadRequest), "{bad:?}");
        }
        assert_eq!(route(&vec![b'a'; MAX_REQUEST + 1]), Some(Route::TooLarge));
    }

    #[test]
    fn responses_have_length_and_close_and_head_has_no_body() {
        let r = String::from_utf8(response(200, CONTENT_TYPE, b"x 1\n", false)).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(r.contains("Content-Length: 4\r\n"));
        assert!(r.contains("Connection: close\r\n"));
        assert!(r.ends_with("\r\n\r\nx 1\n"));
        let h = String::from_utf8(response(200, CONTENT_TYPE, b"x 1\n", true)).unwrap();
        assert!(h.ends_with("\r\n\r\n") && h.contains("Content-Length: 4"));
        let e = answer(Route::Metrics { head: false }, &mut || Err("down".into()));
        assert!(String::from_utf8(e).unwrap().starts_with("HTTP/1.1 503"));
        let n = answer(Route::MethodNotAllowed, &mut || Ok(String::new()));
        assert!(String::from_utf8(n).unwrap().contains("Allow: GET, HEAD"));
    }

    #[test]
    fn server_answers_over_loopback_and_drops_silent_clients() {
        use std::io::{Read, Write};
        let server = Server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let t = std::thread::spawn(move || server.run(|| Ok("up 1\n".into()), &s2));
        // A silent client does not hold up the next one.
        let _silent = std::net::TcpStream::connect(addr).unwrap();
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
        assert!(got.ends_with("\r\n\r\nup 1\n"), "{got}");
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap().unwrap();
    }

    #[test]
    fn slow_clients_are_cut_off_at_the_deadline() {
        use std::io::{Read, Write};
        let server = Server::bind("127.0.0.1:0".parse().unwrap())
            .unwrap()
            .with_client_timeout(Duration::from_millis(300));
        let addr = server.local_addr();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let t = std::thread::spawn(move || server.run(|| Ok("up 1\n".into()), &s2));
        let mut slow = std::net::TcpStream::connect(addr).unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        slow.write_all(b"GET /metr").unwrap();
        let started = Instant::now();
        let mut got = Vec::new();
        // The server closes without answering; read sees EOF (or a reset).
        let _ = slow.read_to_end(&mut got);
        assert!(got.is_empty(), "{got:?}");
        assert!(started.elapsed() < Duration::from_secs(4));
        // An oversized head is refused at once.
        let mut big = std::net::TcpStream::connect(addr).unwrap();
        big.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = big.write_all(&vec![b'A'; MAX_REQUEST + 10]);
        let mut reply = String::new();
        let _ = big.read_to_string(&mut reply);
        assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap().unwrap();
    }
}
