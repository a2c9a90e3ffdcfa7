//! One watcher: a prefix watch through one endpoint, reopened on the same endpoint whenever
//! its stream fails, recording everything into its [`WatchLog`].

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, EventType, WatchOptions, WatchResponse, WatchResponseStream};
use tokio::time::Instant;

use super::{CompactedGap, Progress, WatchEvent, WatchFailure, WatchKind, WatchLog};

/// The first pause before reopening a failed stream; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause before reopening a failed stream.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often a watcher that is past `until` and short of the final revision asks for progress.
const END_POLL: Duration = Duration::from_millis(500);

/// A watcher's settings and log (see [`super::watch`]).
pub(super) struct Watcher {
    pub(super) log: WatchLog,
    /// Times in the log are measured from here.
    pub(super) clock: Instant,
    pub(super) until: Instant,
    /// `until` + tail.
    pub(super) deadline: Instant,
    pub(super) op_timeout: Duration,
    /// Silence after which progress is requested, and again after which the stream is dropped.
    pub(super) stall: Duration,
    pub(super) final_revision: tokio::sync::watch::Receiver<Option<i64>>,
}

/// Why a stream was left.
enum End {
    /// It failed: reopen after a backoff.
    Reconnect(String),
    /// Its start revision was compacted (the gap is logged): reopen at once.
    Compacted,
    /// The watcher is finished: `Ok` when it reached the final revision, else why not.
    Done(Result<(), String>),
}

impl Watcher {
    /// Runs the watcher to its end and returns its log.
    pub(super) async fn run(mut self) -> super::WatchLog {
        let mut next_rev = self.log.start_revision;
        let mut backoff = MIN_BACKOFF;
        let mut streams = 0u64;
        let outcome = loop {
            if let Some(done) = self.finished() {
                break done;
            }
            let failure = match self.open(next_rev).await {
                Ok((_client, responses, sender)) => {
                    streams += 1;
                    if streams > 1 {
                        self.log.reconnects += 1;
                    }
                    backoff = MIN_BACKOFF;
                    match self.follow(responses, sender, streams, &mut next_rev).await {
                        End::Done(done) => break done,
                        End::Compacted => continue,
                        End::Reconnect(why) => why,
                    }
                }
                Err(why) => why,
            };
            self.fail(failure);
            let wake = (Instant::now() + backoff).min(self.deadline);
            tokio::time::sleep_until(wake).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        };
        self.log.final_revision = *self.final_revision.borrow();
        self.log.fell_short = outcome.err();
        self.log
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn fail(&mut self, error: String) {
        let time_ns = self.now_ns();
        self.log.failures.push(WatchFailure { error, time_ns });
    }

    /// `Some` when the watcher is finished: past `until` and at the final revision (`Ok`),
    /// or unable to get there (`Err` with why).
    fn finished(&self) -> Option<Result<(), String>> {
        let now = Instant::now();
        if now < self.until {
            return None;
        }
        let reached = self.log.reached;
        match *self.final_revision.borrow() {
            Some(f) if reached >= f => Some(Ok(())),
            Some(f) if now >= self.deadline => Some(Err(format!(
                "reached revision {reached}, short of the final revision {f}, when the tail ran out"
            ))),
            Some(_) => None,
            None if self.final_revision.has_changed().is_err() => {
                Some(Err("the caller gave no final revision".to_string()))
            }
            None if now >= self.deadline => Some(Err(format!(
                "no final revision was known when the tail ran out (at revision {reached})"
            ))),
            None => None,
        }
    }

    /// Opens a prefix watch from `next_rev` through the endpoint within the operation timeout.
    /// The client is returned to keep its connection alive with the stream.
    async fn open(
        &self,
        next_rev: i64,
    ) -> Result<(Client, WatchResponseStream, etcd_client::WatchRequestSender), String> {
        let endpoint = &self.log.endpoint;
        let opening = async {
            let options = ConnectOptions::new().with_connect_timeout(self.op_timeout);
            let mut client = Client::connect([endpoint.as_str()], Some(options)).await?;
            let options =
                WatchOptions::new().with_prefix().with_start_revision(next_rev).with_progress_notify();
            let stream = client.watch(self.log.prefix.as_str(), Some(options)).await?;
            Ok::<_, etcd_client::Error>((client, stream))
        };
        match tokio::time::timeout(self.op_timeout, opening).await {
            Ok(Ok((client, stream))) => {
                let (sender, responses) = stream.split();
                Ok((client, responses, sender))
            }
            Ok(Err(e)) => Err(format!("opening a watch from revision {next_rev} on {endpoint}: {e}")),
            Err(_) => Err(format!(
                "opening a watch from revision {next_rev} on {endpoint}: no answer within {:?}",
                self.op_timeout
            )),
        }
    }

    /// Records the responses of one stream until it fails or the watcher is finished.
    async fn follow(
        &mut self,
        mut responses: WatchResponseStream,
        mut sender: etcd_client::WatchRequestSender,
        stream: u64,
        next_rev: &mut i64,
    ) -> End {
        let mut watch_id = None;
        let mut last_message = Instant::now();
        let mut progress_asked: Option<Instant> = None;
        let mut last_poll = Instant::now();
        loop {
            if let Some(done) = self.finished() {
                return End::Done(done);
            }
            let now = Instant::now();
            let past_until = now >= self.until;
            let polling = past_until && self.final_revision.borrow().is_some();
            let mut wake = match progress_asked {
                Some(at) => at + self.stall,
                None => last_message + self.stall,
            };
            wake = wake.min(self.deadline);
            if !past_until {
                wake = wake.min(self.until);
            }
            if polling {
                wake = wake.min(last_poll + END_POLL);
            }
            let final_open = self.final_revision.has_changed().is_ok();
            let mut ask = false;
            tokio::select! {
                msg = responses.message() => match msg {
                    Ok(Some(resp)) => {
                        last_message = Instant::now();
                        progress_asked = None;
                        if let Some(end) = self.record(resp, stream, next_rev, &mut watch_id) {
                            return end;
                        }
                    }
                    Ok(None) => return End::Reconnect(format!("stream {stream} ended")),
                    Err(e) => return End::Reconnect(format!("stream {stream}: {e}")),
                },
                changed = self.final_revision.changed(), if final_open => {
                    // A closed channel is seen by `finished`; a new value is polled for below.
                    let _ = changed;
                }
                _ = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    match progress_asked {
                        Some(at) if now >= at + self.stall => {
                            return End::Reconnect(format!(
                                "stream {stream}: no message for {:?}, not even an answer to a progress request",
                                now - last_message
                            ));
                        }
                        None if now >= last_message + self.stall => {
                            progress_asked = Some(now);
                            ask = true;
                        }
                        _ => {}
                    }
                    if polling && now >= last_poll + END_POLL {
                        last_poll = now;
                        ask = true;
                    }
                }
            }
            if ask && let Err(e) = sender.request_progress().await {
                return End::Reconnect(format!("stream {stream}: requesting progress: {e}"));
            }
        }
    }

