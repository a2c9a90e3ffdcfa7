//! The `FieldsV1` encoding of a [`FieldSet`], as `metadata.managedFields` carries it.
//!
//! Each trie node is a JSON object whose keys are path elements: `f:<field>`,
//! `k:<key fields as a JSON object>`, `v:<value as JSON>`, `i:<index>`; `"."` in a node says
//! that the node is itself a member as well as a parent. A key whose type letter is unknown is
//! skipped, as structured-merge-diff does, so newer element types do not break old readers.

use serde_json::{Map, Value};

use super::path::PathElement;
use super::set::FieldSet;
use super::{ApplyError, Result};

impl FieldSet {
    /// The set in Kubernetes' `FieldsV1` form, such as
    /// `{"f:spec":{"f:containers":{"k:{\"name\":\"c\"}":{".":{},"f:image":{}}}}}`.
    ///
    /// ```
    /// use flotilla_core::apply::{FieldSet, Path};
    ///
    /// let set: FieldSet = [Path::fields(["spec", "replicas"])].into_iter().collect();
    /// let json = set.to_fields_v1();
    /// assert_eq!(json.to_string(), r#"{"f:spec":{"f:replicas":{}}}"#);
    /// assert_eq!(FieldSet::from_fields_v1(&json)?, set);
    /// # Ok::<(), flotilla_core::apply::ApplyError>(())
    /// ```
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(encode(self, false))
    }

    /// Decodes a `FieldsV1` value; the error names the path of the malformed key.
    pub fn from_fields_v1(fields: &Value) -> Result<FieldSet> {
        let Value::Object(node) = fields else {
            return Err(ApplyError::FieldsV1 { at: String::new(), reason: "not a JSON object".into() });
        };
        Ok(decode(node, &mut String::new())?.0)
    }
}

/// Encodes one node; `is_member` adds the `"."` mark.
fn encode(set: &FieldSet, is_member: bool) -> Map<String, Value> {
    let mut node = Map::new();
    if is_member && !set.is_empty() {
        node.insert(".".to_owned(), Value::Object(Map::new()));
    }
    for member in set.members() {
        if !set.children().contains_key(member) {
            node.insert(encode_element(member), Value::Object(Map::new()));
        }
    }
    for (element, child) in set.children() {
        node.insert(encode_element(element), Value::Object(encode(child, set.members().contains(element))));
    }
    node
}

/// The key of one element.
pub(crate) fn encode_element(element: &PathElement) -> String {
    match element {
        PathElement::Field(name) => format!("f:{name}"),
        PathElement::Key(fields) => {
            let body: Vec<String> = fields
                .iter()
                .map(|(name, value)| format!("{}:{value}", Value::String(name.clone())))
                .collect();
            format!("k:{{{}}}", body.join(","))
        }
        PathElement::Value(value) => format!("v:{value}"),
        PathElement::Index(index) => format!("i:{index}"),
    }
}

/// Decodes one node: its sub-trie, and whether the node itself is a member (it says `"."`, or
/// it is empty).
fn decode(node: &Map<String, Value>, at: &mut String) -> Result<(FieldSet, bool)> {
    let mut is_member = false;
    let mut members = std::collections::BTreeSet::new();
    let mut children = std::collections::BTreeMap::new();
    for (key, value) in node {
        if key == "." {
            is_member = true;
            continue;
        }
        let Some(element) = decode_element(key, at)? else {
            continue;
        };
        let Value::Object(child) = value else {
            return Err(ApplyError::FieldsV1 {
                at: format!("{at}{element}"),
                reason: "not a JSON object".into(),
            });
        };
        let len = at.len();
        at.push_str(&element.to_string());
        let (grandchildren, child_is_member) = decode(child, at)?;
        at.truncate(len);
        if child_is_member {
            members.insert(element.clone());
        }
        if !grandchildren.is_empty() {
            children.insert(element, grandchildren);
        }
    }
    let set = FieldSet::from_parts(members, children);
    let is_member = is_member || set.is_empty();
    Ok((set, is_member))
}

