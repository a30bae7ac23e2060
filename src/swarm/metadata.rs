//! Fetching a torrent's info dictionary from peers (BEP 9), and serving
//! ours, sans I/O.
//!
//! [`MetadataFetch`] assembles the info dictionary of a magnet link. The net
//! thread tells it each peer's extended handshake ([`MetadataFetch::on_handshake`]),
//! the ut_metadata messages the peer sends ([`MetadataFetch::on_message`]),
//! disconnections and clock ticks; it answers with [`FetchOut`] actions
//! ([`MetadataFetch::drain`]): requests to send, peers to drop (with a reason
//! for the log), and once, `Done(info_bytes)`, already checked against the
//! info-hash. The caller then builds the torrent with
//! `Torrent::from_info_bytes` (a dictionary with the right hash that is not a
//! valid torrent is the torrent's fault, not a peer's).
//!
//! How it works:
//!
//! - **Size.** Each peer's `metadata_size` is a vote. Sizes of 0 or over
//!   [`MAX_METADATA_SIZE`] are refused (the peer is dropped with the reason).
//!   The fetch assembles the size most usable peers report (ties: the one
//!   reported first) and asks only the peers that report it. When another
//!   size gains strictly more votes, the fetch restarts cleanly with it
//!   (pieces discarded, requests forgotten, late answers ignored).
//! - **Requests.** The size is cut into [`METADATA_PIECE_LEN`] pieces; each
//!   free piece is requested from one peer, spread round-robin (every
//!   usable peer gets one request before any gets a second), at most
//!   [`MAX_REQUESTS_PER_PEER`] per peer and [`MAX_REQUESTS`] in all.
//! - **Failures.** A reject frees the piece and rests the peer for
//!   [`REJECT_BACKOFF`], doubling with each consecutive failure up to
//!   [`MAX_BACKOFF`]; a request unanswered after [`REQUEST_TIMEOUT`] frees the
//!   piece and rests the peer for [`TIMEOUT_BACKOFF`] (an answer after that is
//!   ignored). A data message whose `total_size` differs from the peer's own
//!   `metadata_size`, or whose length is wrong for the piece, drops the
//!   peer. Data nobody asked this peer for is ignored.
//! - **Check.** When every piece is in, the SHA-1 of the whole must be the
//!   info-hash. If not, everything is discarded, every peer that contributed
//!   a piece is dropped (we cannot tell which piece was bad, BEP 9 has no
//!   per-piece hashes) and the fetch starts again with the peers left. This
//!   also unseats a wrong size that every contributor agreed on. After such
//!   a mixed failure the fetch goes *solo*: every piece of an attempt comes
//!   from one peer (the earliest usable one; when it leaves or rests, its
//!   pieces are discarded and the next one starts over), so the next
//!   failure names its sender alone, as [`FetchOut::Blame`]. Without this a
//!   liar and an honest seeder that reconnect would mix their pieces, and be
//!   dropped together, forever.
//!
//! [`MetadataServer`] answers other peers' requests for our info dictionary,
//! at most [`SERVE_PER_SECOND`] per peer and second; beyond that, and for
//! pieces out of range, it answers with a reject.
//!
//! # Limits and memory
//!
//! At most [`MAX_METADATA_SIZE`] (30 MiB, libtorrent's limit) is buffered,
//! allocated when the first piece arrives; per-peer state is a few words
//! plus at most [`MAX_REQUESTS_PER_PEER`] requests, and is dropped with the
//! peer.
//!
//! # No-panic contract
//!
//! No input (handshake fields, piece numbers, sizes, data lengths, the order
//! of events, `now` going backwards) makes these types panic: every index is
//! checked, every size is bounded before anything is allocated, and all
//! arithmetic saturates or is checked. No I/O, no clock: time is `now`.

use super::torrent::PeerKey;
use crate::hash;
use crate::metainfo::InfoHash;
use crate::wire::extension::{ExtendedHandshake, MetadataMsg, METADATA_PIECE_LEN, UT_METADATA};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Largest info dictionary we fetch (libtorrent's `max_metadata_size`).
pub const MAX_METADATA_SIZE: u64 = 30 * 1024 * 1024;
/// Requests in flight to one peer.
pub const MAX_REQUESTS_PER_PEER: usize = 2;
/// Requests in flight for one torrent.
pub const MAX_REQUESTS: usize = 64;
/// A request unanswered for this long is given to another peer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Rest after a reject (doubled for each consecutive reject or timeout).
pub const REJECT_BACKOFF: Duration = Duration::from_secs(2);
/// Rest after a request timed out.
pub const TIMEOUT_BACKOFF: Duration = Duration::from_secs(30);
/// Longest rest.
pub const MAX_BACKOFF: Duration = Duration::from_secs(120);
/// Requests we answer per peer and second (the rest are rejected).
pub const SERVE_PER_SECOND: u32 = 4;
/// Peers the server remembers before it forgets idle ones.
pub const MAX_SERVER_PEERS: usize = 1024;

/// An action for the net thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchOut {
    /// Send `Message::Extended { id: ext_id, payload }` to `peer` (a
    /// ut_metadata request; `ext_id` is the id from the peer's handshake).
    Send {
        peer: PeerKey,
        ext_id: u8,
        payload: Vec<u8>,
    },
    /// Close the connection to `peer`; `reason` is for the log. The fetch
    /// has already forgotten the peer.
    Drop { peer: PeerKey, reason: String },
    /// Like `Drop`, but the peer alone sent a whole dictionary that does not
    /// match the info-hash: it lied, so do not dial its address again.
    Blame { peer: PeerKey, reason: String },
    /// The info dictionary, whose SHA-1 is the info-hash. The last action.
    Done(Vec<u8>),
}

/// Progress, for status displays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FetchStatus {
    /// Size being assembled, once a usable peer reported one.
    pub size: Option<u64>,
    pub pieces_have: usize,
    pub pieces_total: usize,
    /// Peers that offer ut_metadata with the size being assembled.
    pub peers: usize,
    pub requests: usize,
    /// Times the assembled dictionary did not match the info-hash.
    pub hash_failures: u32,
    pub done: bool,
}

/// Assembles one torrent's info dictionary from peers. See the module docs.
pub struct MetadataFetch {
    info_hash: InfoHash,
    peers: HashMap<PeerKey, FetchPeer>,
    /// Join order of the next new peer (ties and round-robin order).
    next_order: u64,
    /// The size being assembled.
    size: Option<u32>,
    pieces: Vec<Piece>,
    /// The dictionary, `size` bytes once the first piece arrived.
    buf: Vec<u8>,
    n_have: usize,
    n_requests: usize,
    n_hash_failures: u32,
    /// After a failure with several contributors: one peer per attempt.
    solo: bool,
    done: bool,
    out: Vec<FetchOut>,
}

