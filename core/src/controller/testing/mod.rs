//! A test kit for controllers: the in-memory store, a client, shared informers, a clock that
//! follows tokio's (so `#[tokio::test(start_paused = true)]` drives timestamps as well as
//! timers), leadership you can flip, and [`TestKit::eventually`] to wait for the objects a
//! controller writes without sleeping in real time.
//!
//! ```no_run
//! # use flotilla_core::controller::testing::TestKit;
//! # use k8s_openapi::api::core::v1::Pod;
//! # async fn f() {
//! let kit = TestKit::new().await;
//! // kit.spawn(Controller::new("mine", kit.informers().informer::<MyKind>(), my_reconciler));
//! let pods = kit.api::<Pod>(Some("default"));
//! let n = kit.eventually("three pods", || async {
//!     let n = pods.list(&Default::default()).await.ok()?.items.len();
//!     (n == 3).then_some(n)
//! }).await;
//! kit.shutdown().await;
//! # }
//! ```

mod hollow;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use hollow::HollowKubelet;

use super::{Controller, Informers, Reconciler};
use crate::client::{Api, Client, LocalClient};
use crate::object::{KindRegistry, Resource};
use crate::registry::{Clock, Registry};
use crate::store::MemStore;

/// How long [`TestKit::eventually`] waits (in tokio time; instant under a paused clock).
pub const EVENTUALLY: Duration = Duration::from_secs(120);
/// How often [`TestKit::eventually`] looks.
pub const POLL: Duration = Duration::from_millis(10);

/// A clock that reads tokio's: `epoch` plus the tokio time elapsed since it was made.
pub fn tokio_clock(epoch: Timestamp) -> Clock {
    let start = Instant::now();
    Arc::new(move || {
        let elapsed = Instant::now().saturating_duration_since(start);
        epoch.checked_add(elapsed).unwrap_or(epoch)
    })
}

/// Controllers under test, with everything they need and nothing else.
pub struct TestKit {
    registry: Registry,
    client: Arc<dyn Client>,
    informers: Informers,
    clock: Clock,
    leader: watch::Sender<bool>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl TestKit {
    /// A kit over the built-in kinds, with namespace `default` created and this process leading.
    pub async fn new() -> TestKit {
        TestKit::with_kinds(KindRegistry::builtin()).await
    }

    /// A kit over `kinds` (add user kinds to [`KindRegistry::builtin`] first).
    pub async fn with_kinds(kinds: KindRegistry) -> TestKit {
        let epoch: Timestamp = "2026-01-01T00:00:00Z".parse().expect("a valid timestamp literal");
        let clock = tokio_clock(epoch);
        let registry = Registry::new(Arc::new(MemStore::new()), kinds).with_clock(clock.clone());
        let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry.clone()));
        let ns = Namespace {
            metadata: ObjectMeta { name: Some("default".into()), ..Default::default() },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&ns)
            .await
            .expect("the in-memory store creates a namespace");
        let (leader, _) = watch::channel(true);
        TestKit {
            registry,
            client: client.clone(),
            informers: Informers::new(client),
            clock,
            leader,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// The registry under the client.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The client controllers write through.
    pub fn client(&self) -> Arc<dyn Client> {
        self.client.clone()
    }

    /// Typed access to `K` in `namespace` (or all namespaces / cluster scope with `None`).
    pub fn api<K: Resource>(&self, namespace: Option<&str>) -> Api<K> {
        match namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    /// The shared informers (started when the first controller is spawned).
    pub fn informers(&self) -> &Informers {
        &self.informers
    }

    /// The clock the registry stamps objects with; give it to reconcilers.
    pub fn clock(&self) -> Clock {
        self.clock.clone()
    }

    /// Now, by [`clock`](Self::clock).
    pub fn now(&self) -> Timestamp {
        (self.clock)()
    }

    /// Leadership as controllers see it.
    pub fn is_leader(&self) -> watch::Receiver<bool> {
        self.leader.subscribe()
    }

    /// Makes this process lead, or stop leading.
    pub fn set_leader(&self, leading: bool) {
        self.leader.send_replace(leading);
    }

    /// The token that stops everything spawned.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Starts the informers and runs `controller` until [`shutdown`](Self::shutdown).
    pub fn spawn<K: Resource, R: Reconciler>(&self, controller: Controller<K, R>) {
        self.informers.start(self.shutdown.clone());
        self.tasks.spawn(controller.run(self.is_leader(), self.shutdown.clone()));
    }

    /// Runs any other task (a recorder, a hollow kubelet) until shutdown; it gets the token.
    pub fn spawn_task<F, Fut>(&self, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task(self.shutdown.clone()));
    }

    /// Polls `check` until it returns `Some`, in tokio time; panics naming `what` after
    /// [`EVENTUALLY`].
    pub async fn eventually<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + EVENTUALLY;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if Instant::now() >= deadline {
                panic!("{what}: not reached within {EVENTUALLY:?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops every controller and task and waits for them.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.informers.stopped().await;
    }
}
