//! Requests a member forwards to the leader, and how the leader answers them.
//!
//! Writes, read indexes and lease keep-alives must be served by the leader. A member that is
//! not the leader forwards them; when the receiver turns out not to be the leader either, it
//! says so *before* doing anything, so the sender may safely try again. A write whose outcome
//! is unknown (the connection broke after sending, or the leader lost its term with the entry
//! in flight) is reported as [`Error::Indeterminate`] and never retried here, so a write is
//! never applied twice by this layer.

use openraft::type_config::async_runtime::WatchReceiver as _;
use std::time::Duration;

use flotilla_core::store::{Command, CommandResult, Error, LeaseId};
use openraft::ReadPolicy;
use openraft::errors::{ClientWriteError, LinearizableReadError};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::codec;
use crate::pb::Blob;
use crate::store::Inner;
use crate::typ::{NodeId, Request};

/// A request served by the leader.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum ForwardRequest {
    /// Propose a command.
    Write(Command),
    /// Confirm leadership and return the log index a linearizable read must wait for.
    ReadIndex,
    /// Renew a lease.
    LeaseKeepAlive(LeaseId),
    /// Report a lease's remaining seconds.
    LeaseTimeToLive(LeaseId),
}

/// The leader's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum ForwardResponse {
    /// The command's result and the log index it was applied at.
    Write(Result<CommandResult, Error>, u64),
    /// The read index.
    ReadIndex(u64),
    /// The lease's TTL after renewal, or its remaining seconds.
    Lease(i64),
    /// The request failed; nothing was done.
    Failed(Error),
    /// The receiver is not the leader and did nothing.
    NotLeader,
}

impl Inner {
    /// Serves a forwarded (or local) request as leader, giving up after `limit`: a write
    /// that was proposed but not committed by then (say, on the minority side of a
    /// partition) has an unknown outcome.
    pub(crate) async fn serve_as_leader_within(
        &self,
        req: ForwardRequest,
        limit: Duration,
    ) -> ForwardResponse {
        let is_write = matches!(req, ForwardRequest::Write(_));
        match tokio::time::timeout(limit, self.serve_as_leader(req)).await {
            Ok(r) => r,
            Err(_) if is_write => ForwardResponse::Failed(Error::Indeterminate {
                reason: format!("write not committed within {limit:?}"),
            }),
            Err(_) => ForwardResponse::Failed(Error::Unavailable {
                reason: format!("leader could not confirm a quorum and apply the log within {limit:?}"),
            }),
        }
    }

    /// Serves a forwarded (or local) request as leader.
    async fn serve_as_leader(&self, req: ForwardRequest) -> ForwardResponse {
        match req {
            ForwardRequest::Write(cmd) => match self.raft.client_write(Request { cmd }).await {
                Ok(resp) => {
                    if let Some(Ok(CommandResult::LeaseGrant(g))) = &resp.data.result {
                        // The lease's clock starts now, on the member that will expire it.
                        self.lessor.lock().grant(g.id, g.ttl, Instant::now());
                    }
                    ForwardResponse::Write(
                        resp.data
                            .result
                            .unwrap_or_else(|| Err(Error::Storage("write applied without a result".into()))),
                        resp.log_id.index(),
                    )
                }
                Err(e) => match e.into_api_error() {
                    Some(ClientWriteError::ForwardToLeader(_)) => ForwardResponse::NotLeader,
                    Some(ClientWriteError::LogEntryDiscarded(f)) => {
                        ForwardResponse::Failed(Error::Indeterminate {
                            reason: format!("leadership changed while the write was in flight ({f})"),
                        })
                    }
                    Some(other) => ForwardResponse::Failed(Error::Storage(other.to_string())),
                    // Raft stopped (the member is shutting down) with the write maybe in its
                    // log already: a leader restarted with its vote, or the next leader, may
                    // still commit it. Found by the simulation (`flotilla-jepsen sim`): a CAS
                    // answered "unavailable" was applied, and its retry failed its compare.
                    None => ForwardResponse::Failed(Error::Indeterminate {
                        reason: "raft stopped while the write was in flight".into(),
                    }),
                },
            },
            ForwardRequest::ReadIndex => match self.read_index().await {
                Ok(index) => ForwardResponse::ReadIndex(index),
                Err(refused) => refused,
            },
            // Only a leader a quorum still follows may touch lease deadlines. A deposed leader
            // cut off from the others would otherwise renew a lease in its own lessor, which
            // no one reads, while the real leader lets it expire: the client would be told
            // its lease lives on after it was revoked. Confirming first means any later
            // leader took over after this renewal, and it gives every lease a full TTL from
            // its takeover (see `run_lease_expiry`).
            //
            // The lessor follows the state machine, so it must first have applied everything
            // committed: a new leader (say, after a power loss took every member's unsynced
            // applies) confirmed by a quorum before it replayed a lease's grant would answer
            // "no such lease" (TTL 0) for a live lease, and one that had not yet applied a
            // revoke would renew a revoked lease. Found by the Jepsen lease workload.
            ForwardRequest::LeaseKeepAlive(id) => match self.read_index_applied().await {
                Ok(()) => self.with_lessor(id, |l, now| l.keep_alive(id, now)),
                Err(refused) => refused,
            },
            ForwardRequest::LeaseTimeToLive(id) => match self.read_index_applied().await {
                Ok(()) => self.with_lessor(id, |l, now| l.remaining_secs(id, now)),
                Err(refused) => refused,
            },
        }
    }

