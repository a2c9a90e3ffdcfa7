//! A scriptable in-memory runtime. What a container does is chosen by its image:
//! - `missing...`: the image is not present (`ErrImagePull`);
//! - anything with a space or upper case: an invalid name (`InvalidImageName`);
//! - `nocmd`: creating works, starting fails (`RunContainerError`);
//! - `crash`: exits 1 one second after it starts; `complete`: exits 0 after one second;
//! - `stubborn`: ignores SIGTERM, so stopping takes the whole grace period;
//! - anything else runs until stopped.
//!
//! Exits happen lazily, when the runtime is listed at or after their time, using the clock
//! the test gives (the TestKit's, which follows tokio's paused clock).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use flotilla_core::registry::Clock;
use flotilla_node::runtime::{
    Container, ContainerConfig, ContainerRuntime, ContainerState, Error, ExecOutput, LogOptions, Result,
    Sandbox, SandboxConfig,
};
use futures::stream::BoxStream;
use k8s_openapi::jiff::Timestamp;

/// A call the agent made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    /// `run_sandbox` for the pod of this uid.
    RunSandbox(String),
    /// `create_container` of (container name, restart count).
    Create(String, u32),
    /// `stop_container` of (container name, grace).
    Stop(String, Duration),
    /// `remove_container` of the container name.
    Remove(String),
    /// `remove_sandbox` of the pod's uid.
    RemoveSandbox(String),
}

#[derive(Default)]
struct State {
    next: u64,
    sandboxes: BTreeMap<String, Sandbox>,
    containers: BTreeMap<String, (Container, ContainerConfig)>,
    calls: Vec<Call>,
    created: Vec<(String, u32, Timestamp)>,
}

/// The fake runtime.
pub(crate) struct FakeRuntime {
    clock: Clock,
    state: Mutex<State>,
}

fn exit_after(image: &str) -> Option<(Duration, i32)> {
    match image {
        "crash" => Some((Duration::from_secs(1), 1)),
        "complete" => Some((Duration::from_secs(1), 0)),
        _ => None,
    }
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(d).unwrap_or(t)
}

