//! The threshold logic of one probe, without I/O (the kubelet's `worker.doProbe` bookkeeping).

use std::time::Duration;

use super::{Probe, ProbeKind, ProbeOutcome};

/// `periodSeconds` when unset.
const DEFAULT_PERIOD_SECONDS: u64 = 10;
/// `timeoutSeconds` when unset.
const DEFAULT_TIMEOUT_SECONDS: u64 = 1;
/// `successThreshold` when unset.
const DEFAULT_SUCCESS_THRESHOLD: u32 = 1;
/// `failureThreshold` when unset.
const DEFAULT_FAILURE_THRESHOLD: u32 = 3;

/// Published result and consecutive-outcome counters for one (container, probe kind).
///
/// Unset or non-positive timing and threshold fields take the API's defaults (the API server
/// may not have defaulted them); liveness and startup probes always use a success threshold
/// of 1, which is all validation allows for them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeState {
    kind: ProbeKind,
    initial_delay: Duration,
    period: Duration,
    timeout: Duration,
    success_threshold: u32,
    failure_threshold: u32,
    /// `None` only for a startup probe that has not yet reached a threshold.
    published: Option<bool>,
    /// The last counted outcome and how many times in a row it came.
    last: Option<bool>,
    run: u32,
    on_hold: bool,
}

fn seconds(value: Option<i32>, default: u64) -> Duration {
    match value {
        Some(s) if s > 0 => Duration::from_secs(u64::from(s.unsigned_abs())),
        _ => Duration::from_secs(default),
    }
}

fn threshold(value: Option<i32>, default: u32) -> u32 {
    match value {
        Some(n) if n > 0 => n.unsigned_abs(),
        _ => default,
    }
}

impl ProbeState {
    /// The state before any attempt: readiness false, liveness true, startup unknown.
    pub fn new(kind: ProbeKind, probe: &Probe) -> Self {
        let success_threshold = match kind {
            ProbeKind::Readiness => threshold(probe.success_threshold, DEFAULT_SUCCESS_THRESHOLD),
            ProbeKind::Liveness | ProbeKind::Startup => 1,
        };
        let initial_delay = match probe.initial_delay_seconds {
            Some(s) if s > 0 => Duration::from_secs(u64::from(s.unsigned_abs())),
            _ => Duration::ZERO,
        };
        ProbeState {
            kind,
            initial_delay,
            period: seconds(probe.period_seconds, DEFAULT_PERIOD_SECONDS),
            timeout: seconds(probe.timeout_seconds, DEFAULT_TIMEOUT_SECONDS),
            success_threshold,
            failure_threshold: threshold(probe.failure_threshold, DEFAULT_FAILURE_THRESHOLD),
            published: match kind {
                ProbeKind::Readiness => Some(false),
                ProbeKind::Liveness => Some(true),
                ProbeKind::Startup => None,
            },
            last: None,
            run: 0,
            on_hold: false,
        }
    }

    /// The state before any attempt, with `published` as the result instead of the kind's
    /// initial one (for an adopted container, see [`Seed`](super::Seed)); no outcome counted
    /// yet. A startup probe resumed as succeeded is [on hold](Self::on_hold) at once.
    pub fn resumed(kind: ProbeKind, probe: &Probe, published: bool) -> Self {
        ProbeState { published: Some(published), ..Self::new(kind, probe) }
    }

    /// The kind of probe.
    pub fn kind(&self) -> ProbeKind {
        self.kind
    }

    /// The published result (a startup probe that has not yet succeeded reads false).
    pub fn result(&self) -> bool {
        self.published.unwrap_or(false)
    }

