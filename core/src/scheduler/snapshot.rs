//! The cluster as one scheduling cycle sees it: nodes, the pods on them and their requests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as WireQuantity;

use super::resource_names::{CPU, MEMORY, PODS};
use super::volumes::VolumeCatalog;
use super::{Error, Result};
use crate::quantity::Quantity;

/// The cpu request counted for scoring when a container sets none: 100m (kube-scheduler's
/// `DefaultMilliCPURequest`), in thousandths of a core.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;

/// The memory request counted for scoring when a container sets none: 200Mi (kube-scheduler's
/// `DefaultMemoryRequest`), in thousandths of a byte.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024 * 1000;

/// Amounts of resources by name, in thousandths of the resource's unit ("250m" cpu is 250,
/// "1Ki" memory is 1,024,000). Absent names are zero. Sums saturate rather than overflow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    milli: BTreeMap<String, i64>,
}

impl Resources {
    /// No resources.
    pub fn new() -> Resources {
        Resources::default()
    }

    /// The amount of `name`, in thousandths (zero if absent).
    pub fn get(&self, name: &str) -> i64 {
        self.milli.get(name).copied().unwrap_or(0)
    }

    /// Whether `name` is present (even as zero).
    pub fn contains(&self, name: &str) -> bool {
        self.milli.contains_key(name)
    }

    /// Sets the amount of `name`, in thousandths.
    pub fn set(&mut self, name: impl Into<String>, milli: i64) {
        self.milli.insert(name.into(), milli);
    }

    /// Every resource and its amount, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i64)> {
        self.milli.iter().map(|(name, &v)| (name.as_str(), v))
    }

    /// Adds `other` to this.
    pub fn add(&mut self, other: &Resources) {
        for (name, v) in other.iter() {
            let entry = self.milli.entry(name.to_string()).or_insert(0);
            *entry = entry.saturating_add(v);
        }
    }

    /// Subtracts `other` from this.
    pub fn sub(&mut self, other: &Resources) {
        for (name, v) in other.iter() {
            let entry = self.milli.entry(name.to_string()).or_insert(0);
            *entry = entry.saturating_sub(v);
        }
    }

    /// Raises each resource to at least `other`'s amount.
    fn max_with(&mut self, other: &Resources) {
        for (name, v) in other.iter() {
            let entry = self.milli.entry(name.to_string()).or_insert(v);
            *entry = (*entry).max(v);
        }
    }

    /// Parses an API resource list; `field` names it in errors.
    fn parse(
        list: Option<&BTreeMap<String, WireQuantity>>,
        object: &dyn Fn() -> String,
        field: &str,
    ) -> Result<Resources> {
        let mut out = Resources::new();
        for (name, q) in list.into_iter().flatten() {
            let q = Quantity::try_from(q).map_err(|source| Error::InvalidQuantity {
                object: object(),
                field: format!("{field}[{name}]"),
                source,
            })?;
            out.set(name.clone(), q.milli_value());
        }
        Ok(out)
    }
}

/// `namespace/name` of a pod, the key the snapshot knows it by.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// What a pod asks of a node (kube-scheduler's `PodRequests`).
///
/// A pod requests the larger of the sum of its containers' requests and the largest request
/// of an init container (restartable "sidecar" init containers run alongside the others and
/// add up), plus the pod's overhead. A container's request defaults to its limit, as
/// Kubernetes' pod defaulting sets it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRequests {
    /// The requests, zero where nothing is requested: what filtering counts.
    pub requests: Resources,
    /// The same with [`DEFAULT_MILLI_CPU_REQUEST`] and [`DEFAULT_MEMORY_REQUEST`] for every
    /// container that sets no cpu or memory request: what scoring counts, so that many
    /// best-effort pods do not all land on one node.
    pub non_zero: Resources,
}

