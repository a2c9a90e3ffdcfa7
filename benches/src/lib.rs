//! Flotilla's benchmarks (to come): criterion benches of the state machine and a cluster
//! harness comparing the raft store with etcd side by side.
