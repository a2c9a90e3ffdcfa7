//! The member-to-member transport: openraft's RPCs and forwarded client requests over tonic,
//! with an in-process fault filter for tests.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use openraft::errors::{NetworkError, ReplicationClosed, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::{BasicNode, OptionalSend};
use parking_lot::{Mutex, RwLock};
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::codegen::{BoxFuture, Service, StdError};
use tonic::transport::{Channel, Endpoint};

use crate::codec;
use crate::pb::raft_transport_client::RaftTransportClient;
use crate::pb::{Blob, SnapshotChunk};
use crate::typ::{
    AppendEntriesRequest, AppendEntriesResponse, NodeId, RPCError, RaftError, Snapshot, SnapshotResponse,
    StreamingError, TransferLeaderRequest, TransferLeaderResponse, Vote, VoteRequest, VoteResponse,
};

/// Bytes per snapshot chunk on the wire.
pub(crate) const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// How long connecting to a member may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The largest message a member accepts (a chunk, or an append of many entries).
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Faults injected into this process's outgoing member traffic: partitions, message loss
/// and delay. Used by tests; a production member leaves it empty.
#[derive(Debug, Default)]
pub struct NetworkFilter {
    state: RwLock<FilterState>,
}

#[derive(Debug, Default)]
struct FilterState {
    blocked: HashSet<(NodeId, NodeId)>,
    drop_per_mille: u32,
    delay: Duration,
}

impl NetworkFilter {
    /// Blocks traffic between every member of `a` and every member of `b`, both ways.
    pub fn partition(&self, a: &[NodeId], b: &[NodeId]) {
        self.state.write().blocked.extend(links_between(a, b));
    }

    /// Blocks traffic from `from` to `to` only.
    pub fn block_one_way(&self, from: NodeId, to: NodeId) {
        self.state.write().blocked.insert((from, to));
    }

    /// Drops each message with probability `per_mille / 1000`.
    pub fn set_drop_rate(&self, per_mille: u32) {
        self.state.write().drop_per_mille = per_mille.min(1000);
    }

    /// Delays every message by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.state.write().delay = delay;
    }

    /// Removes every fault.
    pub fn heal(&self) {
        *self.state.write() = FilterState::default();
    }

    /// Applies the faults to one message from `from` to `to`.
    async fn pass(&self, from: NodeId, to: NodeId) -> Result<(), String> {
        let (blocked, drop, delay) = {
            let s = self.state.read();
            (s.blocked.contains(&(from, to)), s.drop_per_mille, s.delay)
        };
        if blocked {
            return Err(format!("partitioned: {from} -> {to}"));
        }
        if drop > 0 && rand::random_range(0..1000) < drop {
            return Err(format!("dropped: {from} -> {to}"));
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(())
    }
}

/// Every link between a member of `a` and a member of `b`, both ways.
pub(crate) fn links_between<'a>(
    a: &'a [NodeId],
    b: &'a [NodeId],
) -> impl Iterator<Item = (NodeId, NodeId)> + 'a {
    a.iter().flat_map(move |&x| b.iter().flat_map(move |&y| [(x, y), (y, x)]))
}

/// The request header naming the member a message is for. A member refuses a message
/// addressed to another id: after a member is replaced by a new one at the same address (a
/// fresh data directory, a new id), messages still addressed to the old id must not be
/// taken, or the leader would count the newcomer's acknowledgements as the old member's.
pub(crate) const TO_HEADER: &str = "flotilla-member-to";
/// The request header naming the member a message is from (for the refusal's log line).
pub(crate) const FROM_HEADER: &str = "flotilla-member-from";

/// A channel to one member: a TCP connection, or a simulated link ([`crate::sim`]), with the
/// ids of the members it links when they are known.
#[derive(Clone, Debug)]
pub(crate) struct MemberChannel {
    link: Link,
    /// `(from, to)`: sent as [`FROM_HEADER`] and [`TO_HEADER`] on every request. `None` for a
    /// seed address whose member is not known yet (a joiner's first contact).
    ids: Option<(NodeId, NodeId)>,
}

