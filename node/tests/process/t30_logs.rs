use std::time::Duration;

use flotilla_node::runtime::{ContainerRuntime, ContainerState, LogOptions};
use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;

use crate::{exit_of, logs, run, runtime, shell, state, within};

#[tokio::test]
async fn tail_since_and_timestamps() {
    within("reading logs of a short container", async {
        let root = tempfile::tempdir().expect("tempdir");
        let rt = runtime(root.path());
        // The pause makes the lines' read times differ.
        let id = run(&rt, &shell("echo one; echo two; sleep 0.2; echo three")).await;
        exit_of(&rt, &id).await;
        assert_eq!(logs(&rt, &id, LogOptions::default()).await, "one\ntwo\nthree\n");
        let tail = LogOptions { tail_lines: Some(2), ..LogOptions::default() };
        assert_eq!(logs(&rt, &id, tail).await, "two\nthree\n");

        let stamped = logs(&rt, &id, LogOptions { timestamps: true, ..LogOptions::default() }).await;
        let mut times = Vec::new();
        for (line, want) in stamped.lines().zip(["one", "two", "three"]) {
            let (time, content) = line.split_once(' ').expect("timestamp then content");
            times.push(time.parse::<Timestamp>().unwrap_or_else(|e| panic!("{time:?}: {e}")));
            assert_eq!(content, want);
        }
        assert_eq!(times.len(), 3);
        assert!(times[1] < times[2]);

        let since = LogOptions { since: Some(times[2]), ..LogOptions::default() };
        assert_eq!(logs(&rt, &id, since).await, "three\n");
        let future = LogOptions { since: Some(times[2] + Duration::from_secs(60)), ..LogOptions::default() };
        assert_eq!(logs(&rt, &id, future).await, "");
    })
    .await;
}

#[tokio::test]
async fn stderr_is_captured_in_cri_format() {
    within("reading logs of a short container", async {
        let root = tempfile::tempdir().expect("tempdir");
        let rt = runtime(root.path());
        let id = run(&rt, &shell("echo oops >&2")).await;
        exit_of(&rt, &id).await;
        assert_eq!(logs(&rt, &id, LogOptions::default()).await, "oops\n");
        let file = std::fs::read_to_string(root.path().join("containers").join(&id).join("container.log"))
            .expect("log file");
        let (time, rest) = file.split_once(' ').expect("a record");
        time.parse::<Timestamp>().expect("RFC 3339 timestamp");
        assert_eq!(rest, "stderr F oops\n");
    })
    .await;
}

#[tokio::test]
async fn long_lines_are_split_and_joined_again() {
    within("logging a long line", async {
        let root = tempfile::tempdir().expect("tempdir");
        let rt = runtime(root.path());
        let id = run(&rt, &shell("head -c 40000 /dev/zero | tr '\\0' x; echo; echo end")).await;
        exit_of(&rt, &id).await;
        let out = logs(&rt, &id, LogOptions::default()).await;
        assert_eq!(out, format!("{}\nend\n", "x".repeat(40000)));
        let file = std::fs::read_to_string(root.path().join("containers").join(&id).join("container.log"))
            .expect("log file");
        assert!(file.lines().filter(|l| l.contains(" stdout P ")).count() >= 2, "pieces are P records");
    })
    .await;
}

#[tokio::test]
async fn follow_streams_until_the_container_exits() {
    within("following logs of a container", async {
        let root = tempfile::tempdir().expect("tempdir");
        let rt = runtime(root.path());
        let id = run(&rt, &shell("echo a; sleep 0.3; echo b; sleep 0.3; echo c")).await;
        let options = LogOptions { follow: true, ..LogOptions::default() };
        let mut stream = rt.logs(&id, &options).await.expect("logs");
        let mut seen = String::new();
        let mut running_when_first_seen = None;
        while let Some(chunk) = stream.next().await {
            let chunk = String::from_utf8(chunk.expect("chunk").to_vec()).expect("utf-8");
            if running_when_first_seen.is_none() {
                running_when_first_seen =
                    Some(matches!(state(&rt, &id).await, ContainerState::Running { .. }));
            }
            seen.push_str(&chunk);
        }
        assert_eq!(seen, "a\nb\nc\n");
        assert_eq!(running_when_first_seen, Some(true), "lines arrive while the container runs");
        assert_eq!(exit_of(&rt, &id).await.0, 0);
    })
    .await;
}

#[tokio::test]
async fn follow_with_tail_starts_from_the_last_lines() {
    within("following logs of a container", async {
        let root = tempfile::tempdir().expect("tempdir");
        let rt = runtime(root.path());
        let script = "echo 1; echo 2; echo 3; while [ ! -e go ]; do sleep 0.02; done; echo 4";
        let id = run(&rt, &shell(script)).await;
        while logs(&rt, &id, LogOptions::default()).await != "1\n2\n3\n" {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let options = LogOptions { follow: true, tail_lines: Some(1), ..LogOptions::default() };
        let mut stream = rt.logs(&id, &options).await.expect("logs");
        let first = stream.next().await.expect("a first chunk").expect("chunk");
        assert_eq!(&first[..], b"3\n");
        std::fs::write(root.path().join("containers").join(&id).join("work").join("go"), b"").expect("go");
        let rest: Vec<_> = stream.collect().await;
        let rest: Vec<u8> = rest.into_iter().flat_map(|c| c.expect("chunk").to_vec()).collect();
        assert_eq!(rest, b"4\n");
    })
    .await;
}
