//! The built-in controllers, each a pure decision function (objects in, writes out) plus a
//! [`Reconciler`](crate::controller::Reconciler) that reads informer caches and performs the
//! writes: [`replicaset`], [`endpoints`] (Endpoints and EndpointSlices) and [`namespace`]
//! (namespace lifecycle). [`manager`] runs them together; [`util`] holds facts about objects
//! they share.

pub mod endpoints;
pub mod manager;
pub mod namespace;
pub mod replicaset;
pub mod util;
