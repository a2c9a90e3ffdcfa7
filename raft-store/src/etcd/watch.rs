//! The Watch service: one bidirectional stream carries many watches, each created,
//! cancelled and asked for progress by the client.
//!
//! A progress request on the stream is answered (watch id -1) only once every watch of the
//! stream has forwarded all its events up to the answer's revision, as etcd answers only for
//! synced watchers: clients such as Kubernetes' watch cache take that revision as "everything
//! up to here has been seen". Each watch's store stream is asked for a progress marker; its
//! forwarding task records how far it has forwarded, and the session answers when the lowest
//! of those reaches the revision the request was made at.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;

use flotilla_core::store::{
    Error, EventType, ProgressHandle, Revision, Store as _, WatchRequest, WatchStream,
};
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::Ctx;
use super::convert::{ERR_COMPACTED, event, key_range, status};
use super::pb;

/// Responses buffered per watch stream before the watches' tasks wait for the client.
const WATCH_OUT_CAPACITY: usize = 256;
/// The watch id etcd puts on responses that concern no single watch (progress requests).
const NO_WATCH_ID: i64 = -1;

pub(crate) struct WatchService(pub(crate) Ctx);

type Out = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;
type Tx = mpsc::Sender<Result<pb::WatchResponse, Status>>;

#[tonic::async_trait]
impl pb::watch_server::Watch for WatchService {
    type WatchStream = Out;

