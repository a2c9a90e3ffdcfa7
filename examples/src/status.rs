//! `flotilla status`: the store's members, leader, raft term and applied index (from a
//! member's etcd-compatible endpoint: Maintenance.Status and Cluster.MemberList), and the
//! cluster's nodes (from the API server).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;
use flotilla_api::client::RemoteClient;
use flotilla_core::client::{Api, Client, ListOptions};
use k8s_openapi::api::core::v1::Node;
use serde::Serialize;

use crate::control::{Endpoints, KUBECONFIG_FILE};

/// Flags of `flotilla status`.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct StatusArgs {
    /// The etcd-compatible endpoint of any member, e.g. http://127.0.0.1:2379.
    #[arg(long, conflicts_with = "data_dir")]
    pub(crate) server: Option<String>,
    /// A member's data directory: its endpoint and admin kubeconfig are read from there
    /// (default, without --server: the user's data directory).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// The kubeconfig used to list nodes (default: the data directory's; with --server and
    /// no kubeconfig, nodes are not listed).
    #[arg(long)]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub(crate) output: Output,
    /// Seconds to wait for the member (and for the API server's node list) before giving up.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) timeout: u64,
}

/// How `status` prints.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Output {
    /// A human-readable summary.
    Text,
    /// One JSON object.
    Json,
}

/// One store member.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct MemberRow {
    /// The raft id.
    pub(crate) id: u64,
    /// The member-transport address.
    pub(crate) address: String,
    /// Whether it votes (else a learner).
    pub(crate) voter: bool,
    /// Its etcd endpoint, when the member list gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_url: Option<String>,
    /// Its own applied index, raft term and known leader, asked of it (`status` only).
    #[serde(flatten)]
    pub(crate) progress: Option<Progress>,
    /// Why its progress is missing (`status` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) status_error: Option<String>,
}

/// What one member's Maintenance.Status says of its own progress.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Progress {
    /// Its applied index.
    pub(crate) applied_index: u64,
    /// Its raft term.
    pub(crate) raft_term: u64,
    /// The leader it knows (`None` during an election).
    pub(crate) sees_leader: Option<u64>,
}

/// The rows of an etcd member list, by id.
pub(crate) fn member_rows(members: &[etcd_client::Member]) -> Vec<MemberRow> {
    let mut rows: Vec<MemberRow> = members
        .iter()
        .map(|m| MemberRow {
            id: m.id(),
            address: m
                .peer_urls()
                .first()
                .map(|u| u.trim_start_matches("http://").to_string())
                .unwrap_or_default(),
            voter: !m.is_learner(),
            client_url: m.client_urls().first().cloned(),
            progress: None,
            status_error: None,
        })
        .collect();
    rows.sort_by_key(|m| m.id);
    rows
}

/// One node.
#[derive(Clone, Debug, Serialize)]
struct NodeRow {
    name: String,
    ready: bool,
}

/// What `status` reports.
#[derive(Clone, Debug, Serialize)]
struct Report {
    /// The endpoint asked.
    endpoint: String,
    /// The member that answered.
    member: u64,
    /// The leader it knows (`None` during an election).
    leader: Option<u64>,
    raft_term: u64,
    raft_index: u64,
    applied_index: u64,
    members: Vec<MemberRow>,
    /// `None` when no kubeconfig was available or the API could not be reached.
    nodes: Option<Vec<NodeRow>>,
    /// Why nodes are missing, if they are.
    nodes_error: Option<String>,
}

/// Whether `node` has the condition Ready=True.
fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The etcd endpoint and kubeconfig the flags name.
pub(crate) fn resolve_endpoint(
    server: Option<String>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<(String, Option<PathBuf>)> {
    match server {
        Some(url) => Ok((url, None)),
        None => {
            let dir = crate::data_dir(data_dir)?;
            let endpoints = Endpoints::load(&dir)?;
            anyhow::ensure!(
                !endpoints.etcd.is_empty(),
                "the member in {} serves no etcd endpoint",
                dir.display()
            );
            Ok((endpoints.etcd, Some(dir.join(KUBECONFIG_FILE))))
        }
    }
}

async fn nodes(kubeconfig: &std::path::Path) -> anyhow::Result<Vec<NodeRow>> {
    let client: Arc<dyn Client> = Arc::new(
        RemoteClient::from_kubeconfig(kubeconfig)
            .with_context(|| format!("loading {}", kubeconfig.display()))?,
    );
    let list = Api::<Node>::all(client).list(&ListOptions::default()).await?;
    Ok(list
        .items
        .iter()
        .map(|n| NodeRow { name: n.metadata.name.clone().unwrap_or_default(), ready: node_ready(n) })
        .collect())
}

/// Fails with a message naming `what` when `fut` takes longer than `limit`.
async fn bounded<T>(
    limit: Duration,
    what: impl FnOnce() -> String,
    fut: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(anyhow::anyhow!("{}: no answer within {limit:?}", what())),
    }
}

