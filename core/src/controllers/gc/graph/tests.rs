use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};

use super::*;
use crate::controllers::gc::testutil::{deleting, object, owner_ref};
use crate::object::Resource;

const RS: ResourceType = ReplicaSet::TYPE;
const POD: ResourceType = Pod::TYPE;

fn rs(uid: &str) -> DynamicObject {
    object(RS, "a", "web", uid, &[])
}

fn pod(name: &str, owners: &[OwnerReference]) -> DynamicObject {
    object(POD, "a", name, &format!("pod-{name}"), owners)
}

fn uids<'a>(nodes: impl Iterator<Item = &'a Node>) -> Vec<&'a str> {
    nodes.map(|n| n.identity.uid.as_str()).collect()
}

fn to_delete(uids: &[&str]) -> Attention {
    Attention { attempt_to_delete: uids.iter().map(|u| u.to_string()).collect(), ..Default::default() }
}

#[test]
fn owners_and_dependents_are_linked_both_ways() {
    let mut g = Graph::new();
    assert!(g.observe(RS, &rs("rs1")).is_empty());
    let r = owner_ref(RS, "web", "rs1", true);
    assert!(g.observe(POD, &pod("p1", std::slice::from_ref(&r))).is_empty(), "owner seen and matching");
    assert!(g.observe(POD, &pod("p2", std::slice::from_ref(&r))).is_empty());
    assert_eq!(uids(g.dependents("rs1")), ["pod-p1", "pod-p2"]);
    assert_eq!(g.node("pod-p1").map(|n| n.owners.clone()), Some(vec![r.clone()]));

    // p1 drops its reference: it is no longer a dependent.
    assert!(g.observe(POD, &pod("p1", &[])).is_empty());
    assert_eq!(uids(g.dependents("rs1")), ["pod-p2"]);
    // p2 goes: the owner, not in foreground deletion, needs nothing.
    assert!(g.remove("pod-p2").is_empty());
    assert_eq!(g.dependents("rs1").count(), 0);
    assert_eq!(g.len(), 2);
    assert!(g.remove("nobody").is_empty(), "removing an unknown uid is harmless");
}

#[test]
fn an_owner_gone_puts_its_dependents_up_for_deletion() {
    let mut g = Graph::new();
    g.observe(RS, &rs("rs1"));
    let r = owner_ref(RS, "web", "rs1", false);
    g.observe(POD, &pod("p1", std::slice::from_ref(&r)));
    g.observe(POD, &pod("p2", std::slice::from_ref(&r)));
    assert_eq!(g.remove("rs1"), to_delete(&["pod-p1", "pod-p2"]));
    assert!(g.node("rs1").is_none());
    // The dependents still reference the uid: they stay its dependents until they change.
    assert_eq!(uids(g.dependents("rs1")), ["pod-p1", "pod-p2"]);
}

#[test]
fn a_dependent_seen_before_its_owner_is_checked_then_found_by_the_owner() {
    let mut g = Graph::new();
    let r = owner_ref(RS, "web", "rs1", true);
    // The owner is unknown: the dependent needs a look (its owner may not exist).
    assert_eq!(g.observe(POD, &pod("p1", std::slice::from_ref(&r))), to_delete(&["pod-p1"]));
    assert_eq!(uids(g.dependents("rs1")), ["pod-p1"]);
    // The owner shows up, matching the reference: nothing to do, and it knows its dependent.
    assert!(g.observe(RS, &rs("rs1")).is_empty());
    assert_eq!(uids(g.dependents("rs1")), ["pod-p1"]);
    assert_eq!(uids(g.blocking_dependents("rs1")), ["pod-p1"]);
}

