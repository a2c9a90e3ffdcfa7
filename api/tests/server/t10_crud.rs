use anyhow::Result;
use http::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Server, within};

const POD: &[u8] = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","labels":{"app":"web"}},
    "spec":{"containers":[{"name":"c","image":"busybox"}]}}"#;
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

#[tokio::test]
async fn create_get_list_update_delete() -> Result<()> {
    within("crud", async {
        let s = Server::start().await?;
        let pods = "/api/v1/namespaces/default/pods";
        let r = s.call(Method::POST, pods, None, POD).await?;
        assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
        let created = r.json()?;
        assert_eq!(created["metadata"]["namespace"], "default");
        assert!(created["metadata"]["uid"].as_str().is_some_and(|u| !u.is_empty()));
        let rv = created["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();

        let got = s.get(&format!("{pods}/web")).await?;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.json()?["metadata"]["resourceVersion"], rv.as_str());

        let list = s.get(&format!("{pods}?labelSelector=app%3Dweb")).await?.json()?;
        assert_eq!((list["kind"].as_str(), list["apiVersion"].as_str()), (Some("PodList"), Some("v1")));
        assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
        let none = s.get(&format!("{pods}?labelSelector=app%3Ddb")).await?.json()?;
        assert_eq!(none["items"].as_array().map(Vec::len), Some(0));
        let all = s.get("/api/v1/pods").await?.json()?;
        assert_eq!(all["items"].as_array().map(Vec::len), Some(1));

        // Update with the current resourceVersion succeeds; with the old one, 409.
        let mut obj = got.json()?;
        obj["metadata"]["labels"]["tier"] = json!("front");
        let r = s.call(Method::PUT, &format!("{pods}/web"), None, &serde_json::to_vec(&obj)?).await?;
        assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
        let r = s.call(Method::PUT, &format!("{pods}/web"), None, &serde_json::to_vec(&obj)?).await?;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert_eq!(r.json()?["reason"], "Conflict");

        // The three patch types.
        for (ct, patch) in [
            ("application/merge-patch+json", br#"{"metadata":{"labels":{"m":"1"}}}"#.as_slice()),
            ("application/strategic-merge-patch+json", br#"{"metadata":{"labels":{"s":"1"}}}"#.as_slice()),
            (
                "application/json-patch+json",
                br#"[{"op":"add","path":"/metadata/labels/j","value":"1"}]"#.as_slice(),
            ),
        ] {
            let r = s.call(Method::PATCH, &format!("{pods}/web"), Some(ct), patch).await?;
            assert_eq!(r.status, StatusCode::OK, "{ct}: {}", String::from_utf8_lossy(&r.body));
        }
        let labels = s.get(&format!("{pods}/web")).await?.json()?["metadata"]["labels"].clone();
        assert_eq!(labels, json!({"app": "web", "tier": "front", "m": "1", "s": "1", "j": "1"}));

        // Server-side apply needs a field manager and records it.
        let apply = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg"},"data":{"a":"1"}}"#;
        let r = s
            .call(
                Method::PATCH,
                "/api/v1/namespaces/default/configmaps/cfg?fieldManager=me",
                Some("application/apply-patch+yaml"),
                apply,
            )
            .await?;
        assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()?["metadata"]["managedFields"][0]["manager"], "me");

        // Dry-run changes nothing.
        let r = s
            .call(Method::POST, &format!("{pods}?dryRun=All"), None, &POD.to_vec().replace_name("dry"))
            .await?;
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(s.get(&format!("{pods}/dry")).await?.status, StatusCode::NOT_FOUND);

        // Delete: gone at once (not bound to a node), 200 with the object.
        let r = s
            .call(
                Method::DELETE,
                &format!("{pods}/web"),
                None,
                br#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"}"#,
            )
            .await?;
        assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()?["metadata"]["name"], "web");
        let r = s.get(&format!("{pods}/web")).await?;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.json()?["message"], "pods \"web\" not found");
        s.stop().await;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn tables_and_pages() -> Result<()> {
    within("tables", async {
        let s = Server::start().await?;
        let pods = "/api/v1/namespaces/default/pods";
        for i in 0..5 {
            let body = String::from_utf8_lossy(POD).replace("\"web\",", &format!("\"web-{i}\","));
            let r = s.call(Method::POST, pods, None, body.as_bytes()).await?;
            assert_eq!(r.status, StatusCode::CREATED);
        }
        let r = s.call_with(Method::GET, pods, &[("accept", TABLE)], b"").await?;
        let t = r.json()?;
        assert_eq!(t["kind"], "Table");
        let cols: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(&cols[..5], ["Name", "Ready", "Status", "Restarts", "Age"]);
        assert_eq!(t["rows"].as_array().map(Vec::len), Some(5));
        assert_eq!(
            t["rows"][0]["cells"].as_array().map(|c| c[..3].to_vec()),
            Some(vec![json!("web-0"), json!("0/1"), json!("Pending")])
        );
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");

        // Pages of two, all at the first page's revision.
        let p1 = s.get(&format!("{pods}?limit=2")).await?.json()?;
        assert_eq!(p1["items"].as_array().map(Vec::len), Some(2));
        assert_eq!(p1["metadata"]["remainingItemCount"], 3);
        let token = p1["metadata"]["continue"].as_str().unwrap_or_default().to_string();
        let p2 = s.get(&format!("{pods}?limit=2&continue={token}")).await?.json()?;
        assert_eq!(p2["items"][0]["metadata"]["name"], "web-2");
        assert_eq!(p2["metadata"]["resourceVersion"], p1["metadata"]["resourceVersion"]);

        // deletecollection with a selector.
        let r =
            s.call(Method::DELETE, &format!("{pods}?fieldSelector=metadata.name%3Dweb-4"), None, b"").await?;
        assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()?["items"].as_array().map(Vec::len), Some(1));
        let left = s.get(pods).await?.json()?;
        assert_eq!(left["items"].as_array().map(Vec::len), Some(4));
        s.stop().await;
        Ok(())
    })
    .await
}

trait ReplaceName {
    fn replace_name(self, name: &str) -> Vec<u8>;
}

impl ReplaceName for Vec<u8> {
    fn replace_name(self, name: &str) -> Vec<u8> {
        String::from_utf8_lossy(&self).replace("\"web\",", &format!("\"{name}\",")).into_bytes()
    }
}
