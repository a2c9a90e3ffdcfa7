//! A run's network: one Linux network namespace per host, joined by veth pairs to a bridge in
//! the root namespace, and per-link faults made with iptables.
//!
//! ```text
//!   root namespace: bridge fj<tag>br 10.A.B.254/24 (the clients run here)
//!     ├─ veth fj<tag>v0 ─── namespace fj-<tag>-n0: eth0 10.A.B.1/24, lo
//!     ├─ veth fj<tag>v1 ─── namespace fj-<tag>-n1: eth0 10.A.B.2/24, lo
//!     └─ …
//! ```
//!
//! Every name and the subnet `10.A.B.0/24` derive from the run tag, so runs with different
//! tags can exist side by side. Each namespace has an iptables chain `FJ-CUT` jumped to from
//! INPUT and OUTPUT: [`Network::cut`] appends DROP rules for a peer's address there (in both
//! namespaces of the link), [`Network::heal`] flushes it. Traffic between a host and the root
//! namespace never matches those rules, so clients reach every host whatever is cut.
//!
//! Bridged traffic passes the root namespace's iptables FORWARD chain when `br_netfilter` is
//! loaded (Docker sets its policy to DROP), so the network inserts an ACCEPT rule for its own
//! bridge there and removes it again in [`Network::destroy`].

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

mod degrade;

pub use degrade::Degradation;

/// The longest run tag: interface names (at most 15 bytes) are `fj<tag>br` and `fj<tag>v<i>`.
pub const MAX_TAG_LEN: usize = 8;
/// The most hosts one network has (two-digit host indexes in interface names).
pub const MAX_HOSTS: usize = 64;
/// The iptables chain inside each namespace that holds the DROP rules of cut links.
pub const CUT_CHAIN: &str = "FJ-CUT";
/// How long one `ip` or `iptables` command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// The same, as the argument of `timeout(1)` for the synchronous commands of `destroy`.
const SYNC_TIMEOUT_SECS: &str = "20";
/// How long an iptables command waits for the xtables lock (shared by all namespaces).
const XTABLES_WAIT_SECS: &str = "10";

/// Errors setting up or changing a network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The run tag cannot be used in interface and namespace names.
    #[error("run tag {tag:?}: {why}")]
    BadTag {
        /// The tag given.
        tag: String,
        /// What is wrong with it.
        why: String,
    },
    /// The number of hosts is out of range.
    #[error("a network has 1 to {MAX_HOSTS} hosts, not {0}")]
    HostCount(usize),
    /// A host index names no host.
    #[error("no host {host}: the network has {hosts} hosts")]
    NoHost {
        /// The index given.
        host: usize,
        /// How many hosts there are.
        hosts: usize,
    },
    /// A link degradation's parameters are out of range.
    #[error("link degradation: {0}")]
    Degradation(String),
    /// A link from a host to itself was named.
    #[error("host {0} has no link to itself")]
    SameHost(usize),
    /// Another interface or route of this machine already uses the tag's subnet.
    #[error("subnet {subnet} (from run tag {tag:?}) is already in use on this machine: {line}")]
    SubnetInUse {
        /// The subnet.
        subnet: String,
        /// The run tag.
        tag: String,
        /// The `ip` output line that uses it.
        line: String,
    },
    /// An external command failed, timed out or could not be started.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Why (exit status and standard error, or the timeout).
        detail: String,
    },
}

/// Why this machine cannot build networks (not root, `ip` or `iptables` missing), so tests can
/// skip with the reason printed.
pub fn check_available() -> Result<(), String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:").and_then(|r| r.split_whitespace().next().map(str::to_string)));
    if uid.as_deref() != Some("0") {
        return Err(format!("network namespaces need root (uid {})", uid.as_deref().unwrap_or("unknown")));
    }
    for program in ["ip", "iptables", "timeout"] {
        let found = std::process::Command::new(program)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if found.is_err() {
            return Err(format!("`{program}` is not installed"));
        }
    }
    Ok(())
}

/// A valid run tag derived from any text (e.g. a run name or seed): `r` and 7 hex digits.
pub fn tag_for(text: &str) -> String {
    format!("r{:07x}", fnv1a(text) & 0x0fff_ffff)
}

