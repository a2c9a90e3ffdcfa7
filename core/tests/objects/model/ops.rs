//! The steps of a case, how proptest generates them, and how each becomes a registry call.

use std::future::Future;
use std::time::Duration;

use flotilla_core::object::{DynamicObject, Resource, ResourceType};
use flotilla_core::patch::PatchType;
use flotilla_core::registry::{DeleteOptions, Registry, Subresource, WriteOptions};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::state::{Labels, Model, Outcome};

pub(crate) const NAMESPACES: [&str; 2] = ["ns-a", "ns-b"];
pub(crate) const NAMES: [&str; 3] = ["n0", "n1", "n2"];
pub(crate) const FINALIZERS: [&str; 2] = ["example.com/a", "example.com/b"];
pub(crate) const LABEL_KEYS: [&str; 2] = ["app", "tier"];
const LABEL_VALUES: [&str; 2] = ["a", "b"];
/// How long one registry call or watch event may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The kinds exercised: one without status, one with an immutable spec but for its images,
/// and one whose generation follows its spec and whose status is a subresource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    ConfigMap,
    Pod,
    Deployment,
}

impl Kind {
    pub(crate) const ALL: [Kind; 3] = [Kind::ConfigMap, Kind::Pod, Kind::Deployment];

    pub(crate) fn resource_type(self) -> ResourceType {
        match self {
            Kind::ConfigMap => ConfigMap::TYPE,
            Kind::Pod => Pod::TYPE,
            Kind::Deployment => Deployment::TYPE,
        }
    }

    /// The JSON pointer of the spec field steps change.
    pub(crate) fn value_path(self) -> &'static str {
        match self {
            Kind::ConfigMap => "/data/v",
            Kind::Pod => "/spec/containers/0/image",
            Kind::Deployment => "/spec/replicas",
        }
    }

    /// The spec field for value `v` (tagged images, so the pull policy default stays put).
    pub(crate) fn render(self, v: u8) -> Value {
        match self {
            Kind::ConfigMap => json!(format!("v{v}")),
            Kind::Pod => json!(format!("img:{v}")),
            Kind::Deployment => json!(v),
        }
    }

    /// The status a created object has.
    pub(crate) fn initial_status(self) -> Value {
        match self {
            Kind::Pod => json!({"phase": "Pending"}),
            Kind::ConfigMap | Kind::Deployment => Value::Null,
        }
    }

    /// A merge or strategic merge patch setting the spec field to `v`.
    fn value_patch(self, v: u8) -> Value {
        let r = self.render(v);
        match self {
            Kind::ConfigMap => json!({"data": {"v": r}}),
            // A merge patch replaces the whole list; defaults are then applied again.
            Kind::Pod => json!({"spec": {"containers": [{"name": "main", "image": r}]}}),
            Kind::Deployment => json!({"spec": {"replicas": r}}),
        }
    }

    /// A whole object, as a client would send it.
    pub(crate) fn body(self, name: &str, labels: &Labels, v: u8, finalizers: &[String]) -> DynamicObject {
        let mut o = match self {
            Kind::ConfigMap => json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"v": ""}}),
            Kind::Pod => json!({
                "apiVersion": "v1", "kind": "Pod",
                "spec": {"containers": [{"name": "main", "image": ""}]},
            }),
            Kind::Deployment => json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "main", "image": "busybox:1"}]},
                    },
                },
            }),
        };
        if let Some(slot) = o.pointer_mut(self.value_path()) {
            *slot = self.render(v);
        }
        let mut o: DynamicObject = serde_json::from_value(o).expect("test bodies are well-formed");
        o.metadata.name = Some(name.into());
        o.metadata.labels = (!labels.is_empty()).then(|| labels.clone());
        o.metadata.finalizers = (!finalizers.is_empty()).then(|| finalizers.to_vec());
        o
    }
}

/// The resourceVersion an update or patch names.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Rv {
    Current,
    /// One less than the current one: 409 Conflict.
    Stale,
    /// None: unconditional.
    Unset,
}

