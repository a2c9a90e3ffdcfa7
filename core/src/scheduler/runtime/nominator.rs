//! The runtime half of preemption: which pending pods were nominated a node (kube-scheduler's
//! nominator), and the task that evicts a nomination's victims.
//!
//! A nominated pod waits for its victims to go. Meanwhile the room they leave must not go to
//! a pod of lower priority, so every scheduling cycle counts the nominated pods of at least
//! the cycle pod's priority on their nodes, as if they were there (kube-scheduler counts them
//! in its filters the same way). The runtime does not retry the pod before its cache has
//! seen every victim go ([`Evictions`]): tried earlier, it would find them in place and
//! preempt again.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::client::{Api, Client, Error as ClientError};
use crate::registry::{DeleteOptions, Precondition};
use crate::scheduler::{PodInfo, Snapshot, pod_key};

/// The pods nominated a node, by `namespace/name`.
#[derive(Debug, Default)]
pub(super) struct Nominator {
    pods: HashMap<String, Nominated>,
}

#[derive(Debug)]
struct Nominated {
    node: String,
    /// Computed once: every cycle of a pod of lower priority adds it to the snapshot.
    info: Arc<PodInfo>,
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// The pod's `status.nominatedNodeName`, if set.
pub(super) fn nominated_node(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref()).filter(|n| !n.is_empty())
}

impl Nominator {
    /// Records that `pod` waits for room on `node`. A pod whose requests do not parse is not
    /// nominated (no node could have been found for it).
    pub(super) fn nominate(&mut self, pod: Arc<Pod>, node: String) {
        match PodInfo::new(pod) {
            Ok(info) => {
                self.pods.insert(info.key().to_string(), Nominated { node, info: Arc::new(info) });
            }
            Err(error) => tracing::warn!(%error, "not nominating a pod the scheduler cannot read"),
        }
    }

    /// Follows a new version of a pending pod: its `status.nominatedNodeName` (set by this
    /// scheduler before a restart, or by another instance) nominates it; a pod whose
    /// nomination was cleared is no longer nominated. A version without the field does not
    /// clear a nomination made in this process, whose status write may still be on its way.
    pub(super) fn update(&mut self, pod: &Arc<Pod>) {
        let key = pod_key(pod);
        match nominated_node(pod) {
            Some(node) => self.nominate(pod.clone(), node.to_string()),
            None => {
                if let Some(node) = self.pods.get(&key).map(|n| n.node.clone()) {
                    self.nominate(pod.clone(), node);
                }
            }
        }
    }

    /// Forgets a pod (bound, deleted, or placed elsewhere).
    pub(super) fn remove(&mut self, key: &str) {
        self.pods.remove(key);
    }

    /// The node the pod with this key is nominated to, if it is.
    pub(super) fn node_of(&self, key: &str) -> Option<&str> {
        self.pods.get(key).map(|n| n.node.as_str())
    }

    /// The keys of the nominated pods.
    pub(super) fn keys(&self) -> impl Iterator<Item = &str> {
        self.pods.keys().map(String::as_str)
    }

    /// How many pods are nominated.
    pub(super) fn len(&self) -> usize {
        self.pods.len()
    }

    /// Adds to `snapshot` the nominated pods [`ahead_of`](Self::ahead_of) `pod` that are not
    /// placed yet (`placed` says which are), returning the nodes and keys to take off after
    /// the cycle.
    ///
    /// A placed pod already counts where it is. It can still be nominated here (a late
    /// version of it, pending with its `status.nominatedNodeName`, nominates it again), and
    /// adding it would replace it by key, so taking the addition off would take the pod
    /// itself off its node: later cycles would see its room free and put another pod there.
    pub(super) fn count_ahead<'a>(
        &'a self,
        snapshot: &mut Snapshot,
        pod: &Pod,
        placed: impl Fn(&str) -> bool,
    ) -> Vec<(&'a str, &'a str)> {
        let mut counted = Vec::new();
        for (node, nominated) in self.ahead_of(pod) {
            if !placed(nominated.key()) && snapshot.add_pod_info(node, nominated.clone()).is_ok() {
                counted.push((node, nominated.key()));
            }
        }
        counted
    }

    /// The nominated pods other than `pod` whose priority is at least its own, with their
    /// nodes: the cycle for `pod` counts them as placed.
    pub(super) fn ahead_of(&self, pod: &Pod) -> impl Iterator<Item = (&str, &Arc<PodInfo>)> + '_ {
        let (key, floor) = (pod_key(pod), priority(pod));
        self.pods
            .iter()
            .filter(move |(k, n)| **k != key && priority(n.info.pod()) >= floor)
            .map(|(_, n)| (n.node.as_str(), &n.info))
    }
}

