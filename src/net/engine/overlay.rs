//! The discovery overlay on the net thread: feeds [`Overlay`] the
//! datagrams of the shared UDP port routed to it (`net::udp`: plain and
//! sealed overlay packets) and those of the LAN beacon socket, sends what
//! it queues, announces the public torrents we hold, turns search results into
//! API results and into peers for torrents and magnets, and saves the
//! routing table when it changed.

use super::*;
use crate::overlay::{self, Event, Holder, Item, Overlay, SearchId, Target};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{Ipv4Addr, Ipv6Addr};

/// A magnet asks the overlay for holders this often, an incomplete torrent
/// this often (the first time at once).
const MAGNET_LOOKUP: Duration = Duration::from_secs(60);
const TORRENT_LOOKUP: Duration = Duration::from_secs(300);
/// Holder lookups started per second (the rest wait for the next ticks).
const LOOKUPS_PER_TICK: usize = 2;
/// The routing table is saved (when it changed) this often and at shutdown.
const SAVE_INTERVAL: Duration = Duration::from_secs(300);
/// Most nodes saved (the file stays far below the 64 KiB read at start).
pub const MAX_SAVED_NODES: usize = 1024;
/// An API search is forgotten this long after its time is up.
const SEARCH_KEEP: Duration = Duration::from_secs(120);
/// Most API searches open at once.
const MAX_API_SEARCHES: usize = 64;
/// Beacons read per loop turn.
const BEACON_READS: usize = 64;

/// The discovery overlay's settings.
#[derive(Clone, Debug)]
pub struct OverlaySettings {
    pub enabled: bool,
    /// The node's key (`state::load_node_key`); `None`: a fresh one is made
    /// when the engine starts, and the start fails if the operating
    /// system's generator does.
    pub key: Option<overlay::NodeKey>,
    /// Nodes to contact at start (`ip:port` or `host:port`).
    pub bootstrap: Vec<String>,
    pub lan: Option<LanDiscovery>,
    /// Routing-table size and neighbour count.
    pub capacity: usize,
    pub degree: usize,
    /// TTL of our searches.
    pub ttl: u8,
}

impl OverlaySettings {
    /// Enabled, no key yet (a fresh one is made at start), no bootstrap
    /// nodes, no LAN discovery.
    pub fn new() -> OverlaySettings {
        OverlaySettings {
            enabled: true,
            key: None,
            bootstrap: Vec::new(),
            lan: None,
            capacity: overlay::Config::default().capacity,
            degree: overlay::Config::default().degree,
            ttl: overlay::Config::default().default_ttl,
        }
    }
}

impl Default for OverlaySettings {
    fn default() -> Self {
        OverlaySettings::new()
    }
}

/// LAN discovery: beacons to a multicast group or broadcast address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LanDiscovery {
    pub target: SocketAddr,
    pub interval: Duration,
}

/// True for what `--lan-beacon` accepts: a multicast group, or an IPv4
/// broadcast address (ending in .255: the broadcast address of any prefix
/// of /24 or shorter, and 255.255.255.255).
pub fn is_beacon_target(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_multicast() || v4.octets()[3] == 255,
        IpAddr::V6(v6) => v6.is_multicast(),
    }
}

/// The socket beacons go out of and come in on. It is bound to the target
/// address itself (the group or the broadcast address), so it receives only
/// datagrams sent there: a unicast "beacon" from elsewhere never reaches it.
/// When we listen on one IPv4 address, the group is joined on (and beacons
/// leave through) that address's interface, which also works on a LAN
/// without a default route.
pub(super) fn beacon_socket(target: SocketAddr, local: IpAddr) -> io::Result<mio::net::UdpSocket> {
    let domain = if target.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    let iface = match local {
        IpAddr::V4(v4) if !v4.is_unspecified() => v4,
        _ => Ipv4Addr::UNSPECIFIED,
    };
    match target.ip() {
        IpAddr::V4(group) if group.is_multicast() => {
            s.bind(&target.into())?;
            s.join_multicast_v4(&group, &iface).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("joining {group}: {e} (no route for multicast? give --listen with this LAN's address)"),
                )
            })?;
            if !iface.is_unspecified() {
                s.set_multicast_if_v4(&iface)?;
            }
            s.set_multicast_loop_v4(true)?;
            s.set_multicast_ttl_v4(1)?;
        }
        IpAddr::V4(ip) if is_beacon_target(ip.into()) => {
            s.bind(&target.into())?;
            s.set_broadcast(true)?;
        }
        IpAddr::V6(group) if group.is_multicast() => {
            s.set_only_v6(true)?;
            s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, target.port())).into())?;
            s.join_multicast_v6(&group, 0)?;
            s.set_multicast_loop_v6(true)?;
        }
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                "LAN beacon address {target} is neither a multicast group nor a broadcast address"
            ),
            ))
        }
    }
    s.set_nonblocking(true)?;
    Ok(mio::net::UdpSocket::from_std(s.into()))
}

