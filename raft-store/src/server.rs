//! The member transport server: openraft RPCs and forwarded requests.

use std::sync::Arc;

use futures::StreamExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::codec;
use crate::forward::ForwardRequest;
use crate::network::{FROM_HEADER, MAX_MESSAGE_BYTES, TO_HEADER};
use crate::pb::raft_transport_server::{RaftTransport, RaftTransportServer};
use crate::pb::{Blob, SnapshotChunk};
use crate::snapshot_file::Receiver;
use crate::store::Inner;
use crate::typ::{
    AppendEntriesRequest, RaftError, Snapshot, SnapshotMeta, TransferLeaderRequest, Vote, VoteRequest,
};

/// The member transport service of one member.
pub(crate) struct Service {
    inner: Arc<Inner>,
}

/// The member transport service of `inner`'s member, with the message size limits.
pub(crate) fn service(inner: Arc<Inner>) -> RaftTransportServer<Service> {
    RaftTransportServer::new(Service { inner })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The connections `listener` accepts, with TCP_NODELAY set. tonic's builder setting only
/// reaches sockets it accepts itself; without it, Nagle holds a response's second frame
/// until the peer's delayed ACK (40 ms).
pub(crate) fn nodelay_incoming(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        conn.and_then(|s| {
            s.set_nodelay(true)?;
            Ok(s)
        })
    })
}

/// Serves the member transport on `listener` until `cancel` fires.
pub(crate) async fn serve(inner: Arc<Inner>, listener: TcpListener, cancel: CancellationToken) {
    let svc = service(inner.clone());
    let res = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(svc)
        .serve_with_incoming_shutdown(nodelay_incoming(listener), cancel.cancelled_owned())
        .await;
    if let Err(e) = res {
        tracing::error!(id = inner.id, error = %e, "member transport stopped");
    }
}

/// The status metadata key marking a refusal of a message addressed to another member: the
/// sender knows it was not handled.
pub(crate) const MISADDRESSED: &str = "flotilla-misaddressed";

impl Service {
    /// Refuses a request addressed (by [`TO_HEADER`]) to another member than this one. A
    /// request naming no recipient (a joiner's first contact, or a member of an older version)
    /// is taken.
    fn check_recipient<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let Some(to) = req.metadata().get(TO_HEADER) else { return Ok(()) };
        let to: u64 = to
            .to_str()
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| Status::invalid_argument(format!("header {TO_HEADER} is not a member id")))?;
        if to == self.inner.id {
            return Ok(());
        }
        let from = req.metadata().get(FROM_HEADER).and_then(|f| f.to_str().ok()).unwrap_or("?");
        let refused = self.inner.misaddressed.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if refused.is_power_of_two() {
            tracing::warn!(
                id = self.inner.id,
                from,
                to,
                refused,
                "refused a message for member {to}: member {} listens at this address now",
                self.inner.id
            );
        }
        let mut status = Status::failed_precondition(format!(
            "message for member {to} reached member {} (the member at this address changed)",
            self.inner.id
        ));
        status.metadata_mut().insert(MISADDRESSED, tonic::metadata::MetadataValue::from_static("1"));
        Err(status)
    }
}

/// Runs blocking file I/O off the async threads; a failure is the receiving member's.
async fn spawn_io<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("snapshot receiver failed: {e}")))?
        .map_err(|e| Status::internal(format!("cannot store the received snapshot: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Status> {
    codec::decode(bytes).map_err(|e| Status::invalid_argument(format!("undecodable message: {e}")))
}

fn reply<T: serde::Serialize>(value: &T) -> Result<Response<Blob>, Status> {
    let data = codec::encode(value).map_err(|e| Status::internal(format!("cannot encode reply: {e}")))?;
    Ok(Response::new(Blob { data }))
}

#[tonic::async_trait]
impl RaftTransport for Service {
    async fn append_entries(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        self.check_recipient(&req)?;
        let rpc: AppendEntriesRequest = decode(&req.into_inner().data)?;
        reply(&self.inner.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        self.check_recipient(&req)?;
        let rpc: VoteRequest = decode(&req.into_inner().data)?;
        reply(&self.inner.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<Blob>, Status> {
        self.check_recipient(&req)?;
        let mut stream = req.into_inner();
        let mut header: Option<(Vote, SnapshotMeta)> = None;
        let dir = self.inner.data_dir.clone();
        let mut received = spawn_io(move || Receiver::new(&dir)).await?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if header.is_none() {
                header = Some(decode(&chunk.header)?);
            }
            received = spawn_io(move || {
                let mut received = received;
                received.write(&chunk.data)?;
                Ok(received)
            })
            .await?;
        }
        let (vote, meta) = header.ok_or_else(|| Status::invalid_argument("snapshot stream had no chunks"))?;
        let file = spawn_io(move || received.finish()).await?;
        let snapshot = Snapshot { meta, snapshot: file };
        let res = self.inner.raft.install_full_snapshot(vote, snapshot).await.map_err(|e| e.to_string());
        reply(&res)
    }

    async fn transfer_leader(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        self.check_recipient(&req)?;
        let rpc: TransferLeaderRequest = decode(&req.into_inner().data)?;
        let res: Result<_, RaftError> =
            self.inner.raft.handle_transfer_leader(rpc).await.map_err(RaftError::Fatal);
        reply(&res)
    }

    async fn describe(&self, _req: Request<Blob>) -> Result<Response<Blob>, Status> {
        reply(&crate::describe::MemberInfo { id: self.inner.id, etcd: self.inner.etcd_addr })
    }

    async fn join(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        self.check_recipient(&req)?;
        let join: crate::join::JoinRequest = decode(&req.into_inner().data)?;
        reply(&self.inner.serve_join(join).await)
    }

    async fn forward(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        self.check_recipient(&req)?;
        let fwd: ForwardRequest = decode(&req.into_inner().data)?;
        reply(&self.inner.serve_as_leader_within(fwd, self.inner.request_timeout).await)
    }
}
