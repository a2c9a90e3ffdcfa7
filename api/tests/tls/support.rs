//! A TLS test server around [`tls::serve_with`], and a minimal hyper client over tokio-rustls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use flotilla_api::pki::{ClientAuth, ClusterPki};
use flotilla_api::tls::{self, PeerCertificate, ServeOptions};
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

/// Runs `fut`, failing with "timed out: {what}" after `secs`: `what` names what probably hung.
pub(crate) async fn within<T>(
    what: &str,
    secs: u64,
    fut: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .with_context(|| format!("timed out: {what}"))?
}

/// A router answering `GET /whoami` with the caller's identity and address:
/// `user=<CN> groups=<O,O> peer=<addr> version=<HTTP version>`, or `user=anonymous ...`.
pub(crate) fn whoami_router() -> Router {
    Router::new().route(
        "/whoami",
        get(
            |certificate: Option<Extension<PeerCertificate>>,
             ConnectInfo(peer): ConnectInfo<SocketAddr>,
             version: Version| async move {
                let (user, groups) = match certificate {
                    Some(Extension(c)) => (c.common_name, c.organizations.join(",")),
                    None => ("anonymous".to_string(), String::new()),
                };
                format!("user={user} groups={groups} peer={peer} version={version:?}")
            },
        ),
    )
}

/// A PKI in a temporary directory.
pub(crate) struct TestPki {
    pub(crate) pki: Arc<ClusterPki>,
    _dir: tempfile::TempDir,
}

impl TestPki {
    pub(crate) fn new() -> anyhow::Result<TestPki> {
        let dir = tempfile::tempdir()?;
        let pki = ClusterPki::load_or_create(dir.path(), &[])?;
        Ok(TestPki { pki: Arc::new(pki), _dir: dir })
    }
}

/// A running [`tls::serve_with`] on 127.0.0.1.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    pub(crate) shutdown: CancellationToken,
    pub(crate) task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    pub(crate) async fn start(
        pki: &ClusterPki,
        client_auth: ClientAuth,
        app: Router,
        options: ServeOptions,
    ) -> anyhow::Result<TestServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let config = pki.server_config(client_auth)?;
        let task = tokio::spawn(tls::serve_with(listener, config, app, shutdown.clone(), options));
        Ok(TestServer { addr, shutdown, task })
    }

    /// Cancels the server and waits for `serve` to return.
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await?.context("serve failed")
    }
}

/// A client configuration trusting `ca_pem`, presenting `identity` (certificate PEM, key
/// PEM) if given, offering `alpn`.
pub(crate) fn client_config(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
    alpn: &[&[u8]],
) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes())?)?;
    let builder = ClientConfig::builder_with_provider(tls::crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder.with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(cert.as_bytes())?],
            PrivateKeyDer::from_pem_slice(key.as_bytes())?,
        )?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// ALPN offering only HTTP/1.1.
pub(crate) const HTTP1: &[&[u8]] = &[b"http/1.1"];
/// ALPN offering HTTP/2 first, as kubectl does.
pub(crate) const HTTP2: &[&[u8]] = &[b"h2", b"http/1.1"];

/// What [`fetch`] got back.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    pub(crate) body: String,
    /// The client's own address, as the server should see it.
    pub(crate) local: SocketAddr,
}

/// One GET over a fresh TLS connection, in whichever HTTP version ALPN chose.
pub(crate) async fn fetch(addr: SocketAddr, config: Arc<ClientConfig>, path: &str) -> anyhow::Result<Reply> {
    let tcp = TcpStream::connect(addr).await?;
    let local = tcp.local_addr()?;
    let tls = TlsConnector::from(config)
        .connect(ServerName::try_from("localhost")?, tcp)
        .await
        .context("tls handshake")?;
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(tls);
    let response = if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(connection);
        let request = Request::get(format!("https://localhost{path}")).body(Empty::<Bytes>::new())?;
        sender.send_request(request).await.context("http/2 request")?
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(connection);
        let request =
            Request::get(path).header(http::header::HOST, "localhost").body(Empty::<Bytes>::new())?;
        sender.send_request(request).await.context("http/1.1 request")?
    };
    let (status, version) = (response.status(), response.version());
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Reply { status, version, body: String::from_utf8(body.to_vec())?, local })
}
