//! The Mainline DHT on the net thread: feeds [`Dht`] the datagrams of the
//! shared UDP port classed as KRPC (`net::udp`), sends what it queues,
//! keeps every public torrent and magnet tracked (looked up and announced
//! periodically, sooner while a torrent is short of peers), hands the peers
//! it finds to their torrent's `PeerList` (source `dht`), resolves the
//! bootstrap routers on the network threads and saves the routing table
//! (`<state>/dht_nodes`) every 30 min and at shutdown.
//!
//! Never in a private network (the config leaves it off, and `spawn`
//! checks again); never for a private torrent (BEP 27).

use super::*;
use crate::dht::{self, Dht, Event as DhtEvent};

/// The routers a node starts from when no saved node answers (libtorrent's,
/// Transmission's and µTorrent's defaults): the `dht_bootstrap` default.
pub const DHT_ROUTERS: [&str; 3] = [
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "router.utorrent.com:6881",
];
/// Most nodes saved (the file stays far below the 64 KiB read at start).
pub const MAX_SAVED_DHT_NODES: usize = 512;
/// The routing table is saved (when it changed) this often and at shutdown.
const SAVE_INTERVAL: Duration = Duration::from_secs(30 * 60);
/// A torrent with fewer connected peers than this looks up again sooner.
const LOW_PEERS: usize = 10;
/// How soon: a magnet or a torrent with no peer, one with a few.
const STARVING_LOOKUP: Duration = Duration::from_secs(60);
const LOW_LOOKUP: Duration = Duration::from_secs(5 * 60);
/// Fewer good nodes than this: the routers are asked again.
const FEW_NODES: usize = 8;

/// BEP 43: a node no other node queries for this long (with a table to
/// be known from) is taken to be unreachable and turns read-only; a
/// read-only node tries being reachable again this often.
const REACH_CHECK: Duration = Duration::from_secs(15 * 60);
const REACH_PROBE: Duration = Duration::from_secs(60 * 60);

/// Whether we seem reachable, from the queries other nodes send us (sans
/// I/O: counts and `now` in, the mode out).
#[derive(Clone, Debug)]
pub(super) struct Reachability {
    /// When the current window ends.
    check_at: Instant,
    /// Queries received before the window began.
    at_start: u64,
}

impl Reachability {
    pub(super) fn new(now: Instant) -> Reachability {
        Reachability {
            check_at: now + REACH_CHECK,
            at_start: 0,
        }
    }