/// One host: a network namespace with one address on the run's subnet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// The host's index (0-based).
    pub index: usize,
    /// The network namespace's name (`fj-<tag>-n<index>`).
    pub ns: String,
    /// The host's address (`10.A.B.<index + 1>`).
    pub ip: Ipv4Addr,
}

/// A run's bridge, namespaces and cut links. Dropping it destroys them.
#[derive(Debug)]
pub struct Network {
    names: Names,
    bridge_ip: Ipv4Addr,
    hosts: Vec<Host>,
    cuts: Mutex<BTreeSet<(usize, usize)>>,
    /// Links with [`Degradation`] rules.
    degraded: Mutex<BTreeSet<(usize, usize)>>,
    destroyed: bool,
}

impl Network {
    /// Builds the network of run `tag` (1 to [`MAX_TAG_LEN`] lowercase letters and digits) with
    /// `hosts` namespaces, after removing whatever an earlier run with the same tag left behind.
    /// On failure everything built so far is removed again.
    pub async fn create(tag: &str, hosts: usize) -> Result<Network, NetError> {
        validate_tag(tag)?;
        if hosts == 0 || hosts > MAX_HOSTS {
            return Err(NetError::HostCount(hosts));
        }
        let names = Names { tag: tag.to_string() };
        let cleanup = names.clone();
        let _ = tokio::task::spawn_blocking(move || remove_all(&cleanup)).await;
        let (a, b) = subnet_of(tag);
        check_subnet_free(tag, a, b).await?;
        let hosts = (0..hosts)
            .map(|i| Host { index: i, ns: names.ns(i), ip: Ipv4Addr::new(10, a, b, i as u8 + 1) })
            .collect();
        // From here on, dropping `net` (also on an early return) removes what was built.
        let net = Network {
            names,
            bridge_ip: Ipv4Addr::new(10, a, b, 254),
            hosts,
            cuts: Mutex::new(BTreeSet::new()),
            degraded: Mutex::new(BTreeSet::new()),
            destroyed: false,
        };
        net.build().await?;
        Ok(net)
    }

    async fn build(&self) -> Result<(), NetError> {
        let br = self.names.bridge();
        run("ip", &["link", "add", &br, "type", "bridge"]).await?;
        run("ip", &["addr", "add", &format!("{}/24", self.bridge_ip), "dev", &br]).await?;
        run("ip", &["link", "set", &br, "up"]).await?;
        run("iptables", &self.names.forward_rule("-I")).await?;
        for h in &self.hosts {
            let (outer, inner) = (self.names.host_veth(h.index), self.names.peer_veth(h.index));
            run("ip", &["netns", "add", &h.ns]).await?;
            run("ip", &["link", "add", &outer, "type", "veth", "peer", "name", &inner]).await?;
            run("ip", &["link", "set", &inner, "netns", &h.ns]).await?;
            run("ip", &["link", "set", &outer, "master", &br, "up"]).await?;
            run("ip", &["-n", &h.ns, "link", "set", "lo", "up"]).await?;
            run("ip", &["-n", &h.ns, "link", "set", &inner, "name", "eth0"]).await?;
            run("ip", &["-n", &h.ns, "addr", "add", &format!("{}/24", h.ip), "dev", "eth0"]).await?;
            run("ip", &["-n", &h.ns, "link", "set", "eth0", "up"]).await?;
            iptables(&h.ns, &["-N", CUT_CHAIN]).await?;
            iptables(&h.ns, &["-A", "INPUT", "-j", CUT_CHAIN]).await?;
            iptables(&h.ns, &["-A", "OUTPUT", "-j", CUT_CHAIN]).await?;
        }
        Ok(())
    }

    /// The run tag.
    pub fn tag(&self) -> &str {
        &self.names.tag
    }

    /// The hosts, by index.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The bridge's address in the root namespace (`10.A.B.254`).
    pub fn bridge_ip(&self) -> Ipv4Addr {
        self.bridge_ip
    }

