//! Images and containers: check, create, start, stop, remove, list.

use std::time::Duration;

use bollard::models::ContainerSummaryStateEnum as ListedState;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures::{StreamExt, TryStreamExt};
use tracing::{debug, info, warn};

use super::DockerRuntime;
use super::error::{classify, error_chain, status, unavailable};
use super::{reference, spec, state};
use crate::runtime::{Container, ContainerConfig, Error as RuntimeError, Result};

/// The reason of a container the daemon refuses to create.
const CREATE_ERROR: &str = "CreateContainerError";
/// The reason of a container that cannot be started.
const RUN_ERROR: &str = "RunContainerError";
/// The reason of a container that cannot be stopped.
const KILL_ERROR: &str = "KillContainerError";
/// The reason of a container that cannot be removed.
const REMOVE_ERROR: &str = "RemoveContainerError";
/// How many containers are inspected at once when listing.
const INSPECT_CONCURRENCY: usize = 8;
/// Time allowed to the daemon on top of the grace period to answer a stop.
const STOP_SLACK: Duration = Duration::from_secs(30);

impl DockerRuntime {
    pub(super) async fn ensure_image_impl(&self, image: &str) -> Result<()> {
        if let Err(why) = reference::validate(image) {
            debug!(image, why, "invalid image reference");
            return Err(RuntimeError::InvalidImageName { image: image.to_owned() });
        }
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, message }) => {
                Err(RuntimeError::ImageNotFound { image: image.to_owned(), detail: message })
            }
            // The daemon's grammar may be stricter than ours in corners (it answers 400).
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 400, message }) => {
                debug!(image, message, "daemon rejects image reference");
                Err(RuntimeError::InvalidImageName { image: image.to_owned() })
            }
            Err(error) => {
                Err(RuntimeError::Unavailable(format!("inspect image {image}: {}", error_chain(&error))))
            }
        }
    }

    pub(super) async fn create_container_impl(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
    ) -> Result<String> {
        self.ensure_image_impl(&config.image).await?;
        // Checked here so that a missing sandbox is named as such, not as a refused create.
        self.docker
            .inspect_container(sandbox_id, None)
            .await
            .map_err(|error| classify(error, "sandbox", sandbox_id, CREATE_ERROR))?;
        let body = spec::container_body(&self.config.node_name, sandbox_id, config)?;
        let name = spec::container_name(config);
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let created = match self.docker.create_container(Some(options), body).await {
            Ok(created) => created,
            // The image went away since it was checked.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, message }) => {
                return Err(RuntimeError::ImageNotFound { image: config.image.clone(), detail: message });
            }
            Err(error) => return Err(classify(error, "container", &name, CREATE_ERROR)),
        };
        for warning in created.warnings.iter().filter(|w| !w.is_empty()) {
            warn!(container = %name, warning, "docker warns about a created container");
        }
        debug!(container = %name, id = %created.id, "created container");
        Ok(created.id)
    }

    pub(super) async fn start_container_impl(&self, id: &str) -> Result<()> {
        self.docker
            .start_container(id, None)
            .await
            .map_err(|error| classify(error, "container", id, RUN_ERROR))?;
        info!(container = %id, "started container");
        Ok(())
    }

    pub(super) async fn stop_container_impl(&self, id: &str, grace: Duration) -> Result<()> {
        let seconds = grace_seconds(grace);
        let options = StopContainerOptionsBuilder::default().t(seconds).build();
        // The daemon answers once the container is gone, which may take the whole grace period.
        let client = self.docker.clone().with_timeout(grace.saturating_add(STOP_SLACK));
        client
            .stop_container(id, Some(options))
            .await
            .map_err(|error| classify(error, "container", id, KILL_ERROR))?;
        info!(container = %id, grace_seconds = seconds, "stopped container");
        Ok(())
    }

    pub(super) async fn remove_container_impl(&self, id: &str) -> Result<()> {
        // Not forced: removing a running container is the caller's mistake, and said so.
        let options = RemoveContainerOptionsBuilder::default().force(false).v(true).build();
        self.docker
            .remove_container(id, Some(options))
            .await
            .map_err(|error| classify(error, "container", id, REMOVE_ERROR))?;
        self.inspected.forget(id);
        debug!(container = %id, "removed container");
        Ok(())
    }

    pub(super) async fn containers_impl(&self) -> Result<Vec<Container>> {
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&self.owned_filter(spec::ROLE_CONTAINER))
            .build();
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|error| unavailable("list containers", error))?;
        let listed: Vec<(String, Option<ListedState>)> =
            summaries.into_iter().filter_map(|s| Some((s.id?, s.state))).collect();
        self.inspected.retain(listed.iter().map(|(id, _)| id.as_str()));
        // The list lacks exit codes and times: inspect each container whose listed state
        // changed since it was last inspected, a few at a time, keeping the list's order.
        let inspected: Vec<Option<Container>> = futures::stream::iter(listed)
            .map(|(id, state)| async move {
                if let Some(known) = state.and_then(|state| self.inspected.get(&id, state)) {
                    return Ok(Some(known));
                }
                match self.docker.inspect_container(&id, None).await {
                    Ok(inspect) => {
                        let container = state::container_from_inspect(&inspect);
                        if let (Some(container), Some(state)) = (&container, state) {
                            self.inspected.put(state, container, k8s_openapi::jiff::Timestamp::now());
                        }
                        Ok(container)
                    }
                    // Removed between the list and the inspect: it is not there any more.
                    Err(error) if status(&error) == Some(404) => Ok(None),
                    Err(error) => Err(classify(error, "container", &id, RUN_ERROR)),
                }
            })
            .buffered(INSPECT_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(inspected.into_iter().flatten().collect())
    }
}

/// Docker takes whole seconds: round up so that the container gets at least its grace.
fn grace_seconds(grace: Duration) -> i32 {
    let seconds = grace.as_secs().saturating_add(u64::from(grace.subsec_nanos() > 0));
    i32::try_from(seconds).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_rounds_up_to_whole_seconds() {
        assert_eq!(grace_seconds(Duration::ZERO), 0);
        assert_eq!(grace_seconds(Duration::from_millis(1)), 1);
        assert_eq!(grace_seconds(Duration::from_secs(30)), 30);
        assert_eq!(grace_seconds(Duration::from_millis(30_500)), 31);
        assert_eq!(grace_seconds(Duration::MAX), i32::MAX);
    }
}
