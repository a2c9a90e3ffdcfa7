//! Joining a running cluster over the member transport.
//!
//! A new member asks any existing one to add it, in two steps, each one `Join` RPC:
//!
//! 1. **Register**: the leader gives the member an id and adds it as a learner at its
//!    advertised address (replication starts, and retries until the member listens). A member
//!    already present at that address gets its id back, so a joiner that crashed before it
//!    recorded its id asks again and is given the same one.
//! 2. **Promote**: once the joiner runs with that id, the leader waits until the learner has
//!    caught up with its log and makes it a voter. Promoting a voter again is a no-op.
//!
//! A member that is not the leader forwards the request once to the leader it knows. Joins
//! are serialized on the leader, so two joiners never get the same id.
//!
//! Every request carries an HMAC-SHA256, under the cluster's [`JoinKey`], of the joiner's
//! address, the step and a random nonce: the key (derived from the cluster's join token by
//! the embedding application) never crosses the wire. A replayed request can only repeat a
//! step for the address it names, which is idempotent. The member transport itself is not
//! encrypted: it is meant for a private network (see `docs/raft-store.md`).

use openraft::type_config::async_runtime::WatchReceiver as _;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers};
use ring::hmac;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tonic::transport::Endpoint;

use crate::codec;
use crate::pb::Blob;
use crate::pb::raft_transport_client::RaftTransportClient;
use crate::store::Inner;
use crate::typ::NodeId;

/// How long the leader waits for a learner to catch up before promoting it.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// Log entries a learner may still lag behind the leader when it is promoted.
const MAX_PROMOTE_LAG: u64 = 100;
/// How long one join RPC may take (a promote includes the catch-up wait).
const RPC_TIMEOUT: Duration = Duration::from_secs(90);
/// The pause between attempts of a join that may be retried.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Domain separation for the request MAC.
const MAC_CONTEXT: &[u8] = b"flotilla-raft-join-v1\0";

/// The shared secret join requests are authenticated with. Members that hold one accept
/// joins ([`RaftStoreConfig::join_key`](crate::RaftStoreConfig::join_key)); joiners sign
/// their requests with it.
#[derive(Clone)]
pub struct JoinKey(Arc<[u8]>);

impl JoinKey {
    /// A key from secret bytes (at least 32 of them recommended).
    pub fn new(secret: &[u8]) -> Self {
        JoinKey(secret.into())
    }

    fn hmac(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.0)
    }
}

impl fmt::Debug for JoinKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JoinKey(..)")
    }
}

/// Which step of a join a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum JoinStep {
    /// Give the address an id and add it as a learner.
    Register,
    /// Make member `id` (at the address) a voter once it caught up.
    Promote(NodeId),
}

/// A join request on the wire.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct JoinRequest {
    addr: String,
    step: JoinStep,
    nonce: [u8; 16],
    mac: Vec<u8>,
    /// Set by a member that forwarded the request to its leader (forwarded at most once).
    forwarded: bool,
}

/// The answer to a join request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum JoinAnswer {
    /// The member's id, and the transport addresses of every member (seeds for later steps).
    Registered { id: NodeId, members: Vec<String> },
    /// The member is a voter.
    Promoted,
    /// Refused for good (bad key, id taken by another address, no joins accepted).
    Refused(String),
    /// Not done now (no leader, leadership moved, catch-up not finished); may be retried.
    Retry(String),
}

/// What a successful registration returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    /// The id the cluster gave the new member.
    pub id: NodeId,
    /// The member-transport addresses of every member, the new one included.
    pub members: Vec<String>,
}

/// Why a join failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// A member refused the request; retrying will not help.
    #[error("member {seed} refused the join: {reason}")]
    Refused {
        /// The member asked.
        seed: String,
        /// Its reason.
        reason: String,
    },
    /// No member completed the step before the deadline.
    #[error("join did not complete within {waited:?}: {last}")]
    TimedOut {
        /// How long it was tried.
        waited: Duration,
        /// The last failure seen.
        last: String,
    },
}

