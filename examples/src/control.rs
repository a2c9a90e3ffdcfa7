//! The control plane `flotilla up` and `flotilla server` share: the store member (created,
//! resumed or joined), the API server with the cluster PKI, the scheduler and the
//! controllers (both acting only while this member leads the store), the admin kubeconfig
//! and the endpoints file other commands read.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flotilla_api::pki::ClusterPki;
use flotilla_api::secure::{SecureApi, SecureOptions, dialable};
use flotilla_core::client::{Client, LocalClient};
use flotilla_core::controllers::manager::ControllerManager;
use flotilla_core::object::{KindRegistry, Resource};
use flotilla_core::registry::{Registry, WatchCacheConfig};
use flotilla_core::scheduler::runtime::{Scheduler, SchedulerConfig, default_profiles};
use flotilla_core::store::{Compactor, CompactorConfig, Retention};
use flotilla_raft_store::{OpenError, RaftStore, RaftStoreConfig};
use k8s_openapi::api::core::v1::ResourceQuota;
use serde::{Deserialize, Serialize};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::membership::{self, MemberFile, Role};
use crate::sa_key;
use crate::token::{self, ServerToken};

/// The admin kubeconfig's file name inside the data directory.
pub(crate) const KUBECONFIG_FILE: &str = "kubeconfig";
/// The endpoints file's name inside the data directory.
pub(crate) const ENDPOINTS_FILE: &str = "endpoints.json";

/// The flags every control-plane member takes, shared by `flotilla up` and `flotilla server`.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct ControlArgs {
    /// Where the member keeps its store, PKI, tokens and kubeconfig (default: the user's data
    /// directory, e.g. ~/.local/share/flotilla).
    #[arg(long, env = "FLOTILLA_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Address of the API server (HTTPS).
    #[arg(long, env = "FLOTILLA_API_LISTEN", default_value = "127.0.0.1:6443")]
    pub(crate) api_listen: SocketAddr,
    /// Address of the etcd-compatible gRPC endpoint of the store.
    #[arg(long, env = "FLOTILLA_ETCD_LISTEN", default_value = "127.0.0.1:2379")]
    pub(crate) etcd_listen: SocketAddr,
    /// Address of the store's member transport (Raft).
    #[arg(long, env = "FLOTILLA_RAFT_LISTEN", default_value = "127.0.0.1:2380")]
    pub(crate) raft_listen: SocketAddr,
    /// Extra host names or addresses the serving certificate covers (repeatable).
    #[arg(long = "tls-san")]
    pub(crate) tls_san: Vec<String>,
    /// A token file (`token,user,uid,"group1,group2"` per line) for bearer-token users.
    #[arg(long)]
    pub(crate) token_file: Option<PathBuf>,
    /// Serve requests without credentials as `system:anonymous` (RBAC still applies).
    #[arg(long)]
    pub(crate) allow_anonymous: bool,
    /// How often the store's old revisions are compacted (like 5m, 1h, 1h30m). Each pass
    /// compacts to the revision the previous pass saw, so at least this much history stays
    /// for watches and lists that resume (kube-apiserver's --etcd-compaction-interval). `0`
    /// disables compaction.
    #[arg(
        long,
        env = "FLOTILLA_COMPACTION_INTERVAL",
        default_value = "5m",
        value_parser = crate::host::parse_ttl
    )]
    pub(crate) compaction_interval: Duration,
    /// Keep the last N revisions instead (etcd's --auto-compaction-mode=revision): every
    /// --compaction-interval, compact away the revisions older than those.
    #[arg(
        long,
        env = "FLOTILLA_COMPACTION_RETAIN_REVISIONS",
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub(crate) compaction_retain_revisions: Option<u64>,
    /// Applied log entries after which the store builds a snapshot of its state and purges
    /// the log behind it (etcd's --snapshot-count). Smaller means shorter restarts and
    /// catch-ups from the log, at the cost of copying the whole state more often.
    #[arg(
        long,
        env = "FLOTILLA_SNAPSHOT_EVERY",
        value_name = "N",
        default_value_t = 100_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub(crate) snapshot_every: u64,
    /// Log entries kept behind each snapshot, so members that lag only a little catch up from
    /// the log instead of receiving the whole snapshot.
    #[arg(long, env = "FLOTILLA_SNAPSHOT_KEEP_LOGS", value_name = "N", default_value_t = 1_000)]
    pub(crate) snapshot_keep_logs: u64,
}

