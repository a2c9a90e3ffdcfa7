//! UDP: replies reach the client that asked, from the Service address; sessions spread round
//! robin, stick to their backend, and move when it leaves.

use flotilla_node::proxy::Protocol;

use super::*;

/// Sends `payload` to `service` and returns the reply and where it came from.
async fn ask(socket: &UdpSocket, service: &str, payload: &str) -> (String, SocketAddr) {
    socket.send_to(payload.as_bytes(), service).await.expect("sending a datagram");
    let mut buf = [0u8; 2048];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no reply to {payload:?} from {service}"))
        .expect("receiving a reply");
    (String::from_utf8_lossy(&buf[..n]).into_owned(), from)
}

async fn udp_backends(n: usize) -> Vec<UdpBackend> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(UdpBackend::start(&format!("u{i}")).await);
    }
    v
}

#[tokio::test]
async fn udp_replies_return_to_the_right_client() {
    bounded("udp replies", async {
        let mut h = Harness::start(&[]).await;
        let backends = udp_backends(2).await;
        h.services().create(&service("dns", "127.50.20.1", &[("dns", 5353, "UDP")])).await.expect("service");
        let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
        publish(&h, "dns", "dns", "UDP", &addrs).await;
        h.wait_backends(&key("dns", "dns", Protocol::Udp), 2).await;

        let service_addr: SocketAddr = "127.50.20.1:5353".parse().expect("literal");
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(UdpSocket::bind("127.0.0.1:0").await.expect("a client socket"));
        }
        // First datagrams: one session per client, round robin over the two backends.
        let mut first = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            let (reply, from) = ask(c, "127.50.20.1:5353", &format!("c{i}-0")).await;
            assert_eq!(from, service_addr, "replies come from the service address");
            let (backend, payload) = reply.split_once(':').expect("id:payload");
            assert_eq!(payload, format!("c{i}-0"));
            first.push(backend.to_string());
        }
        let mut per_backend = BTreeMap::new();
        for b in &first {
            *per_backend.entry(b.clone()).or_insert(0) += 1;
        }
        assert_eq!(per_backend, BTreeMap::from([("u0".to_string(), 2), ("u1".to_string(), 2)]));

        // Interleaved traffic: every client gets its own answers, from its session's backend.
        for round in 1..=3 {
            for (i, c) in clients.iter().enumerate() {
                c.send_to(format!("c{i}-{round}").as_bytes(), service_addr).await.expect("send");
            }
            for (i, c) in clients.iter().enumerate() {
                let mut buf = [0u8; 2048];
                let (n, _) = tokio::time::timeout(Duration::from_secs(5), c.recv_from(&mut buf))
                    .await
                    .unwrap_or_else(|_| panic!("client {i} got no reply in round {round}"))
                    .expect("receiving");
                assert_eq!(String::from_utf8_lossy(&buf[..n]), format!("{}:c{i}-{round}", first[i]));
            }
        }
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_udp_session_moves_when_its_backend_leaves() {
    bounded("udp backend leaving", async {
        let mut h = Harness::start(&[]).await;
        let backends = udp_backends(2).await;
        let k = key("echo", "udp", Protocol::Udp);
        h.services().create(&service("echo", "127.50.21.1", &[("udp", 7000, "UDP")])).await.expect("service");
        let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
        publish(&h, "echo", "udp", "UDP", &addrs).await;
        h.wait_backends(&k, 2).await;

        let client = UdpSocket::bind("127.0.0.1:0").await.expect("a client socket");
        let (reply, _) = ask(&client, "127.50.21.1:7000", "one").await;
        let (first, _) = reply.split_once(':').expect("id:payload");
        let (reply, _) = ask(&client, "127.50.21.1:7000", "two").await;
        assert_eq!(reply, format!("{first}:two"), "a session sticks to its backend");

        // The slice of the backend in use (`echo-<index>`) turns unready.
        let index: usize = first.trim_start_matches('u').parse().expect("u<index>");
        set_ready(&h, &format!("echo-{index}"), false).await;
        h.wait_backends(&k, 1).await;
        let (reply, _) = ask(&client, "127.50.21.1:7000", "three").await;
        assert_eq!(reply, format!("u{}:three", 1 - index), "the next datagram goes to the remaining backend");
        h.stop().await;
    })
    .await;
}
