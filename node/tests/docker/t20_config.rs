//! What a container gets from its config: env, mounts, working directory, command and args,
//! and CPU and memory limits as cgroup limits.

use flotilla_node::runtime::{ContainerConfig, ContainerRuntime, LogOptions, Mount};

use crate::{strings, with_docker};

#[tokio::test]
async fn env_mounts_and_working_dir_reach_the_container() {
    with_docker(
        "env_mounts_and_working_dir_reach_the_container",
        "a container reading its mounts",
        |env| async move {
            let read_only = tempfile::tempdir().expect("a temp dir");
            std::fs::write(read_only.path().join("data.txt"), "from-the-host\n").expect("written");
            let writable = tempfile::tempdir().expect("a temp dir");
            let (_pod, sandbox) = env.pod("mounts").await;
            let script = "echo \"greeting=$GREETING other=$OTHER\"; cat /data/data.txt; pwd; \
                      touch /data/x 2>/dev/null && echo data-writable || echo data-readonly; \
                      echo from-the-container > /out/result.txt";
            let config = ContainerConfig {
                args: vec![script.to_owned()],
                env: vec![
                    ("GREETING".to_owned(), "hello world".to_owned()),
                    ("OTHER".to_owned(), "a=b".to_owned()),
                ],
                working_dir: Some("/tmp".to_owned()),
                mounts: vec![
                    Mount {
                        host_path: read_only.path().to_owned(),
                        container_path: "/data".into(),
                        read_only: true,
                    },
                    Mount {
                        host_path: writable.path().to_owned(),
                        container_path: "/out".into(),
                        read_only: false,
                    },
                ],
                ..env.config(&sandbox.pod, "reader", &["sh", "-c"])
            };
            let id = env.run(&sandbox, &config).await;
            assert_eq!(env.wait_exited(&id).await, (0, "Completed".to_owned()));
            let output = env.logs(&id, LogOptions::default()).await;
            let lines: Vec<&str> = output.lines().collect();
            assert_eq!(lines, ["greeting=hello world other=a=b", "from-the-host", "/tmp", "data-readonly"]);
            let written =
                std::fs::read_to_string(writable.path().join("result.txt")).expect("the container wrote");
            assert_eq!(written, "from-the-container\n");
        },
    )
    .await;
}

/// Prints the memory limit and the CPU quota, from cgroup v2 files or else v1 files.
const READ_CGROUP_LIMITS: &str = "cat /sys/fs/cgroup/memory.max 2>/dev/null \
    || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; \
    cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us";

#[tokio::test]
async fn limits_are_cgroup_limits() {
    with_docker("limits_are_cgroup_limits", "a container reading its cgroup", |env| async move {
        let (_pod, sandbox) = env.pod("limits").await;
        let script = READ_CGROUP_LIMITS;
        let memory = 48u64 << 20;
        let config = ContainerConfig {
            args: vec![script.to_owned()],
            cpu_limit_millis: Some(250),
            memory_limit_bytes: Some(memory),
            ..env.config(&sandbox.pod, "limited", &["sh", "-c"])
        };
        let id = env.run(&sandbox, &config).await;
        assert_eq!(env.wait_exited(&id).await, (0, "Completed".to_owned()));

        let inspect = env.docker.inspect_container(&id, None).await.expect("inspect");
        let host = inspect.host_config.expect("a host config");
        assert_eq!(host.nano_cpus, Some(250_000_000));
        assert_eq!(host.memory, Some(memory as i64));
        let output = env.logs(&id, LogOptions::default()).await;
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines.first().copied(), Some(memory.to_string().as_str()), "{output}");
        // 250 millicores: a quota of a quarter of the (100 ms) period.
        assert!(lines.get(1).is_some_and(|cpu| cpu.starts_with("25000")), "{output}");
    })
    .await;
}

#[tokio::test]
async fn command_replaces_the_entrypoint_and_args_the_cmd() {
    with_docker("command_replaces_the_entrypoint_and_args_the_cmd", "echo containers", |env| async move {
        let (_pod, sandbox) = env.pod("cmd").await;
        let both =
            ContainerConfig { args: strings(&["a", "b"]), ..env.config(&sandbox.pod, "both", &["echo"]) };
        // The image has no entrypoint and `sh` as its command: args alone replace that.
        let args_only = ContainerConfig {
            args: strings(&["echo", "only-args"]),
            ..env.config(&sandbox.pod, "args", &[])
        };
        // Neither: the image's own command (`sh`, which exits at once without a terminal).
        let neither = env.config(&sandbox.pod, "neither", &[]);
        let mut ids = Vec::new();
        for config in [&both, &args_only, &neither] {
            ids.push(env.run(&sandbox, config).await);
        }
        for id in &ids {
            assert_eq!(env.wait_exited(id).await, (0, "Completed".to_owned()));
        }
        assert_eq!(env.logs(&ids[0], LogOptions::default()).await, "a b\n");
        assert_eq!(env.logs(&ids[1], LogOptions::default()).await, "only-args\n");
        assert_eq!(env.logs(&ids[2], LogOptions::default()).await, "");
        let listed = env.runtime.containers().await.expect("listed");
        assert_eq!(listed.len(), 3);
        assert!(
            listed
                .iter()
                .all(|c| c.image == env.image
                    && c.image_id.as_deref().is_some_and(|i| i.starts_with("sha256:")))
        );
    })
    .await;
}
