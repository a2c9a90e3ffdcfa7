//! The registry conformance suite over [`MemStore`], with a short progress-notification
//! interval (the watch cache's bookmarks follow it).

use std::time::Duration;

use flotilla_core::store::{KvEngine, MemStore, MvccState};

async fn new_store() -> MemStore {
    MemStore::with_engine(KvEngine::with_progress_interval(MvccState::new(), Duration::from_millis(100)))
}

async fn shutdown(store: MemStore) {
    store.shutdown().await;
}

flotilla_core::registry_conformance_tests!(new_store, shutdown);
