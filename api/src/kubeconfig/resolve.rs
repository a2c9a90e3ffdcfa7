//! Following a context to the server, trust anchors and credentials it names.

use std::fs;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{DEFAULT_NAMESPACE, Error, Kubeconfig, Result, User};

/// A context with every reference followed, every file read and every `*-data` decoded:
/// what a client needs to connect.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedContext {
    /// The context's name.
    pub context: String,
    /// The API server's URL.
    pub server: url::Url,
    /// The PEM CA bundle to trust, if the cluster names one.
    pub ca_pem: Option<Vec<u8>>,
    /// Skip verifying the server's certificate.
    pub insecure_skip_tls_verify: bool,
    /// The name to verify the server's certificate against, if not the URL's host.
    pub tls_server_name: Option<String>,
    /// The client certificate and key, PEM, if the user has them.
    pub client_certificate: Option<ClientCertificate>,
    /// The bearer token, if the user has one.
    pub token: Option<String>,
    /// The context's namespace, [`DEFAULT_NAMESPACE`] if it names none.
    pub namespace: String,
}

/// A client certificate and its key, PEM.
#[derive(Clone, PartialEq)]
pub struct ClientCertificate {
    /// The certificate (chain), PEM.
    pub cert_pem: Vec<u8>,
    /// The private key, PEM.
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate").field("cert_pem", &self.cert_pem.len()).finish_non_exhaustive()
    }
}

impl Kubeconfig {
    /// Resolves the current context.
    pub fn current(&self) -> Result<ResolvedContext> {
        if self.current_context.is_empty() {
            return Err(Error::NoCurrentContext);
        }
        self.resolve(&self.current_context)
    }

    /// Resolves the context named `name`: follows its cluster and user, reads the files they
    /// point to and decodes their inline data.
    pub fn resolve(&self, name: &str) -> Result<ResolvedContext> {
        let context = &self
            .contexts
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| Error::MissingContext { context: name.to_string() })?
            .context;
        let cluster = &self
            .clusters
            .iter()
            .find(|c| c.name == context.cluster)
            .ok_or_else(|| Error::MissingCluster {
                context: name.to_string(),
                cluster: context.cluster.clone(),
            })?
            .cluster;
        let user = if context.user.is_empty() {
            // A context without a user connects anonymously, as in kubectl.
            &User::default()
        } else {
            &self
                .users
                .iter()
                .find(|u| u.name == context.user)
                .ok_or_else(|| Error::MissingUser { context: name.to_string(), user: context.user.clone() })?
                .user
        };

