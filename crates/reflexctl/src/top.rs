//! `reflexctl top`: the view an operator keeps open during an attack: ingest rates, the
//! top keys of every flow against their thresholds, recent threshold events and recent FSM
//! changes, refreshed in place.
//!
//! [`View`] is what one frame shows, built from control replies ([`View::from_replies`]);
//! [`render`] turns it into text for a terminal of a given size and is a pure function.
//! [`run`] is the loop: fetch, render, wait for the interval or a key.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use reflex::control::client::Client;
use reflex::control::protocol::{Reply, Request};
use reflex::timing::format_unix_ms;

/// Ingest totals at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Ingest {
    pub datagrams: u64,
    pub samples: u64,
    pub bytes: u64,
    pub decode_errors: u64,
    pub kernel_drops: u64,
    pub lost: u64,
}

/// Per-second rates between two [`Ingest`] snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    pub datagrams: f64,
    pub samples: f64,
    pub bytes: f64,
    pub decode_errors: f64,
    pub kernel_drops: f64,
    pub lost: f64,
}

impl Rates {
    /// Rates from `before` to `after`, `secs` apart (counters that went back count as 0).
    pub fn between(before: &Ingest, after: &Ingest, secs: f64) -> Rates {
        let secs = secs.max(1e-3);
        let d = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        Rates {
            datagrams: d(after.datagrams, before.datagrams),
            samples: d(after.samples, before.samples),
            bytes: d(after.bytes, before.bytes),
            decode_errors: d(after.decode_errors, before.decode_errors),
            kernel_drops: d(after.kernel_drops, before.kernel_drops),
            lost: d(after.lost, before.lost),
        }
    }
}

/// One flow definition and its top keys.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlowView {
    pub name: String,
    pub keys: String,
    pub value: String,
    pub t: f64,
    /// (threshold name, value per second).
    pub thresholds: Vec<(String, f64)>,
    /// (key, rate per second), highest first.
    pub top: Vec<(String, f64)>,
}

/// A threshold event.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventView {
    pub unix_ms: u64,
    pub threshold: String,
    pub key: String,
    pub value: f64,
    pub outcome: String,
}

/// An FSM change.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChangeView {
    pub unix_ms: u64,
    pub module: String,
    pub key: String,
    pub from: String,
    pub to: String,
    pub cause: String,
}

/// Everything one frame shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct View {
    pub unix_ms: u64,
    pub socket: String,
    pub uptime_s: f64,
    pub workers: u64,
    pub ingest: Ingest,
    /// None on the first frame (nothing to compare with yet).
    pub rates: Option<Rates>,
    pub events_total: u64,
    pub latency_p50_us: f64,
    pub latency_p99_us: f64,
    pub fsm_changes: u64,
    pub flows: Vec<FlowView>,
    pub events: Vec<EventView>,
    pub changes: Vec<ChangeView>,
    /// Why the daemon could not be asked (the frame then shows only this).
    pub error: Option<String>,
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}
fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}
fn s(v: &Value) -> String {
    v.as_str().unwrap_or("?").to_owned()
}

/// Ingest totals from a `stats` reply.
pub fn ingest_from_stats(stats: &Value) -> Ingest {
    let sf = &stats["sflow"];
    let errors = sf["decode_errors"]
        .as_object()
        .map_or(0, |m| m.values().map(u).sum());
    Ingest {
        datagrams: u(&sf["datagrams"]),
        samples: u(&sf["flow_samples"]) + u(&sf["counter_samples"]) + u(&sf["other_samples"]),
        bytes: u(&sf["bytes"]),
        decode_errors: errors,
        kernel_drops: u(&sf["kernel_drops"]),
        lost: u(&sf["lost_datagrams"]),
    }
}

