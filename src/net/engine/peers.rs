//! Peer connections on the net thread: dialling and accepting, readiness,
//! reading under rate limits and backpressure, handshakes, message
//! dispatch to the swarm, uploads, flushing and closing.

use super::*;
use crate::net::admission::{Arrival, Knock, Slot};
use crate::net::peerlist::{ConnectedPeer, PeerList, TURNOVER_REST};

/// Candidates asked of a peer list beyond the dial budget (see `connect_peers`).
const DIAL_SPARE: usize = 16;
use crate::net::transport::{self, Transport};
use crate::wire::extension::{self, ExtendedHandshake, MetadataMsg};
use crate::wire::peer::PIECE_HEADER;

impl Engine {
    // ----- peers -----

    pub(super) fn add_known_peer(
        &mut self,
        tid: u32,
        addr: SocketAddr,
        source: &'static str,
        now: Instant,
    ) {
        if self.is_own_addr(addr) || addr.port() == 0 {
            return;
        }
        let own = self.own_addr();
        if let Some(k) = self.known_mut(tid) {
            k.set_own_addr(own);
            k.add(addr, source, now);
        }
    }

    /// Adds `host:port` (resolved on a worker when it is a name).
    pub(super) fn resolve_peer(
        &mut self,
        tid: u32,
        peer: String,
        source: &'static str,
        now: Instant,
    ) {
        if let Ok(addr) = peer.parse::<SocketAddr>() {
            self.add_known_peer(tid, addr, source, now);
            return;
        }
        self.run_net_job(Ctx::Resolve { tid, source }, move || {
            let addrs: Vec<SocketAddr> = peer
                .to_socket_addrs()
                .map(|a| a.take(8).collect())
                .unwrap_or_default();
            RunResult::Addrs(addrs)
        });
    }

    /// Our address for BEP 40 priorities: the external one the DHT's
    /// voters agree on, else the one we listen on.
    pub(super) fn own_addr(&self) -> SocketAddr {
        match self.external_ip {
            Some(ip) => SocketAddr::new(ip, self.listen_addr.port()),
            None => self.listen_addr,
        }
    }

    /// `addr` is this node (as we listen, or as others see us).
    pub(super) fn is_own_addr(&self, addr: SocketAddr) -> bool {
        addr == self.listen_addr || addr == self.own_addr()
    }

    /// Whether our DHT node serves torrent `tid`: it runs, and the torrent
    /// is not private (a magnet's privacy is unknown until its metadata:
    /// it is public until then).
    pub(super) fn dht_for(&self, tid: u32) -> bool {
        self.dht.is_some() && !self.torrents.get(&tid).is_some_and(|t| t.meta.private)
    }

    /// Our handshake for torrent `tid`: the DHT bit where [`Self::dht_for`].
    pub(super) fn our_handshake(&self, tid: u32, info_hash: [u8; 20]) -> Handshake {
        let h = Handshake::ours(info_hash, self.peer_id);
        if self.dht_for(tid) {
            h.with_dht()
        } else {
            h
        }
    }

    pub(super) fn connect_peers(&mut self, tid: u32, now: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        let dial_budget = self.dial_budget();
        let per_torrent = self.config.max_connections_per_torrent;
        let Some(t) = self.torrents.get(&tid) else {
            return;
        };
        if t.paused || t.phase != Phase::Running {
            return;
        }
        let complete = t.swarm.as_ref().is_some_and(|s| s.is_complete());
        let n_conns = t.known.n_connected()
            + self
                .conns
                .values()
                .filter(|c| c.torrent == Some(tid) && !c.outgoing)
                .count();
        let info_hash = t.meta.info_hash.0;
        // With other torrents around, one torrent holds at most half of the
        // half-open slots, so a torrent with a long list of dead addresses
        // cannot starve the others.
        let share = if self.torrents.len() + self.magnets.len() > 1 {
            (self.config.max_half_open / 2).max(1)
        } else {
            self.config.max_half_open
        };
        let own_half_open = self
            .conns
            .values()
            .filter(|c| c.torrent == Some(tid) && c.state != ConnState::Active)
            .count();
        let own_budget = share.saturating_sub(own_half_open);
        let budget = dial_budget
            .min(own_budget)
            .min(per_torrent.saturating_sub(n_conns))
            .min(t.known.dial_allowance(now));
        if budget == 0 {
            return;
        }
        // A few more than the budget: `dial` skips addresses it may not
        // dial now (connected to us already, the per-address cap).
        let candidates = t.known.candidates(
            now,
            complete,
            |a| self.bans.is_banned(a.ip(), now),
            budget + DIAL_SPARE,
        );
        self.dial(tid, info_hash, candidates, budget, now);
    }

