//! `flotilla member list|add|remove|promote`: the store's membership, through any member's
//! etcd-compatible endpoint (Cluster.MemberList, MemberAdd, MemberRemove, MemberPromote), as
//! `etcdctl member` would change it. The member asked hands the change to the leader.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;
use etcd_client::{Client, ConnectOptions, MemberAddOptions};
use serde::Serialize;

use crate::status::{MemberRow, member_rows};

/// Which member to ask, and for how long.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct Target {
    /// The etcd-compatible endpoint of any member, e.g. http://127.0.0.1:2379.
    #[arg(long, conflicts_with = "data_dir")]
    server: Option<String>,
    /// A member's data directory, whose endpoint is asked (default, without --server: the
    /// user's data directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Seconds to wait for the member's answer before giving up.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
}

/// The subcommands of `flotilla member`.
#[derive(clap::Subcommand, Clone, Debug)]
pub(crate) enum MemberCmd {
    /// List the members: id, member-transport address, voter or learner, and the leader.
    List {
        #[command(flatten)]
        target: Target,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Add the member that will listen at ADDR (its --raft-listen / --advertise) as a learner.
    /// Start it with `flotilla server --join`: it is given this id and becomes a voter once
    /// it has caught up. Only learners are added (without --learner the store refuses).
    Add {
        /// The new member's member-transport address, `host:port` or `http://host:port`.
        addr: String,
        /// Add it as a learner (it receives the log but does not vote until promoted).
        #[arg(long)]
        learner: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Remove member ID (a voter or a learner) from the store's membership. Stop its server
    /// afterwards: its data directory cannot rejoin under the same id.
    Remove {
        /// The member's id, as `flotilla member list` prints it (decimal, or hex with 0x).
        #[arg(value_parser = parse_id)]
        id: u64,
        #[command(flatten)]
        target: Target,
    },
    /// Make learner ID a voter. The leader refuses a learner that has not caught up.
    Promote {
        /// The learner's id (decimal, or hex with 0x).
        #[arg(value_parser = parse_id)]
        id: u64,
        #[command(flatten)]
        target: Target,
    },
}

/// How `member list` prints.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Output {
    /// A table.
    Text,
    /// One JSON object.
    Json,
}

/// A member id: decimal, or hexadecimal with `0x` (etcdctl prints ids in hex).
fn parse_id(s: &str) -> Result<u64, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    match parsed {
        Ok(id) if id != 0 => Ok(id),
        _ => Err(format!("{s:?} is not a member id (a positive number, or hex with 0x)")),
    }
}

/// What `member list` reports.
#[derive(Clone, Debug, Serialize)]
struct Listing {
    /// The endpoint asked.
    endpoint: String,
    /// The member that answered.
    member: u64,
    /// The leader it knows (`None` during an election).
    leader: Option<u64>,
    members: Vec<MemberRow>,
}

fn ids(rows: &[MemberRow]) -> String {
    rows.iter().map(|r| r.id.to_string()).collect::<Vec<_>>().join(", ")
}

/// A connected client for `target`, and the endpoint it talks to.
async fn connect(target: &Target) -> anyhow::Result<(Client, String, Duration)> {
    let (endpoint, _) = crate::status::resolve_endpoint(target.server.clone(), target.data_dir.clone())?;
    let limit = Duration::from_secs(target.timeout);
    let options = ConnectOptions::new().with_connect_timeout(limit).with_timeout(limit);
    let client = within(limit, &format!("connecting to {endpoint}"), async {
        Client::connect([endpoint.as_str()], Some(options)).await.map_err(anyhow::Error::from)
    })
    .await?;
    Ok((client, endpoint, limit))
}

/// `fut`, failing with a message naming `what` when it takes longer than `limit`.
async fn within<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.with_context(|| what.to_string()),
        Err(_) => anyhow::bail!("{what}: no answer within {limit:?}"),
    }
}

async fn list(target: Target, output: Output) -> anyhow::Result<()> {
    let (mut client, endpoint, limit) = connect(&target).await?;
    let what = format!("asking {endpoint} for its members");
    let (list, status) =
        within(limit, &what, async { Ok((client.member_list().await?, client.status().await?)) }).await?;
    let listing = Listing {
        member: status.header().map(|h| h.member_id()).unwrap_or_default(),
        leader: Some(status.leader()).filter(|l| *l != 0),
        members: member_rows(list.members()),
        endpoint,
    };
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&listing)?),
        Output::Text => {
            println!("members (asked member {} at {})", listing.member, listing.endpoint);
            println!("  {:<6} {:<24} ROLE", "ID", "ADDRESS");
            for m in &listing.members {
                let role = if m.voter { "voter" } else { "learner" };
                let lead = if listing.leader == Some(m.id) { " (leader)" } else { "" };
                println!("  {:<6} {:<24} {role}{lead}", m.id, m.address);
            }
        }
    }
    Ok(())
}

async fn add(addr: String, learner: bool, target: Target) -> anyhow::Result<()> {
    let (mut client, endpoint, limit) = connect(&target).await?;
    let options = learner.then(|| MemberAddOptions::new().with_is_learner());
    let what = format!("asking {endpoint} to add the member at {addr}");
    let resp = within(limit, &what, async { Ok(client.member_add([addr.as_str()], options).await?) }).await?;
    let member = resp.member().with_context(|| format!("{endpoint} added no member"))?;
    let listed = member_rows(std::slice::from_ref(member));
    let row = listed.first().context("no member row")?;
    let role = if row.voter { "voter" } else { "learner" };
    println!(
        "added member {} at {} as a {role}; members now: {}",
        row.id,
        row.address,
        ids(&member_rows(resp.member_list()))
    );
    println!(
        "start the server whose --advertise (or --raft-listen) is {} with `flotilla server --join <a member's \
         raft address> --token <server token>`: it is given id {} and becomes a voter once it has caught up",
        row.address, row.id
    );
    Ok(())
}

async fn remove(id: u64, target: Target) -> anyhow::Result<()> {
    let (mut client, endpoint, limit) = connect(&target).await?;
    let what = format!("asking {endpoint} to remove member {id}");
    let resp = within(limit, &what, async { Ok(client.member_remove(id).await?) }).await?;
    println!("removed member {id}; members now: {}", ids(&member_rows(resp.members())));
    println!(
        "stop member {id}'s server: it is no longer in the cluster. To bring that machine back, delete its data \
         directory and join again with --join (it gets a new id)"
    );
    Ok(())
}

async fn promote(id: u64, target: Target) -> anyhow::Result<()> {
    let (mut client, endpoint, limit) = connect(&target).await?;
    let what = format!("asking {endpoint} to promote member {id}");
    let resp = within(limit, &what, async { Ok(client.member_promote(id).await?) }).await?;
    println!("member {id} is a voter; members now: {}", ids(&member_rows(resp.members())));
    Ok(())
}

/// Runs `flotilla member`.
pub(crate) async fn run(cmd: MemberCmd) -> anyhow::Result<()> {
    match cmd {
        MemberCmd::List { target, output } => list(target, output).await,
        MemberCmd::Add { addr, learner, target } => add(addr, learner, target).await,
        MemberCmd::Remove { id, target } => remove(id, target).await,
        MemberCmd::Promote { id, target } => promote(id, target).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_decimal_or_prefixed_hex() {
        assert_eq!(parse_id("42"), Ok(42));
        assert_eq!(parse_id("0x2a"), Ok(42));
        assert!(parse_id("0").is_err());
        assert!(parse_id("2a").is_err());
        assert!(parse_id("-1").is_err());
    }
}
