//! kubeconfig files: the [`Kubeconfig`] model (the subset of kubectl's format that certificate
//! and token authentication need), written for kubectl and read back by Flotilla's clients.
//!
//! Credentials may be inline (`certificate-authority-data`, `client-certificate-data`,
//! `client-key-data`: base64 of PEM) or file paths (`certificate-authority`,
//! `client-certificate`, `client-key`, `tokenFile`), which [`Kubeconfig::current`] resolves
//! against the directory of the file the kubeconfig was [loaded](Kubeconfig::load) from. Inline
//! data wins over a path, a token over a token file, as in client-go. Fields this model does
//! not know (exec plugins, preferences, extensions) are ignored when reading.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Deserializer, Serialize};

use crate::pki::{self, ClusterPki};

mod resolve;

pub use resolve::{ClientCertificate, ResolvedContext};

/// The namespace of a context that names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Why a kubeconfig could not be read, written or resolved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig file could not be read.
    #[error("reading kubeconfig {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The kubeconfig file is not a valid kubeconfig.
    #[error("parsing kubeconfig {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// A kubeconfig document is not valid.
    #[error("parsing kubeconfig YAML")]
    Yaml(#[source] serde_yaml_ng::Error),
    /// The kubeconfig could not be serialized.
    #[error("serializing kubeconfig")]
    Serialize(#[source] serde_yaml_ng::Error),
    /// The kubeconfig file could not be written.
    #[error("writing kubeconfig {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `current-context` is not set.
    #[error("the kubeconfig has no current-context")]
    NoCurrentContext,
    /// The requested context does not exist.
    #[error("context {context:?} not found in kubeconfig")]
    MissingContext {
        /// The context.
        context: String,
    },
    /// A context names a cluster that does not exist.
    #[error("cluster {cluster:?} of context {context:?} not found in kubeconfig")]
    MissingCluster {
        /// The context.
        context: String,
        /// The cluster it names.
        cluster: String,
    },
    /// A context names a user that does not exist.
    #[error("user {user:?} of context {context:?} not found in kubeconfig")]
    MissingUser {
        /// The context.
        context: String,
        /// The user it names.
        user: String,
    },
    /// A cluster has no usable server URL.
    #[error("server {server:?} of cluster {cluster:?} is not a valid URL")]
    InvalidServer {
        /// The cluster.
        cluster: String,
        /// The server as written.
        server: String,
        /// The cause.
        #[source]
        source: url::ParseError,
    },
    /// A `*-data` field is not base64.
    #[error("{field} of {owner} is not valid base64")]
    Base64 {
        /// The field, as spelled in the file.
        field: &'static str,
        /// `cluster "name"` or `user "name"`.
        owner: String,
        /// The cause.
        #[source]
        source: base64::DecodeError,
    },
    /// A file a field points to could not be read.
    #[error("reading {field} of {owner} from {path}")]
    ReadReferenced {
        /// The field, as spelled in the file.
        field: &'static str,
        /// `cluster "name"` or `user "name"`.
        owner: String,
        /// The file, resolved against the kubeconfig's directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A user has a client certificate without a key, or a key without a certificate.
    #[error("user {user:?} needs both a client certificate and a client key")]
    IncompleteClientCertificate {
        /// The user.
        user: String,
    },
}

/// Result of kubeconfig operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A kubeconfig file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    /// Always `v1`.
    #[serde(rename = "apiVersion", default = "api_version")]
    pub api_version: String,
    /// Always `Config`.
    #[serde(default = "kind")]
    pub kind: String,
    /// The clusters (API servers) by name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub clusters: Vec<NamedCluster>,
    /// The users (credentials) by name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub users: Vec<NamedUser>,
    /// The contexts (cluster, user, namespace) by name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub contexts: Vec<NamedContext>,
    /// The context used when none is chosen.
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_as_default")]
    pub current_context: String,
    /// The directory relative file paths are resolved against: that of the loaded file, or
    /// the working directory if `None`.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

/// A named [`Cluster`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NamedCluster {
    /// The name contexts refer to it by.
    pub name: String,
    /// The cluster.
    pub cluster: Cluster,
}

/// How to reach and trust an API server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Cluster {
    /// The server URL, such as `https://127.0.0.1:6443`.
    #[serde(default)]
    pub server: String,
    /// Base64 of the PEM CA bundle to trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority_data: Option<String>,
    /// Path of the PEM CA bundle to trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<String>,
    /// Skip verifying the server's certificate.
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure_skip_tls_verify: bool,
    /// The name to verify the server's certificate against, if not the URL's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
}

/// A named [`User`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NamedUser {
    /// The name contexts refer to it by.
    pub name: String,
    /// The credentials.
    pub user: User,
}

/// Credentials (kubectl calls them `AuthInfo`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct User {
    /// Base64 of the PEM client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_data: Option<String>,
    /// Path of the PEM client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// Base64 of the PEM client key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_data: Option<String>,
    /// Path of the PEM client key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
    /// A bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Path of a file holding a bearer token (camelCase in kubectl's format too).
    #[serde(rename = "tokenFile", default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
}

/// A named [`Context`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NamedContext {
    /// The name, as in `kubectl --context NAME`.
    pub name: String,
    /// The context.
    pub context: Context,
}

/// A cluster, a user and a default namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// The cluster's name.
    #[serde(default)]
    pub cluster: String,
    /// The user's name.
    #[serde(default)]
    pub user: String,
    /// The namespace requests default to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl Default for Kubeconfig {
    fn default() -> Self {
        Kubeconfig {
            api_version: api_version(),
            kind: kind(),
            clusters: Vec::new(),
            users: Vec::new(),
            contexts: Vec::new(),
            current_context: String::new(),
            base_dir: None,
        }
    }
}

