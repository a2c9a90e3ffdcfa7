//! Watches over HTTP: the chunked body of a `?watch=true` response, one JSON event per line,
//! decoded as the bytes arrive (a line may span chunks; a chunk may hold several lines).
//!
//! `BOOKMARK` objects carry only `metadata.resourceVersion`; an `ERROR` event carries a
//! `Status`, becomes [`WatchEvent::Error`] with the error it stands for, and ends the stream.
//! A line that does not decode, or a body that breaks off, ends it with an error too
//! (`Internal`, `Unavailable`); a body that simply ends (the server's watch timeout, a
//! graceful shutdown) ends it without one. Core's `watcher` resumes in every case.

use std::fmt::Display;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use flotilla_core::object::{DynamicObject, ResourceType};
use flotilla_core::registry::{Error, WatchEvent, WatchStream};
use futures::{Stream, StreamExt};
use serde::Deserialize;

use super::request::qualified;
use super::status::{self, WireStatus};

/// The longest event line accepted (objects are limited to a few MiB by the server).
pub(crate) const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// One line of a watch, as the server writes it.
#[derive(Deserialize)]
#[serde(tag = "type", content = "object")]
enum WireEvent {
    #[serde(rename = "ADDED")]
    Added(DynamicObject),
    #[serde(rename = "MODIFIED")]
    Modified(DynamicObject),
    #[serde(rename = "DELETED")]
    Deleted(DynamicObject),
    #[serde(rename = "BOOKMARK")]
    Bookmark(Bookmark),
    #[serde(rename = "ERROR")]
    Error(WireStatus),
}

/// A bookmark's object: only its resourceVersion matters.
#[derive(Deserialize)]
struct Bookmark {
    #[serde(default)]
    metadata: BookmarkMeta,
}

#[derive(Default, Deserialize)]
struct BookmarkMeta {
    #[serde(rename = "resourceVersion", default)]
    resource_version: Option<String>,
}

/// The events of a watch of `t` whose response body arrives as `chunks`.
pub(crate) fn events<S, E>(t: ResourceType, chunks: S) -> WatchStream
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Display,
{
    events_within(t, chunks, MAX_EVENT_BYTES)
}

/// [`events`], refusing lines longer than `limit` bytes.
fn events_within<S, E>(t: ResourceType, chunks: S, limit: usize) -> WatchStream
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Display,
{
    let buf = BytesMut::new();
    let decoder = Decoder { t, chunks: Box::pin(chunks), buf, scanned: 0, limit, done: false };
    WatchStream::from_stream(futures::stream::unfold(decoder, |mut d| async move {
        let ev = d.next().await?;
        Some((ev, d))
    }))
}

/// The decoding state of one watch body.
struct Decoder<S> {
    t: ResourceType,
    chunks: std::pin::Pin<Box<S>>,
    /// Bytes received and not yet decoded.
    buf: BytesMut,
    /// How much of `buf` is known to hold no newline.
    scanned: usize,
    /// The longest line accepted.
    limit: usize,
    /// Whether the stream has ended (after an error, or the end of the body).
    done: bool,
}

