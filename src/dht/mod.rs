//! The Mainline DHT (BEP 5, with BEP 42 node ids, BEP 43 read-only mode
//! and BEP 32 for IPv6): the public BitTorrent network's tracker-less
//! peer discovery.
//!
//! Sans I/O like `overlay` and `swarm`: [`Dht`] takes datagrams, their
//! source and `now`, and hands back datagrams to send ([`Dht::poll_transmit`])
//! and [`Event`]s ([`Dht::poll_event`]). One `Dht` serves one address
//! family; the daemon runs one per UDP socket family. The net thread feeds
//! it the datagrams `net::udp::classify` routes as KRPC; tests drive
//! thousands of them in a simulated network with fake time.
//!
//! This file is the boundary the engine uses; the protocol is behind it:
//! `krpc` (messages), `table` (routing table), `store` (tokens, announced
//! peers), `lookup` (one iterative lookup) and `node` (the state machine
//! that ties them: queries answered, transactions, timers, votes).
//!
//! BEP 42 choice: our id follows our voted external address, and
//! compliant nodes are preferred when a bucket's replacement is chosen,
//! but non-compliant nodes are accepted (many real nodes are), so a
//! spoofed id costs an attacker a place in our table only as long as it
//! answers from that address.

mod krpc;
mod lookup;
mod node;
mod store;
mod table;

pub use krpc::{Body, Message, ParseError, Query, Response, Want, MAX_DATAGRAM};

use crate::metainfo::InfoHash;
use crate::rand::Rng;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// A DHT node id (160 bits; BEP 42 ties it to the node's external IP).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; 20]);

impl NodeId {
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        crate::hash::to_hex(&self.0)
    }
}

impl std::fmt::Debug for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeId({})", &self.to_hex()[..12])
    }
}

/// Settings of one DHT node.
#[derive(Clone, Debug)]
pub struct Config {
    /// The BitTorrent port we announce (`announce_peer` with
    /// `implied_port` 0 and this port).
    pub peer_port: u16,
    /// BEP 43: we cannot be reached (no answers to our queries' sources,
    /// or told so): queries carry `ro=1` and we answer none.
    pub read_only: bool,
    /// Peers stored per info-hash (announces we received): what one
    /// get_peers answer holds.
    pub max_peers_per_hash: usize,
    /// Info-hashes we store peers for. With `max_peers_per_hash`, at most
    /// 25,000 stored peers of 48 bytes: 1.2 MB when full, within what a
    /// small board spends (libtorrent keeps 2,000 × 500 on desktops).
    pub max_hashes: usize,
    /// Queries answered per second from one source address (burst: 4×).
    pub query_rate: u32,
    /// Queries answered per second in all (burst: 4×).
    pub global_query_rate: u32,
    /// How often a tracked torrent is looked up and announced again
    /// (jittered by up to a half more: 15–22 min by default).
    pub announce_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            peer_port: 6881,
            read_only: false,
            max_peers_per_hash: 50,
            max_hashes: 500,
            query_rate: 10,
            global_query_rate: 250,
            announce_interval: Duration::from_secs(15 * 60),
        }
    }
}

/// What happened that the engine acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Peers for a torrent we track or looked up (`values` of get_peers
    /// answers), as they arrive; may repeat addresses across events.
    Peers {
        info_hash: InfoHash,
        peers: Vec<SocketAddr>,
    },
    /// A lookup ended: how many distinct peers it found and to how many
    /// nodes we announced (0 when it was not an announce).
    LookupDone {
        info_hash: InfoHash,
        peers: usize,
        announced: usize,
    },
    /// Our external address as the majority of recent `ip`/`yourip`
    /// votes sees it changed (our id changes with it, BEP 42).
    ExternalIp(IpAddr),
}

