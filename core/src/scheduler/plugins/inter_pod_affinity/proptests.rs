//! Random clusters changing between cycles: the sums a snapshot keeps for the pre-filter agree
//! with counting every node afresh, whatever changed, for two kinds of incoming pod, across
//! clones of the snapshot and preemption dry runs.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::scheduler::plugins::snapshot_steps::{Changing, gen_step};
use crate::scheduler::plugins::test_pods::{
    labeled, term, with_affinity, with_anti_affinity, with_preferred,
};
use crate::scheduler::testing::node;

const HOST: &str = "kubernetes.io/hostname";
const APPS: [&str; 2] = ["a", "b"];

/// A term: over hostnames (else zones), selecting `app` `APPS[i]`.
type GenTerm = (bool, usize);

#[derive(Clone, Debug)]
struct GenPod {
    other_namespace: bool,
    app: Option<usize>,
    affinity: Option<GenTerm>,
    anti_affinity: Option<GenTerm>,
    /// A preferred term, its weight, and whether it is anti-affinity.
    preferred: Option<(GenTerm, i32, bool)>,
}

fn gen_term() -> impl Strategy<Value = GenTerm> {
    (any::<bool>(), 0usize..2)
}

fn gen_pod() -> impl Strategy<Value = GenPod> {
    (
        proptest::bool::weighted(0.2),
        proptest::option::of(0usize..2),
        proptest::option::weighted(0.3, gen_term()),
        proptest::option::weighted(0.3, gen_term()),
        proptest::option::weighted(0.3, (gen_term(), 1i32..100, any::<bool>())),
    )
        .prop_map(|(other_namespace, app, affinity, anti_affinity, preferred)| GenPod {
            other_namespace,
            app,
            affinity,
            anti_affinity,
            preferred,
        })
}

fn api_term((host, app): GenTerm) -> k8s_openapi::api::core::v1::PodAffinityTerm {
    term(if host { HOST } else { "zone" }, &[("app", APPS[app])])
}

fn make_pod(name: &str, g: &GenPod) -> Pod {
    let labels: Vec<(&str, &str)> = g.app.map(|a| ("app", APPS[a])).into_iter().collect();
    let mut p = labeled(name, if g.other_namespace { "other" } else { "default" }, &labels);
    if let Some(t) = g.affinity {
        p = with_affinity(p, vec![api_term(t)]);
    }
    if let Some(t) = g.anti_affinity {
        p = with_anti_affinity(p, vec![api_term(t)]);
    }
    if let Some((t, weight, anti)) = g.preferred {
        let preferred = vec![(weight, api_term(t))];
        p = if anti { with_preferred(p, vec![], preferred) } else { with_preferred(p, preferred, vec![]) };
    }
    p
}

type Flat = [BTreeMap<(String, String), i64>; 4];

fn flat(s: &Sums) -> Flat {
    [
        s.affinity.non_zero(),
        s.anti_affinity.non_zero(),
        s.existing_anti_affinity.non_zero(),
        s.scores.non_zero(),
    ]
}

/// The sums kept in the snapshot for `p` against counting every node again.
fn kept_sums_agree(plugin: &InterPodAffinity, p: &Pod, snapshot: &Snapshot) -> Result<(), TestCaseError> {
    let terms = PodTerms::of(p).expect("valid terms");
    let kept = plugin.snapshot_sums(p, &terms, snapshot);
    prop_assert_eq!(flat(&kept), flat(&plugin.sums(p, &terms, snapshot.nodes())));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn sums_kept_in_the_snapshot_follow_its_changes(
        zones in proptest::collection::vec(proptest::option::weighted(0.8, 0u8..3), 1..6),
        placed in proptest::collection::vec((any::<usize>(), gen_pod()), 0..8),
        incoming in (gen_pod(), gen_pod()),
        steps in proptest::collection::vec(gen_step(gen_pod()), 0..12),
        weight in 0i64..3,
    ) {
        let plugin = InterPodAffinity::with_hard_pod_affinity_weight(weight);
        let names: Vec<String> = (0..zones.len()).map(|i| format!("n{i}")).collect();
        let nodes = names.iter().zip(&zones).map(|(name, zone)| {
            let b = node(name).label(HOST, name);
            match zone {
                Some(z) => b.label("zone", &z.to_string()).build(),
                None => b.build(),
            }
        });
        let pods: Vec<(String, Arc<Pod>)> = placed
            .iter()
            .enumerate()
            .map(|(i, (at, g))| {
                let name = names[at % names.len()].clone();
                let mut p = make_pod(&format!("p{i}"), g);
                p.spec.get_or_insert_with(Default::default).node_name = Some(name.clone());
                (name, Arc::new(p))
            })
            .collect();
        let snapshot = Snapshot::new(nodes, pods.iter().map(|(_, p)| p.clone())).expect("valid cluster");
        let mut changing = Changing::new(snapshot, pods);
        let incoming = [make_pod("incoming", &incoming.0), make_pod("second", &incoming.1)];
        for (n, step) in steps.into_iter().enumerate() {
            changing.apply(n, step, make_pod, &plugin, &incoming[0])?;
            let snapshot = &changing.snapshot;
            for p in &incoming {
                kept_sums_agree(&plugin, p, snapshot)?;
            }
        }
    }
}