struct FetchPeer {
    /// The id to send ut_metadata messages with; `None` = not offered.
    ext_id: Option<u8>,
    /// The size it reported (already within limits).
    size: Option<u32>,
    order: u64,
    /// Requests in flight: (piece, deadline).
    requests: Vec<(u32, Instant)>,
    rest_until: Option<Instant>,
    /// Consecutive rejects and timeouts.
    strikes: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PieceState {
    Free,
    Requested,
    Have,
}

#[derive(Clone, Copy)]
struct Piece {
    state: PieceState,
    /// Who sent it (set with `Have`).
    from: Option<PeerKey>,
}

const FREE: Piece = Piece {
    state: PieceState::Free,
    from: None,
};

impl MetadataFetch {
    pub fn new(info_hash: InfoHash) -> MetadataFetch {
        MetadataFetch {
            info_hash,
            peers: HashMap::new(),
            next_order: 0,
            size: None,
            pieces: Vec::new(),
            buf: Vec::new(),
            n_have: 0,
            n_requests: 0,
            n_hash_failures: 0,
            solo: false,
            done: false,
            out: Vec::new(),
        }
    }

    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// The actions produced so far.
    pub fn drain(&mut self) -> std::vec::Drain<'_, FetchOut> {
        self.out.drain(..)
    }

    /// True once `Done` was produced; every input is ignored after that.
    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn status(&self) -> FetchStatus {
        FetchStatus {
            size: self.size.map(u64::from),
            pieces_have: self.n_have,
            pieces_total: self.pieces.len(),
            peers: self.peers.values().filter(|p| self.usable(p)).count(),
            requests: self.n_requests,
            hash_failures: self.n_hash_failures,
            done: self.done,
        }
    }

    /// A peer's extended handshake (the first or a later one). Learns its
    /// ut_metadata id and `metadata_size`; refuses (drops) a peer whose size
    /// is 0 or over [`MAX_METADATA_SIZE`]. Fields the handshake does not
    /// mention keep their earlier values (BEP 10); ut_metadata id 0 means the
    /// peer stopped offering it.
    pub fn on_handshake(&mut self, peer: PeerKey, hs: &ExtendedHandshake, now: Instant) {
        if self.done {
            return;
        }
        let order = self.next_order;
        let p = self.peers.entry(peer).or_insert_with(|| FetchPeer {
            ext_id: None,
            size: None,
            order,
            requests: Vec::new(),
            rest_until: None,
            strikes: 0,
        });
        if p.order == order {
            self.next_order += 1;
        }
        let mut release = false;
        if let Some(id) = hs.extension(UT_METADATA) {
            p.ext_id = (id != 0).then_some(id);
            release |= p.ext_id.is_none();
        }
        let mut refuse = None;
        match hs.metadata_size {
            None => {}
            Some(0) => refuse = Some("reports metadata_size 0".to_string()),
            Some(size) if size > MAX_METADATA_SIZE => {
                refuse = Some(format!(
                    "reports metadata_size {size} bytes, over the {} MiB limit",
                    MAX_METADATA_SIZE >> 20
                ));
            }
            Some(size) => {
                // Within the limit, so it fits in u32.
                let size = u32::try_from(size).ok();
                release |= p.size != size;
                p.size = size;
            }
        }
        if let Some(reason) = refuse {
            self.drop_peer(peer, reason);
        } else if release {
            self.release(peer);
        }
        self.assign(now);
    }

    /// The peer is gone (disconnected or dropped): its requests go to others.
    pub fn remove_peer(&mut self, peer: PeerKey, now: Instant) {
        if self.done || !self.peers.contains_key(&peer) {
            return;
        }
        self.release(peer);
        self.peers.remove(&peer);
        self.assign(now);
    }

    /// A ut_metadata message from `peer` (requests are for [`MetadataServer`]
    /// and ignored here).
    pub fn on_message(&mut self, peer: PeerKey, msg: &MetadataMsg<'_>, now: Instant) {
        if self.done {
            return;
        }
        match *msg {
            MetadataMsg::Request { .. } => return,
            MetadataMsg::Data {
                piece,
                total_size,
                data,
            } => self.on_data(peer, piece, total_size, data),
            MetadataMsg::Reject { piece } => self.on_reject(peer, piece, now),
        }
        self.assign(now);
    }

    /// Expires requests whose time is up and sends new ones. Call at
    /// [`next_deadline`](Self::next_deadline) (calling more often is fine).
    pub fn tick(&mut self, now: Instant) {
        if self.done {
            return;
        }
        for p in self.peers.values_mut() {
            let n_before = p.requests.len();
            let pieces = &mut self.pieces;
            p.requests.retain(|&(piece, deadline)| {
                if deadline > now {
                    return true;
                }
                if let Some(slot) = pieces.get_mut(piece as usize) {
                    *slot = FREE;
                }
                false
            });
            let n_expired = n_before - p.requests.len();
            if n_expired > 0 {
                self.n_requests = self.n_requests.saturating_sub(n_expired);
                p.strikes = p.strikes.saturating_add(1);
                p.rest_until = Some(now + TIMEOUT_BACKOFF);
            }
        }
        self.assign(now);
    }

