//! Watch fan-out: W watches of the namespace's pods over HTTP, then K label patches one
//! after another; each watcher notes when it received each patch's event, and the delivery
//! latency is measured from the patch's response (its completion) to that receipt.

use std::time::Duration;

use flotilla_core::client::{Api, Event, ListOptions};
use flotilla_core::patch::PatchType;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::measure::{cpu_secs, histogram, record, report};
use crate::pod_name;

/// Watches being opened at once.
const OPENING_AT_ONCE: usize = 32;
/// The label whose value numbers the patches.
const SEQ_LABEL: &str = "seq";

/// What the fan-out measures.
pub(crate) struct FanOut {
    /// One per watcher: the API (and so the connection) it watches through.
    pub(crate) watch_apis: Vec<Api<Pod>>,
    /// The API the patches are sent through.
    pub(crate) writer: Api<Pod>,
    /// Pods that exist (`pod-0000000` ..), patched round-robin.
    pub(crate) pods: usize,
    /// Patches.
    pub(crate) changes: usize,
    /// How long watchers may still wait for events after the last patch completed.
    pub(crate) grace: Duration,
}

/// When one watcher received each patch's event (`None`: not received), or why it failed.
type Receipts = Result<Vec<Option<Instant>>, String>;

impl FanOut {
    /// Runs the fan-out and prints its figures; fails if any watcher missed any event.
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let watchers = self.watch_apis.len();
        let from = self.writer.list(&ListOptions { limit: Some(1), ..Default::default() }).await?;
        let (deadline_tx, deadline_rx) = watch::channel(None::<Instant>);

        let cpu = cpu_secs();
        let start = Instant::now();
        let opts = ListOptions { resource_version: Some(from.resource_version), ..Default::default() };
        let streams: Vec<_> = futures::stream::iter(self.watch_apis.iter().cloned())
            .map(|api| {
                let opts = opts.clone();
                async move { api.watch(&opts).await }
            })
            .buffer_unordered(OPENING_AT_ONCE)
            .try_collect()
            .await?;
        let open_secs = start.elapsed().as_secs_f64();
        println!(
            "# opened {watchers} watches in {open_secs:.2}s ({:.0}/s), cpu {:.2}s",
            watchers as f64 / open_secs.max(1e-9),
            cpu_secs() - cpu
        );
        let tasks: Vec<_> = streams
            .into_iter()
            .map(|s| tokio::spawn(receive(s.boxed(), self.changes, deadline_rx.clone())))
            .collect();

        let cpu = cpu_secs();
        let mut patch_latency = histogram();
        let mut completed = Vec::with_capacity(self.changes);
        let start = Instant::now();
        for seq in 0..self.changes {
            let patch = serde_json::json!({"metadata": {"labels": {SEQ_LABEL: seq.to_string()}}});
            let t = Instant::now();
            self.writer.patch(&pod_name(seq % self.pods.max(1)), PatchType::Merge, &patch).await?;
            let done = Instant::now();
            record(&mut patch_latency, done - t);
            completed.push(done);
        }
        let last_patch = Instant::now();
        report("watch_patch", 1, start.elapsed(), &patch_latency, cpu_secs() - cpu);
        deadline_tx.send_replace(Some(last_patch + self.grace));

        let mut receipts = Vec::with_capacity(watchers);
        for t in tasks {
            receipts.push(t.await?);
        }
        let (window, tail) = (start.elapsed(), last_patch.elapsed());
        self.summarize(&completed, &receipts, window, tail, cpu_secs() - cpu)
    }

    fn summarize(
        &self,
        completed: &[Instant],
        receipts: &[Receipts],
        window: Duration,
        tail: Duration,
        cpu: f64,
    ) -> anyhow::Result<()> {
        let mut latency = histogram();
        let (mut early, mut missing, mut incomplete, mut failed) = (0usize, 0usize, 0usize, Vec::new());
        for (w, r) in receipts.iter().enumerate() {
            let got = match r {
                Ok(got) => got,
                Err(e) => {
                    failed.push(format!("watcher {w}: {e}"));
                    continue;
                }
            };
            let mut complete = true;
            for (seq, at) in got.iter().enumerate() {
                match (at, completed.get(seq)) {
                    (Some(at), Some(done)) => {
                        early += usize::from(at < done);
                        record(&mut latency, at.saturating_duration_since(*done));
                    }
                    _ => {
                        missing += 1;
                        complete = false;
                    }
                }
            }
            incomplete += usize::from(!complete);
        }
        let watchers = receipts.len();
        report("watch_delivery", watchers, window, &latency, cpu);
        println!(
            "# watch fan-out: {watchers} watchers x {} changes = {} events expected, {} received \
             ({early} before the patch's response arrived, counted as 0 us); secs runs from the \
             first patch to the last event, {:.3}s after the last patch; cpu_s covers patches and delivery",
            self.changes,
            watchers * self.changes,
            latency.len(),
            tail.as_secs_f64()
        );
        anyhow::ensure!(
            failed.is_empty() && missing == 0,
            "WATCH FAN-OUT FAILED: {} watchers failed ({}), {incomplete} watchers missed {missing} events",
            failed.len(),
            failed.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
        );
        Ok(())
    }
}

/// Receives events until every one of `changes` patches was seen, the watch ends, or the
/// deadline (set once the patches are done) passes.
async fn receive(
    mut stream: futures::stream::BoxStream<'static, Event<Pod>>,
    changes: usize,
    mut deadline: watch::Receiver<Option<Instant>>,
) -> Receipts {
    let mut got = vec![None; changes];
    let mut seen = 0;
    while seen < changes {
        let limit = *deadline.borrow_and_update();
        let next = match limit {
            Some(limit) => match tokio::time::timeout_at(limit, stream.next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => tokio::select! {
                next = stream.next() => next,
                // The sender lives until every watcher has returned.
                _ = deadline.changed() => continue,
            },
        };
        let at = Instant::now();
        match next {
            Some(Event::Modified(p)) => {
                let seq = p.metadata.labels.as_ref().and_then(|l| l.get(SEQ_LABEL));
                if let Some(slot) = seq.and_then(|s| s.parse::<usize>().ok()).and_then(|s| got.get_mut(s))
                    && slot.is_none()
                {
                    *slot = Some(at);
                    seen += 1;
                }
            }
            Some(Event::Error(e)) => return Err(format!("watch failed after {seen} events: {e}")),
            Some(_) => {}
            None => return Err(format!("watch ended after {seen} events")),
        }
    }
    Ok(got)
}
