//! [`KvEngine`]: the MVCC state plus its watchers, behind one lock.

use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::error::{Error, Result};
use super::mvcc::{ApplyOutcome, Command, CommandResult, MvccState};
use super::types::{ResponseHeader, Revision, WatchRequest, WatchResponse};
use super::watch::{
    CATCH_UP_REVISIONS, WATCH_CHANNEL_CAPACITY, WatcherEntry, WatcherSet, group_by_revision, select_events,
};

/// How often an idle, caught-up watch that asked for progress notifications gets one.
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

struct Inner {
    state: MvccState,
    watchers: WatcherSet,
}

/// The MVCC state and its watchers, shared by the store implementations.
///
/// Writers call [`apply`](Self::apply); readers call [`read`](Self::read); watchers are
/// served by tasks this engine owns and stops on [`shutdown`](Self::shutdown).
#[derive(Clone)]
pub struct KvEngine {
    inner: Arc<Mutex<Inner>>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    progress_interval: Duration,
}

impl KvEngine {
    /// An engine over `state`, with the default progress-notification interval.
    pub fn new(state: MvccState) -> Self {
        Self::with_progress_interval(state, DEFAULT_PROGRESS_INTERVAL)
    }

    /// An engine whose watches send progress notifications every `interval`.
    pub fn with_progress_interval(state: MvccState, interval: Duration) -> Self {
        KvEngine {
            inner: Arc::new(Mutex::new(Inner { state, watchers: WatcherSet::default() })),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            progress_interval: interval,
        }
    }

    /// Applies a command and delivers its events to synced watchers.
    pub fn apply(&self, cmd: &Command) -> (Result<CommandResult>, ApplyOutcome) {
        let mut inner = self.inner.lock();
        let (res, outcome) = inner.state.apply(cmd);
        if !outcome.events.is_empty() {
            let rev = inner.state.revision();
            inner.watchers.notify(rev, &outcome.events);
        }
        (res, outcome)
    }

    /// Runs `f` on the state under the lock; keep it short.
    pub fn read<R>(&self, f: impl FnOnce(&MvccState) -> R) -> R {
        f(&self.inner.lock().state)
    }

    /// Replaces the whole state (a snapshot was installed); watchers replay what they missed
    /// from the new state's history.
    pub fn replace(&self, state: MvccState) {
        let mut inner = self.inner.lock();
        inner.state = state;
        inner.watchers.resync_all();
    }

    /// The current revision.
    pub fn revision(&self) -> Revision {
        self.read(MvccState::revision)
    }

    /// Starts a watch. A start revision below the compaction point fails at once with
    /// [`Error::Compacted`]; 0 means "after the current revision".
    pub fn watch(&self, req: WatchRequest) -> Result<WatchStream> {
        if self.cancel.is_cancelled() {
            return Err(Error::Unavailable { reason: "store is shutting down".into() });
        }
        let (tx, rx) = mpsc::channel(WATCH_CHANNEL_CAPACITY);
        let wake = Arc::new(Notify::new());
        let id = {
            let mut inner = self.inner.lock();
            let current = inner.state.revision();
            let compacted = inner.state.compact_revision();
            if req.start_revision > 0 && req.start_revision < compacted {
                return Err(Error::Compacted { requested: req.start_revision, compact_revision: compacted });
            }
            let next_rev = if req.start_revision > 0 { req.start_revision } else { current + 1 };
            let set = &mut inner.watchers;
            set.next_id += 1;
            let id = set.next_id;
            set.watchers.insert(
                id,
                WatcherEntry {
                    range: req.range.clone(),
                    prev_kv: req.prev_kv,
                    tx: tx.clone(),
                    next_rev,
                    synced: next_rev > current,
                    wake: wake.clone(),
                    progress_requested: false,
                },
            );
            id
        };
        let handle = ProgressHandle { id, inner: Arc::downgrade(&self.inner), wake: wake.clone() };
        let pump = Pump {
            id,
            inner: self.inner.clone(),
            tx,
            wake,
            progress: req.progress_notify.then_some(self.progress_interval),
        };
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move { pump.run(cancel).await });
        Ok(WatchStream { rx, handle })
    }

    /// Stops every watch task and waits for them.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// The task that replays history for one watcher and sends its progress notifications.
struct Pump {
    id: u64,
    inner: Arc<Mutex<Inner>>,
    tx: mpsc::Sender<Result<WatchResponse>>,
    wake: Arc<Notify>,
    progress: Option<Duration>,
}