#[derive(Clone, Debug)]
enum Link {
    /// A tonic channel over TCP.
    Tcp(Channel),
    /// A link of a simulated network.
    Sim(crate::sim::SimChannel),
}

impl MemberChannel {
    /// A channel to an address whose member's id is not known: its requests name no recipient.
    pub(crate) fn unaddressed(channel: Channel) -> Self {
        MemberChannel { link: Link::Tcp(channel), ids: None }
    }
}

impl Service<Request<Body>> for MemberChannel {
    type Response = Response<Body>;
    type Error = StdError;
    type Future = BoxFuture<Response<Body>, StdError>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StdError>> {
        match &mut self.link {
            Link::Tcp(c) => c.poll_ready(cx).map_err(Into::into),
            Link::Sim(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        if let Some((from, to)) = self.ids {
            let headers = req.headers_mut();
            headers.insert(FROM_HEADER, from.into());
            headers.insert(TO_HEADER, to.into());
        }
        match &mut self.link {
            Link::Tcp(c) => {
                let fut = c.call(req);
                Box::pin(async move { fut.await.map_err(Into::into) })
            }
            Link::Sim(s) => s.call(req),
        }
    }
}

/// Connections to the other members, shared by raft replication and request forwarding.
#[derive(Clone)]
pub(crate) struct Transport {
    id: NodeId,
    filter: Arc<NetworkFilter>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// The simulated network this member is on, if it is simulated.
    sim: Option<Arc<crate::sim::SimNet>>,
}

impl Transport {
    pub(crate) fn new(id: NodeId, filter: Arc<NetworkFilter>, sim: Option<Arc<crate::sim::SimNet>>) -> Self {
        Transport { id, filter, channels: Arc::default(), sim }
    }

    /// A client for `addr`, after the filter let a message from this member to `to` pass.
    pub(crate) async fn client(
        &self,
        to: NodeId,
        addr: &str,
    ) -> Result<RaftTransportClient<MemberChannel>, String> {
        self.filter.pass(self.id, to).await?;
        let link = match &self.sim {
            Some(net) => Link::Sim(crate::sim::SimChannel {
                net: net.clone(),
                from: self.id,
                to,
                addr: addr.to_string(),
            }),
            None => {
                let mut channels = self.channels.lock();
                match channels.get(addr) {
                    Some(c) => Link::Tcp(c.clone()),
                    None => {
                        let c = Endpoint::from_shared(format!("http://{addr}"))
                            .map_err(|e| format!("bad member address {addr:?}: {e}"))?
                            .connect_timeout(CONNECT_TIMEOUT)
                            .tcp_nodelay(true)
                            .connect_lazy();
                        channels.insert(addr.to_string(), c.clone());
                        Link::Tcp(c)
                    }
                }
            }
        };
        let channel = MemberChannel { link, ids: Some((self.id, to)) };
        Ok(RaftTransportClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }
}

/// Creates openraft connections to other members.
pub(crate) struct NetworkFactory {
    pub(crate) transport: Transport,
}

impl RaftNetworkFactory<crate::typ::TypeConfig> for NetworkFactory {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        Connection { target, addr: node.addr.clone(), transport: self.transport.clone() }
    }
}

/// openraft's connection to one member.
pub(crate) struct Connection {
    target: NodeId,
    addr: String,
    transport: Transport,
}

impl Connection {
    async fn call<Req, Resp>(&self, req: &Req, option: &RPCOption, kind: Rpc) -> Result<Resp, RPCError>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
    {
        let data = codec::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = self
            .transport
            .client(self.target, &self.addr)
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::from_string(e)))?;
        let mut request = tonic::Request::new(Blob { data });
        request.set_timeout(option.soft_ttl());
        let fut = async {
            match kind {
                Rpc::Append => client.append_entries(request).await,
                Rpc::Vote => client.vote(request).await,
                Rpc::TransferLeader => client.transfer_leader(request).await,
            }
        };
        let resp = tokio::time::timeout(option.hard_ttl(), fut)
            .await
            .map_err(|_| {
                RPCError::Unreachable(Unreachable::from_string(format!(
                    "{kind:?} to {} timed out",
                    self.target
                )))
            })?
            .map_err(|status| status_to_rpc_error(self.target, status))?;
        let decoded: Result<Resp, RaftError> =
            codec::decode(&resp.into_inner().data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        decoded.map_err(|e| {
            RPCError::Network(NetworkError::from_string(format!("member {} failed: {e}", self.target)))
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    TransferLeader,
}

/// The chunks of a snapshot file, each read as the previous one has been taken; the first
/// carries `header` (and is sent even when the file is empty). A read error ends the stream
/// early (the receiver then finds the snapshot short) and is left in `error` for the sender.
fn file_chunks(
    file: std::fs::File,
    header: Vec<u8>,
    error: Arc<Mutex<Option<std::io::Error>>>,
) -> impl futures::Stream<Item = SnapshotChunk> + Send + 'static {
    futures::stream::unfold((Some(file), Some(header)), move |(file, header)| {
        let error = error.clone();
        async move {
            let mut file = file?;
            let read = tokio::task::spawn_blocking(move || {
                let mut data = Vec::with_capacity(SNAPSHOT_CHUNK_BYTES);
                let read = std::io::Read::read_to_end(
                    &mut std::io::Read::take(&mut file, SNAPSHOT_CHUNK_BYTES as u64),
                    &mut data,
                );
                (file, data, read)
            })
            .await;
            let (file, data) = match read {
                Ok((file, data, Ok(_))) => (file, data),
                Ok((_, _, Err(e))) => {
                    *error.lock() = Some(e);
                    return None;
                }
                Err(e) => {
                    *error.lock() = Some(std::io::Error::other(e));
                    return None;
                }
            };
            match header {
                Some(header) => Some((SnapshotChunk { header, data }, (Some(file), None))),
                None if data.is_empty() => None,
                None => Some((SnapshotChunk { header: Vec::new(), data }, (Some(file), None))),
            }
        }
    })
}

fn status_to_rpc_error(target: NodeId, status: tonic::Status) -> RPCError {
    let msg = format!("member {target}: {}", status.message());
    // Another member at the target's address is as good as no member there.
    let misaddressed = status.metadata().get(crate::server::MISADDRESSED).is_some();
    if status.code() == tonic::Code::Unavailable || misaddressed {
        RPCError::Unreachable(Unreachable::from_string(msg))
    } else {
        RPCError::Network(NetworkError::from_string(msg))
    }
}

impl RaftNetworkV2<crate::typ::TypeConfig> for Connection {
    type SnapshotData = crate::snapshot_file::SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse, RPCError> {
        self.call(&rpc, &option, Rpc::Append).await
    }

    async fn vote(&mut self, rpc: VoteRequest, option: RPCOption) -> Result<VoteResponse, RPCError> {
        self.call(&rpc, &option, Rpc::Vote).await
    }

    async fn transfer_leader(
        &mut self,
        rpc: TransferLeaderRequest,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse, RPCError> {
        self.call(&rpc, &option, Rpc::TransferLeader).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse, StreamingError> {
        let unreachable = |e: String| StreamingError::Unreachable(Unreachable::from_string(e));
        let header = codec::encode(&(vote, snapshot.meta.clone()))
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let file =
            snapshot.snapshot.into_file().map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let read_error = Arc::new(Mutex::new(None));
        let chunks = file_chunks(file, header, read_error.clone());
        let mut client = self.transport.client(self.target, &self.addr).await.map_err(unreachable)?;
        let send = client.install_snapshot(chunks);
        let resp = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            r = tokio::time::timeout(option.hard_ttl().max(Duration::from_secs(30)), send) => r,
        };
        if let Some(e) = read_error.lock().take() {
            return Err(StreamingError::Network(NetworkError::new(&e)));
        }
        let resp = resp.map_err(|_| unreachable(format!("snapshot to {} timed out", self.target)))?.map_err(
            |s| match status_to_rpc_error(self.target, s) {
                RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                other => StreamingError::Network(NetworkError::from_string(other.to_string())),
            },
        )?;
        let decoded: Result<SnapshotResponse, String> = codec::decode(&resp.into_inner().data)
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        decoded.map_err(|e| StreamingError::Network(NetworkError::from_string(e)))
    }
}
