//! `reflexctl record`: polls one key of one flow (its rate, the thresholds on the flow)
//! and the daemon's threshold events and FSM changes, and writes them as the JSON-lines
//! [series](super::series) the chart reads. Only what happens after the start is recorded.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use reflex::control::client::Client;
use reflex::control::protocol::Request;

/// Settings of [`run`].
pub struct RecordOptions<'a> {
    pub socket: &'a Path,
    pub timeout: Duration,
    pub flow: &'a str,
    pub key: &'a str,
    pub out: &'a Path,
    pub duration: Duration,
    pub interval: Duration,
}

/// What a recording wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    pub samples: usize,
    pub events: usize,
    pub changes: usize,
    /// Polls the daemon did not answer.
    pub misses: usize,
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn ask(c: &mut Client, r: &Request) -> Result<Value, String> {
    let reply = c.request(r).map_err(|e| e.to_string())?;
    if reply.ok {
        Ok(reply.result.unwrap_or(Value::Null))
    } else {
        Err(reply.error.unwrap_or_else(|| "request failed".into()))
    }
}

/// How many of `list`'s last entries are new, given totals then and now.
fn fresh(list: &[Value], before: u64, now: u64) -> &[Value] {
    let n = (now.saturating_sub(before) as usize).min(list.len());
    &list[list.len() - n..]
}

struct Poller<'a> {
    o: &'a RecordOptions<'a>,
    events_seen: u64,
    changes_seen: u64,
    threshold: Option<f64>,
}

impl Poller<'_> {
    /// One poll: the lines to write, plus (events, changes) among them.
    fn poll(&mut self, c: &mut Client, lines: &mut Vec<Value>) -> Result<(usize, usize), String> {
        let t = unix_now();
        let flow = ask(
            c,
            &Request::Flows {
                name: self.o.flow.to_owned(),
                max: 10_000,
            },
        )?;
        let rate = flow["top"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["key"] == self.o.key)
            .and_then(|r| r["rate"].as_f64())
            .unwrap_or(0.0);
        let threshold = flow["thresholds"][0]["value"].as_f64();
        if threshold != self.threshold {
            if let Some(v) = threshold {
                lines.push(json!({"t": t, "threshold": v}));
            }
            self.threshold = threshold;
        }
        lines.push(json!({"t": t, "reflex_rate": rate}));

        let events = ask(
            c,
            &Request::Events {
                max: 1000,
                key: None,
            },
        )?;
        let total = events["total"].as_u64().unwrap_or(0);
        let list = events["events"].as_array().cloned().unwrap_or_default();
        let mut n_events = 0;
        for e in fresh(&list, self.events_seen, total) {
            if e["key"] != self.o.key {
                continue;
            }
            n_events += 1;
            lines.push(json!({
                "t": e["unix_ms"].as_f64().unwrap_or(t * 1e3) / 1e3,
                "event": format!("{} crossed by {} at {:.0}/s", e["threshold"].as_str().unwrap_or("?"),
                                 self.o.key, e["value"].as_f64().unwrap_or(0.0)),
                "threshold_event": e["threshold"],
                "value": e["value"],
                "outcome": e["outcome"],
            }));
        }
        self.events_seen = total;

        let changes = ask(c, &Request::Changes { max: 256 })?;
        let total = changes["total"].as_u64().unwrap_or(0);
        let list = changes["changes"].as_array().cloned().unwrap_or_default();
        let mut n_changes = 0;
        for ch in fresh(&list, self.changes_seen, total) {
            if ch["key"] != self.o.key {
                continue;
            }
            n_changes += 1;
            lines.push(json!({
                "t": ch["unix_ms"].as_f64().unwrap_or(t * 1e3) / 1e3,
                "event": format!("{}({}) {} -> {}", ch["module"].as_str().unwrap_or("?"),
                                 self.o.key, ch["from"].as_str().unwrap_or("?"), ch["to"].as_str().unwrap_or("?")),
                "block": ch["cause"] == "threshold",
                "cause": ch["cause"],
            }));
        }
        self.changes_seen = total;
        Ok((n_events, n_changes))
    }
}

/// Records for `duration`, one poll per `interval`; fails if the daemon does not answer
/// the first poll or the file cannot be written.
pub fn run(o: &RecordOptions) -> Result<Recorded, String> {
    let mut client = Client::connect(o.socket, o.timeout).map_err(|e| e.to_string())?;
    // Check the flow exists and learn where the event and change counts stand.
    ask(
        &mut client,
        &Request::Flows {
            name: o.flow.to_owned(),
            max: 1,
        },
    )?;
    let events_seen = ask(&mut client, &Request::Events { max: 0, key: None })?["total"]
        .as_u64()
        .unwrap_or(0);
    let changes_seen = ask(&mut client, &Request::Changes { max: 0 })?["total"]
        .as_u64()
        .unwrap_or(0);
    let file = std::fs::File::create(o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let werr = |e: std::io::Error| format!("{}: {e}", o.out.display());
    let header =
        json!({"t": unix_now(), "flow": o.flow, "key": o.key, "recorder": "reflexctl record"});
    writeln!(w, "{header}").map_err(werr)?;

    let mut p = Poller {
        o,
        events_seen,
        changes_seen,
        threshold: None,
    };
    let mut done = Recorded::default();
    let start = Instant::now();
    let mut next = start;
    while start.elapsed() < o.duration {
        let mut lines = Vec::new();
        let polled = match p.poll(&mut client, &mut lines) {
            Ok(n) => Ok(n),
            // One reconnect per poll: the daemon may have been restarted.
            Err(_) => Client::connect(o.socket, o.timeout)
                .map_err(|e| e.to_string())
                .and_then(|mut c| {
                    lines.clear();
                    let n = p.poll(&mut c, &mut lines);
                    client = c;
                    n
                }),
        };
        match polled {
            Ok((e, c)) => {
                done.samples += 1;
                done.events += e;
                done.changes += c;
                for l in &lines {
                    writeln!(w, "{l}").map_err(werr)?;
                }
                w.flush().map_err(werr)?;
            }
            Err(_) => done.misses += 1,
        }
        next += o.interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    w.flush().map_err(werr)?;
    Ok(done)
}
