//! Who the control server serves, and how much memory requests may hold.
//!
//! [`Conns`] decides, without I/O (time is passed in), which connection gets
//! a handler. A connection is *untrusted* until its request shows the
//! daemon's token; untrusted connections are capped in number, in number per
//! client address, and, off loopback, leave [`LOOPBACK_RESERVE`] slots to
//! loopback clients. When a cap is reached, the oldest untrusted connection
//! that is still only sending its request (and has had [`Limits::grace`] to
//! do so) is evicted for the newcomer; when none is that old, the newcomer
//! may overflow the cap up to twice its size, and only then is refused. A connection whose request carries the token moves to
//! the trusted pool, a cap of its own that untrusted clients cannot fill, so
//! they can neither starve the command-line client nor each other for long.
//!
//! What requests may hold in memory is `net::memory::Budget`: a request
//! reserves what its body and its parse will take before it reads the
//! body, and gives it back when it is answered.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Untrusted slots that only loopback clients may take.
pub const LOOPBACK_RESERVE: usize = 2;

/// The caps of [`Conns`].
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Untrusted connections at once.
    pub untrusted: usize,
    /// Connections whose request carried the token, at once.
    pub trusted: usize,
    /// Untrusted connections from one client address at once.
    pub per_address: usize,
    /// How long a new connection is safe from eviction.
    pub grace: Duration,
}

/// Where a connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Untrusted, sending its request or reading the answer: may be evicted.
    Reading,
    /// Untrusted, its request with the engine: kept until answered.
    Working,
    /// Its request carried the token.
    Trusted,
}

struct Entry<S> {
    id: u64,
    ip: IpAddr,
    since: Instant,
    phase: Phase,
    /// What the server needs to evict it (its socket).
    handle: S,
}

/// The connections being served (see the module documentation).
pub struct Conns<S> {
    limits: Limits,
    next_id: u64,
    list: Vec<Entry<S>>,
}

impl<S> Conns<S> {
    pub fn new(limits: Limits) -> Conns<S> {
        Conns {
            limits: Limits {
                untrusted: limits.untrusted.max(1),
                trusted: limits.trusted.max(1),
                per_address: limits.per_address.max(1),
                grace: limits.grace,
            },
            next_id: 0,
            list: Vec::new(),
        }
    }

    /// Admits a new connection from `ip`: its id, and the handle of the
    /// connection evicted to make room, if one was. When a cap is reached
    /// and every connection that could make room is within its grace, the
    /// newcomer is admitted beyond the cap, up to twice the untrusted cap
    /// (less [`LOOPBACK_RESERVE`] for remote clients): a burst of honest
    /// requests is served, and a flood is evicted as it ages. Beyond that,
    /// `Err` gives `handle` back (answer 503).
    #[allow(clippy::type_complexity)]
    pub fn admit(&mut self, ip: IpAddr, now: Instant, handle: S) -> Result<(u64, Option<S>), S> {
        let untrusted = |e: &&Entry<S>| e.phase != Phase::Trusted;
        let same = self
            .list
            .iter()
            .filter(untrusted)
            .filter(|e| e.ip == ip)
            .count();
        let all = self.list.iter().filter(untrusted).count();
        let remote = |a: &IpAddr| !a.is_loopback();
        let remote_n = self
            .list
            .iter()
            .filter(untrusted)
            .filter(|e| remote(&e.ip))
            .count();
        let remote_cap = self
            .limits
            .untrusted
            .saturating_sub(LOOPBACK_RESERVE)
            .max(1);
        // The narrowest group that is full gives up its oldest.
        let full = same >= self.limits.per_address;
        let remote_full = !full && remote(&ip) && remote_n >= remote_cap;
        let in_group = |a: &IpAddr| {
            if full {
                *a == ip
            } else {
                !remote_full || remote(a)
            }
        };
        let group = full || remote_full || all >= self.limits.untrusted;
        let mut evicted = None;
        if group {
            let grace = self.limits.grace;
            let victim = (0..self.list.len())
                .filter(|&i| {
                    let e = &self.list[i];
                    e.phase == Phase::Reading
                        && in_group(&e.ip)
                        && now.saturating_duration_since(e.since) >= grace
                })
                .min_by_key(|&i| (self.list[i].since, self.list[i].id));
            // Nobody old enough to evict: the newcomers (all within their
            // grace) may overflow the cap up to twice its size.
            let hard = 2 * self.limits.untrusted;
            let fits =
                all < hard && (!remote(&ip) || remote_n < hard.saturating_sub(LOOPBACK_RESERVE));
            match victim {
                Some(i) => evicted = Some(self.list.swap_remove(i).handle),
                None if fits => {}
                None => return Err(handle),
            }
        }
        self.next_id += 1;
        self.list.push(Entry {
            id: self.next_id,
            ip,
            since: now,
            phase: Phase::Reading,
            handle,
        });
        Ok((self.next_id, evicted))
    }

