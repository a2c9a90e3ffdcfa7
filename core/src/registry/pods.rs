//! Pod-specific operations: the `binding` subresource the scheduler uses.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::encoding::key;
use super::{Error, Registry, Result, error::qualified};
use crate::object::{DynamicObject, Resource};

impl Registry {
    /// Binds a pod to `node` (Kubernetes' `pods/binding`): sets `spec.nodeName` and the
    /// `PodScheduled` condition in one write. A pod already bound, or being deleted, is a
    /// 409 Conflict; a `uid` that does not match the pod's is a 409 as well.
    pub async fn bind(
        &self,
        namespace: &str,
        name: &str,
        node: &str,
        uid: Option<&str>,
    ) -> Result<DynamicObject> {
        let t = Pod::TYPE;
        if node.is_empty() {
            return Err(Error::BadRequest("binding target: node name is required".into()));
        }
        let conflict =
            |reason: String| Error::Conflict { resource: qualified(&t), name: name.into(), reason };
        let old = self.read_current(&t, namespace, name).await?;
        if uid.is_some_and(|u| u != old.uid()) {
            return Err(conflict(format!(
                "Precondition failed: UID in precondition: {}, UID in object meta: {}",
                uid.unwrap_or(""),
                old.uid()
            )));
        }
        if old.is_deleting() {
            return Err(conflict(format!("pod {name} is being deleted, cannot be assigned to a host")));
        }
        let spec = old.data.get("spec").cloned().unwrap_or(Value::Null);
        if let Some(current) = spec.get("nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            return Err(conflict(format!("pod {name} is already assigned to node \"{current}\"")));
        }
        let mut new = old.clone();
        if let Some(Value::Object(spec)) = new.data.get_mut("spec") {
            spec.insert("nodeName".into(), Value::String(node.into()));
        }
        let now = self.now();
        let status = new.data.entry("status").or_insert_with(|| json!({}));
        if let Value::Object(status) = status {
            let conditions = status.entry("conditions").or_insert_with(|| json!([]));
            if let Value::Array(list) = conditions {
                list.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
                list.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                                 "lastTransitionTime": serde_json::to_value(&now).unwrap_or(Value::Null)}));
            }
        }
        let k = key(&t, namespace, name);
        let old_rev: i64 = old.resource_version().parse().unwrap_or(0);
        let written = self.write_if_unchanged(k, old_rev, Some(&new)).await?;
        let Some(rev) = written else { return Err(Error::conflict(&t, name)) };
        new.metadata.resource_version = Some(rev.to_string());
        Ok(new)
    }
}
