//! JSON and YAML round trips of every built-in kind.
//!
//! Generated objects of each kind (strategies in `roundtrip/`) must come back equal from JSON
//! and YAML text, and through [`DynamicObject`], the form the registry stores, patches and
//! serves. Fixed checks pin the wire form to Kubernetes' own: camelCase names, omitted empty
//! fields, quantities as strings, ports as numbers or names, times with seconds (or, for
//! `MicroTime`, microseconds) precision. A manifest as a user writes it parses as expected.

#[path = "roundtrip/mod.rs"]
mod strategies;

use std::collections::BTreeSet;

use flotilla_core::object::{DynamicObject, KindRegistry, Resource, ResourceType};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerPort, Endpoints, Event, HTTPGetAction, Namespace, Node, PersistentVolume,
    PersistentVolumeClaim, Pod, PodSpec, Probe, ResourceQuota, ResourceRequirements, Secret, Service,
    ServiceAccount, TCPSocketAction,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::{Value, json};
use strategies::{core_kinds, group_kinds, pod};

/// Every round trip of one object; a failure names the kind and the step that lost something.
fn check<K: Resource + PartialEq>(obj: &K) -> Result<(), TestCaseError> {
    let kind = K::TYPE.kind;
    let fail = |step: &str, e: &dyn std::fmt::Display| TestCaseError::fail(format!("{kind}: {step}: {e}"));

    let json = serde_json::to_string(obj).map_err(|e| fail("to JSON", &e))?;
    let back: K = serde_json::from_str(&json).map_err(|e| fail("from JSON", &e))?;
    prop_assert_eq!(&back, obj, "{}: JSON round trip changed the object; JSON: {}", kind, json);
    let again = serde_json::to_string(&back).map_err(|e| fail("to JSON again", &e))?;
    prop_assert_eq!(&again, &json, "{}: JSON text is not stable", kind);

    let yaml = serde_yaml_ng::to_string(obj).map_err(|e| fail("to YAML", &e))?;
    let back: K = serde_yaml_ng::from_str(&yaml).map_err(|e| fail("from YAML", &e))?;
    prop_assert_eq!(&back, obj, "{}: YAML round trip changed the object; YAML:\n{}", kind, yaml);
    let again = serde_yaml_ng::to_string(&back).map_err(|e| fail("to YAML again", &e))?;
    prop_assert_eq!(&again, &yaml, "{}: YAML text is not stable", kind);

    // The two texts describe the same JSON value.
    let value = serde_json::to_value(obj).map_err(|e| fail("to a JSON value", &e))?;
    let yaml_value: Value = serde_yaml_ng::from_str(&yaml).map_err(|e| fail("YAML to a JSON value", &e))?;
    prop_assert_eq!(&yaml_value, &value, "{}: YAML and JSON differ; YAML:\n{}", kind, yaml);

    let dynamic = DynamicObject::from_typed(obj).map_err(|e| fail("to DynamicObject", &e))?;
    let api_version = K::TYPE.api_version();
    prop_assert_eq!(
        (dynamic.api_version.as_str(), dynamic.kind.as_str()),
        (api_version.as_str(), kind),
        "{}: DynamicObject's type",
        kind
    );
    prop_assert_eq!(
        &dynamic.to_value(),
        &value,
        "{}: DynamicObject's JSON differs from the typed JSON",
        kind
    );
    let typed: K = dynamic.to_typed().map_err(|e| fail("DynamicObject to typed", &e))?;
    prop_assert_eq!(&typed, obj, "{}: typed -> DynamicObject -> typed changed the object", kind);

    let from_json: DynamicObject =
        serde_json::from_str(&json).map_err(|e| fail("JSON to DynamicObject", &e))?;
    prop_assert_eq!(&from_json, &dynamic, "{}: JSON text -> DynamicObject", kind);
    let from_yaml: DynamicObject =
        serde_yaml_ng::from_str(&yaml).map_err(|e| fail("YAML to DynamicObject", &e))?;
    prop_assert_eq!(&from_yaml, &dynamic, "{}: YAML text -> DynamicObject; YAML:\n{}", kind, yaml);
    let typed: K = from_yaml.to_typed().map_err(|e| fail("YAML DynamicObject to typed", &e))?;
    prop_assert_eq!(&typed, obj, "{}: YAML text -> DynamicObject -> typed changed the object", kind);
    Ok(())
}

