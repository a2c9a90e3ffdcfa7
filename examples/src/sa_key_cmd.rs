//! `flotilla sa-key list|rotate|retire`: the cluster's ServiceAccount token keys, changed in
//! the sealed PKI bundle through a member's etcd-compatible endpoint; every server follows
//! the bundle and reports what it serves with ([`crate::sa_key`]).
//!
//! `rotate` stages a new key (every server accepts its tokens, none signs with it), waits
//! until every member reports accepting it, then makes it the signing key (the old one's
//! public key stays accepted) and waits until every member signs with it: no token any
//! server issued is refused by another at any point. Interrupted, it resumes from the staged
//! key when run again. `retire` stops accepting every key but the signing one, once the
//! tokens the old keys signed are no longer needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use flotilla_api::auth::authn::service_account_key_id;
use flotilla_api::pki::sa_keys::{
    SA_PUBLIC_KEYS, SA_SIGNING_KEY, ServiceAccountKeys, generate_signing_key_pem, public_keys_pem,
    signing_public_key,
};

use crate::sa_key::{ADOPTED_PREFIX, Adopted, STAGED, entry, set_entry};
use crate::status::resolve_endpoint;
use crate::token::{self, PKI_BUNDLE_KEY, PkiBundle, ServerToken};

/// How often the members' reports are read while waiting.
const POLL: Duration = Duration::from_millis(200);

/// Which cluster to change.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct Target {
    /// A server's data directory: its server token seals the keys, and its endpoint is asked
    /// unless --server is given (default: the user's data directory).
    #[arg(long, env = "FLOTILLA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The etcd-compatible endpoint of any member, e.g. http://127.0.0.1:2379.
    #[arg(long)]
    server: Option<String>,
    /// Seconds to wait for every member to serve with the changed keys.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
}

/// The subcommands of `flotilla sa-key`.
#[derive(clap::Subcommand, Clone, Debug)]
pub(crate) enum SaKeyCmd {
    /// Show the signing key, the other accepted keys, a staged key, and what each member
    /// serves with (keys by `kid`, as tokens' headers name them).
    List(Target),
    /// Make a new key the signing key, still accepting tokens from the old one.
    Rotate(Target),
    /// Stop accepting tokens signed by any key but the signing key.
    Retire(Target),
}

/// Runs a `flotilla sa-key` subcommand.
pub(crate) async fn run(cmd: SaKeyCmd) -> anyhow::Result<()> {
    match cmd {
        SaKeyCmd::List(t) => {
            let mut c = Cluster::connect(&t).await?;
            let (bundle, _) = c.bundle().await?;
            print!("{}", describe(&bundle, &c.reports().await?)?);
            Ok(())
        }
        SaKeyCmd::Rotate(t) => rotate(Cluster::connect(&t).await?).await,
        SaKeyCmd::Retire(t) => retire(Cluster::connect(&t).await?).await,
    }
}

/// A connection to a member, and the token that opens the bundle.
struct Cluster {
    etcd: Client,
    token: ServerToken,
    endpoint: String,
    timeout: Duration,
}

/// The keys of a bundle: `(signing, other accepted, staged)`, as public keys.
type Keys = (Vec<u8>, Vec<Vec<u8>>, Option<Vec<u8>>);

fn keys_of(bundle: &PkiBundle) -> anyhow::Result<Keys> {
    let signing = entry(bundle, SA_SIGNING_KEY).context("the cluster PKI bundle has no sa.key")?;
    let public = entry(bundle, SA_PUBLIC_KEYS).map(str::as_bytes);
    // What the servers load from these two files: errors name them, repeats are dropped.
    let keys = ServiceAccountKeys::parse(Path::new(""), signing.as_bytes(), public)?;
    let (signing, others) = (keys.signing_public_key().to_vec(), keys.other_public_keys().to_vec());
    let staged =
        entry(bundle, STAGED).map(|pem| signing_public_key(STAGED.as_ref(), pem.as_bytes())).transpose()?;
    Ok((signing, others, staged))
}

impl Cluster {
    async fn connect(t: &Target) -> anyhow::Result<Cluster> {
        let dir = crate::data_dir(t.data_dir.clone())?;
        let token = token::load(&dir)?.with_context(|| {
            format!("no server token in {} (sa-key runs with a server's data directory)", dir.display())
        })?;
        let (endpoint, _) = resolve_endpoint(t.server.clone(), Some(dir))?;
        let etcd = tokio::time::timeout(Duration::from_secs(15), Client::connect([endpoint.as_str()], None))
            .await
            .with_context(|| format!("connecting to {endpoint}: no answer within 15 s"))?
            .with_context(|| format!("connecting to {endpoint}"))?;
        Ok(Cluster { etcd, token, endpoint, timeout: Duration::from_secs(t.timeout) })
    }

