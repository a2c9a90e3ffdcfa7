use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node as KubeNode, Pod};

use super::*;
use crate::controllers::gc::testutil::{deleting, object, owner_ref};
use crate::object::Resource;

const RS: ResourceType = ReplicaSet::TYPE;
const POD: ResourceType = Pod::TYPE;
const NODE: ResourceType = KubeNode::TYPE;
const TYPES: &[ResourceType] = &[POD, RS, ConfigMap::TYPE, NODE];

fn at(mut obj: DynamicObject, rv: &str) -> DynamicObject {
    obj.metadata.resource_version = Some(rv.into());
    obj
}

fn rs(name: &str, uid: &str) -> DynamicObject {
    object(RS, "a", name, uid, &[])
}

fn pod(owners: &[OwnerReference]) -> DynamicObject {
    at(object(POD, "a", "p", "pod-uid", owners), "7")
}

fn id(obj: &DynamicObject) -> Identity {
    let t = if obj.kind == "Pod" { POD } else { RS };
    Identity::of(t, obj)
}

fn delete(obj: &DynamicObject, policy: PropagationPolicy) -> Step {
    Step::Delete {
        target: id(obj),
        policy,
        resource_version: obj.resource_version().into(),
        owners: obj.metadata.owner_references.clone().unwrap_or_default(),
    }
}

#[test]
fn owner_references_point_into_the_dependents_namespace() {
    let p = id(&pod(&[]));
    let to_rs = owner_ref(RS, "web", "rs1", false);
    let rs_in_a = OwnerTarget::At { resource: RS, namespace: Some("a".into()) };
    assert_eq!(owner_target(TYPES, &p, &to_rs), rs_in_a);
    let to_node = owner_ref(NODE, "n1", "node1", false);
    assert_eq!(owner_target(TYPES, &p, &to_node), OwnerTarget::At { resource: NODE, namespace: None });
    let old_version = OwnerReference { api_version: "apps/v1beta2".into(), ..to_rs.clone() };
    assert_eq!(owner_target(TYPES, &p, &old_version), rs_in_a, "any version of the group");
    let unknown =
        OwnerReference { api_version: "games.example.com/v1".into(), kind: "Game".into(), ..to_rs.clone() };
    assert_eq!(owner_target(TYPES, &p, &unknown), OwnerTarget::UnknownKind);
    let cluster = Identity::of(NODE, &object(NODE, "", "n1", "node1", &[]));
    assert_eq!(owner_target(TYPES, &cluster, &to_rs), OwnerTarget::NamespacedOwnerOfClusterScoped);
    assert_eq!(owner_target(TYPES, &cluster, &to_node), OwnerTarget::At { resource: NODE, namespace: None });
}

#[test]
fn the_graph_answers_for_owners_it_has_seen_where_they_are_named() {
    let mut g = Graph::new();
    g.observe(RS, &rs("web", "rs1"));
    g.observe(RS, &deleting(rs("api", "rs2"), &[FOREGROUND_FINALIZER]));
    g.observe(RS, &object(RS, "b", "db", "rs3", &[]));
    let p = id(&pod(&[]));
    let lookup = |r: OwnerReference| owner_lookup(&g, TYPES, &p, &r);
    assert_eq!(lookup(owner_ref(RS, "web", "rs1", true)), OwnerLookup::Known(OwnerState::Solid));
    assert_eq!(
        lookup(owner_ref(RS, "api", "rs2", true)),
        OwnerLookup::Known(OwnerState::WaitingForDependents)
    );
    assert_eq!(lookup(owner_ref(RS, "db", "rs3", true)), OwnerLookup::Known(OwnerState::InvalidNamespace));
    let read = OwnerLookup::Read { resource: RS, namespace: Some("a".into()) };
    assert_eq!(lookup(owner_ref(RS, "gone", "rs9", true)), read, "an unseen owner is read");
    assert_eq!(lookup(owner_ref(RS, "renamed", "rs1", true)), read, "so is one named otherwise");
    let game = OwnerReference {
        api_version: "games.example.com/v1".into(),
        kind: "Game".into(),
        ..owner_ref(RS, "g", "g1", false)
    };
    assert_eq!(lookup(game), OwnerLookup::UnknownKind);
    let cluster = Identity::of(NODE, &object(NODE, "", "n1", "node1", &[]));
    assert_eq!(
        owner_lookup(&g, TYPES, &cluster, &owner_ref(RS, "web", "rs1", false)),
        OwnerLookup::Known(OwnerState::Unresolvable)
    );
}

