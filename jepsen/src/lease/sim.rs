//! The workload on a paused clock against an in-memory lessor that follows (or, by a knob,
//! breaks) the lease semantics, checked by the checker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::history::{LeaseCall, LeaseOutcome};
use super::workload::{ApiError, LeaseApi, hold_time, keep_alive_every, run_with};
use super::{LeaseAnomalyKind, LeaseError, LeaseHistory, LeaseRecorder, LeaseSpec, LeaseVerdict, check};

/// An in-memory lease store; each request takes `latency`, applied halfway.
#[derive(Clone, Default)]
struct Fake {
    state: Arc<Mutex<State>>,
    latency: Duration,
    /// Expires leases this much before their deadline (a bug).
    early: Duration,
    /// Never expires anything (a bug).
    immortal: bool,
    /// Keep-alives are applied but never answered.
    mute_keep_alives: bool,
}

#[derive(Default)]
struct State {
    next: i64,
    /// Lease id to (TTL, deadline).
    leases: HashMap<i64, (i64, Instant)>,
    /// Key to lease id.
    keys: HashMap<String, i64>,
}

impl Fake {
    /// Waits half the latency, applies `f` to the state with expired leases revoked, waits the
    /// other half.
    async fn apply<T>(&self, f: impl FnOnce(&mut State, Instant) -> T) -> T {
        tokio::time::sleep(self.latency / 2).await;
        let out = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if !self.immortal {
                s.leases.retain(|_, (_, deadline)| *deadline > now);
                let State { leases, keys, .. } = &mut *s;
                keys.retain(|_, lease| leases.contains_key(lease));
            }
            f(&mut s, now)
        };
        tokio::time::sleep(self.latency / 2).await;
        out
    }

    fn deadline(&self, now: Instant, ttl: i64) -> Instant {
        now + Duration::from_secs(ttl as u64) - self.early
    }
}

impl LeaseApi for Fake {
    async fn grant(&mut self, ttl: i64) -> Result<(i64, i64), ApiError> {
        let this = self.clone();
        Ok(self
            .apply(|s, now| {
                s.next += 1;
                s.leases.insert(s.next, (ttl, this.deadline(now, ttl)));
                (s.next, ttl)
            })
            .await)
    }

    async fn put(&mut self, key: &str, lease: i64) -> Result<(), ApiError> {
        let found = self
            .apply(|s, _| {
                s.leases.contains_key(&lease).then(|| s.keys.insert(key.to_string(), lease)).is_some()
            })
            .await;
        if found { Ok(()) } else { Err(ApiError { message: "lease not found".into(), definite: true }) }
    }

    async fn keep_alive(&mut self, lease: i64, _granted: i64) -> Result<i64, ApiError> {
        let this = self.clone();
        let ttl = self
            .apply(|s, now| match s.leases.get_mut(&lease) {
                Some((ttl, deadline)) => {
                    *deadline = this.deadline(now, *ttl);
                    *ttl
                }
                None => 0,
            })
            .await;
        if self.mute_keep_alives {
            std::future::pending::<()>().await;
        }
        Ok(ttl)
    }

    async fn get(&mut self, key: &str) -> Result<bool, ApiError> {
        Ok(self.apply(|s, _| s.keys.contains_key(key)).await)
    }
}

fn spec() -> LeaseSpec {
    LeaseSpec { ttl_secs: 2, expiry_slack: Duration::from_secs(5), ..LeaseSpec::new("sim", 11) }
}

/// Runs three clients on `fake` for 30 s (of paused time) and checks the history.
async fn simulate(fake: Fake, spec: &LeaseSpec) -> Result<(LeaseHistory, LeaseVerdict), LeaseError> {
    let start = Instant::now();
    let recorder = LeaseRecorder::new(spec, start);
    let fake = Fake { latency: Duration::from_millis(4), ..fake };
    let apis = vec![fake; spec.clients];
    run_with(apis, spec, &recorder, start + Duration::from_secs(30)).await?;
    let history = recorder.history();
    let verdict = check(&history);
    Ok((history, verdict))
}

fn kinds(v: &LeaseVerdict) -> Vec<LeaseAnomalyKind> {
    v.anomalies.iter().map(|a| a.kind).collect()
}