/// The victims of each preemptor that the scheduler's cache still has, by `namespace/name`.
#[derive(Debug, Default)]
pub(super) struct Evictions {
    /// Each victim (with its uid) and the preemptors waiting for it to go.
    victims: HashMap<String, (Option<String>, Vec<String>)>,
    /// Each preemptor and how many of its victims the cache still has.
    waiting: HashMap<String, usize>,
}

impl Evictions {
    /// `preemptor` waits for `victims` to go (replacing what it waited for before).
    pub(super) fn start(&mut self, preemptor: &str, victims: &[Arc<Pod>]) {
        self.forget(preemptor);
        let mut count = 0;
        for victim in victims {
            let (_, waiting) = self
                .victims
                .entry(pod_key(victim))
                .or_insert_with(|| (victim.metadata.uid.clone(), Vec::new()));
            if !waiting.iter().any(|p| p == preemptor) {
                waiting.push(preemptor.to_string());
                count += 1;
            }
        }
        if count > 0 {
            self.waiting.insert(preemptor.to_string(), count);
        }
    }

    /// The pod with this key now has `uid` in the cache (`None`: not there). If it was a
    /// victim and is gone, returns the preemptors it was the last victim of.
    pub(super) fn observed(&mut self, key: &str, uid: Option<Option<&str>>) -> Vec<String> {
        let Some((victim_uid, _)) = self.victims.get(key) else { return Vec::new() };
        if uid.is_some_and(|u| u == victim_uid.as_deref()) {
            return Vec::new();
        }
        let (_, preemptors) = self.victims.remove(key).unwrap_or_default();
        preemptors
            .into_iter()
            .filter(|p| match self.waiting.get_mut(p) {
                Some(left) if *left > 1 => {
                    *left -= 1;
                    false
                }
                Some(_) => {
                    self.waiting.remove(p);
                    true
                }
                None => false,
            })
            .collect()
    }

    /// Stops waiting for `preemptor`'s victims (it is placed, gone, or its evictions failed).
    pub(super) fn forget(&mut self, preemptor: &str) {
        if self.waiting.remove(preemptor).is_none() {
            return;
        }
        self.victims.retain(|_, (_, waiting)| {
            waiting.retain(|p| p != preemptor);
            !waiting.is_empty()
        });
    }

    /// The victims waited for.
    pub(super) fn victims(&self) -> impl Iterator<Item = &str> {
        self.victims.keys().map(String::as_str)
    }

    /// Whether `preemptor` waits for victims.
    pub(super) fn is_waiting(&self, preemptor: &str) -> bool {
        self.waiting.contains_key(preemptor)
    }
}

