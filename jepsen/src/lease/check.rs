//! The lease checker: a pure function over a recorded [`LeaseHistory`].
//!
//! Per lease (one key per grant): the earliest moment the lease may legitimately expire is
//! `max(grant invoke + TTL, invoke + TTL of each keep-alive answered with TTL > 0)`; the
//! latest moment its key may still be present is `max(grant invoke, invoke of any
//! keep-alive) + request timeout + TTL + expiry slack`. Reads count from the moment the put is
//! known to have happened: its acknowledgement, or the first read that saw the key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::history::{LeaseCall, LeaseHistory, LeaseHistoryConfig, LeaseOp, LeaseOutcome};

/// At most this many anomalies are listed in a verdict (all are counted).
pub const MAX_ANOMALIES: usize = 50;

/// What went wrong with a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseAnomalyKind {
    /// A read found the key gone before the lease could have expired.
    EarlyExpiry,
    /// A keep-alive was answered with TTL 0 (lease gone) before the lease could have expired.
    EarlyTtlZero,
    /// A read invoked after the lease's latest possible expiry (plus slack) found the key.
    NotExpired,
    /// A read found the key again after an earlier read had found it gone.
    Reappeared,
    /// The history cannot be checked as recorded (a harness bug or a damaged file).
    Malformed,
}

/// One anomaly, with what proves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseAnomaly {
    /// What went wrong.
    pub kind: LeaseAnomalyKind,
    /// The lease's key.
    pub key: String,
    /// The lease id, when the grant answered it.
    pub lease: Option<i64>,
    /// The bound the request broke, in nanoseconds since the start: the earliest legitimate
    /// expiry for early expiries, the liveness deadline for a lease that did not expire.
    pub bound_ns: Option<u64>,
    /// The request that shows it.
    pub op: Option<LeaseOp>,
    /// A sentence for people.
    pub detail: String,
}

/// What the lease checker found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LeaseVerdict {
    /// No anomaly.
    pub valid: bool,
    /// Leases whose grant was answered.
    pub leases_granted: u64,
    /// Of those, leases renewed at least once (a keep-alive answered with TTL > 0).
    pub kept_alive: u64,
    /// Leases whose key was seen gone, no earlier than allowed.
    pub expired: u64,
    /// Leases whose key was seen but never seen gone, with no read after its deadline
    /// either (the final reads failed, or the run ended early): liveness undecided.
    pub undecided: u64,
    /// Granted leases whose put failed or is unknown and whose key no read ever saw: only
    /// their keep-alives are checked.
    pub unproven_puts: u64,
    /// Answered reads held to the bounds.
    pub reads_checked: u64,
    /// Answered keep-alives held to the bounds.
    pub keep_alives_checked: u64,
    /// How late expiry was, at most: the largest gap between a lease's earliest legitimate
    /// expiry and the completion of the first read that found its key gone, in milliseconds.
    pub max_expiry_gap_ms: Option<f64>,
    /// The key of that lease.
    pub max_expiry_gap_key: Option<String>,
    /// Anomalies found (all of them, including those not listed).
    pub anomalies_total: u64,
    /// The first [`MAX_ANOMALIES`] anomalies, by key.
    pub anomalies: Vec<LeaseAnomaly>,
}

impl LeaseVerdict {
    /// One line for a terminal.
    pub fn summary(&self) -> String {
        let gap = match self.max_expiry_gap_ms {
            Some(ms) => format!("expiry at most {ms:.0} ms late"),
            None => "no expiry observed".to_string(),
        };
        format!(
            "leases: {}; {} granted, {} kept alive, {} expired as expected, {} undecided, {} unproven puts, \
             {} reads and {} keep-alives checked; {gap}; {} anomalies",
            if self.valid { "valid" } else { "INVALID" },
            self.leases_granted,
            self.kept_alive,
            self.expired,
            self.undecided,
            self.unproven_puts,
            self.reads_checked,
            self.keep_alives_checked,
            self.anomalies_total,
        )
    }
}

