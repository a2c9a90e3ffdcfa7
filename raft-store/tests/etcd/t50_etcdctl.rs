//! Debian's `etcdctl` 3.4 (package `etcd-client`) against three members: the commands an
//! operator types, with their printed output checked line by line.
//!
//! Without `etcdctl` on the `PATH` these tests print why they are skipped and pass, unless
//! `FLOTILLA_REQUIRE_ETCDCTL=1` (set by `.ci/run`) makes a missing `etcdctl` a failure.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::harness::{Cluster, within};

/// The longest one `etcdctl` command may take before the test names it as hung.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Set to `1` to fail instead of skipping when `etcdctl` is not installed.
const REQUIRE_ENV: &str = "FLOTILLA_REQUIRE_ETCDCTL";
/// The version column Status reports (`etcd/maintenance.rs`).
const VERSION: &str = "3.4.0-flotilla";

/// What one `etcdctl` run printed.
struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `etcdctl` with the v3 API against the given endpoints.
pub(crate) struct Etcdctl {
    /// `host:port` of each member's etcd endpoint, in member order.
    ///
    /// Without a scheme on purpose: for `endpoint status` etcdctl 3.4 dials each endpoint
    /// as given and sends `http://host:port` as the HTTP/2 `:authority`, which the `h2`
    /// server under tonic rejects as malformed (see docs/etcd-api.md, "etcdctl").
    pub(crate) endpoints: Vec<String>,
}

impl Etcdctl {
    /// `None` (after saying why) when `etcdctl` is missing and not required.
    pub(crate) async fn find(endpoints: Vec<String>) -> anyhow::Result<Option<Self>> {
        let ctl = Etcdctl { endpoints };
        match ctl.command(&["version"]).output().await {
            Ok(out) if out.status.success() => {
                let version = String::from_utf8_lossy(&out.stdout);
                ensure!(
                    version.contains("API version: 3."),
                    "unexpected `etcdctl version` output: {version}"
                );
                Ok(Some(ctl))
            }
            Ok(out) => bail!("`etcdctl version` failed: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
                    bail!("etcdctl is not installed and {REQUIRE_ENV}=1 (install Debian's etcd-client)");
                }
                eprintln!(
                    "skipped: etcdctl is not installed (Debian package etcd-client; {REQUIRE_ENV}=1 makes this fail)"
                );
                Ok(None)
            }
            Err(e) => Err(e).context("running etcdctl"),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("etcdctl");
        // Settings from the caller's environment would change what the commands print.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ETCDCTL_") {
                cmd.env_remove(name);
            }
        }
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints.join(",")))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `etcdctl args…`, feeding `stdin` if given.
    async fn run(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<Output> {
        let what = format!("etcdctl {}", args.join(" "));
        let mut cmd = self.command(args);
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().with_context(|| format!("starting {what}"))?;
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().context("stdin is piped")?;
            pipe.write_all(input.as_bytes()).await?;
            // Dropping the pipe closes it: etcdctl reads stdin to its end.
        }
        let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
            .await
            .with_context(|| format!("timed out: {what}"))??;
        Ok(Output {
            success: out.status.success(),
            stdout: String::from_utf8(out.stdout).with_context(|| format!("stdout of {what}"))?,
            stderr: String::from_utf8(out.stderr).with_context(|| format!("stderr of {what}"))?,
        })
    }

    /// Runs a command that must succeed; returns its stdout.
    pub(crate) async fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        self.ok_with(args, None).await
    }

    async fn ok_with(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        let out = self.run(args, stdin).await?;
        ensure!(out.success, "etcdctl {} failed: {}", args.join(" "), out.stderr);
        Ok(out.stdout)
    }

    /// Runs a command that must fail with `message` in its error; returns its stdout.
    async fn fails(&self, args: &[&str], message: &str) -> anyhow::Result<String> {
        let out = self.run(args, None).await?;
        ensure!(!out.success, "etcdctl {} succeeded: {}", args.join(" "), out.stdout);
        ensure!(
            out.stderr.contains(message),
            "etcdctl {}: expected {message:?} in stderr: {}",
            args.join(" "),
            out.stderr
        );
        Ok(out.stdout)
    }

    /// The header revision of `get key -w json`: the store's current revision.
    async fn revision(&self) -> anyhow::Result<i64> {
        json_number(&self.ok(&["get", "rev-probe", "-w", "json"]).await?, "revision")
    }

    /// Starts `etcdctl watch args…` in the background; its stdout is read line by line.
    fn watch(&self, args: &[&str]) -> anyhow::Result<Watcher> {
        let mut cmd = self.command(&[&["watch"], args].concat());
        let mut child = cmd.spawn().context("starting etcdctl watch")?;
        let lines = BufReader::new(child.stdout.take().context("stdout is piped")?).lines();
        Ok(Watcher { child, lines })
    }
}