struct Beacon {
    socket: mio::net::UdpSocket,
    target: SocketAddr,
    interval: Duration,
    next: Instant,
    /// The last send failed (logged once until it works again).
    failing: bool,
}

struct ApiSearch {
    results: Vec<api::SearchHit>,
    until: Instant,
}

pub(super) struct OverlayDriver {
    pub(super) node: Overlay,
    /// In a private network: seals what we send, opens what we receive
    /// (plain packets are then dropped).
    seal: Option<crate::private::OverlaySeal>,
    /// Datagrams dropped because they were not sealed for our network.
    pub(super) refused: u64,
    public_key: [u8; 32],
    beacon: Option<Beacon>,
    searches: HashMap<SearchId, ApiSearch>,
    /// Holder lookups for torrents and magnets: search → (torrent id, started).
    lookups: HashMap<SearchId, (u32, Instant)>,
    next_lookup: HashMap<u32, Instant>,
    /// The saved table's bytes (nothing is written while they stay the same).
    saved: Vec<u8>,
    next_resolve: Instant,
    resolved_any: bool,
    /// The bytes of the save in flight.
    saving: Vec<u8>,
    next_save: Instant,
    next_local: Instant,
    save_in_flight: bool,
}

impl OverlayDriver {
    /// Sets up the node; `beacon_token` registers the LAN socket.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        settings: &OverlaySettings,
        key: &overlay::NodeKey,
        listen: SocketAddr,
        udp_port: u16,
        saved: &[(overlay::NodeId, SocketAddr)],
        poll: &Poll,
        beacon_token: Token,
        now: Instant,
    ) -> io::Result<OverlayDriver> {
        // Keys the address tokens: a secret.
        let token_secret = crate::rand::bytes().map_err(io::Error::other)?;
        let (local, tcp_port) = (listen.ip(), listen.port());
        let config = overlay::Config {
            tcp_port,
            udp_port,
            capacity: settings.capacity.max(8),
            degree: settings.degree.max(1),
            default_ttl: settings.ttl.clamp(1, overlay::Config::default().max_ttl),
            ..overlay::Config::default()
        };
        let mut node = Overlay::new(key.node_id(), config, token_secret, now);
        node.add_saved(saved, now);
        for b in &settings.bootstrap {
            if let Ok(addr) = b.parse::<SocketAddr>() {
                node.add_bootstrap(addr, now);
            }
        }
        let beacon = settings.lan.and_then(|lan| {
            match beacon_socket(lan.target, local).and_then(|mut s| {
                poll.registry()
                    .register(&mut s, beacon_token, Interest::READABLE)?;
                Ok(s)
            }) {
                Ok(socket) => {
                    log::info!(
                        "LAN discovery: beacons to {} every {} s",
                        lan.target,
                        lan.interval.as_secs()
                    );
                    Some(Beacon {
                        socket,
                        target: lan.target,
                        interval: lan.interval.max(Duration::from_secs(1)),
                        next: now,
                        failing: false,
                    })
                }
                Err(e) => {
                    log::warn!("LAN discovery is off: cannot use {}: {e}", lan.target);
                    None
                }
            }
        });
        Ok(OverlayDriver {
            node,
            seal: None,
            refused: 0,
            public_key: key.public(),
            beacon,
            searches: HashMap::new(),
            lookups: HashMap::new(),
            next_lookup: HashMap::new(),
            saved: overlay::encode_saved(saved),
            saving: Vec::new(),
            next_resolve: now,
            resolved_any: false,
            next_save: now + SAVE_INTERVAL,
            next_local: now,
            save_in_flight: false,
        })
    }
}

impl OverlayDriver {
    /// In a private network: every packet sealed, only sealed ones opened.
    pub(super) fn sealed(
        mut self,
        private: Option<&crate::private::PrivateNetwork>,
    ) -> io::Result<Self> {
        self.seal = match private {
            Some(p) => Some(p.overlay_seal(crate::rand::bytes().map_err(io::Error::other)?)),
            None => None,
        };
        Ok(self)
    }

