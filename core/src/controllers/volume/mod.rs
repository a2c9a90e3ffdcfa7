//! The PersistentVolume controllers: the binder that pairs claims with volumes, storage object
//! in-use protection, and a local-path provisioner (Kubernetes'
//! `pkg/controller/volume/persistentvolume`, `pvcprotection` and `pvprotection`).
//!
//! Two controllers share the work, like Kubernetes' claim and volume workers:
//!
//! - [`claim_controller`] syncs each PersistentVolumeClaim with [`sync_claim`]: binding it to
//!   a matching volume ([`find_best_volume`]: same storage class, access modes a superset,
//!   capacity at least the request with the smallest fitting volume winning, the claim's
//!   `selector` matching the volume's labels, the same volume mode, the volume `Available`
//!   and not `claimRef`'d to another claim), honouring pre-binding both ways (a volume whose
//!   `claimRef` names the claim, with its uid when set; a claim's `spec.volumeName`),
//!   provisioning, marking claims `Pending` or `Lost`, and the `kubernetes.io/pvc-protection`
//!   finalizer. It is triggered by claims, by volumes (the claim a volume's `claimRef` names;
//!   every waiting claim when a volume is free), by StorageClasses (every waiting claim) and
//!   by pods (the claims they mount).
//! - [`volume_controller`] syncs each PersistentVolume with [`sync_volume`]: phases
//!   `Available`, `Bound`, `Released` and `Failed`, reclaim policies `Retain` and `Delete`,
//!   undoing bindings whose claim went elsewhere, and the `kubernetes.io/pv-protection`
//!   finalizer. It is triggered by volumes and by claims (the volume a claim names and the
//!   volumes whose `claimRef` names it).
//!
//! Binding writes the volume (`claimRef` with the claim's uid, then phase `Bound`) before the
//! claim (`spec.volumeName`, annotation `pv.kubernetes.io/bind-completed: "yes"`, phase
//! `Bound` with the volume's access modes and capacity). Each write carries the cached
//! `resourceVersion`: a 409 Conflict fails the reconcile, which is retried with backoff on
//! newer caches. If the claim write fails after the volume write, the volume is pre-bound to
//! the claim, so the next sync picks it again and finishes.
//!
//! **Local-path provisioner.** A pending claim of a StorageClass whose `provisioner` is
//! [`LOCAL_PATH_PROVISIONER`] and whose `volumeBindingMode` is `Immediate` (or unset), or
//! `WaitForFirstConsumer` once the scheduler selected a node for it, gets a volume named
//! `pvc-<claim uid>`: a `hostPath` of type `DirectoryOrCreate` at
//! `<basePath>/<namespace>_<claim name>_<claim uid>` (class parameter [`BASE_PATH_PARAMETER`],
//! default [`DEFAULT_BASE_PATH`]; any other parameter is refused), the requested capacity, the
//! claim's access modes and volume mode, the class's reclaim policy (default `Delete`) and
//! mount options, the class name, a `claimRef` pre-binding it to the claim (with uid) and the
//! annotation `pv.kubernetes.io/provisioned-by: flotilla.dev/local-path`, and, when the claim
//! carries [`ANN_SELECTED_NODE`], a required node affinity `kubernetes.io/hostname In
//! [<node>]` (the directory is on that node); the claim is annotated
//! `volume.kubernetes.io/storage-provisioner`. Claims with a `selector` are not
//! provisioned (as in Kubernetes). When such a volume is released with policy `Delete`, the
//! controller deletes the volume object; **removing the directory on the host is the node
//! agent's job**, as is creating it (`DirectoryOrCreate`). Claims of classes with another
//! provisioner are annotated and left to that provisioner (`ExternalProvisioning` Event).
//!
//! **Default class.** A claim that names no class at all (no `storageClassName`, no beta
//! annotation) and that no class-less volume satisfies is given the default class, when
//! exactly one StorageClass is annotated `storageclass.kubernetes.io/is-default-class:
//! "true"`: the controller writes that class into the claim's `spec.storageClassName` (as
//! Kubernetes' retroactive default StorageClass assignment does, since Flotilla has no
//! `DefaultStorageClass` admission plugin), so the class shows in `kubectl get pvc` and the
//! claim is then bound or provisioned as a claim of that class. With several default classes
//! none is chosen (Kubernetes takes the newest). `storageClassName: ""` means "no class" and
//! is never defaulted.
//!
//! **Protection.** Every live claim gets `kubernetes.io/pvc-protection` and every live volume
//! `kubernetes.io/pv-protection`. The claim's goes once it is being deleted and no pod in its
//! namespace that has not terminated (`Succeeded`/`Failed`) mounts it through
//! `spec.volumes[].persistentVolumeClaim` (checked against the API server before removal);
//! the volume's once it is being deleted and not `Bound`.
//!
//! **Events** (component [`EVENT_COMPONENT`]): on claims `FailedBinding`, `VolumeMismatch`,
//! `ProvisioningSucceeded`, `ProvisioningFailed`, `ExternalProvisioning`,
//! `WaitForFirstConsumer`, `ClaimLost`, `ClaimMisbound`; on volumes `VolumeFailedDelete`,
//! `VolumeFailedRecycle`, `VolumeUnknownReclaimPolicy`.
//!
//! **WaitForFirstConsumer.** A claim of such a class waits (with a `WaitForFirstConsumer`
//! Event) for the scheduler's VolumeBinding plugin, which places its first pod: the plugin
//! either pre-binds a static volume whose node affinity admits the pod's node (`claimRef`,
//! which the controller completes as any pre-binding) or annotates the claim with
//! [`ANN_SELECTED_NODE`], and the claim is then provisioned for that node.
//!
//! Not done: node affinity of volumes of `Immediate` local-path classes (such a volume is a
//! directory on whichever node runs the pod, so a pod moved to another node finds another,
//! empty directory; use `WaitForFirstConsumer` to pin it); removing the selected node from a
//! claim whose provisioning fails (Kubernetes' signal to the scheduler to try another node:
//! local-path provisioning does not fail for a node); the
//! `Recycle` policy (the volume turns `Failed`); volume expansion, snapshots, data sources,
//! `volumeAttributesClassName`; generic ephemeral volumes (`spec.volumes[].ephemeral`) in
//! the in-use check; Kubernetes' periodic resync of pending claims (a claim is synced again
//! when a volume, class or the claim changes).

