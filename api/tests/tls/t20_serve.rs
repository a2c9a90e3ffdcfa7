//! TLS serving: who the handler sees for each kind of client, over HTTP/1.1 and HTTP/2.

use std::time::Duration;

use flotilla_api::pki::ClientAuth;
use flotilla_api::tls::ServeOptions;
use http::{StatusCode, Version};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::support::{HTTP1, HTTP2, TestPki, TestServer, client_config, fetch, whoami_router, within};

#[tokio::test]
async fn admin_certificate_reaches_the_handler_as_peer_certificate() -> anyhow::Result<()> {
    within("admin request over http/1.1 and http/2", 30, async {
        let t = TestPki::new()?;
        let server =
            TestServer::start(&t.pki, ClientAuth::Optional, whoami_router(), ServeOptions::default()).await?;
        let admin_cert = t.pki.admin_cert_pem().to_string();
        let admin_key = t.pki.admin_key_pem();
        for (alpn, version) in [(HTTP1, Version::HTTP_11), (HTTP2, Version::HTTP_2)] {
            let config = client_config(t.pki.ca_pem(), Some((&admin_cert, &admin_key)), alpn)?;
            let reply = fetch(server.addr, config, "/whoami").await?;
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(reply.version, version);
            assert_eq!(
                reply.body,
                format!("user=flotilla-admin groups=system:masters peer={} version={version:?}", reply.local)
            );
        }
        server.stop().await
    })
    .await
}

#[tokio::test]
async fn client_without_certificate_is_anonymous() -> anyhow::Result<()> {
    within("anonymous request", 30, async {
        let t = TestPki::new()?;
        let server =
            TestServer::start(&t.pki, ClientAuth::Optional, whoami_router(), ServeOptions::default()).await?;
        let reply = fetch(server.addr, client_config(t.pki.ca_pem(), None, HTTP2)?, "/whoami").await?;
        assert_eq!(reply.body, format!("user=anonymous groups= peer={} version=HTTP/2.0", reply.local));
        server.stop().await
    })
    .await
}

