//! What the scheduler tells users: the `PodScheduled` condition of pods it cannot place, and
//! core v1 Events (`FailedScheduling`, `Scheduled`) with repeats aggregated into one Event
//! whose `count` and `lastTimestamp` grow, as client-go's event correlator does.
//!
//! The scheduling loop never waits on these writes: it hands them to the recorder task over a
//! bounded channel and drops them when the channel is full (they are advisory, and a pod that
//! fails again is reported again).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::client::{Api, Client, Error as ClientError};
use crate::patch::PatchType;
use crate::registry::Clock;
use crate::scheduler::pod_key;

/// How many writes may wait for the recorder before new ones are dropped.
pub(crate) const RECORDER_CAPACITY: usize = 1024;
/// How many distinct events the recorder remembers for aggregation (client-go's
/// `maxLruCacheEntries`).
pub(crate) const EVENT_CACHE_CAPACITY: usize = 4096;

/// The condition type the scheduler owns.
pub(crate) const POD_SCHEDULED: &str = "PodScheduled";

/// One write for the recorder.
#[derive(Debug)]
pub(crate) enum Record {
    /// An Event about a pod.
    Event(EventRecord),
    /// A status patch of a pod.
    Condition {
        /// The pod's namespace.
        namespace: String,
        /// The pod's name.
        name: String,
        /// A strategic merge patch of its status.
        patch: Value,
    },
}

/// An Event about a pod.
#[derive(Clone, Debug)]
pub(crate) struct EventRecord {
    pub(crate) pod: Arc<Pod>,
    /// `Normal` or `Warning`.
    pub(crate) type_: &'static str,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    /// The scheduler name reporting it.
    pub(crate) component: String,
}

/// What makes two Events the same one, repeated (client-go's `getEventKey`, without the
/// involved object's resourceVersion).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct EventKey {
    pod: String,
    uid: Option<String>,
    type_: &'static str,
    reason: &'static str,
    message: String,
    component: String,
}

impl EventKey {
    fn of(r: &EventRecord) -> EventKey {
        EventKey {
            pod: pod_key(&r.pod),
            uid: r.pod.metadata.uid.clone(),
            type_: r.type_,
            reason: r.reason,
            message: r.message.clone(),
            component: r.component.clone(),
        }
    }
}

/// Now, at the precision Kubernetes stores (seconds).
pub(crate) fn now(clock: &Clock) -> Time {
    let t = clock();
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

/// The status patch that sets `PodScheduled=False` with `reason` and `message`, or `None` if
/// the pod already has exactly that condition. The transition time moves only when the
/// condition's status changes.
pub(crate) fn unschedulable_condition(pod: &Pod, reason: &str, message: &str, now: &Time) -> Option<Value> {
    let old = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == POD_SCHEDULED));
    let unchanged_status = old.is_some_and(|c| c.status == "False");
    if unchanged_status
        && old.is_some_and(|c| c.reason.as_deref() == Some(reason) && c.message.as_deref() == Some(message))
    {
        return None;
    }
    let transition = match old.and_then(|c| c.last_transition_time.as_ref()) {
        Some(t) if unchanged_status => t,
        _ => now,
    };
    Some(json!({"status": {"conditions": [{
        "type": POD_SCHEDULED,
        "status": "False",
        "reason": reason,
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": transition,
    }]}}))
}

/// A new Event about a pod, seen once at `now`.
pub(crate) fn new_event(r: &EventRecord, now: &Time) -> CoreEvent {
    let m = &r.pod.metadata;
    let name = m.name.clone().unwrap_or_default();
    CoreEvent {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}.")),
            namespace: m.namespace.clone(),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: m.namespace.clone(),
            name: Some(name),
            uid: m.uid.clone(),
            resource_version: m.resource_version.clone(),
            field_path: None,
        },
        type_: Some(r.type_.into()),
        reason: Some(r.reason.into()),
        message: Some(r.message.clone()),
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now.clone()),
        source: Some(EventSource { component: Some(r.component.clone()), host: None }),
        reporting_component: Some(r.component.clone()),
        ..Default::default()
    }
}

/// An Event already written: its name and how many times it was seen.
struct Seen {
    name: String,
    count: i32,
}

/// The recorder task's state.
pub(crate) struct Recorder {
    client: Arc<dyn Client>,
    clock: Clock,
    seen: HashMap<EventKey, Seen>,
    /// Keys in the order first written, to forget the oldest.
    order: VecDeque<EventKey>,
}

impl Recorder {
    pub(crate) fn new(client: Arc<dyn Client>, clock: Clock) -> Recorder {
        Recorder { client, clock, seen: HashMap::new(), order: VecDeque::new() }
    }