    /// `queries`: queries other nodes sent us since start (answered or
    /// not); `nodes`: our table's size. The read-only mode to be in now.
    pub(super) fn update(
        &mut self,
        read_only: bool,
        queries: u64,
        nodes: usize,
        now: Instant,
    ) -> bool {
        if read_only {
            // Someone found us anyway, or time to try again.
            if queries > self.at_start || now >= self.check_at {
                self.at_start = queries;
                self.check_at = now + REACH_CHECK;
                return false;
            }
            return true;
        }
        if now < self.check_at {
            return false;
        }
        let quiet = queries == self.at_start;
        self.at_start = queries;
        if quiet && nodes >= FEW_NODES {
            self.check_at = now + REACH_PROBE;
            return true;
        }
        self.check_at = now + REACH_CHECK;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unqueried_nodes_go_read_only_and_probe_again() {
        let t0 = Instant::now();
        let mut r = Reachability::new(t0);
        // Queried within the window: stays reachable.
        assert!(!r.update(false, 0, 50, t0 + Duration::from_secs(60)));
        assert!(!r.update(false, 3, 50, t0 + REACH_CHECK));
        // A quiet window with a table to be known from: read-only.
        let t1 = t0 + REACH_CHECK * 2;
        assert!(r.update(false, 3, 50, t1));
        assert!(r.update(true, 3, 50, t1 + Duration::from_secs(60)));
        // An hour later it tries again...
        let t2 = t1 + REACH_PROBE;
        assert!(!r.update(true, 3, 50, t2));
        // ...and a query in the new window keeps it reachable.
        assert!(!r.update(false, 4, 50, t2 + REACH_CHECK));
        // A query while read-only ends the mode at once.
        let t3 = t2 + REACH_CHECK * 2;
        assert!(r.update(false, 4, 50, t3));
        assert!(!r.update(true, 5, 50, t3 + Duration::from_secs(1)));
        // A node with almost no table is not judged.
        let mut r = Reachability::new(t0);
        assert!(!r.update(false, 0, 2, t0 + REACH_CHECK));
    }
}

/// The DHT's settings.
#[derive(Clone, Debug)]
pub struct DhtSettings {
    pub enabled: bool,
    /// Routers to start from (`host:port` or `ip:port`).
    pub bootstrap: Vec<String>,
}

impl DhtSettings {
    /// On, with no router: a node that only learns of others from saved
    /// nodes and peers' `port` messages (tests; the config gives routers).
    pub fn new() -> DhtSettings {
        DhtSettings {
            enabled: true,
            bootstrap: Vec::new(),
        }
    }
}

impl Default for DhtSettings {
    fn default() -> Self {
        DhtSettings::new()
    }
}

pub(super) struct DhtDriver {
    pub(super) node: Dht,
    /// Torrents (and magnets) tracked now, by torrent id.
    tracked: HashMap<u32, InfoHash>,
    /// When a short-of-peers torrent may look up again.
    next_lookup: HashMap<u32, Instant>,
    next_resolve: Instant,
    last_resolve: Instant,
    resolved_any: bool,
    /// The saved table's bytes (nothing is written while they stay the same).
    saved: Vec<u8>,
    saving: Vec<u8>,
    save_in_flight: bool,
    next_save: Instant,
    reach: Reachability,
}

impl DhtDriver {
    pub(super) fn new(
        peer_port: u16,
        saved: &[(dht::NodeId, SocketAddr)],
        now: Instant,
    ) -> io::Result<DhtDriver> {
        // Transaction ids and the token secret must be hard to guess.
        let seed: [u8; 32] = crate::rand::bytes().map_err(io::Error::other)?;
        let id: [u8; 20] = crate::rand::bytes().map_err(io::Error::other)?;
        let config = dht::Config {
            peer_port,
            ..dht::Config::default()
        };
        let mut node = Dht::new(dht::NodeId(id), config, seed, now);
        node.add_saved(saved, now);
        Ok(DhtDriver {
            node,
            tracked: HashMap::new(),
            next_lookup: HashMap::new(),
            next_resolve: now,
            last_resolve: now,
            resolved_any: false,
            saved: dht::encode_saved(saved),
            saving: Vec::new(),
            save_in_flight: false,
            next_save: now + SAVE_INTERVAL,
            reach: Reachability::new(now),
        })
    }
}

/// The counters of `peerlet dht` and /metrics, by name.
pub(super) fn counters(s: &dht::Stats) -> Vec<(&'static str, u64)> {
    vec![
        ("packets_in", s.packets_in),
        ("packets_out", s.packets_out),
        ("bytes_in", s.bytes_in),
        ("bytes_out", s.bytes_out),
        ("answered_ping", s.answered_ping),
        ("answered_find_node", s.answered_find_node),
        ("answered_get_peers", s.answered_get_peers),
        ("answered_announce", s.answered_announce),
        ("rate_limited", s.rate_limited),
        ("invalid", s.invalid),
        ("timeouts", s.timeouts),
        ("lookups_started", s.lookups_started),
        ("lookups_done", s.lookups_done),
        ("announces", s.announces),
        ("queries_sent", s.queries_sent),
        ("responses_in", s.responses_in),
        ("errors_in", s.errors_in),
        ("dropped_out", s.dropped_out),
        ("bad_tokens", s.bad_tokens),
        ("read_only_dropped", s.read_only_dropped),
    ]
}

impl Engine {
    /// A KRPC datagram from the shared UDP socket.
    pub(super) fn dht_input(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) {
        if let Some(d) = self.dht.as_mut() {
            d.node.on_datagram(bytes, from, now);
            self.pump_dht(now);
        }
    }

    /// A node heard of from a peer (`port` message) or a .torrent's `nodes`.
    pub(super) fn dht_add_node(&mut self, addr: SocketAddr, now: Instant) {
        if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return;
        }
        if let Some(d) = self.dht.as_mut() {
            d.node.add_node(addr, now);
            self.pump_dht(now);
        }
    }

    /// A .torrent's BEP 5 `nodes`: addresses are pinged now, names are
    /// resolved on the network threads first.
    pub(super) fn dht_torrent_nodes(&mut self, nodes: &[String], now: Instant) {
        if self.dht.is_none() {
            return;
        }
        for n in nodes.iter().take(crate::metainfo::MAX_NODES) {
            match n.parse::<SocketAddr>() {
                Ok(addr) => self.dht_add_node(addr, now),
                Err(_) => {
                    let name = n.clone();
                    self.run_net_job(Ctx::DhtBootstrap, move || {
                        let addrs: Vec<SocketAddr> = name
                            .to_socket_addrs()
                            .map(|a| a.take(2).collect())
                            .unwrap_or_default();
                        RunResult::Addrs(addrs)
                    });
                }
            }
        }
    }

