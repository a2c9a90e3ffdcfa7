//! The metrics moved by real loopback traffic: listeners served directly (no informers), with
//! echo backends; then a whole proxy on the in-memory store, for the sync metrics and the text
//! exposition.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;
use crate::proxy::balancer::Balancer;
use crate::proxy::table::{Affinity, ListenKey, Protocol, ServiceTarget};
use crate::proxy::{Shared, tcp, udp};

/// How long any expected change may take (real sockets on loopback).
const WAIT: Duration = Duration::from_secs(10);

/// Polls `check` until it holds, failing after [`WAIT`].
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not reached within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs `test` under an outer bound naming what probably hung.
async fn bounded(what: &str, test: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(Duration::from_secs(30), test).await.is_err() {
        panic!("{what} did not finish (a proxy task or socket hung)");
    }
}

fn shared(metrics: &ProxyMetrics) -> Arc<Shared> {
    Arc::new(Shared {
        tracker: TaskTracker::new(),
        abort: CancellationToken::new(),
        tcp_connections: Arc::new(Semaphore::new(16)),
        connect_timeout: Duration::from_secs(1),
        max_udp_sessions: 16,
        udp_idle_timeout: Duration::from_secs(30),
        metrics: metrics.clone(),
    })
}

fn balancer(backends: Vec<SocketAddr>) -> Arc<Balancer> {
    Arc::new(Balancer::new(&ServiceTarget { backends, affinity: Affinity::None }))
}

fn loopback(protocol: Protocol) -> ListenKey {
    ListenKey { ip: Ipv4Addr::LOCALHOST.into(), port: 0, protocol }
}

/// A TCP backend echoing every connection until EOF.
async fn tcp_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding a backend");
    let addr = listener.local_addr().expect("a bound address");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Serves a TCP listener on loopback forwarding to `backends`; returns its address.
fn serve_tcp(shared: &Arc<Shared>, backends: Vec<SocketAddr>, stop: &CancellationToken) -> SocketAddr {
    let key = loopback(Protocol::Tcp);
    let listener = tcp::bind(key).expect("binding the service listener");
    let addr = listener.local_addr().expect("a bound address");
    let task = tcp::serve(listener, key, balancer(backends), shared.clone(), stop.clone(), stop.clone());
    shared.tracker.spawn(task);
    addr
}

#[tokio::test]
async fn a_tcp_connection_is_counted_while_open_with_its_bytes() {
    bounded("one TCP connection", async {
        let metrics = ProxyMetrics::new();
        let shared = shared(&metrics);
        let stop = CancellationToken::new();
        let service = serve_tcp(&shared, vec![tcp_echo().await], &stop);

        let mut client = TcpStream::connect(service).await.expect("connecting through the proxy");
        client.write_all(b"hello").await.expect("writing");
        let mut echo = [0u8; 5];
        client.read_exact(&mut echo).await.expect("reading the echo");
        assert_eq!(&echo, b"hello");
        let tcp = &metrics.tcp;
        assert_eq!((tcp.connections.get(), tcp.active.get(), tcp.errors.get()), (1, 1, 0));
        assert_eq!((metrics.bytes_in.get(), metrics.bytes_out.get()), (5, 5));

        drop(client);
        until("the connection no longer active", || tcp.active.get() == 0).await;
        assert_eq!(metrics.udp.connections.get(), 0, "nothing counted for the other protocol");
        stop.cancel();
    })
    .await;
}

#[tokio::test]
async fn a_tcp_connection_without_backends_is_an_error() {
    bounded("a TCP connection to nothing", async {
        let metrics = ProxyMetrics::new();
        let shared = shared(&metrics);
        let stop = CancellationToken::new();
        let service = serve_tcp(&shared, Vec::new(), &stop);

        let mut client = TcpStream::connect(service).await.expect("the listener accepts");
        let mut buf = [0u8; 1];
        // Reset (or closed): nothing is read.
        assert!(!matches!(client.read(&mut buf).await, Ok(1)), "no backend answered");
        let tcp = &metrics.tcp;
        until("the error counted", || tcp.errors.get() == 1).await;
        until("the connection no longer active", || tcp.active.get() == 0).await;
        assert_eq!(tcp.connections.get(), 1);
        assert_eq!(metrics.bytes_in.get(), 0);
        stop.cancel();
    })
    .await;
}

