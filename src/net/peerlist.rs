//! The addresses a torrent may dial: where each came from, whether a
//! connection to it is open, and when to try again after failures.
//!
//! Bounded ([`MAX_KNOWN`]); back-off doubles per failure from 2 s to 2 min;
//! a peer that was a seed when we completed is not dialled again while we
//! are complete.

use crate::swarm::PeerKey;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Most addresses remembered per torrent.
pub const MAX_KNOWN: usize = 500;
/// Most of them learned from peer exchange, so that peers sending made-up
/// addresses cannot crowd out those from trackers and the user.
pub const MAX_PEX_KNOWN: usize = MAX_KNOWN / 2;

/// A peer address we may connect to.
#[derive(Clone, Debug)]
pub struct KnownPeer {
    pub addr: SocketAddr,
    /// "manual", "tracker", "pex", "magnet", ...
    pub source: &'static str,
    pub fails: u32,
    pub next_try: Instant,
    pub conn: Option<PeerKey>,
    /// It had every piece when we last saw it.
    pub seed: bool,
}

#[derive(Clone, Debug, Default)]
pub struct PeerList {
    known: Vec<KnownPeer>,
}

fn backoff(fails: u32) -> Duration {
    Duration::from_secs(2u64.saturating_pow(fails.min(8))).min(Duration::from_secs(120))
}

impl PeerList {
    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &KnownPeer> {
        self.known.iter()
    }

    /// Adds an address learned from peer exchange (`source`): a known one is
    /// left as it is (a peer repeating an address does not cut its back-off
    /// short); at most [`MAX_PEX_KNOWN`] such entries. False when refused.
    pub fn add_exchanged(&mut self, addr: SocketAddr, source: &'static str, now: Instant) -> bool {
        if self.known.iter().any(|k| k.addr == addr) {
            return true;
        }
        if self.known.iter().filter(|k| k.source == source).count() >= MAX_PEX_KNOWN {
            return false;
        }
        self.add(addr, source, now)
    }

    /// Adds an address (or makes a known one eligible again at once). False when full.
    pub fn add(&mut self, addr: SocketAddr, source: &'static str, now: Instant) -> bool {
        if let Some(k) = self.known.iter_mut().find(|k| k.addr == addr) {
            if k.conn.is_none() {
                k.next_try = k.next_try.min(now);
            }
            return true;
        }
        if self.known.len() >= MAX_KNOWN {
            return false;
        }
        self.known.push(KnownPeer {
            addr,
            source,
            fails: 0,
            next_try: now,
            conn: None,
            seed: false,
        });
        true
    }

    /// Addresses to dial now, in the order they were learned.
    pub fn candidates(
        &self,
        now: Instant,
        complete: bool,
        banned: impl Fn(&SocketAddr) -> bool,
    ) -> Vec<SocketAddr> {
        self.known
            .iter()
            .filter(|k| {
                k.conn.is_none() && k.next_try <= now && !(complete && k.seed) && !banned(&k.addr)
            })
            .map(|k| k.addr)
            .collect()
    }

    /// Open connections we dialled.
    pub fn n_connected(&self) -> usize {
        self.known.iter().filter(|k| k.conn.is_some()).count()
    }

    /// A connection to `addr` was opened as `key`; returns where the address came from.
    pub fn attach(&mut self, addr: SocketAddr, key: PeerKey) -> Option<&'static str> {
        let k = self.known.iter_mut().find(|k| k.addr == addr)?;
        k.conn = Some(key);
        Some(k.source)
    }

    /// Dialling `addr` failed before a connection existed.
    pub fn failed(&mut self, addr: SocketAddr, now: Instant) {
        if let Some(k) = self.known.iter_mut().find(|k| k.addr == addr) {
            k.conn = None;
            k.fails += 1;
            k.next_try = now + backoff(k.fails);
        }
    }

    /// The handshake on `key` succeeded.
    pub fn connected(&mut self, key: PeerKey) {
        if let Some(k) = self.known.iter_mut().find(|k| k.conn == Some(key)) {
            k.fails = 0;
        }
    }

    /// The connection `key` closed; a connection that never got through counts as a failure.
    pub fn closed(&mut self, key: PeerKey, was_active: bool, now: Instant) {
        if let Some(k) = self.known.iter_mut().find(|k| k.conn == Some(key)) {
            k.conn = None;
            if !was_active {
                k.fails += 1;
            }
            k.next_try = now + backoff(k.fails).max(Duration::from_secs(1));
        }
    }

    /// The peer on `key` was a seed when we were complete: do not dial it again.
    pub fn mark_seed(&mut self, key: PeerKey) {
        if let Some(k) = self.known.iter_mut().find(|k| k.conn == Some(key)) {
            k.seed = true;
        }
    }

    /// Forget failures (a user said "resume").
    pub fn retry_all(&mut self, now: Instant) {
        for k in self.known.iter_mut() {
            k.next_try = now;
            k.fails = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchanged_addresses_are_capped_and_do_not_reset_back_off() {
        let now = Instant::now();
        let mut l = PeerList::default();
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        assert!(l.add(a, "tracker", now));
        l.failed(a, now);
        let next = l.iter().next().unwrap().next_try;
        assert!(next > now);
        assert!(l.add_exchanged(a, "pex", now));
        assert_eq!(l.iter().next().unwrap().next_try, next);
        assert_eq!(l.iter().next().unwrap().source, "tracker");
        for i in 0..1000u32 {
            let addr = SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 2));
            l.add_exchanged(addr, "pex", now);
        }
        assert_eq!(
            l.iter().filter(|k| k.source == "pex").count(),
            MAX_PEX_KNOWN
        );
        // The rest of the list stays open to other sources.
        assert!(l.add("10.2.0.1:3".parse().unwrap(), "tracker", now));
    }

    #[test]
    fn backoff_and_seeds() {
        let now = Instant::now();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.2:1".parse().unwrap();
        let mut l = PeerList::default();
        assert!(l.add(a, "manual", now) && l.add(b, "pex", now));
        assert_eq!(l.candidates(now, false, |_| false), vec![a, b]);
        assert_eq!(l.candidates(now, false, |x| *x == a), vec![b]);
        assert_eq!(l.attach(a, 7), Some("manual"));
        l.failed(b, now);
        assert!(l.candidates(now, false, |_| false).is_empty());
        assert_eq!(
            l.candidates(now + Duration::from_secs(2), false, |_| false),
            vec![b]
        );
        l.mark_seed(7);
        l.closed(7, true, now);
        assert_eq!(
            l.candidates(now + Duration::from_secs(3), true, |_| false),
            vec![b]
        );
        l.retry_all(now);
        assert_eq!(l.candidates(now, false, |_| false), vec![a, b]);
        for i in 0..MAX_KNOWN {
            l.add(
                SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8], 9)),
                "pex",
                now,
            );
        }
        assert_eq!(l.len(), MAX_KNOWN);
    }
}