impl Kubeconfig {
    /// A kubeconfig with one cluster named `cluster_name` at `server_url` trusting `pki`'s CA,
    /// the admin user (`flotilla-admin`) with inline client certificate and key, and a
    /// current context `flotilla-admin@<cluster_name>` joining them.
    pub fn for_admin(cluster_name: &str, server_url: &str, pki: &ClusterPki) -> Kubeconfig {
        let user = pki::ADMIN_COMMON_NAME.to_string();
        let context = format!("{user}@{cluster_name}");
        // One read of both: a renewal between two reads could pair a new certificate with
        // the old key.
        let admin = pki.admin_credential();
        Kubeconfig {
            clusters: vec![NamedCluster {
                name: cluster_name.to_string(),
                cluster: Cluster {
                    server: server_url.to_string(),
                    certificate_authority_data: Some(BASE64.encode(pki.ca_pem())),
                    ..Cluster::default()
                },
            }],
            users: vec![NamedUser {
                name: user.clone(),
                user: User {
                    client_certificate_data: Some(BASE64.encode(&admin.cert_pem)),
                    client_key_data: Some(BASE64.encode(&admin.key_pem)),
                    ..User::default()
                },
            }],
            contexts: vec![NamedContext {
                name: context.clone(),
                context: Context { cluster: cluster_name.to_string(), user, namespace: None },
            }],
            current_context: context,
            ..Kubeconfig::default()
        }
    }

    /// Parses a kubeconfig document; relative paths in it resolve against the working directory.
    pub fn from_yaml(yaml: &str) -> Result<Kubeconfig> {
        serde_yaml_ng::from_str(yaml).map_err(Error::Yaml)
    }

    /// The kubeconfig as YAML.
    pub fn to_yaml(&self) -> Result<String> {
        serde_yaml_ng::to_string(self).map_err(Error::Serialize)
    }

    /// Reads the kubeconfig at `path`; relative paths in it resolve against `path`'s directory.
    pub fn load(path: &Path) -> Result<Kubeconfig> {
        let yaml =
            fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
        let mut config: Kubeconfig = serde_yaml_ng::from_str(&yaml)
            .map_err(|source| Error::Parse { path: path.to_path_buf(), source })?;
        config.base_dir = Some(path.parent().map(Path::to_path_buf).unwrap_or_default());
        Ok(config)
    }

    /// Writes the kubeconfig to `path`, readable only by its owner (it holds credentials),
    /// atomically; missing parent directories are created.
    pub fn write(&self, path: &Path) -> Result<()> {
        let yaml = self.to_yaml()?;
        let write_error = |source| Error::Write { path: path.to_path_buf(), source };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            pki::create_private_dir(parent).map_err(write_error)?;
        }
        pki::write_atomic(path, yaml.as_bytes(), pki::PRIVATE).map_err(write_error)
    }
}

fn api_version() -> String {
    "v1".to_string()
}

fn kind() -> String {
    "Config".to_string()
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// kubectl writes `clusters: null` for an empty list.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_data_round_trips_through_yaml() -> anyhow::Result<()> {
        let config = Kubeconfig {
            clusters: vec![NamedCluster {
                name: "c".into(),
                cluster: Cluster {
                    server: "https://127.0.0.1:1".into(),
                    certificate_authority_data: Some(BASE64.encode("ca")),
                    ..Cluster::default()
                },
            }],
            users: vec![NamedUser {
                name: "u".into(),
                user: User {
                    client_certificate_data: Some(BASE64.encode("cert")),
                    client_key_data: Some(BASE64.encode("key")),
                    token: Some("t".into()),
                    ..User::default()
                },
            }],
            contexts: vec![NamedContext {
                name: "x".into(),
                context: Context { cluster: "c".into(), user: "u".into(), namespace: Some("ns".into()) },
            }],
            current_context: "x".into(),
            ..Kubeconfig::default()
        };
        let yaml = config.to_yaml()?;
        assert!(yaml.starts_with("apiVersion: v1\nkind: Config\n"), "{yaml}");
        assert!(
            yaml.contains("certificate-authority-data:") && yaml.contains("current-context: x"),
            "{yaml}"
        );
        assert!(!yaml.contains("insecure-skip-tls-verify"), "false flags are omitted: {yaml}");
        let parsed = Kubeconfig::from_yaml(&yaml)?;
        assert_eq!(parsed, config);

        let resolved = parsed.current()?;
        let client = resolved.client_certificate.expect("inline certificate");
        assert_eq!((client.cert_pem, client.key_pem), (b"cert".to_vec(), b"key".to_vec()));
        assert_eq!((resolved.token.as_deref(), resolved.namespace.as_str()), (Some("t"), "ns"));

        let mut bad = config;
        bad.users[0].user.client_key_data = Some("not base64!".into());
        let err = bad.current().expect_err("bad base64");
        assert_eq!(err.to_string(), r#"client-key-data of user "u" is not valid base64"#);
        bad.users[0].user.client_key_data = None;
        assert!(matches!(bad.current(), Err(Error::IncompleteClientCertificate { .. })));
        Ok(())
    }

    #[test]
    fn null_lists_parse_as_empty() -> anyhow::Result<()> {
        let config =
            Kubeconfig::from_yaml("apiVersion: v1\nkind: Config\nclusters: null\nusers:\ncontexts: []\n")?;
        assert!(config.clusters.is_empty() && config.users.is_empty());
        assert!(matches!(config.current(), Err(Error::NoCurrentContext)));
        Ok(())
    }
}
