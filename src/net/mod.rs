//! The network thread: the only user of `mio`.
//!
//! - [`engine`]: the poll loop, torrents, jobs, resume checkpoints, control commands.
//! - [`admission`]: who gets a connection slot, and who goes for a newcomer (sans I/O).
//! - [`bans`]: banned addresses with expiry, strikes for protocol violations.
//! - [`checkpoint`]: one torrent's durability bookkeeping (sync, journal, record), sans I/O.
//! - [`conn`]: one peer connection (transport, capped buffers, readiness, timers).
//! - [`memory`]: the memory budget and the per-part caps derived from it.
//! - [`peerlist`]: the addresses a torrent may dial: back-off, forgetting,
//!   dial order (BEP 40), peer turnover.
//! - [`slab`]: connection slots with generations.
//! - [`statedir`]: whether the state directory takes writes (back-off, rate-limited log lines), sans I/O.
//! - [`udp`]: the shared UDP port, each datagram routed by its content.
//! - [`transport`]: what carries a connection's byte stream (TCP; uTP to come), and dialling.
//!
//! Architecture Invariant: nothing here hashes or touches files; that is
//! work for the pool (`crate::workers`), submitted as jobs.

pub mod admission;
pub mod api;
pub mod bans;
pub mod checkpoint;
pub mod conn;
pub mod engine;
pub mod memory;
pub mod peerlist;
pub mod slab;
pub mod statedir;
pub mod transport;
pub mod udp;

pub use engine::{
    file_storage_factory, is_beacon_target, spawn, system_tls_roots, DhtSettings, EngineConfig,
    EngineThread, LanDiscovery, LoadedTorrent, OverlaySettings, Startup, StorageFactory,
    DHT_ROUTERS, MAX_SAVED_DHT_NODES, MAX_SAVED_NODES,
};
