//! The `sluiced` binary: parses flags and the config file into a
//! [`BrokerConfig`] and runs the broker until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sluice_broker::config::{parse_advertised, parse_listen, parse_listener, BrokerConfig};

#[global_allocator]
static ALLOC: sluice_broker::alloc::BrokerAllocator = sluice_broker::alloc::BrokerAllocator;

/// A Kafka-compatible broker: thread-per-core on io_uring, fsync before ack.
#[derive(Parser, Debug)]
#[command(name = "sluiced", version, about, long_about = None)]
struct Args {
    /// Listener to accept Kafka clients on, in Kafka's form
    /// PROTOCOL://HOST:PORT (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, or a
    /// name from listener.security.protocol.map); HOST:PORT means PLAINTEXT.
    /// Repeatable. Default PLAINTEXT://127.0.0.1:9092.
    #[arg(long = "listen", value_name = "[NAME://]HOST:PORT")]
    listen: Vec<String>,
    /// Address clients of listener NAME are told to connect to (Metadata),
    /// NAME://HOST:PORT. Repeatable. Defaults to each listener's own address.
    #[arg(long = "advertised-listener", value_name = "[NAME://]HOST:PORT")]
    advertised_listener: Vec<String>,
    /// Directory holding the logs and metadata. Default ./data.
    #[arg(long = "data-dir", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Number of shards (io_uring runtimes, one pinned thread each). Default: one per core.
    #[arg(long = "shards", value_name = "N")]
    shards: Option<usize>,
    /// TOML file of Kafka property names (num.partitions, log.segment.bytes, ...).
    /// Flags override the file.
    #[arg(long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Serve Prometheus metrics on HOST:PORT (GET /metrics).
    #[arg(long = "metrics", value_name = "HOST:PORT")]
    metrics: Option<String>,
    /// Set one property, NAME=VALUE (Kafka's names). Repeatable; applied after --config.
    #[arg(long = "set", short = 'o', value_name = "NAME=VALUE")]
    set: Vec<String>,
}

fn build_config(args: Args) -> Result<BrokerConfig, String> {
    let mut cfg = BrokerConfig::default();
    if let Some(path) = &args.config {
        cfg.apply_file(path).map_err(|e| e.to_string())?;
    }
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--set expects NAME=VALUE, got `{kv}`"))?;
        cfg.set(k.trim(), v.trim()).map_err(|e| e.to_string())?;
    }
    if !args.listen.is_empty() {
        cfg.listeners = args
            .listen
            .iter()
            .map(|l| parse_listener("--listen", l))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
    }
    if !args.advertised_listener.is_empty() {
        cfg.advertised_listeners = args
            .advertised_listener
            .iter()
            .map(|l| parse_advertised("--advertised-listener", l))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
    }
    if let Some(d) = args.data_dir {
        cfg.data_dir = d;
    }
    if let Some(n) = args.shards {
        if n == 0 || n > 256 {
            return Err("--shards must be between 1 and 256".into());
        }
        cfg.shards = n;
    }
    if let Some(m) = &args.metrics {
        cfg.metrics_listen = Some(parse_listen("--metrics", m).map_err(|e| e.to_string())?);
    }
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

fn main() -> ExitCode {
    // openraft narrates every vote and append at info, and warns of every
    // failed heartbeat (ten a second per dead controller, which the quorum's
    // network logs once instead): keep it quieter unless SLUICE_LOG names it.
    let mut filter = std::env::var("SLUICE_LOG").unwrap_or_else(|_| "info".into());
    if !filter.contains("openraft") {
        filter.push_str(",openraft=warn,openraft::core::heartbeat=error");
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let cfg = match build_config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluiced: {e}");
            return ExitCode::from(2);
        }
    };
    match sluice_broker::runtime::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluiced: {e:#}");
            ExitCode::FAILURE
        }
    }
}