impl Pump {
    async fn run(self, cancel: CancellationToken) {
        let mut ticker = self.progress.map(|p| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + p, p);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            if !self.catch_up().await {
                break;
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = self.tx.closed() => break,
                _ = self.wake.notified() => {}
                _ = async { ticker.as_mut().expect("guarded by the branch condition").tick().await }, if ticker.is_some() => {
                    self.send_progress();
                }
            }
        }
        self.inner.lock().watchers.watchers.remove(&self.id);
    }

    /// Replays history until the watcher is synced, then sends the progress notification
    /// owed to a [`ProgressHandle::request`], if any. Returns false when the watch is over.
    async fn catch_up(&self) -> bool {
        loop {
            let step = {
                let mut guard = self.inner.lock();
                let inner = &mut *guard;
                let Some(w) = inner.watchers.watchers.get_mut(&self.id) else { return false };
                let current = inner.state.revision();
                if !w.synced && w.next_rev > current {
                    w.synced = true;
                }
                if w.synced {
                    // Synced: every event up to `current` is already in the channel.
                    let owed = std::mem::take(&mut w.progress_requested);
                    Step::Synced(owed.then(|| WatchResponse {
                        header: ResponseHeader { revision: current },
                        events: vec![],
                        requested: true,
                    }))
                } else {
                    match inner.state.events_between(&w.range, w.next_rev, current, CATCH_UP_REVISIONS) {
                        Ok((events, next)) => {
                            w.next_rev = next;
                            Step::Replay(Ok(group_by_revision(select_events(&events, &w.range, w.prev_kv))))
                        }
                        Err(e) => Step::Replay(Err(e)),
                    }
                }
            };
            match step {
                Step::Synced(marker) => {
                    // Events of later revisions may overtake the marker; it only promises
                    // that nothing at or below its revision is still to come.
                    return match marker {
                        Some(resp) => self.tx.send(Ok(resp)).await.is_ok(),
                        None => true,
                    };
                }
                Step::Replay(Ok(responses)) => {
                    for resp in responses {
                        if self.tx.send(Ok(resp)).await.is_err() {
                            return false;
                        }
                    }
                }
                Step::Replay(Err(e)) => {
                    let _ = self.tx.send(Err(e)).await;
                    return false;
                }
            }
        }
    }

    fn send_progress(&self) {
        let inner = self.inner.lock();
        let Some(w) = inner.watchers.watchers.get(&self.id) else { return };
        if w.synced {
            let resp = WatchResponse {
                header: ResponseHeader { revision: inner.state.revision() },
                events: vec![],
                requested: false,
            };
            // A full channel means events are flowing; skipping a progress tick is harmless.
            let _ = self.tx.try_send(Ok(resp));
        }
    }
}

/// What one pass of [`Pump::catch_up`] found under the lock.
enum Step {
    /// The watcher is synced; the progress notification it owes, if one was requested.
    Synced(Option<WatchResponse>),
    /// Replayed history to send, or the error that ends the watch.
    Replay(Result<Vec<WatchResponse>>),
}

/// Asks one watch for a progress notification (etcd's progress request).
///
/// The answer is a response with no events and [`WatchResponse::requested`] set, sent once the
/// watch is synced: every event at or below its revision is ahead of it in the stream. A
/// watch still replaying history answers after the replay. Requests made before the answer
/// is sent share it.
#[derive(Clone)]
pub struct ProgressHandle {
    id: u64,
    inner: Weak<Mutex<Inner>>,
    wake: Arc<Notify>,
}

impl ProgressHandle {
    /// Asks for a progress notification; false if the watch or the store is gone.
    pub fn request(&self) -> bool {
        let Some(inner) = self.inner.upgrade() else { return false };
        let mut inner = inner.lock();
        let Some(w) = inner.watchers.watchers.get_mut(&self.id) else { return false };
        w.progress_requested = true;
        drop(inner);
        self.wake.notify_one();
        true
    }
}

impl std::fmt::Debug for ProgressHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgressHandle").field("id", &self.id).finish_non_exhaustive()
    }
}

/// The stream of a watch: responses in revision order, ending after an error or when the
/// store shuts down. Dropping it cancels the watch.
pub struct WatchStream {
    rx: mpsc::Receiver<Result<WatchResponse>>,
    handle: ProgressHandle,
}

impl WatchStream {
    /// A handle that asks this watch for a progress notification; it outlives the stream
    /// harmlessly (requests then return false).
    pub fn progress_handle(&self) -> ProgressHandle {
        self.handle.clone()
    }

    /// The next response, or `None` when the watch has ended.
    pub async fn next_response(&mut self) -> Option<Result<WatchResponse>> {
        self.rx.recv().await
    }
}

impl Stream for WatchStream {
    type Item = Result<WatchResponse>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream").finish_non_exhaustive()
    }
}