    /// Confirms with a quorum that this member leads and waits until it has applied the log
    /// up to the read index; `Err` is the answer to give instead.
    async fn read_index_applied(&self) -> Result<(), ForwardResponse> {
        let index = self.read_index().await?;
        self.wait_applied(index).await.map_err(ForwardResponse::Failed)
    }

    /// Confirms with a quorum that this member leads (a heartbeat round) and returns the
    /// log index a linearizable read must wait for; `Err` is the answer to give instead.
    async fn read_index(&self) -> Result<u64, ForwardResponse> {
        match self.raft.get_read_linearizer(ReadPolicy::ReadIndex).await {
            Ok(lin) => Ok(lin.read_log_id().index()),
            Err(e) => Err(match e.into_api_error() {
                Some(LinearizableReadError::ForwardToLeader(_)) => ForwardResponse::NotLeader,
                Some(LinearizableReadError::QuorumNotEnough(q)) => {
                    ForwardResponse::Failed(Error::Unavailable { reason: q.to_string() })
                }
                None => ForwardResponse::Failed(Error::Unavailable { reason: "raft stopped".into() }),
            }),
        }
    }

    fn with_lessor(
        &self,
        id: LeaseId,
        f: impl FnOnce(&mut flotilla_core::store::Lessor, Instant) -> Option<i64>,
    ) -> ForwardResponse {
        if !self.leading() {
            return ForwardResponse::NotLeader;
        }
        let mut lessor = self.lessor.lock();
        self.sync_lessor(&mut lessor);
        match f(&mut lessor, Instant::now()) {
            Some(ttl) => ForwardResponse::Lease(ttl),
            None => ForwardResponse::Failed(Error::LeaseNotFound(id)),
        }
    }

    /// Sends `req` to the leader (or serves it here when this member leads), retrying while
    /// that is safe, until the request timeout.
    pub(crate) async fn execute(&self, req: ForwardRequest) -> Result<ForwardResponse, Error> {
        let deadline = Instant::now() + self.request_timeout;
        let mut last = String::from("no leader known");
        loop {
            if Instant::now() >= deadline {
                return Err(Error::Unavailable { reason: format!("timed out: {last}") });
            }
            let leader = self.raft.metrics().borrow_watched().current_leader;
            let resp = match leader {
                None => None,
                Some(l) if l == self.id => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    Some(self.serve_as_leader_within(req.clone(), left).await)
                }
                Some(l) => match self.forward(l, &req).await {
                    Ok(r) => Some(r),
                    Err((retry, why)) => {
                        if !retry && matches!(req, ForwardRequest::Write(_)) {
                            return Err(Error::Indeterminate { reason: why });
                        }
                        last = why;
                        None
                    }
                },
            };
            match resp {
                Some(ForwardResponse::NotLeader) => {
                    last = format!("member {leader:?} is no longer the leader")
                }
                Some(r) => return Ok(r),
                None => {}
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// Sends one forwarded request. On failure, says whether it surely was not delivered.
    async fn forward(&self, to: NodeId, req: &ForwardRequest) -> Result<ForwardResponse, (bool, String)> {
        let addr = self
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .get_node(&to)
            .map(|n| n.addr.clone())
            .ok_or_else(|| (true, format!("leader {to} is not in the membership")))?;
        let mut client = self.transport.client(to, &addr).await.map_err(|e| (true, e))?;
        let data = codec::encode(req).map_err(|e| (true, e.to_string()))?;
        let mut request = tonic::Request::new(Blob { data });
        request.set_timeout(self.request_timeout);
        match client.forward(request).await {
            Ok(resp) => codec::decode(&resp.into_inner().data)
                .map_err(|e| (false, format!("bad reply from {to}: {e}"))),
            Err(status) => {
                Err((never_sent(&status), format!("forwarding to {to} failed: {}", status.message())))
            }
        }
    }
}

/// The pause between attempts while no leader is known.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Whether a failed call surely never reached the leader: when the connection could not
/// be made (refused, unreachable, connect timeout), which tonic reports with a
/// [`tonic::ConnectError`] in the status's source chain, or when the member there refused it
/// as addressed to another member. A connection reset or closed while
/// the request was in flight may have delivered it: a write then has an unknown outcome and
/// must not be sent again, or it could be applied twice (a compare-and-set would apply, then
/// fail its own comparison and be reported as failed).
pub(crate) fn never_sent(status: &tonic::Status) -> bool {
    if status.metadata().get(crate::server::MISADDRESSED).is_some() {
        return true;
    }
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::never_sent;

    fn io_error(kind: io::ErrorKind) -> Box<dyn std::error::Error + Send + Sync> {
        Box::new(io::Error::new(kind, format!("{kind:?}")))
    }

    #[test]
    fn only_a_connection_never_made_counts_as_never_sent() {
        let refused = tonic::ConnectError(io_error(io::ErrorKind::ConnectionRefused));
        assert!(never_sent(&tonic::Status::from_error(Box::new(refused))));
        // The messages of a reset or closed connection mention "connection" too.
        for kind in
            [io::ErrorKind::ConnectionReset, io::ErrorKind::ConnectionAborted, io::ErrorKind::BrokenPipe]
        {
            assert!(!never_sent(&tonic::Status::from_error(io_error(kind))), "{kind:?}");
        }
        assert!(!never_sent(&tonic::Status::unavailable("error trying to connect: connection reset")));
    }
}
