//! Making ClusterIPs local addresses of the node, so the proxy can bind them.
//!
//! [`InterfaceAddresses`] adds each ClusterIP as a host address (`/32`, or `/128`) to a dummy
//! interface, `flotilla0`, created on first use; where the kernel has no dummy interfaces
//! (`ip link add ... type dummy` answers "Unknown device type") it falls back to `lo`,
//! labelling IPv4 addresses `lo:flotilla` so it can tell its own from the host's. It runs
//! iproute2's `ip` rather than speaking netlink: the handful of calls happen only when
//! Services come and go, `ip` is present wherever this runs, its errors are readable, and no
//! netlink crate (and its unsafe socket code) joins the dependency tree. The command runner
//! is a trait ([`IpRunner`]), so the decisions (which device, what to run, how to read the
//! answer) are tested without root.
//!
//! [`LocalAddresses`] does nothing: for ClusterIPs that are local already (the tests' and
//! benchmarks' `127.0.0.0/8`, or a composition that manages addresses itself).

use std::collections::BTreeSet;
use std::net::IpAddr;

use async_trait::async_trait;
use tokio::sync::OnceCell;

use super::{Error, Result};

/// The dummy interface ClusterIPs are added to.
pub const DUMMY_INTERFACE: &str = "flotilla0";
/// The label of IPv4 addresses added to `lo` (at most 15 bytes, starting with `lo:`).
pub const LOOPBACK_LABEL: &str = "lo:flotilla";

/// Makes addresses local to the node, and forgets them.
#[async_trait]
pub trait AddressManager: Send + Sync + 'static {
    /// The addresses this manager added and still holds, possibly from an earlier run of the
    /// proxy (the proxy releases those no Service needs any more).
    async fn owned(&self) -> Result<BTreeSet<IpAddr>>;

    /// Makes `ip` a local address (succeeds if it is one already).
    async fn add(&self, ip: IpAddr) -> Result<()>;

    /// Releases `ip` (succeeds if it is not held).
    async fn remove(&self, ip: IpAddr) -> Result<()>;
}

/// For addresses that are local already: does nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalAddresses;

#[async_trait]
impl AddressManager for LocalAddresses {
    async fn owned(&self) -> Result<BTreeSet<IpAddr>> {
        Ok(BTreeSet::new())
    }

    async fn add(&self, _ip: IpAddr) -> Result<()> {
        Ok(())
    }

    async fn remove(&self, _ip: IpAddr) -> Result<()> {
        Ok(())
    }
}

/// Runs `ip` with arguments and returns its standard output.
#[async_trait]
pub trait IpRunner: Send + Sync + 'static {
    /// Runs `ip <args>`: [`Error::IpFailed`] (with its stderr) when it exits unsuccessfully.
    async fn run(&self, args: &[String]) -> Result<String>;
}

/// Runs the system's `ip` command.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemIp;

