//! The object workload: Jepsen-style checks one level up from the store, through the API
//! server's Kubernetes REST dialect with kube-rs, of two properties:
//!
//! 1. concurrent updates of objects with resourceVersion preconditions never lose an
//!    acknowledged update;
//! 2. a watch from any resourceVersion replays exactly the committed changes.
//!
//! **Workload** ([`run`]). A few ConfigMaps in namespace `default`, named `<prefix>-<k>` and
//! labelled `jepsen-run=<prefix>` (the prefix sanitized to a DNS-1123 label), each hold their
//! history as `data["elements"]`: comma-separated u64s, unique in the run. Each client (one
//! kube-rs client per member, client `c` bound to member `c mod n`) loops: pick an object,
//! GET it (recorded as a read; a 404 makes the client create it with an empty list, where
//! 409 AlreadyExists is fine), append a fresh element and PUT the object back with the
//! resourceVersion it read as the precondition. 200 is `ok`, 409 Conflict `fail` (certainly
//! not applied), a timeout, 5xx or connection error `info` (unknown; the process is retired
//! as in [`crate::workload`]). An object whose list reaches
//! [`ObjectSpec::max_elements`] is replaced by a fresh one (the next `k`), so lists, and the
//! watch events that carry them, stay small.
//!
//! Watchers use kube's raw `Api::watch` (not the runtime watcher, which relists), so the
//! recorded stream is exactly what the server sent. Watcher 0 starts from the
//! resourceVersion of a list taken before the clients start; watcher `i` starts at
//! `i / watchers` of the run from the resourceVersion of a recent `ok` update (picked by the
//! seed among those of the last minute, so it is well inside the server's compaction window:
//! at least one `--compaction-interval`, 5 minutes by default). A stream that ends, errors or
//! stalls is resumed from the last resourceVersion seen (events and bookmarks); a 410 Gone
//! ends the watcher with the reason recorded (compaction is legal, not an anomaly).
//!
//! After the clients stop, every object used is read until two rounds `op_timeout` apart
//! agree (so late-applying `info` updates settle), and the watchers run until they reach the
//! largest final resourceVersion, for at most [`ObjectSpec::tail`].
//!
//! **Checker**: [`check`], a pure function of the recorded [`ObjectHistory`]; its
//! documentation says what it checks.

mod check;
mod check_watch;
mod client;
mod history;
mod watcher;

#[cfg(test)]
mod live;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use serde::Serialize;
use tokio::time::Instant;

pub use check::{
    AnomalyKind, MAX_ANOMALIES, ObjectAnomaly, ObjectCounts, ObjectVerdict, WatcherSummary, check,
};
pub use history::{
    CreateOp, EventType, FinalRead, ObjectHistory, ObjectRecorder, ObjectWatchEvent, Outcome, ReadOp,
    UpdateOp, WatcherLog,
};

/// The label every object of a run carries: `jepsen-run=<prefix>`.
pub const RUN_LABEL: &str = "jepsen-run";
/// The namespace of the objects.
pub const NAMESPACE: &str = "default";

/// Errors of the object workload and of its history files.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The spec or arguments cannot be used, or a history file is inconsistent.
    #[error("object workload: {0}")]
    Invalid(String),
    /// A kubeconfig could not be read or used.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// Why.
        source: kube::config::KubeconfigError,
    },
    /// A client could not be built from a kubeconfig.
    #[error("client from kubeconfig {path}: {source}")]
    Client {
        /// The file.
        path: String,
        /// Why.
        source: kube::Error,
    },
    /// No member answered the list taken before the clients start.
    #[error("no member listed the run's ConfigMaps before the deadline; last error: {0}")]
    NoStartVersion(String),
    /// A client or watcher task panicked or was cancelled.
    #[error("object workload task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A history file could not be read or written.
    #[error("history file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A history line is not a valid record.
    #[error("history file {path} line {line}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The 1-based line number.
        line: usize,
        /// Why it did not parse.
        source: serde_json::Error,
    },
}

crate::jsonl::from_jsonl_error!(ObjectError);