impl<S, E> Decoder<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Display,
{
    async fn next(&mut self) -> Option<WatchEvent> {
        loop {
            if self.done {
                return None;
            }
            if let Some(pos) = self.buf[self.scanned..].iter().position(|b| *b == b'\n') {
                let line = self.buf.split_to(self.scanned + pos + 1);
                self.scanned = 0;
                if let Some(ev) = self.decode(&line) {
                    return Some(ev);
                }
                continue;
            }
            self.scanned = self.buf.len();
            if self.buf.len() > self.limit {
                return Some(self.fail(Error::Internal(format!(
                    "watch of {}: an event is longer than {} bytes",
                    qualified(&self.t),
                    self.limit
                ))));
            }
            match self.chunks.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    let msg = format!("watch of {} broke off: {e}", qualified(&self.t));
                    return Some(self.fail(Error::Unavailable(msg)));
                }
                None => {
                    // A last line without its newline still counts.
                    self.done = true;
                    let rest = self.buf.split();
                    return self.decode(&rest);
                }
            }
        }
    }

    /// Ends the stream with `e`.
    fn fail(&mut self, e: Error) -> WatchEvent {
        self.done = true;
        WatchEvent::Error(e)
    }

    /// The event of one line; `None` for a blank line.
    fn decode(&mut self, line: &[u8]) -> Option<WatchEvent> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        let ev = match serde_json::from_slice::<WireEvent>(line) {
            Ok(WireEvent::Added(o)) => WatchEvent::Added(Arc::new(o)),
            Ok(WireEvent::Modified(o)) => WatchEvent::Modified(Arc::new(o)),
            Ok(WireEvent::Deleted(o)) => WatchEvent::Deleted(Arc::new(o)),
            Ok(WireEvent::Bookmark(Bookmark { metadata: BookmarkMeta { resource_version: Some(rv) } })) => {
                WatchEvent::Bookmark { resource_version: rv }
            }
            Ok(WireEvent::Bookmark(_)) => {
                let msg = format!("watch of {}: a bookmark without a resourceVersion", qualified(&self.t));
                self.fail(Error::Internal(msg))
            }
            Ok(WireEvent::Error(s)) => self.fail(status::from_status(&self.t, 500, s)),
            Err(e) => {
                let msg = format!("watch of {}: undecodable event: {e}", qualified(&self.t));
                self.fail(Error::Internal(msg))
            }
        };
        Some(ev)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use flotilla_core::object::Resource;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    use super::*;

    fn line(v: serde_json::Value) -> String {
        format!("{v}\n")
    }

    fn pod(name: &str, rv: &str) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "resourceVersion": rv}})
    }

    /// The events of a body cut into `chunks`, within a bound naming what hung.
    async fn decode(chunks: Vec<Vec<u8>>) -> Vec<WatchEvent> {
        let chunks = futures::stream::iter(chunks.into_iter().map(|c| Ok::<_, String>(Bytes::from(c))));
        let all = events(Pod::TYPE, chunks).collect::<Vec<_>>();
        tokio::time::timeout(Duration::from_secs(10), all).await.expect("timed out: decoding a watch body")
    }

    fn names(evs: &[WatchEvent]) -> Vec<String> {
        evs.iter()
            .map(|e| match e {
                WatchEvent::Bookmark { resource_version } => format!("{}:{resource_version}", e.type_name()),
                WatchEvent::Error(err) => format!("ERROR:{}", err.code()),
                other => format!("{}:{}", other.type_name(), other.object().map_or("", |o| o.name())),
            })
            .collect()
    }

    #[tokio::test]
    async fn lines_split_anywhere_decode_the_same() {
        let body = [
            line(json!({"type": "ADDED", "object": pod("a", "1")})),
            line(json!({"type": "MODIFIED", "object": pod("a", "2")})),
            line(json!({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1",
                                                         "metadata": {"resourceVersion": "5"}}})),
            line(json!({"type": "DELETED", "object": pod("a", "6")})),
        ]
        .concat()
        .into_bytes();
        let want = vec!["ADDED:a", "MODIFIED:a", "BOOKMARK:5", "DELETED:a"];
        assert_eq!(names(&decode(vec![body.clone()]).await), want);
        for cut in 1..body.len() {
            let chunks = vec![body[..cut].to_vec(), body[cut..].to_vec()];
            assert_eq!(names(&decode(chunks).await), want, "cut at {cut}");
        }
        let bytes: Vec<Vec<u8>> = body.iter().map(|b| vec![*b]).collect();
        assert_eq!(names(&decode(bytes).await), want, "one byte per chunk");
    }

    #[tokio::test]
    async fn blank_lines_crlf_and_a_last_line_without_newline() {
        let body = format!(
            "\r\n{}\r\n\n{}",
            json!({"type": "ADDED", "object": pod("a", "1")}),
            json!({"type": "ADDED", "object": pod("b", "2")})
        );
        assert_eq!(names(&decode(vec![body.into_bytes()]).await), vec!["ADDED:a", "ADDED:b"]);
        assert!(decode(vec![]).await.is_empty());
    }

    #[tokio::test]
    async fn an_error_event_ends_the_watch() {
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
                            "reason": "Expired", "message": "too old resource version: 3 (9)"});
        let body = [
            line(json!({"type": "ADDED", "object": pod("a", "1")})),
            line(json!({"type": "ERROR", "object": status})),
            line(json!({"type": "ADDED", "object": pod("b", "2")})),
        ]
        .concat();
        let evs = decode(vec![body.into_bytes()]).await;
        assert_eq!(names(&evs), vec!["ADDED:a", "ERROR:410"]);
        assert_eq!(evs[1], WatchEvent::Error(Error::Expired("too old resource version: 3 (9)".into())));
    }

    #[tokio::test]
    async fn garbage_and_broken_bodies_end_with_an_error() {
        let evs = decode(vec![b"{\"type\":\"ADDED\",\"object\":{}}\nnot json\n{}\n".to_vec()]).await;
        assert_eq!(names(&evs), vec!["ADDED:", "ERROR:500"]);
        let evs = decode(vec![b"{\"type\":\"SOMETHING\",\"object\":{}}\n".to_vec()]).await;
        assert!(matches!(&evs[..], [WatchEvent::Error(Error::Internal(_))]), "{evs:?}");
        let evs = decode(vec![b"{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{}}}\n".to_vec()]).await;
        assert!(matches!(&evs[..], [WatchEvent::Error(Error::Internal(_))]), "{evs:?}");

        let first = Ok(Bytes::from(line(json!({"type": "ADDED", "object": pod("a", "1")}))));
        let chunks = futures::stream::iter(vec![first, Err("connection reset")]);
        let all = events(Pod::TYPE, chunks).collect::<Vec<_>>();
        let evs = tokio::time::timeout(Duration::from_secs(10), all).await.expect("timed out: a broken body");
        assert_eq!(names(&evs), vec!["ADDED:a", "ERROR:503"]);
        assert!(
            matches!(&evs[1], WatchEvent::Error(Error::Unavailable(m)) if m.contains("connection reset")),
            "{evs:?}"
        );

        let long = vec![b'x'; 100];
        let chunks = futures::stream::iter(vec![Ok::<_, String>(Bytes::from(long)); 3]);
        let all = events_within(Pod::TYPE, chunks, 150).collect::<Vec<_>>();
        let evs = tokio::time::timeout(Duration::from_secs(10), all).await.expect("timed out: a long line");
        assert!(
            matches!(&evs[..], [WatchEvent::Error(Error::Internal(m))] if m.contains("longer than 150")),
            "{evs:?}"
        );
    }
}