    /// The opened bundle and its modification revision.
    async fn bundle(&mut self) -> anyhow::Result<(PkiBundle, i64)> {
        let resp = self
            .etcd
            .get(PKI_BUNDLE_KEY, None)
            .await
            .with_context(|| format!("reading {}", self.endpoint))?;
        let kv = resp.kvs().first().context("the store holds no cluster PKI bundle")?;
        let bundle =
            self.token.open(kv.value()).context("opening the cluster PKI bundle with the server token")?;
        Ok((bundle, kv.mod_revision()))
    }

    /// Replaces the bundle if it is still at `revision`.
    async fn replace(&mut self, bundle: &PkiBundle, revision: i64) -> anyhow::Result<()> {
        let sealed = self.token.seal(bundle)?;
        let txn = Txn::new()
            .when([Compare::mod_revision(PKI_BUNDLE_KEY, CompareOp::Equal, revision)])
            .and_then([TxnOp::put(PKI_BUNDLE_KEY, sealed, None)]);
        let resp = self.etcd.txn(txn).await.with_context(|| format!("writing through {}", self.endpoint))?;
        anyhow::ensure!(
            resp.succeeded(),
            "the cluster's keys changed while this command ran (another `flotilla sa-key`?); run it again"
        );
        Ok(())
    }

    /// Every member's report (`None`: no report yet), by member id.
    async fn reports(&mut self) -> anyhow::Result<BTreeMap<u64, Option<Adopted>>> {
        let members =
            self.etcd.member_list().await.with_context(|| format!("listing members at {}", self.endpoint))?;
        let mut out: BTreeMap<u64, Option<Adopted>> =
            members.members().iter().map(|m| (m.id(), None)).collect();
        let resp = self.etcd.get(ADOPTED_PREFIX, Some(GetOptions::new().with_prefix())).await?;
        for kv in resp.kvs() {
            let id =
                kv.key_str().ok().and_then(|k| k.strip_prefix(ADOPTED_PREFIX)).and_then(|i| i.parse().ok());
            if let Some(slot) = id.and_then(|id: u64| out.get_mut(&id)) {
                *slot = serde_json::from_slice(kv.value()).ok();
            }
        }
        Ok(out)
    }

