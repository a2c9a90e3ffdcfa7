//! A live test (with `FLOTILLA_BIN` naming a `flotilla` binary; skipped with the reason
//! printed otherwise): the object workload against one `flotilla server` on loopback, four
//! clients on three objects for about 6 s with two watchers whose streams the server ends
//! every 2 s, then the checker over the recorded (and saved and reloaded) history.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tokio::time::Instant;

use super::{AnomalyKind, ObjectHistory, ObjectRecorder, ObjectSpec, Outcome, check, run};
use crate::testing::{LoopbackServer, flotilla_bin};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_and_watches_against_a_server_are_valid() -> anyhow::Result<()> {
    let Some(bin) = flotilla_bin() else { return Ok(()) };
    let dir = tempfile::tempdir()?;
    let server = LoopbackServer::start(&bin, dir.path()).await?;

    let spec = ObjectSpec {
        clients: 4,
        objects: 3,
        watchers: 2,
        watch_timeout: Duration::from_secs(2),
        tail: Duration::from_secs(30),
        ..ObjectSpec::new("Objects/Live", 7)
    };
    let recorder = ObjectRecorder::new();
    let until = Instant::now() + Duration::from_secs(6);
    let stats = tokio::time::timeout(
        Duration::from_secs(120),
        run(std::slice::from_ref(&server.kubeconfig), &spec, &recorder, until),
    )
    .await
    .context("the workload ran past 120 s")??;
    let history = recorder.history();
    let path = dir.path().join("objects.jsonl");
    history.save(&path)?;
    let reloaded = ObjectHistory::load(&path)?;
    assert!(reloaded == history, "the saved history reads back differently");
    let verdict = check(&reloaded);
    eprintln!("{stats:?}");
    eprintln!("{}", serde_json::to_string_pretty(&verdict)?);
    if !(verdict.valid && verdict.complete) {
        server.stop().await?;
        let kept = dir.keep();
        anyhow::bail!("{verdict:#?}\nhistory and server log kept in {}", kept.display());
    }
    assert!(verdict.counts.ok > 0 && verdict.counts.fail > 0, "no ok or no conflicting update: {stats:?}");
    assert!(verdict.counts.watch_events_checked > 0, "no watch event checked: {verdict:#?}");
    assert_eq!(verdict.counts.watchers, 2);
    assert!(history.watchers.iter().all(|w| w.streams >= 2), "no watcher resumed: {:#?}", history.watchers);
    assert!(
        history.updates.iter().all(|u| u.object.starts_with("objects-live-")),
        "objects not named by the sanitized prefix"
    );
    // The checker notices one event taken out of the middle of a real stream.
    let mut broken = reloaded;
    let middle = broken.events.iter().position(|e| e.watcher == 0 && e.elements.len() == 5);
    broken.events.remove(middle.context("watcher 0 saw no version with 5 elements")?);
    let v = check(&broken);
    assert!(!v.valid && v.by_kind.contains_key(&AnomalyKind::WatchGap), "{:#?}", v.anomalies);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn updates_and_watches_stay_valid_through_a_leader_kill() -> anyhow::Result<()> {
    if let Err(why) = crate::net::check_available() {
        eprintln!("skipping: {why}");
        return Ok(());
    }
    let Some(bin) = flotilla_bin() else { return Ok(()) };
    let dir = tempfile::tempdir()?;
    let tag = format!("ob{}", std::process::id() % 1_000_000);
    let spec = crate::cluster::ClusterSpec {
        flotilla: bin,
        members: 3,
        dir: dir.path().to_path_buf(),
        tag,
        clock_skew: false,
        spares: 0,
        power_loss: false,
    };
    // Dropping the cluster (on a timeout or an error) kills its members and removes the network.
    let scenario = tokio::time::timeout(Duration::from_secs(600), async {
        let mut cluster = crate::cluster::Cluster::start(spec).await?;
        let kubeconfigs: Vec<PathBuf> = (0..3).map(|i| cluster.data_dir(i).join("kubeconfig")).collect();
        let spec = ObjectSpec {
            clients: 6,
            watchers: 3,
            watch_timeout: Duration::from_secs(5),
            ..ObjectSpec::new("jepsen/objects-kill", 11)
        };
        let recorder = ObjectRecorder::new();
        let until = Instant::now() + Duration::from_secs(20);
        let faults = async {
            // The leader is killed once the clients are under way (updates acknowledged), and
            // restarted once the others have elected a new one.
            let deadline = Instant::now() + Duration::from_secs(60);
            let acknowledged =
                || recorder.history().updates.iter().filter(|u| u.outcome == Outcome::Ok).count();
            while acknowledged() < 50 {
                anyhow::ensure!(Instant::now() < deadline, "fewer than 50 updates acknowledged in 60 s");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let victim = cluster.leader().await.unwrap_or(2);
            cluster.kill(victim).await?;
            let deadline = Instant::now() + Duration::from_secs(60);
            while cluster.leader().await.is_none_or(|l| l == victim) {
                anyhow::ensure!(Instant::now() < deadline, "no new leader within 60 s of killing n{victim}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            cluster.restart(victim).await?;
            anyhow::Ok(victim)
        };
        let (stats, victim) = tokio::join!(run(&kubeconfigs, &spec, &recorder, until), faults);
        let (stats, victim) = (stats?, victim?);
        let history = recorder.history();
        let verdict = check(&history);
        eprintln!("killed n{victim}; {stats:?}");
        eprintln!("{}", serde_json::to_string_pretty(&verdict.watchers)?);
        if !(verdict.valid && verdict.complete) {
            history.save(&dir.path().join("objects.jsonl"))?;
            let problems = cluster.stop().await;
            anyhow::bail!("{verdict:#?}\nstopping the cluster: {problems:?}");
        }
        assert!(verdict.counts.ok > 0 && verdict.counts.fail > 0, "{stats:?}");
        let resumed = &history.watchers[victim];
        assert!(resumed.streams >= 2 && !resumed.failures.is_empty(), "{resumed:#?}");
        let problems = cluster.stop().await;
        anyhow::ensure!(problems.is_empty(), "stopping the cluster: {problems:?}");
        anyhow::Ok(())
    })
    .await;
    let outcome = scenario.map_err(|_| anyhow::anyhow!("the scenario ran past its outer timeout"));
    if let Ok(Err(e)) | Err(e) = outcome {
        // The history (if any) and the members' logs, for a post-mortem.
        let kept = dir.keep();
        anyhow::bail!("{e:#}\nkept {}", kept.display());
    }
    Ok(())
}
