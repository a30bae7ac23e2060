//! The discovery overlay: peerlet's own way of finding nodes and files
//! without a tracker (DESIGN.md, "Discovery: flooding plus routing table").
//!
//! Sans I/O like `swarm`: [`Overlay`] takes datagrams, their source and
//! `now`, and hands back datagrams to send and [`Event`]s. The net thread
//! drives it in the daemon; tests drive many of them in a simulated network.
//! The wire format is in docs/PROTOCOL.md.
//!
//! - `msg`: packets, parse/encode, size caps.
//! - `table`: the routing table (liveness, back-off, eviction) and neighbours.
//! - `content`: the content routing table (info-hash → holders) and word matching.
//! - `node`: the state machine: pings, node exchange, announce, flooded
//!   search with duplicate suppression, reverse-path hits, rate limits.

pub mod content;
pub mod identity;
pub mod msg;
mod node;
pub mod table;
pub mod words;

pub use identity::NodeKey;
pub use msg::{Holder, Item, Target};
pub use node::{decode_saved, encode_saved, Config, Event, Overlay, SearchId, Stats};

use std::fmt;

/// A node's id: the SHA-1 of its public key.
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

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", &self.to_hex()[..12])
    }
}

/// A small, fast generator (xoshiro256**) for transaction and query ids,
/// seeded by the caller from the operating system's randomness. Query ids
/// need to be hard to guess, not secret: a guessed id lets a stranger send a
/// hit, which still has to come from a node the query went to.
#[derive(Clone, Debug)]
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: [u8; 32]) -> Rng {
        let mut s = [0u64; 4];
        for (i, w) in s.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&seed[i * 8..i * 8 + 8]);
            *w = u64::from_le_bytes(b);
        }
        if s == [0; 4] {
            s[0] = 0x9e37_79b9_7f4a_7c15;
        }
        Rng(s)
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        out
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}
