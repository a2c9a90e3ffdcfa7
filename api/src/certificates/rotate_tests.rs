//! Certificate rotation end to end against a secured server: a node joins with certificates
//! that last seconds, [`rotate_certificates`] renews them, and new connections present the
//! renewed ones after the originals have expired.
//!
//! The cluster's signer issues nothing shorter than ten minutes (and backdates five), and
//! certificate validity runs on the wall clock, so the server here stores a
//! [`LIFETIME`]-long certificate from the same CA in place of each one its signer issues
//! ([`ShortLived`]). Everything else is the real path: the approver, CSRs over HTTPS, the
//! `selfnodeclient` renewal, the API server's client-certificate check.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_core::client::{Api, Client, LocalClient};
use flotilla_core::object::{DynamicObject, KindRegistry, KindStrategy, Resource, ResourceType};
use flotilla_core::registry::Registry;
use flotilla_core::store::MemStore;
use flotilla_core::validation::ErrorList;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Node, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{Timestamp, ToSpan};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::approver::{SIGNER_KUBELET_CLIENT, SIGNER_KUBELET_SERVING};
use super::identity::TlsIdentity;
use super::join::{JoinConfig, join};
use super::rotate::rotate_certificates;
use crate::auth::authn::{BootstrapToken, TokenSecret};
use crate::client::{ClientConfig, RemoteClient, RetryPolicy};
use crate::kubeconfig::ClientCertificate;
use crate::pki::ClusterPki;
use crate::secure::{SecureApi, SecureOptions};

/// How long the certificates the test server issues last (from a second before issue).
const LIFETIME: Duration = Duration::from_secs(12);

/// The CertificateSigningRequest kind, except that a certificate written into a request's
/// status is replaced by one for the same request from the same CA lasting [`LIFETIME`].
struct ShortLived {
    inner: Arc<dyn KindStrategy>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl ShortLived {
    /// A kind registry with every built-in kind, CertificateSigningRequests signed short.
    fn registry(pki_dir: &Path) -> KindRegistry {
        let read = |f: &str| std::fs::read_to_string(pki_dir.join(f)).expect("the CA files");
        let key = rcgen::KeyPair::from_pem(&read("ca.key")).expect("the CA key");
        let issuer = rcgen::Issuer::from_ca_cert_pem(&read("ca.crt"), key).expect("the CA");
        let builtin = KindRegistry::builtin();
        let csr = CertificateSigningRequest::TYPE;
        let mut kinds = KindRegistry::default();
        let mut issuer = Some(issuer);
        for t in builtin.types() {
            let strategy = builtin.get(t.group, t.plural).expect("a registered kind").clone();
            let strategy: Arc<dyn KindStrategy> = if (t.group, t.plural) == (csr.group, csr.plural) {
                Arc::new(ShortLived { inner: strategy, issuer: issuer.take().expect("one CSR kind") })
            } else {
                strategy
            };
            kinds.register_strategy(strategy).expect("no duplicates");
        }
        kinds
    }

    /// `csr`'s certificate again, lasting [`LIFETIME`].
    fn sign(&self, csr: &CertificateSigningRequest) -> Vec<u8> {
        let request = std::str::from_utf8(&csr.spec.request.0).expect("a PEM request");
        let mut request = rcgen::CertificateSigningRequestParams::from_pem(request).expect("a valid request");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970");
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        request.params.not_before = epoch + now - Duration::from_secs(1);
        request.params.not_after = epoch + now + LIFETIME;
        request.params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        request.params.extended_key_usages = if csr.spec.signer_name == SIGNER_KUBELET_SERVING {
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth]
        } else {
            request.params.subject_alt_names.clear();
            vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth]
        };
        request.signed_by(&self.issuer).expect("signed").pem().into_bytes()
    }
}

impl KindStrategy for ShortLived {
    fn resource_type(&self) -> ResourceType {
        self.inner.resource_type()
    }

