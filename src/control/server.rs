//! The control socket server: a mio loop over a Unix listener.
//!
//! Each client has a bounded input line buffer and a bounded output queue; a client that
//! sends garbage gets an error reply, and one that floods or stops reading is disconnected.
//! Requests are answered by a [`Handler`] on this thread, one at a time, in arrival order.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};

use super::protocol::{parse_request, Line, LineBuffer, Reply, Request};

/// Answers control requests.
pub trait Handler {
    /// Answers one request.
    fn handle(&mut self, request: Request) -> Reply;
    /// Called at least every [`TICK`], for housekeeping on this thread.
    fn tick(&mut self) {}
}

/// Longest wait in the event loop, so shutdown and `tick` are noticed promptly.
pub const TICK: Duration = Duration::from_millis(50);
const MAX_CLIENTS: usize = 64;
const MAX_PENDING_OUT: usize = 4 << 20;
const LISTENER: Token = Token(0);

/// Why the control socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("control socket {0} is in use by a running daemon")]
    InUse(PathBuf),
    #[error("control socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("control socket group `{0}` does not exist")]
    NoSuchGroup(String),
}

struct Client {
    stream: UnixStream,
    input: LineBuffer,
    output: Vec<u8>,
    closing: bool,
}

/// A bound control socket, ready to serve.
pub struct Server {
    poll: Poll,
    listener: UnixListener,
    path: PathBuf,
    clients: HashMap<Token, Client>,
    next_token: usize,
}

impl Server {
    /// Binds `path` with mode 0600 (0660 and the given group if `group` is set). A stale
    /// socket left by a dead daemon is replaced; a live one is an error.
    pub fn bind(path: &Path, group: Option<&str>) -> Result<Server, ServerError> {
        let io_err = |source| ServerError::Io {
            path: path.to_owned(),
            source,
        };
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ServerError::InUse(path.to_owned()));
            }
            std::fs::remove_file(path).map_err(io_err)?;
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err)?;
        }
        // Bind under a temporary name and rename once permissions are set, so the socket
        // is never reachable with the default (umask) mode.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let mut listener = UnixListener::bind(&tmp).map_err(io_err)?;
        let mode = if group.is_some() { 0o660 } else { 0o600 };
        let prepared = (|| {
            if let Some(g) = group {
                let gid =
                    crate::io::group_id(g).ok_or_else(|| ServerError::NoSuchGroup(g.to_owned()))?;
                std::os::unix::fs::chown(&tmp, None, Some(gid)).map_err(io_err)?;
            }
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
                .map_err(io_err)?;
            std::fs::rename(&tmp, path).map_err(io_err)
        })();
        if let Err(e) = prepared {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let poll = Poll::new().map_err(io_err)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(io_err)?;
        Ok(Server {
            poll,
            listener,
            path: path.to_owned(),
            clients: HashMap::new(),
            next_token: 1,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves until `stop` is set; removes the socket file on return.
    pub fn run(mut self, handler: &mut dyn Handler, stop: &AtomicBool) -> io::Result<()> {
        let mut events = Events::with_capacity(128);
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
                        let done = match self.clients.get_mut(&token) {
                            Some(client) => serve(client, handler),
                            None => false,
                        };
                        if done {
                            if let Some(mut c) = self.clients.remove(&token) {
                                let _ = self.poll.registry().deregister(&mut c.stream);
                            }
                        }
                    }
                }
            }
            handler.tick();
        }
        let _ = std::fs::remove_file(&self.path);
        Ok(())
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if self.clients.len() >= MAX_CLIENTS {
                        let _ =
                            stream.write_all(&Reply::error("too many control clients").to_line());
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
                        self.clients.insert(
                            token,
                            Client {
                                stream,
                                input: LineBuffer::default(),
                                output: Vec::new(),
                                closing: false,
                            },
                        );
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "control accept failed");
                    return;
                }
            }
        }
    }
}

/// Reads, answers and writes for one client; true when the connection is done.
fn serve(client: &mut Client, handler: &mut dyn Handler) -> bool {
    let mut buf = [0u8; 4096];
    let mut eof = false;
    while !client.closing {
        match client.stream.read(&mut buf) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => client.input.extend(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
        loop {
            match client.input.next_line() {
                Line::Complete(line) => {
                    let reply = match parse_request(&line) {
                        Ok(request) => handler.handle(request),
                        Err(message) => Reply::error(message),
                    };
                    client.output.extend_from_slice(&reply.to_line());
                    if client.output.len() > MAX_PENDING_OUT {
                        // The client is not reading its replies.
                        return true;
                    }
                }
                Line::Incomplete => break,
                Line::TooLong => {
                    client
                        .output
                        .extend_from_slice(&Reply::error("request line too long").to_line());
                    client.closing = true;
                    break;
                }
            }
        }
    }
    while !client.output.is_empty() {
        match client.stream.write(&client.output) {
            Ok(0) => return true,
            Ok(n) => {
                client.output.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
    eof || client.closing
}

/// Runs a server on its own thread until `stop` is set (convenience for tests and the daemon).
pub fn spawn(
    server: Server,
    mut handler: Box<dyn Handler + Send>,
    stop: Arc<AtomicBool>,
) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("reflex-control".into())
        .spawn(move || {
            if let Err(e) = server.run(handler.as_mut(), &stop) {
                tracing::error!(error = %e, "control server stopped");
            }
        })
}