    /// Fits every peer list to its share of the memory budget, and gives
    /// each our own address (what BEP 40 priorities are computed against).
    pub(super) fn fit_peer_lists(&mut self) {
        let cap = self
            .caps
            .peer_list_cap(self.torrents.len() + self.magnets.len());
        let own = self.own_addr();
        for k in self
            .torrents
            .values_mut()
            .map(|t| &mut t.known)
            .chain(self.magnets.values_mut().map(|m| &mut m.known))
        {
            k.set_cap(cap);
            k.set_own_addr(own);
        }
    }

    /// Peer turnover ([`Turnover`]): near its connection limit, with
    /// addresses waiting to be tried, torrent `tid` lets its least useful
    /// peers go every five minutes. Not in a private network: its peers
    /// are our own nodes, few, and each costs a Noise handshake to reach
    /// again.
    pub(super) fn turn_over(&mut self, tid: u32, now: Instant) {
        if self.config.private.is_some() || self.shutdown.is_some() {
            return;
        }
        let Some(t) = self.torrents.get(&tid) else {
            return;
        };
        let Some(s) = t.swarm.as_ref() else { return };
        if t.paused || t.phase != Phase::Running {
            return;
        }
        let peers: Vec<ConnectedPeer> = self
            .conns
            .values()
            .filter(|c| c.torrent == Some(tid) && c.state == ConnState::Active)
            .filter(|c| c.closing.is_none())
            .filter_map(|c| {
                let u = s.peer_use(c.key, now)?;
                Some(ConnectedPeer {
                    key: c.key,
                    moved: u.moved,
                    transferring: u.transferring,
                    interest: u.interest,
                    manual: c.source == "manual",
                })
            })
            .collect();
        let census = self.census();
        let settled = self.config.limits().settled_cap();
        let near_limit = peers.len() * 10 >= self.config.max_connections_per_torrent * 9
            || (census.dialling + census.established) * 10 >= settled * 9;
        let waiting = t.known.has_candidates(now);
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        let chosen = t.known.turnover.choose(&peers, near_limit, waiting, now);
        for key in chosen {
            t.known.rest(key, now, TURNOVER_REST);
            if let Some(c) = self.conns.get_mut(key) {
                log::debug!("{}: turned over (idle near the connection limit)", c.addr);
                c.close("turned over: idle near the connection limit");
            }
        }
    }

    /// New outgoing connections allowed now: under the dials' half-open
    /// cap, leaving the incoming handshakes' slots free (`admission`).
    pub(super) fn dial_budget(&self) -> usize {
        self.config.limits().dial_budget(self.census())
    }

    /// The known-peer list of a torrent or a magnet.
    pub(super) fn known_mut(&mut self, tid: u32) -> Option<&mut PeerList> {
        match self.torrents.get_mut(&tid) {
            Some(t) => Some(&mut t.known),
            None => self.magnets.get_mut(&tid).map(|m| &mut m.known),
        }
    }

    /// Dials `candidates` for torrent `tid`, opening at most `budget`
    /// connections; skips addresses already connected (they dialled us).
    pub(super) fn dial(
        &mut self,
        tid: u32,
        info_hash: [u8; 20],
        candidates: Vec<SocketAddr>,
        budget: usize,
        now: Instant,
    ) {
        let mut opened = 0;
        for addr in candidates {
            if opened >= budget {
                break;
            }
            // One connection per address and torrent, and the per-address cap.
            if self
                .conns
                .values()
                .any(|c| c.torrent == Some(tid) && c.addr.ip() == addr.ip())
                || self.conns_from(addr.ip()) >= self.config.max_connections_per_ip
            {
                continue;
            }
            if let Some(k) = self.known_mut(tid) {
                k.note_dial(now);
            }
            match self.open_outgoing(addr, tid, info_hash, now) {
                Ok(key) => {
                    let source = self.known_mut(tid).and_then(|k| k.attach(addr, key));
                    if let (Some(source), Some(c)) = (source, self.conns.get_mut(key)) {
                        c.source = source;
                    }
                    opened += 1;
                }
                Err(e) => {
                    log::debug!("connect to {addr}: {e}");
                    if let Some(k) = self.known_mut(tid) {
                        k.failed(addr, now);
                    }
                }
            }
        }
    }