impl View {
    /// Builds a frame from the replies to `stats`, `flows` (one per flow), `events` and
    /// `changes`.
    pub fn from_replies(stats: &Value, flows: &[Value], events: &Value, changes: &Value) -> View {
        let ev = &stats["events"];
        View {
            uptime_s: f(&stats["uptime_s"]),
            workers: u(&stats["workers"]),
            ingest: ingest_from_stats(stats),
            events_total: u(&ev["delivered"]),
            latency_p50_us: f(&ev["latency"]["p50_us"]),
            latency_p99_us: f(&ev["latency"]["p99_us"]),
            fsm_changes: u(&ev["fsm_changes"]),
            flows: flows
                .iter()
                .map(|fl| FlowView {
                    name: s(&fl["name"]),
                    keys: s(&fl["keys"]),
                    value: s(&fl["value"]),
                    t: f(&fl["t"]),
                    thresholds: fl["thresholds"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|t| (s(&t["name"]), f(&t["value"])))
                        .collect(),
                    top: fl["top"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|r| (s(&r["key"]), f(&r["rate"])))
                        .collect(),
                })
                .collect(),
            events: events["events"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| EventView {
                    unix_ms: u(&e["unix_ms"]),
                    threshold: s(&e["threshold"]),
                    key: s(&e["key"]),
                    value: f(&e["value"]),
                    outcome: e["outcome"].as_str().unwrap_or("").to_owned(),
                })
                .collect(),
            changes: changes["changes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| ChangeView {
                    unix_ms: u(&c["unix_ms"]),
                    module: s(&c["module"]),
                    key: s(&c["key"]),
                    from: s(&c["from"]),
                    to: s(&c["to"]),
                    cause: s(&c["cause"]),
                })
                .collect(),
            ..View::default()
        }
    }
}

/// 1234 → "1234", 12345 → "12.3k", 1.2e7 → "12.0M".
pub fn human(x: f64) -> String {
    let a = x.abs();
    if a < 10_000.0 {
        if x.fract() == 0.0 {
            format!("{x:.0}")
        } else {
            format!("{x:.1}")
        }
    } else if a < 10_000_000.0 {
        format!("{:.1}k", x / 1e3)
    } else if a < 1e10 {
        format!("{:.1}M", x / 1e6)
    } else {
        format!("{:.1}G", x / 1e9)
    }
}

fn duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

/// `HH:MM:SS.mmm` (UTC) of a Unix time in milliseconds.
fn clock(ms: u64) -> String {
    let t = format_unix_ms(ms);
    t.get(11..23).unwrap_or(&t).to_owned()
}

fn fit(line: &str, cols: usize) -> String {
    if line.chars().count() <= cols {
        line.to_owned()
    } else {
        line.chars().take(cols).collect()
    }
}

const BAR: usize = 20;
const EVENTS_SHOWN: usize = 5;
const CHANGES_SHOWN: usize = 5;

/// One frame, at most `rows` lines of at most `cols` characters, newline-terminated.
pub fn render(v: &View, cols: usize, rows: usize) -> String {
    let cols = cols.max(20);
    let rows = rows.max(3);
    let mut head = vec![format!(
        "reflex top  {}  up {}  {} workers  {} UTC   (q to quit)",
        v.socket,
        duration(v.uptime_s),
        v.workers,
        clock(v.unix_ms)
    )];
    if let Some(e) = &v.error {
        head.push(format!("daemon not answering: {e}"));
        return finish(head, cols, rows);
    }
    let i = &v.ingest;
    head.push(match &v.rates {
        Some(r) => format!(
            "ingest  {} datagrams/s  {} samples/s  {}B/s  | errors {}/s  kernel drops {}/s  lost {}/s",
            human(r.datagrams),
            human(r.samples),
            human(r.bytes),
            human(r.decode_errors),
            human(r.kernel_drops),
            human(r.lost)
        ),
        None => "ingest  (rates from the next refresh)".to_owned(),
    });
    head.push(format!(
        "totals  {} datagrams  {} samples  {}B  | errors {}  kernel drops {}  lost {}",
        human(i.datagrams as f64),
        human(i.samples as f64),
        human(i.bytes as f64),
        i.decode_errors,
        i.kernel_drops,
        i.lost
    ));
    head.push(format!(
        "events  {} delivered  latency p50 {:.0}us p99 {:.0}us  | FSM changes {}",
        v.events_total, v.latency_p50_us, v.latency_p99_us, v.fsm_changes
    ));

    let mut events = vec![String::new(), "RECENT THRESHOLD EVENTS".to_owned()];
    if v.events.is_empty() {
        events.push("  (none)".to_owned());
    }
    for e in v.events.iter().rev().take(EVENTS_SHOWN) {
        events.push(format!(
            "  {}  {:<12} {:<20} {:>10}/s  {}",
            clock(e.unix_ms),
            e.threshold,
            e.key,
            human(e.value),
            e.outcome
        ));
    }
    let mut changes = vec![String::new(), "RECENT FSM CHANGES".to_owned()];
    if v.changes.is_empty() {
        changes.push("  (none)".to_owned());
    }
    for c in v.changes.iter().rev().take(CHANGES_SHOWN) {
        changes.push(format!(
            "  {}  {}({}) {} -> {}  [{}]",
            clock(c.unix_ms),
            c.module,
            c.key,
            c.from,
            c.to,
            c.cause
        ));
    }

    // Flows share what the other sections leave, each keeping its title line.
    let fixed = head.len() + events.len() + changes.len();
    let flow_rows = rows.saturating_sub(fixed);
    let per_flow = flow_rows
        .checked_div(v.flows.len())
        .unwrap_or(0)
        .saturating_sub(3);
    let mut flows = Vec::new();
    for fl in &v.flows {
        flows.push(String::new());
        let th = if fl.thresholds.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = fl
                .thresholds
                .iter()
                .map(|(n, x)| format!("{n} > {}/s", human(*x)))
                .collect();
            format!("  threshold {}", list.join(", "))
        };
        flows.push(format!(
            "FLOW {}  ({}, {}, t {}s){th}",
            fl.name, fl.keys, fl.value, fl.t
        ));
        flows.push(format!("  {:<28} {:>10}", "KEY", "RATE/s"));
        let limit = fl.thresholds.iter().map(|t| t.1).fold(f64::NAN, f64::min);
        let scale = fl
            .top
            .iter()
            .map(|r| r.1)
            .fold(if limit.is_nan() { 0.0 } else { limit }, f64::max);
        if fl.top.is_empty() {
            flows.push("  (no traffic)".to_owned());
        }
        for (key, rate) in fl.top.iter().take(per_flow.max(1)) {
            let n = if scale > 0.0 {
                ((rate / scale) * BAR as f64).ceil().clamp(0.0, BAR as f64) as usize
            } else {
                0
            };
            let over = !limit.is_nan() && *rate >= limit;
            flows.push(format!(
                "  {:<28} {:>10}  {:<BAR$}{}",
                key,
                human(*rate),
                "#".repeat(n),
                if over { "  OVER" } else { "" }
            ));
        }
    }
    let mut lines = head;
    lines.extend(flows);
    lines.extend(events);
    lines.extend(changes);
    finish(lines, cols, rows)
}

