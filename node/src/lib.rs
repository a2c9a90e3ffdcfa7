//! Flotilla's node agent and service proxy: registration, heartbeats, pod workers, probes,
//! volumes and logs over a [`runtime::ContainerRuntime`] (Docker and plain processes), and
//! a round-robin TCP/UDP proxy. It reaches the cluster only through the API client.
//!
//! Start with [`runtime`]: the contract between the agent and what runs containers.

pub mod agent;
pub mod probe;
pub mod runtime;
pub mod server;
pub mod testing;
pub mod volume;
