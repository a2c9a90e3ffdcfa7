//! Flotilla's node agent and service proxy: registration, heartbeats, pod workers, probes,
//! volumes and logs over a [`runtime::ContainerRuntime`] (Docker and plain processes), and
//! a round-robin TCP/UDP proxy. It reaches the cluster only through the API client.
//!
//! Start with [`agent::NodeAgent`] (what a node runs) and [`runtime`] (the contract between
//! the agent and what runs containers, with the Docker, process and hollow runtimes).
//! [`probe`] and [`volume`] are the agent's probers and volume manager, [`server`] its log
//! endpoint, [`metrics`] its Prometheus metrics, [`proxy`] the service proxy and [`testing`] helpers for tests that need
//! Docker. Design notes: `docs/node.md`.

pub mod agent;
pub mod metrics;
pub mod probe;
pub mod proxy;
pub mod runtime;
pub mod server;
pub mod testing;
pub mod volume;
