//! One watcher: kube's raw `Api::watch` on the run's ConfigMaps through one member, resumed
//! from the last resourceVersion seen whenever its stream ends, errors or stalls, recording
//! every event.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, WatchEvent, WatchParams};
use kube::runtime::WatchStreamExt;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::time::Instant;

use super::client::{Shared, elements_of};
use super::history::{EventType, ObjectRecorder, ObjectWatchEvent, WatcherLog};

/// The first pause before reopening a failed watch; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause before reopening a failed watch.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often a watcher past `until` looks at whether it is done.
const END_POLL: Duration = Duration::from_millis(200);

/// The next item of `stream`. kube's watch stream is a `futures` `Stream`; this crate does
/// not depend on `futures`, so the `Stream` supertrait of kube's [`WatchStreamExt`] (which
/// every stream implements) provides `poll_next`.
fn next_item<S: WatchStreamExt + Unpin + ?Sized>(
    stream: &mut S,
) -> impl std::future::Future<Output = Option<S::Item>> + '_ {
    std::future::poll_fn(move |cx| Pin::new(&mut *stream).poll_next(cx))
}

/// A watcher's settings (see [`super::run`]).
pub(crate) struct Watcher {
    pub(crate) index: usize,
    pub(crate) member: usize,
    pub(crate) api: Api<ConfigMap>,
    /// The run's label selector.
    pub(crate) selector: String,
    pub(crate) recorder: ObjectRecorder,
    pub(crate) shared: Arc<Shared>,
    /// When it opens its first watch.
    pub(crate) start_at: Instant,
    /// The resourceVersion of the list taken before the clients started.
    pub(crate) list_rv: String,
    pub(crate) seed: u64,
    pub(crate) op_timeout: Duration,
    /// The server-side lifetime of one watch request (`timeoutSeconds`), so streams end and
    /// are resumed during the run.
    pub(crate) watch_timeout: Duration,
    pub(crate) until: Instant,
    /// `until` + tail.
    pub(crate) deadline: Instant,
    /// The largest final resourceVersion, once the final reads are done.
    pub(crate) target: tokio::sync::watch::Receiver<Option<u64>>,
}

/// Why a stream was left.
enum End {
    /// It failed or ended: resume after a backoff.
    Resume(String),
    /// 410 Gone: the watcher ends.
    Gone(String),
    /// The watcher is finished (see [`Watcher::finished`]).
    Finished,
}

