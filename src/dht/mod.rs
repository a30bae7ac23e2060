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
//! This file is the boundary the engine uses; the protocol is behind it.

use crate::metainfo::InfoHash;
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
    /// Peers stored per info-hash (announces we received).
    pub max_peers_per_hash: usize,
    /// Info-hashes we store peers for.
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
            max_peers_per_hash: 100,
            max_hashes: 2000,
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

/// One DHT node.
pub struct Dht {
    id: NodeId,
    config: Config,
    stats: Stats,
    external_ip: Option<IpAddr>,
}

impl Dht {
    /// A node with id `id` (the engine derives it with [`id_for_ip`] when
    /// it knows its external address, else at random); `seed` seeds
    /// transaction ids, token secrets and lookups.
    pub fn new(id: NodeId, config: Config, seed: [u8; 32], now: Instant) -> Dht {
        let _ = (seed, now);
        Dht {
            id,
            config,
            stats: Stats::default(),
            external_ip: None,
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

    pub fn summary(&self, _now: Instant) -> Summary {
        Summary {
            id: self.id,
            buckets: Vec::new(),
            nodes: 0,
            lookups: 0,
            tracked: 0,
            stored_hashes: 0,
            stored_peers: 0,
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
        let _ = (bytes, from, now);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        None
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        None
    }

    /// Timers: retransmissions and timeouts, lookups, bucket refresh,
    /// re-announces, token rotation. Call at least once a second.
    pub fn tick(&mut self, now: Instant) {
        let _ = now;
    }

    /// A router or node to start from (resolved by a worker; ids unknown):
    /// pinged / asked for our own id.
    pub fn add_bootstrap(&mut self, addr: SocketAddr, now: Instant) {
        let _ = (addr, now);
    }

    /// A node heard of out of band (a peer's wire `port` message, a
    /// magnet's `x.pe` or a .torrent's `nodes`): pinged, added if it answers.
    pub fn add_node(&mut self, addr: SocketAddr, now: Instant) {
        let _ = (addr, now);
    }

    /// Nodes saved by the last run (`encode_saved`).
    pub fn add_saved(&mut self, nodes: &[(NodeId, SocketAddr)], now: Instant) {
        let _ = (nodes, now);
    }

    /// Good nodes to save, nearest buckets first.
    pub fn saved_nodes(&self, max: usize) -> Vec<(NodeId, SocketAddr)> {
        let _ = max;
        Vec::new()
    }

    /// Look up and announce `info_hash` now and every
    /// `announce_interval` until [`Dht::untrack`]; `announce` false only
    /// looks up (a torrent we do not serve yet still announces: the
    /// engine passes true for every public torrent it downloads or seeds).
    pub fn track(&mut self, info_hash: InfoHash, announce: bool, now: Instant) {
        let _ = (info_hash, announce, now);
    }

    pub fn untrack(&mut self, info_hash: &InfoHash) {
        let _ = info_hash;
    }

    /// Look `info_hash` up again now, if its last lookup began at least
    /// a minute ago (a torrent running low on peers). False when refused.
    pub fn lookup_now(&mut self, info_hash: &InfoHash, now: Instant) -> bool {
        let _ = (info_hash, now);
        false
    }

    /// BEP 43: turn read-only mode on or off.
    pub fn set_read_only(&mut self, read_only: bool) {
        self.config.read_only = read_only;
    }

    /// Our external address learned elsewhere (port mapping, a tracker's
    /// `external ip`): counts as a strong vote.
    pub fn set_external_ip(&mut self, ip: IpAddr, now: Instant) {
        let _ = now;
        self.external_ip = Some(ip);
    }
}

/// BEP 42: a node id for external address `ip`, with random bits from `r`
/// (`r[19]`'s low 3 bits are the spec's `rand`).
pub fn id_for_ip(ip: IpAddr, r: [u8; 20]) -> NodeId {
    let _ = ip;
    NodeId(r)
}

/// The saved routing table (`<state>/dht_nodes`): bytes to write.
pub fn encode_saved(nodes: &[(NodeId, SocketAddr)]) -> Vec<u8> {
    let _ = nodes;
    Vec::new()
}

/// The saved routing table read back: at most `max` entries; damaged
/// bytes give what could be read, never an error.
pub fn decode_saved(bytes: &[u8], max: usize) -> Vec<(NodeId, SocketAddr)> {
    let _ = (bytes, max);
    Vec::new()
}
