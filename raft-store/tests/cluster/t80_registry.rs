//! The registry conformance suite (Kubernetes object semantics) on a three-member cluster,
//! served through a follower so every write and linearizable read is forwarded.

use crate::t10_conformance::{Via, shutdown};

async fn new_store() -> Via {
    Via::start(3).await
}

flotilla_core::registry_conformance_tests!(new_store, shutdown);
