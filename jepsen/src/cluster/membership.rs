//! Membership changes of a running [`Cluster`]: removing a member through etcd's
//! MemberRemove, stopping it, and bringing it back on a fresh data directory with `--join`
//! (the supported way back: a removed id is never reused).

use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;

use super::{
    COMMAND_TIMEOUT, Cluster, EXIT_TIMEOUT, MEMBER_STOP_TIMEOUT, RAFT_PORT, REJOIN_TIMEOUT, connect,
    log_tail, members,
};

impl Cluster {
    /// Removes member `i` (raft id [`Cluster::raft_id`]) from the membership with etcd's
    /// MemberRemove through member `via`'s endpoint, and marks it removed. It keeps running
    /// until [`Cluster::stop_member`]. A request that fails after the removal took effect (no
    /// answer in time) counts as done when `via`'s member list no longer names the id. The
    /// raft id it had.
    pub async fn remove_member(&mut self, i: usize, via: usize) -> anyhow::Result<u64> {
        anyhow::ensure!(!self.is_removed(i), "member n{i} is already removed");
        let id =
            self.raft_id(i).filter(|id| *id != 0).with_context(|| format!("member n{i} has no raft id"))?;
        let endpoint =
            self.etcd_endpoints().into_iter().nth(via).with_context(|| format!("no member n{via}"))?;
        let ask = async {
            connect(&endpoint, COMMAND_TIMEOUT).await?.member_remove(id).await?;
            anyhow::Ok(())
        };
        let result = tokio::time::timeout(COMMAND_TIMEOUT, ask)
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {COMMAND_TIMEOUT:?}")));
        if let Err(e) = result {
            let gone = members(&endpoint).await.is_ok_and(|list| list.iter().all(|(m, _, _)| *m != id));
            if !gone {
                return Err(
                    e.context(format!("member n{i}: removing raft id {id} through n{via} ({endpoint})"))
                );
            }
        }
        self.member_mut(i)?.removed = true;
        Ok(id)
    }

    /// Stops running member `i`: SIGCONT if paused, SIGTERM, and SIGKILL if it has not exited
    /// within [`MEMBER_STOP_TIMEOUT`]. Whether it needed SIGKILL.
    pub async fn stop_member(&mut self, i: usize) -> anyhow::Result<bool> {
        if self.is_paused(i) {
            self.resume(i).await?;
        }
        self.signal(i, "TERM").await?;
        let mut child =
            self.member_mut(i)?.child.take().with_context(|| format!("member n{i} is not running"))?;
        if let Ok(Ok(_)) = tokio::time::timeout(MEMBER_STOP_TIMEOUT, child.wait()).await {
            return Ok(false);
        }
        child.start_kill().with_context(|| format!("member n{i}: sending SIGKILL"))?;
        tokio::time::timeout(EXIT_TIMEOUT, child.wait())
            .await
            .map_err(|_| anyhow::anyhow!("member n{i} did not exit within {EXIT_TIMEOUT:?} of SIGKILL"))?
            .with_context(|| format!("member n{i}: waiting for it to exit"))?;
        Ok(true)
    }

    /// Brings removed member `i` back as a new member: stops it if it still runs, moves its
    /// data directory aside to `<dir>/n<i>.removed-<k>` (the first free `k`; a lossy disk's
    /// contents are dropped), starts it on a
    /// fresh one with `--join` to member `seed`'s transport and the cluster's token, and waits
    /// up to [`REJOIN_TIMEOUT`] until `seed`'s member list names it as a voter with a new id.
    /// Its new raft id (from then on [`Cluster::raft_id`]).
    pub async fn rejoin(&mut self, i: usize, seed: usize) -> anyhow::Result<u64> {
        anyhow::ensure!(self.is_removed(i), "member n{i} was not removed");
        anyhow::ensure!(
            seed != i && self.is_running(seed) && !self.is_removed(seed),
            "member n{seed} cannot be the seed of n{i}'s rejoin: it is n{i}, not running or removed"
        );
        if self.is_running(i) {
            self.stop_member(i).await?;
        }
        // A lossy disk goes with the old data: the new member starts on a fresh one.
        if let Some(disk) = self.disks.get_mut(i).and_then(Option::take) {
            disk.unmount().with_context(|| format!("member n{i}"))?;
        }
        let dir = self.member_dir(i);
        if dir.exists() {
            let aside = (0u32..)
                .map(|k| self.spec.dir.join(format!("n{i}.removed-{k}")))
                .find(|p| !p.exists())
                .with_context(|| format!("member n{i}: no free name to move its data directory to"))?;
            std::fs::rename(&dir, &aside)
                .with_context(|| format!("member n{i}: moving {} to {}", dir.display(), aside.display()))?;
        }
        let old = self.raft_id(i).unwrap_or_default();
        let seed_addr = format!("{}:{RAFT_PORT}", self.net.hosts()[seed].ip);
        let token = self.token.clone();
        let child = self.spawn(i, Some((&seed_addr, &token))).await?;
        self.member_mut(i)?.child = Some(child);
        let addr = format!("{}:{RAFT_PORT}", self.net.hosts()[i].ip);
        let endpoint = self.etcd_endpoints()[seed].clone();
        let deadline = Instant::now() + REJOIN_TIMEOUT;
        loop {
            let last = match members(&endpoint).await {
                Ok(list) => match list.into_iter().find(|(_, a, _)| *a == addr) {
                    Some((id, _, true)) if id != old => {
                        self.raft_ids[i] = id;
                        self.member_mut(i)?.removed = false;
                        return Ok(id);
                    }
                    Some((id, _, voter)) => format!("it is raft id {id}, voter {voter} (old id {old})"),
                    None => format!("{addr} is not in the member list"),
                },
                Err(e) => format!("member list of n{seed}: {e:#}"),
            };
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "member n{i} was no voter within {REJOIN_TIMEOUT:?} of rejoining through n{seed}: {last}\n{}",
                    log_tail(&self.member_dir(i).join("server.log"))
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
