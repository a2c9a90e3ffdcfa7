//! The extension points after filtering and scoring: post-filter (preemption), reserve,
//! permit, pre-bind and bind, as kube-scheduler's framework has them.
//!
//! Post-filter, reserve and permit run in the scheduling cycle, on the scheduler's own loop:
//! they decide and change in-memory state, and must not wait on I/O. Pre-bind and bind run in
//! the binding cycle, a task of its own per pod, and may write through the [`Client`].

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;

use super::framework::{CycleState, Framework, Profile};
use super::snapshot::Snapshot;
use super::status::{FitError, Status};
use crate::client::Client;

/// What a post-filter plugin proposes for a pod no node fits (kube-scheduler's
/// `PostFilterResult`).
#[derive(Clone, Debug, PartialEq)]
pub enum PostFilterOutcome {
    /// The plugin cannot help; the next post-filter plugin runs.
    NotHelped {
        /// Why, appended to the pod's unschedulable message when no plugin helps (for
        /// preemption: "0/5 nodes are available: 5 No preemption victims found for incoming
        /// pod."). Empty for nothing to add.
        message: String,
    },
    /// Evicting `victims` should make room for the pod on `node`: the runtime deletes them
    /// and records `node` as the pod's `status.nominatedNodeName`; the pod is scheduled
    /// again once they are gone.
    Nominate(Nomination),
    /// The plugin failed (an internal error, not a verdict on the pod).
    Error(String),
}

/// A node nominated for a pod, and the pods to evict from it first.
#[derive(Clone, Debug, PartialEq)]
pub struct Nomination {
    /// The node.
    pub node: String,
    /// The pods to evict, all on `node`.
    pub victims: Vec<Arc<Pod>>,
}

/// Runs when no node passed the filters; may nominate a node after evicting pods
/// (DefaultPreemption).
pub trait PostFilterPlugin: Send + Sync {
    /// The plugin's name, as kube-scheduler names it.
    fn name(&self) -> &'static str;

    /// Looks for a way to place `pod`. `state` is the cycle's pre-filter state, `fit` why
    /// each node was rejected; `framework` runs the profile's filters for a dry run.
    fn post_filter(
        &self,
        framework: &Framework,
        state: &CycleState,
        pod: &Pod,
        snapshot: &Snapshot,
        fit: &FitError,
    ) -> PostFilterOutcome;
}

/// Claims resources for a pod on its chosen node before binding, in the plugin's own state
/// (VolumeBinding assumes its volume bindings here); undone by `unreserve` when a later step
/// fails.
pub trait ReservePlugin: Send + Sync {
    /// The plugin's name, as kube-scheduler names it.
    fn name(&self) -> &'static str;

    /// Reserves for `pod` on `node`. Anything but success fails the cycle: the reserve
    /// plugins that ran are unreserved, in reverse order, and the pod goes back to the queue.
    fn reserve(&self, state: &mut CycleState, pod: &Pod, node: &str) -> Status;

    /// Undoes `reserve` (also called for a plugin whose `reserve` failed); must tolerate a
    /// reservation that was never made.
    fn unreserve(&self, state: &mut CycleState, pod: &Pod, node: &str);
}

/// Approves or rejects a placement just before it is bound.
pub trait PermitPlugin: Send + Sync {
    /// The plugin's name, as kube-scheduler names it.
    fn name(&self) -> &'static str;

    /// [`Status::Success`] lets the bind go ahead; anything else rejects the placement (the
    /// reservations are undone and the pod goes back to the queue).
    fn permit(&self, state: &CycleState, pod: &Pod, node: &str) -> Status;
}

/// Prepares the cluster for a pod before it is bound (VolumeBinding writes the claims'
/// bindings here).
#[async_trait]
pub trait PreBindPlugin: Send + Sync {
    /// The plugin's name, as kube-scheduler names it.
    fn name(&self) -> &'static str;

    /// Prepares for `pod` on `node`. Anything but success fails the binding: reservations are
    /// undone and the pod goes back to the queue with backoff.
    async fn pre_bind(&self, client: &Arc<dyn Client>, state: &CycleState, pod: &Pod, node: &str) -> Status;
}

/// What a bind plugin did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindOutcome {
    /// The pod is bound.
    Bound,
    /// Not this plugin's pod: the next bind plugin runs.
    Skip,
    /// The bind failed; the message says why (a conflict, the pod gone, ...).
    Failed(String),
}

/// Binds a pod to its node. The profile's bind plugins run in order until one does not
/// [`BindOutcome::Skip`]; [`DefaultBinder`] binds through the API's `binding` subresource.
#[async_trait]
pub trait BindPlugin: Send + Sync {
    /// The plugin's name, as kube-scheduler names it.
    fn name(&self) -> &'static str;

    /// Binds `pod` to `node`.
    async fn bind(&self, client: &Arc<dyn Client>, state: &CycleState, pod: &Pod, node: &str) -> BindOutcome;
}

/// kube-scheduler's DefaultBinder: creates the pod's `binding`, with the pod's uid as a
/// precondition so a pod deleted and created again under the same name is not bound.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultBinder;

