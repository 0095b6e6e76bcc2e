//! The operator's tools behind `reflexctl top`, `record` and `chart`: a live view of the
//! daemon, a recorder of one host's rate and the events around it, and the chart of a
//! recording. They talk to the daemon only through the control socket.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

pub mod chart;
pub mod record;
pub mod series;
pub mod top;

mod term;

/// The subcommands, flattened into reflexctl's.
#[derive(Subcommand, Debug)]
pub enum OpsCommand {
    /// Live view: ingest rates, top keys per flow against thresholds, recent events and
    /// FSM changes. q, Esc or Ctrl-C quits.
    Top {
        /// Seconds between refreshes.
        #[arg(long, short = 'd', default_value_t = 1.0)]
        interval: f64,
        /// Print one frame and exit (rates over a short first interval).
        #[arg(long)]
        once: bool,
        /// Keys shown per flow at most.
        #[arg(long, short = 'n', default_value_t = 10)]
        max: usize,
    },
    /// Recent FSM changes (threshold reactions, control events, expired holds).
    Changes {
        #[arg(long, short = 'n', default_value_t = 20)]
        max: usize,
    },
    /// Record a key's rate in a flow, the thresholds, events and FSM changes, as JSON lines.
    Record {
        /// Flow name (e.g. ddos).
        #[arg(long)]
        flow: String,
        /// Key within the flow (e.g. 10.0.0.1).
        #[arg(long)]
        key: String,
        /// Output file (JSON lines; see `reflexctl chart`).
        #[arg(long, short = 'o')]
        out: PathBuf,
        /// Seconds to record.
        #[arg(long, default_value_t = 60.0)]
        duration: f64,
        /// Seconds between polls.
        #[arg(long, default_value_t = 0.1)]
        interval: f64,
    },
    /// Render recorded series (reflexctl record output, plus OVS counter lines) to PNG.
    Chart {
        /// Series files (JSON lines), merged by time.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// PNG to write.
        #[arg(long, short = 'o')]
        out: PathBuf,
        /// Image size, WIDTHxHEIGHT.
        #[arg(long, default_value = "1200x600")]
        size: String,
        /// Chart title (default: from the recording's key and flow).
        #[arg(long)]
        title: Option<String>,
        /// TrueType font for the text (default: DejaVu Sans; no text if none is found).
        #[arg(long, env = "REFLEX_CHART_FONT")]
        font: Option<PathBuf>,
        /// Draw no text at all (no font needed).
        #[arg(long, conflicts_with = "font")]
        no_text: bool,
    },
}

fn seconds(what: &str, v: f64, min: f64) -> Result<Duration, String> {
    if v.is_finite() && v >= min && v <= 86_400.0 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(format!("{what} must be between {min} and 86400 seconds"))
    }
}

/// Runs one of the tools; `timeout` (seconds) bounds each control reply.
pub fn run(cmd: &OpsCommand, socket: &Path, timeout: f64, json: bool) -> ExitCode {
    match run_inner(cmd, socket, timeout, json) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("reflexctl: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_inner(
    cmd: &OpsCommand,
    socket: &Path,
    timeout: f64,
    json: bool,
) -> Result<ExitCode, String> {
    let timeout = Duration::from_secs_f64(timeout.clamp(0.01, 3600.0));
    match cmd {
        OpsCommand::Changes { max } => {
            let mut c = reflex::control::client::Client::connect(socket, timeout)
                .map_err(|e| e.to_string())?;
            let reply = c
                .request(&reflex::control::protocol::Request::Changes { max: *max })
                .map_err(|e| e.to_string())?;
            let v = match (reply.ok, reply.result) {
                (true, Some(v)) => v,
                _ => return Err(reply.error.unwrap_or_else(|| "request failed".into())),
            };
            if json {
                println!("{v}");
            } else {
                print!("{}", format_changes(&v));
            }
            Ok(ExitCode::SUCCESS)
        }
        OpsCommand::Top {
            interval,
            once,
            max,
        } => {
            let o = top::TopOptions {
                socket,
                timeout,
                interval: seconds("--interval", *interval, 0.05)?,
                max: (*max).max(1),
                once: *once,
            };
            let answered = top::run(&o).map_err(|e| format!("terminal: {e}"))?;
            Ok(if answered {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        OpsCommand::Record {
            flow,
            key,
            out,
            duration,
            interval,
        } => {
            let o = record::RecordOptions {
                socket,
                timeout,
                flow,
                key,
                out,
                duration: seconds("--duration", *duration, 0.0)?,
                interval: seconds("--interval", *interval, 0.01)?,
            };
            let r = record::run(&o)?;
            eprintln!(
                "recorded {} samples, {} events, {} FSM changes for {key} in {flow} to {} ({} polls unanswered)",
                r.samples,
                r.events,
                r.changes,
                out.display(),
                r.misses
            );
            Ok(ExitCode::SUCCESS)
        }
        OpsCommand::Chart {
            inputs,
            out,
            size,
            title,
            font,
            no_text,
        } => {
            let (w, h) = chart::parse_size(size)?;
            let mut s = series::Series::default();
            for path in inputs {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                s.merge(
                    series::Series::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?,
                );
            }
            let font = if *no_text {
                None
            } else {
                chart::load_font(font.as_deref())?
            };
            if font.is_none() && !no_text {
                eprintln!(
                    "reflexctl: no TrueType font found (install fonts-dejavu-core or pass --font); \
                     drawing the chart without text"
                );
            }
            let mut look = chart::Look::for_series(&s, font.is_some());
            if let Some(t) = title {
                look.title = t.clone();
            }
            chart::render_png(&s, &look, out, w, h)?;
            eprintln!(
                "wrote {} ({w}x{h}: {} Reflex samples, {} OVS samples, {} marks)",
                out.display(),
                s.reflex.len(),
                s.ovs.len(),
                s.marks.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The `changes` reply as a table.
pub fn format_changes(v: &serde_json::Value) -> String {
    let mut out = format!(
        "{:<24} {:<12} {:<28} {:<16} {:<16} {:<10}\n",
        "TIME", "MODULE", "KEY", "FROM", "TO", "CAUSE"
    );
    for c in v["changes"].as_array().into_iter().flatten() {
        let s = |k: &str| c[k].as_str().unwrap_or("?").to_owned();
        out.push_str(&format!(
            "{:<24} {:<12} {:<28} {:<16} {:<16} {:<10}\n",
            s("time"),
            s("module"),
            s("key"),
            s("from"),
            s("to"),
            s("cause")
        ));
    }
    out.lines().map(|l| format!("{}\n", l.trim_end())).collect()
}
