//! Live tests (as root with `ip`/`iptables`; skipped with the reason printed otherwise): a
//! network whose links are cut and healed, and, when `FLOTILLA_BIN` names a `flotilla` binary,
//! a real three-member cluster in network namespaces: links cut and healed, a member killed
//! and restarted, one paused and resumed, a short nemesis schedule, a member catching up from a
//! snapshot after a snapshot fault, one with its wall clock skewed, a clean stop; and a
//! follower, then the leader, removed from the membership and rejoined as new members, and a
//! spare host added as a fourth member and removed again.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use tokio::time::Instant;

use super::{FaultKind, Schedule, Step};
use crate::cluster::{Cluster, ClusterSpec, ETCD_PORT};
use crate::net::{self, Degradation, NetError, Network};

const TAG: &str = "nemtest";

/// Whether a TCP connect from namespace `ns` to `addr` succeeds within 3 s.
async fn connects_from(ns: &str, addr: &str) -> anyhow::Result<bool> {
    let (ip, port) = addr.split_once(':').context("ip:port")?;
    let script = format!(": > /dev/tcp/{ip}/{port}");
    let mut cmd = tokio::process::Command::new("ip");
    cmd.args(["netns", "exec", ns, "timeout", "3", "bash", "-c", &script]).kill_on_drop(true);
    let status = tokio::time::timeout(Duration::from_secs(10), cmd.status()).await??;
    Ok(status.success())
}

