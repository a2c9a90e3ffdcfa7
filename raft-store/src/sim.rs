//! An in-process, seeded network for deterministic simulation of a cluster in one process.
//!
//! Members opened with [`RaftStoreConfig::sim_net`](crate::RaftStoreConfig::sim_net) set bind
//! no socket: each registers its member-transport service (the same tonic service a real
//! member serves, with the same message encoding) under its `listen` address in a [`SimNet`],
//! and every message between members goes through [`SimNet`]'s faults instead of TCP. Raft
//! replication, votes, snapshots, forwarded requests and joins all take this path, so the
//! whole member runs: openraft, the log and state machine on RocksDB, the transport service,
//! forwarding and the lease loop. Only sockets and HTTP/2 framing are left out.
//!
//! Faults are drawn from one seeded generator: partitions (a message across a cut is refused
//! before it is sent, or its reply is lost if the cut came while it was in flight), random
//! delay of requests and replies, and random loss of requests or replies. A lost request
//! or reply is reported as a reset connection, an unknown outcome, as TCP would report it.
//! Run under a paused tokio clock on a current-thread runtime, the schedule of faults
//! follows from the seed; what is left to chance is tokio's own choice among ready branches
//! of a `select!`, so a seed replays the same faults and requests but not always the same
//! interleaving.
//!
//! The log store of a simulated member completes appends at once, without `fsync`: the
//! simulation models members that stop and restart (what a process crash keeps, since the
//! kernel still holds what was written), not power loss.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::codegen::{BoxFuture, Service};

use crate::pb::raft_transport_server::RaftTransportServer;
use crate::server::Service as MemberService;
use crate::typ::NodeId;

/// The faults a [`SimNet`] applies to each message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimFaults {
    /// The longest delay added to a request and, separately, to its reply (drawn uniformly).
    pub max_delay: Duration,
    /// Requests lost, per thousand.
    pub request_loss_per_mille: u32,
    /// Replies lost (the request was delivered and handled), per thousand.
    pub reply_loss_per_mille: u32,
}

/// The simulated network of one simulated cluster.
pub struct SimNet {
    state: Mutex<NetState>,
}

struct NetState {
    members: HashMap<String, RaftTransportServer<MemberService>>,
    blocked: BTreeSet<(NodeId, NodeId)>,
    faults: SimFaults,
    rng: StdRng,
    delivered: u64,
    lost: u64,
}

/// How many messages a [`SimNet`] delivered and lost (refused by a partition, or dropped).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SimNetCounts {
    /// Requests handled by their target.
    pub delivered: u64,
    /// Requests refused or lost, and replies lost.
    pub lost: u64,
}

impl std::fmt::Debug for SimNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock();
        f.debug_struct("SimNet")
            .field("members", &s.members.keys().collect::<Vec<_>>())
            .field("blocked", &s.blocked)
            .field("faults", &s.faults)
            .finish()
    }
}

impl SimNet {
    /// A network with no faults, whose random choices follow from `seed`.
    pub fn new(seed: u64) -> Arc<Self> {
        Arc::new(SimNet {
            state: Mutex::new(NetState {
                members: HashMap::new(),
                blocked: BTreeSet::new(),
                faults: SimFaults::default(),
                rng: StdRng::seed_from_u64(seed),
                delivered: 0,
                lost: 0,
            }),
        })
    }

    /// Cuts every link between a member of `a` and a member of `b`, both ways.
    pub fn partition(&self, a: &[NodeId], b: &[NodeId]) {
        self.state.lock().blocked.extend(crate::network::links_between(a, b));
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.state.lock().blocked.clear();
    }

    /// Sets the random delay and loss applied to every message from now on.
    pub fn set_faults(&self, faults: SimFaults) {
        let mut faults = faults;
        faults.request_loss_per_mille = faults.request_loss_per_mille.min(1000);
        faults.reply_loss_per_mille = faults.reply_loss_per_mille.min(1000);
        self.state.lock().faults = faults;
    }

    /// Messages delivered and lost so far.
    pub fn counts(&self) -> SimNetCounts {
        let s = self.state.lock();
        SimNetCounts { delivered: s.delivered, lost: s.lost }
    }

    /// Makes `service` reachable at `addr` (a member opened on this network).
    pub(crate) fn register(&self, addr: String, service: RaftTransportServer<MemberService>) {
        self.state.lock().members.insert(addr, service);
    }

    /// Makes `addr` unreachable (its member stopped).
    pub(crate) fn unregister(&self, addr: &str) {
        self.state.lock().members.remove(addr);
    }

    /// A random delay up to the configured bound.
    fn delay(s: &mut NetState) -> Duration {
        let max = s.faults.max_delay.as_micros() as u64;
        if max == 0 { Duration::ZERO } else { Duration::from_micros(s.rng.random_range(0..=max)) }
    }

    fn lose(s: &mut NetState, per_mille: u32) -> bool {
        per_mille > 0 && s.rng.random_range(0..1000) < per_mille
    }
}

/// A member's channel to one other member over a [`SimNet`].
#[derive(Clone, Debug)]
pub(crate) struct SimChannel {
    pub(crate) net: Arc<SimNet>,
    pub(crate) from: NodeId,
    pub(crate) to: NodeId,
    pub(crate) addr: String,
}

/// What a lost message looks like to the sender: a connection reset (unknown outcome).
fn reset(what: &str) -> tonic::codegen::StdError {
    Box::new(io::Error::new(io::ErrorKind::ConnectionReset, what.to_string()))
}

impl SimChannel {
    /// Sends one request through the faults to its target and brings back the reply.
    pub(crate) fn call(&self, req: Request<Body>) -> BoxFuture<Response<Body>, tonic::codegen::StdError> {
        let this = self.clone();
        Box::pin(async move {
            let (mut service, delay, lost) = {
                let mut s = this.net.state.lock();
                let delay = SimNet::delay(&mut s);
                let request_loss = s.faults.request_loss_per_mille;
                let lost = SimNet::lose(&mut s, request_loss);
                let service = match s.members.get(&this.addr) {
                    Some(service) if !s.blocked.contains(&(this.from, this.to)) => service.clone(),
                    _ => {
                        s.lost += 1;
                        // Like a refused connection: surely not delivered.
                        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "unreachable");
                        return Err(Box::new(tonic::ConnectError(Box::new(refused))) as _);
                    }
                };
                (service, delay, lost)
            };
            tokio::time::sleep(delay).await;
            if lost {
                this.net.state.lock().lost += 1;
                return Err(reset("request lost"));
            }
            let response = service.call(req).await.map_err(|e| match e {})?;
            let (delay, lost) = {
                let mut s = this.net.state.lock();
                s.delivered += 1;
                let delay = SimNet::delay(&mut s);
                let reply_loss = s.faults.reply_loss_per_mille;
                let lost = SimNet::lose(&mut s, reply_loss) || s.blocked.contains(&(this.to, this.from));
                if lost {
                    s.lost += 1;
                }
                (delay, lost)
            };
            tokio::time::sleep(delay).await;
            if lost {
                return Err(reset("reply lost"));
            }
            Ok(response)
        })
    }
}