/// Writes a nomination: the preemptor's `status.nominatedNodeName`, then the deletion of each
/// victim (with its uid as a precondition and its own grace period). A victim already gone
/// counts as evicted. Stops early when `abort` fires. Returns how many victims it could not
/// delete.
pub(super) async fn evict(
    client: Arc<dyn Client>,
    preemptor: Arc<Pod>,
    node: String,
    victims: Vec<Arc<Pod>>,
    abort: CancellationToken,
) -> usize {
    let namespace = preemptor.metadata.namespace.clone().unwrap_or_default();
    let name = preemptor.metadata.name.clone().unwrap_or_default();
    let patch = json!({ "status": { "nominatedNodeName": node } });
    let api = Api::<Pod>::namespaced(client.clone(), &namespace);
    let write = api.patch_status(&name, crate::patch::PatchType::Merge, &patch);
    tokio::select! {
        biased;
        _ = abort.cancelled() => return victims.len(),
        result = write => if let Err(error) = result {
            tracing::info!(pod = %format!("{namespace}/{name}"), %node, %error, "cannot record the nominated node");
        },
    }
    let mut failed = 0;
    for victim in victims {
        let m = &victim.metadata;
        let (vns, vname) = (m.namespace.clone().unwrap_or_default(), m.name.clone().unwrap_or_default());
        let opts = DeleteOptions {
            preconditions: Precondition { uid: m.uid.clone(), resource_version: None },
            ..Default::default()
        };
        let api = Api::<Pod>::namespaced(client.clone(), &vns);
        let result = tokio::select! {
            biased;
            _ = abort.cancelled() => return failed + 1,
            r = api.delete(&vname, &opts) => r,
        };
        match result {
            Ok(_) | Err(ClientError::NotFound { .. }) => {
                tracing::info!(victim = %format!("{vns}/{vname}"), preemptor = %format!("{namespace}/{name}"), %node, "preempted pod");
            }
            // Another uid under that name: the victim is gone already.
            Err(ClientError::Conflict { .. }) => {}
            Err(error) => {
                failed += 1;
                tracing::warn!(victim = %format!("{vns}/{vname}"), %error, "cannot evict preemption victim");
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn pod(name: &str, priority: i32, nominated: Option<&str>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PodSpec { priority: Some(priority), ..Default::default() }),
            status: nominated
                .map(|n| PodStatus { nominated_node_name: Some(n.into()), ..Default::default() }),
        })
    }

    #[test]
    fn a_cycle_counts_nominated_pods_of_at_least_its_priority_but_not_itself() {
        let mut n = Nominator::default();
        n.nominate(pod("high", 100, None), "a".into());
        n.nominate(pod("mid", 50, None), "b".into());
        n.nominate(pod("low", 1, None), "c".into());
        let mut ahead: Vec<String> =
            n.ahead_of(&pod("mid", 50, None)).map(|(node, p)| format!("{node}:{}", p.key())).collect();
        ahead.sort();
        assert_eq!(ahead, ["a:ns/high"]);
        assert_eq!(n.ahead_of(&pod("other", 0, None)).count(), 3);
        n.remove("ns/high");
        assert_eq!(n.ahead_of(&pod("x", 60, None)).count(), 0);
    }

    #[test]
    fn a_cycle_does_not_count_a_placed_pod_again_nor_take_it_off_its_node() {
        let on_a = |name: &str| {
            let mut p = (*pod(name, 10, Some("a"))).clone();
            p.spec.get_or_insert_with(Default::default).node_name = Some("a".into());
            Arc::new(p)
        };
        let node = crate::scheduler::testing::node("a").capacity("4", "8Gi", "110").build();
        let mut snapshot = Snapshot::new([node], [on_a("placed")]).expect("snapshot");
        let mut n = Nominator::default();
        // Placed (the cache has it on `a`), then nominated again by a late pending version.
        n.update(&pod("placed", 10, Some("a")));
        n.nominate(pod("waiting", 10, None), "a".into());
        let names = |s: &Snapshot| {
            let mut names: Vec<String> =
                s.node("a").expect("node").pod_infos().iter().map(|p| p.key().to_string()).collect();
            names.sort();
            names
        };
        let counted = n.count_ahead(&mut snapshot, &pod("p", 0, None), |key| key == "ns/placed");
        assert_eq!(counted, [("a", "ns/waiting")]);
        assert_eq!(names(&snapshot), ["ns/placed", "ns/waiting"]);
        for (node, key) in counted {
            snapshot.remove_pod_key(node, key).expect("counted");
        }
        assert_eq!(names(&snapshot), ["ns/placed"], "the placed pod keeps its room");
    }

    #[test]
    fn a_preemptor_is_free_once_the_cache_lost_each_of_its_victims() {
        let mut e = Evictions::default();
        let with_uid = |name: &str| {
            let mut p = (*pod(name, 0, None)).clone();
            p.metadata.uid = Some(format!("uid-{name}"));
            Arc::new(p)
        };
        let (v1, v2, v3) = (with_uid("v1"), with_uid("v2"), with_uid("v3"));
        e.start("ns/a", &[v1.clone(), v2.clone()]);
        e.start("ns/b", &[v2, v3]);
        assert!(e.is_waiting("ns/a") && e.is_waiting("ns/b"));
        // Still there with its uid, or an unrelated pod: nothing changes.
        assert!(e.observed("ns/v1", Some(Some("uid-v1"))).is_empty());
        assert!(e.observed("ns/other", None).is_empty());
        assert!(e.observed("ns/v1", None).is_empty(), "a still waits for v2");
        // A pod of another uid under v2's name: v2 itself is gone.
        assert_eq!(e.observed("ns/v2", Some(Some("uid-new"))), ["ns/a"]);
        assert!(!e.is_waiting("ns/a"));
        e.forget("ns/b");
        assert!(e.observed("ns/v3", None).is_empty(), "b no longer waits");
        assert_eq!(e.victims().count(), 0);
    }

    #[test]
    fn the_status_field_nominates_and_a_version_without_it_keeps_a_fresh_nomination() {
        let mut n = Nominator::default();
        n.update(&pod("p", 10, Some("a")));
        assert_eq!(n.ahead_of(&pod("q", 0, None)).map(|(node, _)| node).collect::<Vec<_>>(), ["a"]);
        n.update(&pod("p", 10, None));
        assert_eq!(n.len(), 1, "a version without the field does not clear the nomination");
        n.update(&pod("r", 10, None));
        assert_eq!(n.len(), 1, "a pod never nominated is not recorded");
    }
}
