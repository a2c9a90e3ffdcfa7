//! Sending requests: one pooled hyper-util client shared by every call (HTTP/2 multiplexed
//! over TLS when the server speaks it, HTTP/1.1 keep-alive otherwise), credentials and user
//! agent on every request, per-attempt timeouts and the retry policy.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use flotilla_core::object::ResourceType;
use flotilla_core::registry::{Error, Result};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as PooledClient;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::de::DeserializeOwned;
use url::Url;

use super::connector::Connector;
use super::retry::{Attempt, retrying};
use super::{ClientConfig, RetryPolicy, status};

/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How often an HTTP/2 connection is pinged, so a dead server is noticed even by a watch
/// that receives nothing.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is closed.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// One request to send.
pub(crate) struct Req {
    /// The method.
    pub(crate) method: Method,
    /// The URL, query included.
    pub(crate) url: Url,
    /// The body's media type, if there is a body.
    pub(crate) content_type: Option<&'static str>,
    /// The body (empty for none).
    pub(crate) body: Bytes,
}

impl Req {
    /// A bodiless request.
    pub(crate) fn new(method: Method, url: Url) -> Self {
        Req { method, url, content_type: None, body: Bytes::new() }
    }

    /// A request with a JSON body.
    pub(crate) fn json(method: Method, url: Url, body: &impl serde::Serialize) -> Result<Self> {
        let body =
            serde_json::to_vec(body).map_err(|e| Error::BadRequest(format!("encoding the body: {e}")))?;
        Ok(Req { method, url, content_type: Some("application/json"), body: body.into() })
    }

    /// A request with a body of media type `content_type`.
    pub(crate) fn with_body(method: Method, url: Url, content_type: &'static str, body: Bytes) -> Self {
        Req { method, url, content_type: Some(content_type), body }
    }

    /// Whether the request may be repeated after an answer or a failure mid-way: only reads.
    fn idempotent(&self) -> bool {
        self.method == Method::GET
    }
}

/// A successful response, read whole.
pub(crate) struct Reply {
    /// The (2xx) status.
    pub(crate) status: StatusCode,
    /// The headers.
    pub(crate) headers: HeaderMap,
    /// The body.
    pub(crate) body: Bytes,
}

impl Reply {
    /// The body as JSON; `what` names the request in the error.
    pub(crate) fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::Internal(format!("decoding the response to {what}: {e}")))
    }
}

/// The client's connection pool and request settings.
pub(crate) struct Transport {
    client: PooledClient<Connector, Full<Bytes>>,
    /// The servers: the configured one, then its failover servers.
    servers: Vec<Url>,
    /// The index in `servers` requests go to.
    current: AtomicUsize,
    authorization: Option<HeaderValue>,
    user_agent: HeaderValue,
    timeout: Option<Duration>,
    retry: RetryPolicy,
}

/// How one attempt failed before a complete response was read.
enum Failure {
    /// No response: the connection could not be made (`connect`: the request was not sent),
    /// or broke.
    Request { connect: bool, message: String },
    /// The attempt's time ran out.
    Timeout,
    /// The request could not even be built.
    Invalid(Error),
}

impl Transport {
    /// The transport `config` describes.
    pub(crate) fn new(config: &ClientConfig) -> super::Result<Self> {
        let tls = if config.is_tls()? { Some(config.rustls_config()?) } else { None };
        let connector = Connector::new(tls, config.server_name()?);
        let client = PooledClient::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .http2_keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .build(connector);
        let authorization = match &config.token {
            Some(token) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| super::Error::Header { what: "bearer token" })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let user_agent = HeaderValue::from_str(&config.user_agent)
            .map_err(|_| super::Error::Header { what: "user agent" })?;
        let servers = std::iter::once(&config.server).chain(&config.failover).cloned().collect();
        Ok(Transport {
            client,
            servers,
            current: AtomicUsize::new(0),
            authorization,
            user_agent,
            timeout: config.timeout,
            retry: config.retry,
        })
    }

