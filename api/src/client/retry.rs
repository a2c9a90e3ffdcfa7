//! The retry loop: attempts with jittered exponential backoff or the server's `Retry-After`,
//! on tokio's clock (tests pause it).

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use super::RetryPolicy;

/// The longest `Retry-After` honoured; a longer one is cut to it.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// What one attempt came to.
pub(crate) enum Attempt<T> {
    /// Final: success, or a failure not worth retrying.
    Done(T),
    /// Worth retrying, after `after` if the server said so; `last` is the answer if no
    /// attempt is left.
    Retry {
        /// The server's `Retry-After`.
        after: Option<Duration>,
        /// The outcome to return when attempts run out.
        last: T,
    },
}

/// The delay before retry number `retry` (1 for the first): `initial_backoff` doubled per
/// retry up to `max_backoff`, drawn between half of that and all of it.
pub(crate) fn backoff(policy: &RetryPolicy, retry: u32) -> Duration {
    let doubled = policy.initial_backoff.saturating_mul(1u32 << retry.saturating_sub(1).min(20));
    let ceiling = doubled.min(policy.max_backoff);
    ceiling.mul_f64(rand::rng().random_range(0.5..=1.0))
}

/// Runs `attempt` until it is done or `policy.max_attempts` attempts were made, sleeping
/// between attempts; `what` names the request in logs.
pub(crate) async fn retrying<T, F, Fut>(policy: RetryPolicy, what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let mut n = 1;
    loop {
        match attempt().await {
            Attempt::Done(t) => return t,
            Attempt::Retry { last, .. } if n >= policy.max_attempts.max(1) => return last,
            Attempt::Retry { after, .. } => {
                let delay = after.map_or_else(|| backoff(&policy, n), |a| a.min(MAX_RETRY_AFTER));
                tracing::debug!(request = what, attempt = n, ?delay, "retrying request");
                tokio::time::sleep(delay).await;
                n += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use tokio::time::Instant;

    use super::*;

    /// Fails the test if `fut` has not finished after an hour of (paused, auto-advancing) time.
    async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(3600), fut)
            .await
            .unwrap_or_else(|_| panic!("timed out: {what}"))
    }

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let p = policy(10);
        for (retry, ceiling_ms) in [(1, 100), (2, 200), (3, 400), (6, 3200), (7, 5000), (30, 5000)] {
            for _ in 0..50 {
                let d = backoff(&p, retry);
                let ceiling = Duration::from_millis(ceiling_ms);
                assert!(d <= ceiling && d >= ceiling / 2, "retry {retry}: {d:?}");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_and_attempts_are_bounded() {
        let calls = Cell::new(0);
        let start = Instant::now();
        let honoured = retrying(policy(5), "test", || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 3 {
                    Attempt::Retry { after: Some(Duration::from_secs(2)), last: n }
                } else {
                    Attempt::Done(n)
                }
            }
        });
        let out = within("the retry loop honouring Retry-After", honoured).await;
        assert_eq!((out, calls.get()), (3, 3));
        assert_eq!(start.elapsed(), Duration::from_secs(4), "two Retry-After waits of 2 s");

        calls.set(0);
        let start = Instant::now();
        let exhausted = retrying(policy(4), "test", || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move { Attempt::Retry { after: None, last: n } }
        });
        let out = within("the retry loop running out of attempts", exhausted).await;
        assert_eq!((out, calls.get()), (4, 4), "the last attempt's outcome, after 4 attempts");
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(350) && waited <= Duration::from_millis(700),
            "backoffs of at most 100 + 200 + 400 ms, at least half that: {waited:?}"
        );

        let start = Instant::now();
        let capped = retrying(policy(3), "test", || async {
            Attempt::Retry { after: Some(Duration::from_secs(3600)), last: () }
        });
        within("the retry loop capping Retry-After", capped).await;
        assert_eq!(start.elapsed(), MAX_RETRY_AFTER * 2, "Retry-After is capped");
    }

    #[tokio::test(start_paused = true)]
    async fn one_attempt_means_no_retry() {
        let start = Instant::now();
        let once = retrying(policy(1), "test", || async { Attempt::Retry { after: None, last: 7 } });
        let out = within("a single attempt", once).await;
        assert_eq!((out, start.elapsed()), (7, Duration::ZERO));
    }
}
