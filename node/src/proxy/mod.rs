//! The service proxy: kube-proxy's job done in user space, with no iptables.
//!
//! [`ServiceProxy`] watches Services and EndpointSlices (through core's shared informers) and,
//! for every port of every Service with a ClusterIP, listens on that ClusterIP and port, and
//! for NodePort (and LoadBalancer) Services also on each configured node address at the node
//! port. TCP connections and UDP datagrams are forwarded round robin to the Service port's
//! ready endpoints, or to the endpoint a client IP was given before under `sessionAffinity:
//! ClientIP` (for `timeoutSeconds`, three hours by default).
//!
//! How it is built:
//! - [`table`] is the decision, without I/O: Services and slices in, the [`Table`] of
//!   listeners, backends and ClusterIPs out ([`desired_table`]), and the [`Plan`] that turns
//!   the table in force into the desired one ([`plan`]).
//! - `balancer` picks backends (round robin, affinity) per Service port; the listeners of a
//!   port (ClusterIP and NodePorts) share one. An update swaps the backend set for new
//!   connections and leaves every connection in flight alone.
//! - `tcp` and `udp` forward; see their docs for half-close, connection retries, UDP sessions
//!   and their expiry. Established TCP connections survive endpoint updates, including to an
//!   endpoint that was removed (as with kube-proxy, whose conntrack entries outlive the
//!   rules); UDP sessions to a removed endpoint end, so the client's next datagram goes to
//!   one that is there. Deleting a Service closes its listeners and releases its ClusterIP,
//!   which cuts the connections through it (unlike kube-proxy, where conntrack lets them
//!   finish: ours could not reach their clients from an address that is gone, and cutting
//!   them closes the backend side at once instead of leaving it hanging).
//! - [`address`] makes ClusterIPs local before they are bound: [`InterfaceAddresses`] (a
//!   dummy interface `flotilla0`, falling back to `lo`), or [`LocalAddresses`] when they are
//!   local already (`127.0.0.0/8` in tests).
//! - The runtime recomputes the table after every batch of changes (and every
//!   [`RESYNC_INTERVAL`], which retries what failed, such as a bind), and performs the plan.
//!
//! [`ServiceProxy::metrics`] are its Prometheus metrics (syncs under kube-proxy's names,
//! connections, errors and bytes under Flotilla's); see [`metrics`].
//!
//! Limits are named and configurable ([`ProxyConfig`]): concurrent TCP connections, UDP
//! sessions per listener, the UDP idle timeout, the backend connect timeout.
//!
//! Not done: `externalIPs` and LoadBalancer ingress addresses, `externalTrafficPolicy` and
//! `internalTrafficPolicy: Local`, topology hints, SCTP, falling back to serving-but-
//! terminating endpoints when none is ready (Kubernetes' ProxyTerminatingEndpoints), source
//! address preservation (backends see the proxy's address, as with kube-proxy's userspace
//! mode), and IPv6 beyond what the table and sockets handle generically (untested).

pub mod address;
mod balancer;
pub mod metrics;
mod runtime;
pub mod table;
mod tcp;
mod udp;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::client::Client;
use flotilla_core::controller::Informers;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use address::{AddressManager, InterfaceAddresses, LocalAddresses};
pub use metrics::ProxyMetrics;
pub use table::{
    Affinity, ListenKey, Plan, Protocol, ServicePortKey, ServiceTarget, Skipped, Table, desired_table, plan,
};

