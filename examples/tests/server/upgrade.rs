//! The rolling upgrade docs/operations.md ("Upgrading") describes, against three `flotilla
//! server` processes: one server at a time, followers first and the leader last, is stopped
//! with SIGTERM and started again on its data directory (with the new binary, in a real
//! upgrade) while a client keeps writing. The leader hands its leadership over as it stops;
//! the cluster takes writes after every step, every acknowledged write is there at the end,
//! and every member is a voter again.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

use super::{Server, eventually, kill, scenario, start, status, step, three_servers};

/// Keys whose put was acknowledged, shared by the writer and the test.
#[derive(Clone, Default)]
struct Acked(Arc<Mutex<BTreeSet<String>>>);

impl Acked {
    fn set(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Puts `u/<n>` keys one after another, each through the next etcd endpoint when the last
/// one failed, until `stop`. A put that failed may still have been applied; only
/// acknowledged ones are recorded.
async fn write_until(endpoints: Vec<String>, acked: Acked, stop: Arc<AtomicBool>) {
    let mut at = 0;
    let mut client: Option<etcd_client::Client> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("u/{n:06}");
        n += 1;
        let put = async {
            if client.is_none() {
                client = Some(etcd_client::Client::connect([endpoints[at].as_str()], None).await?);
            }
            let c = client.as_mut().context("connected")?;
            c.put(key.as_str(), "v", None).await?;
            anyhow::Ok(())
        };
        match tokio::time::timeout(Duration::from_secs(3), put).await {
            Ok(Ok(())) => {
                acked.set().insert(key);
            }
            _ => {
                client = None;
                at = (at + 1) % endpoints.len();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Every `u/` key, read through `server`'s etcd endpoint.
async fn keys_through(server: &Server) -> Result<BTreeSet<String>> {
    let endpoint = format!("http://{}:{}", server.addrs.ip, server.addrs.etcd);
    step(30, &format!("reading every key through {endpoint}"), async {
        let mut c = etcd_client::Client::connect([endpoint.as_str()], None).await?;
        let got = c.get("u/", Some(etcd_client::GetOptions::new().with_prefix())).await?;
        Ok(got.kvs().iter().map(|kv| String::from_utf8_lossy(kv.key()).into_owned()).collect())
    })
    .await
}

#[tokio::test]
async fn a_rolling_restart_keeps_taking_writes_and_loses_none() -> Result<()> {
    let root = tempfile::tempdir()?;
    scenario(root.path(), 300, async {
        let (mut servers, _) = three_servers(root.path()).await?;
        let endpoints = servers.iter().map(|s| format!("http://{}:{}", s.addrs.ip, s.addrs.etcd)).collect();
        let (acked, stop) = (Acked::default(), Arc::new(AtomicBool::new(false)));
        let writer = tokio::spawn(write_until(endpoints, acked.clone(), stop.clone()));

        let mut left: Vec<usize> = vec![0, 1, 2];
        let mut handed_over = false;
        while !left.is_empty() {
            // Followers first: the server to restart is one that does not lead, if any is left.
            let mut ids = Vec::new();
            for &i in &left {
                ids.push(status(&servers[i].dir).await?.member);
            }
            let st = status(&servers[left[0]].dir).await?;
            let pick = ids.iter().position(|id| Some(*id) != st.leader).unwrap_or(0);
            let i = left.remove(pick);
            let leads = st.leader == Some(ids[pick]);
            let before = acked.set().len();

            kill(&mut servers[i], "-TERM").await?;
            if leads {
                let log = std::fs::read_to_string(servers[i].dir.join("server.log"))?;
                anyhow::ensure!(
                    log.contains("handed the store's leadership over"),
                    "the leader stopped without handing over:\n{log}"
                );
                handed_over = true;
            }
            let (dir, a) = (servers[i].dir.clone(), servers[i].addrs.clone());
            servers[i] = start(&dir, &a, &[]).await?;
            let other = &servers[(i + 1) % 3].dir;
            let target = status(other).await?.applied_index;
            eventually(60, "the restarted server back as a caught-up voter", || async {
                let st = status(&dir).await?;
                let ok = st.members.len() == 3
                    && st.members.iter().all(|m| m.voter)
                    && st.leader.is_some()
                    && st.applied_index >= target;
                Ok(ok.then_some(()))
            })
            .await?;
            eventually(60, "writes acknowledged after the restart", || async {
                Ok((acked.set().len() > before + 10).then_some(()))
            })
            .await?;
        }
        assert!(handed_over, "no step stopped the leader");

        stop.store(true, Ordering::Relaxed);
        step(30, "stopping the writer", async { Ok(writer.await?) }).await?;
        let acked = acked.set().clone();
        for s in &servers {
            let got = keys_through(s).await?;
            let lost: Vec<&String> = acked.difference(&got).collect();
            anyhow::ensure!(lost.is_empty(), "{} acknowledged writes lost: {lost:?}", lost.len());
        }
        eprintln!("{} writes acknowledged across the rolling restart", acked.len());
        for s in &mut servers {
            kill(s, "-TERM").await?;
        }
        Ok(())
    })
    .await
}
