//! The collector's work queue, behind the small [`WorkQueue`] interface so the shared
//! controller runtime's queue can take its place: keys are deduplicated, a key is handed to
//! one worker at a time (re-added while in flight, it comes back once done), and failures
//! are retried after a per-key exponential backoff that a success resets.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// What the collector needs of a work queue.
#[async_trait]
pub(crate) trait WorkQueue<K>: Send + Sync {
    /// Queues `key` unless it is already queued.
    fn add(&self, key: K);

    /// Queues `key` after its backoff, which doubles with each call until [`forget`](Self::forget).
    fn add_rate_limited(&self, key: K);

    /// Resets `key`'s backoff (it succeeded).
    fn forget(&self, key: &K);

    /// The next key, once there is one; `None` once the queue is shut down. The key is the
    /// caller's until [`done`](Self::done). Cancel-safe: no key is lost if the future is
    /// dropped.
    async fn get(&self) -> Option<K>;

    /// The caller is finished with `key`; if it was added meanwhile it is queued again.
    fn done(&self, key: &K);

    /// Stops handing out keys: every `get` returns `None`.
    fn shut_down(&self);
}

struct State<K> {
    ready: VecDeque<K>,
    /// Keys to hand out: queued, or added again while in flight.
    dirty: HashSet<K>,
    processing: HashSet<K>,
    /// Keys waiting for their backoff, by deadline (and a sequence number for uniqueness).
    waiting: BTreeMap<(Instant, u64), K>,
    waiting_at: HashMap<K, (Instant, u64)>,
    failures: HashMap<K, u32>,
    seq: u64,
    shut_down: bool,
}

impl<K: Clone + Eq + Hash> State<K> {
    fn add(&mut self, key: K) -> bool {
        if self.shut_down || self.dirty.contains(&key) {
            return false;
        }
        self.dirty.insert(key.clone());
        if self.processing.contains(&key) {
            return false;
        }
        self.ready.push_back(key);
        true
    }

    fn add_at(&mut self, key: K, at: Instant) {
        if let Some(earlier) = self.waiting_at.get(&key) {
            if earlier.0 <= at {
                return;
            }
            let earlier = *earlier;
            self.waiting.remove(&earlier);
        }
        self.seq += 1;
        self.waiting.insert((at, self.seq), key.clone());
        self.waiting_at.insert(key, (at, self.seq));
    }

    /// Moves the keys whose backoff ended to the ready queue.
    fn promote_due(&mut self, now: Instant) {
        while let Some(entry) = self.waiting.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.waiting_at.remove(&key);
            self.add(key);
        }
    }
}

/// A simple in-memory [`WorkQueue`].
pub(crate) struct SimpleQueue<K> {
    state: Mutex<State<K>>,
    notify: Notify,
    backoff_base: Duration,
    backoff_max: Duration,
}

impl<K: Clone + Eq + Hash> SimpleQueue<K> {
    /// A queue whose retries wait `base`, doubling up to `max`.
    pub(crate) fn new(base: Duration, max: Duration) -> Self {
        SimpleQueue {
            state: Mutex::new(State {
                ready: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                waiting: BTreeMap::new(),
                waiting_at: HashMap::new(),
                failures: HashMap::new(),
                seq: 0,
                shut_down: false,
            }),
            notify: Notify::new(),
            backoff_base: base,
            backoff_max: max,
        }
    }

    /// How many keys are ready or waiting for their backoff.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let s = self.state.lock();
        s.ready.len() + s.waiting.len()
    }

    fn backoff(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1));
        self.backoff_base.saturating_mul(factor).min(self.backoff_max)
    }
}

#[async_trait]
impl<K: Clone + Eq + Hash + Send + Sync> WorkQueue<K> for SimpleQueue<K> {
    fn add(&self, key: K) {
        if self.state.lock().add(key) {
            self.notify.notify_waiters();
        }
    }

    fn add_rate_limited(&self, key: K) {
        let delay = {
            let mut s = self.state.lock();
            let failures = s.failures.entry(key.clone()).or_insert(0);
            *failures = failures.saturating_add(1);
            let delay = self.backoff(*failures);
            s.add_at(key, Instant::now() + delay);
            delay
        };
        tracing::trace!(delay = ?delay, "work queue retry scheduled");
        // A waiter may sleep until a later deadline.
        self.notify.notify_waiters();
    }

