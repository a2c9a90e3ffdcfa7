//! How a server follows the cluster's ServiceAccount keys.
//!
//! The keys live in the sealed PKI bundle in the store ([`PKI_BUNDLE_KEY`]): `sa.key` signs,
//! `sa.pub` lists the other public keys tokens are accepted from, and `sa.next.key` (bundle
//! only) is a key staged by a rotation in progress. Every server installs the bundle's
//! `sa.key` and `sa.pub` into its PKI directory at start (the store's copy wins: a rotation
//! may have happened while it was down) and whenever the bundle changes, reloads its API
//! server's keys, and then reports what it serves with under [`ADOPTED_PREFIX`]`<member id>`.
//! `flotilla sa-key` ([`crate::sa_key_cmd`]) changes the bundle and waits for the reports.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flotilla_api::pki::sa_keys::{SA_PUBLIC_KEYS, SA_SIGNING_KEY, ServiceAccountKeys};
use flotilla_api::secure::ServiceAccountKeyReloader;
use flotilla_core::store::{KeyRange, PutRequest, RangeRequest, Store, WatchRequest};
use flotilla_raft_store::RaftStore;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::token::{self, PKI_BUNDLE_KEY, PkiBundle, ServerToken};

/// Where each server reports the keys it serves with, followed by its member id.
pub(crate) const ADOPTED_PREFIX: &str = "/flotilla/bootstrap/sa-keys-adopted/";
/// The bundle entry of a key a rotation has staged (trusted everywhere, not signing yet).
pub(crate) const STAGED: &str = "sa.next.key";
/// How long the follower waits before watching again after its watch failed.
const RETRY: Duration = Duration::from_secs(1);

/// What a server reports it serves with: `kid`s, as tokens' headers name their key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Adopted {
    /// The key it signs new tokens with.
    pub(crate) signing: String,
    /// The keys it accepts tokens from, the signing key's first.
    pub(crate) accepted: Vec<String>,
}

/// A bundle entry's text.
pub(crate) fn entry<'a>(bundle: &'a PkiBundle, name: &str) -> Option<&'a str> {
    bundle.files.iter().find(|(n, _)| n == name).map(|(_, text)| text.as_str())
}

/// Sets (`Some`) or removes (`None`) a bundle entry.
pub(crate) fn set_entry(bundle: &mut PkiBundle, name: &str, text: Option<String>) {
    bundle.files.retain(|(n, _)| n != name);
    if let Some(text) = text {
        bundle.files.push((name.to_string(), text));
    }
}

/// Writes the bundle's `sa.key` and `sa.pub` into `pki_dir` when they differ from the files
/// there (a bundle without `sa.pub` removes the file); whether anything changed. The keys
/// are checked before anything is written. `sa.pub` is written first: a crash in between
/// leaves the old signing key with the new accepted keys, and the next start installs the
/// rest.
pub(crate) fn install(pki_dir: &Path, bundle: &PkiBundle) -> anyhow::Result<bool> {
    let signing = entry(bundle, SA_SIGNING_KEY).context("the cluster PKI bundle has no sa.key")?;
    let public = entry(bundle, SA_PUBLIC_KEYS);
    let (key_path, pub_path) = (pki_dir.join(SA_SIGNING_KEY), pki_dir.join(SA_PUBLIC_KEYS));
    let local_key = read_optional(&key_path)?;
    let local_pub = read_optional(&pub_path)?;
    if local_key.as_deref() == Some(signing) && local_pub.as_deref() == public {
        return Ok(false);
    }
    ServiceAccountKeys::parse(pki_dir, signing.as_bytes(), public.map(str::as_bytes))
        .context("the cluster PKI bundle's service-account keys")?;
    match public {
        Some(text) => token::write_private(&pub_path, text.as_bytes(), 0o644)?,
        None if local_pub.is_some() => std::fs::remove_file(&pub_path)
            .and_then(|()| flotilla_core::durable_fs::sync_dir(pki_dir))
            .with_context(|| format!("removing {}", pub_path.display()))?,
        None => {}
    }
    token::write_private(&key_path, signing.as_bytes(), 0o600)?;
    Ok(true)
}