        let server = url::Url::parse(&cluster.server).map_err(|source| Error::InvalidServer {
            cluster: context.cluster.clone(),
            server: cluster.server.clone(),
            source,
        })?;
        let cluster_owner = format!("cluster {:?}", context.cluster);
        let user_owner = format!("user {:?}", context.user);
        let ca_pem = self.material(
            &cluster_owner,
            ("certificate-authority-data", &cluster.certificate_authority_data),
            ("certificate-authority", &cluster.certificate_authority),
        )?;
        let cert_pem = self.material(
            &user_owner,
            ("client-certificate-data", &user.client_certificate_data),
            ("client-certificate", &user.client_certificate),
        )?;
        let key_pem = self.material(
            &user_owner,
            ("client-key-data", &user.client_key_data),
            ("client-key", &user.client_key),
        )?;
        let client_certificate = match (cert_pem, key_pem) {
            (Some(cert_pem), Some(key_pem)) => Some(ClientCertificate { cert_pem, key_pem }),
            (None, None) => None,
            _ => return Err(Error::IncompleteClientCertificate { user: context.user.clone() }),
        };
        let token = match (&user.token, &user.token_file) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(file)) => {
                let bytes = self.read_referenced("tokenFile", &user_owner, file)?;
                Some(String::from_utf8_lossy(&bytes).trim().to_string())
            }
            (None, None) => None,
        };
        Ok(ResolvedContext {
            context: name.to_string(),
            server,
            ca_pem,
            insecure_skip_tls_verify: cluster.insecure_skip_tls_verify,
            tls_server_name: cluster.tls_server_name.clone(),
            client_certificate,
            token,
            namespace: context.namespace.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
        })
    }

    /// Inline base64 `data` if present, else the contents of the file `path` names.
    fn material(
        &self,
        owner: &str,
        (data_field, data): (&'static str, &Option<String>),
        (path_field, path): (&'static str, &Option<String>),
    ) -> Result<Option<Vec<u8>>> {
        if let Some(data) = data.as_deref().filter(|d| !d.is_empty()) {
            let decoded = BASE64.decode(data.trim()).map_err(|source| Error::Base64 {
                field: data_field,
                owner: owner.to_string(),
                source,
            })?;
            return Ok(Some(decoded));
        }
        match path.as_deref().filter(|p| !p.is_empty()) {
            Some(path) => self.read_referenced(path_field, owner, path).map(Some),
            None => Ok(None),
        }
    }

    fn read_referenced(&self, field: &'static str, owner: &str, path: &str) -> Result<Vec<u8>> {
        let path = match &self.base_dir {
            Some(dir) => dir.join(path),
            None => PathBuf::from(path),
        };
        fs::read(&path).map_err(|source| Error::ReadReferenced {
            field,
            owner: owner.to_string(),
            path,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL_STYLE: &str = r#"
apiVersion: v1
kind: Config
preferences: {}
clusters:
- name: dev
  cluster:
    server: https://10.0.0.1:6443
    certificate-authority: pki/ca.crt
    extensions:
    - name: client.authentication.k8s.io/exec
      extension: {}
users:
- name: alice
  user:
    client-certificate: /abs/alice.crt
    client-key-data: a2V5
- name: robot
  user:
    tokenFile: token
- name: plugin
  user:
    exec:
      command: get-token
contexts:
- name: alice@dev
  context: {cluster: dev, user: alice, namespace: team}
- name: robot@dev
  context: {cluster: dev, user: robot}
- name: plugin@dev
  context: {cluster: dev, user: plugin}
- name: broken
  context: {cluster: nowhere, user: robot}
current-context: robot@dev
"#;

    #[test]
    fn relative_paths_resolve_against_the_kubeconfig_directory() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        fs::create_dir(dir.path().join("pki"))?;
        fs::write(dir.path().join("pki/ca.crt"), "CA PEM")?;
        fs::write(dir.path().join("token"), "s3cret\n")?;
        let path = dir.path().join("config");
        fs::write(&path, KUBECTL_STYLE)?;

        let config = Kubeconfig::load(&path)?;
        let robot = config.current()?;
        assert_eq!(robot.server.as_str(), "https://10.0.0.1:6443/");
        assert_eq!(robot.ca_pem.as_deref(), Some(&b"CA PEM"[..]));
        assert_eq!(robot.token.as_deref(), Some("s3cret"));
        assert_eq!(robot.client_certificate, None);
        assert_eq!(robot.namespace, DEFAULT_NAMESPACE);

        // An exec-plugin user resolves without credentials rather than failing.
        let plugin = config.resolve("plugin@dev")?;
        assert_eq!((plugin.token, plugin.client_certificate), (None, None));
        Ok(())
    }

    #[test]
    fn errors_name_what_is_missing() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("config");
        fs::write(&path, KUBECTL_STYLE)?;
        let config = Kubeconfig::load(&path)?;

        let err = config.resolve("alice@dev").expect_err("alice's certificate file does not exist");
        assert!(
            matches!(&err, Error::ReadReferenced { field: "certificate-authority", path, .. }
                if path == &dir.path().join("pki/ca.crt")),
            "{err:?}"
        );
        let err = config.resolve("broken").expect_err("cluster nowhere");
        assert_eq!(err.to_string(), r#"cluster "nowhere" of context "broken" not found in kubeconfig"#);
        let err = config.resolve("absent").expect_err("no such context");
        assert_eq!(err.to_string(), r#"context "absent" not found in kubeconfig"#);

        let mut no_user = config.clone();
        no_user.contexts[0].context.user = "bob".into();
        let err = no_user.resolve("alice@dev").expect_err("no user bob");
        assert_eq!(err.to_string(), r#"user "bob" of context "alice@dev" not found in kubeconfig"#);

        let mut no_current = config;
        no_current.current_context.clear();
        assert!(matches!(no_current.current(), Err(Error::NoCurrentContext)));
        Ok(())
    }
}
