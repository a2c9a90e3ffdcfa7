//! Watchers of the simulation: one per slot, a prefix watch on that slot's member through the
//! store API, recording what it delivers in a [`WatchLog`] for the real runs' checker
//! ([`crate::watch::check_watches`]).
//!
//! A watch lives as long as the member it was opened on: when the slot's member stops (or is
//! stopped and opened again between two looks), the watcher drops the stream, as a client
//! whose connection to a killed process broke would, and opens a new one on the slot's next
//! member from the last revision it has complete + 1. A member that comes back on a fresh
//! data directory starts empty: it refuses a start revision ahead of its own until it has
//! caught up (each refusal is a logged failure, retried after a pause), and a start revision
//! its restored snapshot no longer holds is answered as compacted, logged as a gap and
//! resumed at the compaction point. A silent stream is asked for progress; one that answers
//! nothing is dropped too.

use std::sync::Arc;
use std::time::Duration;

use flotilla_core::store::{Error, EventType, KeyRange, Store, WatchRequest, WatchResponse, WatchStream};
use futures::StreamExt;
use tokio::time::Instant;

use super::cluster::SimCluster;
use crate::watch::{CompactedGap, Progress, WatchEvent, WatchFailure, WatchKind, WatchLog};

/// The prefix every simulated client key is under.
pub(crate) const PREFIX: &str = "sim/";
/// How often a watcher checks that its member still runs.
const LOOK_EVERY: Duration = Duration::from_millis(100);
/// Silence after which progress is asked for, and again after which the stream is dropped.
const STALL: Duration = Duration::from_secs(2);
/// The pause before opening a watch again after a failure.
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// One watcher's settings.
pub(crate) struct SimWatcher {
    pub(crate) cluster: Arc<SimCluster>,
    pub(crate) slot: usize,
    /// Times in the log are measured from here.
    pub(crate) clock: Instant,
    /// The watcher stops once it has seen the final revision, at the latest `tail` after
    /// the final revision was announced, and in any case here.
    pub(crate) deadline: Instant,
    pub(crate) tail: Duration,
    /// The run's final revision, sent once the clients have stopped and the cluster healed.
    pub(crate) final_revision: tokio::sync::watch::Receiver<Option<i64>>,
    /// Test knob: resume one revision late after a reconnect, losing an event the checker
    /// must notice.
    pub(crate) skip_on_resume: bool,
}

/// Why a stream was left.
enum End {
    Reconnect(String),
    Compacted,
    Done,
}

