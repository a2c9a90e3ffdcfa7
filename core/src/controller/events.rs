//! [`Recorder`]: core v1 Events about any object, with repeats aggregated into one Event whose
//! `count` and `lastTimestamp` grow (client-go's event correlator, without its spam filter).
//!
//! Publishing never waits: events go over a bounded channel to a task that writes them, and
//! are dropped when the channel is full. Events are advice to users, never state.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::client::{Api, Client, Error as ClientError};
use crate::object::Resource;
use crate::patch::PatchType;
use crate::registry::Clock;

/// Events that may wait for the writer before new ones are dropped.
pub const EVENT_CHANNEL_CAPACITY: usize = 1024;
/// Distinct events remembered for aggregation (client-go's `maxLruCacheEntries`).
pub const EVENT_CACHE_CAPACITY: usize = 4096;

/// An Event's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something the user may need to act on.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// A reference to `obj` as Events name the object they are about.
pub fn reference<K: Resource>(obj: &K) -> ObjectReference {
    let t = K::TYPE;
    let m = obj.meta();
    ObjectReference {
        api_version: Some(if t.group.is_empty() {
            t.version.to_string()
        } else {
            format!("{}/{}", t.group, t.version)
        }),
        kind: Some(t.kind.to_string()),
        namespace: m.namespace.clone(),
        name: m.name.clone(),
        uid: m.uid.clone(),
        resource_version: m.resource_version.clone(),
        field_path: None,
    }
}

#[derive(Debug)]
struct Record {
    regarding: ObjectReference,
    type_: EventType,
    reason: String,
    message: String,
}

/// What makes two Events the same one, repeated: everything but the object's resourceVersion.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    kind: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    uid: Option<String>,
    type_: EventType,
    reason: String,
    message: String,
}

impl Key {
    fn of(r: &Record) -> Key {
        let o = &r.regarding;
        Key {
            kind: o.kind.clone(),
            namespace: o.namespace.clone(),
            name: o.name.clone(),
            uid: o.uid.clone(),
            type_: r.type_,
            reason: r.reason.clone(),
            message: r.message.clone(),
        }
    }
}

/// Publishes Events for one component. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Recorder {
    component: Arc<str>,
    tx: mpsc::Sender<Record>,
}

/// The task that writes a [`Recorder`]'s Events; run it with [`RecorderTask::run`].
pub struct RecorderTask {
    component: Arc<str>,
    client: Arc<dyn Client>,
    clock: Clock,
    rx: mpsc::Receiver<Record>,
    seen: HashMap<Key, (String, i32)>,
    order: VecDeque<Key>,
}

impl Recorder {
    /// A recorder for `component` (the Event's `source.component`) and the task writing its
    /// Events through `client`.
    pub fn new(client: Arc<dyn Client>, component: &str, clock: Clock) -> (Recorder, RecorderTask) {
        let (tx, rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let component: Arc<str> = component.into();
        let task = RecorderTask {
            component: component.clone(),
            client,
            clock,
            rx,
            seen: HashMap::new(),
            order: VecDeque::new(),
        };
        (Recorder { component, tx }, task)
    }

    /// The component this recorder speaks for.
    pub fn component(&self) -> &str {
        &self.component
    }

    /// Records an Event about the object `regarding` refers to (see [`reference`]).
    pub fn publish(
        &self,
        regarding: ObjectReference,
        type_: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        let r = Record { regarding, type_, reason: reason.to_string(), message: message.into() };
        if self.tx.try_send(r).is_err() {
            tracing::debug!(component = %self.component, reason, "event dropped: recorder busy or stopped");
        }
    }
}

/// Now, at the precision Kubernetes stores (seconds).
fn now(clock: &Clock) -> Time {
    let t = clock();
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

impl RecorderTask {
    /// Writes Events until every [`Recorder`] is dropped or `stop` fires.
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            let r = tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                r = self.rx.recv() => match r {
                    Some(r) => r,
                    None => return,
                },
            };
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = self.write(r) => {}
            }
        }
    }

    fn event(&self, r: &Record, now: &Time) -> CoreEvent {
        let o = &r.regarding;
        CoreEvent {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", o.name.as_deref().unwrap_or("event"))),
                namespace: Some(o.namespace.clone().unwrap_or_else(|| "default".into())),
                ..Default::default()
            },
            involved_object: o.clone(),
            type_: Some(r.type_.as_str().into()),
            reason: Some(r.reason.clone()),
            message: Some(r.message.clone()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now.clone()),
            source: Some(EventSource { component: Some(self.component.to_string()), host: None }),
            reporting_component: Some(self.component.to_string()),
            ..Default::default()
        }
    }

    async fn write(&mut self, r: Record) {
        let now = now(&self.clock);
        let key = Key::of(&r);
        let namespace = r.regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let api = Api::<CoreEvent>::namespaced(self.client.clone(), &namespace);
        if let Some((name, count)) = self.seen.get_mut(&key) {
            let next = count.saturating_add(1);
            match api.patch(name, PatchType::Merge, &json!({"count": next, "lastTimestamp": now})).await {
                Ok(_) => {
                    *count = next;
                    return;
                }
                // Events expire; write a new one.
                Err(ClientError::NotFound { .. }) => {}
                Err(error) => {
                    tracing::warn!(reason = %r.reason, %error, "cannot update event");
                    return;
                }
            }
        }
        match api.create(&self.event(&r, &now)).await {
            Ok(written) => {
                let name = written.metadata.name.unwrap_or_default();
                if self.seen.insert(key.clone(), (name, 1)).is_none() {
                    self.order.push_back(key);
                }
                while self.seen.len() > EVENT_CACHE_CAPACITY {
                    let Some(oldest) = self.order.pop_front() else { break };
                    self.seen.remove(&oldest);
                }
            }
            Err(error) => tracing::warn!(reason = %r.reason, %error, "cannot write event"),
        }
    }
}
