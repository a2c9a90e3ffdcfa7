//! Object-layer harness: creates, gets, updates and lists N pods through the in-process
//! client, on the memory store or on three raft members over loopback; then measures watch
//! delivery to W watchers (through the watch cache) for K changes, and the watch cache's
//! memory per pod.
//!
//! `cargo run --release -p flotilla-benches --bin objects_bench -- --store memory --pods 10000`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use flotilla_core::client::{Api, Client, Event, ListOptions, LocalClient};
use flotilla_core::object::{KindRegistry, Resource};
use flotilla_core::registry::{Registry, WatchCacheConfig};
use flotilla_core::store::{MemStore, Store};
use flotilla_raft_store::{RaftStore, RaftStoreConfig};
use futures::StreamExt;
use hdrhistogram::Histogram;
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::time::Instant;

#[derive(Parser)]
struct Args {
    /// Which store the registry runs on.
    #[arg(long, value_enum, default_value = "memory")]
    store: StoreKind,
    /// Pods to create, get, update and list.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Concurrent clients for create, get and update.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Watchers for the delivery measurement (0 skips it).
    #[arg(long, default_value_t = 1_000)]
    watchers: usize,
    /// Changes the watchers receive.
    #[arg(long, default_value_t = 10_000)]
    changes: usize,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StoreKind {
    /// `MemStore`.
    Memory,
    /// Three raft members on loopback (fsync on).
    Raft3,
}

fn pod(i: usize) -> Pod {
    let requests = BTreeMap::from([
        ("cpu".to_string(), Quantity("100m".into())),
        ("memory".to_string(), Quantity("64Mi".into())),
    ]);
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("pod-{i:07}")),
            labels: Some(BTreeMap::from([
                ("app".into(), format!("app-{}", i % 100)),
                ("tier".into(), "web".into()),
            ])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "main".into(),
                image: Some("registry.local/app:1.0".into()),
                command: Some(vec!["/bin/app".into(), "--port=8080".into()]),
                resources: Some(ResourceRequirements { requests: Some(requests), ..Default::default() }),
                ..Default::default()
            }],
            node_name: Some(format!("node-{}", i % 50)),
            ..Default::default()
        }),
        status: None,
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// Runs `op(i)` for i in 0..n over `clients` tasks; prints ops/s and latency percentiles.
async fn phase<F, Fut>(name: &str, n: usize, clients: usize, op: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).expect("valid precision");
            let mut i = c;
            while i < n {
                let t = Instant::now();
                op(i).await?;
                h.record(t.elapsed().as_micros() as u64)?;
                i += clients;
            }
            anyhow::Ok(h)
        }));
    }
    let mut all = Histogram::<u64>::new(3).expect("valid precision");
    for t in tasks {
        all.add(&t.await??)?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name},{n},{clients},{secs:.2},{:.0},{},{}",
        n as f64 / secs,
        all.value_at_quantile(0.5),
        all.value_at_quantile(0.99)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let mut members = Vec::new();
    let store: Arc<dyn Store> = match args.store {
        StoreKind::Memory => Arc::new(MemStore::new()),
        StoreKind::Raft3 => {
            for id in 1..=3u64 {
                let cfg = RaftStoreConfig::new(id, dir.path().join(format!("m{id}")), "127.0.0.1:0".parse()?);
                members.push(RaftStore::open(cfg).await?);
            }
            let voters = members.iter().map(|m| (m.id(), m.local_addr().to_string())).collect();
            members[0].initialize(voters).await?;
            let deadline = Instant::now() + Duration::from_secs(10);
            while members[0].leader().is_none() {
                anyhow::ensure!(Instant::now() < deadline, "no leader elected");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let leader = members[0].leader().expect("checked above");
            Arc::new(members.iter().find(|m| m.id() == leader).expect("a member leads").clone())
        }
    };
    let registry = Registry::new(store, KindRegistry::builtin());
    let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry.clone()));
    Api::<Namespace>::all(client.clone())
        .create(&Namespace {
            metadata: ObjectMeta { name: Some("bench".into()), ..Default::default() },
            ..Default::default()
        })
        .await?;
    let pods = Api::<Pod>::namespaced(client.clone(), "bench");
    println!("# store={:?} pods={} clients={}", args.store, args.pods, args.clients);
    println!("phase,n,clients,secs,ops_per_sec,p50_us,p99_us");
    let api = pods.clone();
    phase("create", args.pods, args.clients, move |i| {
        let api = api.clone();
        async move { api.create(&pod(i)).await.map(|_| ()).map_err(Into::into) }
    })
    .await?;
    let api = pods.clone();
    phase("get", args.pods, args.clients, move |i| {
        let api = api.clone();
        async move { api.get(&format!("pod-{i:07}")).await.map(|_| ()).map_err(Into::into) }
    })
    .await?;
    let api = pods.clone();
    phase("update", args.pods, args.clients, move |i| {
        let api = api.clone();
        async move {
            let mut p = api.get(&format!("pod-{i:07}")).await?;
            p.metadata.labels.get_or_insert_with(Default::default).insert("rev".into(), "2".into());
            api.replace(&format!("pod-{i:07}"), &p).await.map(|_| ()).map_err(Into::into)
        }
    })
    .await?;
    let api = pods.clone();
    phase("list_all_pages_500", 3, 1, move |_| {
        let api = api.clone();
        async move {
            let mut opts = ListOptions { limit: Some(500), ..Default::default() };
            let mut n = 0;
            loop {
                let page = api.list(&opts).await?;
                n += page.items.len();
                match page.continue_token {
                    Some(c) => opts.continue_token = Some(c),
                    None => break,
                }
            }
            anyhow::ensure!(n >= 1, "listed nothing");
            Ok(())
        }
    })
    .await?;

    let before = rss_bytes();
    let cache_config =
        WatchCacheConfig { capacity: args.changes.max(1), watcher_buffer: args.changes.max(1) };
    registry.enable_watch_cache(&Pod::TYPE, cache_config).await?;
    let after = rss_bytes();
    let (objects, _, _) = registry.watch_cache(&Pod::TYPE).map(|c| c.stats()).unwrap_or_default();
    println!(
        "# watch cache: {objects} pods, RSS {:.1} MiB -> {:.1} MiB, {:.0} bytes per pod",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        after.saturating_sub(before) as f64 / objects.max(1) as f64
    );
    let api = pods.clone();
    phase("list_rv0_from_cache", 3, 1, move |_| {
        let api = api.clone();
        async move {
            let opts = ListOptions { resource_version: Some("0".into()), ..Default::default() };
            anyhow::ensure!(!api.list(&opts).await?.items.is_empty(), "listed nothing");
            Ok(())
        }
    })
    .await?;

    if args.watchers > 0 {
        watch_delivery(&pods, &args).await?;
    }
    registry.shutdown().await;
    for m in members {
        m.shutdown().await;
    }
    Ok(())
}