impl ControlArgs {
    /// The options to start a member with, joining through `join` (seed address, token) if
    /// given and advertising `advertise` (default: the transport's bound address).
    pub(crate) fn options(
        self,
        advertise: Option<String>,
        join: Option<(String, String)>,
    ) -> anyhow::Result<ControlOptions> {
        let compaction = (!self.compaction_interval.is_zero()).then(|| CompactorConfig {
            interval: self.compaction_interval,
            retention: self.compaction_retain_revisions.map_or(Retention::Periodic, Retention::Revisions),
        });
        if let Some(c) = &compaction {
            c.validate().context("--compaction-interval / --compaction-retain-revisions")?;
        }
        Ok(ControlOptions {
            data_dir: crate::data_dir(self.data_dir)?,
            api_listen: self.api_listen,
            etcd_listen: self.etcd_listen,
            raft_listen: self.raft_listen,
            advertise,
            tls_san: self.tls_san,
            token_file: self.token_file,
            allow_anonymous: self.allow_anonymous,
            join,
            compaction,
            snapshot_every: self.snapshot_every,
            snapshot_keep_logs: self.snapshot_keep_logs,
        })
    }
}

/// How to run a control-plane member.
#[derive(Clone, Debug)]
pub(crate) struct ControlOptions {
    pub(crate) data_dir: PathBuf,
    pub(crate) api_listen: SocketAddr,
    pub(crate) etcd_listen: SocketAddr,
    pub(crate) raft_listen: SocketAddr,
    /// The member-transport address other members dial (default: `raft_listen`).
    pub(crate) advertise: Option<String>,
    pub(crate) tls_san: Vec<String>,
    pub(crate) token_file: Option<PathBuf>,
    pub(crate) allow_anonymous: bool,
    /// `(seed member-transport address, server token)` to join an existing cluster.
    pub(crate) join: Option<(String, String)>,
    /// How the store is compacted; `None` never compacts it.
    pub(crate) compaction: Option<CompactorConfig>,
    /// Applied entries between store snapshots.
    pub(crate) snapshot_every: u64,
    /// Log entries kept behind a snapshot.
    pub(crate) snapshot_keep_logs: u64,
}

/// Where a running member serves, as `<data-dir>/endpoints.json` records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Endpoints {
    /// The member's raft id.
    pub(crate) id: u64,
    /// The API server's URL.
    pub(crate) api: String,
    /// The etcd-compatible endpoint's URL.
    pub(crate) etcd: String,
    /// The member-transport address others dial.
    pub(crate) raft: String,
}

impl Endpoints {
    /// Reads `<dir>/endpoints.json`.
    pub(crate) fn load(dir: &Path) -> anyhow::Result<Endpoints> {
        let path = dir.join(ENDPOINTS_FILE);
        let bytes = std::fs::read(&path).with_context(|| {
            format!("reading {} (has a server run in this data directory?)", path.display())
        })?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    }
}

/// A running control plane.
pub(crate) struct ControlPlane {
    dir: PathBuf,
    store: Arc<RaftStore>,
    registry: Registry,
    api: SecureApi,
    member: MemberFile,
    stop: CancellationToken,
    scheduler: JoinHandle<()>,
    controllers: JoinHandle<()>,
    compactor: Option<JoinHandle<()>>,
    /// Follows the cluster's ServiceAccount keys.
    sa_keys: JoinHandle<()>,
    /// Builds a snapshot on SIGUSR1.
    compact_on_signal: JoinHandle<()>,
}

/// The address other members dial: `--advertise`, or the transport's bound address.
pub(crate) fn advertise_address(flag: Option<&str>, bound: SocketAddr) -> anyhow::Result<String> {
    match flag {
        Some(a) => Ok(a.to_string()),
        None if bound.ip().is_unspecified() => {
            anyhow::bail!(
                "--raft-listen {bound} is a wildcard address; pass --advertise with the address other servers dial"
            )
        }
        None => Ok(bound.to_string()),
    }
}

