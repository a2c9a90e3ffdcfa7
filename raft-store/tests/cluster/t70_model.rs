//! A model test of the RocksDB-backed member: random sequences of puts, deletes, txns,
//! compactions, lease operations and restarts, applied to a one-member raft store and to the
//! in-memory store (itself checked against a plain `BTreeMap` model in core's `t90_model`).
//!
//! After every step the two answers must be equal; at the end (and after each restart) reads
//! at every revision, and watches replayed from random revisions, must match as well. The
//! raft store is stopped and reopened from disk at `Restart` steps, so what this checks is
//! that nothing the store acknowledged is lost or changed by persistence and recovery.
//!
//! `PROPTEST_CASES` sets the number of cases (default 12, which CI runs).

use std::time::Duration;

use flotilla_core::store::{
    Compare, CompareOp, DeleteRangeRequest, KeyRange, KvEngine, MemStore, MvccState, PutRequest,
    RangeRequest, RequestOp, Revision, Store, TxnRequest, WatchRequest,
};
use proptest::prelude::*;

use crate::harness::{Cluster, within};

const KEYS: [&str; 5] = ["a", "a/1", "a/2", "b", "c"];
/// Lease 3 is never granted, so puts naming it fail the same way on both stores.
const LEASES: [i64; 3] = [1, 2, 3];

#[derive(Clone, Debug)]
enum Step {
    Put {
        key: usize,
        value: u8,
        lease: Option<usize>,
        prev_kv: bool,
    },
    Delete {
        range: KeyRange,
        prev_kv: bool,
    },
    /// Compare a key's version with `version`; put on success, delete on failure.
    Txn {
        key: usize,
        version: i64,
        put: usize,
        delete: usize,
    },
    /// Compact at `fraction`/8 of the current revision (≥ 8/8 asks for a future one).
    Compact {
        fraction: i64,
    },
    Grant {
        lease: usize,
    },
    Revoke {
        lease: usize,
    },
    TimeToLive {
        lease: usize,
    },
    Restart,
}

fn key_range() -> impl Strategy<Value = KeyRange> {
    prop_oneof![
        (0..KEYS.len()).prop_map(|k| KeyRange::key(KEYS[k])),
        Just(KeyRange::prefix("a")),
        Just(KeyRange::prefix("")),
        Just(KeyRange::range("a/1", "b")),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..KEYS.len(), any::<u8>(), proptest::option::of(0..LEASES.len()), any::<bool>())
            .prop_map(|(key, value, lease, prev_kv)| Step::Put { key, value, lease, prev_kv }),
        2 => (key_range(), any::<bool>()).prop_map(|(range, prev_kv)| Step::Delete { range, prev_kv }),
        2 => (0..KEYS.len(), 0i64..3, 0..KEYS.len(), 0..KEYS.len())
            .prop_map(|(key, version, put, delete)| Step::Txn { key, version, put, delete }),
        1 => (0i64..10).prop_map(|fraction| Step::Compact { fraction }),
        1 => (0..2usize).prop_map(|lease| Step::Grant { lease }),
        1 => (0..LEASES.len()).prop_map(|lease| Step::Revoke { lease }),
        1 => (0..LEASES.len()).prop_map(|lease| Step::TimeToLive { lease }),
        1 => Just(Step::Restart),
    ]
}

/// Applies one step to `store`, returning its answer in a comparable form.
async fn apply(store: &dyn Store, step: &Step) -> String {
    match step {
        Step::Put { key, value, lease, prev_kv } => {
            let mut req = PutRequest::new(KEYS[*key], vec![*value]);
            req.lease = lease.map_or(0, |l| LEASES[l]);
            req.prev_kv = *prev_kv;
            format!("{:?}", store.put(req).await)
        }
        Step::Delete { range, prev_kv } => {
            let req = DeleteRangeRequest { range: range.clone(), prev_kv: *prev_kv };
            format!("{:?}", store.delete_range(req).await)
        }
        Step::Txn { key, version, put, delete } => {
            let req = TxnRequest {
                compare: vec![Compare::version(KEYS[*key], CompareOp::Equal, *version)],
                success: vec![
                    RequestOp::Put(PutRequest::new(KEYS[*put], b"txn".to_vec())),
                    RequestOp::Range(RangeRequest::new(KeyRange::prefix(""))),
                ],
                failure: vec![RequestOp::DeleteRange(DeleteRangeRequest {
                    range: KeyRange::key(KEYS[*delete]),
                    prev_kv: true,
                })],
            };
            format!("{:?}", store.txn(req).await)
        }
        Step::Compact { fraction } => {
            let rev = current_revision(store).await;
            format!("{:?}", store.compact(rev * fraction / 8).await)
        }
        Step::Grant { lease } => format!("{:?}", store.lease_grant(LEASES[*lease], 600).await),
        Step::Revoke { lease } => format!("{:?}", store.lease_revoke(LEASES[*lease]).await),
        Step::TimeToLive { lease } => {
            // The remaining TTL depends on the clock; the granted TTL and the keys must match.
            format!(
                "{:?}",
                store.lease_time_to_live(LEASES[*lease], true).await.map(|t| (t.granted_ttl, t.keys))
            )
        }
        Step::Restart => String::new(),
    }
}

