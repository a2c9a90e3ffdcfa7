//! Service proxy throughput on loopback, direct to a backend and through the proxy, in the
//! same run, with the ratio proxy/direct:
//!
//! - connections/s: `--clients` concurrent clients each, in a loop, connect, send one byte,
//!   read it back and read to EOF (the backend closes first, so TIME_WAIT lands on the server
//!   side and the client's ephemeral ports are not exhausted), with the latency of each such
//!   round trip;
//! - bytes/s: `--streams` long connections to an echo backend, each writing `--chunk`-byte
//!   writes for the whole period while reading the echo back; bytes counted are those echoed.
//!
//! The proxy runs in-process on an in-memory registry (a Service per backend, ClusterIPs in
//! `127.77.0.0/16`, local already), on the same tokio runtime as the clients and backends: the
//! figures compare paths on one machine, they are not capacity numbers.
//!
//! `cargo run --release -p flotilla-benches --bin proxy_bench -- [--quick]`

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use flotilla_core::client::{Api, Client, LocalClient};
use flotilla_core::object::KindRegistry;
use flotilla_core::registry::{Registry, ServiceRanges};
use flotilla_core::store::MemStore;
use flotilla_node::proxy::{LocalAddresses, ProxyConfig, ServiceProxy};
use hdrhistogram::Histogram;
use k8s_openapi::api::core::v1::{Namespace, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    /// A short run (1 s per measurement, fewer clients) to check the harness works.
    #[arg(long)]
    quick: bool,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent clients for connections/s.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Long connections for bytes/s.
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// Bytes per write for bytes/s.
    #[arg(long, default_value_t = 64 * 1024)]
    chunk: usize,
}

const PING_IP: &str = "127.77.0.10";
const STREAM_IP: &str = "127.77.0.11";
const SERVICE_PORT: u16 = 9000;

/// Answers one byte with one byte, then closes.
async fn ping_backend() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut b = [0u8; 1];
                if conn.read_exact(&mut b).await.is_ok() {
                    let _ = conn.write_all(&b).await;
                }
            });
        }
    });
    Ok(addr)
}

/// Echoes until EOF.
async fn echo_backend() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let _ = conn.set_nodelay(true);
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Ok(addr)
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.into()), namespace: Some("default".into()), ..Default::default() }
}

/// A Service `name` at `ip`:[`SERVICE_PORT`] with one slice holding `backend`.
async fn publish(client: &Arc<dyn Client>, name: &str, ip: &str, backend: SocketAddr) -> anyhow::Result<()> {
    let service = Service {
        metadata: meta(name),
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.into()),
            ports: Some(vec![ServicePort { port: i32::from(SERVICE_PORT), ..Default::default() }]),
            ..Default::default()
        }),
        status: None,
    };
    Api::<Service>::namespaced(client.clone(), "default").create(&service).await?;
    let slice = EndpointSlice {
        address_type: "IPv4".into(),
        endpoints: vec![Endpoint {
            addresses: vec![backend.ip().to_string()],
            conditions: Some(EndpointConditions { ready: Some(true), ..Default::default() }),
            ..Default::default()
        }],
        metadata: ObjectMeta {
            labels: Some(BTreeMap::from([("kubernetes.io/service-name".to_string(), name.to_string())])),
            ..meta(&format!("{name}-1"))
        },
        ports: Some(vec![EndpointPort { port: Some(i32::from(backend.port())), ..Default::default() }]),
    };
    Api::<EndpointSlice>::namespaced(client.clone(), "default").create(&slice).await?;
    Ok(())
}

struct ConnResult {
    per_second: f64,
    latency: Histogram<u64>,
    errors: u64,
}

/// Connections per second against `target`.
async fn connections(target: SocketAddr, clients: usize, period: Duration) -> anyhow::Result<ConnResult> {
    let deadline = Instant::now() + period;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).expect("3 significant figures is a valid precision");
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = async {
                    let mut s = TcpStream::connect(target).await?;
                    s.write_all(b"x").await?;
                    let mut b = [0u8; 1];
                    s.read_exact(&mut b).await?;
                    let mut rest = Vec::new();
                    s.read_to_end(&mut rest).await?;
                    anyhow::Ok(())
                }
                .await;
                match ok {
                    Ok(()) => h.record(t.elapsed().as_micros() as u64).expect("latencies fit the histogram"),
                    Err(_) => errors += 1,
                }
            }
            (h, errors)
        }));
    }
    let mut latency = Histogram::<u64>::new(3)?;
    let mut errors = 0;
    for t in tasks {
        let (h, e) = t.await?;
        latency.add(&h)?;
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(ConnResult { per_second: latency.len() as f64 / elapsed, latency, errors })
}

