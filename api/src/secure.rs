//! A secured API server, assembled: the cluster PKI, HTTPS, authentication (client
//! certificates, a token file, run-time tokens, bootstrap tokens, ServiceAccount tokens),
//! RBAC with the bootstrap policy, the namespaces every cluster has, and the approver and
//! signer of node certificate requests ([`CsrController`]). What `flotilla up` and
//! `flotilla server` run, and what tests start to drive kubectl over TLS.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::client::{Api, Client, LocalClient};
use flotilla_core::object::{DynamicObject, Resource};
use flotilla_core::registry::{self, Registry, WriteOptions};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::authn::{BOOTSTRAP_TOKEN_NAMESPACE, BootstrapTokens, BoundObjects, ServiceAccountVerifier};
use crate::auth::{Authenticator, AuthenticatorConfig, RbacAuthorizer, StaticTokens, TokenIssuer, rbac};
use crate::certificates::CsrController;
use crate::client::ClientConfig;
use crate::kubeconfig::Kubeconfig;
use crate::pki::sa_keys::ServiceAccountKeys;
use crate::pki::{self, ClientAuth, ClusterPki};
use crate::server::{ApiServer, KubeletClient, Security, ServerConfig, ServiceAccountTokens};
use crate::{auth, tls};

/// The issuer of ServiceAccount tokens (`iss`), and the audience they are valid for.
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The user the API server presents to node agents (in `system:masters`).
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";
/// How long the API server's node-agent client certificate is valid; a new one is issued at
/// every start, and while the server runs before this ends ([`pki::renew_until`]).
const KUBELET_CLIENT_VALIDITY: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// Namespaces every cluster has.
pub const SYSTEM_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Why a secured server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The PKI could not be loaded or created.
    #[error("cluster PKI: {0}")]
    Pki(#[from] pki::Error),
    /// The token file could not be read.
    #[error("token file: {0}")]
    Tokens(#[from] auth::authn::Error),
    /// The ServiceAccount signing key is not a PKCS#8 PEM key.
    #[error("service account signing key: {0}")]
    SigningKey(String),
    /// The listener could not be bound.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// Where.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The client configuration for reaching node agents could not be built.
    #[error("kubelet client TLS: {0}")]
    KubeletClient(#[source] crate::client::Error),
    /// Bootstrapping the cluster's objects failed.
    #[error("bootstrapping {what}: {source}")]
    Bootstrap {
        /// Which object.
        what: String,
        /// Why.
        #[source]
        source: registry::Error,
    },
}

/// The result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to run a secured server.
#[derive(Clone, Debug)]
pub struct SecureOptions {
    /// Where the PKI lives (created on first start).
    pub pki_dir: PathBuf,
    /// Extra names and addresses the serving certificate covers (localhost always is).
    pub server_hosts: Vec<String>,
    /// Where to listen (port 0 picks one).
    pub listen: SocketAddr,
    /// A kube-apiserver style token file (`token,user,uid,"group1,group2"`).
    pub token_file: Option<PathBuf>,
    /// Serve requests without credentials as `system:anonymous` (RBAC still applies).
    pub allow_anonymous: bool,
    /// Limits of the request handling.
    pub server: ServerConfig,
}

impl SecureOptions {
    /// Defaults: no token file, anonymous refused.
    pub fn new(pki_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        SecureOptions {
            pki_dir: pki_dir.into(),
            server_hosts: Vec::new(),
            listen,
            token_file: None,
            allow_anonymous: false,
            server: ServerConfig::default(),
        }
    }
}

/// Creates what every cluster has, if missing: the system namespaces and the RBAC bootstrap
/// policy (cluster-admin, admin, edit, view, the discovery and node roles and their
/// bindings). Objects that exist are left as they are, so users may change them.
pub async fn bootstrap(registry: &Registry) -> Result<()> {
    let client = LocalClient::new(registry.clone());
    let mut objects = Vec::new();
    for ns in SYSTEM_NAMESPACES {
        let mut o =
            DynamicObject { api_version: "v1".into(), kind: "Namespace".into(), ..Default::default() };
        o.metadata.name = Some(ns.to_string());
        objects.push((Namespace::TYPE, o));
    }
    for o in rbac::bootstrap_policy().objects() {
        let t = registry
            .kinds()
            .by_kind("rbac.authorization.k8s.io", &o.kind)
            .map(|s| s.resource_type())
            .ok_or_else(|| Error::Bootstrap {
                what: o.kind.clone(),
                source: registry::Error::UnknownResource { resource: o.kind.clone() },
            })?;
        objects.push((t, o));
    }
    for (t, o) in objects {
        let what = format!("{} {}", t.kind, o.name());
        let ns = (!o.namespace().is_empty()).then(|| o.namespace().to_string());
        match client.create(&t, ns.as_deref(), o, &WriteOptions::default()).await {
            Ok(_) | Err(registry::Error::AlreadyExists { .. }) => {}
            Err(source) => return Err(Error::Bootstrap { what, source }),
        }
    }
    Ok(())
}

/// A running secured API server.
pub struct SecureApi {
    addr: SocketAddr,
    pki: Arc<ClusterPki>,
    server: ApiServer,
    authenticator: Arc<Authenticator>,
    tokens: Arc<TokenIssuer>,
    /// Shares its keys with the authenticator's.
    sa_verifier: ServiceAccountVerifier,
    stop: CancellationToken,
    tasks: TaskTracker,
    csr_controller: CsrController,
    bootstrap_tokens: BootstrapTokens,
    bound_objects: BoundObjects,
}

impl std::fmt::Debug for SecureApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureApi").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// How the API server reaches node agents: HTTPS trusting the cluster CA, presenting a fresh
/// in-memory client certificate of [`KUBELET_CLIENT_USER`] from it (agents accept only
/// those), which the PKI renews while the server runs: each new connection presents the
/// current one.
fn kubelet_tls(pki: &ClusterPki) -> Result<Arc<rustls::ClientConfig>> {
    let identity =
        pki.live_client_cert(KUBELET_CLIENT_USER, &[pki::ADMIN_GROUP.to_string()], KUBELET_CLIENT_VALIDITY)?;
    // The URL is only a placeholder: this configuration is used for its TLS settings.
    let mut config = ClientConfig::new(url::Url::parse("https://127.0.0.1/").expect("a valid literal URL"));
    config.ca_pem = Some(pki.ca_pem().as_bytes().to_vec());
    config.client_identity = Some(identity);
    config.rustls_config().map_err(Error::KubeletClient)
}

/// Reloads a [`SecureApi`]'s ServiceAccount keys from its PKI directory.
#[derive(Clone, Debug)]
pub struct ServiceAccountKeyReloader {
    dir: PathBuf,
    tokens: Arc<TokenIssuer>,
    verifier: ServiceAccountVerifier,
}

impl ServiceAccountKeyReloader {
    /// Reads `sa.key` and `sa.pub` again ([`pki::sa_keys`]) and uses them from now on: tokens
    /// signed by any of them are accepted, new tokens are signed with `sa.key`. Nothing
    /// changes if the files cannot be read. Returns the `kid`s of the accepted keys, the
    /// signing key's first.
    pub fn reload(&self) -> Result<Vec<String>> {
        let keys = ServiceAccountKeys::load(&self.dir)?;
        // Trust the new keys before signing with them, so no token of ours is refused here.
        self.verifier.set_public_keys(keys.verifying_keys());
        self.tokens.set_key(keys.signing_pkcs8()).map_err(|e| Error::SigningKey(e.to_string()))?;
        let kids = self.verifier.key_ids();
        tracing::info!(signing = %self.tokens.key_id(), accepted = ?kids, "loaded the service-account keys");
        Ok(kids)
    }

    /// The `kid` of the key new tokens are signed with.
    pub fn signing_key_id(&self) -> String {
        self.tokens.key_id()
    }

    /// The `kid`s of the keys tokens are accepted from.
    pub fn accepted_key_ids(&self) -> Vec<String> {
        self.verifier.key_ids()
    }
}

impl SecureApi {
    /// Loads (or creates) the PKI, bootstraps the cluster's objects, starts RBAC and serves
    /// HTTPS on `opts.listen`. Returns once the server accepts requests.
    pub async fn start(registry: Registry, opts: SecureOptions) -> Result<SecureApi> {
        let pki = Arc::new(ClusterPki::load_or_create(&opts.pki_dir, &opts.server_hosts)?);
        bootstrap(&registry).await?;
        let static_tokens = match &opts.token_file {
            Some(p) => StaticTokens::load(p)?,
            None => StaticTokens::default(),
        };
        let sa_keys = ServiceAccountKeys::load(&opts.pki_dir)?;
        let verifier = ServiceAccountVerifier::new(
            vec![SERVICE_ACCOUNT_ISSUER.into()],
            vec![SERVICE_ACCOUNT_ISSUER.into()],
            sa_keys.verifying_keys(),
        );
        let tokens = Arc::new(
            TokenIssuer::from_pkcs8(SERVICE_ACCOUNT_ISSUER, sa_keys.signing_pkcs8())
                .map_err(|e| Error::SigningKey(e.to_string()))?,
        );
        let stop = CancellationToken::new();
        let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry.clone()));
        let bootstrap_tokens = BootstrapTokens::start(client.clone(), stop.child_token());
        let bound_objects = BoundObjects::start(client.clone(), stop.child_token());
        let authenticator = Arc::new(
            Authenticator::new(AuthenticatorConfig {
                static_tokens,
                service_accounts: Some(verifier.clone()),
                allow_anonymous: opts.allow_anonymous,
            })
            .with_bootstrap_tokens(bootstrap_tokens.clone())
            .with_bound_objects(bound_objects.clone()),
        );
        let rbac = RbacAuthorizer::start(client.clone(), stop.child_token());
        rbac.ready().await;
        bootstrap_tokens.wait_until(BootstrapTokens::is_ready).await;
        // Approves and signs node certificate requests: it needs the CA key, which is here.
        let csr_controller =
            CsrController::start(client.clone(), pki.clone(), Arc::new(rbac.clone()), stop.child_token());
        let security = Security { authenticator: authenticator.clone(), authorizer: Arc::new(rbac) };
        let mut server_config = opts.server.clone();
        if server_config.kubelet.is_none() {
            server_config.kubelet = Some(KubeletClient::https(kubelet_tls(&pki)?));
        }
        // `serviceaccounts/<name>/token` signs with the key the verifier above trusts.
        if server_config.service_account_tokens.is_none() {
            server_config.service_account_tokens = Some(ServiceAccountTokens {
                issuer: tokens.clone(),
                audiences: vec![SERVICE_ACCOUNT_ISSUER.into()],
            });
        }
        let server = ApiServer::with_security(registry, server_config, security);
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|source| Error::Listen { addr: opts.listen, source })?;
        let addr = listener.local_addr().map_err(|source| Error::Listen { addr: opts.listen, source })?;
        let config = pki.server_config(ClientAuth::Optional)?;
        let tasks = TaskTracker::new();
        let (router, s) = (server.router(), stop.clone());
        tasks.spawn(async move {
            if let Err(e) = tls::serve(listener, config, router, s).await {
                tracing::error!(error = %e, "api server stopped");
            }
        });
        tasks.spawn(clean_bootstrap_tokens(bootstrap_tokens.clone(), client, stop.clone()));
        tasks.spawn(pki::renew_until(pki.clone(), stop.clone()));
        tasks.close();
        Ok(SecureApi {
            addr,
            pki,
            server,
            authenticator,
            tokens,
            sa_verifier: verifier,
            stop,
            tasks,
            csr_controller,
            bootstrap_tokens,
            bound_objects,
        })
    }

    /// Reads the ServiceAccount keys of the PKI directory again; see
    /// [`ServiceAccountKeyReloader::reload`].
    pub fn reload_service_account_keys(&self) -> Result<Vec<String>> {
        self.service_account_key_reloader().reload()
    }

    /// A handle that reloads this server's ServiceAccount keys, for tasks that outlive a
    /// borrow of the server.
    pub fn service_account_key_reloader(&self) -> ServiceAccountKeyReloader {
        ServiceAccountKeyReloader {
            dir: self.pki.dir().to_path_buf(),
            tokens: self.tokens.clone(),
            verifier: self.sa_verifier.clone(),
        }
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL a client on this machine dials: `https://<addr>`, with a wildcard address
    /// (`0.0.0.0`, `::`) replaced by loopback, which the serving certificate always covers.
    /// The admin kubeconfig carries it.
    pub fn url(&self) -> String {
        format!("https://{}", dialable(self.addr))
    }

    /// The cluster PKI.
    pub fn pki(&self) -> &Arc<ClusterPki> {
        &self.pki
    }

    /// The authenticator, to add or remove tokens at run time (bootstrap tokens).
    pub fn authenticator(&self) -> &Arc<Authenticator> {
        &self.authenticator
    }

    /// Signs ServiceAccount tokens the server accepts.
    pub fn token_issuer(&self) -> &Arc<TokenIssuer> {
        &self.tokens
    }

    /// A kubeconfig for the administrator (client certificate in group `system:masters`).
    /// It holds the admin certificate of now; see
    /// [`keep_admin_kubeconfig`](Self::keep_admin_kubeconfig) for a file kept current.
    pub fn admin_kubeconfig(&self, cluster_name: &str) -> Kubeconfig {
        Kubeconfig::for_admin(cluster_name, &self.url(), &self.pki)
    }

    /// Writes [`admin_kubeconfig`](Self::admin_kubeconfig) to `path` (mode 0600,
    /// atomically), and again whenever the server renews the admin certificate
    /// ([`ClusterPki::keep_admin_kubeconfig`]).
    pub fn keep_admin_kubeconfig(&self, cluster_name: &str, path: &std::path::Path) -> Result<()> {
        Ok(self.pki.keep_admin_kubeconfig(path, cluster_name, &self.url())?)
    }

    /// Stops serving: open watches end, in-flight requests finish (within the drain deadline).
    pub async fn stop(self) {
        self.server.shutdown();
        self.stop.cancel();
        self.tasks.wait().await;
        self.csr_controller.stopped().await;
        self.bootstrap_tokens.stopped().await;
        self.bound_objects.stopped().await;
    }
}