impl Watcher {
    /// Runs the watcher to its end and records its log.
    pub(crate) async fn run(mut self) {
        tokio::time::sleep_until(self.start_at).await;
        let mut rng = StdRng::seed_from_u64(self.seed ^ 0x5741_5443_4845_5200 ^ self.index as u64);
        let (start_rv, source) = match (self.index, self.shared.recent_version(&mut rng)) {
            (0, _) => (self.list_rv.clone(), "the list before the clients started"),
            (_, Some(rv)) => (rv, "an ok update's response"),
            (_, None) => (self.list_rv.clone(), "the list before the clients started (no update was ok yet)"),
        };
        let mut log = WatcherLog {
            watcher: self.index,
            member: self.member,
            start_rv: start_rv.clone(),
            start_source: source.to_string(),
            started_ns: self.recorder.now_ns(),
            reached: start_rv,
            ..WatcherLog::default()
        };
        let secs = u32::try_from(self.watch_timeout.as_secs()).unwrap_or(u32::MAX).max(1);
        let params = WatchParams::default().labels(&self.selector).timeout(secs);
        let mut backoff = MIN_BACKOFF;
        loop {
            if let Some(done) = self.finished(&log) {
                log.fell_short = done.err();
                break;
            }
            let why = match tokio::time::timeout(self.op_timeout, self.api.watch(&params, &log.reached)).await
            {
                Ok(Ok(stream)) => {
                    log.streams += 1;
                    backoff = MIN_BACKOFF;
                    match self.follow(&mut Box::pin(stream), &mut log).await {
                        End::Finished => continue,
                        End::Gone(why) => {
                            log.gone = Some(why);
                            break;
                        }
                        End::Resume(why) => why,
                    }
                }
                Ok(Err(kube::Error::Api(s))) if s.code == 410 => {
                    log.gone =
                        Some(format!("opening a watch from {}: {} {}", log.reached, s.code, s.message));
                    break;
                }
                Ok(Err(e)) => format!("opening a watch from {}: {e}", log.reached),
                Err(_) => {
                    format!("opening a watch from {}: no answer within {:?}", log.reached, self.op_timeout)
                }
            };
            log.failures.push(why);
            tokio::time::sleep_until((Instant::now() + backoff).min(self.deadline)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        log.target = *self.target.borrow();
        self.recorder.watcher(log);
    }

    /// `Some` when the watcher is finished: past `until` and at the target (`Ok`), or unable
    /// to get there (`Err` with why).
    fn finished(&self, log: &WatcherLog) -> Option<Result<(), String>> {
        let now = Instant::now();
        if now < self.until {
            return None;
        }
        let reached = log.reached.parse::<u64>().ok();
        match *self.target.borrow() {
            Some(t) if reached.is_some_and(|r| r >= t) => Some(Ok(())),
            Some(t) if now >= self.deadline => Some(Err(format!(
                "reached resourceVersion {}, short of the final {t}, when the tail ran out",
                log.reached
            ))),
            Some(_) => None,
            None if self.target.has_changed().is_err() => {
                Some(Err("no final resourceVersion is known (the final reads failed)".to_string()))
            }
            None if now >= self.deadline => {
                Some(Err("no final resourceVersion was known when the tail ran out".to_string()))
            }
            None => None,
        }
    }

    /// Records one stream's events until it ends, fails, stalls or the watcher is finished.
    async fn follow<S>(&mut self, stream: &mut S, log: &mut WatcherLog) -> End
    where
        S: WatchStreamExt<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin + ?Sized,
    {
        let n = log.streams;
        let stall = (self.op_timeout * 5).max(Duration::from_secs(10));
        let mut last_message = Instant::now();
        loop {
            let now = Instant::now();
            if now >= self.until && self.finished(log).is_some() {
                return End::Finished;
            }
            let mut wake = (last_message + stall).min(self.deadline);
            wake = if now < self.until { wake.min(self.until) } else { wake.min(now + END_POLL) };
            tokio::select! {
                item = next_item(stream) => {
                    last_message = Instant::now();
                    match item {
                        None => return End::Resume(format!("stream {n} ended")),
                        Some(Err(e)) => return End::Resume(format!("stream {n}: {e}")),
                        Some(Ok(WatchEvent::Added(cm))) => self.record(log, EventType::Added, cm),
                        Some(Ok(WatchEvent::Modified(cm))) => self.record(log, EventType::Modified, cm),
                        Some(Ok(WatchEvent::Deleted(cm))) => self.record(log, EventType::Deleted, cm),
                        Some(Ok(WatchEvent::Bookmark(b))) => {
                            log.bookmarks += 1;
                            if !b.metadata.resource_version.is_empty() {
                                log.reached = b.metadata.resource_version;
                            }
                        }
                        Some(Ok(WatchEvent::Error(s))) if s.code == 410 => {
                            return End::Gone(format!("stream {n}: {} {}: {}", s.code, s.reason, s.message));
                        }
                        Some(Ok(WatchEvent::Error(s))) => {
                            return End::Resume(format!("stream {n}: error event {} {}: {}", s.code, s.reason, s.message));
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    if now >= last_message + stall {
                        return End::Resume(format!("stream {n}: no message for {:?}", now - last_message));
                    }
                    if now >= self.deadline {
                        return End::Finished;
                    }
                }
            }
        }
    }

    fn record(&self, log: &mut WatcherLog, kind: EventType, cm: ConfigMap) {
        let rv = cm.metadata.resource_version.clone().unwrap_or_default();
        let parsed = elements_of(&cm);
        self.recorder.event(ObjectWatchEvent {
            watcher: self.index,
            kind,
            object: cm.metadata.name.unwrap_or_default(),
            rv: rv.clone(),
            elements: parsed.clone().unwrap_or_default(),
            malformed: parsed.err(),
            stream: log.streams,
            time_ns: self.recorder.now_ns(),
        });
        if !rv.is_empty() {
            log.reached = rv;
        }
    }
}
