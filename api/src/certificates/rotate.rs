//! Rotating a joined node's certificates while it runs, as kubelet's certificate manager does.
//!
//! [`rotate_certificates`] looks after the client and the serving certificate of
//! [`NodeCredentials`], each on its own schedule: when a jittered 70–90 % of the
//! certificate's lifetime (`notBefore` to `notAfter`) has passed, a new one is asked for
//! through a CertificateSigningRequest, the way [`join`](super::join::join) asks (the client
//! certificate with itself, approved as `selfnodeclient`, or with the bootstrap token once it
//! has expired, if the node still has one; the serving certificate with the client
//! certificate). The new key and certificate are written atomically where `join` keeps them,
//! then the [`LiveIdentity`] is swapped, so new connections and handshakes present it.
//!
//! A failed renewal is logged and retried after [`INITIAL_BACKOFF`], doubling up to
//! [`MAX_BACKOFF`], but never later than half the time the certificate has left (at least
//! [`MIN_RETRY`]), so a renewal is tried again before it expires.

use std::future::Future;
use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::identity::{LiveIdentity, TlsIdentity, Validity, hex_serial};
use super::join::{
    ClientVia, JoinConfig, JoinError, NodeCredentials, Result, new_client_certificate,
    new_serving_certificate,
};

/// The earliest point of a certificate's lifetime at which it is renewed.
pub const RENEW_FROM: f64 = 0.7;
/// The latest point of a certificate's lifetime at which it is renewed.
pub const RENEW_TO: f64 = 0.9;
/// The wait after a first failed renewal.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(30);
/// The longest wait between two renewal attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5 * 60);
/// The shortest wait between two renewal attempts.
pub const MIN_RETRY: Duration = Duration::from_secs(1);
/// The longest single timer: the wall clock is looked at again after it (a suspended
/// machine or a clock that was set does not postpone a renewal).
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// Which of a node's certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeCertificate {
    /// The client certificate (`kubelet-client.crt`).
    Client,
    /// The serving certificate (`kubelet.crt`).
    Serving,
}

impl NodeCertificate {
    fn name(self) -> &'static str {
        match self {
            NodeCertificate::Client => "client",
            NodeCertificate::Serving => "serving",
        }
    }
}

/// Keeps `creds`' certificates fresh until `stop` is cancelled (see the module docs).
/// Never fails: every error is logged and retried.
pub async fn rotate_certificates(config: JoinConfig, creds: NodeCredentials, stop: CancellationToken) {
    let client = rotate(NodeCertificate::Client, &creds.client, &stop, || {
        renew(&config, &creds, NodeCertificate::Client)
    });
    let serving = rotate(NodeCertificate::Serving, &creds.serving, &stop, || {
        renew(&config, &creds, NodeCertificate::Serving)
    });
    tokio::join!(client, serving);
}

/// Asks for a new certificate `which` for the node and stores it.
async fn renew(config: &JoinConfig, creds: &NodeCredentials, which: NodeCertificate) -> Result<TlsIdentity> {
    let client = creds.client.current();
    match which {
        NodeCertificate::Client => {
            let not_after = client.validity().not_after;
            if not_after > SystemTime::now() {
                new_client_certificate(config, &creds.ca_pem, ClientVia::Itself(client.pem())).await
            } else if !config.token.is_empty() {
                new_client_certificate(config, &creds.ca_pem, ClientVia::Token).await
            } else {
                Err(JoinError::ClientExpired { not_after: rfc3339(not_after) })
            }
        }
        NodeCertificate::Serving => new_serving_certificate(config, &creds.ca_pem, client.pem()).await,
    }
}

/// Renews `live` with `renew` at each renewal deadline, until `stop` is cancelled.
async fn rotate<F, Fut>(which: NodeCertificate, live: &LiveIdentity, stop: &CancellationToken, mut renew: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<TlsIdentity>>,
{
    let certificate = which.name();
    loop {
        let current = live.current();
        let validity = current.validity();
        let fraction = jittered_fraction(&mut rand::rng());
        let deadline = renewal_deadline(validity, fraction);
        tracing::info!(
            certificate,
            serial = hex_serial(current.serial()),
            expires = rfc3339(validity.not_after),
            renew_at = rfc3339(deadline),
            "next node certificate rotation"
        );
        if !sleep_until(deadline, stop).await {
            return;
        }
        let mut backoff = INITIAL_BACKOFF;
        let renewed = loop {
            let result = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                result = renew() => result,
            };
            match result {
                Ok(renewed) => break renewed,
                Err(error) => {
                    let delay = retry_delay(backoff, SystemTime::now(), validity.not_after);
                    tracing::warn!(
                        certificate,
                        %error,
                        retry_in = ?delay,
                        expires = rfc3339(validity.not_after),
                        "node certificate rotation failed; will retry"
                    );
                    if !sleep_for(delay, stop).await {
                        return;
                    }
                    backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
                }
            }
        };
        let fresh = renewed.validity();
        tracing::info!(
            certificate,
            serial = hex_serial(renewed.serial()),
            expires = rfc3339(fresh.not_after),
            "node certificate rotated"
        );
        live.replace(renewed);
        // One due as soon as it is issued (a lifetime shorter than a renewal takes, or a
        // signer cutting it short) is not renewed again in a tight loop.
        let now = SystemTime::now();
        if renewal_deadline(fresh, RENEW_FROM) <= now {
            let delay = retry_delay(INITIAL_BACKOFF, now, fresh.not_after);
            tracing::warn!(certificate, retry_in = ?delay, "the new certificate is already due for renewal");
            if !sleep_for(delay, stop).await {
                return;
            }
        }
    }
}

