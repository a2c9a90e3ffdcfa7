//! Flotilla's API server: the Kubernetes REST dialect over HTTP(S), so that an unmodified
//! `kubectl` drives a Flotilla cluster.
//!
//! Start with [`server::ApiServer`]: it serves a core [`Registry`](flotilla_core::registry::Registry)
//! (any store) with discovery ([`discovery`]), OpenAPI documents ([`openapi`]), the resource
//! verbs, subresources and server-side Table output ([`server`]). [`pki`] creates and keeps
//! the cluster's certificate authority, serving certificate and admin credential;
//! [`tls`] serves a router over rustls; [`kubeconfig`] writes the file kubectl reads;
//! [`auth`] authenticates requests (tokens, client certificates) and authorizes them (RBAC);
//! [`secure::SecureApi`] assembles all of it into a running HTTPS server with the bootstrap
//! namespaces and RBAC policy; [`certificates`] approves and signs node certificate requests
//! and is how a node joins with a bootstrap token. [`client`] is the other side: core's `Client` over HTTP(S)
//! ([`client::RemoteClient`]), so components run unchanged against a remote server.
//!
//! The crate sees storage only through core's `Store` trait; the binaries choose the store.

pub mod auth;
pub mod certificates;
pub mod client;
pub mod discovery;
pub mod kubeconfig;
pub mod openapi;
pub mod pki;
pub mod secure;
pub mod server;
pub mod tls;