    /// Moves `id` to the trusted pool. `None`: it was evicted;
    /// `Some(false)`: the trusted pool is full.
    pub fn trust(&mut self, id: u64) -> Option<bool> {
        let trusted = self.count(Phase::Trusted);
        let e = self.list.iter_mut().find(|e| e.id == id)?;
        if e.phase != Phase::Trusted {
            if trusted >= self.limits.trusted {
                return Some(false);
            }
            e.phase = Phase::Trusted;
        }
        Some(true)
    }

    /// Marks untrusted `id` as waiting for the engine (`true`, no longer
    /// evictable) or done with it. `None`: it was evicted; `Some(false)`:
    /// as many as the untrusted cap already wait for the engine (the
    /// overflow keeps room for newcomers to be read).
    pub fn working(&mut self, id: u64, working: bool) -> Option<bool> {
        let busy = self.count(Phase::Working);
        let cap = self.limits.untrusted;
        let e = self.list.iter_mut().find(|e| e.id == id)?;
        match (e.phase, working) {
            (Phase::Trusted, _) => {}
            (Phase::Reading, true) if busy >= cap => return Some(false),
            (_, true) => e.phase = Phase::Working,
            (_, false) => e.phase = Phase::Reading,
        }
        Some(true)
    }

    /// Forgets `id` (its handler ended).
    pub fn remove(&mut self, id: u64) {
        self.list.retain(|e| e.id != id);
    }

