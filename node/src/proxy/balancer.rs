//! Choosing a backend for a new connection or UDP session of one Service port: round robin
//! over its ready backends, or the backend a client IP was last given while its
//! `ClientIP` affinity lasts.
//!
//! [`Picker`] is the decision, a plain value driven by explicit instants; [`Balancer`] shares
//! one between the listeners of a Service port and publishes its backend set so UDP sessions
//! can drop a backend that left. Updating a balancer touches no connection in flight.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::time::Instant;

use super::table::{Affinity, ServiceTarget};

/// At most this many client IPs are remembered per Service port for affinity; past it, expired
/// entries are swept, and if none are, new clients are balanced without being remembered
/// (bounded memory whatever the number of clients).
pub(crate) const MAX_AFFINITY_CLIENTS: usize = 65_536;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sticky {
    backend: SocketAddr,
    last_used: Instant,
}

/// The choice of backends for one Service port.
#[derive(Debug)]
pub(crate) struct Picker {
    backends: Vec<SocketAddr>,
    /// Where round robin starts next.
    next: usize,
    affinity: Affinity,
    clients: HashMap<IpAddr, Sticky>,
}

impl Picker {
    pub(crate) fn new(target: &ServiceTarget) -> Picker {
        let mut p =
            Picker { backends: Vec::new(), next: 0, affinity: Affinity::None, clients: HashMap::new() };
        p.update(target);
        p
    }

    /// New backends or affinity. Clients whose backend left forget it; round robin goes on
    /// from where it was (modulo the new count).
    pub(crate) fn update(&mut self, target: &ServiceTarget) {
        self.backends = target.backends.clone();
        self.affinity = target.affinity;
        if self.backends.is_empty() {
            self.next = 0;
        } else {
            self.next %= self.backends.len();
        }
        match self.affinity {
            Affinity::None => self.clients.clear(),
            Affinity::ClientIp { .. } => {
                let backends = &self.backends;
                self.clients.retain(|_, s| backends.contains(&s.backend));
            }
        }
    }

    fn timeout_expired(&self, sticky: &Sticky, now: Instant) -> bool {
        match self.affinity {
            Affinity::None => true,
            Affinity::ClientIp { timeout } => now.saturating_duration_since(sticky.last_used) >= timeout,
        }
    }

    /// The backends to try for a new connection from `client`, best first: the one its
    /// affinity names, or the next in round robin; then the others in ring order (a caller
    /// whose connect fails moves on to the next). Empty when there are no backends.
    pub(crate) fn candidates(&mut self, client: IpAddr, now: Instant) -> Vec<SocketAddr> {
        let n = self.backends.len();
        if n == 0 {
            return Vec::new();
        }
        let sticky = self
            .clients
            .get(&client)
            .filter(|s| !self.timeout_expired(s, now))
            .and_then(|s| self.backends.iter().position(|b| *b == s.backend));
        let start = match sticky {
            Some(i) => i,
            None => {
                let i = self.next;
                self.next = (i + 1) % n;
                i
            }
        };
        (0..n).map(|k| self.backends[(start + k) % n]).collect()
    }

    /// Records that `client` was served by `backend` at `now` (its affinity, when the Service
    /// has one, then lasts from now).
    pub(crate) fn chose(&mut self, client: IpAddr, backend: SocketAddr, now: Instant) {
        if matches!(self.affinity, Affinity::None) {
            return;
        }
        if self.clients.len() >= MAX_AFFINITY_CLIENTS && !self.clients.contains_key(&client) {
            let expired: Vec<IpAddr> = self
                .clients
                .iter()
                .filter(|(_, s)| self.timeout_expired(s, now))
                .map(|(ip, _)| *ip)
                .collect();
            for ip in expired {
                self.clients.remove(&ip);
            }
            if self.clients.len() >= MAX_AFFINITY_CLIENTS {
                return;
            }
        }
        self.clients.insert(client, Sticky { backend, last_used: now });
    }

    /// How many client IPs are remembered.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.clients.len()
    }
}

/// A [`Picker`] shared by the listeners of a Service port, and its backend set published for
/// the UDP sessions that must end when their backend leaves.
#[derive(Debug)]
pub(crate) struct Balancer {
    picker: Mutex<Picker>,
    backends: watch::Sender<Arc<[SocketAddr]>>,
}

impl Balancer {
    pub(crate) fn new(target: &ServiceTarget) -> Balancer {
        let (backends, _) = watch::channel(Arc::from(target.backends.as_slice()));
        Balancer { picker: Mutex::new(Picker::new(target)), backends }
    }

    fn picker(&self) -> std::sync::MutexGuard<'_, Picker> {
        // A panic while holding the lock leaves a picker that is still consistent (every
        // method keeps its fields valid at each step), so poisoning is ignored.
        self.picker.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces the backends and affinity, atomically for new connections.
    pub(crate) fn update(&self, target: &ServiceTarget) {
        self.picker().update(target);
        self.backends.send_replace(Arc::from(target.backends.as_slice()));
    }

