//! Multi-member tests of the raft store on loopback: failover, catch-up from log and from
//! snapshot, partitions, membership changes, durability and refusal of bad data.

mod harness;
mod t10_conformance;
mod t20_failover;
mod t30_snapshot;
mod t40_partition;
mod t45_outcomes;
mod t50_membership;
mod t60_durability;
mod t70_model;
mod t80_registry;
