//! A watcher of one kind as [`DynamicObject`]s, the dynamic counterpart of the typed
//! [`watcher`](crate::client::watcher): list, then watch from the list's resourceVersion,
//! resume from the last one seen when a watch ends, relist when it has expired (410), and
//! back off on errors.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};

use crate::client::{Client, Error, ListOptions, WatchEvent, WatchStream};
use crate::object::{DynamicObject, ResourceType};

/// Page size of the watcher's lists.
const LIST_PAGE: i64 = 500;
/// First delay after an error.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest delay between retries.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What the watcher reports.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Observed {
    /// A (re)list starts: what follows until `InitDone` is the complete current state.
    Init,
    /// One object of the list.
    InitApply(Arc<DynamicObject>),
    /// The list is complete; objects not applied since `Init` are gone.
    InitDone,
    /// An object was created or changed.
    Apply(Arc<DynamicObject>),
    /// An object was deleted.
    Delete(Arc<DynamicObject>),
    /// An error the watcher retries after (it keeps going).
    Retrying(String),
}

enum State {
    /// Must list (first time, or after 410).
    List { continue_token: Option<String>, rv: Option<String> },
    /// Must start a watch from `rv`.
    Watch { rv: String },
    /// Streaming.
    Watching { rv: String, stream: Pin<Box<WatchStream>> },
}

struct Source {
    client: Arc<dyn Client>,
    resource: ResourceType,
}

/// Follows every object of kind `resource`, in every namespace.
pub(crate) fn watch_kind(
    client: Arc<dyn Client>,
    resource: ResourceType,
) -> impl Stream<Item = Observed> + Send {
    let start = State::List { continue_token: None, rv: None };
    let source = Source { client, resource };
    futures::stream::unfold((start, BACKOFF_START, source), |(state, backoff, source)| async move {
        let (events, next, backoff) = step(state, backoff, &source).await;
        Some((futures::stream::iter(events), (next, backoff, source)))
    })
    .flatten()
}

async fn step(state: State, backoff: Duration, source: &Source) -> (Vec<Observed>, State, Duration) {
    let retry = |msg: String, state: State| async move {
        tracing::debug!(kind = source.resource.kind, error = %msg, delay = ?backoff, "gc watcher backing off");
        tokio::time::sleep(backoff).await;
        (vec![Observed::Retrying(msg)], state, (backoff * 2).min(BACKOFF_MAX))
    };
    let t = &source.resource;
    match state {
        State::List { continue_token, rv } => {
            let opts = ListOptions {
                limit: Some(LIST_PAGE),
                continue_token: continue_token.clone(),
                ..Default::default()
            };
            match source.client.list(t, None, &opts).await {
                Ok(page) => {
                    let mut events = Vec::with_capacity(page.items.len() + 2);
                    if continue_token.is_none() {
                        events.push(Observed::Init);
                    }
                    events.extend(page.items.into_iter().map(|o| Observed::InitApply(Arc::new(o))));
                    let rv = rv.unwrap_or(page.resource_version);
                    match page.continue_token {
                        Some(c) => (events, State::List { continue_token: Some(c), rv: Some(rv) }, backoff),
                        None => {
                            events.push(Observed::InitDone);
                            (events, State::Watch { rv }, BACKOFF_START)
                        }
                    }
                }
                // The continue token expired: start the list again.
                Err(Error::Expired(msg)) => retry(msg, State::List { continue_token: None, rv: None }).await,
                Err(e) => retry(e.to_string(), State::List { continue_token, rv }).await,
            }
        }
        State::Watch { rv } => {
            let opts = ListOptions {
                resource_version: Some(rv.clone()),
                allow_watch_bookmarks: true,
                ..Default::default()
            };
            match source.client.watch(t, None, &opts).await {
                Ok(s) => (Vec::new(), State::Watching { rv, stream: Box::pin(s) }, backoff),
                Err(Error::Expired(msg)) => retry(msg, State::List { continue_token: None, rv: None }).await,
                Err(e) => retry(e.to_string(), State::Watch { rv }).await,
            }
        }
        State::Watching { rv, mut stream } => match stream.next().await {
            None => (Vec::new(), State::Watch { rv }, backoff),
            Some(WatchEvent::Added(o)) | Some(WatchEvent::Modified(o)) => {
                let rv = next_rv(&o, rv);
                (vec![Observed::Apply(o)], State::Watching { rv, stream }, BACKOFF_START)
            }
            Some(WatchEvent::Deleted(o)) => {
                let rv = next_rv(&o, rv);
                (vec![Observed::Delete(o)], State::Watching { rv, stream }, BACKOFF_START)
            }
            Some(WatchEvent::Bookmark { resource_version }) => {
                (Vec::new(), State::Watching { rv: resource_version, stream }, backoff)
            }
            Some(WatchEvent::Error(Error::Expired(msg))) => {
                retry(msg, State::List { continue_token: None, rv: None }).await
            }
            Some(WatchEvent::Error(e)) => retry(e.to_string(), State::Watch { rv }).await,
        },
    }
}

/// The resourceVersion to resume from after `obj`.
fn next_rv(obj: &DynamicObject, current: String) -> String {
    let rv = obj.resource_version();
    if rv.is_empty() { current } else { rv.to_string() }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::client::{Api, LocalClient};
    use crate::object::{KindRegistry, Resource};
    use crate::registry::{Registry, WatchCacheConfig};
    use crate::store::MemStore;

    async fn next(s: &mut (impl Stream<Item = Observed> + Unpin)) -> Observed {
        tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .expect("an event in time (the watcher is stuck?)")
            .expect("the watcher never ends")
    }

    fn config_map(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn lists_then_follows_then_relists_after_expiry() {
        let registry = Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin());
        // A tiny window: a watcher left unread falls out of it and must relist.
        let config = WatchCacheConfig { capacity: 2, watcher_buffer: 1 };
        registry.enable_watch_cache(&ConfigMap::TYPE, config).await.expect("the cache starts");
        let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry.clone()));
        let ns = Namespace {
            metadata: ObjectMeta { name: Some("a".into()), ..Default::default() },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone()).create(&ns).await.expect("namespace");
        let maps = Api::<ConfigMap>::namespaced(client.clone(), "a");
        maps.create(&config_map("one")).await.expect("created");

        let mut events = Box::pin(watch_kind(client.clone(), ConfigMap::TYPE));
        assert_eq!(next(&mut events).await, Observed::Init);
        assert!(matches!(next(&mut events).await, Observed::InitApply(o) if o.name() == "one"));
        assert_eq!(next(&mut events).await, Observed::InitDone);
        maps.create(&config_map("two")).await.expect("created");
        assert!(matches!(next(&mut events).await, Observed::Apply(o) if o.name() == "two"));
        maps.delete("one", &Default::default()).await.expect("deleted");
        assert!(matches!(next(&mut events).await, Observed::Delete(o) if o.name() == "one"));

        // Fall behind: many changes while nobody reads.
        for i in 0..10 {
            maps.create(&config_map(&format!("m{i}"))).await.expect("created");
        }
        let mut relisted = false;
        for _ in 0..40 {
            if next(&mut events).await == Observed::Init {
                relisted = true;
                break;
            }
        }
        assert!(relisted, "an expired watch relists");
        let mut names = Vec::new();
        loop {
            match next(&mut events).await {
                Observed::InitApply(o) => names.push(o.name().to_string()),
                Observed::InitDone => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(names.len(), 11, "{names:?}");
        registry.shutdown().await;
    }
}