fn finish(lines: Vec<String>, cols: usize, rows: usize) -> String {
    let mut out = String::new();
    for l in lines.iter().take(rows) {
        out.push_str(fit(l, cols).trim_end());
        out.push('\n');
    }
    out
}

/// Asks one question; an error reply becomes `Err(message)`.
fn ask(client: &mut Client, request: &Request) -> Result<Value, String> {
    let reply: Reply = client.request(request).map_err(|e| e.to_string())?;
    if reply.ok {
        Ok(reply.result.unwrap_or(Value::Null))
    } else {
        Err(reply.error.unwrap_or_else(|| "request failed".into()))
    }
}

/// Fetches everything a frame needs (a new connection per frame, so a restarted daemon
/// is picked up again).
pub fn fetch(socket: &Path, timeout: Duration, max: usize) -> Result<(Value, View), String> {
    let mut c = Client::connect(socket, timeout).map_err(|e| e.to_string())?;
    let stats = ask(&mut c, &Request::Stats)?;
    let mut flows = Vec::new();
    for name in stats["flows"].as_array().into_iter().flatten() {
        let name = name.as_str().unwrap_or("").to_owned();
        flows.push(ask(&mut c, &Request::Flows { name, max })?);
    }
    let events = ask(
        &mut c,
        &Request::Events {
            max: EVENTS_SHOWN,
            key: None,
        },
    )?;
    let changes = ask(&mut c, &Request::Changes { max: CHANGES_SHOWN })
        .unwrap_or_else(|_| serde_json::json!({"changes": []}));
    let view = View::from_replies(&stats, &flows, &events, &changes);
    Ok((stats, view))
}

