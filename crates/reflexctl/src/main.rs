//! reflexctl: talks to reflexd's control socket (the operator's views live in the library
//! beside this file).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use reflex::control::client::Client;
use reflex::control::protocol::Request;
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "reflexctl",
    version,
    about = "Query and steer a running reflexd"
)]
struct Cli {
    /// reflexd's control socket.
    #[arg(long, short = 's', global = true, default_value = reflex::config::DEFAULT_SOCKET, env = "REFLEX_SOCKET")]
    socket: PathBuf,
    /// Print the daemon's JSON reply instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for a reply.
    #[arg(long, global = true, default_value_t = 5.0)]
    timeout: f64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ingest counters: datagrams, samples, decode errors, kernel drops, gaps, events.
    Stats,
    /// Top keys of a flow with their smoothed rates.
    Flows {
        /// Flow name (e.g. ddos).
        name: String,
        /// How many keys to show.
        #[arg(long, short = 'n', default_value_t = 20)]
        max: usize,
    },
    /// Recent threshold events.
    Events {
        #[arg(long, short = 'n', default_value_t = 20)]
        max: usize,
        /// Only this key's events (as the flow prints it, e.g. 10.0.0.1).
        #[arg(long)]
        key: Option<String>,
    },
    /// Check that the daemon answers.
    Ping,
    /// Move an FSM instance to a state (PyResonance flags: -i HOST -e MODULE -V STATE).
    Event {
        /// Instance key: a host address (or MAC, or port, as the module is keyed).
        #[arg(short = 'i', long = "key", visible_alias = "host")]
        key: String,
        /// FSM module (e.g. auth).
        #[arg(short = 'e', long = "module")]
        module: String,
        /// Target state (e.g. authenticated).
        #[arg(short = 'V', long = "state", visible_alias = "value")]
        state: String,
        /// Hold the state this many seconds, then return.
        #[arg(long)]
        hold: Option<f64>,
        /// State after the hold (default: the module's initial state).
        #[arg(long, requires = "hold")]
        then: Option<String>,
    },
    /// FSM states: every instance away from its initial state, or one instance.
    State {
        #[arg(short = 'e', long = "module")]
        module: Option<String>,
        #[arg(short = 'i', long = "key", requires = "module")]
        key: Option<String>,
    },
    /// The composed policy and its compiled rules.
    Policy,
    /// Check the configured assertions on the compiled tables.
    Check,
    /// Connected switches.
    Switches,
    /// A switch's installed and desired flow tables.
    Table {
        /// Datapath id (decimal, or hex with 0x).
        dpid: String,
    },
    #[command(flatten)]
    Ops(reflexctl::OpsCommand),
}

fn main() -> ExitCode {
    // A closed pipe (`reflexctl … | head`) ends reflexctl quietly, as it does any command-line
    // tool, instead of a panic on the next write: restore SIGPIPE's default action, which
    // the Rust runtime sets to ignore.
    // SAFETY: signal(2) with SIG_DFL at start, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let request = match &cli.command {
        Command::Ops(op) => return reflexctl::run(op, &cli.socket, cli.timeout, cli.json),
        Command::Stats => Request::Stats,
        Command::Flows { name, max } => Request::Flows {
            name: name.clone(),
            max: *max,
        },
        Command::Events { max, key } => Request::Events {
            max: *max,
            key: key.clone(),
        },
        Command::Ping => Request::Ping,
        Command::Event {
            key,
            module,
            state,
            hold,
            then,
        } => Request::Event {
            module: module.clone(),
            key: key.clone(),
            state: state.clone(),
            hold: *hold,
            then: then.clone(),
        },
        Command::State { module, key } => Request::State {
            module: module.clone(),
            key: key.clone(),
        },
        Command::Policy => Request::Policy,
        Command::Check => Request::Check,
        Command::Switches => Request::Switches,
        Command::Table { dpid } => Request::Table { dpid: dpid.clone() },
    };
    let timeout = Duration::from_secs_f64(cli.timeout.clamp(0.01, 3600.0));
    let reply = Client::connect(&cli.socket, timeout).and_then(|mut c| c.request(&request));
    let reply = match reply {
        Ok(r) => r,
        Err(e) => {
            eprintln!("reflexctl: {e}");
            return ExitCode::from(2);
        }
    };
    if !reply.ok {
        eprintln!(
            "reflexctl: {}",
            reply.error.as_deref().unwrap_or("request failed")
        );
        return ExitCode::FAILURE;
    }
    let result = reply.result.unwrap_or(Value::Null);
    if cli.json {
        println!("{result}");
        return ExitCode::SUCCESS;
    }
    match &cli.command {
        Command::Stats => print_stats(&result),
        Command::Flows { .. } => print_flows(&result),
        Command::Events { .. } => print_events(&result),
        Command::Event { .. } => print_event(&result),
        Command::State { .. } => print_state(&result),
        Command::Policy => print_policy(&result),
        Command::Check => {
            if !print_check(&result) {
                return ExitCode::FAILURE;
            }
        }
        Command::Switches => print_switches(&result),
        Command::Table { .. } => print_table(&result),
        Command::Ops(_) => {}
        Command::Ping => println!(
            "reflexd {} up {:.1} s",
            result["version"].as_str().unwrap_or("?"),
            result["uptime_s"].as_f64().unwrap_or(0.0)
        ),
    }
    ExitCode::SUCCESS
}

