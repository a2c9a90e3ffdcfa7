//! `probe_once` against a fake runtime (exec) and real loopback servers (httpGet, tcpSocket).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ExecAction, GRPCAction, HTTPGetAction, HTTPHeader, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::fake::{FakeRuntime, Script};
use crate::probe::{Probe, ProbeOutcome, probe_once};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub(super) async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what} probably deadlocked"))
}

fn exec_probe(command: &[&str]) -> Probe {
    Probe {
        exec: Some(ExecAction { command: Some(command.iter().map(|s| s.to_string()).collect()) }),
        timeout_seconds: Some(2),
        ..Default::default()
    }
}

async fn run(probe: &Probe, container: &Container) -> ProbeOutcome {
    probe_once(&FakeRuntime::default(), "c1", Some(LOCALHOST), container, probe).await
}

#[tokio::test(start_paused = true)]
async fn exec_exit_codes_timeouts_and_errors() {
    within("exec probes against the fake runtime", async {
        let rt = FakeRuntime::default();
        rt.set("fail", Script::Exit(3, "not ready yet\n"));
        rt.set("quiet", Script::Exit(1, ""));
        rt.set("broken", Script::Fail);
        rt.set("hang", Script::Hang);
        let c = Container::default();
        let ok = probe_once(&rt, "c1", None, &c, &exec_probe(&["ok"])).await;
        assert_eq!(ok, ProbeOutcome::Success);
        match probe_once(&rt, "c1", None, &c, &exec_probe(&["fail"])).await {
            ProbeOutcome::Failure(m) => assert!(m.contains("code 3") && m.ends_with("not ready yet"), "{m}"),
            other => panic!("exit 3 should fail, got {other:?}"),
        }
        match probe_once(&rt, "c1", None, &c, &exec_probe(&["quiet"])).await {
            ProbeOutcome::Failure(m) => assert!(m.ends_with("exited with code 1"), "{m}"),
            other => panic!("exit 1 should fail, got {other:?}"),
        }
        assert!(matches!(
            probe_once(&rt, "c1", None, &c, &exec_probe(&["broken"])).await,
            ProbeOutcome::Unknown(m) if m.contains("not found")
        ));
        let before = tokio::time::Instant::now();
        match probe_once(&rt, "c1", None, &c, &exec_probe(&["hang"])).await {
            ProbeOutcome::Failure(m) => assert!(m.contains("timed out"), "{m}"),
            other => panic!("a hanging command should time out, got {other:?}"),
        }
        assert_eq!(before.elapsed(), Duration::from_secs(2), "timeoutSeconds bounds the exec");
        let calls = rt.calls();
        assert_eq!(calls.len(), 5);
        assert!(calls.iter().all(|c| c.container_id == "c1"));
        let empty = probe_once(&rt, "c1", None, &c, &exec_probe(&[])).await;
        assert!(matches!(empty, ProbeOutcome::Unknown(_)), "{empty:?}");
    })
    .await;
}

#[tokio::test]
async fn grpc_and_missing_handlers_are_unknown() {
    within("probes that cannot run", async {
        let grpc = Probe { grpc: Some(GRPCAction { port: 9000, service: None }), ..Default::default() };
        assert_eq!(
            run(&grpc, &Container::default()).await,
            ProbeOutcome::Unknown("grpc probes are not supported".into())
        );
        assert!(matches!(run(&Probe::default(), &Container::default()).await, ProbeOutcome::Unknown(_)));
        let https = Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(443),
                scheme: Some("HTTPS".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(matches!(run(&https, &Container::default()).await, ProbeOutcome::Unknown(_)));
    })
    .await;
}

/// A loopback HTTP server answering every request with `response` (or never answering),
/// recording the requests' heads.
struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(response: Option<&str>) -> Server {
        let response = response.map(str::to_string);
        let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            // Connections that never get an answer stay open until the server is dropped.
            let mut held = Vec::new();
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                seen.lock().expect("test lock").push(String::from_utf8_lossy(&head).into_owned());
                match &response {
                    Some(r) => {
                        let _ = conn.write_all(r.as_bytes()).await;
                        let _ = conn.shutdown().await;
                    }
                    None => held.push(conn),
                }
            }
        });
        Server { addr, requests, task }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("test lock").clone()
    }
}

fn http_probe(port: IntOrString, path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction { port, path: Some(path.into()), ..Default::default() }),
        timeout_seconds: Some(1),
        ..Default::default()
    }
}