    pub(super) fn open_outgoing(
        &mut self,
        addr: SocketAddr,
        tid: u32,
        info_hash: [u8; 20],
        now: Instant,
    ) -> io::Result<PeerKey> {
        // Dial from our listening address when it is a specific one, so the
        // peer sees the address we serve on.
        let mut sock = transport::dial(addr, Some(self.listen_addr.ip()))?;
        let key = self.conns.next_key();
        self.poll.registry().register(
            &mut sock,
            Token(index_of(key) + FIRST_CONN),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let mut c = Conn::new(key, sock, addr, true, now);
        c.secure = self.new_link(true)?;
        c.torrent = Some(tid);
        c.queue_handshake(&self.our_handshake(tid, info_hash));
        let inserted = self.conns.insert_with(|_| c);
        debug_assert_eq!(inserted, key);
        Ok(key)
    }

    /// Accepts what waits in the backlog, each new connection in a slot
    /// of its own or in the slot of a silent one (`admission::on_knock`);
    /// stops when no slot can be had (see `defence.rs`: the rest waits in
    /// the kernel until `resume_accepting`), and after
    /// [`MAX_ACCEPTS_PER_TURN`] (the next loop turn goes on).
    pub(super) fn accept(&mut self, now: Instant) {
        for _ in 0..MAX_ACCEPTS_PER_TURN {
            let Some(knock) = self.next_knock(now) else {
                return;
            };
            match self.listener.accept() {
                Ok((sock, addr)) => {
                    if let Some(why) = self.refuse_incoming(addr.ip(), now) {
                        log::debug!("{addr}: not accepted: {why}");
                        continue;
                    }
                    if let Knock::Evict(victim) = knock {
                        self.evict(victim, "an incoming handshake");
                    }
                    let mut sock = Transport::accepted(sock);
                    // What the peer has sent already: a whole handshake
                    // keeps the slot against later knocks.
                    let mut head = [0u8; HANDSHAKE_LEN];
                    let peeked = sock.peek(&mut head).unwrap_or(0);
                    let key = self.conns.next_key();
                    let token = Token(index_of(key) + FIRST_CONN);
                    if self
                        .poll
                        .registry()
                        .register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
                        .is_err()
                    {
                        continue;
                    }
                    let mut c = Conn::new(key, sock, addr, false, now);
                    match self.new_link(false) {
                        Ok(link) => c.secure = link,
                        Err(e) => {
                            log::warn!("{addr}: {e}");
                            continue;
                        }
                    }
                    c.readable = true;
                    c.peeked = peeked;
                    self.conns.insert_with(|_| c);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if std::mem::take(&mut self.accept_failed) {
                        log::info!("accepting connections again");
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of file descriptors (EMFILE/ENFILE) and the like.
                    // The listener is edge-triggered: what waits in the
                    // backlog raises no new event, so `tick` tries again
                    // every second. Said once, not once per attempt.
                    if !self.accept_failed {
                        log::warn!("accept: {e}; trying again every second");
                    }
                    self.accept_failed = true;
                    return;
                }
            }
        }
        // More may wait: the next turn goes on (the listener raises no new
        // event for them), after the other sockets had theirs.
        self.accept_more = true;
    }

    // ----- connections -----

    pub(super) fn on_ready(&mut self, key: PeerKey, now: Instant) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.state == ConnState::Connecting && c.writable {
            match c.sock.connect_done() {
                Ok(true) => c.state = ConnState::Handshake,
                Ok(false) => return,
                Err(e) => return c.close(format!("connect failed: {e}")),
            }
        }
        if c.writable && c.pending_out() > 0 {
            if let Err(e) = c.flush(now) {
                c.close(format!("write: {e}"));
                return;
            }
        }
        if self.conns.get(key).is_some_and(|c| c.readable) && !self.reads_blocked() {
            self.read_conn(key, now);
        }
    }

    /// When the loop must run again without any socket event: the next
    /// tick, or the moment a rate limit lets waiting work go on.
    pub(super) fn next_wakeup(&mut self, now: Instant) -> Instant {
        let soon = now + Duration::from_millis(1);
        let mut at = self.next_tick.min(now + Duration::from_millis(250));
        if let Some(d) = self.announcer_deadline() {
            at = at.min(d.max(now + Duration::from_millis(1)));
        }
        let mut deferred_tids: Vec<u32> =
            self.deferred_reads.iter().map(|(tid, _, _)| *tid).collect();
        deferred_tids.sort_unstable();
        deferred_tids.dedup();
        for tid in deferred_tids {
            let mut ready = self
                .up_bucket
                .ready_at(u64::from(crate::metainfo::BLOCK_SIZE), now);
            if let Some(t) = self.torrents.get_mut(&tid) {
                ready = ready.max(
                    t.up_limit
                        .ready_at(u64::from(crate::metainfo::BLOCK_SIZE), now),
                );
            }
            at = at.min(ready.max(soon));
        }
        if self.backlog.len() <= BACKLOG_LIMIT {
            for key in self.readable_keys() {
                let tid = self.conns.get(key).and_then(|c| c.torrent);
                let mut ready = self.down_bucket.ready_at(1, now);
                if let Some(t) = tid.and_then(|tid| self.torrents.get_mut(&tid)) {
                    ready = ready.max(t.down_limit.ready_at(1, now));
                }
                at = at.min(ready.max(soon));
            }
        }
        at
    }

    /// Connections with unread data that may be read (connected, not closing).
    pub(super) fn readable_keys(&self) -> Vec<PeerKey> {
        self.conns
            .values()
            .filter(|c| c.readable && c.state != ConnState::Connecting && c.closing.is_none())
            .map(|c| c.key)
            .collect()
    }

    /// Bytes `key` may read now under the global and its torrent's download
    /// limits. The limits apply to downloads we asked for: a connection we
    /// expect no payload from (a handshake, a peer we requested nothing of, a
    /// magnet's metadata exchange) reads as if unlimited and is not charged
    /// (see [`Engine::charged`]); otherwise peers that use up a download limit
    /// would starve everyone else's handshakes and requests (and our uploads
    /// to them) into timeouts. What such a peer may send unasked is bounded by
    /// the protocol checks (unrequested blocks are dropped), not by the limit.
    pub(super) fn read_allowance(&mut self, key: PeerKey, now: Instant) -> u64 {
        if !self.charged(key) {
            return u64::MAX;
        }
        let global = self.down_bucket.available(now);
        let tid = self.conns.get(key).and_then(|c| c.torrent);
        let torrent = tid
            .and_then(|tid| self.torrents.get_mut(&tid))
            .map_or(u64::MAX, |t| t.down_limit.available(now));
        global.min(torrent)
    }

    /// Bytes read from `key` count against the download limits: we are
    /// waiting for blocks we requested from it.
    fn charged(&self, key: PeerKey) -> bool {
        let tid = self.conns.get(key).and_then(|c| c.torrent);
        tid.and_then(|tid| self.torrents.get(&tid))
            .and_then(|t| t.swarm.as_ref())
            .is_some_and(|s| s.has_requests_to(key))
    }

    pub(super) fn reads_blocked(&self) -> bool {
        self.backlog.len() > BACKLOG_LIMIT
    }

    pub(super) fn has_pending_reads(&mut self, now: Instant) -> bool {
        if self.reads_blocked() {
            return false;
        }
        let keys = self.readable_keys();
        keys.into_iter().any(|k| self.read_allowance(k, now) > 0)
    }

    pub(super) fn read_pending(&mut self, now: Instant) {
        for key in self.readable_keys() {
            if self.reads_blocked() {
                break;
            }
            self.read_conn(key, now);
        }
    }

    pub(super) fn read_conn(&mut self, key: PeerKey, now: Instant) {
        let mut budget = READ_BUDGET;
        loop {
            let limit = self.read_allowance(key, now).min(budget as u64) as usize;
            if self.nothing_to_read_yet(key) {
                return;
            }
            let Some(c) = self.conns.get_mut(key) else {
                return;
            };
            if c.closing.is_some() || !c.readable || c.state == ConnState::Connecting || limit == 0
            {
                return;
            }
            let may_grow = self.read_buffered < self.caps.read_buffers;
            let res =
                count_read_buffer(&mut self.read_buffered, c, |c| c.read_some(limit, may_grow));
            let n = match res {
                Ok(n) => n,
                Err(e) => {
                    c.close(if e.kind() == io::ErrorKind::UnexpectedEof {
                        "closed by peer".to_string()
                    } else {
                        format!("read: {e}")
                    });
                    return;
                }
            };
            if n > 0 {
                c.last_recv = now;
                let tid = c.torrent;
                if self.charged(key) {
                    self.down_bucket.take(n as u64, now);
                    if let Some(t) = tid.and_then(|tid| self.torrents.get_mut(&tid)) {
                        t.down_limit.take(n as u64, now);
                    }
                }
                budget = budget.saturating_sub(n);
            }
            self.process_input(key, now);
            let Some(c) = self.conns.get(key) else { return };
            if n == 0 || budget == 0 || c.closing.is_some() || self.backlog.len() > BACKLOG_LIMIT {
                return;
            }
        }
    }

    /// Parses what the connection received: the handshake, then messages.
    pub(super) fn process_input(&mut self, key: PeerKey, now: Instant) {
        if self
            .conns
            .get(key)
            .is_some_and(|c| c.state == ConnState::Handshake)
        {
            self.process_handshake(key, now);
        }
        let Some(c) = self.conns.get(key) else { return };
        if c.state != ConnState::Active || c.closing.is_some() {
            return;
        }
        let Some(tid) = c.torrent else { return };
        if self.magnets.contains_key(&tid) {
            return self.process_magnet_input(key, tid, now);
        }
        loop {
            let Some(t) = self.torrents.get_mut(&tid) else {
                return;
            };
            let Some(swarm) = t.swarm.as_mut() else {
                return;
            };
            let Some(c) = self.conns.get_mut(key) else {
                return;
            };
            let bitfield_len = Some(swarm.lengths().bitfield_len());
            let mut extended: Option<(u8, Vec<u8>)> = None;
            let mut dht_port: Option<u16> = None;
            let private = t.meta.private;
            let peer_ip = c.addr.ip();
            let parsed = match Message::parse(c.unparsed(), bitfield_len) {
                Ok(Some((Message::Extended { id, payload }, used))) => {
                    extended = Some((id, payload.to_vec()));
                    Some(used)
                }
                Ok(Some((msg, used))) => {
                    if let Message::Port(p) = msg {
                        dht_port = Some(p);
                    }
                    swarm.on_message(key, msg, now);
                    Some(used)
                }
                Ok(None) => None,
                Err(e) => {
                    self.violations
                        .push((c.addr.ip(), format!("protocol error: {e}")));
                    c.close(format!("protocol error: {e}"));
                    None
                }
            };
            match parsed {
                Some(used) => c.consume(used),
                None => break,
            }
            if c.closing.is_some() {
                break;
            }
            if let Some((id, payload)) = extended {
                self.on_extended(key, tid, id, &payload, now);
            }
            // BEP 5: the peer's DHT node (never for a private torrent).
            if let Some(p) = dht_port.filter(|_| !private) {
                self.dht_add_node(SocketAddr::new(peer_ip, p), now);
            }
        }
        self.apply_swarm(tid, now);
    }

    /// An extension protocol message (BEP 10) from a connected peer.
    pub(super) fn on_extended(
        &mut self,
        key: PeerKey,
        tid: u32,
        id: u8,
        payload: &[u8],
        now: Instant,
    ) {
        match id {
            extension::HANDSHAKE_ID => match ExtendedHandshake::parse(payload) {
                Ok(hs) => {
                    if let Some(c) = self.conns.get_mut(key) {
                        c.ext.update(&hs);
                        if let Some(v) = hs.client.clone() {
                            c.client = Some(v);
                        }
                    }
                    self.pex_handshake(tid, key, &hs, now);
                }
                Err(e) => log::debug!("bad extension handshake: {e}"),
            },
            extension::UT_METADATA_ID => match MetadataMsg::parse(payload) {
                Ok(MetadataMsg::Request { piece }) => self.serve_metadata(key, tid, piece),
                Ok(_) => {}
                Err(e) => {
                    if let Some(c) = self.conns.get_mut(key) {
                        let why = format!("bad ut_metadata message: {e}");
                        self.violations.push((c.addr.ip(), why.clone()));
                        c.close(why);
                    }
                }
            },
            extension::UT_PEX_ID => self.on_pex_message(key, tid, payload, now),
            // Unknown extensions (we never offered them): ignored.
            _ => {}
        }
    }

    /// Answers a BEP 9 request for a piece of our info dictionary. A
    /// connection gets at most twice the dictionary (plus a few pieces)
    /// before further requests are rejected, so requests cannot be
    /// amplified into unbounded upload; and none is answered while the
    /// peer's send buffer is over the send watermark (requests cannot pile
    /// up answers faster than the peer reads them).
    fn serve_metadata(&mut self, key: PeerKey, tid: u32, piece: u32) {
        let Some(info) = self.torrents.get(&tid).map(|t| t.meta.clone()) else {
            return;
        };
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let Some(their_id) = c.ext.ut_metadata else {
            return;
        };
        let bytes = &info.info_bytes;
        let n_pieces = bytes.len().div_ceil(extension::METADATA_PIECE_LEN);
        let start = piece as usize * extension::METADATA_PIECE_LEN;
        let answer = if (piece as usize) < n_pieces
            && c.metadata_served < 2 * n_pieces + 8
            && c.pending_out() <= self.caps.send_watermark
        {
            c.metadata_served += 1;
            let end = (start + extension::METADATA_PIECE_LEN).min(bytes.len());
            MetadataMsg::Data {
                piece,
                total_size: bytes.len() as u64,
                data: &bytes[start..end],
            }
        } else {
            MetadataMsg::Reject { piece }
        };
        c.queue(&Message::Extended {
            id: their_id,
            payload: &answer.to_bytes(),
        });
    }

    pub(super) fn process_handshake(&mut self, key: PeerKey, now: Instant) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let h = match Handshake::parse(c.unparsed()) {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(e) => return c.close(format!("handshake: {e}")),
        };
        c.consume(HANDSHAKE_LEN);
        let addr = c.addr;
        if h.peer_id == self.peer_id {
            return c.close("connected to ourselves");
        }
        let tid = match c.torrent {
            Some(tid) => {
                let ok = self
                    .torrents
                    .get(&tid)
                    .is_some_and(|t| t.meta.info_hash.0 == h.info_hash)
                    || self
                        .magnets
                        .get(&tid)
                        .is_some_and(|m| m.info_hash.0 == h.info_hash);
                if !ok {
                    return c.close("handshake for another torrent");
                }
                tid
            }
            None => {
                let found = self.by_hash.get(&InfoHash(h.info_hash)).copied();
                let usable = found
                    .and_then(|tid| self.torrents.get(&tid))
                    .filter(|t| !t.paused && t.phase == Phase::Running && t.swarm.is_some())
                    .map(|t| (t.id, t.meta.info_hash.0))
                    .or_else(|| {
                        let tid = found?;
                        self.magnets
                            .get(&tid)
                            .filter(|m| !m.paused)
                            .map(|m| (tid, m.info_hash.0))
                    });
                let Some((tid, info_hash)) = usable else {
                    return c.close("handshake for a torrent we do not serve");
                };
                // A twin is refused before it takes anyone's slot.
                if let Some(why) = self
                    .twin(key, tid, &h.peer_id, addr)
                    .map_or_else(|| self.make_room(key, tid, now).err(), Some)
                {
                    if let Some(c) = self.conns.get_mut(key) {
                        c.close(why);
                    }
                    return;
                }
                let ours = self.our_handshake(tid, info_hash);
                let Some(c) = self.conns.get_mut(key) else {
                    return;
                };
                c.torrent = Some(tid);
                c.queue_handshake(&ours);
                tid
            }
        };
        let twin = self.twin(key, tid, &h.peer_id, addr);
        let ours_has_dht = self.dht_for(tid);
        let udp_port = self.udp.local_addr().map_or(0, |a| a.port());
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if let Some(why) = twin {
            return c.close(why);
        }
        c.peer_id = h.peer_id;
        c.fast = h.supports_fast();
        // BEP 5: both run a DHT node: tell the peer our UDP port.
        if h.supports_dht() && ours_has_dht {
            c.queue(&Message::Port(udp_port));
        }
        c.state = ConnState::Active;
        let fast = c.fast;
        let outgoing = c.outgoing;
        if h.supports_extensions() {
            // BEP 10: our extensions, how many requests we queue (reqq, so
            // the peer does not send more than we accept), our port, the size
            // of the info dictionary we can serve (BEP 9) and the peer's address.
            let meta = self.torrents.get(&tid).map(|t| t.meta.clone());
            let mut hs = ExtendedHandshake::ours(meta.as_ref().is_some_and(|m| !m.private));
            hs.port = Some(self.listen_addr.port());
            hs.reqq = Some(self.config.swarm.max_upload_queue as u32);
            hs.metadata_size = meta.map(|m| m.info_bytes.len() as u64);
            hs.yourip = Some(addr.ip());
            let Some(c) = self.conns.get_mut(key) else {
                return;
            };
            c.queue(&Message::Extended {
                id: extension::HANDSHAKE_ID,
                payload: &hs.to_bytes(),
            });
        }
        log::debug!(
            "{addr}: connected ({})",
            String::from_utf8_lossy(&h.peer_id[..8])
        );
        if let Some(m) = self.magnets.get_mut(&tid) {
            m.known.connected(key, now);
            return;
        }
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        t.known.connected(key, now);
        if let Some(s) = t.swarm.as_mut() {
            s.add_peer(key, addr, fast, now);
        }
        self.pex_connected(tid, key, addr, outgoing, now);
        self.apply_swarm(tid, now);
    }