/// A fraction of a certificate's lifetime drawn uniformly from [`RENEW_FROM`]..=[`RENEW_TO`].
pub fn jittered_fraction(rng: &mut impl Rng) -> f64 {
    rng.random_range(RENEW_FROM..=RENEW_TO)
}

/// When a certificate valid for `validity` is renewed: `fraction` (clamped to 0..=1) of its
/// lifetime after `not_before`.
pub fn renewal_deadline(validity: Validity, fraction: f64) -> SystemTime {
    let fraction = if fraction.is_finite() { fraction.clamp(0.0, 1.0) } else { RENEW_FROM };
    let lifetime = validity.lifetime();
    let into = Duration::try_from_secs_f64(lifetime.as_secs_f64() * fraction).unwrap_or(lifetime);
    validity.not_before.checked_add(into).unwrap_or(validity.not_after)
}

/// How long from `now` until `deadline`; zero once it has passed.
pub fn time_until(deadline: SystemTime, now: SystemTime) -> Duration {
    deadline.duration_since(now).unwrap_or_default()
}

/// The wait before the next renewal attempt: `backoff`, but at most half the time left until
/// `not_after` (at least [`MIN_RETRY`]); `backoff` once the certificate has expired.
pub fn retry_delay(backoff: Duration, now: SystemTime, not_after: SystemTime) -> Duration {
    match time_until(not_after, now) {
        left if left.is_zero() => backoff,
        left => backoff.min((left / 2).max(MIN_RETRY)),
    }
}

/// Sleeps until the wall clock reaches `deadline`: true then, false if `stop` came first.
async fn sleep_until(deadline: SystemTime, stop: &CancellationToken) -> bool {
    loop {
        let left = time_until(deadline, SystemTime::now());
        if left.is_zero() {
            return true;
        }
        if !sleep_for(left.min(MAX_SLEEP), stop).await {
            return false;
        }
    }
}

/// Sleeps for `delay`: true then, false if `stop` came first.
async fn sleep_for(delay: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        biased;
        () = stop.cancelled() => false,
        () = tokio::time::sleep(delay) => true,
    }
}

