//! The approver: which CertificateSigningRequests are approved without a human, as
//! kube-controller-manager's `csrapproving` controller decides for kubelets, plus Flotilla's
//! approval of a node's own serving certificate. Pure: the caller supplies the
//! authorization check and writes the condition.
//!
//! - `kubernetes.io/kube-apiserver-client-kubelet`: a node client certificate (subject
//!   `system:node:<name>`, organization exactly `system:nodes`, no alternative names, usages
//!   within `digital signature`, `key encipherment`, `client auth`). Approved when the
//!   requestor may `create` `certificatesigningrequests/nodeclient` (a bootstrap token asking
//!   for a new node) or, when the requestor is that node already, `.../selfnodeclient`
//!   (renewal).
//! - `kubernetes.io/kubelet-serving`: a node's serving certificate (same subject, DNS or IP
//!   names, usages within `digital signature`, `key encipherment`, `server auth`), approved
//!   when the requestor is that very node. (kube-controller-manager leaves these to an
//!   administrator; Flotilla approves them so `kubectl logs` works on joined nodes. The
//!   addresses are not checked against the Node's.)
//!
//! Nothing is ever denied here: a request the approver does not recognise waits for a human.

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

use crate::auth::authn::{NODE_USER_PREFIX, NODES_GROUP, UserInfo};
use crate::pki::CertificateRequest;

/// Signer of kubelet client certificates.
pub const SIGNER_KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Signer of kubelet serving certificates.
pub const SIGNER_KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
/// Signer of any client certificate the API server accepts (approved by humans only).
pub const SIGNER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";

const CLIENT_USAGES: [&str; 3] = ["digital signature", "key encipherment", "client auth"];
const SERVING_USAGES: [&str; 3] = ["digital signature", "key encipherment", "server auth"];

/// What the approver says about one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Approval {
    /// Add condition Approved with this reason and message.
    Approve {
        /// The condition's reason.
        reason: &'static str,
        /// The condition's message.
        message: String,
    },
    /// Leave the request alone, for this reason (logged, not written).
    Skip(String),
}

/// Whether `csr` has a True condition of `type_`.
pub fn has_condition(csr: &CertificateSigningRequest, type_: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && (c.status == "True" || c.status.is_empty())))
}

/// The user who created `csr`, as the API server recorded it.
pub fn requestor(csr: &CertificateSigningRequest) -> UserInfo {
    UserInfo {
        name: csr.spec.username.clone().unwrap_or_default(),
        uid: csr.spec.uid.clone().unwrap_or_default(),
        groups: csr.spec.groups.clone().unwrap_or_default(),
        extra: csr.spec.extra.clone().unwrap_or_default().into_iter().collect(),
    }
}

fn usages(csr: &CertificateSigningRequest) -> &[String] {
    csr.spec.usages.as_deref().unwrap_or(&[])
}

/// Checks the subject every node certificate has: `system:node:<name>` in exactly `system:nodes`.
fn node_subject(request: &CertificateRequest) -> Result<(), String> {
    if request.organizations != [NODES_GROUP] {
        return Err(format!("organization must be exactly [{NODES_GROUP}], not {:?}", request.organizations));
    }
    match request.common_name.strip_prefix(NODE_USER_PREFIX) {
        Some(name) if !name.is_empty() => Ok(()),
        _ => Err(format!("common name {:?} does not start with {NODE_USER_PREFIX}", request.common_name)),
    }
}

fn usages_within(usages: &[String], allowed: &[&str], required: &str) -> Result<(), String> {
    if let Some(u) = usages.iter().find(|u| !allowed.contains(&u.as_str())) {
        return Err(format!("usage {u:?} is not allowed (only {allowed:?})"));
    }
    if !usages.iter().any(|u| u == required) {
        return Err(format!("usages must include {required:?}"));
    }
    Ok(())
}

/// Whether `request` (with `csr`'s usages) is a valid kubelet client certificate request.
pub fn check_kubelet_client(
    csr: &CertificateSigningRequest,
    request: &CertificateRequest,
) -> Result<(), String> {
    node_subject(request)?;
    if !request.dns_names.is_empty() || !request.ip_addresses.is_empty() || !request.other_names.is_empty() {
        return Err("a kubelet client certificate has no subject alternative names".into());
    }
    usages_within(usages(csr), &CLIENT_USAGES, "client auth")
}

/// Whether `request` (with `csr`'s usages) is a valid kubelet serving certificate request.
pub fn check_kubelet_serving(
    csr: &CertificateSigningRequest,
    request: &CertificateRequest,
) -> Result<(), String> {
    node_subject(request)?;
    if request.dns_names.is_empty() && request.ip_addresses.is_empty() {
        return Err("a kubelet serving certificate needs at least one DNS name or IP address".into());
    }
    if !request.other_names.is_empty() {
        return Err("a kubelet serving certificate may not have email or URI names".into());
    }
    usages_within(usages(csr), &SERVING_USAGES, "server auth")
}

