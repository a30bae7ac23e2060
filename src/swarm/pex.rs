//! Peer exchange (BEP 11) bookkeeping for one torrent, sans I/O.
//!
//! [`PeerExchange`] knows the listen addresses of the torrent's connected
//! peers (the net thread reports connections, extended handshakes and
//! disconnections) and does two things:
//!
//! - **Sending.** Every PEX-capable peer (one whose handshake gave a ut_pex
//!   id) gets at most one message per [`PEX_INTERVAL`], listing the addresses
//!   connected since the last message to it (`added`, at most
//!   [`MAX_ADDED`]) and those gone since (`dropped`, at most
//!   [`MAX_DROPPED`]); the first message lists the current peers. What does
//!   not fit goes in a later message. A peer never hears of itself; no
//!   message goes out when nothing changed. [`PeerExchange::tick`] makes the
//!   messages, [`PeerExchange::drain`] hands them out.
//! - **Receiving.** [`PeerExchange::on_message`] accepts at most one message
//!   per peer per [`MIN_RECV_INTERVAL`] (later ones are ignored whole) and
//!   at most [`MAX_NEW`] new addresses from it, and returns them as
//!   [`Candidate`]s tagged [`SOURCE`]. Never returned: our own addresses
//!   ([`PeerExchange::add_own_addr`]), addresses already connected, port 0,
//!   unspecified, multicast and broadcast addresses, and loopback addresses
//!   unless the sender is on loopback too. `dropped` lists are not trusted
//!   and not used.
//!
//! A peer's listen address is its address when we connected to it; for an
//! incoming connection it is its IP with the `p` port of its handshake, and
//! unknown (not advertised) until then.
//!
//! Private torrents (BEP 27) have no PEX at all: built with `private`, every
//! method does nothing (and our handshake must not offer ut_pex:
//! `ExtendedHandshake::ours(false)`).
//!
//! # Limits
//!
//! At most [`MAX_TRACKED`] connected addresses are tracked; per PEX-capable
//! peer, the set of addresses it has been told (at most as many). Received
//! messages are already capped by the parser (`wire::extension`:
//! 200 added per message).
//!
//! # No-panic contract
//!
//! No input (unknown peers, repeated or out-of-order events, hostile
//! address lists, `now` going backwards) makes it panic; there is no
//! indexing and all time arithmetic saturates. No I/O, no clock.

use super::torrent::PeerKey;
use crate::wire::extension::{pex_flags, ExtendedHandshake, PexMessage, PexPeer, UT_PEX};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Least time between two messages we send to one peer.
pub const PEX_INTERVAL: Duration = Duration::from_secs(60);
/// Least time between two messages we accept from one peer: 60 s less a
/// little slack, because a peer sending every 60 s may arrive a bit early.
pub const MIN_RECV_INTERVAL: Duration = Duration::from_secs(55);
/// Most added addresses per message we send.
pub const MAX_ADDED: usize = 50;
/// Most dropped addresses per message we send.
pub const MAX_DROPPED: usize = 50;
/// Most new addresses we take from one received message.
pub const MAX_NEW: usize = 50;
/// Most connected addresses tracked.
pub const MAX_TRACKED: usize = 1000;
/// Most addresses [`PeerExchange::add_own_addr`] remembers.
pub const MAX_OWN: usize = 16;
/// The `source` of candidates from PEX.
pub const SOURCE: &str = "pex";

/// An address learned from PEX, for the caller's list of known peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Candidate {
    pub addr: SocketAddr,
    /// `wire::extension::pex_flags` as the sender gave them.
    pub flags: u8,
    /// Always [`SOURCE`].
    pub source: &'static str,
}

/// A PEX message to send: `Message::Extended { id: ext_id, payload }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PexSend {
    pub peer: PeerKey,
    /// The ut_pex id from the peer's handshake.
    pub ext_id: u8,
    pub payload: Vec<u8>,
}

/// One torrent's PEX state. See the module docs.
pub struct PeerExchange {
    enabled: bool,
    own: Vec<SocketAddr>,
    /// Listen addresses of connected peers: (connections, flags).
    connected: HashMap<SocketAddr, (u32, u8)>,
    /// Bumped whenever `connected` gains or loses an address.
    generation: u64,
    peers: HashMap<PeerKey, PexPeerState>,
    out: Vec<PexSend>,
}

