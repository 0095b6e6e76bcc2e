//! In-process clients of the control handler: threads of the daemon itself (the metrics
//! endpoint) ask the control thread the same questions `reflexctl` does and get the very
//! same answers, without a socket and without a second copy of the code that computes them.
//!
//! [`WithLocal`] wraps the daemon's [`Handler`]; on every tick it answers a bounded number
//! of queued local requests, so a busy local client can neither starve socket clients nor
//! grow a queue (the channel is bounded and senders time out).

use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::protocol::{Reply, Request};
use super::server::Handler;

/// Local requests answered per tick at most.
const PER_TICK: usize = 16;
/// Local requests queued at most.
const QUEUE: usize = 16;

/// A request from inside the daemon, with where to send the answer.
pub struct LocalRequest {
    pub request: Request,
    pub reply: Sender<Reply>,
}

/// Asks the control thread; cheap to clone.
#[derive(Clone)]
pub struct LocalClient {
    tx: Sender<LocalRequest>,
}

/// A client and the receiving end to hand to [`WithLocal`].
pub fn channel() -> (LocalClient, Receiver<LocalRequest>) {
    let (tx, rx) = bounded(QUEUE);
    (LocalClient { tx }, rx)
}

impl LocalClient {
    /// Sends `request` and waits at most `timeout` (in all) for the answer.
    pub fn request(&self, request: Request, timeout: Duration) -> Reply {
        let (tx, rx) = bounded(1);
        if self
            .tx
            .send_timeout(LocalRequest { request, reply: tx }, timeout)
            .is_err()
        {
            return Reply::error("the control thread is not answering");
        }
        rx.recv_timeout(timeout)
            .unwrap_or_else(|_| Reply::error("the control thread did not answer in time"))
    }
}

/// A handler that also answers local requests, on the control thread's ticks.
pub struct WithLocal {
    inner: Box<dyn Handler + Send>,
    requests: Receiver<LocalRequest>,
}

impl WithLocal {
    /// Wraps `inner`; local requests arrive on `requests`.
    pub fn new(inner: Box<dyn Handler + Send>, requests: Receiver<LocalRequest>) -> WithLocal {
        WithLocal { inner, requests }
    }
}

impl Handler for WithLocal {
    fn handle(&mut self, request: Request) -> Reply {
        self.inner.handle(request)
    }

    fn tick(&mut self) {
        self.inner.tick();
        for _ in 0..PER_TICK {
            let Ok(local) = self.requests.try_recv() else {
                break;
            };
            let reply = self.inner.handle(local.request);
            // The asker may have given up; nothing to do then.
            let _ = local.reply.send(reply);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    impl Handler for Echo {
        fn handle(&mut self, request: Request) -> Reply {
            Reply::ok(serde_json::json!(format!("{request:?}")))
        }
    }

    #[test]
    fn local_requests_are_answered_on_tick_by_the_inner_handler() {
        let (client, rx) = channel();
        let mut h = WithLocal::new(Box::new(Echo), rx);
        let asker =
            std::thread::spawn(move || client.request(Request::Stats, Duration::from_secs(5)));
        let reply = loop {
            h.tick();
            if asker.is_finished() {
                break asker.join().unwrap();
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        assert!(reply.ok);
        assert_eq!(reply.result.unwrap(), "Stats");
        assert!(h.handle(Request::Ping).ok);
    }

    #[test]
    fn an_unanswered_local_request_times_out() {
        let (client, _rx) = channel();
        let reply = client.request(Request::Ping, Duration::from_millis(20));
        assert!(!reply.ok);
        assert!(reply.error.unwrap().contains("did not answer"));
    }
}
