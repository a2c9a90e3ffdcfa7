//! Tests of the EndpointSlice decision, with a tiny in-memory "store" that applies plans.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::*;
use crate::controllers::endpoints::pods::testing::{pod, service};

/// Slices as a store would hold them after applying plans: creates get names.
#[derive(Default)]
struct Store {
    slices: Vec<EndpointSlice>,
    created: usize,
}

impl Store {
    /// Applies `plan` and returns how many writes it took.
    fn apply(&mut self, plan: SlicePlan) -> usize {
        let writes = plan.create.len() + plan.update.len() + plan.delete.len();
        for d in plan.delete {
            self.slices.retain(|s| s.metadata.name != d.metadata.name);
        }
        for u in plan.update {
            let at =
                self.slices.iter().position(|s| s.metadata.name == u.metadata.name).expect("updates exist");
            self.slices[at] = u;
        }
        for mut c in plan.create {
            assert!(c.metadata.name.is_none(), "creates are named by the registry");
            self.created += 1;
            c.metadata.name =
                Some(format!("{}{}", c.metadata.generate_name.clone().unwrap_or_default(), self.created));
            self.slices.push(c);
        }
        writes
    }

    fn plan(&self, svc: Option<&Service>, pods: &[Pod]) -> SlicePlan {
        let pods: Vec<&Pod> = pods.iter().collect();
        let existing: Vec<&EndpointSlice> = self.slices.iter().collect();
        plan_slices(svc, &pods, &existing, MAX_ENDPOINTS_PER_SLICE)
    }

    fn sync(&mut self, svc: Option<&Service>, pods: &[Pod]) -> usize {
        let plan = self.plan(svc, pods);
        self.apply(plan)
    }

    fn sizes(&self) -> Vec<usize> {
        let mut sizes: Vec<usize> = self.slices.iter().map(|s| s.endpoints.len()).collect();
        sizes.sort_unstable();
        sizes
    }

    fn endpoint_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .slices
            .iter()
            .flat_map(|s| &s.endpoints)
            .filter_map(|e| e.target_ref.as_ref().and_then(|r| r.name.clone()))
            .collect();
        names.sort();
        names
    }
}

fn web() -> Service {
    service("web", "web", json!([{"name": "http", "port": 80, "targetPort": "http"}]))
}

fn pods(range: std::ops::Range<usize>) -> Vec<Pod> {
    range.map(|i| pod(&format!("p{i:03}"), "web", &format!("10.0.{}.{}", i / 250, i % 250), true)).collect()
}

fn conditions(e: &Endpoint) -> (Option<bool>, Option<bool>, Option<bool>) {
    let c = e.conditions.as_ref().expect("conditions");
    (c.ready, c.serving, c.terminating)
}

#[test]
fn a_new_service_gets_one_slice_describing_its_pods() {
    let svc = web();
    let mut not_ready = pod("b", "web", "10.0.0.2", false);
    not_ready.spec.as_mut().expect("spec").node_name = Some("n2".into());
    let plan = Store::default()
        .plan(Some(&svc), &[pod("a", "web", "10.0.0.1", true), not_ready, pod("c", "db", "10.0.0.3", true)]);
    assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (1, 0, 0));
    let s = &plan.create[0];
    assert_eq!(s.address_type, "IPv4");
    assert_eq!(s.metadata.generate_name.as_deref(), Some("web-"));
    assert_eq!(s.metadata.namespace.as_deref(), Some("ns"));
    let labels = s.metadata.labels.as_ref().expect("labels");
    assert_eq!(labels.get(SERVICE_NAME_LABEL).map(String::as_str), Some("web"));
    assert_eq!(labels.get(SLICE_MANAGED_BY_LABEL).map(String::as_str), Some(ENDPOINTSLICE_CONTROLLER_NAME));
    assert_eq!(labels.get("team").map(String::as_str), Some("a"));
    let owner = &s.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Service", "uid-web", Some(true))
    );
    let port = &s.ports.as_ref().expect("ports")[0];
    assert_eq!(
        (port.name.as_deref(), port.port, port.protocol.as_deref()),
        (Some("http"), Some(8080), Some("TCP"))
    );
    let e: Vec<_> =
        s.endpoints.iter().map(|e| (e.addresses.clone(), conditions(e), e.node_name.clone())).collect();
    assert_eq!(
        e,
        [
            (vec!["10.0.0.1".to_string()], (Some(true), Some(true), Some(false)), Some("n1".into())),
            (vec!["10.0.0.2".to_string()], (Some(false), Some(false), Some(false)), Some("n2".into())),
        ]
    );
}