    /// Why `key`, whose handshake for torrent `tid` from `peer_id` at
    /// `addr` is complete, duplicates another connection, if it does: the
    /// same peer, or the same address (one connection per address and
    /// torrent, as libtorrent).
    fn twin(
        &self,
        key: PeerKey,
        tid: u32,
        peer_id: &[u8; 20],
        addr: SocketAddr,
    ) -> Option<&'static str> {
        let others = || {
            self.conns.values().filter(move |x| {
                x.key != key && x.torrent == Some(tid) && x.state == ConnState::Active
            })
        };
        if others().any(|x| x.peer_id == *peer_id) {
            return Some("already connected to this peer");
        }
        if others().any(|x| x.addr.ip() == addr.ip()) {
            return Some("already connected to this address for this torrent");
        }
        None
    }

    /// Room for incoming connection `key`, whose handshake for torrent
    /// `tid` is complete: within the torrent's share and the settled share
    /// of all connections, each by taking the slot of the least useful
    /// connection when full (`admission::on_arrival`). Why not, if not.
    fn make_room(&mut self, key: PeerKey, tid: u32, now: Instant) -> Result<(), &'static str> {
        let mut slots = self.slots(now);
        slots.retain(|s| s.key != key);
        let torrent: Vec<Slot> = slots
            .iter()
            .filter(|s| {
                self.conns
                    .get(s.key)
                    .is_some_and(|c| c.torrent == Some(tid))
            })
            .copied()
            .collect();
        let cap = self.config.max_connections_per_torrent;
        match admission::on_arrival(&torrent, cap, now) {
            Arrival::Admit => {}
            Arrival::Evict(victim) => {
                self.evict(victim, "a peer of the same torrent");
                slots.retain(|s| s.key != victim);
            }
            Arrival::Refuse => return Err("too many connections for this torrent"),
        }
        match admission::on_arrival(&slots, self.config.limits().settled_cap(), now) {
            Arrival::Admit => Ok(()),
            Arrival::Evict(victim) => {
                self.evict(victim, "a new peer");
                Ok(())
            }
            Arrival::Refuse => Err("too many connections"),
        }
    }

    /// Upload reads wait here for the rate limit and the peer's send buffer.
    pub(super) fn process_deferred_reads(&mut self, now: Instant) {
        let mut n = self.deferred_reads.len();
        while n > 0 {
            n -= 1;
            let Some((tid, peer, block)) = self.deferred_reads.pop_front() else {
                break;
            };
            let Some(c) = self.conns.get(peer) else {
                continue;
            };
            let len = u64::from(block.length);
            let torrent_allows = self
                .torrents
                .get_mut(&tid)
                .is_some_and(|t| t.up_limit.available(now) >= len);
            let held = self.upload_reading + self.send_buffered;
            if c.pending_out() > self.caps.send_watermark
                || !self.caps.upload_allows(held, len)
                || self.up_bucket.available(now) < len
                || !torrent_allows
            {
                self.deferred_reads.push_back((tid, peer, block));
                continue;
            }
            // Read the following requests of the same peer with it when they
            // continue this block in the same piece: one job and one pread
            // for a run instead of one per 16 KiB.
            let mut blocks = vec![block];
            let mut total = len;
            while blocks.len() < MAX_READ_RUN && n > 0 {
                let Some(&(ntid, npeer, next)) = self.deferred_reads.front() else {
                    break;
                };
                let last = blocks[blocks.len() - 1];
                let contiguous = ntid == tid
                    && npeer == peer
                    && next.index == last.index
                    && next.begin == last.begin + last.length;
                let more = total + u64::from(next.length);
                if !contiguous
                    || self.up_bucket.available(now) < more
                    || !self.caps.upload_allows(held, more)
                {
                    break;
                }
                self.deferred_reads.pop_front();
                n -= 1;
                total += u64::from(next.length);
                blocks.push(next);
            }
            let Some(t) = self.torrents.get_mut(&tid) else {
                continue;
            };
            t.up_limit.take(total, now);
            let Some(piece) = t.meta.lengths.piece(block.index) else {
                continue;
            };
            let offset = t.meta.lengths.piece_offset(piece) + u64::from(block.begin);
            let disk = t.disk.clone();
            self.up_bucket.take(total, now);
            self.upload_reading += total;
            let lens = blocks.iter().map(|b| b.length).collect();
            self.submit(
                |tag| Job::Read {
                    tag,
                    torrent: disk,
                    offset,
                    index: block.index,
                    begin: block.begin,
                    lens,
                },
                Ctx::Read { tid, peer, blocks },
                Priority::Live,
            );
        }
    }

    pub(super) fn on_read(
        &mut self,
        tid: u32,
        peer: PeerKey,
        blocks: Vec<BlockRef>,
        result: io::Result<Vec<u8>>,
        now: Instant,
    ) {
        let asked: u64 = blocks.iter().map(|b| u64::from(b.length)).sum();
        self.upload_reading = self.upload_reading.saturating_sub(asked);
        let Some(s) = self.torrents.get_mut(&tid).and_then(|t| t.swarm.as_mut()) else {
            return;
        };
        match result {
            Ok(data) => {
                // The job framed each block as a piece message. Each is sent
                // only if still wanted (not cancelled, peer not choked); when
                // all are, the job's buffer is queued as it is.
                let mut wanted = Vec::with_capacity(blocks.len());
                let mut at = 0usize;
                for block in &blocks {
                    let end = at + PIECE_HEADER + block.length as usize;
                    let ok = s.on_read_done(peer, *block) && end <= data.len();
                    wanted.push(ok.then_some(at..end));
                    at = end;
                }
                if let Some(c) = self.conns.get_mut(peer) {
                    if wanted.iter().all(Option::is_some) {
                        self.send_buffered += data.len() as u64;
                        c.queue_frames(data);
                    } else {
                        for range in wanted.iter().flatten() {
                            self.send_buffered += range.len() as u64;
                            c.queue_bytes(&data[range.clone()]);
                        }
                    }
                    for (block, w) in blocks.iter().zip(&wanted) {
                        if w.is_some() {
                            s.on_piece_sent(peer, u64::from(block.length), now);
                        }
                    }
                }
            }
            Err(e) => {
                for block in blocks {
                    s.on_read_done(peer, block);
                }
                log::warn!("reading a block to upload: {e}");
                if let Some(c) = self.conns.get_mut(peer) {
                    c.close("cannot read the requested data");
                }
            }
        }
        s.pump_uploads(peer);
        self.apply_swarm(tid, now);
    }

    /// Writes what every connection has queued, and recounts the bytes
    /// left in send buffers (the uploads' share of the memory budget).
    pub(super) fn flush_all(&mut self, now: Instant) {
        let mut buffered = 0u64;
        for c in self.conns.values_mut() {
            if c.writable && c.pending_out() > 0 && c.closing.is_none() {
                if let Err(e) = c.flush(now) {
                    c.close(format!("write: {e}"));
                }
            }
            buffered += c.pending_out() as u64;
        }
        self.send_buffered = buffered;
    }

    pub(super) fn close_marked(&mut self, now: Instant) {
        let closing: Vec<PeerKey> = self
            .conns
            .values()
            .filter(|c| c.closing.is_some())
            .map(|c| c.key)
            .collect();
        let mut refill: Vec<u32> = Vec::new();
        for key in closing {
            let Some(mut c) = self.conns.remove(key) else {
                continue;
            };
            self.read_buffered = self
                .read_buffered
                .saturating_sub(c.read_buffer_extra() as u64);
            let _ = c.flush(now);
            let _ = self.poll.registry().deregister(&mut c.sock);
            let reason = c.closing.clone().unwrap_or_default();
            log::debug!("{}: closed: {reason}", c.addr);
            let Some(tid) = c.torrent else { continue };
            let was_active = c.state == ConnState::Active;
            // A dial that failed frees its half-open slot now: the next
            // candidate goes this turn, not at the next tick (paced by
            // `PeerList::dial_allowance`).
            if c.outgoing && !was_active && !refill.contains(&tid) {
                refill.push(tid);
            }
            if let Some(m) = self.magnets.get_mut(&tid) {
                m.known.closed(key, was_active, now);
                m.fetch.remove_peer(key, now);
                self.pump_fetch(tid, now);
                continue;
            }
            if let Some(t) = self.torrents.get_mut(&tid) {
                let moved = t.swarm.as_ref().and_then(|s| s.peer_transfer(key));
                if let Some((down, up)) = moved {
                    t.add_closed_transfer(c.source, down, up);
                }
                if let Some(s) = t.swarm.as_mut() {
                    s.remove_peer(key);
                }
                t.pex.on_disconnect(key);
                t.known.closed(key, was_active, now);
            }
            self.apply_swarm(tid, now);
        }
        for tid in refill {
            if self.magnets.contains_key(&tid) {
                self.connect_magnet_peers(tid, now);
            } else {
                self.connect_peers(tid, now);
            }
        }
    }
}
