//! reflex-load: load tools for Reflex. Generates sFlow v5 (background and attacks), drains
//! it as fast as the kernel delivers, emulates OpenFlow 1.3 switches (cbench-style), and
//! measures mitigation latency against a running reflexd.
//!
//! Every subcommand is bounded in time (and the sender in datagrams) and sends only to
//! 127.0.0.0/8 or ::1. Progress goes to stderr, `--json` summaries to stdout.

mod drain;
mod mitigate;
mod report;
mod sflow;
mod switch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "reflex-load",
    version,
    about = "Load tools for Reflex: sFlow generator, drain, OpenFlow switch emulator, \
             mitigation latency (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send sFlow v5 datagrams (background + scheduled attacks) with sendmmsg.
    Sflow(sflow::SflowArgs),
    /// Receive datagrams with recvmmsg and only count them: the ingest limit.
    Drain(drain::DrainArgs),
    /// Emulate OpenFlow 1.3 switches connecting to a controller (cbench modes included).
    Switch(switch::SwitchArgs),
    /// Measure attack-to-block latency against a running reflexd.
    Mitigate(mitigate::MitigateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sflow(a) => sflow::run(a),
        Command::Drain(a) => drain::run(a),
        Command::Switch(a) => switch::run(a),
        Command::Mitigate(a) => mitigate::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reflex-load: {e:#}");
            ExitCode::from(2)
        }
    }
}
