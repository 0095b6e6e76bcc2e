//! The control socket over a real Unix socket: replies, errors, permissions, and clients
//! that misbehave without disturbing others.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reflex::control::client::Client;
use reflex::control::protocol::{Reply, Request, MAX_LINE};
use reflex::control::server::{self, Handler, Server};

struct Echo;

impl Handler for Echo {
    fn handle(&mut self, request: Request) -> Reply {
        match request {
            Request::Flows { name, .. } if name == "missing" => Reply::error("no flow `missing`"),
            other => Reply::ok(serde_json::to_value(other).unwrap()),
        }
    }
}

fn start(
    dir: &tempfile::TempDir,
) -> (
    std::path::PathBuf,
    Arc<AtomicBool>,
    std::thread::JoinHandle<()>,
) {
    let path = dir.path().join("ctl.sock");
    let server = Server::bind(&path, None).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let handle = server::spawn(server, Box::new(Echo), stop.clone()).unwrap();
    (path, stop, handle)
}

#[test]
fn answers_requests_and_errors_on_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (path, stop, handle) = start(&dir);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let mut c = Client::connect(&path, Duration::from_secs(5)).unwrap();
    let r = c.request(&Request::Stats).unwrap();
    assert!(r.ok);
    assert_eq!(r.result.unwrap()["cmd"], "stats");
    let r = c.request_raw(b"{\"cmd\":\"nope\"}\n").unwrap();
    assert!(!r.ok);
    assert!(r.error.unwrap().contains("nope"));
    let r = c
        .request(&Request::Flows {
            name: "missing".into(),
            max: 1,
        })
        .unwrap();
    assert_eq!(r.error.as_deref(), Some("no flow `missing`"));
    // The connection still works after errors.
    assert!(c.request(&Request::Ping).unwrap().ok);

    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    assert!(!path.exists(), "socket file removed on stop");
}

#[test]
fn a_flooding_or_silent_client_does_not_block_others() {
    let dir = tempfile::tempdir().unwrap();
    let (path, stop, handle) = start(&dir);

    // A client that opens and says nothing.
    let _silent = std::os::unix::net::UnixStream::connect(&path).unwrap();
    // A client that sends an endless line: it gets an error and is dropped.
    let mut flood = std::os::unix::net::UnixStream::connect(&path).unwrap();
    flood
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let junk = vec![b'x'; MAX_LINE + 10];
    let _ = flood.write_all(&junk);
    let mut answer = String::new();
    let _ = flood.read_to_string(&mut answer);
    assert!(answer.contains("too long"), "{answer}");

    let mut good = Client::connect(&path, Duration::from_secs(5)).unwrap();
    assert!(good.request(&Request::Ping).unwrap().ok);

    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
}

#[test]
fn a_live_socket_is_not_stolen_but_a_stale_one_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let (path, stop, handle) = start(&dir);
    let err = Server::bind(&path, None).err().unwrap();
    assert!(err.to_string().contains("in use"), "{err}");
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();

    // A stale socket file (no listener) is replaced.
    let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(stale);
    assert!(path.exists());
    let server = Server::bind(&path, None).unwrap();
    assert_eq!(server.path(), path.as_path());
}
