//! The routing table: the nodes this node has heard of, bounded, with
//! liveness by ping and back-off, and the neighbour set chosen from it.
//!
//! An entry is *verified* once it answered one of our pings (so its address
//! is real) and *live* while it keeps answering. A ping that goes unanswered
//! for [`PING_TIMEOUT`] counts a failure; the next ping waits 15 s × 2^(n-1)
//! (at most 10 min); after [`MAX_FAILURES`] the entry is dropped (bootstrap
//! nodes stay, retried every 8 min: the back-off of a sixth failure). When full, a new candidate
//! replaces the least useful entry: a failing one first, then one that never
//! answered; verified, answering nodes are never pushed out by hearsay.

use super::msg::{Token, Tx};
use super::NodeId;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// An unanswered ping counts as a failure after this long.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// A live node is pinged this often.
pub const PING_INTERVAL: Duration = Duration::from_secs(60);
/// Failures in a row after which an entry is dropped.
pub const MAX_FAILURES: u32 = 5;
/// Longest wait between pings of a failing node.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// How we learned of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// From the configuration or `--bootstrap`; never dropped.
    Bootstrap,
    /// Heard its LAN beacon.
    Beacon,
    /// From another node's `nodes` answer.
    Exchange,
    /// It contacted us.
    Incoming,
    /// From the saved table of the last run.
    Saved,
    /// A holder we were told of.
    Holder,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Bootstrap => "bootstrap",
            Source::Beacon => "beacon",
            Source::Exchange => "exchange",
            Source::Incoming => "incoming",
            Source::Saved => "saved",
            Source::Holder => "holder",
        }
    }
}

/// One node.
#[derive(Clone, Debug)]
pub struct Node {
    /// Overlay (UDP) address.
    pub addr: SocketAddr,
    pub id: Option<NodeId>,
    /// BitTorrent (TCP) port, from its pong.
    pub tcp_port: u16,
    pub flags: i64,
    pub source: Source,
    pub added: Instant,
    /// Last answer to our ping.
    pub last_seen: Option<Instant>,
    pub rtt: Option<Duration>,
    pub failures: u32,
    /// Its token for us (from its last pong): our requests to it carry it.
    pub token: Option<Token>,
    pub next_ping: Instant,
    /// The ping out, if any: its transaction id and when it left.
    pub ping: Option<(Tx, Instant)>,
}

impl Node {
    pub fn verified(&self) -> bool {
        self.last_seen.is_some()
    }

    /// Answered its last ping and we hold a token for it.
    pub fn live(&self) -> bool {
        self.last_seen.is_some() && self.failures == 0 && self.token.is_some()
    }
}

fn backoff(failures: u32) -> Duration {
    let secs = 15u64.saturating_mul(1 << failures.saturating_sub(1).min(10));
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

/// The group an address belongs to for neighbour diversity: its /24 (IPv4)
/// or /48 (IPv6).
fn group(ip: IpAddr) -> [u8; 6] {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            [4, o[0], o[1], o[2], 0, 0]
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            [o[0], o[1], o[2], o[3], o[4], o[5]]
        }
    }
}

/// An address's /24 (IPv4) or /64 (IPv6), for the per-network cap.
fn subnet(ip: IpAddr) -> [u8; 9] {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            [4, o[0], o[1], o[2], 0, 0, 0, 0, 0]
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            [6, o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]]
        }
    }
}

/// The routing table and the neighbour set.
#[derive(Debug)]
pub struct RoutingTable {
    nodes: Vec<Node>,
    capacity: usize,
    degree: usize,
    neighbours: Vec<SocketAddr>,
}

