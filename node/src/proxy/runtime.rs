//! The thin runtime: follows the informers, recomputes the table, performs the plan (balancers,
//! addresses, listeners), and publishes the table in force.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use flotilla_core::controller::{Change, Informers};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio::sync::{Semaphore, broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::balancer::Balancer;
use super::metrics::ProxyMetrics;
use super::table::{ListenKey, Plan, Protocol, ServicePortKey, Skipped, Table, desired_table, plan};
use super::{ProxyConfig, Shared, tcp, udp};

/// An open listener.
struct Listener {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

pub(crate) struct Runtime {
    config: ProxyConfig,
    shared: Arc<Shared>,
    listeners: BTreeMap<ListenKey, Listener>,
    balancers: HashMap<ServicePortKey, Arc<Balancer>>,
    /// What is in force (what failed is left out, so the next plan retries it).
    applied: Table,
    status: watch::Sender<Table>,
    skipped: Vec<Skipped>,
    /// Per listened-on address, cancelled when it is released (cuts its TCP connections).
    released: HashMap<IpAddr, CancellationToken>,
}

/// Empties `rx` of queued changes (one recompute covers them all); `false` once it is closed.
fn drain<K: Clone>(
    first: Result<Change<K>, broadcast::error::RecvError>,
    rx: &mut broadcast::Receiver<Change<K>>,
) -> bool {
    use broadcast::error::{RecvError, TryRecvError};
    if matches!(first, Err(RecvError::Closed)) {
        return false;
    }
    loop {
        match rx.try_recv() {
            Ok(_) | Err(TryRecvError::Lagged(_)) => continue,
            Err(TryRecvError::Empty) => return true,
            Err(TryRecvError::Closed) => return false,
        }
    }
}

impl Runtime {
    pub(crate) fn new(config: ProxyConfig, status: watch::Sender<Table>, metrics: ProxyMetrics) -> Runtime {
        let shared = Arc::new(Shared {
            tracker: TaskTracker::new(),
            abort: CancellationToken::new(),
            tcp_connections: Arc::new(Semaphore::new(config.max_tcp_connections)),
            connect_timeout: config.connect_timeout,
            max_udp_sessions: config.max_udp_sessions,
            udp_idle_timeout: config.udp_idle_timeout,
            metrics,
        });
        Runtime {
            config,
            shared,
            listeners: BTreeMap::new(),
            balancers: HashMap::new(),
            applied: Table::default(),
            status,
            skipped: Vec::new(),
            released: HashMap::new(),
        }
    }