#[tokio::test]
async fn issued_client_certificate_carries_every_group() -> anyhow::Result<()> {
    within("request with an issued node certificate", 30, async {
        let t = TestPki::new()?;
        let server =
            TestServer::start(&t.pki, ClientAuth::Optional, whoami_router(), ServeOptions::default()).await?;
        let groups = vec!["system:nodes".to_string(), "system:authenticated".to_string()];
        let (cert, key) = t.pki.issue_client_cert("system:node:n1", &groups, Duration::from_secs(3600))?;
        let reply =
            fetch(server.addr, client_config(t.pki.ca_pem(), Some((&cert, &key)), HTTP1)?, "/whoami").await?;
        assert!(
            reply.body.starts_with("user=system:node:n1 groups=system:nodes,system:authenticated "),
            "{}",
            reply.body
        );
        server.stop().await
    })
    .await
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused_and_the_server_keeps_serving() -> anyhow::Result<()> {
    within("requests with a foreign certificate", 30, async {
        let t = TestPki::new()?;
        let other = TestPki::new()?;
        let server =
            TestServer::start(&t.pki, ClientAuth::Optional, whoami_router(), ServeOptions::default()).await?;
        let foreign_key = other.pki.admin_key_pem();
        for alpn in [HTTP1, HTTP2] {
            let config =
                client_config(t.pki.ca_pem(), Some((&other.pki.admin_cert_pem(), &foreign_key)), alpn)?;
            // With TLS 1.3 the client finishes its half of the handshake before the server
            // rejects the certificate, so the refusal may surface on the first request. Both
            // CAs are named flotilla-ca, so the server finds "its" issuer and reports the
            // signature as bad (DecryptError) rather than the issuer as unknown.
            let err = fetch(server.addr, config, "/whoami").await.expect_err("foreign certificate accepted");
            let chain = format!("{err:#}");
            assert!(chain.contains("received fatal alert"), "{chain}");
        }
        // The failed handshakes did not stop the accept loop.
        let reply = fetch(server.addr, client_config(t.pki.ca_pem(), None, HTTP1)?, "/whoami").await?;
        assert!(reply.body.starts_with("user=anonymous"), "{}", reply.body);
        server.stop().await
    })
    .await
}

#[tokio::test]
async fn required_client_auth_refuses_anonymous_clients() -> anyhow::Result<()> {
    within("requests against a server requiring certificates", 30, async {
        let t = TestPki::new()?;
        let server =
            TestServer::start(&t.pki, ClientAuth::Required, whoami_router(), ServeOptions::default()).await?;
        let err = fetch(server.addr, client_config(t.pki.ca_pem(), None, HTTP1)?, "/whoami")
            .await
            .expect_err("anonymous client accepted");
        assert!(format!("{err:#}").contains("CertificateRequired"), "{err:#}");
        let key = t.pki.admin_key_pem();
        let config = client_config(t.pki.ca_pem(), Some((&t.pki.admin_cert_pem(), &key)), HTTP1)?;
        assert!(fetch(server.addr, config, "/whoami").await?.body.starts_with("user=flotilla-admin"));
        server.stop().await
    })
    .await
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_handshake_timeout() -> anyhow::Result<()> {
    within("a silent client being disconnected (handshake timeout not enforced?)", 30, async {
        let t = TestPki::new()?;
        let options =
            ServeOptions { handshake_timeout: Duration::from_millis(200), ..ServeOptions::default() };
        let server = TestServer::start(&t.pki, ClientAuth::Optional, whoami_router(), options).await?;
        let mut silent = TcpStream::connect(server.addr).await?;
        let mut buf = [0u8; 16];
        // The server closes the connection without sending anything.
        assert_eq!(silent.read(&mut buf).await?, 0);
        server.stop().await
    })
    .await
}

#[tokio::test]
async fn plain_http_serving_sets_connect_info() -> anyhow::Result<()> {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;

    within("plain-HTTP request", 30, async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(flotilla_api::tls::serve_plain(listener, whoami_router(), shutdown.clone()));

        let tcp = TcpStream::connect(addr).await?;
        let local = tcp.local_addr()?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(connection);
        let request = http::Request::get("/whoami").header("host", "x").body(Empty::<Bytes>::new())?;
        let body = sender.send_request(request).await?.into_body().collect().await?.to_bytes();
        assert_eq!(body, format!("user=anonymous groups= peer={local} version=HTTP/1.1"));

        shutdown.cancel();
        task.await??;
        Ok(())
    })
    .await
}

/// The certificate the server at `addr` presents in a new handshake (trusting `ca_pem`).
async fn presented(addr: std::net::SocketAddr, ca_pem: &str) -> anyhow::Result<Vec<u8>> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(client_config(ca_pem, None, HTTP1)?);
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let tls = connector.connect(name, tcp).await?;
    let certs = tls.get_ref().1.peer_certificates().unwrap_or_default();
    Ok(certs.first().map(|c| c.as_ref().to_vec()).unwrap_or_default())
}

#[tokio::test]
async fn a_serving_certificate_near_its_end_is_renewed_and_presented_without_a_restart() -> anyhow::Result<()>
{
    use rustls::pki_types::pem::PemObject as _;
    within("serving certificate renewal", 10, async {
        let test_pki = TestPki::new()?;
        let pki = &test_pki.pki;
        let server =
            TestServer::start(pki, ClientAuth::Optional, whoami_router(), ServeOptions::default()).await?;
        let original = pki.serving_cert_pem();
        let der = |pem: &str| -> anyhow::Result<Vec<u8>> {
            Ok(rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())?.as_ref().to_vec())
        };
        assert_eq!(presented(server.addr, pki.ca_pem()).await?, der(&original)?);

        // A fresh certificate is not due; eleven months and a half later it is.
        assert!(!pki.renew_serving_if_due(std::time::SystemTime::now())?);
        let later = std::time::SystemTime::now() + Duration::from_secs(350 * 24 * 60 * 60);
        assert!(pki.renew_serving_if_due(later)?);
        let renewed = pki.serving_cert_pem();
        assert_ne!(renewed, original);
        // Stored where a start loads it, and presented by the server started before.
        let stored = std::fs::read_to_string(pki.dir().join("apiserver.crt"))?;
        assert_eq!(stored, renewed);
        assert_eq!(presented(server.addr, pki.ca_pem()).await?, der(&renewed)?);
        let reloaded = flotilla_api::pki::ClusterPki::load_or_create(pki.dir(), &[])?;
        assert_eq!(reloaded.serving_cert_pem(), renewed, "a restart keeps the renewed certificate");
        server.stop().await
    })
    .await
}
