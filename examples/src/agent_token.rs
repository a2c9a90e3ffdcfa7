//! `flotilla token create|list`: bootstrap tokens for `flotilla agent`, kept as Kubernetes
//! keeps them (Secrets of type `bootstrap.kubernetes.io/token` in `kube-system`), so kubectl
//! sees them and kubeadm's conventions apply.
//!
//! `create` prints the token and the CA pin (`sha256:<hex>` of the CA's public key) a node
//! checks before it trusts the server, and the `flotilla agent` line that joins a node.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

pub(crate) use crate::host::parse_ttl;
use flotilla_api::auth::authn::{
    BOOTSTRAP_TOKEN_NAMESPACE, BOOTSTRAP_TOKEN_SECRET_TYPE, BootstrapToken, TokenSecret, valid_extra_group,
};
use flotilla_api::client::RemoteClient;
use flotilla_api::kubeconfig::Kubeconfig;
use flotilla_core::client::{Api, Client, ListOptions};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Where to reach the cluster: a kubeconfig, or the one `flotilla up` keeps in its data dir.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct ClusterArgs {
    /// An admin kubeconfig (default: `<data-dir>/kubeconfig`).
    #[arg(long)]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// The data directory of `flotilla up` or `flotilla server`, for its kubeconfig.
    #[arg(long, env = "FLOTILLA_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
}

/// Flags of `flotilla token create`.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct CreateArgs {
    #[command(flatten)]
    pub(crate) cluster: ClusterArgs,
    /// How long the token is valid (`30m`, `24h`, `7d`, `1h30m`; `0` never expires).
    #[arg(long, default_value = "24h", value_parser = parse_ttl)]
    pub(crate) ttl: Duration,
    /// A note kept with the token.
    #[arg(long, default_value = "")]
    pub(crate) description: String,
    /// Extra groups for the token's user, each `system:bootstrappers:...` (repeatable).
    #[arg(long = "group")]
    pub(crate) groups: Vec<String>,
}

/// The admin client and the kubeconfig context it came from.
fn cluster(
    args: &ClusterArgs,
) -> anyhow::Result<(Arc<dyn Client>, flotilla_api::kubeconfig::ResolvedContext)> {
    let path = match &args.kubeconfig {
        Some(p) => p.clone(),
        None => crate::data_dir(args.data_dir.clone())?.join(crate::up::KUBECONFIG_FILE),
    };
    let context = Kubeconfig::load(&path)
        .and_then(|k| k.current())
        .with_context(|| format!("reading kubeconfig {} (has the cluster started there?)", path.display()))?;
    let client = RemoteClient::from_context(&context).context("building the API client")?;
    Ok((Arc::new(client), context))
}

/// `sha256:<hex>` of the kubeconfig's CA, if it has one.
fn ca_pin(context: &flotilla_api::kubeconfig::ResolvedContext) -> anyhow::Result<String> {
    let pem = context.ca_pem.as_deref().context("the kubeconfig names no CA certificate")?;
    Ok(flotilla_api::pki::ca_hash_pem(pem)?)
}

/// `flotilla token create`.
pub(crate) async fn create(args: CreateArgs) -> anyhow::Result<()> {
    for g in &args.groups {
        anyhow::ensure!(valid_extra_group(g), "--group {g:?} must look like system:bootstrappers:<name>");
    }
    let (client, context) = cluster(&args.cluster)?;
    let token = BootstrapToken::generate();
    let expiration = if args.ttl.is_zero() {
        None
    } else {
        let ttl = SignedDuration::try_from(args.ttl).context("--ttl is too long")?;
        Some(Timestamp::now().checked_add(ttl).context("--ttl is too long")?)
    };
    let mut secret = TokenSecret::new(token.clone(), expiration, args.groups.clone());
    secret.usage_signing = false;
    secret.description = args.description.clone();
    Api::<Secret>::namespaced(client, BOOTSTRAP_TOKEN_NAMESPACE)
        .create(&secret.to_secret())
        .await
        .with_context(|| format!("creating Secret {BOOTSTRAP_TOKEN_NAMESPACE}/{}", token.secret_name()))?;
    let pin = ca_pin(&context)?;
    println!("token:   {token}");
    println!("ca-hash: {pin}");
    match expiration {
        Some(e) => println!("expires: {e}"),
        None => println!("expires: never"),
    }
    println!("join a node with:");
    println!(
        "  flotilla agent --server {} --token {token} --ca-hash {pin}",
        context.server.as_str().trim_end_matches('/')
    );
    Ok(())
}

/// `flotilla token list`: the bootstrap tokens, as `kubeadm token list` shows them.
pub(crate) async fn list(args: ClusterArgs) -> anyhow::Result<()> {
    let (client, _) = cluster(&args)?;
    let opts = ListOptions {
        field_selector: Some(format!("type={BOOTSTRAP_TOKEN_SECRET_TYPE}")),
        ..Default::default()
    };
    let secrets = Api::<Secret>::namespaced(client, BOOTSTRAP_TOKEN_NAMESPACE)
        .list(&opts)
        .await
        .context("listing bootstrap token Secrets")?;
    println!("{:<24} {:<22} {:<16} {:<20} EXTRA GROUPS", "TOKEN", "EXPIRES", "USAGES", "DESCRIPTION");
    let now = Timestamp::now();
    for s in &secrets.items {
        let name = s.metadata.name.clone().unwrap_or_default();
        let t = match TokenSecret::from_secret(s) {
            Ok(t) => t,
            Err(e) => {
                println!("{name:<24} <invalid: {e}>");
                continue;
            }
        };
        let expires = match t.expiration {
            None => "never".to_string(),
            Some(_) if t.is_expired(now) => "expired".to_string(),
            Some(e) => e.to_string(),
        };
        let mut usages = Vec::new();
        if t.usage_authentication {
            usages.push("authentication");
        }
        if t.usage_signing {
            usages.push("signing");
        }
        let description = if t.description.is_empty() { "<none>" } else { &t.description };
        println!(
            "{:<24} {:<22} {:<16} {:<20} {}",
            t.token.to_string(),
            expires,
            usages.join(","),
            description,
            t.extra_groups.join(",")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        let cases: &[(&str, Option<u64>)] = &[
            ("24h", Some(86400)),
            ("30m", Some(1800)),
            ("1h30m", Some(5400)),
            ("7d", Some(604800)),
            ("45s", Some(45)),
            ("0", Some(0)),
            ("", None),
            ("24", None),
            ("h", None),
            ("1w", None),
            ("-1h", None),
            ("99999999999999999999h", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_ttl(text).ok().map(|d| d.as_secs()), *want, "{text:?}");
        }
    }
}