#[test]
fn references_to_an_owner_in_another_namespace_need_a_look() {
    let mut g = Graph::new();
    let r = owner_ref(RS, "web", "rs1", false);
    let elsewhere = object(POD, "b", "p", "pod-b", std::slice::from_ref(&r));
    // Dependent first, then the owner in namespace `a`: the dependent in `b` is wrong.
    g.observe(POD, &elsewhere);
    assert_eq!(g.observe(RS, &rs("rs1")), to_delete(&["pod-b"]));
    // Owner first: a new dependent in `b` needs a look, one in `a` does not.
    let mut g = Graph::new();
    g.observe(RS, &rs("rs1"));
    assert_eq!(g.observe(POD, &elsewhere), to_delete(&["pod-b"]));
    assert!(g.observe(POD, &pod("p", std::slice::from_ref(&r))).is_empty());
    // A reference naming the right uid with another name or kind is wrong too.
    let renamed = owner_ref(RS, "other", "rs1", false);
    assert_eq!(g.observe(POD, &pod("q", &[renamed])), to_delete(&["pod-q"]));
    let wrong_kind = owner_ref(ConfigMap::TYPE, "web", "rs1", false);
    assert_eq!(g.observe(POD, &pod("s", &[wrong_kind])), to_delete(&["pod-s"]));
}

#[test]
fn a_cluster_scoped_owner_may_own_objects_of_any_namespace() {
    let mut g = Graph::new();
    let ns = object(Namespace::TYPE, "", "team", "ns1", &[]);
    g.observe(Namespace::TYPE, &ns);
    let r = owner_ref(Namespace::TYPE, "team", "ns1", false);
    assert!(g.observe(POD, &object(POD, "a", "p", "pod-a", std::slice::from_ref(&r))).is_empty());
    assert!(g.observe(POD, &object(POD, "b", "p", "pod-b", std::slice::from_ref(&r))).is_empty());
    assert_eq!(uids(g.dependents("ns1")), ["pod-a", "pod-b"]);
}

#[test]
fn foreground_deletion_puts_the_owner_and_its_dependents_up() {
    let mut g = Graph::new();
    g.observe(RS, &rs("rs1"));
    let blocking = owner_ref(RS, "web", "rs1", true);
    let loose = owner_ref(RS, "web", "rs1", false);
    g.observe(POD, &pod("p1", std::slice::from_ref(&blocking)));
    g.observe(POD, &pod("p2", std::slice::from_ref(&loose)));
    assert_eq!(uids(g.blocking_dependents("rs1")), ["pod-p1"]);

    let owner = deleting(rs("rs1"), &[FOREGROUND_FINALIZER]);
    assert_eq!(g.observe(RS, &owner), to_delete(&["pod-p1", "pod-p2", "rs1"]));
    assert!(g.node("rs1").is_some_and(|n| n.deleting && n.deleting_dependents && !n.orphaning));
    assert!(g.observe(RS, &owner).is_empty(), "the transition is reported once");

    // A dependent created meanwhile is waited for, so it needs a look too.
    assert_eq!(g.observe(POD, &pod("p3", std::slice::from_ref(&blocking))), to_delete(&["pod-p3"]));
    // A dependent that stops blocking, drops its reference or goes wakes the owner up.
    assert_eq!(g.observe(POD, &pod("p3", std::slice::from_ref(&loose))), to_delete(&["rs1"]));
    assert_eq!(g.observe(POD, &pod("p1", &[])), to_delete(&["rs1"]));
    assert!(g.observe(POD, &pod("p2", &[])).is_empty(), "a loose reference blocked nothing");
    assert_eq!(g.remove("pod-p3"), to_delete(&["rs1"]));
}

#[test]
fn orphan_deletion_is_reported_once() {
    let mut g = Graph::new();
    g.observe(RS, &rs("rs1"));
    let owner = deleting(rs("rs1"), &[ORPHAN_FINALIZER]);
    let want = Attention { orphan: BTreeSet::from(["rs1".to_string()]), ..Default::default() };
    assert_eq!(g.observe(RS, &owner), want);
    assert!(g.observe(RS, &owner).is_empty());
    // Seen for the first time already orphaning (after a restart): reported as well.
    let mut fresh = Graph::new();
    assert_eq!(fresh.observe(RS, &owner), want);
    // A deletion without the collector's finalizers needs nothing from it.
    let mut plain = Graph::new();
    assert!(plain.observe(RS, &deleting(rs("rs1"), &["example.com/hold"])).is_empty());
    assert!(plain.node("rs1").is_some_and(|n| n.deleting && !n.deleting_dependents && !n.orphaning));
}