/// A running `etcdctl watch`; killed when dropped.
struct Watcher {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Watcher {
    /// The next `n` lines the watch prints.
    async fn lines(&mut self, n: usize) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let line = tokio::time::timeout(COMMAND_TIMEOUT, self.lines.next_line())
                .await
                .with_context(|| format!("timed out waiting for watch output after {out:?}"))??
                .with_context(|| format!("watch ended after {out:?}"))?;
            out.push(line);
        }
        Ok(out)
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await.context("killing etcdctl watch")
    }
}

/// The first number after `"field":` in `json` (etcdctl prints the header first, so for
/// `revision` this is the header's).
fn json_number(json: &str, field: &str) -> anyhow::Result<i64> {
    let pattern = format!("\"{field}\":");
    let at = json.find(&pattern).with_context(|| format!("no {field} in {json}"))? + pattern.len();
    let digits: String = json[at..].chars().take_while(|c| c.is_ascii_digit() || *c == '-').collect();
    digits.parse().with_context(|| format!("{field} in {json}"))
}

/// Starts three members and an `etcdctl` for them, or `None` when the test is skipped.
async fn start() -> anyhow::Result<Option<(Cluster, Etcdctl)>> {
    if Etcdctl::find(Vec::new()).await?.is_none() {
        return Ok(None);
    }
    let c = Cluster::start(3).await?;
    let endpoints = c
        .running()
        .into_iter()
        .map(|id| c.member(id).etcd_addr().map(|a| a.to_string()).context("member serves no etcd endpoint"))
        .collect::<anyhow::Result<_>>()?;
    Ok(Some((c, Etcdctl { endpoints })))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn put_get_del_and_watch() -> anyhow::Result<()> {
    within("etcdctl put/get/del/watch", 60, async {
        let Some((c, ctl)) = start().await? else { return Ok(()) };
        assert_eq!(ctl.ok(&["put", "k1", "v1"]).await?, "OK\n");
        let r1 = ctl.revision().await?;
        assert_eq!(ctl.ok(&["put", "k2", "v2"]).await?, "OK\n");
        assert_eq!(ctl.ok(&["put", "k1", "v1b"]).await?, "OK\n");
        assert_eq!(ctl.ok(&["put", "other", "x"]).await?, "OK\n");

        assert_eq!(ctl.ok(&["get", "--prefix", "k"]).await?, "k1\nv1b\nk2\nv2\n");
        assert_eq!(ctl.ok(&["get", "k1", &format!("--rev={r1}")]).await?, "k1\nv1\n");
        assert_eq!(ctl.ok(&["get", "--prefix", "k", &format!("--rev={r1}")]).await?, "k1\nv1\n");
        assert_eq!(
            ctl.ok(&["get", "--prefix", "k", &format!("--rev={}", r1 + 1)]).await?,
            "k1\nv1\nk2\nv2\n"
        );
        assert_eq!(ctl.ok(&["get", "--prefix", "k", "--keys-only"]).await?, "k1\n\nk2\n\n");
        assert_eq!(ctl.ok(&["get", "--prefix", "k", "--limit=1"]).await?, "k1\nv1b\n");
        let sorted = ["get", "--prefix", "k", "--sort-by=MODIFY", "--order=DESCEND", "--print-value-only"];
        assert_eq!(ctl.ok(&sorted).await?, "v1b\nv2\n");
        assert_eq!(ctl.ok(&["get", "--from-key", "k2"]).await?, "k2\nv2\nother\nx\n");
        assert_eq!(ctl.ok(&["get", "nothing"]).await?, "");
        let json = ctl.ok(&["get", "k1", "-w", "json"]).await?;
        assert_eq!(json_number(&json, "create_revision")?, r1);
        assert_eq!(json_number(&json, "mod_revision")?, r1 + 2);
        assert_eq!(json_number(&json, "version")?, 2);
        assert!((1..=3).contains(&json_number(&json, "member_id")?), "{json}");
        assert!(json_number(&json, "raft_term")? > 0, "{json}");

        // The replay from r1 comes first; once it is read the watch is live.
        let mut watch = ctl.watch(&[&format!("--rev={r1}"), "k1"])?;
        assert_eq!(watch.lines(6).await?, ["PUT", "k1", "v1", "PUT", "k1", "v1b"]);
        let mut prev = ctl.watch(&["--prev-kv", &format!("--rev={r1}"), "--prefix", "k"])?;
        assert_eq!(ctl.ok(&["put", "k1", "live"]).await?, "OK\n");
        assert_eq!(ctl.ok(&["del", "k1"]).await?, "1\n");
        assert_eq!(watch.lines(6).await?, ["PUT", "k1", "live", "DELETE", "k1", ""]);
        watch.stop().await?;
        // With --prev-kv a modification prints the previous pair before the new one.
        let expected = [
            "PUT", "k1", "v1", "PUT", "k2", "v2", "PUT", "k1", "v1", "k1", "v1b", "PUT", "k1", "v1b", "k1",
            "live", "DELETE", "k1", "live", "k1", "",
        ];
        assert_eq!(prev.lines(expected.len()).await?, expected);
        prev.stop().await?;

        assert_eq!(ctl.ok(&["del", "k2"]).await?, "1\n");
        assert_eq!(ctl.ok(&["del", "k2"]).await?, "0\n");
        assert_eq!(ctl.ok(&["put", "p/a", "1"]).await?, "OK\n");
        assert_eq!(ctl.ok(&["put", "p/b", "2"]).await?, "OK\n");
        assert_eq!(ctl.ok(&["del", "--prefix", "p/", "--prev-kv"]).await?, "2\np/a\n1\np/b\n2\n");
        assert_eq!(ctl.ok(&["get", "--prefix", "k"]).await?, "");
        c.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn txn_from_stdin() -> anyhow::Result<()> {
    within("etcdctl txn", 60, async {
        let Some((c, ctl)) = start().await? else { return Ok(()) };
        assert_eq!(ctl.ok(&["put", "t", "1"]).await?, "OK\n");
        // Compares, a blank line, the success operations, a blank line, the failure ones.
        let cas = "value(\"t\") = \"1\"\nmod(\"t\") > \"0\"\n\nput t 2\nget t\n\nput t lost\n\n";
        assert_eq!(ctl.ok_with(&["txn"], Some(cas)).await?, "SUCCESS\n\nOK\n\nt\n2\n");
        assert_eq!(ctl.ok_with(&["txn"], Some(cas)).await?, "FAILURE\n\nOK\n");
        assert_eq!(ctl.ok(&["get", "t"]).await?, "t\nlost\n");

        // --interactive prints the prompts; a branch's empty get prints nothing.
        let del = "version(\"t\") = \"3\"\ncreate(\"missing\") = \"0\"\n\ndel t\nget t\n\n\n";
        let out = ctl.ok_with(&["txn", "--interactive"], Some(del)).await?;
        assert_eq!(
            out,
            "compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\nSUCCESS\n\n1\n\n"
        );
        assert_eq!(ctl.ok(&["get", "t"]).await?, "");

        // etcd refuses a branch that puts and deletes one key, and changes nothing.
        let before = ctl.revision().await?;
        let out = ctl.run(&["txn"], Some("\nput d 1\ndel d\n\n\n")).await?;
        assert!(!out.success, "{}", out.stdout);
        assert!(out.stderr.contains("Error: etcdserver: duplicate key given in txn request"), "{}", out.stderr);
        assert_eq!(ctl.revision().await?, before);
        c.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lease_grant_keep_alive_revoke() -> anyhow::Result<()> {
    within("etcdctl lease", 60, async {
        let Some((c, ctl)) = start().await? else { return Ok(()) };
        let granted = ctl.ok(&["lease", "grant", "60"]).await?;
        let id = granted
            .strip_prefix("lease ")
            .and_then(|s| s.strip_suffix(" granted with TTL(60s)\n"))
            .with_context(|| format!("lease grant printed {granted:?}"))?
            .to_string();
        assert_eq!(id.len(), 16, "{granted}");
        ensure!(i64::from_str_radix(&id, 16).is_ok_and(|n| n > 0), "lease id {id} is not positive hex");
        let lease = format!("--lease={id}");
        assert_eq!(ctl.ok(&["put", &lease, "lk", "lv"]).await?, "OK\n");
        assert_eq!(ctl.ok(&["put", &lease, "lk2", "lv2"]).await?, "OK\n");

        let ttl = ctl.ok(&["lease", "timetolive", &id, "--keys"]).await?;
        let remaining: i64 = ttl
            .strip_prefix(&format!("lease {id} granted with TTL(60s), remaining("))
            .and_then(|s| s.strip_suffix("s), attached keys([lk lk2])\n"))
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("lease timetolive printed {ttl:?}"))?;
        assert!((50..=60).contains(&remaining), "{ttl}");
        let ttl = ctl.ok(&["lease", "timetolive", &id]).await?;
        assert!(ttl.starts_with(&format!("lease {id} granted with TTL(60s), remaining(")), "{ttl}");
        assert!(ttl.ends_with("s)\n"), "{ttl}");
        assert_eq!(ctl.ok(&["lease", "list"]).await?, format!("found 1 leases\n{id}\n"));
        assert_eq!(
            ctl.ok(&["lease", "keep-alive", "--once", &id]).await?,
            format!("lease {id} keepalived with TTL(60)\n")
        );

        assert_eq!(ctl.ok(&["lease", "revoke", &id]).await?, format!("lease {id} revoked\n"));
        assert_eq!(ctl.ok(&["get", "--prefix", "lk"]).await?, "");
        assert_eq!(ctl.ok(&["lease", "timetolive", &id]).await?, format!("lease {id} already expired\n"));
        assert_eq!(ctl.ok(&["lease", "list"]).await?, "found 0 leases\n");
        ctl.fails(&["lease", "revoke", &id], "etcdserver: requested lease not found").await?;
        ctl.fails(&["lease", "keep-alive", "--once", &id], "etcdserver: requested lease not found").await?;
        ctl.fails(&["put", &lease, "lk", "lv"], "etcdserver: requested lease not found").await?;
        assert_eq!(ctl.ok(&["get", "lk"]).await?, "");
        c.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn member_list_endpoint_status_and_compaction() -> anyhow::Result<()> {
    within("etcdctl member list/endpoint status/compaction", 60, async {
        let Some((c, ctl)) = start().await? else { return Ok(()) };
        let leader = c.wait_leader(Duration::from_secs(10)).await?;

        // ID, status, name, peer URLs, client URLs, is learner.
        let list = ctl.ok(&["member", "list"]).await?;
        let mut ids = Vec::new();
        let mut with_client_url = 0;
        for line in list.lines() {
            let cols: Vec<&str> = line.split(", ").collect();
            ensure!(cols.len() == 6, "member list line {line:?}");
            let id = u64::from_str_radix(cols[0], 16).with_context(|| format!("member id in {line:?}"))?;
            let m = c.member(id);
            assert_eq!(
                cols[1..4],
                ["started", &format!("member-{id}"), &format!("http://{}", m.local_addr())]
            );
            if !cols[4].is_empty() {
                assert_eq!(cols[4], format!("http://{}", m.etcd_addr().context("etcd endpoint")?));
                with_client_url += 1;
            }
            assert_eq!(cols[5], "false");
            ids.push(id);
        }
        ids.sort_unstable();
        assert_eq!(ids, [1, 2, 3], "{list}");
        // Every member's client URL: the answering member asks each over the member transport.
        assert_eq!(with_client_url, 3, "{list}");

        // Endpoint, ID, version, DB size, is leader, is learner, raft term, raft index,
        // raft applied index, errors; one line per endpoint, in the order given.
        let status = ctl.ok(&["endpoint", "status"]).await?;
        let lines: Vec<&str> = status.lines().collect();
        assert_eq!(lines.len(), 3, "{status}");
        let mut terms = Vec::new();
        for (line, (id, ep)) in lines.iter().zip(c.running().into_iter().zip(&ctl.endpoints)) {
            let cols: Vec<&str> = line.split(", ").collect();
            ensure!(cols.len() == 10, "endpoint status line {line:?}");
            let (hex_id, is_leader) = (format!("{id:x}"), (id == leader).to_string());
            assert_eq!(cols[..6], [ep.as_str(), &hex_id, VERSION, "0 B", &is_leader, "false"]);
            let num = |i: usize| cols[i].parse::<u64>().with_context(|| format!("column {i} of {line:?}"));
            let (term, index, applied) = (num(6)?, num(7)?, num(8)?);
            assert!(term > 0 && applied > 0 && index >= applied, "{line}");
            assert_eq!(cols[9], "", "{line}");
            terms.push(term);
        }
        assert!(terms.iter().all(|t| *t == terms[0]), "{status}");
        let json = ctl.ok(&["endpoint", "status", "-w", "json"]).await?;
        assert_eq!(json.matches(&format!("\"leader\":{leader},")).count(), 3, "{json}");
        assert_eq!(json.matches(&format!("\"version\":\"{VERSION}\"")).count(), 3, "{json}");

        // `endpoint health` writes its verdicts to stderr.
        let health = ctl.run(&["endpoint", "health"], None).await?;
        assert!(health.success, "{}", health.stderr);
        let mut healthy: Vec<&str> = health.stderr.lines().collect();
        healthy.sort_unstable();
        let mut eps = ctl.endpoints.clone();
        eps.sort_unstable();
        assert_eq!(healthy.len(), 3, "{}", health.stderr);
        for (line, ep) in healthy.iter().zip(&eps) {
            let prefix = format!("{ep} is healthy: successfully committed proposal: took = ");
            assert!(line.starts_with(&prefix), "{line}");
        }

        assert_eq!(ctl.ok(&["put", "c", "old"]).await?, "OK\n");
        let old = ctl.revision().await?;
        assert_eq!(ctl.ok(&["put", "c", "new"]).await?, "OK\n");
        let now = ctl.revision().await?;
        assert_eq!(ctl.ok(&["compaction", &now.to_string()]).await?, format!("compacted revision {now}\n"));
        const COMPACTED: &str = "Error: etcdserver: mvcc: required revision has been compacted";
        ctl.fails(&["get", "c", &format!("--rev={old}")], COMPACTED).await?;
        ctl.fails(&["compaction", &old.to_string()], COMPACTED).await?;
        assert_eq!(ctl.ok(&["get", "c", &format!("--rev={now}")]).await?, "c\nnew\n");
        let future = format!("--rev={}", now + 1000);
        ctl.fails(&["get", "c", &future], "Error: etcdserver: mvcc: required revision is a future revision")
            .await?;
        let watched = ctl
            .fails(
                &["watch", &format!("--rev={old}"), "c"],
                "watch was canceled (etcdserver: mvcc: required revision has been compacted)",
            )
            .await?;
        assert_eq!(watched, "");
        c.shutdown().await;
        Ok(())
    })
    .await
}