    pub(crate) async fn run(mut self, informers: &Informers, shutdown: CancellationToken) {
        let services = informers.informer::<Service>();
        let slices = informers.informer::<EndpointSlice>();
        // Subscribed before the caches fill, so no change falls between reading and following.
        let mut service_changes = services.subscribe();
        let mut slice_changes = slices.subscribe();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return self.stop().await,
            _ = async { services.synced().await; slices.synced().await } => {}
        }
        match self.config.address_manager.owned().await {
            Ok(owned) => self.applied.cluster_ips = owned,
            Err(e) => tracing::warn!(error = %e, "listing service addresses left by an earlier run"),
        }
        let mut resync = tokio::time::interval(self.config.resync_interval);
        resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let started = Instant::now();
            let (desired, skipped) =
                desired_table(&services.cache().list(), &slices.cache().list(), &self.config.node_addresses);
            self.report_skipped(skipped);
            let complete = self.apply(plan(&self.applied, &desired)).await;
            self.shared.metrics.synced(started.elapsed(), complete);
            self.status.send_if_modified(|s| {
                let changed = *s != self.applied;
                if changed {
                    *s = self.applied.clone();
                }
                changed
            });
            let open = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                r = service_changes.recv() => drain(r, &mut service_changes),
                r = slice_changes.recv() => drain(r, &mut slice_changes),
                _ = resync.tick() => true,
            };
            if !open {
                tracing::warn!("informers stopped, service proxy stopping");
                break;
            }
        }
        self.stop().await;
    }

    fn report_skipped(&mut self, skipped: Vec<Skipped>) {
        if skipped != self.skipped {
            for s in skipped.iter().filter(|s| !self.skipped.contains(s)) {
                tracing::warn!(object = %s.object, reason = %s.reason, "not proxied");
            }
            self.skipped = skipped;
        }
    }

    /// Performs `plan`; `false` if a step failed (logged; the next sync retries it).
    async fn apply(&mut self, plan: Plan) -> bool {
        if plan.is_empty() {
            return true;
        }
        let mut complete = true;
        tracing::debug!(?plan, "applying proxy plan");
        for (key, target) in plan.upsert {
            match self.balancers.get(&key) {
                Some(b) => b.update(&target),
                None => {
                    self.balancers.insert(key.clone(), Arc::new(Balancer::new(&target)));
                }
            }
            tracing::info!(service = %key, backends = target.backends.len(), "service port updated");
            self.applied.services.insert(key, target);
        }
        for ip in plan.add_addresses {
            match self.config.address_manager.add(ip).await {
                Ok(()) => {
                    self.applied.cluster_ips.insert(ip);
                }
                Err(e) => {
                    tracing::warn!(%ip, error = %e, "adding service address");
                    complete = false;
                }
            }
        }
        for key in plan.close {
            self.close(key).await;
        }
        for (key, service) in plan.open {
            complete &= self.open(key, service).await;
        }
        for key in plan.remove {
            self.balancers.remove(&key);
            self.applied.services.remove(&key);
        }
        for ip in plan.remove_addresses {
            match self.config.address_manager.remove(ip).await {
                Ok(()) => {
                    self.applied.cluster_ips.remove(&ip);
                    if let Some(t) = self.released.remove(&ip) {
                        t.cancel();
                    }
                }
                Err(e) => {
                    tracing::warn!(%ip, error = %e, "removing service address");
                    complete = false;
                }
            }
        }
        complete
    }

    /// Opens a listener; `false` if it could not be.
    async fn open(&mut self, key: ListenKey, service: ServicePortKey) -> bool {
        let Some(balancer) = self.balancers.get(&service).cloned() else {
            // The plan upserts every service port a listener serves before opening it.
            tracing::error!(listener = %key, %service, "no balancer for listener, not opening");
            return false;
        };
        let stop = CancellationToken::new();
        let shared = self.shared.clone();
        let task = match key.protocol {
            Protocol::Tcp => match tcp::bind(key) {
                Ok(l) => {
                    let released = self.released.entry(key.ip).or_default().clone();
                    self.shared.tracker.spawn(tcp::serve(l, key, balancer, shared, stop.clone(), released))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "listener not opened, will retry");
                    return false;
                }
            },
            Protocol::Udp => match udp::bind(key).await {
                Ok(s) => self.shared.tracker.spawn(udp::serve(s, key, balancer, shared, stop.clone())),
                Err(e) => {
                    tracing::warn!(error = %e, "listener not opened, will retry");
                    return false;
                }
            },
        };
        tracing::info!(listener = %key, %service, "listening");
        self.listeners.insert(key, Listener { stop, task });
        self.applied.listeners.insert(key, service);
        true
    }

    /// Stops accepting on `key` and waits until its socket is closed (so it can be bound again).
    async fn close(&mut self, key: ListenKey) {
        self.applied.listeners.remove(&key);
        let Some(listener) = self.listeners.remove(&key) else { return };
        listener.stop.cancel();
        if let Err(e) = listener.task.await {
            tracing::error!(listener = %key, error = %e, "listener task failed");
        }
        tracing::info!(listener = %key, "closed");
    }

    /// Closes every listener, lets connections finish within the grace period, cuts the rest,
    /// releases the addresses.
    async fn stop(mut self) {
        let keys: Vec<ListenKey> = self.listeners.keys().copied().collect();
        for key in keys {
            self.close(key).await;
        }
        self.shared.tracker.close();
        if tokio::time::timeout(self.config.shutdown_grace, self.shared.tracker.wait()).await.is_err() {
            tracing::info!(open = self.shared.tracker.len(), "cutting connections after shutdown grace");
            self.shared.abort.cancel();
            self.shared.tracker.wait().await;
        }
        for ip in std::mem::take(&mut self.applied.cluster_ips) {
            if let Err(e) = self.config.address_manager.remove(ip).await {
                tracing::warn!(%ip, error = %e, "removing service address at shutdown");
            }
        }
        for (_, t) in self.released.drain() {
            t.cancel();
        }
        self.status.send_replace(Table::default());
    }
}
