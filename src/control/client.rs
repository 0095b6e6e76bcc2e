//! A blocking control client, for reflexctl and tests.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::protocol::{Reply, Request};

/// Why a request got no reply.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {path}: {source} (is reflexd running? try --socket)")]
    Connect { path: String, source: io::Error },
    #[error("control socket: {0}")]
    Io(#[from] io::Error),
    #[error("daemon sent a malformed reply: {0}")]
    BadReply(String),
}

/// A connection to reflexd's control socket.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects, with `timeout` for each reply.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let writer = stream.try_clone()?;
        Ok(Client {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Sends one request and waits for its reply.
    pub fn request(&mut self, request: &Request) -> Result<Reply, ClientError> {
        let mut line =
            serde_json::to_vec(request).map_err(|e| ClientError::BadReply(e.to_string()))?;
        line.push(b'\n');
        self.request_raw(&line)
    }

    /// Sends raw bytes (one or more lines) and reads one reply line.
    pub fn request_raw(&mut self, bytes: &[u8]) -> Result<Reply, ClientError> {
        self.writer.write_all(bytes)?;
        let mut reply = String::new();
        if self.reader.read_line(&mut reply)? == 0 {
            return Err(ClientError::BadReply("connection closed".into()));
        }
        serde_json::from_str(&reply).map_err(|e| ClientError::BadReply(e.to_string()))
    }
}
