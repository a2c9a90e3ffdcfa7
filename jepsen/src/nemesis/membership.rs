//! The [`FaultKind::Membership`] fault: a member removed from the membership and stopped,
//! then brought back on a fresh data directory as a new member; and the [`FaultKind::Grow`]
//! fault: a spare host added as a new member, then removed again.
//!
//! [`FaultKind::Membership`]: super::FaultKind::Membership
//! [`FaultKind::Grow`]: super::FaultKind::Grow

use tokio::time::Instant;

use crate::cluster::Cluster;

/// A member other than `i` that runs, is not paused and is not removed, to ask for the
/// change: the leader if it qualifies, else the lowest such index.
async fn peer(cluster: &Cluster, i: usize) -> Option<usize> {
    let usable =
        |j: usize| j != i && cluster.is_running(j) && !cluster.is_paused(j) && !cluster.is_removed(j);
    match cluster.leader().await {
        Some(l) if usable(l) => Some(l),
        _ => (0..cluster.len()).find(|&j| usable(j)),
    }
}

/// Removes member `i` through another member, then stops it (SIGTERM, SIGKILL if it lingers).
/// The action to record (`remove n1 (id 2)`) and its outcome; afterwards
/// [`Cluster::is_removed`] tells whether it needs [`rejoin`].
pub(super) async fn remove(cluster: &mut Cluster, i: usize) -> (String, Result<(), String>) {
    let Some(via) = peer(cluster, i).await else {
        return (format!("remove n{i}"), Err("no other running member to remove it through".to_string()));
    };
    let id = match cluster.remove_member(i, via).await {
        Ok(id) => id,
        Err(e) => return (format!("remove n{i}"), Err(format!("{e:#}"))),
    };
    let action = format!("remove n{i} (id {id})");
    if !cluster.is_running(i) {
        return (action, Ok(()));
    }
    match cluster.stop_member(i).await {
        Ok(killed) => {
            if killed {
                tracing::warn!(member = i, "the removed member needed SIGKILL");
            }
            (action, Ok(()))
        }
        Err(e) => (action, Err(format!("removed, but stopping it failed: {e:#}"))),
    }
}

/// Adds spare host `i` as a new member through another member (see [`Cluster::rejoin`]): the
/// cluster grows by one. The action to record (`add n3 (id 7)`) and its outcome.
pub(super) async fn add(cluster: &mut Cluster, i: usize) -> (String, Result<(), String>) {
    let Some(seed) = peer(cluster, i).await else {
        return (format!("add n{i}"), Err("no running member to join through".to_string()));
    };
    if !cluster.is_spare(i) || !cluster.is_removed(i) {
        return (format!("add n{i}"), Err(format!("n{i} is not a spare host out of the cluster")));
    }
    match cluster.rejoin(i, seed).await {
        Ok(id) => (format!("add n{i} (id {id})"), Ok(())),
        Err(e) => (format!("add n{i}"), Err(format!("{e:#}"))),
    }
}

/// Brings removed member `i` back through another member (see [`Cluster::rejoin`]). The
/// action to record (`rejoin n1 (id 31)`) and its outcome.
pub(super) async fn rejoin(cluster: &mut Cluster, i: usize) -> (String, Result<(), String>) {
    let started = Instant::now();
    let Some(seed) = peer(cluster, i).await else {
        return (format!("rejoin n{i}"), Err("no other running member to join through".to_string()));
    };
    match cluster.rejoin(i, seed).await {
        Ok(id) => {
            tracing::info!(member = i, raft_id = id, seed, took = ?started.elapsed(), "member rejoined");
            (format!("rejoin n{i} (id {id})"), Ok(()))
        }
        Err(e) => (format!("rejoin n{i}"), Err(format!("{e:#}"))),
    }
}
