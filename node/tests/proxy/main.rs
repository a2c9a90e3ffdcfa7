//! The service proxy against real loopback sockets: Services and EndpointSlices are written
//! straight into an in-memory registry (no controllers), backends are tokio servers on
//! 127.0.0.1 that answer with their own id, and ClusterIPs come from `127.50.0.0/16`, which
//! is local already (so [`LocalAddresses`] serves). Each test uses ClusterIPs of its own, so
//! tests run in parallel.

mod t10_tcp;
mod t20_udp;
mod t30_addresses;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flotilla_core::client::{Api, Client, LocalClient};
use flotilla_core::object::KindRegistry;
use flotilla_core::registry::{Registry, ServiceRanges};
use flotilla_core::store::MemStore;
use flotilla_node::proxy::{
    AddressManager, LocalAddresses, ProxyConfig, ServicePortKey, ServiceProxy, Table,
};
use k8s_openapi::api::core::v1::{
    ClientIPConfig, Namespace, Service, ServicePort, ServiceSpec, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The outer bound of every test (real I/O on loopback; each takes well under a second).
const TEST_TIMEOUT: Duration = Duration::from_secs(30);
const NS: &str = "default";

/// A registry, a client and a running proxy.
struct Harness {
    client: Arc<dyn Client>,
    status: watch::Receiver<Table>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Harness {
    /// A proxy with NodePorts on `node_addresses` and nothing to add for ClusterIPs.
    async fn start(node_addresses: &[&str]) -> Harness {
        Harness::start_with(node_addresses, Arc::new(LocalAddresses), "127.50.0.0/16").await
    }

    async fn start_with(node_addresses: &[&str], addresses: Arc<dyn AddressManager>, cidr: &str) -> Harness {
        let ranges = ServiceRanges::new(cidr, 30000..=32767).expect("a valid range");
        let registry =
            Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin()).with_service_ranges(ranges);
        let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry));
        let ns = Namespace { metadata: meta(NS), ..Default::default() };
        Api::<Namespace>::all(client.clone()).create(&ns).await.expect("creating the namespace");
        let nodes = node_addresses.iter().map(|a| a.parse().expect("node address literal")).collect();
        let proxy = ServiceProxy::new(client.clone(), ProxyConfig::new(nodes, addresses));
        let status = proxy.status();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(proxy.run(shutdown.clone()));
        Harness { client, status, shutdown, task }
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), NS)
    }

    fn slices(&self) -> Api<EndpointSlice> {
        Api::namespaced(self.client.clone(), NS)
    }

    /// Waits until the table in force satisfies `check`.
    async fn wait(&mut self, what: &str, check: impl Fn(&Table) -> bool) {
        let waited = tokio::time::timeout(Duration::from_secs(10), self.status.wait_for(|t| check(t)))
            .await
            .map(|r| r.is_ok());
        match waited {
            Ok(true) => {}
            Ok(false) => panic!("{what}: the proxy stopped"),
            Err(_) => panic!("{what}: not reached; table in force: {:#?}", *self.status.borrow()),
        }
    }

    /// Waits until Service port `key` has `n` backends.
    async fn wait_backends(&mut self, key: &ServicePortKey, n: usize) {
        let what = format!("{key} with {n} backends");
        self.wait(&what, |t| t.services.get(key).is_some_and(|s| s.backends.len() == n)).await;
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("the proxy task does not panic");
    }
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.into()), ..Default::default() }
}

fn key(service: &str, port_name: &str, protocol: flotilla_node::proxy::Protocol) -> ServicePortKey {
    ServicePortKey { namespace: NS.into(), name: service.into(), port_name: port_name.into(), protocol }
}

/// A Service `name` at `cluster_ip` with ports `(name, port, protocol)`.
fn service(name: &str, cluster_ip: &str, ports: &[(&str, i32, &str)]) -> Service {
    Service {
        metadata: ObjectMeta { namespace: Some(NS.into()), ..meta(name) },
        spec: Some(ServiceSpec {
            cluster_ip: Some(cluster_ip.into()),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p, proto)| ServicePort {
                        name: Some(n.to_string()),
                        port: *p,
                        protocol: Some(proto.to_string()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            selector: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
            ..Default::default()
        }),
        status: None,
    }
}

fn with_client_ip_affinity(mut s: Service, timeout_seconds: i32) -> Service {
    if let Some(spec) = s.spec.as_mut() {
        spec.session_affinity = Some("ClientIP".into());
        spec.session_affinity_config = Some(SessionAffinityConfig {
            client_ip: Some(ClientIPConfig { timeout_seconds: Some(timeout_seconds) }),
        });
    }
    s
}

/// A slice of `service` holding one endpoint at `backend`, its port named `port_name`.
fn slice(
    name: &str,
    service: &str,
    port_name: &str,
    protocol: &str,
    backend: SocketAddr,
    ready: bool,
) -> EndpointSlice {
    EndpointSlice {
        address_type: "IPv4".into(),
        endpoints: vec![Endpoint {
            addresses: vec![backend.ip().to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(ready),
                terminating: Some(false),
            }),
            ..Default::default()
        }],
        metadata: ObjectMeta {
            namespace: Some(NS.into()),
            labels: Some(BTreeMap::from([("kubernetes.io/service-name".to_string(), service.to_string())])),
            ..meta(name)
        },
        ports: Some(vec![EndpointPort {
            name: Some(port_name.into()),
            port: Some(i32::from(backend.port())),
            protocol: Some(protocol.into()),
            app_protocol: None,
        }]),
    }
}

