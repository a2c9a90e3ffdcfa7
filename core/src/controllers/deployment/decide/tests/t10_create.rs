//! The new ReplicaSet: creation, name, labels, annotations, revision, collisions; claiming
//! ReplicaSets; the first status.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use serde_json::json;

use super::{World, deployment, owned_rs, summary};
use crate::controller::events::EventType;
use crate::controllers::deployment::conditions::reasons;
use crate::controllers::deployment::decide::Step;
use crate::controllers::deployment::{
    DESIRED_REPLICAS_ANNOTATION, MAX_REPLICAS_ANNOTATION, POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION,
    compute_hash,
};

fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

#[test]
fn a_new_deployment_creates_its_replica_set_with_revision_1() {
    let mut d = deployment(json!({}));
    d.metadata.annotations = Some(
        [
            ("team".to_string(), "a".to_string()),
            ("kubectl.kubernetes.io/last-applied-configuration".to_string(), "{}".to_string()),
        ]
        .into(),
    );
    let world = World::new(d.clone());
    let plan = world.decide();
    let hash = compute_hash(&d.spec.as_ref().expect("spec").template, None);
    let name = format!("web-{hash}");
    assert_eq!(
        summary(&world, &plan),
        vec![format!("create {name} 3"), "revision 1".into(), "status".into()]
    );

    let rs = plan.created().next().expect("created");
    assert_eq!(rs.metadata.name.as_deref(), Some(name.as_str()));
    assert_eq!(rs.metadata.namespace.as_deref(), Some("default"));
    let owner = &rs.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Deployment", "d-uid", Some(true))
    );
    let labels = rs.metadata.labels.as_ref().expect("labels");
    assert_eq!(labels.get(POD_TEMPLATE_HASH_LABEL), Some(&hash));
    assert_eq!(labels.get("app").map(String::as_str), Some("web"));
    let spec = rs.spec.as_ref().expect("spec");
    assert_eq!(spec.selector.match_labels.as_ref().and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL)), Some(&hash));
    let tpl_labels = spec.template.as_ref().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.as_ref());
    assert_eq!(tpl_labels.and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL)), Some(&hash));
    assert_eq!(annotation(rs, REVISION_ANNOTATION), Some("1"));
    assert_eq!(annotation(rs, DESIRED_REPLICAS_ANNOTATION), Some("3"));
    // 25% of 3 rounds up to a surge of 1.
    assert_eq!(annotation(rs, MAX_REPLICAS_ANNOTATION), Some("4"));
    assert_eq!(annotation(rs, "team"), Some("a"));
    assert_eq!(annotation(rs, "kubectl.kubernetes.io/last-applied-configuration"), None);
    assert!(rs.metadata.creation_timestamp.is_none(), "the API sets it");

    let events: Vec<&str> = plan.events().map(|e| e.message.as_str()).collect();
    assert_eq!(events, vec![format!("Scaled up replica set {name} from 0 to 3")]);

    let status = plan.status().expect("status");
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!((status.replicas, status.updated_replicas, status.available_replicas), (None, None, None));
    assert_eq!(status.unavailable_replicas, Some(3));
    let conditions = status.conditions.as_ref().expect("conditions");
    let progressing = conditions.iter().find(|c| c.type_ == "Progressing").expect("progressing");
    assert_eq!(progressing.reason.as_deref(), Some(reasons::NEW_REPLICA_SET_CREATED));
    assert_eq!(progressing.message.as_deref(), Some(format!("Created new replica set {name:?}").as_str()));
    let available = conditions.iter().find(|c| c.type_ == "Available").expect("available");
    assert_eq!(
        (available.status.as_str(), available.reason.as_deref()),
        ("False", Some("MinimumReplicasUnavailable"))
    );
    // The deadline is 600 s away: look again just after it.
    assert_eq!(plan.requeue_after, Some(std::time::Duration::from_secs(601)));
}

#[test]
fn deciding_again_after_creation_changes_nothing_but_status() {
    let mut world = World::new(deployment(json!({})));
    world.step();
    assert_eq!(summary(&world, &world.decide()), Vec::<String>::new(), "steady state: no writes");
    world.settle();
    let plan = world.step();
    assert_eq!(summary(&world, &plan), vec!["status"]);
    let s = world.d.status.clone().expect("status");
    assert_eq!(
        (s.replicas, s.updated_replicas, s.ready_replicas, s.available_replicas, s.unavailable_replicas),
        (Some(3), Some(3), Some(3), Some(3), None)
    );
    assert_eq!(world.progressing_reason().as_deref(), Some(reasons::NEW_RS_AVAILABLE));
    assert_eq!(world.available_reason().as_deref(), Some(reasons::MINIMUM_REPLICAS_AVAILABLE));
    assert_eq!(plan.requeue_after, None, "complete: no deadline to watch");
    assert!(world.step().steps.is_empty(), "nothing more to write");
}

