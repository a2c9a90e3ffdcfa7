//! The built-in controllers composed on one set of shared informers: what `flotilla up` and
//! `flotilla server` run, and what an embedding binary runs to get Kubernetes' behaviour.
//!
//! Each `*_controller` function returns one controller ready to [`run`](Controller::run), so
//! a binary may also pick the ones it wants; [`ControllerManager`] runs them all.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::deployment::{self, DeploymentReconciler};
use super::endpoints::{self, EndpointSliceReconciler, EndpointsReconciler};
use super::gc::{GarbageCollector, GcConfig};
use super::namespace::{self, NamespaceReconciler};
use super::nodelifecycle::{self, NodeLifecycleConfig};
use super::podgc::{self, PodGcConfig};
use super::replicaset::{self, ReplicaSetReconciler};
use super::resourcequota::{self, QuotaConfig};
use super::volume;
use crate::client::Client;
use crate::controller::events::Recorder;
use crate::controller::{Change, Controller, ControllerConfig, ControllerMetrics, Informers, ObjectKey};
use crate::object::ResourceType;
use crate::registry::Clock;

/// Deduplicated keys from mapping both sides of a change.
fn both_sides<K>(change: &Change<K>, map: impl Fn(&K) -> Vec<ObjectKey>) -> Vec<ObjectKey> {
    let mut keys: Vec<ObjectKey> = Vec::new();
    for obj in [change.old(), change.latest()].into_iter().flatten() {
        for k in map(obj) {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    keys
}

/// The ReplicaSet controller: ReplicaSets, triggered by their pods (owned ones and orphans
/// they may adopt). `recorder` publishes its Events (run its task alongside).
pub fn replica_set_controller(
    informers: &Informers,
    clock: Clock,
    recorder: Recorder,
) -> Controller<ReplicaSet, ReplicaSetReconciler> {
    let replica_sets = informers.informer::<ReplicaSet>();
    let pods = informers.informer::<Pod>();
    let reconciler =
        ReplicaSetReconciler::new(informers.client(), replica_sets.cache(), pods.cache(), clock, recorder);
    let rs_cache = replica_sets.cache();
    Controller::new(replicaset::CONTROLLER_NAME, replica_sets, reconciler)
        .watches(pods, move |c: &Change<Pod>| both_sides(c, |p| replicaset::pod_triggers(&rs_cache, p)))
}

/// The Deployment controller: Deployments, triggered by their ReplicaSets (owned ones and
/// orphans they may adopt) and, for the Recreate strategy, by their pods. `recorder`
/// publishes its Events (run its task alongside).
pub fn deployment_controller(
    informers: &Informers,
    clock: Clock,
    recorder: Recorder,
) -> Controller<Deployment, DeploymentReconciler> {
    let deployments = informers.informer::<Deployment>();
    let (replica_sets, pods) = (informers.informer::<ReplicaSet>(), informers.informer::<Pod>());
    for index in deployment::deployment_indexes() {
        deployments.add_index(index);
    }
    for index in deployment::replica_set_indexes() {
        replica_sets.add_index(index);
    }
    for index in deployment::pod_indexes() {
        pods.add_index(index);
    }
    let reconciler = DeploymentReconciler::new(
        informers.client(),
        deployments.cache(),
        replica_sets.cache(),
        pods.cache(),
        clock,
        recorder,
    );
    let (d1, d2, rs_cache) = (deployments.cache(), deployments.cache(), replica_sets.cache());
    Controller::new(deployment::CONTROLLER_NAME, deployments, reconciler)
        .watches(replica_sets, move |c: &Change<ReplicaSet>| {
            both_sides(c, |rs| deployment::deployments_for_replica_set(rs, &d1))
        })
        .watches(pods, move |c: &Change<Pod>| {
            both_sides(c, |p| deployment::deployment_for_pod(p, &rs_cache, &d2))
        })
}

/// The Endpoints controller: Services, triggered by the pods their selectors match (before
/// or after a change) and by their Endpoints.
pub fn endpoints_controller(informers: &Informers, clock: Clock) -> Controller<Service, EndpointsReconciler> {
    let services = informers.informer::<Service>();
    let (pods, eps) = (informers.informer::<Pod>(), informers.informer::<Endpoints>());
    let reconciler =
        EndpointsReconciler::new(informers.client(), services.cache(), pods.cache(), eps.cache(), clock);
    let svc_cache = services.cache();
    Controller::new(endpoints::ENDPOINTS_CONTROLLER_NAME, services, reconciler)
        .watches(pods, move |c: &Change<Pod>| endpoints::pod_triggers(&svc_cache, c.old(), c.latest()))
        .watches(eps, |c: &Change<Endpoints>| both_sides(c, endpoints::endpoints_triggers))
}

/// The EndpointSlice controller: Services, triggered by their pods and their slices.
pub fn endpoint_slice_controller(
    informers: &Informers,
    clock: Clock,
) -> Controller<Service, EndpointSliceReconciler> {
    let services = informers.informer::<Service>();
    let (pods, slices) = (informers.informer::<Pod>(), informers.informer::<EndpointSlice>());
    let reconciler = EndpointSliceReconciler::new(
        informers.client(),
        services.cache(),
        pods.cache(),
        slices.cache(),
        clock,
    );
    let svc_cache = services.cache();
    Controller::new(endpoints::ENDPOINTSLICE_CONTROLLER_NAME, services, reconciler)
        .watches(pods, move |c: &Change<Pod>| endpoints::pod_triggers(&svc_cache, c.old(), c.latest()))
        .watches(slices, |c: &Change<EndpointSlice>| both_sides(c, endpoints::endpoint_slice_triggers))
}

/// The namespace controller: empties terminating namespaces of every namespaced type in
/// `types`, then finalizes them.
pub fn namespace_controller(
    informers: &Informers,
    clock: Clock,
    types: Vec<ResourceType>,
) -> Controller<Namespace, NamespaceReconciler> {
    let namespaces = informers.informer::<Namespace>();
    let reconciler = NamespaceReconciler::new(informers.client(), namespaces.cache(), types, clock);
    Controller::new(namespace::NAMESPACE_CONTROLLER_NAME, namespaces, reconciler)
}

/// Runs every built-in controller.
pub struct ControllerManager {
    informers: Informers,
    clock: Clock,
    types: Vec<ResourceType>,
    config: ControllerConfig,
    metrics: ControllerMetrics,
}

impl ControllerManager {
    /// The built-in controllers over `client`; `types` are the resource types the cluster
    /// serves (for namespace deletion and the garbage collector), `clock` stamps what they
    /// write.
    pub fn new(client: Arc<dyn Client>, types: Vec<ResourceType>, clock: Clock) -> ControllerManager {
        ControllerManager {
            informers: Informers::new(client),
            clock,
            types,
            config: ControllerConfig::default(),
            metrics: ControllerMetrics::default(),
        }
    }

    /// Runs each controller with `config`.
    pub fn with_config(mut self, config: ControllerConfig) -> Self {
        self.config = config;
        self
    }

    /// The metrics every controller records into; register them with the binary's registry.
    pub fn metrics(&self) -> ControllerMetrics {
        self.metrics.clone()
    }

    /// The shared informers, for other components of the process to read from.
    pub fn informers(&self) -> &Informers {
        &self.informers
    }

    /// Runs until `shutdown`, acting only while `is_leader` is true.
    pub async fn run(self, is_leader: watch::Receiver<bool>, shutdown: CancellationToken) {
        let ControllerManager { informers, clock, types, config, metrics } = self;
        let tasks = TaskTracker::new();
        macro_rules! spawn {
            ($c:expr) => {
                tasks.spawn(
                    $c.with_config(config.clone())
                        .with_metrics(metrics.clone())
                        .run(is_leader.clone(), shutdown.clone()),
                )
            };
        }
        let recorder = |component: &str| {
            let (recorder, task) = Recorder::new(informers.client(), component, clock.clone());
            tasks.spawn(task.run(shutdown.clone()));
            recorder
        };
        spawn!(replica_set_controller(&informers, clock.clone(), recorder(replicaset::CONTROLLER_NAME)));
        spawn!(deployment_controller(&informers, clock.clone(), recorder(deployment::CONTROLLER_NAME)));
        spawn!(endpoints_controller(&informers, clock.clone()));
        spawn!(endpoint_slice_controller(&informers, clock.clone()));
        spawn!(namespace_controller(&informers, clock.clone(), types.clone()));
        spawn!(resourcequota::resource_quota_controller(
            &informers,
            clock.clone(),
            types.clone(),
            QuotaConfig::default(),
        ));
        let (recorder, recorder_task) =
            Recorder::new(informers.client(), nodelifecycle::CONTROLLER_NAME, clock.clone());
        tasks.spawn(recorder_task.run(shutdown.clone()));
        spawn!(nodelifecycle::node_lifecycle_controller(
            &informers,
            clock.clone(),
            NodeLifecycleConfig::default(),
            recorder,
        ));
        let (recorder, recorder_task) =
            Recorder::new(informers.client(), volume::EVENT_COMPONENT, clock.clone());
        tasks.spawn(recorder_task.run(shutdown.clone()));
        spawn!(volume::claim_controller(&informers, clock.clone(), recorder.clone()));
        spawn!(volume::volume_controller(&informers, clock.clone(), recorder));
        let pod_gc = podgc::pod_gc(&informers, clock.clone(), PodGcConfig::default());
        tasks.spawn(pod_gc.run(is_leader.clone(), shutdown.clone()));
        let gc = GarbageCollector::new(informers.client(), types, GcConfig::default());
        tasks.spawn(gc.run(is_leader.clone(), shutdown.clone()));
        informers.start(shutdown.clone());
        tasks.close();
        tasks.wait().await;
        informers.stopped().await;
    }
}