/// Decodes one key; `None` for an element type this code does not know.
pub(crate) fn decode_element(key: &str, at: &str) -> Result<Option<PathElement>> {
    let bad = |reason: String| ApplyError::FieldsV1 { at: at.to_owned(), reason };
    let (kind, rest) = match key.split_once(':') {
        Some((kind, rest)) if kind.len() == 1 => (kind, rest),
        _ => return Err(bad(format!("key {key:?} is not <type>:<value>"))),
    };
    let json = |what: &str| -> Result<Value> {
        serde_json::from_str(rest).map_err(|e| bad(format!("{what} key {key:?} is not JSON: {e}")))
    };
    Ok(Some(match kind {
        "f" => PathElement::Field(rest.to_owned()),
        "v" => PathElement::Value(json("value")?),
        "k" => match json("list item")? {
            Value::Object(fields) => PathElement::key(fields),
            _ => return Err(bad(format!("list item key {key:?} is not a JSON object"))),
        },
        "i" => PathElement::Index(rest.parse().map_err(|e| bad(format!("index key {key:?}: {e}")))?),
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::apply::Path;
    use crate::apply::set::tests::arb_set;

    /// The shape of a Deployment's managedFields after `kubectl apply --server-side` of a
    /// manifest with a label, two containers (one with a port and env) and a finalizer,
    /// written out by hand in Kubernetes' form.
    const KUBECTL_SSA: &str = r#"{
        "f:metadata": {
            "f:finalizers": {"v:\"example.com/cleanup\"": {}},
            "f:labels": {"f:app": {}}
        },
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:containers": {
                        "k:{\"name\":\"nginx\"}": {
                            ".": {},
                            "f:env": {"k:{\"name\":\"MODE\"}": {".": {}, "f:name": {}, "f:value": {}}},
                            "f:image": {},
                            "f:name": {},
                            "f:ports": {
                                "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                                    ".": {}, "f:containerPort": {}, "f:protocol": {}
                                }
                            }
                        },
                        "k:{\"name\":\"sidecar\"}": {".": {}, "f:image": {}, "f:name": {}}
                    },
                    "f:tolerations": {}
                }
            }
        }
    }"#;

    #[test]
    fn decodes_kubectl_managed_fields_and_encodes_them_back() {
        let fields: Value = serde_json::from_str(KUBECTL_SSA).expect("fixture is JSON");
        let set = FieldSet::from_fields_v1(&fields).expect("fixture decodes");
        let nginx = Path::fields(["spec", "template", "spec", "containers"])
            .child(PathElement::key([("name", json!("nginx"))]));
        let port = nginx
            .clone()
            .child(PathElement::field("ports"))
            .child(PathElement::key([("containerPort", json!(80)), ("protocol", json!("TCP"))]));
        assert!(set.contains(nginx.elements()));
        assert!(set.contains(nginx.clone().child(PathElement::field("image")).elements()));
        assert!(set.contains(port.clone().child(PathElement::field("protocol")).elements()));
        assert!(set.contains(port.elements()));
        assert!(!set.contains(Path::fields(["spec", "template"]).elements()));
        assert!(
            set.contains(
                Path::fields(["metadata", "finalizers"])
                    .child(PathElement::Value(json!("example.com/cleanup")))
                    .elements()
            )
        );
        assert_eq!(set.len(), 18);
        assert_eq!(set.to_fields_v1(), fields);
        assert_eq!(
            port.to_string(),
            r#".spec.template.spec.containers[name="nginx"].ports[containerPort=80,protocol="TCP"]"#
        );
    }

    #[test]
    fn encodes_members_that_are_also_parents_with_a_dot() {
        let mut set = FieldSet::new();
        set.insert(Path::fields(["metadata", "labels"]).elements());
        set.insert(Path::fields(["metadata", "labels", "app"]).elements());
        set.insert(Path::fields(["spec"]).child(PathElement::Index(2)).elements());
        assert_eq!(
            set.to_fields_v1(),
            json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:spec": {"i:2": {}}})
        );
    }

    #[test]
    fn a_lone_dot_is_a_plain_member_and_unknown_types_are_skipped() {
        let set =
            FieldSet::from_fields_v1(&json!({"f:a": {".": {}}, "x:future": {"f:b": {}}})).expect("decodes");
        assert_eq!(set, [Path::fields(["a"])].into_iter().collect());
        assert!(FieldSet::from_fields_v1(&json!({})).expect("decodes").is_empty());
    }

    #[test]
    fn malformed_keys_name_where_they_are() {
        let err = |v: Value| FieldSet::from_fields_v1(&v).expect_err("malformed").to_string();
        assert_eq!(
            err(json!({"f:spec": {"k:{name}": {}}})),
            r#"invalid fieldsV1 at .spec: list item key "k:{name}" is not JSON: key must be a string at line 1 column 2"#
        );
        assert!(err(json!({"f:spec": {"i:x": {}}})).starts_with("invalid fieldsV1 at .spec: index key"));
        assert!(err(json!({"f:spec": {"k:[1]": {}}})).contains("is not a JSON object"));
        assert!(err(json!({"spec": {}})).contains(r#"key "spec" is not <type>:<value>"#));
        assert_eq!(err(json!({"f:spec": 1})), "invalid fieldsV1 at .spec: not a JSON object");
        assert_eq!(err(json!([])), "invalid fieldsV1 at : not a JSON object");
    }

    proptest! {
        #[test]
        fn fields_v1_round_trips(set in arb_set()) {
            let encoded = set.to_fields_v1();
            prop_assert_eq!(FieldSet::from_fields_v1(&encoded).expect("own encoding decodes"), set.clone());
            // Through text, as it is stored.
            let text = serde_json::to_string(&encoded).expect("serializes");
            let parsed: Value = serde_json::from_str(&text).expect("parses");
            prop_assert_eq!(FieldSet::from_fields_v1(&parsed).expect("decodes"), set);
        }
    }
}
