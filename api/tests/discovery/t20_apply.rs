//! `kubectl apply` with its default `--validate=strict`: kubectl must find server-side field
//! validation in the OpenAPI v3 documents, and must compute its patches from its compiled-in
//! types (built-in kinds) or as a JSON merge patch (user kinds), never from a schema here.

use anyhow::Result;
use http::Method;
use serde_json::{Value, json};

use crate::{Kubectl, Seen, Server, within};

/// Logged at `-v=7` when the OpenAPI v3 check of `fieldValidation` support failed and kubectl
/// tries OpenAPI v2 (cli-runtime `pkg/resource/fallback_query_param_verifier.go`).
const V3_FAILED: &str = "falling back to legacy";
/// Logged when kubectl concluded that the server cannot validate (`pkg/validation/schema.go`).
const NO_SERVER_VALIDATION: &str = "cannot perform warn validation";

/// Changes the image of `app` in the existing pod `web`.
const WEB: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: app
    image: nginx:2
  - name: sidecar
    image: busybox:1
";

/// A pod the server does not have.
const FRESH: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: fresh
spec:
  containers:
  - name: app
    image: nginx:2
";

const GAME: &str = "\
apiVersion: games.example.com/v1
kind: Game
metadata:
  name: g1
spec:
  players:
  - name: a
  - name: c
";

const LIST: &str = "\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: one
  data:
    a: \"1\"
";

/// A Binding has no PATCH operation in `api/v1`, so kubectl's v3 check fails for it.
const BINDING: &str = "\
apiVersion: v1
kind: Binding
metadata:
  name: web
target:
  kind: Node
  name: n1
";

fn writes(seen: &[Seen], method: Method, path: &str) -> Vec<Seen> {
    seen.iter().filter(|s| s.method == method && s.path == path).cloned().collect()
}

fn has_strict(s: &Seen) -> bool {
    url::form_urlencoded::parse(s.query.as_bytes()).any(|(k, v)| k == "fieldValidation" && v == "Strict")
}

