//! Watch: store events turned into object events, filtered by selectors with Kubernetes'
//! rules (an object that stops matching is reported deleted, one that starts matching added).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};

use super::encoding::{decode, prefix};
use super::list::{Filter, parse_rv};
use super::options::ListOptions;
use super::{Error, Registry, Result};
use crate::object::{DynamicObject, KindStrategy, ResourceType};
use crate::store::{self, EventType as StoreEventType, KeyRange, WatchRequest};

/// One watch event.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent {
    /// The object was created (or, for a selector, started to match).
    Added(Arc<DynamicObject>),
    /// The object changed.
    Modified(Arc<DynamicObject>),
    /// The object was deleted (or stopped matching); it is the last state seen, with the
    /// resourceVersion of the deletion.
    Deleted(Arc<DynamicObject>),
    /// Nothing changed up to this resourceVersion.
    Bookmark {
        /// The revision the watch has seen everything up to.
        resource_version: String,
    },
    /// The watch ended with this error (for example 410 Expired after a compaction).
    Error(Error),
}

impl WatchEvent {
    /// The Kubernetes event type (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR`).
    pub fn type_name(&self) -> &'static str {
        match self {
            WatchEvent::Added(_) => "ADDED",
            WatchEvent::Modified(_) => "MODIFIED",
            WatchEvent::Deleted(_) => "DELETED",
            WatchEvent::Bookmark { .. } => "BOOKMARK",
            WatchEvent::Error(_) => "ERROR",
        }
    }

    /// The object of an added, modified or deleted event.
    pub fn object(&self) -> Option<&DynamicObject> {
        match self {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => Some(o.as_ref()),
            _ => None,
        }
    }

    /// The resourceVersion this event brings the watcher to.
    pub fn resource_version(&self) -> Option<&str> {
        match self {
            WatchEvent::Bookmark { resource_version } => Some(resource_version),
            other => other.object().map(DynamicObject::resource_version),
        }
    }
}

/// A stream of watch events; it ends after an `Error` event or when the store shuts down.
pub struct WatchStream {
    inner: Pin<Box<dyn Stream<Item = WatchEvent> + Send>>,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream").finish_non_exhaustive()
    }
}

impl WatchStream {
    /// The next event, or `None` when the watch has ended.
    pub async fn next_event(&mut self) -> Option<WatchEvent> {
        self.inner.next().await
    }

    /// A stream of the given events (for other implementations of watch).
    pub fn from_stream(s: impl Stream<Item = WatchEvent> + Send + 'static) -> Self {
        WatchStream { inner: Box::pin(s) }
    }
}