/// Writes one slice per backend for `service`, named `<service>-<i>`, all ready.
async fn publish(h: &Harness, service: &str, port_name: &str, protocol: &str, backends: &[SocketAddr]) {
    for (i, b) in backends.iter().enumerate() {
        let s = slice(&format!("{service}-{i}"), service, port_name, protocol, *b, true);
        h.slices().create(&s).await.expect("creating a slice");
    }
}

/// Replaces the readiness of slice `name`'s endpoint.
async fn set_ready(h: &Harness, name: &str, ready: bool) {
    let mut s = h.slices().get(name).await.expect("reading the slice");
    for e in &mut s.endpoints {
        e.conditions =
            Some(EndpointConditions { ready: Some(ready), serving: Some(ready), terminating: Some(false) });
    }
    h.slices().replace(name, &s).await.expect("updating the slice");
}

/// A TCP backend: sends `<id>\n` on accept, then echoes until EOF, then closes.
struct TcpBackend {
    id: String,
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// Connections open now.
    open: watch::Receiver<usize>,
    task: JoinHandle<()>,
}

impl TcpBackend {
    async fn start(id: &str) -> TcpBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding a backend");
        let addr = listener.local_addr().expect("a bound address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let (open_tx, open) = watch::channel(0usize);
        let (count, name) = (accepted.clone(), id.to_string());
        let task = tokio::spawn(async move {
            let open_tx = Arc::new(open_tx);
            while let Ok((mut conn, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                open_tx.send_modify(|n| *n += 1);
                let greeting = format!("{name}\n");
                let open_tx = open_tx.clone();
                tokio::spawn(async move {
                    if conn.write_all(greeting.as_bytes()).await.is_ok() {
                        let (mut r, mut w) = conn.split();
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    }
                    open_tx.send_modify(|n| *n -= 1);
                });
            }
        });
        TcpBackend { id: id.to_string(), addr, accepted, open, task }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits until the backend has `n` connections open.
    async fn wait_open(&self, n: usize) {
        let mut rx = self.open.clone();
        let reached = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|o| *o == n)).await;
        assert!(
            reached.is_ok_and(|r| r.is_ok()),
            "backend {}: {} connections open, not {n}",
            self.id,
            *rx.borrow()
        );
    }
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tcp_backends(n: usize) -> Vec<TcpBackend> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(TcpBackend::start(&format!("b{i}")).await);
    }
    v
}

/// A connection through the proxy, greeted with its backend's id.
struct Conn {
    backend: String,
    reader: BufReader<TcpStream>,
}

impl Conn {
    /// Connects to `addr` (from `source`, if given) and reads the backend's greeting.
    async fn open(addr: &str, source: Option<&str>) -> Conn {
        let addr: SocketAddr = addr.parse().expect("service address literal");
        let socket = TcpSocket::new_v4().expect("a socket");
        if let Some(src) = source {
            let src: IpAddr = src.parse().expect("source address literal");
            socket.bind(SocketAddr::new(src, 0)).expect("binding the client address");
        }
        let stream = socket.connect(addr).await.unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        let mut reader = BufReader::new(stream);
        let mut backend = String::new();
        reader.read_line(&mut backend).await.expect("reading the greeting");
        assert!(backend.ends_with('\n'), "a whole greeting from {addr}, got {backend:?}");
        backend.pop();
        Conn { backend, reader }
    }

    /// Sends a line and reads its echo.
    async fn echo(&mut self, line: &str) -> String {
        self.reader.get_mut().write_all(format!("{line}\n").as_bytes()).await.expect("writing");
        let mut back = String::new();
        self.reader.read_line(&mut back).await.expect("reading the echo");
        back.trim_end().to_string()
    }
}

/// Opens `n` connections one after another and counts them per backend id.
async fn spread(addr: &str, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        *counts.entry(Conn::open(addr, None).await.backend).or_default() += 1;
    }
    counts
}

/// A UDP backend answering each datagram with `<id>:<datagram>`.
struct UdpBackend {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl UdpBackend {
    async fn start(id: &str) -> UdpBackend {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("binding a udp backend");
        let addr = socket.local_addr().expect("a bound address");
        let id = id.to_string();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let reply = format!("{id}:{}", String::from_utf8_lossy(&buf[..n]));
                let _ = socket.send_to(reply.as_bytes(), from).await;
            }
        });
        UdpBackend { addr, task }
    }
}

impl Drop for UdpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs `test` under [`TEST_TIMEOUT`], naming what probably hung.
async fn bounded<F: std::future::Future<Output = ()>>(what: &str, test: F) {
    if tokio::time::timeout(TEST_TIMEOUT, test).await.is_err() {
        panic!("{what} did not finish within {TEST_TIMEOUT:?} (a proxy task or socket hung)");
    }
}