impl RoutingTable {
    pub fn new(capacity: usize, degree: usize) -> RoutingTable {
        RoutingTable {
            nodes: Vec::new(),
            capacity: capacity.max(1),
            degree,
            neighbours: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Most entries from one /24 (IPv4) or /64 (IPv6).
    pub fn per_subnet_limit(&self) -> usize {
        (self.capacity / 2).max(8)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter()
    }

    pub fn get(&self, addr: &SocketAddr) -> Option<&Node> {
        self.nodes.iter().find(|n| n.addr == *addr)
    }

    pub fn get_mut(&mut self, addr: &SocketAddr) -> Option<&mut Node> {
        self.nodes.iter_mut().find(|n| n.addr == *addr)
    }

    pub fn neighbours(&self) -> &[SocketAddr] {
        &self.neighbours
    }

    pub fn is_neighbour(&self, addr: &SocketAddr) -> bool {
        self.neighbours.contains(addr)
    }

    pub fn live_count(&self) -> usize {
        self.nodes.iter().filter(|n| n.live()).count()
    }

    /// Adds a node to ping. False when the table is full of better ones.
    /// A known address is left as it is (a bootstrap address keeps that source).
    pub fn add(
        &mut self,
        addr: SocketAddr,
        id: Option<NodeId>,
        source: Source,
        now: Instant,
    ) -> bool {
        if let Some(n) = self.get_mut(&addr) {
            // A bootstrap address keeps that mark; a beacon tells where
            // an address came from better than anything but that.
            if source == Source::Bootstrap
                || (source == Source::Beacon && n.source != Source::Bootstrap)
            {
                n.source = source;
            }
            if n.id.is_none() {
                n.id = id;
            }
            return true;
        }
        // At most half the table (at least 8) from one /24 or /64: one
        // network cannot take the whole table.
        let net = subnet(addr.ip());
        if source != Source::Bootstrap
            && self
                .nodes
                .iter()
                .filter(|n| subnet(n.addr.ip()) == net)
                .count()
                >= self.per_subnet_limit()
        {
            return false;
        }
        if self.nodes.len() >= self.capacity && !self.evict_for(source, now) {
            return false;
        }
        self.nodes.push(Node {
            addr,
            id,
            tcp_port: 0,
            flags: 0,
            source,
            added: now,
            last_seen: None,
            rtt: None,
            failures: 0,
            token: None,
            next_ping: now,
            ping: None,
        });
        true
    }

    /// Makes room for a candidate from `source`; false when nothing may go.
    fn evict_for(&mut self, source: Source, now: Instant) -> bool {
        let hearsay = matches!(
            source,
            Source::Exchange | Source::Holder | Source::Saved | Source::Beacon
        );
        // Worst first: most failures; then never answered and oldest.
        let victim = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.source != Source::Bootstrap)
            .filter(|(_, n)| {
                n.failures > 0
                    || (!n.verified()
                        && (!hearsay || now.saturating_duration_since(n.added) > 2 * PING_INTERVAL))
            })
            .max_by_key(|(_, n)| (n.failures, !n.verified(), std::cmp::Reverse(n.added)))
            .map(|(i, _)| i);
        match victim {
            Some(i) => {
                let gone = self.nodes.swap_remove(i);
                self.neighbours.retain(|a| *a != gone.addr);
                true
            }
            None => false,
        }
    }

    pub fn remove(&mut self, addr: &SocketAddr) {
        self.nodes.retain(|n| n.addr != *addr);
        self.neighbours.retain(|a| a != addr);
    }

    /// Records a ping sent now.
    pub fn ping_sent(&mut self, addr: &SocketAddr, tx: Tx, now: Instant) {
        if let Some(n) = self.get_mut(addr) {
            n.ping = Some((tx, now));
            n.next_ping = now + PING_INTERVAL;
        }
    }

    /// A pong for `tx` came from `addr`: true when it answered our ping.
    #[allow(clippy::too_many_arguments)]
    pub fn pong(
        &mut self,
        addr: &SocketAddr,
        tx: Tx,
        id: NodeId,
        tcp_port: u16,
        flags: i64,
        token: Token,
        now: Instant,
    ) -> bool {
        let Some(n) = self.get_mut(addr) else {
            return false;
        };
        let Some((sent_tx, sent_at)) = n.ping else {
            return false;
        };
        if sent_tx != tx {
            return false;
        }
        n.ping = None;
        n.id = Some(id);
        n.tcp_port = tcp_port;
        n.flags = flags;
        n.token = Some(token);
        n.failures = 0;
        n.last_seen = Some(now);
        let rtt = now.saturating_duration_since(sent_at);
        n.rtt = Some(match n.rtt {
            // Smoothed like TCP's SRTT.
            Some(old) => (old * 7 + rtt) / 8,
            None => rtt,
        });
        n.next_ping = now + PING_INTERVAL;
        true
    }

    /// Unanswered pings become failures; returns the addresses to ping now
    /// (at most `max`), with back-off for failing nodes.
    pub fn due_pings(&mut self, now: Instant, max: usize) -> Vec<SocketAddr> {
        for n in &mut self.nodes {
            if let Some((_, sent)) = n.ping {
                if now.saturating_duration_since(sent) >= PING_TIMEOUT {
                    n.ping = None;
                    n.failures += 1;
                    n.next_ping = now + backoff(n.failures);
                }
            }
        }
        self.nodes
            .retain(|n| n.failures < MAX_FAILURES || n.source == Source::Bootstrap);
        for n in &mut self.nodes {
            if n.source == Source::Bootstrap && n.failures >= MAX_FAILURES {
                n.failures = MAX_FAILURES;
            }
        }
        let alive: Vec<SocketAddr> = self.nodes.iter().map(|n| n.addr).collect();
        self.neighbours.retain(|a| alive.contains(a));
        let mut due: Vec<&Node> = self
            .nodes
            .iter()
            .filter(|n| n.ping.is_none() && n.next_ping <= now)
            .collect();
        crate::sort::sort_by_key(&mut due, |n| n.next_ping);
        due.into_iter().take(max).map(|n| n.addr).collect()
    }

    /// Keeps live neighbours and fills free slots from live nodes: first
    /// from groups (/24, /48) not yet among the neighbours, then by
    /// round-trip time in 20 ms steps, at random within a step (so that
    /// nodes on one LAN do not all pick the same few).
    /// With `rotate`, one neighbour (at random) makes room first when other
    /// live nodes could take its place: neighbour sets chosen when a node
    /// knew only a few others spread out over time.
    pub fn choose_neighbours(&mut self, rng: &mut super::Rng, rotate: bool) {
        let nodes = &self.nodes;
        self.neighbours
            .retain(|a| nodes.iter().any(|n| n.addr == *a && n.live()));
        if rotate
            && self.neighbours.len() >= self.degree
            && self.live_count() > self.neighbours.len()
        {
            let i = rng.below(self.neighbours.len());
            self.neighbours.swap_remove(i);
        }
        if self.neighbours.len() >= self.degree {
            return;
        }
        let mut candidates: Vec<&Node> = self
            .nodes
            .iter()
            .filter(|n| n.live() && !self.neighbours.contains(&n.addr))
            .collect();
        // Shuffle, then a stable sort by RTT step.
        for i in (1..candidates.len()).rev() {
            candidates.swap(i, rng.below(i + 1));
        }
        crate::sort::sort_by_key(&mut candidates, |n| {
            n.rtt.map_or(u128::MAX, |r| r.as_millis() / 20)
        });
        let mut groups: Vec<[u8; 6]> = self.neighbours.iter().map(|a| group(a.ip())).collect();
        let mut chosen = Vec::new();
        for n in &candidates {
            if self.neighbours.len() + chosen.len() >= self.degree {
                break;
            }
            let g = group(n.addr.ip());
            if !groups.contains(&g) {
                groups.push(g);
                chosen.push(n.addr);
            }
        }
        for n in &candidates {
            if self.neighbours.len() + chosen.len() >= self.degree {
                break;
            }
            if !chosen.contains(&n.addr) {
                chosen.push(n.addr);
            }
        }
        self.neighbours.extend(chosen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::new([10, 0, n / 50, n].into(), 6881)
    }

    fn answer(t: &mut RoutingTable, a: SocketAddr, now: Instant) {
        t.ping_sent(&a, [1; 4], now);
        assert!(t.pong(
            &a,
            [1; 4],
            NodeId([a.ip().to_string().len() as u8; 20]),
            1,
            1,
            [0; 8],
            now
        ));
    }

    #[test]
    fn bounded_and_hearsay_never_evicts_live_nodes() {
        let t0 = Instant::now();
        let mut t = RoutingTable::new(4, 2);
        for n in 0..4 {
            assert!(t.add(addr(n), None, Source::Incoming, t0));
            answer(&mut t, addr(n), t0);
        }
        assert!(!t.add(addr(9), None, Source::Exchange, t0));
        assert_eq!(t.len(), 4);
        // A failing node makes room.
        t.ping_sent(&addr(0), [2; 4], t0);
        t.due_pings(t0 + PING_TIMEOUT, 16);
        assert_eq!(t.get(&addr(0)).unwrap().failures, 1);
        assert!(t.add(addr(9), None, Source::Exchange, t0));
        assert!(t.get(&addr(0)).is_none());
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn failures_back_off_then_drop_but_bootstrap_stays() {
        let t0 = Instant::now();
        let mut t = RoutingTable::new(8, 2);
        t.add(addr(1), None, Source::Exchange, t0);
        t.add(addr(2), None, Source::Bootstrap, t0);
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..MAX_FAILURES + 2 {
            for a in t.due_pings(now, 16) {
                t.ping_sent(&a, [3; 4], now);
            }
            now += PING_TIMEOUT;
            t.due_pings(now, 0);
            if let Some(n) = t.get(&addr(2)) {
                waits.push(n.next_ping.saturating_duration_since(now));
                now = n.next_ping;
            }
        }
        assert!(
            t.get(&addr(1)).is_none(),
            "dropped after {MAX_FAILURES} failures"
        );
        assert!(t.get(&addr(2)).is_some(), "bootstrap nodes stay");
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        assert!(waits.iter().all(|w| *w <= MAX_BACKOFF));
    }

    #[test]
    fn a_pong_must_match_the_ping() {
        let t0 = Instant::now();
        let mut t = RoutingTable::new(8, 2);
        t.add(addr(1), None, Source::Incoming, t0);
        assert!(
            !t.pong(&addr(1), [1; 4], NodeId([1; 20]), 1, 1, [0; 8], t0),
            "no ping out"
        );
        t.ping_sent(&addr(1), [1; 4], t0);
        assert!(
            !t.pong(&addr(1), [2; 4], NodeId([1; 20]), 1, 1, [0; 8], t0),
            "wrong tx"
        );
        assert!(
            !t.pong(&addr(2), [1; 4], NodeId([1; 20]), 1, 1, [0; 8], t0),
            "unknown address"
        );
        assert!(t.pong(&addr(1), [1; 4], NodeId([1; 20]), 1, 1, [0; 8], t0));
        assert!(t.get(&addr(1)).unwrap().live());
    }

    #[test]
    fn neighbours_prefer_diverse_groups_then_rtt() {
        let t0 = Instant::now();
        let mut t = RoutingTable::new(16, 3);
        // Four nodes in 10.0.0.0/24, one in 10.0.1.0/24 (the slowest).
        for (n, ms) in [(1u8, 1u64), (2, 25), (3, 45), (4, 65), (60, 90)] {
            t.add(addr(n), None, Source::Incoming, t0);
            t.ping_sent(&addr(n), [1; 4], t0);
            t.pong(
                &addr(n),
                [1; 4],
                NodeId([n; 20]),
                1,
                1,
                [0; 8],
                t0 + Duration::from_millis(ms),
            );
        }
        t.choose_neighbours(&mut super::super::Rng::new([1; 32]), false);
        let ns = t.neighbours().to_vec();
        assert_eq!(ns.len(), 3);
        assert!(ns.contains(&addr(1)));
        assert!(
            ns.contains(&addr(60)),
            "the other /24 is chosen despite its RTT"
        );
        assert!(ns.contains(&addr(2)));
    }

    #[test]
    fn one_network_fills_at_most_half_the_table() {
        let t0 = Instant::now();
        let mut t = RoutingTable::new(32, 8);
        let mut added = 0;
        for n in 0..100u16 {
            let a = SocketAddr::new([192, 168, 1, n as u8].into(), 6881 + n);
            added += usize::from(t.add(a, None, Source::Incoming, t0));
        }
        assert_eq!(added, 16);
        assert!(
            t.add(addr(7), None, Source::Incoming, t0),
            "another network still gets in"
        );
        let boot = SocketAddr::new([192, 168, 1, 200].into(), 1);
        assert!(
            t.add(boot, None, Source::Bootstrap, t0),
            "bootstrap nodes are not capped"
        );
    }
}
