//! The built-in controllers, each a pure decision function (objects in, writes out) plus a
//! [`Reconciler`](crate::controller::Reconciler) that reads informer caches and performs the
//! writes: [`replicaset`], [`deployment`], [`endpoints`] (Endpoints and EndpointSlices),
//! [`gc`] (garbage collector), [`namespace`] (namespace lifecycle), [`nodelifecycle`]
//! (unreachable nodes and taint-based eviction), [`podgc`] (pod garbage collection),
//! [`resourcequota`] (quota usage recounts) and [`volume`] (the PersistentVolume binder and local-path provisioner). [`manager`] runs
//! them all; [`util`] holds facts about objects they share.

pub mod deployment;
pub mod endpoints;
pub mod gc;
pub mod manager;
pub mod namespace;
pub mod nodelifecycle;
pub mod podgc;
pub mod replicaset;
pub mod resourcequota;
pub mod util;
pub mod volume;
