//! The cluster changes that can make an unschedulable pod schedulable, and which plugins'
//! verdicts each one can change (kube-scheduler's `EventsToRegister`).

/// A change to the cluster the scheduler's cache observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClusterEvent {
    /// A node appeared.
    NodeAdded,
    /// A node went away.
    NodeDeleted,
    /// A node's `status.allocatable` changed.
    NodeAllocatableChanged,
    /// A node's labels changed.
    NodeLabelsChanged,
    /// A node's taints or `spec.unschedulable` changed.
    NodeTaintsChanged,
    /// A pod was bound to a node (or assumed there).
    AssignedPodAdded,
    /// A pod on a node changed its labels or requests.
    AssignedPodChanged,
    /// A pod left a node: deleted, finished, or its assumed placement was forgotten.
    AssignedPodDeleted,
    /// A PersistentVolumeClaim appeared.
    ClaimAdded,
    /// A PersistentVolumeClaim changed.
    ClaimChanged,
    /// A PersistentVolume appeared.
    VolumeAdded,
    /// A PersistentVolume changed.
    VolumeChanged,
    /// A StorageClass appeared.
    StorageClassAdded,
    /// A StorageClass changed.
    StorageClassChanged,
}

impl ClusterEvent {
    /// Every event.
    pub const ALL: [ClusterEvent; 14] = [
        ClusterEvent::NodeAdded,
        ClusterEvent::NodeDeleted,
        ClusterEvent::NodeAllocatableChanged,
        ClusterEvent::NodeLabelsChanged,
        ClusterEvent::NodeTaintsChanged,
        ClusterEvent::AssignedPodAdded,
        ClusterEvent::AssignedPodChanged,
        ClusterEvent::AssignedPodDeleted,
        ClusterEvent::ClaimAdded,
        ClusterEvent::ClaimChanged,
        ClusterEvent::VolumeAdded,
        ClusterEvent::VolumeChanged,
        ClusterEvent::StorageClassAdded,
        ClusterEvent::StorageClassChanged,
    ];

    /// Whether this event could change the verdict of the plugin named `plugin` on some pod.
    ///
    /// The default plugins register what kube-scheduler registers for them; a plugin this
    /// function does not know (a product's own) is assumed to care about every event, so its
    /// rejected pods are never stranded.
    pub fn may_help(self, plugin: &str) -> bool {
        use ClusterEvent::*;
        match plugin {
            // Score-only: never the reason a pod is unschedulable.
            "NodeResourcesBalancedAllocation" => false,
            "NodeUnschedulable" | "TaintToleration" => matches!(self, NodeAdded | NodeTaintsChanged),
            "NodeName" => matches!(self, NodeAdded),
            "NodeAffinity" => matches!(self, NodeAdded | NodeLabelsChanged),
            "NodeResourcesFit" => {
                matches!(self, NodeAdded | NodeAllocatableChanged | AssignedPodChanged | AssignedPodDeleted)
            }
            "InterPodAffinity" => matches!(
                self,
                NodeAdded | NodeLabelsChanged | AssignedPodAdded | AssignedPodChanged | AssignedPodDeleted
            ),
            "PodTopologySpread" => matches!(
                self,
                NodeAdded
                    | NodeDeleted
                    | NodeLabelsChanged
                    | NodeTaintsChanged
                    | AssignedPodAdded
                    | AssignedPodChanged
                    | AssignedPodDeleted
            ),
            // Storage objects, and nodes whose labels a volume's node affinity or a class's
            // allowed topologies may now admit.
            "VolumeBinding" => matches!(
                self,
                NodeAdded
                    | NodeLabelsChanged
                    | ClaimAdded
                    | ClaimChanged
                    | VolumeAdded
                    | VolumeChanged
                    | StorageClassAdded
                    | StorageClassChanged
            ),
            _ => true,
        }
    }

    /// Whether this event could help a pod rejected by `plugins`; a pod rejected by no
    /// plugin in particular (no nodes at all, say) is helped by every event.
    pub fn may_help_any<'a>(self, plugins: impl IntoIterator<Item = &'a &'static str>) -> bool {
        let mut any = false;
        for plugin in plugins {
            if self.may_help(plugin) {
                return true;
            }
            any = true;
        }
        !any
    }
}

#[cfg(test)]
mod tests {
    use super::ClusterEvent::{self, *};

    #[test]
    fn events_help_the_plugins_kube_scheduler_registers_them_for() {
        let cases: &[(&str, &[ClusterEvent])] = &[
            (
                "NodeResourcesFit",
                &[NodeAdded, NodeAllocatableChanged, AssignedPodChanged, AssignedPodDeleted],
            ),
            ("NodeAffinity", &[NodeAdded, NodeLabelsChanged]),
            ("TaintToleration", &[NodeAdded, NodeTaintsChanged]),
            ("NodeUnschedulable", &[NodeAdded, NodeTaintsChanged]),
            ("NodeName", &[NodeAdded]),
            ("NodeResourcesBalancedAllocation", &[]),
            (
                "InterPodAffinity",
                &[NodeAdded, NodeLabelsChanged, AssignedPodAdded, AssignedPodChanged, AssignedPodDeleted],
            ),
            (
                "PodTopologySpread",
                &[
                    NodeAdded,
                    NodeDeleted,
                    NodeLabelsChanged,
                    NodeTaintsChanged,
                    AssignedPodAdded,
                    AssignedPodChanged,
                    AssignedPodDeleted,
                ],
            ),
            (
                "VolumeBinding",
                &[
                    NodeAdded,
                    NodeLabelsChanged,
                    ClaimAdded,
                    ClaimChanged,
                    VolumeAdded,
                    VolumeChanged,
                    StorageClassAdded,
                    StorageClassChanged,
                ],
            ),
            ("MyOwnPlugin", &ClusterEvent::ALL),
        ];
        for (plugin, helped) in cases {
            let got: Vec<ClusterEvent> =
                ClusterEvent::ALL.into_iter().filter(|e| e.may_help(plugin)).collect();
            assert_eq!(&got, helped, "{plugin}");
        }
    }

    #[test]
    fn any_plugin_or_none() {
        assert!(NodeAdded.may_help_any(&[]), "no plugin in particular: every event helps");
        assert!(AssignedPodDeleted.may_help_any(&["NodeAffinity", "NodeResourcesFit"]));
        assert!(!AssignedPodDeleted.may_help_any(&["NodeAffinity", "TaintToleration"]));
    }
}
