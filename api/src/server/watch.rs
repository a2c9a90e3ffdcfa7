//! Watches over HTTP: one JSON event per line (`{"type":"ADDED","object":{...}}`) on a
//! chunked response, ended by `timeoutSeconds`, by the server stopping, or by an `ERROR`
//! event (a compacted resourceVersion gives 410 Expired, and the client relists).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use flotilla_core::object::{KindStrategy, ResourceType};
use flotilla_core::registry::{WatchEvent, WatchStream};
use http::{HeaderValue, StatusCode, header};
use rand::Rng;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::metrics::WatcherGuard;
use super::resources::{Request, now};
use super::respond::{self, Output, StatusBody};
use super::table::{self, ListMeta};
use super::{Result, Shared};

/// How the events of one watch are encoded.
struct Encoder {
    t: ResourceType,
    strategy: Arc<dyn KindStrategy>,
    output: Output,
}

impl Encoder {
    fn encode(&self, ev: &WatchEvent) -> Bytes {
        let object = match ev {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => match self.output {
                Output::Object => serde_json::to_value(o.as_ref()).unwrap_or(Value::Null),
                Output::Table(include) => {
                    let meta =
                        ListMeta { resource_version: o.resource_version().to_string(), ..Default::default() };
                    table::table(self.strategy.as_ref(), [o.as_ref()], &meta, include, &now())
                }
            },
            WatchEvent::Bookmark { resource_version } => json!({
                "kind": self.t.kind,
                "apiVersion": self.t.api_version(),
                "metadata": { "resourceVersion": resource_version },
            }),
            WatchEvent::Error(e) => serde_json::to_value(StatusBody(e.to_status())).unwrap_or(Value::Null),
        };
        let mut line =
            serde_json::to_vec(&json!({ "type": ev.type_name(), "object": object })).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }
}

/// Starts a watch; errors found before the first event (a bad selector, an expired
/// resourceVersion) are ordinary error responses.
pub(crate) async fn serve(shared: &Shared, req: &Request) -> Result<Response> {
    let output = respond::negotiate(&req.headers, &req.query)?;
    let opts = req.query.list_options()?;
    let timeout = match req.query.timeout_seconds()? {
        Some(s) => Duration::from_secs(s),
        None => {
            let min = shared.config.min_watch_timeout;
            min + min.mul_f64(rand::rng().random_range(0.0..1.0))
        }
    };
    let stream = shared.registry.watch(&req.t, req.namespace(), &opts).await?;
    let encoder = Encoder { t: req.t, strategy: req.strategy.clone(), output };
    let guard = WatcherGuard::new(&shared.metrics.watchers);
    let body = events(stream, encoder, Instant::now() + timeout, shared.shutdown.clone(), guard);
    let mut r = Response::new(Body::from_stream(body));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    Ok(r)
}

/// The encoded events until the deadline, shutdown, or the end of the watch.
fn events(
    stream: WatchStream,
    encoder: Encoder,
    deadline: Instant,
    shutdown: CancellationToken,
    guard: WatcherGuard,
) -> impl futures::Stream<Item = std::result::Result<Bytes, std::convert::Infallible>> + Send + 'static {
    futures::stream::unfold(Some((stream, encoder, guard)), move |state| {
        let shutdown = shutdown.clone();
        async move {
            let (mut stream, encoder, guard) = state?;
            let ev = tokio::select! {
                biased;
                _ = shutdown.cancelled() => None,
                _ = tokio::time::sleep_until(deadline) => None,
                ev = stream.next_event() => ev,
            }?;
            let bytes = encoder.encode(&ev);
            let next = if matches!(ev, WatchEvent::Error(_)) { None } else { Some((stream, encoder, guard)) };
            Some((Ok(bytes), next))
        }
    })
}

#[cfg(test)]
mod tests {
    use flotilla_core::object::{DynamicObject, KindRegistry};
    use flotilla_core::registry::Error;

    use super::super::respond::IncludeObject;

    use super::*;

    #[test]
    fn events_are_json_lines() {
        let kinds = KindRegistry::builtin();
        let strategy = kinds.get("", "pods").cloned().expect("pods are built in");
        let t = strategy.resource_type();
        let pod: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "resourceVersion": "9"},
        }))
        .expect("a pod");
        let plain = Encoder { t, strategy: strategy.clone(), output: Output::Object };
        let line = plain.encode(&WatchEvent::Added(Arc::new(pod.clone())));
        assert_eq!(line.last(), Some(&b'\n'));
        let v: Value = serde_json::from_slice(&line).expect("json");
        assert_eq!(
            (v["type"].as_str(), v["object"]["metadata"]["name"].as_str()),
            (Some("ADDED"), Some("web"))
        );
        let v: Value =
            serde_json::from_slice(&plain.encode(&WatchEvent::Bookmark { resource_version: "12".into() }))
                .expect("json");
        assert_eq!(
            v["object"],
            json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "12"}})
        );
        let v: Value =
            serde_json::from_slice(&plain.encode(&WatchEvent::Error(Error::Expired("too old".into()))))
                .expect("json");
        assert_eq!((v["type"].as_str(), v["object"]["code"].as_i64()), (Some("ERROR"), Some(410)));
        let tables = Encoder { t, strategy, output: Output::Table(IncludeObject::Metadata) };
        let v: Value =
            serde_json::from_slice(&tables.encode(&WatchEvent::Modified(Arc::new(pod)))).expect("json");
        assert_eq!(v["object"]["kind"], "Table");
        assert_eq!(v["object"]["rows"][0]["cells"][0], "web");
    }
}