struct PexPeerState {
    remote: SocketAddr,
    outgoing: bool,
    /// Its listen address, when known (and tracked in `connected`).
    listen: Option<SocketAddr>,
    flags: u8,
    /// The id to send ut_pex with; `None` = not PEX-capable.
    ext_id: Option<u8>,
    /// The addresses this peer has been told are connected.
    told: HashSet<SocketAddr>,
    /// `told` matches `connected` as of this generation (nothing to send).
    synced: Option<u64>,
    /// No message to it before this.
    next_send: Instant,
    last_recv: Option<Instant>,
}

impl PeerExchange {
    /// PEX for one torrent; `private` disables it entirely.
    pub fn new(private: bool) -> PeerExchange {
        PeerExchange {
            enabled: !private,
            own: Vec::new(),
            connected: HashMap::new(),
            generation: 0,
            peers: HashMap::new(),
            out: Vec::new(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// An address that is ours (our listen address, or the `yourip` a peer
    /// reported with our port): never advertised, never returned. An
    /// unspecified IP (`0.0.0.0:port`) also covers loopback with that port.
    /// At most [`MAX_OWN`] are kept.
    pub fn add_own_addr(&mut self, addr: SocketAddr) {
        if !self.own.contains(&addr) && self.own.len() < MAX_OWN {
            self.own.push(addr);
        }
    }

    /// The messages made by [`tick`](Self::tick).
    pub fn drain(&mut self) -> std::vec::Drain<'_, PexSend> {
        self.out.drain(..)
    }

    /// A connection is up. `outgoing`: we connected to `remote`, so it is
    /// the peer's listen address (and flagged reachable).
    pub fn on_connect(&mut self, peer: PeerKey, remote: SocketAddr, outgoing: bool, now: Instant) {
        if !self.enabled {
            return;
        }
        self.on_disconnect(peer);
        let flags = if outgoing { pex_flags::REACHABLE } else { 0 };
        self.peers.insert(
            peer,
            PexPeerState {
                remote,
                outgoing,
                listen: None,
                flags,
                ext_id: None,
                told: HashSet::new(),
                synced: None,
                next_send: now,
                last_recv: None,
            },
        );
        if outgoing {
            self.set_listen(peer, Some(remote));
        }
    }

    /// The peer's extended handshake (first or later): its ut_pex id (0
    /// disables PEX to it) and, for an incoming connection, its listen port.
    pub fn on_handshake(&mut self, peer: PeerKey, hs: &ExtendedHandshake, now: Instant) {
        if !self.enabled {
            return;
        }
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if let Some(id) = hs.extension(UT_PEX) {
            let ext_id = (id != 0).then_some(id);
            if ext_id.is_none() || p.ext_id.is_none() {
                // Enabled anew or disabled: start over with a full list.
                p.told.clear();
                p.synced = None;
                p.next_send = p.next_send.max(now);
            }
            p.ext_id = ext_id;
        }
        if let (Some(port), false) = (hs.port, p.outgoing) {
            let listen = SocketAddr::new(p.remote.ip(), port);
            self.set_listen(peer, Some(listen));
        }
    }

    /// Marks the peer as a seed (or not) in the `added.f` flags we send.
    pub fn set_seed(&mut self, peer: PeerKey, seed: bool) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if seed {
            p.flags |= pex_flags::SEED;
        } else {
            p.flags &= !pex_flags::SEED;
        }
        if let Some(entry) = p.listen.and_then(|a| self.connected.get_mut(&a)) {
            entry.1 = p.flags;
        }
    }

    /// The connection is gone.
    pub fn on_disconnect(&mut self, peer: PeerKey) {
        if self.peers.contains_key(&peer) {
            self.set_listen(peer, None);
            self.peers.remove(&peer);
        }
    }

    /// Makes the messages that are due (see [`drain`](Self::drain)).
    pub fn tick(&mut self, now: Instant) {
        if !self.enabled {
            return;
        }
        let generation = self.generation;
        for (&key, p) in self.peers.iter_mut() {
            let Some(ext_id) = p.ext_id else { continue };
            if p.synced == Some(generation) || p.next_send > now {
                continue;
            }
            let mut msg = PexMessage::default();
            let mut more = false;
            for (&addr, &(_, flags)) in &self.connected {
                // Our own address (a peer on this host, a self-connection
                // not yet closed) is never advertised.
                if Some(addr) == p.listen || p.told.contains(&addr) || is_own(&self.own, addr) {
                    continue;
                }
                if msg.added.len() == MAX_ADDED {
                    more = true;
                    break;
                }
                msg.added.push(PexPeer { addr, flags });
            }
            for &addr in &p.told {
                if self.connected.contains_key(&addr) {
                    continue;
                }
                if msg.dropped.len() == MAX_DROPPED {
                    more = true;
                    break;
                }
                msg.dropped.push(addr);
            }
            p.synced = (!more).then_some(generation);
            if msg.added.is_empty() && msg.dropped.is_empty() {
                continue;
            }
            for a in &msg.added {
                p.told.insert(a.addr);
            }
            for a in &msg.dropped {
                p.told.remove(a);
            }
            p.next_send = now + PEX_INTERVAL;
            self.out.push(PexSend {
                peer: key,
                ext_id,
                payload: msg.to_bytes(),
            });
        }
    }

    /// When [`tick`](Self::tick) next has a message to make, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.enabled {
            return None;
        }
        self.peers
            .values()
            .filter(|p| p.ext_id.is_some() && p.synced != Some(self.generation))
            .map(|p| p.next_send)
            .min()
    }

    /// A PEX message from `peer`: the new addresses worth trying (at most
    /// [`MAX_NEW`]), or nothing when the message came too soon after the
    /// last one, the peer is unknown, or PEX is disabled.
    pub fn on_message(&mut self, peer: PeerKey, msg: &PexMessage, now: Instant) -> Vec<Candidate> {
        if !self.enabled {
            return Vec::new();
        }
        let Some(p) = self.peers.get_mut(&peer) else {
            return Vec::new();
        };
        if let Some(last) = p.last_recv {
            if now.saturating_duration_since(last) < MIN_RECV_INTERVAL {
                return Vec::new();
            }
        }
        p.last_recv = Some(now);
        let sender_ip = p.remote.ip();
        let mut res: Vec<Candidate> = Vec::new();
        for &PexPeer { addr, flags } in &msg.added {
            if res.len() == MAX_NEW {
                break;
            }
            if !connectable(addr, sender_ip)
                || self.is_own(addr)
                || self.connected.contains_key(&addr)
                || res.iter().any(|c| c.addr == addr)
            {
                continue;
            }
            res.push(Candidate {
                addr,
                flags,
                source: SOURCE,
            });
        }
        res
    }

    fn is_own(&self, addr: SocketAddr) -> bool {
        is_own(&self.own, addr)
    }

    /// Moves `peer`'s listen address in `connected` to `listen`.
    fn set_listen(&mut self, peer: PeerKey, listen: Option<SocketAddr>) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.listen == listen {
            return;
        }
        if let Some(old) = p.listen.take() {
            if let Some(entry) = self.connected.get_mut(&old) {
                entry.0 = entry.0.saturating_sub(1);
                if entry.0 == 0 {
                    self.connected.remove(&old);
                    self.generation += 1;
                }
            }
        }
        let Some(addr) = listen else { return };
        if !connectable(addr, addr.ip()) {
            return;
        }
        if let Some(entry) = self.connected.get_mut(&addr) {
            entry.0 = entry.0.saturating_add(1);
        } else if self.connected.len() < MAX_TRACKED {
            self.connected.insert(addr, (1, p.flags));
            self.generation += 1;
        } else {
            return;
        }
        p.listen = Some(addr);
    }
}

