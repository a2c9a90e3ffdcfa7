//! The registry against a model: random sequences of creates, updates (current, stale and
//! unconditional resourceVersions), status updates, merge, JSON and strategic merge patches,
//! finalizer changes and deletes of ConfigMaps, Pods and Deployments over a few names in two
//! namespaces (one created only by a step), on `MemStore`. Most steps address an object that
//! exists (`Step::pick`), so that updates, patches and deletes meet one.
//!
//! The model (`model/state.rs`) holds what the registry must preserve and compute for each
//! object (uid, labels, a spec field, status, finalizers, deletion, generation and the
//! resourceVersion: the store revision of its last change), the store revision (every committed
//! write adds exactly one; failures and no-op updates add nothing), and the history of
//! committed changes. Its rules are Kubernetes': see the comments there.
//!
//! After every step the call's outcome (success with the returned resourceVersion, or the
//! error's reason and code) must be the model's, and a list of each kind must equal it, at the
//! model's revision. At the end, watches from random resourceVersions, with and without a label
//! selector or namespace, and watches without a resourceVersion, must deliver exactly the
//! model's events (`model/watch.rs`).
//!
//! A failure names the step, shows the registry's answer next to the model's, and lists the
//! steps that led there with their addresses resolved.
//!
//! `PROPTEST_CASES` sets the number of cases (default 128, of up to 40 steps).

#[path = "model/ops.rs"]
mod ops;
#[path = "model/state.rs"]
mod state;
#[path = "model/watch.rs"]
mod watch;

use std::sync::Arc;
use std::time::Duration;

use flotilla_core::object::Resource;
use flotilla_core::registry::conformance::registry_over;
use flotilla_core::registry::{ListOptions, Registry, WatchCacheConfig};
use flotilla_core::store::MemStore;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use proptest::prelude::*;

use ops::{Kind, Step, within};
use state::{Model, Snap};

/// How long one case may take before it is reported as hung.
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// Lists every kind and compares with the model, at the model's revision.
async fn check_lists(r: &Registry, model: &Model, at: &str) -> Result<(), String> {
    for kind in Kind::ALL {
        let list = within("list", r.list(&kind.resource_type(), None, &ListOptions::default()))
            .await?
            .map_err(|e| format!("{at}: list of {kind:?}: {e}"))?;
        let got: Vec<Snap> = list.items.iter().map(|o| Snap::of(kind, o)).collect();
        let want = model.list(kind);
        if got != want {
            return Err(format!("{at}: list of {kind:?}:\n  registry: {got:#?}\n  model:    {want:#?}"));
        }
        if list.resource_version != model.revision.to_string() {
            return Err(format!(
                "{at}: the store is at revision {} but the model at {} (a write too many or too few)",
                list.resource_version, model.revision
            ));
        }
    }
    Ok(())
}

async fn run_case(steps: Vec<Step>, watches: Vec<watch::WatchSpec>, cached: bool) -> Result<(), String> {
    let store = Arc::new(MemStore::new());
    let r = registry_over(store.clone());
    if cached {
        // Every watch of the model's kinds is then served by the watch cache.
        for t in [ConfigMap::TYPE, Pod::TYPE, Deployment::TYPE] {
            within("watch cache", r.enable_watch_cache(&t, WatchCacheConfig::default()))
                .await?
                .map_err(|e| format!("starting the {} watch cache: {e}", t.kind))?;
        }
    }
    let ns = ops::namespace(ops::NAMESPACES[0]);
    within("create ns-a", r.create(&Namespace::TYPE, None, ns, &Default::default()))
        .await?
        .map_err(|e| format!("creating ns-a: {e}"))?;
    let first = within("list", r.list(&Namespace::TYPE, None, &ListOptions::default()))
        .await?
        .map_err(|e| format!("listing namespaces: {e}"))?
        .resource_version
        .parse::<i64>()
        .map_err(|e| format!("list resourceVersion: {e}"))?;
    let mut model = Model::new(first);
    let mut trail = Vec::new();
    let res = steps_then_watches(&r, &mut model, &mut trail, first, &steps, &watches).await;
    r.shutdown().await;
    store.shutdown().await;
    res.map_err(|e| {
        format!(
            "{e}
the steps, with picks resolved:
  {}",
            trail.join("\n  ")
        )
    })
}

async fn steps_then_watches(
    r: &Registry,
    model: &mut Model,
    trail: &mut Vec<String>,
    first: i64,
    steps: &[Step],
    watches: &[watch::WatchSpec],
) -> Result<(), String> {
    for (i, s) in steps.iter().enumerate() {
        let s = &model.resolve(s);
        let at = format!("step {i} {s:?}");
        trail.push(at.clone());
        let (got, uid) = ops::perform(r, model, s).await.map_err(|e| format!("{at}: {e}"))?;
        let before = model.get(s).cloned();
        let want = model.apply(s, &uid);
        if got != want {
            return Err(format!(
                "{at}: outcome\n  registry: {got:?}\n  model:    {want:?}\n  object before: {before:#?}"
            ));
        }
        check_lists(r, model, &at).await?;
    }
    watch::check_watches(r, model, first, watches).await.map_err(|e| format!("after the steps, {e}"))
}

/// Runs one case on a fresh runtime, under [`CASE_TIMEOUT`].
fn run_blocking(
    steps: Vec<Step>,
    watches: Vec<watch::WatchSpec>,
    cached: bool,
) -> std::io::Result<Result<(), String>> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    Ok(rt.block_on(async {
        tokio::time::timeout(CASE_TIMEOUT, run_case(steps, watches, cached))
            .await
            .unwrap_or_else(|_| Err(format!("the case did not finish within {CASE_TIMEOUT:?} (deadlock?)")))
    }))
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 512,
        // Failures are reported with their shrunk steps; no regression file is written.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn registry_matches_model(
        steps in proptest::collection::vec(ops::step(), 1..40),
        watches in proptest::collection::vec(watch::watch_spec(), 6),
    ) {
        let res = run_blocking(steps, watches, false)?;
        prop_assert!(res.is_ok(), "{}", res.err().unwrap_or_default());
    }

    #[test]
    fn registry_with_watch_cache_matches_model(
        steps in proptest::collection::vec(ops::step(), 1..40),
        watches in proptest::collection::vec(watch::watch_spec(), 6),
    ) {
        let res = run_blocking(steps, watches, true)?;
        prop_assert!(res.is_ok(), "{}", res.err().unwrap_or_default());
    }
}