impl Stream for WatchStream {
    type Item = WatchEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WatchEvent>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// Turns one store event into the object event a watcher with `filter` sees.
fn convert(
    s: &dyn KindStrategy,
    t: &ResourceType,
    filter: &Filter,
    ev: &store::Event,
) -> Option<Result<WatchEvent>> {
    let old = match ev.prev_kv.as_ref().map(decode).transpose() {
        Ok(o) => o,
        Err(e) => return Some(Err(e)),
    };
    let old_matches = old.as_ref().is_some_and(|o| filter.matches(s, o));
    match ev.kind {
        StoreEventType::Put => {
            let new = match decode(&ev.kv) {
                Ok(n) => n,
                Err(e) => return Some(Err(e)),
            };
            match (old, old_matches, filter.matches(s, &new)) {
                (_, true, true) => Some(Ok(WatchEvent::Modified(Arc::new(new)))),
                (_, false, true) => Some(Ok(WatchEvent::Added(Arc::new(new)))),
                // Left the selection: the previous state, at this event's revision.
                (Some(mut o), true, false) => {
                    o.metadata.resource_version = Some(ev.kv.mod_revision.to_string());
                    Some(Ok(WatchEvent::Deleted(Arc::new(o))))
                }
                _ => None,
            }
        }
        StoreEventType::Delete => {
            let rv = ev.kv.mod_revision.to_string();
            match old {
                Some(mut o) if old_matches => {
                    o.metadata.resource_version = Some(rv);
                    Some(Ok(WatchEvent::Deleted(Arc::new(o))))
                }
                Some(_) => None,
                None => {
                    tracing::warn!(kind = t.kind, key = %String::from_utf8_lossy(&ev.kv.key), "delete event without its previous state");
                    None
                }
            }
        }
    }
}

impl Registry {
    /// Watches objects of `t` (in `namespace`, or everywhere). With no resourceVersion (or
    /// `"0"`) the watch starts with an `Added` event per existing object, then follows
    /// changes; with one, it delivers every change after it, in order, or `Expired` if that
    /// revision has been compacted.
    pub async fn watch(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<WatchStream> {
        let s = self.strategy(t)?;
        let filter = Arc::new(Filter::new(s.as_ref(), opts)?);
        if let Some(cache) = self.watch_cache(t) {
            match opts.resource_version.as_deref() {
                // The most recent state: a linearizable list from the store, then the cache
                // from that list's revision (unless the cache's window no longer reaches it).
                None | Some("") => {
                    let list = self.list(t, namespace, &opts.selectors()).await?;
                    let rev = parse_rv(&list.resource_version)?;
                    match cache.watch(namespace, filter.clone(), opts.allow_watch_bookmarks, Some(rev)) {
                        Ok(stream) => {
                            let initial = list.items.into_iter().map(|o| WatchEvent::Added(Arc::new(o)));
                            return Ok(WatchStream::from_stream(
                                futures::stream::iter(initial).chain(stream),
                            ));
                        }
                        Err(Error::Expired(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                Some("0") => return cache.watch(namespace, filter, opts.allow_watch_bookmarks, None),
                Some(rv) => {
                    return cache.watch(namespace, filter, opts.allow_watch_bookmarks, Some(parse_rv(rv)?));
                }
            }
        }
        let (initial, start) = match opts.resource_version.as_deref() {
            None | Some("") | Some("0") => {
                let list = self.list(t, namespace, &opts.selectors()).await?;
                let rv = parse_rv(&list.resource_version)?;
                (list.items.into_iter().map(|o| WatchEvent::Added(Arc::new(o))).collect::<Vec<_>>(), rv + 1)
            }
            Some(rv) => (Vec::new(), parse_rv(rv)? + 1),
        };
        let req = WatchRequest {
            range: KeyRange::prefix(prefix(t, namespace)),
            start_revision: start,
            prev_kv: true,
            progress_notify: opts.allow_watch_bookmarks,
        };
        let stream = match self.store.watch(req).await {
            Ok(st) => st,
            Err(store::Error::Compacted { compact_revision, .. }) => {
                return Err(Error::Expired(format!(
                    "too old resource version: {} ({compact_revision})",
                    start - 1
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let t = *t;
        let bookmarks = opts.allow_watch_bookmarks;
        let events = stream
            .map(move |resp| -> Vec<WatchEvent> {
                match resp {
                    Err(store::Error::Compacted { compact_revision, .. }) => vec![WatchEvent::Error(
                        Error::Expired(format!("too old resource version: compacted at {compact_revision}")),
                    )],
                    Err(e) => vec![WatchEvent::Error(e.into())],
                    Ok(r) if r.events.is_empty() => {
                        if bookmarks {
                            vec![WatchEvent::Bookmark { resource_version: r.header.revision.to_string() }]
                        } else {
                            Vec::new()
                        }
                    }
                    Ok(r) => r
                        .events
                        .iter()
                        .filter_map(|ev| convert(s.as_ref(), &t, &filter, ev))
                        .map(|r| r.unwrap_or_else(WatchEvent::Error))
                        .collect(),
                }
            })
            .flat_map(futures::stream::iter);
        let mut ended = false;
        let events = futures::stream::iter(initial).chain(events).take_while(move |ev| {
            // End after the first error: a watcher must relist or resume.
            let keep = !ended;
            ended |= matches!(ev, WatchEvent::Error(_));
            futures::future::ready(keep)
        });
        Ok(WatchStream::from_stream(events))
    }
}
