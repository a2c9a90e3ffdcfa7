//! Docker for tests: finding the daemon, the busybox image, unique pods, cleanup.

use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};

use crate::runtime::docker::image::{self, BusyboxImage};
use crate::runtime::docker::{DEFAULT_BUSYBOX, DEFAULT_HOST, Error, Result};
use crate::runtime::{PodRef, labels};

/// Set to `1` to make tests that need Docker fail, rather than skip, when it is unreachable.
pub const REQUIRE_DOCKER_ENV: &str = "FLOTILLA_REQUIRE_DOCKER";
/// The tag [`busybox_image`] builds.
pub const BUSYBOX_IMAGE: &str = "flotilla/busybox:1";
/// The applets linked in the busybox image's `/bin`.
pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "ash", "cat", "echo", "env", "false", "grep", "head", "hostname", "httpd", "id", "kill", "ls",
    "mkdir", "nc", "printf", "ps", "pwd", "rm", "seq", "sleep", "tail", "test", "touch", "true", "wc",
    "wget", "yes",
];
/// How long finding the daemon may take before the tests give up on it.
const DOCKER_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The local daemon, or `None` (with the reason printed) when there is none.
///
/// # Panics
/// When the daemon is unreachable and [`REQUIRE_DOCKER_ENV`] is `1`: a CI run must not pass
/// by skipping everything.
pub async fn docker_or_skip(test: &str) -> Option<Docker> {
    match find_docker().await {
        Ok(docker) => Some(docker),
        Err(reason) => {
            let required = std::env::var(REQUIRE_DOCKER_ENV).is_ok_and(|value| value == "1");
            assert!(
                !required,
                "{test}: docker is required ({REQUIRE_DOCKER_ENV}=1) but unreachable: {reason}"
            );
            eprintln!(
                "skipping {test}: docker is unreachable ({reason}); {REQUIRE_DOCKER_ENV}=1 fails instead"
            );
            None
        }
    }
}

async fn find_docker() -> Result<Docker, String> {
    let client = Docker::connect_with_host(DEFAULT_HOST).map_err(|error| error.to_string())?;
    let probe = async move {
        let docker = client.negotiate_version().await?;
        docker.ping().await?;
        Ok::<_, bollard::errors::Error>(docker)
    };
    match tokio::time::timeout(DOCKER_PROBE_TIMEOUT, probe).await {
        Ok(Ok(docker)) => Ok(docker),
        Ok(Err(error)) => Err(format!("{DEFAULT_HOST}: {error}")),
        Err(_elapsed) => Err(format!("{DEFAULT_HOST} did not answer within {DOCKER_PROBE_TIMEOUT:?}")),
    }
}

/// Builds [`BUSYBOX_IMAGE`] (`FROM scratch`, `/bin/busybox` with [`BUSYBOX_APPLETS`], `/tmp`,
/// command `sh`) from the host's static busybox unless it exists; returns its tag.
pub async fn busybox_image(docker: &Docker) -> Result<String> {
    let spec = BusyboxImage {
        tag: BUSYBOX_IMAGE,
        busybox: Path::new(DEFAULT_BUSYBOX),
        applets: BUSYBOX_APPLETS,
        cmd: &["/bin/sh"],
    };
    image::ensure(docker, &spec).await?;
    Ok(BUSYBOX_IMAGE.to_owned())
}

/// A name no other test (in this process or another) is using: `<prefix>-<8 hex>`, lowercase,
/// usable as a pod name, a namespace or a node name.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{:08x}", unique_u32())
}

/// A pod with a fresh uid whose first 8 characters (the part in Docker names) are unique.
pub fn unique_pod(namespace: &str, name: &str) -> PodRef {
    let uid = format!("{:08x}-0000-4000-8000-{:012x}", unique_u32(), std::process::id());
    PodRef { uid, namespace: namespace.to_owned(), name: name.to_owned() }
}

fn unique_u32() -> u32 {
    static BASE: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    // A per-process base from the clock and pid, so that processes started together differ;
    // an odd multiple of a counter on top, so that calls in one process never collide.
    let base = *BASE.get_or_init(|| {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.subsec_nanos());
        nanos.rotate_left(13) ^ std::process::id().wrapping_mul(0x9e37_79b9)
    });
    base.wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x85eb_ca6b))
}

/// Force-removes every container and sandbox labelled with `node`; returns how many.
pub async fn remove_node_objects(docker: &Docker, node: &str) -> Result<usize> {
    let docker_error = |doing, source| Error::Docker { doing, object: node.to_owned(), source };
    let filters = std::collections::HashMap::from([("label", vec![format!("{}={node}", labels::NODE)])]);
    let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
    let mut found = docker
        .list_containers(Some(options))
        .await
        .map_err(|source| docker_error("list containers of node", source))?;
    // Containers before the sandboxes whose namespaces they use.
    found.sort_by_key(|summary| {
        summary.labels.as_ref().and_then(|l| l.get(labels::ROLE)).is_some_and(|role| role == "sandbox")
    });
    let mut removed = 0;
    for id in found.into_iter().filter_map(|summary| summary.id) {
        let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        match docker.remove_container(&id, Some(options)).await {
            Ok(()) => removed += 1,
            // Gone already, or being removed by someone else.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404 | 409, .. }) => {}
            Err(source) => return Err(docker_error("remove a container of node", source)),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn unique_names_and_uids_differ() {
        let names: HashSet<String> = (0..1000).map(|_| unique_name("t")).collect();
        assert_eq!(names.len(), 1000);
        let prefixes: HashSet<String> =
            (0..1000).map(|_| unique_pod("ns", "p").uid.chars().take(8).collect()).collect();
        assert_eq!(prefixes.len(), 1000, "uid prefixes go into docker names and must differ");
        assert!(unique_name("Node").starts_with("Node-"));
    }
}
