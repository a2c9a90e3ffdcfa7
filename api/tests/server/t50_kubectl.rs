//! The installed kubectl (v1.32) against the server, with no compatibility flags.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result};
use http::Method;

use crate::harness::{Server, within};

const KUBECTL: &str = "/usr/bin/kubectl";

/// kubectl with its own HOME (discovery cache) and a kubeconfig for the server.
struct Kubectl {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Kubectl {
    fn new(server: &Server) -> Result<Option<Kubectl>> {
        if !Path::new(KUBECTL).exists() {
            eprintln!("skipping: {KUBECTL} is not installed");
            return Ok(None);
        }
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("kubeconfig");
        std::fs::write(
            &config,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: {}\n\
                 users:\n- name: u\n  user: {{}}\ncontexts:\n- name: t\n  context:\n    cluster: t\n    user: u\n\
                 current-context: t\n",
                server.url()
            ),
        )?;
        Ok(Some(Kubectl { dir, config }))
    }

    /// Runs kubectl with `args` and `stdin`; returns stdout, failing with stderr on a non-zero exit.
    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let (ok, out, err) = self.try_run(args, stdin).await?;
        anyhow::ensure!(ok, "kubectl {}: {err}", args.join(" "));
        Ok(out)
    }

    async fn try_run(&self, args: &[&str], stdin: Option<&str>) -> Result<(bool, String, String)> {
        use tokio::io::AsyncWriteExt;
        let mut cmd = tokio::process::Command::new(KUBECTL);
        cmd.args(args)
            .env("KUBECONFIG", &self.config)
            .env("HOME", self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("starting kubectl")?;
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.unwrap_or_default().as_bytes()).await?;
        }
        let out = child.wait_with_output().await?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  containers:
  - name: c
    image: busybox
";

fn deployment(image: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: front
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: front
  template:
    metadata:
      labels:
        app: front
    spec:
      containers:
      - name: c
        image: {image}
        ports:
        - containerPort: 80
"
    )
}