fn read_optional(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Records in the store what `reloader`'s API server serves with, as member `id`: skipped
/// when the store already says so.
pub(crate) async fn report(
    store: &RaftStore,
    id: u64,
    reloader: &ServiceAccountKeyReloader,
) -> anyhow::Result<()> {
    let adopted = Adopted { signing: reloader.signing_key_id(), accepted: reloader.accepted_key_ids() };
    let key = format!("{ADOPTED_PREFIX}{id}").into_bytes();
    let value = serde_json::to_vec(&adopted)?;
    let mut read = RangeRequest::new(KeyRange::Key(key.clone()));
    read.serializable = true;
    if store.range(read).await?.kvs.first().is_some_and(|kv| kv.value == value) {
        return Ok(());
    }
    store.put(PutRequest { key, value, ..Default::default() }).await?;
    Ok(())
}

/// Installs the keys of the sealed bundle `sealed` if it opens with `token` and holds this
/// server's CA; reloads the API server's keys when they changed.
fn follow_bundle(
    pki_dir: &Path,
    token: &ServerToken,
    reloader: &ServiceAccountKeyReloader,
    sealed: &[u8],
) -> anyhow::Result<()> {
    let bundle = token.open(sealed).context("opening the cluster PKI bundle")?;
    let ours = std::fs::read_to_string(pki_dir.join("ca.key")).context("reading ca.key")?;
    anyhow::ensure!(entry(&bundle, "ca.key") == Some(ours.as_str()), "the bundle holds another CA key");
    if install(pki_dir, &bundle)? {
        let accepted = reloader.reload()?;
        tracing::info!(?accepted, "installed the cluster's service-account keys");
    }
    Ok(())
}

/// Follows the bundle until `stop`: each change is installed and reported (see the
/// [module](self) documentation). A failed watch is retried every second, from a fresh read.
pub(crate) async fn follow(
    store: Arc<RaftStore>,
    pki_dir: std::path::PathBuf,
    token: ServerToken,
    reloader: ServiceAccountKeyReloader,
    id: u64,
    stop: CancellationToken,
) {
    loop {
        let round = async {
            let resp = store.range(RangeRequest::new(KeyRange::Key(PKI_BUNDLE_KEY.to_vec()))).await?;
            if let Some(kv) = resp.kvs.first() {
                follow_bundle(&pki_dir, &token, &reloader, &kv.value)?;
            }
            report(&store, id, &reloader).await?;
            let watch = WatchRequest::new(KeyRange::Key(PKI_BUNDLE_KEY.to_vec()))
                .from_revision(resp.header.revision + 1);
            let mut events = store.watch(watch).await?;
            while let Some(resp) = events.next_response().await {
                for event in resp?.events {
                    if event.kind == flotilla_core::store::EventType::Put {
                        follow_bundle(&pki_dir, &token, &reloader, &event.kv.value)?;
                        report(&store, id, &reloader).await?;
                    }
                }
            }
            anyhow::Ok(())
        };
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            r = round => r,
        };
        if let Err(e) = outcome {
            tracing::warn!(error = %format!("{e:#}"), "following the cluster's service-account keys");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use flotilla_api::pki::sa_keys::{generate_signing_key_pem, public_keys_pem, signing_public_key};

    use super::*;

    fn bundle(key: &str, public: Option<&str>) -> PkiBundle {
        let mut b = PkiBundle { files: vec![("ca.crt".into(), "CA".into())] };
        set_entry(&mut b, SA_SIGNING_KEY, Some(key.into()));
        set_entry(&mut b, SA_PUBLIC_KEYS, public.map(String::from));
        b
    }

    #[test]
    fn install_mirrors_the_bundle_and_refuses_bad_keys() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let (a, b) = (generate_signing_key_pem()?, generate_signing_key_pem()?);
        let b_pub = public_keys_pem(&[signing_public_key(Path::new("b"), b.as_bytes())?]);
        assert!(install(dir.path(), &bundle(&a, Some(&b_pub)))?);
        assert_eq!(std::fs::read_to_string(dir.path().join(SA_SIGNING_KEY))?, a);
        assert_eq!(std::fs::read_to_string(dir.path().join(SA_PUBLIC_KEYS))?, b_pub);
        assert!(!install(dir.path(), &bundle(&a, Some(&b_pub)))?, "nothing to change");
        // Without sa.pub in the bundle, the file goes.
        assert!(install(dir.path(), &bundle(&b, None))?);
        assert!(!dir.path().join(SA_PUBLIC_KEYS).exists());
        // A damaged key is refused and nothing is written.
        let err = install(dir.path(), &bundle("junk", Some(&b_pub))).expect_err("refused");
        assert!(format!("{err:#}").contains("sa.key"), "{err:#}");
        assert_eq!(std::fs::read_to_string(dir.path().join(SA_SIGNING_KEY))?, b);
        assert!(!dir.path().join(SA_PUBLIC_KEYS).exists());
        Ok(())
    }
}