impl FakeRuntime {
    /// A runtime stamping times with `clock`.
    pub(crate) fn new(clock: Clock) -> Arc<Self> {
        Arc::new(FakeRuntime { clock, state: Mutex::new(State::default()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("no test thread panicked holding the fake runtime")
    }

    /// Every call so far.
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// When each container was created: (name, restart count, time).
    pub(crate) fn created(&self) -> Vec<(String, u32, Timestamp)> {
        self.lock().created.clone()
    }

    /// The configurations of the containers the runtime holds.
    pub(crate) fn configs(&self) -> Vec<ContainerConfig> {
        self.lock().containers.values().map(|(_, c)| c.clone()).collect()
    }

    /// How many containers were created.
    pub(crate) fn creates(&self) -> usize {
        self.calls().iter().filter(|c| matches!(c, Call::Create(..))).count()
    }

    /// Containers the runtime holds now (exits applied).
    pub(crate) fn snapshot(&self) -> Vec<Container> {
        let now = (self.clock)();
        let mut s = self.lock();
        Self::apply_exits(&mut s, now);
        s.containers.values().map(|(c, _)| c.clone()).collect()
    }

    /// How many sandboxes the runtime holds.
    pub(crate) fn sandbox_count(&self) -> usize {
        self.lock().sandboxes.len()
    }

    /// Adds a running container and sandbox for a pod the agent never saw (an orphan).
    pub(crate) fn add_orphan(&self, uid: &str) {
        let now = (self.clock)();
        let mut s = self.lock();
        let pod = flotilla_node::runtime::PodRef {
            uid: uid.into(),
            namespace: "default".into(),
            name: "ghost".into(),
        };
        s.sandboxes.insert(
            format!("sb-{uid}"),
            Sandbox {
                id: format!("sb-{uid}"),
                pod: pod.clone(),
                ip: Some("10.9.9.9".parse().expect("an IP literal")),
                running: true,
            },
        );
        let c = Container {
            id: format!("c-{uid}"),
            pod: pod.clone(),
            name: "ghost".into(),
            image: "app".into(),
            image_id: None,
            state: ContainerState::Running { started_at: Some(now) },
            restart_count: 0,
        };
        let config = ContainerConfig {
            pod,
            name: "ghost".into(),
            image: "app".into(),
            command: vec![],
            args: vec![],
            env: vec![],
            working_dir: None,
            mounts: vec![],
            cpu_limit_millis: None,
            memory_limit_bytes: None,
            restart_count: 0,
        };
        s.containers.insert(c.id.clone(), (c, config));
    }

    fn apply_exits(s: &mut State, now: Timestamp) {
        for (c, _) in s.containers.values_mut() {
            let ContainerState::Running { started_at: Some(started) } = c.state else { continue };
            if let Some((after, code)) = exit_after(&c.image) {
                let at = add(started, after);
                if at <= now {
                    c.state = ContainerState::Exited {
                        exit_code: code,
                        reason: if code == 0 { "Completed".into() } else { "Error".into() },
                        started_at: Some(started),
                        finished_at: Some(at),
                    };
                }
            }
        }
    }
}

#[async_trait]
impl ContainerRuntime for FakeRuntime {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn ensure_image(&self, image: &str) -> Result<()> {
        if image.contains(' ') || image.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(Error::InvalidImageName { image: image.into() });
        }
        if image.starts_with("missing") {
            return Err(Error::ImageNotFound { image: image.into(), detail: "no such image".into() });
        }
        Ok(())
    }

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<Sandbox> {
        let mut s = self.lock();
        s.next += 1;
        let sb = Sandbox {
            id: format!("sb{}", s.next),
            pod: config.pod.clone(),
            ip: Some(format!("10.88.0.{}", s.next % 250 + 2).parse().expect("a valid IP")),
            running: true,
        };
        s.sandboxes.insert(sb.id.clone(), sb.clone());
        s.calls.push(Call::RunSandbox(config.pod.uid.clone()));
        Ok(sb)
    }

    async fn remove_sandbox(&self, id: &str) -> Result<()> {
        let mut s = self.lock();
        let sb = s.sandboxes.remove(id).ok_or_else(|| Error::NotFound { what: "sandbox", id: id.into() })?;
        s.calls.push(Call::RemoveSandbox(sb.pod.uid));
        Ok(())
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String> {
        let mut s = self.lock();
        if !s.sandboxes.contains_key(sandbox_id) {
            return Err(Error::NotFound { what: "sandbox", id: sandbox_id.into() });
        }
        s.next += 1;
        let id = format!("c{}", s.next);
        let c = Container {
            id: id.clone(),
            pod: config.pod.clone(),
            name: config.name.clone(),
            image: config.image.clone(),
            image_id: Some(format!("sha256:{}", config.image)),
            state: ContainerState::Created,
            restart_count: config.restart_count,
        };
        s.containers.insert(id.clone(), (c, config.clone()));
        s.calls.push(Call::Create(config.name.clone(), config.restart_count));
        let now = (self.clock)();
        s.created.push((config.name.clone(), config.restart_count, now));
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let now = (self.clock)();
        let mut s = self.lock();
        let (c, _) =
            s.containers.get_mut(id).ok_or_else(|| Error::NotFound { what: "container", id: id.into() })?;
        if c.image == "nocmd" {
            c.state = ContainerState::Exited {
                exit_code: 128,
                reason: "StartError".into(),
                started_at: None,
                finished_at: Some(now),
            };
            return Err(Error::Container {
                reason: "RunContainerError",
                detail: "exec: \"nocmd\": executable file not found in $PATH".into(),
            });
        }
        c.state = ContainerState::Running { started_at: Some(now) };
        Ok(())
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let stubborn = {
            let mut s = self.lock();
            let (c, _) =
                s.containers.get(id).ok_or_else(|| Error::NotFound { what: "container", id: id.into() })?;
            let (name, stubborn) = (c.name.clone(), c.image == "stubborn");
            s.calls.push(Call::Stop(name, grace));
            stubborn
        };
        if stubborn {
            tokio::time::sleep(grace).await;
        }
        let now = (self.clock)();
        let mut s = self.lock();
        Self::apply_exits(&mut s, now);
        if let Some((c, _)) = s.containers.get_mut(id)
            && let ContainerState::Running { started_at } = c.state
        {
            let code = if stubborn { 137 } else { 143 };
            c.state = ContainerState::Exited {
                exit_code: code,
                reason: "Error".into(),
                started_at,
                finished_at: Some(now),
            };
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let mut s = self.lock();
        let (c, _) =
            s.containers.remove(id).ok_or_else(|| Error::NotFound { what: "container", id: id.into() })?;
        s.calls.push(Call::Remove(c.name));
        Ok(())
    }

    async fn sandboxes(&self) -> Result<Vec<Sandbox>> {
        Ok(self.lock().sandboxes.values().cloned().collect())
    }

    async fn containers(&self) -> Result<Vec<Container>> {
        Ok(self.snapshot())
    }

    async fn logs(&self, _id: &str, _options: &LogOptions) -> Result<BoxStream<'static, Result<Bytes>>> {
        Ok(Box::pin(futures::stream::empty()))
    }

    async fn exec(&self, _id: &str, _command: &[String], _timeout: Duration) -> Result<ExecOutput> {
        Ok(ExecOutput { exit_code: 0, output: Vec::new() })
    }
}
