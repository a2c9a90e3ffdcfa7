//! The Maintenance service (Status, Alarm list, Snapshot).

use std::pin::Pin;

use futures::{Stream, StreamExt as _};
use openraft::type_config::async_runtime::WatchReceiver as _;
use tonic::{Request, Response, Status};

use super::Ctx;
use super::pb;

/// Bytes per message of a snapshot stream.
const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// The version Status reports: the etcd API level served, marked as Flotilla's.
pub(crate) const VERSION: &str = "3.4.0-flotilla";

/// The gRPC status of a failed backup.
fn backup_status(e: crate::BackupError) -> Status {
    match e {
        crate::BackupError::Unavailable(e) => super::convert::status(e),
        crate::BackupError::Stopped => Status::unavailable("etcdserver: server stopped"),
        other => Status::internal(other.to_string()),
    }
}

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

    /// A consistent backup ([`RaftStore::backup_stream`](crate::RaftStore::backup_stream):
    /// Flotilla's snapshot format, not a bbolt file, ending with its SHA-256 as etcd's does),
    /// encoded chunk by chunk as it is sent, so memory stays at a few chunks whatever the
    /// store's size; `remaining_bytes` counts down to 0 on the last message. `flotilla
    /// snapshot restore` (or [`crate::restore_backup_file`]) reads it.
    async fn snapshot(&self, _req: Request<pb::SnapshotRequest>) -> Result<Response<SnapshotStream>, Status> {
        let backup = self.0.store.backup_stream(SNAPSHOT_CHUNK_BYTES).await.map_err(backup_status)?;
        let header = self.0.header_now();
        let mut remaining = backup.total_bytes();
        let messages = backup.map(move |chunk| {
            let blob = chunk.map_err(backup_status)?;
            remaining = remaining.saturating_sub(blob.len() as u64);
            Ok(pb::SnapshotResponse { header: Some(header), remaining_bytes: remaining, blob })
        });
        Ok(Response::new(Box::pin(messages)))
    }

    async fn move_leader(
        &self,
        _req: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        Err(unimplemented("MoveLeader"))
    }
}