/// One property per kind, and the list of kinds covered (checked against the registry).
macro_rules! round_trips {
    ($($test:ident: $ty:ty = $strategy:expr;)*) => {
        proptest! {
            // A failure prints the shrunk object; nothing is written next to the sources.
            #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]
            $(
                /// Generated objects of this kind survive every round trip in `check`.
                #[test]
                fn $test(obj in $strategy) {
                    check::<$ty>(&obj)?;
                }
            )*
        }

        /// The kinds with a round-trip property.
        const COVERED: &[ResourceType] = &[$(<$ty as Resource>::TYPE),*];
    };
}

round_trips! {
    namespace_round_trips: Namespace = core_kinds::namespace();
    node_round_trips: Node = core_kinds::node();
    pod_round_trips: Pod = pod::pod();
    service_round_trips: Service = core_kinds::service();
    endpoints_round_trip: Endpoints = core_kinds::endpoints();
    persistent_volume_round_trips: PersistentVolume = core_kinds::persistent_volume();
    persistent_volume_claim_round_trips: PersistentVolumeClaim = core_kinds::persistent_volume_claim();
    config_map_round_trips: ConfigMap = core_kinds::config_map();
    secret_round_trips: Secret = core_kinds::secret();
    service_account_round_trips: ServiceAccount = core_kinds::service_account();
    resource_quota_round_trips: ResourceQuota = core_kinds::resource_quota();
    event_round_trips: Event = core_kinds::event();
    replica_set_round_trips: ReplicaSet = group_kinds::replica_set();
    deployment_round_trips: Deployment = group_kinds::deployment();
    endpoint_slice_round_trips: EndpointSlice = group_kinds::endpoint_slice();
    storage_class_round_trips: StorageClass = group_kinds::storage_class();
    priority_class_round_trips: PriorityClass = group_kinds::priority_class();
    lease_round_trips: Lease = group_kinds::lease();
    role_round_trips: Role = group_kinds::role();
    cluster_role_round_trips: ClusterRole = group_kinds::cluster_role();
    role_binding_round_trips: RoleBinding = group_kinds::role_binding();
    cluster_role_binding_round_trips: ClusterRoleBinding = group_kinds::cluster_role_binding();
    certificate_signing_request_round_trips: CertificateSigningRequest = group_kinds::certificate_signing_request();
}

/// Every kind the built-in registry serves has a round-trip property, and no other kind does:
/// a kind added to the registry without a strategy fails here.
#[test]
fn every_builtin_kind_round_trips() {
    let served: BTreeSet<_> = KindRegistry::builtin().types().map(|t| (t.group, t.kind)).collect();
    let covered: BTreeSet<_> = COVERED.iter().map(|t| (t.group, t.kind)).collect();
    assert_eq!(covered.len(), COVERED.len(), "a kind is listed twice");
    assert_eq!(covered, served);
}

/// `count` generated objects, as JSON text, from a fixed seed.
fn sample<T: serde::Serialize>(strategy: impl Strategy<Value = T>, count: usize) -> String {
    let mut runner = TestRunner::deterministic();
    (0..count)
        .map(|_| {
            let obj = strategy.new_tree(&mut runner).expect("the strategies never reject").current();
            serde_json::to_string(&obj).expect("generated objects serialize")
        })
        .collect()
}

/// Pod fields the generators must reach (the ones Flotilla's components act on).
#[rustfmt::skip]
const POD_FIELDS: &[&str] = &[
    "initContainers", "valueFrom", "fieldRef", "secretKeyRef", "protocol", "requests", "limits",
    "livenessProbe", "readinessProbe", "startupProbe", "exec", "httpGet", "tcpSocket", "volumeMounts",
    "emptyDir", "sizeLimit", "hostPath", "persistentVolumeClaim", "configMap", "secret", "restartPolicy",
    "nodeSelector", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "tolerations",
    "nodeName", "schedulerName", "priority", "terminationGracePeriodSeconds", "phase", "conditions",
    "containerStatuses", "terminated", "podIP", "hostIP", "creationTimestamp", "deletionTimestamp",
    "ownerReferences", "managedFields", "fieldsV1",
];

