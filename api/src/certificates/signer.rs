//! The signer's decision, as kube-controller-manager's `csrsigning` makes it: an approved,
//! not yet issued, not failed request for one of the signers the cluster CA serves gets a
//! certificate; one that does not fit its signer's profile gets a Failed condition.

use std::time::Duration;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

use super::approver::{
    SIGNER_CLIENT, SIGNER_KUBELET_CLIENT, SIGNER_KUBELET_SERVING, check_kubelet_client,
    check_kubelet_serving, has_condition,
};
use crate::pki::{CertificateRequest, Profile};

/// How long issued certificates are valid when the request does not ask for less
/// (kube-controller-manager's `--cluster-signing-duration` default).
pub const DEFAULT_SIGNED_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// What the signer does with one request.
#[derive(Debug)]
pub enum SignPlan {
    /// Nothing: not approved, already issued or failed, or another signer's.
    Nothing,
    /// Issue a certificate for `request`.
    Sign {
        /// The parsed request.
        request: Box<CertificateRequest>,
        /// Client or serving.
        profile: Profile,
        /// How long the certificate is valid.
        validity: Duration,
    },
    /// Mark the request Failed with this message.
    Fail(String),
}

/// The signer's plan for `csr`.
pub fn plan(csr: &CertificateSigningRequest) -> SignPlan {
    let issued = csr.status.as_ref().and_then(|s| s.certificate.as_ref()).is_some_and(|c| !c.0.is_empty());
    if !has_condition(csr, "Approved") || has_condition(csr, "Failed") || issued {
        return SignPlan::Nothing;
    }
    let signer = csr.spec.signer_name.as_str();
    if ![SIGNER_KUBELET_CLIENT, SIGNER_KUBELET_SERVING, SIGNER_CLIENT].contains(&signer) {
        return SignPlan::Nothing;
    }
    let request = match CertificateRequest::parse(&csr.spec.request.0) {
        Ok(r) => r,
        Err(e) => return SignPlan::Fail(e.to_string()),
    };
    let checked = match signer {
        SIGNER_KUBELET_CLIENT => check_kubelet_client(csr, &request).map(|()| Profile::Client),
        SIGNER_KUBELET_SERVING => check_kubelet_serving(csr, &request).map(|()| Profile::Serving),
        _ if csr.spec.usages.as_deref().unwrap_or(&[]).iter().any(|u| u == "client auth") => {
            Ok(Profile::Client)
        }
        _ => Err("a kube-apiserver-client certificate needs usage \"client auth\"".into()),
    };
    let profile = match checked {
        Ok(p) => p,
        Err(why) => return SignPlan::Fail(format!("invalid request for signer {signer}: {why}")),
    };
    let asked = csr.spec.expiration_seconds.and_then(|s| u64::try_from(s).ok()).map(Duration::from_secs);
    let validity = asked.map_or(DEFAULT_SIGNED_VALIDITY, |d| d.min(DEFAULT_SIGNED_VALIDITY));
    SignPlan::Sign { request: Box::new(request), profile, validity }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestCondition, CertificateSigningRequestSpec, CertificateSigningRequestStatus,
    };

    use super::*;

    fn pem(cn: &str, org: &str) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params.distinguished_name.push(rcgen::DnType::OrganizationName, org);
        params.serialize_request(&key).expect("csr").pem().expect("pem").into_bytes()
    }

    fn csr(signer: &str, request: Vec<u8>, conditions: &[&str], cert: bool) -> CertificateSigningRequest {
        CertificateSigningRequest {
            spec: CertificateSigningRequestSpec {
                request: ByteString(request),
                signer_name: signer.into(),
                usages: Some(vec!["digital signature".into(), "client auth".into()]),
                expiration_seconds: Some(3600),
                ..Default::default()
            },
            status: Some(CertificateSigningRequestStatus {
                certificate: cert.then(|| ByteString(b"x".to_vec())),
                conditions: Some(
                    conditions
                        .iter()
                        .map(|t| CertificateSigningRequestCondition {
                            type_: t.to_string(),
                            status: "True".into(),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn plans() {
        let node = pem("system:node:n1", "system:nodes");
        let plan_of = |c: CertificateSigningRequest| match plan(&c) {
            SignPlan::Nothing => "nothing".to_string(),
            SignPlan::Sign { profile, validity, .. } => format!("sign {profile:?} {}", validity.as_secs()),
            SignPlan::Fail(m) => format!("fail {m}"),
        };
        #[rustfmt::skip]
        let cases: Vec<(&str, CertificateSigningRequest, &str)> = vec![
            ("pending", csr(SIGNER_KUBELET_CLIENT, node.clone(), &[], false), "nothing"),
            ("denied", csr(SIGNER_KUBELET_CLIENT, node.clone(), &["Denied"], false), "nothing"),
            ("approved", csr(SIGNER_KUBELET_CLIENT, node.clone(), &["Approved"], false), "sign Client 3600"),
            ("issued", csr(SIGNER_KUBELET_CLIENT, node.clone(), &["Approved"], true), "nothing"),
            ("failed", csr(SIGNER_KUBELET_CLIENT, node.clone(), &["Approved", "Failed"], false), "nothing"),
            ("another signer's", csr("example.com/mine", node.clone(), &["Approved"], false), "nothing"),
            ("garbage", csr(SIGNER_KUBELET_CLIENT, b"junk".to_vec(), &["Approved"], false), "fail the request is not"),
            ("approved by a human but not a node cert",
                csr(SIGNER_KUBELET_CLIENT, pem("admin", "system:masters"), &["Approved"], false),
                "fail invalid request for signer kubernetes.io/kube-apiserver-client-kubelet: organization"),
            ("generic client", csr(SIGNER_CLIENT, pem("alice", "dev"), &["Approved"], false), "sign Client 3600"),
        ];
        for (what, c, want) in cases {
            let got = plan_of(c);
            assert!(got.starts_with(want), "{what}: got {got:?}");
        }
        let mut long = csr(SIGNER_KUBELET_CLIENT, node, &["Approved"], false);
        long.spec.expiration_seconds = Some(i32::MAX);
        assert!(plan_of(long).ends_with(&DEFAULT_SIGNED_VALIDITY.as_secs().to_string()), "capped");
    }
}
