//! The API server's security plumbing end to end: the cluster PKI on disk, TLS serving with
//! client certificates over HTTP/1.1 and HTTP/2, graceful shutdown, kubeconfig files, and the
//! real kubectl accepting all of it.

mod support;
mod t10_pki;
mod t20_serve;
mod t30_shutdown;
mod t40_kubeconfig;
mod t50_kubectl;
