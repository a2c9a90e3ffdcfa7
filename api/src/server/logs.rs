//! `GET pods/{name}/log`: the API server finds the pod's node and streams the container's
//! log from that node's agent (`/containerLogs/...` on its kubelet port), as Kubernetes' API
//! server does. The agent's reply is passed through as it arrives, so `kubectl logs -f`
//! follows.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, Request as HttpRequest, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as PooledClient;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::{Node, Pod};
use url::Url;

use flotilla_core::object::Resource;

use super::resources::Request;
use super::{Error, Result, Shared};
use crate::client::connector::Connector;

/// The port of a node agent that does not publish one (the kubelet's).
pub const DEFAULT_KUBELET_PORT: u16 = 10250;
/// Query parameters passed on to the agent (the others are the API server's).
const PASSED_ON: [&str; 6] = ["follow", "tailLines", "sinceSeconds", "sinceTime", "timestamps", "previous"];
/// The longest error text read back from an agent.
const MAX_ERROR_BYTES: usize = 4096;

/// How the API server reaches node agents: HTTPS with the cluster's trust and a client
/// certificate (configured in `tls`), or plain HTTP for tests.
#[derive(Clone)]
pub struct KubeletClient {
    client: PooledClient<Connector, Empty<Bytes>>,
    scheme: &'static str,
}

impl std::fmt::Debug for KubeletClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletClient").field("scheme", &self.scheme).finish_non_exhaustive()
    }
}

impl KubeletClient {
    /// Agents over HTTPS with `tls` (roots that verify agents' serving certificates, and the
    /// client certificate agents accept).
    pub fn https(tls: Arc<rustls::ClientConfig>) -> Self {
        Self::build(Some(tls), "https")
    }

    /// Agents over plain HTTP (tests, or agents behind a trusted network).
    pub fn plain() -> Self {
        Self::build(None, "http")
    }

    fn build(tls: Option<Arc<rustls::ClientConfig>>, scheme: &'static str) -> Self {
        let client = PooledClient::builder(TokioExecutor::new()).build(Connector::new(tls, None));
        KubeletClient { client, scheme }
    }
}

/// The container a log request reads: the `container` parameter, or the pod's only one.
fn container_of(pod: &Pod, asked: Option<&str>) -> Result<String> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let names: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
        .map(|c| c.name.as_str())
        .collect();
    match asked {
        Some(c) if names.contains(&c) => Ok(c.to_string()),
        Some(c) => Err(Error::BadRequest(format!("container {c} is not valid for pod {name}"))),
        None => {
            let main: Vec<&str> =
                pod.spec.iter().flat_map(|s| &s.containers).map(|c| c.name.as_str()).collect();
            match main.as_slice() {
                [only] => Ok(only.to_string()),
                _ => Err(Error::BadRequest(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    main.join(" ")
                ))),
            }
        }
    }
}

/// Where a node's agent listens: its first InternalIP (else ExternalIP, else Hostname) and
/// its published kubelet port.
fn agent_address(node: &Node) -> Option<(String, u16)> {
    let status = node.status.as_ref()?;
    let addresses = status.addresses.as_deref().unwrap_or_default();
    let host = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|kind| addresses.iter().find(|a| a.type_ == *kind && !a.address.is_empty()))?;
    let port = status
        .daemon_endpoints
        .as_ref()
        .and_then(|d| d.kubelet_endpoint.as_ref())
        .and_then(|e| u16::try_from(e.port).ok())
        .filter(|p| *p != 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Some((host.address.clone(), port))
}

/// A node's agent endpoint, as the API server reaches it.
pub(super) struct Agent<'a> {
    /// The node's name.
    pub(super) node: String,
    /// `<scheme>://<host>:<port>/`.
    pub(super) url: Url,
    kubelet: &'a KubeletClient,
}

impl<'a> Agent<'a> {
    /// The agent of node `node_name`, reached through `kubelet` (from [`kubelet`]).
    pub(super) async fn of(
        shared: &Shared,
        kubelet: &'a KubeletClient,
        node_name: &str,
    ) -> Result<Agent<'a>> {
        let node: Node =
            typed(&shared.registry.get(&Node::TYPE, None, node_name, &Default::default()).await?)?;
        let (host, port) = agent_address(&node)
            .ok_or_else(|| Error::BadRequest(format!("node {node_name} does not publish an address")))?;
        let host = if host.contains(':') { format!("[{host}]") } else { host };
        let url = Url::parse(&format!("{}://{host}:{port}/", kubelet.scheme))
            .map_err(|e| Error::Internal(format!("address of node {node_name}: {e}")))?;
        Ok(Agent { node: node_name.to_string(), url, kubelet })
    }

    /// `GET url` on the agent; the response as it arrives (any status).
    pub(super) async fn get(&self, url: &Url) -> Result<http::Response<hyper::body::Incoming>> {
        let request = HttpRequest::get(url.as_str())
            .body(Empty::new())
            .map_err(|e| Error::Internal(format!("request for the agent of node {}: {e}", self.node)))?;
        self.kubelet.client.request(request).await.map_err(|e| {
            let (host, port) = (self.url.host_str().unwrap_or_default(), self.url.port().unwrap_or_default());
            Error::ServiceUnavailable(format!(
                "reaching the agent of node {} at {host}:{port}: {e}",
                self.node
            ))
        })
    }
}