#[async_trait]
impl BindPlugin for DefaultBinder {
    fn name(&self) -> &'static str {
        "DefaultBinder"
    }

    async fn bind(
        &self,
        client: &Arc<dyn Client>,
        _state: &CycleState,
        pod: &Pod,
        node: &str,
    ) -> BindOutcome {
        let m = &pod.metadata;
        let (namespace, name) = (m.namespace.as_deref().unwrap_or(""), m.name.as_deref().unwrap_or(""));
        match client.bind(namespace, name, node, m.uid.as_deref()).await {
            Ok(_) => BindOutcome::Bound,
            Err(error) => BindOutcome::Failed(error.to_string()),
        }
    }
}

impl fmt::Display for BindOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindOutcome::Bound => f.write_str("bound"),
            BindOutcome::Skip => f.write_str("skipped"),
            BindOutcome::Failed(message) => f.write_str(message),
        }
    }
}

impl Profile {
    /// Adds a post-filter plugin.
    pub fn with_post_filter(mut self, plugin: Arc<dyn PostFilterPlugin>) -> Profile {
        self.post_filters.push(plugin);
        self
    }

    /// Adds a reserve plugin.
    pub fn with_reserve(mut self, plugin: Arc<dyn ReservePlugin>) -> Profile {
        self.reserves.push(plugin);
        self
    }

    /// Adds a permit plugin.
    pub fn with_permit(mut self, plugin: Arc<dyn PermitPlugin>) -> Profile {
        self.permits.push(plugin);
        self
    }

    /// Adds a pre-bind plugin.
    pub fn with_pre_bind(mut self, plugin: Arc<dyn PreBindPlugin>) -> Profile {
        self.pre_binds.push(plugin);
        self
    }

    /// Puts a bind plugin before the others (so before [`DefaultBinder`]).
    pub fn with_binder(mut self, plugin: Arc<dyn BindPlugin>) -> Profile {
        self.binders.insert(0, plugin);
        self
    }
}

/// Where a placement failed after a node was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacementRejected {
    /// The plugin that refused.
    pub plugin: &'static str,
    /// Its verdict.
    pub status: Status,
}

impl fmt::Display for PlacementRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.plugin, self.status.reasons().join(", "))
    }
}

impl Framework {
    /// Runs the post-filters for a pod no node fits, in order, until one nominates a node or
    /// fails. Without any, or when none helps: [`PostFilterOutcome::NotHelped`] with the
    /// plugins' messages joined.
    pub fn post_filter(
        &self,
        state: &CycleState,
        pod: &Pod,
        snapshot: &Snapshot,
        fit: &FitError,
    ) -> PostFilterOutcome {
        let mut messages = Vec::new();
        for plugin in &self.profile().post_filters {
            match plugin.post_filter(self, state, pod, snapshot, fit) {
                PostFilterOutcome::NotHelped { message } => {
                    if !message.is_empty() {
                        messages.push(message);
                    }
                }
                outcome => return outcome,
            }
        }
        PostFilterOutcome::NotHelped { message: messages.join(" ") }
    }

    /// Reserves `pod` on `node` with every reserve plugin, then asks every permit plugin. On
    /// the first refusal, every reserve plugin that ran (the refusing one included) is
    /// unreserved in reverse order and the refusal returned.
    pub fn reserve_and_permit(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        node: &str,
    ) -> Result<(), PlacementRejected> {
        let reserves = &self.profile().reserves;
        for (i, plugin) in reserves.iter().enumerate() {
            let status = plugin.reserve(state, pod, node);
            if !status.is_success() {
                for done in reserves[..=i].iter().rev() {
                    done.unreserve(state, pod, node);
                }
                return Err(PlacementRejected { plugin: plugin.name(), status });
            }
        }
        for plugin in &self.profile().permits {
            let status = plugin.permit(state, pod, node);
            if !status.is_success() {
                self.unreserve(state, pod, node);
                return Err(PlacementRejected { plugin: plugin.name(), status });
            }
        }
        Ok(())
    }

    /// Undoes every reserve plugin's reservation, in reverse order.
    pub fn unreserve(&self, state: &mut CycleState, pod: &Pod, node: &str) {
        for plugin in self.profile().reserves.iter().rev() {
            plugin.unreserve(state, pod, node);
        }
    }

    /// The binding cycle: every pre-bind plugin, then the bind plugins until one does not
    /// skip. The caller unreserves on failure.
    pub async fn pre_bind_and_bind(
        &self,
        client: &Arc<dyn Client>,
        state: &CycleState,
        pod: &Pod,
        node: &str,
    ) -> Result<(), PlacementRejected> {
        for plugin in &self.profile().pre_binds {
            let status = plugin.pre_bind(client, state, pod, node).await;
            if !status.is_success() {
                return Err(PlacementRejected { plugin: plugin.name(), status });
            }
        }
        for plugin in &self.profile().binders {
            match plugin.bind(client, state, pod, node).await {
                BindOutcome::Bound => return Ok(()),
                BindOutcome::Skip => {}
                BindOutcome::Failed(message) => {
                    return Err(PlacementRejected { plugin: plugin.name(), status: Status::error(message) });
                }
            }
        }
        Err(PlacementRejected { plugin: "Bind", status: Status::error("no bind plugin bound the pod") })
    }
}
