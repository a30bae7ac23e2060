//! What other nodes gave us to keep: announce tokens ([`Tokens`], BEP 5
//! "announce_peer") and the peers announced to us ([`PeerStore`]).
//!
//! A token is the first 8 bytes of SHA-1(secret ‖ requester IP); the secret
//! changes every [`TOKEN_PERIOD`] and tokens of the current and previous
//! secret are accepted, so a token lives 5 to 10 minutes (BEP 5).
//!
//! The store keeps each announce for [`PEER_TTL`] (30 minutes). Bounds:
//! `max_peers_per_hash` peers per info-hash (the oldest goes), `max_hashes`
//! info-hashes (the one announced least recently goes), one entry per
//! announcer IP per info-hash (a new announce replaces the port), and
//! [`MAX_HASHES_PER_IP`] info-hashes per announcer IP, so one host cannot
//! fill the store. No I/O, no clock.

use crate::hash::Sha1;
use crate::rand::Rng;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

pub const TOKEN_PERIOD: Duration = Duration::from_secs(5 * 60);
pub const TOKEN_LEN: usize = 8;
pub const PEER_TTL: Duration = Duration::from_secs(30 * 60);
/// Info-hashes one announcer IP may hold entries for.
pub const MAX_HASHES_PER_IP: usize = 32;

pub struct Tokens {
    current: [u8; 16],
    previous: [u8; 16],
    rotated: Instant,
}

fn token(secret: &[u8; 16], ip: &IpAddr) -> Vec<u8> {
    let mut h = Sha1::new();
    h.update(secret);
    match ip {
        IpAddr::V4(v4) => h.update(&v4.octets()),
        IpAddr::V6(v6) => h.update(&v6.octets()),
    }
    let d = h.finish();
    d.get(..TOKEN_LEN).unwrap_or(&d[..]).to_vec()
}

impl Tokens {
    pub fn new(rng: &mut Rng, now: Instant) -> Tokens {
        Tokens {
            current: rng.bytes(),
            previous: rng.bytes(),
            rotated: now,
        }
    }

    pub fn rotate_if_due(&mut self, rng: &mut Rng, now: Instant) {
        if now.saturating_duration_since(self.rotated) >= TOKEN_PERIOD {
            self.previous = self.current;
            self.current = rng.bytes();
            self.rotated = now;
        }
    }

    pub fn issue(&self, ip: &IpAddr) -> Vec<u8> {
        token(&self.current, ip)
    }

    pub fn check(&self, ip: &IpAddr, t: &[u8]) -> bool {
        t == token(&self.current, ip).as_slice() || t == token(&self.previous, ip).as_slice()
    }
}

#[derive(Clone, Debug)]
struct Peer {
    addr: SocketAddr,
    at: Instant,
}

#[derive(Debug, Default)]
struct Entry {
    peers: Vec<Peer>,
    last: Option<Instant>,
}

pub struct PeerStore {
    entries: HashMap<[u8; 20], Entry>,
    per_ip: HashMap<IpAddr, usize>,
    max_peers: usize,
    max_hashes: usize,
}

impl PeerStore {
    pub fn new(max_peers: usize, max_hashes: usize) -> PeerStore {
        PeerStore {
            entries: HashMap::new(),
            per_ip: HashMap::new(),
            max_peers: max_peers.max(1),
            max_hashes: max_hashes.max(1),
        }
    }

    pub fn hashes(&self) -> usize {
        self.entries.len()
    }

    pub fn peers(&self) -> usize {
        self.entries.values().map(|e| e.peers.len()).sum()
    }

    /// Records `addr` (whose IP is the announcer's) for `info_hash`;
    /// false when a limit refused it.
    pub fn announce(&mut self, info_hash: [u8; 20], addr: SocketAddr, now: Instant) -> bool {
        let ip = addr.ip();
        if let Some(e) = self.entries.get_mut(&info_hash) {
            if let Some(p) = e.peers.iter_mut().find(|p| p.addr.ip() == ip) {
                p.addr = addr;
                p.at = now;
                e.last = Some(now);
                return true;
            }
        }
        if self.per_ip.get(&ip).copied().unwrap_or(0) >= MAX_HASHES_PER_IP {
            return false;
        }
        if !self.entries.contains_key(&info_hash) && self.entries.len() >= self.max_hashes {
            // Evict the info-hash announced least recently.
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.drop_hash(&k);
            }
        }
        let e = self.entries.entry(info_hash).or_default();
        if e.peers.len() >= self.max_peers {
            if let Some(pos) = e
                .peers
                .iter()
                .enumerate()
                .min_by_key(|(_, p)| p.at)
                .map(|(i, _)| i)
            {
                let old = e.peers.remove(pos);
                dec(&mut self.per_ip, &old.addr.ip());
            }
        }
        e.peers.push(Peer { addr, at: now });
        e.last = Some(now);
        *self.per_ip.entry(ip).or_insert(0) += 1;
        true
    }

    fn drop_hash(&mut self, k: &[u8; 20]) {
        if let Some(e) = self.entries.remove(k) {
            for p in e.peers {
                dec(&mut self.per_ip, &p.addr.ip());
            }
        }
    }

    /// Up to `max` peers of `info_hash` of one family (IPv6 when `v6`),
    /// a random choice when there are more.
    pub fn get(
        &self,
        info_hash: &[u8; 20],
        v6: bool,
        max: usize,
        rng: &mut Rng,
    ) -> Vec<SocketAddr> {
        let Some(e) = self.entries.get(info_hash) else {
            return Vec::new();
        };
        let mut out: Vec<SocketAddr> = e
            .peers
            .iter()
            .map(|p| p.addr)
            .filter(|a| a.is_ipv6() == v6)
            .collect();
        // A partial Fisher–Yates shuffle picks `max` at random.
        let n = out.len();
        if n > max {
            for i in 0..max {
                let j = i + rng.below(n - i);
                out.swap(i, j);
            }
            out.truncate(max);
        }
        out
    }

    /// Drops announces older than [`PEER_TTL`].
    pub fn expire(&mut self, now: Instant) {
        let per_ip = &mut self.per_ip;
        self.entries.retain(|_, e| {
            e.peers.retain(|p| {
                let keep = now.saturating_duration_since(p.at) < PEER_TTL;
                if !keep {
                    dec(per_ip, &p.addr.ip());
                }
                keep
            });
            !e.peers.is_empty()
        });
    }
}