    /// Records one response; `Some` when the stream is over.
    fn record(
        &mut self,
        resp: WatchResponse,
        stream: u64,
        next_rev: &mut i64,
        watch_id: &mut Option<i64>,
    ) -> Option<End> {
        let time_ns = self.now_ns();
        let header_revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        if resp.created() {
            *watch_id = Some(resp.watch_id());
        }
        if resp.canceled() {
            let compacted = resp.compact_revision();
            if compacted <= 0 {
                return Some(End::Reconnect(format!(
                    "stream {stream}: the watch was cancelled: {:?}",
                    resp.cancel_reason()
                )));
            }
            if compacted <= *next_rev {
                self.log.malformed.push(format!(
                    "stream {stream}: cancelled as compacted at revision {compacted}, though it asked for {next_rev}"
                ));
                return Some(End::Done(Err(format!(
                    "revision {next_rev} was reported compacted at {compacted}, not after it"
                ))));
            }
            self.log.compacted.push(CompactedGap { from: *next_rev, to: compacted - 1, time_ns });
            *next_rev = compacted;
            return Some(End::Compacted);
        }
        if resp.created() {
            return None;
        }
        if resp.events().is_empty() {
            let requested = *watch_id != Some(resp.watch_id());
            let after_events = self.log.events.len();
            self.log.progress.push(Progress {
                revision: header_revision,
                requested,
                after_events,
                stream,
                time_ns,
            });
            self.log.reached = self.log.reached.max(header_revision);
            return None;
        }
        for ev in resp.events() {
            // `event_type` panics on a type it does not know; that is the server's error.
            let kind = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ev.event_type()));
            let (kind, kv) = match (kind, ev.kv()) {
                (Ok(EventType::Put), Some(kv)) => (WatchKind::Put, kv),
                (Ok(EventType::Delete), Some(kv)) => (WatchKind::Delete, kv),
                (Err(_), _) => {
                    self.log.malformed.push(format!("stream {stream}: an event of an unknown type: {ev:?}"));
                    continue;
                }
                (Ok(_), None) => {
                    self.log.malformed.push(format!("stream {stream}: an event without a key-value: {ev:?}"));
                    continue;
                }
            };
            let revision = kv.mod_revision();
            self.log.events.push(WatchEvent {
                revision,
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                kind,
                value: (kind == WatchKind::Put).then(|| String::from_utf8_lossy(kv.value()).into_owned()),
                create_revision: kv.create_revision(),
                version: kv.version(),
                header_revision,
                stream,
                time_ns,
            });
            self.log.reached = self.log.reached.max(revision);
            *next_rev = (*next_rev).max(revision + 1);
        }
        None
    }
}