/// Settings of [`run`].
pub struct TopOptions<'a> {
    pub socket: &'a Path,
    pub timeout: Duration,
    pub interval: Duration,
    pub max: usize,
    pub once: bool,
}

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Frames until q, Esc, Ctrl-C, SIGINT or SIGTERM; with `once`, prints a single frame
/// (rates measured over a short first interval) and returns whether the daemon answered.
pub fn run(o: &TopOptions) -> std::io::Result<bool> {
    let stdin = 0;
    let stdout_fd = 1;
    let mut out = std::io::stdout().lock();
    let frame = |prev: &mut Option<(Instant, Ingest)>| -> View {
        let mut view = match fetch(o.socket, o.timeout, o.max) {
            Ok((_, v)) => v,
            Err(e) => View {
                error: Some(e),
                ..View::default()
            },
        };
        view.socket = o.socket.display().to_string();
        view.unix_ms = unix_now_ms();
        let now = Instant::now();
        if view.error.is_none() {
            if let Some((t, before)) = prev {
                view.rates = Some(Rates::between(
                    before,
                    &view.ingest,
                    now.duration_since(*t).as_secs_f64(),
                ));
            }
            *prev = Some((now, view.ingest));
        }
        view
    };
    let mut prev = None;
    if o.once {
        let first = frame(&mut prev);
        if first.error.is_none() {
            std::thread::sleep(o.interval.min(Duration::from_millis(500)));
        }
        let view = if first.error.is_none() {
            frame(&mut prev)
        } else {
            first
        };
        let (cols, rows) = crate::term::size(stdout_fd).unwrap_or((120, 1000));
        out.write_all(render(&view, cols, rows).as_bytes())?;
        out.flush()?;
        return Ok(view.error.is_none());
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut ids = Vec::new();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Ok(id) = signal_hook::flag::register(sig, stop.clone()) {
            ids.push(id);
        }
    }
    let keys = if crate::term::is_tty(stdin) {
        crate::term::KeyMode::enter(stdin).ok()
    } else {
        None
    };
    // Alternate screen, hidden cursor; `Screen` puts both back, also on panic.
    struct Screen;
    impl Drop for Screen {
        fn drop(&mut self) {
            let mut o = std::io::stdout();
            let _ = o.write_all(b"\x1b[?25h\x1b[?1049l");
            let _ = o.flush();
        }
    }
    out.write_all(b"\x1b[?1049h\x1b[?25l")?;
    let screen = Screen;
    let result = (|| -> std::io::Result<()> {
        while !stop.load(Ordering::Relaxed) {
            let view = frame(&mut prev);
            let (cols, rows) = crate::term::size(stdout_fd).unwrap_or((120, 40));
            let text = render(&view, cols, rows).replace('\n', "\x1b[K\r\n");
            out.write_all(b"\x1b[H")?;
            out.write_all(text.as_bytes())?;
            out.write_all(b"\x1b[J")?;
            out.flush()?;
            let deadline = Instant::now() + o.interval;
            while !stop.load(Ordering::Relaxed) {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let slice = left.min(Duration::from_millis(100));
                if keys.is_some() {
                    let t0 = Instant::now();
                    match crate::term::read_byte(stdin, slice)? {
                        Some(b'q' | b'Q' | 0x03 | 0x1b) => stop.store(true, Ordering::Relaxed),
                        Some(_) => {}
                        // Early return without a key (hang-up, signal): do not spin.
                        None => std::thread::sleep(slice.saturating_sub(t0.elapsed())),
                    }
                } else {
                    std::thread::sleep(slice);
                }
            }
        }
        Ok(())
    })();
    drop(keys);
    drop(screen);
    for id in ids {
        signal_hook::low_level::unregister(id);
    }
    result.map(|()| true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attack() -> View {
        View {
            unix_ms: 1_795_000_000_000,
            socket: "/tmp/reflexd.sock".into(),
            uptime_s: 75.0,
            workers: 2,
            ingest: Ingest {
                datagrams: 335,
                samples: 2253,
                bytes: 400_000,
                ..Ingest::default()
            },
            rates: Some(Rates {
                datagrams: 480.0,
                samples: 3360.0,
                bytes: 645_000.0,
                ..Rates::default()
            }),
            events_total: 1,
            latency_p50_us: 41.0,
            latency_p99_us: 120.0,
            fsm_changes: 1,
            flows: vec![FlowView {
                name: "ddos".into(),
                keys: "ipsource".into(),
                value: "frames".into(),
                t: 1.0,
                thresholds: vec![("ddos".into(), 100.0)],
                top: vec![("10.0.0.1".into(), 3120.5), ("10.0.0.2".into(), 12.0)],
            }],
            events: vec![EventView {
                unix_ms: 1_795_000_000_123,
                threshold: "ddos".into(),
                key: "10.0.0.1".into(),
                value: 104.2,
                outcome: "auth(10.0.0.1) authenticated -> clear".into(),
            }],
            changes: vec![ChangeView {
                unix_ms: 1_795_000_000_124,
                module: "auth".into(),
                key: "10.0.0.1".into(),
                from: "authenticated".into(),
                to: "clear".into(),
                cause: "threshold".into(),
            }],
            error: None,
        }
    }

    #[test]
    fn a_frame_shows_rates_top_keys_events_and_changes() {
        let text = render(&attack(), 120, 40);
        assert!(
            text.starts_with("reflex top  /tmp/reflexd.sock  up 1m15s  2 workers  11:06:40.000")
        );
        assert!(
            text.contains("ingest  480 datagrams/s  3360 samples/s  645.0kB/s"),
            "{text}"
        );
        assert!(text.contains("FLOW ddos  (ipsource, frames, t 1s)  threshold ddos > 100/s"));
        let h1 = text.lines().find(|l| l.contains("10.0.0.1  ")).unwrap();
        assert!(h1.contains("3120.5") && h1.ends_with("OVER"), "{h1}");
        assert!(h1.contains(&"#".repeat(BAR)), "{h1}");
        let h2 = text
            .lines()
            .find(|l| l.trim_start().starts_with("10.0.0.2"))
            .unwrap();
        assert!(!h2.contains("OVER") && h2.contains('#'), "{h2}");
        assert!(text.contains("11:06:40.123  ddos         10.0.0.1"));
        assert!(text.contains("auth(10.0.0.1) authenticated -> clear  [threshold]"));
    }

    #[test]
    fn a_frame_fits_the_terminal() {
        let mut v = attack();
        v.flows[0].top = (0..100)
            .map(|i| (format!("10.1.0.{i}"), 1000.0 - i as f64))
            .collect();
        for (cols, rows) in [(80, 24), (40, 10), (200, 60), (20, 3)] {
            let text = render(&v, cols, rows);
            assert!(text.lines().count() <= rows, "{cols}x{rows}\n{text}");
            assert!(
                text.lines().all(|l| l.chars().count() <= cols),
                "{cols}x{rows}\n{text}"
            );
        }
        // With room, the events and changes still show below a long flow.
        let text = render(&v, 100, 30);
        assert!(text.contains("RECENT FSM CHANGES"), "{text}");
        assert!(text.contains("10.1.0.0"), "{text}");
    }

    #[test]
    fn first_frame_and_errors_say_so() {
        let mut v = attack();
        v.rates = None;
        assert!(render(&v, 100, 40).contains("rates from the next refresh"));
        let down = View {
            error: Some("cannot connect".into()),
            ..View::default()
        };
        let text = render(&down, 100, 40);
        assert!(text.contains("daemon not answering: cannot connect"));
        assert_eq!(text.lines().count(), 2);
        let empty = render(&View::default(), 100, 40);
        assert!(empty.contains("(none)"));
    }

    #[test]
    fn views_build_from_control_replies() {
        let stats = json!({"uptime_s": 3.0, "workers": 1,
            "sflow": {"datagrams": 10, "flow_samples": 60, "counter_samples": 1, "bytes": 100,
                      "decode_errors": {"short": 2, "version": 1}, "kernel_drops": 4, "lost_datagrams": 5},
            "events": {"delivered": 2, "fsm_changes": 1, "latency": {"p50_us": 10.0, "p99_us": 20.0}}});
        let flows = [
            json!({"name": "ddos", "keys": "ipsource", "value": "frames", "t": 1.0,
            "thresholds": [{"name": "ddos", "value": 100.0}],
            "top": [{"key": "10.0.0.1", "rate": 500.0}]}),
        ];
        let events = json!({"events": [{"unix_ms": 5, "threshold": "ddos", "key": "10.0.0.1", "value": 101.0, "outcome": "x"}]});
        let changes = json!({"changes": [{"unix_ms": 6, "module": "auth", "key": "10.0.0.1", "from": "a", "to": "b", "cause": "control"}]});
        let v = View::from_replies(&stats, &flows, &events, &changes);
        assert_eq!(v.ingest.samples, 61);
        assert_eq!(v.ingest.decode_errors, 3);
        assert_eq!(v.ingest.kernel_drops, 4);
        assert_eq!(v.flows[0].thresholds, vec![("ddos".to_owned(), 100.0)]);
        assert_eq!(v.flows[0].top, vec![("10.0.0.1".to_owned(), 500.0)]);
        assert_eq!(v.events[0].value, 101.0);
        assert_eq!(v.changes[0].cause, "control");
        let r = Rates::between(&Ingest::default(), &v.ingest, 2.0);
        assert_eq!(r.datagrams, 5.0);
        assert_eq!(
            Rates::between(&v.ingest, &Ingest::default(), 1.0).datagrams,
            0.0
        );
    }

    #[test]
    fn numbers_read_at_a_glance() {
        assert_eq!(human(0.0), "0");
        assert_eq!(human(12.25), "12.2");
        assert_eq!(human(9999.0), "9999");
        assert_eq!(human(12_345.0), "12.3k");
        assert_eq!(human(12_345_678.0), "12.3M");
        assert_eq!(duration(3700.0), "1h01m");
    }
}
