//! kubectl's discovery commands read the documents: `api-resources`, `api-versions`,
//! `version`, and `get` (which maps a resource name through discovery first).

use anyhow::Result;
use flotilla_api::discovery::GIT_VERSION;
use http::Method;
use serde_json::Value;

use crate::{Kubectl, Server, within};

/// The row of `kubectl api-resources` naming `name`, split on whitespace.
fn row<'a>(table: &'a str, name: &str) -> Option<Vec<&'a str>> {
    table.lines().map(|l| l.split_whitespace().collect::<Vec<_>>()).find(|cols| cols.first() == Some(&name))
}

#[tokio::test]
async fn api_resources_lists_builtin_and_user_kinds() -> Result<()> {
    within("kubectl api-resources against the discovery routes", async {
        let server = Server::start().await?;
        let Some(kubectl) = Kubectl::new(&server)? else { return Ok(()) };
        let out = kubectl.run(&["api-resources"]).await?;
        let table = out.stdout;
        let header = table.lines().next().unwrap_or_default().split_whitespace().collect::<Vec<_>>();
        assert_eq!(header, ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]);
        assert_eq!(row(&table, "pods"), Some(vec!["pods", "po", "v1", "true", "Pod"]), "{table}");
        assert_eq!(
            row(&table, "deployments"),
            Some(vec!["deployments", "deploy", "apps/v1", "true", "Deployment"])
        );
        assert_eq!(row(&table, "namespaces"), Some(vec!["namespaces", "ns", "v1", "false", "Namespace"]));
        assert_eq!(row(&table, "secrets"), Some(vec!["secrets", "v1", "true", "Secret"]));
        assert_eq!(row(&table, "games"), Some(vec!["games", "gm", "games.example.com/v1", "true", "Game"]));
        let review = row(&table, "selfsubjectaccessreviews");
        assert_eq!(
            review,
            Some(vec![
                "selfsubjectaccessreviews",
                "authorization.k8s.io/v1",
                "false",
                "SelfSubjectAccessReview"
            ])
        );
        assert!(row(&table, "pods/status").is_none(), "subresources are not listed");

        // Categories and verbs come from discovery too.
        let all = kubectl.run(&["api-resources", "--categories=all", "-o", "name"]).await?;
        let mut names: Vec<&str> = all.stdout.lines().collect();
        names.sort();
        assert_eq!(names, ["deployments.apps", "pods", "replicasets.apps", "services"]);
        let creatable = kubectl
            .run(&["api-resources", "--verbs=create", "--api-group=authorization.k8s.io", "-o", "name"])
            .await?;
        assert_eq!(creatable.stdout.trim(), "selfsubjectaccessreviews.authorization.k8s.io");
        assert!(!out.stderr.contains("couldn't get resource list"), "{}", out.stderr);
        server.stop().await;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn api_versions_and_server_version() -> Result<()> {
    within("kubectl api-versions and version against the discovery routes", async {
        let server = Server::start().await?;
        let Some(kubectl) = Kubectl::new(&server)? else { return Ok(()) };
        let out = kubectl.run(&["api-versions"]).await?;
        let versions: Vec<&str> = out.stdout.lines().collect();
        for v in [
            "v1",
            "apps/v1",
            "authorization.k8s.io/v1",
            "rbac.authorization.k8s.io/v1",
            "games.example.com/v1",
        ] {
            assert!(versions.contains(&v), "{v} in {versions:?}");
        }

        let out = kubectl.run(&["version", "-o", "json"]).await?;
        let v: Value = serde_json::from_str(&out.stdout)?;
        let server_version = &v["serverVersion"];
        assert_eq!(server_version["gitVersion"], GIT_VERSION);
        assert_eq!(
            (server_version["major"].as_str(), server_version["minor"].as_str()),
            (Some("1"), Some("33"))
        );
        assert!(
            server_version["platform"].as_str().is_some_and(|p| p.starts_with("linux/")),
            "{server_version}"
        );
        // kubectl parsed the version for its skew check (1.32 against 1.33: no warning).
        assert!(!out.stderr.contains("WARNING"), "{}", out.stderr);
        server.stop().await;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn get_finds_resources_through_discovery() -> Result<()> {
    within("kubectl get against the discovery and fake resource routes", async {
        let server = Server::start().await?;
        let Some(kubectl) = Kubectl::new(&server)? else { return Ok(()) };
        let out = kubectl.run(&["get", "pods"]).await?;
        assert!(
            out.stderr.contains("No resources found in default namespace."),
            "{}{}",
            out.stdout,
            out.stderr
        );
        // Short names, a user kind by its short name, and the `all` category.
        kubectl.run(&["get", "po"]).await?;
        kubectl.run(&["get", "gm"]).await?;
        kubectl.run(&["get", "all"]).await?;
        let lists: Vec<String> = server
            .seen()
            .into_iter()
            .filter(|s| s.method == Method::GET && s.path.contains("/namespaces/default/"))
            .map(|s| s.path)
            .collect();
        for path in [
            "/api/v1/namespaces/default/pods",
            "/apis/games.example.com/v1/namespaces/default/games",
            "/api/v1/namespaces/default/services",
            "/apis/apps/v1/namespaces/default/deployments",
            "/apis/apps/v1/namespaces/default/replicasets",
        ] {
            assert!(lists.iter().any(|p| p == path), "{path} in {lists:?}");
        }
        server.stop().await;
        Ok(())
    })
    .await
}