    /// Connections being served.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn count(&self, phase: Phase) -> usize {
        self.list.iter().filter(|e| e.phase == phase).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        untrusted: 4,
        trusted: 2,
        per_address: 2,
        grace: Duration::from_millis(100),
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_oldest_untrusted_connection_makes_room() {
        let mut c = Conns::new(LIMITS);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(1);
        for i in 0..4u8 {
            let at = t0 + Duration::from_millis(i.into());
            let got = c.admit(IpAddr::from([127, 0, 0, 2 + i]), at, i.into());
            assert_eq!(got.ok(), Some((u64::from(i) + 1, None)));
        }
        // Full: the oldest goes, once it had its grace.
        assert_eq!(c.admit(ip("127.0.0.6"), later, 4).ok(), Some((5, Some(0))));
        // One waiting for the engine is not evicted; the next oldest is.
        assert_eq!(c.working(2, true), Some(true));
        assert_eq!(c.admit(ip("127.0.0.7"), later, 5).ok(), Some((6, Some(2))));
        // The evicted ones learn that they are gone.
        assert_eq!(c.working(3, true), None);
        assert_eq!(c.trust(1), None);
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn a_burst_within_the_grace_overflows_up_to_twice_the_cap() {
        let mut c = Conns::new(LIMITS);
        let t0 = Instant::now();
        for i in 0..8u8 {
            let got = c.admit(IpAddr::from([127, 0, 0, 2 + i]), t0, i.into());
            assert_eq!(got.ok().map(|r| r.1), Some(None), "{i}");
        }
        assert_eq!(c.admit(ip("127.0.0.99"), t0, 99).err(), Some(99));
        // Once they are old, each newcomer evicts the oldest.
        let later = t0 + Duration::from_secs(1);
        assert!(c.admit(ip("127.0.0.99"), later, 99).unwrap().1.is_some());
        assert_eq!(c.len(), 8);
    }

    #[test]
    fn one_address_evicts_only_its_own() {
        let mut c = Conns::new(LIMITS);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(1);
        c.admit(ip("127.0.0.9"), t0, 0).unwrap();
        c.admit(ip("127.0.0.1"), t0 + Duration::from_millis(1), 1)
            .unwrap();
        c.admit(ip("127.0.0.1"), t0 + Duration::from_millis(2), 2)
            .unwrap();
        // The third from 127.0.0.1 evicts its own oldest, not the older stranger.
        assert_eq!(c.admit(ip("127.0.0.1"), later, 3).ok(), Some((4, Some(1))));
        assert_eq!(c.admit(ip("127.0.0.1"), later, 4).ok(), Some((5, Some(2))));
        // Within the grace, nothing of its own to evict: it overflows.
        assert_eq!(c.admit(ip("127.0.0.1"), later, 5).ok(), Some((6, None)));
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn trusted_connections_have_their_own_pool() {
        let mut c = Conns::new(LIMITS);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(1);
        let (a, _) = c.admit(ip("127.0.0.1"), t0, 0).unwrap();
        let (b, _) = c.admit(ip("127.0.0.2"), t0, 1).unwrap();
        assert_eq!(c.trust(a), Some(true));
        assert_eq!(c.trust(b), Some(true));
        // Trusted ones are never evicted and do not count against the untrusted cap.
        for i in 0..4u8 {
            let got = c.admit(IpAddr::from([127, 0, 1, i]), t0, 10 + usize::from(i));
            assert_eq!(got.ok().map(|r| r.1), Some(None));
        }
        let (_, evicted) = c.admit(ip("127.0.2.1"), later, 20).unwrap();
        assert_eq!(evicted, Some(10));
        // The trusted pool is full.
        let (d, _) = c.admit(ip("127.0.0.3"), later, 30).unwrap();
        assert_eq!(c.trust(d), Some(false));
        c.remove(a);
        assert_eq!(c.trust(d), Some(true));
    }

    #[test]
    fn remote_clients_leave_room_for_loopback() {
        let mut c = Conns::new(LIMITS);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(1);
        c.admit(ip("10.0.0.1"), t0, 0).unwrap();
        c.admit(ip("10.0.0.2"), t0, 1).unwrap();
        // Two remote slots of four: a third remote client evicts a remote one.
        assert_eq!(
            c.admit(ip("10.0.0.3"), later, 2).ok().map(|r| r.1),
            Some(Some(0))
        );
        // The next evicts the other old one; then, within the grace, remote
        // ones overflow to six (eight less the reserve).
        for i in 0..5u8 {
            assert!(c.admit(IpAddr::from([10, 0, 1, i]), later, 3).is_ok());
        }
        assert!(c.admit(ip("10.0.2.1"), later, 3).is_err());
        // Loopback clients still get in, up to twice the cap in all.
        assert_eq!(
            c.admit(ip("127.0.0.1"), later, 4).ok().map(|r| r.1),
            Some(None)
        );
        assert_eq!(c.admit(ip("::1"), later, 5).ok().map(|r| r.1), Some(None));
        assert_eq!(c.len(), 8);
        assert!(c.admit(ip("127.0.0.2"), later, 6).is_err());
    }

    #[test]
    fn untrusted_requests_waiting_for_the_engine_are_capped() {
        let mut c = Conns::new(LIMITS);
        let t0 = Instant::now();
        let ids: Vec<u64> = (0..5u8)
            .map(|i| c.admit(IpAddr::from([127, 0, 0, i]), t0, 0).unwrap().0)
            .collect();
        for &id in &ids[..4] {
            assert_eq!(c.working(id, true), Some(true));
        }
        assert_eq!(c.working(ids[4], true), Some(false));
        assert_eq!(c.working(ids[0], false), Some(true));
        assert_eq!(c.working(ids[4], true), Some(true));
    }
}
