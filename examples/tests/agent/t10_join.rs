//! The whole join: token, refusals, registration, CSRs, a pod with its logs, restart.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::{KUBECTL, flotilla, free_port, kubectl, spawn, stop, wait_for};

/// The value after `key` on the line starting with `key` in `text`.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix(key)).map(str::trim)
}

#[tokio::test]
async fn an_agent_joins_with_a_bootstrap_token() -> Result<()> {
    if !Path::new(KUBECTL).exists() {
        eprintln!("skipping: {KUBECTL} is not installed");
        return Ok(());
    }
    tokio::time::timeout(Duration::from_secs(180), async {
        let dir = tempfile::tempdir()?;
        let agent_dir = tempfile::tempdir()?;
        let home = tempfile::tempdir()?;
        let (api, etcd, raft) = (free_port()?, free_port()?, free_port()?);
        let data = dir.path().to_str().context("path")?;
        let up = spawn(
            &[
                "up",
                "--data-dir",
                data,
                "--runtime",
                "none",
                "--proxy",
                "off",
                "--api-listen",
                &format!("127.0.0.1:{api}"),
                "--etcd-listen",
                &format!("127.0.0.1:{etcd}"),
                "--raft-listen",
                &format!("127.0.0.1:{raft}"),
            ],
            "export KUBECONFIG=",
        )
        .await?;
        let kubeconfig = dir.path().join("kubeconfig");
        let server = format!("https://127.0.0.1:{api}");

        let (ok, out, err) = flotilla(&["token", "create", "--data-dir", data, "--ttl", "1h"]).await?;
        assert!(ok, "token create failed: {err}");
        let token = field(&out, "token:").context("a token line")?.to_string();
        let ca_hash = field(&out, "ca-hash:").context("a ca-hash line")?.to_string();
        assert_eq!(token.len(), 23, "{out}");
        assert!(ca_hash.starts_with("sha256:") && ca_hash.len() == 71, "{out}");
        assert!(out.contains(&format!("flotilla agent --server {server} --token {token} --ca-hash {ca_hash}")), "{out}");
        let (ok, listed, err) = flotilla(&["token", "list", "--data-dir", data]).await?;
        assert!(ok, "{err}");
        assert!(listed.contains(&token) && listed.contains("authentication"), "{listed}");
        let id = token.split('.').next().context("id")?;
        let secrets = kubectl(&kubeconfig, home.path(), &["get", "secrets", "-n", "kube-system", "-o", "name"]).await?;
        assert!(secrets.contains(&format!("secret/bootstrap-token-{id}")), "{secrets}");

        // An expired token, written as kubeadm writes them.
        let expired = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bootstrap-token-zzzzzz\n  namespace: kube-system\n\
                       type: bootstrap.kubernetes.io/token\nstringData:\n  token-id: zzzzzz\n  token-secret: 0123456789abcdef\n  \
                       expiration: \"2020-01-01T00:00:00Z\"\n  usage-bootstrap-authentication: \"true\"\n";
        let path = home.path().join("expired.yaml");
        std::fs::write(&path, expired)?;
        kubectl(&kubeconfig, home.path(), &["apply", "-f", path.to_str().context("path")?]).await?;

        let kubelet = format!("127.0.0.1:{}", free_port()?);
        // The first server named is down: the node joins, and talks, through the second.
        let servers = format!("https://127.0.0.1:{},{server}", free_port()?);
        let agent_data = agent_dir.path().to_str().context("path")?;
        let agent_args = |token: &str| -> Vec<String> {
            [
                "agent", "--server", &servers, "--token", token, "--ca-hash", &ca_hash, "--data-dir", agent_data,
                "--runtime", "process", "--node-name", "joined", "--kubelet-listen", &kubelet, "--proxy", "off",
                "--bootstrap-timeout", "30s", "--cert-lifetime", "2h",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        let run = |args: Vec<String>| async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            flotilla(&refs).await
        };
        let (ok, _, err) = run(agent_args("not-a-token")).await?;
        assert!(!ok && err.contains("a bootstrap token has the form [a-z0-9]{6}.[a-z0-9]{16}"), "malformed: {err}");
        let (ok, _, err) = run(agent_args("zzzzzz.0123456789abcdef")).await?;
        assert!(!ok && err.contains("the API server refused bootstrap token zzzzzz"), "expired: {err}");
        let (ok, _, err) = run(agent_args("abcdef.0123456789abcdef")).await?;
        assert!(!ok && err.contains("the API server refused bootstrap token abcdef"), "unknown: {err}");
        let mut wrong_pin = agent_args(&token);
        let pin_at = wrong_pin.iter().position(|a| a == "--ca-hash").context("flag")? + 1;
        wrong_pin[pin_at] = format!("sha256:{}", "0".repeat(64));
        let (ok, _, err) = run(wrong_pin).await?;
        assert!(!ok && err.contains("presented no CA matching"), "wrong pin: {err}");
        let mut too_short = agent_args(&token);
        let at = too_short.iter().position(|a| a == "--cert-lifetime").context("flag")? + 1;
        too_short[at] = "5m".into();
        let (ok, _, err) = run(too_short).await?;
        assert!(!ok && err.contains("--cert-lifetime must be at least 10m"), "too short: {err}");

        let args = agent_args(&token);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let agent = spawn(&refs, "  proxy:").await?;
        assert!(agent.summary.iter().any(|l| l.contains("issued now")), "{:?}", agent.summary);

        let ready = ["get", "node", "joined", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"];
        let status = wait_for(&kubeconfig, home.path(), &ready, |o| o == "True").await?;
        assert_eq!(status, "True", "the joined node registered Ready");
        let csr = kubectl(&kubeconfig, home.path(), &["get", "csr"]).await?;
        let rows: Vec<&str> = csr.lines().skip(1).collect();
        assert_eq!(rows.len(), 2, "{csr}");
        let client_row = rows.iter().find(|r| r.contains("kube-apiserver-client-kubelet")).context("client CSR")?;
        assert!(client_row.contains(&format!("system:bootstrap:{id}")), "{csr}");
        assert!(rows.iter().all(|r| r.contains("Approved,Issued")), "{csr}");
        // `--cert-lifetime 2h` is the requests' expirationSeconds (REQUESTEDDURATION).
        assert!(rows.iter().all(|r| r.split_whitespace().any(|cell| cell == "2h")), "{csr}");
        assert!(rows.iter().any(|r| r.contains("kubernetes.io/kubelet-serving") && r.contains("system:node:joined")), "{csr}");

        let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hello\nspec:\n  terminationGracePeriodSeconds: 2\n  \
                   containers:\n  - name: app\n    image: busybox\n    command: [\"/bin/sh\", \"-c\", \"echo hello from the joined node; exec sleep 600\"]\n";
        let path = home.path().join("pod.yaml");
        std::fs::write(&path, pod)?;
        kubectl(&kubeconfig, home.path(), &["apply", "-f", path.to_str().context("path")?]).await?;
        let phase = ["get", "pod", "hello", "-o", "jsonpath={.status.phase} {.spec.nodeName}"];
        let running = wait_for(&kubeconfig, home.path(), &phase, |o| o == "Running joined").await?;
        assert_eq!(running, "Running joined");
        let logs = wait_for(&kubeconfig, home.path(), &["logs", "hello"], |o| !o.is_empty()).await?;
        assert_eq!(logs, "hello from the joined node", "kubectl logs through the joined node's endpoint");
        kubectl(&kubeconfig, home.path(), &["delete", "pod", "hello", "--wait=false"]).await?;
        let left = wait_for(&kubeconfig, home.path(), &["get", "pods", "-o", "name"], str::is_empty).await?;
        assert_eq!(left, "", "the joined node finished the deletion");
        stop(agent).await?;

        // A restart reuses the stored credentials: no token needed.
        let args = agent_args("");
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let agent = spawn(&refs, "  proxy:").await?;
        assert!(agent.summary.iter().any(|l| l.contains("reused")), "{:?}", agent.summary);
        stop(agent).await?;
        stop(up).await?;
        anyhow::Ok(())
    })
    .await
    .context("flotilla agent joining: timed out")?
}
