//! The DHT state machine behind [`Dht`]'s public methods: queries
//! answered, our transactions, lookups driven, timers, external-address
//! votes.
//!
//! Rules that keep a node safe among strangers:
//! - An answer is taken only from the address we sent that transaction
//!   id to; the transaction table holds at most [`MAX_TXS`] entries.
//! - Queries are limited per source IP and in all (token buckets with a
//!   burst of 4×); read-only nodes (BEP 43) answer none.
//! - Answers are never larger than BEP 5's: at most K nodes per family
//!   asked for, at most [`MAX_VALUES_V4`]/[`MAX_VALUES_V6`] peers.
//! - Nothing is sent to port 0, an unspecified, multicast or broadcast
//!   address, or our own voted address; the outgoing queue holds at most
//!   [`MAX_OUT`] datagrams.
//! - Our external address changes only when at least [`MIN_VOTES`]
//!   distinct voters of the last [`MAX_VOTES`] agree and they are a
//!   majority.

use super::krpc::{self, Body, Message, Query, Response, Want};
use super::lookup::{self, Kind, Lookup};
use super::table::{Insert, Node, K};
use super::{
    distance_lz, id_for_ip, id_matches_ip, is_local, Dht, Event, LookupReport, NodeId, RateBucket,
    Tx, TxKind,
};
use crate::metainfo::InfoHash;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

pub const MAX_TXS: usize = 512;
pub const MAX_OUT: usize = 512;
pub const MAX_EVENTS: usize = 1024;
pub const MAX_LOOKUPS: usize = 32;
pub const MAX_TRACKED: usize = 10_000;
pub const MAX_ROUTERS: usize = 16;
pub const MAX_PING_QUEUE: usize = 256;
pub const MAX_RATE_SOURCES: usize = 4096;
pub const MAX_VOTES: usize = 20;
pub const MIN_VOTES: usize = 3;
pub const MAX_VALUES_V4: usize = 50;
pub const MAX_VALUES_V6: usize = 30;
/// Peers remembered per lookup (to report each once).
pub const MAX_LOOKUP_PEERS: usize = 2000;
pub const LOOKUP_NOW_GAP: Duration = Duration::from_secs(60);
/// Pings and other non-lookup queries time out after this.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Bootstrap again at most this often while the table is nearly empty.
pub const BOOTSTRAP_GAP: Duration = Duration::from_secs(30);
/// A bucket not changed for this long is refreshed (BEP 5).
pub const REFRESH_AFTER: Duration = Duration::from_secs(15 * 60);
/// Pings drained from the queue per tick.
const PINGS_PER_TICK: usize = 8;
/// Nodes we announce to after a get_peers lookup (BEP 5: the K closest).
const ANNOUNCE_TO: usize = 8;

/// Whether we may send to `addr`: not port 0, not unspecified, multicast or broadcast.
pub fn routable(addr: &SocketAddr) -> bool {
    if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_multicast() {
        return false;
    }
    match addr.ip() {
        IpAddr::V4(v4) => !v4.is_broadcast(),
        IpAddr::V6(_) => true,
    }
}

impl Dht {
    fn is_self(&self, addr: &SocketAddr) -> bool {
        self.external_addr == Some(*addr)
    }

    fn push_event(&mut self, e: Event) {
        if self.events.len() < MAX_EVENTS {
            self.events.push_back(e);
        }
    }

    fn push_out(&mut self, to: SocketAddr, bytes: Vec<u8>) -> bool {
        if !routable(&to) || self.is_self(&to) {
            return false;
        }
        if self.out.len() >= MAX_OUT {
            self.stats.dropped_out += 1;
            return false;
        }
        self.out.push_back((to, bytes));
        true
    }

    /// Sends a query; false when it could not be sent.
    fn send_query(
        &mut self,
        to: SocketAddr,
        node: Option<NodeId>,
        query: Query,
        what: TxKind,
        now: Instant,
    ) -> bool {
        if !routable(&to) || self.is_self(&to) || node == Some(self.id) {
            return false;
        }
        if self.txs.len() >= MAX_TXS || self.out.len() >= MAX_OUT {
            self.stats.dropped_out += 1;
            return false;
        }
        let mut tid = self.rng.bytes::<4>();
        for _ in 0..8 {
            if !self.txs.contains_key(&tid) {
                break;
            }
            tid = self.rng.bytes::<4>();
        }
        if self.txs.contains_key(&tid) {
            return false;
        }
        let msg = Message {
            tid: tid.to_vec(),
            body: Body::Query { id: self.id, query },
            ip: None,
            read_only: self.config.read_only,
            version: Some(krpc::VERSION.to_vec()),
        };
        if !self.push_out(to, msg.emit()) {
            return false;
        }
        self.stats.queries_sent += 1;
        self.txs.insert(
            tid,
            Tx {
                to,
                node,
                sent: now,
                what,
            },
        );
        true
    }