/// How this server reaches agents, or a 501 naming `what` (plural) was asked for.
pub(super) fn kubelet<'a>(shared: &'a Shared, what: &str) -> Result<&'a KubeletClient> {
    shared.config.kubelet.as_ref().ok_or_else(|| {
        Error::NotImplemented(format!(
            "{what} are served by node agents, and this server is not configured to reach them"
        ))
    })
}

/// `GET pods/{name}/log`
pub(crate) async fn pod_log(shared: &Shared, req: &Request) -> Result<Response> {
    // Said before anything else: the pod is not even read.
    let kubelet = kubelet(shared, &format!("pods \"{}\": container logs", req.name()))?;
    let namespace = req.namespace().unwrap_or_default();
    let pod: Pod =
        typed(&shared.registry.get(&req.t, Some(namespace), req.name(), &Default::default()).await?)?;
    let container = container_of(&pod, req.query.get("container"))?;
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty());
    let node_name = node_name
        .ok_or_else(|| Error::BadRequest(format!("pod {} does not have a host assigned", req.name())))?;
    let agent = Agent::of(shared, kubelet, node_name).await?;
    let mut url = agent.url.clone();
    url.path_segments_mut().map_err(|()| Error::Internal("agent URL cannot have a path".into()))?.extend([
        "containerLogs",
        namespace,
        req.name(),
        &container,
    ]);
    for name in PASSED_ON {
        if let Some(v) = req.query.get(name) {
            url.query_pairs_mut().append_pair(name, v);
        }
    }
    let response = agent.get(&url).await?;
    let status = response.status();
    if !status.is_success() {
        let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let text = String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_BYTES)]).trim().to_string();
        return Err(match status {
            StatusCode::NOT_FOUND => Error::NotFound(text),
            StatusCode::BAD_REQUEST => Error::BadRequest(text),
            _ => Error::Internal(format!("the agent of node {} answered {status}: {text}", agent.node)),
        });
    }
    let mut r = Response::new(Body::new(response.into_body()));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(r)
}

/// A stored object as its kind (a failure means the store holds something it should not).
fn typed<K: Resource>(obj: &flotilla_core::object::DynamicObject) -> Result<K> {
    obj.to_typed().map_err(|e| Error::Internal(format!("decoding a stored object: {e}")))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        Container, DaemonEndpoint, NodeAddress, NodeDaemonEndpoints, NodeStatus, PodSpec,
    };

    use super::*;

    fn pod(containers: &[&str], init: &[&str]) -> Pod {
        let c = |n: &&str| Container { name: n.to_string(), ..Default::default() };
        let mut p = Pod::default();
        p.metadata.name = Some("web".into());
        p.spec = Some(PodSpec {
            containers: containers.iter().map(c).collect(),
            init_containers: Some(init.iter().map(c).collect()),
            ..Default::default()
        });
        p
    }

    #[test]
    fn the_container_defaults_only_when_there_is_one() {
        assert_eq!(container_of(&pod(&["app"], &["setup"]), None).expect("only one"), "app");
        assert_eq!(container_of(&pod(&["app"], &["setup"]), Some("setup")).expect("init"), "setup");
        let e = container_of(&pod(&["a", "b"], &[]), None).expect_err("two");
        assert!(e.to_string().contains("choose one of: [a b]"), "{e}");
        let e = container_of(&pod(&["a"], &[]), Some("c")).expect_err("unknown");
        assert!(e.to_string().contains("container c is not valid for pod web"), "{e}");
    }

    #[test]
    fn agents_are_reached_on_their_internal_ip_and_published_port() {
        let addr = |t: &str, a: &str| NodeAddress { type_: t.into(), address: a.into() };
        let mut n = Node::default();
        assert_eq!(agent_address(&n), None);
        n.status = Some(NodeStatus {
            addresses: Some(vec![addr("Hostname", "n1"), addr("InternalIP", "10.0.0.5")]),
            ..Default::default()
        });
        assert_eq!(agent_address(&n), Some(("10.0.0.5".into(), DEFAULT_KUBELET_PORT)));
        n.status.as_mut().expect("set").daemon_endpoints =
            Some(NodeDaemonEndpoints { kubelet_endpoint: Some(DaemonEndpoint { port: 12345 }) });
        assert_eq!(agent_address(&n), Some(("10.0.0.5".into(), 12345)));
    }
}
