//! One iterative lookup (BEP 5 "find_node"/"get_peers" traversal), as data:
//! the candidates sorted by distance to the target, each fresh, in flight,
//! answered or failed. The node sends what [`Lookup::next_queries`] picks
//! and reports answers and timeouts back.
//!
//! Rules: at most [`ALPHA`] queries in flight; the [`MAX_CANDIDATES`]
//! nearest candidates are kept; a query unanswered after [`QUERY_TIMEOUT`]
//! is sent once more ([`TRIES`] in all), then the candidate failed. The
//! lookup is done when the [`super::table::K`] nearest live candidates have
//! all answered (nothing nearer is pending), when nothing is left to ask,
//! or after [`MAX_QUERIES`] queries or [`MAX_DURATION`].

use super::table::K;
use super::{xor, NodeId};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub const ALPHA: usize = 3;
pub const MAX_CANDIDATES: usize = 64;
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
pub const TRIES: u8 = 2;
pub const MAX_QUERIES: u32 = 120;
pub const MAX_DURATION: Duration = Duration::from_secs(60);

/// What a lookup is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// find_node: our own id (bootstrap) or a bucket refresh.
    FindNode,
    /// get_peers, then announce_peer when `announce`.
    GetPeers { info_hash: [u8; 20], announce: bool },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Fresh,
    InFlight { since: Instant, tries: u8 },
    Answered { token: Option<Vec<u8>> },
    Failed,
}

#[derive(Clone, Debug)]
pub struct Candidate {
    pub id: NodeId,
    pub addr: SocketAddr,
    /// 1 for nodes from our table, n+1 for nodes an n-hop node named.
    pub hops: u8,
    pub state: State,
}

#[derive(Debug)]
pub struct Lookup {
    pub target: NodeId,
    pub kind: Kind,
    pub started: Instant,
    cands: Vec<Candidate>,
    /// Queries sent (retries included).
    pub queries: u32,
    /// Queries to routers still unanswered (they are not candidates).
    pub routers_pending: u32,
    /// Hops of the first node that gave values.
    pub first_value_hops: Option<u8>,
    /// Peers found (bounded by the node).
    pub peers: HashSet<SocketAddr>,
}

impl Lookup {
    pub fn new(target: NodeId, kind: Kind, now: Instant) -> Lookup {
        Lookup {
            target,
            kind,
            started: now,
            cands: Vec::new(),
            queries: 0,
            routers_pending: 0,
            first_value_hops: None,
            peers: HashSet::new(),
        }
    }

    /// Adds a candidate unless known (by id or address); keeps the nearest.
    pub fn add(&mut self, id: NodeId, addr: SocketAddr, hops: u8) {
        if self.cands.iter().any(|c| c.id == id || c.addr == addr) {
            return;
        }
        let d = xor(&id, &self.target);
        let pos = self.cands.partition_point(|c| xor(&c.id, &self.target) < d);
        if pos >= MAX_CANDIDATES {
            return;
        }
        self.cands.insert(
            pos,
            Candidate {
                id,
                addr,
                hops,
                state: State::Fresh,
            },
        );
        // Drop the farthest that is not in flight.
        while self.cands.len() > MAX_CANDIDATES {
            let Some(pos) = self
                .cands
                .iter()
                .rposition(|c| !matches!(c.state, State::InFlight { .. }))
            else {
                break;
            };
            self.cands.remove(pos);
        }
    }

    fn in_flight(&self) -> usize {
        self.cands
            .iter()
            .filter(|c| matches!(c.state, State::InFlight { .. }))
            .count()
    }

    /// Candidates to query now (marked in flight).
    pub fn next_queries(&mut self, now: Instant) -> Vec<(NodeId, SocketAddr)> {
        let mut out = Vec::new();
        if self.is_done(now) {
            return out;
        }
        let mut free = ALPHA.saturating_sub(self.in_flight());
        let mut live = 0;
        for c in self.cands.iter_mut() {
            if free == 0 || live >= K || self.queries >= MAX_QUERIES {
                break;
            }
            match c.state {
                State::Failed => continue,
                State::Fresh => {
                    c.state = State::InFlight {
                        since: now,
                        tries: 1,
                    };
                    self.queries += 1;
                    free -= 1;
                    out.push((c.id, c.addr));
                }
                _ => {}
            }
            live += 1;
        }
        out
    }