async fn current_revision(store: &dyn Store) -> Revision {
    store.range(RangeRequest::new(KeyRange::key("a")).limit(1)).await.map_or(0, |r| r.header.revision)
}

/// Reads at every revision from 1 to the current one, as comparable text.
async fn history(store: &dyn Store) -> Vec<String> {
    let rev = current_revision(store).await;
    let mut out = Vec::new();
    for r in 1..=rev + 1 {
        out.push(format!("{r}: {:?}", store.range(RangeRequest::new(KeyRange::prefix("")).at(r)).await));
    }
    out.push(format!("leases: {:?}", store.lease_leases().await));
    out
}

/// Every event a watch of `range` from `start` delivers up to the current revision.
/// The model's progress-notification interval, as the cluster harness configures members.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// How long a replay waits for an event or a progress notification before it fails.
const REPLAY_PATIENCE: Duration = Duration::from_secs(5);

async fn replay(store: &dyn Store, range: KeyRange, start: Revision) -> String {
    let end = current_revision(store).await;
    let req = WatchRequest { range, start_revision: start, prev_kv: true, progress_notify: true };
    let mut stream = match store.watch(req).await {
        Ok(s) => s,
        Err(e) => return format!("{e:?}"),
    };
    let mut events = Vec::new();
    while events.last().is_none_or(|(rev, _)| *rev < end) {
        match tokio::time::timeout(REPLAY_PATIENCE, stream.next_response()).await {
            Err(_) => {
                events.push((end, format!("no event or progress notification within {REPLAY_PATIENCE:?}")));
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                events.push((end, format!("{e:?}")));
                break;
            }
            // Caught up: nothing later matches the range up to `end`.
            Ok(Some(Ok(resp))) if resp.is_progress_notify() && resp.header.revision >= end => break,
            Ok(Some(Ok(resp))) => {
                events.extend(resp.events.iter().map(|e| (e.kv.mod_revision, format!("{e:?}"))))
            }
        }
    }
    format!("{events:?}")
}

async fn run_case(steps: Vec<Step>, replays: Vec<(usize, u8)>) -> anyhow::Result<()> {
    let mut cluster = Cluster::start(1).await?;
    // Progress notifications as often as the raft members send them (the harness's 100 ms).
    let model = MemStore::with_engine(KvEngine::with_progress_interval(MvccState::new(), PROGRESS_INTERVAL));
    for (i, step) in steps.iter().enumerate() {
        if let Step::Restart = step {
            cluster.stop(1).await;
            cluster.restart(1).await?;
            cluster.wait_leader(Duration::from_secs(10)).await?;
            anyhow::ensure!(
                history(cluster.member(1)).await == history(&model).await,
                "history differs after restart at step {i}"
            );
            continue;
        }
        let got = apply(cluster.member(1), step).await;
        let want = apply(&model, step).await;
        anyhow::ensure!(got == want, "step {i} {step:?}:\nraft store: {got}\nmodel:      {want}");
    }
    let (got, want) = (history(cluster.member(1)).await, history(&model).await);
    for (g, w) in got.iter().zip(&want) {
        anyhow::ensure!(g == w, "final history differs:\nraft store: {g}\nmodel:      {w}");
    }
    let rev = current_revision(&model).await;
    let ranges = [KeyRange::prefix(""), KeyRange::prefix("a"), KeyRange::key("b")];
    for (range, at) in replays {
        let start = 1 + i64::from(at) % rev.max(1);
        let range = ranges[range % ranges.len()].clone();
        let got = replay(cluster.member(1), range.clone(), start).await;
        let want = replay(&model, range.clone(), start).await;
        anyhow::ensure!(got == want, "watch {range:?} from {start}:\nraft store: {got}\nmodel:      {want}");
    }
    model.shutdown().await;
    cluster.shutdown().await;
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(12)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn raft_store_matches_model(
        steps in proptest::collection::vec(step(), 1..40),
        replays in proptest::collection::vec((0..3usize, any::<u8>()), 3),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let res = rt.block_on(within("model case", 120, run_case(steps, replays)));
        prop_assert!(res.is_ok(), "{:?}", res.err());
    }
}