impl SimWatcher {
    /// Watches until the final revision is reached or the deadline passes; the log.
    pub(crate) async fn run(mut self) -> WatchLog {
        let mut log = WatchLog {
            watcher: self.slot,
            endpoint: format!("slot {}", self.slot + 1),
            prefix: PREFIX.to_string(),
            start_revision: 1,
            reached: 0,
            ..WatchLog::default()
        };
        let mut streams = 0u64;
        let mut next = 1;
        loop {
            if self.reached_final(&log) {
                break;
            }
            if Instant::now() >= self.deadline() {
                log.fell_short = Some(format!("deadline passed at revision {}", log.reached));
                break;
            }
            let Some((store, opening)) = self.cluster.opened(self.slot) else {
                tokio::time::sleep(LOOK_EVERY).await;
                continue;
            };
            let req =
                WatchRequest { progress_notify: true, ..WatchRequest::new(prefix()).from_revision(next) };
            let end = match store.watch(req).await {
                Ok(stream) => {
                    streams += 1;
                    if streams > 1 {
                        log.reconnects += 1;
                    }
                    drop(store);
                    self.follow(&mut log, stream, streams, opening, &mut next).await
                }
                Err(Error::Compacted { requested, compact_revision }) => {
                    self.gap(&mut log, requested, compact_revision, &mut next);
                    End::Compacted
                }
                Err(e) => End::Reconnect(e.to_string()),
            };
            match end {
                End::Done => break,
                End::Compacted => {}
                End::Reconnect(error) => {
                    log.failures.push(WatchFailure { error, time_ns: self.now_ns() });
                    if self.skip_on_resume && log.reached > 0 {
                        next = log.reached + 2;
                    }
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
        }
        log.final_revision = *self.final_revision.borrow();
        log
    }

    /// Follows one stream until it fails, its member goes, or the watcher is done.
    async fn follow(
        &mut self,
        log: &mut WatchLog,
        mut stream: WatchStream,
        n: u64,
        opening: u64,
        next: &mut i64,
    ) -> End {
        let progress = stream.progress_handle();
        let mut heard = Instant::now();
        let mut asked = false;
        let mut look = tokio::time::interval(LOOK_EVERY);
        let mut final_revision = self.final_revision.clone();
        let mut announcing = true;
        loop {
            if self.reached_final(log) {
                return End::Done;
            }
            if Instant::now() >= self.deadline() {
                log.fell_short = Some(format!("deadline passed at revision {}", log.reached));
                return End::Done;
            }
            tokio::select! {
                message = stream.next() => match message {
                    Some(Ok(response)) => {
                        heard = Instant::now();
                        asked = false;
                        self.record(log, response, n, next);
                    }
                    Some(Err(Error::Compacted { requested, compact_revision })) => {
                        self.gap(log, requested, compact_revision, next);
                        return End::Compacted;
                    }
                    Some(Err(e)) => return End::Reconnect(format!("stream {n}: {e}")),
                    None => return End::Reconnect(format!("stream {n} ended")),
                },
                _ = look.tick() => {
                    if self.cluster.opening(self.slot) != opening || self.cluster.store(self.slot).is_none() {
                        return End::Reconnect(format!("stream {n}: its member stopped"));
                    }
                    let silent = heard.elapsed();
                    if silent >= STALL * 2 && asked {
                        return End::Reconnect(format!("stream {n}: silent for {silent:?}, progress unanswered"));
                    }
                    if silent >= STALL && !asked {
                        asked = progress.request();
                    }
                }
                changed = final_revision.changed(), if announcing => announcing = changed.is_ok(),
            }
        }
    }

    fn record(&self, log: &mut WatchLog, response: WatchResponse, stream: u64, next: &mut i64) {
        let time_ns = self.now_ns();
        let header_revision = response.header.revision;
        if response.is_progress_notify() {
            log.progress.push(Progress {
                revision: header_revision,
                requested: response.requested,
                after_events: log.events.len(),
                stream,
                time_ns,
            });
            log.reached = log.reached.max(header_revision);
        }
        for event in response.events {
            let put = event.kind == EventType::Put;
            let revision = event.kv.mod_revision;
            log.events.push(WatchEvent {
                revision,
                key: String::from_utf8_lossy(&event.kv.key).into_owned(),
                kind: if put { WatchKind::Put } else { WatchKind::Delete },
                value: put.then(|| String::from_utf8_lossy(&event.kv.value).into_owned()),
                create_revision: event.kv.create_revision,
                version: event.kv.version,
                header_revision,
                stream,
                time_ns,
            });
            log.reached = log.reached.max(revision);
        }
        *next = (*next).max(log.reached + 1);
    }

    fn gap(&self, log: &mut WatchLog, requested: i64, compact_revision: i64, next: &mut i64) {
        log.compacted.push(CompactedGap {
            from: requested,
            to: compact_revision - 1,
            time_ns: self.now_ns(),
        });
        log.reached = log.reached.max(compact_revision - 1);
        *next = (*next).max(compact_revision);
    }

    /// The deadline, brought forward to `tail` from now when the final revision is first
    /// seen announced.
    fn deadline(&mut self) -> Instant {
        if self.final_revision.borrow().is_some() && !self.tail.is_zero() {
            self.deadline = self.deadline.min(Instant::now() + self.tail);
            self.tail = Duration::ZERO;
        }
        self.deadline
    }

    fn reached_final(&self, log: &WatchLog) -> bool {
        self.final_revision.borrow().is_some_and(|f| log.reached >= f)
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

fn prefix() -> KeyRange {
    KeyRange::Prefix(PREFIX.as_bytes().to_vec())
}
