//! Lossy disks ([`ClusterSpec::power_loss`](super::ClusterSpec::power_loss)): where they are
//! mounted, cutting a member's power, and bringing several members back at once.

use std::path::PathBuf;

use anyhow::Context as _;

use super::Cluster;
use crate::lossyfs::{CrashReport, LossyFs};

impl Cluster {
    /// Member `i`'s data directory: [`Cluster::member_dir`], or its `disk` subdirectory (the
    /// mount point of a [`LossyFs`]) with [`ClusterSpec::power_loss`](super::ClusterSpec::power_loss).
    pub fn data_dir(&self, i: usize) -> PathBuf {
        if self.spec.power_loss { self.member_dir(i).join("disk") } else { self.member_dir(i) }
    }

    /// Creates member `i`'s directory, and mounts its lossy disk if it has none yet
    /// ([`ClusterSpec::power_loss`](super::ClusterSpec::power_loss)).
    pub(super) fn mount_disk(&mut self, i: usize) -> anyhow::Result<()> {
        let dir = self.member_dir(i);
        std::fs::create_dir_all(&dir).with_context(|| format!("member n{i}: creating {}", dir.display()))?;
        if self.spec.power_loss && self.disks[i].is_none() {
            let disk = LossyFs::mount(&self.data_dir(i)).with_context(|| format!("member n{i}"))?;
            self.disks[i] = Some(disk);
        }
        Ok(())
    }

    /// Cuts member `i`'s power (lossy disks only): SIGKILLs it if it runs, reaps it, and
    /// makes its disk lose what it had not synced (which part, drawn from `seed`; see
    /// [`LossyFs::power_loss`]). [`Cluster::restart`] brings it back.
    pub async fn power_loss(&mut self, i: usize, seed: u64) -> anyhow::Result<CrashReport> {
        anyhow::ensure!(self.spec.power_loss, "member n{i}: the cluster was started without lossy disks");
        if self.is_running(i) {
            self.kill(i).await?;
        }
        let disk = self.disks.get_mut(i).and_then(Option::as_mut);
        let disk = disk.with_context(|| format!("member n{i} has no lossy disk mounted"))?;
        disk.power_loss(seed).with_context(|| format!("member n{i}"))
    }

    /// [`Cluster::restart`] for several killed members at once, started side by side: after
    /// a whole-cluster power loss none can serve until a quorum is back.
    pub async fn restart_all(&mut self, members: &[usize]) -> Vec<(usize, anyhow::Result<()>)> {
        let mut ready = Vec::new();
        let mut results = Vec::new();
        for &i in members {
            let checked = match self.member_mut(i) {
                Ok(m) if m.child.is_some() => Err(anyhow::anyhow!("member n{i} is running; kill it first")),
                Ok(_) => self.mount_disk(i),
                Err(e) => Err(e),
            };
            match checked {
                Ok(()) => ready.push(i),
                Err(e) => results.push((i, Err(e))),
            }
        }
        let launched = futures::future::join_all(ready.iter().map(|&i| self.launch(i, None))).await;
        for (i, child) in ready.into_iter().zip(launched) {
            results.push((i, child.map(|c| self.members[i].child = Some(c))));
        }
        results
    }
}