#[test]
fn uids_are_identities_not_names() {
    let mut g = Graph::new();
    g.observe(RS, &rs("rs1"));
    let old = owner_ref(RS, "web", "rs1", true);
    g.observe(POD, &pod("p1", std::slice::from_ref(&old)));
    assert_eq!(g.remove("rs1"), to_delete(&["pod-p1"]));
    // The same name comes back with a new uid: it is another object, without dependents.
    assert!(g.observe(RS, &rs("rs2")).is_empty());
    assert_eq!(g.dependents("rs2").count(), 0);
    assert_eq!(uids(g.dependents("rs1")), ["pod-p1"]);

    // A uid seen again after its removal (a stale relist replays it) is linked once more,
    // without duplicate edges.
    let p1 = pod("p1", std::slice::from_ref(&old));
    g.remove("pod-p1");
    assert_eq!(g.observe(POD, &p1), to_delete(&["pod-p1"]), "its owner is unknown again");
    g.observe(POD, &p1);
    assert_eq!(uids(g.dependents("rs1")), ["pod-p1"]);
    assert_eq!(g.len(), 2);
}

#[test]
fn changed_references_move_the_edges() {
    let mut g = Graph::new();
    g.observe(RS, &rs("rs1"));
    g.observe(RS, &object(RS, "a", "api", "rs2", &[]));
    let to1 = owner_ref(RS, "web", "rs1", false);
    let to2 = owner_ref(RS, "api", "rs2", false);
    g.observe(POD, &pod("p", std::slice::from_ref(&to1)));
    assert!(g.observe(POD, &pod("p", &[to1.clone(), to2.clone()])).is_empty());
    assert_eq!((uids(g.dependents("rs1")), uids(g.dependents("rs2"))), (vec!["pod-p"], vec!["pod-p"]));
    assert!(g.observe(POD, &pod("p", std::slice::from_ref(&to2))).is_empty());
    assert_eq!((g.dependents("rs1").count(), uids(g.dependents("rs2"))), (0, vec!["pod-p"]));
}

#[test]
fn a_relist_removes_what_it_did_not_list_of_its_kind_only() {
    let mut g = Graph::new();
    g.observe(RS, &rs("rs1"));
    g.observe(RS, &object(RS, "a", "api", "rs2", &[]));
    let r = owner_ref(RS, "web", "rs1", false);
    g.observe(POD, &pod("p", std::slice::from_ref(&r)));
    let listed = HashSet::from(["rs2".to_string()]);
    assert_eq!(g.retain_listed(&RS, &listed), to_delete(&["pod-p"]));
    assert!(g.node("rs1").is_none() && g.node("rs2").is_some() && g.node("pod-p").is_some());
    assert_eq!(g.uids_of(&POD), ["pod-p"]);
}

#[test]
fn objects_without_uid_are_ignored() {
    let mut g = Graph::new();
    assert!(g.observe(RS, &rs("")).is_empty());
    assert!(g.is_empty());
}

#[test]
fn identities_match_references_by_group_kind_name_and_namespace() {
    let id = Identity::of(RS, &rs("rs1"));
    assert_eq!(id.to_string(), "ReplicaSet a/web (rs1)");
    let r = owner_ref(RS, "web", "rs1", false);
    assert!(id.is_named_by(&r, Some("a")));
    assert!(!id.is_named_by(&r, Some("b")));
    assert!(!id.is_named_by(&r, None));
    let other_version = OwnerReference { api_version: "apps/v1beta2".into(), ..r.clone() };
    assert!(id.is_named_by(&other_version, Some("a")), "versions of a group name the same object");
    let other_group = OwnerReference { api_version: "v1".into(), ..r };
    assert!(!id.is_named_by(&other_group, Some("a")));
    assert_eq!((api_group("apps/v1"), api_group("v1")), ("apps", ""));
}