impl PodRequests {
    /// Computes a pod's requests; a quantity that does not parse is an error naming its field.
    pub fn of(pod: &Pod) -> Result<PodRequests> {
        let object = || format!("pod/{}", pod_key(pod));
        let Some(spec) = &pod.spec else { return Ok(PodRequests::default()) };
        let mut requests = Resources::new();
        let mut non_zero = Resources::new();
        for (i, c) in spec.containers.iter().enumerate() {
            let (r, nz) = container_requests(c, &object, &format!("spec.containers[{i}]"))?;
            requests.add(&r);
            non_zero.add(&nz);
        }
        let (mut init_max, mut init_max_nz) = (Resources::new(), Resources::new());
        let (mut sidecars, mut sidecars_nz) = (Resources::new(), Resources::new());
        for (i, c) in spec.init_containers.iter().flatten().enumerate() {
            let (r, nz) = container_requests(c, &object, &format!("spec.initContainers[{i}]"))?;
            if c.restart_policy.as_deref() == Some("Always") {
                // A sidecar keeps running: it adds to the pod's requests, and every later
                // init container runs next to it.
                requests.add(&r);
                non_zero.add(&nz);
                sidecars.add(&r);
                sidecars_nz.add(&nz);
                init_max.max_with(&sidecars);
                init_max_nz.max_with(&sidecars_nz);
            } else {
                let (mut with, mut with_nz) = (r, nz);
                with.add(&sidecars);
                with_nz.add(&sidecars_nz);
                init_max.max_with(&with);
                init_max_nz.max_with(&with_nz);
            }
        }
        requests.max_with(&init_max);
        non_zero.max_with(&init_max_nz);
        let overhead = Resources::parse(spec.overhead.as_ref(), &object, "spec.overhead")?;
        requests.add(&overhead);
        non_zero.add(&overhead);
        Ok(PodRequests { requests, non_zero })
    }
}

/// One container's requests (limits standing in for missing requests), and the same with
/// the scoring defaults for missing cpu and memory.
fn container_requests(
    c: &Container,
    object: &dyn Fn() -> String,
    path: &str,
) -> Result<(Resources, Resources)> {
    let res = c.resources.as_ref();
    let mut requests = Resources::parse(
        res.and_then(|r| r.requests.as_ref()),
        object,
        &format!("{path}.resources.requests"),
    )?;
    let limits =
        Resources::parse(res.and_then(|r| r.limits.as_ref()), object, &format!("{path}.resources.limits"))?;
    for (name, v) in limits.iter() {
        if !requests.contains(name) {
            requests.set(name, v);
        }
    }
    let mut non_zero = requests.clone();
    if !non_zero.contains(CPU) {
        non_zero.set(CPU, DEFAULT_MILLI_CPU_REQUEST);
    }
    if !non_zero.contains(MEMORY) {
        non_zero.set(MEMORY, DEFAULT_MEMORY_REQUEST);
    }
    Ok((requests, non_zero))
}

/// A pod placed on a node, with its requests computed once.
#[derive(Clone, Debug)]
struct PlacedPod {
    key: String,
    pod: Arc<Pod>,
    requests: PodRequests,
}

/// One node and what is placed on it (kube-scheduler's `NodeInfo`).
#[derive(Clone, Debug)]
pub struct NodeInfo {
    name: String,
    node: Arc<Node>,
    allocatable: Resources,
    requested: Resources,
    non_zero_requested: Resources,
    pods: Vec<PlacedPod>,
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

impl NodeInfo {
    /// A node with no pods; its `status.allocatable` must parse.
    pub fn new(node: Arc<Node>) -> Result<NodeInfo> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let object = || format!("node/{name}");
        let allocatable = Resources::parse(
            node.status.as_ref().and_then(|s| s.allocatable.as_ref()),
            &object,
            "status.allocatable",
        )?;
        Ok(NodeInfo {
            name,
            node,
            allocatable,
            requested: Resources::new(),
            non_zero_requested: Resources::new(),
            pods: Vec::new(),
        })
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node object.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The node's labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.node.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
    }

