//! The loop's watches: their streams, and taking what is ready of them in batches.

use std::pin::Pin;
use std::sync::Arc;

use futures::{FutureExt, Stream, StreamExt};

use crate::client::{Api, Client, ListOptions, WatcherEvent, watcher};
use crate::object::Resource;

/// One of the loop's watches.
pub(super) type Events<K> = Pin<Box<dyn Stream<Item = WatcherEvent<K>> + Send>>;

/// How many events of one watch the loop applies in a row before its next scheduling cycle.
///
/// One event per cycle starved the watches whenever cycles were slow (a preemption cycle on
/// 5,000 nodes takes tens of milliseconds): victims' deletions and new pods queued up by the
/// thousand, so pods were preempted again for victims already gone. Applying what is ready,
/// up to this many, keeps the cache current at the cost of a short pause in scheduling.
pub(super) const EVENT_BATCH: usize = 1024;

/// A watch of every `K` matching `field_selector`, without the objects' managed fields.
///
/// Nothing in scheduling reads `metadata.managedFields`, and for objects written by
/// `kubectl apply` or controllers it is often the largest part of the metadata, kept for
/// every pod in the cache and the queue; kube-scheduler's informers drop it too
/// (`TransformStripManagedFields`). The scheduler only patches objects, so it never writes
/// an object without them back.
pub(super) fn watch_of<K: Resource>(client: &Arc<dyn Client>, field_selector: Option<String>) -> Events<K> {
    let opts = ListOptions { field_selector, ..Default::default() };
    Box::pin(watcher(Api::<K>::all(client.clone()), opts).map(without_managed_fields))
}

/// `event` with its object's managed fields dropped.
fn without_managed_fields<K: Resource>(event: WatcherEvent<K>) -> WatcherEvent<K> {
    let strip = |mut obj: K| {
        obj.meta_mut().managed_fields = None;
        obj
    };
    match event {
        WatcherEvent::InitApply(obj) => WatcherEvent::InitApply(strip(obj)),
        WatcherEvent::Apply(obj) => WatcherEvent::Apply(strip(obj)),
        WatcherEvent::Delete(obj) => WatcherEvent::Delete(strip(obj)),
        other => other,
    }
}

/// The next event of `events` if one is ready now, without waiting.
pub(super) fn ready<K>(events: &mut Events<K>) -> Option<WatcherEvent<K>> {
    events.next().now_or_never().flatten()
}

/// Applies `first`, then the events of `stream` that are ready, up to
/// [`EVENT_BATCH`](crate::scheduler::runtime::events::EVENT_BATCH).
macro_rules! drain {
    ($stream:ident, $first:expr, |$event:ident| $apply:expr) => {{
        let mut next = Some($first);
        let mut applied = 0;
        while let Some($event) = next {
            $apply;
            applied += 1;
            next = if applied < $crate::scheduler::runtime::events::EVENT_BATCH {
                $crate::scheduler::runtime::events::ready(&mut $stream)
            } else {
                None
            };
        }
    }};
}
pub(super) use drain;

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::client::LocalClient;
    use crate::object::KindRegistry;
    use crate::patch::PatchType;
    use crate::registry::{Registry, Subresource, WriteOptions};
    use crate::store::MemStore;

    #[tokio::test]
    async fn watched_pods_come_without_managed_fields() -> Result<(), Box<dyn std::error::Error>> {
        let registry = Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin());
        let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry));
        let ns = Namespace {
            metadata: ObjectMeta { name: Some("default".into()), ..Default::default() },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone()).create(&ns).await?;
        let apply = |name: &str| {
            format!(
                r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}", "labels": {{"app": "web"}}}},
                "spec": {{"containers": [{{"name": "c", "image": "busybox"}}]}}}}"#
            )
        };
        let opts = WriteOptions { field_manager: Some("kubectl".into()), ..Default::default() };
        let write = |name: &'static str| {
            let (client, body, opts) = (client.clone(), apply(name), opts.clone());
            async move {
                client
                    .patch(
                        &Pod::TYPE,
                        Some("default"),
                        name,
                        PatchType::Apply,
                        body.as_bytes(),
                        Subresource::Main,
                        &opts,
                    )
                    .await
            }
        };
        let listed = write("listed").await?;
        assert!(listed.object.metadata.managed_fields.is_some(), "server-side apply records its manager");

        let mut events: Events<Pod> = watch_of(&client, None);
        let mut seen = Vec::new();
        while seen.len() < 2 {
            match tokio::time::timeout(std::time::Duration::from_secs(10), events.next()).await? {
                Some(WatcherEvent::InitApply(pod)) | Some(WatcherEvent::Apply(pod)) => {
                    assert_eq!(pod.metadata.managed_fields, None, "{pod:?}");
                    seen.push(pod.metadata.name.unwrap_or_default());
                    if seen.len() == 1 {
                        // One through the list, one through the watch.
                        write("watched").await?;
                    }
                }
                Some(_) => {}
                None => return Err("the watch ended".into()),
            }
        }
        assert_eq!(seen, ["listed", "watched"]);
        Ok(())
    }
}