fn dec(per_ip: &mut HashMap<IpAddr, usize>, ip: &IpAddr) {
    if let Some(c) = per_ip.get_mut(ip) {
        *c = c.saturating_sub(1);
        if *c == 0 {
            per_ip.remove(ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(i: u32, port: u16) -> SocketAddr {
        SocketAddr::new(i.to_be_bytes().into(), port)
    }

    #[test]
    fn tokens_rotate_current_and_previous_accepted() {
        let mut rng = Rng::new([1; 32]);
        let now = Instant::now();
        let mut t = Tokens::new(&mut rng, now);
        let ip: IpAddr = "1.2.3.4".parse().unwrap();
        let other: IpAddr = "1.2.3.5".parse().unwrap();
        let tok = t.issue(&ip);
        assert_eq!(tok.len(), TOKEN_LEN);
        assert!(t.check(&ip, &tok));
        assert!(!t.check(&other, &tok));
        t.rotate_if_due(&mut rng, now + Duration::from_secs(60));
        assert!(t.check(&ip, &tok));
        t.rotate_if_due(&mut rng, now + TOKEN_PERIOD);
        assert!(t.check(&ip, &tok), "previous secret still accepted");
        t.rotate_if_due(&mut rng, now + TOKEN_PERIOD * 2);
        assert!(!t.check(&ip, &tok), "two rotations later it is refused");
    }

    #[test]
    fn store_caps_and_expiry() {
        let mut rng = Rng::new([2; 32]);
        let now = Instant::now();
        let mut s = PeerStore::new(5, 3);
        for i in 0..10 {
            assert!(s.announce(
                [1; 20],
                a(100 + i, 1),
                now + Duration::from_secs(u64::from(i))
            ));
        }
        assert_eq!(s.peers(), 5);
        // The five newest remain.
        let got = s.get(&[1; 20], false, 50, &mut rng);
        assert!(got
            .iter()
            .all(|p| p.ip() >= IpAddr::from(105u32.to_be_bytes())));
        // Re-announce from the same IP replaces the port.
        s.announce([1; 20], a(109, 2), now + Duration::from_secs(11));
        assert_eq!(s.peers(), 5);
        // Hash cap: the least recently announced goes.
        for h in 2..5u8 {
            s.announce(
                [h; 20],
                a(7, 1),
                now + Duration::from_secs(20 + u64::from(h)),
            );
        }
        assert_eq!(s.hashes(), 3);
        assert!(s.get(&[1; 20], false, 50, &mut rng).is_empty());
        // Per-IP cap across hashes.
        let mut s = PeerStore::new(10, 1000);
        for h in 0..(MAX_HASHES_PER_IP as u32 + 5) {
            let mut k = [0u8; 20];
            k[..4].copy_from_slice(&h.to_be_bytes());
            s.announce(k, a(9, 1), now);
        }
        assert_eq!(s.hashes(), MAX_HASHES_PER_IP);
        // Expiry after 30 minutes.
        s.expire(now + PEER_TTL);
        assert_eq!(s.hashes(), 0);
        assert!(s.per_ip.is_empty());
        // At most `max` returned, of the asked family only.
        let mut s = PeerStore::new(100, 10);
        for i in 0..80 {
            s.announce([3; 20], a(1000 + i, 1), now);
        }
        s.announce([3; 20], "[2001:db8::1]:5".parse().unwrap(), now);
        assert_eq!(s.get(&[3; 20], false, 50, &mut rng).len(), 50);
        assert_eq!(s.get(&[3; 20], true, 50, &mut rng).len(), 1);
    }
}
