//! Host ports: a pod's `hostPort` is published on the sandbox and reaches its containers.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use flotilla_node::runtime::{ContainerRuntime, PortMapping, Protocol, SandboxConfig};
use flotilla_node::testing;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::with_docker;

/// Serves a page on port 8080 of the pod.
const SERVE: &str = "echo hello-through-the-host-port > /tmp/index.html && exec httpd -f -p 8080 -h /tmp";
/// How long the server may take to answer through the host port.
const ANSWER_WAIT: Duration = Duration::from_secs(20);

/// A TCP port nothing listens on right now on the loopback address.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port");
    listener.local_addr().expect("a bound address").port()
}

/// One HTTP/1.0 request for `/index.html`; the whole response, or an error.
async fn fetch(port: u16) -> std::io::Result<String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
    stream.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

#[tokio::test]
async fn a_host_port_reaches_the_pod() {
    with_docker("a_host_port_reaches_the_pod", "httpd behind a published host port", |env| async move {
        let host_port = free_port();
        let pod = testing::unique_pod("default", &testing::unique_name("ports"));
        let config = SandboxConfig {
            pod: pod.clone(),
            hostname: "ports".to_owned(),
            labels: Default::default(),
            ports: vec![PortMapping {
                container_port: 8080,
                host_port,
                protocol: Protocol::Tcp,
                host_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            }],
        };
        let sandbox = env.runtime.run_sandbox(&config).await.expect("the sandbox runs with its port");
        let server = env.run(&sandbox, &env.config(&pod, "server", &["sh", "-c", SERVE])).await;

        // Docker's proxy may accept before the server listens: retry until the page comes.
        let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
        let mut last = fetch(host_port).await;
        while !last.as_ref().is_ok_and(|r| r.contains("hello-through-the-host-port")) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "127.0.0.1:{host_port} never served the pod's page: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            last = fetch(host_port).await;
        }

        env.runtime.stop_container(&server, Duration::ZERO).await.expect("the server stops");
        env.runtime.remove_container(&server).await.expect("the server is removed");
        env.runtime.remove_sandbox(&sandbox.id).await.expect("the sandbox is removed");
        assert!(fetch(host_port).await.map_or(true, |r| r.is_empty()), "the port is released");
    })
    .await;
}
