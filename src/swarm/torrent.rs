//! [`Swarm`]: the per-torrent protocol logic, sans I/O.
//!
//! The net thread feeds it parsed messages, disk results and clock ticks
//! (`now` is always passed in); it answers with [`Out`] actions: messages to
//! send, blocks to read, write or hash, peers to drop or ban. Tests drive it
//! with fake peers and fake time.
//!
//! Piece states: every piece is exactly one of MISSING (pickable), PARTIAL
//! (blocks being requested or received), HASHING (all blocks written, hash
//! job out), CHECKING_FAILED (failed its hash; its blocks are being hashed
//! one by one for smart ban before it is downloaded again) or HAVE
//! (verified). Only `on_hashed` moves a piece to HAVE.
//!
//! Downloading: blocks are requested from every unchoked peer that has
//! them, partial pieces first (the peer's current piece, then others), then
//! a new piece from the [`Picker`] (most common first until 4 pieces are
//! verified, rarest first after), then, when nothing is left unrequested,
//! blocks already requested from others (endgame, with cancels). The number
//! of requests in flight per peer follows its measured rate.
//!
//! Uploading: requests are queued per peer and read from disk a few at a
//! time; a choke (or a cancel) drops what is queued.
//!
//! Choking: every 10 s the peers interested in us are ranked by the rate
//! they give us (leeching) or we give them (seeding); the best
//! `upload_slots - 1` are unchoked, plus one optimistic unchoke rotated
//! every 30 s. A newly interested peer is unchoked at once when a slot is free.
//!
//! Bad data: a piece that fails its hash is re-downloaded; the blocks of the
//! failed copy are hashed one by one first, and when the piece later passes,
//! every peer whose block differed from the good copy is banned ("smart
//! ban"). A peer in too many failed pieces is banned as well.

use super::bitfield::Bitfield;
use super::picker::Picker;
use super::rate::Rate;
use crate::hash::Digest;
use crate::metainfo::{Lengths, PieceIdx, BLOCK_SIZE};
use crate::wire::peer::{BlockRef, Message};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The net thread's name for a connection (slab key and generation).
pub type PeerKey = u64;

/// Tunables, with defaults for a small board.
#[derive(Clone, Debug)]
pub struct SwarmConfig {
    /// Peers we upload to at once (one of them the optimistic unchoke).
    pub upload_slots: usize,
    /// Requests in flight to one peer: at least / at most.
    pub min_requests: usize,
    pub max_requests: usize,
    /// Requests in flight per peer = rate × this.
    pub request_queue_time: Duration,
    /// A peer that sends no block for this long while we wait is snubbed and
    /// its requests go to others.
    pub request_timeout: Duration,
    /// Requests we queue from one peer before rejecting more; advertised
    /// as `reqq`. Transmission 3 keeps at most `reqq` requests out and tops
    /// them up about once a second, so this caps what one such peer can
    /// get: 2,048 × 16 KiB ≈ 32 MiB/s (256 gave it 4 MiB/s). A queued
    /// request costs 12 bytes.
    pub max_upload_queue: usize,
    /// Disk reads in flight for one peer's uploads.
    pub max_reads_per_peer: usize,
    pub rechoke_interval: Duration,
    pub optimistic_interval: Duration,
    /// Failed pieces a peer may contribute to before it is banned.
    pub max_hash_failures: u32,
    /// Bytes requested and not yet written, for this torrent.
    pub max_in_flight_bytes: u64,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        SwarmConfig {
            upload_slots: 4,
            min_requests: 4,
            max_requests: 256,
            request_queue_time: Duration::from_secs(1),
            request_timeout: Duration::from_secs(20),
            max_upload_queue: 2048,
            max_reads_per_peer: 16,
            rechoke_interval: Duration::from_secs(10),
            optimistic_interval: Duration::from_secs(30),
            max_hash_failures: 5,
            max_in_flight_bytes: 8 << 20,
        }
    }
}

/// Why the swarm drops a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disconnect {
    /// Neither side wants anything from the other: not the peer's fault.
    BothSeeds,
    /// The violations below count as strikes against the peer's address.
    HaveOutside(u32),
    BadBitfield,
    HaveAllWithoutFast,
    RejectWithoutFast,
    UnrequestedPiece {
        index: u32,
        begin: u32,
        len: u64,
    },
    RequestOutside(BlockRef),
}

impl Disconnect {
    /// A protocol violation (a strike), as opposed to a normal end.
    pub fn is_violation(&self) -> bool {
        *self != Disconnect::BothSeeds
    }
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disconnect::BothSeeds => f.write_str("both sides are seeds"),
            Disconnect::BadBitfield => {
                f.write_str("bitfield of the wrong size or with spare bits set")
            }
            Disconnect::HaveOutside(index) => {
                write!(f, "have for piece {index}, which does not exist")
            }
            Disconnect::HaveAllWithoutFast => {
                f.write_str("have-all/have-none without the Fast extension")
            }
            Disconnect::RejectWithoutFast => f.write_str("reject without the Fast extension"),
            Disconnect::UnrequestedPiece { index, begin, len } => {
                write!(
                    f,
                    "piece message for {index}:{begin}+{len} we never requested"
                )
            }
            Disconnect::RequestOutside(b) => write!(
                f,
                "request {}:{}+{} outside the torrent",
                b.index, b.begin, b.length
            ),
        }
    }
}