    fn normalize(&self, obj: DynamicObject) -> Result<(DynamicObject, Vec<String>), ErrorList> {
        let (obj, unknown) = self.inner.normalize(obj)?;
        let mut csr: CertificateSigningRequest = obj.to_typed().expect("a CertificateSigningRequest");
        let issued = csr.status.as_ref().and_then(|s| s.certificate.as_ref()).map(|c| c.0.clone());
        let long = issued.is_some_and(|pem| {
            let identity = CertificateDer::from_pem_slice(&pem).map(|der| der.to_vec());
            let lifetime = identity.ok().and_then(|der| lifetime(&der)).unwrap_or_default();
            lifetime > LIFETIME + Duration::from_secs(60)
        });
        if !long {
            return Ok((obj, unknown));
        }
        let short = self.sign(&csr);
        csr.status.get_or_insert_with(Default::default).certificate = Some(ByteString(short));
        Ok((DynamicObject::from_typed(&csr).expect("encodes"), unknown))
    }

    fn validate(&self, obj: &DynamicObject, old: Option<&DynamicObject>) -> ErrorList {
        self.inner.validate(obj, old)
    }

    fn selectable_fields(&self, obj: &DynamicObject) -> std::collections::BTreeMap<String, String> {
        self.inner.selectable_fields(obj)
    }

    fn selectable_field_names(&self) -> &'static [&'static str] {
        self.inner.selectable_field_names()
    }

    fn columns(&self) -> Vec<flotilla_core::object::table::Column> {
        self.inner.columns()
    }

    fn row(&self, obj: &DynamicObject, now: &Time) -> Vec<Value> {
        self.inner.row(obj, now)
    }
}

/// The lifetime of DER certificate `der`.
fn lifetime(der: &[u8]) -> Option<Duration> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    let seconds = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    u64::try_from(seconds).ok().map(Duration::from_secs)
}

/// The serial of the certificate stored as `cert` (with `key`) in `dir`, if readable.
fn stored_serial(dir: &Path, cert: &str, key: &str) -> Option<Vec<u8>> {
    let pair = ClientCertificate {
        cert_pem: std::fs::read(dir.join(cert)).ok()?,
        key_pem: std::fs::read(dir.join(key)).ok()?,
    };
    TlsIdentity::from_pem(&pair).ok().map(|id| id.serial().to_vec())
}

/// A client built from `config` that tries each request once.
fn client(mut config: ClientConfig) -> Arc<dyn Client> {
    config.retry = RetryPolicy { max_attempts: 1, ..RetryPolicy::default() };
    Arc::new(RemoteClient::new(config).expect("a client"))
}

/// Lists Nodes through `client`.
async fn list_nodes(client: Arc<dyn Client>) -> Result<(), String> {
    Api::<Node>::all(client).list(&Default::default()).await.map(|_| ()).map_err(|e| e.to_string())
}

/// Handshakes with the TLS server at `addr` (as the cluster admin) and returns the serial of
/// the certificate it presented, once verified against `ca_pem` for 127.0.0.1.
async fn presented_serial(addr: std::net::SocketAddr, pki: &ClusterPki) -> Result<Vec<u8>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pki.ca_pem().as_bytes()).expect("CA")).expect("root");
    let chain = vec![CertificateDer::from_pem_slice(pki.admin_cert_pem().as_bytes()).expect("cert")];
    let key = PrivateKeyDer::from_pem_slice(pki.admin_key_pem().as_bytes()).expect("key");
    let config = rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client auth");
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::IpAddress(addr.ip().into());
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).ok_or("no certificate")?;
    use x509_parser::prelude::FromDer;
    let (_, cert) =
        x509_parser::certificate::X509Certificate::from_der(leaf.as_ref()).map_err(|e| e.to_string())?;
    Ok(cert.raw_serial().to_vec())
}