/// How often expired bootstrap token Secrets are looked for.
const TOKEN_CLEANUP_PERIOD: Duration = Duration::from_secs(15);

/// Deletes expired bootstrap token Secrets (kube-controller-manager's `tokencleaner`), every
/// [`TOKEN_CLEANUP_PERIOD`] until `stop`. Failures are logged and retried on the next pass.
async fn clean_bootstrap_tokens(tokens: BootstrapTokens, client: Arc<dyn Client>, stop: CancellationToken) {
    let secrets = Api::<Secret>::namespaced(client, BOOTSTRAP_TOKEN_NAMESPACE);
    let start = tokio::time::Instant::now() + TOKEN_CLEANUP_PERIOD;
    let mut ticks = tokio::time::interval_at(start, TOKEN_CLEANUP_PERIOD);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        for name in tokens.expired(k8s_openapi::jiff::Timestamp::now()) {
            match secrets.delete(&name, &Default::default()).await {
                Ok(_) => tracing::info!(secret = %name, "deleted expired bootstrap token"),
                Err(error) => {
                    tracing::debug!(secret = %name, %error, "deleting an expired bootstrap token failed")
                }
            }
        }
    }
}

/// `addr` with a wildcard IP (`0.0.0.0`, `::`) replaced by the loopback address of its
/// family: where a client on this machine dials a server bound to `addr`.
pub fn dialable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port()),
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use rustls::pki_types::ServerName;
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::*;

    type TestResult<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

    /// The client certificate `client` presents in a new handshake with a server that, like
    /// a node agent, requires one from the cluster CA.
    async fn presented(client: &Arc<rustls::ClientConfig>, pki: &ClusterPki) -> TestResult<Vec<u8>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(pki.server_config(ClientAuth::Required)?);
        let connector = TlsConnector::from(client.clone());
        let name = ServerName::try_from("localhost")?;
        let accept = async { acceptor.accept(listener.accept().await?.0).await };
        let connect = async { connector.connect(name, TcpStream::connect(addr).await?).await };
        let (accepted, connected) = tokio::join!(accept, connect);
        connected?;
        let accepted = accepted?;
        let chain = accepted.get_ref().1.peer_certificates().unwrap_or_default();
        Ok(chain.first().ok_or("no client certificate presented")?.as_ref().to_vec())
    }

    fn common_name(der: &[u8]) -> TestResult<String> {
        let (_, x509) = x509_parser::parse_x509_certificate(der)?;
        let cn = x509.subject().iter_common_name().next().ok_or("no common name")?;
        Ok(cn.as_str()?.to_string())
    }

    #[tokio::test]
    async fn agents_see_the_renewed_client_certificate_from_the_next_handshake() -> TestResult {
        let test = async {
            let dir = tempfile::tempdir()?;
            let pki = ClusterPki::load_or_create(dir.path(), &[])?;
            let client = kubelet_tls(&pki)?;
            let first = presented(&client, &pki).await?;
            assert_eq!(common_name(&first)?, KUBELET_CLIENT_USER);

            assert_eq!(pki.renew_clients_if_due(SystemTime::now())?, 0, "a fresh certificate is not due");
            assert_eq!(presented(&client, &pki).await?, first);
            let later = SystemTime::now() + Duration::from_secs(340 * 24 * 60 * 60);
            assert_eq!(pki.renew_clients_if_due(later)?, 1);
            let renewed = presented(&client, &pki).await?;
            assert_ne!(renewed, first, "the same configuration presents the new certificate");
            assert_eq!(common_name(&renewed)?, KUBELET_CLIENT_USER);
            TestResult::Ok(())
        };
        tokio::time::timeout(Duration::from_secs(30), test).await.map_err(|_| "handshakes hung")?
    }

    #[test]
    fn wildcard_addresses_are_dialed_on_loopback() {
        let cases = [
            ("0.0.0.0:6443", "127.0.0.1:6443"),
            ("[::]:6443", "[::1]:6443"),
            ("10.0.0.1:6443", "10.0.0.1:6443"),
            ("[fd00::1]:6443", "[fd00::1]:6443"),
        ];
        for (bound, dialed) in cases {
            let bound = bound.parse().expect("an address");
            assert_eq!(dialable(bound).to_string(), dialed, "{bound}");
        }
    }
}
