//! Flotilla's core: the storage contract, the object model and the typed object API.
//!
//! Start with [`store`]: the [`Store`] trait (a revisioned key-value store with
//! etcd's semantics), its in-memory implementation [`MemStore`], and the
//! conformance suite every implementation runs (feature `test-util`).
//!
//! The object model: [`object`] (kinds, the `Resource` and `Kind` traits, `DynamicObject`,
//! table columns), [`quantity`] (resource quantities), [`validation`] (field paths and
//! Kubernetes' name rules), [`selector`] (label and field selectors), [`patch`] (JSON, merge
//! and strategic merge patches) and [`apply`] (server-side apply's field sets and managed
//! fields).
//!
//! The object API: [`registry`] gives objects Kubernetes' semantics over any store (with a
//! watch cache), and [`client`] is the interface components use (`Api<K>`, a watcher, a
//! reflector cache). [`scheduler`] holds kube-scheduler's framework as pure decisions and,
//! in [`scheduler::runtime`], the queue, cache and binding loop that drive it; [`controllers`]
//! holds the controllers. See `docs/architecture.md`, `docs/objects.md` and
//! `docs/scheduler.md` in the repository.

pub mod apply;
pub mod client;
pub mod controller;
pub mod controllers;
pub mod durable_fs;
pub mod object;
pub mod patch;
pub mod quantity;
pub mod quota;
pub mod registry;
pub mod scheduler;
pub mod selector;
pub mod store;
pub mod validation;

pub use store::{MemStore, Store};
