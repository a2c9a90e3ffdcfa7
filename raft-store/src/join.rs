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
//! are serialized on the leader, so two joiners never get the same id. The rules (which id,
//! when a learner has caught up) are those of `membership.rs`.
//!
//! The same RPC carries the etcd Cluster service's membership changes (add a learner, remove
//! or promote a member; [`crate::membership::Change`]). The etcd service hands a change to its
//! own member's transport, signed with a key that never leaves the process ([`local_key`]);
//! that member makes the change if it leads, or forwards it to the leader signed with the
//! cluster's join key, retrying while nothing was done, for up to twice its request timeout.
//!
//! Every request carries an HMAC-SHA256, under the cluster's [`JoinKey`], of the joiner's
//! address, the step and a random nonce: the key (derived from the cluster's join token by
//! the embedding application) never crosses the wire. A replayed request can only repeat a
//! step for the address it names (after the member at that address was removed, a replayed
//! registration adds the address again, with a new id). The member transport itself is not
//! encrypted: it is meant for a private network (see `docs/raft-store.md`).

use openraft::type_config::async_runtime::WatchReceiver as _;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ring::hmac;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tonic::transport::Endpoint;

use crate::codec;
use crate::membership::{Change, ChangeError, Changed, MAX_PROMOTE_LAG, MemberView, caught_up};
use crate::network::MemberChannel;
use crate::pb::Blob;
use crate::pb::raft_transport_client::RaftTransportClient;
use crate::store::Inner;
use crate::typ::NodeId;

/// How long the leader waits for a learner to catch up before promoting it.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one join RPC may take (a promote includes the catch-up wait).
const RPC_TIMEOUT: Duration = Duration::from_secs(90);
/// The pause between attempts of a join that may be retried.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// How long the etcd service waits for its own member to answer a membership change (a
/// guard against a hung transport: the member bounds the change by its request timeout).
const LOCAL_RPC_TIMEOUT: Duration = Duration::from_secs(120);
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum JoinStep {
    /// Give the address an id and add it as a learner.
    Register,
    /// Make member `id` (at the address) a voter once it caught up.
    Promote(NodeId),
    /// A membership change from the etcd Cluster service (the request's address is unused).
    Change(Change),
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
    /// The outcome of a [`JoinStep::Change`].
    Changed(Result<Changed, ChangeError>),
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

/// Appends `bytes` with its length in front.
fn put_field(m: &mut Vec<u8>, bytes: &[u8]) {
    m.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    m.extend_from_slice(bytes);
}

fn mac_input(addr: &str, step: &JoinStep, nonce: &[u8; 16]) -> Vec<u8> {
    let mut m = Vec::with_capacity(MAC_CONTEXT.len() + addr.len() + 64);
    m.extend_from_slice(MAC_CONTEXT);
    put_field(&mut m, addr.as_bytes());
    match step {
        JoinStep::Register => m.push(1),
        JoinStep::Promote(id) => {
            m.push(2);
            m.extend_from_slice(&id.to_be_bytes());
        }
        JoinStep::Change(change) => {
            m.push(3);
            match change {
                Change::AddLearner(a) => {
                    m.push(1);
                    put_field(&mut m, a.as_bytes());
                }
                Change::Remove(id) => {
                    m.push(2);
                    m.extend_from_slice(&id.to_be_bytes());
                }
                Change::Promote(id) => {
                    m.push(3);
                    m.extend_from_slice(&id.to_be_bytes());
                }
            }
        }
    }
    m.extend_from_slice(nonce);
    m
}

/// The key this process signs the etcd service's membership changes with, on their way to
/// its own member's transport: random per process, never sent anywhere.
fn local_key() -> &'static JoinKey {
    static KEY: OnceLock<JoinKey> = OnceLock::new();
    KEY.get_or_init(|| JoinKey::new(&rand::random::<[u8; 32]>()))
}

impl JoinRequest {
    /// A signed request.
    pub(crate) fn signed(key: &JoinKey, addr: &str, step: JoinStep) -> Self {
        let nonce: [u8; 16] = rand::random();
        let mac = hmac::sign(&key.hmac(), &mac_input(addr, &step, &nonce)).as_ref().to_vec();
        JoinRequest { addr: addr.to_string(), step, nonce, mac, forwarded: false }
    }

