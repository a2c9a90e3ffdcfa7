//! `flotilla`: the example cluster binary.
//!
//! For now it runs one replicated-store member (`flotilla up`), bootstraps it as a one-member
//! cluster, shows a few writes, reads and a watch against it, and keeps serving until Ctrl-C.
//! The API server, scheduler, controllers and agents join it as they land.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use flotilla_core::store::{
    Compare, CompareOp, KeyRange, PutRequest, RangeRequest, RequestOp, Store, TxnRequest, WatchRequest,
};
use flotilla_raft_store::{RaftStore, RaftStoreConfig};

#[derive(Parser)]
#[command(name = "flotilla", about = "Flotilla example cluster")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a one-member store, show writes and reads against it, then serve until Ctrl-C.
    Up {
        /// Where the member keeps its data.
        #[arg(long, default_value = "flotilla-data")]
        data_dir: PathBuf,
        /// Member transport address.
        #[arg(long, default_value = "127.0.0.1:7380")]
        listen: SocketAddr,
        /// Exit after the demonstration instead of serving.
        #[arg(long)]
        demo_only: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match Cli::parse().cmd {
        Cmd::Up { data_dir, listen, demo_only } => up(data_dir, listen, demo_only).await,
    }
}

async fn up(data_dir: PathBuf, listen: SocketAddr, demo_only: bool) -> anyhow::Result<()> {
    let store = RaftStore::open(RaftStoreConfig::new(1, &data_dir, listen))
        .await
        .with_context(|| format!("starting the store in {}", data_dir.display()))?;
    if !store.raft().is_initialized().await? {
        store.initialize(BTreeMap::from([(1, store.local_addr().to_string())])).await?;
    }
    println!(
        "flotilla: one-member store up, data in {}, transport on {}",
        data_dir.display(),
        store.local_addr()
    );
    demo(&store).await?;
    if !demo_only {
        println!("serving; press Ctrl-C to stop");
        tokio::signal::ctrl_c().await?;
    }
    store.shutdown().await;
    Ok(())
}

async fn demo(store: &RaftStore) -> anyhow::Result<()> {
    let mut watch = store.watch(WatchRequest::new(KeyRange::prefix("/demo/"))).await?;
    let put = store.put(PutRequest::new("/demo/greeting", "hello")).await?;
    println!("put /demo/greeting=hello at revision {}", put.header.revision);
    let txn = store
        .txn(TxnRequest {
            compare: vec![Compare::mod_revision("/demo/greeting", CompareOp::Equal, put.header.revision)],
            success: vec![RequestOp::Put(PutRequest::new("/demo/greeting", "hello again"))],
            failure: vec![],
        })
        .await?;
    println!("compare-and-swap succeeded={} at revision {}", txn.succeeded, txn.header.revision);
    let now = store.range(RangeRequest::new(KeyRange::prefix("/demo/"))).await?;
    for kv in &now.kvs {
        println!(
            "read {}={} (version {}, mod_revision {})",
            String::from_utf8_lossy(&kv.key),
            String::from_utf8_lossy(&kv.value),
            kv.version,
            kv.mod_revision
        );
    }
    let before =
        store.range(RangeRequest::new(KeyRange::key("/demo/greeting")).at(put.header.revision)).await?;
    if let Some(kv) = before.kvs.first() {
        println!("read at revision {}: {}", put.header.revision, String::from_utf8_lossy(&kv.value));
    }
    for _ in 0..2 {
        if let Some(resp) = watch.next_response().await {
            for ev in resp?.events {
                println!(
                    "watch: {:?} {} at revision {}",
                    ev.kind,
                    String::from_utf8_lossy(&ev.kv.key),
                    ev.kv.mod_revision
                );
            }
        }
    }
    Ok(())
}
