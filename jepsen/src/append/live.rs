//! A live test of the append workload against one real `flotilla server` (skipped, with the
//! reason printed, when `FLOTILLA_BIN` does not name a binary): four clients for about five
//! seconds, then the checker on the recorded history.

use std::time::Duration;

use anyhow::Context as _;
use tokio::time::Instant;

use super::{AppendRecorder, AppendSpec, MicroOp, Outcome, check, run};
use crate::testing::{LoopbackServer, flotilla_bin};

/// How long the clients run.
const WORKLOAD: Duration = Duration::from_secs(5);

#[tokio::test]
async fn the_workload_against_a_real_server_is_valid() -> anyhow::Result<()> {
    let Some(bin) = flotilla_bin() else { return Ok(()) };
    let dir = tempfile::tempdir()?;
    let server = LoopbackServer::start(&bin, dir.path()).await?;

    let endpoints = vec![server.etcd.clone()];
    let spec = AppendSpec { clients: 4, ..AppendSpec::new("live/append", 1) };
    let recorder = AppendRecorder::new();
    let stats = tokio::time::timeout(
        WORKLOAD + Duration::from_secs(30),
        run(&endpoints, &spec, &recorder, Instant::now() + WORKLOAD),
    )
    .await
    .context("the clients did not stop: a request hung past its timeout?")??;
    let history = recorder.history();
    let verdict = check(&history);
    eprintln!("{stats:?}\n{}", verdict.summary());
    assert!(verdict.valid, "{:#?}", verdict.anomalies);
    assert_eq!(stats.invoked as usize, history.txns.len());
    let ok = || history.txns.iter().filter(|t| t.outcome == Outcome::Ok);
    let appended = ok().flat_map(|t| &t.ops).any(|op| matches!(op, MicroOp::Append { .. }));
    let read_some = ok()
        .flat_map(|t| &t.ops)
        .any(|op| matches!(op, MicroOp::Read { value: Some(v), .. } if !v.is_empty()));
    assert!(appended && read_some, "{stats:?}: no committed append or no non-empty read");
    assert!(verdict.counts.edges.ww > 0 && verdict.counts.edges.wr > 0, "{:?}", verdict.counts);
    server.stop().await
}