/// What the object workload does.
#[derive(Clone, Debug, Serialize)]
pub struct ObjectSpec {
    /// Concurrent clients (client `c` talks to member `c mod n`).
    pub clients: usize,
    /// Objects in use at any time.
    pub objects: usize,
    /// Elements an object takes before it is replaced by a fresh one.
    pub max_elements: usize,
    /// How long one request may take before its outcome is unknown.
    pub op_timeout: Duration,
    /// Pause between a client's operations.
    pub think: Duration,
    /// Names the objects and their label (sanitized, see [`sanitize_prefix`]).
    pub prefix: String,
    /// Seeds the clients' choices and the watchers' start resourceVersions.
    pub seed: u64,
    /// Watchers (watcher `i` watches through member `i mod n`); 0 runs none.
    pub watchers: usize,
    /// How long the final reads, and then the watchers, may take after the clients stop.
    pub tail: Duration,
    /// How long the server keeps one watch request open (`timeoutSeconds`, whole seconds,
    /// at least 1): streams then end during the run and are resumed from the last
    /// resourceVersion seen, so resumption is exercised too.
    pub watch_timeout: Duration,
}

impl ObjectSpec {
    /// The usual settings: 4 clients on 3 objects of at most 200 elements, 2 s per request,
    /// 10 ms between operations, 3 watchers whose requests last 10 s, 60 s of tail.
    pub fn new(prefix: &str, seed: u64) -> Self {
        ObjectSpec {
            clients: 4,
            objects: 3,
            max_elements: 200,
            op_timeout: Duration::from_secs(2),
            think: Duration::from_millis(10),
            prefix: prefix.to_string(),
            seed,
            watchers: 3,
            tail: Duration::from_secs(60),
            watch_timeout: Duration::from_secs(10),
        }
    }
}

/// Counts of what the workload did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ObjectStats {
    /// Creates sent.
    pub creates: u64,
    /// Updates sent.
    pub updates: u64,
    /// Updates acknowledged.
    pub ok: u64,
    /// Updates refused (409 Conflict and other 4xx).
    pub fail: u64,
    /// Updates with an unknown outcome.
    pub info: u64,
    /// Successful GETs.
    pub reads: u64,
    /// GETs that failed or timed out.
    pub read_errors: u64,
    /// Objects used.
    pub objects: u64,
    /// Watchers run.
    pub watchers: u64,
    /// Watch events received, all watchers together.
    pub watch_events: u64,
}

/// The object prefix as a DNS-1123 label: lower case, runs of other characters than
/// `[a-z0-9]` turned into one `-`, no `-` at either end, at most 40 characters (room for
/// `-<k>`), `jepsen` when nothing is left. Also a valid label value.
pub fn sanitize_prefix(prefix: &str) -> String {
    let mut out = String::new();
    for c in prefix.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(40);
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() { "jepsen".to_string() } else { out }
}

/// One kube-rs client per kubeconfig, each with `op_timeout` to connect.
async fn clients(kubeconfigs: &[PathBuf], op_timeout: Duration) -> Result<Vec<kube::Client>, ObjectError> {
    let mut out = Vec::with_capacity(kubeconfigs.len());
    for path in kubeconfigs {
        let name = path.display().to_string();
        let kubeconfig = kube::config::Kubeconfig::read_from(path)
            .map_err(|source| ObjectError::Kubeconfig { path: name.clone(), source })?;
        let options = kube::config::KubeConfigOptions::default();
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|source| ObjectError::Kubeconfig { path: name.clone(), source })?;
        config.connect_timeout = Some(op_timeout);
        out.push(
            kube::Client::try_from(config).map_err(|source| ObjectError::Client { path: name, source })?,
        );
    }
    Ok(out)
}