/// The server token of `dir`, created (pinning the CA of `pki_dir`) when missing.
fn token_for_first_member(dir: &Path, pki_dir: &Path, hosts: &[String]) -> anyhow::Result<ServerToken> {
    if let Some(t) = token::load(dir)? {
        return Ok(t);
    }
    ClusterPki::load_or_create(pki_dir, hosts).context("creating the cluster PKI")?;
    let ca = std::fs::read(pki_dir.join("ca.crt")).context("reading the cluster CA")?;
    let t = ServerToken::generate(&ca);
    token::save(dir, &t)?;
    tracing::info!(path = %dir.join(token::TOKEN_FILE).display(), "created the server join token");
    Ok(t)
}

impl ControlPlane {
    /// Starts (or resumes, or joins) a member and its control-plane components.
    pub(crate) async fn start(o: ControlOptions) -> anyhow::Result<ControlPlane> {
        // Listened for from the start, so a SIGUSR1 never kills a member that is up.
        let usr1 = signal(SignalKind::user_defined1()).context("listening for SIGUSR1")?;
        let dir = o.data_dir.clone();
        flotilla_core::durable_fs::create_dir_all(&dir, 0o755)
            .with_context(|| format!("creating {}", dir.display()))?;
        let pki_dir = dir.join("pki");
        let mut hosts = o.tls_san.clone();
        if !o.api_listen.ip().is_unspecified() {
            hosts.push(o.api_listen.ip().to_string());
        }
        let advertise = advertise_address(o.advertise.as_deref(), o.raft_listen)?;
        let join = o.join.as_ref().map(|(a, t)| (a.as_str(), t.as_str()));
        anyhow::ensure!(
            join.is_none() || !advertise.ends_with(":0"),
            "joining needs a fixed --raft-listen port or --advertise: other servers dial it"
        );
        let role = membership::resolve(&dir, &advertise, join).await?;
        let (member, joining) = match role {
            Role::Member(m) => (m, None),
            Role::Joining(m, t) => (m, Some(t)),
        };
        let token = match &joining {
            Some(t) => t.clone(),
            None => token_for_first_member(&dir, &pki_dir, &hosts)?,
        };
        let mut config = RaftStoreConfig::new(member.id, dir.join("store"), o.raft_listen);
        config.etcd_listen = Some(o.etcd_listen);
        config.join_key = Some(token.join_key());
        config.snapshot_every = o.snapshot_every;
        config.keep_logs_behind_snapshot = o.snapshot_keep_logs;
        let store = match RaftStore::open(config).await {
            Ok(store) => Arc::new(store),
            Err(e @ OpenError::WrongMember { stored, .. }) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "starting the store in {}: its member record ({}) is missing or names \
                     another member; if it was lost, start again with --join <a member's raft \
                     address> --token <server token> to rejoin as member {stored}",
                    dir.display(),
                    membership::MEMBER_FILE
                )));
            }
            Err(e) => return Err(e).with_context(|| format!("starting the store in {}", dir.display())),
        };
        let mut member = member;
        if o.advertise.is_none() && o.raft_listen.port() == 0 && member.seeds.is_empty() {
            // A first member on a port picked at bind time advertises the port it got.
            member.advertise = store.local_addr().to_string();
        }
        let member = match Self::settle_membership(&dir, &pki_dir, &store, member, joining).await {
            Ok(m) => m,
            Err(e) => {
                store.shutdown().await;
                return Err(e);
            }
        };
        let registry = Registry::new(store.clone(), KindRegistry::builtin());
        // Quota admission reads every create's namespace quotas from this cache instead of
        // the store (see docs/api-server.md, "ResourceQuota").
        if let Err(e) = registry.enable_watch_cache(&ResourceQuota::TYPE, WatchCacheConfig::default()).await {
            store.shutdown().await;
            return Err(e).context("starting the ResourceQuota watch cache");
        }
        // Every member compacts (compactions are idempotent; see `Compactor`), so history
        // stays bounded whichever member leads.
        let compactor = match o.compaction.map(|c| Compactor::new(store.clone(), c)).transpose() {
            Ok(c) => c,
            Err(e) => {
                store.shutdown().await;
                return Err(e).context("starting the store compactor");
            }
        };
        let types = registry.kinds().types().collect();
        let clock: flotilla_core::registry::Clock = Arc::new(k8s_openapi::jiff::Timestamp::now);
        let controllers = ControllerManager::new(Arc::new(LocalClient::new(registry.clone())), types, clock);
        let mut opts = SecureOptions::new(pki_dir.clone(), o.api_listen);
        opts.server_hosts = hosts;
        opts.token_file = o.token_file.clone();
        opts.allow_anonymous = o.allow_anonymous;
        let controller_metrics = controllers.metrics();
        opts.server.extra_metrics.add(move |r| controller_metrics.register(r));
        if let Some(compactor_metrics) = compactor.as_ref().map(Compactor::metrics) {
            opts.server.extra_metrics.add(move |r| compactor_metrics.register(r));
        }
        // The scheduler and controllers act only while this member leads the store. The
        // scheduler is made before the API server, which serves its metrics.
        let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry.clone()));
        let scheduler =
            match Scheduler::new(client, default_profiles(), SchedulerConfig::new(store.leadership())) {
                Ok(s) => s,
                Err(e) => {
                    store.shutdown().await;
                    return Err(e).context("creating the scheduler");
                }
            };
        let scheduler_metrics = scheduler.metrics();
        opts.server.extra_metrics.add(move |r| scheduler_metrics.register(r));
        let api = match SecureApi::start(registry.clone(), opts).await {
            Ok(api) => api,
            Err(e) => {
                store.shutdown().await;
                return Err(e).context("starting the API server");
            }
        };
        let reloader = api.service_account_key_reloader();
        match membership::ensure_bundle(&store, &pki_dir, &token).await {
            Ok(true) => match reloader.reload() {
                Ok(accepted) => tracing::info!(?accepted, "installed the cluster's service-account keys"),
                Err(e) => tracing::warn!(error = %e, "loading the cluster's service-account keys"),
            },
            Ok(false) => {}
            // Joining servers need it; this member serves anyway and the next start retries.
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "could not store the sealed cluster PKI"),
        }
        let stop = CancellationToken::new();
        let sa_keys = tokio::spawn(sa_key::follow(
            store.clone(),
            pki_dir.clone(),
            token.clone(),
            reloader,
            member.id,
            stop.clone(),
        ));
        let scheduler = tokio::spawn(scheduler.run(stop.clone()));
        let controllers = tokio::spawn(controllers.run(store.leadership(), stop.clone()));
        let compactor = compactor.map(|c| tokio::spawn(c.run(stop.clone())));
        let compact_on_signal = tokio::spawn(compact_log_on_sigusr1(usr1, store.clone(), stop.clone()));
        api.keep_admin_kubeconfig("flotilla", &dir.join(KUBECONFIG_FILE))?;
        let endpoints = Endpoints {
            id: member.id,
            api: api.url(),
            etcd: store.etcd_addr().map(|a| format!("http://{}", dialable(a))).unwrap_or_default(),
            raft: member.advertise.clone(),
        };
        token::write_private(&dir.join(ENDPOINTS_FILE), &serde_json::to_vec_pretty(&endpoints)?, 0o644)?;
        Ok(ControlPlane {
            dir,
            store,
            registry,
            api,
            member,
            stop,
            scheduler,
            controllers,
            compactor,
            sa_keys,
            compact_on_signal,
        })
    }

    /// Initializes a new cluster, or finishes a join, as the member file says.
    async fn settle_membership(
        dir: &Path,
        pki_dir: &Path,
        store: &RaftStore,
        member: MemberFile,
        joining: Option<ServerToken>,
    ) -> anyhow::Result<MemberFile> {
        if let Some(t) = joining {
            return membership::finish_join(dir, pki_dir, store, member, &t).await;
        }
        if member.seeds.is_empty() && !store.raft().is_initialized().await? {
            store.initialize(BTreeMap::from([(member.id, member.advertise.clone())])).await?;
            tracing::info!(id = member.id, addr = %member.advertise, "initialized a new cluster");
        }
        if membership::load(dir)?.is_none() {
            membership::save(dir, &member)?;
        }
        Ok(member)
    }

    /// The data directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The registry over the store.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The API server.
    pub(crate) fn api(&self) -> &SecureApi {
        &self.api
    }

    /// Cancelled when the control plane stops; node components started next to it share it.
    pub(crate) fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// The admin kubeconfig's path.
    pub(crate) fn kubeconfig_path(&self) -> PathBuf {
        self.dir.join(KUBECONFIG_FILE)
    }

    /// Prints where the member serves.
    pub(crate) fn print_summary(&self, title: &str) {
        println!("flotilla: {title}");
        println!("  API server:  {}", self.api.url());
        if let Some(etcd) = self.store.etcd_addr() {
            println!("  etcd API:    http://{etcd}");
        }
        println!("  member:      {} (raft {})", self.member.id, self.member.advertise);
        println!("  data:        {}", self.dir.display());
    }

    /// Stops the scheduler, the controllers and the store compactor, hands the store's
    /// leadership to another voter if this member leads (so writes do not wait out an
    /// election timeout), then stops the API server, the registry and the store. Each stage has
    /// [`STOP_STAGE_LIMIT`]: a stage that does not finish in time is logged and left behind,
    /// so SIGTERM always ends the process (the store is crash-safe).
    pub(crate) async fn shutdown(self) {
        self.stop.cancel();
        stop_stage("the scheduler", async { drop(self.scheduler.await) }).await;
        stop_stage("the controllers", async { drop(self.controllers.await) }).await;
        if let Some(compactor) = self.compactor {
            stop_stage("the store compactor", async { drop(compactor.await) }).await;
        }
        stop_stage("the SIGUSR1 listener", async { drop(self.compact_on_signal.await) }).await;
        stop_stage("the service-account key follower", async { drop(self.sa_keys.await) }).await;
        stop_stage("the leadership handover", async {
            if let Some(leader) = self.store.hand_over_leadership(HANDOVER_LIMIT).await {
                tracing::info!(leader, "handed the store's leadership over");
            }
        })
        .await;
        stop_stage("the API server", self.api.stop()).await;
        stop_stage("the registry", self.registry.shutdown()).await;
        stop_stage("the store", self.store.shutdown()).await;
    }
}

