//! What the harness asks members through their etcd endpoints: status, member list, and
//! which member a majority names as leader.

use std::time::Duration;

use super::{MemberStatus, STATUS_TIMEOUT};

/// The value more than half of `answers` hold (`None` entries count as answers for nobody).
pub(super) fn majority(answers: &[Option<u64>]) -> Option<u64> {
    let mut counts = std::collections::BTreeMap::new();
    for a in answers.iter().flatten() {
        *counts.entry(*a).or_insert(0usize) += 1;
    }
    counts.into_iter().find(|(_, c)| c * 2 > answers.len()).map(|(v, _)| v)
}

pub(crate) async fn connect(endpoint: &str, timeout: Duration) -> anyhow::Result<etcd_client::Client> {
    let options =
        etcd_client::ConnectOptions::new().with_connect_timeout(STATUS_TIMEOUT).with_timeout(timeout);
    Ok(etcd_client::Client::connect([endpoint], Some(options)).await?)
}

/// Maintenance.Status of the member at `endpoint`, within [`STATUS_TIMEOUT`] overall.
pub(super) async fn status(endpoint: &str) -> anyhow::Result<MemberStatus> {
    let ask = async {
        let st = connect(endpoint, STATUS_TIMEOUT).await?.status().await?;
        anyhow::Ok(MemberStatus {
            raft_id: st.header().map(|h| h.member_id()).unwrap_or_default(),
            leader: Some(st.leader()).filter(|l| *l != 0),
            raft_term: st.raft_term(),
            applied_index: st.raft_applied_index(),
        })
    };
    tokio::time::timeout(STATUS_TIMEOUT, ask)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {STATUS_TIMEOUT:?}"))?
}

/// `(raft id, transport address, voter)` of every member in the member list of `endpoint`.
pub(super) async fn members(endpoint: &str) -> anyhow::Result<Vec<(u64, String, bool)>> {
    let ask = async {
        let list = connect(endpoint, STATUS_TIMEOUT).await?.member_list().await?;
        anyhow::Ok(
            list.members()
                .iter()
                .map(|m| {
                    let addr = m.peer_urls().first().map(|u| u.trim_start_matches("http://").to_string());
                    (m.id(), addr.unwrap_or_default(), !m.is_learner())
                })
                .collect(),
        )
    };
    tokio::time::timeout(STATUS_TIMEOUT, ask)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {STATUS_TIMEOUT:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::log_tail;

    #[test]
    fn the_leader_is_what_more_than_half_of_the_answers_name() {
        assert_eq!(majority(&[Some(2), Some(2), Some(1)]), Some(2));
        assert_eq!(majority(&[Some(2), Some(2)]), Some(2));
        assert_eq!(majority(&[Some(2), Some(1)]), None, "a tie has no majority");
        assert_eq!(majority(&[Some(3), None, None]), None, "members without a leader count");
        assert_eq!(majority(&[Some(3), Some(3), None]), Some(3));
        assert_eq!(majority(&[]), None);
    }

    #[test]
    fn a_log_tail_quotes_the_last_lines() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("server.log");
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&log, text)?;
        let tail = log_tail(&log);
        assert!(tail.contains("last 40 lines") && tail.contains("line 99") && tail.contains("line 60"));
        assert!(!tail.contains("line 59"), "{tail}");
        assert!(log_tail(&dir.path().join("missing")).contains("cannot read"));
        Ok(())
    }
}