/// One operation; finalizers and labels by index into the constants above.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    CreateNamespace,
    Create {
        labels: Labels,
        value: u8,
        finalizers: Vec<usize>,
    },
    /// A whole-object update (deployments also send a status, which must be ignored).
    Update {
        rv: Rv,
        labels: Labels,
        value: u8,
        finalizers: Vec<usize>,
    },
    /// A deployment status update (its body also carries labels, which must be ignored).
    Status {
        rv: Rv,
        replicas: u8,
    },
    /// A merge patch of one label (`None` removes it), naming a resourceVersion or not.
    MergeLabel {
        rv: Rv,
        key: usize,
        value: Option<&'static str>,
    },
    MergeValue {
        value: u8,
    },
    JsonValue {
        value: u8,
    },
    StrategicValue {
        value: u8,
    },
    /// A merge patch replacing the finalizers (`null` when empty).
    MergeFinalizers {
        finalizers: Vec<usize>,
    },
    /// A strategic merge patch: finalizers merge as a set.
    StrategicAddFinalizer(usize),
    /// `$deleteFromPrimitiveList/finalizers`.
    StrategicRemoveFinalizer(usize),
    Delete,
}

#[derive(Clone, Debug)]
pub(crate) struct Step {
    pub(crate) kind: Kind,
    pub(crate) ns: usize,
    pub(crate) name: usize,
    pub(crate) op: Op,
    /// Address the n-th existing object instead (modulo their number), so that most steps
    /// meet an object; the model resolves it (`Model::resolve`).
    pub(crate) pick: Option<usize>,
}

fn labels() -> impl Strategy<Value = Labels> {
    (0..3usize, 0..3usize).prop_map(|(app, tier)| {
        [(0, app), (1, tier)]
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .map(|(k, v)| (LABEL_KEYS[k].to_string(), LABEL_VALUES[v - 1].to_string()))
            .collect()
    })
}

fn finalizers() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![3 => Just(vec![]), 2 => Just(vec![0]), 1 => Just(vec![1]), 1 => Just(vec![0, 1]), 1 => Just(vec![1, 0])]
}

fn rv() -> impl Strategy<Value = Rv> {
    prop_oneof![2 => Just(Rv::Current), 1 => Just(Rv::Stale), 1 => Just(Rv::Unset)]
}

fn op() -> impl Strategy<Value = Op> {
    let value = 0..3u8;
    let label_value = proptest::option::of(proptest::sample::select(LABEL_VALUES.to_vec()));
    prop_oneof![
        1 => Just(Op::CreateNamespace),
        6 => (labels(), value.clone(), finalizers())
            .prop_map(|(labels, value, finalizers)| Op::Create { labels, value, finalizers }),
        3 => (rv(), labels(), value.clone(), finalizers())
            .prop_map(|(rv, labels, value, finalizers)| Op::Update { rv, labels, value, finalizers }),
        2 => (rv(), 0..3u8).prop_map(|(rv, replicas)| Op::Status { rv, replicas }),
        3 => (rv(), 0..LABEL_KEYS.len(), label_value)
            .prop_map(|(rv, key, value)| Op::MergeLabel { rv, key, value }),
        1 => value.clone().prop_map(|value| Op::MergeValue { value }),
        1 => value.clone().prop_map(|value| Op::JsonValue { value }),
        1 => value.prop_map(|value| Op::StrategicValue { value }),
        2 => finalizers().prop_map(|finalizers| Op::MergeFinalizers { finalizers }),
        2 => (0..FINALIZERS.len()).prop_map(Op::StrategicAddFinalizer),
        2 => (0..FINALIZERS.len()).prop_map(Op::StrategicRemoveFinalizer),
        3 => Just(Op::Delete),
    ]
}

pub(crate) fn step() -> impl Strategy<Value = Step> {
    let ns = prop_oneof![3 => Just(0usize), 1 => Just(1usize)];
    let kind = proptest::sample::select(Kind::ALL.to_vec());
    (kind, ns, 0..NAMES.len(), op(), 0..16usize, 0..10u8).prop_map(|(kind, ns, name, op, n, roll)| {
        // Only deployments have a status the model follows.
        let kind = if matches!(op, Op::Status { .. }) { Kind::Deployment } else { kind };
        // Creates mostly take a fresh address; other steps mostly an existing object.
        let pick = (roll < if matches!(op, Op::Create { .. }) { 2 } else { 8 }).then_some(n);
        Step { kind, ns, name, op, pick }
    })
}

/// A namespace object.
pub(crate) fn namespace(name: &str) -> DynamicObject {
    let mut o = DynamicObject { api_version: "v1".into(), kind: "Namespace".into(), ..Default::default() };
    o.metadata.name = Some(name.into());
    o
}

/// Awaits a registry call, failing the case if it hangs.
pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(CALL_TIMEOUT, fut)
        .await
        .map_err(|_| format!("{what} did not answer within {CALL_TIMEOUT:?} (deadlock?)"))
}