/// Echoed bytes per second over `streams` connections to `target`.
async fn bytes(target: SocketAddr, streams: usize, chunk: usize, period: Duration) -> anyhow::Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let echoed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let s = TcpStream::connect(target).await.with_context(|| format!("connecting to {target}"))?;
        s.set_nodelay(true)?;
        let (mut r, mut w) = s.into_split();
        let stop_w = stop.clone();
        tasks.push(tokio::spawn(async move {
            let buf = vec![0x5au8; chunk];
            while !stop_w.load(Ordering::Relaxed) {
                w.write_all(&buf).await?;
            }
            w.shutdown().await?;
            anyhow::Ok(())
        }));
        let count = echoed.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; chunk];
            loop {
                let n = r.read(&mut buf).await?;
                if n == 0 {
                    return anyhow::Ok(());
                }
                count.fetch_add(n as u64, Ordering::Relaxed);
            }
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(period).await;
    let total = echoed.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    Ok(total as f64 / elapsed)
}

fn ratio(proxy: f64, direct: f64) -> String {
    if direct > 0.0 { format!("{:.2}", proxy / direct) } else { "-".into() }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.seconds = 1;
        args.clients = args.clients.min(8);
        args.streams = args.streams.min(2);
    }
    let period = Duration::from_secs(args.seconds);

    let ranges = ServiceRanges::new("127.77.0.0/16", 30000..=32767).map_err(anyhow::Error::msg)?;
    let registry =
        Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin()).with_service_ranges(ranges);
    let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry));
    let ns = Namespace {
        metadata: ObjectMeta { name: Some("default".into()), ..Default::default() },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone()).create(&ns).await?;

    let ping = ping_backend().await?;
    let echo = echo_backend().await?;
    publish(&client, "ping", PING_IP, ping).await?;
    publish(&client, "stream", STREAM_IP, echo).await?;
    let proxy = ServiceProxy::new(client.clone(), ProxyConfig::new(Vec::new(), Arc::new(LocalAddresses)));
    let mut status = proxy.status();
    let shutdown = CancellationToken::new();
    let proxy_task = tokio::spawn(proxy.run(shutdown.clone()));
    let ready =
        status.wait_for(|t| t.listeners.len() == 2 && t.services.values().all(|s| s.backends.len() == 1));
    if tokio::time::timeout(Duration::from_secs(10), ready).await.is_err() {
        bail!("the proxy did not open its two listeners within 10 s");
    }
    let ping_svc: SocketAddr = format!("{PING_IP}:{SERVICE_PORT}").parse()?;
    let stream_svc: SocketAddr = format!("{STREAM_IP}:{SERVICE_PORT}").parse()?;

    println!(
        "proxy_bench: {} s per measurement, {} clients for connections, {} streams of {} B writes",
        args.seconds, args.clients, args.streams, args.chunk
    );
    let direct_c = connections(ping, args.clients, period).await?;
    let proxy_c = connections(ping_svc, args.clients, period).await?;
    let direct_b = bytes(echo, args.streams, args.chunk, period).await?;
    let proxy_b = bytes(stream_svc, args.streams, args.chunk, period).await?;

    println!("{:<28} {:>14} {:>14} {:>12}", "metric", "direct", "proxy", "proxy/direct");
    println!(
        "{:<28} {:>14.0} {:>14.0} {:>12}",
        "connections/s",
        direct_c.per_second,
        proxy_c.per_second,
        ratio(proxy_c.per_second, direct_c.per_second)
    );
    for (name, q) in [("connection p50 (us)", 0.5), ("connection p99 (us)", 0.99)] {
        let (d, p) = (direct_c.latency.value_at_quantile(q), proxy_c.latency.value_at_quantile(q));
        println!("{name:<28} {d:>14} {p:>14} {:>12}", ratio(p as f64, d as f64));
    }
    println!("{:<28} {:>14} {:>14}", "connection errors", direct_c.errors, proxy_c.errors);
    let mib = |b: f64| b / (1024.0 * 1024.0);
    println!(
        "{:<28} {:>14.1} {:>14.1} {:>12}",
        "MiB/s (echoed)",
        mib(direct_b),
        mib(proxy_b),
        ratio(proxy_b, direct_b)
    );

    shutdown.cancel();
    proxy_task.await?;
    Ok(())
}
