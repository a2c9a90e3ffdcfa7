//! The built-in kinds' table columns, as `kubectl get` prints them.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, PodTemplateSpec, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use super::table::{Column, cell};

pub(super) const POD: &[Column] = &[
    Column::text("Ready", "The number of ready containers out of all containers."),
    Column::text("Status", "The pod's phase, or why its containers are not running."),
    Column::integer("Restarts", "How many times the pod's containers restarted."),
    Column::wide("IP", "The pod's IP address."),
    Column::wide("Node", "The node the pod is bound to."),
];

pub(super) fn pod(p: &Pod) -> Vec<Value> {
    let spec = p.spec.clone().unwrap_or_default();
    let status = p.status.clone().unwrap_or_default();
    let statuses = status.container_statuses.unwrap_or_default();
    let ready = statuses.iter().filter(|c| c.ready).count();
    let restarts: i32 = statuses.iter().map(|c| c.restart_count).sum();
    let waiting = statuses.iter().find_map(|c| {
        let state = c.state.as_ref()?;
        state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.clone())
            .or_else(|| state.terminated.as_ref().and_then(|t| t.reason.clone()))
    });
    let phase = if p.metadata.deletion_timestamp.is_some() {
        "Terminating".to_string()
    } else {
        waiting.or(status.phase).unwrap_or_default()
    };
    vec![
        Value::String(format!("{ready}/{}", spec.containers.len())),
        cell(phase),
        Value::from(restarts),
        cell(status.pod_ip.unwrap_or_default()),
        cell(spec.node_name.unwrap_or_default()),
    ]
}

pub(super) const DEPLOYMENT: &[Column] = &[
    Column::text("Ready", "Ready replicas out of desired."),
    Column::integer("Up-to-date", "Replicas running the current template."),
    Column::integer("Available", "Replicas available to serve."),
    Column::wide("Containers", "Container names of the template."),
    Column::wide("Images", "Container images of the template."),
    Column::wide("Selector", "The label selector of the pods."),
];

fn template_parts(t: Option<&PodTemplateSpec>) -> (Value, Value) {
    let containers = t.and_then(|t| t.spec.as_ref()).map(|s| s.containers.clone()).unwrap_or_default();
    let names: Vec<String> = containers.iter().map(|c| c.name.clone()).collect();
    let images: Vec<String> = containers.iter().map(|c| c.image.clone().unwrap_or_default()).collect();
    (cell(names.join(",")), cell(images.join(",")))
}

fn selector_text(s: &LabelSelector) -> Value {
    let sel = crate::selector::LabelSelector::try_from(s).map(|s| s.to_string()).unwrap_or_default();
    cell(sel)
}

pub(super) fn deployment(d: &Deployment) -> Vec<Value> {
    let spec = d.spec.clone().unwrap_or_default();
    let status = d.status.clone().unwrap_or_default();
    let (containers, images) = template_parts(Some(&spec.template));
    vec![
        Value::String(format!("{}/{}", status.ready_replicas.unwrap_or(0), spec.replicas.unwrap_or(1))),
        Value::from(status.updated_replicas.unwrap_or(0)),
        Value::from(status.available_replicas.unwrap_or(0)),
        containers,
        images,
        selector_text(&spec.selector),
    ]
}

pub(super) const REPLICA_SET: &[Column] = &[
    Column::integer("Desired", "Replicas wanted."),
    Column::integer("Current", "Replicas existing."),
    Column::integer("Ready", "Replicas ready."),
    Column::wide("Containers", "Container names of the template."),
    Column::wide("Images", "Container images of the template."),
    Column::wide("Selector", "The label selector of the pods."),
];

pub(super) fn replica_set(r: &ReplicaSet) -> Vec<Value> {
    let spec = r.spec.clone().unwrap_or_default();
    let status = r.status.clone().unwrap_or_default();
    let (containers, images) = template_parts(spec.template.as_ref());
    vec![
        Value::from(spec.replicas.unwrap_or(1)),
        Value::from(status.replicas),
        Value::from(status.ready_replicas.unwrap_or(0)),
        containers,
        images,
        selector_text(&spec.selector),
    ]
}

pub(super) const SERVICE: &[Column] = &[
    Column::text("Type", "The service type."),
    Column::text("Cluster-IP", "The virtual IP of the service."),
    Column::text("External-IP", "External addresses of the service."),
    Column::text("Port(s)", "The service's ports."),
    Column::wide("Selector", "The pods the service sends traffic to."),
];

pub(super) fn service(s: &Service) -> Vec<Value> {
    let spec = s.spec.clone().unwrap_or_default();
    let ports: Vec<String> = spec
        .ports
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            match p.node_port {
                Some(n) => format!("{}:{n}/{proto}", p.port),
                None => format!("{}/{proto}", p.port),
            }
        })
        .collect();
    let selector: Vec<String> =
        spec.selector.unwrap_or_default().iter().map(|(k, v)| format!("{k}={v}")).collect();
    let external = spec.external_ips.unwrap_or_default().join(",");
    vec![
        cell(spec.type_.unwrap_or_else(|| "ClusterIP".into())),
        cell(spec.cluster_ip.unwrap_or_default()),
        cell(external),
        cell(ports.join(",")),
        cell(selector.join(",")),
    ]
}

