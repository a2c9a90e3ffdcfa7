//! The hollow runtime: a [`ContainerRuntime`] that runs nothing, for simulated nodes.
//!
//! Sandboxes and containers live in memory only. A started container is `Running` at once;
//! stopping it makes it exit with code 0 (`Completed`). Any well-formed image reference is
//! present, logs are empty and exec succeeds with no output. A few knobs let tests of the
//! agent inject trouble: [`HollowRuntime::fail_image`] makes an image missing and
//! [`HollowRuntime::exit_container`] makes a container exit as if it crashed.
//!
//! It is cheap by design (a few small strings per object, one mutex, no tasks), so that a
//! thousand simulated nodes with ten pods each fit in one test process. Sandbox IPs are fake:
//! `10.a.b.c` with `a.b` from a hash of the node name (simulated nodes may collide) unless
//! [`HollowRuntime::with_ip_base`] sets the base.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::jiff::Timestamp;

use super::{
    Container, ContainerConfig, ContainerRuntime, ContainerState, Error, ExecOutput, LogOptions, PodRef,
    Result, Sandbox, SandboxConfig,
};

/// A runtime that pretends; see the [module docs](self).
#[derive(Debug)]
pub struct HollowRuntime {
    node_name: String,
    ip_base: Ipv4Addr,
    next_id: AtomicU32,
    state: Mutex<HollowState>,
}

#[derive(Debug, Default)]
struct HollowState {
    sandboxes: BTreeMap<String, HollowSandbox>,
    containers: BTreeMap<String, HollowContainer>,
    missing_images: BTreeSet<String>,
}

#[derive(Debug)]
struct HollowSandbox {
    pod: PodRef,
    ip: IpAddr,
}

#[derive(Debug)]
struct HollowContainer {
    sandbox_id: String,
    pod: PodRef,
    name: String,
    image: String,
    state: ContainerState,
    restart_count: u32,
}

impl HollowRuntime {
    /// A hollow runtime for the node `node_name`.
    pub fn new(node_name: impl Into<String>) -> Self {
        let node_name = node_name.into();
        let mut hasher = DefaultHasher::new();
        node_name.hash(&mut hasher);
        let [a, b, ..] = hasher.finish().to_le_bytes();
        HollowRuntime {
            node_name,
            ip_base: Ipv4Addr::new(10, a, b, 0),
            next_id: AtomicU32::new(1),
            state: Mutex::new(HollowState::default()),
        }
    }

    /// Sandboxes get the IPs `base + 1`, `base + 2`, ... (wrapping).
    pub fn with_ip_base(mut self, base: Ipv4Addr) -> Self {
        self.ip_base = base;
        self
    }

    /// The node it was made for.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// Makes `image` missing: `ensure_image` and `create_container` fail with `ErrImagePull`.
    pub fn fail_image(&self, image: &str) {
        self.lock().missing_images.insert(image.to_string());
    }

    /// Makes `image` present again.
    pub fn restore_image(&self, image: &str) {
        self.lock().missing_images.remove(image);
    }

    /// Makes a running container exit with `exit_code` (a crash when not 0); a container
    /// that does not run is left as it is.
    pub fn exit_container(&self, id: &str, exit_code: i32) -> Result<()> {
        let mut state = self.lock();
        let container = state.containers.get_mut(id).ok_or_else(|| not_found("container", id))?;
        container.exit(exit_code);
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, HollowState> {
        // Every update below is a single assignment: a panic cannot leave one half done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn next_id(&self, prefix: &str) -> (u32, String) {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        (n, format!("{prefix}-{n:08x}"))
    }
}

impl HollowContainer {
    fn exit(&mut self, exit_code: i32) {
        if let ContainerState::Running { started_at } = self.state {
            self.state = ContainerState::Exited {
                exit_code,
                reason: if exit_code == 0 { "Completed" } else { "Error" }.to_string(),
                started_at,
                finished_at: Some(Timestamp::now()),
            };
        }
    }
}

fn not_found(what: &'static str, id: &str) -> Error {
    Error::NotFound { what, id: id.to_string() }
}

/// Whether `image` is a well-formed reference: `[host[:port]/]path[:tag][@algo:hex]`,
/// path components lowercase alphanumerics joined by `.`, `_` or `-`.
pub(crate) fn valid_image_reference(image: &str) -> bool {
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        let Some((algo, hex)) = digest.split_once(':') else { return false };
        if algo.is_empty() || hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return false;
        }
    }
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        if tag.is_empty() || tag.len() > 128 || tag.starts_with(['.', '-']) || !tag.chars().all(ok_char) {
            return false;
        }
    }
    let mut components: Vec<&str> = name.split('/').collect();
    if components.len() > 1 && (components[0].contains(['.', ':']) || components[0] == "localhost") {
        let host = components.remove(0);
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':');
        if host.is_empty() || !host.chars().all(ok_char) {
            return false;
        }
    }
    components.iter().all(|c| {
        let ok_char =
            |ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-');
        !c.is_empty()
            && c.chars().all(ok_char)
            && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
            && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
    })
}

