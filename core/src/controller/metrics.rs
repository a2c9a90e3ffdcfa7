//! [`ControllerMetrics`]: what controllers report, in Prometheus' data model.
//!
//! One `ControllerMetrics` serves every controller of a process (each series carries a
//! `controller` label); the binary registers it with its `prometheus_client` registry and
//! serves the registry wherever it serves metrics.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabel {
    controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    controller: String,
    result: String,
}

/// Counters, gauges and histograms of the controllers of one process. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ControllerMetrics {
    reconciles: Family<ResultLabels, Counter>,
    duration: Family<ControllerLabel, Histogram>,
    depth: Family<ControllerLabel, Gauge>,
    leader: Family<ControllerLabel, Gauge>,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        ControllerMetrics {
            reconciles: Family::default(),
            // 1 ms to about 65 s.
            duration: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 17))),
            depth: Family::default(),
            leader: Family::default(),
        }
    }
}

impl ControllerMetrics {
    /// Registers the metrics under `flotilla_controller_*`.
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("flotilla_controller");
        sub.register("reconciles", "Reconciles by controller and result", self.reconciles.clone());
        sub.register("reconcile_duration_seconds", "How long reconciles took", self.duration.clone());
        sub.register("queue_depth", "Keys waiting in the work queue, ready or delayed", self.depth.clone());
        sub.register("leader", "1 while the controller acts as leader", self.leader.clone());
    }

    /// Counts one reconcile that ended with `result` (`success` or `error`) after `took`.
    pub(crate) fn observe(&self, controller: &str, result: &str, took: Duration) {
        let c = controller.to_string();
        self.reconciles
            .get_or_create(&ResultLabels { controller: c.clone(), result: result.to_string() })
            .inc();
        self.duration.get_or_create(&ControllerLabel { controller: c }).observe(took.as_secs_f64());
    }

    /// Records the queue depth.
    pub(crate) fn set_depth(&self, controller: &str, depth: usize) {
        let d = i64::try_from(depth).unwrap_or(i64::MAX);
        self.depth.get_or_create(&ControllerLabel { controller: controller.to_string() }).set(d);
    }

    /// Records whether the controller leads.
    pub(crate) fn set_leader(&self, controller: &str, leader: bool) {
        self.leader
            .get_or_create(&ControllerLabel { controller: controller.to_string() })
            .set(i64::from(leader));
    }

    /// Reconciles so far of `controller` with `result` (for tests and status output).
    pub fn reconciles(&self, controller: &str, result: &str) -> u64 {
        self.reconciles
            .get_or_create(&ResultLabels { controller: controller.to_string(), result: result.to_string() })
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_prometheus_text_format() {
        let m = ControllerMetrics::default();
        let mut registry = Registry::default();
        m.register(&mut registry);
        m.observe("rs", "success", Duration::from_millis(3));
        m.observe("rs", "error", Duration::from_millis(3));
        m.set_depth("rs", 7);
        m.set_leader("rs", true);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encode");
        assert!(
            out.contains(r#"flotilla_controller_reconciles_total{controller="rs",result="success"} 1"#),
            "{out}"
        );
        assert!(out.contains(r#"flotilla_controller_queue_depth{controller="rs"} 7"#), "{out}");
        assert!(out.contains(r#"flotilla_controller_leader{controller="rs"} 1"#), "{out}");
        assert!(out.contains("flotilla_controller_reconcile_duration_seconds_bucket"), "{out}");
        assert_eq!(m.reconciles("rs", "error"), 1);
    }
}