    /// When [`tick`](Self::tick) has something to do: the earliest request
    /// deadline, or the end of a peer's rest while pieces wait.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.done || self.size.is_none() {
            return None;
        }
        let waiting = self.n_have + self.n_requests < self.pieces.len();
        self.peers
            .values()
            .flat_map(|p| {
                let rest = p.rest_until.filter(|_| waiting && self.usable(p));
                p.requests.iter().map(|&(_, d)| d).chain(rest)
            })
            .min()
    }

    fn usable(&self, p: &FetchPeer) -> bool {
        p.ext_id.is_some() && p.size.is_some() && p.size == self.size
    }

    fn piece_len(&self, piece: u32) -> usize {
        let size = self.size.unwrap_or(0) as usize;
        let start = (piece as usize).saturating_mul(METADATA_PIECE_LEN);
        size.saturating_sub(start).min(METADATA_PIECE_LEN)
    }

    fn on_data(&mut self, peer: PeerKey, piece: u32, total_size: u64, data: &[u8]) {
        let Some(size) = self.size else { return };
        let expected = self.piece_len(piece);
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        // Only answers to requests in flight to this peer count; those were
        // made at the current size, to a peer that reported it.
        let Some(pos) = p.requests.iter().position(|&(i, _)| i == piece) else {
            return;
        };
        if total_size != u64::from(size) {
            return self.drop_peer(
                peer,
                format!("sent metadata total_size {total_size} after reporting {size}"),
            );
        }
        if data.len() != expected {
            return self.drop_peer(
                peer,
                format!(
                    "sent {} bytes for metadata piece {piece}, expected {expected}",
                    data.len()
                ),
            );
        }
        p.requests.swap_remove(pos);
        p.strikes = 0;
        self.n_requests = self.n_requests.saturating_sub(1);
        if self.buf.is_empty() {
            // Bounded by MAX_METADATA_SIZE (checked in on_handshake).
            self.buf = vec![0; size as usize];
        }
        let start = (piece as usize).saturating_mul(METADATA_PIECE_LEN);
        let Some(slot) = self.pieces.get_mut(piece as usize) else {
            return;
        };
        let Some(dst) = self.buf.get_mut(start..start.saturating_add(expected)) else {
            *slot = FREE;
            return;
        };
        dst.copy_from_slice(data);
        *slot = Piece {
            state: PieceState::Have,
            from: Some(peer),
        };
        self.n_have += 1;
        if self.n_have == self.pieces.len() {
            self.check();
        }
    }

    fn on_reject(&mut self, peer: PeerKey, piece: u32, now: Instant) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(pos) = p.requests.iter().position(|&(i, _)| i == piece) else {
            return;
        };
        p.requests.swap_remove(pos);
        p.strikes = p.strikes.saturating_add(1);
        let rest = REJECT_BACKOFF
            .saturating_mul(1 << p.strikes.saturating_sub(1).min(16))
            .min(MAX_BACKOFF);
        p.rest_until = Some(now + rest);
        self.n_requests = self.n_requests.saturating_sub(1);
        if let Some(slot) = self.pieces.get_mut(piece as usize) {
            *slot = FREE;
        }
    }

    /// All pieces are in: compare with the info-hash.
    fn check(&mut self) {
        if hash::sha1(&self.buf) == self.info_hash.0 {
            self.done = true;
            self.out.push(FetchOut::Done(std::mem::take(&mut self.buf)));
            self.peers.clear();
            self.pieces = Vec::new();
            self.n_requests = 0;
            return;
        }
        self.n_hash_failures = self.n_hash_failures.saturating_add(1);
        let mut contributors: Vec<PeerKey> = self.pieces.iter().filter_map(|p| p.from).collect();
        crate::sort::sort_by(&mut contributors, Ord::cmp);
        contributors.dedup();
        // Start over: forget the size, so the vote of the peers left
        // decides (in `assign`, which follows).
        self.restart(None);
        if let [liar] = contributors[..] {
            self.release(liar);
            self.peers.remove(&liar);
            self.out.push(FetchOut::Blame {
                peer: liar,
                reason: "sent metadata that does not match the info-hash".to_string(),
            });
            return;
        }
        self.solo = true;
        let reason = format!(
            "one of {} peers whose metadata pieces together do not match the info-hash",
            contributors.len()
        );
        for peer in contributors {
            self.drop_peer(peer, reason.clone());
        }
    }

    /// Picks the size with the most votes among usable peers; restarts when
    /// it beats the current one.
    fn choose_size(&mut self) {
        // (size, votes, earliest order)
        let mut votes: Vec<(u32, usize, u64)> = Vec::new();
        for p in self.peers.values() {
            let (Some(_), Some(size)) = (p.ext_id, p.size) else {
                continue;
            };
            match votes.iter_mut().find(|v| v.0 == size) {
                Some(v) => {
                    v.1 += 1;
                    v.2 = v.2.min(p.order);
                }
                None => votes.push((size, 1, p.order)),
            }
        }
        let Some(&(best, best_votes, _)) = votes
            .iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)))
        else {
            return;
        };
        let current_votes = votes
            .iter()
            .find(|v| Some(v.0) == self.size)
            .map_or(0, |v| v.1);
        if self.size.is_none() || best_votes > current_votes {
            self.restart(Some(best));
        }
    }

    /// Forgets all pieces and requests; assembles `size` next.
    fn restart(&mut self, size: Option<u32>) {
        self.size = size;
        let n_pieces = size.map_or(0, |s| (s as usize).div_ceil(METADATA_PIECE_LEN));
        self.pieces = vec![FREE; n_pieces];
        self.buf = Vec::new();
        self.n_have = 0;
        self.n_requests = 0;
        for p in self.peers.values_mut() {
            p.requests.clear();
        }
    }

    /// Frees the pieces requested from `peer`.
    fn release(&mut self, peer: PeerKey) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        for (piece, _) in p.requests.drain(..) {
            if let Some(slot) = self.pieces.get_mut(piece as usize) {
                *slot = FREE;
            }
            self.n_requests = self.n_requests.saturating_sub(1);
        }
    }

    fn drop_peer(&mut self, peer: PeerKey, reason: String) {
        self.release(peer);
        self.peers.remove(&peer);
        self.out.push(FetchOut::Drop { peer, reason });
    }

    /// Settles the size (the set of peers changes with every event), then
    /// sends requests for free pieces, round-robin over usable peers.
    fn assign(&mut self, now: Instant) {
        if self.done {
            return;
        }
        self.choose_size();
        if self.n_have + self.n_requests >= self.pieces.len() {
            return;
        }
        let mut ready: Vec<(u64, PeerKey)> = Vec::new();
        for (&key, p) in self.peers.iter_mut() {
            if p.rest_until.is_some_and(|t| t <= now) {
                p.rest_until = None;
            }
            let usable = p.ext_id.is_some() && p.size.is_some() && p.size == self.size;
            if usable && p.rest_until.is_none() && p.requests.len() < MAX_REQUESTS_PER_PEER {
                ready.push((p.order, key));
            }
        }
        crate::sort::sort_by(&mut ready, Ord::cmp);
        if self.solo {
            // The peer that already holds this attempt's requests or pieces,
            // else the earliest ready one (and the pieces of a peer that
            // left or rests are discarded: nothing mixes).
            let owner = self.pieces.iter().find_map(|p| p.from).or_else(|| {
                self.peers
                    .iter()
                    .find(|(_, p)| !p.requests.is_empty())
                    .map(|(&k, _)| k)
            });
            match owner {
                Some(owner) if ready.iter().any(|&(_, k)| k == owner) => {
                    ready.retain(|&(_, k)| k == owner)
                }
                Some(owner) if self.peers.get(&owner).is_some_and(|p| self.usable(p)) => {
                    // Busy or resting: wait for it, unless it rests while
                    // another peer is ready.
                    let resting = self
                        .peers
                        .get(&owner)
                        .is_some_and(|p| p.rest_until.is_some());
                    if !resting || ready.is_empty() {
                        return;
                    }
                    self.restart(self.size);
                    ready.truncate(1);
                }
                Some(_) => {
                    // The owner left: start over with the next peer.
                    self.restart(self.size);
                    ready.truncate(1);
                }
                None => ready.truncate(1),
            }
        }
        let mut cursor = 0;
        for round in 0..MAX_REQUESTS_PER_PEER {
            for &(_, key) in &ready {
                if self.n_requests >= MAX_REQUESTS {
                    return;
                }
                let Some(p) = self.peers.get_mut(&key) else {
                    continue;
                };
                let Some(ext_id) = p.ext_id else { continue };
                if p.requests.len() > round || p.requests.len() >= MAX_REQUESTS_PER_PEER {
                    continue;
                }
                while self
                    .pieces
                    .get(cursor)
                    .is_some_and(|s| s.state != PieceState::Free)
                {
                    cursor += 1;
                }
                let Some(slot) = self.pieces.get_mut(cursor) else {
                    return;
                };
                slot.state = PieceState::Requested;
                let piece = cursor as u32;
                p.requests.push((piece, now + REQUEST_TIMEOUT));
                self.n_requests += 1;
                self.out.push(FetchOut::Send {
                    peer: key,
                    ext_id,
                    payload: MetadataMsg::Request { piece }.to_bytes(),
                });
            }
        }
    }
}

