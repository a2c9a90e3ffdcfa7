//! CertificateSigningRequests, both sides of kubelet-style TLS bootstrapping.
//!
//! In the control plane (the process holding the CA key), [`CsrController`] runs the
//! [`approver`] (kube-controller-manager's `csrapproving`: node client certificates asked
//! for with a bootstrap token, renewals by the node itself, and a node's own serving
//! certificate) and the [`signer`] (`csrsigning`: approved requests for
//! `kubernetes.io/kube-apiserver-client-kubelet`, `kubernetes.io/kubelet-serving` and
//! `kubernetes.io/kube-apiserver-client` get a certificate from the cluster CA), and
//! deletes the requests the [`cleaner`] says are done with (`csrcleaner`).
//! [`SecureApi`](crate::secure::SecureApi) starts it.
//!
//! On a joining node, [`join::join`] pins the CA, trades a bootstrap token for a node client
//! certificate, asks for a serving certificate with it, and keeps both;
//! [`rotate::rotate_certificates`] renews them while the node runs, and the node's clients
//! and servers present the current ones through [`identity::LiveIdentity`].

pub mod approver;
pub mod cleaner;
mod controller;
mod files;
pub mod identity;
pub mod join;
mod pin;
pub mod rotate;
pub mod signer;

pub use controller::CsrController;
pub use identity::{LiveIdentity, TlsIdentity};
pub use rotate::rotate_certificates;

#[cfg(test)]
mod rotate_tests;
#[cfg(test)]
mod tests;