    /// The overlay packet in a datagram: as it is in public mode; opened
    /// (and only if it authenticates and is new) in a private network.
    fn open<'a>(
        &mut self,
        bytes: &'a [u8],
        from: SocketAddr,
    ) -> Option<std::borrow::Cow<'a, [u8]>> {
        let Some(seal) = self.seal.as_mut() else {
            if bytes.first() == Some(&crate::private::SEAL_TAG) {
                self.refused += 1;
                log::debug!("overlay: sealed packet from {from}, but we are in public mode");
                return None;
            }
            return Some(bytes.into());
        };
        match seal.open(bytes) {
            Ok(p) => Some(p.into()),
            Err(crate::private::OpenError::Own) => None,
            Err(e) => {
                self.refused += 1;
                log::debug!("overlay: packet from {from} refused: {e}");
                None
            }
        }
    }

    /// What to send for an overlay packet.
    fn wrap(&mut self, packet: Vec<u8>) -> Vec<u8> {
        match self.seal.as_mut() {
            Some(seal) => seal.seal(&packet),
            None => packet,
        }
    }
}

impl Engine {
    /// Bootstrap names that are not addresses are resolved on the network
    /// threads: at start, again every minute until one resolved (DNS may not
    /// be up yet when a router boots), then every 30 min.
    pub(super) fn resolve_bootstrap(&mut self, now: Instant) {
        let Some(o) = self.overlay.as_mut() else {
            return;
        };
        o.next_resolve = now
            + if o.resolved_any {
                Duration::from_secs(1800)
            } else {
                Duration::from_secs(60)
            };
        for b in self.config.overlay.bootstrap.clone() {
            if b.parse::<SocketAddr>().is_ok() {
                continue;
            }
            self.run_net_job(Ctx::Bootstrap, move || {
                let addrs: Vec<SocketAddr> = b
                    .to_socket_addrs()
                    .map(|a| a.take(4).collect())
                    .unwrap_or_else(|e| {
                        log::warn!("bootstrap node {b}: {e}");
                        Vec::new()
                    });
                RunResult::Addrs(addrs)
            });
        }
    }

    pub(super) fn on_bootstrap_resolved(&mut self, addrs: Vec<SocketAddr>, now: Instant) {
        if let Some(o) = self.overlay.as_mut() {
            o.resolved_any |= !addrs.is_empty();
            for a in addrs {
                o.node.add_bootstrap(a, now);
            }
        }
    }

    /// An overlay datagram from the shared UDP socket (plain, or sealed).
    pub(super) fn overlay_input(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) {
        if let Some(o) = self.overlay.as_mut() {
            let Some(packet) = o.open(bytes, from) else {
                return;
            };
            o.node.on_packet(&packet, from, now);
            self.pump_overlay(now);
        }
    }

    pub(super) fn on_beacon_readable(&mut self, now: Instant) {
        let mut buf = [0u8; overlay::msg::MAX_PACKET + crate::private::SEAL_OVERHEAD + 1];
        let mut drained = false;
        for _ in 0..BEACON_READS {
            let Some(b) = self.overlay.as_mut().and_then(|o| o.beacon.as_mut()) else {
                return;
            };
            match b.socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    if let Some(o) = self.overlay.as_mut() {
                        if let Some(packet) = o.open(&buf[..n], from) {
                            o.node.on_beacon(&packet, from, now);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("LAN beacon socket: {e}");
                    drained = true;
                    break;
                }
            }
        }
        // Stopped at the read budget: more may wait (edge-triggered), so
        // look again on the next turn.
        self.beacon_readable = !drained;
        self.pump_overlay(now);
    }

