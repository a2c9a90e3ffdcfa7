//! The Events the controller writes about a ReplicaSet, straight through the client: one
//! function, [`record`], so a shared aggregating recorder can replace it in one place.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::CONTROLLER_NAME;
use crate::client::{Api, Client};
use crate::object::Resource;

/// An Event's type: `Normal` or `Warning`.
pub(crate) const NORMAL: &str = "Normal";
/// See [`NORMAL`].
pub(crate) const WARNING: &str = "Warning";

/// The Event about `rs` at `now` (seconds precision, as Kubernetes stores times).
pub(crate) fn event(rs: &ReplicaSet, type_: &str, reason: &str, message: String, now: Timestamp) -> Event {
    let m = &rs.metadata;
    let name = m.name.clone().unwrap_or_default();
    let now = Time(Timestamp::from_second(now.as_second()).unwrap_or(now));
    Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}.")),
            namespace: m.namespace.clone(),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some(ReplicaSet::TYPE.api_version()),
            kind: Some(ReplicaSet::TYPE.kind.into()),
            namespace: m.namespace.clone(),
            name: Some(name),
            uid: m.uid.clone(),
            resource_version: m.resource_version.clone(),
            field_path: None,
        },
        type_: Some(type_.into()),
        reason: Some(reason.into()),
        message: Some(message),
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        source: Some(EventSource { component: Some(CONTROLLER_NAME.into()), host: None }),
        reporting_component: Some(CONTROLLER_NAME.into()),
        ..Default::default()
    }
}

/// Writes an Event about `rs`. Events are advice: a failure is logged, never returned.
pub(crate) async fn record(
    client: &Arc<dyn Client>,
    rs: &ReplicaSet,
    type_: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) {
    let namespace = rs.metadata.namespace.as_deref().unwrap_or("default");
    let api = Api::<Event>::namespaced(client.clone(), namespace);
    if let Err(error) = api.create(&event(rs, type_, reason, message, now)).await {
        tracing::warn!(
            replicaset = %format!("{namespace}/{}", rs.metadata.name.as_deref().unwrap_or("")),
            reason,
            %error,
            "cannot write event"
        );
    }
}