mod claim_sync;
pub mod facts;
mod matching;
mod plan;
mod protection;
mod provisioner;
mod reconciler;
#[cfg(test)]
mod tests;
mod triggers;
mod volume_sync;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;

pub use claim_sync::{
    ClaimInput, LOST_REFERENCE, LOST_VOLUME, MISBOUND, NO_VOLUME_NO_CLASS, WAITING_FOR_CONSUMER, sync_claim,
};
pub use matching::{InvalidClaim, Mismatch, check_volume_satisfies_claim, find_best_volume};
pub use plan::{ClaimPlan, Note, ObjectWrite, VolumePlan};
pub use protection::{
    FinalizerChange, claim_in_use, claim_protection, claims_of_pod, pod_terminated, volume_protection,
};
pub use provisioner::{
    HOST_PATH_TYPE, ProvisionError, default_class, delays_binding, is_default_class, local_path,
    local_path_volume, on_node, provisioned_volume_name,
};
pub use reconciler::{ClaimReconciler, VolumeReconciler};
pub use triggers::{
    CLAIM_REF_INDEX, claims_for_class, claims_for_pod, claims_for_volume, volume_indexes, volumes_for_claim,
    waiting_claims,
};
pub use volume_sync::{
    RECYCLE_UNSUPPORTED, UNKNOWN_RECLAIM_POLICY, VolumeInput, cannot_delete_message, sync_volume,
};

use crate::controller::events::Recorder;
use crate::controller::{Change, Controller, Informers};
use crate::registry::Clock;

/// The claim controller's name (its metrics' label).
pub const CLAIM_CONTROLLER_NAME: &str = "persistentvolume-binder-claims";
/// The volume controller's name (its metrics' label).
pub const VOLUME_CONTROLLER_NAME: &str = "persistentvolume-binder-volumes";
/// The component the controllers' Events come from (Kubernetes' name).
pub const EVENT_COMPONENT: &str = "persistentvolume-controller";