#[tokio::test(start_paused = true)]
async fn a_correct_lessor_passes_with_prompt_expiry() -> Result<(), LeaseError> {
    let (h, v) = simulate(Fake::default(), &spec()).await?;
    assert!(v.valid, "{v:#?}");
    assert!(v.leases_granted >= 10 && v.kept_alive >= 3, "{}", v.summary());
    // Every key was read gone: in the run or in the final phase.
    assert_eq!((v.expired, v.undecided, v.unproven_puts), (v.leases_granted, 0, 0), "{}", v.summary());
    // Gone within a read round (200 ms) plus a few requests' latency of the bound.
    let gap = v.max_expiry_gap_ms.unwrap_or(f64::MAX);
    assert!((0.0..250.0).contains(&gap), "{}", v.summary());
    assert!(h.ops.iter().any(|o| o.final_phase), "no final-phase read");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn keep_alives_follow_the_grant_every_third_of_a_ttl_and_stop_at_until() -> Result<(), LeaseError> {
    let spec = spec();
    let every = keep_alive_every(spec.ttl_secs).as_nanos() as u64;
    let (h, _) = simulate(Fake::default(), &spec).await?;
    let grants: HashMap<&str, u64> =
        h.ops.iter().filter(|o| o.call == LeaseCall::Grant).map(|o| (o.key.as_str(), o.invoke_ns)).collect();
    let mut renewals = 0;
    for ka in h.ops.iter().filter(|o| o.call == LeaseCall::KeepAlive) {
        let since = ka.invoke_ns - grants[ka.key.as_str()];
        // The timer wheel rounds wake-ups up to whole milliseconds.
        let k = (since + every / 2) / every;
        assert!(k >= 1 && since.abs_diff(k * every) <= 1_000_000, "keep-alive {since} ns after its grant");
        renewals += 1;
    }
    assert!(renewals >= 5);
    let late = h.ops.iter().filter(|o| {
        matches!(o.call, LeaseCall::Grant | LeaseCall::KeepAlive) && o.invoke_ns >= 30_000_000_000
    });
    assert_eq!(late.count(), 0, "grants or keep-alives sent after until");
    assert!(
        h.ops
            .iter()
            .filter(|o| o.call == LeaseCall::Read && o.invoke_ns >= 30_000_000_000)
            .all(|o| o.final_phase)
    );
    Ok(())
}

#[test]
fn hold_times_are_seeded_and_within_bounds() {
    use rand::SeedableRng as _;
    let spec = spec();
    let draw = |seed| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..200).map(|_| hold_time(&mut rng, &spec)).collect::<Vec<_>>()
    };
    let holds = draw(1);
    assert_eq!(holds, draw(1));
    assert_ne!(holds, draw(2));
    assert!(holds.iter().all(|h| *h <= Duration::from_secs(6)));
    assert!(
        holds.iter().any(|h| *h < Duration::from_secs(1))
            && holds.iter().any(|h| *h > Duration::from_secs(5))
    );
    assert_eq!(keep_alive_every(3), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_lessor_expiring_early_is_caught() -> Result<(), LeaseError> {
    let fake = Fake { early: Duration::from_millis(400), ..Fake::default() };
    let (_, v) = simulate(fake, &spec()).await?;
    assert!(!v.valid);
    assert!(kinds(&v).contains(&LeaseAnomalyKind::EarlyExpiry), "{v:#?}");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_lessor_that_never_expires_is_caught_in_the_final_phase() -> Result<(), LeaseError> {
    let spec = spec();
    let (h, v) = simulate(Fake { immortal: true, ..Fake::default() }, &spec).await?;
    assert!(!v.valid && v.expired == 0, "{}", v.summary());
    assert!(kinds(&v).iter().all(|k| *k == LeaseAnomalyKind::NotExpired), "{v:#?}");
    // Every lease is reported, each by a final read invoked after its deadline.
    assert_eq!(v.anomalies_total, v.leases_granted);
    assert!(
        v.anomalies
            .iter()
            .all(|a| a.op.as_ref().is_some_and(|o| o.final_phase && Some(o.invoke_ns) >= a.bound_ns))
    );
    // The final phase stops once each key's decisive read is in.
    let last = h.ops.iter().map(|o| o.complete_ns).max().unwrap_or_default();
    assert!(last < 30_000_000_000 + 1_000_000_000 * (1 + 2 + 5 + 1), "final phase ran to {last} ns");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn unanswered_keep_alives_are_info_and_extend_the_deadline() -> Result<(), LeaseError> {
    let (h, v) = simulate(Fake { mute_keep_alives: true, ..Fake::default() }, &spec()).await?;
    let info = h.ops.iter().filter(|o| o.call == LeaseCall::KeepAlive && o.outcome == LeaseOutcome::Info);
    assert!(info.count() >= 3);
    assert!(v.valid && v.kept_alive == 0 && v.expired == v.leases_granted, "{v:#?}");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn an_empty_spec_is_refused() {
    let spec = LeaseSpec { clients: 0, ..spec() };
    let r = LeaseRecorder::new(&spec, Instant::now());
    let err = run_with(Vec::<Fake>::new(), &spec, &r, Instant::now()).await;
    assert!(matches!(err, Err(LeaseError::Invalid(_))), "{err:?}");
    let spec = LeaseSpec { ttl_secs: 0, ..LeaseSpec::new("p", 1) };
    let err = super::run(&["http://127.0.0.1:1".into()], &spec, &r, Instant::now()).await;
    assert!(matches!(err, Err(LeaseError::Invalid(_))), "{err:?}");
}