#[async_trait]
impl IpRunner for SystemIp {
    async fn run(&self, args: &[String]) -> Result<String> {
        let out = tokio::process::Command::new("ip")
            .args(args)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| Error::IpSpawn { args: args.join(" "), source })?;
        if !out.status.success() {
            return Err(Error::IpFailed {
                args: args.join(" "),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Where addresses go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Device {
    /// A dummy interface of our own: every global address on it is ours.
    Dummy(String),
    /// The loopback interface: ours are the IPv4 addresses labelled [`LOOPBACK_LABEL`].
    Loopback,
}

impl Device {
    fn name(&self) -> &str {
        match self {
            Device::Dummy(name) => name,
            Device::Loopback => "lo",
        }
    }
}

fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn prefix(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(_) => format!("{ip}/32"),
        IpAddr::V6(_) => format!("{ip}/128"),
    }
}

/// `ip link add <name> type dummy`.
pub fn create_dummy_args(name: &str) -> Vec<String> {
    args(&["link", "add", name, "type", "dummy"])
}

/// `ip link set <name> up`.
pub fn link_up_args(name: &str) -> Vec<String> {
    args(&["link", "set", name, "up"])
}

/// `ip addr replace <ip>/<host> dev <device> [label lo:flotilla]` (replace: idempotent).
pub fn add_args(device: &Device, ip: IpAddr) -> Vec<String> {
    let mut a = args(&["addr", "replace", &prefix(ip), "dev", device.name()]);
    if *device == Device::Loopback && ip.is_ipv4() {
        a.extend(args(&["label", LOOPBACK_LABEL]));
    }
    a
}

/// `ip addr del <ip>/<host> dev <device>`.
pub fn remove_args(device: &Device, ip: IpAddr) -> Vec<String> {
    args(&["addr", "del", &prefix(ip), "dev", device.name()])
}

/// `ip -o addr show dev <device> scope global [label lo:flotilla]`.
pub fn list_args(device: &Device) -> Vec<String> {
    let mut a = args(&["-o", "addr", "show", "dev", device.name(), "scope", "global"]);
    if *device == Device::Loopback {
        a.extend(args(&["label", LOOPBACK_LABEL]));
    }
    a
}

/// The addresses in `ip -o addr show` output (one address a line: `... inet 10.96.0.10/32 ...`).
pub fn parse_addresses(output: &str) -> Result<BTreeSet<IpAddr>> {
    let mut found = BTreeSet::new();
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let Some(_) = words.by_ref().find(|w| *w == "inet" || *w == "inet6") else { continue };
        let ip = words
            .next()
            .and_then(|w| w.split('/').next())
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| Error::IpOutput { line: line.to_string() })?;
        found.insert(ip);
    }
    Ok(found)
}

/// Whether a failed `ip link add ... type dummy` means the kernel has no dummy interfaces.
fn dummy_unsupported(e: &Error) -> bool {
    matches!(e, Error::IpFailed { stderr, .. }
        if stderr.contains("Unknown device type") || stderr.contains("not supported"))
}

/// Adds ClusterIPs to the dummy interface `flotilla0`, or to `lo` where dummy interfaces are
/// not available (see the [module docs](self)). Needs `CAP_NET_ADMIN`.
#[derive(Debug)]
pub struct InterfaceAddresses<R = SystemIp> {
    runner: R,
    dummy: String,
    device: OnceCell<Device>,
}

impl InterfaceAddresses<SystemIp> {
    /// Addresses on [`DUMMY_INTERFACE`] (or `lo`), through the system's `ip`.
    pub fn new() -> Self {
        InterfaceAddresses::with_runner(SystemIp, DUMMY_INTERFACE)
    }
}

impl Default for InterfaceAddresses<SystemIp> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R: IpRunner> InterfaceAddresses<R> {
    /// Addresses on dummy interface `dummy` (or `lo`), through `runner`.
    pub fn with_runner(runner: R, dummy: &str) -> Self {
        InterfaceAddresses { runner, dummy: dummy.to_string(), device: OnceCell::new() }
    }

    /// The device in use: found (and the dummy created) on first use.
    pub async fn device(&self) -> Result<&Device> {
        self.device
            .get_or_try_init(|| async {
                match self.runner.run(&create_dummy_args(&self.dummy)).await {
                    Ok(_) => {}
                    // Left by an earlier run: ours to reuse.
                    Err(Error::IpFailed { stderr, .. }) if stderr.contains("File exists") => {}
                    Err(e) if dummy_unsupported(&e) => {
                        tracing::info!(error = %e, "no dummy interfaces, adding service addresses to lo");
                        return Ok(Device::Loopback);
                    }
                    Err(e) => return Err(e),
                }
                self.runner.run(&link_up_args(&self.dummy)).await?;
                Ok(Device::Dummy(self.dummy.clone()))
            })
            .await
    }
}

#[async_trait]
impl<R: IpRunner> AddressManager for InterfaceAddresses<R> {
    async fn owned(&self) -> Result<BTreeSet<IpAddr>> {
        let device = self.device().await?;
        parse_addresses(&self.runner.run(&list_args(device)).await?)
    }

    async fn add(&self, ip: IpAddr) -> Result<()> {
        let device = self.device().await?;
        self.runner.run(&add_args(device, ip)).await.map(drop)
    }