/// Asks the member at `url` (its etcd endpoint) for its own progress, within `limit`.
async fn member_progress(url: Option<String>, limit: Duration) -> anyhow::Result<Progress> {
    let url = url.context("the member list gives no etcd endpoint for it")?;
    bounded(limit, || format!("asking {url} for its status"), async {
        let options = etcd_client::ConnectOptions::new().with_connect_timeout(limit).with_timeout(limit);
        let mut etcd = etcd_client::Client::connect([url.as_str()], Some(options)).await?;
        let st = etcd.status().await?;
        Ok(Progress {
            applied_index: st.raft_applied_index(),
            raft_term: st.raft_term(),
            sees_leader: Some(st.leader()).filter(|l| *l != 0),
        })
    })
    .await
}

async fn report(endpoint: &str, kubeconfig: Option<PathBuf>, limit: Duration) -> anyhow::Result<Report> {
    let options = etcd_client::ConnectOptions::new().with_connect_timeout(limit).with_timeout(limit);
    let (status, list) = bounded(limit, || format!("asking {endpoint} for its status"), async {
        let mut etcd = etcd_client::Client::connect([endpoint], Some(options))
            .await
            .with_context(|| format!("connecting to {endpoint}"))?;
        let status = etcd.status().await.with_context(|| format!("asking {endpoint} for its status"))?;
        let list = etcd.member_list().await.with_context(|| format!("asking {endpoint} for its members"))?;
        Ok((status, list))
    })
    .await?;
    let mut members = member_rows(list.members());
    let asked: Vec<_> = members.iter().map(|m| member_progress(m.client_url.clone(), limit)).collect();
    for (m, progress) in members.iter_mut().zip(futures::future::join_all(asked).await) {
        match progress {
            Ok(p) => m.progress = Some(p),
            Err(e) => m.status_error = Some(format!("{e:#}")),
        }
    }
    let (nodes, nodes_error) = match kubeconfig {
        None => (None, Some("no kubeconfig given".to_string())),
        Some(k) => match bounded(limit, || "listing nodes".to_string(), nodes(&k)).await {
            Ok(n) => (Some(n), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        },
    };
    Ok(Report {
        endpoint: endpoint.to_string(),
        member: status.header().map(|h| h.member_id()).unwrap_or_default(),
        leader: Some(status.leader()).filter(|l| *l != 0),
        raft_term: status.raft_term(),
        raft_index: status.raft_index(),
        applied_index: status.raft_applied_index(),
        members,
        nodes,
        nodes_error,
    })
}

fn print_text(r: &Report) {
    let leader = r.leader.map_or_else(|| "none".to_string(), |l| l.to_string());
    println!("store (asked member {} at {})", r.member, r.endpoint);
    println!(
        "  leader: {leader}  raft term: {}  raft index: {}  applied index: {}",
        r.raft_term, r.raft_index, r.applied_index
    );
    println!("members:");
    println!("  {:<6} {:<24} {:<18} {:>8} {:>6}", "ID", "ADDRESS", "ROLE", "APPLIED", "TERM");
    for m in &r.members {
        let role = if m.voter { "voter" } else { "learner" };
        let lead = if r.leader == Some(m.id) { " (leader)" } else { "" };
        let (applied, term) = match &m.progress {
            Some(p) => (p.applied_index.to_string(), p.raft_term.to_string()),
            None => ("?".to_string(), "?".to_string()),
        };
        println!("  {:<6} {:<24} {:<18} {applied:>8} {term:>6}", m.id, m.address, format!("{role}{lead}"));
    }
    match (&r.nodes, &r.nodes_error) {
        (Some(nodes), _) => {
            println!("nodes:");
            if nodes.is_empty() {
                println!("  (none)");
            }
            for n in nodes {
                println!("  {:<30} {}", n.name, if n.ready { "Ready" } else { "NotReady" });
            }
        }
        (None, why) => println!("nodes: unknown ({})", why.as_deref().unwrap_or("not asked")),
    }
}

/// Runs `flotilla status`.
pub(crate) async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let (endpoint, default_kubeconfig) = resolve_endpoint(args.server, args.data_dir)?;
    let limit = Duration::from_secs(args.timeout);
    let r = report(&endpoint, args.kubeconfig.or(default_kubeconfig), limit).await?;
    match args.output {
        Output::Text => print_text(&r),
        Output::Json => println!("{}", serde_json::to_string_pretty(&r)?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};

    use super::*;

    fn node(ready: Option<&str>) -> Node {
        let conditions = ready
            .map(|s| vec![NodeCondition { type_: "Ready".into(), status: s.into(), ..Default::default() }]);
        Node { status: Some(NodeStatus { conditions, ..Default::default() }), ..Default::default() }
    }

    #[test]
    fn a_node_is_ready_only_with_ready_true() {
        assert!(node_ready(&node(Some("True"))));
        assert!(!node_ready(&node(Some("Unknown"))));
        assert!(!node_ready(&node(None)));
        assert!(!node_ready(&Node::default()));
    }
}
