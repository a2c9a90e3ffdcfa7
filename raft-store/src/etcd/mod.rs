//! The etcd v3 gRPC API, served by every member over its [`RaftStore`] handle.
//!
//! Services: KV, Watch, Lease, Cluster (MemberList, MemberAdd, MemberRemove, MemberPromote)
//! and Maintenance (Status, Alarm list, Snapshot); see `docs/etcd-api.md` in the repository
//! for what is served and how it differs from etcd.
//! The `.proto` files (in `flotilla-store-wire`, `proto/etcd/`) are written from etcd's
//! published API and are wire compatible with etcd 3.4; the generated types and the
//! conversions, including the one mapping from store errors to etcd's gRPC statuses, are that
//! crate's `pb` and `convert`.

mod cluster;
mod kv;
mod lease;
mod maintenance;
mod watch;

use flotilla_store_wire::{convert, pb};
use openraft::type_config::async_runtime::WatchReceiver as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::RaftStore;

/// The largest message the server decodes; larger requests up to this size are refused with
/// etcd's "request is too large" error (see [`convert::MAX_REQUEST_BYTES`]).
const MAX_DECODING_BYTES: usize = 4 * 1024 * 1024;

/// The cluster id every response header carries.
///
/// etcd derives its id from the bootstrap membership and persists it. Flotilla does not
/// persist a cluster id yet, so this is the first 8 bytes of SHA-256 over raft's cluster name
/// (`"flotilla"`): stable across restarts and membership changes, but equal for every
/// Flotilla cluster.
pub(crate) fn cluster_id() -> u64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(b"flotilla-cluster:flotilla");
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(id)
}

/// What every service needs: the member, and the owner of per-stream tasks.
#[derive(Clone)]
pub(crate) struct Ctx {
    store: RaftStore,
    cluster_id: u64,
    /// Fires when the server stops; ends every open stream.
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Ctx {
    /// A response header for an answer observed at `revision`.
    fn header(&self, revision: i64) -> pb::ResponseHeader {
        pb::ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.store.id(),
            revision,
            raft_term: self.store.raft().metrics().borrow_watched().current_term,
        }
    }

    /// A header at this member's current applied revision.
    fn header_now(&self) -> pb::ResponseHeader {
        self.header(self.store.engine().revision())
    }
}

/// Serves the etcd v3 API for `store` on `listener` until `cancel` fires, then ends every
/// open watch and keep-alive stream and waits for their tasks.
pub async fn serve_etcd(store: RaftStore, listener: TcpListener, cancel: CancellationToken) {
    let id = store.id();
    let ctx = Ctx { store, cluster_id: cluster_id(), cancel: cancel.clone(), tasks: TaskTracker::new() };
    let incoming = crate::server::nodelay_incoming(listener);
    let res = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(
            pb::kv_server::KvServer::new(kv::KvService(ctx.clone()))
                .max_decoding_message_size(MAX_DECODING_BYTES),
        )
        .add_service(pb::watch_server::WatchServer::new(watch::WatchService(ctx.clone())))
        .add_service(pb::lease_server::LeaseServer::new(lease::LeaseService(ctx.clone())))
        .add_service(pb::cluster_server::ClusterServer::new(cluster::ClusterService(ctx.clone())))
        .add_service(pb::maintenance_server::MaintenanceServer::new(maintenance::MaintenanceService(
            ctx.clone(),
        )))
        .serve_with_incoming_shutdown(incoming, cancel.cancelled_owned())
        .await;
    if let Err(e) = res {
        tracing::error!(id, error = %e, "etcd endpoint stopped");
    }
    ctx.tasks.close();
    ctx.tasks.wait().await;
}
