//! The overlay state machine (sans I/O).
//!
//! Rules that keep a node safe among strangers:
//! - Only a ping is answered without a token, and only when the ping is at
//!   least as long as the pong (senders pad pings), so a forged source
//!   gets no amplification. Every other request carries the token from our
//!   pong to its address (`k`): proof that the sender receives at that address.
//! - A `nodes` answer is taken only for a `getnodes` we sent to that address
//!   with that `tx`; a hit only for a query id we saw, from a node we sent
//!   that query to.
//! - Queries are limited per source address (token bucket), forwarded
//!   queries per neighbour; duplicates are dropped by query id (a bounded,
//!   expiring cache); TTL is capped.

use super::content::ContentTable;
use super::msg::{self, flags, Body, HitResult, Holder, Item, Packet, QueryId, Target, Token, Tx};
use super::table::{self, RoutingTable, Source};
use super::words;
use super::{NodeId, Rng};
use crate::hash::Sha1;
use crate::metainfo::InfoHash;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Settings of one node.
#[derive(Clone, Debug)]
pub struct Config {
    /// Our BitTorrent (TCP) port, told to others.
    pub tcp_port: u16,
    /// Our overlay (UDP) port, put in beacons and holder records.
    pub udp_port: u16,
    /// Routing-table size.
    pub capacity: usize,
    /// Neighbours a query floods to.
    pub degree: usize,
    /// TTL of our own searches.
    pub default_ttl: u8,
    /// Larger TTLs received are cut to this.
    pub max_ttl: u8,
    pub content_capacity: usize,
    /// Query ids remembered (duplicates, reverse paths).
    pub seen_capacity: usize,
    /// Queries accepted per second from one source address (burst: 4×).
    pub query_rate: u32,
    /// Queries forwarded per second to one neighbour (burst: 4×); at most
    /// `query_rate`, so that what we forward is what the next node accepts.
    pub forward_rate: u32,
    /// Other requests (getnodes, announce) accepted per second from one
    /// source address (burst: 4×).
    pub request_rate: u32,
    /// Queries handled per second by this node in all (burst: 4×): bounds
    /// the work a crowd of sources can cause.
    pub global_query_rate: u32,
    pub announce_interval: Duration,
    pub exchange_interval: Duration,
    /// How long a search (ours or forwarded) stays open for hits.
    pub search_lifetime: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tcp_port: 6881,
            udp_port: 6881,
            capacity: 256,
            degree: 8,
            default_ttl: 4,
            max_ttl: 7,
            content_capacity: 4096,
            seen_capacity: 4096,
            query_rate: 10,
            forward_rate: 5,
            request_rate: 2,
            global_query_rate: 50,
            announce_interval: Duration::from_secs(600),
            exchange_interval: Duration::from_secs(60),
            search_lifetime: Duration::from_secs(60),
        }
    }
}

/// Our search's handle.
pub type SearchId = u64;

/// What the overlay tells its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A result for a search, or new holders of one already reported.
    Result {
        search: SearchId,
        item: Item,
        /// Holders not reported before for this search.
        holders: Vec<Holder>,
    },
}

/// Counters (since start).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Packets sent and received, by kind (in the order of [`msg::KINDS`]).
    pub sent: [u64; 8],
    pub received: [u64; 8],
    pub malformed: u64,
    pub bad_token: u64,
    pub rate_limited: u64,
    pub duplicates: u64,
    /// Hits for a query id we do not know or from a node we did not ask.
    pub unknown_hits: u64,
    /// Hit results that did not answer the query they came for.
    pub mismatched_hits: u64,
    pub unsolicited: u64,
    pub ttl_capped: u64,
    pub forwarded: u64,
    pub forward_limited: u64,
    /// Pings left unanswered because they were shorter than the pong.
    pub unpadded: u64,
    /// Our searches sent to every neighbour...
    pub searches_flooded: u64,
    /// ...and those sent straight to known holders.
    pub searches_direct: u64,
}

