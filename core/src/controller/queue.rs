//! [`WorkQueue`]: client-go's rate-limited work queue semantics over tokio's clock.
//!
//! - A key added while it waits is not added twice; a key added while a worker processes it
//!   is queued again once the worker is done, so one key is never processed concurrently.
//! - Failed keys come back after a per-key exponential backoff (reset by
//!   [`forget`](WorkQueue::forget)), and every rate-limited add also takes a token from one
//!   overall bucket, so a storm of failures cannot hammer the API server.
//! - [`add_after`](WorkQueue::add_after) delays a key; of two delays for the same key the
//!   earlier wins.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How a [`WorkQueue`] paces retries.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueConfig {
    /// The first retry delay of a failing key (client-go: 5 ms).
    pub base_delay: Duration,
    /// The longest retry delay of a failing key.
    pub max_delay: Duration,
    /// Rate-limited adds per second across all keys (client-go: 10).
    pub rate: f64,
    /// How many rate-limited adds may happen at once before the rate applies (client-go: 100).
    pub burst: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_secs(300),
            rate: 10.0,
            burst: 100,
        }
    }
}

/// A token bucket that answers "how long until my token" instead of refusing.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn reserve(&mut self, now: Instant) -> Duration {
        if self.rate <= 0.0 {
            return Duration::ZERO;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-self.tokens / self.rate) }
    }
}

struct State<T> {
    queue: VecDeque<T>,
    dirty: HashSet<T>,
    processing: HashSet<T>,
    /// When each delayed key becomes due; the heap may hold stale entries for a key.
    waiting: HashMap<T, Instant>,
    heap: BinaryHeap<Reverse<(Instant, u64, T)>>,
    seq: u64,
    failures: HashMap<T, u32>,
    bucket: Bucket,
    shutting_down: bool,
}

/// A deduplicating, rate-limited queue of keys shared by a controller's workers.
pub struct WorkQueue<T> {
    state: Arc<Mutex<State<T>>>,
    notify: Arc<Notify>,
    config: QueueConfig,
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        WorkQueue { state: self.state.clone(), notify: self.notify.clone(), config: self.config.clone() }
    }
}

impl<T> std::fmt::Debug for WorkQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkQueue").field("config", &self.config).finish_non_exhaustive()
    }
}

/// A key handed to a worker. Dropping it marks the key done: if the key was added again
/// meanwhile, it goes back on the queue. Dropping (rather than an explicit call) means an
/// aborted worker cannot leave its key stuck as "processing".
pub struct Processing<T: Clone + Eq + Hash> {
    key: T,
    queue: WorkQueue<T>,
}

impl<T: Clone + Eq + Hash> Processing<T> {
    /// The key to process.
    pub fn key(&self) -> &T {
        &self.key
    }
}

impl<T: Clone + Eq + Hash> Drop for Processing<T> {
    fn drop(&mut self) {
        let mut s = self.queue.state.lock();
        s.processing.remove(&self.key);
        if s.dirty.contains(&self.key) {
            s.queue.push_back(self.key.clone());
            drop(s);
            self.queue.notify.notify_waiters();
        }
    }
}