#[test]
fn a_live_read_tells_dangling_from_solid_by_uid() {
    let r = owner_ref(RS, "web", "rs1", true);
    assert_eq!(owner_state_from_read(&r, None), OwnerState::Dangling);
    assert_eq!(owner_state_from_read(&r, Some(&rs("web", "rs2"))), OwnerState::Dangling, "recreated");
    assert_eq!(owner_state_from_read(&r, Some(&rs("web", "rs1"))), OwnerState::Solid);
    let foreground = deleting(rs("web", "rs1"), &[FOREGROUND_FINALIZER]);
    assert_eq!(owner_state_from_read(&r, Some(&foreground)), OwnerState::WaitingForDependents);
    let orphaning = deleting(rs("web", "rs1"), &[ORPHAN_FINALIZER]);
    assert_eq!(owner_state_from_read(&r, Some(&orphaning)), OwnerState::Solid);
}

#[test]
fn only_objects_with_unsettled_owners_need_a_look() {
    let mut g = Graph::new();
    g.observe(RS, &rs("web", "rs1"));
    let solid = owner_ref(RS, "web", "rs1", true);
    g.observe(POD, &object(POD, "a", "ok", "p-ok", std::slice::from_ref(&solid)));
    g.observe(POD, &object(POD, "a", "orphan", "p-orphan", &[owner_ref(RS, "x", "rs9", true)]));
    g.observe(POD, &object(POD, "a", "free", "p-free", &[]));
    g.observe(POD, &deleting(object(POD, "a", "going", "p-going", &[owner_ref(RS, "x", "rs9", true)]), &[]));
    let look = |uid| needs_look(&g, TYPES, uid);
    assert!(!look("p-ok") && !look("p-free") && !look("p-going") && !look("unknown"));
    assert!(look("p-orphan"));
    g.observe(RS, &deleting(rs("web", "rs1"), &[FOREGROUND_FINALIZER]));
    let look = |uid| needs_look(&g, TYPES, uid);
    assert!(look("rs1") && look("p-ok"), "a foreground deletion settles nothing");
}

#[test]
fn an_object_whose_owners_are_all_gone_is_deleted_in_the_background() {
    let g = Graph::new();
    let refs = [owner_ref(RS, "web", "rs1", true), owner_ref(RS, "api", "rs2", false)];
    let p = pod(&refs);
    let owners = [(refs[0].clone(), OwnerState::Dangling), (refs[1].clone(), OwnerState::Dangling)];
    let steps = attempt_to_delete(&g, &id(&p), &p, &owners);
    assert_eq!(steps, [delete(&p, PropagationPolicy::Background)]);
    let opts = steps[0].delete_options().expect("a delete");
    assert_eq!(opts.propagation_policy, Some(PropagationPolicy::Background));
    assert_eq!(
        opts.preconditions,
        Precondition { uid: Some("pod-uid".into()), resource_version: Some("7".into()) },
        "a recreated object of the same name is never deleted"
    );
    // A finalizer it already carries chooses the policy.
    let mut held = p.clone();
    held.metadata.finalizers = Some(vec![ORPHAN_FINALIZER.into()]);
    assert_eq!(attempt_to_delete(&g, &id(&held), &held, &owners), [delete(&held, PropagationPolicy::Orphan)]);
    held.metadata.finalizers = Some(vec![FOREGROUND_FINALIZER.into()]);
    assert_eq!(
        attempt_to_delete(&g, &id(&held), &held, &owners),
        [delete(&held, PropagationPolicy::Foreground)]
    );
}

#[test]
fn a_solid_owner_keeps_the_object_and_loses_its_dead_references() {
    let g = Graph::new();
    let live = owner_ref(RS, "web", "rs1", true);
    let dead = owner_ref(RS, "old", "rs0", true);
    let going = owner_ref(RS, "api", "rs2", true);
    let p = pod(&[live.clone(), dead.clone(), going.clone()]);
    let all_solid = [(live.clone(), OwnerState::Solid)];
    assert!(
        attempt_to_delete(&g, &id(&p), &p, &all_solid).is_empty(),
        "unclassified references count as solid"
    );
    let owners = [
        (live.clone(), OwnerState::Solid),
        (dead, OwnerState::Dangling),
        (going, OwnerState::WaitingForDependents),
    ];
    let steps = attempt_to_delete(&g, &id(&p), &p, &owners);
    let want = Step::SetOwnerReferences {
        target: id(&p),
        resource_version: "7".into(),
        owner_references: vec![live.clone()],
    };
    assert_eq!(steps, std::slice::from_ref(&want));
    assert_eq!(
        want.merge_patch(),
        Some(
            json!({"metadata": {"resourceVersion": "7", "ownerReferences": [serde_json::to_value(&live).expect("serializes")]}})
        )
    );
    // Only solid owners: nothing to do.
    let only_live = pod(std::slice::from_ref(&live));
    assert!(attempt_to_delete(&g, &id(&only_live), &only_live, &[(live, OwnerState::Solid)]).is_empty());
    // No owners at all: nothing either.
    let free = pod(&[]);
    assert!(attempt_to_delete(&g, &id(&free), &free, &[]).is_empty());
}

