use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodStatus, ResourceQuota, ResourceQuotaSpec, ResourceQuotaStatus};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{pod_released, spec_changed};
use crate::controller::Change;

fn quota(pods: &str, used: Option<&str>) -> ResourceQuota {
    let list = |v: &str| BTreeMap::from([("pods".to_string(), Quantity(v.into()))]);
    ResourceQuota {
        spec: Some(ResourceQuotaSpec { hard: Some(list(pods)), ..Default::default() }),
        status: used.map(|u| ResourceQuotaStatus { hard: Some(list(pods)), used: Some(list(u)) }),
        ..Default::default()
    }
}

fn applied<K>(old: Option<K>, new: K) -> Change<K> {
    Change::Applied { old: old.map(Arc::new), new: Arc::new(new) }
}

#[test]
fn only_spec_changes_trigger_a_recount() {
    assert!(spec_changed(&applied(None, quota("5", None))));
    assert!(spec_changed(&applied(Some(quota("5", None)), quota("6", None))));
    // Admission's charge writes only the status.
    assert!(!spec_changed(&applied(Some(quota("5", Some("1"))), quota("5", Some("2")))));
    assert!(!spec_changed(&Change::Deleted(Arc::new(quota("5", None)))));
}

#[test]
fn pods_release_quota_when_they_go_finish_or_start_terminating() {
    let running = Pod::default();
    let finished = Pod {
        status: Some(PodStatus { phase: Some("Failed".into()), ..Default::default() }),
        ..Default::default()
    };
    let mut terminating = Pod::default();
    terminating.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    assert!(pod_released(&Change::Deleted(Arc::new(running.clone()))));
    assert!(pod_released(&applied(Some(running.clone()), finished.clone())));
    assert!(pod_released(&applied(Some(running.clone()), terminating.clone())));
    assert!(!pod_released(&applied(None, running.clone())));
    assert!(!pod_released(&applied(Some(running.clone()), running.clone())));
    assert!(!pod_released(&applied(Some(finished.clone()), finished)));
    assert!(!pod_released(&applied(Some(terminating.clone()), terminating)));
}
