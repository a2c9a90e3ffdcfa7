//! Flotilla's node agent and service proxy (to come): registration, heartbeats, pod workers,
//! probes, volumes and logs over a `ContainerRuntime` trait (Docker and plain processes), and
//! a round-robin TCP/UDP proxy. It reaches the cluster only through the API client.