/// Checks a lease history against the safety and liveness bounds.
pub fn check(history: &LeaseHistory) -> LeaseVerdict {
    let mut by_key: BTreeMap<&str, Vec<&LeaseOp>> = BTreeMap::new();
    for op in &history.ops {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut v = LeaseVerdict::default();
    for (key, mut ops) in by_key {
        ops.sort_by_key(|o| (o.invoke_ns, o.complete_ns));
        let mut lease = Lease { key, id: None, config: &history.config, verdict: &mut v, clean: true };
        lease.check(&ops);
    }
    v.valid = v.anomalies_total == 0;
    v
}

/// Nanoseconds in `secs` seconds (negative counts as zero).
fn secs_ns(secs: i64) -> u64 {
    u64::try_from(secs).unwrap_or(0).saturating_mul(1_000_000_000)
}

/// The latest moment a lease's key may legitimately still be present: `last` is the latest
/// invocation of its grant or of any keep-alive.
pub(crate) fn liveness_deadline_ns(last_ns: u64, ttl_secs: i64, config: &LeaseHistoryConfig) -> u64 {
    last_ns
        .saturating_add(config.op_timeout_ns)
        .saturating_add(secs_ns(ttl_secs))
        .saturating_add(config.expiry_slack_ns)
}

/// One lease being checked.
struct Lease<'a> {
    key: &'a str,
    id: Option<i64>,
    config: &'a LeaseHistoryConfig,
    verdict: &'a mut LeaseVerdict,
    /// No anomaly found for this lease so far.
    clean: bool,
}

