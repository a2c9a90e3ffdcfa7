//! The store conformance suite: etcd's semantics, checked against any
//! [`Store`](crate::store::Store).
//!
//! Each case is a public async function taking a fresh store, grouped by area: [`kv`]
//! (revisions, ranges, puts, deletes), [`txn`], [`watch`] (what a watch delivers),
//! [`delivery`] (watches under load, progress notifications), [`lease`], [`compact`] and
//! [`errors`] (request validation). Expectations are exact: whole responses, events and
//! errors are compared, with revisions taken relative to the store's revision when the case
//! starts.
//!
//! [`store_conformance_tests!`](crate::store_conformance_tests) expands to one `#[test]` per
//! case, in one module per area (`kv::put_returns_prev_kv_when_asked`, ...), so a failure
//! names its case:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use flotilla_core::store::{KvEngine, MemStore, MvccState};
//!
//! async fn new_store() -> MemStore {
//!     let engine = KvEngine::with_progress_interval(MvccState::new(), Duration::from_millis(100));
//!     MemStore::with_engine(engine)
//! }
//!
//! async fn shutdown(store: MemStore) {
//!     store.shutdown().await;
//! }
//!
//! flotilla_core::store_conformance_tests!(new_store, shutdown);
//! # fn main() {}
//! ```
//!
//! # What the factory must provide
//!
//! - A store with no keys and no leases that was never compacted. Its revision may be above 0.
//! - Watch progress notifications at least every [`PROGRESS_INTERVAL_BOUND`] (500 ms): the
//!   progress case waits a few such intervals for one. Production intervals are much longer
//!   (see [`DEFAULT_PROGRESS_INTERVAL`](crate::store::DEFAULT_PROGRESS_INTERVAL)), so build the
//!   store with a short one.
//! - Leases with the TTL asked for (no minimum above 1 s), never expired before their
//!   deadline and expired soon after it: the lease cases use real 1–2 s TTLs, and check
//!   time-to-live, which reports the remaining time rounded up to whole seconds.
//!
//! # How a case runs
//!
//! Each generated test builds a multi-thread tokio runtime with two workers (the runtime
//! `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` builds; built by this crate
//! so the calling crate needs no tokio macros) with the real clock (never paused: real stores
//! use real timers). It awaits the factory, runs the case under [`CASE_TIMEOUT`], then awaits
//! the shutdown function. Every store call and watch response inside a case has its own
//! 10 s timeout naming the call, so a deadlock is reported at the call that hung. The
//! slowest cases (lease expiry) take about 3 s; the test harness runs cases in parallel.

pub mod compact;
pub mod delivery;
pub mod errors;
pub mod kv;
pub mod lease;
mod support;
pub mod txn;
pub mod watch;

use std::future::Future;
use std::time::Duration;

/// The longest interval between watch progress notifications the suite accepts from the
/// store under test.
pub const PROGRESS_INTERVAL_BOUND: Duration = Duration::from_millis(500);