    fn request(&self, req: &Req, uri: &Uri) -> Result<Request<Full<Bytes>>> {
        let mut b = Request::builder()
            .method(req.method.clone())
            .uri(uri.clone())
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, self.user_agent.clone());
        if let Some(auth) = &self.authorization {
            b = b.header(header::AUTHORIZATION, auth.clone());
        }
        if let Some(ct) = req.content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        b.body(Full::new(req.body.clone()))
            .map_err(|e| Error::BadRequest(format!("building {} {}: {e}", req.method, req.url)))
    }

    /// Where the next attempt at `url` goes: the index of the current server and `url` with
    /// that server's host and port (URLs are built on the first server's).
    fn target(&self, url: &Url) -> Result<(usize, Uri), Failure> {
        let at = self.current.load(Ordering::Acquire);
        let Some(server) = self.servers.get(at).filter(|_| at > 0) else {
            return Ok((0, parse_uri(url)?));
        };
        let mut url = url.clone();
        let moved = url.set_host(server.host_str()).is_ok() && url.set_port(server.port()).is_ok();
        if !moved {
            return Err(Failure::Invalid(Error::BadRequest(format!("cannot address {url} to {server}"))));
        }
        Ok((at, parse_uri(&url)?))
    }

    /// After an attempt at server `at` failed without an answer: the next server takes over
    /// (unless another request moved on already).
    fn fail_over(&self, at: usize) {
        let n = self.servers.len();
        if n < 2 {
            return;
        }
        let next = (at + 1) % n;
        if self.current.compare_exchange(at, next, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            tracing::warn!(from = %self.servers[at], to = %self.servers[next], "API server unreachable, failing over");
        }
    }

    /// What to do after an attempt at server `at` failed without a response.
    fn attempt_failed<T>(&self, at: usize, what: &str, idempotent: bool, f: Failure) -> Attempt<Result<T>> {
        if matches!(f, Failure::Request { .. } | Failure::Timeout) {
            self.fail_over(at);
        }
        self.failed(what, idempotent, f)
    }

    /// Sends `req` (retrying as the policy allows) and reads the whole response: the reply if
    /// it is a success, else the error it stands for. `t` is the resource the request is about.
    pub(crate) async fn send(&self, t: &ResourceType, req: Req) -> Result<Reply> {
        let what = format!("{} {}", req.method, req.url);
        let idempotent = req.idempotent();
        let (req, what) = (&req, what.as_str());
        retrying(self.retry, what, || async move {
            let (at, uri) = match self.target(&req.url) {
                Ok(target) => target,
                Err(f) => return self.failed(what, idempotent, f),
            };
            let outcome = self.bounded(async {
                let resp = self.client.request(self.request(req, &uri)?).await;
                let resp = resp.map_err(|e| failure(&e, e.is_connect()))?;
                let (parts, body) = resp.into_parts();
                let body = body.collect().await.map_err(|e| failure(&e, false))?.to_bytes();
                Ok(Reply { status: parts.status, headers: parts.headers, body })
            });
            match outcome.await {
                Ok(reply) if reply.status.is_success() => Attempt::Done(Ok(reply)),
                Ok(reply) => classify(t, idempotent, reply.status, &reply.headers, &reply.body),
                Err(f) => self.attempt_failed(at, what, idempotent, f),
            }
        })
        .await
    }

    /// Opens a streaming GET (a watch): the body of a successful response, unread; failures
    /// are retried like any read. The timeout bounds only the wait for the response's head.
    pub(crate) async fn open(&self, t: &ResourceType, url: Url) -> Result<Incoming> {
        let req = Req::new(Method::GET, url);
        let what = format!("GET {}", req.url);
        let (req, what) = (&req, what.as_str());
        retrying(self.retry, what, || async move {
            let (at, uri) = match self.target(&req.url) {
                Ok(target) => target,
                Err(f) => return self.failed(what, true, f),
            };
            let head = self.bounded(async {
                let resp = self.client.request(self.request(req, &uri)?).await;
                resp.map_err(|e| failure(&e, e.is_connect()))
            });
            let resp = match head.await {
                Ok(resp) if resp.status().is_success() => return Attempt::Done(Ok(resp.into_body())),
                Ok(resp) => resp,
                Err(f) => return self.attempt_failed(at, what, true, f),
            };
            let (parts, body) = resp.into_parts();
            match self.bounded(async { body.collect().await.map_err(|e| failure(&e, false)) }).await {
                Ok(body) => classify(t, true, parts.status, &parts.headers, &body.to_bytes()),
                Err(f) => self.attempt_failed(at, what, true, f),
            }
        })
        .await
    }

    /// `fut` within the per-attempt timeout.
    async fn bounded<T>(&self, fut: impl Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
        match self.timeout {
            Some(limit) => tokio::time::timeout(limit, fut).await.unwrap_or(Err(Failure::Timeout)),
            None => fut.await,
        }
    }

    /// What to do after an attempt failed without a response.
    fn failed<T>(&self, what: &str, idempotent: bool, f: Failure) -> Attempt<Result<T>> {
        match f {
            Failure::Invalid(e) => Attempt::Done(Err(e)),
            Failure::Timeout => Attempt::Done(Err(Error::Timeout(format!(
                "{what}: no complete response within {:?}",
                self.timeout.unwrap_or_default()
            )))),
            Failure::Request { connect, message } => {
                let err = Error::Unavailable(format!("{what}: {message}"));
                if idempotent || connect {
                    Attempt::Retry { after: None, last: Err(err) }
                } else {
                    Attempt::Done(Err(err))
                }
            }
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Invalid(e)
    }
}

