//! `flotilla snapshot save|restore`: a consistent backup of the store through a member's
//! etcd-compatible endpoint (Maintenance.Snapshot), and restoring one into the data
//! directory of a new one-member cluster.

use std::path::PathBuf;

use std::io::Write as _;

use anyhow::Context;
use clap::Subcommand;
use flotilla_core::durable_fs::AtomicFile;

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

/// Streams the member's backup into a temporary file next to `file`, checks its length and
/// checksum, then renames it over `file` (synced): memory stays at one message whatever the
/// store's size, and an interrupted save leaves no partial `file`.
async fn save(file: PathBuf, server: Option<String>, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let (endpoint, _) = resolve_endpoint(server, data_dir)?;
    let mut etcd = etcd_client::Client::connect([endpoint.as_str()], None)
        .await
        .with_context(|| format!("connecting to {endpoint}"))?;
    let mut stream = etcd.snapshot().await.with_context(|| format!("asking {endpoint} for a snapshot"))?;
    let mut out = AtomicFile::create(&file, 0o600).with_context(|| format!("creating {}", file.display()))?;
    let (mut written, mut revision, mut remaining) = (0u64, 0, None);
    while let Some(msg) = stream.message().await.context("receiving the snapshot")? {
        if let Some(h) = msg.header() {
            revision = h.revision();
        }
        out.write_all(msg.blob()).with_context(|| format!("writing {}", file.display()))?;
        written += msg.blob().len() as u64;
        remaining = Some(msg.remaining_bytes());
    }
    anyhow::ensure!(
        remaining == Some(0),
        "the snapshot stream ended with {} bytes still to come",
        remaining.map_or_else(|| "all its".to_string(), |r| r.to_string())
    );
    out.flush().with_context(|| format!("writing {}", file.display()))?;
    // Checked where it lies, before it replaces anything.
    flotilla_raft_store::verify_backup_file(out.temp_path()).context("the received snapshot")?;
    out.commit().with_context(|| format!("saving {}", file.display()))?;
    println!("saved snapshot at revision {revision} ({written} bytes) to {}", file.display());
    Ok(())
}

fn restore(file: PathBuf, data_dir: PathBuf) -> anyhow::Result<()> {
    for existing in [crate::membership::MEMBER_FILE, token::TOKEN_FILE, "store"] {
        let path = data_dir.join(existing);
        anyhow::ensure!(!path.exists(), "{} exists: restore into a new data directory", path.display());
    }
    let summary = flotilla_raft_store::restore_backup_file(&data_dir.join("store"), &file)
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