/// How long one case may run before it is reported as deadlocked.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the factory and the shutdown function may take.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Expands to one `#[test]` per conformance case, run against stores from a factory.
///
/// `store_conformance_tests!(new_store, shutdown)`: `new_store` is called with no argument
/// and returns a future of a fresh store (any [`Store`](crate::store::Store)); `shutdown`,
/// optional, is called with the store after a case passed and returns a future (without it,
/// the store is dropped). Both are expressions, typically paths of async functions. The tests
/// land in modules named after the suite's areas (`kv`, `txn`, `watch`, ...), created where
/// the macro is invoked, which see the invoking module's items; to run the suite against
/// several kinds of store in one test binary, invoke it once inside a module per kind.
///
/// See [`conformance`](crate::store::conformance) for what the stores must provide.
#[macro_export]
macro_rules! store_conformance_tests {
    ($new_store:expr $(,)?) => {
        $crate::store_conformance_tests!($new_store, $crate::store::conformance::drop_store);
    };
    ($new_store:expr, $shutdown:expr $(,)?) => {
        $crate::__store_conformance_area!(
            kv,
            $new_store,
            $shutdown,
            [
                revisions_bump_once_per_write,
                key_fields_follow_history,
                range_selects_keys_prefixes_and_intervals,
                range_limit_count_and_projections,
                reads_at_past_revisions,
                future_revision_reads_fail,
                put_returns_prev_kv_when_asked,
                put_ignore_value_keeps_value,
                delete_single_and_ranges,
            ]
        );
        $crate::__store_conformance_area!(
            txn,
            $new_store,
            $shutdown,
            [
                txn_compares_every_target_and_op,
                txn_success_and_failure_branches,
                txn_reads_see_earlier_writes,
                failed_txn_changes_nothing,
                txn_compare_over_ranges,
            ]
        );
        $crate::__store_conformance_area!(
            watch,
            $new_store,
            $shutdown,
            [
                watch_from_now_sees_later_changes,
                watch_filters_by_key_prefix_and_interval,
                watch_replays_history_from_past_revision,
                watch_from_future_revision_waits_for_it,
                many_watchers_see_consistent_streams,
            ]
        );
        $crate::__store_conformance_area!(
            delivery,
            $new_store,
            $shutdown,
            [
                watch_interleaved_with_writes_has_no_gap_or_duplicate,
                slow_watcher_receives_everything_in_order,
                compaction_overtaking_a_slow_watcher_ends_it,
                progress_notifications_carry_the_current_revision,
                requested_progress_follows_replayed_history,
                dropping_watch_streams_is_harmless,
            ]
        );
        $crate::__store_conformance_area!(
            lease,
            $new_store,
            $shutdown,
            [
                lease_grant_with_chosen_and_generated_ids,
                lease_time_to_live_reports_ttl_and_keys,
                lease_revoke_deletes_its_keys_at_one_revision,
                put_with_unknown_lease_fails,
                keys_move_between_leases,
                put_ignore_lease_keeps_lease,
                lease_expiry_deletes_keys,
                lease_keep_alive_postpones_expiry,
            ]
        );
        $crate::__store_conformance_area!(
            compact,
            $new_store,
            $shutdown,
            [
                compaction_discards_history_below_it,
                compaction_refuses_stale_and_future_points,
                watch_from_compaction_point_replays_it,
            ]
        );
        $crate::__store_conformance_area!(
            errors,
            $new_store,
            $shutdown,
            [
                empty_keys_are_refused,
                value_size_limit_is_exact,
                key_size_limit_is_exact,
                txn_op_limit_is_exact,
                duplicate_keys_in_a_branch_are_refused,
                malformed_requests_are_refused,
            ]
        );
    };
}

/// One module of tests for one area of the suite; used by
/// [`store_conformance_tests!`](crate::store_conformance_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_area {
    ($area:ident, $new_store:expr, $shutdown:expr, [$($case:ident),+ $(,)?]) => {
        mod $area {
            #[allow(unused_imports)]
            use super::*;

            $(
                #[test]
                fn $case() {
                    $crate::store::conformance::block_on(async {
                        let name = concat!(stringify!($area), "::", stringify!($case));
                        let store = $crate::store::conformance::setup(name, "creating the store", ($new_store)()).await;
                        $crate::store::conformance::run_case(name, $crate::store::conformance::$area::$case(&store)).await;
                        $crate::store::conformance::setup(name, "shutting the store down", ($shutdown)(store)).await;
                    });
                }
            )+
        }
    };
}

/// The default shutdown of [`store_conformance_tests!`](crate::store_conformance_tests):
/// drops the store.
pub async fn drop_store<S>(store: S) {
    drop(store);
}

/// Runs a case's future on a fresh multi-thread runtime with two workers and the real clock.
#[doc(hidden)]
pub fn block_on(case: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for a conformance case can be built")
        .block_on(case);
}

/// Awaits the factory or the shutdown function under [`SETUP_TIMEOUT`].
#[doc(hidden)]
pub async fn setup<T>(case: &str, doing: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(SETUP_TIMEOUT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("conformance case {case}: {doing} took longer than {SETUP_TIMEOUT:?}"),
    }
}

/// Awaits a case under [`CASE_TIMEOUT`].
#[doc(hidden)]
pub async fn run_case(case: &str, fut: impl Future<Output = ()>) {
    if tokio::time::timeout(CASE_TIMEOUT, fut).await.is_err() {
        panic!(
            "conformance case {case} did not finish within {CASE_TIMEOUT:?}: a store call or watch stream \
             it awaited never answered, so the store or its watch delivery probably deadlocked"
        );
    }
}
