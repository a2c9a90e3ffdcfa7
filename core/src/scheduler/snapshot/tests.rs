use super::*;
use crate::scheduler::resource_names::{CPU, MEMORY, PODS};
use crate::scheduler::testing::{node, pod};

fn milli(pod: &Pod, name: &str) -> (i64, i64) {
    let r = PodRequests::of(pod).expect("valid quantities");
    (r.requests.get(name), r.non_zero.get(name))
}

#[test]
fn pod_requests_follow_kubernetes_rules() {
    // (pod, resource, requests in milli, non-zero requests in milli)
    let mi = 1024 * 1024 * 1000;
    let cases: Vec<(&str, Pod, &str, i64, i64)> = vec![
        ("no containers", pod("p").build(), CPU, 0, 0),
        ("best effort", pod("p").container(&[]).build(), CPU, 0, DEFAULT_MILLI_CPU_REQUEST),
        ("best effort memory", pod("p").container(&[]).build(), MEMORY, 0, DEFAULT_MEMORY_REQUEST),
        ("explicit zero stays zero", pod("p").container(&[("cpu", "0")]).build(), CPU, 0, 0),
        (
            "containers add up",
            pod("p").container(&[("cpu", "1")]).container(&[("cpu", "250m")]).build(),
            CPU,
            1250,
            1250,
        ),
        (
            "init container larger than the sum",
            pod("p")
                .container(&[("cpu", "1")])
                .container(&[("cpu", "1")])
                .init_container(&[("cpu", "3")])
                .build(),
            CPU,
            3000,
            3000,
        ),
        (
            "init container smaller than the sum",
            pod("p")
                .container(&[("cpu", "2")])
                .container(&[("cpu", "2")])
                .init_container(&[("cpu", "3")])
                .build(),
            CPU,
            4000,
            4000,
        ),
        (
            "init containers take the max, not the sum",
            pod("p")
                .container(&[("memory", "1Mi")])
                .init_container(&[("memory", "2Mi")])
                .init_container(&[("memory", "3Mi")])
                .build(),
            MEMORY,
            3 * mi,
            3 * mi,
        ),
        (
            "sidecars add to the containers and to later init containers",
            pod("p")
                .sidecar(&[("cpu", "1")])
                .init_container(&[("cpu", "2500m")])
                .container(&[("cpu", "1")])
                .build(),
            CPU,
            3500,
            3500,
        ),
        (
            "overhead is added",
            pod("p").container(&[("cpu", "1")]).overhead(&[("cpu", "100m")]).build(),
            CPU,
            1100,
            1100,
        ),
        (
            "limits stand in for requests",
            pod("p").container_with_limits(&[("cpu", "2")]).build(),
            CPU,
            2000,
            2000,
        ),
        (
            "extended resources",
            pod("p").container(&[("example.com/gpu", "2")]).build(),
            "example.com/gpu",
            2000,
            2000,
        ),
    ];
    for (name, pod, resource, requests, non_zero) in cases {
        assert_eq!(milli(&pod, resource), (requests, non_zero), "{name}");
    }
}

#[test]
fn bad_quantity_names_the_field() {
    let p = pod("p").container(&[("cpu", "lots")]).build();
    let err = PodRequests::of(&p).expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "pod/default/p: invalid quantity at spec.containers[0].resources.requests[cpu]"
    );
}

#[test]
fn snapshot_counts_bound_running_pods_and_supports_assume_and_forget() {
    let nodes =
        vec![node("a").capacity("4", "8Gi", "10").build(), node("b").capacity("2", "4Gi", "10").build()];
    let pods = vec![
        pod("p1").container(&[("cpu", "1")]).on("a").arc(),
        pod("p2").container(&[("cpu", "500m")]).on("a").arc(),
        pod("done").container(&[("cpu", "1")]).on("a").phase("Succeeded").arc(),
        pod("pending").container(&[("cpu", "1")]).arc(),
        pod("elsewhere").container(&[("cpu", "1")]).on("zzz").arc(),
    ];
    let mut s = Snapshot::new(nodes, pods).expect("valid");
    let a = s.node("a").expect("a");
    assert_eq!(a.allocatable().get(CPU), 4000);
    assert_eq!(a.allocatable().get(PODS), 10_000);
    assert_eq!(a.requested().get(CPU), 1500);
    assert_eq!(a.requested().get(PODS), 2000);
    assert_eq!(a.non_zero_requested().get(MEMORY), 2 * DEFAULT_MEMORY_REQUEST);
    assert_eq!(a.pod_count(), 2);
    assert_eq!(s.node("b").expect("b").pod_count(), 0);

    let assumed = pod("new").container(&[("cpu", "1")]).build();
    s.add_pod("b", Arc::new(assumed.clone())).expect("b exists");
    assert_eq!(s.node("b").expect("b").requested().get(CPU), 1000);
    s.remove_pod("b", &assumed).expect("assumed");
    let b = s.node("b").expect("b");
    assert_eq!((b.requested().get(CPU), b.requested().get(PODS), b.pod_count()), (0, 0, 0));
    assert!(matches!(s.remove_pod("b", &assumed), Err(Error::PodNotFound { .. })));
    assert!(matches!(s.add_pod("zzz", Arc::new(assumed)), Err(Error::NodeNotFound(_))));
}

