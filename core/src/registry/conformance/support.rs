//! Helpers of the registry conformance cases.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::object::{DynamicObject, Kind, Resource, ResourceType};
use crate::registry::{Registry, Result, WatchEvent, WatchStream, WriteOptions};

/// How long one registry call may take inside a case.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A user-defined kind, registered next to the built-in ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Game {
    /// `games.example.com/v1`.
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    /// `Game`.
    #[serde(default)]
    pub kind: String,
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The desired state.
    #[serde(default)]
    pub spec: GameSpec,
}

/// A game's spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GameSpec {
    /// Number of players; must be at least 1.
    #[serde(default)]
    pub players: i32,
}

impl Resource for Game {
    const TYPE: ResourceType = ResourceType {
        group: "games.example.com",
        version: "v1",
        kind: "Game",
        plural: "games",
        singular: "game",
        namespaced: true,
        short_names: &["gm"],
        has_status: false,
    };

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl Kind for Game {
    fn validate(&self, _old: Option<&Self>) -> crate::validation::ErrorList {
        let mut errs = crate::validation::ErrorList::default();
        if self.spec.players < 1 {
            errs.push(crate::validation::FieldError::invalid(
                crate::validation::FieldPath::new("spec").child("players"),
                Value::from(self.spec.players),
                "must be at least 1",
            ));
        }
        errs
    }

    fn selectable_fields(&self) -> Vec<(&'static str, String)> {
        vec![("spec.players", self.spec.players.to_string())]
    }

    fn selectable_field_names() -> &'static [&'static str] {
        &["spec.players"]
    }
}

/// Awaits a registry call under a timeout naming it.
pub(crate) async fn call<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not answer within {CALL_TIMEOUT:?}"),
    }
}

/// The next watch event, under a timeout.
pub(crate) async fn next(w: &mut WatchStream) -> WatchEvent {
    call("watch event", w.next_event()).await.expect("the watch is still open")
}

/// An object from JSON.
pub(crate) fn obj(v: Value) -> DynamicObject {
    serde_json::from_value(v).expect("test objects are well-formed")
}

/// A pod with one busybox container per name.
pub(crate) fn pod(name: &str, labels: Value, containers: &[&str]) -> DynamicObject {
    let containers: Vec<Value> = containers.iter().map(|c| json!({"name": c, "image": "busybox"})).collect();
    obj(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": containers},
    }))
}

/// Creates namespace `name`.
pub(crate) async fn namespace(r: &Registry, name: &str) {
    let ns = obj(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}));
    call("create namespace", r.create(&Namespace::TYPE, None, ns, &WriteOptions::default()))
        .await
        .expect("namespace created");
}

/// Creates a pod in `ns`, returning it as stored.
pub(crate) async fn create_pod(r: &Registry, ns: &str, p: DynamicObject) -> Result<DynamicObject> {
    call("create pod", r.create(&Pod::TYPE, Some(ns), p, &WriteOptions::default())).await.map(|w| w.object)
}

/// The resourceVersion of `o` as a number.
pub(crate) fn rv(o: &DynamicObject) -> i64 {
    o.resource_version().parse().expect("resourceVersions are numbers")
}
