//! The Maintenance service (Status, Alarm list, Snapshot).

use std::pin::Pin;

use futures::Stream;
use openraft::type_config::async_runtime::WatchReceiver as _;
use tonic::{Request, Response, Status};

use super::Ctx;
use super::pb;

/// Bytes per message of a snapshot stream.
const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// The version Status reports: the etcd API level served, marked as Flotilla's.
pub(crate) const VERSION: &str = "3.4.0-flotilla";

fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!("etcdserver: {what} is not supported by flotilla yet"))
}

pub(crate) struct MaintenanceService(pub(crate) Ctx);

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::maintenance_server::Maintenance for MaintenanceService {
    async fn alarm(&self, req: Request<pb::AlarmRequest>) -> Result<Response<pb::AlarmResponse>, Status> {
        // Flotilla raises no alarms, so listing them is an empty answer.
        if req.into_inner().action != pb::alarm_request::AlarmAction::Get as i32 {
            return Err(unimplemented("Alarm activate/deactivate"));
        }
        Ok(Response::new(pb::AlarmResponse { header: Some(self.0.header_now()), alarms: Vec::new() }))
    }

    async fn status(&self, _req: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let m = self.0.store.raft().metrics().borrow_watched().clone();
        let me = self.0.store.id();
        let is_learner = !m.membership_config.membership().voter_ids().any(|id| id == me);
        Ok(Response::new(pb::StatusResponse {
            header: Some(self.0.header_now()),
            version: VERSION.to_string(),
            // Not measured yet (RocksDB's live size would be the honest figure).
            db_size: 0,
            leader: m.current_leader.unwrap_or(0),
            raft_index: m.last_log_index.unwrap_or(0),
            raft_term: m.current_term,
            raft_applied_index: m.last_applied.map(|l| l.index()).unwrap_or(0),
            errors: Vec::new(),
            db_size_in_use: 0,
            is_learner,
        }))
    }

    async fn defragment(
        &self,
        _req: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        Err(unimplemented("Defragment"))
    }

    async fn hash(&self, _req: Request<pb::HashRequest>) -> Result<Response<pb::HashResponse>, Status> {
        Err(unimplemented("Hash"))
    }

    async fn hash_kv(
        &self,
        _req: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        Err(unimplemented("HashKV"))
    }

    type SnapshotStream = SnapshotStream;

    /// A consistent backup ([`RaftStore::backup`](crate::RaftStore::backup): Flotilla's
    /// snapshot format, not a bbolt file, ending with its SHA-256 as etcd's does), streamed in
    /// chunks; `flotilla snapshot restore` (or [`crate::restore_backup`]) reads it.
    async fn snapshot(&self, _req: Request<pb::SnapshotRequest>) -> Result<Response<SnapshotStream>, Status> {
        let bytes = self.0.store.backup().await.map_err(|e| match e {
            crate::BackupError::Unavailable(e) => super::convert::status(e),
            other => Status::internal(other.to_string()),
        })?;
        let header = self.0.header_now();
        let total = bytes.len();
        let chunks: Vec<Result<pb::SnapshotResponse, Status>> = bytes
            .chunks(SNAPSHOT_CHUNK_BYTES)
            .scan(total, |remaining, chunk| {
                *remaining -= chunk.len();
                Some(Ok(pb::SnapshotResponse {
                    header: Some(header),
                    remaining_bytes: *remaining as u64,
                    blob: chunk.to_vec(),
                }))
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }

    async fn move_leader(
        &self,
        _req: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        Err(unimplemented("MoveLeader"))
    }
}