#[test]
fn terminating_pods_stay_as_serving_but_not_ready() {
    let mut svc = web();
    let mut p = pod("a", "web", "10.0.0.1", true);
    p.metadata.deletion_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().expect("time")));
    let plan = Store::default().plan(Some(&svc), std::slice::from_ref(&p));
    assert_eq!(conditions(&plan.create[0].endpoints[0]), (Some(false), Some(true), Some(true)));
    svc.spec.as_mut().expect("spec").publish_not_ready_addresses = Some(true);
    let plan = Store::default().plan(Some(&svc), &[p]);
    assert_eq!(conditions(&plan.create[0].endpoints[0]), (Some(true), Some(true), Some(true)));
}

#[test]
fn pods_without_a_named_port_get_a_slice_of_their_port_set() {
    let svc = service(
        "web",
        "web",
        json!([{"name": "http", "port": 80, "targetPort": "http"}, {"name": "admin", "port": 9000, "targetPort": "admin"}]),
    );
    let a = pod("a", "web", "10.0.0.1", true);
    let mut b = pod("b", "web", "10.0.0.2", true);
    b.spec.as_mut().expect("spec").containers[0]
        .ports
        .as_mut()
        .expect("ports")
        .push(serde_json::from_value(json!({"name": "admin", "containerPort": 9090})).expect("port"));
    let plan = Store::default().plan(Some(&svc), &[a, b]);
    assert_eq!(plan.create.len(), 2);
    let port_counts: BTreeSet<usize> =
        plan.create.iter().map(|s| s.ports.as_ref().map_or(0, Vec::len)).collect();
    assert_eq!(port_counts, BTreeSet::from([1, 2]));
}

#[test]
fn an_unchanged_service_plans_no_writes() {
    let svc = web();
    let all = pods(0..3);
    let mut store = Store::default();
    assert_eq!(store.sync(Some(&svc), &all), 1);
    let mut reordered = all.clone();
    reordered.reverse();
    assert!(store.plan(Some(&svc), &reordered).is_empty());
}

#[test]
fn over_a_hundred_endpoints_are_sliced_and_changes_touch_few_slices() {
    let svc = web();
    let mut store = Store::default();
    let mut all = pods(0..250);
    assert_eq!(store.sync(Some(&svc), &all), 3);
    assert_eq!(store.sizes(), [50, 100, 100]);
    assert!(store.plan(Some(&svc), &all).is_empty());

    // One pod replaced by another: the slice that lost it takes the newcomer, one write.
    all.remove(10);
    all.extend(pods(250..251));
    assert_eq!(store.sync(Some(&svc), &all), 1);
    assert_eq!(store.sizes(), [50, 100, 100]);

    // Thirty more fit into the half-full slice: one write, no new slice.
    all.extend(pods(251..281));
    assert_eq!(store.sync(Some(&svc), &all), 1);
    assert_eq!(store.sizes(), [80, 100, 100]);

    // Sixty more fit nowhere: one new slice, the others untouched.
    all.extend(pods(281..341));
    let plan = store.plan(Some(&svc), &all);
    assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (1, 0, 0));
    store.apply(plan);
    assert_eq!(store.sizes(), [60, 80, 100, 100]);

    // A ready pod turning not ready is updated in place.
    let flipped = all.iter().position(|p| p.metadata.name.as_deref() == Some("p100")).expect("p100");
    all[flipped] = pod("p100", "web", "10.0.0.100", false);
    let plan = store.plan(Some(&svc), &all);
    assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (0, 1, 0));
    store.apply(plan);

    // Every endpoint is in exactly one slice.
    let mut want: Vec<String> = all.iter().filter_map(|p| p.metadata.name.clone()).collect();
    want.sort();
    assert_eq!(store.endpoint_names(), want);
    assert!(store.plan(Some(&svc), &all).is_empty());

    // Emptied slices go; a lone survivor stays where it is.
    let kept: Vec<Pod> = all.iter().filter(|p| p.metadata.name.as_deref() == Some("p200")).cloned().collect();
    store.sync(Some(&svc), &kept);
    assert_eq!(store.sizes(), [1]);
}

#[test]
fn dual_stack_services_get_slices_per_address_type() {
    let mut svc = web();
    svc.spec.as_mut().expect("spec").ip_families = Some(vec!["IPv4".into(), "IPv6".into()]);
    let mut p = pod("a", "web", "10.0.0.1", true);
    p.status.as_mut().expect("status").pod_ips =
        Some(serde_json::from_value(json!([{"ip": "10.0.0.1"}, {"ip": "fd00::1"}])).expect("ips"));
    let plan = Store::default().plan(Some(&svc), &[p]);
    let mut by_type: Vec<(String, Vec<String>)> =
        plan.create.iter().map(|s| (s.address_type.clone(), s.endpoints[0].addresses.clone())).collect();
    by_type.sort();
    assert_eq!(by_type, [("IPv4".into(), vec!["10.0.0.1".into()]), ("IPv6".into(), vec!["fd00::1".into()])]);
}