/// Prints nested objects as `path.to.key  value` lines, in the daemon's order.
fn print_stats(v: &Value) {
    fn walk(prefix: &str, v: &Value) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&path, child);
                }
            }
            Value::Array(items) if items.iter().all(|i| i.is_object()) => {
                for (i, item) in items.iter().enumerate() {
                    walk(&format!("{prefix}[{i}]"), item);
                }
            }
            other => println!("{prefix:<40} {other}"),
        }
    }
    walk("", v);
}

fn print_flows(v: &Value) {
    println!(
        "flow {}  (keys {}, value {}, t {} s)",
        v["name"].as_str().unwrap_or("?"),
        v["keys"].as_str().unwrap_or("?"),
        v["value"].as_str().unwrap_or("?"),
        v["t"]
    );
    println!("{:<48} {:>14}", "KEY", "RATE/s");
    for row in v["top"].as_array().into_iter().flatten() {
        println!(
            "{:<48} {:>14.1}",
            row["key"].as_str().unwrap_or("?"),
            row["rate"].as_f64().unwrap_or(0.0)
        );
    }
}

fn print_events(v: &Value) {
    println!(
        "{:<8} {:<24} {:<12} {:<28} {:<16} {:>12} {:>10}",
        "ID", "TIME", "THRESHOLD", "KEY", "AGENT", "VALUE", "LATENCY"
    );
    for e in v["events"].as_array().into_iter().flatten() {
        println!(
            "{:<8} {:<24} {:<12} {:<28} {:<16} {:>12.1} {:>8.1}us",
            e["id"],
            e["time"].as_str().unwrap_or("?"),
            e["threshold"].as_str().unwrap_or("?"),
            e["key"].as_str().unwrap_or("?"),
            e["agent"].as_str().unwrap_or("?"),
            e["value"].as_f64().unwrap_or(0.0),
            e["latency_us"].as_f64().unwrap_or(0.0)
        );
    }
}

fn print_event(v: &Value) {
    let changed = v["changed"].as_bool().unwrap_or(false);
    println!(
        "{}({}) {} {}{}{}",
        v["module"].as_str().unwrap_or("?"),
        v["key"].as_str().unwrap_or("?"),
        if changed { "->" } else { "already" },
        v["state"].as_str().unwrap_or("?"),
        v["hold_s"]
            .as_f64()
            .map_or(String::new(), |h| format!(" for {h} s")),
        if changed {
            format!(
                " (rules +{} ~{} -{})",
                v["rules"]["added"], v["rules"]["modified"], v["rules"]["removed"]
            )
        } else {
            String::new()
        }
    );
}

fn print_state(v: &Value) {
    if let Some(state) = v["state"].as_str() {
        println!(
            "{}({}) = {state}",
            v["module"].as_str().unwrap_or("?"),
            v["key"].as_str().unwrap_or("?")
        );
        return;
    }
    for m in v["modules"].as_array().into_iter().flatten() {
        println!(
            "module {}: states {}, initial {}",
            m["name"].as_str().unwrap_or("?"),
            m["states"],
            m["initial"].as_str().unwrap_or("?")
        );
    }
    println!(
        "{:<12} {:<40} {:<16} {:>10} {:<16}",
        "MODULE", "KEY", "STATE", "HOLD", "THEN"
    );
    for i in v["instances"].as_array().into_iter().flatten() {
        println!(
            "{:<12} {:<40} {:<16} {:>10} {:<16}",
            i["module"].as_str().unwrap_or("?"),
            i["key"].as_str().unwrap_or("?"),
            i["state"].as_str().unwrap_or("?"),
            i["remaining_s"]
                .as_f64()
                .map_or("-".to_owned(), |r| format!("{r:.1}s")),
            i["then"].as_str().unwrap_or("-")
        );
    }
}

fn print_policy(v: &Value) {
    println!("policy: {}", v["main"].as_str().unwrap_or("?"));
    for m in v["meters"].as_array().into_iter().flatten() {
        println!("meter {}: {} pkt/s", m["id"], m["rate_pps"]);
    }
    for r in v["rules"].as_array().into_iter().flatten() {
        println!(
            " table={}, priority={}, {} actions={}",
            r["table"],
            r["priority"],
            r["match"].as_str().unwrap_or("?"),
            r["actions"].as_str().unwrap_or("?")
        );
    }
}