#[tokio::test]
async fn kubectl_drives_the_server() -> Result<()> {
    within("kubectl", async {
        let s = Server::start().await?;
        let Some(k) = Kubectl::new(&s)? else { return Ok(()) };

        assert_eq!(k.run(&["create", "-f", "-"], Some(POD)).await?.trim(), "pod/web created");
        let table = k.run(&["get", "pods"], None).await?;
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].split_whitespace().eq(["NAME", "READY", "STATUS", "RESTARTS", "AGE"]), "{table}");
        assert!(lines[1].split_whitespace().take(4).eq(["web", "0/1", "Pending", "0"]), "{table}");
        let wide = k.run(&["get", "pods", "-o", "wide"], None).await?;
        assert!(wide.lines().next().unwrap_or_default().contains("IP"), "{wide}");
        assert_eq!(
            k.run(&["get", "pod", "web", "-o", "jsonpath={.spec.containers[0].image}"], None).await?,
            "busybox"
        );
        let yaml = k.run(&["get", "pod", "web", "-o", "yaml"], None).await?;
        assert!(yaml.contains("name: web") && yaml.contains("uid:"), "{yaml}");
        let json: serde_json::Value =
            serde_json::from_str(&k.run(&["get", "pods", "-o", "json"], None).await?)?;
        assert_eq!(json["items"][0]["metadata"]["name"], "web");
        assert!(k.run(&["get", "pods", "-l", "app=web", "-o", "name"], None).await?.contains("pod/web"));
        assert!(k.run(&["get", "pods", "-l", "app=db"], None).await?.is_empty());
        assert!(
            k.run(&["get", "pods", "--field-selector", "metadata.name=web", "-o", "name"], None)
                .await?
                .contains("pod/web")
        );
        let all = k.run(&["get", "pods", "-A"], None).await?;
        assert!(all.starts_with("NAMESPACE") && all.contains("default"), "{all}");

        assert_eq!(k.run(&["label", "pod", "web", "tier=front"], None).await?.trim(), "pod/web labeled");
        assert_eq!(k.run(&["annotate", "pod", "web", "note=hi"], None).await?.trim(), "pod/web annotated");
        let labels = k
            .run(
                &["get", "pod", "web", "-o", "jsonpath={.metadata.labels.tier}/{.metadata.annotations.note}"],
                None,
            )
            .await?;
        assert_eq!(labels, "front/hi");
        for (kind, patch) in [
            ("merge", r#"{"metadata":{"labels":{"m":"1"}}}"#),
            ("strategic", r#"{"metadata":{"labels":{"s":"1"}}}"#),
            ("json", r#"[{"op":"add","path":"/metadata/labels/j","value":"1"}]"#),
        ] {
            let out = k.run(&["patch", "pod", "web", "--type", kind, "-p", patch], None).await?;
            assert_eq!(out.trim(), "pod/web patched", "{kind}");
        }
        let describe = k.run(&["describe", "pod", "web"], None).await?;
        assert!(
            describe.contains("Name:") && describe.contains("web") && describe.contains("busybox"),
            "{describe}"
        );

        // Client-side apply twice (the second computes a patch from the last-applied annotation).
        assert_eq!(
            k.run(&["apply", "-f", "-"], Some(&deployment("img:1", 2))).await?.trim(),
            "deployment.apps/front created"
        );
        assert_eq!(
            k.run(&["apply", "-f", "-"], Some(&deployment("img:2", 2))).await?.trim(),
            "deployment.apps/front configured"
        );
        assert_eq!(
            k.run(&["apply", "-f", "-"], Some(&deployment("img:2", 2))).await?.trim(),
            "deployment.apps/front unchanged"
        );
        let image = k
            .run(
                &["get", "deploy", "front", "-o", "jsonpath={.spec.template.spec.containers[0].image}"],
                None,
            )
            .await?;
        assert_eq!(image, "img:2");
        let deploys = k.run(&["get", "deployments"], None).await?;
        assert!(
            deploys.lines().next().unwrap_or_default().split_whitespace().eq([
                "NAME",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "AGE"
            ]),
            "{deploys}"
        );
        // Server-side apply.
        // Server-side apply: co-owning what client-side apply set is fine; changing it is a
        // conflict with kubectl-client-side-apply until forced, as in Kubernetes.
        let out = k.run(&["apply", "--server-side", "-f", "-"], Some(&deployment("img:2", 2))).await?;
        assert_eq!(out.trim(), "deployment.apps/front serverside-applied");
        let (ok, _, err) =
            k.try_run(&["apply", "--server-side", "-f", "-"], Some(&deployment("img:3", 2))).await?;
        assert!(
            !ok && err.contains("conflict with \"kubectl-client-side-apply\"") && err.contains(".image"),
            "{err}"
        );
        let out = k
            .run(&["apply", "--server-side", "--force-conflicts", "-f", "-"], Some(&deployment("img:3", 2)))
            .await?;
        assert_eq!(out.trim(), "deployment.apps/front serverside-applied");
        assert_eq!(
            k.run(&["scale", "deployment", "front", "--replicas=4"], None).await?.trim(),
            "deployment.apps/front scaled"
        );
        assert_eq!(k.run(&["get", "deploy", "front", "-o", "jsonpath={.spec.replicas}"], None).await?, "4");

        // replace with a changed object.
        let mut obj: serde_json::Value =
            serde_json::from_str(&k.run(&["get", "pod", "web", "-o", "json"], None).await?)?;
        obj["metadata"]["labels"]["replaced"] = "yes".into();
        let out = k.run(&["replace", "-f", "-"], Some(&serde_json::to_string(&obj)?)).await?;
        assert_eq!(out.trim(), "pod/web replaced");

        // Strict validation by default: an unknown field is refused, naming it.
        let (ok, _, err) = k
            .try_run(
                &["create", "-f", "-"],
                Some(
                    &POD.replace("name: c\n", "name: c\n    bogus: 1\n")
                        .replace("name: web\n", "name: web2\n"),
                ),
            )
            .await?;
        assert!(!ok && err.contains("bogus"), "{err}");

        let res = k.run(&["api-resources"], None).await?;
        assert!(res.lines().any(|l| l.split_whitespace().take(2).eq(["pods", "po"])), "{res}");
        assert!(res.lines().any(|l| l.starts_with("deployments") && l.contains("apps/v1")), "{res}");

        assert_eq!(k.run(&["delete", "pod", "web"], None).await?.trim(), "pod \"web\" deleted");
        let (ok, _, err) = k.try_run(&["get", "pod", "web"], None).await?;
        assert!(!ok && err.contains("NotFound") && err.contains("\"web\" not found"), "{err}");
        s.stop().await;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn kubectl_get_watch_prints_changes() -> Result<()> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    within("kubectl get -w", async {
        let s = Server::start().await?;
        let Some(k) = Kubectl::new(&s)? else { return Ok(()) };
        let cms = "/api/v1/namespaces/default/configmaps";
        s.call(Method::POST, cms, None, br#"{"metadata":{"name":"one"},"data":{"a":"1"}}"#).await?;
        let mut child = tokio::process::Command::new(KUBECTL)
            .args(["get", "configmaps", "-w"])
            .env("KUBECONFIG", &k.config)
            .env("HOME", k.dir.path())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let header = lines.next_line().await?.context("no header")?;
        assert!(header.split_whitespace().eq(["NAME", "DATA", "AGE"]), "{header}");
        let first = lines.next_line().await?.context("no first row")?;
        assert!(first.split_whitespace().take(2).eq(["one", "1"]), "{first}");
        // The watch is running once the list has printed; a new object must show up as a row.
        s.call(Method::POST, cms, None, br#"{"metadata":{"name":"two"},"data":{"a":"1","b":"2"}}"#).await?;
        let row = lines.next_line().await?.context("no watch row")?;
        assert!(row.split_whitespace().take(2).eq(["two", "2"]), "{row}");
        child.kill().await?;
        s.stop().await;
        Ok(())
    })
    .await
}
