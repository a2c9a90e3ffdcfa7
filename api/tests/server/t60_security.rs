//! The secured server over HTTPS: client certificates, tokens, RBAC, node rules, and
//! `kubectl auth can-i`, with the real kubectl.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use flotilla_api::auth::UserInfo;
use flotilla_api::kubeconfig::Kubeconfig;
use flotilla_api::secure::{SecureApi, SecureOptions};
use flotilla_core::MemStore;
use flotilla_core::object::KindRegistry;
use flotilla_core::registry::Registry;

use crate::harness::within;

const KUBECTL: &str = "/usr/bin/kubectl";

struct Cluster {
    api: SecureApi,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let registry = Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin());
        let opts = SecureOptions::new(dir.path().join("pki"), "127.0.0.1:0".parse()?);
        let api = SecureApi::start(registry, opts).await?;
        Ok(Cluster { api, dir })
    }

    /// A kubeconfig file for the admin, or with `user` replaced.
    fn kubeconfig(&self, name: &str, edit: impl FnOnce(&mut Kubeconfig)) -> Result<PathBuf> {
        let mut k = self.api.admin_kubeconfig("test");
        edit(&mut k);
        let path = self.dir.path().join(name);
        k.write(&path)?;
        Ok(path)
    }

    /// kubectl with `config`; (success, stdout, stderr).
    async fn kubectl(&self, config: &Path, args: &[&str], stdin: &str) -> Result<(bool, String, String)> {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new(KUBECTL)
            .args(args)
            .env("KUBECONFIG", config)
            .env("HOME", self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting kubectl")?;
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.as_bytes()).await?;
        }
        let out = child.wait_with_output().await?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

fn with_token(token: &str) -> impl FnOnce(&mut Kubeconfig) + '_ {
    move |k| {
        for u in &mut k.users {
            u.user.client_certificate_data = None;
            u.user.client_key_data = None;
            u.user.token = Some(token.to_string());
        }
    }
}

#[tokio::test]
async fn rbac_decides_and_kubectl_auth_can_i_reports_it() -> Result<()> {
    if !Path::new(KUBECTL).exists() {
        eprintln!("skipping: {KUBECTL} is not installed");
        return Ok(());
    }
    within("security", async {
        let c = Cluster::start().await?;
        let admin = c.kubeconfig("admin", |_| {})?;
        c.api.authenticator().add_token("alice-token", UserInfo::new("alice", Vec::<String>::new()));
        let alice = c.kubeconfig("alice", with_token("alice-token"))?;
        let nobody = c.kubeconfig("nobody", with_token("wrong-token"))?;

        // The admin certificate is in system:masters.
        let r = c.kubectl(&admin, &["auth", "can-i", "delete", "nodes"], "").await?;
        assert_eq!(r.1, "yes", "{r:?}");
        let (ok, out, _) = c.kubectl(&admin, &["get", "namespaces", "-o", "name"], "").await?;
        assert!(ok && out.contains("namespace/kube-system"), "{out}");

        // alice is authenticated but has no role.
        let (ok, out, _) = c.kubectl(&alice, &["auth", "can-i", "list", "pods"], "").await?;
        assert!(!ok && out == "no", "{out}");
        let (ok, _, err) = c.kubectl(&alice, &["get", "pods"], "").await?;
        assert!(!ok, "alice listed pods");
        assert!(
            err.contains(r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default""#),
            "{err}"
        );
        // A bad token is 401.
        let (ok, _, err) = c.kubectl(&nobody, &["get", "pods"], "").await?;
        assert!(!ok && err.contains("Unauthorized") || err.contains("logged in"), "{err}");

        // Binding the bootstrap `view` role to alice in default lets her read there only.
        // (`kubectl create rolebinding` sends protobuf, decoded like JSON: see t90.)
        let binding = "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: alice-view\n  namespace: default\n\
                       roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: view\n\
                       subjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: User\n  name: alice\n";
        let (ok, _, err) = c.kubectl(&admin, &["create", "-f", "-"], binding).await?;
        assert!(ok, "{err}");
        let (ok, _, err) = c.kubectl(&admin, &["create", "rolebinding", "x", "--clusterrole=view", "--user=bob"], "").await?;
        assert!(ok, "{err}");
        let mut allowed = false;
        for _ in 0..100 {
            if c.kubectl(&alice, &["auth", "can-i", "list", "pods"], "").await?.1 == "yes" {
                allowed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(allowed, "the RoleBinding never took effect");
        assert!(c.kubectl(&alice, &["get", "pods"], "").await?.0);
        assert_eq!(c.kubectl(&alice, &["auth", "can-i", "list", "pods", "-n", "kube-system"], "").await?.1, "no");
        assert_eq!(c.kubectl(&alice, &["auth", "can-i", "create", "pods"], "").await?.1, "no");

        // A node credential may register only its own Node.
        let (cert, key) = c.api.pki().issue_client_cert("system:node:n1", &["system:nodes".to_string()], Duration::from_secs(3600))?;
        let node = c.kubeconfig("node", |k| {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD;
            for u in &mut k.users {
                u.user.client_certificate_data = Some(b64.encode(&cert));
                u.user.client_key_data = Some(b64.encode(&key));
            }
        })?;
        let node_yaml = |name: &str| format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n");
        let (ok, _, err) = c.kubectl(&node, &["create", "-f", "-"], &node_yaml("n1")).await?;
        assert!(ok, "{err}");
        let (ok, _, err) = c.kubectl(&node, &["create", "-f", "-"], &node_yaml("n2")).await?;
        assert!(!ok && err.contains("Forbidden") || err.contains("forbidden"), "{err}");
        let (ok, _, err) = c.kubectl(&node, &["label", "node", "n1", "zone=a"], "").await?;
        assert!(ok, "{err}");
        c.api.stop().await;
        Ok(())
    })
    .await
}