    /// The node's taints.
    pub fn taints(&self) -> &[Taint] {
        self.node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[])
    }

    /// Whether the node is cordoned (`spec.unschedulable`).
    pub fn unschedulable(&self) -> bool {
        self.node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false)
    }

    /// `status.allocatable`, in thousandths; `pods` is how many pods the node takes (times 1000).
    pub fn allocatable(&self) -> &Resources {
        &self.allocatable
    }

    /// The sum of the requests of the pods on the node, with 1000 `pods` for each pod.
    pub fn requested(&self) -> &Resources {
        &self.requested
    }

    /// As [`NodeInfo::requested`], with the scoring defaults for containers that request no
    /// cpu or memory.
    pub fn non_zero_requested(&self) -> &Resources {
        &self.non_zero_requested
    }

    /// The pods on the node.
    pub fn pods(&self) -> impl Iterator<Item = &Arc<Pod>> {
        self.pods.iter().map(|p| &p.pod)
    }

    /// How many pods are on the node.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// Places a pod on the node (replacing one with the same `namespace/name`).
    pub fn add_pod(&mut self, pod: Arc<Pod>) -> Result<()> {
        let requests = PodRequests::of(&pod)?;
        let key = pod_key(&pod);
        self.remove_by_key(&key);
        self.requested.add(&requests.requests);
        self.non_zero_requested.add(&requests.non_zero);
        self.requested.add(&one_pod());
        self.non_zero_requested.add(&one_pod());
        self.pods.push(PlacedPod { key, pod, requests });
        Ok(())
    }

    /// Removes the pod with this `namespace/name`, returning it.
    pub fn remove_pod(&mut self, key: &str) -> Option<Arc<Pod>> {
        self.remove_by_key(key)
    }

    fn remove_by_key(&mut self, key: &str) -> Option<Arc<Pod>> {
        let at = self.pods.iter().position(|p| p.key == key)?;
        let placed = self.pods.swap_remove(at);
        self.requested.sub(&placed.requests.requests);
        self.non_zero_requested.sub(&placed.requests.non_zero);
        self.requested.sub(&one_pod());
        self.non_zero_requested.sub(&one_pod());
        Some(placed.pod)
    }
}

fn one_pod() -> Resources {
    let mut r = Resources::new();
    r.set(PODS, 1000);
    r
}

/// The nodes of the cluster with the pods on each, in the order given, and the storage
/// objects ([`VolumeCatalog`], empty unless set).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    volumes: Arc<VolumeCatalog>,
}

impl Snapshot {
    /// Builds a snapshot. Each pod bound to a listed node (`spec.nodeName`) counts on it;
    /// unbound pods, pods on unknown nodes and finished pods (`Succeeded`, `Failed`) are left
    /// out, as kube-scheduler's cache leaves them out.
    pub fn new(
        nodes: impl IntoIterator<Item = Arc<Node>>,
        pods: impl IntoIterator<Item = Arc<Pod>>,
    ) -> Result<Snapshot> {
        let mut snapshot = Snapshot::default();
        for node in nodes {
            let info = NodeInfo::new(node)?;
            if snapshot.index.contains_key(info.name()) {
                return Err(Error::DuplicateNode(info.name().to_string()));
            }
            snapshot.index.insert(info.name().to_string(), snapshot.nodes.len());
            snapshot.nodes.push(info);
        }
        for pod in pods {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if matches!(phase, Some("Succeeded" | "Failed")) {
                continue;
            }
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else { continue };
            if let Some(&i) = snapshot.index.get(&node) {
                snapshot.nodes[i].add_pod(pod)?;
            }
        }
        Ok(snapshot)
    }

    /// Every node, in the order given.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The node with this name.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The claims, volumes and storage classes.
    pub fn volumes(&self) -> &Arc<VolumeCatalog> {
        &self.volumes
    }

    /// Replaces the claims, volumes and storage classes (the nodes stay as they are).
    pub fn set_volumes(&mut self, volumes: Arc<VolumeCatalog>) {
        self.volumes = volumes;
    }

    /// The snapshot with these claims, volumes and storage classes.
    pub fn with_volumes(mut self, volumes: VolumeCatalog) -> Snapshot {
        self.volumes = Arc::new(volumes);
        self
    }

    /// Counts `pod` on `node` (the scheduler "assumes" it there before the binding is written).
    pub fn add_pod(&mut self, node: &str, pod: Arc<Pod>) -> Result<()> {
        let &i = self.index.get(node).ok_or_else(|| Error::NodeNotFound(node.to_string()))?;
        self.nodes[i].add_pod(pod)
    }

    /// Takes `pod` off `node` (a failed binding is rolled back), returning the stored pod.
    pub fn remove_pod(&mut self, node: &str, pod: &Pod) -> Result<Arc<Pod>> {
        let &i = self.index.get(node).ok_or_else(|| Error::NodeNotFound(node.to_string()))?;
        let key = pod_key(pod);
        self.nodes[i].remove_pod(&key).ok_or_else(|| Error::PodNotFound { pod: key, node: node.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