fn mac_input(addr: &str, step: JoinStep, nonce: &[u8; 16]) -> Vec<u8> {
    let mut m = Vec::with_capacity(MAC_CONTEXT.len() + addr.len() + 34);
    m.extend_from_slice(MAC_CONTEXT);
    m.extend_from_slice(&(addr.len() as u64).to_be_bytes());
    m.extend_from_slice(addr.as_bytes());
    match step {
        JoinStep::Register => m.push(1),
        JoinStep::Promote(id) => {
            m.push(2);
            m.extend_from_slice(&id.to_be_bytes());
        }
    }
    m.extend_from_slice(nonce);
    m
}

impl JoinRequest {
    /// A signed request.
    pub(crate) fn signed(key: &JoinKey, addr: &str, step: JoinStep) -> Self {
        let nonce: [u8; 16] = rand::random();
        let mac = hmac::sign(&key.hmac(), &mac_input(addr, step, &nonce)).as_ref().to_vec();
        JoinRequest { addr: addr.to_string(), step, nonce, mac, forwarded: false }
    }

    /// Whether the request was signed with `key` (constant-time comparison).
    pub(crate) fn verify(&self, key: &JoinKey) -> bool {
        hmac::verify(&key.hmac(), &mac_input(&self.addr, self.step, &self.nonce), &self.mac).is_ok()
    }
}

/// One member as the join logic sees the membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MemberView {
    pub(crate) id: NodeId,
    pub(crate) addr: String,
    pub(crate) voter: bool,
}

/// The id a registering address gets: the one it already has, or one above every id in the
/// membership.
pub(crate) fn register_id(members: &[MemberView], addr: &str) -> (NodeId, bool) {
    match members.iter().find(|m| m.addr == addr) {
        Some(m) => (m.id, false),
        None => (members.iter().map(|m| m.id).max().unwrap_or(0) + 1, true),
    }
}

/// What promoting member `id` at `addr` needs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PromoteAction {
    /// Already a voter: nothing to do.
    Done,
    /// A learner: wait for it to catch up, then promote.
    Promote,
    /// Refuse, for the reason given.
    Refuse(String),
}

/// Decides a promotion from the membership.
pub(crate) fn promote_action(members: &[MemberView], id: NodeId, addr: &str) -> PromoteAction {
    match members.iter().find(|m| m.id == id) {
        None => PromoteAction::Refuse(format!("member {id} is not in the cluster; register first")),
        Some(m) if m.addr != addr => {
            PromoteAction::Refuse(format!("member {id} is at {}, not at {addr}", m.addr))
        }
        Some(m) if m.voter => PromoteAction::Done,
        Some(_) => PromoteAction::Promote,
    }
}

/// Whether a follower that matched the leader's log up to `matched` is close enough to the
/// leader's last index to become a voter.
pub(crate) fn caught_up(matched: Option<u64>, leader_last: Option<u64>, max_lag: u64) -> bool {
    match (matched, leader_last) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(m), Some(l)) => l.saturating_sub(m) <= max_lag,
    }
}

impl Inner {
    /// The membership as the join logic sees it.
    fn member_views(&self) -> Vec<MemberView> {
        let m = self.raft.metrics().borrow_watched().membership_config.clone();
        let voters: BTreeSet<NodeId> = m.membership().voter_ids().collect();
        m.membership()
            .nodes()
            .map(|(id, n)| MemberView { id: *id, addr: n.addr.clone(), voter: voters.contains(id) })
            .collect()
    }

    /// Serves a join request: checks its signature, forwards it to the leader, or (on the
    /// leader) performs the step.
    pub(crate) async fn serve_join(&self, req: JoinRequest) -> JoinAnswer {
        let Some(key) = &self.join_key else {
            return JoinAnswer::Refused("this member accepts no joins (it has no join key)".into());
        };
        if !req.verify(key) {
            return JoinAnswer::Refused("the join token does not match this cluster's".into());
        }
        if !self.leading() {
            return self.forward_join(req).await;
        }
        let _one_at_a_time = self.join_lock.lock().await;
        match req.step {
            JoinStep::Register => self.register(&req.addr).await,
            JoinStep::Promote(id) => self.promote(id, &req.addr).await,
        }
    }