pub(super) const NODE: &[Column] = &[
    Column::text("Status", "Whether the node is ready (and schedulable)."),
    Column::text("Roles", "The node's roles, from its node-role labels."),
    super::table::AGE,
    Column::text("Version", "The node agent's version."),
    Column::wide("Internal-IP", "The node's internal address."),
];

pub(super) fn node(n: &Node) -> Vec<Value> {
    let status = n.status.clone().unwrap_or_default();
    let ready =
        status.conditions.unwrap_or_default().iter().any(|c| c.type_ == "Ready" && c.status == "True");
    let mut state = if ready { "Ready".to_string() } else { "NotReady".to_string() };
    if n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
        state.push_str(",SchedulingDisabled");
    }
    let roles: Vec<String> = n
        .metadata
        .labels
        .iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/").map(str::to_owned))
        .collect();
    let ip =
        status.addresses.unwrap_or_default().into_iter().find(|a| a.type_ == "InternalIP").map(|a| a.address);
    vec![
        Value::String(state),
        cell(roles.join(",")),
        Value::Null, // Age: filled in with the time the row is printed at
        cell(status.node_info.map(|i| i.kubelet_version).unwrap_or_default()),
        cell(ip.unwrap_or_default()),
    ]
}

pub(super) const NAMESPACE: &[Column] = &[Column::text("Status", "Active or Terminating.")];

pub(super) fn namespace(n: &Namespace) -> Vec<Value> {
    vec![cell(n.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default())]
}

pub(super) const CONFIG_MAP: &[Column] = &[Column::integer("Data", "Number of keys.")];

pub(super) fn config_map(c: &ConfigMap) -> Vec<Value> {
    let n = c.data.as_ref().map_or(0, |d| d.len()) + c.binary_data.as_ref().map_or(0, |d| d.len());
    vec![Value::from(n)]
}

pub(super) const SECRET: &[Column] =
    &[Column::text("Type", "The secret's type."), Column::integer("Data", "Number of keys.")];

pub(super) fn secret(s: &Secret) -> Vec<Value> {
    let n = s.data.as_ref().map_or(0, |d| d.len());
    vec![cell(s.type_.clone().unwrap_or_default()), Value::from(n)]
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    use crate::object::{DynamicObject, KindRegistry};

    fn row(plural: &str, group: &str, obj: serde_json::Value) -> (Vec<String>, Vec<serde_json::Value>) {
        let kinds = KindRegistry::builtin();
        let s = kinds.get(group, plural).expect("built in");
        let mut obj: DynamicObject = serde_json::from_value(obj).expect("object");
        let t = s.resource_type();
        (obj.api_version, obj.kind) = (t.api_version(), t.kind.to_string());
        let now = Time(Timestamp::from_second(1_000_300).expect("valid"));
        (s.columns().iter().map(|c| c.name.to_string()).collect(), s.row(&obj, &now))
    }

    #[test]
    fn pods_deployments_and_services_print_like_kubectl() {
        let (cols, cells) = row(
            "pods",
            "",
            json!({
                "metadata": {"name": "web", "creationTimestamp": "1970-01-12T13:46:40Z"},
                "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
                "status": {"phase": "Running", "podIP": "10.0.0.1", "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 2, "image": "x", "imageID": ""},
                    {"name": "b", "ready": false, "restartCount": 1, "image": "x", "imageID": "",
                     "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]},
            }),
        );
        assert_eq!(cols, ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node"]);
        assert_eq!(
            cells,
            [
                json!("web"),
                json!("1/2"),
                json!("CrashLoopBackOff"),
                json!(3),
                json!("5m"),
                json!("10.0.0.1"),
                json!("n1")
            ]
        );
        let (_, cells) = row(
            "deployments",
            "apps",
            json!({
                "metadata": {"name": "d"},
                "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "d"}},
                         "template": {"spec": {"containers": [{"name": "c", "image": "img:1"}]}}},
                "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
            }),
        );
        assert_eq!(
            cells[1..8],
            [
                json!("2/3"),
                json!(3),
                json!(2),
                json!("<unknown>"),
                json!("c"),
                json!("img:1"),
                json!("app=d")
            ]
        );
        let (_, cells) = row(
            "services",
            "",
            json!({"metadata": {"name": "s"}, "spec": {"clusterIP": "10.96.0.10", "type": "NodePort",
                   "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}}),
        );
        assert_eq!(
            cells[1..6],
            [
                json!("NodePort"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP"),
                json!("<unknown>")
            ]
        );
    }
}