#[test]
fn a_dependent_of_an_owner_in_foreground_deletion_is_deleted_with_its_own_dependents_first() {
    let mut g = Graph::new();
    let to_owner = owner_ref(RS, "web", "rs1", true);
    let owners = [(to_owner.clone(), OwnerState::WaitingForDependents)];
    // A leaf: deleted in the background (Kubernetes).
    let leaf = pod(std::slice::from_ref(&to_owner));
    assert_eq!(
        attempt_to_delete(&g, &id(&leaf), &leaf, &owners),
        [delete(&leaf, PropagationPolicy::Background)]
    );

    // With dependents of its own: in the foreground, so the owner waits for those too.
    let middle = at(object(RS, "a", "mid", "mid", std::slice::from_ref(&to_owner)), "9");
    g.observe(RS, &middle);
    let child = object(POD, "a", "c", "c1", &[owner_ref(RS, "mid", "mid", true)]);
    g.observe(POD, &child);
    let mid_id = Identity::of(RS, &middle);
    assert_eq!(
        attempt_to_delete(&g, &mid_id, &middle, &owners),
        [delete(&middle, PropagationPolicy::Foreground)]
    );

    // One of its dependents waits for its own: unblock its references first (a possible cycle).
    g.observe(POD, &deleting(child, &[FOREGROUND_FINALIZER]));
    let unblocked = OwnerReference { block_owner_deletion: Some(false), ..to_owner };
    assert_eq!(
        attempt_to_delete(&g, &mid_id, &middle, &owners),
        [
            Step::SetOwnerReferences {
                target: mid_id.clone(),
                resource_version: "9".into(),
                owner_references: vec![unblocked]
            },
            delete(&middle, PropagationPolicy::Foreground),
        ]
    );
}

#[test]
fn an_owner_in_foreground_deletion_finishes_when_nothing_blocks_it() {
    let mut g = Graph::new();
    let owner = at(deleting(rs("web", "rs1"), &[FOREGROUND_FINALIZER, "example.com/keep"]), "5");
    g.observe(RS, &owner);
    let owner_id = Identity::of(RS, &owner);
    g.observe(POD, &object(POD, "a", "b1", "b1", &[owner_ref(RS, "web", "rs1", true)]));
    g.observe(POD, &object(POD, "a", "b2", "b2", &[owner_ref(RS, "web", "rs1", true)]));
    g.observe(
        POD,
        &deleting(
            object(POD, "a", "b3", "b3", &[owner_ref(RS, "web", "rs1", true)]),
            &[FOREGROUND_FINALIZER],
        ),
    );
    g.observe(POD, &object(POD, "a", "loose", "l1", &[owner_ref(RS, "web", "rs1", false)]));
    // Blocking dependents remain: they get a look (b3 is already waiting for its own).
    assert_eq!(
        attempt_to_delete(&g, &owner_id, &owner, &[]),
        [Step::Enqueue(vec!["b1".into(), "b2".into()])]
    );
    g.remove("b1");
    g.remove("b2");
    assert!(attempt_to_delete(&g, &owner_id, &owner, &[]).is_empty(), "b3 is on its way");
    g.remove("b3");
    // Only a non-blocking dependent is left: the finalizer goes, others stay.
    let steps = attempt_to_delete(&g, &owner_id, &owner, &[]);
    let want = Step::SetFinalizers {
        target: owner_id.clone(),
        resource_version: "5".into(),
        finalizers: vec!["example.com/keep".into()],
    };
    assert_eq!(steps, std::slice::from_ref(&want));
    assert_eq!(
        want.merge_patch(),
        Some(json!({"metadata": {"resourceVersion": "5", "finalizers": ["example.com/keep"]}}))
    );
}

#[test]
fn objects_being_deleted_otherwise_or_replaced_are_left_alone() {
    let g = Graph::new();
    let r = owner_ref(RS, "web", "rs1", true);
    let owners = [(r.clone(), OwnerState::Dangling)];
    let going = deleting(pod(std::slice::from_ref(&r)), &[]);
    assert!(attempt_to_delete(&g, &id(&going), &going, &owners).is_empty());
    let orphaning = deleting(pod(std::slice::from_ref(&r)), &[ORPHAN_FINALIZER]);
    assert!(attempt_to_delete(&g, &id(&orphaning), &orphaning, &owners).is_empty());
    let p = pod(std::slice::from_ref(&r));
    let mut recreated = p.clone();
    recreated.metadata.uid = Some("another".into());
    assert!(attempt_to_delete(&g, &id(&p), &recreated, &owners).is_empty());
}