/// The generators reach the fields and values the round trips are meant to exercise, so a
/// strategy that quietly stops producing them fails here rather than passing vacuously.
#[test]
fn generators_reach_every_field() {
    let pods = sample(pod::pod(), 256);
    for field in POD_FIELDS {
        assert!(pods.contains(&format!("\"{field}\":")), "no generated Pod has {field}");
    }
    // Values: an empty list, a named port, strings YAML must quote, a line break.
    for value in [r#""finalizers":[]"#, r#""port":""#, r#""1e3""#, r#""true""#, r#""~""#, r"\n"] {
        assert!(pods.contains(value), "no generated Pod contains {value}");
    }
    let leases = sample(group_kinds::lease(), 64);
    assert!(leases.contains("\"renewTime\""), "no generated Lease has a renewTime");
    let config_maps = sample(core_kinds::config_map(), 64);
    assert!(config_maps.contains("\"binaryData\""), "no generated ConfigMap has binaryData");
}

/// Empty optional fields are omitted, as Kubernetes' `omitempty` does: a pod with only a name
/// is exactly that, in JSON, in YAML and through `DynamicObject`.
#[test]
fn minimal_pod_is_exactly_kubernetes_json() {
    let pod =
        Pod { metadata: ObjectMeta { name: Some("x".into()), ..Default::default() }, ..Default::default() };
    let expected = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"}}"#;
    assert_eq!(serde_json::to_string(&pod).expect("serializes"), expected);
    let dynamic = DynamicObject::from_typed(&pod).expect("converts");
    assert_eq!(serde_json::to_string(&dynamic).expect("serializes"), expected);
    assert_eq!(
        serde_yaml_ng::to_string(&pod).expect("serializes"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n"
    );
    assert_eq!(serde_json::from_str::<Pod>(expected).expect("parses"), pod);
}

/// Field names are camelCase, quantities are strings as written, an IntOrString port is a
/// number or a name, and times are RFC 3339 in UTC with seconds precision.
#[test]
fn wire_form_is_kubernetes() {
    let t = |s: &str| Time(s.parse::<Timestamp>().expect("a valid time"));
    let q = |s: &str| Quantity(s.into());
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            creation_timestamp: Some(t("2026-11-26T00:00:00Z")),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some("nginx".into()),
                ports: Some(vec![ContainerPort { container_port: 80, ..Default::default() }]),
                resources: Some(ResourceRequirements {
                    requests: Some([("cpu".into(), q("250m")), ("memory".into(), q("1Gi"))].into()),
                    limits: Some([("cpu".into(), q("1e3"))].into()),
                    claims: None,
                }),
                liveness_probe: Some(Probe {
                    http_get: Some(HTTPGetAction { port: IntOrString::Int(8080), ..Default::default() }),
                    ..Default::default()
                }),
                readiness_probe: Some(Probe {
                    tcp_socket: Some(TCPSocketAction {
                        port: IntOrString::String("http".into()),
                        host: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            restart_policy: Some("Always".into()),
            termination_grace_period_seconds: Some(30),
            ..Default::default()
        }),
        status: None,
    };
    let expected = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "creationTimestamp": "2026-11-26T00:00:00Z"},
        "spec": {
            "containers": [{
                "name": "c",
                "image": "nginx",
                "ports": [{"containerPort": 80}],
                "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "1e3"}},
                "livenessProbe": {"httpGet": {"port": 8080}},
                "readinessProbe": {"tcpSocket": {"port": "http"}},
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
        },
    });
    assert_eq!(serde_json::to_value(&pod).expect("serializes"), expected);
    assert_eq!(serde_json::from_value::<Pod>(expected).expect("parses"), pod);
}

/// One value as JSON text.
fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("serializes")
}

