//! The API server over HTTP: verbs, subresources, watches, errors, and the real kubectl.

mod agents;
mod harness;
mod t10_crud;
mod t20_subresources;
mod t30_watch;
mod t40_errors;
mod t50_kubectl;
mod t60_security;
mod t65_renewal;
mod t70_kube_rs;
mod t80_logs;
mod t82_node_proxy;
mod t85_kubectl_logs;
mod t90_kubectl_protobuf;
mod t95_kubectl_quota;
mod t97_kubectl_token;
