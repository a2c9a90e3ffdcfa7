//! Which CertificateSigningRequests are done with (kube-controller-manager's `csrcleaner`):
//! the controller deletes them, so requests do not pile up as nodes join and renew.
//!
//! A request is deleted once its certificate has expired, or once it has been
//! - pending (neither approved nor denied) for 24 hours after its creation,
//! - denied or failed for an hour (since the condition's last update),
//! - approved for an hour (issued or not: the node has had its certificate, or the signer
//!   never will sign it).

use std::time::Duration;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::jiff::Timestamp;
use x509_parser::pem::Pem;

/// How long a request may wait for a decision.
pub const PENDING_EXPIRATION: Duration = Duration::from_secs(24 * 3600);
/// How long an approved, denied or failed request is kept after that condition.
pub const DECIDED_EXPIRATION: Duration = Duration::from_secs(3600);

/// Why `csr` should be deleted at `now`, if it should.
pub fn expired(csr: &CertificateSigningRequest, now: Timestamp) -> Option<&'static str> {
    if issued_certificate_expired(csr, now) {
        return Some("its certificate has expired");
    }
    let older_than = |t: Option<Timestamp>, limit: Duration| {
        t.is_some_and(|t| {
            now.duration_since(t).as_secs() > i64::try_from(limit.as_secs()).unwrap_or(i64::MAX)
        })
    };
    for (type_, why) in [
        ("Denied", "denied over an hour ago"),
        ("Failed", "failed over an hour ago"),
        ("Approved", "approved over an hour ago"),
    ] {
        if let Some(updated) = condition_time(csr, type_) {
            return older_than(updated, DECIDED_EXPIRATION).then_some(why);
        }
    }
    let created = csr.metadata.creation_timestamp.as_ref().map(|t| t.0);
    older_than(created, PENDING_EXPIRATION).then_some("pending for over 24 hours")
}

/// When the condition `type_` was last updated (or transitioned), if `csr` has it set; the
/// inner `None` is a condition without times, which never expires.
fn condition_time(csr: &CertificateSigningRequest, type_: &str) -> Option<Option<Timestamp>> {
    let conditions = csr.status.as_ref()?.conditions.as_ref()?;
    let c = conditions.iter().find(|c| c.type_ == type_ && (c.status == "True" || c.status.is_empty()))?;
    Some(c.last_update_time.as_ref().or(c.last_transition_time.as_ref()).map(|t| t.0))
}

/// Whether `csr` carries a certificate (PEM) whose `notAfter` is before `now`. A certificate
/// that does not parse is not judged here.
fn issued_certificate_expired(csr: &CertificateSigningRequest, now: Timestamp) -> bool {
    let Some(pem) = csr.status.as_ref().and_then(|s| s.certificate.as_ref()) else { return false };
    let Some(Ok(block)) = Pem::iter_from_buffer(&pem.0).next() else { return false };
    block.parse_x509().is_ok_and(|cert| cert.validity().not_after.timestamp() < now.as_second())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestCondition, CertificateSigningRequestStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::ToSpan;

    use super::*;

    fn csr(created: Timestamp, condition: Option<(&str, Timestamp)>) -> CertificateSigningRequest {
        let mut csr = CertificateSigningRequest::default();
        csr.metadata.creation_timestamp = Some(Time(created));
        if let Some((type_, at)) = condition {
            csr.status = Some(CertificateSigningRequestStatus {
                conditions: Some(vec![CertificateSigningRequestCondition {
                    type_: type_.into(),
                    status: "True".into(),
                    last_update_time: Some(Time(at)),
                    ..Default::default()
                }]),
                ..Default::default()
            });
        }
        csr
    }

    #[test]
    fn requests_expire_as_the_csr_cleaner_says() {
        let now = Timestamp::now();
        let ago = |s: k8s_openapi::jiff::Span| now - s;
        let cases = [
            (csr(ago(23.hours()), None), None),
            (csr(ago(25.hours()), None), Some("pending for over 24 hours")),
            (csr(ago(25.hours()), Some(("Denied", ago(59.minutes())))), None),
            (csr(ago(2.hours()), Some(("Denied", ago(61.minutes())))), Some("denied over an hour ago")),
            (csr(ago(2.hours()), Some(("Failed", ago(61.minutes())))), Some("failed over an hour ago")),
            (csr(ago(2.hours()), Some(("Approved", ago(30.minutes())))), None),
            (csr(ago(2.hours()), Some(("Approved", ago(61.minutes())))), Some("approved over an hour ago")),
        ];
        for (i, (csr, want)) in cases.into_iter().enumerate() {
            assert_eq!(expired(&csr, now), want, "case {i}");
        }
    }

    #[test]
    fn a_request_whose_certificate_expired_goes_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = crate::pki::ClusterPki::load_or_create(dir.path(), &[]).expect("pki");
        let (pem, _key) = pki.issue_client_cert("n1", &[], Duration::from_secs(3600)).expect("a certificate");
        let now = Timestamp::now();
        let mut c = csr(now, Some(("Approved", now)));
        c.status.get_or_insert_with(Default::default).certificate = Some(ByteString(pem.into_bytes()));
        assert_eq!(expired(&c, now), None);
        assert_eq!(expired(&c, now + 2.hours()), Some("its certificate has expired"));
        c.status.get_or_insert_with(Default::default).certificate =
            Some(ByteString(b"not a certificate".to_vec()));
        // A certificate that does not parse is not judged: only the approval's age counts.
        assert_eq!(expired(&c, now + 2.hours()), Some("approved over an hour ago"));
    }
}