impl<T: Clone + Eq + Hash + Ord + Send + 'static> WorkQueue<T> {
    /// An empty queue.
    pub fn new(config: QueueConfig) -> WorkQueue<T> {
        let bucket = Bucket {
            rate: config.rate,
            burst: f64::from(config.burst),
            tokens: f64::from(config.burst),
            last: Instant::now(),
        };
        WorkQueue {
            state: Arc::new(Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                waiting: HashMap::new(),
                heap: BinaryHeap::new(),
                seq: 0,
                failures: HashMap::new(),
                bucket,
                shutting_down: false,
            })),
            notify: Arc::new(Notify::new()),
            config,
        }
    }

    /// Queue `key` now, unless it already waits.
    pub fn add(&self, key: T) {
        let mut s = self.state.lock();
        if s.shutting_down || s.dirty.contains(&key) {
            return;
        }
        s.waiting.remove(&key);
        s.dirty.insert(key.clone());
        if !s.processing.contains(&key) {
            s.queue.push_back(key);
            drop(s);
            self.notify.notify_waiters();
        }
    }

    /// Queue `key` after `delay` (at once if the delay is zero). An earlier pending delay wins.
    pub fn add_after(&self, key: T, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let due = Instant::now() + delay;
        let mut s = self.state.lock();
        if s.shutting_down {
            return;
        }
        if s.waiting.get(&key).is_some_and(|d| *d <= due) {
            return;
        }
        s.waiting.insert(key.clone(), due);
        s.seq += 1;
        let seq = s.seq;
        s.heap.push(Reverse((due, seq, key)));
        drop(s);
        // A sleeping worker must learn of an earlier deadline.
        self.notify.notify_waiters();
    }

    /// Queue `key` after its backoff: `base_delay * 2^failures` (capped), or later if the
    /// overall bucket is empty. Returns the delay chosen.
    pub fn add_rate_limited(&self, key: T) -> Duration {
        let delay = {
            let mut s = self.state.lock();
            let n = s.failures.entry(key.clone()).or_insert(0);
            let exp = (*n).min(30);
            *n = n.saturating_add(1);
            let per_key = self.config.base_delay.saturating_mul(1u32 << exp).min(self.config.max_delay);
            let overall = s.bucket.reserve(Instant::now());
            per_key.max(overall)
        };
        self.add_after(key, delay);
        delay
    }

    /// Forget `key`'s failures, so its next failure starts from the base delay.
    pub fn forget(&self, key: &T) {
        self.state.lock().failures.remove(key);
    }

    /// How many times `key` has failed since it was last forgotten.
    pub fn failures(&self, key: &T) -> u32 {
        self.state.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// Keys ready to be processed now.
    pub fn len(&self) -> usize {
        self.state.lock().queue.len()
    }

    /// Whether no key is ready now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys waiting for a delay to pass.
    pub fn delayed(&self) -> usize {
        self.state.lock().waiting.len()
    }

    /// Keys handed to workers and not yet done.
    pub fn in_flight(&self) -> usize {
        self.state.lock().processing.len()
    }

    /// Stop accepting keys; [`get`](WorkQueue::get) returns `None` from now on.
    pub fn shut_down(&self) {
        self.state.lock().shutting_down = true;
        self.notify.notify_waiters();
    }

    /// Move delayed keys that are due onto the queue; the next deadline, if any.
    fn promote(s: &mut State<T>, now: Instant) -> Option<Instant> {
        while let Some(Reverse((due, _, _))) = s.heap.peek() {
            if *due > now {
                return Some(*due);
            }
            let Reverse((due, _, key)) = s.heap.pop().expect("peeked just now");
            if s.waiting.get(&key) != Some(&due) {
                continue;
            }
            s.waiting.remove(&key);
            if s.dirty.insert(key.clone()) && !s.processing.contains(&key) {
                s.queue.push_back(key);
            }
        }
        None
    }

    /// The next key to process, waiting for one; `None` once the queue is shut down.
    pub async fn get(&self) -> Option<Processing<T>> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let deadline = {
                let mut s = self.state.lock();
                if s.shutting_down {
                    return None;
                }
                let next = Self::promote(&mut s, Instant::now());
                if let Some(key) = s.queue.pop_front() {
                    s.dirty.remove(&key);
                    s.processing.insert(key.clone());
                    return Some(Processing { key, queue: self.clone() });
                }
                next
            };
            match deadline {
                Some(d) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(d) => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> WorkQueue<&'static str> {
        WorkQueue::new(QueueConfig::default())
    }

    async fn next(q: &WorkQueue<&'static str>) -> Processing<&'static str> {
        tokio::time::timeout(Duration::from_secs(600), q.get())
            .await
            .expect("a key within the deadline")
            .expect("queue not shut down")
    }

    #[tokio::test(start_paused = true)]
    async fn duplicates_collapse_and_order_is_fifo() {
        let q = q();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        assert_eq!(*next(&q).await.key(), "a");
        assert_eq!(*next(&q).await.key(), "b");
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_added_while_processing_comes_back_after_done() {
        let q = q();
        q.add("a");
        let p = next(&q).await;
        q.add("a");
        // Not handed to a second worker while the first holds it.
        assert!(q.is_empty());
        assert_eq!(q.in_flight(), 1);
        drop(p);
        assert_eq!(q.len(), 1);
        assert_eq!(*next(&q).await.key(), "a");
    }

    #[tokio::test(start_paused = true)]
    async fn delays_are_honoured_and_the_earlier_wins() {
        let q = q();
        let start = Instant::now();
        q.add_after("a", Duration::from_secs(10));
        q.add_after("a", Duration::from_secs(3));
        q.add_after("a", Duration::from_secs(20));
        assert_eq!(q.delayed(), 1);
        let p = next(&q).await;
        assert_eq!(*p.key(), "a");
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
        drop(p);
        // The stale 10 s entry does not deliver the key a second time.
        let later = tokio::time::timeout(Duration::from_secs(30), q.get()).await;
        assert!(later.is_err(), "no second delivery");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_until_forgotten() {
        let q = q();
        let delays: Vec<Duration> = (0..4).map(|_| q.add_rate_limited("a")).collect();
        assert_eq!(delays, [5, 10, 20, 40].map(Duration::from_millis).to_vec(), "5 ms doubling per failure");
        assert_eq!(q.failures(&"a"), 4);
        q.forget(&"a");
        assert_eq!(q.add_rate_limited("a"), Duration::from_millis(5));
    }

    #[tokio::test(start_paused = true)]
    async fn the_overall_bucket_limits_storms() {
        let q: WorkQueue<u32> = WorkQueue::new(QueueConfig { rate: 10.0, burst: 5, ..Default::default() });
        let delays: Vec<Duration> = (0..7).map(|k| q.add_rate_limited(k)).collect();
        assert!(delays[..5].iter().all(|d| *d == Duration::from_millis(5)));
        assert_eq!(delays[5], Duration::from_millis(100));
        assert_eq!(delays[6], Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn shut_down_wakes_waiting_workers() {
        let q = q();
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.get().await.is_none() })
        };
        tokio::task::yield_now().await;
        q.shut_down();
        assert!(waiter.await.expect("worker task"));
        q.add("late");
        assert!(q.is_empty(), "keys after shutdown are refused");
    }

    #[tokio::test(start_paused = true)]
    async fn an_add_wakes_a_waiting_worker() {
        let q = q();
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.get().await.map(|p| *p.key()) })
        };
        tokio::task::yield_now().await;
        q.add("x");
        assert_eq!(waiter.await.expect("worker task"), Some("x"));
    }
}
