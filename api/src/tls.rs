//! Serving an axum [`Router`] over TLS (or plain HTTP in tests): an accept loop that owns
//! every connection it starts, HTTP/1.1 and HTTP/2 on each connection, and a graceful
//! shutdown with a drain deadline.
//!
//! Handlers see the client's address as [`ConnectInfo<SocketAddr>`] and, when the client
//! presented a certificate the [`ServerConfig`] verified, a [`PeerCertificate`] extension.
//! Build the configuration with [`ClusterPki::server_config`](crate::pki::ClusterPki::server_config).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;
use tracing::{debug, error, info, warn};
use x509_parser::error::X509Error;

/// The rustls crypto provider every Flotilla TLS endpoint and client uses: *ring*, passed
/// explicitly so nothing depends on a process-wide default provider being installed.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    #[expect(
        deprecated,
        reason = "rustls 0.23.48 deprecates the ring provider because it lacks post-quantum key \
                  exchange; Flotilla builds rustls without aws-lc-rs, so ring is the provider"
    )]
    let provider = rustls::crypto::ring::default_provider();
    Arc::new(provider)
}

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for in-flight requests before dropping their connections.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// How long the accept loop pauses after a resource error (such as too many open files),
/// rather than spinning on it.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Why a verified client certificate could not be turned into a [`PeerCertificate`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The certificate is not valid X.509.
    #[error("client certificate is not a valid X.509 certificate")]
    Certificate(#[source] X509Error),
    /// A subject attribute is not a string.
    #[error("client certificate subject {attribute} is not a string")]
    Subject {
        /// `CN` or `O`.
        attribute: &'static str,
        /// The cause.
        #[source]
        source: X509Error,
    },
}

/// Result of [`PeerCertificate`] parsing.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The client certificate of the connection a request came on, verified by the TLS layer.
/// Kubernetes reads the user name from its common name and the groups from its organizations.
#[derive(Clone, Debug)]
pub struct PeerCertificate {
    /// The leaf certificate.
    pub der: CertificateDer<'static>,
    /// The subject's (first) common name; empty if it has none.
    pub common_name: String,
    /// The subject's organizations, in order.
    pub organizations: Vec<String>,
}

impl PeerCertificate {
    /// Reads the subject of a certificate.
    pub fn from_der(der: CertificateDer<'static>) -> Result<PeerCertificate> {
        let (_, x509) = x509_parser::parse_x509_certificate(&der).map_err(|e| match e {
            x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => Error::Certificate(e),
            x509_parser::nom::Err::Incomplete(_) => Error::Certificate(X509Error::InvalidCertificate),
        })?;
        let subject = x509.subject();
        let common_name = match subject.iter_common_name().next() {
            Some(cn) => cn.as_str().map_err(|source| Error::Subject { attribute: "CN", source })?.to_owned(),
            None => String::new(),
        };
        let organizations = subject
            .iter_organization()
            .map(|o| o.as_str().map(str::to_owned))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| Error::Subject { attribute: "O", source })?;
        Ok(PeerCertificate { der, common_name, organizations })
    }
}

/// Timeouts of [`serve_with`].
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    /// How long a client may take to complete the TLS handshake.
    pub handshake_timeout: Duration,
    /// How long shutdown waits for in-flight requests before dropping their connections.
    pub drain_deadline: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions { handshake_timeout: HANDSHAKE_TIMEOUT, drain_deadline: DRAIN_DEADLINE }
    }
}

/// Serves `app` over TLS on `listener` until `shutdown` is cancelled, with the default
/// [`ServeOptions`]. See [`serve_with`].
pub async fn serve(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    app: Router,
    shutdown: CancellationToken,
) -> io::Result<()> {
    serve_with(listener, config, app, shutdown, ServeOptions::default()).await
}

/// Serves `app` over TLS on `listener` until `shutdown` is cancelled.
///
/// Each accepted connection is handshaken (a failure or timeout is logged at debug and only
/// closes that connection), then served with HTTP/1.1 or HTTP/2, whichever the client speaks.
/// On shutdown the listener is closed, idle connections are closed, in-flight requests are
/// given `options.drain_deadline` to finish (HTTP/2 clients get a GOAWAY), and whatever is
/// left is then dropped. Returns once every connection task has ended.
///
/// # Errors
///
/// Only if the listener's local address cannot be read; accept errors are logged and retried.
pub async fn serve_with(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    app: Router,
    shutdown: CancellationToken,
    options: ServeOptions,
) -> io::Result<()> {
    run(listener, Some(TlsAcceptor::from(config)), app, shutdown, options).await
}

