//! TCP forwarding: accept on a Service address, pick a backend, connect (moving on to the
//! next backend when one refuses or times out), then splice both ways with
//! `copy_bidirectional`, which passes a half-close on (EOF from one side becomes a `shutdown`
//! of the write half towards the other) and keeps the other direction running.
//!
//! Connections belong to the proxy, not to the listener: closing a listener (its Service
//! went, or its port changed) stops new connections only, and a balancer update never
//! touches a spliced connection, even one to a backend that left. kube-proxy behaves alike
//! (conntrack keeps established flows to removed endpoints until they end). Connections end
//! when either side closes, when their ClusterIP is released (its Service is gone: packets to
//! the client can no longer leave from that address), or when the proxy aborts after its
//! shutdown grace period.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

use super::balancer::Balancer;
use super::table::ListenKey;
use super::{Error, Result, Shared};

/// The accept queue of a listener.
pub(crate) const LISTEN_BACKLOG: u32 = 1024;
/// The buffer per direction of a spliced connection: larger than tokio's default 8 KiB, so
/// bulk transfers take fewer reads and writes (measured by `proxy_bench`).
const COPY_BUFFER: usize = 64 * 1024;
/// The pause after a failed accept (out of file descriptors, usually), so that a persistent
/// failure does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Binds `key` (with `SO_REUSEADDR`, so a listener closed a moment ago can be reopened while
/// its old connections linger in TIME_WAIT).
pub(crate) fn bind(key: ListenKey) -> Result<TcpListener> {
    let bind = || -> io::Result<TcpListener> {
        let socket = if key.ip.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        socket.bind(key.addr())?;
        socket.listen(LISTEN_BACKLOG)
    };
    bind().map_err(|source| Error::Bind { listener: key, source })
}

/// Accepts connections on `listener` until `stop`, forwarding each to a backend of
/// `balancer`. `released` is cancelled when the listener's address stops being local: the
/// connections through it can no longer reach their client, so they are cut, which closes
/// their backend side at once.
pub(crate) async fn serve(
    listener: TcpListener,
    key: ListenKey,
    balancer: Arc<Balancer>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    released: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (client, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(listener = %key, error = %e, "accept failed");
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        let Ok(permit) = shared.tcp_connections.clone().try_acquire_owned() else {
            tracing::warn!(listener = %key, client = %peer, "connection limit reached, refusing");
            shared.metrics.tcp.refused();
            reset(client);
            continue;
        };
        let active = shared.metrics.tcp.opened();
        let (balancer, shared2, released) = (balancer.clone(), shared.clone(), released.clone());
        shared.tracker.spawn(async move {
            tokio::select! {
                biased;
                _ = released.cancelled() => {}
                _ = forward(client, peer, key, &balancer, &shared2) => {}
            }
            drop(permit);
            drop(active);
        });
    }
}

/// Closes `stream` with a reset, as kube-proxy's REJECT does, so a client fails at once rather
/// than reading an empty answer.
fn reset(stream: TcpStream) {
    if let Err(e) = stream.set_zero_linger() {
        tracing::debug!(error = %e, "setting SO_LINGER to reset a connection");
    }
}

/// Connects to the first candidate that answers.
async fn connect(
    peer: SocketAddr,
    key: ListenKey,
    balancer: &Balancer,
    timeout: Duration,
) -> Option<TcpStream> {
    for backend in balancer.candidates(peer.ip()) {
        match tokio::time::timeout(timeout, TcpStream::connect(backend)).await {
            Ok(Ok(upstream)) => {
                balancer.chose(peer.ip(), backend);
                return Some(upstream);
            }
            Ok(Err(e)) => {
                tracing::debug!(listener = %key, %backend, error = %e, "backend refused, trying next")
            }
            Err(_) => {
                tracing::debug!(listener = %key, %backend, ?timeout, "backend connect timed out, trying next")
            }
        }
    }
    None
}

async fn forward(client: TcpStream, peer: SocketAddr, key: ListenKey, balancer: &Balancer, shared: &Shared) {
    let connected = tokio::select! {
        biased;
        _ = shared.abort.cancelled() => None,
        c = connect(peer, key, balancer, shared.connect_timeout) => Some(c),
    };
    let mut upstream = match connected {
        Some(Some(upstream)) => upstream,
        Some(None) => {
            tracing::debug!(listener = %key, client = %peer, "no backend reachable, resetting");
            shared.metrics.tcp.failed();
            return reset(client);
        }
        // Aborted at shutdown.
        None => return reset(client),
    };
    // Small writes (request/response protocols) should not wait for Nagle on our hop.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let mut client =
        Counted { stream: client, read: &shared.metrics.bytes_in, written: &shared.metrics.bytes_out };
    tokio::select! {
        biased;
        _ = shared.abort.cancelled() => {}
        r = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, COPY_BUFFER, COPY_BUFFER) => match r {
            Ok((up, down)) => tracing::trace!(listener = %key, client = %peer, up, down, "connection done"),
            Err(e) => tracing::debug!(listener = %key, client = %peer, error = %e, "connection ended"),
        },
    }
}

/// The client's side of a spliced connection, counting the bytes read from it (`in`) and
/// written to it (`out`) as they pass, so a connection cut midway has its bytes counted too.
struct Counted<'a> {
    stream: TcpStream,
    read: &'a Counter,
    written: &'a Counter,
}

impl AsyncRead for Counted<'_> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            this.read.inc_by((buf.filled().len() - before) as u64);
        }
        poll
    }
}

impl AsyncWrite for Counted<'_> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            this.written.inc_by(n as u64);
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