/// How long a snapshot asked for by SIGUSR1 may take to build.
const SIGNALLED_SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(60);

/// Listens for SIGUSR1 until `stop`: each one makes the store build a snapshot now and purge
/// its log up to it ([`RaftStore::compact_log`]), so members lagging behind must catch up from
/// the snapshot. The failure-testing harness sends it; the outcome is logged.
async fn compact_log_on_sigusr1(mut usr1: Signal, store: Arc<RaftStore>, stop: CancellationToken) {
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            got = usr1.recv() => if got.is_none() { return },
        }
        tracing::info!("SIGUSR1: building a snapshot and purging the log");
        let compacted = tokio::select! {
            _ = stop.cancelled() => return,
            r = store.compact_log(SIGNALLED_SNAPSHOT_TIMEOUT) => r,
        };
        match compacted {
            Ok(Some(index)) => tracing::info!(index, "SIGUSR1: snapshot built, log purged up to it"),
            Ok(None) => tracing::info!("SIGUSR1: nothing applied yet, no snapshot"),
            Err(e) => tracing::warn!(error = %e, "SIGUSR1: snapshot failed"),
        }
    }
}

/// How long a stopping leader waits for another member to take over.
const HANDOVER_LIMIT: Duration = Duration::from_secs(5);

/// How long each stage of a shutdown may take.
pub(crate) const STOP_STAGE_LIMIT: Duration = Duration::from_secs(15);

/// Awaits one shutdown stage for at most [`STOP_STAGE_LIMIT`].
async fn stop_stage(what: &str, stage: impl Future<Output = ()>) {
    if tokio::time::timeout(STOP_STAGE_LIMIT, stage).await.is_err() {
        tracing::warn!(stage = what, limit = ?STOP_STAGE_LIMIT, "did not stop in time; going on");
    }
}

pub(crate) use crate::host::{StopSignals, host_name};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_transport_address_needs_advertise() -> anyhow::Result<()> {
        let wildcard: SocketAddr = "0.0.0.0:2380".parse()?;
        assert!(advertise_address(None, wildcard).is_err());
        assert_eq!(advertise_address(Some("10.0.0.1:2380"), wildcard)?, "10.0.0.1:2380");
        assert_eq!(advertise_address(None, "127.0.0.2:2380".parse()?)?, "127.0.0.2:2380");
        assert_eq!(dialable(wildcard).to_string(), "127.0.0.1:2380");
        Ok(())
    }
}