#[test]
fn duplicate_nodes_are_refused() {
    let err = Snapshot::new(vec![node("a").build(), node("a").build()], vec![]).expect_err("duplicate");
    assert_eq!(err.to_string(), "node a appears twice");
}

#[test]
fn pods_with_affinity_terms_are_indexed_per_node_and_follow_adds_and_removes() {
    use crate::scheduler::plugins::test_pods::{bound, labeled, term, with_anti_affinity};
    let anti =
        with_anti_affinity(labeled("anti", "ns", &[("app", "x")]), vec![term("zone", &[("app", "x")])]);
    let mut s = Snapshot::new(
        vec![node("a").build(), node("b").build()],
        vec![bound(anti, "a"), bound(labeled("plain", "ns", &[("app", "x")]), "a")],
    )
    .expect("valid");
    let a = s.node("a").expect("a");
    assert_eq!(a.pod_count(), 2);
    assert!(s.has_pods_with_affinity());
    let with: Vec<&str> = a.pods_with_affinity().iter().map(|p| p.key()).collect();
    assert_eq!(with, ["ns/anti"]);
    let terms = a.pods_with_affinity()[0].affinity_terms().expect("parsed once, on entry");
    assert_eq!(terms.required_anti_affinity.len(), 1);

    // Moving the pod: it leaves a's index and enters b's.
    let moved = s.remove_pod_key("a", "ns/anti").expect("on a");
    s.add_pod_info("b", moved).expect("b exists");
    assert!(s.node("a").expect("a").pods_with_affinity().is_empty());
    assert_eq!(s.node("b").expect("b").pods_with_affinity().len(), 1);
    // Replacing it by a version without terms drops it from the index.
    s.add_pod("b", bound(labeled("anti", "ns", &[]), "b")).expect("valid");
    let b = s.node("b").expect("b");
    assert_eq!((b.pod_count(), b.pods_with_affinity().len()), (1, 0));
    assert!(!s.has_pods_with_affinity());
}

#[test]
fn pods_not_placed_are_not_parsed() {
    // A pending pod's bad quantity is not the snapshot's business; a placed pod's is.
    let pending = pod("pending").container(&[("cpu", "lots")]).arc();
    assert!(Snapshot::new(vec![node("a").build()], vec![pending]).is_ok());
    let placed = pod("placed").container(&[("cpu", "lots")]).on("a").arc();
    assert!(Snapshot::new(vec![node("a").build()], vec![placed]).is_err());
}

#[test]
fn resources_keep_names_in_order_across_slots_and_map() {
    let mut r = Resources::new();
    r.set("pods", 1000);
    r.set("example.com/gpu", 2000);
    r.set(CPU, 0);
    r.set("hugepages-2Mi", 5);
    r.add_to(MEMORY, 7);
    let names: Vec<(&str, i64)> = r.iter().collect();
    assert_eq!(
        names,
        [("cpu", 0), ("example.com/gpu", 2000), ("hugepages-2Mi", 5), ("memory", 7), ("pods", 1000)]
    );
    assert!(r.contains(CPU), "an explicit zero is present");
    assert!(!r.contains("ephemeral-storage"));
    assert_eq!(r.get("ephemeral-storage"), 0);

    let mut sum = r.clone();
    sum.add(&r);
    assert_eq!((sum.get("example.com/gpu"), sum.get(PODS)), (4000, 2000));
    sum.sub(&r);
    assert_eq!(sum, r);
    let mut most = Resources::new();
    most.set(MEMORY, 10);
    most.set("example.com/gpu", 1);
    most.max_with(&r);
    assert_eq!((most.get(MEMORY), most.get("example.com/gpu"), most.get(PODS)), (10, 2000, 1000));
}
