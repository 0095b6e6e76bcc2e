//! reflexctl: talks to reflexd's control socket.

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
    },
    /// Check that the daemon answers.
    Ping,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let request = match &cli.command {
        Command::Stats => Request::Stats,
        Command::Flows { name, max } => Request::Flows {
            name: name.clone(),
            max: *max,
        },
        Command::Events { max } => Request::Events { max: *max },
        Command::Ping => Request::Ping,
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