/// The resourceVersion of a list of the run's objects, asking the members in turn until one
/// answers or `deadline` passes.
async fn list_version(
    apis: &[Api<ConfigMap>],
    selector: &str,
    op_timeout: Duration,
    deadline: Instant,
) -> Result<String, ObjectError> {
    let mut last = "no attempt before the deadline".to_string();
    for (i, api) in apis.iter().enumerate().cycle() {
        if Instant::now() >= deadline {
            break;
        }
        let params = ListParams::default().labels(selector);
        match tokio::time::timeout(op_timeout, api.list(&params)).await {
            Ok(Ok(list)) => match list.metadata.resource_version {
                Some(rv) if !rv.is_empty() => return Ok(rv),
                _ => last = format!("member {i}: a list without a resourceVersion"),
            },
            Ok(Err(e)) => last = format!("member {i}: {e}"),
            Err(_) => last = format!("member {i}: no answer within {op_timeout:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(ObjectError::NoStartVersion(last))
}

/// Runs the workload against the API servers whose admin kubeconfigs are `kubeconfigs` (one
/// per member) until `until`, then the final reads and the watchers' tail, recording
/// everything into `recorder` (see the module documentation).
pub async fn run(
    kubeconfigs: &[PathBuf],
    spec: &ObjectSpec,
    recorder: &ObjectRecorder,
    until: Instant,
) -> Result<ObjectStats, ObjectError> {
    if kubeconfigs.is_empty() || spec.clients == 0 || spec.objects == 0 || spec.max_elements == 0 {
        return Err(ObjectError::Invalid(
            "needs at least one kubeconfig, client, object and element per object".to_string(),
        ));
    }
    if spec.op_timeout.is_zero() {
        return Err(ObjectError::Invalid("the operation timeout is zero".to_string()));
    }
    let kube_clients = clients(kubeconfigs, spec.op_timeout).await?;
    let apis: Vec<Api<ConfigMap>> = kube_clients.into_iter().map(|c| Api::namespaced(c, NAMESPACE)).collect();
    let prefix = sanitize_prefix(&spec.prefix);
    let selector = format!("{RUN_LABEL}={prefix}");
    let start_deadline = Instant::now() + spec.tail.max(Duration::from_secs(10));
    let start_rv = list_version(&apis, &selector, spec.op_timeout, start_deadline).await?;
    let began = Instant::now();
    let shared = Arc::new(client::Shared::new(&prefix, spec.objects));
    let mut tasks = Vec::new();
    for c in 0..spec.clients {
        let task = client::ClientTask::new(c, spec, apis[c % apis.len()].clone(), &shared, recorder);
        tasks.push(tokio::spawn(task.run(until)));
    }
    let (target_tx, target_rx) = tokio::sync::watch::channel(None);
    let mut watchers = Vec::new();
    for i in 0..spec.watchers {
        let w = watcher::Watcher {
            index: i,
            member: i % apis.len(),
            api: apis[i % apis.len()].clone(),
            selector: selector.clone(),
            recorder: recorder.clone(),
            shared: shared.clone(),
            start_at: began + until.saturating_duration_since(began).mul_f64(i as f64 / spec.watchers as f64),
            list_rv: start_rv.clone(),
            seed: spec.seed,
            op_timeout: spec.op_timeout,
            watch_timeout: spec.watch_timeout,
            until,
            deadline: until + spec.tail,
            target: target_rx.clone(),
        };
        watchers.push(tokio::spawn(w.run()));
    }
    drop(target_rx);
    for t in tasks {
        t.await?;
    }
    let names = shared.names();
    let deadline = Instant::now() + spec.tail;
    let target = client::final_reads(&apis, &names, spec.op_timeout, deadline, recorder).await;
    let start_parsed = start_rv.parse::<u64>().ok();
    target_tx.send_replace(target.map(|t| t.max(start_parsed.unwrap_or(0))));
    drop(target_tx);
    for w in watchers {
        w.await?;
    }
    let h = recorder.history();
    let count = |o: Outcome| h.updates.iter().filter(|u| u.outcome == o).count() as u64;
    Ok(ObjectStats {
        creates: h.creates.len() as u64,
        updates: h.updates.len() as u64,
        ok: count(Outcome::Ok),
        fail: count(Outcome::Fail),
        info: count(Outcome::Info),
        reads: h.reads.len() as u64,
        read_errors: shared.read_errors(),
        objects: names.len() as u64,
        watchers: h.watchers.len() as u64,
        watch_events: h.events.len() as u64,
    })
}

/// Re-checks a saved history (see [`ObjectHistory::save`]).
pub fn recheck(path: &Path) -> Result<ObjectVerdict, ObjectError> {
    Ok(check(&ObjectHistory::load(path)?))
}
