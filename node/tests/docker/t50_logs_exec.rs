//! Logs (tail, timestamps, since, follow) and exec (output, exit code, timeout).

use std::time::Duration;

use flotilla_node::runtime::{ContainerRuntime, ContainerState, LogOptions};
use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;

use crate::{strings, with_docker};

#[tokio::test]
async fn logs_tail_timestamps_and_since() {
    with_docker("logs_tail_timestamps_and_since", "reading logs", |env| async move {
        let (_pod, sandbox) = env.pod("logs").await;
        // Docker reads stdout and stderr through separate pipes, so lines written back to back
        // on the two may be logged in either order: stderr waits until stdout is in the log.
        let script = "for i in 1 2 3 4 5; do echo line-$i; done; \
                      while [ ! -e /tmp/go ]; do sleep 0.05; done; echo err-line >&2";
        let id = env.run(&sandbox, &env.config(&sandbox.pod, "app", &["sh", "-c", script])).await;
        env.wait_for_log(&id, "line-5").await;
        let touched = env.runtime.exec(&id, &strings(&["touch", "/tmp/go"]), Duration::from_secs(10)).await;
        assert_eq!(touched.expect("exec runs").exit_code, 0);
        env.wait_exited(&id).await;

        let all = env.logs(&id, LogOptions::default()).await;
        assert_eq!(
            all.lines().collect::<Vec<_>>(),
            ["line-1", "line-2", "line-3", "line-4", "line-5", "err-line"]
        );
        let tail = env.logs(&id, LogOptions { tail_lines: Some(2), ..LogOptions::default() }).await;
        assert_eq!(tail.lines().collect::<Vec<_>>(), ["line-5", "err-line"]);

        let stamped = env.logs(&id, LogOptions { timestamps: true, ..LogOptions::default() }).await;
        let lines: Vec<&str> = stamped.lines().collect();
        assert_eq!(lines.len(), 6, "{stamped}");
        let mut previous: Option<Timestamp> = None;
        for (line, expected) in lines.iter().zip(["line-1", "line-2", "line-3", "line-4", "line-5"]) {
            let (time, text) = line.split_once(' ').expect("a timestamp, a space, the line");
            let time: Timestamp = time.parse().unwrap_or_else(|e| panic!("{time:?} is RFC 3339: {e}"));
            assert_eq!(text, expected);
            assert!(previous.is_none_or(|p| p <= time), "timestamps go forward");
            previous = Some(time);
        }

        let future = Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_hours(1);
        let none = env.logs(&id, LogOptions { since: Some(future), ..LogOptions::default() }).await;
        assert_eq!(none, "", "nothing was written after an hour from now");
        let past = previous.expect("stamped lines") - k8s_openapi::jiff::SignedDuration::from_hours(1);
        let since_past = env.logs(&id, LogOptions { since: Some(past), ..LogOptions::default() }).await;
        assert_eq!(since_past, all);
    })
    .await;
}

#[tokio::test]
async fn followed_logs_receive_new_lines() {
    with_docker("followed_logs_receive_new_lines", "a followed log stream", |env| async move {
        let (_pod, sandbox) = env.pod("follow").await;
        // The second line waits for a file that exec creates once the stream is open.
        let script = "echo first; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo second; sleep 600";
        let id = env.run(&sandbox, &env.config(&sandbox.pod, "app", &["sh", "-c", script])).await;
        let mut stream = env
            .runtime
            .logs(&id, &LogOptions { follow: true, ..LogOptions::default() })
            .await
            .expect("logs open");
        let mut seen = String::new();
        while !seen.contains("first\n") {
            let chunk = stream.next().await.expect("the stream stays open").expect("a chunk");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(!seen.contains("second"));
        let touched = env.runtime.exec(&id, &strings(&["touch", "/tmp/go"]), Duration::from_secs(10)).await;
        assert_eq!(touched.expect("exec runs").exit_code, 0);
        while !seen.contains("second\n") {
            let chunk = stream.next().await.expect("the stream stays open").expect("a chunk");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert_eq!(seen, "first\nsecond\n");
    })
    .await;
}

#[tokio::test]
async fn exec_reports_output_exit_code_and_timeout() {
    with_docker("exec_reports_output_exit_code_and_timeout", "docker exec", |env| async move {
        let (_pod, sandbox) = env.pod("exec").await;
        let id = env.run(&sandbox, &env.config(&sandbox.pod, "app", &["sleep", "600"])).await;
        env.wait_for(&id, "running", |s| matches!(s, ContainerState::Running { .. })).await;
        let limit = Duration::from_secs(10);

        let run = |command: &'static [&'static str]| {
            let env = env.clone();
            let id = id.clone();
            async move { env.runtime.exec(&id, &strings(command), limit).await }
        };
        let both = run(&["sh", "-c", "echo out; echo err >&2; exit 7"]).await.expect("exec runs");
        assert_eq!(both.exit_code, 7);
        let text = String::from_utf8_lossy(&both.output);
        assert!(text.contains("out\n") && text.contains("err\n"), "{text:?}");
        assert_eq!(run(&["true"]).await.expect("exec runs").exit_code, 0);
        let missing = run(&["no-such-command"]).await.expect("exec runs and fails inside");
        assert_ne!(missing.exit_code, 0);

        let started = tokio::time::Instant::now();
        let error = env.runtime.exec(&id, &strings(&["sleep", "30"]), Duration::from_millis(300)).await;
        let error = error.expect_err("the command outlives its timeout");
        assert_eq!(error.reason(), "ExecTimeout");
        assert!(started.elapsed() < Duration::from_secs(5), "the timeout bounds the call");

        env.runtime.stop_container(&id, Duration::ZERO).await.expect("stopped");
        let error = run(&["true"]).await.expect_err("the container is not running");
        assert_eq!(error.reason(), "ExecError", "{error:?}");
    })
    .await;
}