fn outcome<T>(r: flotilla_core::registry::Result<T>, rv_of: impl Fn(&T) -> Outcome) -> Outcome {
    match r {
        Ok(v) => rv_of(&v),
        Err(e) => Outcome::Err { reason: e.reason(), code: e.code() },
    }
}

fn rv_of(o: &DynamicObject) -> i64 {
    o.resource_version().parse().unwrap_or(-1)
}

/// Performs `s` on the registry; returns its outcome and the uid of a created object.
pub(crate) async fn perform(r: &Registry, model: &Model, s: &Step) -> Result<(Outcome, String), String> {
    let (t, opts) = (s.kind.resource_type(), WriteOptions::default());
    let (ns, name) = (NAMESPACES[s.ns], NAMES[s.name]);
    let names = |f: &[usize]| f.iter().map(|i| FINALIZERS[*i].to_string()).collect::<Vec<_>>();
    let written = |w: &flotilla_core::registry::Written| Outcome::Ok { rv: rv_of(&w.object), gone: None };
    let patch = |ty: PatchType, body: Value| {
        let (r, opts) = (r.clone(), opts.clone());
        async move {
            let body = body.to_string();
            let res = r.patch(&t, Some(ns), name, ty, body.as_bytes(), Subresource::Main, &opts);
            within("patch", res).await.map(|res| outcome(res, written))
        }
    };
    let out = match &s.op {
        Op::CreateNamespace => {
            let res = r.create(&Namespace::TYPE, None, namespace(ns), &opts);
            outcome(within("create namespace", res).await?, written)
        }
        Op::Create { labels, value, finalizers } => {
            let o = s.kind.body(name, labels, *value, &names(finalizers));
            let res = within("create", r.create(&t, Some(ns), o, &opts)).await?;
            let uid = res.as_ref().map(|w| w.object.uid().to_string()).unwrap_or_default();
            return Ok((outcome(res, written), uid));
        }
        Op::Update { rv, labels, value, finalizers } => {
            let mut o = s.kind.body(name, labels, *value, &names(finalizers));
            o.metadata.resource_version = model.request_rv(s, *rv);
            if s.kind == Kind::Deployment {
                o.data.insert("status".into(), json!({"replicas": 42}));
            }
            outcome(
                within("update", r.update(&t, Some(ns), name, o, Subresource::Main, &opts)).await?,
                written,
            )
        }
        Op::Status { rv, replicas } => {
            let sneaky: Labels = [("sneaky".to_string(), "yes".to_string())].into();
            let mut o = s.kind.body(name, &sneaky, 0, &[]);
            o.metadata.resource_version = model.request_rv(s, *rv);
            o.data.insert("status".into(), json!({"replicas": replicas}));
            outcome(
                within("status", r.update(&t, Some(ns), name, o, Subresource::Status, &opts)).await?,
                written,
            )
        }
        Op::MergeLabel { rv, key, value } => {
            let mut meta = json!({"labels": {LABEL_KEYS[*key]: value}});
            if let Some(rv) = model.request_rv(s, *rv) {
                meta["resourceVersion"] = json!(rv);
            }
            patch(PatchType::Merge, json!({ "metadata": meta })).await?
        }
        Op::MergeValue { value } => patch(PatchType::Merge, s.kind.value_patch(*value)).await?,
        Op::StrategicValue { value } => patch(PatchType::StrategicMerge, s.kind.value_patch(*value)).await?,
        Op::JsonValue { value } => {
            let ops = json!([{"op": "replace", "path": s.kind.value_path(), "value": s.kind.render(*value)}]);
            patch(PatchType::Json, ops).await?
        }
        Op::MergeFinalizers { finalizers } => {
            let list = if finalizers.is_empty() { Value::Null } else { json!(names(finalizers)) };
            patch(PatchType::Merge, json!({"metadata": {"finalizers": list}})).await?
        }
        Op::StrategicAddFinalizer(f) => {
            patch(PatchType::StrategicMerge, json!({"metadata": {"finalizers": [FINALIZERS[*f]]}})).await?
        }
        Op::StrategicRemoveFinalizer(f) => {
            let body = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [FINALIZERS[*f]]}});
            patch(PatchType::StrategicMerge, body).await?
        }
        Op::Delete => {
            let res = within("delete", r.delete(&t, Some(ns), name, &DeleteOptions::default())).await?;
            outcome(res, |d| Outcome::Ok { rv: rv_of(&d.object), gone: Some(d.gone) })
        }
    };
    Ok((out, String::new()))
}
