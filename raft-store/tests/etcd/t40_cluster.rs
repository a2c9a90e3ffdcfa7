//! Cluster and Maintenance: member list and status; members added as learners, promoted and
//! removed (a follower, then the leader) through any member, with etcd's errors; etcdctl's
//! `member` commands.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use etcd_client::{Client, MemberAddOptions};
use flotilla_raft_store::NodeId;
use openraft::Instant as _;
use openraft::type_config::async_runtime::WatchReceiver as _;
use tokio::process::Command;

use crate::harness::{Cluster, grpc_status, within};

/// A free loopback address for a member that is not started yet (bound, then released).
fn free_addr() -> anyhow::Result<String> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.to_string())
}

fn learner() -> Option<MemberAddOptions> {
    Some(MemberAddOptions::new().with_is_learner())
}

/// Fails unless `r` is a gRPC error with `code` whose message contains `text`.
fn expect_status<T>(r: Result<T, etcd_client::Error>, code: tonic::Code, text: &str) -> anyhow::Result<()> {
    match r {
        Ok(_) => bail!("expected {code:?} ({text}), got success"),
        Err(e) => match grpc_status(&e) {
            Some((c, msg)) if c == code && msg.contains(text) => Ok(()),
            _ => bail!("expected {code:?} containing {text:?}, got {e}"),
        },
    }
}

/// The ids and learner flags of a member list, sorted.
fn ids(members: &[etcd_client::Member]) -> Vec<(u64, bool)> {
    let mut v: Vec<(u64, bool)> = members.iter().map(|m| (m.id(), m.is_learner())).collect();
    v.sort_unstable();
    v
}