/// Answers ut_metadata requests for our info dictionary, with a per-peer
/// rate cap. See the module docs.
#[derive(Default)]
pub struct MetadataServer {
    /// Per peer: start of the current one-second window, requests in it.
    peers: HashMap<PeerKey, (Instant, u32)>,
}

impl MetadataServer {
    pub fn new() -> MetadataServer {
        MetadataServer::default()
    }

    /// The answer to `peer`'s request for `piece` of `info` (our info
    /// dictionary as received or built): the data message, or a reject when
    /// the piece is out of range or the peer asked more than
    /// [`SERVE_PER_SECOND`] times in the last second. Send it with
    /// `msg.to_bytes()` under the peer's ut_metadata id. (While we have no
    /// info dictionary ourselves, answer `MetadataMsg::Reject { piece }`.)
    pub fn serve<'i>(
        &mut self,
        peer: PeerKey,
        info: &'i [u8],
        piece: u32,
        now: Instant,
    ) -> MetadataMsg<'i> {
        if self.peers.len() >= MAX_SERVER_PEERS && !self.peers.contains_key(&peer) {
            self.peers
                .retain(|_, (start, _)| now.saturating_duration_since(*start) < SECOND);
        }
        let (start, n) = self.peers.entry(peer).or_insert((now, 0));
        if now.saturating_duration_since(*start) >= SECOND {
            *start = now;
            *n = 0;
        }
        *n = n.saturating_add(1);
        if *n > SERVE_PER_SECOND {
            return MetadataMsg::Reject { piece };
        }
        let begin = (piece as usize).saturating_mul(METADATA_PIECE_LEN);
        let end = begin.saturating_add(METADATA_PIECE_LEN).min(info.len());
        match info.get(begin..end) {
            Some(data) if !data.is_empty() => MetadataMsg::Data {
                piece,
                total_size: info.len() as u64,
                data,
            },
            _ => MetadataMsg::Reject { piece },
        }
    }

    /// Forgets a disconnected peer.
    pub fn remove_peer(&mut self, peer: PeerKey) {
        self.peers.remove(&peer);
    }
}

