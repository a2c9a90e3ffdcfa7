//! The binding cycle's volume work (kube-scheduler's `BindPodVolumes`): write the reserved
//! decisions through the client, then wait for the PersistentVolume controller to bind
//! every claim.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use serde_json::json;

use super::PodVolumes;
use crate::client::{Api, Client};
use crate::controllers::volume::facts::{
    annotation, claim_key, claim_ref, claim_volume_name, is_bound_to_claim, reference_to, set_annotation,
    volume_name,
};
use crate::controllers::volume::{ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER, ANN_SELECTED_NODE};
use crate::patch::PatchType;

/// Whether the controller finished binding the claim: `spec.volumeName` and the
/// `pv.kubernetes.io/bind-completed` annotation.
pub(super) fn fully_bound(claim: &PersistentVolumeClaim) -> bool {
    claim_volume_name(claim).is_some() && annotation(&claim.metadata, ANN_BIND_COMPLETED).is_some()
}

/// The APIs the binding cycle uses for one pod.
struct Apis {
    pods: Api<Pod>,
    claims: Api<PersistentVolumeClaim>,
    volumes: Api<PersistentVolume>,
}

fn name_of(claim: &PersistentVolumeClaim) -> &str {
    claim.metadata.name.as_deref().unwrap_or("")
}

/// Writes `reserved` for `pod` on `node` and waits, polling every `poll`, until every claim
/// is bound; gives up after `timeout`, or at once when a binding is undone (a volume's
/// `claimRef` cleared, a claim's selected node removed: the provisioner gave up), or the pod
/// or a claim is gone. The error says why.
pub(super) async fn bind_pod_volumes(
    client: &Arc<dyn Client>,
    pod: &Pod,
    node: &str,
    reserved: &PodVolumes,
    timeout: Duration,
    poll: Duration,
) -> Result<(), String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
    let apis = Apis {
        pods: Api::namespaced(client.clone(), namespace),
        claims: Api::namespaced(client.clone(), namespace),
        volumes: Api::all(client.clone()),
    };
    write(&apis, node, reserved).await?;
    let wait = async {
        loop {
            if check(&apis, pod, node, reserved).await? {
                return Ok(());
            }
            tokio::time::sleep(poll).await;
        }
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(result) => result,
        Err(_) => {
            Err(format!("binding volumes: timed out after {timeout:?} waiting for the claims to be bound"))
        }
    }
}

/// Pre-binds each chosen volume to its claim (`claimRef` with the claim's uid, as
/// Kubernetes' binder does; the controller completes the binding) and annotates each claim
/// to provision with the node. Reads each object first, so a volume taken meanwhile fails
/// the binding instead of being stolen, and a write already done is not repeated.
async fn write(apis: &Apis, node: &str, reserved: &PodVolumes) -> Result<(), String> {
    for (claim, chosen) in &reserved.bindings {
        let name = volume_name(chosen);
        let mut volume = apis.volumes.get(name).await.map_err(|e| format!("reading volume {name}: {e}"))?;
        let has_uid = claim_ref(&volume).and_then(|r| r.uid.as_deref()).is_some_and(|u| !u.is_empty());
        if is_bound_to_claim(&volume, claim) && has_uid {
            continue;
        }
        if claim_ref(&volume).is_some() && !is_bound_to_claim(&volume, claim) {
            return Err(format!("volume {name} is already bound to another claim than {}", claim_key(claim)));
        }
        volume.spec.get_or_insert_with(Default::default).claim_ref = Some(reference_to(claim));
        set_annotation(&mut volume.metadata, ANN_BOUND_BY_CONTROLLER, "yes");
        apis.volumes
            .replace(name, &volume)
            .await
            .map_err(|e| format!("binding volume {name} to claim {}: {e}", claim_key(claim)))?;
        tracing::debug!(volume = name, claim = %claim_key(claim), "volume pre-bound for the scheduled pod");
    }
    for claim in &reserved.provisions {
        let name = name_of(claim);
        let current =
            apis.claims.get(name).await.map_err(|e| format!("reading claim {}: {e}", claim_key(claim)))?;
        match annotation(&current.metadata, ANN_SELECTED_NODE) {
            Some(n) if n == node => continue,
            Some(other) => {
                return Err(format!("claim {} already has selected node {other}", claim_key(claim)));
            }
            None => {}
        }
        let patch = json!({"metadata": {"annotations": {ANN_SELECTED_NODE: node}}});
        apis.claims
            .patch(name, PatchType::Merge, &patch)
            .await
            .map_err(|e| format!("selecting node {node} for claim {}: {e}", claim_key(claim)))?;
        tracing::debug!(claim = %claim_key(claim), node, "node selected for provisioning");
    }
    Ok(())
}

/// Whether every claim is bound; an error when the binding cannot complete. A failed read is
/// taken as "not yet" (the next poll reads again, until the timeout).
async fn check(apis: &Apis, pod: &Pod, node: &str, reserved: &PodVolumes) -> Result<bool, String> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    match apis.pods.get_opt(pod_name).await {
        Ok(Some(p)) if p.metadata.uid == pod.metadata.uid && p.metadata.deletion_timestamp.is_none() => {}
        Ok(_) => return Err("pod does not exist any more (or is being deleted)".to_string()),
        Err(_) => return Ok(false),
    }
    for (claim, chosen) in &reserved.bindings {
        let name = volume_name(chosen);
        let volume = match apis.volumes.get_opt(name).await {
            Ok(Some(v)) => v,
            Ok(None) => return Err(format!("volume {name} is gone")),
            Err(_) => return Ok(false),
        };
        let has_uid = claim_ref(&volume).and_then(|r| r.uid.as_deref()).is_some_and(|u| !u.is_empty());
        if !is_bound_to_claim(&volume, claim) || !has_uid {
            return Err(format!("claimRef got reset for volume {name}"));
        }
        if !claim_bound(apis, claim).await? {
            return Ok(false);
        }
    }
    for claim in &reserved.provisions {
        let current = match apis.claims.get_opt(name_of(claim)).await {
            Ok(Some(c)) => c,
            Ok(None) => return Err(format!("claim {} is gone", claim_key(claim))),
            Err(_) => return Ok(false),
        };
        if annotation(&current.metadata, ANN_SELECTED_NODE) != Some(node) {
            // The provisioner takes the annotation away when it cannot make the volume.
            return Err(format!("provisioning failed for claim {}", claim_key(claim)));
        }
        if !fully_bound(&current) {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn claim_bound(apis: &Apis, claim: &PersistentVolumeClaim) -> Result<bool, String> {
    match apis.claims.get_opt(name_of(claim)).await {
        Ok(Some(c)) if c.metadata.uid == claim.metadata.uid => Ok(fully_bound(&c)),
        Ok(_) => Err(format!("claim {} is gone", claim_key(claim))),
        Err(_) => Ok(false),
    }
}