/// Default bound on TCP connections forwarded at once, over all listeners; more are reset.
/// Each holds two 64 KiB copy buffers: at this bound, 1 GiB.
pub const MAX_TCP_CONNECTIONS: usize = 8_192;
/// Default bound on UDP sessions per UDP listener; datagrams of further clients are dropped.
/// Each session holds a socket and a 64 KiB receive buffer.
pub const MAX_UDP_SESSIONS: usize = 1_024;
/// Default time a UDP session lives without a datagram either way.
pub const UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time allowed to connect to one TCP backend before trying the next.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default interval at which the table is recomputed even without changes.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(10);
/// Default time connections get to finish after shutdown before they are cut.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What went wrong, naming the listener, address or command concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener could not be bound.
    #[error("binding {listener}")]
    Bind {
        /// The address and protocol.
        listener: ListenKey,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `ip` could not be started.
    #[error("running `ip {args}`")]
    IpSpawn {
        /// Its arguments.
        args: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `ip` failed.
    #[error("`ip {args}` failed ({status}): {stderr}")]
    IpFailed {
        /// Its arguments.
        args: String,
        /// How it exited.
        status: String,
        /// What it said.
        stderr: String,
    },
    /// A line of `ip addr show` output did not hold an address where expected.
    #[error("unexpected `ip addr show` line: {line:?}")]
    IpOutput {
        /// The line.
        line: String,
    },
}

/// The result of the proxy's fallible operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the proxy runs on this node.
#[derive(Clone)]
pub struct ProxyConfig {
    /// The node's addresses NodePorts listen on (specific addresses: UDP replies leave from
    /// the address bound).
    pub node_addresses: Vec<IpAddr>,
    /// Makes ClusterIPs local before they are bound.
    pub address_manager: Arc<dyn AddressManager>,
    /// Bound on TCP connections forwarded at once.
    pub max_tcp_connections: usize,
    /// Bound on UDP sessions per UDP listener.
    pub max_udp_sessions: usize,
    /// How long a UDP session lives without traffic.
    pub udp_idle_timeout: Duration,
    /// How long to wait for one TCP backend before trying the next.
    pub connect_timeout: Duration,
    /// How often to recompute the table without changes (retrying failed binds).
    pub resync_interval: Duration,
    /// How long connections may finish after shutdown.
    pub shutdown_grace: Duration,
}

impl ProxyConfig {
    /// NodePorts on `node_addresses`, ClusterIPs made local by `address_manager`, the
    /// default limits.
    pub fn new(node_addresses: Vec<IpAddr>, address_manager: Arc<dyn AddressManager>) -> Self {
        ProxyConfig {
            node_addresses,
            address_manager,
            max_tcp_connections: MAX_TCP_CONNECTIONS,
            max_udp_sessions: MAX_UDP_SESSIONS,
            udp_idle_timeout: UDP_IDLE_TIMEOUT,
            connect_timeout: CONNECT_TIMEOUT,
            resync_interval: RESYNC_INTERVAL,
            shutdown_grace: SHUTDOWN_GRACE,
        }
    }
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("node_addresses", &self.node_addresses)
            .field("max_tcp_connections", &self.max_tcp_connections)
            .field("max_udp_sessions", &self.max_udp_sessions)
            .field("udp_idle_timeout", &self.udp_idle_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("resync_interval", &self.resync_interval)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish_non_exhaustive()
    }
}

/// What the forwarding tasks share.
pub(crate) struct Shared {
    /// Every listener, connection and session task.
    pub(crate) tracker: TaskTracker,
    /// Cancelled when the shutdown grace period is over: cuts connections.
    pub(crate) abort: CancellationToken,
    /// One permit per TCP connection.
    pub(crate) tcp_connections: Arc<Semaphore>,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_udp_sessions: usize,
    pub(crate) udp_idle_timeout: Duration,
    /// Counted by the forwarding tasks and the runtime.
    pub(crate) metrics: ProxyMetrics,
}

/// The service proxy of one node; see the [module docs](self).
pub struct ServiceProxy {
    informers: Informers,
    /// Whether `run` starts and stops the informers (it made them) or the caller does.
    own_informers: bool,
    config: ProxyConfig,
    status: watch::Sender<Table>,
    metrics: ProxyMetrics,
}

impl std::fmt::Debug for ServiceProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceProxy").field("config", &self.config).finish_non_exhaustive()
    }
}

impl ServiceProxy {
    /// A proxy reading Services and EndpointSlices through `client`, with informers of its own.
    pub fn new(client: Arc<dyn Client>, config: ProxyConfig) -> Self {
        let mut proxy = ServiceProxy::with_informers(Informers::new(client), config);
        proxy.own_informers = true;
        proxy
    }

    /// A proxy sharing `informers` with other components of the process; the caller starts
    /// and stops them.
    pub fn with_informers(informers: Informers, config: ProxyConfig) -> Self {
        let (status, _) = watch::channel(Table::default());
        ServiceProxy { informers, own_informers: false, config, status, metrics: ProxyMetrics::default() }
    }

    /// The table in force: open listeners, the backends of each Service port, the ClusterIPs
    /// made local. Updated after each change is applied; empty again after shutdown.
    pub fn status(&self) -> watch::Receiver<Table> {
        self.status.subscribe()
    }

    /// The proxy's Prometheus metrics (shared with it: they change as it runs); the binary
    /// registers them with its registry.
    pub fn metrics(&self) -> ProxyMetrics {
        self.metrics.clone()
    }

    /// Proxies until `shutdown` is cancelled; then closes the listeners, gives connections
    /// [`ProxyConfig::shutdown_grace`] to finish, cuts the rest, and releases the ClusterIPs.
    pub async fn run(self, shutdown: CancellationToken) {
        let informer_token = shutdown.child_token();
        if self.own_informers {
            self.informers.start(informer_token.clone());
        }
        let runtime = runtime::Runtime::new(self.config, self.status, self.metrics);
        runtime.run(&self.informers, shutdown).await;
        if self.own_informers {
            informer_token.cancel();
            self.informers.stopped().await;
        }
    }
}