    /// Waits until every member's report satisfies `done`; the error names the others.
    async fn wait_for_members(&mut self, what: &str, done: impl Fn(&Adopted) -> bool) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let reports = self.reports().await?;
            let behind: Vec<String> = reports
                .iter()
                .filter(|(_, r)| !r.as_ref().is_some_and(&done))
                .map(|(id, r)| match r {
                    Some(r) => {
                        format!("member {id} signs with {} and accepts {}", r.signing, r.accepted.join(", "))
                    }
                    None => format!("member {id} has not reported"),
                })
                .collect();
            if behind.is_empty() {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "not every member {what} within {} s: {}. Start the members that are down (or \
                 remove them with `flotilla member remove`) and run the command again",
                self.timeout.as_secs(),
                behind.join("; ")
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// `flotilla sa-key list`'s text.
fn describe(bundle: &PkiBundle, reports: &BTreeMap<u64, Option<Adopted>>) -> anyhow::Result<String> {
    let (signing, others, staged) = keys_of(bundle)?;
    let mut out = format!("signing:  {}\n", service_account_key_id(&signing));
    for k in others.iter().filter(|k| Some(*k) != staged.as_ref()) {
        out.push_str(&format!("accepted: {}\n", service_account_key_id(k)));
    }
    if let Some(k) = &staged {
        out.push_str(&format!(
            "staged:   {} (accepted; signing once every member accepts it)\n",
            service_account_key_id(k)
        ));
    }
    out.push_str("members:\n");
    for (id, r) in reports {
        match r {
            Some(r) => out.push_str(&format!(
                "  {id}: signs with {}, accepts {}\n",
                r.signing,
                r.accepted.join(", ")
            )),
            None => out.push_str(&format!("  {id}: no report\n")),
        }
    }
    Ok(out)
}

async fn rotate(mut c: Cluster) -> anyhow::Result<()> {
    let (mut bundle, revision) = c.bundle().await?;
    let (_, others, staged) = keys_of(&bundle)?;
    let new = match staged {
        Some(key) => {
            println!("resuming the rotation to {}", service_account_key_id(&key));
            key
        }
        None => {
            let pem = generate_signing_key_pem()?;
            let key = signing_public_key(STAGED.as_ref(), pem.as_bytes())?;
            let accepted: Vec<Vec<u8>> = others.iter().cloned().chain([key.clone()]).collect();
            set_entry(&mut bundle, SA_PUBLIC_KEYS, Some(public_keys_pem(&accepted)));
            set_entry(&mut bundle, STAGED, Some(pem));
            c.replace(&bundle, revision).await?;
            println!("staged {}", service_account_key_id(&key));
            key
        }
    };
    let kid = service_account_key_id(&new);
    c.wait_for_members("accepts the staged key", |r| r.accepted.contains(&kid)).await?;
    println!("every member accepts {kid}");

    let (mut bundle, revision) = c.bundle().await?;
    let staged_pem =
        entry(&bundle, STAGED).context("the staged key is gone (another `flotilla sa-key`?)")?.to_string();
    anyhow::ensure!(
        signing_public_key(STAGED.as_ref(), staged_pem.as_bytes())? == new,
        "another key was staged meanwhile (another `flotilla sa-key`?); run the command again"
    );
    let (current, others, _) = keys_of(&bundle)?;
    let accepted: Vec<Vec<u8>> =
        [current].into_iter().chain(others.into_iter().filter(|k| *k != new)).collect();
    set_entry(&mut bundle, SA_PUBLIC_KEYS, Some(public_keys_pem(&accepted)));
    set_entry(&mut bundle, SA_SIGNING_KEY, Some(staged_pem));
    set_entry(&mut bundle, STAGED, None);
    c.replace(&bundle, revision).await?;
    c.wait_for_members("signs with the new key", |r| r.signing == kid).await?;
    let old: Vec<String> = accepted.iter().map(|k| service_account_key_id(k)).collect();
    println!(
        "every member signs with {kid}; tokens of {} are still accepted until `flotilla sa-key retire`",
        old.join(", ")
    );
    Ok(())
}

async fn retire(mut c: Cluster) -> anyhow::Result<()> {
    let (mut bundle, revision) = c.bundle().await?;
    let (signing, others, staged) = keys_of(&bundle)?;
    if let Some(k) = staged {
        anyhow::bail!(
            "a rotation to {} is under way; finish it with `flotilla sa-key rotate` first",
            service_account_key_id(&k)
        );
    }
    let kid = service_account_key_id(&signing);
    if !others.is_empty() || entry(&bundle, SA_PUBLIC_KEYS).is_some() {
        set_entry(&mut bundle, SA_PUBLIC_KEYS, None);
        c.replace(&bundle, revision).await?;
    }
    c.wait_for_members("accepts only the signing key", |r| r.accepted == [kid.clone()]).await?;
    let dropped: Vec<String> = others.iter().map(|k| service_account_key_id(k)).collect();
    if !dropped.is_empty() {
        println!("retired {}", dropped.join(", "));
    }
    println!("every member accepts only {kid}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_names_every_key_and_member() -> anyhow::Result<()> {
        let (a, b) = (generate_signing_key_pem()?, generate_signing_key_pem()?);
        let (pa, pb) = (
            signing_public_key("a".as_ref(), a.as_bytes())?,
            signing_public_key("b".as_ref(), b.as_bytes())?,
        );
        let mut bundle = PkiBundle { files: Vec::new() };
        set_entry(&mut bundle, SA_SIGNING_KEY, Some(a));
        set_entry(&mut bundle, SA_PUBLIC_KEYS, Some(public_keys_pem(&[pa.clone(), pb.clone()])));
        set_entry(&mut bundle, STAGED, Some(b));
        let (ka, kb) = (service_account_key_id(&pa), service_account_key_id(&pb));
        let reports = BTreeMap::from([
            (1, Some(Adopted { signing: ka.clone(), accepted: vec![ka.clone(), kb.clone()] })),
            (2, None),
        ]);
        let text = describe(&bundle, &reports)?;
        assert_eq!(
            text,
            format!(
                "signing:  {ka}\nstaged:   {kb} (accepted; signing once every member accepts it)\nmembers:\n  \
                 1: signs with {ka}, accepts {ka}, {kb}\n  2: no report\n"
            )
        );
        Ok(())
    }
}