    /// Counts one attempt's outcome; returns the new published result when it changes.
    ///
    /// A startup probe reaching its failure threshold returns `Some(false)` although
    /// [`result`](Self::result) read false before: its result was unknown until then, and the
    /// agent must restart the container.
    pub fn observe(&mut self, outcome: &ProbeOutcome) -> Option<bool> {
        if self.on_hold {
            return None;
        }
        let success = match outcome {
            ProbeOutcome::Success => true,
            ProbeOutcome::Failure(_) => false,
            // The kubelet throws away the result of a probe that errored.
            ProbeOutcome::Unknown(_) => return None,
        };
        if self.last == Some(success) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(success);
            self.run = 1;
        }
        let needed = if success { self.success_threshold } else { self.failure_threshold };
        if self.run < needed {
            return None;
        }
        let changed = self.published != Some(success);
        self.published = Some(success);
        if !success && self.kind != ProbeKind::Readiness {
            // The container is about to be restarted: stop counting until it is replaced.
            self.on_hold = true;
            self.run = 0;
        }
        changed.then_some(success)
    }

    /// Whether probing should stop: a liveness or startup probe published a failure (until
    /// the container is replaced), or a startup probe succeeded (it never runs again).
    pub fn on_hold(&self) -> bool {
        self.on_hold || (self.kind == ProbeKind::Startup && self.published == Some(true))
    }

    /// How long after the container started the first attempt runs (`initialDelaySeconds`).
    pub fn initial_delay(&self) -> Duration {
        self.initial_delay
    }

    /// How often attempts run (`periodSeconds`, default 10 s).
    pub fn period(&self) -> Duration {
        self.period
    }

    /// How long one attempt may take (`timeoutSeconds`, default 1 s).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(success: Option<i32>, failure: Option<i32>) -> Probe {
        Probe { success_threshold: success, failure_threshold: failure, ..Default::default() }
    }

    fn outcomes(s: &str) -> Vec<ProbeOutcome> {
        s.chars()
            .map(|c| match c {
                's' => ProbeOutcome::Success,
                'f' => ProbeOutcome::Failure("f".into()),
                'u' => ProbeOutcome::Unknown("u".into()),
                other => panic!("test table uses s, f, u; got {other:?}"),
            })
            .collect()
    }

    /// Runs a sequence and renders each observation: `-` no change, `T`/`F` a flip.
    fn run(kind: ProbeKind, p: &Probe, seq: &str) -> (String, bool) {
        let mut state = ProbeState::new(kind, p);
        let flips = outcomes(seq)
            .iter()
            .map(|o| match state.observe(o) {
                None => '-',
                Some(true) => 'T',
                Some(false) => 'F',
            })
            .collect();
        (flips, state.result())
    }

    #[test]
    fn initial_results_follow_the_kind() {
        let p = Probe::default();
        assert!(!ProbeState::new(ProbeKind::Readiness, &p).result());
        assert!(ProbeState::new(ProbeKind::Liveness, &p).result());
        assert!(!ProbeState::new(ProbeKind::Startup, &p).result());
    }

    #[test]
    fn thresholds_decide_when_the_result_flips() {
        use ProbeKind::*;
        // (kind, successThreshold, failureThreshold, outcomes, expected flips, final result)
        type Row = (ProbeKind, Option<i32>, Option<i32>, &'static str, &'static str, bool);
        let table: &[Row] = &[
            (Readiness, None, None, "s", "T", true),
            (Readiness, None, None, "sff", "T--", true),
            (Readiness, None, None, "sfff", "T--F", false),
            (Readiness, None, None, "sffsfff", "T-----F", false),
            (Readiness, None, None, "sfffs", "T--FT", true),
            (Readiness, Some(2), None, "ss", "-T", true),
            (Readiness, Some(2), None, "sfss", "---T", true),
            (Readiness, Some(3), Some(1), "sssf", "--TF", false),
            (Readiness, None, Some(1), "f", "-", false),
            (Readiness, None, None, "sufuff", "T----F", false),
            (Readiness, None, None, "uuu", "---", false),
            (Liveness, None, None, "ff", "--", true),
            (Liveness, None, None, "fff", "--F", false),
            (Liveness, None, None, "fsff", "----", true),
            // On hold after a failure: later successes are ignored until the container changes.
            (Liveness, None, Some(1), "fsss", "F---", false),
            // Liveness success threshold is always 1.
            (Liveness, Some(5), Some(1), "fs", "F-", false),
            (Startup, None, None, "s", "T", true),
            (Startup, None, None, "ffs", "--T", true),
            (Startup, None, None, "fff", "--F", false),
            (Startup, None, Some(2), "ffss", "-F--", false),
            (Startup, Some(0), Some(-1), "ff", "--", false),
        ];
        for (kind, success, failure, seq, want, want_result) in table {
            let got = run(*kind, &probe(*success, *failure), seq);
            assert_eq!(
                got,
                (want.to_string(), *want_result),
                "{kind} success={success:?} failure={failure:?} outcomes {seq}"
            );
        }
    }

    #[test]
    fn resumed_results_hold_until_a_threshold_is_reached() {
        let p = probe(None, Some(2));
        let mut ready = ProbeState::resumed(ProbeKind::Readiness, &p, true);
        assert!(ready.result());
        assert_eq!(ready.observe(&ProbeOutcome::Success), None, "already ready: no flip");
        assert_eq!(ready.observe(&ProbeOutcome::Failure("x".into())), None);
        assert_eq!(ready.observe(&ProbeOutcome::Failure("x".into())), Some(false));

        let unready = ProbeState::resumed(ProbeKind::Readiness, &p, false);
        assert_eq!(unready, ProbeState::new(ProbeKind::Readiness, &p));

        let started = ProbeState::resumed(ProbeKind::Startup, &p, true);
        assert!(started.result() && started.on_hold(), "a startup probe that succeeded never runs again");
    }

    #[test]
    fn on_hold_after_liveness_failure_or_startup_success() {
        let p = probe(None, Some(1));
        let mut live = ProbeState::new(ProbeKind::Liveness, &p);
        assert!(!live.on_hold());
        live.observe(&ProbeOutcome::Failure("x".into()));
        assert!(live.on_hold());

        let mut ready = ProbeState::new(ProbeKind::Readiness, &p);
        ready.observe(&ProbeOutcome::Success);
        ready.observe(&ProbeOutcome::Failure("x".into()));
        assert!(!ready.on_hold(), "readiness keeps probing after a failure");

        let mut startup = ProbeState::new(ProbeKind::Startup, &p);
        assert!(!startup.on_hold());
        startup.observe(&ProbeOutcome::Success);
        assert!(startup.on_hold(), "a startup probe stops after its first success");
    }

    #[test]
    fn timing_fields_default_and_override() {
        let d = ProbeState::new(ProbeKind::Readiness, &Probe::default());
        assert_eq!(
            (d.initial_delay(), d.period(), d.timeout()),
            (Duration::ZERO, Duration::from_secs(10), Duration::from_secs(1))
        );
        let p = Probe {
            initial_delay_seconds: Some(7),
            period_seconds: Some(3),
            timeout_seconds: Some(2),
            ..Default::default()
        };
        let s = ProbeState::new(ProbeKind::Liveness, &p);
        assert_eq!(
            (s.initial_delay(), s.period(), s.timeout()),
            (Duration::from_secs(7), Duration::from_secs(3), Duration::from_secs(2))
        );
        let zero = Probe { period_seconds: Some(0), timeout_seconds: Some(-4), ..Default::default() };
        let z = ProbeState::new(ProbeKind::Liveness, &zero);
        assert_eq!((z.period(), z.timeout()), (Duration::from_secs(10), Duration::from_secs(1)));
    }
}
