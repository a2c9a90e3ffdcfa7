//! Container probes with the kubelet's semantics (`pkg/kubelet/prober`).
//!
//! Three layers, from pure to effectful:
//! - [`ProbeState`] is the threshold logic of one (container, probe kind) as a plain value:
//!   `successThreshold` consecutive successes or `failureThreshold` consecutive failures
//!   change the published result, [`ProbeOutcome::Unknown`] (the probe could not be run) is
//!   thrown away, and a liveness or startup failure puts the probe *on hold* until the
//!   container is replaced.
//! - [`probe_once`] runs one attempt: `exec` through [`ContainerRuntime::exec`], `httpGet` as
//!   a plain HTTP/1.1 request (status 200..400 succeeds, redirects are not followed),
//!   `tcpSocket` as a connect. Network errors and timeouts are failures, as in the kubelet.
//! - [`Prober`] owns one task per pod uid, container name and kind; it probes after the
//!   initial delay on each period and sends a [`ProbeUpdate`] whenever a published result
//!   flips.
//!
//! Semantics kept from the kubelet: initial results (readiness false, liveness true, startup
//! not yet known, read as false); liveness and readiness do not run until the startup probe
//! has succeeded; the startup probe stops after its first success; liveness and startup stop
//! after publishing a failure (the agent restarts the container, then calls
//! [`Prober::start_container`] with the new container id, which resets the results).
//!
//! Better than the kubelet (kubernetes#100277): a container that an agent adopts after a
//! restart resumes the readiness and startup results that the pod's status last reported for
//! the same container id ([`Seed::adopted`]), instead of reading not ready until its first
//! readiness probe. A new or restarted container starts from the initial results.
//!
//! Not done: `grpc` probes (always [`ProbeOutcome::Unknown`]), `HTTPS` (an unknown outcome:
//! no TLS client here), the kubelet's random start-up jitter (timing is deterministic: the
//! first probe runs `initialDelaySeconds` after [`Prober::start_container`], then every
//! `periodSeconds`), per-probe `terminationGracePeriodSeconds` (the agent's business), and
//! Events (the agent records them from [`ProbeUpdate`]s and [`Prober::last_message`]).

mod http;
mod once;
mod prober;
mod seed;
mod state;

#[cfg(test)]
mod tests;

use std::fmt;

pub use once::probe_once;
pub use prober::Prober;
pub use seed::Seed;
pub use state::ProbeState;

/// Which of a container's probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    /// Restarts the container when it fails.
    Liveness,
    /// Takes the container out of service endpoints when it fails.
    Readiness,
    /// Holds back liveness and readiness until it succeeds once.
    Startup,
}

impl ProbeKind {
    /// Every kind, in the order the kubelet lists them.
    pub const ALL: [ProbeKind; 3] = [ProbeKind::Liveness, ProbeKind::Readiness, ProbeKind::Startup];

    /// The name used in Events: `Liveness`, `Readiness`, `Startup`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }

    /// The probe of this kind in `container`, if it has one.
    pub fn of(self, container: &k8s_openapi::api::core::v1::Container) -> Option<&Probe> {
        match self {
            ProbeKind::Liveness => container.liveness_probe.as_ref(),
            ProbeKind::Readiness => container.readiness_probe.as_ref(),
            ProbeKind::Startup => container.startup_probe.as_ref(),
        }
    }
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The probe spec, re-exported for the agent's convenience.
pub type Probe = k8s_openapi::api::core::v1::Probe;

/// The outcome of one probe attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The check passed.
    Success,
    /// The check failed; the text says why (for Events).
    Failure(String),
    /// The check could not be run (runtime error, bad spec, unsupported handler); such
    /// outcomes do not count towards any threshold.
    Unknown(String),
}

impl ProbeOutcome {
    /// The message of a failure or unknown outcome.
    pub fn message(&self) -> Option<&str> {
        match self {
            ProbeOutcome::Success => None,
            ProbeOutcome::Failure(m) | ProbeOutcome::Unknown(m) => Some(m),
        }
    }
}

/// A published probe result that changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeUpdate {
    /// The pod's uid.
    pub pod_uid: String,
    /// The container's name in the pod spec.
    pub container_name: String,
    /// Which probe.
    pub kind: ProbeKind,
    /// The new result.
    pub success: bool,
}
