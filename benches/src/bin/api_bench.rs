//! API server harness: the secured HTTPS API server (`SecureApi`: TLS, client-certificate
//! authentication, RBAC, admission) over a registry on the memory store or on three raft
//! members over loopback, driven by `RemoteClient`s from the admin kubeconfig. Measures
//! create, get, update and list of N pods from concurrent client tasks, lists of all pods
//! (paged from the store, and at resourceVersion "0" from the watch cache), and watch
//! fan-out to W watchers of K changes; prints throughput, latency percentiles, CPU seconds per
//! phase and the process's memory.
//!
//! Server, store and clients run in this one process (and on one tokio runtime), so memory
//! and CPU figures cover all of them.
//!
//! `cargo run --release -p flotilla-benches --bin api_bench -- --store raft3`
//! (`--quick` for a smoke run of a few seconds).

// A binary's root is its own directory's `mod.rs`, so the helpers need their paths.
#[path = "api_bench/fan_out.rs"]
mod fan_out;
#[path = "api_bench/measure.rs"]
mod measure;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use flotilla_api::client::RemoteClient;
use flotilla_api::secure::{SecureApi, SecureOptions};
use flotilla_core::MemStore;
use flotilla_core::client::{Api, Client, ListOptions};
use flotilla_core::object::{KindRegistry, Resource};
use flotilla_core::registry::{Registry, WatchCacheConfig};
use flotilla_core::store::Store;
use flotilla_raft_store::{RaftStore, RaftStoreConfig};
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::time::Instant;

use crate::measure::{HEADER, cpu_secs, histogram, phase, print_memory, record, report};

/// The namespace the pods live in.
const NAMESPACE: &str = "bench";
/// Page size of the paged list of all pods.
const PAGE: i64 = 500;

