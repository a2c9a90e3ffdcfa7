use k8s_rs_pb::api::apps::v1 as apps;
use k8s_rs_pb::api::authorization::v1 as authz;
use k8s_rs_pb::api::core::v1 as core;
use k8s_rs_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_rs_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_rs_pb::apimachinery::pkg::runtime::RawExtension;
use k8s_rs_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message as _;
use protobuf::MessageField;
use serde_json::json;

use super::*;

/// `msg` in Kubernetes' envelope, as kubectl sends it.
fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let u = Unknown {
        type_meta: Some(TypeMeta { api_version: Some(api_version.into()), kind: Some(kind.into()) }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut bytes = MAGIC.to_vec();
    bytes.extend(u.encode_to_vec());
    bytes
}

/// `m` in protobuf, built with `k8s-rs-pb`'s generated types (an encoder independent of
/// the descriptor-driven decoder under test).
/// (Only its generated encoding is used: `k8s-rs-pb`'s reflection deadlocks, as each file
/// lists itself among its imports.)
fn encode<M: protobuf::Message>(m: &M) -> Vec<u8> {
    m.write_to_bytes().unwrap_or_default()
}

fn meta_named(name: &str) -> MessageField<meta::ObjectMeta> {
    MessageField::some(meta::ObjectMeta {
        name: Some(name.into()),
        // Go writes every non-pointer field: empty strings and the zero time come along.
        namespace: Some(String::new()),
        generation: Some(0),
        creationTimestamp: MessageField::some(meta::Time::default()),
        ..Default::default()
    })
}

fn int_or_string(is_string: bool, int: i32, s: &str) -> MessageField<IntOrString> {
    MessageField::some(IntOrString {
        type_: Some(i64::from(is_string)),
        intVal: Some(int),
        strVal: Some(s.into()),
        ..Default::default()
    })
}

#[test]
fn int_or_string_is_an_int_or_a_string() -> Result<()> {
    let port = |target| core::ServicePort { port: Some(80), targetPort: target, ..Default::default() };
    let svc = core::Service {
        metadata: meta_named("web"),
        spec: MessageField::some(core::ServiceSpec {
            ports: vec![port(int_or_string(false, 8080, "")), port(int_or_string(true, 0, "http"))],
            ..Default::default()
        }),
        ..Default::default()
    };
    let v = to_json(&envelope("v1", "Service", encode(&svc)))?;
    assert_eq!(
        v["spec"]["ports"],
        json!([{"port": 80, "targetPort": 8080}, {"port": 80, "targetPort": "http"}])
    );
    assert_eq!(v["metadata"], json!({"name": "web"}), "empty strings and the zero time are dropped");
    assert_eq!((v["apiVersion"].as_str(), v["kind"].as_str()), (Some("v1"), Some("Service")));
    Ok(())
}

#[test]
fn quantities_are_strings_and_bytes_base64() -> Result<()> {
    let q = |s: &str| Quantity { string: Some(s.into()), ..Default::default() };
    let container = core::Container {
        name: Some("app".into()),
        image: Some("nginx".into()),
        imagePullPolicy: Some(String::new()),
        resources: MessageField::some(core::ResourceRequirements {
            limits: [("cpu".to_string(), q("500m")), ("memory".to_string(), q("1Gi"))].into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = core::Pod {
        metadata: meta_named("p"),
        spec: MessageField::some(core::PodSpec { containers: vec![container], ..Default::default() }),
        ..Default::default()
    };
    let v = to_json(&envelope("v1", "Pod", encode(&pod)))?;
    assert_eq!(
        v["spec"]["containers"][0],
        json!({"name": "app", "image": "nginx", "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}}})
    );
    let cm = core::ConfigMap {
        metadata: meta_named("c"),
        data: [("k".to_string(), "v".to_string())].into(),
        binaryData: [("b".to_string(), b"\x00\x01hi".to_vec())].into(),
        ..Default::default()
    };
    let v = to_json(&envelope("v1", "ConfigMap", encode(&cm)))?;
    assert_eq!(v["data"], json!({"k": "v"}));
    assert_eq!(v["binaryData"], json!({"b": "AAFoaQ=="}));
    Ok(())
}

#[test]
fn times_are_rfc3339() {
    let cases: &[(Option<i64>, i32, bool, Value)] = &[
        (Some(1_700_000_000), 0, false, json!("2023-11-14T22:13:20Z")),
        (Some(1_700_000_000), 123_456_789, false, json!("2023-11-14T22:13:20Z")),
        (Some(1_700_000_000), 123_456_789, true, json!("2023-11-14T22:13:20.123456Z")),
        (Some(0), 0, false, json!("1970-01-01T00:00:00Z")),
        (None, 0, false, Value::Null),
        (Some(-62_135_596_800), 0, false, Value::Null),
    ];
    for (seconds, nanos, micro, want) in cases {
        assert_eq!(
            transcode::time(*seconds, *nanos, *micro).as_ref(),
            Ok(want),
            "{seconds:?} {nanos} {micro}"
        );
    }
    assert!(transcode::time(Some(i64::MAX), 0, false).is_err());
}

#[test]
fn time_fields_decode() -> Result<()> {
    let mut m = meta_named("x").unwrap_or_default();
    m.creationTimestamp = MessageField::some(meta::Time { seconds: Some(86_400), ..Default::default() });
    let ns = core::Namespace { metadata: MessageField::some(m), ..Default::default() };
    let v = to_json(&envelope("v1", "Namespace", encode(&ns)))?;
    assert_eq!(v["metadata"]["creationTimestamp"], json!("1970-01-02T00:00:00Z"));
    Ok(())
}

#[test]
fn durations_are_go_strings() {
    let cases = [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (2_000_000, "2ms"),
        (1_500_000_000, "1.5s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (3_723_000_000_000, "1h2m3s"),
        (-5_000_000_000, "-5s"),
    ];
    for (nanos, want) in cases {
        assert_eq!(transcode::duration(nanos), want, "{nanos}");
    }
}

#[test]
fn raw_extensions_embed_json() -> Result<()> {
    let cr = |raw: &[u8]| apps::ControllerRevision {
        metadata: meta_named("r"),
        data: MessageField::some(RawExtension { raw: Some(raw.to_vec()), ..Default::default() }),
        revision: Some(3),
        ..Default::default()
    };
    let v = to_json(&envelope("apps/v1", "ControllerRevision", encode(&cr(br#"{"spec":{"a":[1]}}"#))))?;
    assert_eq!(v["data"], json!({"spec": {"a": [1]}}));
    assert_eq!(v["revision"], json!(3));
    let err =
        to_json(&envelope("apps/v1", "ControllerRevision", encode(&cr(b"\x08\x01")))).expect_err("not json");
    assert!(err.to_string().contains("data: the embedded object is not JSON"), "{err}");
    Ok(())
}

#[test]
fn list_wrappers_are_lists() -> Result<()> {
    let review = authz::SubjectAccessReview {
        spec: MessageField::some(authz::SubjectAccessReviewSpec {
            user: Some("jane".into()),
            extra: [(
                "scopes".to_string(),
                authz::ExtraValue { items: vec!["a".into()], ..Default::default() },
            )]
            .into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let v = to_json(&envelope("authorization.k8s.io/v1", "SubjectAccessReview", encode(&review)))?;
    assert_eq!(v["spec"], json!({"user": "jane", "extra": {"scopes": ["a"]}}));
    Ok(())
}

#[test]
fn errors_name_what_failed() {
    let status = |r: Result<Value>| r.map_err(|e| (e.code(), e.to_string())).expect_err("an error");
    let (code, msg) = status(to_json(b"{\"kind\":\"Pod\"}"));
    assert_eq!(code, 400, "{msg}");
    assert!(msg.contains("magic"), "{msg}");
    let (code, msg) = status(to_json(b"k8s\0\xff\xff"));
    assert_eq!(code, 400, "{msg}");
    assert!(msg.contains("envelope"), "{msg}");
    let (code, msg) = status(to_json(&envelope("example.com/v1", "Widget", vec![])));
    assert_eq!(code, 415, "{msg}");
    assert!(msg.contains("example.com/v1 Widget"), "{msg}");
    // A length-delimited field whose length runs past the end.
    let (code, msg) = status(to_json(&envelope("apps/v1", "Deployment", vec![0x0a, 0x05, 0x01])));
    assert_eq!(code, 400, "{msg}");
    assert!(msg.contains("apps/v1 Deployment does not decode as api.apps.v1.Deployment"), "{msg}");
    let mut gz = Unknown::decode(&envelope("v1", "Pod", vec![])[4..]).unwrap_or_default();
    gz.content_encoding = Some("gzip".into());
    let mut bytes = MAGIC.to_vec();
    bytes.extend(gz.encode_to_vec());
    let (code, msg) = status(to_json(&bytes));
    assert_eq!(code, 415, "{msg}");
    assert!(msg.contains("gzip"), "{msg}");
}

#[test]
fn kinds_resolve_by_group_and_version() {
    let cases = [
        ("v1", "Pod", Some("api.core.v1.Pod")),
        ("apps/v1", "Deployment", Some("api.apps.v1.Deployment")),
        ("rbac.authorization.k8s.io/v1", "RoleBinding", Some("api.rbac.v1.RoleBinding")),
        (
            "certificates.k8s.io/v1",
            "CertificateSigningRequest",
            Some("api.certificates.v1.CertificateSigningRequest"),
        ),
        ("authentication.k8s.io/v1", "TokenRequest", Some("api.authentication.v1.TokenRequest")),
        (
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            Some("apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition"),
        ),
        ("v1", "DeleteOptions", Some("apimachinery.pkg.apis.meta.v1.DeleteOptions")),
        ("policy/v1", "Eviction", Some("api.policy.v1.Eviction")),
        ("apps/v1", "Pod", None),
        ("example.com/v1", "Widget", None),
    ];
    for (api_version, kind, want) in cases {
        assert_eq!(catalog::full_name(api_version, kind).as_deref(), want, "{api_version} {kind}");
    }
}

#[test]
fn can_i_reviews_decode() -> Result<()> {
    let review = authz::SelfSubjectAccessReview {
        spec: MessageField::some(authz::SelfSubjectAccessReviewSpec {
            resourceAttributes: MessageField::some(authz::ResourceAttributes {
                namespace: Some("default".into()),
                verb: Some("list".into()),
                resource: Some("pods".into()),
                group: Some(String::new()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let bytes = envelope("authorization.k8s.io/v1", "SelfSubjectAccessReview", encode(&review));
    let v = self_subject_access_review(&bytes)?;
    assert_eq!(
        v["spec"]["resourceAttributes"],
        json!({"namespace": "default", "verb": "list", "resource": "pods"})
    );
    assert!(self_subject_access_review(&envelope("v1", "Namespace", vec![])).is_err());
    assert!(is_protobuf("application/vnd.kubernetes.protobuf; charset=x"));
    Ok(())
}

#[test]
fn packages_map_to_groups() {
    let cases = [
        ("api.core.v1", Some(("", "v1"))),
        ("api.apps.v1", Some(("apps", "v1"))),
        ("api.rbac.v1", Some(("rbac.authorization.k8s.io", "v1"))),
        ("api.storage.v1beta1", Some(("storage.k8s.io", "v1beta1"))),
        ("api.apiserverinternal.v1alpha1", Some(("internal.apiserver.k8s.io", "v1alpha1"))),
        ("metrics.pkg.apis.custom_metrics.v1beta2", Some(("custom.metrics.k8s.io", "v1beta2"))),
        ("kube_aggregator.pkg.apis.apiregistration.v1", Some(("apiregistration.k8s.io", "v1"))),
        ("apimachinery.pkg.runtime", None),
    ];
    for (package, want) in cases {
        let got = catalog::group_version(package);
        assert_eq!(got.as_ref().map(|(g, v)| (g.as_str(), *v)), want, "{package}");
    }
}

#[test]
fn zero_pointers_survive_and_generation_zero_goes() -> Result<()> {
    let d = apps::Deployment {
        metadata: meta_named("web"),
        spec: MessageField::some(apps::DeploymentSpec {
            replicas: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    let v = to_json(&envelope("apps/v1", "Deployment", encode(&d)))?;
    assert_eq!(v["spec"], json!({"replicas": 0, "paused": false}));
    assert_eq!(v["metadata"], json!({"name": "web"}));
    Ok(())
}