    /// See [`Picker::candidates`]; the clock is tokio's.
    pub(crate) fn candidates(&self, client: IpAddr) -> Vec<SocketAddr> {
        self.picker().candidates(client, Instant::now())
    }

    /// See [`Picker::chose`].
    pub(crate) fn chose(&self, client: IpAddr, backend: SocketAddr) {
        self.picker().chose(client, backend, Instant::now());
    }

    /// The current backends, changing as the balancer is updated.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<[SocketAddr]>> {
        self.backends.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn backends(n: u8) -> Vec<SocketAddr> {
        (1..=n).map(|i| SocketAddr::from(([10, 0, 0, i], 8080))).collect()
    }

    fn client(i: u8) -> IpAddr {
        IpAddr::from([192, 168, 0, i])
    }

    fn target(backends: Vec<SocketAddr>, affinity: Affinity) -> ServiceTarget {
        ServiceTarget { backends, affinity }
    }

    /// Picks a backend for `c` and records the choice, as a caller would.
    fn pick(p: &mut Picker, c: IpAddr, now: Instant) -> SocketAddr {
        let first = *p.candidates(c, now).first().expect("the picker has backends");
        p.chose(c, first, now);
        first
    }

    #[test]
    fn round_robin_is_even_and_offers_the_others_as_fallbacks() {
        let now = Instant::now();
        let mut p = Picker::new(&target(backends(3), Affinity::None));
        let mut counts: HashMap<SocketAddr, usize> = HashMap::new();
        for i in 0..300 {
            *counts.entry(pick(&mut p, client((i % 7) as u8), now)).or_default() += 1;
        }
        assert_eq!(counts.len(), 3);
        assert!(counts.values().all(|c| *c == 100), "{counts:?}");
        let b = backends(3);
        assert_eq!(p.candidates(client(1), now), vec![b[0], b[1], b[2]]);
        assert_eq!(p.candidates(client(1), now), vec![b[1], b[2], b[0]]);
        assert_eq!(p.remembered(), 0, "no affinity, nothing remembered");
    }

    #[test]
    fn no_backends_means_no_candidates() {
        let mut p = Picker::new(&target(Vec::new(), Affinity::None));
        assert!(p.candidates(client(1), Instant::now()).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn client_ip_affinity_holds_until_the_timeout() {
        let timeout = Duration::from_secs(60);
        let mut p = Picker::new(&target(backends(3), Affinity::ClientIp { timeout }));
        let first = pick(&mut p, client(1), Instant::now());
        let other = pick(&mut p, client(2), Instant::now());
        assert_ne!(first, other, "a second client moves round robin on");
        for _ in 0..10 {
            tokio::time::advance(Duration::from_secs(59)).await;
            assert_eq!(pick(&mut p, client(1), Instant::now()), first, "each use renews the affinity");
        }
        tokio::time::advance(timeout).await;
        // Round robin is at the third backend now: an expired client gets it.
        assert_ne!(pick(&mut p, client(1), Instant::now()), first);
    }

    #[test]
    fn a_backend_that_leaves_takes_its_clients_affinity_with_it() {
        let now = Instant::now();
        let affinity = Affinity::ClientIp { timeout: Duration::from_secs(600) };
        let b = backends(3);
        let mut p = Picker::new(&target(b.clone(), affinity));
        assert_eq!(pick(&mut p, client(1), now), b[0]);
        assert_eq!(pick(&mut p, client(2), now), b[1]);
        p.update(&target(vec![b[1], b[2]], affinity));
        assert_eq!(p.remembered(), 1);
        assert_eq!(pick(&mut p, client(2), now), b[1], "the remaining backend keeps its client");
        assert_ne!(pick(&mut p, client(1), now), b[0]);
        p.update(&target(b.clone(), Affinity::None));
        assert_eq!(p.remembered(), 0, "turning affinity off forgets every client");
    }

    #[test]
    fn affinity_memory_is_bounded() {
        let now = Instant::now();
        let mut p = Picker::new(&target(backends(2), Affinity::ClientIp { timeout: Duration::from_secs(5) }));
        for i in 0..(MAX_AFFINITY_CLIENTS as u32 + 10) {
            let c = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            pick(&mut p, c, now);
        }
        assert_eq!(p.remembered(), MAX_AFFINITY_CLIENTS);
        // Once the old entries have expired, a new client makes room by sweeping them.
        let later = now + Duration::from_secs(6);
        pick(&mut p, client(1), later);
        assert_eq!(p.remembered(), 1);
    }

    #[test]
    fn balancer_publishes_backend_updates() {
        let b = backends(2);
        let balancer = Balancer::new(&target(b.clone(), Affinity::None));
        let rx = balancer.subscribe();
        balancer.update(&target(vec![b[1]], Affinity::None));
        assert_eq!(&rx.borrow()[..], &[b[1]]);
        assert_eq!(balancer.candidates(client(1)), vec![b[1]]);
    }
}
