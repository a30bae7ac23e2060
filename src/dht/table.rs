//! The routing table (BEP 5 "Routing Table"): buckets of [`K`] nodes by
//! XOR distance from our id; only the bucket holding our id splits.
//!
//! Bucket `i` (for `i` below the last) holds the nodes whose distance
//! from us has exactly `i` leading zero bits; the last bucket holds all
//! nodes with at least that many, our own neighbourhood. Index 0 is the
//! farthest half of the id space.
//!
//! Liveness (BEP 5): a node is *good* when it answered one of our queries
//! in the last 15 minutes, or queried us in the last 15 minutes after
//! having answered once; *bad* after [`BAD_FAILS`] queries in a row went
//! unanswered; *questionable* otherwise. A full bucket takes a new node in
//! place of a bad one; otherwise the newcomer waits in the bucket's
//! replacement cache ([`REPLACEMENTS`]) and the caller pings the bucket's
//! stalest questionable node, whose failures make room.
//!
//! Defence: one node per IP address in the whole table and one per /24
//! (IPv4) or /64 (IPv6) in each bucket, as libtorrent's
//! `restrict_routing_ips`, so one host or network cannot fill a bucket;
//! loopback addresses are exempt (several daemons on one machine in tests).
//!
//! BEP 42: compliant nodes are preferred, not required. When a replacement
//! is promoted, a compliant one goes first. Nothing here does I/O.

use super::{distance_lz, NodeId, GOOD_FOR};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// Nodes per bucket (BEP 5's K).
pub const K: usize = 8;
/// Newcomers kept per bucket while it is full.
pub const REPLACEMENTS: usize = 4;
/// Failed queries in a row that make a node bad.
pub const BAD_FAILS: u8 = 3;
/// At most this many buckets (one per bit of distance).
pub const MAX_BUCKETS: usize = 160;

#[derive(Clone, Debug)]
pub struct Node {
    pub id: NodeId,
    pub addr: SocketAddr,
    /// When it last answered one of our queries.
    pub last_reply: Option<Instant>,
    /// When it last queried us.
    pub last_query: Option<Instant>,
    /// Our queries in a row it did not answer.
    pub fails: u8,
    /// When we last pinged it to check liveness.
    pub last_ping: Option<Instant>,
    /// BEP 42: its id matches its address.
    pub secure: bool,
}

impl Node {
    pub fn new(id: NodeId, addr: SocketAddr, secure: bool) -> Node {
        Node {
            id,
            addr,
            last_reply: None,
            last_query: None,
            fails: 0,
            last_ping: None,
            secure,
        }
    }

    pub fn is_bad(&self) -> bool {
        self.fails >= BAD_FAILS
    }

    pub fn is_good(&self, now: Instant) -> bool {
        if self.is_bad() {
            return false;
        }
        let recent =
            |t: Option<Instant>| t.is_some_and(|t| now.saturating_duration_since(t) < GOOD_FOR);
        recent(self.last_reply) || (self.last_reply.is_some() && recent(self.last_query))
    }

    /// The last time we heard from it, for "stalest first".
    fn last_heard(&self) -> Option<Instant> {
        self.last_reply.max(self.last_query)
    }
}

#[derive(Clone, Debug)]
pub struct Bucket {
    pub nodes: Vec<Node>,
    pub replacements: Vec<Node>,
    /// When a node was last added, or answered (BEP 5 "last changed").
    pub last_changed: Instant,
}

/// What [`Table::insert`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Insert {
    Added,
    Updated,
    /// The bucket is full: the newcomer waits; ping this questionable node.
    Full {
        ping: Option<SocketAddr>,
    },
    /// Refused (same IP taken, our own id, ...).
    Refused,
}

pub struct Table {
    id: NodeId,
    pub buckets: Vec<Bucket>,
}

/// The address key for "one per IP" (loopback: the whole address).
fn ip_key(addr: &SocketAddr) -> (IpAddr, u16) {
    if addr.ip().is_loopback() {
        (addr.ip(), addr.port())
    } else {
        (addr.ip(), 0)
    }
}