/// An action for the net thread.
#[derive(Debug, PartialEq, Eq)]
pub enum Out {
    Send(PeerKey, Message<'static>),
    SendBitfield(PeerKey, Vec<u8>),
    /// Read a block from disk, then ask [`Swarm::on_read_done`] before sending it.
    Read {
        peer: PeerKey,
        block: BlockRef,
    },
    /// Write a received block.
    Write {
        piece: PieceIdx,
        begin: u32,
        data: Vec<u8>,
    },
    /// All blocks of the piece are written: hash it.
    Hash(PieceIdx),
    /// Hash each block of the piece (smart ban), answer with `on_block_hashes`.
    HashBlocks(PieceIdx),
    Disconnect(PeerKey, Disconnect),
    /// Ban this address and drop its connections (1 h at first; see `net::bans`).
    Ban(IpAddr, String),
    /// The piece passed its hash (record it for resume).
    Verified(PieceIdx),
    /// Every piece is verified.
    Complete,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    Free,
    /// Requested from this many peers (more than one in endgame).
    Requested(u8),
    Received,
    Written,
}

struct Partial {
    blocks: Vec<Block>,
    /// Who delivered each block.
    owners: Vec<Option<IpAddr>>,
    n_written: u32,
}

const MISSING: u8 = 0;
const PARTIAL: u8 = 1;
const HASHING: u8 = 2;
const CHECKING_FAILED: u8 = 3;
const HAVE: u8 = 4;

struct Peer {
    addr: SocketAddr,
    has: Bitfield,
    fast: bool,
    am_choking: bool,
    am_interested: bool,
    peer_choking: bool,
    peer_interested: bool,
    /// Blocks we asked this peer for.
    requests_out: Vec<BlockRef>,
    /// Blocks it asked us for, not yet read.
    upload_queue: VecDeque<BlockRef>,
    /// Blocks being read for it; `false` once cancelled.
    reads: Vec<(BlockRef, bool)>,
    allowed_fast: Vec<u32>,
    /// Pieces it has that we do not.
    interesting: u32,
    down: Rate,
    up: Rate,
    last_block: Instant,
    snubbed: bool,
    current_piece: Option<u32>,
    optimistic_since: Option<Instant>,
    /// The UDP port of its Mainline DHT node, from its `port` message (BEP
    /// 5), for the DHT to ping; a port of 0 is ignored.
    dht_port: Option<u16>,
}

/// Counters for the status API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SwarmStats {
    pub downloaded: u64,
    pub uploaded: u64,
    /// Payload bytes received that were not needed (duplicates, late blocks).
    pub wasted: u64,
    pub hash_failures: u32,
    pub pieces_downloaded: u32,
}

/// What a connected peer does for us ([`Swarm::peer_use`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerUse {
    /// Sides interested in the other: 0, 1 or 2.
    pub interest: u8,
    /// Blocks asked for either way (queued, being read, awaited), or
    /// payload moved within the rate window (5 s).
    pub transferring: bool,
    /// Payload bytes both ways since it connected.
    pub moved: u64,
}

/// A snapshot of one peer for the status API.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub key: PeerKey,
    pub addr: SocketAddr,
    pub download_rate: u64,
    pub upload_rate: u64,
    pub downloaded: u64,
    pub uploaded: u64,
    pub progress: f64,
    pub flags: String,
}

/// The per-torrent state machine.
pub struct Swarm {
    config: SwarmConfig,
    lengths: Lengths,
    have: Bitfield,
    state: Vec<u8>,
    picker: Picker,
    partials: HashMap<u32, Partial>,
    /// Failed pieces: owner and SHA-1 of each block of the bad copy, once known.
    failed: HashMap<u32, Vec<(Option<IpAddr>, Digest)>>,
    /// Owners captured at failure, waiting for the block hashes.
    failed_owners: HashMap<u32, Vec<Option<IpAddr>>>,
    /// Pieces that passed after failing, waiting for their block hashes.
    passed_after_failure: HashMap<u32, Vec<(Option<IpAddr>, Digest)>>,
    hash_strikes: HashMap<IpAddr, u32>,
    peers: HashMap<PeerKey, Peer>,
    download_enabled: bool,
    in_flight: u64,
    next_rechoke: Option<Instant>,
    next_optimistic: Option<Instant>,
    rng: u64,
    pub stats: SwarmStats,
    pub down: Rate,
    pub up: Rate,
    out: Vec<Out>,
}

impl Swarm {
    /// A swarm for a torrent of which `have` pieces are already verified.
    pub fn new(config: SwarmConfig, lengths: Lengths, have: Bitfield, seed: u64) -> Swarm {
        let n = lengths.n_pieces();
        let state = (0..n)
            .map(|p| if have.get(p) { HAVE } else { MISSING })
            .collect();
        Swarm {
            config,
            lengths,
            have,
            state,
            picker: Picker::new(n, seed),
            partials: HashMap::new(),
            failed: HashMap::new(),
            failed_owners: HashMap::new(),
            passed_after_failure: HashMap::new(),
            hash_strikes: HashMap::new(),
            peers: HashMap::new(),
            download_enabled: true,
            in_flight: 0,
            next_rechoke: None,
            next_optimistic: None,
            rng: seed | 1,
            stats: SwarmStats::default(),
            down: Rate::default(),
            up: Rate::default(),
            out: Vec::new(),
        }
    }