#[test]
fn invalid_references_warn_and_count_as_absent() {
    let g = Graph::new();
    let r = owner_ref(RS, "web", "rs1", true);
    let p = pod(std::slice::from_ref(&r));
    let steps = attempt_to_delete(&g, &id(&p), &p, &[(r.clone(), OwnerState::InvalidNamespace)]);
    assert!(
        matches!(&steps[..], [Step::Warn { reason: INVALID_OWNER_REASON, .. }, Step::Delete { .. }]),
        "{steps:?}"
    );
    // A cluster-scoped dependent of a namespaced owner: a warning and nothing else.
    let n = at(object(NODE, "", "n1", "node1", std::slice::from_ref(&r)), "3");
    let node_id = Identity::of(NODE, &n);
    let steps = attempt_to_delete(&g, &node_id, &n, &[(r, OwnerState::Unresolvable)]);
    assert!(matches!(&steps[..], [Step::Warn { reason: INVALID_OWNER_REASON, .. }]), "{steps:?}");
}

#[test]
fn orphaning_removes_exactly_the_owners_reference_then_the_finalizer() {
    let owner = at(deleting(rs("web", "rs1"), &[ORPHAN_FINALIZER]), "4");
    let owner_id = Identity::of(RS, &owner);
    assert!(is_orphaning(&owner_id, &owner));
    assert!(!is_orphaning(&owner_id, &rs("web", "rs1")), "not being deleted");
    assert!(!is_orphaning(&owner_id, &deleting(rs("web", "rs2"), &[ORPHAN_FINALIZER])), "recreated");

    let other = owner_ref(RS, "api", "rs2", false);
    let p = pod(&[owner_ref(RS, "web", "rs1", true), other.clone()]);
    assert_eq!(
        orphan_dependent(&id(&p), &p, "rs1"),
        Some(Step::SetOwnerReferences {
            target: id(&p),
            resource_version: "7".into(),
            owner_references: vec![other.clone()]
        })
    );
    assert_eq!(orphan_dependent(&id(&p), &p, "rs9"), None, "no reference to it");
    let alone = pod(&[owner_ref(RS, "web", "rs1", true)]);
    let step = orphan_dependent(&id(&alone), &alone, "rs1").expect("a patch");
    assert_eq!(
        step.merge_patch(),
        Some(json!({"metadata": {"resourceVersion": "7", "ownerReferences": null}})),
        "the last reference goes with the field"
    );
    let mut recreated = alone.clone();
    recreated.metadata.uid = Some("another".into());
    assert_eq!(orphan_dependent(&id(&alone), &recreated, "rs1"), None);

    let done = remove_finalizer(&owner_id, &owner, ORPHAN_FINALIZER).expect("a patch");
    assert_eq!(done.merge_patch(), Some(json!({"metadata": {"resourceVersion": "4", "finalizers": null}})));
    assert_eq!(remove_finalizer(&owner_id, &owner, FOREGROUND_FINALIZER), None);
}

#[test]
fn a_delete_follows_earlier_writes_and_survives_unrelated_changes() {
    let r = owner_ref(RS, "web", "rs1", true);
    let p = pod(std::slice::from_ref(&r));
    let step = delete(&p, PropagationPolicy::Foreground);
    // Only the status moved: delete again without the resourceVersion precondition.
    let moved = at(p.clone(), "8");
    let retry = retry_delete_without_version(&step, &moved).expect("a retry");
    assert_eq!(retry.delete_options().map(|o| o.preconditions.resource_version), Some(None));
    assert_eq!(retry.delete_options().and_then(|o| o.preconditions.uid), Some("pod-uid".into()));
    // Its owners changed, or it is another object: decide again.
    assert_eq!(retry_delete_without_version(&step, &at(pod(&[]), "8")), None);
    let mut recreated = moved.clone();
    recreated.metadata.uid = Some("another".into());
    assert_eq!(retry_delete_without_version(&step, &recreated), None);
    assert_eq!(retry_delete_without_version(&step, &p), None, "the conflict was not the version");

    // After a patch of the same object, the delete applies at the patched version.
    let unblocked = at(pod(&[OwnerReference { block_owner_deletion: Some(false), ..r }]), "12");
    let after = step.clone().after_write(&unblocked);
    assert_eq!(after, delete(&unblocked, PropagationPolicy::Foreground));
    let unrelated = at(object(POD, "a", "q", "q-uid", &[]), "13");
    assert_eq!(step.clone().after_write(&unrelated), step);
    assert_eq!(Step::Enqueue(vec![]).target(), None);
}