/// `time` as RFC 3339, for logs and messages.
fn rfc3339(time: SystemTime) -> String {
    jiff::Timestamp::try_from(time).map(|t| t.to_string()).unwrap_or_else(|_| format!("{time:?}"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parking_lot::Mutex;
    use rand::SeedableRng;

    use super::*;
    use crate::kubeconfig::ClientCertificate;

    fn validity(not_before: SystemTime, lifetime: Duration) -> Validity {
        Validity { not_before, not_after: not_before + lifetime }
    }

    #[test]
    fn renewal_is_due_at_a_jittered_70_to_90_percent() {
        let start = SystemTime::now() - Duration::from_secs(100);
        let v = validity(start, Duration::from_secs(1000));
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (mut earliest, mut latest) = (v.not_after, v.not_before);
        for _ in 0..1000 {
            let at = renewal_deadline(v, jittered_fraction(&mut rng));
            assert!(
                at >= start + Duration::from_secs(700) && at <= start + Duration::from_secs(900),
                "{at:?}"
            );
            earliest = earliest.min(at);
            latest = latest.max(at);
        }
        // Jittered: spread over (nearly) the whole window, not one point.
        assert!(earliest < start + Duration::from_secs(720), "{earliest:?}");
        assert!(latest > start + Duration::from_secs(880), "{latest:?}");
        assert_eq!(renewal_deadline(v, 0.75), start + Duration::from_secs(750));
        // Nonsense fractions stay within the lifetime.
        assert_eq!(renewal_deadline(v, 7.0), v.not_after);
        assert_eq!(renewal_deadline(v, -1.0), v.not_before);
        assert_eq!(renewal_deadline(v, f64::NAN), start + Duration::from_secs(700));
    }

    #[test]
    fn expired_or_overdue_certificates_renew_at_once() {
        let now = SystemTime::now();
        let expired = validity(now - Duration::from_secs(7200), Duration::from_secs(3600));
        assert_eq!(time_until(renewal_deadline(expired, RENEW_FROM), now), Duration::ZERO);
        // Past 90 % but not expired: due too.
        let overdue = validity(now - Duration::from_secs(95), Duration::from_secs(100));
        assert_eq!(time_until(renewal_deadline(overdue, RENEW_TO), now), Duration::ZERO);
        // A fresh one waits its 70 %.
        let fresh = validity(now, Duration::from_secs(100));
        assert_eq!(time_until(renewal_deadline(fresh, RENEW_FROM), now), Duration::from_secs(70));
        let backwards = Validity { not_before: now, not_after: now - Duration::from_secs(1) };
        assert_eq!(time_until(renewal_deadline(backwards, RENEW_TO), now), Duration::ZERO);
    }

    #[test]
    fn retries_back_off_but_come_before_expiry() {
        let now = SystemTime::now();
        let far = now + Duration::from_secs(86400);
        let mut backoff = INITIAL_BACKOFF;
        let mut delays = Vec::new();
        for _ in 0..7 {
            delays.push(retry_delay(backoff, now, far).as_secs());
            backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
        }
        assert_eq!(delays, [30, 60, 120, 240, 300, 300, 300]);
        // Close to expiry the wait is at most half of what is left, so attempts keep coming.
        assert_eq!(retry_delay(MAX_BACKOFF, now, now + Duration::from_secs(20)), Duration::from_secs(10));
        for left in [3, 10, 100, 599] {
            let delay = retry_delay(MAX_BACKOFF, now, now + Duration::from_secs(left));
            assert!(delay < Duration::from_secs(left), "{left}s left, waits {delay:?}");
        }
        assert_eq!(retry_delay(MAX_BACKOFF, now, now + Duration::from_millis(500)), MIN_RETRY);
        // Once expired, plain backoff.
        assert_eq!(retry_delay(MAX_BACKOFF, now, now - Duration::from_secs(1)), MAX_BACKOFF);
    }

    /// A self-signed certificate for `user` valid from `not_before` for `lifetime`.
    fn certificate(not_before: SystemTime, lifetime: Duration) -> TlsIdentity {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        let since = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970");
        params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since(not_before);
        params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since(not_before + lifetime);
        let cert = params.self_signed(&key).expect("cert");
        let pem = ClientCertificate {
            cert_pem: cert.pem().into_bytes(),
            key_pem: key.serialize_pem().into_bytes(),
        };
        TlsIdentity::from_pem(&pem).expect("identity")
    }

    #[tokio::test(start_paused = true)]
    async fn failed_renewals_are_retried_with_backoff_then_swapped() {
        let now = SystemTime::now();
        let expired = certificate(now - Duration::from_secs(7200), Duration::from_secs(3600));
        let live = LiveIdentity::new(expired);
        let stop = CancellationToken::new();
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let started = tokio::time::Instant::now();
        let task = {
            let (live, stop, attempts) = (live.clone(), stop.clone(), attempts.clone());
            tokio::spawn(async move {
                rotate(NodeCertificate::Client, &live, &stop, || {
                    let attempts = attempts.clone();
                    async move {
                        let mut attempts = attempts.lock();
                        attempts.push(started.elapsed().as_secs());
                        if attempts.len() < 7 {
                            return Err(JoinError::Crypto("the server is away".into()));
                        }
                        Ok(certificate(SystemTime::now(), Duration::from_secs(3600)))
                    }
                })
                .await
            })
        };
        let deadline = started + Duration::from_secs(3600);
        while attempts.lock().len() < 7 {
            assert!(tokio::time::Instant::now() < deadline, "attempts: {:?}", attempts.lock());
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // Due at once (expired); then 30 s, doubling, at most 5 min apart.
        assert_eq!(*attempts.lock(), [0, 30, 90, 210, 450, 750, 1050]);
        let current = live.current();
        assert!(current.validity().not_after > SystemTime::now(), "the renewed certificate is in use");
        // The next rotation is far off (70–90 % of an hour): nothing more is attempted, and
        // the task ends when stopped.
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(attempts.lock().len(), 7);
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("stops when cancelled")
            .expect("no panic");
    }

    #[tokio::test(start_paused = true)]
    async fn stops_while_waiting_and_while_renewing() {
        let now = SystemTime::now();
        // Waiting for a deadline months away.
        let live = LiveIdentity::new(certificate(now, Duration::from_secs(365 * 86400)));
        let stop = CancellationToken::new();
        let (l, s) = (live.clone(), stop.clone());
        let task = tokio::spawn(async move {
            rotate(NodeCertificate::Serving, &l, &s, || async { Err(JoinError::NoCa) }).await
        });
        tokio::time::sleep(Duration::from_secs(7200)).await;
        stops_when_cancelled(&stop, task).await;

        // In the middle of a renewal that never ends.
        let live = LiveIdentity::new(certificate(now - Duration::from_secs(7200), Duration::from_secs(3600)));
        let stop = CancellationToken::new();
        let (l, s) = (live.clone(), stop.clone());
        let task = tokio::spawn(async move {
            rotate(NodeCertificate::Client, &l, &s, std::future::pending::<Result<TlsIdentity>>).await
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        stops_when_cancelled(&stop, task).await;
    }

    /// Checks that `task` still runs, cancels `stop` and waits (a second at most) for it.
    async fn stops_when_cancelled(stop: &CancellationToken, task: tokio::task::JoinHandle<()>) {
        assert!(!task.is_finished());
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("stops when cancelled")
            .expect("no panic");
    }
}
