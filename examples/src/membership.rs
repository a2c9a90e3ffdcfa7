//! Which member of which cluster a data directory is, and the steps of joining one.
//!
//! `<data-dir>/member.json` records the member's raft id, the address others dial, the seed
//! addresses it joined through and whether it is a voter yet. It is written right after the
//! cluster gave the id (before the store is opened with it) and again once the member is a
//! voter, so a restart resumes without re-joining, and a crash mid-join resumes the join
//! where it stopped: registering again is answered with the same id, promoting a voter again
//! is a no-op.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flotilla_core::store::{KeyRange, PutRequest, RangeRequest, RequestOp, Store, TxnRequest};
use flotilla_raft_store::{RaftStore, promote_member, register_member};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::sa_key;
use crate::token::{self, PKI_BUNDLE_KEY, ServerToken};

/// The member file's name inside the data directory.
pub(crate) const MEMBER_FILE: &str = "member.json";
/// How long each join step may take.
const JOIN_DEADLINE: Duration = Duration::from_secs(120);
/// How long a joining member waits for the sealed PKI to reach its copy of the store.
const BUNDLE_DEADLINE: Duration = Duration::from_secs(120);

/// What `member.json` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MemberFile {
    /// The member's raft id.
    pub(crate) id: u64,
    /// The member-transport address other members dial.
    pub(crate) advertise: String,
    /// Member addresses to ask while joining (empty for the member that created the cluster).
    pub(crate) seeds: Vec<String>,
    /// Whether the member is known to be a voter.
    pub(crate) voter: bool,
}