    /// Sends what the DHT queued and acts on its events.
    pub(super) fn pump_dht(&mut self, now: Instant) {
        let Some(d) = self.dht.as_mut() else {
            return;
        };
        while let Some((to, bytes)) = d.node.poll_transmit() {
            if let Err(e) = self.udp.send_to(&bytes, to) {
                log::debug!("dht: sending to {to}: {e}");
            }
        }
        let mut found: Vec<(InfoHash, Vec<SocketAddr>)> = Vec::new();
        let mut external: Option<IpAddr> = None;
        while let Some(ev) = d.node.poll_event() {
            match ev {
                DhtEvent::Peers { info_hash, peers } => found.push((info_hash, peers)),
                DhtEvent::LookupDone {
                    info_hash,
                    peers,
                    announced,
                } => log::debug!(
                    "dht: lookup of {info_hash} done: {peers} peers, announced to {announced} nodes"
                ),
                DhtEvent::ExternalIp(ip) => {
                    log::info!("dht: our external address is {ip}");
                    external = Some(ip);
                }
            }
        }
        if let Some(ip) = external {
            // BEP 40 priorities from now on, and an address never to dial.
            self.external_ip = Some(ip);
            let own = self.own_addr();
            for t in self.torrents.values_mut() {
                t.known.set_own_addr(own);
                t.pex.add_own_addr(own);
            }
            for m in self.magnets.values_mut() {
                m.known.set_own_addr(own);
            }
        }
        for (ih, peers) in found {
            let Some(&tid) = self.by_hash.get(&ih) else {
                continue;
            };
            let mut added = false;
            for addr in peers {
                if self.is_own_addr(addr) || addr.port() == 0 {
                    continue;
                }
                // Like PEX: a capped share of the known list, never
                // resetting another address's back-off.
                if let Some(t) = self.torrents.get_mut(&tid) {
                    if !t.meta.private {
                        added |= t.known.add_exchanged(addr, "dht", now);
                    }
                } else if let Some(m) = self.magnets.get_mut(&tid) {
                    added |= m.known.add_exchanged(addr, "dht", now);
                }
            }
            if added {
                if self.magnets.contains_key(&tid) {
                    self.connect_magnet_peers(tid, now);
                } else {
                    self.connect_peers(tid, now);
                }
            }
        }
    }

    /// Once a second.
    pub(super) fn tick_dht(&mut self, now: Instant) {
        if self.dht.is_none() || self.shutdown.is_some() {
            return;
        }
        self.update_tracked(now);
        let resolve = self.dht.as_ref().is_some_and(|d| {
            now >= d.next_resolve
                || (now >= d.last_resolve + Duration::from_secs(60)
                    && d.node.summary(now).nodes < FEW_NODES)
        });
        if resolve {
            self.resolve_dht_routers(now);
        }
        let Some(d) = self.dht.as_mut() else {
            return;
        };
        d.node.tick(now);
        let st = d.node.stats();
        let queries = st.answered_ping
            + st.answered_find_node
            + st.answered_get_peers
            + st.answered_announce
            + st.bad_tokens
            + st.rate_limited
            + st.read_only_dropped;
        let was = d.node.config().read_only;
        let nodes = d.node.summary(now).nodes;
        let read_only = d.reach.update(was, queries, nodes, now);
        if read_only != was {
            d.node.set_read_only(read_only);
            if read_only {
                log::info!(
                    "dht: no node queried us for {} min: we seem unreachable; read-only (BEP 43) until one does",
                    REACH_CHECK.as_secs() / 60
                );
            } else {
                log::info!("dht: trying to be reachable again (answering queries)");
            }
        }
        if now >= d.next_save {
            d.next_save = now + SAVE_INTERVAL;
            self.save_dht_nodes();
        }
        self.pump_dht(now);
    }

    /// Tracks every public torrent and magnet that runs; untracks the rest;
    /// looks up again sooner for those short of peers.
    fn update_tracked(&mut self, now: Instant) {
        let mut want: Vec<(u32, InfoHash, usize)> = Vec::new();
        for (tid, m) in &self.magnets {
            if !m.paused {
                want.push((*tid, m.info_hash, m.known.n_connected()));
            }
        }
        for (tid, t) in &self.torrents {
            if !t.meta.private && !t.paused && t.phase == Phase::Running {
                let peers = t.swarm.as_ref().map_or(0, |s| s.n_peers());
                // A complete torrent only announces; it needs nobody.
                let n = if t.swarm.as_ref().is_some_and(|s| s.is_complete()) {
                    LOW_PEERS
                } else {
                    peers
                };
                want.push((*tid, t.meta.info_hash, n));
            }
        }
        let Some(d) = self.dht.as_mut() else {
            return;
        };
        let gone: Vec<u32> = d
            .tracked
            .keys()
            .filter(|tid| !want.iter().any(|(t, _, _)| t == *tid))
            .copied()
            .collect();
        for tid in gone {
            if let Some(ih) = d.tracked.remove(&tid) {
                d.node.untrack(&ih);
            }
            d.next_lookup.remove(&tid);
        }
        for (tid, ih, peers) in want {
            if d.tracked.get(&tid) != Some(&ih) {
                d.tracked.insert(tid, ih);
                d.node.track(ih, true, now);
                d.next_lookup.insert(tid, now + STARVING_LOOKUP);
                continue;
            }
            if peers >= LOW_PEERS {
                continue;
            }
            let every = if peers == 0 {
                STARVING_LOOKUP
            } else {
                LOW_LOOKUP
            };
            let next = d.next_lookup.entry(tid).or_insert(now + every);
            if now >= *next {
                *next = now + every;
                d.node.lookup_now(&ih, now);
            }
        }
    }