/// The provisioner name of the local-path provisioner, for StorageClasses' `provisioner`.
pub const LOCAL_PATH_PROVISIONER: &str = "flotilla.dev/local-path";
/// The StorageClass parameter naming the directory local-path volumes are made under.
pub const BASE_PATH_PARAMETER: &str = "basePath";
/// Where local-path volumes are made when the class does not say.
pub const DEFAULT_BASE_PATH: &str = "/var/lib/flotilla/local-path";

/// The finalizer protecting claims in use by pods.
pub const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";
/// The finalizer protecting bound volumes.
pub const PV_PROTECTION_FINALIZER: &str = "kubernetes.io/pv-protection";

/// Claim annotation: the binding is complete (set by the controller, value `"yes"`).
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Volume and claim annotation: the controller (not the user) chose the binding.
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// Volume annotation: the provisioner that made the volume.
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// Claim annotation: the provisioner asked to make its volume.
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// Claim annotation: the node the scheduler chose for the first pod using a claim of a
/// `WaitForFirstConsumer` class, so its volume is provisioned where that pod runs.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The `provisioner` of StorageClasses whose volumes are only ever made by hand (local
/// volumes, for one): their claims are never provisioned.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";
/// The node label naming the node (set by the node agent); local-path volumes of a selected
/// node require it in their node affinity.
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
/// The deprecated annotation naming the storage class of a claim or volume (read, never
/// written; it wins over `storageClassName`, as in Kubernetes).
pub const ANN_BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// StorageClass annotation marking the default class (value `"true"`).
pub const ANN_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// The beta form of [`ANN_DEFAULT_CLASS`], also honoured.
pub const ANN_BETA_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// The resource name of storage in capacities and requests.
pub const STORAGE: &str = "storage";
/// The volume mode of claims and volumes that do not say.
pub const VOLUME_MODE_FILESYSTEM: &str = "Filesystem";
/// Reclaim policy: keep a released volume (and its data) for an administrator.
pub const RECLAIM_RETAIN: &str = "Retain";
/// Reclaim policy: delete a released volume.
pub const RECLAIM_DELETE: &str = "Delete";
/// Reclaim policy: scrub and reuse a released volume (deprecated; not supported).
pub const RECLAIM_RECYCLE: &str = "Recycle";
/// The binding mode that waits for a pod to be scheduled.
pub const BINDING_WAIT_FOR_FIRST_CONSUMER: &str = "WaitForFirstConsumer";

/// Volume phase: free for any matching claim.
pub const VOLUME_AVAILABLE: &str = "Available";
/// Volume phase: bound to a claim.
pub const VOLUME_BOUND: &str = "Bound";
/// Volume phase: its claim is gone; awaiting reclamation.
pub const VOLUME_RELEASED: &str = "Released";
/// Volume phase: reclamation failed.
pub const VOLUME_FAILED: &str = "Failed";
/// Claim phase: not bound yet.
pub const CLAIM_PENDING: &str = "Pending";
/// Claim phase: bound to a volume.
pub const CLAIM_BOUND: &str = "Bound";
/// Claim phase: its volume is gone or bound elsewhere.
pub const CLAIM_LOST: &str = "Lost";

/// Event reason: no volume could be bound.
pub const REASON_FAILED_BINDING: &str = "FailedBinding";
/// Event reason: the volume a claim names does not satisfy it.
pub const REASON_VOLUME_MISMATCH: &str = "VolumeMismatch";
/// Event reason: a volume was provisioned for the claim.
pub const REASON_PROVISIONING_SUCCEEDED: &str = "ProvisioningSucceeded";
/// Event reason: the claim cannot be provisioned.
pub const REASON_PROVISIONING_FAILED: &str = "ProvisioningFailed";
/// Event reason: another provisioner is expected to make the volume.
pub const REASON_EXTERNAL_PROVISIONING: &str = "ExternalProvisioning";
/// Event reason: the class binds once a pod is scheduled.
pub const REASON_WAIT_FOR_FIRST_CONSUMER: &str = "WaitForFirstConsumer";
/// Event reason: a bound claim lost its volume.
pub const REASON_CLAIM_LOST: &str = "ClaimLost";
/// Event reason: a bound claim's volume is bound to another claim.
pub const REASON_CLAIM_MISBOUND: &str = "ClaimMisbound";
/// Event reason: a released `Delete` volume cannot be deleted.
pub const REASON_VOLUME_FAILED_DELETE: &str = "VolumeFailedDelete";
/// Event reason: a released `Recycle` volume cannot be recycled.
pub const REASON_VOLUME_FAILED_RECYCLE: &str = "VolumeFailedRecycle";
/// Event reason: a released volume has a reclaim policy nobody knows.
pub const REASON_VOLUME_UNKNOWN_RECLAIM_POLICY: &str = "VolumeUnknownReclaimPolicy";