#[test]
fn a_name_collision_bumps_the_collision_count_and_uses_the_next_name() {
    let d = deployment(json!({}));
    let template = d.spec.as_ref().expect("spec").template.clone();
    let taken = format!("web-{}", compute_hash(&template, None));
    // Someone else's ReplicaSet holds the name (not selected, other template).
    let squatter: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": taken, "namespace": "default", "uid": "other", "labels": {"app": "other"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "other"}},
            "template": {"metadata": {"labels": {"app": "other"}},
                "spec": {"containers": [{"name": "c", "image": "other"}]}}}
    }))
    .expect("rs");
    let mut world = World::new(d);
    world.rss.push(Arc::new(squatter));
    let plan = world.decide();
    let next = format!("web-{}", compute_hash(&template, Some(1)));
    assert_ne!(next, taken);
    assert_eq!(plan.created().next().and_then(|rs| rs.metadata.name.clone()), Some(next));
    assert_eq!(plan.status().and_then(|s| s.collision_count), Some(1));
    world.apply(&plan);
    // The count stays, and the ReplicaSet is found by its template from now on.
    let again = world.decide();
    assert_eq!(again.created().count(), 0);
    assert_eq!(world.d.status.as_ref().and_then(|s| s.collision_count), Some(1));
}

#[test]
fn orphans_matching_the_selector_are_adopted_and_others_released() {
    let d = deployment(json!({}));
    let mut orphan = owned_rs("web-1", "web:1", 3, 4, "2026-03-01T11:00:00Z");
    orphan.metadata.owner_references = None;
    let mut mislabelled = owned_rs("web-0", "web:0", 0, 1, "2026-03-01T10:00:00Z");
    mislabelled.metadata.labels = Some([("app".to_string(), "elsewhere".to_string())].into());
    let mut world = World::new(d);
    world.rss = vec![Arc::new(orphan), Arc::new(mislabelled)];
    let plan = world.decide();
    let s = summary(&world, &plan);
    assert_eq!(s[..2], ["release web-0".to_string(), "adopt web-1".to_string()]);
    // The adopted ReplicaSet has the Deployment's template: it is the new one, at revision 4.
    assert_eq!(plan.created().count(), 0);
    assert!(s.contains(&"revision 4".to_string()), "{s:?}");
    match &plan.steps[1] {
        Step::Adopt { uid, resource_version, .. } => {
            assert_eq!((uid.as_str(), resource_version.as_str()), ("uid-web-1", "5"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_deployment_being_deleted_only_gets_its_status() {
    let mut d = deployment(json!({}));
    d.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(super::T0.parse().expect("time")));
    let mut orphan = owned_rs("web-1", "web:1", 3, 1, "2026-03-01T11:00:00Z");
    orphan.metadata.owner_references = None;
    let mut world = World::new(d);
    world.rss = vec![Arc::new(orphan)];
    let plan = world.decide();
    assert_eq!(summary(&world, &plan), vec!["status"], "no adoption, no creation");
}

#[test]
fn an_empty_selector_is_refused_with_a_warning() {
    let mut d = deployment(json!({}));
    d.spec.as_mut().expect("spec").selector = Default::default();
    let world = World::new(d);
    let plan = world.decide();
    let e = plan.events().next().expect("warning");
    assert_eq!((e.type_, e.reason), (EventType::Warning, "SelectingAll"));
    assert_eq!(plan.status().and_then(|s| s.observed_generation), Some(1));
    assert_eq!(plan.created().count(), 0);
}

#[test]
fn a_malformed_budget_is_an_error_naming_the_deployment() {
    let d = deployment(json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "lots"}}}));
    let world = World::new(d.clone());
    let observed = crate::controllers::deployment::Observed {
        deployment: &d,
        replica_sets: &world.rss,
        pods: &world.pods,
        now: world.now,
    };
    let err = crate::controllers::deployment::decide(&observed).expect_err("invalid");
    assert!(err.to_string().contains("default/web") && err.to_string().contains("maxSurge"), "{err}");
}

#[test]
fn huge_sizes_saturate_instead_of_overflowing() {
    let mut world = World::new(deployment(json!({
        "replicas": i32::MAX,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": 0}},
    })));
    world.step();
    world.settle();
    world.step();
    let image = json!({"containers": [{"name": "c", "image": "web:2"}]});
    world.edit(json!({"replicas": i32::MAX - 1, "template": {"spec": image}}));
    for _ in 0..4 {
        world.step();
        world.settle();
    }
    assert!(world.counts().iter().all(|n| *n >= 0), "{:?}", world.sizes());
}