/// The approver's decision on `csr`, whose request parsed as `request`. `may_create(sub)` says
/// whether the requestor may `create` `certificatesigningrequests/<sub>` in
/// `certificates.k8s.io` (a SubjectAccessReview).
pub fn decide(
    csr: &CertificateSigningRequest,
    request: &CertificateRequest,
    may_create: impl Fn(&UserInfo, &str) -> bool,
) -> Approval {
    if has_condition(csr, "Approved") || has_condition(csr, "Denied") {
        return Approval::Skip("already approved or denied".into());
    }
    let user = requestor(csr);
    match csr.spec.signer_name.as_str() {
        SIGNER_KUBELET_CLIENT => {
            if let Err(why) = check_kubelet_client(csr, request) {
                return Approval::Skip(format!("not a kubelet client certificate request: {why}"));
            }
            let (sub, message) = if user.name == request.common_name {
                (
                    "selfnodeclient",
                    "Auto approving self kubelet client certificate after SubjectAccessReview.",
                )
            } else {
                ("nodeclient", "Auto approving kubelet client certificate after SubjectAccessReview.")
            };
            if may_create(&user, sub) {
                Approval::Approve { reason: "AutoApproved", message: message.into() }
            } else {
                Approval::Skip(format!(
                    "user {:?} may not create certificatesigningrequests/{sub}",
                    user.name
                ))
            }
        }
        SIGNER_KUBELET_SERVING => {
            if let Err(why) = check_kubelet_serving(csr, request) {
                return Approval::Skip(format!("not a kubelet serving certificate request: {why}"));
            }
            if user.name != request.common_name || !user.in_group(NODES_GROUP) {
                return Approval::Skip(format!(
                    "requested by {:?}, not by node {:?} itself",
                    user.name, request.common_name
                ));
            }
            Approval::Approve {
                reason: "AutoApproved",
                message: "Auto approving the serving certificate of the requesting node.".into(),
            }
        }
        other => Approval::Skip(format!("signer {other:?} is not auto-approved")),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestCondition, CertificateSigningRequestSpec, CertificateSigningRequestStatus,
    };

    use super::*;
    use crate::auth::authn::BOOTSTRAPPERS_GROUP;

    fn parsed(cn: &str, orgs: &[&str], dns: &[&str], ips: &[&str]) -> CertificateRequest {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        for o in orgs {
            params.distinguished_name.push(rcgen::DnType::OrganizationName, *o);
        }
        for d in dns {
            params.subject_alt_names.push(rcgen::SanType::DnsName((*d).try_into().expect("dns")));
        }
        for ip in ips {
            params.subject_alt_names.push(rcgen::SanType::IpAddress(ip.parse().expect("ip")));
        }
        let pem = params.serialize_request(&key).expect("csr").pem().expect("pem");
        CertificateRequest::parse(pem.as_bytes()).expect("parses")
    }

    fn csr(signer: &str, user: &str, groups: &[&str], usages: &[&str]) -> CertificateSigningRequest {
        CertificateSigningRequest {
            spec: CertificateSigningRequestSpec {
                request: ByteString(Vec::new()),
                signer_name: signer.into(),
                usages: Some(usages.iter().map(|u| u.to_string()).collect()),
                username: Some(user.into()),
                groups: Some(groups.iter().map(|g| g.to_string()).collect()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn decisions() {
        let boot = "system:bootstrap:abcdef";
        let boot_groups = &[BOOTSTRAPPERS_GROUP, "system:authenticated"][..];
        let node_groups = &[NODES_GROUP, "system:authenticated"][..];
        let client_usages = &["digital signature", "client auth"][..];
        let node_client = parsed("system:node:n1", &["system:nodes"], &[], &[]);
        // What the bootstrap policy grants: bootstrappers nodeclient, nodes selfnodeclient.
        let may = |u: &UserInfo, sub: &str| match sub {
            "nodeclient" => u.in_group(BOOTSTRAPPERS_GROUP),
            "selfnodeclient" => u.in_group(NODES_GROUP),
            _ => false,
        };
        let approved = |c: &mut CertificateSigningRequest, t: &str| {
            c.status = Some(CertificateSigningRequestStatus {
                conditions: Some(vec![CertificateSigningRequestCondition {
                    type_: t.into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                certificate: None,
            });
        };
        let mut already = csr(SIGNER_KUBELET_CLIENT, boot, boot_groups, client_usages);
        approved(&mut already, "Approved");
        let mut denied = csr(SIGNER_KUBELET_CLIENT, boot, boot_groups, client_usages);
        approved(&mut denied, "Denied");
        #[rustfmt::skip]
        let cases: Vec<(&str, CertificateSigningRequest, CertificateRequest, &str)> = vec![
            ("bootstrap token asks for a node client cert",
                csr(SIGNER_KUBELET_CLIENT, boot, boot_groups, client_usages), node_client.clone(),
                "approve:Auto approving kubelet client certificate after SubjectAccessReview."),
            ("with key encipherment",
                csr(SIGNER_KUBELET_CLIENT, boot, boot_groups, &["key encipherment", "digital signature", "client auth"]),
                node_client.clone(), "approve:Auto approving kubelet client certificate after SubjectAccessReview."),
            ("the node renews its own",
                csr(SIGNER_KUBELET_CLIENT, "system:node:n1", node_groups, client_usages), node_client.clone(),
                "approve:Auto approving self kubelet client certificate after SubjectAccessReview."),
            ("a node asks for another node's",
                csr(SIGNER_KUBELET_CLIENT, "system:node:n2", node_groups, client_usages), node_client.clone(),
                "skip:user \"system:node:n2\" may not create certificatesigningrequests/nodeclient"),
            ("an ordinary user",
                csr(SIGNER_KUBELET_CLIENT, "alice", &["system:authenticated"], client_usages), node_client.clone(),
                "skip:user \"alice\" may not create certificatesigningrequests/nodeclient"),
            ("wrong organization",
                csr(SIGNER_KUBELET_CLIENT, boot, boot_groups, client_usages),
                parsed("system:node:n1", &["system:masters"], &[], &[]), "skip:not a kubelet client certificate request: organization"),
            ("extra organization",
                csr(SIGNER_KUBELET_CLIENT, boot, boot_groups, client_usages),
                parsed("system:node:n1", &["system:nodes", "system:masters"], &[], &[]), "skip:not a kubelet client certificate request: organization"),
            ("not a node name",
                csr(SIGNER_KUBELET_CLIENT, boot, boot_groups, client_usages),
                parsed("admin", &["system:nodes"], &[], &[]), "skip:not a kubelet client certificate request: common name"),
            ("empty node name",
                csr(SIGNER_KUBELET_CLIENT, boot, boot_groups, client_usages),
                parsed("system:node:", &["system:nodes"], &[], &[]), "skip:not a kubelet client certificate request: common name"),
            ("client cert with names",
                csr(SIGNER_KUBELET_CLIENT, boot, boot_groups, client_usages),
                parsed("system:node:n1", &["system:nodes"], &["n1"], &[]), "skip:not a kubelet client certificate request: a kubelet client"),
            ("server auth usage",
                csr(SIGNER_KUBELET_CLIENT, boot, boot_groups, &["digital signature", "client auth", "server auth"]),
                node_client.clone(), "skip:not a kubelet client certificate request: usage \"server auth\""),
            ("no client auth",
                csr(SIGNER_KUBELET_CLIENT, boot, boot_groups, &["digital signature"]),
                node_client.clone(), "skip:not a kubelet client certificate request: usages must include"),
            ("already approved", already, node_client.clone(), "skip:already"),
            ("already denied", denied, node_client.clone(), "skip:already"),
            ("other signer",
                csr(SIGNER_CLIENT, boot, boot_groups, client_usages), node_client.clone(), "skip:signer"),
            ("a node's own serving cert",
                csr(SIGNER_KUBELET_SERVING, "system:node:n1", node_groups, &["digital signature", "server auth"]),
                parsed("system:node:n1", &["system:nodes"], &["n1"], &["10.0.0.1"]),
                "approve:Auto approving the serving certificate of the requesting node."),
            ("another node's serving cert",
                csr(SIGNER_KUBELET_SERVING, "system:node:n2", node_groups, &["digital signature", "server auth"]),
                parsed("system:node:n1", &["system:nodes"], &["n1"], &[]), "skip:requested by"),
            ("a bootstrap token asks for a serving cert",
                csr(SIGNER_KUBELET_SERVING, boot, boot_groups, &["digital signature", "server auth"]),
                parsed("system:node:n1", &["system:nodes"], &["n1"], &[]), "skip:requested by"),
            ("serving cert without names",
                csr(SIGNER_KUBELET_SERVING, "system:node:n1", node_groups, &["digital signature", "server auth"]),
                node_client.clone(), "skip:not a kubelet serving certificate request: a kubelet serving"),
        ];
        for (what, c, req, want) in cases {
            let got = match decide(&c, &req, may) {
                Approval::Approve { reason, message } => {
                    assert_eq!(reason, "AutoApproved");
                    format!("approve:{message}")
                }
                Approval::Skip(why) => format!("skip:{why}"),
            };
            assert!(got.starts_with(want), "{what}: got {got:?}, want {want:?}");
        }
    }
}
