//! `httpGet` probes as a plain HTTP/1.1 request (the kubelet's `probe/http`).
//!
//! Only the status line matters, so the request is written by hand and the response read up
//! to its first line: no redirect is followed (a 3xx is a success, as the kubelet counts a
//! redirect it does not follow), the body is not read, the connection is closed.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ProbeOutcome;
use super::once::{host_port, resolve_port, target_host};

/// The `User-Agent` the kubelet sends (`kube-probe/<major>.<minor>`), unless the probe sets one.
const USER_AGENT: &str = "kube-probe/1.33";
/// The longest status line read before giving up on a response.
const MAX_STATUS_LINE: usize = 8 * 1024;

/// Runs one `httpGet` probe.
pub(super) async fn http_get(
    action: &HTTPGetAction,
    pod_ip: Option<IpAddr>,
    container: &Container,
    timeout: Duration,
) -> ProbeOutcome {
    let scheme = action.scheme.as_deref().unwrap_or("HTTP");
    if !scheme.eq_ignore_ascii_case("HTTP") {
        return ProbeOutcome::Unknown(format!("httpGet scheme {scheme:?} is not supported (only HTTP)"));
    }
    let request = match Request::build(action, pod_ip, container) {
        Ok(r) => r,
        Err(e) => return ProbeOutcome::Unknown(e),
    };
    let url = format!("http://{}{}", host_port(&request.host, request.port), request.path);
    match tokio::time::timeout(timeout, request.send()).await {
        Err(_) => ProbeOutcome::Failure(format!("Get {url:?}: timed out after {timeout:?}")),
        Ok(Err(e)) => ProbeOutcome::Failure(format!("Get {url:?}: {e}")),
        Ok(Ok(status)) if (200..400).contains(&status) => ProbeOutcome::Success,
        Ok(Ok(status)) => ProbeOutcome::Failure(format!("HTTP probe failed with statuscode: {status}")),
    }
}

/// A validated request.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Request {
    host: String,
    port: u16,
    path: String,
    /// Header lines in order, `Host` first.
    headers: Vec<(String, String)>,
}

