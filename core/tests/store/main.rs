//! Integration tests of the store: the conformance suite against [`MemStore`], and a model
//! test of the MVCC state machine.
//!
//! Needs the `test-util` feature: `cargo test -p flotilla-core --all-features --test store`.
//!
//! [`MemStore`]: flotilla_core::store::MemStore

mod t10_memstore;
mod t90_model;
