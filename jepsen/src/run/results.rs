//! A campaign's results file and re-checking a saved run.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use super::{APPEND_FILE, LEASES_FILE, OBJECTS_FILE, RunReport, WATCHES_FILE};
use crate::append::{self, AppendHistory, AppendVerdict};
use crate::checker::{self, CheckLimits, Validity, Verdict};
use crate::lease::{self, LeaseHistory, LeaseVerdict};
use crate::nemesis::FaultKind;
use crate::objects::{self, ObjectVerdict};
use crate::watch::{self, WatchLog, WatchVerdict};
use crate::workload::WorkloadStats;

/// One line of a campaign's results file.
#[derive(Clone, Debug, Serialize)]
pub struct ResultLine {
    /// When the run finished (seconds since the Unix epoch).
    pub finished_unix: u64,
    /// The seed.
    pub seed: u64,
    /// Members.
    pub members: usize,
    /// Seconds of faults.
    pub time_secs: u64,
    /// The fault kinds in use.
    pub faults: Vec<FaultKind>,
    /// Nemesis actions taken.
    pub nemesis_actions: usize,
    /// Operations invoked / ok / fail / info.
    pub ops: WorkloadStats,
    /// The register checker's verdict.
    pub valid: Validity,
    /// Whether the watchers' streams were valid and complete (`None`: not checked).
    pub watch_valid: Option<bool>,
    /// Whether the list-append transactions were strictly serializable (`None`: not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append_valid: Option<bool>,
    /// Whether leases expired neither early nor never (`None`: not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_valid: Option<bool>,
    /// Whether no acknowledged object update was lost and the object watchers replayed
    /// exactly the committed versions to the end (`None`: not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects_valid: Option<bool>,
    /// Members that exited on their own.
    pub crashes: usize,
    /// Where the run's files were.
    pub dir: String,
}

impl ResultLine {
    /// The results-file line for `report`.
    pub fn of(report: &RunReport) -> Self {
        let finished_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        ResultLine {
            finished_unix,
            seed: report.spec.seed,
            members: report.spec.members,
            time_secs: report.spec.time.as_secs(),
            faults: report.spec.faults.clone(),
            nemesis_actions: report.nemesis.len(),
            ops: report.ops.clone(),
            valid: report.verdict.valid,
            watch_valid: report.watch.as_ref().map(|w| w.valid && w.complete),
            append_valid: report.append.as_ref().map(|a| a.valid),
            lease_valid: report.lease.as_ref().map(|l| l.valid),
            objects_valid: report.objects.as_ref().map(|o| o.valid && o.complete),
            crashes: report.crashes.len(),
            dir: report.spec.dir.display().to_string(),
        }
    }

    /// Appends the line to `path` (JSON lines).
    pub fn append(&self, path: &Path) -> anyhow::Result<()> {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(f, "{}", serde_json::to_string(self)?)
            .with_context(|| format!("appending to {}", path.display()))
    }
}

/// What [`recheck`] found.
#[derive(Clone, Debug, Serialize)]
pub struct Recheck {
    /// The register checker's verdict.
    pub registers: Verdict,
    /// The watch checker's verdict (`None`: no watch logs with a final revision).
    pub watch: Option<WatchVerdict>,
    /// The list-append checker's verdict (`None`: no list-append history).
    pub append: Option<AppendVerdict>,
    /// The lease checker's verdict (`None`: no lease history).
    pub lease: Option<LeaseVerdict>,
    /// The object checker's verdict (`None`: no object history).
    pub objects: Option<ObjectVerdict>,
}

/// Re-checks a saved register history within `limits` (a larger budget may settle a key
/// a run left `Unknown`), and the watch logs and the list-append, lease and object
/// histories saved next to it (those that exist).
pub fn recheck(history: &Path, limits: &CheckLimits) -> anyhow::Result<Recheck> {
    let h = crate::history::History::load(history)?;
    let registers = checker::check_registers(&h, limits)?;
    let watches = history.with_file_name(WATCHES_FILE);
    let watch = match std::fs::read(&watches) {
        Ok(bytes) => {
            let logs: Vec<WatchLog> =
                serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", watches.display()))?;
            logs.iter().find_map(|l| l.final_revision).map(|r| watch::check_watches(&logs, &h, r))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", watches.display())),
    };
    let appends = history.with_file_name(APPEND_FILE);
    let append = if appends.exists() { Some(append::check(&AppendHistory::load(&appends)?)) } else { None };
    let leases = history.with_file_name(LEASES_FILE);
    let lease = if leases.exists() { Some(lease::check(&LeaseHistory::load(&leases)?)) } else { None };
    let saved_objects = history.with_file_name(OBJECTS_FILE);
    let objects = if saved_objects.exists() { Some(objects::recheck(&saved_objects)?) } else { None };
    Ok(Recheck { registers, watch, append, lease, objects })
}