impl Stats {
    /// Packets dropped (or forwards skipped), by reason.
    pub fn drops(&self) -> [(&'static str, u64); 9] {
        [
            ("malformed", self.malformed),
            ("bad_token", self.bad_token),
            ("rate_limited", self.rate_limited),
            ("duplicates", self.duplicates),
            ("unknown_hits", self.unknown_hits),
            ("mismatched_hits", self.mismatched_hits),
            ("unsolicited", self.unsolicited),
            ("unpadded", self.unpadded),
            ("forward_limited", self.forward_limited),
        ]
    }
}

/// Pings are padded to about this length, so that they are at least as
/// long as any pong (checked by a test).
const PING_LEN: usize = 140;
/// Holders asked directly by a search for a known info-hash.
const DIRECT_HOLDERS: usize = 8;
/// Without a hit from a direct holder for this long, the search floods.
const DIRECT_PATIENCE: Duration = Duration::from_secs(3);
/// Hit packets taken from each node a query went to.
const MAX_HITS_PER_HOP: u32 = 8;
/// Holders reported per info-hash, and info-hashes per search.
const MAX_REPORTED_HOLDERS: usize = msg::MAX_HOLDERS;
const MAX_REPORTED_ITEMS: usize = 64;
/// Source addresses tracked by the rate limiter.
const MAX_BUCKETS: usize = 4096;
/// One neighbour is replaced by another live node this often.
const NEIGHBOUR_ROTATION: Duration = Duration::from_secs(30);
/// Items announced to each neighbour per period (queries still find the rest).
const MAX_ANNOUNCED: usize = 256;
/// Token secrets change this often (a token stays good for two periods).
const SECRET_PERIOD: Duration = Duration::from_secs(600);

#[derive(Clone, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn take(&mut self, rate: u32, now: Instant) -> bool {
        let burst = f64::from(rate.max(1) * 4);
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

fn take(buckets: &mut HashMap<IpAddr, Bucket>, ip: IpAddr, rate: u32, now: Instant) -> bool {
    if !buckets.contains_key(&ip) && buckets.len() >= MAX_BUCKETS {
        // Forget sources whose bucket has refilled: they are idle.
        let full = f64::from(rate.max(1) * 4);
        buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * f64::from(rate) < full
        });
        if buckets.len() >= MAX_BUCKETS {
            return false;
        }
    }
    buckets
        .entry(ip)
        .or_insert(Bucket {
            tokens: f64::from(rate.max(1) * 4),
            last: now,
        })
        .take(rate, now)
}

/// The reverse path of a query.
#[derive(Debug)]
struct Route {
    /// Who sent it to us; `None` for our own searches.
    from: Option<SocketAddr>,
    search: Option<SearchId>,
    target: Target,
    /// Where we sent it, with the hit packets each sent back: hits are
    /// taken only from these, at most [`MAX_HITS_PER_HOP`] from each.
    sent_to: Vec<(SocketAddr, u32)>,
    expires: Instant,
}

impl Route {
    fn sent(&mut self, to: SocketAddr) {
        if !self.sent_to.iter().any(|(a, _)| *a == to) {
            self.sent_to.push((to, 0));
        }
    }
}

fn target_matches(target: &Target, item: &Item) -> bool {
    match target {
        Target::Hash(ih) => item.info_hash == *ih,
        Target::Words(w) => words::matches(&words::words(w), &item.name),
    }
}

#[derive(Debug)]
struct Search {
    target: Target,
    qid: QueryId,
    started: Instant,
    expires: Instant,
    /// Holders reported so far, per info-hash.
    reported: HashMap<InfoHash, HashSet<Holder>>,
    /// Direct holders still waiting for a pong before we can ask them.
    direct_pending: Vec<SocketAddr>,
    direct: bool,
    flooded: bool,
    /// A hit came from one of the direct holders.
    direct_answered: bool,
}

/// One overlay node.
#[derive(Debug)]
pub struct Overlay {
    id: NodeId,
    config: Config,
    rng: Rng,
    secret: [u8; 16],
    old_secret: [u8; 16],
    secret_at: Instant,
    table: RoutingTable,
    content: ContentTable,
    local: Vec<Item>,
    announced_to: HashSet<SocketAddr>,
    next_announce: Instant,
    next_exchange: Instant,
    next_expire: Instant,
    next_rotate: Instant,
    pending_nodes: HashMap<SocketAddr, (Tx, Instant)>,
    routes: HashMap<QueryId, Route>,
    route_order: VecDeque<QueryId>,
    /// Our own searches' routes, apart, so that a flood of forwarded
    /// queries cannot push them out while they are open.
    own_routes: HashMap<QueryId, Route>,
    /// Queries handled per second by this node in all (answer and forward).
    query_budget: Bucket,
    searches: HashMap<SearchId, Search>,
    next_search: SearchId,
    source_buckets: HashMap<IpAddr, Bucket>,
    request_buckets: HashMap<IpAddr, Bucket>,
    forward_buckets: HashMap<IpAddr, Bucket>,
    external: Option<SocketAddr>,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<Event>,
    stats: Stats,
}

fn kind_index(kind: &str) -> usize {
    msg::KINDS.iter().position(|k| *k == kind).unwrap_or(0)
}

/// An address we may put in our tables: the PEX rule (a real unicast
/// address and port; loopback only when heard from loopback).
fn acceptable(addr: &SocketAddr, from: &SocketAddr) -> bool {
    crate::wire::connectable(*addr, from.ip())
}

