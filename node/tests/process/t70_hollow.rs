use std::net::Ipv4Addr;
use std::time::Duration;

use flotilla_node::runtime::hollow::HollowRuntime;
use flotilla_node::runtime::{ContainerRuntime, ContainerState, LogOptions};

use crate::{logs, run, sandbox, shell, state, within};

#[tokio::test]
async fn hollow_containers_run_at_once_and_exit_on_stop() {
    within("hollow runtime lifecycle", async {
        let rt = HollowRuntime::new("hollow-1").with_ip_base(Ipv4Addr::new(10, 9, 0, 0));
        assert_eq!(rt.name(), "hollow");
        let sb = rt.run_sandbox(&sandbox("p")).await.expect("sandbox");
        assert_eq!(sb.ip, Some(Ipv4Addr::new(10, 9, 0, 1).into()));
        let mut config = shell("ignored");
        config.image = "busybox:1.36".into();
        config.restart_count = 2;
        let id = rt.create_container(&sb.id, &config).await.expect("create");
        assert_eq!(state(&rt, &id).await, ContainerState::Created);
        rt.start_container(&id).await.expect("start");
        assert!(matches!(state(&rt, &id).await, ContainerState::Running { started_at: Some(_) }));
        let listed = rt.containers().await.expect("containers");
        assert_eq!((listed[0].restart_count, listed[0].image.as_str()), (2, "busybox:1.36"));
        let out = rt.exec(&id, &["true".to_string()], Duration::from_secs(1)).await.expect("exec");
        assert_eq!((out.exit_code, out.output.len()), (0, 0));
        assert_eq!(logs(&rt, &id, LogOptions::default()).await, "");
        rt.stop_container(&id, Duration::from_secs(30)).await.expect("stop");
        assert!(matches!(state(&rt, &id).await, ContainerState::Exited { exit_code: 0, ref reason, .. } if reason == "Completed"));
        assert!(rt.exec(&id, &[], Duration::from_secs(1)).await.is_err(), "exec needs a running container");
        rt.remove_sandbox(&sb.id).await.expect("remove sandbox");
        assert!(rt.containers().await.expect("containers").is_empty());
        assert_eq!(rt.remove_container(&id).await.map_err(|e| e.reason()), Err("ContainerNotFound"));
    })
    .await;
}

#[tokio::test]
async fn hollow_knobs_inject_missing_images_and_crashes() {
    within("hollow runtime knobs", async {
        let rt = HollowRuntime::new("hollow-2");
        assert_eq!(rt.ensure_image("Not Valid").await.map_err(|e| e.reason()), Err("InvalidImageName"));
        rt.fail_image("app:v2");
        assert_eq!(rt.ensure_image("app:v2").await.map_err(|e| e.reason()), Err("ErrImagePull"));
        let sb = rt.run_sandbox(&sandbox("p")).await.expect("sandbox");
        let mut config = shell("x");
        config.image = "app:v2".into();
        assert_eq!(rt.create_container(&sb.id, &config).await.map_err(|e| e.reason()), Err("ErrImagePull"));
        rt.restore_image("app:v2");
        rt.ensure_image("app:v2").await.expect("present again");
        let id = rt.create_container(&sb.id, &config).await.expect("create");
        rt.start_container(&id).await.expect("start");
        rt.exit_container(&id, 2).expect("crash");
        assert!(matches!(state(&rt, &id).await, ContainerState::Exited { exit_code: 2, ref reason, .. } if reason == "Error"));
        assert!(rt.exit_container("nope", 1).is_err());
    })
    .await;
}

#[tokio::test]
async fn a_thousand_hollow_nodes_with_ten_pods_each() {
    within("simulating many hollow nodes", async {
        let nodes: Vec<HollowRuntime> = (0..1000).map(|i| HollowRuntime::new(format!("node-{i}"))).collect();
        let mut config = shell("x");
        config.image = "app:v1".into();
        for node in &nodes {
            for pod in 0..10 {
                config.pod.name = format!("pod-{pod}");
                run(node, &config).await;
            }
        }
        let mut running = 0;
        for node in &nodes {
            running += node
                .containers()
                .await
                .expect("containers")
                .iter()
                .filter(|c| matches!(c.state, ContainerState::Running { .. }))
                .count();
        }
        assert_eq!(running, 10_000);
    })
    .await;
}
