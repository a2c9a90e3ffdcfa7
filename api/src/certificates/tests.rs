//! TLS bootstrapping end to end against a secured server: a bootstrap token becomes a node's
//! certificates through approved CertificateSigningRequests; bad tokens and pins are refused.

use std::sync::Arc;
use std::time::Duration;

use flotilla_core::client::{Api, Client, LocalClient};
use flotilla_core::object::KindRegistry;
use flotilla_core::registry::Registry;
use flotilla_core::store::MemStore;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Node, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::{Timestamp, ToSpan};

use super::approver::{SIGNER_KUBELET_CLIENT, SIGNER_KUBELET_SERVING, has_condition};
use super::join::{JoinConfig, JoinError, join};
use crate::auth::authn::{BootstrapToken, TokenSecret};
use crate::client::RemoteClient;
use crate::secure::{SecureApi, SecureOptions};

/// How node `n1` joins `api` with `token`, keeping its files in `dir`.
pub(super) fn config(api: &SecureApi, token: &str, dir: &std::path::Path) -> JoinConfig {
    JoinConfig {
        server: url::Url::parse(&api.url()).expect("url"),
        failover: Vec::new(),
        token: token.to_string(),
        ca_hash: Some(api.pki().ca_hash()),
        ca_pem: None,
        node_name: "n1".into(),
        node_ips: vec!["127.0.0.1".parse().expect("ip")],
        dir: dir.to_path_buf(),
        timeout: Duration::from_secs(20),
        cert_lifetime: None,
    }
}