/// Counters for `peerlet dht` and /metrics.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Queries we answered, by method.
    pub answered_ping: u64,
    pub answered_find_node: u64,
    pub answered_get_peers: u64,
    pub answered_announce: u64,
    /// Queries dropped by the per-address or global rate limit.
    pub rate_limited: u64,
    /// Datagrams that were not valid KRPC, or answers we did not ask for.
    pub invalid: u64,
    /// Our queries that timed out.
    pub timeouts: u64,
    pub lookups_started: u64,
    pub lookups_done: u64,
    /// announce_peer we sent that were answered.
    pub announces: u64,
    /// Queries we sent (lookups, pings, announces; retries included).
    pub queries_sent: u64,
    /// Answers and errors to our queries.
    pub responses_in: u64,
    pub errors_in: u64,
    /// Datagrams not queued because the outgoing queue was full, or
    /// queries not sent because the transaction table was.
    pub dropped_out: u64,
    /// announce_peer with a token we did not issue (answered 203).
    pub bad_tokens: u64,
    /// Queries dropped because we are read-only (BEP 43).
    pub read_only_dropped: u64,
}

/// A snapshot for `peerlet dht`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub id: NodeId,
    /// Good and questionable nodes per bucket, from the bucket farthest
    /// from our id (index 0) to the nearest.
    pub buckets: Vec<usize>,
    pub nodes: usize,
    /// Lookups in flight.
    pub lookups: usize,
    /// Info-hashes tracked (looked up and announced periodically).
    pub tracked: usize,
    /// Info-hashes we store peers for, and the peers stored.
    pub stored_hashes: usize,
    pub stored_peers: usize,
    pub external_ip: Option<IpAddr>,
    pub read_only: bool,
}

/// A node stays good this long after it answered (BEP 5: 15 minutes).
const GOOD_FOR: Duration = Duration::from_secs(15 * 60);

/// XOR distance (big-endian, comparable).
fn xor(a: &NodeId, b: &NodeId) -> [u8; 20] {
    let mut d = [0u8; 20];
    for (i, x) in d.iter_mut().enumerate() {
        *x = a.0[i] ^ b.0[i];
    }
    d
}

/// Leading zero bits of the distance between `a` and `b` (160 when equal).
fn distance_lz(a: &NodeId, b: &NodeId) -> usize {
    for (i, (x, y)) in a.0.iter().zip(b.0.iter()).enumerate() {
        let d = x ^ y;
        if d != 0 {
            return i * 8 + d.leading_zeros() as usize;
        }
    }
    160
}

/// A finished lookup, for tests and diagnostics ([`Dht::recent_lookups`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupReport {
    pub target: NodeId,
    /// A get_peers lookup (else find_node).
    pub get_peers: bool,
    /// Distinct peers found.
    pub peers: usize,
    /// Hops to the first node that gave values (1: a node of our table).
    pub first_value_hops: Option<u8>,
    /// Queries sent, retries included (announces not counted).
    pub queries: u32,
    pub duration: Duration,
}

/// A sliding-window token bucket (rate per second, burst 4×).
#[derive(Clone, Debug)]
struct RateBucket {
    tokens: f64,
    last: Instant,
}

impl RateBucket {
    fn new(rate: u32, now: Instant) -> RateBucket {
        RateBucket {
            tokens: f64::from(rate.max(1)) * 4.0,
            last: now,
        }
    }

