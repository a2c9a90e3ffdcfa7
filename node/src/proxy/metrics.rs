//! [`ProxyMetrics`]: what the service proxy reports. kube-proxy's names where kube-proxy has
//! the same thing:
//!
//! - `kubeproxy_sync_proxy_rules_duration_seconds`: one sync, the table recomputed from the
//!   Services and EndpointSlices and the plan applied (listeners, balancers, addresses); every
//!   batch of changes and every resync is one;
//! - `kubeproxy_sync_proxy_rules_last_timestamp_seconds`: the wall-clock time (Unix seconds)
//!   of the last sync that applied everything (a listener that could not be bound, or an
//!   address that could not be added, leaves it alone until a later sync succeeds);
//!
//! and Flotilla's own, for its user-space forwarding:
//!
//! - `flotilla_proxy_connections_total{protocol}`: TCP connections accepted, UDP sessions
//!   started;
//! - `flotilla_proxy_active_connections{protocol}`: TCP connections being forwarded, UDP
//!   sessions alive;
//! - `flotilla_proxy_connection_errors_total{protocol}`: TCP connections reset because no
//!   backend answered (none ready, each refused or timed out) or the connection limit was
//!   reached; UDP datagrams dropped because no session could start (no backends, none
//!   usable, the session limit reached);
//! - `flotilla_proxy_bytes_total{direction}`: bytes from clients to backends (`in`) and from
//!   backends to clients (`out`), TCP payload and UDP datagrams, counted as they are relayed.
//!
//! `protocol` is `TCP` or `UDP`, as Services spell it. The forwarding tasks hold handles
//! resolved once, so a connection costs a few atomic operations.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabel {
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

/// The service proxy's metrics (see the [module docs](self)). Cheap to clone; clones share
/// the values.
#[derive(Clone, Debug)]
pub struct ProxyMetrics {
    sync_duration: Histogram,
    last_sync: Gauge<f64, AtomicU64>,
    connections: Family<ProtocolLabel, Counter>,
    active: Family<ProtocolLabel, Gauge>,
    errors: Family<ProtocolLabel, Counter>,
    bytes: Family<DirectionLabel, Counter>,
    pub(crate) tcp: ProtocolMetrics,
    pub(crate) udp: ProtocolMetrics,
    /// Bytes from clients to backends.
    pub(crate) bytes_in: Counter,
    /// Bytes from backends to clients.
    pub(crate) bytes_out: Counter,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        let connections = Family::<ProtocolLabel, Counter>::default();
        let active = Family::<ProtocolLabel, Gauge>::default();
        let errors = Family::<ProtocolLabel, Counter>::default();
        let bytes = Family::<DirectionLabel, Counter>::default();
        let protocol = |protocol| {
            let label = ProtocolLabel { protocol };
            ProtocolMetrics {
                connections: connections.get_or_create_owned(&label),
                active: active.get_or_create_owned(&label),
                errors: errors.get_or_create_owned(&label),
            }
        };
        let (tcp, udp) = (protocol("TCP"), protocol("UDP"));
        let bytes_in = bytes.get_or_create_owned(&DirectionLabel { direction: "in" });
        let bytes_out = bytes.get_or_create_owned(&DirectionLabel { direction: "out" });
        ProxyMetrics {
            // 1 ms doubling to about 16 s, kube-proxy's buckets.
            sync_duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            last_sync: Gauge::default(),
            connections,
            active,
            errors,
            bytes,
            tcp,
            udp,
            bytes_in,
            bytes_out,
        }
    }
}

impl ProxyMetrics {
    /// New metrics, all zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the metrics to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "Time to recompute the service table and apply it",
            self.sync_duration.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time (Unix seconds) the service table was applied completely",
            self.last_sync.clone(),
        );
        registry.register(
            "flotilla_proxy_connections",
            "TCP connections accepted and UDP sessions started, by protocol",
            self.connections.clone(),
        );
        registry.register(
            "flotilla_proxy_active_connections",
            "TCP connections being forwarded and UDP sessions alive, by protocol",
            self.active.clone(),
        );
        registry.register(
            "flotilla_proxy_connection_errors",
            "TCP connections reset and UDP datagrams dropped for want of a backend or of room, by protocol",
            self.errors.clone(),
        );
        registry.register(
            "flotilla_proxy_bytes",
            "Bytes relayed from clients to backends (in) and back (out)",
            self.bytes.clone(),
        );
    }

    /// Records a sync that took `took`; `complete` if everything in its plan was applied.
    pub(crate) fn synced(&self, took: Duration, complete: bool) {
        self.sync_duration.observe(took.as_secs_f64());
        if complete {
            let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
            self.last_sync.set(now.as_secs_f64());
        }
    }
}

/// One protocol's series.
#[derive(Clone, Debug)]
pub(crate) struct ProtocolMetrics {
    connections: Counter,
    active: Gauge,
    errors: Counter,
}

impl ProtocolMetrics {
    /// Counts a connection (or session) started; it is active until the guard drops.
    pub(crate) fn opened(&self) -> ActiveGuard {
        self.connections.inc();
        self.active.inc();
        ActiveGuard(self.active.clone())
    }

    /// Counts a connection accepted and refused at once (it is never active).
    pub(crate) fn refused(&self) {
        self.connections.inc();
        self.errors.inc();
    }

    /// Counts a connection, session or datagram that found no backend.
    pub(crate) fn failed(&self) {
        self.errors.inc();
    }
}

/// Keeps a connection counted as active until dropped.
#[derive(Debug)]
pub(crate) struct ActiveGuard(Gauge);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests;