    /// Router names are resolved on the network threads: at start, every
    /// minute until one resolved, then every 30 min, and whenever the
    /// table runs nearly empty (at most once a minute).
    fn resolve_dht_routers(&mut self, now: Instant) {
        let Some(d) = self.dht.as_mut() else {
            return;
        };
        d.last_resolve = now;
        d.next_resolve = now
            + if d.resolved_any {
                Duration::from_secs(1800)
            } else {
                Duration::from_secs(60)
            };
        let mut names = Vec::new();
        for b in self.config.dht.bootstrap.clone() {
            match b.parse::<SocketAddr>() {
                Ok(addr) => {
                    d.node.add_bootstrap(addr, now);
                    d.resolved_any = true;
                }
                Err(_) => names.push(b),
            }
        }
        for b in names {
            self.run_net_job(Ctx::DhtBootstrap, move || {
                let addrs: Vec<SocketAddr> = b
                    .to_socket_addrs()
                    .map(|a| a.take(4).collect())
                    .unwrap_or_else(|e| {
                        log::info!("dht router {b}: {e}");
                        Vec::new()
                    });
                RunResult::Addrs(addrs)
            });
        }
        self.pump_dht(now);
    }

    pub(super) fn on_dht_routers_resolved(&mut self, addrs: Vec<SocketAddr>, now: Instant) {
        let family_ok = |a: &SocketAddr| a.is_ipv4() == self.listen_addr.is_ipv4();
        if let Some(d) = self.dht.as_mut() {
            for a in addrs.into_iter().filter(family_ok) {
                d.resolved_any = true;
                d.node.add_bootstrap(a, now);
            }
        }
        self.pump_dht(now);
    }

    /// Writes the DHT routing table if it changed since the last save.
    pub(super) fn save_dht_nodes(&mut self) {
        let Some(d) = self.dht.as_mut() else {
            return;
        };
        if d.save_in_flight {
            return;
        }
        let bytes = dht::encode_saved(&d.node.saved_nodes(MAX_SAVED_DHT_NODES));
        if bytes == d.saved {
            return;
        }
        d.saving = bytes.clone();
        d.save_in_flight = true;
        let path = self.config.state_dir.join(crate::state::DHT_NODES_FILE);
        self.run_job(Ctx::SaveDhtNodes, move || {
            RunResult::Io(storage::write_atomic(&path, &bytes, 0o600))
        });
    }

    pub(super) fn on_dht_nodes_saved(&mut self, ok: bool) {
        let Some(d) = self.dht.as_mut() else {
            return;
        };
        d.save_in_flight = false;
        if ok {
            d.saved = std::mem::take(&mut d.saving);
        }
    }

    pub(super) fn dht_status(&self, now: Instant) -> Result<api::DhtStatus, ApiError> {
        let Some(d) = self.dht.as_ref() else {
            return Err(ApiError::BadRequest(if self.config.private.is_some() {
                "the DHT never runs in a private network".into()
            } else {
                "the DHT is off on this node (dht = false)".into()
            }));
        };
        let s = d.node.summary(now);
        Ok(api::DhtStatus {
            node_id: s.id.to_hex(),
            udp: self
                .udp
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            external_ip: s.external_ip.map(|ip| ip.to_string()),
            read_only: s.read_only,
            nodes: s.nodes as u32,
            buckets: s.buckets.iter().map(|&b| b as u32).collect(),
            lookups: s.lookups as u32,
            tracked: s.tracked as u32,
            stored_hashes: s.stored_hashes as u32,
            stored_peers: s.stored_peers as u32,
            bootstrap: self.config.dht.bootstrap.clone(),
            counters: counters(d.node.stats())
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        })
    }

    pub(super) fn dht_metrics(&self, now: Instant) -> Option<api::DhtMetrics> {
        let d = self.dht.as_ref()?;
        let s = d.node.summary(now);
        Some(api::DhtMetrics {
            nodes: s.nodes as u64,
            tracked: s.tracked as u64,
            lookups: s.lookups as u64,
            stored_peers: s.stored_peers as u64,
            read_only: u64::from(s.read_only),
            counters: counters(d.node.stats()),
        })
    }
}