    fn find(&mut self, addr: &SocketAddr) -> Option<&mut Candidate> {
        self.cands.iter_mut().find(|c| c.addr == *addr)
    }

    /// An answer from `addr`; false when it was not in flight.
    pub fn answered(&mut self, addr: &SocketAddr, id: &NodeId, token: Option<Vec<u8>>) -> bool {
        let Some(c) = self.find(addr) else {
            return false;
        };
        if c.id != *id {
            // It answered with another id than the one we were told:
            // keep the answer's nodes, but it is not the candidate.
            c.state = State::Failed;
            return true;
        }
        c.state = State::Answered { token };
        true
    }

    pub fn hops_of(&self, addr: &SocketAddr) -> u8 {
        self.cands
            .iter()
            .find(|c| c.addr == *addr)
            .map_or(1, |c| c.hops)
    }

    /// An error answer, or a node we will not ask again.
    pub fn failed(&mut self, addr: &SocketAddr) {
        if let Some(c) = self.find(addr) {
            c.state = State::Failed;
        }
    }

    /// A query to `addr` timed out: true when it should be sent again
    /// (it stays in flight), false when the candidate failed.
    pub fn timed_out(&mut self, addr: &SocketAddr, now: Instant) -> bool {
        let Some(c) = self.find(addr) else {
            return false;
        };
        match c.state {
            State::InFlight { tries, .. } if tries < TRIES => {
                c.state = State::InFlight {
                    since: now,
                    tries: tries + 1,
                };
                self.queries += 1;
                true
            }
            _ => {
                c.state = State::Failed;
                false
            }
        }
    }

    pub fn is_done(&self, now: Instant) -> bool {
        if now.saturating_duration_since(self.started) >= MAX_DURATION {
            return true;
        }
        if self.routers_pending > 0 {
            return false;
        }
        let in_flight = self.in_flight();
        if self.queries >= MAX_QUERIES && in_flight == 0 {
            return true;
        }
        // Done when the K nearest live candidates have all answered.
        self.cands
            .iter()
            .filter(|c| c.state != State::Failed)
            .take(K)
            .all(|c| matches!(c.state, State::Answered { .. }))
    }

    /// The `n` nearest answered candidates that gave a token.
    pub fn announce_targets(&self, n: usize) -> Vec<(SocketAddr, Vec<u8>)> {
        self.cands
            .iter()
            .filter_map(|c| match &c.state {
                State::Answered { token: Some(t) } => Some((c.addr, t.clone())),
                _ => None,
            })
            .take(n)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(i: u8) -> SocketAddr {
        SocketAddr::new([10, 0, 0, i].into(), 1000)
    }

    #[test]
    fn alpha_in_flight_and_done_when_k_nearest_answered() {
        let now = Instant::now();
        let mut l = Lookup::new(NodeId([0; 20]), Kind::FindNode, now);
        for i in 1..=20u8 {
            let mut id = [0u8; 20];
            id[0] = i;
            l.add(NodeId(id), a(i), 1);
        }
        let q = l.next_queries(now);
        assert_eq!(q.len(), ALPHA);
        assert!(l.next_queries(now).is_empty(), "alpha reached");
        // Answer everything, in order: done after the nearest K answered.
        let mut rounds = 0;
        let mut pending = q;
        while !l.is_done(now) && rounds < 100 {
            rounds += 1;
            for (id, addr) in pending.drain(..) {
                assert!(l.answered(&addr, &id, Some(vec![1])));
            }
            pending = l.next_queries(now);
        }
        assert!(l.is_done(now));
        assert_eq!(l.queries as usize, K);
        assert_eq!(l.announce_targets(8).len(), 8);
        assert_eq!(l.announce_targets(8)[0].0, a(1));
    }

    #[test]
    fn timeouts_retry_once_then_fail() {
        let now = Instant::now();
        let mut l = Lookup::new(NodeId([0; 20]), Kind::FindNode, now);
        l.add(NodeId([1; 20]), a(1), 1);
        assert_eq!(l.next_queries(now).len(), 1);
        assert!(l.timed_out(&a(1), now));
        assert!(!l.timed_out(&a(1), now));
        assert!(l.is_done(now), "nothing left to ask");
    }
}