/// Polls `cluster.leader()` until `ok` accepts it, for up to 60 s.
async fn leader_where(cluster: &Cluster, ok: impl Fn(usize) -> bool) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let leader = cluster.leader().await;
        if let Some(l) = leader.filter(|l| ok(*l)) {
            return Ok(l);
        }
        anyhow::ensure!(Instant::now() < deadline, "no suitable leader within 60 s (last: {leader:?})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `FLOTILLA_BIN` when network namespaces can be made here; `None` (the reason printed)
/// otherwise.
fn flotilla_bin() -> Option<PathBuf> {
    if let Err(why) = net::check_available() {
        eprintln!("skipping: {why}");
        return None;
    }
    crate::testing::flotilla_bin()
}

#[tokio::test]
async fn a_cut_link_drops_traffic_both_ways_and_heal_restores_it() -> anyhow::Result<()> {
    if let Err(why) = net::check_available() {
        eprintln!("skipping: {why}");
        return Ok(());
    }
    let Some(busybox) = ["/bin/busybox", "/usr/bin/busybox"].into_iter().find(|p| Path::new(p).exists())
    else {
        eprintln!("skipping: busybox (for `nc -l`) is not installed");
        return Ok(());
    };
    // A run that died without cleaning up leaves its network behind: the next create with
    // the same tag removes it first.
    std::mem::forget(Network::create("nettest", 2).await?);
    let mut net = Network::create("nettest", 3).await?;
    let scenario = tokio::time::timeout(Duration::from_secs(60), async {
        let hosts = net.hosts().to_vec();
        assert_eq!(hosts.iter().map(|h| h.index).collect::<Vec<_>>(), [0, 1, 2]);
        let [ten, a, b, last] = net.bridge_ip().octets();
        assert_eq!((ten, last), (10, 254), "{}", net.bridge_ip());
        assert_eq!(hosts[2].ip, Ipv4Addr::new(10, a, b, 3));
        // A persistent listener on host 0 and on host 1.
        let mut listeners = Vec::new();
        for h in &hosts[..2] {
            let mut cmd = net.command(h.index, Path::new(busybox));
            cmd.args(["nc", "-ll", "-p", "7000", "-e", "true"]).kill_on_drop(true);
            listeners.push(cmd.spawn()?);
        }
        // The root namespace reaches the listener (retrying while it starts).
        let addr = format!("{}:7000", hosts[0].ip);
        let mut tries = 0;
        while tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(&addr))
            .await
            .map_or(true, |r| r.is_err())
        {
            tries += 1;
            anyhow::ensure!(tries < 50, "no connection from the root namespace to {addr}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let n1 = format!("{}:7000", hosts[1].ip);
        assert!(connects_from(&hosts[2].ns, &addr).await?, "n2 -> n0 before the cut");
        assert!(connects_from(&hosts[0].ns, &n1).await?, "n0 -> n1 before the cut");

        net.cut(0, 2).await?;
        net.cut(2, 0).await?;
        assert_eq!(net.cuts(), BTreeSet::from([(0, 2)]));
        assert!(!connects_from(&hosts[2].ns, &addr).await?, "n2 -> n0 is cut");
        assert!(connects_from(&hosts[2].ns, &n1).await?, "n2 -> n1 is not cut");
        assert!(connects_from(&hosts[0].ns, &n1).await?, "n0 -> n1 is not cut");
        assert!(tokio::net::TcpStream::connect(&addr).await.is_ok(), "root -> n0 is never cut");
        assert!(matches!(net.cut(1, 1).await, Err(NetError::SameHost(1))));
        assert!(matches!(net.cut(0, 3).await, Err(NetError::NoHost { host: 3, hosts: 3 })));

        net.heal().await?;
        assert!(net.cuts().is_empty());
        assert!(connects_from(&hosts[2].ns, &addr).await?, "n2 -> n0 after heal");

        // Degraded links: 99.9 % loss stops connections (each SYN and answer must pass);
        // a rate limit is a hashlimit rule in each namespace; heal removes both.
        net.degrade(2, 0, Degradation::Loss { per_mille: 999 }).await?;
        net.degrade(1, 2, Degradation::RateLimit { packets_per_sec: 50 }).await?;
        assert_eq!(net.degraded(), BTreeSet::from([(0, 2), (1, 2)]));
        assert!(net.cuts().is_empty());
        assert!(!connects_from(&hosts[2].ns, &addr).await?, "n2 -> n0 loses everything");
        assert!(connects_from(&hosts[0].ns, &n1).await?, "n0 -> n1 is not degraded");
        let rules = ns_rules(&hosts[1].ns).await?;
        assert!(
            rules.contains("--hashlimit-above 50/sec") && rules.contains(&hosts[2].ip.to_string()),
            "{rules}"
        );
        assert!(matches!(
            net.degrade(0, 1, Degradation::Loss { per_mille: 0 }).await,
            Err(NetError::Degradation(_))
        ));
        net.heal().await?;
        assert!(net.degraded().is_empty());
        assert!(!ns_rules(&hosts[1].ns).await?.contains("hashlimit"));
        assert!(connects_from(&hosts[2].ns, &addr).await?, "n2 -> n0 after heal");
        for mut l in listeners {
            l.kill().await?;
        }
        anyhow::Ok(())
    })
    .await;
    net.destroy();
    drop(net);
    assert_nothing_left("nettest")?;
    scenario.map_err(|_| anyhow::anyhow!("the network scenario ran past its timeout"))?
}

/// The iptables rules of the cut chain inside namespace `ns`.
async fn ns_rules(ns: &str) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("ip")
        .args(["netns", "exec", ns, "iptables", "-w", "10", "-S", net::CUT_CHAIN])
        .output()
        .await?;
    anyhow::ensure!(out.status.success(), "iptables -S in {ns}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?)
}

/// Fails if a namespace or interface of run `tag` exists.
fn assert_nothing_left(tag: &str) -> anyhow::Result<()> {
    let ns = std::process::Command::new("ip").args(["netns", "list"]).output()?;
    let ns = String::from_utf8_lossy(&ns.stdout);
    anyhow::ensure!(!ns.contains(&format!("fj-{tag}-")), "namespaces left behind: {ns}");
    let links = std::process::Command::new("ip").args(["-o", "link", "show"]).output()?;
    let links = String::from_utf8_lossy(&links.stdout);
    anyhow::ensure!(!links.contains(&format!("fj{tag}")), "interfaces left behind: {links}");
    let rules = std::process::Command::new("iptables").args(["-w", "10", "-S", "FORWARD"]).output()?;
    let rules = String::from_utf8_lossy(&rules.stdout);
    anyhow::ensure!(!rules.contains(&format!("fj{tag}br")), "FORWARD rules left behind: {rules}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_member_cluster_survives_cuts_kills_pauses_and_a_nemesis() -> anyhow::Result<()> {
    let Some(flotilla) = flotilla_bin() else { return Ok(()) };
    let dir = tempfile::tempdir()?;
    let spec = ClusterSpec {
        flotilla,
        members: 3,
        dir: dir.path().to_path_buf(),
        tag: TAG.into(),
        clock_skew: true,
        spares: 0,
        power_loss: false,
    };
    let scenario = tokio::time::timeout(Duration::from_secs(600), async {
        let started = Instant::now();
        let mut c = Cluster::start(spec).await?;
        eprintln!("three members ready after {:?}", started.elapsed());
        let ids: Vec<u64> = (0..3).filter_map(|i| c.raft_id(i)).collect();
        eprintln!("raft ids by member: {ids:?}");
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[0], 1, "the member that created the cluster is raft id 1");
        assert!(ids[1] != ids[2] && !ids[1..].contains(&1), "{ids:?}");
        let endpoints = c.etcd_endpoints();
        let hosts = c.network().hosts().to_vec();
        assert_eq!(endpoints[2], format!("http://{}:{ETCD_PORT}", hosts[2].ip));
        let log = std::fs::read_to_string(c.member_dir(1).join("server.log"))?;
        assert!(log.contains("export KUBECONFIG="), "{log}");

        // Links: the root namespace reaches every member; a cut link carries nothing.
        let etcd0 = format!("{}:{ETCD_PORT}", hosts[0].ip);
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&etcd0)).await??;
        assert!(connects_from(&hosts[1].ns, &etcd0).await?, "n1 -> n0 before the cut");
        c.network().cut(0, 1).await?;
        assert!(!connects_from(&hosts[1].ns, &etcd0).await?, "n1 -> n0 is cut");
        assert!(connects_from(&hosts[2].ns, &etcd0).await?, "n2 -> n0 is not cut");
        c.network().heal().await?;
        assert!(connects_from(&hosts[1].ns, &etcd0).await?, "n1 -> n0 after heal");

        // Kill the leader: the others elect another; the killed one comes back.
        let leader = leader_where(&c, |_| true).await?;
        c.kill(leader).await?;
        assert!(!c.is_running(leader));
        let killed_at = Instant::now();
        let next = leader_where(&c, |l| l != leader).await?;
        eprintln!("n{next} leads {:?} after SIGKILL of leader n{leader}", killed_at.elapsed());
        c.restart(leader).await?;
        assert!(c.is_running(leader));
        let st = c.status(leader).await?;
        assert_eq!(Some(st.raft_id), c.raft_id(leader), "{st:?}");

        // Pause a follower: it stops answering; the cluster keeps a leader; resumed, it answers.
        let now = leader_where(&c, |_| true).await?;
        let follower = (now + 1) % 3;
        c.pause(follower).await?;
        assert!(c.is_paused(follower));
        // A request already in flight when SIGSTOP landed may still be answered; poll until
        // the member is silent.
        tokio::time::timeout(Duration::from_secs(20), async {
            while c.status(follower).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await
        .context("the paused member going silent")?;
        leader_where(&c, |l| l != follower).await?;
        c.resume(follower).await?;
        assert!(!c.is_paused(follower));
        tokio::time::timeout(Duration::from_secs(30), async {
            while c.status(follower).await.is_err() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await
        .context("the resumed member answering")?;

        // A short schedule of four faults, then everything healed.
        let ms = Duration::from_millis;
        let step = |at, kind, targets: Vec<usize>, len| Step { at: ms(at), kind, targets, duration: ms(len) };
        let schedule = Schedule {
            seed: 0,
            steps: vec![
                step(200, FaultKind::PartitionLeader, vec![], 3000),
                step(3500, FaultKind::Kill, vec![2], 1000),
                step(5000, FaultKind::Pause, vec![1], 1000),
                step(6500, FaultKind::PartitionBridge, vec![0, 1], 1500),
            ],
        };
        let records = super::run(&mut c, &schedule, Instant::now()).await;
        eprintln!("nemesis records: {records:#?}");
        let actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(actions.len(), 8, "{actions:?}");
        assert!(actions[0].starts_with("cut [n") && actions[0].contains("(leader n"), "{actions:?}");
        assert_eq!(
            actions[1..],
            ["heal", "kill n2", "restart n2", "pause n1", "resume n1", "cut [n1] | [n2] (bridge n0)", "heal"]
        );
        assert!(records.iter().all(|r| r.error.is_none()), "{records:#?}");
        assert!(records.windows(2).all(|w| w[0].time_ns <= w[1].time_ns));
        assert!(c.network().cuts().is_empty());
        assert!((0..3).all(|i| c.is_running(i) && !c.is_paused(i)));
        leader_where(&c, |_| true).await?;

        // A snapshot fault: a follower is cut off while keys are written, the others build
        // snapshots and purge their logs, and once healed it catches up from a snapshot.
        let leader = leader_where(&c, |_| true).await?;
        let isolated = (leader + 1) % 3;
        let schedule =
            Schedule { seed: 0, steps: vec![step(100, FaultKind::Snapshot, vec![isolated], 3000)] };
        let writer = write_keys(c.etcd_endpoints()[leader].clone(), "snapfault/", 40, ms(40));
        let (records, written) = tokio::join!(super::run(&mut c, &schedule, Instant::now()), writer);
        let written = written?;
        let actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
        assert!(records.iter().all(|r| r.error.is_none()), "{records:#?}");
        let others: Vec<usize> = (0..3).filter(|&m| m != isolated).collect();
        let cut = format!("cut [n{isolated}] | [n{},n{}] (to snapshot)", others[0], others[1]);
        let snapshots = others.iter().map(|m| format!("snapshot n{m}"));
        let expected: Vec<String> =
            std::iter::once(cut).chain(snapshots).chain(std::iter::once("heal".into())).collect();
        assert_eq!(actions, expected);
        let isolated_endpoint = c.etcd_endpoints()[isolated].clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        while count_keys(&isolated_endpoint, "snapfault/").await.unwrap_or(0) < written {
            anyhow::ensure!(
                Instant::now() < deadline,
                "n{isolated} did not catch up after the snapshot fault"
            );
            tokio::time::sleep(ms(200)).await;
        }
        let log = std::fs::read_to_string(c.member_dir(isolated).join("server.log"))?;
        assert!(log.contains("installed snapshot"), "n{isolated} caught up from a snapshot");
        for m in others {
            let log = std::fs::read_to_string(c.member_dir(m).join("server.log"))?;
            assert!(log.contains("purged the log up to it"), "n{m} compacted on SIGUSR1");
        }

        // Clock faults: the runner skews a member's wall clock and sets it right; a member two
        // days ahead logs that date and still serves reads and writes.
        let clock_step = step(100, FaultKind::Clock, vec![2], 500);
        let records =
            super::run(&mut c, &Schedule { seed: 0, steps: vec![clock_step.clone()] }, Instant::now()).await;
        let actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(actions, [clock_step.describe(3, None).as_str(), "unskew n2"], "{records:#?}");
        assert!(records.iter().all(|r| r.error.is_none()), "{records:#?}");
        assert_eq!(std::fs::read_to_string(c.clock_file(2))?, "+0s\n");
        let two_days = 2 * 24 * 3600;
        c.skew_clock(2, two_days)?;
        let ahead = utc_date(two_days).await?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            c.compact_log(2).await?;
            tokio::time::sleep(ms(500)).await;
            let log = std::fs::read_to_string(c.member_dir(2).join("server.log"))?;
            if log.lines().any(|l| l.contains("SIGUSR1: building") && l.contains(&ahead)) {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "n2 never logged a line dated {ahead}");
        }
        write_keys(c.etcd_endpoints()[2].clone(), "clockfault/", 3, ms(1)).await?;
        assert_eq!(count_keys(&c.etcd_endpoints()[2], "clockfault/").await?, 3);
        c.skew_clock(2, 0)?;

        // A stop that is already requested applies nothing.
        let (_tx, stopped) = tokio::sync::watch::channel(true);
        assert!(super::run_until(&mut c, &schedule, Instant::now(), stopped).await.is_empty());

        let problems = c.stop().await;
        assert!(problems.is_empty(), "{problems:?}");
        anyhow::Ok(())
    })
    .await;
    assert_nothing_left(TAG)?;
    scenario.map_err(|_| anyhow::anyhow!("the cluster scenario ran past its outer timeout"))?
}

/// Today's UTC date `offset_secs` from now, as `YYYY-MM-DD` (by date(1)).
async fn utc_date(offset_secs: i64) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let at = i64::try_from(now)? + offset_secs;
    let out = tokio::process::Command::new("date")
        .args(["-u", "-d", &format!("@{at}"), "+%Y-%m-%d"])
        .output()
        .await?;
    anyhow::ensure!(out.status.success(), "date: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// Puts `count` keys `<prefix><i>` through `endpoint`, one every `every`; returns how many.
async fn write_keys(endpoint: String, prefix: &str, count: usize, every: Duration) -> anyhow::Result<usize> {
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(10));
    let mut client = etcd_client::Client::connect([endpoint.as_str()], Some(options)).await?;
    for i in 0..count {
        client.put(format!("{prefix}{i:03}"), "v", None).await?;
        tokio::time::sleep(every).await;
    }
    Ok(count)
}

/// How many keys under `prefix` member `endpoint` has applied (a serializable read: its own copy).
async fn count_keys(endpoint: &str, prefix: &str) -> anyhow::Result<usize> {
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(2));
    let mut client = etcd_client::Client::connect([endpoint], Some(options)).await?;
    let opts = etcd_client::GetOptions::new().with_prefix().with_serializable().with_count_only();
    Ok(usize::try_from(client.get(prefix, Some(opts)).await?.count())?)
}

/// Checks a three-member cluster after a membership fault was healed: a leader, three voters
/// in the member list with the ids the cluster records, and a put/get through member `i`.
async fn check_rejoined(c: &Cluster, i: usize, old_id: u64, key: &str) -> anyhow::Result<()> {
    let leader = leader_where(c, |_| true).await?;
    let new_id = c.raft_id(i).context("a raft id")?;
    assert_ne!(new_id, old_id, "n{i} rejoined with a new id");
    let endpoints = c.etcd_endpoints();
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(10));
    let mut client =
        etcd_client::Client::connect([endpoints[leader].as_str()], Some(options.clone())).await?;
    let list = client.member_list().await?;
    let ids: BTreeSet<u64> = list.members().iter().map(|m| m.id()).collect();
    assert_eq!(list.members().len(), 3, "{:?}", list.members());
    assert!(list.members().iter().all(|m| !m.is_learner()), "all voters: {:?}", list.members());
    assert_eq!(ids, (0..3).filter_map(|m| c.raft_id(m)).collect(), "the ids the cluster records");
    assert!(!ids.contains(&old_id), "the removed id is gone: {ids:?}");
    for m in 0..3 {
        let st = c.status(m).await?;
        assert_eq!(Some(st.raft_id), c.raft_id(m), "n{m}: {st:?}");
        assert_eq!(st.leader, c.raft_id(leader), "n{m} knows the leader: {st:?}");
    }
    let mut client = etcd_client::Client::connect([endpoints[i].as_str()], Some(options)).await?;
    client.put(key, "v", None).await?;
    let got = client.get(key, None).await?;
    assert_eq!(got.kvs().first().map(|kv| kv.value()), Some(&b"v"[..]), "get {key} through n{i}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_follower_and_a_removed_leader_rejoin_as_new_voters() -> anyhow::Result<()> {
    let Some(flotilla) = flotilla_bin() else { return Ok(()) };
    let dir = tempfile::tempdir()?;
    let spec = ClusterSpec {
        flotilla,
        members: 3,
        dir: dir.path().to_path_buf(),
        tag: "mbtest".into(),
        clock_skew: false,
        spares: 1,
        power_loss: false,
    };
    let scenario = tokio::time::timeout(Duration::from_secs(600), async {
        let mut c = Cluster::start(spec).await?;
        let ms = Duration::from_millis;
        let mut removals = [0usize; 3];
        for round in 0..2 {
            // Round 0 removes a follower, round 1 whoever leads then.
            let leader = leader_where(&c, |_| true).await?;
            let target = if round == 0 { (leader + 1) % 3 } else { leader };
            let old_id = c.raft_id(target).context("a raft id")?;
            let schedule = Schedule {
                seed: 0,
                steps: vec![Step {
                    at: ms(100),
                    kind: FaultKind::Membership,
                    targets: vec![target],
                    duration: ms(2000),
                }],
            };
            let started = Instant::now();
            let records = super::run(&mut c, &schedule, started).await;
            eprintln!("round {round} (n{target}, leader n{leader}, old id {old_id}): {records:#?}");
            assert!(records.iter().all(|r| r.error.is_none()), "{records:#?}");
            assert_eq!(records.len(), 2, "{records:#?}");
            assert_eq!(records[0].action, format!("remove n{target} (id {old_id})"));
            let new_id = c.raft_id(target).context("a raft id")?;
            assert_eq!(records[1].action, format!("rejoin n{target} (id {new_id})"));
            let took = Duration::from_nanos(records[1].time_ns.saturating_sub(records[0].time_ns));
            eprintln!("n{target} rejoined as id {new_id}, {took:?} after its removal (2 s of it out)");
            assert!(!c.is_removed(target) && c.is_running(target));
            assert!(c.network().cuts().is_empty());
            let aside = dir.path().join(format!("n{target}.removed-{}", removals[target]));
            removals[target] += 1;
            assert!(aside.join("server.log").is_file(), "the old data directory kept at {}", aside.display());
            check_rejoined(&c, target, old_id, &format!("mb-{round}")).await?;
        }

        // The spare host grows the cluster to four voters, then leaves it again.
        assert!(c.is_spare(3) && c.is_removed(3) && !c.is_running(3) && c.member_endpoints().len() == 3);
        let grow = Step { at: ms(100), kind: FaultKind::Grow, targets: vec![3], duration: ms(2000) };
        let records = super::run(&mut c, &Schedule { seed: 0, steps: vec![grow] }, Instant::now()).await;
        eprintln!("grow: {records:#?}");
        assert!(records.iter().all(|r| r.error.is_none()), "{records:#?}");
        let id = c.raft_id(3).context("the spare's raft id")?;
        let actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(actions, [format!("add n3 (id {id})"), format!("remove n3 (id {id})")]);
        assert!(c.is_removed(3) && !c.is_running(3));
        let endpoint = c.etcd_endpoints()[0].clone();
        let voters = crate::cluster::connect(&endpoint, Duration::from_secs(5)).await?.member_list().await?;
        let ids: Vec<u64> = voters.members().iter().map(|m| m.id()).collect();
        assert_eq!(ids.len(), 3, "back to three members: {ids:?}");
        assert!(!ids.contains(&id), "the spare's id {id} is gone: {ids:?}");
        check_rejoined(&c, 0, 0, "mb-grown").await?;
        let problems = c.stop().await;
        assert!(problems.is_empty(), "{problems:?}");
        anyhow::Ok(())
    })
    .await;
    assert_nothing_left("mbtest")?;
    scenario.map_err(|_| anyhow::anyhow!("the membership scenario ran past its outer timeout"))?
}