#[tokio::test]
async fn http_status_decides() {
    within("http probes against loopback servers", async {
        let ok = Server::start(Some("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")).await;
        let port = IntOrString::Int(i32::from(ok.addr.port()));
        assert_eq!(run(&http_probe(port, "/healthz"), &Container::default()).await, ProbeOutcome::Success);
        let reqs = ok.requests();
        assert_eq!(reqs.len(), 1);
        assert!(reqs[0].starts_with("GET /healthz HTTP/1.1\r\n"), "{}", reqs[0]);
        assert!(reqs[0].contains("User-Agent: kube-probe/"), "{}", reqs[0]);

        let err = Server::start(Some("HTTP/1.1 500 Internal Server Error\r\n\r\n")).await;
        let port = IntOrString::Int(i32::from(err.addr.port()));
        assert_eq!(
            run(&http_probe(port, "/"), &Container::default()).await,
            ProbeOutcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
    })
    .await;
}

#[tokio::test]
async fn http_redirect_is_not_followed() {
    within("an http probe answered with a redirect", async {
        let target = Server::start(Some("HTTP/1.1 500 Internal Server Error\r\n\r\n")).await;
        let redirect = format!("HTTP/1.1 302 Found\r\nLocation: http://{}/elsewhere\r\n\r\n", target.addr);
        let server = Server::start(Some(&redirect)).await;
        let port = IntOrString::Int(i32::from(server.addr.port()));
        assert_eq!(run(&http_probe(port, "/"), &Container::default()).await, ProbeOutcome::Success);
        assert_eq!(server.requests().len(), 1);
        assert!(target.requests().is_empty(), "the redirect target must not be requested");
    })
    .await;
}

#[tokio::test]
async fn http_named_port_and_headers() {
    within("an http probe on a named port", async {
        let server = Server::start(Some("HTTP/1.0 204 No Content\r\n\r\n")).await;
        let container = Container {
            name: "web".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: i32::from(server.addr.port()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let mut probe = http_probe(IntOrString::String("http".into()), "ready");
        if let Some(get) = probe.http_get.as_mut() {
            get.http_headers = Some(vec![
                HTTPHeader { name: "X-Custom".into(), value: "yes".into() },
                HTTPHeader { name: "Host".into(), value: "probe.example".into() },
            ]);
        }
        assert_eq!(run(&probe, &container).await, ProbeOutcome::Success);
        let reqs = server.requests();
        assert_eq!(reqs.len(), 1);
        assert!(reqs[0].starts_with("GET /ready HTTP/1.1\r\n"), "{}", reqs[0]);
        assert!(reqs[0].contains("\r\nX-Custom: yes\r\n"), "{}", reqs[0]);
        assert!(reqs[0].contains("\r\nHost: probe.example\r\n"), "{}", reqs[0]);

        let unknown = http_probe(IntOrString::String("metrics".into()), "/");
        match run(&unknown, &container).await {
            ProbeOutcome::Unknown(m) => assert!(m.contains("\"metrics\""), "{m}"),
            other => panic!("an unknown port name cannot be probed, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn http_timeout_against_a_silent_server() {
    within("an http probe against a server that never answers", async {
        let server = Server::start(None).await;
        let port = IntOrString::Int(i32::from(server.addr.port()));
        let started = tokio::time::Instant::now();
        match run(&http_probe(port, "/"), &Container::default()).await {
            ProbeOutcome::Failure(m) => assert!(m.contains("timed out"), "{m}"),
            other => panic!("a silent server should time out, got {other:?}"),
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(5), "took {took:?}");
    })
    .await;
}

fn tcp_probe(port: u16) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction { host: None, port: IntOrString::Int(i32::from(port)) }),
        ..Default::default()
    }
}

#[tokio::test]
async fn tcp_open_and_closed_ports() {
    within("tcp probes on loopback", async {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("bind a loopback port");
        let open = listener.local_addr().expect("a bound address").port();
        assert_eq!(run(&tcp_probe(open), &Container::default()).await, ProbeOutcome::Success);
        drop(listener);
        // The port was just released; nothing listens on it any more.
        assert!(TcpStream::connect((LOCALHOST, open)).await.is_err(), "the port should be closed");
        match run(&tcp_probe(open), &Container::default()).await {
            ProbeOutcome::Failure(m) => assert!(m.contains(&format!("127.0.0.1:{open}")), "{m}"),
            other => panic!("a closed port should fail, got {other:?}"),
        }
    })
    .await;
}