    async fn watch(&self, req: Request<Streaming<pb::WatchRequest>>) -> Result<Response<Out>, Status> {
        let (tx, rx) = mpsc::channel(WATCH_OUT_CAPACITY);
        let session = Session {
            ctx: self.0.clone(),
            tx,
            cancel: self.0.cancel.child_token(),
            watches: Arc::default(),
            next_id: 0,
            pending_progress: VecDeque::new(),
        };
        self.0.tasks.spawn(session.run(req.into_inner()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// The watches of one stream, shared by the session and the watches' forwarding tasks.
#[derive(Default)]
struct Watches {
    state: Mutex<WatchesState>,
    /// Wakes the session when a forwarding task moved on while a progress request waits.
    moved: Notify,
}

#[derive(Default)]
struct WatchesState {
    /// Watch ids in use (cancelling frees one), with the token that ends the watch.
    ids: HashMap<i64, CancellationToken>,
    /// Every running forwarding task by serial number, until it ends (also after its watch
    /// was cancelled and its id reused).
    live: HashMap<u64, Live>,
    /// The serial number of the next forwarding task.
    next_serial: u64,
    /// A progress request waits for the forwarding tasks.
    waiting: bool,
}

/// One running forwarding task, as progress requests see it.
struct Live {
    /// Asks the watch's store stream for a progress marker.
    handle: ProgressHandle,
    /// Every event of the watch up to this revision has been handed to the client's stream.
    through: Revision,
}

/// One client's watch stream: reads its requests, owns its watches.
struct Session {
    ctx: Ctx,
    tx: Tx,
    /// Fires when the stream ends or the server stops; every watch's token is a child.
    cancel: CancellationToken,
    watches: Arc<Watches>,
    next_id: i64,
    /// Progress requests not answered yet: the store revision each was made at, oldest first.
    pending_progress: VecDeque<Revision>,
}

impl Session {
    async fn run(mut self, mut inbound: Streaming<pb::WatchRequest>) {
        loop {
            let msg = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break,
                _ = self.tx.closed() => break,
                _ = self.watches.moved.notified(), if !self.pending_progress.is_empty() => {
                    self.answer_progress().await;
                    continue;
                }
                msg = inbound.next() => msg,
            };
            let Some(Ok(req)) = msg else { break };
            use pb::watch_request::RequestUnion as U;
            match req.request_union {
                Some(U::CreateRequest(c)) => self.create(c).await,
                Some(U::CancelRequest(c)) => {
                    let token = self.watches.state.lock().ids.remove(&c.watch_id);
                    // The watch's task answers `canceled` itself, after its last event.
                    if let Some(token) = token {
                        token.cancel();
                    }
                }
                Some(U::ProgressRequest(_)) => {
                    let at = self.ctx.store.engine().revision();
                    {
                        let mut state = self.watches.state.lock();
                        state.waiting = true;
                        for live in state.live.values() {
                            live.handle.request();
                        }
                    }
                    self.pending_progress.push_back(at);
                    self.answer_progress().await;
                }
                None => {}
            }
        }
        self.cancel.cancel();
    }

    /// Answers the waiting progress requests that every forwarding task has caught up with,
    /// oldest first, each at the revision all of them have forwarded through.
    async fn answer_progress(&mut self) {
        while let Some(&at) = self.pending_progress.front() {
            let floor = {
                let mut state = self.watches.state.lock();
                let floor = state.live.values().map(|l| l.through).min();
                if floor.is_some_and(|f| f < at) {
                    return;
                }
                state.waiting = self.pending_progress.len() > 1;
                floor
            };
            self.pending_progress.pop_front();
            let resp = pb::WatchResponse {
                header: Some(self.ctx.header(floor.unwrap_or(at))),
                watch_id: NO_WATCH_ID,
                ..Default::default()
            };
            if !send(&self.tx, &self.cancel, resp).await {
                return;
            }
        }
    }

    async fn create(&mut self, c: pb::WatchCreateRequest) {
        let id = if c.watch_id != 0 {
            c.watch_id
        } else {
            let state = self.watches.state.lock();
            while state.ids.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id
        };
        let created = pb::WatchResponse {
            header: Some(self.ctx.header_now()),
            watch_id: id,
            created: true,
            ..Default::default()
        };
        if self.watches.state.lock().ids.contains_key(&id) {
            let reason = "etcdserver: mvcc: duplicate watch ID provided on the WatchStream";
            let resp = pb::WatchResponse { canceled: true, cancel_reason: reason.into(), ..created };
            send(&self.tx, &self.cancel, resp).await;
            return;
        }
        if c.watch_id == 0 {
            self.next_id += 1;
        }
        let started = match key_range(&c.key, &c.range_end) {
            // A range that ends before it starts can never match: watch the stand-in empty range.
            Ok(range) => {
                let range = range.unwrap_or_else(super::convert::nothing);
                let req = WatchRequest {
                    range,
                    start_revision: c.start_revision,
                    prev_kv: c.prev_kv,
                    progress_notify: c.progress_notify,
                };
                self.ctx.store.watch(req).await.map_err(|e| cancel_reason(&e))
            }
            Err(s) => Err((0, s.message().to_string())),
        };
        if !send(&self.tx, &self.cancel, created.clone()).await {
            return;
        }
        let stream = match started {
            Ok(stream) => stream,
            Err(why) => {
                send(&self.tx, &self.cancel, canceled(&self.ctx, id, why)).await;
                return;
            }
        };
        let token = self.cancel.child_token();
        let serial = {
            let mut state = self.watches.state.lock();
            state.ids.insert(id, token.clone());
            // Through 0 until the stream says more: a progress request waits for its marker.
            state.next_serial += 1;
            let serial = state.next_serial;
            state.live.insert(serial, Live { handle: stream.progress_handle(), through: 0 });
            serial
        };
        let task = Forward {
            serial,
            ctx: self.ctx.clone(),
            id,
            tx: self.tx.clone(),
            session: self.cancel.clone(),
            token,
            watches: self.watches.clone(),
            no_put: c.filters.contains(&(pb::watch_create_request::FilterType::Noput as i32)),
            no_delete: c.filters.contains(&(pb::watch_create_request::FilterType::Nodelete as i32)),
        };
        self.ctx.tasks.spawn(task.run(stream));
    }
}

/// The compact revision (0 if none) and the reason a watch ends with because of `e`.
fn cancel_reason(e: &Error) -> (i64, String) {
    match e {
        Error::Compacted { compact_revision, .. } => (*compact_revision, ERR_COMPACTED.to_string()),
        other => (0, status(other.clone()).message().to_string()),
    }
}

/// The response that ends watch `id`; a compaction carries its revision.
fn canceled(ctx: &Ctx, id: i64, (compact_revision, reason): (i64, String)) -> pb::WatchResponse {
    pb::WatchResponse {
        header: Some(ctx.header_now()),
        watch_id: id,
        canceled: true,
        compact_revision,
        cancel_reason: reason,
        ..Default::default()
    }
}

/// Sends `resp` unless the session ends first; false when it did or the client is gone.
async fn send(tx: &Tx, session: &CancellationToken, resp: pb::WatchResponse) -> bool {
    tokio::select! {
        biased;
        _ = session.cancelled() => false,
        r = tx.send(Ok(resp)) => r.is_ok(),
    }
}

/// Moves one watch's responses from the store to the client's stream.
struct Forward {
    ctx: Ctx,
    id: i64,
    /// This task's key in [`WatchesState::live`].
    serial: u64,
    tx: Tx,
    session: CancellationToken,
    token: CancellationToken,
    watches: Arc<Watches>,
    no_put: bool,
    no_delete: bool,
}

impl Forward {
    async fn run(self, stream: WatchStream) {
        self.forward(stream).await;
        let mut state = self.watches.state.lock();
        state.live.remove(&self.serial);
        if state.waiting {
            self.watches.moved.notify_one();
        }
    }

    /// Records that every event up to `rev` has been handed to the client's stream.
    fn forwarded_through(&self, rev: Revision) {
        let mut state = self.watches.state.lock();
        if let Some(live) = state.live.get_mut(&self.serial) {
            live.through = live.through.max(rev);
        }
        if state.waiting {
            self.watches.moved.notify_one();
        }
    }

    async fn forward(&self, mut stream: WatchStream) {
        loop {
            let next = tokio::select! {
                biased;
                _ = self.token.cancelled() => {
                    if !self.session.is_cancelled() {
                        let resp = pb::WatchResponse {
                            header: Some(self.ctx.header_now()),
                            watch_id: self.id,
                            canceled: true,
                            ..Default::default()
                        };
                        send(&self.tx, &self.session, resp).await;
                    }
                    return;
                }
                next = stream.next() => next,
            };
            let resp = match next {
                Some(Ok(r)) => r,
                Some(Err(e)) => {
                    self.watches.state.lock().ids.remove(&self.id);
                    send(&self.tx, &self.session, canceled(&self.ctx, self.id, cancel_reason(&e))).await;
                    return;
                }
                None => {
                    self.watches.state.lock().ids.remove(&self.id);
                    return;
                }
            };
            let rev = resp.header.revision;
            if resp.requested {
                // A marker for the session's progress request, not for the client.
                self.forwarded_through(rev);
                continue;
            }
            let progress = resp.is_progress_notify();
            let events: Vec<_> = resp
                .events
                .into_iter()
                .filter(|e| match e.kind {
                    EventType::Put => !self.no_put,
                    EventType::Delete => !self.no_delete,
                })
                .map(event)
                .collect();
            if events.is_empty() && !progress {
                self.forwarded_through(rev);
                continue;
            }
            let out = pb::WatchResponse {
                header: Some(self.ctx.header(rev)),
                watch_id: self.id,
                events,
                ..Default::default()
            };
            if !send(&self.tx, &self.session, out).await {
                return;
            }
            self.forwarded_through(rev);
        }
    }
}