    /// A command that runs `program` inside host `host`'s namespace (`ip netns exec`, which
    /// execs the program, so the child's pid is the program's). Add arguments to it.
    ///
    /// # Panics
    /// If `host` is not an index of [`Network::hosts`].
    pub fn command(&self, host: usize, program: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.hosts[host].ns]).arg(program);
        cmd
    }

    fn host(&self, host: usize) -> Result<&Host, NetError> {
        self.hosts.get(host).ok_or(NetError::NoHost { host, hosts: self.hosts.len() })
    }

    /// Drops all traffic between hosts `a` and `b`, both ways (a no-op when already cut).
    pub async fn cut(&self, a: usize, b: usize) -> Result<(), NetError> {
        let (ha, hb) = (self.host(a)?, self.host(b)?);
        if a == b {
            return Err(NetError::SameHost(a));
        }
        let link = (a.min(b), a.max(b));
        if !self.lock_cuts().insert(link) {
            return Ok(());
        }
        // Recorded before the rules go in: heal flushes every namespace whatever happens here.
        for (ns, peer) in [(&ha.ns, hb.ip), (&hb.ns, ha.ip)] {
            let peer = peer.to_string();
            iptables(ns, &["-A", CUT_CHAIN, "-s", &peer, "-j", "DROP"]).await?;
            iptables(ns, &["-A", CUT_CHAIN, "-d", &peer, "-j", "DROP"]).await?;
        }
        Ok(())
    }

    /// Restores every link: flushes the cut chain in every namespace (cuts and
    /// [degradations](Network::degrade)). Tries all namespaces and
    /// returns the first error.
    pub async fn heal(&self) -> Result<(), NetError> {
        let mut first = None;
        for h in &self.hosts {
            if let Err(e) = iptables(&h.ns, &["-F", CUT_CHAIN]).await {
                first.get_or_insert(e);
            }
        }
        match first {
            None => {
                self.lock_cuts().clear();
                self.lock_degraded().clear();
                Ok(())
            }
            Some(e) => Err(e),
        }
    }

    /// The links currently cut, as `(lower index, higher index)`.
    pub fn cuts(&self) -> BTreeSet<(usize, usize)> {
        self.lock_cuts().clone()
    }

    fn lock_cuts(&self) -> std::sync::MutexGuard<'_, BTreeSet<(usize, usize)>> {
        self.cuts.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The links currently degraded ([`Network::degrade`]), as `(lower index, higher index)`.
    pub fn degraded(&self) -> BTreeSet<(usize, usize)> {
        self.lock_degraded().clone()
    }

    fn lock_degraded(&self) -> std::sync::MutexGuard<'_, BTreeSet<(usize, usize)>> {
        self.degraded.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Deletes the namespaces, veth pairs, bridge and FORWARD rule of this run's tag
    /// (synchronous, best effort, idempotent; failures are logged). Processes still running in
    /// a namespace keep it alive, detached, until they exit.
    pub fn destroy(&mut self) {
        if !self.destroyed {
            self.destroyed = true;
            remove_all(&self.names);
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.destroy();
    }
}

/// The names a run tag gives its interfaces, namespaces and FORWARD rule.
#[derive(Clone, Debug)]
struct Names {
    tag: String,
}

impl Names {
    fn bridge(&self) -> String {
        format!("fj{}br", self.tag)
    }

    fn host_veth(&self, i: usize) -> String {
        format!("fj{}v{i}", self.tag)
    }

    fn peer_veth(&self, i: usize) -> String {
        format!("fj{}p{i}", self.tag)
    }

    fn ns(&self, i: usize) -> String {
        format!("fj-{}-n{i}", self.tag)
    }

    /// Whether namespace `name` is one of this tag's.
    fn owns_ns(&self, name: &str) -> bool {
        name.strip_prefix(&format!("fj-{}-n", self.tag)).is_some_and(all_digits)
    }

    /// Whether interface `name` is one of this tag's (other tags' names never match: after
    /// the tag they go on with `br`, or `v`/`p` and digits, never with digits alone).
    fn owns_link(&self, name: &str) -> bool {
        match name.strip_prefix(&format!("fj{}", self.tag)) {
            Some("br") => true,
            Some(rest) => rest.strip_prefix(['v', 'p']).is_some_and(all_digits),
            None => false,
        }
    }