    fn take(&mut self, rate: u32, now: Instant) -> bool {
        let burst = f64::from(rate.max(1)) * 4.0;
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * f64::from(rate)).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One transaction: a query we sent and wait an answer for.
#[derive(Clone, Debug)]
struct Tx {
    to: SocketAddr,
    /// The id we believe is there (None for routers and out-of-band nodes).
    node: Option<NodeId>,
    sent: Instant,
    what: TxKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum TxKind {
    Ping,
    Lookup { lookup: u64, router: bool },
    Announce,
}

#[derive(Clone, Debug)]
struct Tracked {
    announce: bool,
    next: Instant,
}

/// One DHT node.
pub struct Dht {
    id: NodeId,
    config: Config,
    stats: Stats,
    external_ip: Option<IpAddr>,
    /// Our address as the last agreeing voter saw it (never sent to).
    external_addr: Option<SocketAddr>,
    rng: Rng,
    table: table::Table,
    tokens: store::Tokens,
    store: store::PeerStore,
    txs: HashMap<[u8; 4], Tx>,
    lookups: HashMap<u64, lookup::Lookup>,
    next_lookup: u64,
    tracked: HashMap<InfoHash, Tracked>,
    /// When the last lookup of an info-hash began (for `lookup_now`).
    last_begun: HashMap<InfoHash, Instant>,
    routers: Vec<SocketAddr>,
    ping_queue: VecDeque<SocketAddr>,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<Event>,
    per_ip: HashMap<IpAddr, RateBucket>,
    global: RateBucket,
    /// (voter IP, our address as it sees it), the latest per voter.
    votes: VecDeque<(IpAddr, SocketAddr)>,
    last_bootstrap: Option<Instant>,
    last_expire: Instant,
    last_maintenance: Instant,
    recent: VecDeque<LookupReport>,
}

impl Dht {
    /// A node with id `id` (the engine derives it with [`id_for_ip`] when
    /// it knows its external address, else at random); `seed` seeds
    /// transaction ids, token secrets and lookups.
    pub fn new(id: NodeId, config: Config, seed: [u8; 32], now: Instant) -> Dht {
        let mut rng = Rng::new(seed);
        let tokens = store::Tokens::new(&mut rng, now);
        let store = store::PeerStore::new(config.max_peers_per_hash, config.max_hashes);
        let global = RateBucket::new(config.global_query_rate, now);
        Dht {
            id,
            config,
            stats: Stats::default(),
            external_ip: None,
            external_addr: None,
            rng,
            table: table::Table::new(id, now),
            tokens,
            store,
            txs: HashMap::new(),
            lookups: HashMap::new(),
            next_lookup: 1,
            tracked: HashMap::new(),
            last_begun: HashMap::new(),
            routers: Vec::new(),
            ping_queue: VecDeque::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            per_ip: HashMap::new(),
            global,
            votes: VecDeque::new(),
            last_bootstrap: None,
            last_expire: now,
            last_maintenance: now,
            recent: VecDeque::new(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn summary(&self, now: Instant) -> Summary {
        let buckets: Vec<usize> = self
            .table
            .buckets
            .iter()
            .map(|b| b.nodes.iter().filter(|n| !n.is_bad()).count())
            .collect();
        let _ = now;
        Summary {
            id: self.id,
            nodes: buckets.iter().sum(),
            buckets,
            lookups: self.lookups.len(),
            tracked: self.tracked.len(),
            stored_hashes: self.store.hashes(),
            stored_peers: self.store.peers(),
            external_ip: self.external_ip,
            read_only: self.config.read_only,
        }
    }

    /// Our external address as voted by the nodes that answered us.
    pub fn external_ip(&self) -> Option<IpAddr> {
        self.external_ip
    }

    /// A datagram `net::udp::classify` routed as KRPC.
    pub fn on_datagram(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) {
        self.stats.packets_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        self.handle(bytes, from, now);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        let (to, bytes) = self.out.pop_front()?;
        self.stats.packets_out += 1;
        self.stats.bytes_out += bytes.len() as u64;
        Some((to, bytes))
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Timers: retransmissions and timeouts, lookups, bucket refresh,
    /// re-announces, token rotation. Call at least once a second.
    pub fn tick(&mut self, now: Instant) {
        self.on_tick(now);
    }

    /// A router or node to start from (resolved by a worker; ids unknown):
    /// pinged / asked for our own id.
    pub fn add_bootstrap(&mut self, addr: SocketAddr, now: Instant) {
        if !node::routable(&addr) || self.routers.contains(&addr) {
            return;
        }
        if self.routers.len() >= node::MAX_ROUTERS {
            self.routers.remove(0);
        }
        self.routers.push(addr);
        self.last_bootstrap = None;
        self.maybe_bootstrap(now);
    }

    /// A node heard of out of band (a peer's wire `port` message, a
    /// magnet's `x.pe` or a .torrent's `nodes`): pinged, added if it answers.
    pub fn add_node(&mut self, addr: SocketAddr, now: Instant) {
        self.queue_ping(addr);
        self.drain_pings(now);
    }

    /// Nodes saved by the last run (`encode_saved`).
    pub fn add_saved(&mut self, nodes: &[(NodeId, SocketAddr)], now: Instant) {
        for (_, addr) in nodes.iter().take(node::MAX_PING_QUEUE) {
            self.queue_ping(*addr);
        }
        self.drain_pings(now);
    }

    /// Good nodes to save, nearest buckets first.
    pub fn saved_nodes(&self, max: usize) -> Vec<(NodeId, SocketAddr)> {
        let mut out = Vec::new();
        for b in self.table.buckets.iter().rev() {
            for n in b
                .nodes
                .iter()
                .filter(|n| n.last_reply.is_some() && !n.is_bad())
            {
                if out.len() >= max {
                    return out;
                }
                out.push((n.id, n.addr));
            }
        }
        out
    }

    /// Look up and announce `info_hash` now and every
    /// `announce_interval` until [`Dht::untrack`]; `announce` false only
    /// looks up (a torrent we do not serve yet still announces: the
    /// engine passes true for every public torrent it downloads or seeds).
    pub fn track(&mut self, info_hash: InfoHash, announce: bool, now: Instant) {
        if self.tracked.len() >= node::MAX_TRACKED && !self.tracked.contains_key(&info_hash) {
            return;
        }
        self.tracked.insert(
            info_hash,
            Tracked {
                announce,
                next: now,
            },
        );
        self.run_tracked(now);
    }

    pub fn untrack(&mut self, info_hash: &InfoHash) {
        self.tracked.remove(info_hash);
    }

    /// Look `info_hash` up again now, if its last lookup began at least
    /// a minute ago (a torrent running low on peers). False when refused.
    pub fn lookup_now(&mut self, info_hash: &InfoHash, now: Instant) -> bool {
        if let Some(t) = self.last_begun.get(info_hash) {
            if now.saturating_duration_since(*t) < node::LOOKUP_NOW_GAP {
                return false;
            }
        }
        let announce = self.tracked.get(info_hash).is_some_and(|t| t.announce);
        self.start_get_peers(*info_hash, announce, now)
    }

    /// BEP 43: turn read-only mode on or off.
    pub fn set_read_only(&mut self, read_only: bool) {
        self.config.read_only = read_only;
    }

    /// Our external address learned elsewhere (port mapping, a tracker's
    /// `external ip`): counts as a strong vote.
    pub fn set_external_ip(&mut self, ip: IpAddr, now: Instant) {
        self.votes.clear();
        self.change_external_ip(ip, false, now);
    }

    /// The last finished lookups (at most 64), oldest first.
    pub fn recent_lookups(&self) -> impl Iterator<Item = &LookupReport> {
        self.recent.iter()
    }

    /// Memory proxies: routing-table entries (replacements included),
    /// stored peers, open transactions, lookups.
    pub fn footprint(&self) -> (usize, usize, usize, usize) {
        (
            self.table.len() + self.table.replacements(),
            self.store.peers(),
            self.txs.len(),
            self.lookups.len(),
        )
    }
}

/// BEP 42: the masks applied to the address before the CRC.
const V4_MASK: [u8; 4] = [0x03, 0x0f, 0x3f, 0xff];
const V6_MASK: [u8; 8] = [0x01, 0x03, 0x07, 0x0f, 0x1f, 0x3f, 0x7f, 0xff];

/// BEP 42: the CRC-32C of the masked address with `r` (0..8) in the top bits.
fn bep42_crc(ip: &IpAddr, r: u8) -> u32 {
    let r = r & 7;
    match ip {
        IpAddr::V4(v4) => {
            let mut b = v4.octets();
            for (x, m) in b.iter_mut().zip(V4_MASK) {
                *x &= m;
            }
            b[0] |= r << 5;
            crate::hash::crc32c(&b)
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let mut b = [0u8; 8];
            for ((x, m), s) in b.iter_mut().zip(V6_MASK).zip(o) {
                *x = s & m;
            }
            b[0] |= r << 5;
            crate::hash::crc32c(&b)
        }
    }
}

/// BEP 42: addresses exempt from the id rule (loopback, private, link-local).
pub fn is_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified()
        }
        IpAddr::V6(v6) => {
            let s = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (s & 0xfe00) == 0xfc00
                || (s & 0xffc0) == 0xfe80
        }
    }
}

/// BEP 42: a node id for external address `ip`, with random bits from `r`
/// (`r[19]`'s low 3 bits are the spec's `rand`).
pub fn id_for_ip(ip: IpAddr, r: [u8; 20]) -> NodeId {
    let crc = bep42_crc(&ip, r[19]);
    let mut id = r;
    id[0] = (crc >> 24) as u8;
    id[1] = (crc >> 16) as u8;
    id[2] = ((crc >> 8) as u8 & 0xf8) | (r[2] & 7);
    NodeId(id)
}

/// BEP 42: whether `id` is valid for a node at `ip` (its first 21 bits
/// follow from the address and `id[19]`); local addresses always pass.
pub fn id_matches_ip(id: &NodeId, ip: &IpAddr) -> bool {
    if is_local(ip) {
        return true;
    }
    let crc = bep42_crc(ip, id.0[19]);
    id.0[0] == (crc >> 24) as u8
        && id.0[1] == (crc >> 16) as u8
        && (id.0[2] & 0xf8) == ((crc >> 8) as u8 & 0xf8)
}

/// The first bytes of a saved table (`encode_saved`), version 1.
const SAVED_MAGIC: &[u8] = b"peerlet-dht\x01";

/// The saved routing table (`<state>/dht_nodes`): bytes to write.
///
/// Format: [`SAVED_MAGIC`], then one record per node: a family byte (4 or
/// 6), the 20-byte id, the address (4 or 16 bytes), the port (2 bytes,
/// big-endian).
pub fn encode_saved(nodes: &[(NodeId, SocketAddr)]) -> Vec<u8> {
    let mut out = SAVED_MAGIC.to_vec();
    for (id, addr) in nodes {
        out.push(if addr.is_ipv4() { 4 } else { 6 });
        out.extend_from_slice(&id.0);
        krpc::emit_compact_addr(addr, &mut out);
    }
    out
}

/// The saved routing table read back: at most `max` entries; damaged
/// bytes give what could be read, never an error.
pub fn decode_saved(bytes: &[u8], max: usize) -> Vec<(NodeId, SocketAddr)> {
    let mut out = Vec::new();
    let Some(mut rest) = bytes.strip_prefix(SAVED_MAGIC) else {
        return out;
    };
    while out.len() < max {
        let len = match rest.first() {
            Some(4) => 1 + 20 + 6,
            Some(6) => 1 + 20 + 18,
            _ => break,
        };
        let Some((rec, tail)) = rest.split_at_checked(len) else {
            break;
        };
        rest = tail;
        let Some(id) = rec.get(1..21).and_then(|b| <[u8; 20]>::try_from(b).ok()) else {
            break;
        };
        let Some(addr) = rec.get(21..).and_then(krpc::parse_compact_addr) else {
            break;
        };
        out.push((NodeId(id), addr));
    }
    out
}

#[cfg(test)]
mod tests;
