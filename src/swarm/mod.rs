//! Swarm logic, sans I/O: what to request from whom, what to send, when to
//! choke, which pieces we have. Driven by the net thread with parsed
//! messages, disk results and `now`; tested with fake peers and fake time.
//!
//! - [`torrent`]: [`Swarm`], the per-torrent state machine and its [`Out`] actions.
//! - [`picker`]: piece availability and rarest-first ordering.
//! - [`bitfield`]: sets of pieces.
//! - [`rate`]: rate estimators and token buckets.

pub mod bitfield;
pub mod metadata;
pub mod pex;
pub mod picker;
pub mod rate;
pub mod torrent;

pub use bitfield::Bitfield;
pub use torrent::{Disconnect, Out, PeerInfo, PeerKey, PeerUse, Swarm, SwarmConfig, SwarmStats};
