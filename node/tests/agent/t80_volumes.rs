//! Pod volumes: set up under the agent's root before containers start and mounted into them;
//! a volume that cannot be set up is reported, and no container starts.

use std::path::Path;

use flotilla_core::client::ListOptions;
use flotilla_core::controller::testing::TestKit;
use k8s_openapi::api::core::v1::{ConfigMap, Event};
use serde_json::json;

use crate::fake::FakeRuntime;
use crate::support::{Agent, NODE, create_bound, phase, pod, within};

#[tokio::test(start_paused = true)]
async fn volumes_are_set_up_and_mounted_before_containers_start() {
    within("pod volumes", async {
        let kit = TestKit::new().await;
        let settings: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "settings", "namespace": "default"}, "data": {"mode": "fast"},
        }))
        .expect("a config map");
        kit.api::<ConfigMap>(Some("default")).create(&settings).await.expect("create config map");
        let runtime = FakeRuntime::new(kit.clock());
        let agent = Agent::start(&kit, runtime.clone());

        let mut p = pod("vol", "Always", &[("app", "app")]);
        let spec = p.spec.as_mut().expect("a spec");
        spec.volumes = Some(
            serde_json::from_value(json!([
                {"name": "scratch", "emptyDir": {}},
                {"name": "settings", "configMap": {"name": "settings"}},
            ]))
            .expect("volumes"),
        );
        spec.containers[0].volume_mounts = Some(
            serde_json::from_value(json!([
                {"name": "scratch", "mountPath": "/scratch"},
                {"name": "settings", "mountPath": "/etc/settings", "readOnly": true},
            ]))
            .expect("mounts"),
        );
        create_bound(&kit, &p, NODE).await;
        kit.eventually("the pod runs", || async { (phase(&kit, "vol").await? == "Running").then_some(()) })
            .await;

        let configs = runtime.configs();
        let app = configs.iter().find(|c| c.name == "app").expect("the app container was created");
        let mount = |path: &str| {
            app.mounts.iter().find(|m| m.container_path == Path::new(path)).unwrap_or_else(|| {
                panic!("no mount at {path}: {:?}", app.mounts);
            })
        };
        let (scratch, conf) = (mount("/scratch"), mount("/etc/settings"));
        assert!(scratch.host_path.is_dir() && !scratch.read_only, "{scratch:?}");
        assert!(conf.read_only, "{conf:?}");
        let mode = std::fs::read_to_string(conf.host_path.join("mode")).expect("the config map's file");
        assert_eq!(mode, "fast");
        agent.stop().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_claim_that_is_not_bound_is_reported_and_nothing_starts() {
    within("unbound claim", async {
        let kit = TestKit::new().await;
        let runtime = FakeRuntime::new(kit.clock());
        let agent = Agent::start(&kit, runtime.clone());
        let mut p = pod("claimed", "Always", &[("app", "app")]);
        p.spec.as_mut().expect("a spec").volumes = Some(
            serde_json::from_value(
                json!([{"name": "data", "persistentVolumeClaim": {"claimName": "missing"}}]),
            )
            .expect("volumes"),
        );
        create_bound(&kit, &p, NODE).await;
        let events = kit.api::<Event>(Some("default"));
        let message = kit
            .eventually("a FailedMount event", || async {
                let l = events.list(&ListOptions::default()).await.ok()?;
                l.items.into_iter().find(|e| e.reason.as_deref() == Some("FailedMount"))?.message
            })
            .await;
        assert!(
            message.contains("data") && message.contains("missing"),
            "names the volume and claim: {message}"
        );
        assert_eq!(runtime.creates(), 0, "no container starts without its volumes");
        assert_eq!(phase(&kit, "claimed").await.as_deref(), Some("Pending"));
        agent.stop().await;
    })
    .await;
}
