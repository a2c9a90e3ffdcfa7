//! Server-side Table output (`meta.k8s.io/v1` Table), what `kubectl get` prints.

use flotilla_core::object::{DynamicObject, KindStrategy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Map, Value, json};

use super::respond::IncludeObject;

/// The list metadata a Table carries.
#[derive(Clone, Debug, Default)]
pub(crate) struct ListMeta {
    pub(crate) resource_version: String,
    pub(crate) continue_token: Option<String>,
    pub(crate) remaining_item_count: Option<i64>,
}

impl ListMeta {
    /// As JSON, leaving out what is unset.
    pub(crate) fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("resourceVersion".into(), self.resource_version.clone().into());
        if let Some(c) = &self.continue_token {
            m.insert("continue".into(), c.clone().into());
        }
        if let Some(n) = self.remaining_item_count {
            m.insert("remainingItemCount".into(), n.into());
        }
        Value::Object(m)
    }
}

/// A Table of `objects` with the kind's columns, seen at `now`.
pub(crate) fn table<'a>(
    strategy: &dyn KindStrategy,
    objects: impl IntoIterator<Item = &'a DynamicObject>,
    meta: &ListMeta,
    include: IncludeObject,
    now: &Time,
) -> Value {
    let columns: Vec<Value> = strategy
        .columns()
        .iter()
        .map(|c| {
            let format = if c.name == "Name" { "name" } else { "" };
            json!({
                "name": c.name,
                "type": c.type_,
                "format": format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .into_iter()
        .map(|o| {
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(strategy.row(o, now)));
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row.insert("object".into(), partial_metadata(o));
                }
                IncludeObject::Object => {
                    row.insert("object".into(), serde_json::to_value(o).unwrap_or(Value::Null));
                }
            }
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta.to_json(),
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// The object as a `PartialObjectMetadata` (its metadata only).
fn partial_metadata(o: &DynamicObject) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": serde_json::to_value(&o.metadata).unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use flotilla_core::object::{KindRegistry, Resource};
    use k8s_openapi::api::core::v1::Pod;

    use super::*;

    #[test]
    fn pod_tables_have_kubectls_columns() {
        let kinds = KindRegistry::builtin();
        let s = kinds.get("", "pods").expect("pods are built in");
        let pod: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        }))
        .expect("a pod");
        let now = Time("2026-01-01T00:05:00Z".parse().expect("a time"));
        let meta = ListMeta { resource_version: "7".into(), ..Default::default() };
        let t = table(s.as_ref(), [&pod], &meta, IncludeObject::Metadata, &now);
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(&names[..6], ["Name", "Ready", "Status", "Restarts", "Age", "IP"]);
        assert_eq!(t["rows"][0]["cells"][0], "web");
        assert_eq!(t["rows"][0]["cells"][4], "5m");
        assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "web");
        assert_eq!(t["metadata"]["resourceVersion"], "7");
        assert_eq!(Pod::TYPE.plural, "pods");
    }
}
