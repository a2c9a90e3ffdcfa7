//! One probe attempt: `exec`, `tcpSocket` and dispatch to `httpGet` (the kubelet's
//! `prober.runProbe`).

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ExecAction, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::net::TcpStream;

use super::{Probe, ProbeKind, ProbeOutcome, ProbeState, http};
use crate::runtime::ContainerRuntime;

/// How much of an exec probe's output goes into a failure message.
const MAX_OUTPUT_IN_MESSAGE: usize = 1024;

/// Runs one probe attempt against a running container.
///
/// - `exec`: runs the command through the runtime, waiting at most `timeoutSeconds`; exit
///   code 0 succeeds, another code or the timeout fails, a runtime error is unknown.
/// - `httpGet`: a GET to `host` (default `pod_ip`) on the port given by number or by the
///   name of one of the container's ports; status 200..400 succeeds, anything else, a
///   network error or the timeout fails. Redirects are not followed. `HTTPS` is unknown.
/// - `tcpSocket`: a connect within the timeout succeeds.
/// - `grpc`, or a probe without handler: unknown.
pub async fn probe_once(
    runtime: &dyn ContainerRuntime,
    container_id: &str,
    pod_ip: Option<IpAddr>,
    container: &Container,
    probe: &Probe,
) -> ProbeOutcome {
    // The kind does not matter for the timeout; ProbeState owns its defaulting.
    let timeout = ProbeState::new(ProbeKind::Readiness, probe).timeout();
    if let Some(exec) = &probe.exec {
        exec_probe(runtime, container_id, exec, timeout).await
    } else if let Some(action) = &probe.http_get {
        http::http_get(action, pod_ip, container, timeout).await
    } else if let Some(action) = &probe.tcp_socket {
        tcp_probe(action, pod_ip, container, timeout).await
    } else if probe.grpc.is_some() {
        ProbeOutcome::Unknown("grpc probes are not supported".into())
    } else {
        ProbeOutcome::Unknown("probe has no exec, httpGet, tcpSocket or grpc handler".into())
    }
}

async fn exec_probe(
    runtime: &dyn ContainerRuntime,
    container_id: &str,
    exec: &ExecAction,
    timeout: Duration,
) -> ProbeOutcome {
    let command = exec.command.as_deref().unwrap_or_default();
    if command.is_empty() {
        return ProbeOutcome::Unknown("exec probe has an empty command".into());
    }
    // The runtime is asked to bound the command too; this bound makes a runtime that does not
    // (or hangs) a failure, as the kubelet reports an exec probe timeout.
    match tokio::time::timeout(timeout, runtime.exec(container_id, command, timeout)).await {
        Err(_) => ProbeOutcome::Failure(format!("command {command:?} timed out after {timeout:?}")),
        Ok(Err(e)) => ProbeOutcome::Unknown(format!("exec of {command:?} failed: {e}")),
        Ok(Ok(out)) if out.exit_code == 0 => ProbeOutcome::Success,
        Ok(Ok(out)) => {
            let shown = &out.output[..out.output.len().min(MAX_OUTPUT_IN_MESSAGE)];
            let text = String::from_utf8_lossy(shown);
            let text = text.trim_end();
            if text.is_empty() {
                ProbeOutcome::Failure(format!("command {command:?} exited with code {}", out.exit_code))
            } else {
                ProbeOutcome::Failure(format!(
                    "command {command:?} exited with code {}: {text}",
                    out.exit_code
                ))
            }
        }
    }
}

async fn tcp_probe(
    action: &TCPSocketAction,
    pod_ip: Option<IpAddr>,
    container: &Container,
    timeout: Duration,
) -> ProbeOutcome {
    let port = match resolve_port(&action.port, container) {
        Ok(p) => p,
        Err(e) => return ProbeOutcome::Unknown(e),
    };
    let host = match target_host(action.host.as_deref(), pod_ip) {
        Ok(h) => h,
        Err(e) => return ProbeOutcome::Unknown(e),
    };
    let addr = host_port(&host, port);
    match tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port))).await {
        Err(_) => ProbeOutcome::Failure(format!("dial tcp {addr}: timed out after {timeout:?}")),
        Ok(Err(e)) => ProbeOutcome::Failure(format!("dial tcp {addr}: {e}")),
        Ok(Ok(_stream)) => ProbeOutcome::Success,
    }
}

/// The port a probe targets: a number, or the name of one of the container's ports.
pub(super) fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => {
            // A numeric string is a number, as the kubelet's `ParseInt` fallback reads it.
            if let Ok(n) = name.parse::<i32>() {
                n
            } else {
                container
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| p.name.as_deref() == Some(name.as_str()))
                    .map(|p| p.container_port)
                    .ok_or_else(|| format!("container {:?} has no port named {name:?}", container.name))?
            }
        }
    };
    u16::try_from(number).ok().filter(|p| *p != 0).ok_or_else(|| format!("invalid port number {number}"))
}

/// The host a probe targets: its own `host`, else the pod's IP.
pub(super) fn target_host(host: Option<&str>, pod_ip: Option<IpAddr>) -> Result<String, String> {
    match (host.filter(|h| !h.is_empty()), pod_ip) {
        (Some(h), _) => Ok(h.to_string()),
        (None, Some(ip)) => Ok(ip.to_string()),
        (None, None) => Err("the pod has no IP yet and the probe sets no host".into()),
    }
}

/// `host:port`, bracketing IPv6 literals.
pub(super) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}
