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

pub use crate::rand::Rng;
