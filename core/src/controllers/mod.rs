//! The built-in controllers, each a pure decision function (objects in, writes out) plus a
//! [`Reconciler`](crate::controller::Reconciler) that reads informer caches and performs the
//! writes: [`replicaset`], [`deployment`], [`endpoints`], [`gc`] (garbage collector) and
//! [`namespace`] (namespace lifecycle). [`util`] holds facts about objects they share.

pub mod deployment;
pub mod endpoints;
pub mod gc;
pub mod namespace;
pub mod replicaset;
pub mod util;