#[derive(Parser)]
struct Args {
    /// Which store the registry runs on.
    #[arg(long, value_enum, default_value = "raft3")]
    store: StoreKind,
    /// Pods to create, get, update and list [default: 10000, 500 with --quick].
    #[arg(long)]
    pods: Option<usize>,
    /// Concurrent client tasks for create, get and update [default: 64, 8 with --quick].
    #[arg(long)]
    clients: Option<usize>,
    /// Client tasks sharing one RemoteClient (one connection pool, so one multiplexed HTTP/2
    /// connection); 1 gives every task its own, 0 makes all share one.
    #[arg(long, default_value_t = 16)]
    clients_per_connection: usize,
    /// Watchers in the fan-out; 0 skips it [default: 1000, 50 with --quick].
    #[arg(long)]
    watchers: Option<usize>,
    /// Watchers sharing one RemoteClient (one HTTP/2 connection). Keep it below the server's
    /// limit of concurrent streams per connection (hyper's default is 200).
    #[arg(long, default_value_t = 100)]
    watchers_per_connection: usize,
    /// Label patches the watchers receive [default: 100, 10 with --quick].
    #[arg(long)]
    changes: Option<usize>,
    /// Times each list of all pods is repeated.
    #[arg(long, default_value_t = 3)]
    list_rounds: usize,
    /// Seconds watchers may still wait for events after the last patch.
    #[arg(long, default_value_t = 30)]
    grace_secs: u64,
    /// Do not enable the pod watch cache (lists at resourceVersion "0" and watches then go
    /// to the store).
    #[arg(long)]
    no_watch_cache: bool,
    /// A smoke run of a few seconds: 500 pods, 8 clients, 50 watchers, 10 changes (each
    /// unless given explicitly).
    #[arg(long)]
    quick: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StoreKind {
    /// `MemStore`.
    Memory,
    /// Three raft members on loopback (fsync on); the registry uses the leader.
    Raft3,
}

/// The name of pod `i`.
pub(crate) fn pod_name(i: usize) -> String {
    format!("pod-{i:07}")
}

/// A small pod: two labels, one container.
fn pod(i: usize) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(i)),
            labels: Some(BTreeMap::from([("app".into(), format!("app-{}", i % 100))])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "main".into(),
                image: Some("registry.local/app:1.0".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

/// The store under the registry, kept to shut it down.
enum Backend {
    Memory(MemStore),
    Raft(Vec<RaftStore>),
}

impl Backend {
    async fn start(kind: StoreKind, dir: &std::path::Path) -> anyhow::Result<(Backend, Arc<dyn Store>)> {
        match kind {
            StoreKind::Memory => {
                let store = MemStore::new();
                Ok((Backend::Memory(store.clone()), Arc::new(store)))
            }
            StoreKind::Raft3 => {
                let mut members = Vec::new();
                for id in 1..=3u64 {
                    let cfg = RaftStoreConfig::new(id, dir.join(format!("m{id}")), "127.0.0.1:0".parse()?);
                    members.push(RaftStore::open(cfg).await?);
                }
                let voters = members.iter().map(|m| (m.id(), m.local_addr().to_string())).collect();
                members[0].initialize(voters).await?;
                let deadline = Instant::now() + Duration::from_secs(10);
                while members[0].leader().is_none() {
                    anyhow::ensure!(Instant::now() < deadline, "no leader elected");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let leader = members[0].leader().context("no leader")?;
                let store = members.iter().find(|m| m.id() == leader).context("the leader is a member")?;
                let store: Arc<dyn Store> = Arc::new(store.clone());
                Ok((Backend::Raft(members), store))
            }
        }
    }

    async fn shutdown(self) {
        match self {
            Backend::Memory(s) => s.shutdown().await,
            Backend::Raft(members) => {
                for m in members {
                    m.shutdown().await;
                }
            }
        }
    }
}

/// `n` typed APIs of the bench namespace, `per_client` of them sharing one RemoteClient.
fn apis(kubeconfig: &std::path::Path, n: usize, per_client: usize) -> anyhow::Result<Vec<Api<Pod>>> {
    let per_client = if per_client == 0 { n.max(1) } else { per_client };
    let mut out = Vec::with_capacity(n);
    let mut client: Option<Arc<dyn Client>> = None;
    for i in 0..n {
        if i % per_client == 0 || client.is_none() {
            client = Some(Arc::new(RemoteClient::from_kubeconfig(kubeconfig)?));
        }
        let c = client.clone().context("a client was just made")?;
        out.push(Api::namespaced(c, NAMESPACE));
    }
    Ok(out)
}

/// Lists every pod, `limit` per page (`None`: one list at resourceVersion "0"); checks the count.
async fn list_all(api: &Api<Pod>, limit: Option<i64>, expected: usize) -> anyhow::Result<()> {
    let mut opts = match limit {
        Some(l) => ListOptions { limit: Some(l), ..Default::default() },
        None => ListOptions { resource_version: Some("0".into()), ..Default::default() },
    };
    let mut n = 0;
    loop {
        let page = api.list(&opts).await?;
        n += page.items.len();
        match page.continue_token {
            Some(c) => opts.continue_token = Some(c),
            None => break,
        }
    }
    anyhow::ensure!(n == expected, "listed {n} pods, expected {expected}");
    Ok(())
}

/// Runs `list_all` `rounds` times from one task, each timed as one operation.
async fn list_phase(
    name: &str,
    api: &Api<Pod>,
    limit: Option<i64>,
    pods: usize,
    rounds: usize,
) -> anyhow::Result<()> {
    let cpu = cpu_secs();
    let start = Instant::now();
    let mut h = histogram();
    for _ in 0..rounds {
        let t = Instant::now();
        list_all(api, limit, pods).await.with_context(|| name.to_string())?;
        record(&mut h, t.elapsed());
    }
    report(name, 1, start.elapsed(), &h, cpu_secs() - cpu);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pick =
        |v: Option<usize>, full: usize, quick: usize| v.unwrap_or(if args.quick { quick } else { full });
    let pods = pick(args.pods, 10_000, 500);
    let clients = pick(args.clients, 64, 8).max(1);
    let watchers = pick(args.watchers, 1_000, 50);
    let changes = pick(args.changes, 100, 10);

    let dir = tempfile::tempdir()?;
    let (backend, store) = Backend::start(args.store, dir.path()).await?;
    let registry = Registry::new(store, KindRegistry::builtin());
    if !args.no_watch_cache {
        let defaults = WatchCacheConfig::default();
        let config = WatchCacheConfig { watcher_buffer: defaults.watcher_buffer.max(changes), ..defaults };
        registry.enable_watch_cache(&Pod::TYPE, config).await?;
    }
    let opts = SecureOptions::new(dir.path().join("pki"), "127.0.0.1:0".parse()?);
    let api = SecureApi::start(registry.clone(), opts).await?;
    let kubeconfig = dir.path().join("admin.kubeconfig");
    api.admin_kubeconfig("bench").write(&kubeconfig)?;

    let admin: Arc<dyn Client> = Arc::new(RemoteClient::from_kubeconfig(&kubeconfig)?);
    let ns = Namespace {
        metadata: ObjectMeta { name: Some(NAMESPACE.into()), ..Default::default() },
        ..Default::default()
    };
    Api::<Namespace>::all(admin.clone()).create(&ns).await?;
    let lister = Api::<Pod>::namespaced(admin, NAMESPACE);
    let workers = apis(&kubeconfig, clients, args.clients_per_connection)?;
    let connections = workers.len().div_ceil(if args.clients_per_connection == 0 {
        workers.len()
    } else {
        args.clients_per_connection
    });

    println!(
        "# api_bench: store={:?} watch_cache={} pods={pods} clients={clients} ({connections} connections) \
         watchers={watchers} changes={changes} server={}",
        args.store,
        !args.no_watch_cache,
        api.url()
    );
    println!("# latencies in microseconds; cpu_s is this process's user+system CPU in the phase");
    println!("{HEADER}");
    phase("create", pods, &workers, |api, i| async move {
        api.create(&pod(i)).await?;
        Ok(())
    })
    .await?;
    print_memory("after create");
    phase("get_random", pods, &workers, move |api, _| async move {
        api.get(&pod_name(rand::random_range(0..pods))).await?;
        Ok(())
    })
    .await?;
    phase("update_get_replace", pods, &workers, |api, i| async move {
        let name = pod_name(i);
        let mut p = api.get(&name).await?;
        p.metadata.labels.get_or_insert_with(Default::default).insert("rev".into(), "2".into());
        api.replace(&name, &p).await?;
        Ok(())
    })
    .await?;
    list_phase("list_all_limit_500", &lister, Some(PAGE), pods, args.list_rounds).await?;
    print_memory("after list of all pods");
    list_phase("list_all_rv0", &lister, None, pods, args.list_rounds).await?;
    print_memory("after list at resourceVersion 0");

    if watchers > 0 && changes > 0 {
        let watch_apis = apis(&kubeconfig, watchers, args.watchers_per_connection)?;
        let fan_out = fan_out::FanOut {
            watch_apis,
            writer: lister.clone(),
            pods,
            changes,
            grace: Duration::from_secs(args.grace_secs),
        };
        fan_out.run().await?;
        print_memory("after watch fan-out");
    }

    api.stop().await;
    registry.shutdown().await;
    backend.shutdown().await;
    Ok(())
}
