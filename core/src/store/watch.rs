//! Watchers: the synced/unsynced delivery scheme.
//!
//! A *synced* watcher has seen every event up to the current revision; each new revision is
//! offered to it with a non-blocking send while the state lock is held, so events reach it in
//! order without the writer ever waiting on a reader. A watcher that falls behind (its channel
//! is full) or that starts in the past is *unsynced*: its own task replays history from the
//! state in batches, then turns it synced again under the lock. Memory per watcher is bounded
//! by its channel; a watcher whose next revision was compacted away gets
//! [`Error::Compacted`](super::Error::Compacted) and ends.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Notify, mpsc};

use super::error::Result;
use super::types::{Event, KeyRange, ResponseHeader, Revision, WatchResponse};

/// Responses a watcher's channel buffers before the watcher counts as slow.
pub(crate) const WATCH_CHANNEL_CAPACITY: usize = 128;
/// Revisions one catch-up step reads from history while holding the state lock.
pub(crate) const CATCH_UP_REVISIONS: usize = 256;

/// One registered watcher, as the writer sees it.
pub(crate) struct WatcherEntry {
    pub(crate) range: KeyRange,
    pub(crate) prev_kv: bool,
    pub(crate) tx: mpsc::Sender<Result<WatchResponse>>,
    /// The first revision this watcher has not been sent.
    pub(crate) next_rev: Revision,
    pub(crate) synced: bool,
    pub(crate) wake: Arc<Notify>,
    /// A progress notification was asked for and is owed once the watcher is synced.
    pub(crate) progress_requested: bool,
}

/// Every watcher of one engine.
#[derive(Default)]
pub(crate) struct WatcherSet {
    pub(crate) next_id: u64,
    pub(crate) watchers: HashMap<u64, WatcherEntry>,
}

impl WatcherSet {
    /// Offers the events of revision `rev` to every synced watcher.
    pub(crate) fn notify(&mut self, rev: Revision, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        self.watchers.retain(|_, w| {
            if !w.synced || rev < w.next_rev {
                return true;
            }
            let mine = select_events(events, &w.range, w.prev_kv);
            if mine.is_empty() {
                w.next_rev = rev + 1;
                return true;
            }
            let resp =
                WatchResponse { header: ResponseHeader { revision: rev }, events: mine, requested: false };
            match w.tx.try_send(Ok(resp)) {
                Ok(()) => {
                    w.next_rev = rev + 1;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // Too slow: replay this revision and later ones from history.
                    w.synced = false;
                    w.wake.notify_one();
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// Turns every watcher unsynced, so it replays from history (after a snapshot replaced
    /// the state).
    pub(crate) fn resync_all(&mut self) {
        for w in self.watchers.values_mut() {
            w.synced = false;
            w.wake.notify_one();
        }
    }
}

/// The events in `range`, with previous key-values only when asked for.
pub(crate) fn select_events(events: &[Event], range: &KeyRange, prev_kv: bool) -> Vec<Event> {
    events
        .iter()
        .filter(|e| range.contains(&e.kv.key))
        .map(|e| {
            let mut e = e.clone();
            if !prev_kv {
                e.prev_kv = None;
            }
            e
        })
        .collect()
}

/// Splits replayed events into one response per revision.
pub(crate) fn group_by_revision(events: Vec<Event>) -> Vec<WatchResponse> {
    let mut out: Vec<WatchResponse> = Vec::new();
    for ev in events {
        let rev = ev.kv.mod_revision;
        match out.last_mut() {
            Some(last) if last.header.revision == rev => last.events.push(ev),
            _ => out.push(WatchResponse {
                header: ResponseHeader { revision: rev },
                events: vec![ev],
                requested: false,
            }),
        }
    }
    out
}