#[tokio::test]
async fn a_bootstrap_token_becomes_node_certificates() {
    let test = async {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin());
        let opts = SecureOptions::new(dir.path().join("pki"), "127.0.0.1:0".parse().expect("addr"));
        let api = SecureApi::start(registry.clone(), opts).await.expect("server starts");
        let local: Arc<dyn Client> = Arc::new(LocalClient::new(registry.clone()));
        let secrets = Api::<Secret>::namespaced(local.clone(), "kube-system");
        let token = BootstrapToken::generate();
        let expiry = Timestamp::now() + 1.hour();
        secrets
            .create(&TokenSecret::new(token.clone(), Some(expiry), vec![]).to_secret())
            .await
            .expect("token");
        let expired = BootstrapToken::generate();
        let past = Timestamp::now() - 1.hour();
        secrets
            .create(&TokenSecret::new(expired.clone(), Some(past), vec![]).to_secret())
            .await
            .expect("token");

        // Refusals first: each names what is wrong.
        let node_dir = dir.path().join("node");
        let err = join(&config(&api, "not-a-token", &node_dir)).await.expect_err("malformed");
        assert!(matches!(err, JoinError::Token(_)), "{err}");
        let err = join(&config(&api, &expired.to_string(), &node_dir)).await.expect_err("expired");
        assert!(matches!(err, JoinError::TokenRefused { .. }), "{err}");
        assert!(err.to_string().contains(&expired.id), "{err}");
        let unknown = BootstrapToken::generate().to_string();
        let err = join(&config(&api, &unknown, &node_dir)).await.expect_err("unknown");
        assert!(matches!(err, JoinError::TokenRefused { .. }), "{err}");
        let mut wrong_pin = config(&api, &token.to_string(), &dir.path().join("other"));
        wrong_pin.ca_hash = Some(format!("sha256:{}", "0".repeat(64)));
        let err = join(&wrong_pin).await.expect_err("wrong pin");
        assert!(matches!(err, JoinError::PinMismatch { .. }), "{err}");

        let creds = join(&config(&api, &token.to_string(), &node_dir)).await.expect("joined");
        assert!(creds.issued);
        assert_eq!(creds.ca_pem, api.pki().ca_pem());

        // Both requests are approved and issued, on behalf of who asked.
        let csrs = Api::<CertificateSigningRequest>::all(local.clone())
            .list(&Default::default())
            .await
            .expect("list");
        let by_signer = |s: &str| {
            csrs.items
                .iter()
                .find(|c| c.spec.signer_name == s && has_condition(c, "Approved"))
                .cloned()
                .expect(s)
        };
        let client_csr = by_signer(SIGNER_KUBELET_CLIENT);
        let client_csr_name = &client_csr.metadata.name.clone().expect("a name");
        assert_eq!(client_csr.spec.username, Some(format!("system:bootstrap:{}", token.id)));
        assert!(client_csr.status.and_then(|s| s.certificate).is_some());
        let serving_csr = by_signer(SIGNER_KUBELET_SERVING);
        assert_eq!(serving_csr.spec.username.as_deref(), Some("system:node:n1"));

        // An approved request is deleted an hour after its approval (csrcleaner's rule): with
        // the serving request's approval made two hours old, it goes.
        let csr_api = Api::<CertificateSigningRequest>::all(local.clone());
        let name = serving_csr.metadata.name.clone().expect("a name");
        let mut aged = serving_csr.clone();
        for c in aged.status.as_mut().and_then(|s| s.conditions.as_mut()).expect("conditions") {
            c.last_update_time = Some(Time(Timestamp::now() - 2.hours()));
        }
        csr_api.replace_status(&name, &aged).await.expect("aged status");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while csr_api.get_opt(&name).await.expect("get").is_some() {
            assert!(tokio::time::Instant::now() < deadline, "{name} was not deleted");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(csr_api.get_opt(client_csr_name).await.expect("get").is_some(), "a fresh one stays");

        // The expired bootstrap token's Secret is deleted (within a cleanup period of 15 s);
        // the valid one stays.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while secrets.get_opt(&expired.secret_name()).await.expect("get").is_some() {
            assert!(tokio::time::Instant::now() < deadline, "the expired token was not deleted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(secrets.get_opt(&token.secret_name()).await.expect("get").is_some());

        // The node credential is a node: it may create its own Node, not another.
        let node_client: Arc<dyn Client> = Arc::new(
            RemoteClient::new(creds.client_config(url::Url::parse(&api.url()).expect("url")))
                .expect("client"),
        );
        let nodes = Api::<Node>::all(node_client);
        let node = |name: &str| Node {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            ..Default::default()
        };
        nodes.create(&node("n1")).await.expect("own node");
        nodes.create(&node("n2")).await.expect_err("another node");
        creds.serving_config().expect("a serving TLS configuration");

        // A restart reuses what is stored, without a token.
        let again = join(&config(&api, "", &node_dir)).await.expect("reused");
        assert!(!again.issued);
        assert_eq!(again.client.current().pem(), creds.client.current().pem());

        // A client certificate about to expire is renewed by the node itself (no token).
        let (cert, key) = api
            .pki()
            .issue_client_cert("system:node:n1", &["system:nodes".into()], Duration::from_secs(1800))
            .expect("short-lived certificate");
        std::fs::write(node_dir.join("kubelet-client.crt"), &cert).expect("write");
        std::fs::write(node_dir.join("kubelet-client.key"), &key).expect("write");
        let renewed = join(&config(&api, "", &node_dir)).await.expect("renewed");
        assert!(renewed.issued);
        assert_ne!(renewed.client.current().pem().cert_pem, cert.as_bytes());
        let csrs = Api::<CertificateSigningRequest>::all(local.clone())
            .list(&Default::default())
            .await
            .expect("list");
        let renewal = csrs
            .items
            .iter()
            .find(|c| {
                c.spec.username.as_deref() == Some("system:node:n1")
                    && c.spec.signer_name == SIGNER_KUBELET_CLIENT
            })
            .expect("a renewal request by the node");
        let message = renewal
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.first())
            .and_then(|c| c.message.clone());
        assert_eq!(
            message.as_deref(),
            Some("Auto approving self kubelet client certificate after SubjectAccessReview.")
        );

        // A requested lifetime (`expirationSeconds`) is what the signer issues (after its
        // five-minute backdating), for both certificates.
        let mut two_hours = config(&api, &token.to_string(), &dir.path().join("two-hours"));
        two_hours.cert_lifetime = Some(Duration::from_secs(7200));
        let short = join(&two_hours).await.expect("joined");
        for identity in [short.client.current(), short.serving.current()] {
            let lifetime = identity.validity().lifetime().as_secs();
            assert!((7200..=7200 + 330).contains(&lifetime), "lifetime {lifetime}s");
        }
        let default = renewed.client.current().validity().lifetime();
        assert!(default > Duration::from_secs(300 * 86400), "a year unless asked: {default:?}");
        api.stop().await;
    };
    tokio::time::timeout(Duration::from_secs(120), test)
        .await
        .expect("bootstrapping finished in time (the approver or signer stalled?)");
}
