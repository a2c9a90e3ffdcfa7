//! Real ClusterIPs (`10.96.0.0/12`) made local by [`InterfaceAddresses`], inside a network
//! namespace this test creates (so the host's interfaces are never touched). Where the kernel
//! has no dummy interfaces (as on the project's machines) this exercises the fallback to `lo`.
//! Needs root and `ip netns`; without them the test says so on stderr and passes vacuously.

use std::fs::File;
use std::process::Command;

use flotilla_node::proxy::{InterfaceAddresses, Protocol};
use nix::sched::CloneFlags;

use super::*;

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn create() -> Result<Netns, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("not root".into());
        }
        let name = format!("flt-proxy-{}", std::process::id());
        let out = Command::new("ip").args(["netns", "add", &name]).output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Netns(name))
    }

    /// Moves the calling thread into the namespace.
    fn enter(&self) {
        let f = File::open(format!("/run/netns/{}", self.0)).expect("opening the namespace");
        nix::sched::setns(f, CloneFlags::CLONE_NEWNET).expect("entering the namespace");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Every address on every interface of the current namespace, as `ip` lists them.
async fn addresses() -> String {
    let out =
        tokio::process::Command::new("ip").args(["-o", "addr", "show"]).output().await.expect("ip addr show");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn cluster_ip_on_an_interface() {
    let up =
        tokio::process::Command::new("ip").args(["link", "set", "lo", "up"]).status().await.expect("ip link");
    assert!(up.success(), "bringing lo up in the namespace");
    let mut h = Harness::start_with(&[], Arc::new(InterfaceAddresses::new()), "10.96.0.0/12").await;
    let backend = TcpBackend::start("b0").await;
    h.services().create(&service("real", "10.96.0.10", &[("http", 8080, "TCP")])).await.expect("service");
    publish(&h, "real", "http", "TCP", &[backend.addr]).await;
    h.wait_backends(&key("real", "http", Protocol::Tcp), 1).await;
    h.wait("listening on the cluster IP", |t| !t.listeners.is_empty()).await;

    let listed = addresses().await;
    assert!(listed.contains("inet 10.96.0.10/32"), "the ClusterIP is a local address: {listed}");
    let mut conn = Conn::open("10.96.0.10:8080", None).await;
    assert_eq!(conn.backend, "b0");
    assert_eq!(conn.echo("hello").await, "hello");

    backend.wait_open(1).await;

    h.services().delete("real", &Default::default()).await.expect("delete");
    h.wait("service gone", |t| t.listeners.is_empty() && t.cluster_ips.is_empty()).await;
    let listed = addresses().await;
    assert!(!listed.contains("10.96.0.10"), "the ClusterIP is released with its service: {listed}");
    // The connection could no longer reach its client: cut, so the backend sees it close.
    backend.wait_open(0).await;
    drop(conn);
    h.stop().await;
}

#[test]
fn cluster_ips_are_added_to_an_interface_and_released() {
    let ns = match Netns::create() {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!(
                "SKIPPED cluster_ips_are_added_to_an_interface_and_released: no network namespace ({why})"
            );
            return;
        }
    };
    let worker = std::thread::spawn(move || {
        // Only this thread (and what it starts: the runtime lives on it) is in the namespace.
        ns.enter();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(bounded("adding and removing a ClusterIP in a namespace", cluster_ip_on_an_interface()));
        ns
    });
    match worker.join() {
        Ok(ns) => drop(ns),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
