//! The process runtime with real processes, and the hollow runtime.

mod t10_lifecycle;
mod t20_stop;
mod t30_logs;
mod t40_exec;
mod t50_mounts;
mod t60_adoption;
mod t70_hollow;
mod t80_cgroups;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use flotilla_node::runtime::process::{ProcessConfig, ProcessRuntime};
use flotilla_node::runtime::{
    ContainerConfig, ContainerRuntime, ContainerState, LogOptions, PodRef, SandboxConfig,
};
use futures::StreamExt;

/// The IP every sandbox of the test runtimes reports.
pub const HOST_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

/// Runs a test body, failing with `what` if it takes longer than 20 s.
pub async fn within<T>(what: &str, body: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), body)
        .await
        .unwrap_or_else(|_| panic!("timed out; probably stuck: {what}"))
}

/// A process runtime rooted in `root`.
pub fn runtime(root: &Path) -> ProcessRuntime {
    ProcessRuntime::new(ProcessConfig {
        node_name: "node-a".to_string(),
        root_dir: root.to_path_buf(),
        host_ip: HOST_IP,
    })
    .expect("runtime opens its root")
}

/// A pod reference.
pub fn pod(name: &str) -> PodRef {
    PodRef { uid: format!("uid-{name}"), namespace: "default".to_string(), name: name.to_string() }
}

/// A sandbox config for `pod(name)`.
pub fn sandbox(name: &str) -> SandboxConfig {
    SandboxConfig {
        pod: pod(name),
        hostname: name.to_string(),
        labels: Default::default(),
        ports: Vec::new(),
    }
}

/// A container running `/bin/sh -c script`.
pub fn shell(script: &str) -> ContainerConfig {
    ContainerConfig {
        pod: pod("p"),
        name: "c".to_string(),
        image: String::new(),
        command: vec!["/bin/sh".to_string(), "-c".to_string()],
        args: vec![script.to_string()],
        env: Vec::new(),
        working_dir: None,
        mounts: Vec::new(),
        cpu_limit_millis: None,
        memory_limit_bytes: None,
        restart_count: 0,
    }
}

/// Creates a sandbox and a container in it, and starts it; returns the container id.
pub async fn run(rt: &dyn ContainerRuntime, config: &ContainerConfig) -> String {
    let sandbox = rt.run_sandbox(&sandbox(&config.pod.name)).await.expect("sandbox");
    let id = rt.create_container(&sandbox.id, config).await.expect("create");
    rt.start_container(&id).await.expect("start");
    id
}

/// A container's current state.
pub async fn state(rt: &dyn ContainerRuntime, id: &str) -> ContainerState {
    rt.containers()
        .await
        .expect("containers")
        .into_iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("container {id} is listed"))
        .state
}

/// Waits until the container has exited; returns its exit code and reason.
pub async fn exit_of(rt: &dyn ContainerRuntime, id: &str) -> (i32, String) {
    loop {
        if let ContainerState::Exited { exit_code, reason, .. } = state(rt, id).await {
            return (exit_code, reason);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The whole log as text.
pub async fn logs(rt: &dyn ContainerRuntime, id: &str, options: LogOptions) -> String {
    let mut stream = rt.logs(id, &options).await.expect("logs");
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("log chunk"));
    }
    String::from_utf8(out).expect("utf-8 logs")
}
