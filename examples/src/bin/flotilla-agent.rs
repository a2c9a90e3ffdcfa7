//! `flotilla-agent`: `flotilla agent` as a binary of its own, for the machines that only run
//! pods. It takes the same flags and does the same thing (join with a bootstrap token, run the
//! node agent, its endpoint and the service proxy; see `flotilla agent --help`), but links only
//! the agent's code: no store, RocksDB, API server or controllers. The node's agent process
//! therefore maps a much smaller program, which keeps its resident memory down.

// The modules below are `flotilla`'s own (one source); what only the control plane's
// subcommands use in them is dead code here.
#![allow(dead_code)]

#[path = "../agent.rs"]
mod agent;
#[path = "../config.rs"]
mod config;
#[path = "../host.rs"]
mod host;
#[path = "../node.rs"]
mod node;
#[path = "../proxy.rs"]
mod proxy;

use clap::Parser;

use host::LogFormat;

/// mimalloc rather than glibc's malloc: the object paths allocate heavily, and with it
/// scheduler_perf's Memory workload bound pods about 1.7 times as fast (docs/scheduler.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "flotilla-agent", version, about = "Join this machine to a Flotilla cluster as a node")]
struct Cli {
    /// Log format (the filter is RUST_LOG, default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(flatten)]
    agent: config::WithConfig<agent::AgentArgs>,
}

fn main() -> anyhow::Result<()> {
    let cli: Cli = config::parse()?;
    host::init_logging(cli.log_format);
    // One thread runs everything: the agent waits on the runtime and the API, it does not
    // compute, and one thread keeps one malloc arena instead of one per worker thread.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(agent::run(cli.agent.into_args()))
}
