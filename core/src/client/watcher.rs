//! A watcher that never gives up (in the spirit of kube-runtime's): it lists, then watches
//! from the list's resourceVersion, resumes from the last seen resourceVersion when a watch
//! ends, relists when that version has expired (410), and backs off on errors.

use std::time::Duration;

use futures::{Stream, StreamExt};

use super::{Api, Error, Event, ListOptions};
use crate::object::Resource;

/// Page size of the watcher's lists.
const LIST_PAGE: i64 = 500;
/// First delay after an error.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest delay between retries.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What a watcher reports.
#[derive(Clone, Debug, PartialEq)]
pub enum WatcherEvent<K> {
    /// A (re)list starts: what follows until `InitDone` is the complete current state.
    Init,
    /// One object of the list.
    InitApply(K),
    /// The list is complete; objects not applied since `Init` are gone.
    InitDone,
    /// An object was created or changed.
    Apply(K),
    /// An object was deleted.
    Delete(K),
    /// An error the watcher will retry after (it keeps going).
    Retrying(String),
}

enum State<K> {
    /// Must list (first time, or after 410).
    List { continue_token: Option<String>, rv: Option<String> },
    /// Must start a watch from `rv`.
    Watch { rv: String },
    /// Streaming.
    Watching { rv: String, stream: std::pin::Pin<Box<dyn Stream<Item = Event<K>> + Send>> },
}

/// Follows every object of `api` matching the selectors of `opts` (its resourceVersion and
/// limit are managed by the watcher).
pub fn watcher<K: Resource>(api: Api<K>, opts: ListOptions) -> impl Stream<Item = WatcherEvent<K>> + Send {
    let start = State::List { continue_token: None, rv: None };
    futures::stream::unfold((start, BACKOFF_START, api, opts), |(state, backoff, api, opts)| async move {
        let (events, next, backoff) = step(state, backoff, &api, &opts).await;
        Some((futures::stream::iter(events), (next, backoff, api, opts)))
    })
    .flatten()
}

async fn step<K: Resource>(
    state: State<K>,
    backoff: Duration,
    api: &Api<K>,
    opts: &ListOptions,
) -> (Vec<WatcherEvent<K>>, State<K>, Duration) {
    let retry = |msg: String, state: State<K>| async move {
        tracing::debug!(error = %msg, delay = ?backoff, "watcher backing off");
        tokio::time::sleep(backoff).await;
        (vec![WatcherEvent::Retrying(msg)], state, (backoff * 2).min(BACKOFF_MAX))
    };
    match state {
        State::List { continue_token, rv } => {
            let list_opts = ListOptions {
                limit: Some(LIST_PAGE),
                continue_token: continue_token.clone(),
                resource_version: None,
                resource_version_match: None,
                allow_watch_bookmarks: false,
                ..opts.clone()
            };
            match api.list(&list_opts).await {
                Ok(page) => {
                    let mut events = Vec::new();
                    if continue_token.is_none() {
                        events.push(WatcherEvent::Init);
                    }
                    events.extend(page.items.into_iter().map(WatcherEvent::InitApply));
                    let rv = rv.unwrap_or(page.resource_version);
                    match page.continue_token {
                        Some(c) => (events, State::List { continue_token: Some(c), rv: Some(rv) }, backoff),
                        None => {
                            events.push(WatcherEvent::InitDone);
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
            let watch_opts = ListOptions {
                resource_version: Some(rv.clone()),
                allow_watch_bookmarks: true,
                limit: None,
                continue_token: None,
                resource_version_match: None,
                ..opts.clone()
            };
            match api.watch(&watch_opts).await {
                Ok(s) => (Vec::new(), State::Watching { rv, stream: Box::pin(s) }, backoff),
                Err(Error::Expired(msg)) => retry(msg, State::List { continue_token: None, rv: None }).await,
                Err(e) => retry(e.to_string(), State::Watch { rv }).await,
            }
        }
        State::Watching { rv, mut stream } => match stream.next().await {
            None => (Vec::new(), State::Watch { rv }, backoff),
            Some(Event::Added(k)) | Some(Event::Modified(k)) => {
                let rv = k.meta().resource_version.clone().unwrap_or(rv);
                (vec![WatcherEvent::Apply(k)], State::Watching { rv, stream }, BACKOFF_START)
            }
            Some(Event::Deleted(k)) => {
                let rv = k.meta().resource_version.clone().unwrap_or(rv);
                (vec![WatcherEvent::Delete(k)], State::Watching { rv, stream }, BACKOFF_START)
            }
            Some(Event::Bookmark(rv)) => (Vec::new(), State::Watching { rv, stream }, backoff),
            Some(Event::Error(Error::Expired(msg))) => {
                retry(msg, State::List { continue_token: None, rv: None }).await
            }
            Some(Event::Error(e)) => retry(e.to_string(), State::Watch { rv }).await,
        },
    }
}
