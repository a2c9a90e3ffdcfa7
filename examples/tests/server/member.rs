//! `flotilla member` against three `flotilla server` processes: the member list, removing a
//! running follower (the two voters left keep taking writes while the removed server still
//! runs, and after it stopped), adding a learner nobody runs (its promotion is refused; it is
//! removed), and etcd's error for an unknown member. The commands are the
//! ones docs/operations.md ("Membership") shows.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::{Addrs, Server, flotilla, kill, path, scenario, status, step, three_servers};

/// A put through `server`'s etcd endpoint, then a get of the same key through `reader`'s.
async fn write_then_read(server: &Server, reader: &Server, key: &str) -> Result<()> {
    let endpoint = |s: &Server| format!("http://{}:{}", s.addrs.ip, s.addrs.etcd);
    step(30, &format!("writing {key} through {}", endpoint(server)), async {
        let mut w = etcd_client::Client::connect([endpoint(server)], None).await?;
        w.put(key, "v", None).await?;
        let mut r = etcd_client::Client::connect([endpoint(reader)], None).await?;
        let got = r.get(key, None).await?;
        anyhow::ensure!(got.kvs().first().map(|kv| kv.value()) == Some(&b"v"[..]), "{key} not read back");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn removing_a_follower_leaves_two_voters_taking_writes() -> Result<()> {
    let root = tempfile::tempdir()?;
    scenario(root.path(), 300, async {
        let (mut servers, _) = three_servers(root.path()).await?;
        let dirs: Vec<PathBuf> = servers.iter().map(|s| s.dir.clone()).collect();
        let addrs: Vec<Addrs> = servers.iter().map(|s| s.addrs.clone()).collect();

        let st = status(&dirs[0]).await?;
        assert_eq!(st.members.len(), 3, "{st:?}");
        assert!(st.members.iter().all(|m| m.voter), "{st:?}");
        let leader = st.leader.context("no leader")?;
        let list = flotilla(&["member", "list", "--data-dir", path(&dirs[1])?]).await?;
        assert!(list.contains("voter (leader)"), "{list}");
        for a in &addrs {
            assert!(list.contains(&a.raft()), "{} listed:\n{list}", a.raft());
        }

        // Remove a follower, asking another follower's endpoint.
        let server_of = |id: u64| -> Result<usize> {
            let m = st.members.iter().find(|m| m.id == id).context("member listed")?;
            addrs.iter().position(|a| a.raft() == m.address).context("member's server")
        };
        let li = server_of(leader)?;
        let ri = (li + 1) % 3;
        let ki = (li + 2) % 3;
        let removed = status(&servers[ri].dir).await?.member;
        let out =
            flotilla(&["member", "remove", &removed.to_string(), "--data-dir", path(&dirs[ki])?]).await?;
        assert!(out.starts_with(&format!("removed member {removed}; members now: ")), "{out}");

        // Two voters, taking writes while the removed server still runs, and after it stopped.
        let st = status(&dirs[ki]).await?;
        assert_eq!(st.members.len(), 2, "{st:?}");
        assert!(st.members.iter().all(|m| m.voter && m.id != removed), "{st:?}");
        write_then_read(&servers[ki], &servers[li], "while-removed-runs").await?;
        kill(&mut servers[ri], "-TERM").await?;
        write_then_read(&servers[li], &servers[ki], "after-removed-stopped").await?;
        let st = status(&dirs[li]).await?;
        assert_eq!((st.members.len(), st.leader), (2, Some(leader)), "the leader stayed: {st:?}");

        // A learner for a server that never starts: added, not promoted, removed.
        let etcd = format!("http://{}:{}", servers[li].addrs.ip, servers[li].addrs.etcd);
        let spare = format!("127.0.0.9:{}", super::free_port("127.0.0.9")?);
        let out = flotilla(&["member", "add", &spare, "--learner", "--server", &etcd]).await?;
        let learner: u64 = out
            .strip_prefix("added member ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|id| id.parse().ok())
            .with_context(|| format!("no id in {out:?}"))?;
        assert!(out.contains(&format!(" at {spare} as a learner")), "{out}");
        let early = flotilla(&["member", "promote", &learner.to_string(), "--server", &etcd]).await;
        let early = format!("{:#}", early.err().context("promoting a learner nobody runs succeeded")?);
        assert!(early.contains("in sync with leader"), "{early}");
        flotilla(&["member", "remove", &learner.to_string(), "--server", &etcd]).await?;
        assert!(learner > removed, "ids grow: {learner} after {removed}");

        // etcd's error names an unknown member.
        let err = flotilla(&["member", "remove", "999999", "--data-dir", path(&dirs[li])?]).await;
        let err = format!("{:#}", err.err().context("removing an unknown member succeeded")?);
        assert!(err.contains("etcdserver: member not found"), "{err}");

        for i in [li, ki] {
            kill(&mut servers[i], "-TERM").await?;
        }
        Ok(())
    })
    .await
}