/// `addr` is one of `own` (see [`PeerExchange::add_own_addr`]).
fn is_own(own: &[SocketAddr], addr: SocketAddr) -> bool {
    own.iter().any(|&own| {
        own == addr
            || (own.ip().is_unspecified()
                && own.port() == addr.port()
                && (addr.ip().is_loopback() || addr.ip().is_unspecified()))
    })
}

pub use crate::wire::connectable;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::extension::MAX_PEX_ADDED;

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::from(((10u32 << 24 | i).to_be_bytes(), 6881))
    }

    fn hs_pex(id: u8, port: Option<u16>) -> ExtendedHandshake {
        ExtendedHandshake {
            m: vec![(UT_PEX.to_vec(), id)],
            port,
            ..ExtendedHandshake::default()
        }
    }

    fn sent(px: &mut PeerExchange) -> Vec<(PeerKey, u8, PexMessage)> {
        let mut res: Vec<_> = px
            .drain()
            .map(|s| (s.peer, s.ext_id, PexMessage::parse(&s.payload).unwrap()))
            .collect();
        res.sort_by_key(|r| r.0);
        res
    }

    fn addrs(peers: &[PexPeer]) -> HashSet<SocketAddr> {
        peers.iter().map(|p| p.addr).collect()
    }

    #[test]
    fn own_address_is_never_advertised() {
        // Found by fuzz/fuzz_targets/ut_pex.rs: a connected peer whose
        // listen address is one of ours was listed in `added`.
        let t0 = Instant::now();
        let mut px = PeerExchange::new(false);
        px.add_own_addr(addr(1));
        px.add_own_addr(SocketAddr::from(([0, 0, 0, 0], 7000)));
        px.on_connect(1, addr(1), true, t0);
        px.on_connect(2, addr(2), true, t0);
        px.on_connect(3, SocketAddr::from(([127, 0, 0, 1], 7000)), true, t0);
        px.on_handshake(2, &hs_pex(5, None), t0);
        px.tick(t0);
        assert!(sent(&mut px).is_empty(), "only our own addresses to tell");
        px.on_connect(4, addr(4), true, t0);
        px.tick(t0);
        let msgs = sent(&mut px);
        assert_eq!(msgs.len(), 1);
        assert_eq!(addrs(&msgs[0].2.added), HashSet::from([addr(4)]));
    }

    #[test]
    fn private_torrents_have_no_pex() {
        let t0 = Instant::now();
        let mut px = PeerExchange::new(true);
        assert!(!px.is_enabled());
        px.on_connect(1, addr(1), true, t0);
        px.on_connect(2, addr(2), true, t0);
        px.on_handshake(1, &hs_pex(5, None), t0);
        px.on_handshake(2, &hs_pex(5, None), t0);
        px.tick(t0);
        assert_eq!(px.drain().count(), 0);
        assert_eq!(px.next_deadline(), None);
        let msg = PexMessage {
            added: vec![PexPeer {
                addr: addr(9),
                flags: 0,
            }],
            ..PexMessage::default()
        };
        assert!(px.on_message(1, &msg, t0).is_empty());
        assert!(px.peers.is_empty() && px.connected.is_empty());
    }

    #[test]
    fn first_message_lists_current_peers_then_only_changes() {
        let t0 = Instant::now();
        let mut px = PeerExchange::new(false);
        for i in 1..=3 {
            px.on_connect(i, addr(i as u32), true, t0);
        }
        // Not PEX-capable yet: nothing.
        px.tick(t0);
        assert_eq!(px.drain().count(), 0);
        assert_eq!(px.next_deadline(), None);
        px.on_handshake(1, &hs_pex(7, None), t0);
        assert_eq!(px.next_deadline(), Some(t0));
        px.tick(t0);
        let msgs = sent(&mut px);
        assert_eq!(msgs.len(), 1);
        let (peer, ext_id, msg) = &msgs[0];
        assert_eq!((*peer, *ext_id), (1, 7));
        // Peer 1 is not told about itself; flags say we reached them.
        assert_eq!(addrs(&msg.added), HashSet::from([addr(2), addr(3)]));
        assert!(msg.added.iter().all(|p| p.flags == pex_flags::REACHABLE));
        assert!(msg.dropped.is_empty());
        // Nothing changed: no message, no deadline.
        px.tick(t0 + PEX_INTERVAL * 3);
        assert_eq!(px.drain().count(), 0);
        assert_eq!(px.next_deadline(), None);
        // A change: not before 60 s after the last message.
        let t1 = t0 + PEX_INTERVAL * 3;
        px.on_disconnect(2);
        px.on_connect(4, addr(4), true, t1);
        px.on_connect(5, addr(5), false, t1); // incoming, port unknown
        assert_eq!(px.next_deadline(), Some(t0 + PEX_INTERVAL));
        px.tick(t1);
        let msgs = sent(&mut px);
        assert_eq!(msgs.len(), 1);
        let msg = &msgs[0].2;
        assert_eq!(addrs(&msg.added), HashSet::from([addr(4)]));
        assert_eq!(msg.dropped, vec![addr(2)]);
        // The incoming peer's port arrives with its handshake.
        let t2 = t1 + Duration::from_secs(1);
        px.on_handshake(5, &hs_pex(0, Some(7000)), t2);
        px.tick(t2);
        assert_eq!(px.drain().count(), 0, "too soon");
        assert_eq!(px.next_deadline(), Some(t1 + PEX_INTERVAL));
        px.tick(t1 + PEX_INTERVAL);
        let msgs = sent(&mut px);
        let listen5 = SocketAddr::new(addr(5).ip(), 7000);
        assert_eq!(
            msgs[0].2.added,
            vec![PexPeer {
                addr: listen5,
                flags: 0
            }]
        );
    }

    #[test]
    fn at_most_50_added_and_50_dropped_per_message() {
        let t0 = Instant::now();
        let mut px = PeerExchange::new(false);
        for i in 1..=81 {
            px.on_connect(i, addr(i as u32), true, t0);
        }
        px.on_handshake(1, &hs_pex(3, None), t0);
        px.tick(t0);
        let first = sent(&mut px);
        assert_eq!(first[0].2.added.len(), MAX_ADDED);
        // The other 30 come with the next message, 60 s later.
        assert_eq!(px.next_deadline(), Some(t0 + PEX_INTERVAL));
        let t1 = t0 + PEX_INTERVAL;
        px.tick(t1);
        let second = sent(&mut px);
        assert_eq!(second[0].2.added.len(), 30);
        let all: HashSet<_> = addrs(&first[0].2.added)
            .union(&addrs(&second[0].2.added))
            .copied()
            .collect();
        assert_eq!(all, (2..=81).map(addr).collect());
        // 70 leave: 50 dropped now, 20 later.
        for i in 12..=81 {
            px.on_disconnect(i);
        }
        let t2 = t1 + PEX_INTERVAL;
        px.tick(t2);
        let third = sent(&mut px);
        assert_eq!((third[0].2.added.len(), third[0].2.dropped.len()), (0, 50));
        px.tick(t2 + PEX_INTERVAL);
        let fourth = sent(&mut px);
        assert_eq!(fourth[0].2.dropped.len(), 20);
        px.tick(t2 + PEX_INTERVAL * 2);
        assert_eq!(px.drain().count(), 0);
    }

    #[test]
    fn disabling_pex_stops_messages_and_enabling_resends_all() {
        let t0 = Instant::now();
        let mut px = PeerExchange::new(false);
        px.on_connect(1, addr(1), true, t0);
        px.on_connect(2, addr(2), true, t0);
        px.on_handshake(1, &hs_pex(3, None), t0);
        px.tick(t0);
        assert_eq!(sent(&mut px).len(), 1);
        px.on_handshake(1, &hs_pex(0, None), t0);
        px.on_connect(3, addr(3), true, t0);
        px.tick(t0 + PEX_INTERVAL);
        assert_eq!(px.drain().count(), 0);
        px.on_handshake(1, &hs_pex(4, None), t0 + PEX_INTERVAL);
        px.tick(t0 + PEX_INTERVAL);
        let msgs = sent(&mut px);
        assert_eq!(msgs[0].1, 4);
        assert_eq!(addrs(&msgs[0].2.added), HashSet::from([addr(2), addr(3)]));
    }

    #[test]
    fn two_connections_to_one_address_count_once() {
        let t0 = Instant::now();
        let mut px = PeerExchange::new(false);
        px.on_connect(1, addr(1), true, t0);
        px.on_connect(2, addr(2), true, t0);
        px.on_connect(3, addr(2), true, t0);
        px.set_seed(2, true);
        px.on_handshake(1, &hs_pex(1, None), t0);
        px.tick(t0);
        let msgs = sent(&mut px);
        assert_eq!(
            msgs[0].2.added,
            vec![PexPeer {
                addr: addr(2),
                flags: pex_flags::REACHABLE | pex_flags::SEED
            }]
        );
        // One of the two goes: still connected, nothing dropped.
        px.on_disconnect(2);
        px.tick(t0 + PEX_INTERVAL);
        assert_eq!(px.drain().count(), 0);
        px.on_disconnect(3);
        px.tick(t0 + PEX_INTERVAL);
        assert_eq!(sent(&mut px)[0].2.dropped, vec![addr(2)]);
        // Unknown peers are ignored everywhere.
        px.on_disconnect(99);
        px.set_seed(99, true);
        px.on_handshake(99, &hs_pex(1, Some(1)), t0);
        assert!(px.on_message(99, &PexMessage::default(), t0).is_empty());
    }

    #[test]
    fn receiving_filters_and_rate_limits() {
        let t0 = Instant::now();
        let mut px = PeerExchange::new(false);
        let own = SocketAddr::from(([203, 0, 113, 5], 6881));
        px.add_own_addr(own);
        px.add_own_addr(SocketAddr::from(([0, 0, 0, 0], 51413)));
        px.on_connect(1, addr(1), true, t0);
        px.on_connect(2, addr(2), true, t0);
        let p = |a: SocketAddr, flags| PexPeer { addr: a, flags };
        let msg = PexMessage {
            added: vec![
                p(addr(100), pex_flags::SEED),
                p(own, 0),                                          // ours
                p(SocketAddr::from(([127, 0, 0, 1], 51413)), 0),    // ours (loopback)
                p(SocketAddr::from(([127, 0, 0, 1], 6000)), 0),     // loopback, remote sender
                p(addr(2), 0),                                      // connected
                p(addr(1), 0),                                      // the sender itself
                p(SocketAddr::from(([10, 0, 0, 9], 0)), 0),         // port 0
                p(SocketAddr::from(([0, 0, 0, 0], 80)), 0),         // unspecified
                p(SocketAddr::from(([224, 0, 0, 1], 80)), 0),       // multicast
                p(SocketAddr::from(([255, 255, 255, 255], 80)), 0), // broadcast
                p(addr(100), 0),                                    // duplicate
                p("[2001:db8::7]:6881".parse().unwrap(), pex_flags::UTP),
            ],
            dropped: vec![addr(2)],
            n_ignored: 0,
        };
        let got = px.on_message(1, &msg, t0);
        assert_eq!(
            got,
            vec![
                Candidate {
                    addr: addr(100),
                    flags: pex_flags::SEED,
                    source: SOURCE
                },
                Candidate {
                    addr: "[2001:db8::7]:6881".parse().unwrap(),
                    flags: pex_flags::UTP,
                    source: "pex"
                },
            ]
        );
        // Too soon: ignored whole.
        let again = PexMessage {
            added: vec![p(addr(200), 0)],
            ..PexMessage::default()
        };
        assert!(px
            .on_message(1, &again, t0 + MIN_RECV_INTERVAL - Duration::from_millis(1))
            .is_empty());
        // Peer 2 has its own budget; peer 1 again after the interval.
        assert_eq!(px.on_message(2, &again, t0).len(), 1);
        assert_eq!(px.on_message(1, &again, t0 + MIN_RECV_INTERVAL).len(), 1);
        // Loopback senders may name loopback peers (tests, local swarms).
        px.on_connect(3, SocketAddr::from(([127, 0, 0, 2], 7000)), true, t0);
        let local = PexMessage {
            added: vec![p(SocketAddr::from(([127, 0, 0, 3], 7000)), 0)],
            ..PexMessage::default()
        };
        assert_eq!(px.on_message(3, &local, t0).len(), 1);
    }

    #[test]
    fn a_flood_of_thousands_yields_at_most_50() {
        let t0 = Instant::now();
        let mut px = PeerExchange::new(false);
        px.on_connect(1, addr(1), true, t0);
        // 5000 peers on the wire; the parser keeps 200, we take 50.
        let mut compact = Vec::new();
        for i in 0..5000u32 {
            compact.extend_from_slice(&(0x0b00_0000 | i).to_be_bytes());
            compact.extend_from_slice(&6881u16.to_be_bytes());
        }
        let mut payload = format!("d5:added{}:", compact.len()).into_bytes();
        payload.extend_from_slice(&compact);
        payload.push(b'e');
        let msg = PexMessage::parse(&payload).unwrap();
        assert_eq!(msg.added.len(), MAX_PEX_ADDED);
        let got = px.on_message(1, &msg, t0);
        assert_eq!(got.len(), MAX_NEW);
        // Repeated floods within the interval give nothing.
        for k in 1..100u64 {
            let now = t0 + Duration::from_millis(k * 100);
            assert!(px.on_message(1, &msg, now).is_empty());
        }
    }

    #[test]
    fn tracking_is_bounded() {
        let t0 = Instant::now();
        let mut px = PeerExchange::new(false);
        for i in 0..(MAX_TRACKED as u64 + 100) {
            px.on_connect(i, addr(i as u32 + 1), true, t0);
        }
        assert_eq!(px.connected.len(), MAX_TRACKED);
        for i in 0..MAX_OWN as u32 + 5 {
            px.add_own_addr(addr(50_000 + i));
        }
        assert_eq!(px.own.len(), MAX_OWN);
        // Unconnectable listen addresses are not tracked.
        let mut px = PeerExchange::new(false);
        px.on_connect(1, SocketAddr::from(([0, 0, 0, 0], 1)), true, t0);
        px.on_connect(2, SocketAddr::from(([10, 0, 0, 1], 0)), false, t0);
        px.on_handshake(2, &hs_pex(1, Some(0)), t0);
        assert!(px.connected.is_empty());
    }

    #[test]
    fn clock_going_backwards_is_harmless() {
        let t0 = Instant::now() + Duration::from_secs(1000);
        let mut px = PeerExchange::new(false);
        px.on_connect(1, addr(1), true, t0);
        px.on_connect(2, addr(2), true, t0);
        px.on_handshake(1, &hs_pex(1, None), t0);
        px.tick(t0);
        assert_eq!(px.drain().count(), 1);
        px.on_connect(3, addr(3), true, t0);
        let earlier = t0 - Duration::from_secs(500);
        px.tick(earlier);
        assert_eq!(px.drain().count(), 0);
        let msg = PexMessage::default();
        assert!(px.on_message(1, &msg, t0).is_empty());
        assert!(px.on_message(1, &msg, earlier).is_empty());
    }

    /// Random connects, disconnects, handshakes and ticks: the sent lists
    /// always respect the caps, and a peer's view converges to the truth.
    #[test]
    fn random_churn_converges() {
        let mut seed: u64 = 0x1234_5678_9abc_def1;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let t0 = Instant::now();
        let mut px = PeerExchange::new(false);
        px.on_connect(0, addr(1_000_000), true, t0);
        px.on_handshake(0, &hs_pex(1, None), t0);
        // What peer 0 believes is connected.
        let mut view: HashSet<SocketAddr> = HashSet::new();
        let mut now = t0;
        for _ in 0..20_000 {
            let peer = 1 + next() % 150;
            match next() % 4 {
                0 => px.on_connect(peer, addr((next() % 200) as u32 + 1), next() % 2 == 0, now),
                1 => px.on_disconnect(peer),
                2 => px.on_handshake(peer, &hs_pex(2, Some(6000 + (next() % 3) as u16)), now),
                _ => {
                    now += Duration::from_secs(next() % 40);
                    px.tick(now);
                    for s in px.drain() {
                        let msg = PexMessage::parse(&s.payload).unwrap();
                        assert!(msg.added.len() <= MAX_ADDED && msg.dropped.len() <= MAX_DROPPED);
                        if s.peer == 0 {
                            for a in &msg.added {
                                assert!(view.insert(a.addr), "told twice");
                            }
                            for a in &msg.dropped {
                                assert!(view.remove(a), "dropped unknown");
                            }
                        }
                    }
                }
            }
        }
        // Let it settle: a few intervals without churn.
        for _ in 0..10 {
            now += PEX_INTERVAL;
            px.tick(now);
            for s in px.drain() {
                let msg = PexMessage::parse(&s.payload).unwrap();
                if s.peer == 0 {
                    for a in &msg.added {
                        view.insert(a.addr);
                    }
                    for a in &msg.dropped {
                        view.remove(a);
                    }
                }
            }
        }
        let truth: HashSet<SocketAddr> = px
            .connected
            .keys()
            .copied()
            .filter(|&a| a != addr(1_000_000))
            .collect();
        assert_eq!(view, truth);
    }
}