const SECOND: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::{build_info, InfoFile, Torrent};
    use crate::wire::extension::UT_METADATA_ID;

    /// A real info dictionary of about 40 KB (3 metadata pieces).
    fn real_info() -> Vec<u8> {
        let digests: Vec<[u8; 20]> = (0..2000u32).map(|i| hash::sha1(&i.to_be_bytes())).collect();
        let files = [InfoFile {
            path: vec![],
            length: 2000 * 32 * 1024,
        }];
        build_info("file.bin", &files, true, 32 * 1024, &digests, false).to_bytes()
    }

    fn info_of_len(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    fn hs(ut_metadata: Option<u8>, size: Option<u64>) -> ExtendedHandshake {
        let mut hs = ExtendedHandshake::default();
        if let Some(id) = ut_metadata {
            hs.m.push((UT_METADATA.to_vec(), id));
        }
        hs.metadata_size = size;
        hs
    }

    /// Requests sent, as (peer, ext_id, piece), parsed back from the payloads.
    fn requests(outs: &[FetchOut]) -> Vec<(PeerKey, u8, u32)> {
        outs.iter()
            .filter_map(|o| match o {
                FetchOut::Send {
                    peer,
                    ext_id,
                    payload,
                } => match MetadataMsg::parse(payload) {
                    Ok(MetadataMsg::Request { piece }) => Some((*peer, *ext_id, piece)),
                    other => panic!("not a request: {other:?}"),
                },
                _ => None,
            })
            .collect()
    }

    fn drops(outs: &[FetchOut]) -> Vec<(PeerKey, String)> {
        outs.iter()
            .filter_map(|o| match o {
                FetchOut::Drop { peer, reason } => Some((*peer, reason.clone())),
                FetchOut::Blame { peer, reason } => Some((*peer, format!("blamed: {reason}"))),
                _ => None,
            })
            .collect()
    }

    fn done(outs: &[FetchOut]) -> Option<Vec<u8>> {
        outs.iter().find_map(|o| match o {
            FetchOut::Done(b) => Some(b.clone()),
            _ => None,
        })
    }

    fn data<'a>(info: &'a [u8], piece: u32) -> MetadataMsg<'a> {
        let begin = piece as usize * METADATA_PIECE_LEN;
        let end = (begin + METADATA_PIECE_LEN).min(info.len());
        MetadataMsg::Data {
            piece,
            total_size: info.len() as u64,
            data: &info[begin..end],
        }
    }

    /// Answers every request in `outs` from the matching peer's copy.
    fn answer_all(
        f: &mut MetadataFetch,
        outs: &[FetchOut],
        copy_of: &dyn Fn(PeerKey) -> Vec<u8>,
        now: Instant,
    ) -> Vec<FetchOut> {
        let mut res = Vec::new();
        for (peer, _, piece) in requests(outs) {
            let info = copy_of(peer);
            f.on_message(peer, &data(&info, piece), now);
            res.extend(f.drain());
        }
        res
    }

    #[test]
    fn fetches_a_real_info_dictionary_from_two_peers() {
        let info = real_info();
        assert!(info.len() > 2 * METADATA_PIECE_LEN && info.len() < 3 * METADATA_PIECE_LEN);
        let hash = InfoHash(hash::sha1(&info));
        let t0 = Instant::now();
        let mut f = MetadataFetch::new(hash);
        f.on_handshake(1, &hs(Some(3), Some(info.len() as u64)), t0);
        // One peer: two requests (its per-peer limit).
        let outs: Vec<_> = f.drain().collect();
        assert_eq!(requests(&outs), vec![(1, 3, 0), (1, 3, 1)]);
        f.on_handshake(2, &hs(Some(9), Some(info.len() as u64)), t0);
        let outs: Vec<_> = f.drain().collect();
        assert_eq!(requests(&outs), vec![(2, 9, 2)]);
        let st = f.status();
        assert_eq!(
            (st.size, st.pieces_total, st.peers, st.requests),
            (Some(info.len() as u64), 3, 2, 3)
        );
        // Answers arrive out of order.
        for (peer, piece) in [(2, 2), (1, 1), (1, 0)] {
            assert!(!f.is_done());
            f.on_message(peer, &data(&info, piece), t0);
        }
        let outs: Vec<_> = f.drain().collect();
        assert_eq!(done(&outs).as_deref(), Some(&info[..]));
        assert!(f.is_done() && f.status().done);
        let t = Torrent::from_info_bytes(&info).unwrap();
        assert_eq!(t.info_hash, hash);
        // Everything after is ignored.
        f.on_handshake(3, &hs(Some(1), Some(10)), t0);
        f.on_message(1, &data(&info, 0), t0);
        f.tick(t0 + Duration::from_secs(999));
        assert_eq!(f.drain().count(), 0);
        assert_eq!(f.next_deadline(), None);
    }

    #[test]
    fn refuses_zero_and_huge_sizes() {
        let t0 = Instant::now();
        let mut f = MetadataFetch::new(InfoHash([0; 20]));
        f.on_handshake(1, &hs(Some(1), Some(1 << 30)), t0);
        f.on_handshake(2, &hs(Some(1), Some(0)), t0);
        f.on_handshake(3, &hs(Some(1), Some(MAX_METADATA_SIZE + 1)), t0);
        let outs: Vec<_> = f.drain().collect();
        assert_eq!(
            drops(&outs),
            vec![
                (
                    1,
                    "reports metadata_size 1073741824 bytes, over the 30 MiB limit".into()
                ),
                (2, "reports metadata_size 0".into()),
                (
                    3,
                    "reports metadata_size 31457281 bytes, over the 30 MiB limit".into()
                ),
            ]
        );
        assert!(requests(&outs).is_empty());
        assert_eq!(f.status(), FetchStatus::default());
        // Exactly the limit is fine; nothing is allocated before data arrives.
        f.on_handshake(4, &hs(Some(1), Some(MAX_METADATA_SIZE)), t0);
        assert_eq!(requests(&f.drain().collect::<Vec<_>>()).len(), 2);
        assert_eq!(f.status().pieces_total, 1920);
        assert!(f.buf.is_empty());
    }

    #[test]
    fn at_most_64_requests_and_2_per_peer() {
        let t0 = Instant::now();
        let mut f = MetadataFetch::new(InfoHash([0; 20]));
        for peer in 0..100 {
            f.on_handshake(peer, &hs(Some(1), Some(MAX_METADATA_SIZE)), t0);
        }
        let reqs = requests(&f.drain().collect::<Vec<_>>());
        assert_eq!(reqs.len(), MAX_REQUESTS);
        // Peers came one by one, so the first 32 got two each; never more
        // than two per peer, and the pieces are distinct.
        let mut per_peer: HashMap<PeerKey, usize> = HashMap::new();
        for &(peer, _, _) in &reqs {
            *per_peer.entry(peer).or_default() += 1;
        }
        assert!(per_peer.values().all(|&n| n <= MAX_REQUESTS_PER_PEER));
        let mut pieces: Vec<u32> = reqs.iter().map(|r| r.2).collect();
        pieces.sort_unstable();
        pieces.dedup();
        assert_eq!(pieces.len(), MAX_REQUESTS);
        assert_eq!(f.status().requests, MAX_REQUESTS);
    }

    #[test]
    fn requests_are_spread_round_robin() {
        let t0 = Instant::now();
        let info = info_of_len(10 * METADATA_PIECE_LEN);
        let mut f = MetadataFetch::new(InfoHash(hash::sha1(&info)));
        // Peers known before the size is chosen: all join at once through a
        // handshake without size, then one with size makes the choice.
        for peer in 1..=4 {
            f.on_handshake(peer, &hs(Some(1), None), t0);
        }
        assert_eq!(f.drain().count(), 0);
        for peer in 1..=4 {
            f.on_handshake(peer, &hs(None, Some(info.len() as u64)), t0);
        }
        let reqs = requests(&f.drain().collect::<Vec<_>>());
        // Each peer became usable alone, so each filled up in turn.
        let peers: Vec<PeerKey> = reqs.iter().map(|r| r.0).collect();
        assert_eq!(peers, vec![1, 1, 2, 2, 3, 3, 4, 4]);
        let mut f = MetadataFetch::new(InfoHash(hash::sha1(&info)));
        for peer in 1..=4 {
            f.on_handshake(peer, &hs(Some(1), Some(info.len() as u64)), t0);
        }
        // Rejects from all free everything; after their rest (4 s: two
        // strikes each) every peer gets one request before any gets a second.
        let outs: Vec<_> = f.drain().collect();
        for (peer, _, piece) in requests(&outs) {
            f.on_message(peer, &MetadataMsg::Reject { piece }, t0);
        }
        assert!(requests(&f.drain().collect::<Vec<_>>()).is_empty());
        f.tick(t0 + REJECT_BACKOFF);
        assert!(requests(&f.drain().collect::<Vec<_>>()).is_empty());
        f.tick(t0 + REJECT_BACKOFF * 2);
        let peers: Vec<PeerKey> = requests(&f.drain().collect::<Vec<_>>())
            .iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(peers, vec![1, 2, 3, 4, 1, 2, 3, 4]);
    }

    #[test]
    fn metadata_that_does_not_hash_drops_the_contributors() {
        let t0 = Instant::now();
        let info = info_of_len(3 * METADATA_PIECE_LEN);
        let mut bad = info.clone();
        bad[METADATA_PIECE_LEN + 5] ^= 1;
        let mut f = MetadataFetch::new(InfoHash(hash::sha1(&info)));
        let size = Some(info.len() as u64);
        // Peer 2 (corrupt copy) comes first and gets pieces 0 and 1.
        f.on_handshake(2, &hs(Some(1), size), t0);
        f.on_handshake(1, &hs(Some(1), size), t0);
        let copy = |peer: PeerKey| if peer == 1 { info.clone() } else { bad.clone() };
        let outs: Vec<_> = f.drain().collect();
        assert_eq!(
            requests(&outs),
            vec![(2, 1, 0), (2, 1, 1), (1, 1, 2)],
            "peer 2 gets pieces 0 and 1"
        );
        let outs = answer_all(&mut f, &outs, &copy, t0);
        assert_eq!(done(&outs), None);
        let mut dropped = drops(&outs);
        dropped.sort();
        assert_eq!(
            dropped,
            vec![
                (
                    1,
                    "one of 2 peers whose metadata pieces together do not match the info-hash"
                        .into()
                ),
                (
                    2,
                    "one of 2 peers whose metadata pieces together do not match the info-hash"
                        .into()
                ),
            ]
        );
        assert_eq!(f.status().hash_failures, 1);
        assert_eq!(f.status().pieces_have, 0);
        assert!(f.buf.is_empty());
        // A new honest peer completes it from scratch.
        f.on_handshake(3, &hs(Some(1), size), t0);
        let mut outs: Vec<_> = f.drain().collect();
        let honest = |_: PeerKey| info.clone();
        let mut result = None;
        for _ in 0..3 {
            let next = answer_all(&mut f, &outs, &honest, t0);
            result = result.or(done(&next));
            outs = next;
        }
        assert_eq!(result, Some(info.clone()));
    }

    /// The liar and the honest peer reconnect (new keys, liar first) after
    /// their mixed failure: the next attempt asks one peer only, so the liar
    /// is blamed alone, and the honest peer then completes the fetch.
    #[test]
    fn after_a_mixed_failure_one_peer_serves_each_attempt() {
        let t0 = Instant::now();
        let info = info_of_len(3 * METADATA_PIECE_LEN);
        let bad: Vec<u8> = info.iter().map(|b| b ^ 0x20).collect();
        let mut f = MetadataFetch::new(InfoHash(hash::sha1(&info)));
        let size = Some(info.len() as u64);
        let liars = [2, 4];
        let copy = |peer: PeerKey| {
            if liars.contains(&peer) {
                bad.clone()
            } else {
                info.clone()
            }
        };
        f.on_handshake(2, &hs(Some(1), size), t0);
        f.on_handshake(1, &hs(Some(1), size), t0);
        let outs: Vec<_> = f.drain().collect();
        let outs = answer_all(&mut f, &outs, &copy, t0);
        assert_eq!(drops(&outs).len(), 2, "{:?}", drops(&outs));
        // Both come back.
        f.on_handshake(4, &hs(Some(1), size), t0);
        f.on_handshake(5, &hs(Some(1), size), t0);
        let mut outs: Vec<_> = f.drain().collect();
        let mut asked = Vec::new();
        let mut result = None;
        for _ in 0..10 {
            asked.extend(requests(&outs).iter().map(|r| r.0));
            let next = answer_all(&mut f, &outs, &copy, t0);
            result = result.or(done(&next));
            for (peer, reason) in drops(&next) {
                assert_eq!(peer, 4, "{reason}");
                assert_eq!(
                    reason,
                    "blamed: sent metadata that does not match the info-hash"
                );
            }
            outs = next;
            if result.is_some() {
                break;
            }
        }
        assert_eq!(result, Some(info.clone()));
        // Three pieces from the liar (alone), then three from the honest peer.
        assert_eq!(asked, vec![4, 4, 4, 5, 5, 5]);
    }

    #[test]
    fn a_single_liar_is_named() {
        let t0 = Instant::now();
        let info = info_of_len(100);
        let mut f = MetadataFetch::new(InfoHash(hash::sha1(&info)));
        f.on_handshake(7, &hs(Some(1), Some(100)), t0);
        f.drain().for_each(drop);
        let junk = info_of_len(101);
        f.on_message(7, &data(&junk[1..], 0), t0);
        let outs: Vec<_> = f.drain().collect();
        assert_eq!(
            drops(&outs),
            vec![(
                7,
                "blamed: sent metadata that does not match the info-hash".into()
            )]
        );
        assert_eq!(f.status().size, None);
    }

    #[test]
    fn majority_size_wins_and_a_switch_restarts_cleanly() {
        let t0 = Instant::now();
        let info = info_of_len(2 * METADATA_PIECE_LEN + 10);
        let real = info.len() as u64;
        let mut f = MetadataFetch::new(InfoHash(hash::sha1(&info)));
        // A liar comes first with a wrong size and gets requests.
        f.on_handshake(9, &hs(Some(1), Some(5 * METADATA_PIECE_LEN as u64)), t0);
        assert_eq!(requests(&f.drain().collect::<Vec<_>>()).len(), 2);
        assert_eq!(f.status().pieces_total, 5);
        // One honest peer: a tie, the first size stays.
        f.on_handshake(1, &hs(Some(1), Some(real)), t0);
        assert!(requests(&f.drain().collect::<Vec<_>>()).is_empty());
        assert_eq!(f.status().size, Some(5 * METADATA_PIECE_LEN as u64));
        // A second honest peer: the real size has the majority; restart.
        f.on_handshake(2, &hs(Some(1), Some(real)), t0);
        let outs: Vec<_> = f.drain().collect();
        let reqs = requests(&outs);
        assert_eq!(f.status().size, Some(real));
        assert_eq!(f.status().pieces_total, 3);
        assert_eq!(reqs, vec![(1, 1, 0), (2, 1, 1), (1, 1, 2)]);
        // The liar's late answer to its old request is ignored (not asked any more).
        let fake = info_of_len(5 * METADATA_PIECE_LEN);
        f.on_message(9, &data(&fake, 0), t0);
        assert!(f.drain().next().is_none());
        assert_eq!(f.status().pieces_have, 0);
        let outs = answer_all(&mut f, &outs, &|_| info.clone(), t0);
        assert_eq!(done(&outs), Some(info));
    }

    #[test]
    fn losing_a_voter_can_switch_the_size() {
        let t0 = Instant::now();
        let a = 3 * METADATA_PIECE_LEN as u64;
        let b = 100;
        let mut f = MetadataFetch::new(InfoHash([1; 20]));
        for (peer, size) in [(1, a), (2, a), (3, b), (4, b)] {
            f.on_handshake(peer, &hs(Some(1), Some(size)), t0);
        }
        assert_eq!(f.status().size, Some(a), "a tie keeps the first size");
        f.drain().for_each(drop);
        // Peer 1 contradicts itself and is dropped: b now has the majority.
        f.on_message(
            1,
            &MetadataMsg::Data {
                piece: 0,
                total_size: b,
                data: &[0; 100],
            },
            t0,
        );
        let outs: Vec<_> = f.drain().collect();
        assert_eq!(drops(&outs).len(), 1);
        assert_eq!(f.status().size, Some(b));
        assert_eq!(requests(&outs), vec![(3, 1, 0)]);
        // A refused handshake also takes the vote away.
        f.on_handshake(4, &hs(None, Some(1 << 40)), t0);
        f.on_handshake(3, &hs(None, Some(0)), t0);
        assert_eq!(drops(&f.drain().collect::<Vec<_>>()).len(), 2);
        assert_eq!(f.status().size, Some(a));
        assert_eq!(f.status().requests, 2);
    }

    #[test]
    fn inconsistent_data_drops_the_peer() {
        let t0 = Instant::now();
        let info = info_of_len(METADATA_PIECE_LEN + 100);
        let size = Some(info.len() as u64);
        let mut f = MetadataFetch::new(InfoHash(hash::sha1(&info)));
        f.on_handshake(1, &hs(Some(1), size), t0);
        f.on_handshake(2, &hs(Some(1), size), t0);
        f.drain().for_each(drop);
        // total_size differs from what peer 1 reported.
        f.on_message(
            1,
            &MetadataMsg::Data {
                piece: 0,
                total_size: 99,
                data: &info[..METADATA_PIECE_LEN],
            },
            t0,
        );
        // Peer 1 had pieces 0 and 1; after the drop both go to peer 2.
        let outs: Vec<_> = f.drain().collect();
        assert_eq!(
            drops(&outs),
            vec![(
                1,
                "sent metadata total_size 99 after reporting 16484".into()
            )]
        );
        assert_eq!(requests(&outs), vec![(2, 1, 0), (2, 1, 1)]);
        f.on_message(
            2,
            &MetadataMsg::Data {
                piece: 1,
                total_size: info.len() as u64,
                data: &info[..50],
            },
            t0,
        );
        assert_eq!(
            drops(&f.drain().collect::<Vec<_>>()),
            vec![(2, "sent 50 bytes for metadata piece 1, expected 100".into())]
        );
        assert_eq!(f.status().peers, 0);
        assert_eq!(f.status().requests, 0);
    }

    #[test]
    fn unsolicited_and_unknown_data_is_ignored() {
        let t0 = Instant::now();
        let info = info_of_len(3 * METADATA_PIECE_LEN);
        let mut f = MetadataFetch::new(InfoHash(hash::sha1(&info)));
        // From a peer we never heard of.
        f.on_message(5, &data(&info, 0), t0);
        f.on_message(5, &MetadataMsg::Reject { piece: 0 }, t0);
        f.on_handshake(1, &hs(Some(1), Some(info.len() as u64)), t0);
        f.drain().for_each(drop);
        // Piece 2 was not asked of peer 1; huge piece numbers neither.
        f.on_message(1, &data(&info, 2), t0);
        f.on_message(1, &MetadataMsg::Reject { piece: 2 }, t0);
        f.on_message(
            1,
            &MetadataMsg::Data {
                piece: u32::MAX,
                total_size: info.len() as u64,
                data: &[],
            },
            t0,
        );
        f.on_message(1, &MetadataMsg::Request { piece: 0 }, t0);
        assert_eq!(f.drain().count(), 0);
        assert_eq!(f.status().pieces_have, 0);
        assert_eq!(f.status().requests, 2);
        // A duplicate answer counts once.
        f.on_message(1, &data(&info, 0), t0);
        f.on_message(1, &data(&info, 0), t0);
        assert_eq!(f.status().pieces_have, 1);
    }

    #[test]
    fn rejects_rest_the_peer_with_growing_backoff() {
        let t0 = Instant::now();
        let info = info_of_len(4 * METADATA_PIECE_LEN);
        let mut f = MetadataFetch::new(InfoHash(hash::sha1(&info)));
        f.on_handshake(1, &hs(Some(1), Some(info.len() as u64)), t0);
        f.drain().for_each(drop);
        f.on_message(1, &MetadataMsg::Reject { piece: 0 }, t0);
        f.on_message(1, &MetadataMsg::Reject { piece: 1 }, t0);
        assert!(f.drain().next().is_none());
        // Two strikes: 4 s of rest (the later reject sets it).
        assert_eq!(f.next_deadline(), Some(t0 + REJECT_BACKOFF * 2));
        f.tick(t0 + Duration::from_secs(3));
        assert!(f.drain().next().is_none());
        let t1 = t0 + Duration::from_secs(4);
        f.tick(t1);
        assert_eq!(
            requests(&f.drain().collect::<Vec<_>>()),
            vec![(1, 1, 0), (1, 1, 1)]
        );
        f.on_message(1, &MetadataMsg::Reject { piece: 0 }, t1);
        assert_eq!(f.next_deadline(), Some(t1 + REJECT_BACKOFF * 4));
        // A good answer resets the strikes.
        f.on_message(1, &data(&info, 1), t1);
        f.drain().for_each(drop);
        assert_eq!(f.peers[&1].strikes, 0);
        // Backoff never exceeds the cap.
        let p = f.peers.get_mut(&1).unwrap();
        p.strikes = 1000;
        p.requests.push((3, t1));
        f.pieces[3].state = PieceState::Requested;
        f.n_requests += 1;
        f.on_message(1, &MetadataMsg::Reject { piece: 3 }, t1);
        assert_eq!(f.peers[&1].rest_until, Some(t1 + MAX_BACKOFF));
    }

    #[test]
    fn timeouts_reassign_and_late_answers_are_ignored() {
        let t0 = Instant::now();
        let info = info_of_len(2 * METADATA_PIECE_LEN);
        let size = Some(info.len() as u64);
        let mut f = MetadataFetch::new(InfoHash(hash::sha1(&info)));
        f.on_handshake(1, &hs(Some(1), size), t0);
        assert_eq!(requests(&f.drain().collect::<Vec<_>>()).len(), 2);
        assert_eq!(f.next_deadline(), Some(t0 + REQUEST_TIMEOUT));
        let t1 = t0 + Duration::from_secs(5);
        f.on_handshake(2, &hs(Some(4), size), t1);
        assert!(f.drain().next().is_none(), "nothing free to ask");
        f.tick(t0 + REQUEST_TIMEOUT - Duration::from_millis(1));
        assert!(f.drain().next().is_none());
        let t2 = t0 + REQUEST_TIMEOUT;
        f.tick(t2);
        assert_eq!(
            requests(&f.drain().collect::<Vec<_>>()),
            vec![(2, 4, 0), (2, 4, 1)]
        );
        assert_eq!(f.next_deadline(), Some(t2 + REQUEST_TIMEOUT));
        // Peer 1 answers late: ignored, no drop.
        f.on_message(1, &data(&info, 0), t2);
        assert!(f.drain().next().is_none());
        assert_eq!(f.status().pieces_have, 0);
        f.on_message(2, &data(&info, 0), t2);
        f.on_message(2, &data(&info, 1), t2);
        assert_eq!(done(&f.drain().collect::<Vec<_>>()), Some(info));
    }

    #[test]
    fn disconnect_and_disable_release_requests() {
        let t0 = Instant::now();
        let info = info_of_len(4 * METADATA_PIECE_LEN);
        let size = Some(info.len() as u64);
        let mut f = MetadataFetch::new(InfoHash(hash::sha1(&info)));
        f.on_handshake(1, &hs(Some(1), size), t0);
        f.on_handshake(2, &hs(Some(2), size), t0);
        assert_eq!(requests(&f.drain().collect::<Vec<_>>()).len(), 4);
        f.remove_peer(1, t0);
        assert_eq!(f.status().requests, 2);
        // Peer 2 disables ut_metadata in a later handshake.
        f.on_handshake(2, &hs(Some(0), None), t0);
        assert_eq!(f.status().requests, 0);
        assert_eq!(f.status().peers, 0);
        assert!(f.drain().next().is_none());
        // A peer without ut_metadata is never asked.
        f.on_handshake(3, &hs(None, size), t0);
        assert!(f.drain().next().is_none());
        // It enables it later.
        f.on_handshake(3, &hs(Some(UT_METADATA_ID), None), t0);
        assert_eq!(requests(&f.drain().collect::<Vec<_>>()).len(), 2);
        f.remove_peer(99, t0);
        assert!(f.drain().next().is_none());
    }

    #[test]
    fn serve_pieces_rejects_and_rate_cap() {
        let t0 = Instant::now();
        let info = info_of_len(METADATA_PIECE_LEN + 10);
        let mut s = MetadataServer::new();
        assert_eq!(
            s.serve(1, &info, 0, t0),
            MetadataMsg::Data {
                piece: 0,
                total_size: info.len() as u64,
                data: &info[..METADATA_PIECE_LEN]
            }
        );
        assert_eq!(
            s.serve(1, &info, 1, t0),
            MetadataMsg::Data {
                piece: 1,
                total_size: info.len() as u64,
                data: &info[METADATA_PIECE_LEN..]
            }
        );
        assert_eq!(s.serve(1, &info, 2, t0), MetadataMsg::Reject { piece: 2 });
        assert_eq!(
            s.serve(1, &info, u32::MAX, t0),
            MetadataMsg::Reject { piece: u32::MAX }
        );
        // Fifth in the same second: rejected although in range.
        assert_eq!(s.serve(1, &info, 0, t0), MetadataMsg::Reject { piece: 0 });
        // Another peer has its own budget.
        assert!(matches!(s.serve(2, &info, 0, t0), MetadataMsg::Data { .. }));
        // A second later, peer 1 is served again.
        let t1 = t0 + Duration::from_secs(1);
        assert!(matches!(s.serve(1, &info, 0, t1), MetadataMsg::Data { .. }));
        // Nothing to serve: reject.
        assert_eq!(s.serve(3, &[], 0, t1), MetadataMsg::Reject { piece: 0 });
        s.remove_peer(1);
        assert!(!s.peers.contains_key(&1));
        // A clock going backwards does not panic.
        let earlier = t0.checked_sub(Duration::from_secs(5)).unwrap_or(t0);
        let _ = s.serve(2, &info, 0, earlier);
    }

    #[test]
    fn server_forgets_idle_peers_beyond_the_cap() {
        let t0 = Instant::now();
        let info = info_of_len(10);
        let mut s = MetadataServer::new();
        for peer in 0..MAX_SERVER_PEERS as u64 {
            s.serve(peer, &info, 0, t0);
        }
        assert_eq!(s.peers.len(), MAX_SERVER_PEERS);
        s.serve(100_000, &info, 0, t0 + Duration::from_secs(2));
        assert_eq!(s.peers.len(), 1);
    }

    #[test]
    fn fetch_from_our_own_server_end_to_end() {
        // Requests go through emit/parse on both sides, as on the wire.
        let t0 = Instant::now();
        let info = real_info();
        let mut f = MetadataFetch::new(InfoHash(hash::sha1(&info)));
        let mut server = MetadataServer::new();
        f.on_handshake(1, &hs(Some(UT_METADATA_ID), Some(info.len() as u64)), t0);
        let mut now = t0;
        let mut result = None;
        for _ in 0..50 {
            let outs: Vec<FetchOut> = f.drain().collect();
            for out in outs {
                match out {
                    FetchOut::Send { peer, payload, .. } => {
                        let Ok(MetadataMsg::Request { piece }) = MetadataMsg::parse(&payload)
                        else {
                            panic!("bad request");
                        };
                        let answer = server.serve(peer, &info, piece, now).to_bytes();
                        let msg = MetadataMsg::parse(&answer).unwrap();
                        f.on_message(peer, &msg, now);
                    }
                    FetchOut::Done(b) => result = Some(b),
                    FetchOut::Drop { reason, .. } | FetchOut::Blame { reason, .. } => {
                        panic!("{reason}")
                    }
                }
            }
            if result.is_some() {
                break;
            }
            now += Duration::from_millis(500);
            f.tick(now);
        }
        assert_eq!(result, Some(info));
    }

    /// Random events from hostile peers: nothing panics and the caps hold.
    #[test]
    fn random_hostile_events_keep_the_invariants() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let t0 = Instant::now();
        let info = info_of_len(5 * METADATA_PIECE_LEN + 3);
        let mut f = MetadataFetch::new(InfoHash(hash::sha1(&info)));
        let sizes = [
            0,
            1,
            info.len() as u64,
            info.len() as u64,
            METADATA_PIECE_LEN as u64,
            MAX_METADATA_SIZE,
            u64::MAX,
        ];
        let mut now = t0;
        let mut n_done = 0;
        let mut n_dropped = 0;
        for _ in 0..50_000 {
            let peer = next() % 12;
            match next() % 6 {
                0 => {
                    let id = [None, Some(0), Some(1), Some(200)][(next() % 4) as usize];
                    let size = [None, Some(sizes[(next() % 7) as usize])][(next() % 2) as usize];
                    f.on_handshake(peer, &hs(id, size), now);
                }
                1 => f.remove_peer(peer, now),
                2 => {
                    now += Duration::from_millis(next() % 30_000);
                    f.tick(now);
                }
                3 => {
                    let piece = (next() % 8) as u32;
                    f.on_message(peer, &MetadataMsg::Reject { piece }, now);
                }
                _ => {
                    // Mostly answers to requests in flight, sometimes noise.
                    let asked = f.peers.get(&peer).and_then(|p| p.requests.first());
                    let piece = match asked {
                        Some(&(piece, _)) if next() % 4 != 0 => piece,
                        _ => (next() % 8) as u32,
                    };
                    let honest = next() % 8 != 0;
                    let len = if honest {
                        (info
                            .len()
                            .saturating_sub(piece as usize * METADATA_PIECE_LEN))
                        .min(METADATA_PIECE_LEN)
                    } else {
                        (next() % (METADATA_PIECE_LEN as u64 + 1)) as usize
                    };
                    let begin = (piece as usize * METADATA_PIECE_LEN).min(info.len());
                    let bytes: Vec<u8> = if honest {
                        info[begin..(begin + len).min(info.len())].to_vec()
                    } else {
                        vec![next() as u8; len]
                    };
                    let total_size = if honest {
                        info.len() as u64
                    } else {
                        sizes[(next() % 7) as usize]
                    };
                    f.on_message(
                        peer,
                        &MetadataMsg::Data {
                            piece,
                            total_size,
                            data: &bytes,
                        },
                        now,
                    );
                }
            }
            let n_in_flight: usize = f.peers.values().map(|p| p.requests.len()).sum();
            assert_eq!(n_in_flight, f.n_requests);
            assert!(f.n_requests <= MAX_REQUESTS);
            assert!(f
                .peers
                .values()
                .all(|p| p.requests.len() <= MAX_REQUESTS_PER_PEER));
            let n_requested = f
                .pieces
                .iter()
                .filter(|p| p.state == PieceState::Requested)
                .count();
            assert_eq!(n_requested, f.n_requests);
            assert!(f.buf.len() as u64 <= MAX_METADATA_SIZE);
            let mut finished = false;
            for out in f.drain() {
                match out {
                    FetchOut::Done(b) => {
                        assert_eq!(b, info);
                        finished = true;
                    }
                    FetchOut::Drop { .. } | FetchOut::Blame { .. } => n_dropped += 1,
                    FetchOut::Send { .. } => {}
                }
            }
            if finished {
                // Start again, so the whole run exercises a live fetch.
                n_done += 1;
                f = MetadataFetch::new(InfoHash(hash::sha1(&info)));
            }
        }
        assert!(
            n_done > 0 && n_dropped > 0,
            "{n_done} done, {n_dropped} dropped"
        );
    }
}
