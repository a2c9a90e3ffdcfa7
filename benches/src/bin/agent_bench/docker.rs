//! The Docker side of a run: the busybox image the pods run (built `FROM scratch` around the
//! host's static busybox by `flotilla_node::testing::busybox_image`, as the node's Docker tests
//! build it), counting the containers the agent made for its node, and cleaning up.
//!
//! Cleanup removes every container labelled with the run's node name (there should be none
//! left once the agent has finished the deletions) and the images this run created: the
//! busybox image and the agent's sandbox (pause) image, each only if it did not exist before
//! the run, and only if no container still uses it. [`Leftovers`] does the same with the
//! `docker` CLI when dropped without [`Leftovers::disarm`], so a panic cleans up too.

use std::collections::HashMap;

use anyhow::Context;
use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveImageOptionsBuilder};
use flotilla_node::runtime::docker::{DEFAULT_HOST, DEFAULT_SANDBOX_IMAGE};
use flotilla_node::runtime::labels;
use flotilla_node::testing::{BUSYBOX_IMAGE, busybox_image, remove_node_objects};

/// The daemon, and what this run added to it.
pub(crate) struct DockerSide {
    docker: Docker,
    node: String,
    /// Images that did not exist when the run started.
    new_images: Vec<&'static str>,
    keep_images: bool,
}

impl DockerSide {
    /// Connects to the local daemon and builds the busybox image if it is missing.
    pub(crate) async fn prepare(node: &str, keep_images: bool) -> anyhow::Result<(DockerSide, String)> {
        let docker = Docker::connect_with_host(DEFAULT_HOST)
            .with_context(|| format!("connecting to {DEFAULT_HOST}"))?;
        let docker = docker
            .negotiate_version()
            .await
            .with_context(|| format!("no Docker daemon answers at {DEFAULT_HOST}"))?;
        docker
            .ping()
            .await
            .with_context(|| format!("the Docker daemon at {DEFAULT_HOST} does not answer a ping"))?;
        let mut new_images = Vec::new();
        for image in [BUSYBOX_IMAGE, DEFAULT_SANDBOX_IMAGE] {
            if !exists(&docker, image).await? {
                new_images.push(image);
            }
        }
        let image = busybox_image(&docker).await.context("building the busybox image")?;
        Ok((DockerSide { docker, node: node.to_owned(), new_images, keep_images }, image))
    }

    /// Containers (sandboxes included) labelled with the run's node, running or not.
    pub(crate) async fn node_containers(&self) -> anyhow::Result<usize> {
        let filters = HashMap::from([("label", vec![format!("{}={}", labels::NODE, self.node)])]);
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let found =
            self.docker.list_containers(Some(options)).await.context("listing the node's containers")?;
        Ok(found.len())
    }

    /// Force-removes the node's containers (returns how many there were) and the images this
    /// run created unless `--keep-images` (returns which were removed).
    pub(crate) async fn clean(&self) -> anyhow::Result<(usize, Vec<&'static str>)> {
        let containers =
            remove_node_objects(&self.docker, &self.node).await.context("removing the node's containers")?;
        let mut removed = Vec::new();
        if !self.keep_images {
            for image in &self.new_images {
                // Not forced: an image another user's container runs stays.
                let options = RemoveImageOptionsBuilder::default().force(false).build();
                match self.docker.remove_image(image, Some(options), None).await {
                    Ok(_) => removed.push(*image),
                    Err(error) => eprintln!("# left image {image} in place: {error}"),
                }
            }
        }
        Ok((containers, removed))
    }

    /// A guard that cleans up with the `docker` CLI if dropped before [`Leftovers::disarm`].
    pub(crate) fn guard(&self) -> Leftovers {
        let images = if self.keep_images { Vec::new() } else { self.new_images.clone() };
        Leftovers { node: Some(self.node.clone()), images }
    }
}

async fn exists(docker: &Docker, image: &str) -> anyhow::Result<bool> {
    match docker.inspect_image(image).await {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
        Err(error) => Err(error).with_context(|| format!("inspecting image {image}")),
    }
}

/// Removes the run's containers and new images when dropped armed (the panic path).
pub(crate) struct Leftovers {
    node: Option<String>,
    images: Vec<&'static str>,
}

impl Leftovers {
    /// The orderly cleanup ran; nothing to do on drop.
    pub(crate) fn disarm(&mut self) {
        self.node = None;
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let Some(node) = self.node.take() else {
            return;
        };
        let filter = format!("label={}={node}", labels::NODE);
        let listed = std::process::Command::new("docker").args(["ps", "-aq", "--filter", &filter]).output();
        let ids: Vec<String> = match listed {
            Ok(out) => String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect(),
            Err(error) => {
                eprintln!("# could not list the containers of node {node} to remove them: {error}");
                return;
            }
        };
        if !ids.is_empty() {
            let removed = std::process::Command::new("docker").args(["rm", "-f", "-v"]).args(&ids).status();
            eprintln!("# removed {} leftover container(s) of node {node}: {removed:?}", ids.len());
        }
        for image in &self.images {
            let _ = std::process::Command::new("docker").args(["rmi", image]).output();
        }
    }
}
