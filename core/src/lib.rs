//! Flotilla's core: the storage contract every other layer rests on.
//!
//! Start with [`store`]: the [`Store`](store::Store) trait (a revisioned key-value store with
//! etcd's semantics), its in-memory implementation [`MemStore`](store::MemStore), and the
//! conformance suite every implementation runs (feature `test-util`).
//!
//! The object model, registry, watch cache, client interface, scheduler and controllers will
//! live here too, as further modules; see `docs/architecture.md` in the repository.

pub mod store;

pub use store::{MemStore, Store};