/// A failed read or write of the volume controllers; the reconcile is retried with backoff (a
/// 409 Conflict means the cache was behind, and the retry reads the newer object).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing a volume (metadata, spec or status) failed.
    #[error("writing volume {volume}")]
    WriteVolume {
        /// The volume.
        volume: String,
        /// What the API answered.
        #[source]
        source: crate::client::Error,
    },
    /// Writing a claim (metadata, spec or status) failed.
    #[error("writing claim {claim}")]
    WriteClaim {
        /// The claim, `namespace/name`.
        claim: String,
        /// What the API answered.
        #[source]
        source: crate::client::Error,
    },
    /// Creating a provisioned volume failed.
    #[error("creating volume {volume} for claim {claim}")]
    CreateVolume {
        /// The volume.
        volume: String,
        /// The claim, `namespace/name`.
        claim: String,
        /// What the API answered.
        #[source]
        source: crate::client::Error,
    },
    /// Deleting a released volume failed.
    #[error("deleting volume {volume}")]
    DeleteVolume {
        /// The volume.
        volume: String,
        /// What the API answered.
        #[source]
        source: crate::client::Error,
    },
    /// Reading the claim a volume names failed.
    #[error("reading claim {claim}")]
    ReadClaim {
        /// The claim, `namespace/name`.
        claim: String,
        /// What the API answered.
        #[source]
        source: crate::client::Error,
    },
    /// Listing the pods that may use a claim failed.
    #[error("listing the pods of namespace {namespace}")]
    ListPods {
        /// The namespace.
        namespace: String,
        /// What the API answered.
        #[source]
        source: crate::client::Error,
    },
}

/// The result type of the volume controllers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The claim controller: PersistentVolumeClaims, triggered by volumes, StorageClasses and
/// pods (see the module docs). `clock` stamps volumes' phase transitions; `recorder`
/// publishes its Events (run its task alongside; it may be shared with
/// [`volume_controller`]).
pub fn claim_controller(
    informers: &Informers,
    clock: Clock,
    recorder: Recorder,
) -> Controller<PersistentVolumeClaim, ClaimReconciler> {
    let claims = informers.informer::<PersistentVolumeClaim>();
    let volumes = informers.informer::<PersistentVolume>();
    let classes = informers.informer::<StorageClass>();
    let pods = informers.informer::<Pod>();
    let reconciler = ClaimReconciler::new(
        informers.client(),
        claims.cache(),
        volumes.cache(),
        classes.cache(),
        pods.cache(),
        clock,
        recorder,
    );
    let (for_volumes, for_classes) = (claims.cache(), claims.cache());
    Controller::new(CLAIM_CONTROLLER_NAME, claims, reconciler)
        .watches(volumes, move |c: &Change<PersistentVolume>| claims_for_volume(c, &for_volumes))
        .watches(classes, move |c: &Change<StorageClass>| claims_for_class(c, &for_classes))
        .watches(pods, claims_for_pod)
}

/// The volume controller: PersistentVolumes, triggered by claims (see the module docs).
/// `clock` stamps phase transitions; `recorder` publishes its Events.
pub fn volume_controller(
    informers: &Informers,
    clock: Clock,
    recorder: Recorder,
) -> Controller<PersistentVolume, VolumeReconciler> {
    let volumes = informers.informer::<PersistentVolume>();
    let claims = informers.informer::<PersistentVolumeClaim>();
    let reconciler =
        VolumeReconciler::new(informers.client(), volumes.cache(), claims.cache(), clock, recorder);
    let volume_cache = volumes.cache();
    Controller::new(VOLUME_CONTROLLER_NAME, volumes, reconciler)
        .watches(claims, move |c: &Change<PersistentVolumeClaim>| volumes_for_claim(c, &volume_cache))
}