/// `Time` keeps seconds and `MicroTime` microseconds, as Kubernetes writes them: finer parts are
/// truncated (so only whole seconds or microseconds round-trip), offsets are read and written as
/// UTC, and `MicroTime` always has six fractional digits.
#[test]
fn times_have_kubernetes_precision() {
    let ts = |s: &str| s.parse::<Timestamp>().expect("a valid time");
    assert_eq!(to_json(&Time(ts("2026-11-26T00:00:00.999999999Z"))), "\"2026-11-26T00:00:00Z\"");
    assert_eq!(to_json(&MicroTime(ts("2026-11-26T00:00:00.123456789Z"))), "\"2026-11-26T00:00:00.123456Z\"");
    assert_eq!(to_json(&MicroTime(ts("2026-11-26T00:00:00Z"))), "\"2026-11-26T00:00:00.000000Z\"");
    assert_eq!(to_json(&Time(ts("0001-01-01T00:00:00Z"))), "\"0001-01-01T00:00:00Z\"");
    let read: Time = serde_json::from_str("\"2026-11-26T01:00:00+01:00\"").expect("parses");
    assert_eq!(read, Time(ts("2026-11-26T00:00:00Z")));
    let lease = Lease {
        metadata: ObjectMeta::default(),
        spec: Some(LeaseSpec {
            renew_time: Some(MicroTime(ts("2026-11-26T00:00:00.000001Z"))),
            ..Default::default()
        }),
    };
    let yaml = serde_yaml_ng::to_string(&lease).expect("serializes");
    assert!(yaml.contains("renewTime: 2026-11-26T00:00:00.000001Z"), "{yaml}");
    assert_eq!(serde_yaml_ng::from_str::<Lease>(&yaml).expect("parses"), lease);
}

/// Binary data is base64 in JSON and YAML; a Secret's `stringData` is plain text; an empty list
/// stays an empty list (where Kubernetes' own `omitempty` would drop it).
#[test]
fn bytes_are_base64_and_empty_lists_are_kept() {
    use k8s_openapi::ByteString;
    let cm = ConfigMap {
        metadata: ObjectMeta { name: Some("cm".into()), finalizers: Some(vec![]), ..Default::default() },
        data: Some([("port".into(), "80".into())].into()),
        binary_data: Some([("b".into(), ByteString(vec![0, 1, 2, 255]))].into()),
        ..Default::default()
    };
    let expected = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cm", "finalizers": []},
        "data": {"port": "80"},
        "binaryData": {"b": "AAEC/w=="},
    });
    assert_eq!(serde_json::to_value(&cm).expect("serializes"), expected);
    let yaml = serde_yaml_ng::to_string(&cm).expect("serializes");
    assert!(yaml.contains("port: '80'"), "a number-like string must be quoted in YAML:\n{yaml}");
    assert_eq!(serde_yaml_ng::from_str::<ConfigMap>(&yaml).expect("parses"), cm);
    let secret = Secret {
        data: Some([("k".into(), ByteString(b"v".to_vec()))].into()),
        string_data: Some([("s".into(), "plain".into())].into()),
        ..Default::default()
    };
    let value = serde_json::to_value(&secret).expect("serializes");
    assert_eq!((&value["data"], &value["stringData"]), (&json!({"k": "dg=="}), &json!({"s": "plain"})));
}

/// A Deployment as a user writes it.
const MANIFEST: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
  labels:
    app: web
  annotations:
    deployment.kubernetes.io/revision: "3"
