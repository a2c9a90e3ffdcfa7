//! What the controller runtime needs to wire the endpoints controllers: the cache indexes
//! their reconcilers read, and which Services to reconcile when a pod, an Endpoints object or
//! an EndpointSlice changes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::pods;
use super::slices::{is_managed_slice, service_name_of};
use crate::client::{Cache, IndexFn};
use crate::controller::ObjectKey;
use crate::controllers::util;
use crate::object::Resource;

/// The name of the by-namespace index ([`Cache::by_namespace`]) of the Service and Pod
/// caches.
pub const NAMESPACE_INDEX: &str = "namespace";

/// The name of the EndpointSlice cache index filing managed slices under their Service's
/// `namespace/name` ([`slice_service_index`]).
pub const SLICE_SERVICE_INDEX: &str = "endpointslice-service";

/// Adds `index` to `cache` unless it has one of that name: a reconciler or trigger never
/// reads an index nobody built (which would look like an empty result).
pub(crate) fn ensure_index<K: Resource>(cache: &Cache<K>, (name, f): (String, IndexFn<K>)) {
    if !cache.has_index(&name) {
        cache.add_index(&name, f);
    }
}

/// The indexes of the Service cache: by namespace (for [`pod_triggers`]).
pub fn service_indexes() -> BTreeMap<String, IndexFn<Service>> {
    BTreeMap::from([Cache::<Service>::by_namespace()])
}

/// The indexes of the Pod cache: by namespace (a Service's pods are looked up there).
pub fn pod_indexes() -> BTreeMap<String, IndexFn<Pod>> {
    BTreeMap::from([Cache::<Pod>::by_namespace()])
}

/// The indexes of the EndpointSlice cache: [`slice_service_index`].
pub fn slice_indexes() -> BTreeMap<String, IndexFn<EndpointSlice>> {
    BTreeMap::from([slice_service_index()])
}

/// Files each slice managed by the EndpointSlice controller under `namespace/service`.
pub fn slice_service_index() -> (String, IndexFn<EndpointSlice>) {
    (
        SLICE_SERVICE_INDEX.to_string(),
        Arc::new(|s: &EndpointSlice| slice_service_key(s).into_iter().collect()),
    )
}

/// The cache key of the Service a managed slice belongs to.
fn slice_service_key(slice: &EndpointSlice) -> Option<String> {
    if !is_managed_slice(slice) {
        return None;
    }
    let ns = slice.metadata.namespace.as_deref().filter(|n| !n.is_empty())?;
    Some(ObjectKey::namespaced(ns, service_name_of(slice)?).cache_key())
}

/// What about a pod its endpoints show: a change elsewhere (an annotation, a status message)
/// is not worth a reconcile.
#[derive(PartialEq)]
struct EndpointView<'a> {
    uid: Option<&'a str>,
    deleting: bool,
    terminal: bool,
    ready: bool,
    ips: Vec<&'a str>,
    node: Option<&'a str>,
    hostname: Option<&'a str>,
    subdomain: Option<&'a str>,
    ports: Vec<(Option<&'a str>, i32, Option<&'a str>)>,
}

fn endpoint_view(pod: &Pod) -> EndpointView<'_> {
    let spec = pod.spec.as_ref();
    let containers =
        spec.into_iter().flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()));
    EndpointView {
        uid: pod.metadata.uid.as_deref(),
        deleting: util::is_deleting(&pod.metadata),
        terminal: pods::is_pod_terminal(pod),
        ready: util::is_pod_ready(pod),
        ips: pods::pod_ips(pod),
        node: spec.and_then(|s| s.node_name.as_deref()),
        hostname: spec.and_then(|s| s.hostname.as_deref()),
        subdomain: spec.and_then(|s| s.subdomain.as_deref()),
        ports: containers
            .flat_map(|c| c.ports.iter().flatten())
            .map(|p| (p.name.as_deref(), p.container_port, p.protocol.as_deref()))
            .collect(),
    }
}

/// The Services of the pod's namespace whose selector selects it.
fn memberships(services: &Cache<Service>, pod: &Pod) -> BTreeSet<ObjectKey> {
    let Some(ns) = pod.metadata.namespace.as_deref() else { return BTreeSet::new() };
    services
        .indexed(NAMESPACE_INDEX, ns)
        .iter()
        .filter(|s| pods::selector_of(s).is_some_and(|sel| pods::selects(sel, pod.metadata.labels.as_ref())))
        .map(|s| ObjectKey::of(s.as_ref()))
        .collect()
}

/// The Services to reconcile when a pod changes from `old` to `new` (`None`: created, or
/// deleted): every Service of its namespace selecting it before or after. A change that
/// neither moves the pod between Services nor shows in its endpoints reconciles nothing; a
/// label change that does not show in its endpoints reconciles only the Services it joined
/// or left. Uses (and adds if missing) the Service cache's [`NAMESPACE_INDEX`].
pub fn pod_triggers(services: &Cache<Service>, old: Option<&Pod>, new: Option<&Pod>) -> Vec<ObjectKey> {
    ensure_index(services, Cache::<Service>::by_namespace());
    let (view_changed, labels_changed) = match (old, new) {
        (Some(o), Some(n)) => (endpoint_view(o) != endpoint_view(n), o.metadata.labels != n.metadata.labels),
        _ => (true, true),
    };
    if !view_changed && !labels_changed {
        return Vec::new();
    }
    let before = old.map(|p| memberships(services, p)).unwrap_or_default();
    let after = new.map(|p| memberships(services, p)).unwrap_or_default();
    if view_changed {
        before.union(&after).cloned().collect()
    } else {
        before.symmetric_difference(&after).cloned().collect()
    }
}

