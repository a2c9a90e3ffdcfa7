//! TCP: round robin, readiness, affinity, NodePorts, retries, half-close, deletion.

use flotilla_node::proxy::Protocol;
use tokio::io::AsyncReadExt;

use super::*;

#[tokio::test]
async fn connections_are_spread_evenly_over_backends() {
    bounded("spreading 300 connections", async {
        let mut h = Harness::start(&[]).await;
        let backends = tcp_backends(3).await;
        h.services().create(&service("web", "127.50.1.1", &[("http", 8080, "TCP")])).await.expect("service");
        let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
        publish(&h, "web", "http", "TCP", &addrs).await;
        h.wait_backends(&key("web", "http", Protocol::Tcp), 3).await;

        let counts = spread("127.50.1.1:8080", 300).await;
        let expected: BTreeMap<String, usize> = backends.iter().map(|b| (b.id.clone(), 100)).collect();
        assert_eq!(counts, expected);
        assert!(backends.iter().all(|b| b.accepted() == 100));
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_unready_endpoint_gets_no_new_connections_and_established_ones_survive() {
    bounded("readiness change", async {
        let mut h = Harness::start(&[]).await;
        let backends = tcp_backends(3).await;
        let k = key("web", "http", Protocol::Tcp);
        h.services().create(&service("web", "127.50.2.1", &[("http", 8080, "TCP")])).await.expect("service");
        let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
        publish(&h, "web", "http", "TCP", &addrs).await;
        h.wait_backends(&k, 3).await;

        // Three connections in a row: one established connection to each backend.
        let mut conns = Vec::new();
        for _ in 0..3 {
            conns.push(Conn::open("127.50.2.1:8080", None).await);
        }
        let ids: Vec<&str> = conns.iter().map(|c| c.backend.as_str()).collect();
        assert_eq!(ids.iter().collect::<std::collections::BTreeSet<_>>().len(), 3, "{ids:?}");

        // Backend b1 (slice web-1) becomes unready.
        set_ready(&h, "web-1", false).await;
        h.wait_backends(&k, 2).await;
        let before = backends[1].accepted();
        let counts = spread("127.50.2.1:8080", 30).await;
        assert_eq!(backends[1].accepted(), before, "the unready backend was given a connection");
        let expected = BTreeMap::from([("b0".to_string(), 15), ("b2".to_string(), 15)]);
        assert_eq!(counts, expected);

        // Every established connection still works, including the one to the unready backend.
        for c in &mut conns {
            assert_eq!(c.echo("still there").await, "still there", "connection to {}", c.backend);
        }
        // Ready again: it is back in the rotation.
        set_ready(&h, "web-1", true).await;
        h.wait_backends(&k, 3).await;
        let counts = spread("127.50.2.1:8080", 30).await;
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![10, 10, 10], "{counts:?}");
        // Closed first, so shutdown need not wait out its grace period for them.
        drop(conns);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn client_ip_affinity_keeps_a_client_on_one_backend() {
    bounded("affinity", async {
        let mut h = Harness::start(&[]).await;
        let backends = tcp_backends(3).await;
        let svc = with_client_ip_affinity(service("sticky", "127.50.3.1", &[("http", 8080, "TCP")]), 600);
        h.services().create(&svc).await.expect("service");
        let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
        publish(&h, "sticky", "http", "TCP", &addrs).await;
        h.wait_backends(&key("sticky", "http", Protocol::Tcp), 3).await;

        let mut seen = Vec::new();
        for client in ["127.0.70.1", "127.0.70.2"] {
            let mut ids = std::collections::BTreeSet::new();
            for _ in 0..10 {
                ids.insert(Conn::open("127.50.3.1:8080", Some(client)).await.backend);
            }
            assert_eq!(ids.len(), 1, "client {client} went to {ids:?}");
            seen.extend(ids);
        }
        assert_ne!(seen[0], seen[1], "a new client moves round robin on");
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn node_ports_share_the_service_port_balancer() {
    bounded("node port", async {
        let mut h = Harness::start(&["127.0.60.1"]).await;
        let backends = tcp_backends(2).await;
        let mut svc = service("np", "127.50.4.1", &[("http", 8080, "TCP")]);
        if let Some(spec) = svc.spec.as_mut() {
            spec.type_ = Some("NodePort".into());
            if let Some(p) = spec.ports.as_mut().and_then(|p| p.first_mut()) {
                p.node_port = Some(30_480);
            }
        }
        h.services().create(&svc).await.expect("service");
        let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
        publish(&h, "np", "http", "TCP", &addrs).await;
        h.wait_backends(&key("np", "http", Protocol::Tcp), 2).await;
        h.wait("node port listener", |t| t.listeners.keys().any(|l| l.port == 30_480)).await;

        let mut ids = Vec::new();
        for addr in ["127.0.60.1:30480", "127.50.4.1:8080", "127.0.60.1:30480", "127.50.4.1:8080"] {
            ids.push(Conn::open(addr, None).await.backend);
        }
        assert_ne!(ids[0], ids[1], "one rotation over both addresses: {ids:?}");
        assert_eq!((&ids[2], &ids[3]), (&ids[0], &ids[1]), "one rotation over both addresses: {ids:?}");
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_refusing_backend_is_skipped() {
    bounded("connect retry", async {
        let mut h = Harness::start(&[]).await;
        let live = TcpBackend::start("live").await;
        // A port nothing listens on: bound, then closed.
        let dead = TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr");
        h.services()
            .create(&service("flaky", "127.50.5.1", &[("http", 8080, "TCP")]))
            .await
            .expect("service");
        publish(&h, "flaky", "http", "TCP", &[dead, live.addr]).await;
        h.wait_backends(&key("flaky", "http", Protocol::Tcp), 2).await;
        let counts = spread("127.50.5.1:8080", 6).await;
        assert_eq!(counts, BTreeMap::from([("live".to_string(), 6)]));
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn half_close_reaches_the_backend_and_the_answer_still_comes_back() {
    bounded("half close", async {
        let mut h = Harness::start(&[]).await;
        let backend = TcpBackend::start("b0").await;
        h.services().create(&service("half", "127.50.6.1", &[("tcp", 7000, "TCP")])).await.expect("service");
        publish(&h, "half", "tcp", "TCP", &[backend.addr]).await;
        h.wait_backends(&key("half", "tcp", Protocol::Tcp), 1).await;

        let mut stream = TcpStream::connect("127.50.6.1:7000").await.expect("connect");
        stream.write_all(b"request body").await.expect("write");
        stream.shutdown().await.expect("half-close");
        let mut all = String::new();
        stream.read_to_string(&mut all).await.expect("reading to EOF");
        assert_eq!(all, "b0\nrequest body", "the echo arrives after our FIN, then the backend's FIN");
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn without_backends_connections_are_reset() {
    bounded("no backends", async {
        let mut h = Harness::start(&[]).await;
        h.services()
            .create(&service("empty", "127.50.7.1", &[("http", 8080, "TCP")]))
            .await
            .expect("service");
        h.wait("listener for an empty service", |t| !t.listeners.is_empty()).await;
        let mut stream = TcpStream::connect("127.50.7.1:8080").await.expect("the listener accepts");
        let mut buf = [0u8; 16];
        match stream.read(&mut buf).await {
            Ok(0) => {}
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
            Ok(n) => panic!("read {n} bytes from a service without backends"),
        }
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_deleted_service_stops_listening_and_cuts_its_connections() {
    bounded("deletion", async {
        let mut h = Harness::start(&[]).await;
        let backend = TcpBackend::start("b0").await;
        h.services().create(&service("gone", "127.50.8.1", &[("http", 8080, "TCP")])).await.expect("service");
        publish(&h, "gone", "http", "TCP", &[backend.addr]).await;
        h.wait_backends(&key("gone", "http", Protocol::Tcp), 1).await;
        let mut conn = Conn::open("127.50.8.1:8080", None).await;
        assert_eq!(conn.echo("hi").await, "hi");
        backend.wait_open(1).await;

        h.services().delete("gone", &Default::default()).await.expect("delete");
        h.wait("no listeners once the service is gone", |t| t.listeners.is_empty() && t.services.is_empty())
            .await;
        let e = TcpStream::connect("127.50.8.1:8080").await.expect_err("nothing listens any more");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
        // Its ClusterIP released, the established connection is cut on both sides.
        backend.wait_open(0).await;
        let mut rest = String::new();
        let n = conn.reader.read_to_string(&mut rest).await.unwrap_or(0);
        assert_eq!(n, 0, "nothing more comes through a cut connection: {rest:?}");
        h.stop().await;
    })
    .await;
}
