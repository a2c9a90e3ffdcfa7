//! The Endpoints and EndpointSlice controllers: the addresses and ports of the pods a Service
//! selects, published as its `v1` Endpoints object and as `discovery.k8s.io/v1`
//! EndpointSlices, as Kubernetes' `endpoint` and `endpointslice` controllers publish them.
//!
//! Each is a pure decision — [`plan_endpoints`] and [`plan_slices`], objects in and writes
//! out — and a reconciler keyed by Service, [`EndpointsReconciler`] and
//! [`EndpointSliceReconciler`]. They are two controllers, as in Kubernetes, because they
//! write different objects, are triggered by different kinds (an Endpoints change concerns
//! only the first, a slice change only the second) and fail independently; the Endpoints API
//! is deprecated and a composition may run only the slice controller. What they share about
//! pods (which pods are endpoints, how target ports resolve) lives in [`pods`].
//!
//! Services without a selector, and `ExternalName` Services, are left alone: their
//! endpoints are the user's. A deleted Service's Endpoints object is deleted only if it
//! carries `endpoints.kubernetes.io/managed-by: endpoint-controller`, the label this
//! controller (and Kubernetes 1.33's) puts on every Endpoints object it writes; its slices
//! are those labelled `endpointslice.kubernetes.io/managed-by:
//! endpointslice-controller.k8s.io`.
//!
//! The runtime wires, for both: the Service as primary kind, [`pod_triggers`] on pod
//! changes; for the first [`endpoints_triggers`], for the second [`endpoint_slice_triggers`].
//! The reconcilers add the cache indexes they read when the caches lack them
//! ([`service_indexes`], [`pod_indexes`], [`slice_indexes`] list them).
//!
//! Not done: topology (zones and hints, which need Nodes), the
//! `endpoints.kubernetes.io/last-change-trigger-time` annotation (a stale one is removed on
//! write), and Kubernetes' batching of pod updates.

mod expectations;
mod legacy;
pub mod pods;
mod reconciler;
mod slices;
mod subsets;
#[cfg(test)]
mod tests;
mod triggers;

pub use legacy::{
    ENDPOINTS_CONTROLLER_NAME, ENDPOINTS_MANAGED_BY_LABEL, EndpointsPlan, HEADLESS_LABEL,
    LAST_CHANGE_TRIGGER_TIME_ANNOTATION, OVER_CAPACITY_ANNOTATION, desired_subsets, is_managed_endpoints,
    plan_endpoints,
};
pub use reconciler::{EndpointSliceReconciler, EndpointsReconciler};
pub use slices::{
    ENDPOINTSLICE_CONTROLLER_NAME, MAX_ENDPOINTS_PER_SLICE, SERVICE_NAME_LABEL, SLICE_MANAGED_BY_LABEL,
    SlicePlan, address_types, desired_labels, is_managed_slice, plan_slices, service_name_of,
};
pub use subsets::{MAX_ENDPOINTS_ADDRESSES, repack_subsets, sort_subsets, truncate_subsets};
pub use triggers::{
    NAMESPACE_INDEX, SLICE_SERVICE_INDEX, endpoint_slice_triggers, endpoints_triggers, pod_indexes,
    pod_triggers, service_indexes, slice_indexes, slice_service_index,
};

/// A failed write of an endpoints controller; the reconcile is retried with backoff (a 409
/// Conflict means the cache was behind, and the retry reads the newer object).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Creating a Service's Endpoints object failed.
    #[error("creating endpoints {namespace}/{name}")]
    CreateEndpoints {
        /// The namespace.
        namespace: String,
        /// The Endpoints (and Service) name.
        name: String,
        /// What the API answered.
        #[source]
        source: crate::client::Error,
    },
    /// Replacing a Service's Endpoints object failed.
    #[error("updating endpoints {namespace}/{name}")]
    UpdateEndpoints {
        /// The namespace.
        namespace: String,
        /// The Endpoints (and Service) name.
        name: String,
        /// What the API answered.
        #[source]
        source: crate::client::Error,
    },
    /// Deleting the Endpoints object of a deleted Service failed.
    #[error("deleting endpoints {namespace}/{name}")]
    DeleteEndpoints {
        /// The namespace.
        namespace: String,
        /// The Endpoints (and Service) name.
        name: String,
        /// What the API answered.
        #[source]
        source: crate::client::Error,
    },
    /// Creating an EndpointSlice for a Service failed.
    #[error("creating an endpoint slice for service {namespace}/{service}")]
    CreateSlice {
        /// The namespace.
        namespace: String,
        /// The Service.
        service: String,
        /// What the API answered.
        #[source]
        source: crate::client::Error,
    },
    /// Replacing an EndpointSlice failed.
    #[error("updating endpoint slice {namespace}/{name}")]
    UpdateSlice {
        /// The namespace.
        namespace: String,
        /// The slice.
        name: String,
        /// What the API answered.
        #[source]
        source: crate::client::Error,
    },
    /// Deleting an EndpointSlice failed.
    #[error("deleting endpoint slice {namespace}/{name}")]
    DeleteSlice {
        /// The namespace.
        namespace: String,
        /// The slice.
        name: String,
        /// What the API answered.
        #[source]
        source: crate::client::Error,
    },
}

/// The result type of the endpoints controllers.
pub type Result<T, E = Error> = std::result::Result<T, E>;
