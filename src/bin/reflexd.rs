//! reflexd: the Reflex daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use reflex::config::{Config, DEFAULT_TOML};
use reflex::daemon::{self, Overrides};

#[derive(Parser)]
#[command(
    name = "reflexd",
    version,
    about = "Reflex SDN controller: sFlow measurement to OpenFlow control in milliseconds",
    long_about = "Reflex SDN controller. With no --config it runs the embedded default: \
                  flood detection that blocks the source at the switch, every host starting \
                  authenticated (print it with --print-default-config; the classic \
                  experiment, hosts starting cleared, is examples/classic.toml)."
)]
struct Cli {
    /// TOML configuration file (default: the embedded configuration).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// UDP address for sFlow, overriding the configuration (e.g. 0.0.0.0:6343).
    #[arg(long)]
    sflow: Option<SocketAddr>,
    /// Control socket path, overriding the configuration.
    #[arg(long)]
    control: Option<PathBuf>,
    /// Ingest threads (0 = one per core), overriding the configuration.
    #[arg(long)]
    workers: Option<usize>,
    /// TCP address where switches connect (OpenFlow 1.3), overriding the configuration.
    #[arg(long)]
    openflow: Option<SocketAddr>,
    /// Directory of the FSM journal, overriding the configuration.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// TCP address of the Prometheus endpoint (GET /metrics), e.g. 127.0.0.1:9108.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Print the embedded default configuration and exit.
    #[arg(long)]
    print_default_config: bool,
    /// Check the configuration and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{DEFAULT_TOML}");
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REFLEX_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match &cli.config {
        Some(path) => Config::load(path),
        None => Config::embedded(),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("reflexd: {e}");
            return ExitCode::from(2);
        }
    };
    let origin = cli
        .config
        .as_ref()
        .map_or("embedded default".to_owned(), |p| p.display().to_string());
    // The one validation: what --check-config accepts is what the daemon starts with.
    let built = match config.build() {
        Ok(built) => built,
        Err(e) => {
            eprintln!("reflexd: {origin}: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }
    let overrides = Overrides {
        sflow: cli.sflow,
        control: cli.control,
        workers: cli.workers,
        openflow: cli.openflow,
        state_dir: cli.state_dir,
        metrics: cli.metrics,
    };
    match daemon::run(config, built, overrides) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reflexd: {e}");
            ExitCode::FAILURE
        }
    }
}
