//! CertificateSigningRequests (`certificates.k8s.io/v1`): validation of the request and of
//! its lifecycle (approval, then a certificate), and `kubectl get csr`'s columns.
//!
//! Who asked (`spec.username`, `groups`, ...) is set by the API server from the request's
//! credentials, not here: a kind sees no user.

use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestCondition};
use serde_json::Value;

use super::json;
use crate::object::Kind;
use crate::object::table::{self, Column, cell};
use crate::validation::{ErrorList, FieldError, FieldPath};

/// The key usages Kubernetes accepts in `spec.usages`.
const USAGES: [&str; 23] = [
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// The shortest `spec.expirationSeconds` allowed (ten minutes, as Kubernetes).
const MIN_EXPIRATION_SECONDS: i32 = 600;

/// `kubectl get csr`: NAME AGE SIGNERNAME REQUESTOR REQUESTEDDURATION CONDITION.
pub(super) const CSR: &[Column] = &[
    table::AGE,
    Column::text("SignerName", "The signer asked to issue the certificate."),
    Column::text("Requestor", "The user who created the request."),
    Column::text("RequestedDuration", "The certificate lifetime asked for."),
    Column::text("Condition", "Approved, Denied, Failed and Issued, as they apply."),
];

fn conditions(csr: &CertificateSigningRequest) -> &[CertificateSigningRequestCondition] {
    csr.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or(&[])
}

/// Whether `csr` has condition `type_` with status True (an empty status counts as True, as
/// conditions written before status was required).
fn has_condition(csr: &CertificateSigningRequest, type_: &str) -> bool {
    conditions(csr).iter().any(|c| c.type_ == type_ && (c.status == "True" || c.status.is_empty()))
}

fn has_certificate(csr: &CertificateSigningRequest) -> bool {
    csr.status.as_ref().and_then(|s| s.certificate.as_ref()).is_some_and(|c| !c.0.is_empty())
}

fn cells(csr: &CertificateSigningRequest) -> Vec<Value> {
    let mut states: Vec<&str> =
        ["Approved", "Denied", "Failed"].into_iter().filter(|t| has_condition(csr, t)).collect();
    if states.is_empty() {
        states.push("Pending");
    }
    if has_certificate(csr) {
        states.push("Issued");
    }
    let duration = csr
        .spec
        .expiration_seconds
        .map(|s| table::human_duration(i64::from(s)))
        .unwrap_or_else(|| "<none>".to_string());
    vec![
        Value::Null, // Age: the server fills it.
        cell(csr.spec.signer_name.clone()),
        cell(csr.spec.username.clone().unwrap_or_default()),
        Value::String(duration),
        Value::String(states.join(",")),
    ]
}

impl Kind for CertificateSigningRequest {
    fn validate(&self, old: Option<&Self>) -> ErrorList {
        let mut errs = ErrorList::default();
        let spec = FieldPath::new("spec");
        if self.spec.request.0.is_empty() {
            errs.push(FieldError::required(spec.child("request"), ""));
        } else if !String::from_utf8_lossy(&self.spec.request.0).contains("CERTIFICATE REQUEST") {
            errs.push(FieldError::invalid(
                spec.child("request"),
                Value::Null,
                "must be a PEM-encoded PKCS#10 certificate request (a CERTIFICATE REQUEST block)",
            ));
        }
        let signer = &self.spec.signer_name;
        if signer.is_empty() {
            errs.push(FieldError::required(spec.child("signerName"), ""));
        } else if signer.split('/').count() != 2 || signer.split('/').any(str::is_empty) {
            errs.push(FieldError::invalid(
                spec.child("signerName"),
                json(signer.clone()),
                "must be a fully qualified domain and path of the form 'example.com/signer-name'",
            ));
        }
        match self.spec.usages.as_deref() {
            None | Some([]) => errs.push(FieldError::required(spec.child("usages"), "")),
            Some(usages) => {
                for (i, u) in usages.iter().enumerate() {
                    if !USAGES.contains(&u.as_str()) {
                        errs.push(FieldError::not_supported(
                            spec.child("usages").index(i),
                            json(u.clone()),
                            &USAGES,
                        ));
                    }
                }
            }
        }
        if let Some(s) = self.spec.expiration_seconds
            && s < MIN_EXPIRATION_SECONDS
        {
            errs.push(FieldError::invalid(
                spec.child("expirationSeconds"),
                Value::from(s),
                "may not specify a duration less than 600 seconds (10 minutes)",
            ));
        }
        let status = FieldPath::new("status");
        if has_condition(self, "Approved") && has_condition(self, "Denied") {
            errs.push(FieldError::invalid(
                status.child("conditions"),
                Value::Null,
                "Approved and Denied conditions are mutually exclusive",
            ));
        }
        if has_certificate(self) && !has_condition(self, "Approved") {
            errs.push(FieldError::forbidden(
                status.child("certificate"),
                "may only be set when the request is Approved",
            ));
        }
        if let Some(old) = old {
            if old.spec != self.spec {
                errs.push(FieldError::invalid(spec, Value::Null, "field is immutable"));
            }
            for t in ["Approved", "Denied"] {
                if has_condition(old, t) && !has_condition(self, t) {
                    errs.push(FieldError::forbidden(
                        status.child("conditions"),
                        format!("updates may not remove a condition of type {t:?}"),
                    ));
                }
            }
            let certificate = |c: &Self| c.status.as_ref().and_then(|s| s.certificate.clone());
            if has_certificate(old) && certificate(old) != certificate(self) {
                errs.push(FieldError::forbidden(
                    status.child("certificate"),
                    "updates may not modify existing certificate content",
                ));
            }
        }
        errs
    }

    fn printer_columns() -> &'static [Column] {
        CSR
    }

    fn printer_cells(&self) -> Vec<Value> {
        cells(self)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestSpec, CertificateSigningRequestStatus,
    };

    use super::*;

    fn csr(cert: Option<&str>, conditions: &[&str]) -> CertificateSigningRequest {
        CertificateSigningRequest {
            spec: CertificateSigningRequestSpec {
                request: ByteString(b"-----BEGIN CERTIFICATE REQUEST-----\n".to_vec()),
                signer_name: "kubernetes.io/kube-apiserver-client-kubelet".into(),
                usages: Some(vec!["digital signature".into(), "client auth".into()]),
                ..Default::default()
            },
            status: Some(CertificateSigningRequestStatus {
                certificate: cert.map(|c| ByteString(c.as_bytes().to_vec())),
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

    fn messages(errs: &ErrorList) -> String {
        errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
    }

    #[test]
    fn lifecycle_rules() {
        let pending = csr(None, &[]);
        let approved = csr(None, &["Approved"]);
        let issued = csr(Some("cert"), &["Approved"]);
        #[rustfmt::skip]
        let cases: Vec<(&str, CertificateSigningRequest, Option<&CertificateSigningRequest>, &str)> = vec![
            ("a valid request", pending.clone(), None, ""),
            ("approve", approved.clone(), Some(&pending), ""),
            ("issue", issued.clone(), Some(&approved), ""),
            ("both approved and denied", csr(None, &["Approved", "Denied"]), None, "mutually exclusive"),
            ("a certificate without approval", csr(Some("c"), &[]), Some(&pending), "only be set when"),
            ("unapprove", pending.clone(), Some(&approved), "may not remove"),
            ("replace a certificate", csr(Some("other"), &["Approved"]), Some(&issued), "existing certificate"),
        ];
        for (what, new, old, want) in cases {
            let got = messages(&new.validate(old));
            if want.is_empty() {
                assert_eq!(got, "", "{what}");
            } else {
                assert!(got.contains(want), "{what}: {got}");
            }
        }
    }

    #[test]
    fn spec_rules() {
        let mut bad = csr(None, &[]);
        bad.spec.request = ByteString(b"not pem".to_vec());
        bad.spec.signer_name = "nodomain".into();
        bad.spec.usages = Some(vec!["client auth".into(), "flying".into()]);
        bad.spec.expiration_seconds = Some(60);
        let got = messages(&bad.validate(None));
        for want in ["spec.request", "spec.signerName", "spec.usages[1]", "spec.expirationSeconds"] {
            assert!(got.contains(want), "{want} missing from {got}");
        }
        let mut changed = csr(None, &[]);
        changed.spec.signer_name = "example.com/other".into();
        assert!(messages(&changed.validate(Some(&csr(None, &[])))).contains("immutable"));
    }

    #[test]
    fn columns() {
        let mut c = issued_csr();
        c.spec.username = Some("system:bootstrap:abcdef".into());
        c.spec.expiration_seconds = Some(3600);
        let cells = cells(&c);
        assert_eq!(cells[1], "kubernetes.io/kube-apiserver-client-kubelet");
        assert_eq!(cells[2], "system:bootstrap:abcdef");
        assert_eq!(cells[3], "1h");
        assert_eq!(cells[4], "Approved,Issued");
        assert_eq!(self::cells(&csr(None, &[]))[4], "Pending");
    }

    fn issued_csr() -> CertificateSigningRequest {
        csr(Some("cert"), &["Approved"])
    }
}