    async fn forward_join(&self, mut req: JoinRequest) -> JoinAnswer {
        if req.forwarded {
            return JoinAnswer::Retry(format!("member {} is not the leader either", self.id));
        }
        let leader = self.raft.metrics().borrow_watched().current_leader;
        let Some(leader) = leader else { return JoinAnswer::Retry("no leader is known".into()) };
        let Some(addr) = self.member_views().into_iter().find(|m| m.id == leader).map(|m| m.addr) else {
            return JoinAnswer::Retry(format!("leader {leader} is not in the membership"));
        };
        req.forwarded = true;
        match self.transport.client(leader, &addr).await {
            Ok(mut client) => call(&mut client, &req).await.unwrap_or_else(JoinAnswer::Retry),
            Err(e) => JoinAnswer::Retry(e),
        }
    }

    async fn register(&self, addr: &str) -> JoinAnswer {
        let members = self.member_views();
        let (id, new) = register_id(&members, addr);
        if new {
            tracing::info!(id, addr, "adding a joining member as a learner");
            let node = BasicNode { addr: addr.to_string() };
            if let Err(e) = self.raft.add_learner(id, node, false).await {
                return JoinAnswer::Retry(format!("adding learner {id}: {e}"));
            }
        }
        let mut all: Vec<String> = self.member_views().into_iter().map(|m| m.addr).collect();
        if !all.iter().any(|a| a == addr) {
            all.push(addr.to_string());
        }
        JoinAnswer::Registered { id, members: all }
    }

    async fn promote(&self, id: NodeId, addr: &str) -> JoinAnswer {
        match promote_action(&self.member_views(), id, addr) {
            PromoteAction::Done => return JoinAnswer::Promoted,
            PromoteAction::Refuse(why) => return JoinAnswer::Refused(why),
            PromoteAction::Promote => {}
        }
        let waited = self
            .raft
            .wait(Some(CATCH_UP_TIMEOUT))
            .metrics(
                |m| {
                    let matched = m
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(&id))
                        .map(|l| l.as_ref().map(|l| l.index()));
                    matches!(matched, Some(matched) if caught_up(matched, m.last_log_index, MAX_PROMOTE_LAG))
                },
                "joining learner caught up",
            )
            .await;
        if let Err(e) = waited {
            return JoinAnswer::Retry(format!("learner {id} has not caught up: {e}"));
        }
        tracing::info!(id, addr, "promoting a caught-up learner to voter");
        let change = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
        match self.raft.change_membership(change, true).await {
            Ok(_) => JoinAnswer::Promoted,
            Err(e) => JoinAnswer::Retry(format!("promoting {id}: {e}")),
        }
    }
}

/// Sends one join request; `Err` is a transport failure (worth retrying).
async fn call(
    client: &mut RaftTransportClient<tonic::transport::Channel>,
    req: &JoinRequest,
) -> Result<JoinAnswer, String> {
    let data = codec::encode(req).map_err(|e| e.to_string())?;
    let mut request = tonic::Request::new(Blob { data });
    request.set_timeout(RPC_TIMEOUT);
    let resp = client.join(request).await.map_err(|s| format!("join RPC failed: {}", s.message()))?;
    codec::decode(&resp.into_inner().data).map_err(|e| format!("undecodable join answer: {e}"))
}

