use flotilla_node::runtime::process::Enforcement;
use flotilla_node::runtime::{ContainerRuntime, ContainerState, LogOptions};

use crate::{HOST_IP, exit_of, logs, run, runtime, sandbox, shell, state, within};

#[tokio::test]
async fn env_and_working_dir_are_the_containers() {
    within("a short shell container", async {
        let root = tempfile::tempdir().expect("tempdir");
        let work = tempfile::tempdir().expect("tempdir");
        let rt = runtime(root.path());
        let mut config = shell(r#"echo "$GREETING|$(pwd)|${HOME-unset}|${PATH:+path set}""#);
        config.env = vec![("GREETING".into(), "first".into()), ("GREETING".into(), "hello".into())];
        config.working_dir = Some(work.path().display().to_string());
        let id = run(&rt, &config).await;
        assert_eq!(exit_of(&rt, &id).await, (0, "Completed".to_string()));
        let out = logs(&rt, &id, LogOptions::default()).await;
        // The last value of a repeated variable wins; HOME does not leak from the agent.
        assert_eq!(out, format!("hello|{}|unset|path set\n", work.path().display()));
    })
    .await;
}

#[tokio::test]
async fn default_working_dir_is_inside_the_root() {
    within("a short shell container", async {
        let root = tempfile::tempdir().expect("tempdir");
        let rt = runtime(root.path());
        let id = run(&rt, &shell("pwd")).await;
        exit_of(&rt, &id).await;
        let out = logs(&rt, &id, LogOptions::default()).await;
        assert!(out.trim_end().starts_with(&root.path().display().to_string()), "{out}");
    })
    .await;
}

#[tokio::test]
async fn exit_codes_and_reasons() {
    within("short shell containers", async {
        let root = tempfile::tempdir().expect("tempdir");
        let rt = runtime(root.path());
        let failed = run(&rt, &shell("exit 3")).await;
        assert_eq!(exit_of(&rt, &failed).await, (3, "Error".to_string()));
        let killed = run(&rt, &shell("kill -KILL $$")).await;
        assert_eq!(exit_of(&rt, &killed).await, (137, "Error".to_string()));
        match state(&rt, &failed).await {
            ContainerState::Exited { started_at: Some(s), finished_at: Some(f), .. } => assert!(s <= f),
            other => panic!("expected exited with times, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn missing_command_is_run_container_error() {
    within("starting a missing command", async {
        let root = tempfile::tempdir().expect("tempdir");
        let rt = runtime(root.path());
        let sb = rt.run_sandbox(&sandbox("p")).await.expect("sandbox");
        let mut config = shell("");
        config.command = vec!["flotilla-no-such-command".into()];
        config.args = vec![];
        let id = rt.create_container(&sb.id, &config).await.expect("create");
        let err = rt.start_container(&id).await.expect_err("cannot start");
        assert_eq!(err.reason(), "RunContainerError");
        assert!(err.to_string().contains("flotilla-no-such-command"), "{err}");
        assert_eq!(state(&rt, &id).await, ContainerState::Created);
    })
    .await;
}

#[tokio::test]
async fn invalid_configs_fail_at_create() {
    within("creating containers", async {
        let root = tempfile::tempdir().expect("tempdir");
        let rt = runtime(root.path());
        let sb = rt.run_sandbox(&sandbox("p")).await.expect("sandbox");
        let mut empty = shell("");
        empty.command.clear();
        empty.args.clear();
        let err = rt.create_container(&sb.id, &empty).await.expect_err("no command");
        assert_eq!(err.reason(), "CreateContainerConfigError");
        let mut missing_image = shell("true");
        missing_image.image = "/flotilla/no/such/image".into();
        assert_eq!(rt.ensure_image(&missing_image.image).await.map_err(|e| e.reason()), Err("ErrImagePull"));
        let err = rt.create_container(&sb.id, &missing_image).await.expect_err("missing image");
        assert_eq!(err.reason(), "ErrImagePull");
        rt.ensure_image("busybox:latest").await.expect("other references are ignored");
        let err = rt.create_container("no-such-sandbox", &shell("true")).await.expect_err("no sandbox");
        assert_eq!(err.reason(), "ContainerNotFound");
        assert!(err.to_string().contains("no-such-sandbox"), "{err}");
        assert!(rt.containers().await.expect("containers").is_empty());
    })
    .await;
}

#[tokio::test]
async fn memory_limit_is_an_address_space_limit_without_a_memory_cgroup() {
    within("a short shell container", async {
        let root = tempfile::tempdir().expect("tempdir");
        let rt = runtime(root.path());
        let mut config = shell("ulimit -v");
        config.memory_limit_bytes = Some(64 << 20);
        let id = run(&rt, &config).await;
        assert_eq!(exit_of(&rt, &id).await.0, 0);
        // With a memory cgroup (see t80_cgroups) the address space stays unlimited.
        let expected = match rt.limit_enforcement().memory {
            Enforcement::AddressSpace => "65536\n",
            Enforcement::Cgroup { .. } => "unlimited\n",
            Enforcement::NotEnforced { .. } => unreachable!("memory limits are always enforced somehow"),
        };
        assert_eq!(logs(&rt, &id, LogOptions::default()).await, expected);
        // Removal removes the memory cgroup, if any, which would outlive the test otherwise.
        rt.remove_container(&id).await.expect("remove");
    })
    .await;
}

#[tokio::test]
async fn sandboxes_have_the_host_ip_and_take_their_containers_along() {
    within("removing a sandbox with a running container", async {
        let root = tempfile::tempdir().expect("tempdir");
        let rt = runtime(root.path());
        let sb = rt.run_sandbox(&sandbox("web")).await.expect("sandbox");
        assert_eq!(sb.ip, Some(HOST_IP));
        let listed = rt.sandboxes().await.expect("sandboxes");
        assert_eq!(listed, vec![sb.clone()]);
        let mut config = shell("exec sleep 30");
        config.pod = sb.pod.clone();
        let id = rt.create_container(&sb.id, &config).await.expect("create");
        rt.start_container(&id).await.expect("start");
        assert!(matches!(state(&rt, &id).await, ContainerState::Running { .. }));
        let listed = rt.containers().await.expect("containers");
        assert_eq!((listed[0].pod.clone(), listed[0].name.as_str()), (sb.pod.clone(), "c"));
        rt.remove_sandbox(&sb.id).await.expect("remove sandbox");
        assert!(rt.sandboxes().await.expect("sandboxes").is_empty());
        assert!(rt.containers().await.expect("containers").is_empty());
        assert_eq!(rt.remove_sandbox(&sb.id).await.map_err(|e| e.reason()), Err("ContainerNotFound"));
        assert_eq!(std::fs::read_dir(root.path().join("containers")).expect("dir").count(), 0);
    })
    .await;
}