    fn forget(&self, key: &K) {
        self.state.lock().failures.remove(key);
    }

    async fn get(&self) -> Option<K> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before looking, so an add between the look and the wait is not missed.
            notified.as_mut().enable();
            let next_deadline = {
                let mut s = self.state.lock();
                if s.shut_down {
                    return None;
                }
                s.promote_due(Instant::now());
                if let Some(key) = s.ready.pop_front() {
                    s.dirty.remove(&key);
                    s.processing.insert(key.clone());
                    return Some(key);
                }
                s.waiting.keys().next().map(|(at, _)| *at)
            };
            match next_deadline {
                Some(at) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    fn done(&self, key: &K) {
        let requeued = {
            let mut s = self.state.lock();
            s.processing.remove(key);
            let again = s.dirty.contains(key) && !s.shut_down;
            if again {
                s.ready.push_back(key.clone());
            }
            again
        };
        if requeued {
            self.notify.notify_waiters();
        }
    }

    fn shut_down(&self) {
        self.state.lock().shut_down = true;
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const BASE: Duration = Duration::from_millis(100);

    fn queue() -> Arc<SimpleQueue<&'static str>> {
        Arc::new(SimpleQueue::new(BASE, Duration::from_secs(1)))
    }

    /// The next key within `limit` of tokio time, or `None`.
    async fn next_within(q: &SimpleQueue<&'static str>, limit: Duration) -> Option<&'static str> {
        tokio::time::timeout(limit, q.get()).await.ok().flatten()
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_deduplicated_and_handed_out_in_order() {
        let q = queue();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        assert_eq!(q.get().await, Some("a"));
        assert_eq!(q.get().await, Some("b"));
        assert_eq!(next_within(&q, Duration::from_secs(5)).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_in_flight_is_handed_out_again_only_once_done() {
        let q = queue();
        q.add("a");
        assert_eq!(q.get().await, Some("a"));
        q.add("a");
        q.add("a");
        assert_eq!(next_within(&q, Duration::from_secs(5)).await, None, "still in flight");
        q.done(&"a");
        assert_eq!(q.get().await, Some("a"));
        q.done(&"a");
        assert_eq!(next_within(&q, Duration::from_secs(5)).await, None, "added once meanwhile");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_getter_wakes_up_on_add() {
        let q = queue();
        let getter = tokio::spawn({
            let q = q.clone();
            async move { q.get().await }
        });
        tokio::task::yield_now().await;
        q.add("a");
        let got = tokio::time::timeout(Duration::from_secs(5), getter).await;
        assert_eq!(got.expect("woken in time").expect("the getter runs"), Some("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_back_off_exponentially_until_forgotten() {
        let q = queue();
        let start = Instant::now();
        for expected in [BASE, BASE * 2, BASE * 4] {
            q.add_rate_limited("a");
            let before = Instant::now();
            assert_eq!(next_within(&q, Duration::from_secs(10)).await, Some("a"));
            assert_eq!(Instant::now() - before, expected);
            q.done(&"a");
        }
        q.forget(&"a");
        q.add_rate_limited("a");
        let before = Instant::now();
        assert_eq!(next_within(&q, Duration::from_secs(10)).await, Some("a"));
        assert_eq!(Instant::now() - before, BASE, "forgotten: the backoff starts over");
        assert!(Instant::now() - start >= BASE * 8);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_is_capped() {
        let q = queue();
        for _ in 0..10 {
            q.add_rate_limited("a");
            assert_eq!(next_within(&q, Duration::from_secs(10)).await, Some("a"));
            q.done(&"a");
        }
        q.add_rate_limited("a");
        let before = Instant::now();
        assert_eq!(next_within(&q, Duration::from_secs(10)).await, Some("a"));
        assert_eq!(Instant::now() - before, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn shut_down_ends_every_get() {
        let q = queue();
        let getter = tokio::spawn({
            let q = q.clone();
            async move { q.get().await }
        });
        tokio::task::yield_now().await;
        q.shut_down();
        let got = tokio::time::timeout(Duration::from_secs(5), getter).await;
        assert_eq!(got.expect("ended in time").expect("the getter runs"), None);
        q.add("a");
        assert_eq!(q.get().await, None);
    }
}