    fn reply(&mut self, to: SocketAddr, tid: Vec<u8>, body: Body) {
        let msg = Message {
            tid,
            body,
            ip: Some(to),
            read_only: false,
            version: Some(krpc::VERSION.to_vec()),
        };
        self.push_out(to, msg.emit());
    }

    fn rate_ok(&mut self, ip: IpAddr, now: Instant) -> bool {
        let rate = self.config.query_rate;
        if !self.per_ip.contains_key(&ip) && self.per_ip.len() >= MAX_RATE_SOURCES {
            // Forget sources whose bucket has refilled: they are idle.
            let full = f64::from(rate.max(1)) * 4.0;
            self.per_ip.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * f64::from(rate)
                    < full
            });
            if self.per_ip.len() >= MAX_RATE_SOURCES {
                return false;
            }
        }
        let ok = self
            .per_ip
            .entry(ip)
            .or_insert_with(|| RateBucket::new(rate, now))
            .take(rate, now);
        ok && self.global.take(self.config.global_query_rate, now)
    }

    pub(super) fn handle(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) {
        if !routable(&from) {
            self.stats.invalid += 1;
            return;
        }
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.stats.invalid += 1;
                // A query we could read the tid of gets an error (BEP 5),
                // within the same limits as any query.
                if let Some(tid) = e.query_tid {
                    if !self.config.read_only && self.rate_ok(from.ip(), now) {
                        let message = e.what.as_bytes().to_vec();
                        self.reply(
                            from,
                            tid,
                            Body::Error {
                                code: e.code,
                                message,
                            },
                        );
                    }
                }
                return;
            }
        };
        match msg.body {
            Body::Query { id, query } => {
                self.on_query(msg.tid, id, query, msg.read_only, from, now)
            }
            Body::Response { id, response } => {
                self.on_response(&msg.tid, id, response, msg.ip, msg.read_only, from, now)
            }
            Body::Error { .. } => self.on_error(&msg.tid, from, now),
        }
    }

    fn on_query(
        &mut self,
        tid: Vec<u8>,
        id: NodeId,
        query: Query,
        read_only: bool,
        from: SocketAddr,
        now: Instant,
    ) {
        if self.config.read_only {
            self.stats.read_only_dropped += 1;
            return;
        }
        if !self.rate_ok(from.ip(), now) {
            self.stats.rate_limited += 1;
            return;
        }
        // The querier: refreshed when known; a stranger is pinged when
        // its bucket has room (BEP 43: read-only nodes are never added).
        if !read_only && id != self.id && from.is_ipv4() == self.family_v4(&from) {
            let known = self.table.get(&id).is_some();
            let secure = id_matches_ip(&id, &from.ip());
            self.table.insert(Node::new(id, from, secure), false, now);
            if !known && self.table.by_addr(&from).is_none() && self.table.has_room(&id) {
                self.queue_ping(from);
            }
        }
        let v6 = from.is_ipv6();
        let body = match query {
            Query::Ping => {
                self.stats.answered_ping += 1;
                Response::default()
            }
            Query::FindNode { target, want } => {
                self.stats.answered_find_node += 1;
                self.nodes_for(&target, want, v6, now)
            }
            Query::GetPeers { info_hash, want } => {
                self.stats.answered_get_peers += 1;
                let mut r = self.nodes_for(&NodeId(info_hash), want, v6, now);
                let max = if v6 { MAX_VALUES_V6 } else { MAX_VALUES_V4 };
                r.values = self.store.get(&info_hash, v6, max, &mut self.rng);
                r.token = Some(self.tokens.issue(&from.ip()));
                r
            }
            Query::AnnouncePeer {
                info_hash,
                port,
                implied_port,
                token,
            } => {
                if !self.tokens.check(&from.ip(), &token) {
                    self.stats.bad_tokens += 1;
                    let message = b"bad token".to_vec();
                    let body = Body::Error {
                        code: krpc::ERR_PROTOCOL,
                        message,
                    };
                    return self.reply(from, tid, body);
                }
                let port = if implied_port { from.port() } else { port };
                let peer = SocketAddr::new(from.ip(), port);
                if !routable(&peer) {
                    let body = Body::Error {
                        code: krpc::ERR_PROTOCOL,
                        message: b"bad port".to_vec(),
                    };
                    return self.reply(from, tid, body);
                }
                self.stats.answered_announce += 1;
                self.store.announce(info_hash, peer, now);
                Response::default()
            }
        };
        self.reply(
            from,
            tid,
            Body::Response {
                id: self.id,
                response: body,
            },
        );
    }

    /// Our address family, from the table (or the querier's when empty).
    fn family_v4(&self, from: &SocketAddr) -> bool {
        self.table
            .iter()
            .next()
            .map_or(from.is_ipv4(), |n| n.addr.is_ipv4())
    }

    /// The K nodes nearest `target` for the families asked (BEP 32: the
    /// querier's own family when `want` is absent).
    fn nodes_for(&self, target: &NodeId, want: Option<Want>, v6: bool, now: Instant) -> Response {
        let want = want.unwrap_or(Want { n4: !v6, n6: v6 });
        let mut r = Response::default();
        let closest = self.table.closest(target, K * 2, now);
        if want.n4 {
            r.nodes = closest
                .iter()
                .filter(|n| n.addr.is_ipv4())
                .take(K)
                .map(|n| (n.id, n.addr))
                .collect();
        }
        if want.n6 {
            r.nodes6 = closest
                .iter()
                .filter(|n| n.addr.is_ipv6())
                .take(K)
                .map(|n| (n.id, n.addr))
                .collect();
        }
        r
    }

    fn take_tx(&mut self, tid: &[u8], from: &SocketAddr) -> Option<Tx> {
        let key: [u8; 4] = tid.try_into().ok()?;
        if self.txs.get(&key)?.to != *from {
            return None;
        }
        self.txs.remove(&key)
    }

    #[allow(clippy::too_many_arguments)]
    fn on_response(
        &mut self,
        tid: &[u8],
        id: NodeId,
        response: Response,
        ip: Option<SocketAddr>,
        read_only: bool,
        from: SocketAddr,
        now: Instant,
    ) {
        let Some(tx) = self.take_tx(tid, &from) else {
            self.stats.invalid += 1;
            return;
        };
        self.stats.responses_in += 1;
        if let Some(ip) = ip {
            self.vote(from.ip(), ip, now);
        }
        let router = self.routers.contains(&from);
        if !router && !read_only && id != self.id {
            let secure = id_matches_ip(&id, &from.ip());
            if let Insert::Full { ping: Some(addr) } =
                self.table.insert(Node::new(id, from, secure), true, now)
            {
                self.send_query(addr, None, Query::Ping, TxKind::Ping, now);
            }
        }
        match tx.what {
            TxKind::Ping => {}
            TxKind::Announce => self.stats.announces += 1,
            TxKind::Lookup { lookup, router } => {
                self.lookup_answer(lookup, router, id, response, from, now)
            }
        }
    }

    fn on_error(&mut self, tid: &[u8], from: SocketAddr, now: Instant) {
        let Some(tx) = self.take_tx(tid, &from) else {
            self.stats.invalid += 1;
            return;
        };
        self.stats.errors_in += 1;
        if let TxKind::Lookup { lookup, router } = tx.what {
            if let Some(l) = self.lookups.get_mut(&lookup) {
                if router {
                    l.routers_pending = l.routers_pending.saturating_sub(1);
                } else {
                    l.failed(&from);
                }
            }
            self.step_lookup(lookup, now);
        }
    }

    fn lookup_answer(
        &mut self,
        lid: u64,
        router: bool,
        id: NodeId,
        response: Response,
        from: SocketAddr,
        now: Instant,
    ) {
        let v4 = from.is_ipv4();
        let my_id = self.id;
        let my_addr = self.external_addr;
        let Some(l) = self.lookups.get_mut(&lid) else {
            return;
        };
        let hops = if router {
            l.routers_pending = l.routers_pending.saturating_sub(1);
            0
        } else {
            let h = l.hops_of(&from);
            if !l.answered(&from, &id, response.token.clone()) {
                return;
            }
            h
        };
        let nodes = if v4 {
            &response.nodes
        } else {
            &response.nodes6
        };
        for (nid, addr) in nodes.iter().take(krpc::MAX_NODES) {
            if *nid != my_id && routable(addr) && Some(*addr) != my_addr && addr.is_ipv4() == v4 {
                l.add(*nid, *addr, hops.saturating_add(1));
            }
        }
        if let Kind::GetPeers { info_hash, .. } = l.kind {
            let fresh: Vec<SocketAddr> = response
                .values
                .iter()
                .filter(|a| routable(a))
                .copied()
                .collect();
            if !fresh.is_empty() {
                l.first_value_hops.get_or_insert(hops.max(1));
            }
            let mut new = Vec::new();
            for a in fresh {
                if l.peers.len() < MAX_LOOKUP_PEERS && l.peers.insert(a) {
                    new.push(a);
                }
            }
            if !new.is_empty() {
                self.push_event(Event::Peers {
                    info_hash: InfoHash(info_hash),
                    peers: new,
                });
            }
        }
        self.step_lookup(lid, now);
    }

    /// Sends what the lookup wants sent, or finishes it.
    fn step_lookup(&mut self, lid: u64, now: Instant) {
        let Some(l) = self.lookups.get_mut(&lid) else {
            return;
        };
        let query = match l.kind {
            Kind::FindNode => Query::FindNode {
                target: l.target,
                want: None,
            },
            Kind::GetPeers { info_hash, .. } => Query::GetPeers {
                info_hash,
                want: None,
            },
        };
        let next = l.next_queries(now);
        for (id, addr) in next {
            let what = TxKind::Lookup {
                lookup: lid,
                router: false,
            };
            if !self.send_query(addr, Some(id), query.clone(), what, now) {
                if let Some(l) = self.lookups.get_mut(&lid) {
                    l.failed(&addr);
                }
            }
        }
        let done = self.lookups.get(&lid).is_some_and(|l| l.is_done(now));
        if done {
            self.finish_lookup(lid, now);
        }
    }

    fn finish_lookup(&mut self, lid: u64, now: Instant) {
        let Some(l) = self.lookups.remove(&lid) else {
            return;
        };
        // Transactions of a finished lookup are forgotten (late answers are "invalid").
        self.txs
            .retain(|_, tx| !matches!(tx.what, TxKind::Lookup { lookup, .. } if lookup == lid));
        self.stats.lookups_done += 1;
        let mut announced = 0;
        if let Kind::GetPeers {
            info_hash,
            announce,
        } = l.kind
        {
            if announce && !self.config.read_only {
                for (addr, token) in l.announce_targets(ANNOUNCE_TO) {
                    let q = Query::AnnouncePeer {
                        info_hash,
                        port: self.config.peer_port,
                        implied_port: false,
                        token,
                    };
                    if self.send_query(addr, None, q, TxKind::Announce, now) {
                        announced += 1;
                    }
                }
            }
            self.push_event(Event::LookupDone {
                info_hash: InfoHash(info_hash),
                peers: l.peers.len(),
                announced,
            });
        }
        if self.recent.len() >= 64 {
            self.recent.pop_front();
        }
        self.recent.push_back(LookupReport {
            target: l.target,
            get_peers: matches!(l.kind, Kind::GetPeers { .. }),
            peers: l.peers.len(),
            first_value_hops: l.first_value_hops,
            queries: l.queries,
            duration: now.saturating_duration_since(l.started),
        });
    }

    /// Starts a lookup seeded from the table (and routers when asked).
    fn start_lookup(
        &mut self,
        target: NodeId,
        kind: Kind,
        routers: bool,
        now: Instant,
    ) -> Option<u64> {
        if self.lookups.len() >= MAX_LOOKUPS {
            return None;
        }
        let lid = self.next_lookup;
        self.next_lookup += 1;
        let mut l = Lookup::new(target, kind, now);
        for n in self.table.closest(&target, lookup::MAX_CANDIDATES, now) {
            l.add(n.id, n.addr, 1);
        }
        self.lookups.insert(lid, l);
        self.stats.lookups_started += 1;
        if routers {
            let query = Query::FindNode { target, want: None };
            for addr in self.routers.clone() {
                let what = TxKind::Lookup {
                    lookup: lid,
                    router: true,
                };
                if self.send_query(addr, None, query.clone(), what, now) {
                    if let Some(l) = self.lookups.get_mut(&lid) {
                        l.routers_pending += 1;
                    }
                }
            }
        }
        self.step_lookup(lid, now);
        Some(lid)
    }

    pub(super) fn start_get_peers(
        &mut self,
        info_hash: InfoHash,
        announce: bool,
        now: Instant,
    ) -> bool {
        let running = self
            .lookups
            .values()
            .any(|l| matches!(l.kind, Kind::GetPeers { info_hash: h, .. } if h == info_hash.0));
        if running {
            return false;
        }
        let kind = Kind::GetPeers {
            info_hash: info_hash.0,
            announce,
        };
        let routers = self.table.len() < K;
        if self
            .start_lookup(NodeId(info_hash.0), kind, routers, now)
            .is_none()
        {
            return false;
        }
        if self.last_begun.len() >= MAX_TRACKED {
            self.last_begun
                .retain(|_, t| now.saturating_duration_since(*t) < LOOKUP_NOW_GAP);
        }
        if self.last_begun.len() < MAX_TRACKED {
            self.last_begun.insert(info_hash, now);
        }
        true
    }

    pub(super) fn queue_ping(&mut self, addr: SocketAddr) {
        if routable(&addr)
            && !self.ping_queue.contains(&addr)
            && self.ping_queue.len() < MAX_PING_QUEUE
        {
            self.ping_queue.push_back(addr);
        }
    }

    pub(super) fn drain_pings(&mut self, now: Instant) {
        for _ in 0..PINGS_PER_TICK {
            let Some(addr) = self.ping_queue.pop_front() else {
                return;
            };
            let waiting = self.txs.values().any(|t| t.to == addr);
            if !waiting {
                self.send_query(addr, None, Query::Ping, TxKind::Ping, now);
            }
        }
    }

    /// A self-lookup through the routers when the table is nearly empty.
    pub(super) fn maybe_bootstrap(&mut self, now: Instant) {
        if self.table.len() >= K {
            return;
        }
        if self
            .last_bootstrap
            .is_some_and(|t| now.saturating_duration_since(t) < BOOTSTRAP_GAP)
        {
            return;
        }
        let running = self
            .lookups
            .values()
            .any(|l| l.kind == Kind::FindNode && l.target == self.id);
        if running || (self.routers.is_empty() && self.table.len() == 0) {
            return;
        }
        self.last_bootstrap = Some(now);
        self.start_lookup(self.id, Kind::FindNode, true, now);
    }

    pub(super) fn run_tracked(&mut self, now: Instant) {
        let due: Vec<(InfoHash, bool)> = self
            .tracked
            .iter()
            .filter(|(_, t)| t.next <= now)
            .map(|(h, t)| (*h, t.announce))
            .take(MAX_LOOKUPS)
            .collect();
        for (h, announce) in due {
            if self.lookups.len() >= MAX_LOOKUPS {
                return;
            }
            // Jitter: the interval plus up to half of it again.
            let base = self.config.announce_interval;
            let half = base.as_millis().min(u128::from(u64::MAX)) as u64 / 2;
            let jitter = Duration::from_millis(self.rng.next_u64() % half.max(1));
            let started = self.start_get_peers(h, announce, now);
            if let Some(t) = self.tracked.get_mut(&h) {
                t.next = if started {
                    now + base + jitter
                } else {
                    now + Duration::from_secs(5)
                };
            }
        }
    }

    pub(super) fn on_tick(&mut self, now: Instant) {
        self.tokens.rotate_if_due(&mut self.rng, now);
        // Timeouts.
        let expired: Vec<([u8; 4], Tx)> = self
            .txs
            .iter()
            .filter(|(_, tx)| {
                let limit = match tx.what {
                    TxKind::Lookup { .. } => lookup::QUERY_TIMEOUT,
                    _ => PING_TIMEOUT,
                };
                now.saturating_duration_since(tx.sent) >= limit
            })
            .map(|(k, tx)| (*k, tx.clone()))
            .collect();
        for (k, tx) in expired {
            self.txs.remove(&k);
            self.stats.timeouts += 1;
            let id = tx.node.or_else(|| self.table.by_addr(&tx.to).map(|n| n.id));
            if let TxKind::Lookup { lookup, router } = tx.what {
                if router {
                    if let Some(l) = self.lookups.get_mut(&lookup) {
                        l.routers_pending = l.routers_pending.saturating_sub(1);
                    }
                } else if let Some(l) = self.lookups.get_mut(&lookup) {
                    if l.timed_out(&tx.to, now) {
                        let query = match l.kind {
                            Kind::FindNode => Query::FindNode {
                                target: l.target,
                                want: None,
                            },
                            Kind::GetPeers { info_hash, .. } => Query::GetPeers {
                                info_hash,
                                want: None,
                            },
                        };
                        if !self.send_query(tx.to, tx.node, query, tx.what.clone(), now) {
                            if let Some(l) = self.lookups.get_mut(&lookup) {
                                l.failed(&tx.to);
                            }
                        }
                        continue;
                    }
                }
            }
            if let Some(id) = id {
                self.table.failed(&id, now);
            }
        }
        // Lookups: advance the ones that timed out, end the overdue.
        let mut ids: Vec<u64> = self.lookups.keys().copied().collect();
        ids.sort_unstable();
        for lid in ids {
            self.step_lookup(lid, now);
        }
        if now.saturating_duration_since(self.last_expire) >= Duration::from_secs(60) {
            self.last_expire = now;
            self.store.expire(now);
        }
        self.maybe_bootstrap(now);
        self.run_tracked(now);
        self.drain_pings(now);
        if now.saturating_duration_since(self.last_maintenance) >= Duration::from_secs(5) {
            self.last_maintenance = now;
            self.maintain(now);
        }
    }

    /// Liveness: ping the stalest questionable node; refresh one stale bucket.
    fn maintain(&mut self, now: Instant) {
        if let Some(addr) = self.table.stalest(60, now) {
            let id = self.table.by_addr(&addr).map(|n| n.id);
            self.send_query(addr, id, Query::Ping, TxKind::Ping, now);
        }
        if self.lookups.len() >= MAX_LOOKUPS / 2 {
            return;
        }
        let n_buckets = self.table.buckets.len();
        let stale = self
            .table
            .buckets
            .iter()
            .position(|b| now.saturating_duration_since(b.last_changed) >= REFRESH_AFTER);
        if let Some(i) = stale {
            if let Some(b) = self.table.buckets.get_mut(i) {
                b.last_changed = now;
            }
            let target = self.random_id_in_bucket(i, n_buckets);
            self.start_lookup(target, Kind::FindNode, false, now);
        }
    }

    /// A random id whose distance from ours has exactly `i` leading zero
    /// bits (at least `i` for the last bucket).
    fn random_id_in_bucket(&mut self, i: usize, n_buckets: usize) -> NodeId {
        let mut d: [u8; 20] = self.rng.bytes();
        let i = i.min(159);
        for bit in 0..i {
            d[bit / 8] &= !(0x80 >> (bit % 8));
        }
        if i + 1 < n_buckets {
            d[i / 8] |= 0x80 >> (i % 8);
        }
        let mut id = self.id.0;
        for (a, b) in id.iter_mut().zip(d) {
            *a ^= b;
        }
        debug_assert!(distance_lz(&self.id, &NodeId(id)) >= i);
        NodeId(id)
    }

    /// BEP 42: a node's view of our address.
    fn vote(&mut self, voter: IpAddr, seen: SocketAddr, now: Instant) {
        if !routable(&seen) {
            return;
        }
        self.votes.retain(|(v, _)| *v != voter);
        if self.votes.len() >= MAX_VOTES {
            self.votes.pop_front();
        }
        self.votes.push_back((voter, seen));
        let mut best: Option<(IpAddr, usize)> = None;
        for (_, s) in &self.votes {
            let n = self.votes.iter().filter(|(_, t)| t.ip() == s.ip()).count();
            if best.is_none_or(|(_, m)| n > m) {
                best = Some((s.ip(), n));
            }
        }
        let Some((ip, n)) = best else {
            return;
        };
        if n >= MIN_VOTES && n * 2 > self.votes.len() {
            self.external_addr = Some(seen).filter(|s| s.ip() == ip).or(self.external_addr);
            if self.external_ip != Some(ip) {
                self.change_external_ip(ip, true, now);
            }
        }
    }

    /// Our address changed: a BEP 42 id for it (unless ours already
    /// fits or the address is local), the table re-bucketed around it.
    pub(super) fn change_external_ip(&mut self, ip: IpAddr, notify: bool, now: Instant) {
        if self.external_ip == Some(ip) {
            return;
        }
        self.external_ip = Some(ip);
        if self.external_addr.is_some_and(|a| a.ip() != ip) {
            self.external_addr = None;
        }
        if notify {
            self.push_event(Event::ExternalIp(ip));
        }
        if !is_local(&ip) && !id_matches_ip(&self.id, &ip) {
            let id = id_for_ip(ip, self.rng.bytes());
            self.id = id;
            self.table.rebuild(id, now);
        }
    }
}
