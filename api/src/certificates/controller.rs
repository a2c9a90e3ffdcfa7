//! [`CsrController`]: the approver, the signer and the cleaner run over the cluster's
//! CertificateSigningRequests, inside the process that holds the CA key.

use std::sync::Arc;
use std::time::Duration;

use flotilla_core::client::{Api, Cache, Client, ListOptions, WatcherEvent, reflector, watcher};
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::approver::{self, Approval};
use super::cleaner;
use super::signer::{self, SignPlan};
use crate::auth::{Attributes, Authorizer, UserInfo};
use crate::pki::{CertificateRequest, ClusterPki};

/// How often every cached request is looked at again (a write that failed is retried then).
const RESYNC: Duration = Duration::from_secs(15);

/// Approves and signs CertificateSigningRequests, and deletes expired ones, until stopped.
#[derive(Clone, Debug)]
pub struct CsrController {
    tasks: TaskTracker,
}

struct Shared {
    api: Api<CertificateSigningRequest>,
    pki: Arc<ClusterPki>,
    authorizer: Arc<dyn Authorizer>,
}

impl CsrController {
    /// Starts following CertificateSigningRequests through `client`: requests the
    /// [approver](super::approver) recognises are approved (the requestor's rights checked
    /// with `authorizer`), approved ones for the cluster's signers are signed with `pki`'s CA.
    /// Runs until `shutdown` is cancelled. Must be called within a tokio runtime.
    pub fn start(
        client: Arc<dyn Client>,
        pki: Arc<ClusterPki>,
        authorizer: Arc<dyn Authorizer>,
        shutdown: CancellationToken,
    ) -> Self {
        let api = Api::<CertificateSigningRequest>::all(client);
        let shared = Shared { api: api.clone(), pki, authorizer };
        let cache: Cache<CertificateSigningRequest> = Cache::default();
        let events = reflector(cache.clone(), watcher(api, ListOptions::default()));
        let tasks = TaskTracker::new();
        tasks.spawn(async move {
            let mut events = std::pin::pin!(events);
            let mut resync = tokio::time::interval(RESYNC);
            resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    event = events.next() => match event {
                        None => break,
                        Some(WatcherEvent::Apply(csr) | WatcherEvent::InitApply(csr)) => shared.process(csr).await,
                        Some(WatcherEvent::Retrying(error)) => {
                            tracing::debug!(%error, "certificate signing request watcher retrying");
                        }
                        Some(_) => {}
                    },
                    _ = resync.tick() => {
                        for csr in cache.list() {
                            shared.process((*csr).clone()).await;
                        }
                    }
                }
            }
        });
        tasks.close();
        CsrController { tasks }
    }

    /// Waits until the controller has stopped (after the shutdown token was cancelled).
    pub async fn stopped(&self) {
        self.tasks.wait().await
    }
}

fn condition(type_: &str, reason: &str, message: String) -> CertificateSigningRequestCondition {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    CertificateSigningRequestCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

fn add_condition(csr: &mut CertificateSigningRequest, c: CertificateSigningRequestCondition) {
    let status = csr.status.get_or_insert_with(CertificateSigningRequestStatus::default);
    status.conditions.get_or_insert_with(Vec::new).push(c);
}

impl Shared {
    /// Deletes `csr` if it has expired; otherwise approves, then signs, it as far as the rules
    /// allow. Failures are logged; the next event or resync retries.
    async fn process(&self, mut csr: CertificateSigningRequest) {
        let name = csr.metadata.name.clone().unwrap_or_default();
        if let Some(why) = cleaner::expired(&csr, Timestamp::now()) {
            match self.api.delete(&name, &Default::default()).await {
                Ok(_) => tracing::info!(csr = %name, why, "deleted certificate signing request"),
                Err(error) => tracing::debug!(csr = %name, %error, "deleting failed; will retry"),
            }
            return;
        }
        if !approver::has_condition(&csr, "Approved") && !approver::has_condition(&csr, "Denied") {
            let Ok(request) = CertificateRequest::parse(&csr.spec.request.0) else {
                return; // Not for the approver; the signer fails it only once approved.
            };
            match approver::decide(&csr, &request, |user, sub| self.may_create(user, sub)) {
                Approval::Skip(why) => {
                    tracing::debug!(csr = %name, why, "not auto-approving");
                    return;
                }
                Approval::Approve { reason, message } => {
                    add_condition(&mut csr, condition("Approved", reason, message));
                    match self.api.replace_status(&name, &csr).await {
                        Ok(updated) => {
                            tracing::info!(csr = %name, user = ?csr.spec.username, "approved certificate signing request");
                            csr = updated;
                        }
                        Err(error) => {
                            tracing::debug!(csr = %name, %error, "approving failed; will retry");
                            return;
                        }
                    }
                }
            }
        }
        let update = match signer::plan(&csr) {
            SignPlan::Nothing => return,
            SignPlan::Sign { request, profile, validity } => {
                match self.pki.sign_request(&request, profile, validity) {
                    Ok(pem) => {
                        csr.status.get_or_insert_with(Default::default).certificate =
                            Some(ByteString(pem.into_bytes()));
                        "issued"
                    }
                    Err(error) => {
                        add_condition(&mut csr, condition("Failed", "SigningFailed", error.to_string()));
                        "failed"
                    }
                }
            }
            SignPlan::Fail(message) => {
                add_condition(&mut csr, condition("Failed", "SignerValidationFailure", message));
                "failed"
            }
        };
        match self.api.replace_status(&name, &csr).await {
            Ok(_) => {
                tracing::info!(csr = %name, outcome = update, "signer updated certificate signing request")
            }
            Err(error) => tracing::debug!(csr = %name, %error, "writing the certificate failed; will retry"),
        }
    }

    /// A SubjectAccessReview: may `user` create `certificatesigningrequests/<sub>`?
    fn may_create(&self, user: &UserInfo, sub: &str) -> bool {
        let resource = format!("certificatesigningrequests/{sub}");
        let attrs = Attributes::resource(user.clone(), "create", "certificates.k8s.io", &resource, "", "");
        self.authorizer.authorize(&attrs).is_allowed()
    }
}