    /// Writes records until the channel closes (every sender dropped) or `stop` fires.
    pub(crate) async fn run(mut self, mut records: mpsc::Receiver<Record>, stop: CancellationToken) {
        loop {
            let record = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                r = records.recv() => match r {
                    Some(r) => r,
                    None => break,
                },
            };
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = self.write(record) => {}
            }
        }
    }

    async fn write(&mut self, record: Record) {
        match record {
            Record::Condition { namespace, name, patch } => {
                let api = Api::<Pod>::namespaced(self.client.clone(), &namespace);
                match api.patch_status(&name, PatchType::StrategicMerge, &patch).await {
                    Ok(_) | Err(ClientError::NotFound { .. }) => {}
                    Err(error) => {
                        tracing::warn!(pod = %format!("{namespace}/{name}"), %error, "cannot set pod condition")
                    }
                }
            }
            Record::Event(r) => self.event(r).await,
        }
    }

    async fn event(&mut self, r: EventRecord) {
        let now = now(&self.clock);
        let namespace = r.pod.metadata.namespace.clone().unwrap_or_default();
        let api = Api::<CoreEvent>::namespaced(self.client.clone(), &namespace);
        let key = EventKey::of(&r);
        if let Some(seen) = self.seen.get_mut(&key) {
            let count = seen.count.saturating_add(1);
            let patch = json!({"count": count, "lastTimestamp": now});
            match api.patch(&seen.name, PatchType::Merge, &patch).await {
                Ok(_) => {
                    seen.count = count;
                    return;
                }
                // Deleted (events expire): write a new one.
                Err(ClientError::NotFound { .. }) => {}
                Err(error) => {
                    tracing::warn!(pod = %key.pod, reason = r.reason, %error, "cannot update event");
                    return;
                }
            }
        }
        match api.create(&new_event(&r, &now)).await {
            Ok(written) => {
                let name = written.metadata.name.unwrap_or_default();
                if self.seen.insert(key.clone(), Seen { name, count: 1 }).is_none() {
                    self.order.push_back(key);
                }
                while self.seen.len() > EVENT_CACHE_CAPACITY {
                    let Some(oldest) = self.order.pop_front() else { break };
                    self.seen.remove(&oldest);
                }
            }
            Err(error) => tracing::warn!(pod = %key.pod, reason = r.reason, %error, "cannot write event"),
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};

    use super::*;

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).expect("valid"))
    }

    fn with_condition(status: &str, reason: &str, message: &str, since: i64) -> Pod {
        Pod {
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: POD_SCHEDULED.into(),
                    status: status.into(),
                    reason: Some(reason.into()),
                    message: Some(message.into()),
                    last_transition_time: Some(at(since)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_condition_is_written_only_when_it_changes() {
        let msg = "0/1 nodes are available: 1 Insufficient cpu.";
        // (pod, expected transition time, or None for no write)
        let cases = [
            (Pod::default(), Some(100)),
            (with_condition("False", "Unschedulable", msg, 5), None),
            (with_condition("False", "Unschedulable", "0/2 nodes are available.", 5), Some(5)),
            (with_condition("False", "SchedulerError", msg, 5), Some(5)),
            (with_condition("True", "", "", 5), Some(100)),
        ];
        for (pod, want) in cases {
            let patch = unschedulable_condition(&pod, "Unschedulable", msg, &at(100));
            let Some(want) = want else {
                assert_eq!(patch, None, "{pod:?}");
                continue;
            };
            let patch = patch.expect("a write");
            let c = &patch["status"]["conditions"][0];
            assert_eq!((c["type"].as_str(), c["status"].as_str()), (Some("PodScheduled"), Some("False")));
            assert_eq!((c["reason"].as_str(), c["message"].as_str()), (Some("Unschedulable"), Some(msg)));
            assert_eq!(c["lastTransitionTime"], serde_json::to_value(at(want)).expect("time"));
        }
    }

    #[test]
    fn events_name_the_pod_and_repeat_by_content() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("web".into());
        pod.metadata.namespace = Some("ns".into());
        pod.metadata.uid = Some("u1".into());
        pod.metadata.resource_version = Some("7".into());
        let r = EventRecord {
            pod: Arc::new(pod.clone()),
            type_: "Warning",
            reason: "FailedScheduling",
            message: "0/1 nodes are available: 1 Insufficient cpu.".into(),
            component: "default-scheduler".into(),
        };
        let e = new_event(&r, &at(100));
        assert_eq!(e.metadata.generate_name.as_deref(), Some("web."));
        assert_eq!(e.metadata.namespace.as_deref(), Some("ns"));
        let o = &e.involved_object;
        assert_eq!(
            (o.kind.as_deref(), o.name.as_deref(), o.namespace.as_deref(), o.uid.as_deref()),
            (Some("Pod"), Some("web"), Some("ns"), Some("u1"))
        );
        assert_eq!(
            (e.count, e.type_.as_deref(), e.reason.as_deref()),
            (Some(1), Some("Warning"), Some("FailedScheduling"))
        );
        assert_eq!(e.source.and_then(|s| s.component).as_deref(), Some("default-scheduler"));

        // A newer resourceVersion is the same event; another message is not.
        pod.metadata.resource_version = Some("8".into());
        let again = EventRecord { pod: Arc::new(pod), ..r.clone() };
        assert_eq!(EventKey::of(&again), EventKey::of(&r));
        let other = EventRecord { message: "0/2 nodes are available.".into(), ..r.clone() };
        assert_ne!(EventKey::of(&other), EventKey::of(&r));
    }
}