    async fn remove(&self, ip: IpAddr) -> Result<()> {
        let device = self.device().await?;
        match self.runner.run(&remove_args(device, ip)).await {
            Ok(_) => Ok(()),
            // Gone already: what we wanted.
            Err(Error::IpFailed { stderr, .. }) if stderr.contains("Cannot assign requested address") => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Answers `ip` calls from a script (by the command's first two words) and records them.
    #[derive(Default)]
    struct Scripted {
        failures: Vec<(&'static str, &'static str)>,
        listing: &'static str,
        calls: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl IpRunner for Scripted {
        async fn run(&self, args: &[String]) -> Result<String> {
            let line = args.join(" ");
            self.calls.lock().expect("test lock").push(line.clone());
            if let Some((_, stderr)) = self.failures.iter().find(|(prefix, _)| line.starts_with(prefix)) {
                return Err(Error::IpFailed {
                    args: line,
                    status: "exit status: 2".into(),
                    stderr: stderr.to_string(),
                });
            }
            Ok(if line.contains("show") { self.listing.to_string() } else { String::new() })
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test IP literal")
    }

    #[tokio::test]
    async fn uses_a_dummy_interface_when_the_kernel_has_them() {
        let m = InterfaceAddresses::with_runner(Scripted::default(), "flotilla0");
        m.add(ip("10.96.0.10")).await.expect("add");
        m.remove(ip("10.96.0.10")).await.expect("remove");
        let calls = m.runner.calls.lock().expect("test lock").clone();
        assert_eq!(
            calls,
            vec![
                "link add flotilla0 type dummy",
                "link set flotilla0 up",
                "addr replace 10.96.0.10/32 dev flotilla0",
                "addr del 10.96.0.10/32 dev flotilla0",
            ]
        );
    }

    #[tokio::test]
    async fn falls_back_to_lo_without_dummy_interfaces() {
        let runner = Scripted {
            failures: vec![("link add", "Error: Unknown device type.")],
            listing: "1: lo    inet 10.96.0.10/32 scope global lo:flotilla\\       valid_lft forever preferred_lft forever\n",
            ..Default::default()
        };
        let m = InterfaceAddresses::with_runner(runner, "flotilla0");
        assert_eq!(m.device().await.expect("device"), &Device::Loopback);
        m.add(ip("10.96.0.11")).await.expect("add");
        m.add(ip("fd00::11")).await.expect("add v6");
        assert_eq!(m.owned().await.expect("owned"), BTreeSet::from([ip("10.96.0.10")]));
        let calls = m.runner.calls.lock().expect("test lock").clone();
        assert_eq!(
            calls,
            vec![
                "link add flotilla0 type dummy",
                "addr replace 10.96.0.11/32 dev lo label lo:flotilla",
                "addr replace fd00::11/128 dev lo",
                "-o addr show dev lo scope global label lo:flotilla",
            ]
        );
    }

    #[tokio::test]
    async fn reuses_an_existing_dummy_and_tolerates_removing_what_is_gone() {
        let runner = Scripted {
            failures: vec![
                ("link add", "RTNETLINK answers: File exists"),
                ("addr del", "RTNETLINK answers: Cannot assign requested address"),
            ],
            ..Default::default()
        };
        let m = InterfaceAddresses::with_runner(runner, "flotilla0");
        assert_eq!(m.device().await.expect("device"), &Device::Dummy("flotilla0".into()));
        m.remove(ip("10.96.0.10")).await.expect("removing an absent address succeeds");
    }

    #[tokio::test]
    async fn other_failures_are_errors_naming_the_command() {
        let runner = Scripted {
            failures: vec![("link add", "RTNETLINK answers: Operation not permitted")],
            ..Default::default()
        };
        let m = InterfaceAddresses::with_runner(runner, "flotilla0");
        let e = m.add(ip("10.96.0.10")).await.expect_err("no permission");
        assert!(e.to_string().contains("link add flotilla0 type dummy"), "{e}");
    }

    #[test]
    fn parses_ip_output_and_rejects_garbage() {
        let out = "5: flotilla0    inet 10.96.0.10/32 scope global flotilla0\\       valid_lft forever\n\
                   5: flotilla0    inet6 fd00::1/128 scope global \\       valid_lft forever\n";
        assert_eq!(parse_addresses(out).expect("parse"), BTreeSet::from([ip("10.96.0.10"), ip("fd00::1")]));
        let e = parse_addresses("5: flotilla0    inet bogus/32 scope global").expect_err("garbage");
        assert!(e.to_string().contains("bogus"), "{e}");
    }
}