/// What to do with an error response: 429 is retried (the server did nothing), 5xx other
/// than 501 only for idempotent requests; the rest is final.
fn classify<T>(
    t: &ResourceType,
    idempotent: bool,
    code: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Attempt<Result<T>> {
    let err = status::from_response(t, code, body);
    let retry = code == StatusCode::TOO_MANY_REQUESTS
        || (idempotent && code.is_server_error() && code != StatusCode::NOT_IMPLEMENTED);
    if retry {
        Attempt::Retry { after: retry_after(headers), last: Err(err) }
    } else {
        Attempt::Done(Err(err))
    }
}

/// A `Retry-After` in seconds (the HTTP-date form is not used by API servers).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// A failure with its whole cause chain in the message.
fn failure(e: &(dyn std::error::Error + 'static), connect: bool) -> Failure {
    Failure::Request { connect, message: error_chain(e) }
}

/// An error and its sources, `: `-separated (hyper's own messages are terse: the useful part,
/// such as "Connection refused" or a certificate problem, is in the sources).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    message
}

fn parse_uri(url: &Url) -> Result<Uri> {
    url.as_str().parse().map_err(|e| Error::BadRequest(format!("invalid request URL {url}: {e}")))
}

#[cfg(test)]
mod tests {
    use flotilla_core::object::Resource;
    use k8s_openapi::api::core::v1::Pod;

    use super::*;

    #[test]
    fn only_throttling_and_read_failures_are_retried() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("3"));
        let retried = |idempotent: bool, code: u16| {
            let code = StatusCode::from_u16(code).expect("a valid code");
            matches!(classify::<()>(&Pod::TYPE, idempotent, code, &h, b""), Attempt::Retry { .. })
        };
        assert!(retried(true, 429) && retried(false, 429));
        assert!(retried(true, 503) && retried(true, 500) && retried(true, 504));
        assert!(!retried(false, 503) && !retried(false, 500));
        assert!(!retried(true, 501) && !retried(true, 404) && !retried(true, 409));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }
}