fn check_image(state: &HollowState, image: &str) -> Result<()> {
    if !valid_image_reference(image) {
        return Err(Error::InvalidImageName { image: image.to_string() });
    }
    if state.missing_images.contains(image) {
        return Err(Error::ImageNotFound {
            image: image.to_string(),
            detail: "made missing by the test".into(),
        });
    }
    Ok(())
}

#[async_trait]
impl ContainerRuntime for HollowRuntime {
    fn name(&self) -> &'static str {
        "hollow"
    }

    async fn ensure_image(&self, image: &str) -> Result<()> {
        check_image(&self.lock(), image)
    }

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<Sandbox> {
        let (n, id) = self.next_id("sandbox");
        let ip = IpAddr::V4(Ipv4Addr::from(u32::from(self.ip_base).wrapping_add(n)));
        self.lock().sandboxes.insert(id.clone(), HollowSandbox { pod: config.pod.clone(), ip });
        Ok(Sandbox { id, pod: config.pod.clone(), ip: Some(ip), running: true })
    }

    async fn remove_sandbox(&self, id: &str) -> Result<()> {
        let mut state = self.lock();
        state.sandboxes.remove(id).ok_or_else(|| not_found("sandbox", id))?;
        // As CRI's RemovePodSandbox: its containers go with it.
        state.containers.retain(|_, c| c.sandbox_id != id);
        Ok(())
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String> {
        let mut state = self.lock();
        if !state.sandboxes.contains_key(sandbox_id) {
            return Err(not_found("sandbox", sandbox_id));
        }
        check_image(&state, &config.image)?;
        let (_, id) = self.next_id("container");
        state.containers.insert(
            id.clone(),
            HollowContainer {
                sandbox_id: sandbox_id.to_string(),
                pod: config.pod.clone(),
                name: config.name.clone(),
                image: config.image.clone(),
                state: ContainerState::Created,
                restart_count: config.restart_count,
            },
        );
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let mut state = self.lock();
        let container = state.containers.get_mut(id).ok_or_else(|| not_found("container", id))?;
        if container.state != ContainerState::Created {
            return Err(Error::Container {
                reason: "RunContainerError",
                detail: format!("container {id} was already started"),
            });
        }
        container.state = ContainerState::Running { started_at: Some(Timestamp::now()) };
        Ok(())
    }

    async fn stop_container(&self, id: &str, _grace: Duration) -> Result<()> {
        let mut state = self.lock();
        state.containers.get_mut(id).ok_or_else(|| not_found("container", id))?.exit(0);
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        self.lock().containers.remove(id).map(|_| ()).ok_or_else(|| not_found("container", id))
    }

    async fn sandboxes(&self) -> Result<Vec<Sandbox>> {
        let state = self.lock();
        Ok(state
            .sandboxes
            .iter()
            .map(|(id, s)| Sandbox { id: id.clone(), pod: s.pod.clone(), ip: Some(s.ip), running: true })
            .collect())
    }

    async fn containers(&self) -> Result<Vec<Container>> {
        let state = self.lock();
        Ok(state
            .containers
            .iter()
            .map(|(id, c)| Container {
                id: id.clone(),
                pod: c.pod.clone(),
                name: c.name.clone(),
                image: c.image.clone(),
                image_id: None,
                state: c.state.clone(),
                restart_count: c.restart_count,
            })
            .collect())
    }

    async fn logs(&self, id: &str, _options: &LogOptions) -> Result<BoxStream<'static, Result<Bytes>>> {
        if !self.lock().containers.contains_key(id) {
            return Err(not_found("container", id));
        }
        Ok(futures::stream::empty().boxed())
    }

    async fn exec(&self, id: &str, _command: &[String], _timeout: Duration) -> Result<ExecOutput> {
        let state = self.lock();
        let container = state.containers.get(id).ok_or_else(|| not_found("container", id))?;
        if !matches!(container.state, ContainerState::Running { .. }) {
            return Err(Error::Container {
                reason: "ContainerNotRunning",
                detail: format!("cannot exec in container {id}: it is not running"),
            });
        }
        Ok(ExecOutput { exit_code: 0, output: Vec::new() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references() {
        for ok in [
            "busybox",
            "busybox:1.36",
            "library/busybox:latest",
            "registry.local:5000/team/app:v1.2_3",
            "localhost/app",
            "app@sha256:0123abcdef",
            "my-app.v2/x_y:TAG",
        ] {
            assert!(valid_image_reference(ok), "{ok} is valid");
        }
        for bad in
            ["", "Busybox", "busy box", "app:", "app:-x", "/app", "app/", "a//b", "app@sha256:xyz", "app@"]
        {
            assert!(!valid_image_reference(bad), "{bad:?} is invalid");
        }
    }

    #[test]
    fn ips_follow_the_base() {
        let runtime = HollowRuntime::new("n1").with_ip_base(Ipv4Addr::new(10, 1, 0, 0));
        let (n, _) = runtime.next_id("x");
        assert_eq!(Ipv4Addr::from(u32::from(runtime.ip_base).wrapping_add(n)), Ipv4Addr::new(10, 1, 0, 1));
    }
}