/// The Service to reconcile when an Endpoints object changes: the one of the same name (so a
/// deleted or edited Endpoints object is rewritten).
pub fn endpoints_triggers(endpoints: &Endpoints) -> Vec<ObjectKey> {
    vec![ObjectKey::of(endpoints)]
}

/// The Service to reconcile when an EndpointSlice changes: the one it belongs to, if this
/// controller manages it.
pub fn endpoint_slice_triggers(slice: &EndpointSlice) -> Vec<ObjectKey> {
    let ns = slice.metadata.namespace.as_deref().filter(|n| !n.is_empty());
    match (is_managed_slice(slice), ns, service_name_of(slice)) {
        (true, Some(ns), Some(service)) => vec![ObjectKey::namespaced(ns, service)],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::pods::testing::{pod, service};
    use super::super::slices::{ENDPOINTSLICE_CONTROLLER_NAME, SERVICE_NAME_LABEL, SLICE_MANAGED_BY_LABEL};
    use super::*;
    use crate::client::WatcherEvent;

    fn services(list: Vec<Service>) -> Cache<Service> {
        // No index: pod_triggers adds the one it needs.
        let cache = Cache::default();
        cache.apply(&WatcherEvent::Init);
        for s in list {
            cache.apply(&WatcherEvent::InitApply(s));
        }
        cache.apply(&WatcherEvent::InitDone);
        cache
    }

    fn names(keys: Vec<ObjectKey>) -> Vec<String> {
        keys.into_iter().map(|k| k.to_string()).collect()
    }

    fn relabel(p: &Pod, app: &str) -> Pod {
        let mut p = p.clone();
        p.metadata.labels = Some(BTreeMap::from([("app".to_string(), app.to_string())]));
        p
    }

    #[test]
    fn pods_trigger_the_services_selecting_them_before_or_after() {
        let mut other_ns = service("web", "web", json!([{"port": 80}]));
        other_ns.metadata.namespace = Some("elsewhere".into());
        let cache = services(vec![
            service("web", "web", json!([{"port": 80}])),
            service("web2", "web", json!([{"port": 80}])),
            service("db", "db", json!([{"port": 5432}])),
            other_ns,
        ]);
        let p = pod("a", "web", "10.0.0.1", true);
        assert_eq!(names(pod_triggers(&cache, None, Some(&p))), ["ns/web", "ns/web2"]);
        assert_eq!(names(pod_triggers(&cache, Some(&p), None)), ["ns/web", "ns/web2"]);
        // Moving from web to db without other changes: both sides of the move.
        let moved = relabel(&p, "db");
        assert_eq!(names(pod_triggers(&cache, Some(&p), Some(&moved))), ["ns/db", "ns/web", "ns/web2"]);
        // A change its endpoints do not show: nothing.
        let mut annotated = p.clone();
        annotated.metadata.annotations = Some(BTreeMap::from([("a".to_string(), "b".to_string())]));
        assert!(pod_triggers(&cache, Some(&p), Some(&annotated)).is_empty());
        // Becoming ready: the services it is in.
        let not_ready = pod("a", "web", "10.0.0.1", false);
        assert_eq!(names(pod_triggers(&cache, Some(&not_ready), Some(&p))), ["ns/web", "ns/web2"]);
    }

    #[test]
    fn a_label_change_within_the_same_services_triggers_nothing() {
        let cache = services(vec![service("web", "web", json!([{"port": 80}]))]);
        let p = pod("a", "web", "10.0.0.1", true);
        let mut more = p.clone();
        more.metadata.labels.as_mut().expect("labels").insert("tier".into(), "front".into());
        assert!(pod_triggers(&cache, Some(&p), Some(&more)).is_empty());
    }

    #[test]
    fn endpoints_and_managed_slices_map_to_their_service() {
        let ep: Endpoints = serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "ns"}}))
            .expect("endpoints");
        assert_eq!(names(endpoints_triggers(&ep)), ["ns/web"]);
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "ns", "labels": {
                SERVICE_NAME_LABEL: "web", SLICE_MANAGED_BY_LABEL: ENDPOINTSLICE_CONTROLLER_NAME}},
            "addressType": "IPv4", "endpoints": []}))
        .expect("slice");
        assert_eq!(names(endpoint_slice_triggers(&slice)), ["ns/web"]);
        assert_eq!(slice_service_key(&slice).as_deref(), Some("ns/web"));
        let mut foreign = slice.clone();
        foreign
            .metadata
            .labels
            .as_mut()
            .expect("labels")
            .insert(SLICE_MANAGED_BY_LABEL.into(), "other".into());
        assert!(endpoint_slice_triggers(&foreign).is_empty());
        assert_eq!(slice_service_key(&foreign), None);
    }
}