    /// The iptables arguments that insert (`-I`) or delete (`-D`) the FORWARD rule.
    fn forward_rule(&self, op: &str) -> Vec<String> {
        let br = self.bridge();
        let comment = format!("flotilla-jepsen-{}", self.tag);
        [
            "-w",
            XTABLES_WAIT_SECS,
            op,
            "FORWARD",
            "-i",
            &br,
            "-o",
            &br,
            "-m",
            "comment",
            "--comment",
            &comment,
            "-j",
            "ACCEPT",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn validate_tag(tag: &str) -> Result<(), NetError> {
    let bad = |why: &str| Err(NetError::BadTag { tag: tag.to_string(), why: why.to_string() });
    if tag.is_empty() || tag.len() > MAX_TAG_LEN {
        return bad(&format!("must be 1 to {MAX_TAG_LEN} characters"));
    }
    if !tag.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        return bad("may hold only lowercase ASCII letters and digits");
    }
    Ok(())
}

/// 64-bit FNV-1a: stable across builds and platforms, unlike std's hasher.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// MurmurHash3's 64-bit finalizer: FNV-1a alone spreads the last byte of short, similar tags
/// (`t1`, `t2`, …) poorly into the high bits.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The `(A, B)` of a tag's subnet `10.A.B.0/24`, with A in 64..=191 (clear of the low
/// `10.0.x` ranges other tools tend to use).
fn subnet_of(tag: &str) -> (u8, u8) {
    let h = mix(fnv1a(tag));
    (64 + (h % 128) as u8, ((h >> 32) % 256) as u8)
}

/// Fails when an address or route of this machine is inside `10.a.b.0/24`.
async fn check_subnet_free(tag: &str, a: u8, b: u8) -> Result<(), NetError> {
    let prefix = format!("10.{a}.{b}.");
    let addrs = run("ip", &["-o", "-4", "addr", "show"]).await?;
    let routes = run("ip", &["-4", "route", "show"]).await?;
    let used = addrs.lines().find(|l| l.contains(&format!("inet {prefix}")));
    match used.or_else(|| routes.lines().find(|l| l.starts_with(&prefix))) {
        Some(line) => Err(NetError::SubnetInUse {
            subnet: format!("{prefix}0/24"),
            tag: tag.to_string(),
            line: line.trim().to_string(),
        }),
        None => Ok(()),
    }
}

/// Runs `iptables` (waiting for the xtables lock) inside namespace `ns`.
async fn iptables(ns: &str, args: &[&str]) -> Result<String, NetError> {
    let mut all = vec!["netns", "exec", ns, "iptables", "-w", XTABLES_WAIT_SECS];
    all.extend_from_slice(args);
    run("ip", &all).await
}

/// Runs a command to completion within [`COMMAND_TIMEOUT`], returning its standard output.
async fn run<S: AsRef<str>>(program: &str, args: &[S]) -> Result<String, NetError> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let command = format!("{program} {}", args.join(" "));
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&args).stdin(Stdio::null()).kill_on_drop(true);
    let out = match tokio::time::timeout(COMMAND_TIMEOUT, cmd.output()).await {
        Err(_) => {
            let detail = format!("no result within {COMMAND_TIMEOUT:?}");
            return Err(NetError::Command { command, detail });
        }
        Ok(Err(e)) => return Err(NetError::Command { command, detail: e.to_string() }),
        Ok(Ok(out)) => out,
    };
    if !out.status.success() {
        let detail = format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
        return Err(NetError::Command { command, detail });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command synchronously under `timeout(1)`; `Err` says why it failed.
fn run_sync(program: &str, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("timeout")
        .args(["-s", "KILL", SYNC_TIMEOUT_SECS, program])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`{program} {}`: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "`{program} {}`: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Removes every namespace, interface and FORWARD rule of `names`' tag that exists.
fn remove_all(names: &Names) {
    let warn = |what: String| tracing::warn!(tag = %names.tag, "cleaning up the network: {what}");
    match run_sync("ip", &["netns", "list"]) {
        Ok(list) => {
            for ns in list.lines().filter_map(|l| l.split_whitespace().next()).filter(|n| names.owns_ns(n)) {
                if let Err(e) = run_sync("ip", &["netns", "del", ns]) {
                    warn(e);
                }
            }
        }
        Err(e) => warn(e),
    }
    match run_sync("ip", &["-o", "link", "show"]) {
        Ok(list) => {
            // Lines read `7: name@peer: <FLAGS> …`.
            let links = list.lines().filter_map(|l| l.split(": ").nth(1)).map(|n| n.split('@').next());
            for link in links.flatten().filter(|n| names.owns_link(n)) {
                // Deleting one end of a veth pair deletes the other: "cannot find" is fine.
                let _ = run_sync("ip", &["link", "del", link]);
            }
        }
        Err(e) => warn(e),
    }
    let rule = names.forward_rule("-D");
    let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
    // Delete until no copy is left (a crashed run may have inserted it more than once).
    for _ in 0..16 {
        if run_sync("iptables", &rule).is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_interface_limits_and_stay_inside_their_tag() -> Result<(), NetError> {
        let long = "abcdefgh";
        validate_tag(long)?;
        let n = Names { tag: long.to_string() };
        for name in [n.bridge(), n.host_veth(MAX_HOSTS - 1), n.peer_veth(MAX_HOSTS - 1)] {
            assert!(name.len() <= 15, "{name} is longer than an interface name may be");
            assert!(n.owns_link(&name), "{name}");
        }
        assert_eq!(n.ns(3), "fj-abcdefgh-n3");
        assert!(n.owns_ns("fj-abcdefgh-n3") && !n.owns_ns("fj-abcdefgh-n") && !n.owns_ns("fj-abcdefgh-nx"));
        // Names of tags that extend this one, or that this one extends, are never claimed.
        let short = Names { tag: "ab".into() };
        for other in ["abv1", "abp", "ab1", "abbr", "abv12"] {
            let o = Names { tag: other.into() };
            for name in [o.bridge(), o.host_veth(0), o.peer_veth(12)] {
                assert!(!short.owns_link(&name), "tag ab claims {name} of tag {other}");
            }
            assert!(!short.owns_ns(&o.ns(1)), "tag ab claims {}", o.ns(1));
            assert!(!o.owns_link(&short.bridge()) && !o.owns_link(&short.host_veth(1)));
        }
        assert!(!short.owns_link("fjab") && !short.owns_link("docker0") && !short.owns_link("fjabv"));
        Ok(())
    }

    #[test]
    fn bad_tags_are_refused() {
        for tag in ["", "abcdefghi", "Ab", "a-b", "a b", "a_b", "é"] {
            assert!(matches!(validate_tag(tag), Err(NetError::BadTag { .. })), "{tag:?} accepted");
        }
    }

    /// Computed independently (Python) from FNV-1a and the MurmurHash3 finalizer.
    const SUBNET_OF_A: (u8, u8) = (155, 88);

    #[test]
    fn the_subnet_is_a_stable_function_of_the_tag() {
        assert_eq!(subnet_of("run1"), subnet_of("run1"));
        let subnets: BTreeSet<(u8, u8)> = (0..200).map(|i| subnet_of(&format!("t{i}"))).collect();
        // 200 tags drawn into 32768 subnets collide with a chance of about 45 %; more than a
        // couple of collisions would mean poor mixing.
        assert!(subnets.len() >= 197, "200 tags gave only {} subnets", subnets.len());
        assert!(subnets.iter().all(|(a, _)| (64..=191).contains(a)), "{subnets:?}");
        // FNV-1a of a fixed text: a changed hash would move every run's subnet.
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(subnet_of("a"), SUBNET_OF_A);
    }

    #[test]
    fn derived_tags_are_valid_and_stable() -> Result<(), NetError> {
        let t = tag_for("seed 42");
        validate_tag(&t)?;
        assert_eq!(t, tag_for("seed 42"));
        assert_ne!(t, tag_for("seed 43"));
        Ok(())
    }
}
