//! Cluster harness: three raft-store members on loopback, N concurrent clients doing one
//! operation for a fixed time; prints throughput and latency percentiles.
//!
//! `cargo run --release -p flotilla-benches --bin cluster_bench -- --clients 1,16,128 --secs 10`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use flotilla_core::store::{
    Compare, CompareOp, KeyRange, PutRequest, RangeRequest, RequestOp, Store, TxnRequest,
};
use flotilla_raft_store::{RaftStore, RaftStoreConfig};
use hdrhistogram::Histogram;
use tokio::time::Instant;

#[derive(Parser)]
struct Args {
    /// Client counts to run, one after another.
    #[arg(long, value_delimiter = ',', default_value = "1,16,128")]
    clients: Vec<usize>,
    /// Seconds per run.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Operations to measure.
    #[arg(long, value_delimiter = ',', default_value = "put,get,cas")]
    ops: Vec<Op>,
    /// Keys the clients spread over.
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Op {
    /// 256-byte puts.
    Put,
    /// Linearizable single-key gets.
    Get,
    /// Compare-and-swap transactions on the key's mod revision.
    Cas,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let mut members = Vec::new();
    for id in 1..=3u64 {
        let cfg = RaftStoreConfig::new(id, dir.path().join(format!("m{id}")), "127.0.0.1:0".parse()?);
        members.push(RaftStore::open(cfg).await?);
    }
    let voters: BTreeMap<u64, String> =
        members.iter().map(|m| (m.id(), m.local_addr().to_string())).collect();
    members[0].initialize(voters).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while members[0].leader().is_none() {
        anyhow::ensure!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let leader_id = members[0].leader().expect("checked above");
    let leader = Arc::new(members.iter().find(|m| m.id() == leader_id).expect("leader is a member").clone());
    let value = vec![b'x'; 256];
    for k in 0..args.keys {
        leader.put(PutRequest::new(key(k), value.clone())).await?;
    }
    println!("op,clients,secs,ops,ops_per_sec,p50_us,p99_us,p999_us,errors");
    for &op in &args.ops {
        for &clients in &args.clients {
            let end = Instant::now() + Duration::from_secs(args.secs);
            let mut tasks = Vec::new();
            for c in 0..clients {
                let (store, value, keys) = (leader.clone(), value.clone(), args.keys);
                tasks.push(tokio::spawn(async move {
                    let mut h = Histogram::<u64>::new(3).expect("valid precision");
                    let (mut i, mut errors) = (c, 0u64);
                    while Instant::now() < end {
                        let k = key(i % keys);
                        i += clients;
                        let t = Instant::now();
                        let ok = match op {
                            Op::Put => store.put(PutRequest::new(k, value.clone())).await.is_ok(),
                            Op::Get => store.range(RangeRequest::new(KeyRange::key(k))).await.is_ok(),
                            Op::Cas => cas(&store, k, value.clone()).await,
                        };
                        if ok {
                            h.record(t.elapsed().as_micros() as u64).expect("in range");
                        } else {
                            errors += 1;
                        }
                    }
                    (h, errors)
                }));
            }
            let mut all = Histogram::<u64>::new(3).expect("valid precision");
            let mut errors = 0;
            for t in tasks {
                let (h, e) = t.await?;
                all.add(&h)?;
                errors += e;
            }
            println!(
                "{op:?},{clients},{},{},{:.0},{},{},{},{errors}",
                args.secs,
                all.len(),
                all.len() as f64 / args.secs as f64,
                all.value_at_quantile(0.5),
                all.value_at_quantile(0.99),
                all.value_at_quantile(0.999)
            );
        }
    }
    for m in members {
        m.shutdown().await;
    }
    Ok(())
}

fn key(k: usize) -> String {
    format!("/bench/{k:08}")
}

/// Reads the key's revision, then swaps its value if unchanged; true when the transaction ran
/// (succeeded or lost the race).
async fn cas(store: &RaftStore, k: String, value: Vec<u8>) -> bool {
    let Ok(cur) = store.range(RangeRequest::new(KeyRange::key(k.clone()))).await else { return false };
    let rev = cur.kvs.first().map_or(0, |kv| kv.mod_revision);
    store
        .txn(TxnRequest {
            compare: vec![Compare::mod_revision(k.clone(), CompareOp::Equal, rev)],
            success: vec![RequestOp::Put(PutRequest::new(k, value))],
            failure: vec![],
        })
        .await
        .is_ok()
}