#[test]
fn ipv6_pods_of_a_service_without_families_get_ipv6_slices() {
    let svc = web();
    let mut store = Store::default();
    assert_eq!(store.sync(Some(&svc), &[]), 1, "an IPv4 placeholder while no pod has an IP");
    assert_eq!((store.slices[0].address_type.as_str(), store.slices[0].endpoints.len()), ("IPv4", 0));
    let v6 = [pod("a", "web", "fd00::a", true), pod("b", "web", "fd00::b", true)];
    store.sync(Some(&svc), &v6);
    assert_eq!(store.slices.len(), 1);
    assert_eq!(store.slices[0].address_type, "IPv6");
    assert_eq!(store.slices[0].endpoints.len(), 2);
}

#[test]
fn a_service_without_endpoints_keeps_one_placeholder() {
    let svc = web();
    let mut store = Store::default();
    let plan = store.plan(Some(&svc), &[]);
    assert_eq!(plan.create.len(), 1);
    assert_eq!(plan.create[0].ports, Some(vec![]));
    store.apply(plan);
    assert!(store.plan(Some(&svc), &[]).is_empty(), "the placeholder is kept");
    // The first pod moves into a slice of its ports, reusing the placeholder's name.
    let plan = store.plan(Some(&svc), &pods(0..1));
    assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (0, 1, 0));
    assert_eq!(plan.update[0].metadata.name.as_deref(), Some("web-1"));
    store.apply(plan);
    // And back.
    let plan = store.plan(Some(&svc), &[]);
    assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (0, 1, 0));
}

#[test]
fn slices_of_a_previous_service_of_the_same_name_are_replaced_not_reused() {
    let svc = web();
    let mut store = Store::default();
    store.sync(Some(&svc), &pods(0..2));
    let mut recreated = web();
    recreated.metadata.uid = Some("uid-web-2".into());
    // The old slice may be deleted by the garbage collector at any moment: writing to it
    // would lose the endpoints, so a new slice is made.
    let plan = store.plan(Some(&recreated), &pods(0..2));
    assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (1, 0, 1));
    let owner = &plan.create[0].metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(owner.uid, "uid-web-2");
}

#[test]
fn service_label_changes_update_slices_in_place() {
    let mut svc = web();
    let mut store = Store::default();
    store.sync(Some(&svc), &pods(0..150));
    svc.metadata.labels.as_mut().expect("labels").insert("team".into(), "b".into());
    let plan = store.plan(Some(&svc), &pods(0..150));
    assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (0, 2, 0));
    store.apply(plan);
    assert!(
        store.slices.iter().all(|s| s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("team"))
            .map(String::as_str)
            == Some("b"))
    );
}

#[test]
fn slices_go_with_their_service_but_unmanaged_ones_stay() {
    let svc = web();
    let mut store = Store::default();
    store.sync(Some(&svc), &pods(0..150));
    let mut foreign = store.slices[0].clone();
    foreign.metadata.name = Some("mirror".into());
    foreign
        .metadata
        .labels
        .as_mut()
        .expect("labels")
        .insert(SLICE_MANAGED_BY_LABEL.into(), "someone-else".into());
    store.slices.push(foreign);
    assert!(store.plan(Some(&svc), &pods(0..150)).is_empty(), "the foreign slice is not ours");
    let plan = store.plan(None, &[]);
    assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (0, 0, 2));
    assert!(plan.delete.iter().all(is_managed_slice));
}

#[test]
fn a_deleting_service_gets_no_new_slices_and_selectorless_ones_none_at_all() {
    let mut svc = web();
    svc.metadata.deletion_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().expect("time")));
    assert!(Store::default().plan(Some(&svc), &pods(0..3)).is_empty());
    let mut manual = web();
    manual.spec.as_mut().expect("spec").selector = None;
    assert!(Store::default().plan(Some(&manual), &pods(0..3)).is_empty());
}

#[test]
fn a_service_switching_address_type_drops_the_old_type() {
    let mut svc = web();
    let mut store = Store::default();
    store.sync(Some(&svc), &pods(0..3));
    svc.spec.as_mut().expect("spec").ip_families = Some(vec!["IPv6".into()]);
    let plan = store.plan(Some(&svc), &pods(0..3));
    // The IPv4 slice goes (address types are immutable); an IPv6 placeholder comes.
    assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (1, 0, 1));
    assert_eq!(plan.create[0].address_type, "IPv6");
}