impl Request {
    /// Validates the action and fills the kubelet's default headers.
    pub(super) fn build(
        action: &HTTPGetAction,
        pod_ip: Option<IpAddr>,
        container: &Container,
    ) -> Result<Request, String> {
        let port = resolve_port(&action.port, container)?;
        let host = target_host(action.host.as_deref(), pod_ip)?;
        let mut path = action.path.clone().unwrap_or_default();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        if path.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return Err(format!("httpGet path {path:?} contains whitespace or control characters"));
        }
        let custom = action.http_headers.as_deref().unwrap_or_default();
        for h in custom {
            if h.name.is_empty() || !h.name.bytes().all(is_token_byte) {
                return Err(format!("httpGet header name {:?} is not a valid HTTP token", h.name));
            }
            if h.value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(format!("httpGet header {:?} has a value with a line break", h.name));
            }
        }
        let is = |name: &str| custom.iter().any(|h| h.name.eq_ignore_ascii_case(name));
        // As Go's client: a `Host` header replaces the request's host, first value wins.
        let host_header = custom
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("host"))
            .map(|h| h.value.clone())
            .unwrap_or_else(|| host_port(&host, port));
        let mut headers = vec![("Host".to_string(), host_header)];
        if !is("user-agent") {
            headers.push(("User-Agent".into(), USER_AGENT.into()));
        }
        if !is("accept") {
            headers.push(("Accept".into(), "*/*".into()));
        }
        headers.extend(
            custom
                .iter()
                .filter(|h| {
                    !h.name.eq_ignore_ascii_case("host") && !h.name.eq_ignore_ascii_case("connection")
                })
                .map(|h| (h.name.clone(), h.value.clone())),
        );
        headers.push(("Connection".into(), "close".into()));
        Ok(Request { host, port, path, headers })
    }

    /// The bytes on the wire.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = format!("GET {} HTTP/1.1\r\n", self.path);
        for (name, value) in &self.headers {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(value);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    /// Connects, sends, and returns the response's status code.
    async fn send(&self) -> std::io::Result<u16> {
        let mut stream = TcpStream::connect((self.host.as_str(), self.port)).await?;
        stream.write_all(&self.encode()).await?;
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(end) = buf.iter().position(|b| *b == b'\n') {
                return parse_status_line(&buf[..end]).map_err(invalid);
            }
            if buf.len() > MAX_STATUS_LINE {
                return Err(invalid(format!("status line longer than {MAX_STATUS_LINE} bytes")));
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(invalid("connection closed before a status line".to_string()));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The code of `HTTP/1.x NNN reason` (the line without its line break).
pub(super) fn parse_status_line(line: &[u8]) -> Result<u16, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = std::str::from_utf8(line).map_err(|_| "status line is not UTF-8".to_string())?;
    let mut parts = text.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/") {
        return Err(format!("malformed status line {text:?}"));
    }
    match code.parse::<u16>() {
        Ok(c) if code.len() == 3 && (100..=999).contains(&c) => Ok(c),
        _ => Err(format!("malformed status code in {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::HTTPHeader;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r"), Ok(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 302"), Ok(302));
        assert_eq!(parse_status_line(b"HTTP/1.1 503 Service Unavailable"), Ok(503));
        assert!(parse_status_line(b"SSH-2.0-OpenSSH").is_err());
        assert!(parse_status_line(b"HTTP/1.1 20 OK").is_err());
        assert!(parse_status_line(b"HTTP/1.1 abc OK").is_err());
    }

    #[test]
    fn request_defaults_and_overrides() {
        let action = HTTPGetAction {
            path: Some("healthz".into()),
            port: IntOrString::Int(8080),
            ..Default::default()
        };
        let ip = Some("10.1.2.3".parse().expect("an IP literal"));
        let req = Request::build(&action, ip, &Container::default()).expect("a valid action");
        let wire = String::from_utf8(req.encode()).expect("ASCII");
        assert_eq!(
            wire,
            "GET /healthz HTTP/1.1\r\nHost: 10.1.2.3:8080\r\nUser-Agent: kube-probe/1.33\r\n\
             Accept: */*\r\nConnection: close\r\n\r\n"
        );

        let action = HTTPGetAction {
            host: Some("::1".into()),
            port: IntOrString::Int(80),
            http_headers: Some(vec![
                HTTPHeader { name: "Host".into(), value: "example.test".into() },
                HTTPHeader { name: "user-agent".into(), value: "mine".into() },
                HTTPHeader { name: "X-Probe".into(), value: "1".into() },
            ]),
            ..Default::default()
        };
        let req = Request::build(&action, None, &Container::default()).expect("a valid action");
        let wire = String::from_utf8(req.encode()).expect("ASCII");
        assert_eq!(
            wire,
            "GET / HTTP/1.1\r\nHost: example.test\r\nAccept: */*\r\nuser-agent: mine\r\nX-Probe: 1\r\n\
             Connection: close\r\n\r\n"
        );
        assert_eq!(req.host, "::1");
    }

    #[test]
    fn bad_actions_are_rejected_with_the_field() {
        let ip = Some("10.1.2.3".parse().expect("an IP literal"));
        let bad_header = HTTPGetAction {
            port: IntOrString::Int(80),
            http_headers: Some(vec![HTTPHeader { name: "X".into(), value: "a\r\nEvil: 1".into() }]),
            ..Default::default()
        };
        let err = Request::build(&bad_header, ip, &Container::default()).expect_err("a line break");
        assert!(err.contains("\"X\""), "{err}");
        let bad_port = HTTPGetAction { port: IntOrString::Int(70000), ..Default::default() };
        let err = Request::build(&bad_port, ip, &Container::default()).expect_err("port out of range");
        assert!(err.contains("70000"), "{err}");
        let no_host = HTTPGetAction { port: IntOrString::Int(80), ..Default::default() };
        assert!(Request::build(&no_host, None, &Container::default()).is_err());
    }
}