/// True when `a` and `b` share a /24 (IPv4) or /64 (IPv6), loopback exempt.
fn same_network(a: &IpAddr, b: &IpAddr) -> bool {
    if a.is_loopback() || b.is_loopback() {
        return false;
    }
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets()[..3] == b.octets()[..3],
        (IpAddr::V6(a), IpAddr::V6(b)) => a.octets()[..8] == b.octets()[..8],
        _ => false,
    }
}

impl Table {
    pub fn new(id: NodeId, now: Instant) -> Table {
        Table {
            id,
            buckets: vec![Bucket {
                nodes: Vec::new(),
                replacements: Vec::new(),
                last_changed: now,
            }],
        }
    }

    pub fn bucket_index(&self, id: &NodeId) -> usize {
        distance_lz(&self.id, id).min(self.buckets.len() - 1)
    }

    /// Nodes in the table (not counting replacements).
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.nodes.len()).sum()
    }

    pub fn replacements(&self) -> usize {
        self.buckets.iter().map(|b| b.replacements.len()).sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Node> {
        self.buckets.iter().flat_map(|b| b.nodes.iter())
    }

    pub fn get(&self, id: &NodeId) -> Option<&Node> {
        let b = self.buckets.get(self.bucket_index(id))?;
        b.nodes.iter().find(|n| n.id == *id)
    }

    fn get_mut(&mut self, id: &NodeId) -> Option<&mut Node> {
        let i = self.bucket_index(id);
        self.buckets
            .get_mut(i)?
            .nodes
            .iter_mut()
            .find(|n| n.id == *id)
    }

    /// The table entry at `addr`'s IP, if any.
    pub fn by_addr(&self, addr: &SocketAddr) -> Option<&Node> {
        let key = ip_key(addr);
        self.iter().find(|n| ip_key(&n.addr) == key)
    }

    /// A node answered one of our queries (`replied`) or queried us.
    /// Nodes enter the table only by answering: a query from a node not
    /// in the table only refreshes it when it is there.
    pub fn insert(&mut self, node: Node, replied: bool, now: Instant) -> Insert {
        if node.id == self.id {
            return Insert::Refused;
        }
        if let Some(n) = self.get_mut(&node.id) {
            if n.addr != node.addr {
                // Same id at a new address: believe it only once the old
                // address stopped answering (libtorrent does the same).
                if !(replied && n.fails > 0) {
                    return Insert::Refused;
                }
                n.addr = node.addr;
                n.secure = node.secure;
            }
            if replied {
                n.last_reply = Some(now);
                n.fails = 0;
            } else {
                n.last_query = Some(now);
            }
            if replied {
                let i = self.bucket_index(&node.id);
                if let Some(b) = self.buckets.get_mut(i) {
                    b.last_changed = now;
                }
            }
            return Insert::Updated;
        }
        if !replied {
            return Insert::Refused;
        }
        // One node per IP in the whole table. A node at the same address
        // with a new id (a restart, a BEP 42 id change) replaces the old
        // entry once it answers.
        if let Some(old) = self.by_addr(&node.addr) {
            if old.addr == node.addr || old.is_bad() {
                let old_id = old.id;
                self.remove(&old_id);
            } else {
                return Insert::Refused;
            }
        }
        let mut node = node;
        node.last_reply = Some(now);
        node.fails = 0;
        // Bounded: each round splits once, and there are at most 160 buckets.
        for _ in 0..=MAX_BUCKETS {
            let i = self.bucket_index(&node.id);
            let can_split = i + 1 == self.buckets.len() && self.buckets.len() < MAX_BUCKETS;
            let Some(bucket) = self.buckets.get_mut(i) else {
                return Insert::Refused;
            };
            if bucket
                .nodes
                .iter()
                .any(|n| same_network(&n.addr.ip(), &node.addr.ip()))
            {
                return Insert::Refused;
            }
            if bucket.nodes.len() < K {
                bucket.nodes.push(node);
                bucket.last_changed = now;
                return Insert::Added;
            }
            if let Some(pos) = bucket.nodes.iter().position(Node::is_bad) {
                bucket.nodes[pos] = node;
                bucket.last_changed = now;
                return Insert::Added;
            }
            if can_split {
                self.split(now);
                continue;
            }
            // Full: keep the newcomer as a replacement, ping the stalest
            // questionable node.
            bucket
                .replacements
                .retain(|r| r.id != node.id && ip_key(&r.addr) != ip_key(&node.addr));
            if bucket.replacements.len() >= REPLACEMENTS {
                bucket.replacements.remove(0);
            }
            bucket.replacements.push(node);
            let ping = bucket
                .nodes
                .iter()
                .filter(|n| !n.is_good(now))
                .filter(|n| {
                    n.last_ping
                        .is_none_or(|t| now.saturating_duration_since(t).as_secs() >= 10)
                })
                .min_by_key(|n| n.last_heard())
                .map(|n| n.id);
            let ping = ping.and_then(|id| {
                let n = bucket.nodes.iter_mut().find(|n| n.id == id)?;
                n.last_ping = Some(now);
                Some(n.addr)
            });
            return Insert::Full { ping };
        }
        Insert::Refused
    }

    /// Splits the last bucket: the nodes nearer to us move to a new last bucket.
    fn split(&mut self, now: Instant) {
        let depth = self.buckets.len();
        let id = self.id;
        let Some(last) = self.buckets.last_mut() else {
            return;
        };
        let (near, far): (Vec<Node>, Vec<Node>) = std::mem::take(&mut last.nodes)
            .into_iter()
            .partition(|n| distance_lz(&id, &n.id) >= depth);
        let (rnear, rfar): (Vec<Node>, Vec<Node>) = std::mem::take(&mut last.replacements)
            .into_iter()
            .partition(|n| distance_lz(&id, &n.id) >= depth);
        last.nodes = far;
        last.replacements = rfar;
        self.buckets.push(Bucket {
            nodes: near,
            replacements: rnear,
            last_changed: now,
        });
    }

    /// Whether a node with `id` could enter now (room, a bad node, or a split).
    pub fn has_room(&self, id: &NodeId) -> bool {
        let i = self.bucket_index(id);
        let last = i + 1 == self.buckets.len();
        self.buckets
            .get(i)
            .is_some_and(|b| b.nodes.len() < K || last || b.nodes.iter().any(Node::is_bad))
    }

    pub fn remove(&mut self, id: &NodeId) -> Option<Node> {
        let i = self.bucket_index(id);
        let b = self.buckets.get_mut(i)?;
        let pos = b.nodes.iter().position(|n| n.id == *id)?;
        Some(b.nodes.remove(pos))
    }

    /// One of our queries to `id` went unanswered. A node that turns bad
    /// is replaced from the bucket's replacement cache (BEP 42-compliant
    /// first, then the newest); returns true when it was.
    pub fn failed(&mut self, id: &NodeId, now: Instant) -> bool {
        let Some(n) = self.get_mut(id) else {
            return false;
        };
        n.fails = n.fails.saturating_add(1);
        if !n.is_bad() {
            return false;
        }
        let i = self.bucket_index(id);
        let Some(b) = self.buckets.get_mut(i) else {
            return false;
        };
        let Some(pos) = b
            .replacements
            .iter()
            .enumerate()
            .max_by_key(|(i, r)| (r.secure, *i))
            .map(|(i, _)| i)
        else {
            return false;
        };
        let r = b.replacements.remove(pos);
        let Some(slot) = b.nodes.iter_mut().find(|n| n.id == *id) else {
            return false;
        };
        *slot = r;
        b.last_changed = now;
        true
    }

    /// Up to `n` nodes nearest to `target`, good before questionable, bad never.
    pub fn closest(&self, target: &NodeId, n: usize, now: Instant) -> Vec<&Node> {
        let mut all: Vec<&Node> = self.iter().filter(|n| !n.is_bad()).collect();
        crate::sort::sort_by_key(&mut all, |node| super::xor(&node.id, target));
        let _ = now;
        all.truncate(n);
        all
    }

    /// The questionable node heard from least recently, not pinged in the
    /// last `min_gap` seconds; marks it pinged.
    pub fn stalest(&mut self, min_gap: u64, now: Instant) -> Option<SocketAddr> {
        let n = self
            .buckets
            .iter_mut()
            .flat_map(|b| b.nodes.iter_mut())
            .filter(|n| !n.is_good(now))
            .filter(|n| {
                n.last_ping
                    .is_none_or(|t| now.saturating_duration_since(t).as_secs() >= min_gap)
            })
            .min_by_key(|n| n.last_heard())?;
        n.last_ping = Some(now);
        Some(n.addr)
    }

    /// Re-bucket every node for a new id of ours (BEP 42 after our
    /// external address changed); liveness is kept.
    pub fn rebuild(&mut self, id: NodeId, now: Instant) {
        let old: Vec<Node> = self.buckets.drain(..).flat_map(|b| b.nodes).collect();
        *self = Table::new(id, now);
        for n in old {
            let (last_reply, last_query, fails) = (n.last_reply, n.last_query, n.fails);
            if self.insert(n.clone(), true, now) == Insert::Added {
                if let Some(m) = self.get_mut(&n.id) {
                    m.last_reply = last_reply;
                    m.last_query = last_query;
                    m.fails = fails;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn addr(i: u32) -> SocketAddr {
        let b = i.to_be_bytes();
        SocketAddr::new([b[1], b[2], b[3], 1].into(), 6881)
    }

    /// An id at distance with `lz` leading zero bits from `ours`, varied by `salt`.
    fn id_at(ours: &NodeId, lz: usize, salt: u8) -> NodeId {
        let mut d = [0u8; 20];
        d[lz / 8] = 0x80 >> (lz % 8);
        d[19] ^= salt;
        if lz / 8 != 19 {
            d[18] ^= salt;
        }
        let mut id = ours.0;
        for (a, b) in id.iter_mut().zip(d) {
            *a ^= b;
        }
        NodeId(id)
    }

    #[test]
    fn splits_only_our_bucket_and_keeps_k() {
        let now = Instant::now();
        let me = NodeId([0x55; 20]);
        let mut t = Table::new(me, now);
        // 20 nodes in the far half: one bucket of 8, the rest replacements.
        for i in 0..20u32 {
            let r = t.insert(Node::new(id_at(&me, 0, i as u8), addr(i), false), true, now);
            assert!(matches!(r, Insert::Added | Insert::Full { .. }), "{r:?}");
        }
        assert_eq!(t.buckets[0].nodes.len(), K);
        assert_eq!(t.buckets[0].replacements.len(), REPLACEMENTS);
        // Nodes near us keep splitting the last bucket.
        for i in 0..40u32 {
            t.insert(
                Node::new(
                    id_at(&me, 1 + i as usize % 5, i as u8),
                    addr(100 + i),
                    false,
                ),
                true,
                now,
            );
        }
        assert!(t.buckets.len() >= 6);
        for (i, b) in t.buckets.iter().enumerate() {
            assert!(b.nodes.len() <= K, "bucket {i}");
        }
        assert!(t.len() <= K * t.buckets.len());
    }

    #[test]
    fn liveness_good_questionable_bad_and_replacement() {
        let now = Instant::now();
        let me = NodeId([0; 20]);
        let mut t = Table::new(me, now);
        // Fill the far bucket (which cannot split once a near bucket exists).
        t.insert(Node::new(id_at(&me, 5, 1), addr(999), false), true, now);
        t.insert(Node::new(id_at(&me, 0, 0), addr(0), false), true, now);
        for i in 1..K as u32 {
            t.insert(Node::new(id_at(&me, 0, i as u8), addr(i), false), true, now);
        }
        let first = id_at(&me, 0, 0);
        assert!(t.get(&first).unwrap().is_good(now));
        let later = now + Duration::from_secs(16 * 60);
        assert!(
            !t.get(&first).unwrap().is_good(later),
            "questionable after 15 min"
        );
        // A query from it after it answered before makes it good again.
        t.insert(Node::new(first, addr(0), false), false, later);
        assert!(t.get(&first).unwrap().is_good(later));
        // A newcomer to the full bucket waits; a questionable node is pinged.
        let newcomer = id_at(&me, 0, 200);
        let r = t.insert(Node::new(newcomer, addr(200), true), true, later);
        assert!(matches!(r, Insert::Full { ping: Some(_) }), "{r:?}");
        assert!(t.get(&newcomer).is_none());
        // The pinged node fails three times: bad, replaced by the newcomer.
        let Insert::Full { ping: Some(pinged) } = r else {
            unreachable!()
        };
        let pinged_id = t.by_addr(&pinged).unwrap().id;
        assert!(!t.failed(&pinged_id, later));
        assert!(!t.failed(&pinged_id, later));
        assert!(t.failed(&pinged_id, later));
        assert!(t.get(&newcomer).is_some());
        assert!(t.get(&pinged_id).is_none());
    }

    #[test]
    fn one_node_per_ip_and_per_24_in_a_bucket() {
        let now = Instant::now();
        let me = NodeId([0; 20]);
        let mut t = Table::new(me, now);
        let a: SocketAddr = "1.2.3.4:1000".parse().unwrap();
        assert_eq!(
            t.insert(Node::new(id_at(&me, 0, 1), a, false), true, now),
            Insert::Added
        );
        // Same IP, other port and id: refused.
        let a2: SocketAddr = "1.2.3.4:1001".parse().unwrap();
        assert_eq!(
            t.insert(Node::new(id_at(&me, 3, 2), a2, false), true, now),
            Insert::Refused
        );
        // Same /24 in the same bucket: refused.
        let b: SocketAddr = "1.2.3.5:1000".parse().unwrap();
        assert_eq!(
            t.insert(Node::new(id_at(&me, 0, 3), b, false), true, now),
            Insert::Refused
        );
        // Loopback is exempt.
        for p in 0..3 {
            let l = SocketAddr::new([127, 0, 0, 1].into(), 7000 + p);
            assert_eq!(
                t.insert(Node::new(id_at(&me, 1, p as u8), l, false), true, now),
                Insert::Added
            );
        }
        // Same address, new id (a restart): the old entry goes.
        assert_eq!(
            t.insert(Node::new(id_at(&me, 0, 9), a, false), true, now),
            Insert::Added
        );
        assert!(t.get(&id_at(&me, 0, 1)).is_none());
        // Our own id never enters.
        assert_eq!(
            t.insert(
                Node::new(me, "5.5.5.5:1".parse().unwrap(), false),
                true,
                now
            ),
            Insert::Refused
        );
        // A query alone does not add a node.
        assert_eq!(
            t.insert(
                Node::new(id_at(&me, 0, 50), "6.6.6.6:1".parse().unwrap(), false),
                false,
                now
            ),
            Insert::Refused
        );
    }

    #[test]
    fn rebuild_keeps_nodes() {
        let now = Instant::now();
        let me = NodeId([0; 20]);
        let mut t = Table::new(me, now);
        for i in 0..30u32 {
            let mut id = [0u8; 20];
            id[..4].copy_from_slice(&(i * 0x0800_0000 + 7).to_be_bytes());
            t.insert(Node::new(NodeId(id), addr(i), false), true, now);
        }
        let before = t.len();
        t.rebuild(NodeId([0xff; 20]), now);
        assert!(t.len() >= before.min(K * 2), "{} of {before}", t.len());
    }
}