impl Lease<'_> {
    fn report(
        &mut self,
        kind: LeaseAnomalyKind,
        bound_ns: Option<u64>,
        op: Option<&LeaseOp>,
        detail: String,
    ) {
        self.clean = false;
        self.verdict.anomalies_total += 1;
        if self.verdict.anomalies.len() < MAX_ANOMALIES {
            self.verdict.anomalies.push(LeaseAnomaly {
                kind,
                key: self.key.to_string(),
                lease: self.id,
                bound_ns,
                op: op.cloned(),
                detail,
            });
        }
    }

    fn malformed(&mut self, op: &LeaseOp, why: &str) {
        self.report(LeaseAnomalyKind::Malformed, None, Some(op), format!("key {}: {why}", self.key));
    }

    fn check(&mut self, ops: &[&LeaseOp]) {
        if let Some(op) = ops.iter().find(|o| o.complete_ns < o.invoke_ns) {
            return self.malformed(op, "a request completes before it was invoked");
        }
        let mut grants = ops.iter().filter(|o| o.call == LeaseCall::Grant);
        let (Some(grant), None) = (grants.next(), grants.next()) else {
            if let Some(op) = ops.first() {
                self.malformed(op, "a lease key needs exactly one grant");
            }
            return;
        };
        if grant.outcome != LeaseOutcome::Ok {
            return; // No lease id: nothing of this attempt can be checked.
        }
        let (Some(id), Some(ttl)) = (grant.lease, grant.ttl.filter(|t| *t > 0)) else {
            return self.malformed(grant, "an answered grant lacks its lease id or a positive TTL");
        };
        self.id = Some(id);
        self.verdict.leases_granted += 1;

        // The earliest legitimate expiry, and the latest request that may have renewed.
        let mut bound = grant.invoke_ns.saturating_add(secs_ns(ttl));
        let mut last_renewal = grant.invoke_ns;
        let mut max_ttl = ttl;
        let mut renewed = false;
        let keep_alives: Vec<&LeaseOp> =
            ops.iter().copied().filter(|o| o.call == LeaseCall::KeepAlive).collect();
        for ka in &keep_alives {
            last_renewal = last_renewal.max(ka.invoke_ns);
            match (ka.outcome, ka.ttl) {
                (LeaseOutcome::Ok, Some(t)) if t > 0 => {
                    renewed = true;
                    max_ttl = max_ttl.max(t);
                    bound = bound.max(ka.invoke_ns.saturating_add(secs_ns(t)));
                }
                (LeaseOutcome::Ok, None) => {
                    return self.malformed(ka, "an answered keep-alive lacks its TTL");
                }
                _ => {}
            }
        }
        self.verdict.kept_alive += u64::from(renewed);
        for ka in keep_alives.iter().filter(|o| o.outcome == LeaseOutcome::Ok) {
            self.verdict.keep_alives_checked += 1;
            // Only one sent after the grant was answered: the lease surely existed before it.
            let gone = ka.ttl.is_some_and(|t| t <= 0) && ka.invoke_ns >= grant.complete_ns;
            if gone && ka.complete_ns < bound {
                let detail = format!(
                    "lease {id} (key {}) answered a keep-alive with TTL 0 at {} ms, before its earliest \
                     legitimate expiry at {} ms",
                    self.key,
                    ms(ka.complete_ns),
                    ms(bound)
                );
                self.report(LeaseAnomalyKind::EarlyTtlZero, Some(bound), Some(ka), detail);
            }
        }

        let mut reads = Vec::new();
        for r in ops.iter().copied().filter(|o| o.call == LeaseCall::Read && o.outcome == LeaseOutcome::Ok) {
            match r.present {
                Some(present) => reads.push((r, present)),
                None => return self.malformed(r, "an answered read lacks whether it found the key"),
            }
        }
        // When the key is known to exist: the put's acknowledgement or the first read that saw it.
        let put_ok = ops.iter().filter(|o| o.call == LeaseCall::Put && o.outcome == LeaseOutcome::Ok);
        let seen = reads.iter().filter(|(_, present)| *present).map(|(r, _)| r.complete_ns);
        let Some(effect) = put_ok.map(|p| p.complete_ns).chain(seen).min() else {
            self.verdict.unproven_puts += 1;
            return;
        };
        let checked: Vec<(&LeaseOp, bool)> =
            reads.into_iter().filter(|(r, _)| r.invoke_ns >= effect).collect();
        self.verdict.reads_checked += checked.len() as u64;

        for (r, _) in checked.iter().filter(|(r, present)| !present && r.complete_ns < bound) {
            let detail = format!(
                "lease {id} (key {}) expired early: a read invoked at {} ms found the key gone at {} ms, before \
                 the earliest legitimate expiry at {} ms",
                self.key,
                ms(r.invoke_ns),
                ms(r.complete_ns),
                ms(bound)
            );
            self.report(LeaseAnomalyKind::EarlyExpiry, Some(bound), Some(r), detail);
        }
        let first_absent =
            checked.iter().filter(|(_, present)| !present).map(|(r, _)| *r).min_by_key(|r| r.complete_ns);
        if let Some(gone) = first_absent {
            let back = checked.iter().find(|(r, present)| *present && r.invoke_ns >= gone.complete_ns);
            if let Some((r, _)) = back {
                let detail = format!(
                    "lease {id} (key {}): a read found the key gone at {} ms, a later read invoked at {} ms found \
                     it again",
                    self.key,
                    ms(gone.complete_ns),
                    ms(r.invoke_ns)
                );
                self.report(LeaseAnomalyKind::Reappeared, None, Some(r), detail);
            }
        }
        let deadline = liveness_deadline_ns(last_renewal, max_ttl, self.config);
        let late = checked.iter().rev().find(|(r, present)| *present && r.invoke_ns >= deadline);
        if let Some((r, _)) = late {
            let detail = format!(
                "lease {id} (key {}) did not expire: a read invoked at {} ms, after the deadline at {} ms (last \
                 renewal sent at {} ms + request timeout + TTL {max_ttl} s + slack), still found the key",
                self.key,
                ms(r.invoke_ns),
                ms(deadline),
                ms(last_renewal)
            );
            self.report(LeaseAnomalyKind::NotExpired, Some(deadline), Some(r), detail);
        }
        match first_absent {
            Some(gone) if self.clean => {
                self.verdict.expired += 1;
                let gap = gone.complete_ns.saturating_sub(bound) as f64 / 1e6;
                if self.verdict.max_expiry_gap_ms.is_none_or(|g| gap > g) {
                    self.verdict.max_expiry_gap_ms = Some(gap);
                    self.verdict.max_expiry_gap_key = Some(self.key.to_string());
                }
            }
            None if self.clean => self.verdict.undecided += 1,
            _ => {}
        }
    }
}

/// Nanoseconds as milliseconds, for messages.
fn ms(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1e6)
}
