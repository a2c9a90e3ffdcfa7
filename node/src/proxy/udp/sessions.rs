//! The UDP sessions of one listener, as a plain value: which client goes to which backend,
//! when each was last active, and which must end (idle too long, backend gone, too many).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

struct Session<H> {
    /// Tells this session from a later one of the same client.
    id: u64,
    backend: SocketAddr,
    last_active: Instant,
    handle: H,
}

/// Sessions by client address, at most `capacity` of them. `H` is what the runtime keeps per
/// session (its socket and stop token); tests use plain values.
pub(crate) struct Sessions<H> {
    map: HashMap<SocketAddr, Session<H>>,
    capacity: usize,
    next_id: u64,
}

impl<H> Sessions<H> {
    pub(crate) fn new(capacity: usize) -> Self {
        Sessions { map: HashMap::new(), capacity, next_id: 0 }
    }

    /// The session of `client`, marked active at `now`.
    pub(crate) fn get(&mut self, client: SocketAddr, now: Instant) -> Option<&H> {
        let s = self.map.get_mut(&client)?;
        s.last_active = now;
        Some(&s.handle)
    }

    /// Whether a new session would exceed the capacity.
    pub(crate) fn is_full(&self) -> bool {
        self.map.len() >= self.capacity
    }

    /// Starts the session of `client` to `backend`; returns its id, or gives `handle` back
    /// when full. A previous session of the client is returned to be stopped.
    pub(crate) fn insert(
        &mut self,
        client: SocketAddr,
        backend: SocketAddr,
        handle: H,
        now: Instant,
    ) -> Result<(u64, Option<H>), H> {
        if self.is_full() && !self.map.contains_key(&client) {
            return Err(handle);
        }
        self.next_id += 1;
        let id = self.next_id;
        let old = self.map.insert(client, Session { id, backend, last_active: now, handle });
        Ok((id, old.map(|s| s.handle)))
    }

    /// Marks session `id` of `client` active (a reply came back).
    pub(crate) fn touch(&mut self, client: SocketAddr, id: u64, now: Instant) {
        if let Some(s) = self.map.get_mut(&client).filter(|s| s.id == id) {
            s.last_active = now;
        }
    }

    /// Forgets session `id` of `client` (it ended by itself), unless a newer one replaced it.
    pub(crate) fn remove(&mut self, client: SocketAddr, id: u64) -> Option<H> {
        if self.map.get(&client).is_some_and(|s| s.id == id) {
            return self.map.remove(&client).map(|s| s.handle);
        }
        None
    }

    /// Ends the sessions idle for `idle` or longer at `now`.
    pub(crate) fn expire(&mut self, now: Instant, idle: Duration) -> Vec<H> {
        self.take_where(|s| now.saturating_duration_since(s.last_active) >= idle)
    }

    /// Ends the sessions whose backend is not in `backends`, so their clients' next datagram
    /// picks a backend that is still there.
    pub(crate) fn retain_backends(&mut self, backends: &[SocketAddr]) -> Vec<H> {
        self.take_where(|s| !backends.contains(&s.backend))
    }

    /// Ends every session.
    pub(crate) fn drain(&mut self) -> Vec<H> {
        self.map.drain().map(|(_, s)| s.handle).collect()
    }

    fn take_where(&mut self, mut gone: impl FnMut(&Session<H>) -> bool) -> Vec<H> {
        let keys: Vec<SocketAddr> = self.map.iter().filter(|(_, s)| gone(s)).map(|(k, _)| *k).collect();
        keys.into_iter().filter_map(|k| self.map.remove(&k)).map(|s| s.handle).collect()
    }

    /// How many sessions there are.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::UDP_IDLE_TIMEOUT;

    fn addr(last: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, last], port))
    }

    #[tokio::test(start_paused = true)]
    async fn idle_sessions_expire_and_active_ones_stay() {
        let mut s = Sessions::new(16);
        let (quiet, chatty, backend) = (addr(1, 1000), addr(2, 1000), addr(9, 53));
        s.insert(quiet, backend, "quiet", Instant::now()).expect("room");
        let (chatty_id, _) = s.insert(chatty, backend, "chatty", Instant::now()).expect("room");
        for _ in 0..3 {
            tokio::time::advance(UDP_IDLE_TIMEOUT / 3).await;
            // Both directions are activity: a datagram from the client (`get`), a reply (`touch`).
            assert!(s.get(chatty, Instant::now()).is_some());
            s.touch(chatty, chatty_id, Instant::now());
            s.touch(quiet, 999, Instant::now());
        }
        assert_eq!(
            s.expire(Instant::now(), UDP_IDLE_TIMEOUT),
            vec!["quiet"],
            "a touch by a stale id counts for nothing"
        );
        tokio::time::advance(UDP_IDLE_TIMEOUT - Duration::from_millis(1)).await;
        assert!(s.expire(Instant::now(), UDP_IDLE_TIMEOUT).is_empty());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(s.expire(Instant::now(), UDP_IDLE_TIMEOUT), vec!["chatty"]);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn sessions_are_bounded_and_replaced_per_client() {
        let now = Instant::now();
        let mut s = Sessions::new(2);
        let b = addr(9, 53);
        s.insert(addr(1, 1), b, 1, now).expect("room");
        let (first, _) = s.insert(addr(2, 2), b, 2, now).expect("room");
        assert!(s.is_full());
        assert_eq!(s.insert(addr(3, 3), b, 3, now), Err(3), "a third client is refused");
        // The same client may replace its own session; the old one is handed back to stop.
        let (second, old) = s.insert(addr(2, 2), b, 22, now).expect("replacing");
        assert_eq!(old, Some(2));
        assert_eq!(s.remove(addr(2, 2), first), None, "an old session cannot remove its successor");
        assert_eq!(s.remove(addr(2, 2), second), Some(22));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn sessions_to_a_departed_backend_end() {
        let now = Instant::now();
        let mut s = Sessions::new(8);
        s.insert(addr(1, 1), addr(9, 53), "to-9", now).expect("room");
        s.insert(addr(2, 2), addr(8, 53), "to-8", now).expect("room");
        assert_eq!(s.retain_backends(&[addr(8, 53)]), vec!["to-9"]);
        assert_eq!(s.drain(), vec!["to-8"]);
    }
}