#[tokio::test]
async fn a_running_node_rotates_its_certificates() {
    let test = async {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki_dir = dir.path().join("pki");
        ClusterPki::load_or_create(&pki_dir, &[]).expect("the CA");
        let registry = Registry::new(Arc::new(MemStore::new()), ShortLived::registry(&pki_dir));
        let opts = SecureOptions::new(&pki_dir, "127.0.0.1:0".parse().expect("addr"));
        let api = SecureApi::start(registry.clone(), opts).await.expect("server starts");
        let local: Arc<dyn Client> = Arc::new(LocalClient::new(registry.clone()));
        let token = BootstrapToken::generate();
        Api::<Secret>::namespaced(local.clone(), "kube-system")
            .create(&TokenSecret::new(token.clone(), Some(Timestamp::now() + 1.hour()), vec![]).to_secret())
            .await
            .expect("token");
        let node_dir = dir.path().join("node");
        let server = url::Url::parse(&api.url()).expect("url");
        let config = JoinConfig {
            cert_lifetime: Some(Duration::from_secs(600)),
            ..super::tests::config(&api, &token.to_string(), &node_dir)
        };
        let creds = join(&config).await.expect("joined");
        let original_client = creds.client.current();
        let original_serving = creds.serving.current();
        let lifetime = original_client.validity().lifetime();
        assert!(lifetime <= LIFETIME + Duration::from_secs(1), "short-lived: {lifetime:?}");
        list_nodes(client(creds.client_config(server.clone()))).await.expect("the node is authenticated");
        // A client built now, that connects only after the rotation.
        let early = client(creds.client_config(server.clone()));

        // The node's log endpoint, started once, with the original serving certificate.
        let stop = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = listener.local_addr().expect("addr");
        let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let served = tokio::spawn(crate::tls::serve(
            listener,
            creds.serving_config().expect("serving TLS"),
            router,
            stop.clone(),
        ));
        let first = presented_serial(endpoint, api.pki()).await.expect("a first handshake");
        assert_eq!(first, original_serving.serial());

        let rotation = tokio::spawn(rotate_certificates(config.clone(), creds.clone(), stop.clone()));

        // (a) New certificates replace the files (keys still 0600), and the live identities.
        let deadline = tokio::time::Instant::now() + 3 * LIFETIME;
        loop {
            let client = stored_serial(&node_dir, "kubelet-client.crt", "kubelet-client.key");
            let serving = stored_serial(&node_dir, "kubelet.crt", "kubelet.key");
            if client.is_some_and(|s| s != original_client.serial())
                && serving.is_some_and(|s| s != original_serving.serial())
            {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the stored certificates were not rotated");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        use std::os::unix::fs::PermissionsExt as _;
        for key in ["kubelet-client.key", "kubelet.key"] {
            let mode = std::fs::metadata(node_dir.join(key)).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        assert_ne!(creds.client.current().serial(), original_client.serial());
        assert_ne!(creds.serving.current().serial(), original_serving.serial());
        // The client certificate was renewed with itself, not with the bootstrap token.
        let csrs = Api::<CertificateSigningRequest>::all(local.clone()).list(&Default::default()).await;
        let renewals = csrs.expect("list").items.into_iter().filter(|c| {
            c.spec.signer_name == SIGNER_KUBELET_CLIENT
                && c.spec.username.as_deref() == Some("system:node:n1")
        });
        let approvals: Vec<String> = renewals
            .flat_map(|c| c.status.and_then(|s| s.conditions).unwrap_or_default())
            .filter_map(|c| c.message)
            .collect();
        let selfnodeclient = "Auto approving self kubelet client certificate after SubjectAccessReview.";
        assert!(approvals.iter().any(|m| m == selfnodeclient), "{approvals:?}");

        // Once the originals have expired...
        let expired = original_client.validity().not_after.max(original_serving.validity().not_after);
        while SystemTime::now() <= expired + Duration::from_secs(1) {
            assert!(tokio::time::Instant::now() < deadline, "the originals never expired?");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // ...the server refuses the original client certificate,
        let mut stale = ClientConfig::new(server.clone());
        stale.ca_pem = Some(creds.ca_pem.as_bytes().to_vec());
        stale.client_certificate = Some(original_client.pem().clone());
        list_nodes(client(stale)).await.expect_err("an expired client certificate is refused");
        // (b) but a new client of the node's credentials presents the rotated one, and so does
        // a client built before the rotation, on its first connection,
        let fresh = client(creds.client_config(server.clone()));
        list_nodes(fresh).await.expect("a request with the rotated certificate");
        list_nodes(early).await.expect("the earlier client connects with the rotated certificate");
        // (c) and the endpoint, never restarted, presents its rotated serving certificate
        // (the handshake verifies it is valid now).
        let serial = presented_serial(endpoint, api.pki()).await.expect("a handshake after rotation");
        assert_ne!(serial, original_serving.serial());

        stop.cancel();
        rotation.await.expect("the rotation task ends without panicking");
        served.await.expect("joined").expect("served");
        api.stop().await;
    };
    tokio::time::timeout(Duration::from_secs(120), test).await.expect("rotation finished in time");
}
