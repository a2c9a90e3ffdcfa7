use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, Pod, PodSpec, PodStatus, ResourceQuota, ResourceQuotaSpec, ResourceRequirements,
    ScopeSelector, ScopedResourceSelectorRequirement,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Wire;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::names::{Scope, ScopeOp, Tracked, parse};
use super::pods::{is_best_effort, is_counted, matches_scopes, missing_requests, pod_amounts};
use super::*;
use crate::validation::FieldPath;

fn list(pairs: &[(&str, &str)]) -> BTreeMap<String, Wire> {
    pairs.iter().map(|(k, v)| (k.to_string(), Wire(v.to_string()))).collect()
}

fn rl(pairs: &[(&str, &str)]) -> ResourceList {
    pairs.iter().map(|(k, v)| (k.to_string(), Quantity::parse(v).expect("valid"))).collect()
}

fn container(name: &str, requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
    Container {
        name: name.into(),
        image: Some("app:1".into()),
        resources: Some(ResourceRequirements {
            requests: (!requests.is_empty()).then(|| list(requests)),
            limits: (!limits.is_empty()).then(|| list(limits)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod(containers: Vec<Container>) -> Pod {
    Pod {
        metadata: ObjectMeta { name: Some("p".into()), namespace: Some("ns".into()), ..Default::default() },
        spec: Some(PodSpec { containers, ..Default::default() }),
        status: None,
    }
}

fn quota(hard: &[(&str, &str)], scopes: &[&str]) -> QuotaRules {
    let q = ResourceQuota {
        metadata: ObjectMeta { name: Some("q".into()), ..Default::default() },
        spec: Some(ResourceQuotaSpec {
            hard: Some(list(hard)),
            scopes: (!scopes.is_empty()).then(|| scopes.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }),
        status: None,
    };
    QuotaRules::of(&q).expect("valid quota")
}

#[test]
fn resource_names_parse_to_what_they_count() {
    let objects = |g: &str, p: &str| Tracked::Objects { group: g.into(), plural: p.into() };
    let cases = [
        ("pods", Tracked::Pods),
        ("count/pods", Tracked::Pods),
        ("cpu", Tracked::Requests("cpu".into())),
        ("requests.memory", Tracked::Requests("memory".into())),
        ("requests.example.com/gpu", Tracked::Requests("example.com/gpu".into())),
        ("requests.hugepages-2Mi", Tracked::Requests("hugepages-2Mi".into())),
        ("limits.ephemeral-storage", Tracked::Limits("ephemeral-storage".into())),
        ("services", objects("", "services")),
        ("count/configmaps", objects("", "configmaps")),
        ("count/deployments.apps", objects("apps", "deployments")),
        ("count/widgets.example.com", objects("example.com", "widgets")),
    ];
    for (name, want) in cases {
        assert_eq!(parse(name), Ok(want), "{name}");
    }
    for bad in [
        "requests.storage",
        "limits.example.com/gpu",
        "example.com/gpu",
        "bananas",
        "count/",
        "requests.bogus",
    ] {
        assert!(parse(bad).is_err(), "{bad} should be refused");
    }
    assert!(parse("example.com/gpu").expect_err("refused").contains("requests.example.com/gpu"));
}

#[test]
fn pod_requests_and_limits_follow_init_containers_sidecars_and_overhead() {
    let mut p = pod(vec![
        container("a", &[("cpu", "100m")], &[("cpu", "200m"), ("memory", "64Mi")]),
        container("b", &[], &[("cpu", "300m")]),
    ]);
    let spec = p.spec.as_mut().expect("spec");
    spec.init_containers =
        Some(vec![container("side", &[("cpu", "50m")], &[]), container("init", &[("cpu", "1")], &[])]);
    spec.init_containers.as_mut().expect("init")[0].restart_policy = Some("Always".into());
    spec.overhead = Some(list(&[("cpu", "10m"), ("memory", "1Mi")]));
    // Requests: containers 100m + 300m (limit stands in) + sidecar 50m = 450m; the init
    // container runs next to the sidecar: 1050m, which is larger; plus 10m overhead.
    let requests = pod_amounts(&p, false).expect("valid");
    assert_eq!(requests.get("cpu").map(ToString::to_string).as_deref(), Some("1060m"));
    assert_eq!(requests.get("memory").map(ToString::to_string).as_deref(), Some("65Mi"));
    // Limits: 200m + 300m, init containers set none; overhead only where a limit is set.
    let limits = pod_amounts(&p, true).expect("valid");
    assert_eq!(limits.get("cpu").map(ToString::to_string).as_deref(), Some("510m"));
    assert_eq!(limits.get("memory").map(ToString::to_string).as_deref(), Some("65Mi"));
    let bad = pod(vec![container("a", &[("cpu", "lots")], &[])]);
    let err = pod_amounts(&bad, false).expect_err("invalid quantity");
    assert!(err.to_string().contains("spec.containers[0].resources.requests[cpu]"), "{err}");
}

#[test]
fn pods_must_state_what_a_quota_tracks() {
    let q = quota(&[("requests.cpu", "1"), ("limits.memory", "1Gi"), ("pods", "5")], &[]);
    let tracked = q.tracked_for("", "pods");
    let p = pod(vec![container("b", &[("cpu", "1")], &[]), container("a", &[], &[("memory", "1Gi")])]);
    assert_eq!(
        missing_requests(&p, &tracked).as_deref(),
        Some("must specify limits.memory for: b; requests.cpu for: a")
    );
    let ok = pod(vec![container("a", &[("cpu", "1")], &[("memory", "1Gi")])]);
    assert_eq!(missing_requests(&ok, &tracked), None);
    // Only cpu and memory are enforced; a pods-only quota asks nothing.
    assert_eq!(
        missing_requests(&pod(vec![container("a", &[], &[])]), &quota(&[("pods", "1")], &[]).tracked),
        None
    );
}

#[test]
fn charging_refuses_with_only_the_exceeded_names() {
    let q = quota(&[("pods", "2"), ("requests.cpu", "1"), ("memory", "1Gi")], &[]);
    let used = rl(&[("pods", "1"), ("requests.cpu", "600m"), ("memory", "0")]);
    let fits =
        q.charge(&used, &rl(&[("pods", "1"), ("requests.cpu", "400m"), ("memory", "512Mi")])).expect("ok");
    assert_eq!(fits, Ok(rl(&[("pods", "2"), ("requests.cpu", "1"), ("memory", "512Mi")])));
    let refused =
        q.charge(&used, &rl(&[("pods", "1"), ("requests.cpu", "500m"), ("memory", "2Gi")])).expect("ok");
    assert_eq!(
        refused,
        Err("exceeded quota: q, requested: memory=2Gi,requests.cpu=500m, used: memory=0,requests.cpu=600m, \
             limited: memory=1Gi,requests.cpu=1"
            .into())
    );
    // Zero requests are not charged, and names the quota does not hold are ignored.
    let zero = q.charge(&used, &rl(&[("requests.cpu", "0"), ("limits.cpu", "9")])).expect("ok");
    assert_eq!(zero, Ok(used.clone()));
}

#[test]
fn usage_counts_only_pods_that_count_and_match_the_scopes() {
    let now = Timestamp::from_second(1_000_000).expect("time");
    let be = pod(vec![container("a", &[], &[])]);
    let burstable = pod(vec![container("a", &[("cpu", "250m")], &[])]);
    let mut done = burstable.clone();
    done.status = Some(PodStatus { phase: Some("Succeeded".into()), ..Default::default() });
    let mut leaving = burstable.clone();
    leaving.metadata.deletion_timestamp =
        Some(Time(now.checked_sub(SignedDuration::from_secs(10)).expect("t")));
    leaving.metadata.deletion_grace_period_seconds = Some(30);
    let mut gone = leaving.clone();
    gone.metadata.deletion_grace_period_seconds = Some(5);
    assert!(is_counted(&leaving, now) && !is_counted(&gone, now) && !is_counted(&done, now));
    assert!(is_best_effort(&be) && !is_best_effort(&burstable));
    let objs: Vec<crate::object::DynamicObject> = [&be, &burstable, &done, &leaving, &gone]
        .iter()
        .map(|p| crate::object::DynamicObject::from_typed(*p).expect("pod"))
        .collect();
    let all = quota(&[("pods", "10"), ("requests.cpu", "2"), ("services", "1")], &[]);
    let used = all.usage(objs.iter().map(|o| ("", "pods", o)), now).expect("usage");
    assert_eq!(used, rl(&[("pods", "3"), ("requests.cpu", "500m"), ("services", "0")]));
    let best_effort = quota(&[("pods", "10")], &["BestEffort"]);
    let used = best_effort.usage(objs.iter().map(|o| ("", "pods", o)), now).expect("usage");
    assert_eq!(used, rl(&[("pods", "1")]));
    let svc = crate::object::DynamicObject::from_typed(&k8s_openapi::api::core::v1::Service::default())
        .expect("svc");
    assert_eq!(all.usage_of("", "services", &svc, now).expect("ok"), Some(rl(&[("services", "1")])));
    assert_eq!(best_effort.usage_of("", "services", &svc, now).expect("ok"), None);
}

#[test]
fn scopes_select_pods_by_deadline_qos_and_priority_class() {
    let mut p = pod(vec![container("a", &[("memory", "1Mi")], &[])]);
    let spec = p.spec.as_mut().expect("spec");
    spec.active_deadline_seconds = Some(60);
    spec.priority_class_name = Some("high".into());
    let class = |op: ScopeOp| Scope::PriorityClass(op);
    assert!(matches_scopes(&p, &[Scope::Terminating, Scope::NotBestEffort]));
    assert!(!matches_scopes(&p, &[Scope::NotTerminating]));
    assert!(!matches_scopes(&p, &[Scope::BestEffort]));
    assert!(matches_scopes(&p, &[class(ScopeOp::In(vec!["low".into(), "high".into()]))]));
    assert!(!matches_scopes(&p, &[class(ScopeOp::NotIn(vec!["high".into()]))]));
    assert!(matches_scopes(&p, &[class(ScopeOp::Exists)]));
    assert!(!matches_scopes(&p, &[class(ScopeOp::DoesNotExist)]));
    assert!(matches_scopes(
        &pod(vec![]),
        &[class(ScopeOp::NotIn(vec!["high".into()])), class(ScopeOp::DoesNotExist)]
    ));
}

#[test]
fn scope_selectors_are_checked_field_by_field() {
    let expr = |name: &str, op: &str, values: &[&str]| ScopedResourceSelectorRequirement {
        scope_name: name.into(),
        operator: op.into(),
        values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
    };
    let spec = ResourceQuotaSpec {
        scopes: Some(vec!["BestEffort".into(), "Sometimes".into(), "NotBestEffort".into()]),
        scope_selector: Some(ScopeSelector {
            match_expressions: Some(vec![
                expr("PriorityClass", "In", &["high"]),
                expr("PriorityClass", "In", &[]),
                expr("Terminating", "NotIn", &[]),
                expr("Nope", "Exists", &[]),
            ]),
        }),
        ..Default::default()
    };
    let (scopes, errs) = names::scopes(&spec, &FieldPath::new("spec"));
    assert_eq!(scopes.len(), 3, "{scopes:?}");
    let text = errs.to_string();
    for want in [
        "spec.scopes[1]: Unsupported value: \"Sometimes\"",
        "spec.scopeSelector.matchExpressions[1].values: Required value",
        "spec.scopeSelector.matchExpressions[2].operator: Unsupported value: \"NotIn\"",
        "spec.scopeSelector.matchExpressions[3].scopeName: Unsupported value: \"Nope\"",
        "conflicting scopes",
    ] {
        assert!(text.contains(want), "missing {want:?} in {text}");
    }
}