/// Prints violations; false if there are any.
fn print_check(v: &Value) -> bool {
    let violations = v["violations"].as_array().cloned().unwrap_or_default();
    if violations.is_empty() {
        println!("all assertions hold");
        return true;
    }
    for x in &violations {
        println!(
            "VIOLATED {}: {}({}) forwards {} to {}",
            x["assertion"].as_str().unwrap_or("?"),
            x["module"].as_str().unwrap_or("?"),
            x["key"].as_str().unwrap_or("?"),
            x["packet"].as_str().unwrap_or("?"),
            x["outputs"]
        );
    }
    false
}

fn print_switches(v: &Value) {
    println!(
        "listening on {}: {} switch(es) connected, {} accepted, {} closed; desired table {} entries",
        v["listen"].as_str().unwrap_or("?"),
        v["switches"].as_array().map_or(0, Vec::len),
        v["accepted"],
        v["closed"],
        v["desired"]
    );
    println!(
        "{:<16} {:<21} {:<9} {:>5} {:<24} {:>9} {:>9} {:>9} {:>7} {:>6} {:<7}",
        "DPID",
        "ADDRESS",
        "PHASE",
        "PORTS",
        "CONNECTED SINCE",
        "MSGS IN",
        "MSGS OUT",
        "FLOW MODS",
        "BARRIER",
        "ERRORS",
        "SYNC"
    );
    for s in v["switches"].as_array().into_iter().flatten() {
        println!(
            "{:<16} {:<21} {:<9} {:>5} {:<24} {:>9} {:>9} {:>9} {:>7} {:>6} {:<7}",
            s["dpid"].as_str().unwrap_or("-"),
            s["address"].as_str().unwrap_or("?"),
            s["phase"].as_str().unwrap_or("?"),
            s["ports"].as_array().map_or(0, Vec::len),
            s["connected_since"].as_str().unwrap_or("?"),
            s["msgs_in"].as_u64().unwrap_or(0),
            s["msgs_out"].as_u64().unwrap_or(0),
            s["flow_mods"].as_u64().unwrap_or(0),
            s["pending_barriers"].as_u64().unwrap_or(0),
            s["errors"].as_u64().unwrap_or(0),
            if s["in_sync"].as_bool().unwrap_or(false) {
                "yes"
            } else {
                "no"
            }
        );
        let l = &s["learning"];
        if l.is_object() {
            let n = |k: &str| l[k].as_u64().unwrap_or(0);
            println!(
                "    learning: {} packet-ins: {} flows, {} floods, {} hairpins, {} ignored, {} shed, {} other; {} MACs learnt ({} evicted, {} slots), {} learnt flows kept at connect",
                s["packet_ins"].as_u64().unwrap_or(0),
                n("flows"),
                n("floods"),
                n("hairpins"),
                n("ignored"),
                n("shed"),
                n("other"),
                n("macs_learnt"),
                n("macs_evicted"),
                n("mac_capacity"),
                n("learnt_at_connect")
            );
        }
        for e in s["recent_errors"].as_array().into_iter().flatten() {
            println!(
                "    rejected {} (xid {}): {}/{}: {}",
                e["op"].as_str().unwrap_or("?"),
                e["xid"],
                e["type"].as_str().unwrap_or("?"),
                e["code"].as_str().unwrap_or("?"),
                e["entry"].as_str().unwrap_or("?")
            );
        }
    }
}

fn print_table(v: &Value) {
    let lines = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let in_sync = v["in_sync"].as_bool().unwrap_or(false);
    println!(
        "switch {} ({}), {}, {}",
        v["dpid"].as_str().unwrap_or("?"),
        v["address"].as_str().unwrap_or("?"),
        v["phase"].as_str().unwrap_or("?"),
        if in_sync {
            "in sync with the policy"
        } else {
            "NOT in sync with the policy"
        }
    );
    for (title, key) in [("installed", "installed"), ("desired", "desired")] {
        let l = lines(key);
        println!("{title} ({} entries):", l.len());
        for line in l {
            println!("{}", line.as_str().unwrap_or("?"));
        }
    }
    if let Some(l) = v["learning"].as_object() {
        println!(
            "(learnt flows: table {}, cookie {}, on the switch only; not listed)",
            l.get("table").unwrap_or(&Value::Null),
            l.get("cookie").and_then(Value::as_str).unwrap_or("?")
        );
    }
    let diffs = lines("differences");
    if !diffs.is_empty() {
        println!("to send ({} flow-mods):", diffs.len());
        for d in diffs {
            println!(
                "{:<7}{}",
                d["op"].as_str().unwrap_or("?"),
                d["entry"].as_str().unwrap_or("?")
            );
        }
    }
    for (title, key) in [("installed", "installed"), ("desired", "desired")] {
        for m in v["meters"][key].as_array().into_iter().flatten() {
            println!("{title} meter={} {} pktps", m["id"], m["rate_pps"]);
        }
    }
}
