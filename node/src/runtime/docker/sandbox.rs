//! Sandboxes: create and start (idempotently), remove, list.

use std::collections::HashMap;

use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use tracing::{debug, info};

use super::DockerRuntime;
use super::error::{classify, status, unavailable};
use super::{image, spec, state};
use crate::runtime::{Error as RuntimeError, Result, Sandbox, SandboxConfig, labels};

/// The reason of a sandbox that cannot be created, started or removed.
const SANDBOX_ERROR: &str = "CreatePodSandboxError";

impl DockerRuntime {
    /// The label filters selecting this node's objects of `role`.
    pub(super) fn owned_filter(&self, role: &str) -> HashMap<&'static str, Vec<String>> {
        HashMap::from([(
            "label",
            vec![format!("{}={}", labels::NODE, self.config.node_name), format!("{}={role}", labels::ROLE)],
        )])
    }

    pub(super) async fn run_sandbox_impl(&self, config: &SandboxConfig) -> Result<Sandbox> {
        let name = spec::sandbox_name(&config.pod);
        if let Some(running) = self.existing_sandbox(&name).await? {
            debug!(sandbox = %running.id, pod = %config.pod.name, "sandbox already running");
            return Ok(running);
        }
        if !image::exists(&self.docker, &self.config.sandbox_image).await? {
            self.ensure_sandbox_image().await?;
        }
        let body = spec::sandbox_body(
            &self.config.node_name,
            &self.config.sandbox_image,
            &self.config.network,
            config,
        );
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|error| classify(error, "sandbox", &name, SANDBOX_ERROR))?;
        if let Err(error) = self.docker.start_container(&created.id, None).await {
            // A sandbox that never ran is useless; removing it lets the next attempt reuse the name.
            self.remove_quietly(&created.id).await;
            return Err(classify(error, "sandbox", &name, SANDBOX_ERROR));
        }
        let inspect = self
            .docker
            .inspect_container(&created.id, None)
            .await
            .map_err(|error| classify(error, "sandbox", &created.id, SANDBOX_ERROR))?;
        let sandbox = state::sandbox_from_inspect(&inspect, &self.config.network).ok_or_else(|| {
            RuntimeError::Unavailable(format!("docker reported sandbox {name} without an id"))
        })?;
        info!(
            sandbox = %sandbox.id,
            pod = %config.pod.name,
            namespace = %config.pod.namespace,
            ip = ?sandbox.ip,
            "started sandbox"
        );
        Ok(sandbox)
    }

    /// The pod's running sandbox, if any; a stopped one is removed so that it can be replaced.
    async fn existing_sandbox(&self, name: &str) -> Result<Option<Sandbox>> {
        let inspect = match self.docker.inspect_container(name, None).await {
            Ok(inspect) => inspect,
            Err(error) if status(&error) == Some(404) => return Ok(None),
            Err(error) => return Err(classify(error, "sandbox", name, SANDBOX_ERROR)),
        };
        let owner = inspect.config.as_ref().and_then(|c| c.labels.as_ref()).and_then(|l| l.get(labels::NODE));
        if owner != Some(&self.config.node_name) {
            return Err(RuntimeError::Container {
                reason: SANDBOX_ERROR,
                detail: format!(
                    "container {name} exists and is not this node's sandbox (node label {owner:?})"
                ),
            });
        }
        match state::sandbox_from_inspect(&inspect, &self.config.network) {
            Some(sandbox) if sandbox.running => Ok(Some(sandbox)),
            Some(stopped) => {
                info!(sandbox = %stopped.id, "replacing stopped sandbox");
                self.remove_sandbox_impl(&stopped.id).await?;
                Ok(None)
            }
            None => Err(RuntimeError::Unavailable(format!("docker reported sandbox {name} without an id"))),
        }
    }

    pub(super) async fn remove_sandbox_impl(&self, id: &str) -> Result<()> {
        // The pause process has nothing to flush: kill it rather than wait out a grace period.
        let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        self.docker
            .remove_container(id, Some(options))
            .await
            .map_err(|error| classify(error, "sandbox", id, SANDBOX_ERROR))?;
        info!(sandbox = %id, "removed sandbox");
        Ok(())
    }

    /// Removes a container after a failure that is being reported already.
    pub(super) async fn remove_quietly(&self, id: &str) {
        let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        if let Err(error) = self.docker.remove_container(id, Some(options)).await {
            debug!(id, %error, "cannot remove a container that failed to start");
        }
    }

    pub(super) async fn sandboxes_impl(&self) -> Result<Vec<Sandbox>> {
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&self.owned_filter(spec::ROLE_SANDBOX))
            .build();
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|error| unavailable("list sandboxes", error))?;
        Ok(summaries
            .iter()
            .filter_map(|summary| state::sandbox_from_summary(summary, &self.config.network))
            .collect())
    }
}
