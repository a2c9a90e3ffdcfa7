//! `flotilla sa-key` against three `flotilla server` processes: a rotation makes every
//! server sign with the new key while tokens of the old one stay accepted everywhere; a
//! member that is down holds `retire` back until it is started again (it installs the keys
//! it missed at start); after `retire` the old key's tokens are refused by every server. The
//! commands are the ones docs/operations.md ("ServiceAccount keys") shows.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{KUBECTL, Server, flotilla, have_kubectl, kill, path, run, scenario, start, three_servers};

/// A kubeconfig for `server` with its CA and no credentials: the token comes on the
/// command line (with the admin's certificate, the certificate would win).
fn bare_kubeconfig(server: &Server) -> Result<PathBuf> {
    let file = server.dir.join("bare.kubeconfig");
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://{}:{}\n    \
         certificate-authority: {}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n\
         current-context: c\nusers:\n- name: u\n  user: {{}}\n",
        server.addrs.ip,
        server.addrs.api,
        path(&server.dir.join("pki/ca.crt"))?,
    );
    std::fs::write(&file, yaml)?;
    Ok(file)
}

/// A token for ServiceAccount `builder`, issued by `server`.
async fn token(server: &Server, home: &Path) -> Result<String> {
    run(KUBECTL, &["create", "token", "builder"], &[("KUBECONFIG", &server.kubeconfig()), ("HOME", home)])
        .await
}

/// Whether `server` accepts `token`.
async fn accepts(server: &Server, home: &Path, token: &str) -> Result<bool> {
    let bare = bare_kubeconfig(server)?;
    let out =
        run(KUBECTL, &["--token", token, "auth", "whoami"], &[("KUBECONFIG", &bare), ("HOME", home)]).await;
    match out {
        Ok(out) => {
            anyhow::ensure!(out.contains("system:serviceaccount:default:builder"), "whoami said {out}");
            Ok(true)
        }
        Err(e) if format!("{e:#}").contains("Unauthorized") => Ok(false),
        Err(e) => Err(e),
    }
}

/// A JWT's `kid` header.
fn kid(token: &str) -> Result<String> {
    let header = token.split('.').next().context("a header")?;
    let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header)?)?;
    header["kid"].as_str().map(String::from).context("no kid")
}

#[tokio::test]
async fn rotating_the_service_account_key_across_three_servers() -> Result<()> {
    if !have_kubectl() {
        return Ok(());
    }
    let root = tempfile::tempdir()?;
    let home = tempfile::tempdir()?;
    let home = home.path();
    scenario(root.path(), 300, async {
        let (mut servers, _) = three_servers(root.path()).await?;
        let dirs: Vec<PathBuf> = servers.iter().map(|s| s.dir.clone()).collect();
        run(
            KUBECTL,
            &["create", "serviceaccount", "builder"],
            &[("KUBECONFIG", &servers[0].kubeconfig()), ("HOME", home)],
        )
        .await?;
        let old = token(&servers[0], home).await?;
        let old_kid = kid(&old)?;
        let list = flotilla(&["sa-key", "list", "--data-dir", path(&dirs[1])?]).await?;
        assert!(list.starts_with(&format!("signing:  {old_kid}\nmembers:\n")), "{list}");
        let line = format!("signs with {old_kid}, accepts {old_kid}");
        assert_eq!(list.lines().filter(|l| l.ends_with(&line)).count(), 3, "{list}");

        // Rotate through another member: every server signs with the new key and accepts both.
        let out = flotilla(&["sa-key", "rotate", "--data-dir", path(&dirs[1])?]).await?;
        let new_kid =
            out.lines().find_map(|l| l.strip_prefix("staged ")).context("the staged key")?.to_string();
        assert!(out.contains(&format!("every member signs with {new_kid}")), "{out}");
        let mut new_tokens = Vec::new();
        for s in &servers {
            let t = token(s, home).await?;
            assert_eq!(kid(&t)?, new_kid, "a token of {}", s.dir.display());
            new_tokens.push(t);
        }
        for s in &servers {
            for t in new_tokens.iter().chain([&old]) {
                assert!(accepts(s, home, t).await?, "{} refused a token of kid {}", s.dir.display(), kid(t)?);
            }
        }
        let list = flotilla(&["sa-key", "list", "--data-dir", path(&dirs[0])?]).await?;
        assert!(list.starts_with(&format!("signing:  {new_kid}\naccepted: {old_kid}\nmembers:\n")), "{list}");
        let pki_pub = std::fs::read_to_string(dirs[2].join("pki/sa.pub"))?;
        assert!(pki_pub.starts_with("-----BEGIN PUBLIC KEY-----"), "{pki_pub}");

        // With the third server down, retire cannot finish: it has not dropped the old key.
        kill(&mut servers[2], "-TERM").await?;
        let args = ["sa-key", "retire", "--data-dir", path(&dirs[0])?, "--timeout", "3"];
        let err = flotilla(&args).await.expect_err("a member is down");
        assert!(format!("{err:#}").contains(&format!("and accepts {new_kid}, {old_kid}")), "{err:#}");
        assert!(!accepts(&servers[0], home, &old).await?, "the first server still accepts the retired key");

        // Started again, it installs the keys it missed; retire then finishes.
        let (dir, addrs) = (dirs[2].clone(), servers[2].addrs.clone());
        servers[2] = start(&dir, &addrs, &[]).await?;
        let out = flotilla(&args[..args.len() - 2]).await?;
        assert!(out.contains(&format!("every member accepts only {new_kid}")), "{out}");
        assert!(!dirs[2].join("pki/sa.pub").exists());
        for s in &servers {
            assert!(!accepts(s, home, &old).await?, "{} accepts the retired key", s.dir.display());
            for t in &new_tokens {
                assert!(accepts(s, home, t).await?, "{} refused a token of the signing key", s.dir.display());
            }
        }
        Ok(())
    })
    .await
}
