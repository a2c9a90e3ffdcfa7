//! A [`ContainerRuntime`] that counts and times every call of another one into
//! [`AgentMetrics`] (`kubelet_runtime_operations_*`, under the CRI's operation names where
//! there is one: `run_sandbox` is `run_podsandbox`, `containers` is `list_containers`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use super::{
    Container, ContainerConfig, ContainerRuntime, ExecOutput, LogOptions, Result, Sandbox, SandboxConfig,
};
use crate::metrics::AgentMetrics;

/// `inner`, with every call recorded in `metrics`.
#[derive(Clone)]
pub struct Instrumented {
    inner: Arc<dyn ContainerRuntime>,
    metrics: AgentMetrics,
}

impl Instrumented {
    /// Records the calls made to `inner` in `metrics`.
    pub fn new(inner: Arc<dyn ContainerRuntime>, metrics: AgentMetrics) -> Self {
        Instrumented { inner, metrics }
    }

    async fn timed<T>(&self, operation: &'static str, call: impl Future<Output = Result<T>>) -> Result<T> {
        let started = tokio::time::Instant::now();
        let result = call.await;
        self.metrics.runtime_call(operation, started.elapsed().as_secs_f64(), result.is_err());
        result
    }
}

impl std::fmt::Debug for Instrumented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instrumented").field("inner", &self.inner.name()).finish_non_exhaustive()
    }
}

#[async_trait]
impl ContainerRuntime for Instrumented {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn ensure_image(&self, image: &str) -> Result<()> {
        self.timed("image_status", self.inner.ensure_image(image)).await
    }

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<Sandbox> {
        self.timed("run_podsandbox", self.inner.run_sandbox(config)).await
    }

    async fn remove_sandbox(&self, id: &str) -> Result<()> {
        self.timed("remove_podsandbox", self.inner.remove_sandbox(id)).await
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String> {
        self.timed("create_container", self.inner.create_container(sandbox_id, config)).await
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        self.timed("start_container", self.inner.start_container(id)).await
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        self.timed("stop_container", self.inner.stop_container(id, grace)).await
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        self.timed("remove_container", self.inner.remove_container(id)).await
    }

    async fn sandboxes(&self) -> Result<Vec<Sandbox>> {
        self.timed("list_podsandbox", self.inner.sandboxes()).await
    }

    async fn containers(&self) -> Result<Vec<Container>> {
        self.timed("list_containers", self.inner.containers()).await
    }

    /// Times opening the stream, not reading it.
    async fn logs(&self, id: &str, options: &LogOptions) -> Result<BoxStream<'static, Result<Bytes>>> {
        self.timed("container_logs", self.inner.logs(id, options)).await
    }

    async fn exec(&self, id: &str, command: &[String], timeout: Duration) -> Result<ExecOutput> {
        self.timed("exec_sync", self.inner.exec(id, command, timeout)).await
    }
}