    /// Whether the request was signed with `key` (constant-time comparison).
    pub(crate) fn verify(&self, key: &JoinKey) -> bool {
        hmac::verify(&key.hmac(), &mac_input(&self.addr, &self.step, &self.nonce), &self.mac).is_ok()
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

impl Inner {
    /// Serves a join request: checks its signature, forwards it to the leader, or (on the
    /// leader) performs the step.
    pub(crate) async fn serve_join(&self, req: JoinRequest) -> JoinAnswer {
        // A request from this process's own etcd service needs no join key.
        if !req.verify(local_key()) {
            let Some(key) = &self.join_key else {
                return JoinAnswer::Refused("this member accepts no joins (it has no join key)".into());
            };
            if !req.verify(key) {
                return JoinAnswer::Refused("the join token does not match this cluster's".into());
            }
        }
        if let JoinStep::Change(change) = req.step {
            return JoinAnswer::Changed(self.serve_change(change, req.forwarded).await);
        }
        if !self.leading() {
            return self.forward_join(req).await;
        }
        let _one_at_a_time = self.join_lock.lock().await;
        match req.step {
            JoinStep::Register => self.register(&req.addr).await,
            JoinStep::Promote(id) => self.promote(id, &req.addr).await,
            JoinStep::Change(_) => JoinAnswer::Refused("a membership change reached the join steps".into()),
        }
    }

    /// The transport address of member `id`, from this member's view of the membership.
    fn addr_of(&self, id: NodeId) -> Option<String> {
        self.member_views().into_iter().find(|m| m.id == id).map(|m| m.addr)
    }

    async fn forward_join(&self, mut req: JoinRequest) -> JoinAnswer {
        if req.forwarded {
            return JoinAnswer::Retry(format!("member {} is not the leader either", self.id));
        }
        let leader = self.raft.metrics().borrow_watched().current_leader;
        let Some(leader) = leader else { return JoinAnswer::Retry("no leader is known".into()) };
        let Some(addr) = self.addr_of(leader) else {
            return JoinAnswer::Retry(format!("leader {leader} is not in the membership"));
        };
        req.forwarded = true;
        match self.transport.client(leader, &addr).await {
            Ok(mut client) => {
                call(&mut client, &req, RPC_TIMEOUT).await.unwrap_or_else(|(_, e)| JoinAnswer::Retry(e))
            }
            Err(e) => JoinAnswer::Retry(e),
        }
    }

    async fn register(&self, addr: &str) -> JoinAnswer {
        match self.add_learner_at(addr).await {
            Ok(changed) => {
                let Some(id) = changed.member.map(|m| m.id) else {
                    return JoinAnswer::Retry(format!("no member at {addr} after adding it"));
                };
                let mut all: Vec<String> = changed.members.into_iter().map(|m| m.addr).collect();
                if !all.iter().any(|a| a == addr) {
                    all.push(addr.to_string());
                }
                JoinAnswer::Registered { id, members: all }
            }
            Err(e) => JoinAnswer::Retry(e.to_string()),
        }
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
        match self.make_voter(id).await {
            Ok(_) => JoinAnswer::Promoted,
            Err(e) => JoinAnswer::Retry(e.to_string()),
        }
    }

    /// Makes a membership change on the leader: here when this member leads, else forwarded
    /// (once per attempt) to the leader, retrying while nothing was done, for up to twice the
    /// request timeout (the leader bounds its own part by the request timeout).
    async fn serve_change(&self, change: Change, forwarded: bool) -> Result<Changed, ChangeError> {
        let deadline = Instant::now() + self.request_timeout * 2;
        let mut last = String::from("no leader is known");
        loop {
            let leader = self.raft.metrics().borrow_watched().current_leader;
            match leader {
                Some(l) if l == self.id => match self.apply_change(change.clone()).await {
                    Err(ChangeError::Unavailable(why)) => last = why,
                    done => return done,
                },
                _ if forwarded => {
                    return Err(ChangeError::Unavailable(format!(
                        "member {} is not the leader either",
                        self.id
                    )));
                }
                Some(l) => match self.forward_change(l, &change, deadline).await {
                    Ok(JoinAnswer::Changed(Err(ChangeError::Unavailable(why)))) => last = why,
                    Ok(JoinAnswer::Changed(done)) => return done,
                    Ok(JoinAnswer::Refused(why)) => return Err(ChangeError::Refused(why)),
                    Ok(JoinAnswer::Retry(why)) => last = why,
                    Ok(other) => {
                        return Err(ChangeError::Refused(format!(
                            "leader {l} answered a change with {other:?}"
                        )));
                    }
                    Err((false, why)) => last = why,
                    Err((true, why)) => {
                        return Err(ChangeError::TimedOut(format!(
                            "the change was sent to leader {l} but no answer came back ({why}); it may have \
                             taken effect"
                        )));
                    }
                },
                None => {}
            }
            if Instant::now() >= deadline {
                return Err(ChangeError::Unavailable(format!(
                    "no leader made the change within {:?}: {last}",
                    self.request_timeout * 2
                )));
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// Sends `change` to `leader`, signed with the cluster's join key. `Err((sent, why))`.
    async fn forward_change(
        &self,
        leader: NodeId,
        change: &Change,
        deadline: Instant,
    ) -> Result<JoinAnswer, (bool, String)> {
        let Some(key) = &self.join_key else {
            return Ok(JoinAnswer::Refused(format!(
                "member {} is not the leader and has no join key to forward membership changes with; send \
                 the request to the leader, member {leader}",
                self.id
            )));
        };
        let addr = self
            .addr_of(leader)
            .ok_or_else(|| (false, format!("leader {leader} is not in the membership")))?;
        let mut req = JoinRequest::signed(key, "", JoinStep::Change(change.clone()));
        req.forwarded = true;
        let mut client = self.transport.client(leader, &addr).await.map_err(|e| (false, e))?;
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
        call(&mut client, &req, left).await
    }
}

/// Sends one join request. On a transport failure, says whether the request may have been
/// delivered (a refused connection never carried it).
async fn call(
    client: &mut RaftTransportClient<MemberChannel>,
    req: &JoinRequest,
    timeout: Duration,
) -> Result<JoinAnswer, (bool, String)> {
    let data = codec::encode(req).map_err(|e| (false, e.to_string()))?;
    let mut request = tonic::Request::new(Blob { data });
    request.set_timeout(timeout);
    let resp = match tokio::time::timeout(timeout, client.join(request)).await {
        Err(_) => return Err((true, format!("no answer within {timeout:?}"))),
        Ok(Err(s)) => {
            return Err((!crate::forward::never_sent(&s), format!("join RPC failed: {}", s.message())));
        }
        Ok(Ok(resp)) => resp,
    };
    codec::decode(&resp.into_inner().data).map_err(|e| (true, format!("undecodable join answer: {e}")))
}

/// Asks the member whose transport listens on `local` (this process's own member) to make
/// `change`, as the etcd Cluster service does.
pub(crate) async fn request_change(local: SocketAddr, change: Change) -> Result<Changed, ChangeError> {
    let mut addr = local;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| ChangeError::Unavailable(format!("bad member address {addr}: {e}")))?;
    let channel = endpoint.connect_timeout(Duration::from_secs(2)).connect_lazy();
    let mut client = RaftTransportClient::new(MemberChannel::unaddressed(channel));
    let req = JoinRequest::signed(local_key(), "", JoinStep::Change(change));
    match call(&mut client, &req, LOCAL_RPC_TIMEOUT).await {
        Ok(JoinAnswer::Changed(r)) => r,
        Ok(JoinAnswer::Refused(why)) => Err(ChangeError::Refused(why)),
        Ok(other) => Err(ChangeError::Refused(format!("the member answered a change with {other:?}"))),
        Err((false, why)) => Err(ChangeError::Unavailable(format!("member transport at {addr}: {why}"))),
        Err((true, why)) => Err(ChangeError::TimedOut(format!("member transport at {addr}: {why}"))),
    }
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
    let mut clients: BTreeMap<&str, RaftTransportClient<MemberChannel>> = BTreeMap::new();
    loop {
        for seed in seeds {
            if !clients.contains_key(seed.as_str()) {
                match Endpoint::from_shared(format!("http://{seed}")) {
                    Ok(e) => {
                        let channel = e.connect_timeout(Duration::from_secs(2)).connect_lazy();
                        clients.insert(
                            seed.as_str(),
                            RaftTransportClient::new(MemberChannel::unaddressed(channel)),
                        );
                    }
                    Err(e) => {
                        last = format!("bad seed address {seed:?}: {e}");
                        continue;
                    }
                }
            }
            let Some(client) = clients.get_mut(seed.as_str()) else { continue };
            match call(client, &JoinRequest::signed(key, addr, step.clone()), RPC_TIMEOUT).await {
                Ok(JoinAnswer::Refused(reason)) => {
                    return Err(JoinError::Refused { seed: seed.clone(), reason });
                }
                Ok(JoinAnswer::Retry(why)) => last = format!("{seed}: {why}"),
                Ok(answer) => return Ok(answer),
                Err((_, why)) => last = format!("{seed}: {why}"),
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
    fn changes_are_signed_with_their_details_and_the_local_key_is_not_the_clusters() {
        let key = JoinKey::new(b"0123456789abcdef0123456789abcdef");
        let req = JoinRequest::signed(&key, "", JoinStep::Change(Change::Remove(3)));
        assert!(req.verify(&key));
        assert!(!req.verify(local_key()));
        let mut other = req.clone();
        other.step = JoinStep::Change(Change::Promote(3));
        assert!(!other.verify(&key), "the kind of change is signed");
        other.step = JoinStep::Change(Change::Remove(4));
        assert!(!other.verify(&key), "the member is signed");
        let add = JoinRequest::signed(local_key(), "", JoinStep::Change(Change::AddLearner("a:1".into())));
        assert!(add.verify(local_key()) && !add.verify(&key));
        let mut moved = add;
        moved.step = JoinStep::Change(Change::AddLearner("b:1".into()));
        assert!(!moved.verify(local_key()), "the address is signed");
    }

    #[test]
    fn promotion_is_idempotent_and_checks_the_address() {
        let members = [view(1, "a:1", true), view(2, "b:1", false)];
        assert_eq!(promote_action(&members, 1, "a:1"), PromoteAction::Done);
        assert_eq!(promote_action(&members, 2, "b:1"), PromoteAction::Promote);
        assert!(matches!(promote_action(&members, 2, "c:1"), PromoteAction::Refuse(_)));
        assert!(matches!(promote_action(&members, 3, "c:1"), PromoteAction::Refuse(_)));
    }
}
