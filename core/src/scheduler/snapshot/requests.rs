//! What pods ask of nodes: [`Resources`] and [`PodRequests`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as WireQuantity;

use crate::quantity::Quantity;
use crate::scheduler::resource_names::{CPU, EPHEMERAL_STORAGE, MEMORY, PODS};
use crate::scheduler::{Error, Result};

/// The cpu request counted for scoring when a container sets none: 100m (kube-scheduler's
/// `DefaultMilliCPURequest`), in thousandths of a core.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;

/// The memory request counted for scoring when a container sets none: 200Mi (kube-scheduler's
/// `DefaultMemoryRequest`), in thousandths of a byte.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024 * 1000;

/// The names with their own slot in [`Resources`], in name order.
const KNOWN: [&str; 4] = [CPU, EPHEMERAL_STORAGE, MEMORY, PODS];

/// The slot of a well-known name.
fn slot(name: &str) -> Option<usize> {
    match name {
        CPU => Some(0),
        EPHEMERAL_STORAGE => Some(1),
        MEMORY => Some(2),
        PODS => Some(3),
        _ => None,
    }
}

/// Amounts of resources by name, in thousandths of the resource's unit ("250m" cpu is 250,
/// "1Ki" memory is 1,024,000). Absent names are zero. Sums saturate rather than overflow.
///
/// cpu, memory, ephemeral-storage and pods, which every filter and score reads, have their
/// own slots (as kube-scheduler's `Resource` has fields for them); other names are in a map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    known: [Option<i64>; 4],
    other: BTreeMap<String, i64>,
}

impl Resources {
    /// No resources.
    pub fn new() -> Resources {
        Resources::default()
    }

    /// The amount of `name`, in thousandths (zero if absent).
    pub fn get(&self, name: &str) -> i64 {
        match slot(name) {
            Some(i) => self.known[i].unwrap_or(0),
            None => self.other.get(name).copied().unwrap_or(0),
        }
    }

    /// Whether `name` is present (even as zero).
    pub fn contains(&self, name: &str) -> bool {
        match slot(name) {
            Some(i) => self.known[i].is_some(),
            None => self.other.contains_key(name),
        }
    }

    /// Sets the amount of `name`, in thousandths.
    pub fn set(&mut self, name: impl Into<String> + AsRef<str>, milli: i64) {
        match slot(name.as_ref()) {
            Some(i) => self.known[i] = Some(milli),
            None => {
                self.other.insert(name.into(), milli);
            }
        }
    }

    /// Every resource and its amount, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i64)> {
        let known = KNOWN.iter().zip(&self.known).filter_map(|(name, v)| v.map(|v| (*name, v)));
        let other = self.other.iter().map(|(name, &v)| (name.as_str(), v));
        Merge { a: known.peekable(), b: other.peekable() }
    }

    /// Adds `other` to this.
    pub fn add(&mut self, other: &Resources) {
        for (name, v) in other.iter() {
            self.add_to(name, v);
        }
    }

    /// Subtracts `other` from this.
    pub fn sub(&mut self, other: &Resources) {
        for (name, v) in other.iter() {
            self.add_to(name, v.saturating_neg());
        }
    }

    /// Adds `other` times `times` (1 or -1 as a pod comes or goes) to this, slot by slot:
    /// nodes count pods in and out many times per scheduling cycle (nominated pods, dry runs).
    pub(crate) fn add_times(&mut self, other: &Resources, times: i64) {
        for (mine, theirs) in self.known.iter_mut().zip(&other.known) {
            if let Some(v) = theirs {
                let mine = mine.get_or_insert(0);
                *mine = mine.saturating_add(v.saturating_mul(times));
            }
        }
        for (name, v) in &other.other {
            self.add_to(name, v.saturating_mul(times));
        }
    }

    /// Adds `milli` (which may be negative) to `name`, allocating the name only the first
    /// time it is seen: nodes add and take off pods in every scheduling cycle.
    pub(crate) fn add_to(&mut self, name: &str, milli: i64) {
        if let Some(i) = slot(name) {
            let v = self.known[i].get_or_insert(0);
            *v = v.saturating_add(milli);
            return;
        }
        match self.other.get_mut(name) {
            Some(v) => *v = v.saturating_add(milli),
            None => {
                self.other.insert(name.to_string(), milli);
            }
        }
    }

    /// Raises each resource to at least `other`'s amount.
    pub(super) fn max_with(&mut self, other: &Resources) {
        for (name, v) in other.iter() {
            if !self.contains(name) || self.get(name) < v {
                self.set(name, v);
            }
        }
    }

    /// Parses an API resource list; `field` names it in errors.
    pub(super) fn parse(
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

/// Two name-ordered iterators as one, in name order (the names are disjoint).
struct Merge<'a, A: Iterator<Item = (&'a str, i64)>, B: Iterator<Item = (&'a str, i64)>> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<'a, A: Iterator<Item = (&'a str, i64)>, B: Iterator<Item = (&'a str, i64)>> Iterator
    for Merge<'a, A, B>
{
    type Item = (&'a str, i64);

    fn next(&mut self) -> Option<Self::Item> {
        match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) if y.0 < x.0 => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}
