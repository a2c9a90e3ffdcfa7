use anyhow::Result;
use http::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Server, within};

const DEPLOY: &[u8] = br#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},
  "spec":{"replicas":2,"selector":{"matchLabels":{"app":"d"}},
  "template":{"metadata":{"labels":{"app":"d"}},"spec":{"containers":[{"name":"c","image":"i"}]}}}}"#;

#[tokio::test]
async fn scale_status_binding_eviction() -> Result<()> {
    within("subresources", async {
        let s = Server::start().await?;
        let d = "/apis/apps/v1/namespaces/default/deployments";
        let r = s.call(Method::POST, d, None, DEPLOY).await?;
        assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));

        // scale: read, patch (what kubectl scale sends), put.
        let scale = s.get(&format!("{d}/d/scale")).await?.json()?;
        assert_eq!((scale["kind"].as_str(), scale["apiVersion"].as_str()), (Some("Scale"), Some("autoscaling/v1")));
        assert_eq!(scale["spec"]["replicas"], 2);
        assert_eq!(scale["status"]["selector"], "app=d");
        let r = s
            .call(Method::PATCH, &format!("{d}/d/scale"), Some("application/merge-patch+json"), br#"{"spec":{"replicas":5}}"#)
            .await?;
        assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()?["spec"]["replicas"], 5);
        assert_eq!(s.get(&format!("{d}/d")).await?.json()?["spec"]["replicas"], 5);
        let mut put = scale.clone();
        put["spec"]["replicas"] = json!(1);
        // The scale read before the patch is stale now.
        let r = s.call(Method::PUT, &format!("{d}/d/scale"), None, &serde_json::to_vec(&put)?).await?;
        assert_eq!(r.status, StatusCode::CONFLICT);
        put["metadata"]["resourceVersion"] = json!("");
        let r = s.call(Method::PUT, &format!("{d}/d/scale"), None, &serde_json::to_vec(&put)?).await?;
        assert_eq!(r.json()?["spec"]["replicas"], 1);
        put["spec"]["replicas"] = json!(-1);
        let r = s.call(Method::PUT, &format!("{d}/d/scale"), None, &serde_json::to_vec(&put)?).await?;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

        // status: a main update keeps status; a status patch changes only status.
        let r = s
            .call(
                Method::PATCH,
                &format!("{d}/d/status"),
                Some("application/merge-patch+json"),
                br#"{"status":{"replicas":1},"spec":{"replicas":9}}"#,
            )
            .await?;
        assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
        let obj = s.get(&format!("{d}/d/status")).await?.json()?;
        assert_eq!((obj["status"]["replicas"].as_i64(), obj["spec"]["replicas"].as_i64()), (Some(1), Some(1)));

        // binding and eviction of a pod.
        let pods = "/api/v1/namespaces/default/pods";
        let pod = br#"{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#;
        assert_eq!(s.call(Method::POST, pods, None, pod).await?.status, StatusCode::CREATED);
        let binding = br#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"p"},"target":{"kind":"Node","name":"n1"}}"#;
        let r = s.call(Method::POST, &format!("{pods}/p/binding"), None, binding).await?;
        assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()?["status"], "Success");
        assert_eq!(s.get(&format!("{pods}/p")).await?.json()?["spec"]["nodeName"], "n1");
        let r = s.call(Method::POST, &format!("{pods}/p/binding"), None, binding).await?;
        assert_eq!(r.status, StatusCode::CONFLICT);
        let eviction = br#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"p"},"deleteOptions":{"gracePeriodSeconds":0}}"#;
        let r = s.call(Method::POST, &format!("{pods}/p/eviction"), None, eviction).await?;
        assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(s.get(&format!("{pods}/p")).await?.status, StatusCode::NOT_FOUND);

        // Namespaces: deletion waits on spec.finalizers; finalize empties them.
        let ns = br#"{"metadata":{"name":"team"},"spec":{"finalizers":["kubernetes"]}}"#;
        assert_eq!(s.call(Method::POST, "/api/v1/namespaces", None, ns).await?.status, StatusCode::CREATED);
        let r = s.call(Method::DELETE, "/api/v1/namespaces/team", None, b"").await?;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        assert_eq!(r.json()?["status"]["phase"], "Terminating");
        let mut obj = s.get("/api/v1/namespaces/team").await?.json()?;
        obj["spec"]["finalizers"] = json!([]);
        let r = s.call(Method::PUT, "/api/v1/namespaces/team/finalize", None, &serde_json::to_vec(&obj)?).await?;
        assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(s.get("/api/v1/namespaces/team").await?.status, StatusCode::NOT_FOUND);
        s.stop().await;
        Ok(())
    })
    .await
}
