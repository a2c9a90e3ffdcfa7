//! UDP forwarding. The Service socket receives every client's datagrams; each client address
//! gets a session: a socket of its own connected to the backend chosen for it, so the
//! backend's replies come back on that socket and are sent on to the client from the Service
//! socket (the client sees them come from the address it wrote to). A session ends after
//! [`UDP_IDLE_TIMEOUT`](super::UDP_IDLE_TIMEOUT) without traffic either way, when its backend
//! leaves the Service (kube-proxy likewise clears UDP conntrack entries of removed endpoints:
//! the client's next datagram picks a backend that is there), or when the listener closes.
//!
//! Datagrams are dropped, as a network would drop them, when the session limit is reached or
//! when the Service has no backends.

mod sessions;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use self::sessions::Sessions;
use super::balancer::Balancer;
use super::metrics::ActiveGuard;
use super::table::ListenKey;
use super::{Error, Result, Shared};

/// The largest UDP payload: every receive buffer holds a whole datagram.
const MAX_DATAGRAM: usize = 65_535;
/// How often idle sessions are looked for (expiry is precise to this).
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// What the listener keeps per session.
struct Handle {
    socket: Arc<UdpSocket>,
    stop: CancellationToken,
}

type SharedSessions = Arc<Mutex<Sessions<Handle>>>;

fn lock(sessions: &SharedSessions) -> MutexGuard<'_, Sessions<Handle>> {
    // Every `Sessions` method leaves it consistent, so a panic elsewhere cannot corrupt it.
    sessions.lock().unwrap_or_else(PoisonError::into_inner)
}

fn stop_all(handles: Vec<Handle>) {
    for h in handles {
        h.stop.cancel();
    }
}

/// Binds `key`.
pub(crate) async fn bind(key: ListenKey) -> Result<UdpSocket> {
    UdpSocket::bind(key.addr()).await.map_err(|source| Error::Bind { listener: key, source })
}

/// Relays datagrams between clients of `socket` and backends of `balancer` until `stop`.
pub(crate) async fn serve(
    socket: UdpSocket,
    key: ListenKey,
    balancer: Arc<Balancer>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let socket = Arc::new(socket);
    let sessions: SharedSessions = Arc::new(Mutex::new(Sessions::new(shared.max_udp_sessions)));
    let mut backends = balancer.subscribe();
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            Ok(()) = backends.changed() => {
                let current = backends.borrow_and_update().clone();
                stop_all(lock(&sessions).retain_backends(&current));
            }
            _ = sweep.tick() => stop_all(lock(&sessions).expire(Instant::now(), shared.udp_idle_timeout)),
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, client)) => {
                    let ctx = Ctx { key, balancer: &balancer, shared: &shared, sessions: &sessions, service: &socket, stop: &stop };
                    ctx.forward(client, &buf[..n]).await;
                }
                Err(e) => tracing::debug!(listener = %key, error = %e, "udp receive failed"),
            },
        }
    }
    stop_all(lock(&sessions).drain());
}

/// What forwarding one datagram needs.
struct Ctx<'a> {
    key: ListenKey,
    balancer: &'a Arc<Balancer>,
    shared: &'a Arc<Shared>,
    sessions: &'a SharedSessions,
    service: &'a Arc<UdpSocket>,
    stop: &'a CancellationToken,
}

impl Ctx<'_> {
    async fn forward(&self, client: SocketAddr, datagram: &[u8]) {
        let existing = lock(self.sessions).get(client, Instant::now()).map(|h| h.socket.clone());
        let upstream = match existing {
            Some(s) => s,
            None => match self.open(client).await {
                Some(s) => s,
                None => return,
            },
        };
        // Never wait on one backend: a full buffer drops the datagram, as a network would.
        // A UDP send waits only for room in our own socket buffer, never for the backend.
        // (`try_send` would drop the first datagram of every session: a new socket has no
        // write readiness from the reactor yet.)
        match upstream.send(datagram).await {
            Ok(n) => {
                self.shared.metrics.bytes_in.inc_by(n as u64);
            }
            Err(e) => {
                tracing::debug!(listener = %self.key, %client, error = %e, "udp datagram to backend dropped")
            }
        }
    }

    /// Starts a session for `client`: a socket connected to the first candidate that takes one.
    /// `None` (counted as an error) if none does.
    async fn open(&self, client: SocketAddr) -> Option<Arc<UdpSocket>> {
        let opened = self.try_open(client).await;
        if opened.is_none() {
            self.shared.metrics.udp.failed();
        }
        opened
    }

    async fn try_open(&self, client: SocketAddr) -> Option<Arc<UdpSocket>> {
        if lock(self.sessions).is_full() {
            tracing::debug!(listener = %self.key, %client, "udp session limit reached, datagram dropped");
            return None;
        }
        let candidates = self.balancer.candidates(client.ip());
        if candidates.is_empty() {
            tracing::debug!(listener = %self.key, %client, "no udp backends, datagram dropped");
            return None;
        }
        for backend in candidates {
            match connect(backend).await {
                Ok(s) => {
                    self.balancer.chose(client.ip(), backend);
                    let socket = Arc::new(s);
                    let stop = self.stop.child_token();
                    let handle = Handle { socket: socket.clone(), stop: stop.clone() };
                    let (id, old) = match lock(self.sessions).insert(client, backend, handle, Instant::now())
                    {
                        Ok(inserted) => inserted,
                        Err(_) => return None,
                    };
                    if let Some(old) = old {
                        old.stop.cancel();
                    }
                    let session = Session {
                        upstream: socket.clone(),
                        service: self.service.clone(),
                        client,
                        id,
                        sessions: self.sessions.clone(),
                        key: self.key,
                        bytes_out: self.shared.metrics.bytes_out.clone(),
                        _active: self.shared.metrics.udp.opened(),
                    };
                    self.shared.tracker.spawn(session.run(stop));
                    return Some(socket);
                }
                Err(e) => {
                    tracing::debug!(listener = %self.key, %backend, error = %e, "udp backend unusable, trying next")
                }
            }
        }
        None
    }
}

async fn connect(backend: SocketAddr) -> std::io::Result<UdpSocket> {
    let any: IpAddr =
        if backend.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
    let socket = UdpSocket::bind(SocketAddr::new(any, 0)).await?;
    socket.connect(backend).await?;
    Ok(socket)
}

/// One client's session: carries the backend's replies back.
struct Session {
    upstream: Arc<UdpSocket>,
    service: Arc<UdpSocket>,
    client: SocketAddr,
    id: u64,
    sessions: SharedSessions,
    key: ListenKey,
    /// Counts the replies' bytes.
    bytes_out: prometheus_client::metrics::counter::Counter,
    /// Counts the session as active until it ends.
    _active: ActiveGuard,
}

impl Session {
    async fn run(self, stop: CancellationToken) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                received = self.upstream.recv(&mut buf) => match received {
                    Ok(n) => {
                        match self.service.send_to(&buf[..n], self.client).await {
                            Ok(sent) => {
                                self.bytes_out.inc_by(sent as u64);
                            }
                            Err(e) => tracing::debug!(listener = %self.key, client = %self.client, error = %e, "udp reply dropped"),
                        }
                        lock(&self.sessions).touch(self.client, self.id, Instant::now());
                    }
                    // An ICMP error from the backend (nothing listening, say) surfaces here once;
                    // the session stays, as the client may retry and the backend come up.
                    Err(e) => tracing::debug!(listener = %self.key, client = %self.client, error = %e, "udp backend error"),
                },
            }
        }
        lock(&self.sessions).remove(self.client, self.id);
    }
}
