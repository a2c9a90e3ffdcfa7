//! Which volume a claim gets: [`find_best_volume`] for claims that let the controller choose,
//! [`check_volume_satisfies_claim`] for claims that name their volume (Kubernetes'
//! `FindMatchingVolume` and `checkVolumeSatisfyClaim`).

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

use super::VOLUME_AVAILABLE;
use super::facts::{
    access_modes_satisfied, claim_class, claim_key, claim_ref, claim_volume_mode, is_bound_to_claim,
    requested_storage, volume_capacity, volume_class, volume_name, volume_phase, volume_volume_mode,
};
use crate::quantity::{Quantity, QuantityError};
use crate::selector::LabelSelector;
use crate::validation::{ErrorList, FieldPath};

/// A claim no volume can be matched against.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidClaim {
    /// `spec.resources.requests.storage` is not a quantity.
    #[error("claim {claim}: spec.resources.requests.storage is invalid")]
    Request {
        /// `namespace/name` of the claim.
        claim: String,
        /// Why.
        #[source]
        source: QuantityError,
    },
    /// `spec.selector` is not a valid label selector.
    #[error("claim {claim}: spec.selector is invalid: {errors}")]
    Selector {
        /// `namespace/name` of the claim.
        claim: String,
        /// Every problem, with its field path.
        errors: ErrorList,
    },
}

/// Why a volume cannot serve a claim that names it (the message of a `VolumeMismatch` Event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// The volume is being deleted.
    #[error("the volume is marked for deletion")]
    Deleting,
    /// The volume's capacity is smaller than the request, or unreadable.
    #[error("requested PV is too small")]
    TooSmall,
    /// The storage classes differ.
    #[error("storageClassName does not match")]
    Class,
    /// The volume modes differ.
    #[error("incompatible volumeMode")]
    VolumeMode,
    /// The volume lacks an access mode the claim asks for.
    #[error("incompatible accessMode")]
    AccessModes,
}

/// Whether `volume` offers at least `request` (a volume whose capacity cannot be read offers
/// nothing; a volume without one offers zero, as in Kubernetes).
fn large_enough(volume: &PersistentVolume, request: &Quantity) -> Option<Quantity> {
    let capacity = volume_capacity(volume).ok()?.unwrap_or_default();
    (capacity >= *request).then_some(capacity)
}

/// The checks every candidate passes, pre-bound or not: size, volume mode, access modes, not
/// being deleted.
fn fits(volume: &PersistentVolume, claim: &PersistentVolumeClaim, request: &Quantity) -> Option<Quantity> {
    let capacity = large_enough(volume, request)?;
    let ok = volume_volume_mode(volume) == claim_volume_mode(claim)
        && access_modes_satisfied(claim, volume)
        && volume.metadata.deletion_timestamp.is_none();
    ok.then_some(capacity)
}

/// The claim's request (zero when it asks for no storage).
fn request_of(claim: &PersistentVolumeClaim) -> Result<Quantity, InvalidClaim> {
    requested_storage(claim)
        .map(|q| q.unwrap_or_default())
        .map_err(|source| InvalidClaim::Request { claim: claim_key(claim), source })
}

/// The best volume for a claim that names none, among `volumes`:
///
/// - a volume bound or pre-bound to this claim ([`is_bound_to_claim`]: `claimRef` with its
///   namespace and name, and its uid unless the reference has none) wins at once, if it is
///   large enough, has the claim's volume mode and access modes and is not being deleted;
/// - otherwise, unless `delay_binding` (the class binds when a pod is scheduled), the smallest
///   `Available` volume without a `claimRef` that has the claim's storage class (`""` is "no
///   class"), volume mode, access modes (a superset), capacity at least the request, and
///   labels the claim's `selector` matches. Ties go to the first name.
///
/// Volumes `claimRef`'d to another claim are never chosen.
pub fn find_best_volume<'a>(
    claim: &PersistentVolumeClaim,
    volumes: &[&'a PersistentVolume],
    delay_binding: bool,
) -> Result<Option<&'a PersistentVolume>, InvalidClaim> {
    let request = request_of(claim)?;
    let selector = match claim.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        Some(s) => Some(
            LabelSelector::from_k8s(s, &FieldPath::new("spec").child("selector"))
                .map_err(|errors| InvalidClaim::Selector { claim: claim_key(claim), errors })?,
        ),
        None => None,
    };
    let class = claim_class(claim);
    let mut best: Option<(&PersistentVolume, Quantity)> = None;
    for &volume in volumes {
        if claim_ref(volume).is_some() && !is_bound_to_claim(volume, claim) {
            continue;
        }
        let Some(capacity) = fits(volume, claim, &request) else { continue };
        if is_bound_to_claim(volume, claim) {
            return Ok(Some(volume));
        }
        if delay_binding || volume_phase(volume) != Some(VOLUME_AVAILABLE) || volume_class(volume) != class {
            continue;
        }
        let empty = Default::default();
        let labels = volume.metadata.labels.as_ref().unwrap_or(&empty);
        if selector.as_ref().is_some_and(|s| !s.matches(labels)) {
            continue;
        }
        let better = match &best {
            None => true,
            Some((b, q)) => capacity < *q || capacity == *q && volume_name(volume) < volume_name(b),
        };
        if better {
            best = Some((volume, capacity));
        }
    }
    Ok(best.map(|(v, _)| v))
}

/// Whether `volume` can serve a claim that names it in `spec.volumeName`: not being deleted,
/// large enough, the same class and volume mode, the claim's access modes. The claim's
/// selector is not consulted (naming the volume overrides it, as in Kubernetes).
pub fn check_volume_satisfies_claim(
    volume: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Result<(), Mismatch> {
    if volume.metadata.deletion_timestamp.is_some() {
        return Err(Mismatch::Deleting);
    }
    let request = request_of(claim).map_err(|_| Mismatch::TooSmall)?;
    large_enough(volume, &request).ok_or(Mismatch::TooSmall)?;
    if volume_class(volume) != claim_class(claim) {
        return Err(Mismatch::Class);
    }
    if volume_volume_mode(volume) != claim_volume_mode(claim) {
        return Err(Mismatch::VolumeMode);
    }
    if !access_modes_satisfied(claim, volume) {
        return Err(Mismatch::AccessModes);
    }
    Ok(())
}