/// Creating an object needs no patch, so kubectl has no reason to read OpenAPI v2 unless it
/// validates client-side, which it does only if the v3 documents deny server-side validation.
#[tokio::test]
async fn apply_relies_on_server_side_validation() -> Result<()> {
    within("kubectl apply (create) of a pod against the fake server", async {
        let server = Server::start().await?;
        let Some(kubectl) = Kubectl::new(&server)? else { return Ok(()) };
        let file = kubectl.file("fresh.yaml", FRESH)?;
        let out = kubectl.run(&["apply", "-f", &file, "-v=7"]).await?;
        assert!(out.stdout.contains("pod/fresh created"), "{}", out.stdout);
        assert!(!out.stderr.contains(V3_FAILED), "kubectl fell back from OpenAPI v3:\n{}", out.stderr);

        let seen = server.seen();
        assert!(
            seen.iter().any(|s| s.path == "/openapi/v3/api/v1" && s.query.starts_with("hash=")),
            "kubectl read the api/v1 document by its hash"
        );
        assert!(!seen.iter().any(|s| s.path == "/openapi/v2"), "kubectl validated client-side: {seen:?}");
        let creates = writes(&seen, Method::POST, "/api/v1/namespaces/default/pods");
        assert_eq!(creates.len(), 1, "{seen:?}");
        assert!(has_strict(&creates[0]), "query {:?}", creates[0].query);
        server.stop().await;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn apply_patches_with_builtin_merge_keys() -> Result<()> {
    within("kubectl apply (patch) of a pod against the fake server", async {
        let server = Server::start().await?;
        let Some(kubectl) = Kubectl::new(&server)? else { return Ok(()) };
        let file = kubectl.file("web.yaml", WEB)?;
        let out = kubectl.run(&["apply", "-f", &file, "-v=7"]).await?;
        assert!(out.stdout.contains("pod/web configured"), "{}", out.stdout);
        assert!(!out.stderr.contains(V3_FAILED), "kubectl fell back from OpenAPI v3:\n{}", out.stderr);
        assert!(!out.stderr.contains("error calculating patch"), "{}", out.stderr);

        let seen = server.seen();
        let patches = writes(&seen, Method::PATCH, "/api/v1/namespaces/default/pods/web");
        assert_eq!(patches.len(), 1, "{seen:?}");
        let patch = &patches[0];
        assert!(has_strict(patch), "query {:?}", patch.query);
        // Compiled-in Pod type: a strategic merge patch naming only the changed container.
        assert_eq!(patch.content_type, "application/strategic-merge-patch+json");
        let body: Value = serde_json::from_str(&patch.body)?;
        assert_eq!(body["spec"]["containers"], json!([{ "name": "app", "image": "nginx:2" }]), "{body}");
        assert_eq!(
            body["spec"]["$setElementOrder/containers"],
            json!([{ "name": "app" }, { "name": "sidecar" }])
        );
        server.stop().await;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn apply_of_a_user_kind_sends_a_merge_patch() -> Result<()> {
    within("kubectl apply of a user kind against the fake server", async {
        let server = Server::start().await?;
        let Some(kubectl) = Kubectl::new(&server)? else { return Ok(()) };
        let file = kubectl.file("game.yaml", GAME)?;
        let out = kubectl.run(&["apply", "-f", &file, "-v=7"]).await?;
        assert!(out.stdout.contains("game.games.example.com/g1 configured"), "{}", out.stdout);
        assert!(!out.stderr.contains(V3_FAILED), "kubectl fell back from OpenAPI v3:\n{}", out.stderr);
        assert!(!out.stderr.contains("error calculating patch"), "{}", out.stderr);
        let seen = server.seen();
        let patches = writes(&seen, Method::PATCH, "/apis/games.example.com/v1/namespaces/default/games/g1");
        assert_eq!(patches.len(), 1, "{seen:?}");
        assert!(has_strict(&patches[0]), "query {:?}", patches[0].query);
        assert_eq!(patches[0].content_type, "application/merge-patch+json");
        let body: Value = serde_json::from_str(&patches[0].body)?;
        assert_eq!(body["spec"]["players"], json!([{ "name": "a" }, { "name": "c" }]));
        server.stop().await;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn apply_of_a_list_and_warn_validation() -> Result<()> {
    within("kubectl apply of a List and with --validate=warn", async {
        let server = Server::start().await?;
        let Some(kubectl) = Kubectl::new(&server)? else { return Ok(()) };
        // A List is validated client-side against OpenAPI v2, which must therefore load.
        let list = kubectl.file("list.yaml", LIST)?;
        let out = kubectl.run(&["apply", "-f", &list]).await?;
        assert!(out.stdout.contains("configmap/one created"), "{}{}", out.stdout, out.stderr);
        let creates = writes(&server.seen(), Method::POST, "/api/v1/namespaces/default/configmaps");
        assert!(creates.len() == 1 && has_strict(&creates[0]), "{creates:?}");

        // `warn` says so when kubectl thinks the server cannot validate.
        let pods = kubectl.file("fresh.yaml", FRESH)?;
        let out = kubectl.run(&["apply", "-f", &pods, "--validate=warn"]).await?;
        assert!(!out.stderr.contains(NO_SERVER_VALIDATION), "{}", out.stderr);
        server.stop().await;
        Ok(())
    })
    .await
}

/// The control for the log checks above: when the v3 document has no PATCH operation for the
/// kind, kubectl does log the fallback (and then fails: there is no `bindings` resource).
#[tokio::test]
async fn a_kind_without_a_patch_operation_falls_back() -> Result<()> {
    within("kubectl apply of a Binding against the fake server", async {
        let server = Server::start().await?;
        let Some(kubectl) = Kubectl::new(&server)? else { return Ok(()) };
        let file = kubectl.file("binding.yaml", BINDING)?;
        let out = kubectl.output(&["apply", "-f", &file, "-v=7"]).await?;
        assert!(!out.ok);
        assert!(out.stderr.contains(V3_FAILED), "{}", out.stderr);
        server.stop().await;
        Ok(())
    })
    .await
}
