//! `flotilla snapshot save|restore`: a consistent backup of the store through a member's
//! etcd-compatible endpoint (Maintenance.Snapshot), and restoring one into the data
//! directory of a new one-member cluster.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use crate::status::resolve_endpoint;
use crate::token;

/// `flotilla snapshot` subcommands.
#[derive(Subcommand, Clone, Debug)]
pub(crate) enum SnapshotCmd {
    /// Save a consistent backup of the store to FILE (mode 0600: it holds every Secret).
    Save {
        /// Where to write the backup.
        file: PathBuf,
        /// The etcd-compatible endpoint of any member, e.g. http://127.0.0.1:2379.
        #[arg(long, conflicts_with = "data_dir")]
        server: Option<String>,
        /// A running member's data directory (its endpoint is read from there).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Restore a backup into NEW data directory, as a new one-member cluster; start it with
    /// `flotilla server --data-dir NEW` (or `flotilla up --data-dir NEW`).
    Restore {
        /// The backup written by `flotilla snapshot save`.
        file: PathBuf,
        /// The new cluster's data directory (must not hold a store yet).
        #[arg(long)]
        data_dir: PathBuf,
    },
}

/// Runs a `flotilla snapshot` subcommand.
pub(crate) async fn run(cmd: SnapshotCmd) -> anyhow::Result<()> {
    match cmd {
        SnapshotCmd::Save { file, server, data_dir } => save(file, server, data_dir).await,
        SnapshotCmd::Restore { file, data_dir } => restore(file, data_dir),
    }
}

async fn save(file: PathBuf, server: Option<String>, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let (endpoint, _) = resolve_endpoint(server, data_dir)?;
    let mut etcd = etcd_client::Client::connect([endpoint.as_str()], None)
        .await
        .with_context(|| format!("connecting to {endpoint}"))?;
    let mut stream = etcd.snapshot().await.with_context(|| format!("asking {endpoint} for a snapshot"))?;
    let mut bytes = Vec::new();
    let mut revision = 0;
    while let Some(msg) = stream.message().await.context("receiving the snapshot")? {
        if let Some(h) = msg.header() {
            revision = h.revision();
        }
        bytes.extend_from_slice(msg.blob());
    }
    flotilla_raft_store::verify_backup(&bytes).context("the received snapshot")?;
    token::write_private(&file, &bytes, 0o600)?;
    println!("saved snapshot at revision {revision} ({} bytes) to {}", bytes.len(), file.display());
    Ok(())
}

fn restore(file: PathBuf, data_dir: PathBuf) -> anyhow::Result<()> {
    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    for existing in [crate::membership::MEMBER_FILE, token::TOKEN_FILE, "store"] {
        let path = data_dir.join(existing);
        anyhow::ensure!(!path.exists(), "{} exists: restore into a new data directory", path.display());
    }
    let summary = flotilla_raft_store::restore_backup(&data_dir.join("store"), &bytes)
        .with_context(|| format!("restoring {} into {}", file.display(), data_dir.display()))?;
    println!(
        "restored revision {} ({} key versions, {} leases) into {}",
        summary.revision,
        summary.versions,
        summary.leases,
        data_dir.display()
    );
    println!("start it with: flotilla server --data-dir {}", data_dir.display());
    Ok(())
}