#[tokio::test]
async fn udp_sessions_and_dropped_datagrams_are_counted() {
    bounded("UDP sessions", async {
        let backend = UdpSocket::bind("127.0.0.1:0").await.expect("binding a UDP backend");
        let backend_addr = backend.local_addr().expect("a bound address");
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = backend.recv_from(&mut buf).await {
                let mut reply = b"re:".to_vec();
                reply.extend_from_slice(&buf[..n]);
                let _ = backend.send_to(&reply, from).await;
            }
        });
        let metrics = ProxyMetrics::new();
        let shared = shared(&metrics);
        let stop = CancellationToken::new();
        let mut services = Vec::new();
        for backends in [vec![backend_addr], Vec::new()] {
            let key = loopback(Protocol::Udp);
            let socket = udp::bind(key).await.expect("binding the service socket");
            services.push(socket.local_addr().expect("a bound address"));
            shared.tracker.spawn(udp::serve(socket, key, balancer(backends), shared.clone(), stop.clone()));
        }

        let client = UdpSocket::bind("127.0.0.1:0").await.expect("a client socket");
        client.send_to(b"ping", services[0]).await.expect("sending");
        let mut buf = [0u8; 64];
        let (n, _) = client.recv_from(&mut buf).await.expect("a reply");
        assert_eq!(&buf[..n], b"re:ping");
        let udp = &metrics.udp;
        until("the reply's bytes counted", || metrics.bytes_out.get() == 7).await;
        assert_eq!((udp.connections.get(), udp.active.get(), udp.errors.get()), (1, 1, 0));
        assert_eq!(metrics.bytes_in.get(), 4);

        // No backend: each datagram is dropped and counted, no session starts.
        client.send_to(b"lost", services[1]).await.expect("sending");
        client.send_to(b"lost", services[1]).await.expect("sending");
        until("two dropped datagrams", || udp.errors.get() == 2).await;
        assert_eq!(udp.connections.get(), 1);

        stop.cancel();
        until("the session ended with its listener", || udp.active.get() == 0).await;
    })
    .await;
}

#[tokio::test]
async fn a_running_proxy_reports_its_syncs_in_the_text_format() {
    use flotilla_core::client::{Client, LocalClient};
    use flotilla_core::object::KindRegistry;
    use flotilla_core::store::MemStore;

    use crate::proxy::{LocalAddresses, ProxyConfig, ServiceProxy};

    bounded("a proxy's first sync", async {
        let registry =
            flotilla_core::registry::Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin());
        let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry));
        let proxy = ServiceProxy::new(client, ProxyConfig::new(Vec::new(), Arc::new(LocalAddresses)));
        let metrics = proxy.metrics();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(proxy.run(shutdown.clone()));

        until("a sync", || metrics.last_sync.get() > 0.0).await;
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encoding into a String");
        let synced = text
            .lines()
            .find_map(|l| l.strip_prefix("kubeproxy_sync_proxy_rules_duration_seconds_count "))
            .and_then(|n| n.parse::<u64>().ok());
        assert!(synced.is_some_and(|n| n >= 1), "syncs observed:\n{text}");
        for line in [
            "# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge",
            r#"flotilla_proxy_connections_total{protocol="TCP"} 0"#,
            r#"flotilla_proxy_connections_total{protocol="UDP"} 0"#,
            r#"flotilla_proxy_active_connections{protocol="TCP"} 0"#,
            r#"flotilla_proxy_connection_errors_total{protocol="UDP"} 0"#,
            r#"flotilla_proxy_bytes_total{direction="in"} 0"#,
            r#"flotilla_proxy_bytes_total{direction="out"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
        shutdown.cancel();
        task.await.expect("the proxy stops cleanly");
    })
    .await;
}