/// W watchers from the current resourceVersion; K label updates from 16 writers; each
/// watcher records, per event, the time since its write was sent.
async fn watch_delivery(pods: &Api<Pod>, args: &Args) -> anyhow::Result<()> {
    let rv = pods.list(&ListOptions { limit: Some(1), ..Default::default() }).await?.resource_version;
    let sent: Arc<parking_lot_free::SentTimes> = Arc::default();
    let start = Instant::now();
    let mut watchers = Vec::new();
    for _ in 0..args.watchers {
        let opts = ListOptions { resource_version: Some(rv.clone()), ..Default::default() };
        let mut stream = pods.watch(&opts).await?.boxed();
        let (sent, changes) = (sent.clone(), args.changes);
        watchers.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).expect("valid precision");
            let mut got = 0;
            while got < changes {
                match stream.next().await {
                    Some(Event::Modified(p)) => {
                        let name = p.metadata.name.unwrap_or_default();
                        let seq = p.metadata.labels.and_then(|l| l.get("seq").cloned()).unwrap_or_default();
                        if let Some(at) = sent.get(&format!("{name}/{seq}")) {
                            h.record(at.elapsed().as_micros() as u64).expect("in range");
                        }
                        got += 1;
                    }
                    Some(Event::Error(e)) => anyhow::bail!("watch failed: {e}"),
                    Some(_) => {}
                    None => anyhow::bail!("watch ended after {got} events"),
                }
            }
            Ok(h)
        }));
    }
    let writers = 16.min(args.changes.max(1));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (api, sent, changes, pods_n) = (pods.clone(), sent.clone(), args.changes, args.pods);
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < changes {
                let name = format!("pod-{:07}", i % pods_n);
                let patch = serde_json::json!({"metadata": {"labels": {"seq": i.to_string()}}});
                sent.put(format!("{name}/{i}"), Instant::now());
                api.patch(&name, flotilla_core::patch::PatchType::Merge, &patch).await?;
                i += writers;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let writes = start.elapsed().as_secs_f64();
    let mut all = Histogram::<u64>::new(3).expect("valid precision");
    for w in watchers {
        all.add(&w.await??)?;
    }
    let total = start.elapsed().as_secs_f64();
    println!("watch_delivery,watchers={},changes={},events={}", args.watchers, args.changes, all.len());
    println!(
        "# writes done in {writes:.2}s, all events delivered in {total:.2}s; send-to-delivery latency p50={}us p99={}us max={}us",
        all.value_at_quantile(0.5),
        all.value_at_quantile(0.99),
        all.max()
    );
    Ok(())
}

/// Send times of the watch phase's writes, shared by writers and watchers.
mod parking_lot_free {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use tokio::time::Instant;

    /// `name/seq` -> when the write was sent.
    #[derive(Default)]
    pub(crate) struct SentTimes(Mutex<HashMap<String, Instant>>);

    impl SentTimes {
        pub(crate) fn put(&self, k: String, at: Instant) {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(k, at);
        }

        pub(crate) fn get(&self, k: &str) -> Option<Instant> {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).get(k).copied()
        }
    }
}