/// The member file of `dir`, if any.
pub(crate) fn load(dir: &Path) -> anyhow::Result<Option<MemberFile>> {
    let path = dir.join(MEMBER_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            Ok(Some(serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the member file of `dir`.
pub(crate) fn save(dir: &Path, member: &MemberFile) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(member)?;
    token::write_private(&dir.join(MEMBER_FILE), &json, 0o644)?;
    Ok(())
}

/// How this start relates to a cluster.
#[derive(Debug)]
pub(crate) enum Role {
    /// The data directory's member is (or becomes, as id 1) the first member of a cluster it
    /// initializes, or has already finished joining one.
    Member(MemberFile),
    /// A member that registered but is not a voter yet: finish the join after opening.
    Joining(MemberFile, ServerToken),
}

/// Decides the role from the member file and the `--join` flags, registering with the
/// cluster when joining for the first time.
pub(crate) async fn resolve(dir: &Path, advertise: &str, join: Option<(&str, &str)>) -> anyhow::Result<Role> {
    match load(dir)? {
        Some(m) if m.voter => {
            if join.is_some() {
                tracing::info!(id = m.id, "already a member of the cluster; --join is ignored");
            }
            Ok(Role::Member(m))
        }
        Some(m) => {
            let token = token::load(dir)?.context("a join was started here but its token file is missing")?;
            tracing::info!(id = m.id, "resuming an unfinished join");
            Ok(Role::Joining(m, token))
        }
        None => match join {
            None => Ok(Role::Member(MemberFile {
                id: 1,
                advertise: advertise.to_string(),
                seeds: Vec::new(),
                voter: true,
            })),
            Some((seed, token_text)) => {
                let token = ServerToken::parse(token_text)?;
                token::save(dir, &token)?;
                let seeds = vec![seed.to_string()];
                let reg = register_member(&seeds, advertise, &token.join_key(), JOIN_DEADLINE)
                    .await
                    .with_context(|| format!("joining the cluster through {seed}"))?;
                let mut all = seeds;
                for a in reg.members {
                    if a != advertise && !all.contains(&a) {
                        all.push(a);
                    }
                }
                let m = MemberFile { id: reg.id, advertise: advertise.to_string(), seeds: all, voter: false };
                save(dir, &m)?;
                tracing::info!(id = m.id, "registered with the cluster as a learner");
                Ok(Role::Joining(m, token))
            }
        },
    }
}

/// Finishes a join on the opened store: waits for the sealed PKI to replicate here, installs
/// it into `pki_dir`, asks for promotion to voter and records it.
pub(crate) async fn finish_join(
    dir: &Path,
    pki_dir: &Path,
    store: &RaftStore,
    mut member: MemberFile,
    token: &ServerToken,
) -> anyhow::Result<MemberFile> {
    let sealed = wait_for_bundle(store).await?;
    let bundle = token.open(&sealed)?;
    match std::fs::read(pki_dir.join("ca.crt")) {
        Ok(existing) if token.pins(&existing) => {}
        Ok(_) => anyhow::bail!(
            "{} holds another cluster's CA; remove the PKI directory to join this cluster",
            pki_dir.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => token::write_bundle(pki_dir, &bundle)?,
        Err(e) => return Err(e).with_context(|| format!("reading {}", pki_dir.join("ca.crt").display())),
    }
    promote_member(&member.seeds, &member.advertise, member.id, &token.join_key(), JOIN_DEADLINE)
        .await
        .context("becoming a voter")?;
    member.voter = true;
    save(dir, &member)?;
    tracing::info!(id = member.id, "joined the cluster as a voter");
    Ok(member)
}

/// Polls this member's own copy of the store for the sealed PKI bundle.
async fn wait_for_bundle(store: &RaftStore) -> anyhow::Result<Vec<u8>> {
    let deadline = Instant::now() + BUNDLE_DEADLINE;
    loop {
        let mut req = RangeRequest::new(KeyRange::Key(PKI_BUNDLE_KEY.to_vec()));
        req.serializable = true;
        if let Ok(resp) = store.range(req).await
            && let Some(kv) = resp.kvs.into_iter().next()
        {
            return Ok(kv.value);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the cluster's PKI bundle did not reach this member within {BUNDLE_DEADLINE:?} (is the \
             cluster's first server running a version that stores it?)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Makes sure the store holds the PKI of `pki_dir` sealed with `token`: written when missing
/// or when it does not open with this token or holds another CA key (a cluster restored from
/// a backup gets its new PKI this way). A bundle of this cluster is the store's to keep: its
/// ServiceAccount keys are installed into `pki_dir` instead (a rotation may have happened
/// while this member was down); returns whether they changed there.
pub(crate) async fn ensure_bundle(
    store: &Arc<RaftStore>,
    pki_dir: &Path,
    token: &ServerToken,
) -> anyhow::Result<bool> {
    let current = store.range(RangeRequest::new(KeyRange::Key(PKI_BUNDLE_KEY.to_vec()))).await?;
    let ours = token::read_bundle(pki_dir)?;
    if let Some(kv) = current.kvs.first()
        && let Ok(stored) = token.open(&kv.value)
        && sa_key::entry(&stored, "ca.key") == sa_key::entry(&ours, "ca.key")
    {
        return sa_key::install(pki_dir, &stored);
    }
    let put = PutRequest { key: PKI_BUNDLE_KEY.to_vec(), value: token.seal(&ours)?, ..Default::default() };
    store
        .txn(TxnRequest { compare: Vec::new(), success: vec![RequestOp::Put(put)], failure: Vec::new() })
        .await?;
    tracing::info!("stored the sealed cluster PKI for joining servers");
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_member_file_round_trips_and_a_voter_ignores_join() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let m = MemberFile {
            id: 3,
            advertise: "127.0.0.3:2380".into(),
            seeds: vec!["127.0.0.1:2380".into()],
            voter: true,
        };
        save(dir.path(), &m)?;
        assert_eq!(load(dir.path())?, Some(m.clone()));
        let role =
            tokio::time::timeout(Duration::from_secs(5), resolve(dir.path(), "x:1", Some(("y:1", "bad"))))
                .await??;
        assert!(matches!(role, Role::Member(found) if found == m));
        Ok(())
    }

    #[tokio::test]
    async fn a_fresh_directory_without_join_is_member_one() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let role = tokio::time::timeout(Duration::from_secs(5), resolve(dir.path(), "a:1", None)).await??;
        assert!(matches!(role, Role::Member(m) if m.id == 1 && m.voter && m.seeds.is_empty()));
        Ok(())
    }
}