spec:
  replicas: 3
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      app: web
    matchExpressions:
      - key: tier
        operator: In
        values: [frontend, edge]
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 1
  template:
    metadata:
      labels:
        app: web
        tier: frontend
    spec:
      terminationGracePeriodSeconds: 30
      nodeSelector:
        kubernetes.io/os: linux
      tolerations:
        - key: dedicated
          operator: Equal
          value: web
          effect: NoSchedule
      containers:
        - name: nginx
          image: nginx:1.27
          args: ["--port", "80"]
          ports:
            - containerPort: 80
              name: http
            - containerPort: 443
              protocol: TCP
          env:
            - name: MODE
              value: production
            - name: POD_IP
              valueFrom:
                fieldRef:
                  fieldPath: status.podIP
          resources:
            requests:
              cpu: 250m
              memory: 64Mi
            limits:
              cpu: "2"
              memory: 1Gi
          readinessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 5
          livenessProbe:
            tcpSocket:
              port: 80
          volumeMounts:
            - name: cache
              mountPath: /var/cache/nginx
      volumes:
        - name: cache
          emptyDir:
            sizeLimit: 1Gi
"#;

/// A hand-written manifest parses into the typed Deployment with the values a user means
/// (ports as numbers or names, quantities as written), serializes back to the same JSON value,
/// and reads the same through `DynamicObject`.
#[test]
fn manifest_parses_as_written() {
    let deploy: Deployment = serde_yaml_ng::from_str(MANIFEST).expect("the manifest parses");
    let spec = deploy.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(3));
    let rolling = spec.strategy.as_ref().and_then(|s| s.rolling_update.as_ref()).expect("rollingUpdate");
    assert_eq!(rolling.max_surge, Some(IntOrString::String("25%".into())));
    assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(1)));
    let pod = spec.template.spec.as_ref().expect("template spec");
    let c = &pod.containers[0];
    let ports: Vec<_> = c.ports.iter().flatten().map(|p| (p.container_port, p.protocol.as_deref())).collect();
    assert_eq!(ports, [(80, None), (443, Some("TCP"))]);
    let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref()).expect("requests");
    assert_eq!(requests["cpu"], Quantity("250m".into()));
    let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref()).expect("limits");
    assert_eq!(limits["cpu"], Quantity("2".into()));
    let readiness = c.readiness_probe.as_ref().and_then(|p| p.http_get.as_ref()).expect("httpGet");
    assert_eq!(readiness.port, IntOrString::String("http".into()));
    let liveness = c.liveness_probe.as_ref().and_then(|p| p.tcp_socket.as_ref()).expect("tcpSocket");
    assert_eq!(liveness.port, IntOrString::Int(80));
    assert_eq!(c.args.as_deref(), Some(&["--port".to_string(), "80".to_string()][..]));

    let written: Value = serde_yaml_ng::from_str(MANIFEST).expect("the manifest is valid YAML");
    assert_eq!(serde_json::to_value(&deploy).expect("serializes"), written);
    let dynamic: DynamicObject = serde_yaml_ng::from_str(MANIFEST).expect("parses as a DynamicObject");
    assert_eq!(dynamic.to_value(), written);
    assert_eq!(dynamic.to_typed::<Deployment>().expect("converts"), deploy);
    let yaml = serde_yaml_ng::to_string(&deploy).expect("serializes");
    assert_eq!(serde_yaml_ng::from_str::<Deployment>(&yaml).expect("parses"), deploy);
}

/// Unquoted numbers where a quantity belongs are accepted, as Kubernetes accepts them, and
/// written back as strings. They are not canonicalized: Kubernetes would write `0.5` as
/// `"500m"`; k8s-openapi's `Quantity` keeps the number's own text.
#[test]
fn numeric_quantities_become_strings() {
    let yaml = "requests: {cpu: 1, memory: 0.5, storage: 1e3}\n";
    let r: ResourceRequirements = serde_yaml_ng::from_str(yaml).expect("numbers are quantities");
    let requests = r.requests.expect("requests");
    let got: Vec<_> = requests.iter().map(|(k, v)| (k.as_str(), v.0.as_str())).collect();
    assert_eq!(got, [("cpu", "1"), ("memory", "0.5"), ("storage", "1000")]);
    let r: ResourceRequirements = serde_json::from_str(r#"{"limits": {"cpu": 2}}"#).expect("a JSON number");
    assert_eq!(serde_json::to_string(&r).expect("serializes"), r#"{"limits":{"cpu":"2"}}"#);
}