    /// Takes the actions produced so far.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Out> {
        self.out.drain(..)
    }

    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    pub fn lengths(&self) -> &Lengths {
        &self.lengths
    }

    pub fn is_complete(&self) -> bool {
        self.have.is_full()
    }

    pub fn n_peers(&self) -> usize {
        self.peers.len()
    }

    pub fn has_peer(&self, key: PeerKey) -> bool {
        self.peers.contains_key(&key)
    }

    /// Bytes requested and not yet written.
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// Pieces with blocks requested or received but not yet verified.
    pub fn pieces_in_progress(&self) -> usize {
        self.state
            .iter()
            .filter(|&&s| s == PARTIAL || s == HASHING)
            .count()
    }

    /// Bytes of verified pieces.
    pub fn have_bytes(&self) -> u64 {
        if self.have.is_full() {
            return self.lengths.total_length();
        }
        let last = self.lengths.last_piece();
        let full = u64::from(self.lengths.piece_length());
        let mut bytes = u64::from(self.have.count()) * full;
        if self.have.get(last.get()) {
            bytes = bytes - full + u64::from(self.lengths.piece_size(last));
        }
        bytes
    }

    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Turns downloading on or off (pause, disk errors). Uploading goes on.
    pub fn set_download_enabled(&mut self, enabled: bool, now: Instant) {
        if self.download_enabled == enabled {
            return;
        }
        self.download_enabled = enabled && !self.have.is_full();
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        if !self.download_enabled {
            for key in &keys {
                self.drop_requests(*key, true);
            }
        }
        for key in keys {
            self.update_interest(key);
            self.fill_requests(key, now);
        }
    }

    pub fn download_enabled(&self) -> bool {
        self.download_enabled
    }

    /// Sets the cap on bytes in flight (this torrent's share of the memory
    /// budget); it applies as requests are next filled.
    pub fn set_max_in_flight(&mut self, bytes: u64) {
        self.config.max_in_flight_bytes = bytes;
    }

    // ----- peers -----

    /// A peer finished the handshake. Sends our bitfield.
    pub fn add_peer(&mut self, key: PeerKey, addr: SocketAddr, fast: bool, now: Instant) {
        let n = self.lengths.n_pieces();
        self.peers.insert(
            key,
            Peer {
                addr,
                has: Bitfield::new(n),
                fast,
                am_choking: true,
                am_interested: false,
                peer_choking: true,
                peer_interested: false,
                requests_out: Vec::new(),
                upload_queue: VecDeque::new(),
                reads: Vec::new(),
                allowed_fast: Vec::new(),
                interesting: 0,
                down: Rate::default(),
                up: Rate::default(),
                last_block: now,
                snubbed: false,
                current_piece: None,
                optimistic_since: None,
                dht_port: None,
            },
        );
        if fast && self.have.is_full() {
            self.out.push(Out::Send(key, Message::HaveAll));
        } else if fast && self.have.count() == 0 {
            self.out.push(Out::Send(key, Message::HaveNone));
        } else if self.have.count() > 0 {
            self.out
                .push(Out::SendBitfield(key, self.have.as_bytes().to_vec()));
        }
    }

    /// A connection closed: give its requests back and forget its pieces.
    pub fn remove_peer(&mut self, key: PeerKey) {
        self.drop_requests(key, false);
        if let Some(peer) = self.peers.remove(&key) {
            for p in peer.has.ones() {
                self.picker.dec(p);
            }
        }
    }

    /// Marks our requests to `key` as void and frees their blocks.
    fn drop_requests(&mut self, key: PeerKey, send_cancel: bool) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let requests = std::mem::take(&mut peer.requests_out);
        for b in requests {
            if send_cancel {
                self.out.push(Out::Send(key, Message::Cancel(b)));
            }
            self.release_block(&b);
        }
    }

    /// A request we made is void: the block is free again (unless another
    /// peer also has it requested, in endgame).
    fn release_block(&mut self, b: &BlockRef) {
        self.in_flight = self.in_flight.saturating_sub(u64::from(b.length));
        if let Some(partial) = self.partials.get_mut(&b.index) {
            if let Some(block) = partial.blocks.get_mut((b.begin / BLOCK_SIZE) as usize) {
                if let Block::Requested(n) = *block {
                    *block = if n > 1 {
                        Block::Requested(n - 1)
                    } else {
                        Block::Free
                    };
                }
            }
        }
    }

    // ----- messages -----

    /// A message from a peer. Protocol violations become `Out::Disconnect`.
    pub fn on_message(&mut self, key: PeerKey, msg: Message<'_>, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        match msg {
            Message::KeepAlive | Message::Suggest(_) | Message::Extended { .. } => {}
            Message::Port(port) => peer.dht_port = (port != 0).then_some(port),
            Message::Unknown { id, .. } => {
                log::trace!("peer {} sent unknown message id {id}", peer.addr)
            }
            Message::Choke => {
                peer.peer_choking = true;
                if !peer.fast {
                    self.drop_requests(key, false);
                }
            }
            Message::Unchoke => {
                peer.peer_choking = false;
                self.fill_requests(key, now);
            }
            Message::Interested => {
                peer.peer_interested = true;
                self.maybe_unchoke_now(key);
            }
            Message::NotInterested => {
                peer.peer_interested = false;
            }
            Message::Have(index) => {
                if self.lengths.piece(index).is_none() {
                    return self.disconnect(key, Disconnect::HaveOutside(index));
                }
                self.peer_has(key, index);
                self.update_interest(key);
                self.fill_requests(key, now);
            }
            Message::Bitfield(bytes) => {
                // A later bitfield only adds pieces: aria2c sends one instead of
                // a batch of haves.
                let Some(bits) = Bitfield::from_bytes(bytes, self.lengths.n_pieces()) else {
                    return self.disconnect(key, Disconnect::BadBitfield);
                };
                for p in bits.ones() {
                    self.peer_has(key, p);
                }
                self.update_interest(key);
                self.fill_requests(key, now);
            }
            Message::HaveAll | Message::HaveNone => {
                if !peer.fast {
                    return self.disconnect(key, Disconnect::HaveAllWithoutFast);
                }
                if matches!(msg, Message::HaveAll) {
                    for p in 0..self.lengths.n_pieces() {
                        self.peer_has(key, p);
                    }
                }
                self.update_interest(key);
                self.fill_requests(key, now);
            }
            Message::Request(b) => self.on_request(key, b),
            Message::Cancel(b) => {
                peer.upload_queue.retain(|q| *q != b);
                for (r, live) in peer.reads.iter_mut() {
                    if *r == b {
                        *live = false;
                    }
                }
            }
            Message::Reject(b) => {
                if !peer.fast {
                    return self.disconnect(key, Disconnect::RejectWithoutFast);
                }
                if let Some(i) = peer.requests_out.iter().position(|r| *r == b) {
                    peer.requests_out.swap_remove(i);
                    self.release_block(&b);
                    if !self.peers.get(&key).is_some_and(|p| p.peer_choking) {
                        self.fill_requests(key, now);
                    }
                }
            }
            Message::AllowedFast(index) => {
                if self.lengths.piece(index).is_some()
                    && peer.allowed_fast.len() < 64
                    && !peer.allowed_fast.contains(&index)
                {
                    peer.allowed_fast.push(index);
                    self.fill_requests(key, now);
                }
            }
            Message::Piece { index, begin, data } => self.on_block(key, index, begin, data, now),
        }
    }

    fn disconnect(&mut self, key: PeerKey, reason: Disconnect) {
        self.out.push(Out::Disconnect(key, reason));
    }

    fn peer_has(&mut self, key: PeerKey, piece: u32) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer.has.set(piece) {
            self.picker.inc(piece);
            if !self.have.get(piece) {
                peer.interesting += 1;
            }
        }
    }

    fn update_interest(&mut self, key: PeerKey) {
        let enabled = self.download_enabled;
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let want = enabled && peer.interesting > 0;
        if want != peer.am_interested {
            peer.am_interested = want;
            let msg = if want {
                Message::Interested
            } else {
                Message::NotInterested
            };
            self.out.push(Out::Send(key, msg));
        }
    }

    // ----- downloading -----

    /// How many requests to keep in flight to this peer.
    fn target_depth(&self, peer: &Peer, now: Instant) -> usize {
        if peer.snubbed {
            return 1;
        }
        let mut rate = peer.down.clone();
        let bytes_per_sec = rate.per_second(now);
        let depth = (bytes_per_sec as f64 * self.config.request_queue_time.as_secs_f64()
            / f64::from(BLOCK_SIZE)) as usize;
        depth.clamp(self.config.min_requests, self.config.max_requests)
    }

    /// Sends requests to `key` until its pipeline is full.
    fn fill_requests(&mut self, key: PeerKey, now: Instant) {
        if !self.download_enabled {
            return;
        }
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        if !peer.am_interested {
            return;
        }
        let choked = peer.peer_choking;
        if choked && peer.allowed_fast.is_empty() {
            return;
        }
        let depth = self.target_depth(peer, now);
        let mut n_out = peer.requests_out.len();
        while n_out < depth && self.in_flight < self.config.max_in_flight_bytes {
            let Some(block) = self.next_block(key, choked) else {
                break;
            };
            self.in_flight += u64::from(block.length);
            if let Some(peer) = self.peers.get_mut(&key) {
                peer.requests_out.push(block);
                peer.current_piece = Some(block.index);
            }
            self.out.push(Out::Send(key, Message::Request(block)));
            n_out += 1;
        }
    }

    /// The next block to request from `key`, marked requested.
    fn next_block(&mut self, key: PeerKey, choked: bool) -> Option<BlockRef> {
        let peer = self.peers.get(&key)?;
        let allowed = |p: u32| !choked || peer.allowed_fast.contains(&p);
        // 1. The piece this peer is working on, then any partial piece it has.
        // A snubbed peer takes no blocks from partial pieces: those are
        // what a stalled peer just gave back, and should go to others.
        let mut candidates: Vec<u32> = Vec::new();
        if let Some(c) = peer.current_piece {
            candidates.push(c);
        }
        candidates.extend(
            self.partials
                .keys()
                .copied()
                .filter(|p| Some(*p) != peer.current_piece),
        );
        if peer.snubbed {
            candidates.clear();
        }
        let ip = peer.addr.ip();
        candidates.retain(|&p| {
            peer.has.get(p)
                && allowed(p)
                && self.state.get(p as usize) == Some(&PARTIAL)
                && !self.tainted(p, ip, key)
        });
        for p in candidates {
            if let Some(b) = self.free_block_in(p) {
                return Some(b);
            }
        }
        let peer = self.peers.get(&key)?;
        let allowed = |p: u32| !choked || peer.allowed_fast.contains(&p);
        // 2. A new piece.
        let common_first = self.have.count() < 4;
        let state = &self.state;
        let ip = peer.addr.ip();
        let picked = self.picker.pick(common_first, |p| {
            state[p as usize] == MISSING
                && peer.has.get(p)
                && allowed(p)
                && !self.tainted(p, ip, key)
        });
        if let Some(p) = picked {
            let piece = self.lengths.piece(p)?;
            let n_blocks = self.lengths.n_blocks(piece) as usize;
            self.state[p as usize] = PARTIAL;
            self.partials.insert(
                p,
                Partial {
                    blocks: vec![Block::Free; n_blocks],
                    owners: vec![None; n_blocks],
                    n_written: 0,
                },
            );
            return self.free_block_in(p);
        }
        // 3. Endgame: nothing is left to start; ask for blocks others were asked for.
        if self.state.contains(&MISSING) {
            return None;
        }
        let mine: &Vec<BlockRef> = &peer.requests_out;
        let mut best: Option<BlockRef> = None;
        for (&p, partial) in &self.partials {
            if !peer.has.get(p) || !allowed(p) {
                continue;
            }
            for (i, b) in partial.blocks.iter().enumerate() {
                if let Block::Requested(n) = b {
                    let r = self.block_ref(p, i as u32)?;
                    if *n < 2 && !mine.contains(&r) {
                        best = Some(r);
                        break;
                    }
                }
            }
            if best.is_some() {
                break;
            }
        }
        let r = best?;
        if let Some(Block::Requested(n)) = self
            .partials
            .get_mut(&r.index)
            .and_then(|pt| pt.blocks.get_mut((r.begin / BLOCK_SIZE) as usize))
        {
            *n += 1;
        }
        Some(r)
    }

    /// True when `ip` sent data for an earlier copy of `piece` that failed
    /// its hash and some other peer could send it instead ("parole": the
    /// re-download of a failed piece goes to someone else when possible).
    fn tainted(&self, piece: u32, ip: IpAddr, key: PeerKey) -> bool {
        let in_failed = self
            .failed
            .get(&piece)
            .is_some_and(|r| r.iter().any(|(o, _)| *o == Some(ip)));
        let in_checking = self
            .failed_owners
            .get(&piece)
            .is_some_and(|r| r.contains(&Some(ip)));
        (in_failed || in_checking)
            && self
                .peers
                .iter()
                .any(|(k, p)| *k != key && p.addr.ip() != ip && p.has.get(piece))
    }

    fn block_ref(&self, piece: u32, block: u32) -> Option<BlockRef> {
        let p = self.lengths.piece(piece)?;
        let b = self.lengths.block(p, block)?;
        Some(BlockRef {
            index: piece,
            begin: self.lengths.block_begin(b),
            length: self.lengths.block_size(b),
        })
    }

    fn free_block_in(&mut self, piece: u32) -> Option<BlockRef> {
        let partial = self.partials.get(&piece)?;
        let i = partial.blocks.iter().position(|b| *b == Block::Free)?;
        let r = self.block_ref(piece, i as u32)?;
        if let Some(partial) = self.partials.get_mut(&piece) {
            partial.blocks[i] = Block::Requested(1);
        }
        Some(r)
    }

    fn on_block(&mut self, key: PeerKey, index: u32, begin: u32, data: &[u8], now: Instant) {
        let len = data.len() as u64;
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let r = BlockRef {
            index,
            begin,
            length: data.len() as u32,
        };
        let requested = match peer.requests_out.iter().position(|q| *q == r) {
            Some(i) => {
                peer.requests_out.swap_remove(i);
                true
            }
            None => false,
        };
        peer.down.add(len, now);
        peer.last_block = now;
        peer.snubbed = false;
        self.down.add(len, now);
        let ip = peer.addr.ip();
        if requested {
            self.in_flight = self.in_flight.saturating_sub(len);
        }
        // Accept the block only if we still need it.
        let block_idx = (begin / BLOCK_SIZE) as usize;
        let valid = self.block_ref(index, block_idx as u32) == Some(r);
        let needed = valid
            && self
                .partials
                .get(&index)
                .and_then(|p| p.blocks.get(block_idx))
                .is_some_and(|b| matches!(b, Block::Free | Block::Requested(_)));
        if !needed {
            self.stats.wasted += len;
            if !requested && !valid {
                // Data nobody asked for that does not even fit a block.
                return self.disconnect(key, Disconnect::UnrequestedPiece { index, begin, len });
            }
            self.fill_requests(key, now);
            return;
        }
        self.stats.downloaded += len;
        if let Some(partial) = self.partials.get_mut(&index) {
            if let Block::Requested(n) = partial.blocks[block_idx] {
                // Endgame: the others who were asked for it get a cancel.
                if n > 1 || !requested {
                    let others: Vec<PeerKey> = self
                        .peers
                        .iter()
                        .filter(|(k, p)| **k != key && p.requests_out.contains(&r))
                        .map(|(k, _)| *k)
                        .collect();
                    for other in others {
                        if let Some(op) = self.peers.get_mut(&other) {
                            op.requests_out.retain(|q| *q != r);
                            self.in_flight = self.in_flight.saturating_sub(len);
                            self.out.push(Out::Send(other, Message::Cancel(r)));
                        }
                    }
                }
            }
            partial.blocks[block_idx] = Block::Received;
            partial.owners[block_idx] = Some(ip);
        }
        self.in_flight += len;
        if let Some(piece) = self.lengths.piece(index) {
            self.out.push(Out::Write {
                piece,
                begin,
                data: data.to_vec(),
            });
        }
        self.fill_requests(key, now);
    }

    /// A block write finished.
    pub fn on_written(&mut self, piece: PieceIdx, begin: u32, len: u32, ok: bool, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(u64::from(len));
        let p = piece.get();
        let Some(partial) = self.partials.get_mut(&p) else {
            return;
        };
        let i = (begin / BLOCK_SIZE) as usize;
        if i >= partial.blocks.len() {
            return;
        }
        if !ok {
            // The data is not on disk: ask for the block again later.
            partial.blocks[i] = Block::Free;
            partial.owners[i] = None;
            return;
        }
        if partial.blocks[i] == Block::Received {
            partial.blocks[i] = Block::Written;
            partial.n_written += 1;
        }
        if partial.n_written as usize == partial.blocks.len() {
            self.state[p as usize] = HASHING;
            self.out.push(Out::Hash(piece));
        }
        // The write freed in-flight budget: use it at once, not at the next tick.
        self.refill_all(now);
    }

    /// The hash of a fully written piece came back.
    pub fn on_hashed(&mut self, piece: PieceIdx, ok: bool, now: Instant) {
        let p = piece.get();
        if self.state.get(p as usize) != Some(&HASHING) {
            return;
        }
        let partial = self.partials.remove(&p);
        if !ok {
            self.stats.hash_failures += 1;
            let owners = partial.map(|pt| pt.owners).unwrap_or_default();
            let mut seen: Vec<IpAddr> = Vec::new();
            for ip in owners.iter().flatten() {
                if !seen.contains(ip) {
                    seen.push(*ip);
                }
            }
            for ip in seen {
                let strikes = self.hash_strikes.entry(ip).or_insert(0);
                *strikes += 1;
                if *strikes >= self.config.max_hash_failures {
                    self.ban(
                        ip,
                        format!(
                            "sent data for {} pieces that failed their hash",
                            self.config.max_hash_failures
                        ),
                    );
                }
            }
            log::warn!("piece {p} failed its hash check; downloading it again");
            if self.failed.contains_key(&p) {
                // Already have the block hashes of an earlier bad copy.
                self.state[p as usize] = MISSING;
            } else {
                self.state[p as usize] = CHECKING_FAILED;
                self.failed_owners.insert(p, owners);
                self.out.push(Out::HashBlocks(piece));
            }
            self.refill_all(now);
            return;
        }
        self.state[p as usize] = HAVE;
        self.have.set(p);
        self.stats.pieces_downloaded += 1;
        if let Some(record) = self.failed.remove(&p) {
            self.passed_after_failure.insert(p, record);
            self.out.push(Out::HashBlocks(piece));
        }
        self.out.push(Out::Verified(piece));
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in &keys {
            self.out.push(Out::Send(*key, Message::Have(p)));
            if let Some(peer) = self.peers.get_mut(key) {
                if peer.has.get(p) {
                    peer.interesting = peer.interesting.saturating_sub(1);
                }
            }
        }
        if self.have.is_full() {
            self.download_enabled = false;
            self.out.push(Out::Complete);
            for key in &keys {
                let both_seeds = self.peers.get(key).is_some_and(|peer| peer.has.is_full());
                if both_seeds {
                    self.disconnect(*key, Disconnect::BothSeeds);
                }
            }
        }
        for key in keys {
            self.update_interest(key);
        }
    }

    /// A written piece could not be read back for hashing (a disk problem,
    /// not the peers' fault): download it again, blame nobody.
    pub fn on_hash_io_error(&mut self, piece: PieceIdx, now: Instant) {
        let p = piece.get();
        if self.state.get(p as usize) == Some(&HASHING) {
            self.partials.remove(&p);
            self.state[p as usize] = MISSING;
            self.refill_all(now);
        }
    }

    /// A verified piece's data is not on disk after all (a sync failed and
    /// reading it back failed its hash): it is missing again and will be
    /// downloaded once downloading is on. Requests for it are no longer
    /// served, queued ones dropped (BEP 3 has no message to take a `have`
    /// back).
    pub fn lose_piece(&mut self, piece: PieceIdx, now: Instant) {
        let p = piece.get();
        if self.state.get(p as usize) != Some(&HAVE) {
            return;
        }
        self.state[p as usize] = MISSING;
        self.have.clear(p);
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in &keys {
            if let Some(peer) = self.peers.get_mut(key) {
                if peer.has.get(p) {
                    peer.interesting += 1;
                }
                peer.upload_queue.retain(|q| q.index != p);
            }
        }
        for key in keys {
            self.update_interest(key);
        }
        self.refill_all(now);
    }

    /// A sync failed: blocks written before it may be gone whatever a later
    /// sync says, so pieces not verified yet start over (their written
    /// blocks are free again; a piece being hashed is missing again, and
    /// its hash result is ignored).
    pub fn forget_unverified_writes(&mut self, now: Instant) {
        let mut hashing = Vec::new();
        for (&p, partial) in self.partials.iter_mut() {
            if self.state.get(p as usize) == Some(&HASHING) {
                hashing.push(p);
                continue;
            }
            for (block, owner) in partial.blocks.iter_mut().zip(partial.owners.iter_mut()) {
                if matches!(*block, Block::Received | Block::Written) {
                    *block = Block::Free;
                    *owner = None;
                }
            }
            partial.n_written = 0;
        }
        for p in hashing {
            self.partials.remove(&p);
            self.state[p as usize] = MISSING;
        }
        self.refill_all(now);
    }

    /// The per-block hashes of a piece (after a failure, or after it passed
    /// following a failure).
    pub fn on_block_hashes(&mut self, piece: PieceIdx, digests: Vec<Digest>, now: Instant) {
        let p = piece.get();
        if let Some(owners) = self.failed_owners.remove(&p) {
            let record = owners.into_iter().zip(digests).collect();
            self.failed.insert(p, record);
            if self.state.get(p as usize) == Some(&CHECKING_FAILED) {
                self.state[p as usize] = MISSING;
            }
            self.refill_all(now);
        } else if let Some(bad) = self.passed_after_failure.remove(&p) {
            let mut liars: Vec<IpAddr> = Vec::new();
            for ((owner, bad_digest), good) in bad.iter().zip(digests.iter()) {
                if let Some(ip) = owner {
                    if bad_digest != good && !liars.contains(ip) {
                        liars.push(*ip);
                    }
                }
            }
            for ip in liars {
                self.ban(ip, format!("sent corrupt data for piece {p}"));
            }
        }
    }

    /// A disk read for a failed-piece check could not be done: forget the record.
    pub fn on_block_hashes_failed(&mut self, piece: PieceIdx, now: Instant) {
        let p = piece.get();
        self.failed_owners.remove(&p);
        self.passed_after_failure.remove(&p);
        if self.state.get(p as usize) == Some(&CHECKING_FAILED) {
            self.state[p as usize] = MISSING;
        }
        self.refill_all(now);
    }

    fn ban(&mut self, ip: IpAddr, reason: String) {
        self.out.push(Out::Ban(ip, reason));
    }

    fn refill_all(&mut self, now: Instant) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.fill_requests(key, now);
        }
    }

    // ----- uploading -----

    fn on_request(&mut self, key: PeerKey, b: BlockRef) {
        let valid = self.lengths.piece(b.index).is_some_and(|p| {
            b.length > 0
                && b.length <= BLOCK_SIZE
                && u64::from(b.begin) + u64::from(b.length) <= u64::from(self.lengths.piece_size(p))
        });
        if !valid {
            return self.disconnect(key, Disconnect::RequestOutside(b));
        }
        let have = self.have.get(b.index);
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let full = peer.upload_queue.len() >= self.config.max_upload_queue;
        if peer.am_choking || !have || full {
            if peer.fast {
                self.out.push(Out::Send(key, Message::Reject(b)));
            }
            return;
        }
        if !peer.upload_queue.contains(&b) {
            peer.upload_queue.push_back(b);
        }
        self.pump_uploads(key);
    }

    /// Issues disk reads for queued requests, a few at a time.
    pub fn pump_uploads(&mut self, key: PeerKey) {
        let max = self.config.max_reads_per_peer;
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        while peer.reads.len() < max {
            let Some(b) = peer.upload_queue.pop_front() else {
                break;
            };
            peer.reads.push((b, true));
            self.out.push(Out::Read {
                peer: key,
                block: b,
            });
        }
    }

    /// A block read for `key` finished: true when it should be sent (the
    /// peer is still there, unchoked, and did not cancel).
    pub fn on_read_done(&mut self, key: PeerKey, block: BlockRef) -> bool {
        let Some(peer) = self.peers.get_mut(&key) else {
            return false;
        };
        let Some(i) = peer.reads.iter().position(|(b, _)| *b == block) else {
            return false;
        };
        let (_, live) = peer.reads.swap_remove(i);
        live && !peer.am_choking
    }

    /// `len` payload bytes were queued to `key`'s socket.
    pub fn on_piece_sent(&mut self, key: PeerKey, len: u64, now: Instant) {
        if let Some(peer) = self.peers.get_mut(&key) {
            peer.up.add(len, now);
        }
        self.up.add(len, now);
        self.stats.uploaded += len;
    }

    /// Requests waiting for a disk read slot, for the net thread's backpressure.
    pub fn has_queued_uploads(&self, key: PeerKey) -> bool {
        self.peers
            .get(&key)
            .is_some_and(|p| !p.upload_queue.is_empty())
    }

    // ----- choking -----

    fn unchoked_count(&self) -> usize {
        self.peers.values().filter(|p| !p.am_choking).count()
    }

    fn maybe_unchoke_now(&mut self, key: PeerKey) {
        if self.unchoked_count() < self.config.upload_slots {
            self.set_choke(key, false);
        }
    }

    fn set_choke(&mut self, key: PeerKey, choke: bool) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer.am_choking == choke {
            return;
        }
        peer.am_choking = choke;
        if choke {
            peer.optimistic_since = None;
            let queued: Vec<BlockRef> = peer.upload_queue.drain(..).collect();
            for (b, live) in peer.reads.iter_mut() {
                if *live && peer.fast {
                    self.out.push(Out::Send(key, Message::Reject(*b)));
                }
                *live = false;
            }
            if peer.fast {
                for b in queued {
                    self.out.push(Out::Send(key, Message::Reject(b)));
                }
            }
            self.out.push(Out::Send(key, Message::Choke));
        } else {
            self.out.push(Out::Send(key, Message::Unchoke));
        }
    }

    /// Periodic work: request timeouts, rechoke, optimistic unchoke. Call about once a second.
    pub fn tick(&mut self, now: Instant) {
        // Request timeouts: snub the peer, give its requests to others.
        let timeout = self.config.request_timeout;
        let stalled: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                !p.requests_out.is_empty() && now.saturating_duration_since(p.last_block) > timeout
            })
            .map(|(k, _)| *k)
            .collect();
        for key in stalled {
            if let Some(p) = self.peers.get_mut(&key) {
                log::debug!("peer {} sent nothing for {timeout:?}: snubbed", p.addr);
                p.snubbed = true;
                p.last_block = now;
            }
            self.drop_requests(key, true);
            self.refill_all(now);
        }
        if self.next_rechoke.is_none_or(|t| now >= t) {
            self.next_rechoke = Some(now + self.config.rechoke_interval);
            self.rechoke(now);
        }
        // Keep pipelines full as rates grow.
        self.refill_all(now);
    }

    fn rechoke(&mut self, now: Instant) {
        let seeding = self.have.is_full() || !self.download_enabled;
        let mut ranked: Vec<(PeerKey, u64)> = Vec::new();
        for (&key, peer) in self.peers.iter_mut() {
            if !peer.peer_interested {
                continue;
            }
            if !seeding && peer.snubbed {
                continue;
            }
            let rate = if seeding {
                peer.up.per_second(now)
            } else {
                peer.down.per_second(now)
            };
            ranked.push((key, rate));
        }
        crate::sort::sort_by(&mut ranked, |a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let regular = self.config.upload_slots.saturating_sub(1).max(1);
        let mut unchoke: Vec<PeerKey> = ranked.iter().take(regular).map(|(k, _)| *k).collect();
        // Optimistic unchoke: keep the current one until its time is up.
        let current_opt = self
            .peers
            .iter()
            .find(|(_, p)| p.optimistic_since.is_some())
            .map(|(k, _)| *k);
        let rotate = self.next_optimistic.is_none_or(|t| now >= t) || current_opt.is_none();
        let mut optimistic =
            current_opt.filter(|k| !rotate && self.peers.get(k).is_some_and(|p| p.peer_interested));
        if optimistic.is_none() {
            let choices: Vec<PeerKey> = ranked
                .iter()
                .map(|(k, _)| *k)
                .filter(|k| !unchoke.contains(k))
                .collect();
            if !choices.is_empty() {
                let pick = choices[(self.rand() % choices.len() as u64) as usize];
                optimistic = Some(pick);
                self.next_optimistic = Some(now + self.config.optimistic_interval);
            }
        }
        for p in self.peers.values_mut() {
            p.optimistic_since = None;
        }
        if let Some(k) = optimistic {
            if let Some(p) = self.peers.get_mut(&k) {
                p.optimistic_since = Some(now);
            }
            unchoke.push(k);
        }
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            let interested = self.peers.get(&key).is_some_and(|p| p.peer_interested);
            // Uninterested peers are left unchoked if they were (cheap, and
            // they may become interested); interested ones follow the ranking.
            if interested {
                self.set_choke(key, !unchoke.contains(&key));
            }
        }
    }

    // ----- status -----

    /// Bytes received from and sent to a connected peer: (down, up).
    pub fn peer_transfer(&self, key: PeerKey) -> Option<(u64, u64)> {
        self.peers.get(&key).map(|p| (p.down.total, p.up.total))
    }

    /// The UDP port of the peer's DHT node (BEP 5 `port` message), if it sent one.
    pub fn dht_port(&self, key: PeerKey) -> Option<u16> {
        self.peers.get(&key).and_then(|p| p.dht_port)
    }

    /// The DHT nodes of the connected peers that sent a `port` message:
    /// their IP address with that port (what the DHT driver pings).
    pub fn dht_nodes(&self) -> impl Iterator<Item = (PeerKey, SocketAddr)> + '_ {
        self.peers.iter().filter_map(|(&key, p)| {
            p.dht_port
                .map(|port| (key, SocketAddr::new(p.addr.ip(), port)))
        })
    }

    /// What a connected peer does for us, for choosing the connection to
    /// drop when the slots are full.
    pub fn peer_use(&self, key: PeerKey, now: Instant) -> Option<PeerUse> {
        let p = self.peers.get(&key)?;
        Some(PeerUse {
            interest: u8::from(p.am_interested) + u8::from(p.peer_interested),
            transferring: !p.requests_out.is_empty()
                || !p.upload_queue.is_empty()
                || !p.reads.is_empty()
                || p.down.moved_recently(now)
                || p.up.moved_recently(now),
            moved: p.down.total + p.up.total,
        })
    }

    /// We are waiting for blocks we requested from this peer.
    pub fn has_requests_to(&self, key: PeerKey) -> bool {
        self.peers
            .get(&key)
            .is_some_and(|p| !p.requests_out.is_empty())
    }

    /// The peer has told us it has every piece.
    pub fn peer_is_seed(&self, key: PeerKey) -> bool {
        self.peers.get(&key).is_some_and(|p| p.has.is_full())
    }

    pub fn peer_infos(&mut self, now: Instant) -> Vec<PeerInfo> {
        let n = self.lengths.n_pieces().max(1);
        let mut out = Vec::new();
        for (&key, p) in self.peers.iter_mut() {
            let mut flags = String::new();
            if !p.requests_out.is_empty() {
                flags.push('D');
            }
            if !p.reads.is_empty() || !p.upload_queue.is_empty() {
                flags.push('U');
            }
            if p.am_choking {
                flags.push('c');
            }
            if p.peer_choking {
                flags.push('C');
            }
            if p.am_interested {
                flags.push('i');
            }
            if p.peer_interested {
                flags.push('I');
            }
            if p.snubbed {
                flags.push('S');
            }
            if p.optimistic_since.is_some() {
                flags.push('O');
            }
            out.push(PeerInfo {
                key,
                addr: p.addr,
                download_rate: p.down.per_second(now),
                upload_rate: p.up.per_second(now),
                downloaded: p.down.total,
                uploaded: p.up.total,
                progress: f64::from(p.has.count()) / f64::from(n),
                flags,
            });
        }
        crate::sort::sort_by_key(&mut out, |p| p.addr);
        out
    }
}

#[cfg(test)]
mod tests;