/// Promotes `id` through `cl`, retrying while the learner is catching up.
async fn promote_when_caught_up(cl: &mut Client, id: NodeId) -> anyhow::Result<Vec<etcd_client::Member>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match cl.member_promote(id).await {
            Ok(r) => return Ok(r.members().to_vec()),
            Err(e)
                if tokio::time::Instant::now() < deadline
                    && format!("{e}").contains("in sync with leader") =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).context(format!("promoting learner {id}")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn member_list_and_status() -> anyhow::Result<()> {
    within("member list and status", 30, async {
        let c = Cluster::start(3).await?;
        let leader = c.member(1).leader().expect("a leader");
        let mut cl = c.client(2).await?;
        let list = cl.member_list().await?;
        let mut ids: Vec<u64> = list.members().iter().map(|m| m.id()).collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![1, 2, 3]);
        for m in list.members() {
            assert!(!m.is_learner());
            assert_eq!(m.name(), format!("member-{}", m.id()));
            assert_eq!(m.peer_urls(), &[format!("http://{}", c.member(m.id()).local_addr())]);
        }
        // Every member's client URL, asked of each over the member transport.
        for m in list.members() {
            let etcd = c.member(m.id()).etcd_addr().expect("etcd endpoint");
            assert_eq!(m.client_urls(), &[format!("http://{etcd}")], "member {}", m.id());
        }

        cl.put("s", "1", None).await?;
        let status = cl.status().await?;
        assert!(status.version().starts_with("3.4"));
        assert_eq!(status.leader(), leader);
        assert!(status.raft_term() > 0);
        assert!(status.raft_index() >= status.raft_applied_index());
        assert!(status.raft_applied_index() > 0);
        assert_eq!(status.header().map(|h| h.member_id()), Some(2));

        // Without a join key a follower cannot forward a membership change; it names the leader.
        let follower = if leader == 2 { 3 } else { 2 };
        let mut fc = c.client(follower).await?;
        expect_status(fc.member_remove(99).await, tonic::Code::FailedPrecondition, "no join key")?;
        expect_status(
            fc.member_remove(99).await,
            tonic::Code::FailedPrecondition,
            &format!("member {leader}"),
        )?;
        expect_status(
            cl.member_update(3, vec!["http://127.0.0.1:1".to_string()]).await,
            tonic::Code::Unimplemented,
            "remove",
        )?;
        c.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_learner_is_added_promoted_and_members_removed_through_followers() -> anyhow::Result<()> {
    within("add, promote, remove a follower, remove the leader", 90, async {
        let mut c = Cluster::start_with_join_key(3).await?;
        let leader = c.wait_leader(Duration::from_secs(10)).await?;
        let follower = (1..=3).find(|id| *id != leader).context("a follower")?;
        let other = (1..=3).find(|id| *id != leader && *id != follower).context("another follower")?;
        let mut cl = c.client(follower).await?;
        cl.put("before", "1", None).await?;

        // A learner for a fourth member, added before it runs; its address keeps its id.
        let addr = free_addr()?;
        let added = cl.member_add([format!("http://{addr}")], learner()).await?;
        let new = added.member().context("the added member")?;
        let id = new.id();
        assert!(id > 3 && new.is_learner(), "{new:?}");
        assert_eq!(new.peer_urls(), &[format!("http://{addr}")]);
        assert_eq!(ids(added.member_list()), vec![(1, false), (2, false), (3, false), (id, true)]);
        assert_eq!(added.header().map(|h| h.member_id()), Some(follower));
        let again = cl.member_add([addr.as_str()], learner()).await?;
        assert_eq!(again.member().map(|m| m.id()), Some(id), "the same address is the same member");
        assert_eq!(again.member_list().len(), 4);

        // It runs with that id, catches up and becomes a voter; it has the data.
        c.launch(id, addr.parse()?).await?;
        let members = promote_when_caught_up(&mut cl, id).await?;
        assert_eq!(ids(&members), vec![(1, false), (2, false), (3, false), (id, false)]);
        cl.put("promoted", "2", None).await?;
        c.wait_converged(Duration::from_secs(15)).await?;
        let mut nc = c.client(id).await?;
        let got = nc.get("promoted", Some(etcd_client::GetOptions::new().with_serializable())).await?;
        assert_eq!(got.kvs().first().map(|kv| kv.value()), Some(&b"2"[..]));

        // Remove a follower through the new member; writes go on without it.
        let removed = nc.member_remove(other).await?;
        assert_eq!(ids(removed.members()), {
            let mut v = vec![(leader, false), (follower, false), (id, false)];
            v.sort_unstable();
            v
        });
        c.stop(other).await;
        cl.put("after-follower", "3", None).await?;

        // Remove the leader through a follower: it commits its removal and steps down, the
        // others elect a leader and take writes.
        let removed = cl.member_remove(leader).await?;
        let mut left = vec![(follower, false), (id, false)];
        left.sort_unstable();
        assert_eq!(ids(removed.members()), left);
        let new_leader = c.wait_leader_among(&[follower, id], Duration::from_secs(10)).await?;
        assert_ne!(new_leader, leader);
        cl.put("after-leader", "4", None).await?;
        assert_eq!(ids(cl.member_list().await?.members()), left);
        let stepped_down = async {
            while c.member(leader).raft().is_leader() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), stepped_down)
            .await
            .context("the removed leader did not step down")?;
        c.stop(leader).await;

        // Ids are never handed out again.
        let next = cl.member_add([free_addr()?], learner()).await?;
        let next_id = next.member().context("the added member")?.id();
        assert!(next_id > id, "new id {next_id} after ids 1..=3 and {id}");
        let got = cl.get("after-leader", None).await?;
        assert_eq!(got.kvs().first().map(|kv| kv.value()), Some(&b"4"[..]));
        c.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn membership_changes_are_refused_with_etcds_errors() -> anyhow::Result<()> {
    within("membership errors", 90, async {
        let mut c = Cluster::start_with_join_key(3).await?;
        let leader = c.wait_leader(Duration::from_secs(10)).await?;
        let follower = (1..=3).find(|id| *id != leader).context("a follower")?;
        let other = (1..=3).find(|id| *id != leader && *id != follower).context("another follower")?;
        let mut cl = c.client(follower).await?;

        use tonic::Code::{FailedPrecondition, InvalidArgument, NotFound, Unimplemented};
        expect_status(cl.member_remove(99).await, NotFound, "etcdserver: member not found")?;
        expect_status(cl.member_promote(99).await, NotFound, "etcdserver: member not found")?;
        let not_learner = cl.member_promote(leader).await;
        expect_status(not_learner, FailedPrecondition, "etcdserver: can only promote a learner member")?;
        let addr = free_addr()?;
        expect_status(cl.member_add([addr.as_str()], None).await, FailedPrecondition, "learners only")?;
        let two = cl.member_add(["http://127.0.0.1:1", "http://127.0.0.1:2"], learner()).await;
        expect_status(two, InvalidArgument, "peerURLs: expected exactly one URL, got 2")?;
        let tls = cl.member_add(["https://127.0.0.1:1"], learner()).await;
        expect_status(tls, InvalidArgument, "given member URLs are invalid")?;
        expect_status(cl.member_update(other, vec![addr.clone()]).await, Unimplemented, "MemberUpdate")?;

        // A learner nobody runs is never in sync, so it is not promoted; it can be removed.
        let added = cl.member_add([addr.as_str()], learner()).await?;
        let ghost = added.member().context("the added member")?.id();
        let early = cl.member_promote(ghost).await;
        expect_status(
            early,
            FailedPrecondition,
            "can only promote a learner member which is in sync with leader",
        )?;
        assert_eq!(cl.member_remove(ghost).await?.members().len(), 3);

        // With one voter stopped, removing another running voter would leave no quorum of
        // started members; removing the stopped one is fine.
        c.stop(other).await;
        unheard(&c, leader, other).await?;
        let mut lc = c.client(leader).await?;
        let no_quorum = lc.member_remove(follower).await;
        expect_status(no_quorum, FailedPrecondition, "not enough started members")?;
        assert_eq!(lc.member_remove(other).await?.members().len(), 2);
        lc.put("two voters", "ok", None).await?;

        // The last voter stays.
        lc.member_remove(follower).await?;
        expect_status(lc.member_remove(leader).await, FailedPrecondition, "last voter")?;
        lc.put("one voter", "ok", None).await?;
        c.shutdown().await;
        Ok(())
    })
    .await
}

/// Waits until `leader` has not heard from `stopped` for longer than the window in which the
/// removal check counts a member as started: two election timeouts (`membership.rs`).
async fn unheard(c: &Cluster, leader: NodeId, stopped: NodeId) -> anyhow::Result<()> {
    let raft = c.member(leader).raft();
    let window = Duration::from_millis(raft.config().election_timeout_max * 2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let heard = raft.metrics().borrow_watched().heartbeat.as_ref().and_then(|h| h.get(&stopped).cloned());
        // The time left until the last acknowledgement falls out of the window; nothing the
        // metrics could report would end it sooner, so wait exactly that long and look again.
        let left = match heard.flatten().map(|at| at.elapsed()) {
            Some(elapsed) if elapsed <= window => window - elapsed + Duration::from_millis(1),
            _ => return Ok(()),
        };
        ensure!(
            tokio::time::Instant::now() + left < deadline,
            "the leader still counts member {stopped} as started"
        );
        tokio::time::sleep(left).await;
    }
}

/// Runs `etcdctl` (v3 API) against `endpoint`; `None` when it is not installed.
async fn etcdctl(endpoint: &str, args: &[&str]) -> anyhow::Result<Option<(bool, String)>> {
    let mut cmd = Command::new("etcdctl");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ETCDCTL_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("ETCDCTL_API", "3").arg(format!("--endpoints={endpoint}")).args(args).kill_on_drop(true);
    let out = match tokio::time::timeout(Duration::from_secs(15), cmd.output()).await {
        Err(_) => bail!("etcdctl {args:?} did not finish within 15 s"),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Ok(r) => r.context("running etcdctl")?,
    };
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok(Some((out.status.success(), text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcdctl_member_commands() -> anyhow::Result<()> {
    within("etcdctl member add, promote, list and remove", 60, async {
        let c = Cluster::start_with_join_key(3).await?;
        let leader = c.wait_leader(Duration::from_secs(10)).await?;
        let follower = (1..=3).find(|id| *id != leader).context("a follower")?;
        let endpoint = c.member(follower).etcd_addr().context("etcd endpoint")?.to_string();
        let Some((ok, list)) = etcdctl(&endpoint, &["member", "list"]).await? else {
            eprintln!("skipped: etcdctl is not installed (Debian package etcd-client)");
            c.shutdown().await;
            return Ok(());
        };
        ensure!(ok, "etcdctl member list failed: {list}");
        for id in 1..=3u64 {
            let peer = c.member(id).local_addr();
            let line = format!("{id:x}, started, member-{id}, http://{peer}, ");
            ensure!(list.contains(&line), "no line starting {line:?} in:\n{list}");
        }

        let addr = free_addr()?;
        let peer = format!("--peer-urls=http://{addr}");
        let (ok, out) =
            etcdctl(&endpoint, &["member", "add", "m4", &peer, "--learner"]).await?.context("etcdctl")?;
        ensure!(ok && out.starts_with("Member ") && out.contains(" added to cluster "), "member add: {out}");
        let hex = out.split_whitespace().nth(1).context("member id")?.to_string();
        ensure!(
            out.contains(&format!("m4=http://{addr}")),
            "ETCD_INITIAL_CLUSTER names the new member: {out}"
        );

        let (ok, out) = etcdctl(&endpoint, &["member", "promote", &hex]).await?.context("etcdctl")?;
        ensure!(!ok && out.contains("in sync with leader"), "promoting a learner nobody runs: {out}");
        let (ok, out) = etcdctl(&endpoint, &["member", "remove", &hex]).await?.context("etcdctl")?;
        // etcdctl pads ids to 16 columns: "Member                4 removed from cluster ...".
        let words: Vec<&str> = out.split_whitespace().take(5).collect();
        ensure!(ok && words == ["Member", &hex, "removed", "from", "cluster"], "member remove: {out}");
        let (ok, list) = etcdctl(&endpoint, &["member", "list"]).await?.context("etcdctl")?;
        ensure!(
            ok && list.lines().count() == 3 && !list.lines().any(|l| l.starts_with(&format!("{hex}, "))),
            "after remove:\n{list}"
        );
        c.shutdown().await;
        Ok(())
    })
    .await
}
