//! The Watch service: one bidirectional stream carries many watches, each created,
//! cancelled and asked for progress by the client.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use flotilla_core::store::{Error, EventType, Store as _, WatchRequest, WatchStream};
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use tokio::sync::mpsc;
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
        };
        self.0.tasks.spawn(session.run(req.into_inner()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// One client's watch stream: reads its requests, owns its watches.
struct Session {
    ctx: Ctx,
    tx: Tx,
    /// Fires when the stream ends or the server stops; every watch's token is a child.
    cancel: CancellationToken,
    watches: Arc<Mutex<HashMap<i64, CancellationToken>>>,
    next_id: i64,
}

impl Session {
    async fn run(mut self, mut inbound: Streaming<pb::WatchRequest>) {
        loop {
            let msg = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break,
                _ = self.tx.closed() => break,
                msg = inbound.next() => msg,
            };
            let Some(Ok(req)) = msg else { break };
            use pb::watch_request::RequestUnion as U;
            match req.request_union {
                Some(U::CreateRequest(c)) => self.create(c).await,
                Some(U::CancelRequest(c)) => {
                    let token = self.watches.lock().remove(&c.watch_id);
                    // The watch's task answers `canceled` itself, after its last event.
                    if let Some(token) = token {
                        token.cancel();
                    }
                }
                Some(U::ProgressRequest(_)) => {
                    let resp = pb::WatchResponse {
                        header: Some(self.ctx.header_now()),
                        watch_id: NO_WATCH_ID,
                        ..Default::default()
                    };
                    send(&self.tx, &self.cancel, resp).await;
                }
                None => {}
            }
        }
        self.cancel.cancel();
    }

    async fn create(&mut self, c: pb::WatchCreateRequest) {
        let id = if c.watch_id != 0 {
            c.watch_id
        } else {
            let watches = self.watches.lock();
            while watches.contains_key(&self.next_id) {
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
        if self.watches.lock().contains_key(&id) {
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
        self.watches.lock().insert(id, token.clone());
        let task = Forward {
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
    tx: Tx,
    session: CancellationToken,
    token: CancellationToken,
    watches: Arc<Mutex<HashMap<i64, CancellationToken>>>,
    no_put: bool,
    no_delete: bool,
}

impl Forward {
    async fn run(self, mut stream: WatchStream) {
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
                    self.watches.lock().remove(&self.id);
                    send(&self.tx, &self.session, canceled(&self.ctx, self.id, cancel_reason(&e))).await;
                    return;
                }
                None => {
                    self.watches.lock().remove(&self.id);
                    return;
                }
            };
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
                continue;
            }
            let out = pb::WatchResponse {
                header: Some(self.ctx.header(resp.header.revision)),
                watch_id: self.id,
                events,
                ..Default::default()
            };
            if !send(&self.tx, &self.session, out).await {
                return;
            }
        }
    }
}
