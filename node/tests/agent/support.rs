//! What every scenario needs: a TestKit, a fake runtime, an agent running on both, and pods.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::controller::testing::TestKit;
use flotilla_node::agent::{AgentConfig, NodeAgent};
use flotilla_node::metrics::AgentMetrics;
use flotilla_node::runtime::ContainerRuntime;
use k8s_openapi::api::core::v1::{Container, ContainerStatus, NodeAddress, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The node the agents under test run as.
pub(crate) const NODE: &str = "node-1";
/// How long a scenario may take (in tokio time) before it is considered stuck.
pub(crate) const SCENARIO_TIMEOUT: Duration = Duration::from_secs(3600);

/// Runs `test`, failing with `what` if it does not finish in [`SCENARIO_TIMEOUT`].
pub(crate) async fn within<F: Future<Output = ()>>(what: &str, test: F) {
    if tokio::time::timeout(SCENARIO_TIMEOUT, test).await.is_err() {
        panic!("{what}: did not finish; the agent or the test probably deadlocked");
    }
}

/// A running agent.
pub(crate) struct Agent {
    /// The agent's metrics.
    pub(crate) metrics: AgentMetrics,
    stop: CancellationToken,
    task: JoinHandle<()>,
    _root: tempfile::TempDir,
}

impl Agent {
    /// Starts an agent for [`NODE`] on `runtime` (the fake one, or the hollow one).
    pub(crate) fn start(kit: &TestKit, runtime: Arc<dyn ContainerRuntime>) -> Agent {
        let root = tempfile::tempdir().expect("a temporary directory");
        let mut config = AgentConfig::new(NODE, root.path()).with_clock(kit.clock());
        config.addresses = vec![NodeAddress { type_: "InternalIP".into(), address: "192.168.0.10".into() }];
        let agent = NodeAgent::new(kit.client(), runtime, config);
        let metrics = agent.metrics();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            agent.run(token).await.expect("the agent runs until stopped");
        });
        Agent { metrics, stop, task, _root: root }
    }

    /// Stops the agent and waits for it (containers keep running).
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("the agent task ends cleanly");
    }
}

/// A pod with containers `(name, image)` and `policy`.
pub(crate) fn pod(name: &str, policy: &str, containers: &[(&str, &str)]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some(policy.into()),
            containers: containers
                .iter()
                .map(|(n, image)| Container {
                    name: (*n).into(),
                    image: Some((*image).into()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        status: None,
    }
}

/// Creates `pod` and binds it to `node`; returns its uid.
pub(crate) async fn create_bound(kit: &TestKit, pod: &Pod, node: &str) -> String {
    let api = kit.api::<Pod>(Some("default"));
    let created = api.create(pod).await.expect("the pod is created");
    let name = created.metadata.name.clone().expect("a name");
    api.bind(&name, node).await.expect("the pod is bound");
    created.metadata.uid.expect("a uid")
}

/// The current pod `name`, if it exists.
pub(crate) async fn get(kit: &TestKit, name: &str) -> Option<Pod> {
    kit.api::<Pod>(Some("default")).get_opt(name).await.expect("the pod can be read")
}

/// The status of container `container` of pod `name`.
pub(crate) async fn container_status(kit: &TestKit, name: &str, container: &str) -> Option<ContainerStatus> {
    let pod = get(kit, name).await?;
    let status = pod.status?;
    status.container_statuses?.into_iter().find(|c| c.name == container)
}

/// The waiting reason of container `container` of pod `name`.
pub(crate) async fn waiting_reason(kit: &TestKit, name: &str, container: &str) -> Option<String> {
    container_status(kit, name, container).await?.state?.waiting?.reason
}

/// The phase of pod `name`.
pub(crate) async fn phase(kit: &TestKit, name: &str) -> Option<String> {
    get(kit, name).await?.status?.phase
}