    /// Sends what the overlay queued and acts on its events.
    pub(super) fn pump_overlay(&mut self, now: Instant) {
        let Some(o) = self.overlay.as_mut() else {
            return;
        };
        while let Some((to, bytes)) = o.node.poll_transmit() {
            let bytes = o.wrap(bytes);
            if let Err(e) = self.udp.send_to(&bytes, to) {
                log::debug!("overlay: sending to {to}: {e}");
            }
        }
        let mut found: Vec<(u32, Vec<Holder>)> = Vec::new();
        while let Some(Event::Result {
            search,
            item,
            holders,
        }) = o.node.poll_event()
        {
            if let Some(s) = o.searches.get_mut(&search) {
                let addrs = holders.iter().map(|h| h.peer_addr().to_string());
                match s.results.iter_mut().find(|r| r.info_hash == item.info_hash) {
                    Some(r) => {
                        for a in addrs {
                            if !r.holders.contains(&a) {
                                r.holders.push(a);
                            }
                        }
                    }
                    None => s.results.push(api::SearchHit {
                        info_hash: item.info_hash,
                        name: item.name,
                        size: item.size,
                        holders: addrs.collect(),
                    }),
                }
            } else if let Some((tid, _)) = o.lookups.get(&search) {
                found.push((*tid, holders));
            }
        }
        for (tid, holders) in found {
            let own = self.listen_addr;
            let mut added = false;
            for h in holders {
                let addr = h.peer_addr();
                if addr != own && addr.port() != 0 {
                    // Like PEX: a capped share of the known list, never
                    // resetting another address's back-off.
                    if let Some(t) = self.torrents.get_mut(&tid) {
                        added |= t.known.add_exchanged(addr, "overlay", now);
                    } else if let Some(m) = self.magnets.get_mut(&tid) {
                        added |= m.known.add_exchanged(addr, "overlay", now);
                    }
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
    pub(super) fn tick_overlay(&mut self, now: Instant) {
        if self.overlay.is_none() || self.shutdown.is_some() {
            return;
        }
        self.update_local(now);
        self.schedule_lookups(now);
        if self.overlay.as_ref().is_some_and(|o| now >= o.next_resolve) {
            self.resolve_bootstrap(now);
        }
        let Some(o) = self.overlay.as_mut() else {
            return;
        };
        o.node.tick(now);
        if o.beacon.as_ref().is_some_and(|b| now >= b.next) {
            let beacon = o.node.beacon();
            let bytes = o.wrap(beacon);
            if let Some(b) = o.beacon.as_mut() {
                b.next = now + b.interval;
                match b.socket.send_to(&bytes, b.target) {
                    Ok(_) => b.failing = false,
                    Err(e) if !b.failing => {
                        b.failing = true;
                        log::warn!("LAN beacon to {}: {e}", b.target);
                    }
                    Err(_) => {}
                }
            }
        }
        o.searches
            .retain(|_, s| now.saturating_duration_since(s.until) < SEARCH_KEEP);
        o.lookups.retain(|_, (_, started)| {
            now.saturating_duration_since(*started) < overlay::Config::default().search_lifetime
        });
        if now >= o.next_save {
            o.next_save = now + SAVE_INTERVAL;
            self.save_nodes();
        }
        self.pump_overlay(now);
    }

    /// What we share: public torrents with at least one verified piece.
    fn update_local(&mut self, now: Instant) {
        let Some(o) = self.overlay.as_mut() else {
            return;
        };
        if now < o.next_local {
            return;
        }
        o.next_local = now + Duration::from_secs(5);
        let items: Vec<Item> = self
            .torrents
            .values()
            .filter(|t| !t.meta.private)
            .filter(|t| t.swarm.as_ref().is_some_and(|s| s.have().count() > 0))
            .map(|t| Item {
                info_hash: t.meta.info_hash,
                name: overlay::msg::cut_name(&t.meta.name).to_string(),
                size: t.meta.total_length(),
            })
            .collect();
        o.node.set_local(items);
    }

    /// Magnets and incomplete public torrents look for holders now and then.
    fn schedule_lookups(&mut self, now: Instant) {
        let mut due: Vec<(u32, InfoHash, Duration)> = Vec::new();
        for (tid, m) in &self.magnets {
            if !m.paused {
                due.push((*tid, m.info_hash, MAGNET_LOOKUP));
            }
        }
        for (tid, t) in &self.torrents {
            let wants = !t.meta.private
                && !t.paused
                && t.phase == Phase::Running
                && t.swarm.as_ref().is_some_and(|s| !s.is_complete());
            if wants {
                due.push((*tid, t.meta.info_hash, TORRENT_LOOKUP));
            }
        }
        let Some(o) = self.overlay.as_mut() else {
            return;
        };
        o.next_lookup
            .retain(|tid, _| due.iter().any(|(t, _, _)| t == tid));
        let mut started = 0;
        for (tid, ih, every) in due {
            let next = o.next_lookup.entry(tid).or_insert(now);
            if now < *next || started >= LOOKUPS_PER_TICK {
                continue;
            }
            started += 1;
            *next = now + every;
            let id = o.node.search(Target::Hash(ih), now);
            o.lookups.insert(id, (tid, now));
        }
    }

    /// Writes the routing table if it changed since the last save.
    pub(super) fn save_nodes(&mut self) {
        let Some(o) = self.overlay.as_mut() else {
            return;
        };
        if o.save_in_flight {
            return;
        }
        let bytes = overlay::encode_saved(&o.node.saved_nodes(MAX_SAVED_NODES));
        if bytes == o.saved {
            return;
        }
        o.saving = bytes.clone();
        o.save_in_flight = true;
        let path = self.config.state_dir.join(crate::state::NODES_FILE);
        self.run_job(Ctx::SaveNodes, move || {
            RunResult::Io(storage::write_atomic(&path, &bytes, 0o600))
        });
    }

    pub(super) fn on_nodes_saved(&mut self, ok: bool) {
        let Some(o) = self.overlay.as_mut() else {
            return;
        };
        o.save_in_flight = false;
        if ok {
            o.saved = std::mem::take(&mut o.saving);
        }
        if self.shutdown.is_some() {
            // The table may have changed while this save ran.
            self.save_nodes();
        }
    }

    // ----- control -----

    pub(super) fn cmd_search(
        &mut self,
        query: api::SearchQuery,
        timeout: Duration,
        now: Instant,
    ) -> Result<u64, ApiError> {
        let Some(o) = self.overlay.as_mut() else {
            return Err(ApiError::BadRequest(
                "the discovery overlay is off on this node".into(),
            ));
        };
        let open = o.searches.values().filter(|s| now < s.until).count();
        if open >= MAX_API_SEARCHES {
            return Err(ApiError::Unavailable(format!(
                "{open} searches are running; try again when they are done"
            )));
        }
        let target = match query {
            api::SearchQuery::Hash(ih) => Target::Hash(ih),
            api::SearchQuery::Words(w) => {
                if overlay::words::words(&w).is_empty() || w.len() > overlay::msg::MAX_WORDS {
                    return Err(ApiError::BadRequest(
                        "search words: give 1 to 100 bytes with at least one letter or digit"
                            .into(),
                    ));
                }
                Target::Words(w)
            }
        };
        let timeout = timeout.clamp(Duration::from_secs(1), Duration::from_secs(300));
        let id = o.node.search_for(target, timeout, now);
        o.searches.insert(
            id,
            ApiSearch {
                results: Vec::new(),
                until: now + timeout,
            },
        );
        self.pump_overlay(now);
        Ok(id)
    }

    pub(super) fn cmd_search_results(
        &mut self,
        id: u64,
        now: Instant,
    ) -> Result<api::SearchPage, ApiError> {
        let s = self
            .overlay
            .as_ref()
            .and_then(|o| o.searches.get(&id))
            .ok_or_else(|| ApiError::NotFound(format!("no search {id} (finished long ago?)")))?;
        Ok(api::SearchPage {
            id,
            results: s.results.clone(),
            done: now >= s.until,
        })
    }

    pub(super) fn overlay_status(&self, now: Instant) -> Result<api::OverlayStatus, ApiError> {
        let Some(o) = self.overlay.as_ref() else {
            return Err(ApiError::BadRequest(
                "the discovery overlay is off on this node".into(),
            ));
        };
        let table = o.node.table();
        let nodes = table
            .iter()
            .map(|n| api::OverlayNode {
                addr: n.addr.to_string(),
                id: n.id.map(|i| i.to_hex()),
                source: n.source.as_str(),
                tcp_port: n.tcp_port,
                last_seen_secs: n
                    .last_seen
                    .map(|t| now.saturating_duration_since(t).as_secs()),
                rtt_ms: n.rtt.map(|r| r.as_millis() as u64),
                failures: n.failures,
                neighbour: table.is_neighbour(&n.addr),
            })
            .collect();
        let st = o.node.stats();
        let mut counters: Vec<(String, u64)> = Vec::new();
        for (i, kind) in overlay::msg::KINDS.iter().enumerate() {
            counters.push((format!("sent_{kind}"), st.sent[i]));
            counters.push((format!("received_{kind}"), st.received[i]));
        }
        for (k, v) in st.drops().into_iter().chain([
            ("ttl_capped", st.ttl_capped),
            ("forwarded", st.forwarded),
            ("searches_flooded", st.searches_flooded),
            ("searches_direct", st.searches_direct),
            // Not sealed for our network (private), or sealed (public).
            ("dropped_unsealed", o.refused),
        ]) {
            counters.push((k.to_string(), v));
        }
        Ok(api::OverlayStatus {
            node_id: o.node.id().to_hex(),
            public_key: crate::hash::to_hex(&o.public_key),
            udp: self
                .udp
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            external: o.node.external_addr().map(|a| a.to_string()),
            lan_beacon: o.beacon.as_ref().map(|b| b.target.to_string()),
            capacity: table.capacity() as u32,
            degree: o.node.config().degree as u32,
            nodes,
            content_entries: o.node.content().len() as u32,
            content_holders: o.node.content().holder_count() as u32,
            routes: o.node.routes() as u32,
            open_searches: o.node.open_searches() as u32,
            counters,
        })
    }
}
