//! Peer exchange (BEP 11) on the net thread: each torrent's
//! [`PeerExchange`](crate::swarm::pex::PeerExchange) (sans I/O, in `swarm`)
//! hears of connections, extended handshakes and disconnections from here;
//! its messages go out on the once-a-second tick; the addresses peers send
//! go into the torrent's known-peer list with source `pex`, then get dialled.
//! Private torrents have PEX disabled (BEP 27), so all of this does nothing
//! for them, and their extended handshake does not offer ut_pex.

use super::*;
use crate::swarm::pex::{PexSend, MAX_NEW, SOURCE};
use crate::wire::extension::{ExtendedHandshake, PexMessage};

impl Engine {
    /// A connection of torrent `tid` finished its handshake.
    pub(super) fn pex_connected(
        &mut self,
        tid: u32,
        key: PeerKey,
        addr: SocketAddr,
        outgoing: bool,
        now: Instant,
    ) {
        if let Some(t) = self.torrents.get_mut(&tid) {
            t.pex.on_connect(key, addr, outgoing, now);
        }
    }

    /// The peer's extended handshake: its ut_pex id, its listen port, and
    /// what it says our address is (never advertised back to anyone).
    pub(super) fn pex_handshake(
        &mut self,
        tid: u32,
        key: PeerKey,
        hs: &ExtendedHandshake,
        now: Instant,
    ) {
        let port = self.listen_addr.port();
        if let Some(t) = self.torrents.get_mut(&tid) {
            if let Some(ip) = hs.yourip {
                t.pex.add_own_addr(SocketAddr::new(ip, port));
            }
            t.pex.on_handshake(key, hs, now);
        }
    }

    /// A ut_pex message: new addresses (capped, paced) join the known peers.
    pub(super) fn on_pex_message(&mut self, key: PeerKey, tid: u32, payload: &[u8], now: Instant) {
        let msg = match PexMessage::parse(payload) {
            Ok(msg) => msg,
            Err(e) => {
                if let Some(c) = self.conns.get_mut(key) {
                    let why = format!("bad ut_pex message: {e}");
                    self.violations.push((c.addr.ip(), why.clone()));
                    c.close(why);
                }
                return;
            }
        };
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        let candidates = t.pex.on_message(key, &msg, now);
        if candidates.is_empty() {
            return;
        }
        let from = self.conns.get(key).map(|c| c.addr);
        if msg.added.len() > MAX_NEW {
            log::info!(
                "{}: PEX from {}: {} addresses offered, taking at most {MAX_NEW}",
                t.meta.name,
                from.map(|a| a.to_string()).unwrap_or_default(),
                msg.added.len()
            );
        } else {
            log::debug!(
                "{}: PEX from {}: {} new addresses",
                t.meta.name,
                from.map(|a| a.to_string()).unwrap_or_default(),
                candidates.len()
            );
        }
        let listen = self.listen_addr;
        if let Some(t) = self.torrents.get_mut(&tid) {
            for c in candidates.iter().filter(|c| c.addr != listen) {
                t.known.add_exchanged(c.addr, SOURCE, now);
            }
        }
        self.connect_peers(tid, now);
    }

    /// Seed flags, then the PEX messages that are due.
    pub(super) fn tick_pex(&mut self, now: Instant) {
        for c in self.conns.values() {
            if c.state != ConnState::Active {
                continue;
            }
            let Some(t) = c.torrent.and_then(|tid| self.torrents.get_mut(&tid)) else {
                continue;
            };
            if !t.pex.is_enabled() {
                continue;
            }
            let seed = t.swarm.as_ref().is_some_and(|s| s.peer_is_seed(c.key));
            t.pex.set_seed(c.key, seed);
        }
        let mut out: Vec<PexSend> = Vec::new();
        for t in self.torrents.values_mut() {
            t.pex.tick(now);
            out.extend(t.pex.drain());
        }
        for send in out {
            if let Some(c) = self.conns.get_mut(send.peer) {
                if c.closing.is_none() {
                    c.queue(&Message::Extended {
                        id: send.ext_id,
                        payload: &send.payload,
                    });
                }
            }
        }
    }
}
