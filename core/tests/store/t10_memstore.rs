//! The conformance suite against [`MemStore`], with a short progress-notification interval.

use std::time::Duration;

use flotilla_core::store::{KvEngine, MemStore, MvccState};

/// Well under the suite's bound of 500 ms.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

async fn new_store() -> MemStore {
    MemStore::with_engine(KvEngine::with_progress_interval(MvccState::new(), PROGRESS_INTERVAL))
}

async fn shutdown(store: MemStore) {
    store.shutdown().await;
}

flotilla_core::store_conformance_tests!(new_store, shutdown);