/// Serves `app` over plain HTTP on `listener` until `shutdown` is cancelled: the same accept
/// loop, extensions (without [`PeerCertificate`]) and shutdown as [`serve`], for tests.
pub async fn serve_plain(listener: TcpListener, app: Router, shutdown: CancellationToken) -> io::Result<()> {
    run(listener, None, app, shutdown, ServeOptions::default()).await
}

/// What every connection task shares.
#[derive(Clone)]
struct Shared {
    app: Router,
    options: ServeOptions,
    /// Graceful shutdown: finish in-flight requests.
    shutdown: CancellationToken,
    /// Past the drain deadline: drop everything now.
    abort: CancellationToken,
    tracker: TaskTracker,
}

async fn run(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    app: Router,
    shutdown: CancellationToken,
    options: ServeOptions,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    let shared =
        Shared { app, options, shutdown, abort: CancellationToken::new(), tracker: TaskTracker::new() };
    info!(addr = %local, tls = acceptor.is_some(), "serving");
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            () = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) if is_connection_error(&error) => {
                    debug!(addr = %local, %error, "accept failed for one connection");
                    continue;
                }
                Err(error) => {
                    error!(addr = %local, %error, "accept failed; pausing");
                    tokio::select! {
                        biased;
                        () = shared.shutdown.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                    }
                }
            },
        };
        if let Err(error) = tcp.set_nodelay(true) {
            debug!(%peer, %error, "cannot set TCP_NODELAY");
        }
        shared.tracker.spawn(connection(tcp, peer, acceptor.clone(), shared.clone()));
    }
    drop(listener);

    shared.tracker.close();
    if tokio::time::timeout(options.drain_deadline, shared.tracker.wait()).await.is_err() {
        warn!(
            addr = %local,
            tasks = shared.tracker.len(),
            deadline = ?options.drain_deadline,
            "drain deadline passed; dropping remaining connections",
        );
        shared.abort.cancel();
        shared.tracker.wait().await;
    }
    info!(addr = %local, "stopped serving");
    Ok(())
}

/// Errors that concern one incoming connection, not the listener.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

async fn connection(tcp: TcpStream, peer: SocketAddr, acceptor: Option<TlsAcceptor>, shared: Shared) {
    let Some(acceptor) = acceptor else {
        return serve_http(TokioIo::new(tcp), peer, None, &shared).await;
    };
    let handshake = tokio::time::timeout(shared.options.handshake_timeout, acceptor.accept(tcp));
    let tls = tokio::select! {
        biased;
        () = shared.shutdown.cancelled() => return,
        handshake = handshake => match handshake {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                debug!(%peer, %error, "tls handshake failed");
                return;
            }
            Err(_) => {
                debug!(%peer, timeout = ?shared.options.handshake_timeout, "tls handshake timed out");
                return;
            }
        },
    };
    let leaf = tls.get_ref().1.peer_certificates().and_then(|chain| chain.first());
    let peer_certificate = match leaf.map(|der| PeerCertificate::from_der(der.clone().into_owned())) {
        None => None,
        Some(Ok(certificate)) => Some(certificate),
        Some(Err(error)) => {
            // rustls verified it, so this is an odd subject encoding; refusing beats
            // treating a client that tried to authenticate as anonymous.
            debug!(%peer, %error, "closing connection with an unreadable client certificate");
            return;
        }
    };
    serve_http(TokioIo::new(tls), peer, peer_certificate, &shared).await;
}

async fn serve_http<I>(
    io: TokioIo<I>,
    peer: SocketAddr,
    peer_certificate: Option<PeerCertificate>,
    shared: &Shared,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let app = shared.app.clone();
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        if let Some(certificate) = &peer_certificate {
            request.extensions_mut().insert(certificate.clone());
        }
        app.clone().oneshot(request)
    });
    let executor = TrackedExecutor { tracker: shared.tracker.clone(), abort: shared.abort.clone() };
    let mut builder = auto::Builder::new(executor);
    // A timer lets hyper enforce its HTTP/1 header-read timeout and HTTP/2 keep-alives.
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let result = tokio::select! {
        biased;
        () = shared.abort.cancelled() => return,
        () = shared.shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                biased;
                () = shared.abort.cancelled() => return,
                result = connection.as_mut() => result,
            }
        }
        result = connection.as_mut() => result,
    };
    if let Err(error) = result {
        debug!(%peer, %error, "connection ended with an error");
    }
}

/// Runs hyper's per-stream HTTP/2 tasks on the server's tracker, so shutdown waits for them
/// too, and drops them when the drain deadline passes.
#[derive(Clone)]
struct TrackedExecutor {
    tracker: TaskTracker,
    abort: CancellationToken,
}

impl<F> hyper::rt::Executor<F> for TrackedExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        let abort = self.abort.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                biased;
                () = abort.cancelled() => {}
                _ = future => {}
            }
        });
    }
}
