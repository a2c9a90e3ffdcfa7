//! Flotilla's core: the storage contract, the object model and the typed object API.
//!
//! Start with [`store`]: the [`Store`](store::Store) trait (a revisioned key-value store with
//! etcd's semantics), its in-memory implementation [`MemStore`](store::MemStore), and the
//! conformance suite every implementation runs (feature `test-util`).
//!
//! The object model: [`quantity`] (resource quantities), [`validation`] (field paths and
//! Kubernetes' name rules), [`selector`] (label and field selectors) and [`patch`] (JSON,
//! merge and strategic merge patches). The registry, watch cache, client interface,
//! scheduler and controllers will live here too; see `docs/architecture.md` in the repository.

pub mod client;
pub mod object;
pub mod patch;
pub mod quantity;
pub mod registry;
pub mod selector;
pub mod store;
pub mod validation;

pub use store::{MemStore, Store};
