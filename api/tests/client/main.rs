//! The remote client against a real API server over HTTPS (and plain HTTP): every `Client`
//! call through the typed `Api`, errors compared with the in-process client's, watches and
//! core's watcher and reflector, warnings, retries and the transport.
//!
//! Core's registry conformance suite cannot run here: its cases take a `Registry` (the
//! concrete type), not a `Client`. The error tests below compare remote and local results
//! for the same operations instead.

mod harness;
mod t10_crud;
mod t20_errors;
mod t30_watch;
mod t40_transport;
mod t45_failover;
