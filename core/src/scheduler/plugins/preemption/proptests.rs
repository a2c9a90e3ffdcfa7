//! A property of DefaultPreemption over random small clusters: nominations make room, with
//! lower-priority victims only, and "not helped" means no eviction would help.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use proptest::prelude::*;

use super::*;
use crate::scheduler::plugins::default_profile;
use crate::scheduler::plugins::test_pods::{spread, term, with_anti_affinity, with_spread};
use crate::scheduler::testing::{node, pod};
use crate::scheduler::{Error, pod_key};

/// A pod in `default` with a cpu request in millicores and a priority, bound to `node`.
fn p(name: &str, node: &str, cpu: i64, priority: i32) -> Pod {
    let mut b = pod(name).container(&[("cpu", &format!("{cpu}m"))]);
    if !node.is_empty() {
        b = b.on(node);
    }
    let mut p = b.build();
    p.spec.get_or_insert_with(Default::default).priority = Some(priority);
    p
}

/// A random node: cpu in hundreds of millicores, zone, and pods (cpu, priority, labelled
/// app=x, repelling app=new by zone).
type GenNode = (i64, u8, Vec<(i64, i32, bool, bool)>);
/// The incoming pod: cpu, priority, anti-affinity to app=x by zone, spread by zone.
type GenPod = (i64, i32, bool, bool);

fn cluster() -> impl Strategy<Value = (Vec<GenNode>, GenPod)> {
    let pods =
        proptest::collection::vec((0i64..6, -1i32..3, any::<bool>(), proptest::bool::weighted(0.2)), 0..4);
    (
        proptest::collection::vec((1i64..10, 0u8..2, pods), 1..5),
        (1i64..10, -1i32..4, proptest::bool::weighted(0.3), proptest::bool::weighted(0.3)),
    )
}

fn gen_cluster(nodes: &[GenNode], incoming: &GenPod) -> (Snapshot, Pod) {
    let mut objects = Vec::new();
    let mut pods = Vec::new();
    for (i, (cpu, zone, existing)) in nodes.iter().enumerate() {
        let name = format!("n{i}");
        let cpu = format!("{}m", cpu * 100);
        objects.push(node(&name).capacity(&cpu, "8Gi", "110").label("zone", &zone.to_string()).build());
        for (j, &(cpu, priority, x, repels)) in existing.iter().enumerate() {
            let mut e = p(&format!("e{i}-{j}"), &name, cpu * 100, priority * 100);
            if x {
                e.metadata.labels = Some([("app".to_string(), "x".to_string())].into());
            }
            if repels {
                e = with_anti_affinity(e, vec![term("zone", &[("app", "new")])]);
            }
            pods.push(Arc::new(e));
        }
    }
    let &(cpu, priority, anti_x, spread_x) = incoming;
    let mut new = p("new", "", cpu * 100, priority * 100);
    new.metadata.labels = Some([("app".to_string(), "new".to_string())].into());
    if anti_x {
        new = with_anti_affinity(new, vec![term("zone", &[("app", "x")])]);
    }
    if spread_x {
        new = with_spread(new, vec![spread(1, "zone", "DoNotSchedule", &[("app", "x")])]);
    }
    (Snapshot::new(objects, pods).expect("valid cluster"), new)
}

/// Whether `pod` passes every filter on `node` once `gone` are removed, by a fresh cycle.
fn fits_without(
    framework: &Framework,
    snapshot: &Snapshot,
    pod: &Pod,
    node: &str,
    gone: &[Arc<Pod>],
) -> bool {
    let mut s = snapshot.clone();
    for g in gone {
        s.remove_pod(node, g).expect("victim on the node");
    }
    let state = framework.pre_filter(&s, pod).expect("pre-filter passes");
    framework.filter(&state, pod, s.node(node).expect("node")).is_none()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A nomination's node passes every filter once its victims are gone (checked by a fresh
    /// pre-filter, so the add/remove hooks must agree with it), and every victim has a lower
    /// priority. When preemption does not help, removing every lower-priority pod from any
    /// node the filters found unschedulable does not make room either.
    #[test]
    fn nominations_make_room_with_lower_priority_victims((nodes, incoming) in cluster()) {
        let (snapshot, pod) = gen_cluster(&nodes, &incoming);
        let framework = Framework::new(default_profile());
        let (state, result) = framework.schedule_cycle(&snapshot, &pod);
        let Err(Error::Unschedulable(fit)) = result else { return Ok(()) };
        let priority = pod_priority(&pod);
        match DefaultPreemption::default().post_filter(&framework, &state, &pod, &snapshot, &fit) {
            PostFilterOutcome::Nominate(nomination) => {
                let node = snapshot.node(&nomination.node).expect("a node of the snapshot");
                prop_assert!(!nomination.victims.is_empty());
                for v in &nomination.victims {
                    prop_assert!(pod_priority(v) < priority, "victim {} not lower", pod_key(v));
                    prop_assert!(node.pods().any(|p| Arc::ptr_eq(p, v)), "victim {} elsewhere", pod_key(v));
                }
                prop_assert!(fits_without(&framework, &snapshot, &pod, &nomination.node, &nomination.victims));
            }
            PostFilterOutcome::NotHelped { message } => {
                prop_assert!(message.starts_with(&format!("0/{} nodes are available: ", nodes.len())), "{}", message);
                for f in fit.failures.iter().filter(|f| matches!(f.status, Status::Unschedulable { .. })) {
                    let node = snapshot.node(&f.node).expect("a node of the snapshot");
                    let lower: Vec<Arc<Pod>> = node.pods().filter(|p| pod_priority(p) < priority).cloned().collect();
                    prop_assert!(!fits_without(&framework, &snapshot, &pod, &f.node, &lower), "{} could be helped", f.node);
                }
            }
            PostFilterOutcome::Error(e) => prop_assert!(false, "error {}", e),
        }
    }

    /// The pre-check passes over only nodes whose full dry run finds no victims (it rejects
    /// them or fails), for any pod whose pre-filters pass, so the search tries the same nodes
    /// and finds the same candidates with it as without it.
    #[test]
    fn the_pre_check_rules_out_no_candidate((nodes, incoming) in cluster()) {
        let (snapshot, pod) = gen_cluster(&nodes, &incoming);
        let framework = Framework::new(default_profile());
        let Ok(state) = framework.pre_filter(&snapshot, &pod) else { return Ok(()) };
        for node in snapshot.nodes() {
            if DefaultPreemption::ruled_out(&framework, &state, &pod, node) {
                let full = DefaultPreemption::dry_run(&framework, &state, &pod, node);
                prop_assert!(!matches!(full, DryRun::Victims(_)), "{} ruled out, but {:?}", node.name(), full);
            }
        }
    }
}