/// Runs one step against `seeds` (tried in turn) until it succeeds, is refused, or `deadline`
/// passes.
async fn run_step(
    seeds: &[String],
    addr: &str,
    step: JoinStep,
    key: &JoinKey,
    deadline: Duration,
) -> Result<JoinAnswer, JoinError> {
    let start = Instant::now();
    let mut last = String::from("no seed address given");
    let mut clients: BTreeMap<&str, RaftTransportClient<tonic::transport::Channel>> = BTreeMap::new();
    loop {
        for seed in seeds {
            if !clients.contains_key(seed.as_str()) {
                match Endpoint::from_shared(format!("http://{seed}")) {
                    Ok(e) => {
                        let channel = e.connect_timeout(Duration::from_secs(2)).connect_lazy();
                        clients.insert(seed.as_str(), RaftTransportClient::new(channel));
                    }
                    Err(e) => {
                        last = format!("bad seed address {seed:?}: {e}");
                        continue;
                    }
                }
            }
            let Some(client) = clients.get_mut(seed.as_str()) else { continue };
            match call(client, &JoinRequest::signed(key, addr, step)).await {
                Ok(JoinAnswer::Refused(reason)) => {
                    return Err(JoinError::Refused { seed: seed.clone(), reason });
                }
                Ok(JoinAnswer::Retry(why)) => last = format!("{seed}: {why}"),
                Ok(answer) => return Ok(answer),
                Err(why) => last = format!("{seed}: {why}"),
            }
        }
        if start.elapsed() >= deadline {
            return Err(JoinError::TimedOut { waited: deadline, last });
        }
        tracing::debug!(%last, "join step not done yet; retrying");
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// Step 1 of joining: asks the cluster (through any of `seeds`, member-transport addresses)
/// for an id for the member that will listen at `advertise`, and has it added as a learner.
/// Asking again for the same address returns the same id.
pub async fn register_member(
    seeds: &[String],
    advertise: &str,
    key: &JoinKey,
    deadline: Duration,
) -> Result<Registered, JoinError> {
    match run_step(seeds, advertise, JoinStep::Register, key, deadline).await? {
        JoinAnswer::Registered { id, members } => Ok(Registered { id, members }),
        other => Err(JoinError::Refused {
            seed: seeds.join(","),
            reason: format!("unexpected answer to a registration: {other:?}"),
        }),
    }
}

/// Step 2 of joining: once member `id` runs at `advertise`, asks the leader to make it a
/// voter after it has caught up. Returns when it is one.
pub async fn promote_member(
    seeds: &[String],
    advertise: &str,
    id: NodeId,
    key: &JoinKey,
    deadline: Duration,
) -> Result<(), JoinError> {
    match run_step(seeds, advertise, JoinStep::Promote(id), key, deadline).await? {
        JoinAnswer::Promoted => Ok(()),
        other => Err(JoinError::Refused {
            seed: seeds.join(","),
            reason: format!("unexpected answer to a promotion: {other:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: NodeId, addr: &str, voter: bool) -> MemberView {
        MemberView { id, addr: addr.into(), voter }
    }

    #[test]
    fn requests_verify_only_under_their_key_and_fields() {
        let key = JoinKey::new(b"0123456789abcdef0123456789abcdef");
        let req = JoinRequest::signed(&key, "10.0.0.2:2380", JoinStep::Promote(2));
        assert!(req.verify(&key));
        assert!(!req.verify(&JoinKey::new(b"another key")));
        let mut moved = req.clone();
        moved.addr = "10.0.0.3:2380".into();
        assert!(!moved.verify(&key), "the address is signed");
        let mut other_id = req;
        other_id.step = JoinStep::Promote(3);
        assert!(!other_id.verify(&key), "the step is signed");
    }

    #[test]
    fn registration_reuses_the_id_of_a_known_address() {
        let members = [view(1, "a:1", true), view(4, "b:1", false)];
        assert_eq!(register_id(&members, "b:1"), (4, false));
        assert_eq!(register_id(&members, "c:1"), (5, true));
        assert_eq!(register_id(&[], "c:1"), (1, true));
    }

    #[test]
    fn promotion_is_idempotent_and_checks_the_address() {
        let members = [view(1, "a:1", true), view(2, "b:1", false)];
        assert_eq!(promote_action(&members, 1, "a:1"), PromoteAction::Done);
        assert_eq!(promote_action(&members, 2, "b:1"), PromoteAction::Promote);
        assert!(matches!(promote_action(&members, 2, "c:1"), PromoteAction::Refuse(_)));
        assert!(matches!(promote_action(&members, 3, "c:1"), PromoteAction::Refuse(_)));
    }

    #[test]
    fn catch_up_allows_a_small_lag() {
        assert!(caught_up(Some(95), Some(100), 10));
        assert!(!caught_up(Some(80), Some(100), 10));
        assert!(!caught_up(None, Some(1), 10));
        assert!(caught_up(None, None, 0));
    }
}