impl Overlay {
    /// A node with id `id`; `seed` comes from the operating system's
    /// randomness (it keys the address tokens and the id generator).
    pub fn new(id: NodeId, config: Config, seed: [u8; 32], now: Instant) -> Overlay {
        let mut rng = Rng::new(seed);
        let secret = rng.bytes();
        let old_secret = rng.bytes();
        let budget = f64::from(config.global_query_rate) * 4.0;
        Overlay {
            id,
            table: RoutingTable::new(config.capacity, config.degree),
            content: ContentTable::new(config.content_capacity),
            config,
            rng,
            secret,
            old_secret,
            secret_at: now,
            local: Vec::new(),
            announced_to: HashSet::new(),
            next_announce: now,
            next_exchange: now,
            next_expire: now,
            next_rotate: now + NEIGHBOUR_ROTATION,
            pending_nodes: HashMap::new(),
            routes: HashMap::new(),
            route_order: VecDeque::new(),
            own_routes: HashMap::new(),
            query_budget: Bucket {
                tokens: budget,
                last: now,
            },
            searches: HashMap::new(),
            next_search: 1,
            source_buckets: HashMap::new(),
            request_buckets: HashMap::new(),
            forward_buckets: HashMap::new(),
            external: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    pub fn content(&self) -> &ContentTable {
        &self.content
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Our address as the last pong saw it.
    pub fn external_addr(&self) -> Option<SocketAddr> {
        self.external
    }

    /// Searches still open.
    pub fn open_searches(&self) -> usize {
        self.searches.len()
    }

    /// Query ids remembered for duplicate suppression and reverse paths.
    pub fn routes(&self) -> usize {
        self.routes.len()
    }

    /// Rate-limiter entries for query sources.
    pub fn tracked_sources(&self) -> usize {
        self.source_buckets.len()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// A node to contact (configuration, `--bootstrap`); kept even when it fails.
    pub fn add_bootstrap(&mut self, addr: SocketAddr, now: Instant) {
        self.table.add(addr, None, Source::Bootstrap, now);
    }

    /// Nodes saved by the last run: pinged again at once.
    pub fn add_saved(&mut self, nodes: &[(NodeId, SocketAddr)], now: Instant) {
        for (id, addr) in nodes {
            if *id != self.id {
                self.table.add(*addr, Some(*id), Source::Saved, now);
            }
        }
    }

    /// The nodes worth saving: verified ones with their ids, at most
    /// `max` (fewest failures first), in address order so that the same
    /// set always gives the same bytes.
    pub fn saved_nodes(&self, max: usize) -> Vec<(NodeId, SocketAddr)> {
        let mut nodes: Vec<&table::Node> = self.table.iter().filter(|n| n.verified()).collect();
        crate::sort::sort_by_key(&mut nodes, |n| (n.failures, n.addr));
        let mut out: Vec<(NodeId, SocketAddr)> = nodes
            .into_iter()
            .take(max)
            .filter_map(|n| Some((n.id?, n.addr)))
            .collect();
        crate::sort::sort_by_key(&mut out, |(_, a)| *a);
        out
    }

    /// What this node holds and shares (public torrents only).
    pub fn set_local(&mut self, mut items: Vec<Item>) {
        crate::sort::sort_by_key(&mut items, |i| i.info_hash);
        if items != self.local {
            self.local = items;
            self.announced_to.clear();
        }
    }

    /// Holders of `ih` known from hits and announcements.
    pub fn holders(&self, ih: &InfoHash, now: Instant) -> Vec<Holder> {
        self.content
            .get(ih, now)
            .map(|(_, hs)| hs)
            .unwrap_or_default()
    }

    fn my_flags(&self) -> i64 {
        flags::SEARCH
            | if self.local.is_empty() {
                0
            } else {
                flags::HOLDS
            }
    }

    /// Our LAN beacon.
    pub fn beacon(&mut self) -> Vec<u8> {
        self.stats.sent[kind_index("beacon")] += 1;
        Packet {
            id: self.id,
            body: Body::Beacon {
                tcp_port: self.config.tcp_port,
                udp_port: self.config.udp_port,
                flags: self.my_flags(),
            },
        }
        .encode()
    }

    fn send(&mut self, to: SocketAddr, body: Body) {
        self.stats.sent[kind_index(body.kind())] += 1;
        let bytes = Packet { id: self.id, body }.encode();
        debug_assert!(bytes.len() <= msg::MAX_PACKET);
        if bytes.len() <= msg::MAX_PACKET {
            self.out.push_back((to, bytes));
        }
    }

    fn token_for(&self, addr: &SocketAddr, secret: &[u8; 16]) -> Token {
        let mut h = Sha1::new();
        h.update(secret);
        match addr.ip() {
            IpAddr::V4(ip) => h.update(&ip.octets()),
            IpAddr::V6(ip) => h.update(&ip.octets()),
        }
        h.update(&addr.port().to_be_bytes());
        let d = h.finish();
        let mut t = [0u8; 8];
        t.copy_from_slice(&d[..8]);
        t
    }

    fn token_ok(&self, addr: &SocketAddr, token: &Token) -> bool {
        self.token_for(addr, &self.secret) == *token
            || self.token_for(addr, &self.old_secret) == *token
    }

    fn ping(&mut self, addr: SocketAddr, now: Instant) {
        let tx: Tx = self.rng.bytes();
        self.table.ping_sent(&addr, tx, now);
        let mut body = Body::Ping {
            tx,
            tcp_port: self.config.tcp_port,
            flags: self.my_flags(),
            pad: 0,
        };
        let len = Packet {
            id: self.id,
            body: body.clone(),
        }
        .encode()
        .len();
        if let Body::Ping { pad, .. } = &mut body {
            // "1:x" + "NNN:" + the padding.
            *pad = PING_LEN.saturating_sub(len + 8);
        }
        self.send(addr, body);
    }

    // ----- input -----

    /// A datagram that came to the LAN beacon socket: only beacons count.
    /// The sender is pinged (at most 32 pings a second go out in all, so
    /// forged beacons cannot turn this node into a flood).
    pub fn on_beacon(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) {
        let packet = match Packet::parse(bytes) {
            Ok(p) => p,
            Err(e) => {
                self.stats.malformed += 1;
                log::debug!("overlay: beacon from {from}: {e}");
                return;
            }
        };
        if packet.id == self.id {
            return;
        }
        let Body::Beacon { udp_port, .. } = packet.body else {
            self.stats.unsolicited += 1;
            return;
        };
        self.stats.received[kind_index("beacon")] += 1;
        let addr = SocketAddr::new(from.ip(), udp_port);
        if acceptable(&addr, &from) {
            self.table.add(addr, Some(packet.id), Source::Beacon, now);
        }
    }

    /// A datagram from `from`.
    pub fn on_packet(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) {
        let packet = match Packet::parse(bytes) {
            Ok(p) => p,
            Err(e) => {
                self.stats.malformed += 1;
                log::debug!("overlay: packet from {from}: {e}");
                return;
            }
        };
        if packet.id == self.id {
            return;
        }
        self.stats.received[kind_index(packet.body.kind())] += 1;
        match packet.body {
            Body::Ping { tx, .. } => {
                let pong = Body::Pong {
                    tx,
                    tcp_port: self.config.tcp_port,
                    flags: self.my_flags(),
                    token: self.token_for(&from, &self.secret),
                    your_addr: from,
                };
                let len = Packet {
                    id: self.id,
                    body: pong.clone(),
                }
                .encode()
                .len();
                if len <= bytes.len() {
                    self.send(from, pong);
                } else {
                    self.stats.unpadded += 1;
                }
                // Not added to the table yet: pinging an unproven source
                // back would amplify a forged ping. Its first request with
                // our token proves the address (see `request_ok`).
            }
            Body::Pong {
                tx,
                tcp_port,
                flags,
                token,
                your_addr,
            } => {
                if self
                    .table
                    .pong(&from, tx, packet.id, tcp_port, flags, token, now)
                {
                    self.external = Some(your_addr);
                    self.send_pending_direct(from, now);
                } else {
                    self.stats.unsolicited += 1;
                }
            }
            Body::Beacon { .. } => {
                // Beacons count only from the LAN socket (`on_beacon`).
                self.stats.unsolicited += 1;
            }
            Body::GetNodes { tx, token, max } => {
                if !self.request_ok(&from, packet.id, &token, false, now) {
                    return;
                }
                let mut live: Vec<(NodeId, SocketAddr)> = self
                    .table
                    .iter()
                    .filter(|n| n.live() && n.addr != from)
                    .filter_map(|n| Some((n.id?, n.addr)))
                    .collect();
                // A random sample, so that different askers learn different nodes.
                let want = usize::from(max).min(msg::MAX_NODES);
                let mut nodes = Vec::new();
                while nodes.len() < want && !live.is_empty() {
                    let i = self.rng.below(live.len());
                    nodes.push(live.swap_remove(i));
                }
                self.send(from, Body::Nodes { tx, nodes });
            }
            Body::Nodes { tx, nodes } => {
                match self.pending_nodes.get(&from) {
                    Some((sent, _)) if *sent == tx => {
                        self.pending_nodes.remove(&from);
                    }
                    _ => {
                        self.stats.unsolicited += 1;
                        return;
                    }
                }
                for (id, addr) in nodes.into_iter().take(msg::MAX_NODES) {
                    if id != self.id && acceptable(&addr, &from) {
                        self.table.add(addr, Some(id), Source::Exchange, now);
                    }
                }
            }
            Body::Announce {
                token,
                tcp_port,
                items,
            } => {
                if !self.request_ok(&from, packet.id, &token, false, now) {
                    return;
                }
                let holder = Holder {
                    ip: from.ip(),
                    tcp_port,
                    udp_port: from.port(),
                };
                for item in &items {
                    self.content.insert(item, holder, now);
                }
            }
            Body::Query {
                token,
                qid,
                ttl,
                hops,
                target,
            } => self.on_query(from, packet.id, token, qid, ttl, hops, target, now),
            Body::Hit { qid, hops, results } => self.on_hit(from, qid, hops, results, now),
        }
    }

    /// A request's token is ours for its address and its source is within its rate.
    /// A request from a proven address may also make it an entry.
    fn request_ok(
        &mut self,
        from: &SocketAddr,
        id: NodeId,
        token: &Token,
        query: bool,
        now: Instant,
    ) -> bool {
        if !self.token_ok(from, token) {
            self.stats.bad_token += 1;
            return false;
        }
        self.table.add(*from, Some(id), Source::Incoming, now);
        let (buckets, rate) = if query {
            (&mut self.source_buckets, self.config.query_rate)
        } else {
            (&mut self.request_buckets, self.config.request_rate)
        };
        if !take(buckets, from.ip(), rate, now) {
            self.stats.rate_limited += 1;
            return false;
        }
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn on_query(
        &mut self,
        from: SocketAddr,
        id: NodeId,
        token: Token,
        qid: QueryId,
        ttl: u8,
        hops: u8,
        target: Target,
        now: Instant,
    ) {
        if self.routes.contains_key(&qid) || self.own_routes.contains_key(&qid) {
            // Checked before the rate limit: copies arriving over other
            // paths are normal and cost the sender nothing.
            self.stats.duplicates += 1;
            return;
        }
        if !self.request_ok(&from, id, &token, true, now) {
            return;
        }
        if !self.query_budget.take(self.config.global_query_rate, now) {
            self.stats.rate_limited += 1;
            return;
        }
        let ttl = if ttl > self.config.max_ttl {
            self.stats.ttl_capped += 1;
            self.config.max_ttl
        } else {
            ttl
        };
        let results = self.answer(&target, now);
        if !results.is_empty() {
            self.send_hits(from, qid, 0, results);
        }
        let mut sent_to: Vec<(SocketAddr, u32)> = Vec::new();
        if ttl > 1 {
            let neighbours: Vec<SocketAddr> = self
                .table
                .neighbours()
                .iter()
                .copied()
                .filter(|n| *n != from)
                .collect();
            for n in neighbours {
                let Some(token) = self.table.get(&n).and_then(|e| e.token) else {
                    continue;
                };
                if !take(
                    &mut self.forward_buckets,
                    n.ip(),
                    self.config.forward_rate,
                    now,
                ) {
                    self.stats.forward_limited += 1;
                    continue;
                }
                self.stats.forwarded += 1;
                self.send(
                    n,
                    Body::Query {
                        token,
                        qid,
                        ttl: ttl - 1,
                        hops: hops.saturating_add(1),
                        target: target.clone(),
                    },
                );
                sent_to.push((n, 0));
            }
        }
        self.remember_route(
            qid,
            Route {
                from: Some(from),
                search: None,
                target,
                sent_to,
                expires: now + self.config.search_lifetime,
            },
        );
    }

    fn remember_route(&mut self, qid: QueryId, route: Route) {
        while self.routes.len() >= self.config.seen_capacity.max(1) {
            match self.route_order.pop_front() {
                Some(old) => {
                    self.routes.remove(&old);
                }
                None => break,
            }
        }
        self.routes.insert(qid, route);
        self.route_order.push_back(qid);
    }

    /// Our answer to a query: what we hold, then what the content table knows.
    fn answer(&self, target: &Target, now: Instant) -> Vec<HitResult> {
        let me = Holder {
            ip: Ipv4Addr::UNSPECIFIED.into(),
            tcp_port: self.config.tcp_port,
            udp_port: self.config.udp_port,
        };
        let mut results: Vec<HitResult> = Vec::new();
        match target {
            Target::Hash(ih) => {
                let mut holders = Vec::new();
                let mut item = None;
                if let Some(mine) = self.local.iter().find(|i| i.info_hash == *ih) {
                    holders.push(me);
                    item = Some(mine.clone());
                }
                if let Some((known, hs)) = self.content.get(ih, now) {
                    holders.extend(hs.into_iter().take(msg::MAX_HOLDERS - holders.len()));
                    item.get_or_insert(known);
                }
                if let Some(item) = item {
                    results.push(HitResult { item, holders });
                }
            }
            Target::Words(w) => {
                let q = words::words(w);
                for mine in self.local.iter().filter(|i| words::matches(&q, &i.name)) {
                    if results.len() >= msg::MAX_ITEMS {
                        break;
                    }
                    results.push(HitResult {
                        item: mine.clone(),
                        holders: vec![me],
                    });
                }
                let room = msg::MAX_ITEMS - results.len();
                for (item, holders) in self.content.search_words(&q, now, room) {
                    match results
                        .iter_mut()
                        .find(|r| r.item.info_hash == item.info_hash)
                    {
                        Some(r) => r.holders.extend(
                            holders
                                .into_iter()
                                .take(msg::MAX_HOLDERS.saturating_sub(r.holders.len())),
                        ),
                        None => results.push(HitResult { item, holders }),
                    }
                }
            }
        }
        results
    }

    /// Sends results as hits, as many per packet as fit.
    fn send_hits(&mut self, to: SocketAddr, qid: QueryId, hops: u8, results: Vec<HitResult>) {
        for body in self.pack(results, |results| Body::Hit { qid, hops, results }) {
            self.send(to, body);
        }
    }

    /// Splits `items` into as few packets made by `body` as fit in
    /// [`msg::MAX_PACKET`], at most [`msg::MAX_ITEMS`] items each (a single
    /// item always fits: names and holder lists are capped).
    fn pack<T: Clone>(&self, items: Vec<T>, body: impl Fn(Vec<T>) -> Body) -> Vec<Body> {
        let mut packets = Vec::new();
        let mut batch: Vec<T> = Vec::new();
        for item in items {
            batch.push(item);
            let too_long = Packet {
                id: self.id,
                body: body(batch.clone()),
            }
            .encode()
            .len()
                > msg::MAX_PACKET;
            if (too_long && batch.len() > 1) || batch.len() > msg::MAX_ITEMS {
                let last = batch.pop();
                packets.push(body(std::mem::take(&mut batch)));
                batch.extend(last);
            }
        }
        if !batch.is_empty() {
            packets.push(body(batch));
        }
        packets
    }

    fn on_hit(
        &mut self,
        from: SocketAddr,
        qid: QueryId,
        hops: u8,
        mut results: Vec<HitResult>,
        now: Instant,
    ) {
        let Some(route) = self
            .routes
            .get_mut(&qid)
            .or_else(|| self.own_routes.get_mut(&qid))
        else {
            self.stats.unknown_hits += 1;
            return;
        };
        let Some(hop) = route.sent_to.iter_mut().find(|(a, _)| *a == from) else {
            self.stats.unknown_hits += 1;
            return;
        };
        if hop.1 >= MAX_HITS_PER_HOP {
            self.stats.unknown_hits += 1;
            return;
        }
        hop.1 += 1;
        let (back, search) = (route.from, route.search);
        // Results that do not answer the query are dropped at every hop:
        // nobody on the path can fill content tables with anything else.
        let before = results.len();
        results.retain(|r| target_matches(&route.target, &r.item));
        self.stats.mismatched_hits += (before - results.len()) as u64;
        for r in &mut results {
            for h in &mut r.holders {
                if hops == 0 && h.ip.is_unspecified() {
                    // The answering node itself: it sent this hit to us.
                    h.ip = from.ip();
                }
            }
            r.holders
                .retain(|h| acceptable(&h.peer_addr(), &from) && h.udp_port != 0);
            for h in &r.holders {
                self.content.insert(&r.item, *h, now);
            }
        }
        results.retain(|r| !r.holders.is_empty());
        if results.is_empty() {
            return;
        }
        match back {
            Some(back) => self.send_hits(back, qid, hops.saturating_add(1), results),
            None => {
                let Some(id) = search else { return };
                if let Some(s) = self.searches.get_mut(&id) {
                    if s.direct && hops == 0 {
                        s.direct_answered = true;
                    }
                }
                for r in results {
                    self.report(id, r.item, r.holders);
                }
            }
        }
    }

    fn report(&mut self, id: SearchId, item: Item, holders: Vec<Holder>) {
        let Some(s) = self.searches.get_mut(&id) else {
            return;
        };
        if !target_matches(&s.target, &item) {
            return;
        }
        if !s.reported.contains_key(&item.info_hash) && s.reported.len() >= MAX_REPORTED_ITEMS {
            return;
        }
        let seen = s.reported.entry(item.info_hash).or_default();
        let first = seen.is_empty();
        let mut new: Vec<Holder> = Vec::new();
        for h in holders {
            if seen.len() >= MAX_REPORTED_HOLDERS {
                break;
            }
            if seen.insert(h) {
                new.push(h);
            }
        }
        if new.is_empty() && !first {
            return;
        }
        self.events.push_back(Event::Result {
            search: id,
            item,
            holders: new,
        });
    }

    // ----- searches -----

    /// Starts a search. Results come as [`Event::Result`]s while it is open.
    /// A search for an info-hash whose holders we know goes straight to
    /// them; otherwise (or if none of them answers) it floods.
    pub fn search(&mut self, target: Target, now: Instant) -> SearchId {
        let lifetime = self.config.search_lifetime;
        self.search_for(target, lifetime, now)
    }

    /// [`Overlay::search`], open for `lifetime`.
    pub fn search_for(&mut self, target: Target, lifetime: Duration, now: Instant) -> SearchId {
        let id = self.next_search;
        self.next_search += 1;
        let qid: QueryId = self.rng.bytes();
        self.searches.insert(
            id,
            Search {
                target: target.clone(),
                qid,
                started: now,
                expires: now + lifetime,
                reported: HashMap::new(),
                direct_pending: Vec::new(),
                direct: false,
                flooded: false,
                direct_answered: false,
            },
        );
        self.own_routes.insert(
            qid,
            Route {
                from: None,
                search: Some(id),
                target: target.clone(),
                sent_to: Vec::new(),
                expires: now + lifetime,
            },
        );
        // What the content table knows is reported at once.
        let known: Vec<(Item, Vec<Holder>)> = match &target {
            Target::Hash(ih) => self.content.get(ih, now).into_iter().collect(),
            Target::Words(w) => self
                .content
                .search_words(&words::words(w), now, msg::MAX_ITEMS),
        };
        let direct_holders: Vec<Holder> = match &target {
            Target::Hash(_) => known
                .first()
                .map(|(_, hs)| hs.iter().take(DIRECT_HOLDERS).copied().collect())
                .unwrap_or_default(),
            Target::Words(_) => Vec::new(),
        };
        for (item, holders) in known {
            self.report(id, item, holders);
        }
        if direct_holders.is_empty() {
            self.flood(id, now);
        } else {
            self.stats.searches_direct += 1;
            if let Some(s) = self.searches.get_mut(&id) {
                s.direct = true;
            }
            for h in direct_holders {
                let addr = h.node_addr();
                if self.table.get(&addr).is_some_and(|n| n.live()) {
                    self.send_query(id, addr, 1);
                } else {
                    // Ask once we hold its token.
                    self.table.add(addr, None, Source::Holder, now);
                    if self.table.get(&addr).is_some_and(|n| n.ping.is_none()) {
                        self.ping(addr, now);
                    }
                    if let Some(s) = self.searches.get_mut(&id) {
                        s.direct_pending.push(addr);
                    }
                }
            }
        }
        id
    }

    /// Ends a search early (its id then yields nothing more).
    pub fn cancel_search(&mut self, id: SearchId) {
        if let Some(s) = self.searches.remove(&id) {
            self.own_routes.remove(&s.qid);
        }
    }

    fn send_query(&mut self, id: SearchId, to: SocketAddr, ttl: u8) -> bool {
        let Some(s) = self.searches.get(&id) else {
            return false;
        };
        let (qid, target) = (s.qid, s.target.clone());
        let Some(token) = self.table.get(&to).and_then(|n| n.token) else {
            return false;
        };
        self.send(
            to,
            Body::Query {
                token,
                qid,
                ttl,
                hops: 0,
                target,
            },
        );
        if let Some(r) = self.own_routes.get_mut(&qid) {
            r.sent(to);
        }
        true
    }

    fn flood(&mut self, id: SearchId, now: Instant) {
        let neighbours = self.table.neighbours().to_vec();
        if neighbours.is_empty() {
            return; // Tried again on the tick while the search is open.
        }
        let Some(s) = self.searches.get_mut(&id) else {
            return;
        };
        s.flooded = true;
        self.stats.searches_flooded += 1;
        let ttl = self.config.default_ttl.min(self.config.max_ttl);
        for n in neighbours {
            self.send_query(id, n, ttl);
        }
        let _ = now;
    }

    fn send_pending_direct(&mut self, from: SocketAddr, _now: Instant) {
        let waiting: Vec<SearchId> = self
            .searches
            .iter()
            .filter(|(_, s)| s.direct_pending.contains(&from))
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            if let Some(s) = self.searches.get_mut(&id) {
                s.direct_pending.retain(|a| *a != from);
            }
            self.send_query(id, from, 1);
        }
    }

    // ----- timers -----

    /// Call about once a second.
    pub fn tick(&mut self, now: Instant) {
        if now.saturating_duration_since(self.secret_at) >= SECRET_PERIOD {
            self.old_secret = self.secret;
            self.secret = self.rng.bytes();
            self.secret_at = now;
        }
        for addr in self.table.due_pings(now, 32) {
            self.ping(addr, now);
        }
        let rotate = now >= self.next_rotate;
        if rotate {
            self.next_rotate = now + NEIGHBOUR_ROTATION;
        }
        self.table.choose_neighbours(&mut self.rng, rotate);
        self.pending_nodes
            .retain(|_, (_, sent)| now.saturating_duration_since(*sent) < Duration::from_secs(10));
        if now >= self.next_exchange {
            self.exchange(now);
        }
        self.announce(now);
        // Searches: flood those that had no neighbours yet, or whose direct
        // holders did not answer.
        let ids: Vec<SearchId> = self.searches.keys().copied().collect();
        for id in ids {
            let Some(s) = self.searches.get(&id) else {
                continue;
            };
            if now >= s.expires {
                self.cancel_search(id);
                continue;
            }
            let stale_direct = s.direct
                && !s.direct_answered
                && now.saturating_duration_since(s.started) >= DIRECT_PATIENCE;
            if !s.flooded && (!s.direct || stale_direct) {
                self.flood(id, now);
            }
        }
        if now >= self.next_expire {
            self.next_expire = now + Duration::from_secs(10);
            self.content.expire(now);
            while let Some(q) = self.route_order.front() {
                match self.routes.get(q) {
                    Some(r) if r.expires > now => break,
                    _ => {
                        let q = *q;
                        self.routes.remove(&q);
                        self.route_order.pop_front();
                    }
                }
            }
            let rate = f64::from(self.config.forward_rate);
            self.forward_buckets
                .retain(|_, b| now.saturating_duration_since(b.last).as_secs_f64() * rate < 1e3);
        }
    }

    /// Asks one live node (a neighbour when possible) for some of its entries.
    fn exchange(&mut self, now: Instant) {
        // Quickly while we know few nodes, then while the table is less
        // than half full (a wide pool makes neighbour sets diverse and
        // floods reach far), then at the configured pace.
        let live = self.table.live_count();
        self.next_exchange = now
            + if live < self.config.degree.max(2) * 2 {
                Duration::from_secs(3)
            } else if self.table.len() < self.table.capacity() / 2 {
                Duration::from_secs(15)
            } else {
                self.config.exchange_interval
            };
        let candidates: Vec<(SocketAddr, Token)> = self
            .table
            .iter()
            .filter(|n| n.live() && !self.pending_nodes.contains_key(&n.addr))
            .filter_map(|n| Some((n.addr, n.token?)))
            .collect();
        if candidates.is_empty() {
            return;
        }
        let (addr, token) = candidates[self.rng.below(candidates.len())];
        let tx: Tx = self.rng.bytes();
        self.pending_nodes.insert(addr, (tx, now));
        self.send(
            addr,
            Body::GetNodes {
                tx,
                token,
                max: msg::MAX_NODES as u8,
            },
        );
    }

    /// Tells neighbours that have not heard it (this period) what we hold.
    fn announce(&mut self, now: Instant) {
        if now >= self.next_announce {
            self.next_announce = now + self.config.announce_interval;
            self.announced_to.clear();
        }
        if self.local.is_empty() {
            return;
        }
        let due: Vec<(SocketAddr, Token)> = self
            .table
            .neighbours()
            .iter()
            .filter(|a| !self.announced_to.contains(a))
            .filter_map(|a| Some((*a, self.table.get(a)?.token?)))
            .collect();
        for (addr, token) in due {
            self.announced_to.insert(addr);
            let items: Vec<Item> = self.local.iter().take(MAX_ANNOUNCED).cloned().collect();
            let tcp_port = self.config.tcp_port;
            for body in self.pack(items, |items| Body::Announce {
                token,
                tcp_port,
                items,
            }) {
                self.send(addr, body);
            }
        }
    }
}

/// The saved routing table (`nodes` in the state directory): a bencoded
/// dictionary with `n4` (26-byte records: id, IPv4, port) and `n6` (38 bytes).
pub fn encode_saved(nodes: &[(NodeId, SocketAddr)]) -> Vec<u8> {
    let (n4, n6) = msg::compact_nodes(nodes);
    let mut d = std::collections::BTreeMap::new();
    d.insert(b"n4".to_vec(), crate::bencode::Value::Bytes(n4));
    d.insert(b"n6".to_vec(), crate::bencode::Value::Bytes(n6));
    d.insert(b"v".to_vec(), crate::bencode::Value::Int(1));
    crate::bencode::Value::Dict(d).to_bytes()
}

/// Reads a saved table; damaged records are skipped, never trusted.
pub fn decode_saved(bytes: &[u8], max: usize) -> Vec<(NodeId, SocketAddr)> {
    let Ok(doc) = crate::bencode::decode(bytes, crate::bencode::Limits::MESSAGE) else {
        return Vec::new();
    };
    let Some(d) = doc.root().as_dict() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, width) in [(&b"n4"[..], 26usize), (&b"n6"[..], 38)] {
        let Some(raw) = d.get(key).and_then(|v| v.as_bytes()) else {
            continue;
        };
        out.extend(
            raw.chunks_exact(width)
                .filter_map(msg::parse_node_record)
                .take(max.saturating_sub(out.len())),
        );
    }
    out
}

#[cfg(test)]
mod tests;
