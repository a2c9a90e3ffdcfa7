//! Object semantics over the in-memory store: the registry conformance suite, and the typed
//! client on top of it.

mod t10_registry;
mod t12_priority;
mod t13_quota;
mod t20_client;
mod t30_roundtrip;
mod t40_model;
mod t50_watcher;
mod t60_scheduler;
mod t61_scheduler_extensions;
mod t70_controller;
mod t75_services;
mod t80_replicaset;
mod t85_manager;
mod t86_deployment;
mod t90_nodelifecycle;
mod t91_podgc;
mod t92_volume;
mod t93_volume_binding;
