//! What `inspect` said about each container, kept while Docker's list shows it in the same
//! settled state, so that a relist of an unchanged node costs one list call and no inspects.
//!
//! Docker's container list lacks exit codes, exit reasons and times, so every listed container
//! used to be inspected on every list: with 110 pods and the agent's 1 s relist that was most
//! of the agent's CPU and most of dockerd's. A container's inspect result changes only when its
//! state does, and Flotilla sets no restart policy, so a state seen in the list is a faithful
//! key: a running container stays as inspected until the list shows it exited, and an exited
//! or dead one never changes again. `created` and the transient states (`restarting`,
//! `removing`, `paused`) are always inspected: a created container's start error, for
//! one, appears without a state change.
//!
//! One exit is not settled at once: Docker handles a container's OOM event apart from its exit
//! event, so an inspect right after an OOM kill may show exit code 137 without `OOMKilled`.
//! Such an exit (137, not OOMKilled) is kept only once it is [`OOM_SETTLE`] old, so the
//! reason is read again until then.
//!
//! What this misses: a container stopped and started again out of band (by hand, not by
//! Flotilla) between two lists keeps its earlier start time until its state next changes.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bollard::models::ContainerSummaryStateEnum as Listed;
use k8s_openapi::jiff::Timestamp;

use crate::runtime::{Container, ContainerState};

/// How long after a SIGKILL exit (137) without `OOMKilled` Docker may still report the OOM.
pub(crate) const OOM_SETTLE: Duration = Duration::from_secs(10);

/// The cache: container id → (listed state when inspected, what inspect said).
#[derive(Debug, Default)]
pub(crate) struct Inspected {
    entries: Mutex<HashMap<String, (Listed, Container)>>,
}

impl Inspected {
    /// The container as last inspected, if the list still shows it in the settled state it
    /// was in then.
    pub(crate) fn get(&self, id: &str, listed: Listed) -> Option<Container> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(id).filter(|(state, _)| *state == listed).map(|(_, container)| container.clone())
    }

    /// Keeps what inspect said about a container listed as `listed`, when that state is
    /// settled and inspect agrees with it (a container that changed between the list and the
    /// inspect is not kept, so the next list inspects it again). `now` is the wall clock,
    /// against which a recent SIGKILL exit is judged (see [`OOM_SETTLE`]).
    pub(crate) fn put(&self, listed: Listed, container: &Container, now: Timestamp) {
        let agrees = matches!(
            (listed, &container.state),
            (Listed::RUNNING, ContainerState::Running { .. })
                | (Listed::EXITED | Listed::DEAD, ContainerState::Exited { .. })
        );
        if agrees && !oom_may_follow(&container.state, now) {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            entries.insert(container.id.clone(), (listed, container.clone()));
        }
    }

    /// Forgets every container but `listed` (the ones the last list showed).
    pub(crate) fn retain<'a>(&self, listed: impl IntoIterator<Item = &'a str>) {
        let keep: HashSet<&str> = listed.into_iter().collect();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|id, _| keep.contains(id.as_str()));
    }

    /// Forgets one container (removed).
    pub(crate) fn forget(&self, id: &str) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
    }

    /// How many containers are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// Whether `state` is a SIGKILL exit Docker may yet call an OOM kill: 137 without
/// `OOMKilled`, finished less than [`OOM_SETTLE`] before `now` (or at an unknown time).
fn oom_may_follow(state: &ContainerState, now: Timestamp) -> bool {
    match state {
        ContainerState::Exited { exit_code: 137, reason, finished_at, .. } if reason != "OOMKilled" => {
            finished_at.is_none_or(|t| now.duration_since(t).as_secs() < OOM_SETTLE.as_secs() as i64)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::PodRef;

    fn container(id: &str, state: ContainerState) -> Container {
        Container {
            id: id.to_owned(),
            pod: PodRef { uid: "u".into(), namespace: "ns".into(), name: "p".into() },
            name: "c".into(),
            image: "busybox".into(),
            image_id: None,
            state,
            restart_count: 0,
        }
    }

    fn now() -> Timestamp {
        "2030-01-01T00:00:00Z".parse().expect("a time")
    }

    fn running(id: &str) -> Container {
        container(id, ContainerState::Running { started_at: None })
    }

    fn exited(id: &str) -> Container {
        let state = ContainerState::Exited {
            exit_code: 1,
            reason: "Error".into(),
            started_at: None,
            finished_at: None,
        };
        container(id, state)
    }

    #[test]
    fn a_running_container_is_served_until_the_list_shows_another_state() {
        let cache = Inspected::default();
        cache.put(Listed::RUNNING, &running("a"), now());
        assert_eq!(cache.get("a", Listed::RUNNING), Some(running("a")));
        assert_eq!(cache.get("a", Listed::EXITED), None, "an exit must be inspected");
        cache.put(Listed::EXITED, &exited("a"), now());
        assert_eq!(cache.get("a", Listed::EXITED), Some(exited("a")));
        assert_eq!(cache.get("b", Listed::RUNNING), None);
    }

    #[test]
    fn unsettled_states_and_disagreeing_inspects_are_not_kept() {
        let cache = Inspected::default();
        cache.put(Listed::CREATED, &container("a", ContainerState::Created), now());
        // Listed running, exited by the time it was inspected.
        cache.put(Listed::RUNNING, &exited("b"), now());
        cache.put(Listed::PAUSED, &running("c"), now());
        cache.put(Listed::RESTARTING, &running("d"), now());
        assert_eq!(cache.len(), 0);
        assert_eq!(cache.get("a", Listed::CREATED), None);
        assert_eq!(cache.get("b", Listed::RUNNING), None);
    }

    #[test]
    fn containers_gone_from_the_list_are_forgotten() {
        let cache = Inspected::default();
        for id in ["a", "b", "c"] {
            cache.put(Listed::RUNNING, &running(id), now());
        }
        cache.retain(["a", "c"]);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("b", Listed::RUNNING), None);
        cache.forget("a");
        assert_eq!(cache.get("a", Listed::RUNNING), None);
        assert_eq!(cache.get("c", Listed::RUNNING), Some(running("c")));
    }

    #[test]
    fn a_recent_sigkill_exit_is_read_again_until_an_oom_would_have_shown() {
        let cache = Inspected::default();
        let killed = |reason: &str, finished: Option<Timestamp>| {
            let state = ContainerState::Exited {
                exit_code: 137,
                reason: reason.into(),
                started_at: None,
                finished_at: finished,
            };
            container("k", state)
        };
        let just_now = Some(now() - Duration::from_secs(2));
        cache.put(Listed::EXITED, &killed("Error", just_now), now());
        assert_eq!(cache.get("k", Listed::EXITED), None, "Docker may still report the OOM");
        cache.put(Listed::EXITED, &killed("Error", None), now());
        assert_eq!(cache.get("k", Listed::EXITED), None, "an unknown exit time is not settled");
        cache.put(Listed::EXITED, &killed("OOMKilled", just_now), now());
        assert_eq!(cache.get("k", Listed::EXITED), Some(killed("OOMKilled", just_now)));
        let long_ago = Some(now() - Duration::from_secs(11));
        cache.put(Listed::EXITED, &killed("Error", long_ago), now());
        assert_eq!(cache.get("k", Listed::EXITED), Some(killed("Error", long_ago)));
    }
}
