//! The addresses a torrent may dial (sans I/O, time passed in): where each
//! came from, whether a connection to it is open, when to try again, which
//! to dial first, which to forget, and which connected peers to let go so
//! that new candidates get a chance ([`Turnover`]).
//!
//! Most addresses a public swarm hands out (trackers, DHT, PEX) are
//! unreachable. The rules, after libtorrent's `peer_list`:
//!
//! - **Forgetting.** An address is dropped after [`MAX_FAILS`] failures in a
//!   row (the dial failed or timed out, or the connection closed before the
//!   handshake completed); a handshake resets the count. Dropped addresses
//!   are remembered for [`FORGET_FOR`] (at most the list's cap of them), and
//!   a source repeating one meanwhile does not add it back. Addresses from
//!   the user (source `manual`) are never dropped: they keep their back-off
//!   (2 s doubling to 2 min) forever, and adding one clears its memory.
//! - **Size.** At most [`PeerList::cap`] addresses: [`MAX_KNOWN`], less when
//!   the memory budget's share for peer lists divided among the torrents
//!   is smaller ([`crate::net::memory::MemoryCaps::peer_list_cap`], each
//!   entry counted as [`BYTES_PER_ENTRY`]), never below [`MIN_KNOWN`].
//!   Exchanged sources (`pex`, `dht`, `overlay`: strangers naming
//!   strangers) hold at most half of the cap each, so a peer sending
//!   made-up addresses cannot crowd out the trackers' and the user's.
//! - **Replacement.** A new address at the cap takes the place of a worse
//!   one rather than being refused: one that failed, one from a less
//!   trusted source, or one no source repeated for [`STALE`]; the worst goes
//!   (most failures, then least trusted, then longest unheard of). Connected
//!   and manual entries are never replaced. At an exchanged source's share,
//!   only an entry of that source is replaced.
//! - **Dial order.** Among the addresses eligible now, fewer failures
//!   first, then the higher BEP 40 canonical peer priority (computed once
//!   when the address is added, from our own address: [`bep40_priority`]).
//!   Choosing is one pass over the list plus a sort of the few chosen.
//! - A peer that was a seed when we completed is not dialled again while we
//!   are complete.

use crate::swarm::PeerKey;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Most addresses remembered per torrent (libtorrent keeps 3,000; about
/// 2,000 is a public swarm's worth of tracker, DHT and PEX answers at a
/// size a 64 MiB router holds for a few torrents: see [`BYTES_PER_ENTRY`]).
/// 2,048: two full tracker replies of 1,000 and room to spare.
pub const MAX_KNOWN: usize = 2048;
/// Fewest addresses a torrent may remember whatever the memory budget:
/// below this a torrent in a public swarm cannot find its peers.
pub const MIN_KNOWN: usize = 100;
/// Most of them learned from one exchanged source (peer exchange, the DHT,
/// the overlay) at the largest cap: half of it.
pub const MAX_PEX_KNOWN: usize = MAX_KNOWN / 2;
/// Failures in a row after which an address is forgotten (libtorrent: 3).
pub const MAX_FAILS: u32 = 3;
/// How long a forgotten address is not taken back.
pub const FORGET_FOR: Duration = Duration::from_secs(30 * 60);
/// An entry no source repeated for this long may be replaced by a new one.
pub const STALE: Duration = Duration::from_secs(30 * 60);
/// What one entry of the cap costs, counted in the memory budget: a
/// [`KnownPeer`] (112 B on 64-bit), its slot in the address index
/// (~42 B), and the memory of one forgotten address (~36 B), with room
/// for the growth slack of the vector and the tables.
pub const BYTES_PER_ENTRY: u64 = 256;

/// Most dials one torrent starts per second (libtorrent's
/// `connection_speed` is 30 per session): a dial that fails at once (a
/// refused port) frees its half-open slot at once, and the next goes in
/// the same loop turn. 100 a second passes over a full list of 2,048
/// refusing addresses in 20 s, at one SYN (60 bytes) each: 6 KB/s; dials
/// that hang stay bounded by the half-open cap.
pub const DIALS_PER_SECOND: usize = 100;

/// Sources whose addresses come from strangers: capped to a share.
pub fn is_exchanged(source: &str) -> bool {
    matches!(source, "pex" | "dht" | "overlay")
}

/// How far a source is trusted: the user's word, then trackers and the
/// magnet link, then strangers.
fn trust(source: &str) -> u8 {
    match source {
        "manual" => 3,
        _ if is_exchanged(source) => 0,
        _ => 1,
    }
}

/// A peer address we may connect to.
#[derive(Clone, Debug)]
pub struct KnownPeer {
    pub addr: SocketAddr,
    /// "manual", "tracker", "pex", "dht", "overlay", "magnet", ...
    pub source: &'static str,
    /// Failures since the last handshake.
    pub fails: u32,
    pub next_try: Instant,
    pub conn: Option<PeerKey>,
    /// It had every piece when we last saw it.
    pub seed: bool,
    /// BEP 40 canonical priority against our own address: higher first.
    pub priority: u32,
    /// When a source last named it, or it last completed a handshake.
    pub seen: Instant,
}

/// One torrent's known addresses. See the module docs.
#[derive(Clone, Debug)]
pub struct PeerList {
    known: Vec<KnownPeer>,
    /// Address → position in `known`.
    index: HashMap<SocketAddr, u32>,
    /// Entries per exchanged source.
    per_source: Vec<(&'static str, usize)>,
    forgotten: Forgotten,
    cap: usize,
    own: Option<SocketAddr>,
    /// Dials started in the current second: (its start, count).
    dials: (Option<Instant>, usize),
    /// Which connected peers to let go for new ones.
    pub turnover: Turnover,
}

impl Default for PeerList {
    fn default() -> PeerList {
        PeerList {
            known: Vec::new(),
            index: HashMap::new(),
            per_source: Vec::new(),
            forgotten: Forgotten::default(),
            cap: MAX_KNOWN,
            own: None,
            dials: (None, 0),
            turnover: Turnover::default(),
        }
    }
}

fn backoff(fails: u32) -> Duration {
    Duration::from_secs(2u64.saturating_pow(fails.min(8))).min(Duration::from_secs(120))
}

/// The BEP 40 canonical peer priority of the connection between `own` and
/// `peer`: CRC-32C of the two addresses, masked (IPv4: `FF.FF.55.55`, or
/// `FF.FF.FF.55` within one /16, unmasked within one /24; IPv6 alike on
/// the /32, /40 and /48 prefixes), lower first; the two ports instead when
/// the addresses are equal. Both ends compute the same number, so the
/// swarm agrees on which connections to make first. Across address
/// families (no such pair in BEP 40) the peer's masked address alone.
pub fn bep40_priority(own: SocketAddr, peer: SocketAddr) -> u32 {
    if own.ip() == peer.ip() {
        let (a, b) = (own.port().min(peer.port()), own.port().max(peer.port()));
        let mut buf = [0u8; 4];
        buf[..2].copy_from_slice(&a.to_be_bytes());
        buf[2..].copy_from_slice(&b.to_be_bytes());
        return crate::hash::crc32c(&buf);
    }
    fn masked(ip: IpAddr, same: usize) -> Vec<u8> {
        let mut b = match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        let (full, total) = match ip {
            IpAddr::V4(_) => (2 + same, 4),
            IpAddr::V6(_) => (4 + same, 16),
        };
        if full < total {
            b[full] &= 0x55;
            for x in b.iter_mut().skip(full + 1) {
                *x &= 0x55;
            }
        }
        b
    }
    fn octets(ip: IpAddr) -> Vec<u8> {
        match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        }
    }
    let (x, y) = (octets(own.ip()), octets(peer.ip()));
    if x.len() != y.len() {
        return crate::hash::crc32c(&masked(peer.ip(), 0));
    }
    let prefix = if x.len() == 4 { 2 } else { 4 };
    // 0: different /16 (/32), 1: same /16 but not /24, 2: same /24.
    let same = if x[..prefix] != y[..prefix] {
        0
    } else if x[..prefix + 1] != y[..prefix + 1] {
        1
    } else {
        2
    };
    let (mut a, mut b) = (masked(own.ip(), same), masked(peer.ip(), same));
    if a > b {
        std::mem::swap(&mut a, &mut b);
    }
    a.extend_from_slice(&b);
    crate::hash::crc32c(&a)
}

impl PeerList {
    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &KnownPeer> {
        self.known.iter()
    }

    /// Most addresses this list keeps now.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Forgotten addresses remembered now (not taken back until they expire).
    pub fn n_forgotten(&self) -> usize {
        self.forgotten.until.len()
    }

    /// Addresses forgotten since the list was made.
    pub fn forgotten_total(&self) -> u64 {
        self.forgotten.total
    }

    /// Sets the cap (the memory budget's share changed); entries beyond it
    /// go, worst first, and so does the oldest memory beyond it.
    pub fn set_cap(&mut self, cap: usize) {
        self.cap = cap.clamp(MIN_KNOWN, MAX_KNOWN);
        while self.known.len() > self.cap {
            let Some(i) = self.victim(None) else { break };
            self.remove(i);
        }
        self.forgotten.trim(self.cap);
    }

    /// Our own address, as peers see it: priorities are computed against it.
    pub fn set_own_addr(&mut self, own: SocketAddr) {
        if self.own == Some(own) {
            return;
        }
        self.own = Some(own);
        for k in self.known.iter_mut() {
            k.priority = bep40_priority(own, k.addr);
        }
    }

    fn priority(&self, addr: SocketAddr) -> u32 {
        bep40_priority(self.own.unwrap_or(addr), addr)
    }

    /// Adds an address learned from peer exchange: the same as [`PeerList::add`].
    pub fn add_exchanged(&mut self, addr: SocketAddr, source: &'static str, now: Instant) -> bool {
        self.add(addr, source, now)
    }

    /// Adds an address from `source`. A known one is kept (a `manual` one
    /// becomes manual); a source other than an exchanged one makes it
    /// eligible at once (an exchanged one does not cut its back-off
    /// short). A forgotten one is refused until its memory expires, unless
    /// `manual`. At the cap, or at an exchanged source's share, a worse
    /// entry makes room if there is one. False when refused.
    pub fn add(&mut self, addr: SocketAddr, source: &'static str, now: Instant) -> bool {
        let manual = source == "manual";
        if manual {
            self.forgotten.remove(&addr);
        } else if self.forgotten.contains(&addr, now) {
            return false;
        }
        if let Some(&i) = self.index.get(&addr) {
            let old = self.known[i as usize].source;
            if manual && old != "manual" {
                self.count(old, -1);
                self.known[i as usize].source = "manual";
            }
            let k = &mut self.known[i as usize];
            k.seen = now;
            if !is_exchanged(source) && k.conn.is_none() {
                k.next_try = k.next_try.min(now);
            }
            return true;
        }
        if is_exchanged(source) && self.count_of(source) >= self.cap / 2 {
            match self.victim(Some((source, now))) {
                Some(i) if self.known[i].source == source => self.remove(i),
                _ => return false,
            }
        }
        if self.known.len() >= self.cap {
            match self.victim(Some((source, now))) {
                Some(i) => self.remove(i),
                None => return false,
            }
        }
        self.index.insert(addr, self.known.len() as u32);
        self.count(source, 1);
        let priority = self.priority(addr);
        self.known.push(KnownPeer {
            addr,
            source,
            fails: 0,
            next_try: now,
            conn: None,
            seed: false,
            priority,
            seen: now,
        });
        true
    }

    fn count_of(&self, source: &str) -> usize {
        self.per_source
            .iter()
            .find(|e| e.0 == source)
            .map_or(0, |e| e.1)
    }

    fn count(&mut self, source: &'static str, delta: isize) {
        if !is_exchanged(source) {
            return;
        }
        match self.per_source.iter_mut().find(|e| e.0 == source) {
            Some(e) => e.1 = e.1.saturating_add_signed(delta),
            None if delta > 0 => self.per_source.push((source, delta as usize)),
            None => {}
        }
    }

    /// The entry to give up: never a connected or manual one. With `for_new`
    /// (a new address from that source, at `now`), only one worse than it
    /// would be (failed, less trusted, or stale), and at an exchanged
    /// source's share one of that source; without, the worst of all.
    fn victim(&self, for_new: Option<(&'static str, Instant)>) -> Option<usize> {
        let share_full = for_new
            .filter(|(s, _)| is_exchanged(s) && self.count_of(s) >= self.cap / 2)
            .map(|(s, _)| s);
        self.known
            .iter()
            .enumerate()
            .filter(|(_, k)| k.conn.is_none() && k.source != "manual")
            .filter(|(_, k)| share_full.is_none_or(|s| k.source == s))
            .filter(|(_, k)| match for_new {
                None => true,
                Some((source, now)) => {
                    k.fails > 0
                        || trust(k.source) < trust(source)
                        || now.saturating_duration_since(k.seen) >= STALE
                }
            })
            .max_by_key(|(_, k)| {
                (
                    k.fails,
                    std::cmp::Reverse(trust(k.source)),
                    std::cmp::Reverse(k.seen),
                )
            })
            .map(|(i, _)| i)
    }

    /// Drops entry `i` (swapping the last one into its place).
    fn remove(&mut self, i: usize) {
        let gone = self.known.swap_remove(i);
        self.index.remove(&gone.addr);
        self.count(gone.source, -1);
        if let Some(moved) = self.known.get(i) {
            self.index.insert(moved.addr, i as u32);
        }
    }

    /// Addresses to dial now, the best first, at most `max`: fewer
    /// failures, then higher priority. One pass over the list; only the
    /// chosen are sorted.
    pub fn candidates(
        &self,
        now: Instant,
        complete: bool,
        banned: impl Fn(&SocketAddr) -> bool,
        max: usize,
    ) -> Vec<SocketAddr> {
        let mut eligible: Vec<(u32, std::cmp::Reverse<u32>, u32)> = self
            .known
            .iter()
            .enumerate()
            .filter(|(_, k)| {
                k.conn.is_none() && k.next_try <= now && !(complete && k.seed) && !banned(&k.addr)
            })
            .map(|(i, k)| (k.fails, std::cmp::Reverse(k.priority), i as u32))
            .collect();
        if max == 0 {
            return Vec::new();
        }
        if eligible.len() > max {
            eligible.select_nth_unstable(max - 1);
            eligible.truncate(max);
        }
        eligible.sort_unstable();
        eligible
            .into_iter()
            .map(|(_, _, i)| self.known[i as usize].addr)
            .collect()
    }

    /// Dials this torrent may start now: at most [`DIALS_PER_SECOND`] a
    /// second (the half-open cap bounds dials that hang; this bounds
    /// those that fail at once).
    pub fn dial_allowance(&self, now: Instant) -> usize {
        match self.dials {
            (Some(start), n) if now < start + Duration::from_secs(1) => {
                DIALS_PER_SECOND.saturating_sub(n)
            }
            _ => DIALS_PER_SECOND,
        }
    }

    /// A dial started.
    pub fn note_dial(&mut self, now: Instant) {
        match &mut self.dials {
            (Some(start), n) if now < *start + Duration::from_secs(1) => *n += 1,
            d => *d = (Some(now), 1),
        }
    }

    /// Whether any address may be dialled now.
    pub fn has_candidates(&self, now: Instant) -> bool {
        self.known
            .iter()
            .any(|k| k.conn.is_none() && k.next_try <= now)
    }

    /// Open connections we dialled.
    pub fn n_connected(&self) -> usize {
        self.known.iter().filter(|k| k.conn.is_some()).count()
    }

    /// A connection to `addr` was opened as `key`; returns where the address came from.
    pub fn attach(&mut self, addr: SocketAddr, key: PeerKey) -> Option<&'static str> {
        let &i = self.index.get(&addr)?;
        let k = &mut self.known[i as usize];
        k.conn = Some(key);
        Some(k.source)
    }

    /// A failure of entry `i`: back-off, or forgotten at [`MAX_FAILS`].
    fn fail(&mut self, i: usize, now: Instant) {
        let k = &mut self.known[i];
        k.conn = None;
        k.fails += 1;
        if k.fails >= MAX_FAILS && k.source != "manual" {
            let addr = k.addr;
            self.remove(i);
            self.forgotten.insert(addr, now, self.cap);
        } else {
            k.next_try = k.next_try.max(now + backoff(k.fails));
        }
    }

    /// Dialling `addr` failed before a connection existed.
    pub fn failed(&mut self, addr: SocketAddr, now: Instant) {
        if let Some(&i) = self.index.get(&addr) {
            self.fail(i as usize, now);
        }
    }

    /// The handshake on `key` succeeded: its failures are forgiven.
    pub fn connected(&mut self, key: PeerKey, now: Instant) {
        if let Some(k) = self.known.iter_mut().find(|k| k.conn == Some(key)) {
            k.fails = 0;
            k.seen = now;
        }
    }

    /// The connection `key` closed; one that never got through (closed
    /// before its handshake completed) is a failure.
    pub fn closed(&mut self, key: PeerKey, was_active: bool, now: Instant) {
        let Some(i) = self.known.iter().position(|k| k.conn == Some(key)) else {
            return;
        };
        if !was_active {
            return self.fail(i, now);
        }
        let k = &mut self.known[i];
        k.conn = None;
        k.next_try = k
            .next_try
            .max(now + backoff(k.fails).max(Duration::from_secs(1)));
    }

    /// The connection `key` is being closed to give others a chance
    /// ([`Turnover`]): not dialled again for `rest`.
    pub fn rest(&mut self, key: PeerKey, now: Instant, rest: Duration) {
        if let Some(k) = self.known.iter_mut().find(|k| k.conn == Some(key)) {
            k.next_try = now + rest;
        }
    }

    /// The peer on `key` was a seed when we were complete: do not dial it again.
    pub fn mark_seed(&mut self, key: PeerKey) {
        if let Some(k) = self.known.iter_mut().find(|k| k.conn == Some(key)) {
            k.seed = true;
        }
    }

    /// Forget failures and forgotten addresses (a user said "resume").
    pub fn retry_all(&mut self, now: Instant) {
        for k in self.known.iter_mut() {
            k.next_try = now;
            k.fails = 0;
        }
        self.forgotten = Forgotten {
            total: self.forgotten.total,
            ..Forgotten::default()
        };
    }
}

/// Addresses forgotten lately, oldest first, as 64-bit keys (a collision
/// only keeps an address out a while longer).
#[derive(Clone, Debug, Default)]
struct Forgotten {
    order: VecDeque<u64>,
    until: HashMap<u64, Instant>,
    total: u64,
}

fn addr_key(addr: &SocketAddr) -> u64 {
    // A fixed-key SipHash: the same address gives the same key.
    let mut h =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .build_hasher();
    std::hash::Hash::hash(addr, &mut h);
    h.finish()
}

impl Forgotten {
    fn expire(&mut self, now: Instant) {
        while let Some(&key) = self.order.front() {
            match self.until.get(&key) {
                Some(&until) if until > now => break,
                Some(_) => {
                    self.until.remove(&key);
                }
                None => {}
            }
            self.order.pop_front();
        }
    }

    fn contains(&mut self, addr: &SocketAddr, now: Instant) -> bool {
        self.expire(now);
        self.until.contains_key(&addr_key(addr))
    }

    fn insert(&mut self, addr: SocketAddr, now: Instant, cap: usize) {
        self.expire(now);
        let key = addr_key(&addr);
        self.total += 1;
        if self.until.insert(key, now + FORGET_FOR).is_none() {
            self.order.push_back(key);
        }
        self.trim(cap);
    }

    fn remove(&mut self, addr: &SocketAddr) {
        self.until.remove(&addr_key(addr));
    }

    fn trim(&mut self, cap: usize) {
        while self.order.len() > cap {
            if let Some(key) = self.order.pop_front() {
                self.until.remove(&key);
            }
        }
    }
}

/// How often connected peers are turned over (libtorrent: 5 minutes).
pub const TURNOVER_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// A peer that moved no payload either way for this long may be turned over.
pub const TURNOVER_IDLE: Duration = Duration::from_secs(5 * 60);
/// Share of the connected peers turned over each time (at least one).
pub const TURNOVER_PERCENT: usize = 4;
/// A peer turned over is not dialled again for this long.
pub const TURNOVER_REST: Duration = Duration::from_secs(30 * 60);

/// One connected peer of a torrent, as [`Turnover`] sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectedPeer {
    pub key: PeerKey,
    /// Payload bytes moved both ways since it connected.
    pub moved: u64,
    /// Blocks asked for either way, or payload within the last seconds.
    pub transferring: bool,
    /// Sides interested in the other: 0, 1 or 2.
    pub interest: u8,
    /// Given by the user: never turned over.
    pub manual: bool,
}

/// Turnover of a torrent's connected peers (libtorrent's peer turnover):
/// when the torrent is near its connection limit and there are addresses
/// waiting to be tried, every [`TURNOVER_INTERVAL`] the least useful
/// [`TURNOVER_PERCENT`] % (at least one) of the connected peers go. Least
/// useful: no payload either way for [`TURNOVER_IDLE`] (nothing sent to
/// us, nothing taken from us: a peer that keeps us choked, or has nothing
/// we need and wants nothing of ours), and nothing being transferred now;
/// never a manual peer. Among them, the fewest sides interested first,
/// then the fewest bytes moved, then the longest idle.
#[derive(Clone, Debug, Default)]
pub struct Turnover {
    /// Each connected peer's `moved` and since when it has not changed.
    seen: HashMap<PeerKey, (u64, Instant)>,
    next: Option<Instant>,
}

impl Turnover {
    /// Takes the connected peers at `now` (call it every few seconds) and
    /// returns those to close: none unless a round is due, `near_limit`
    /// and `waiting` (candidates may be dialled).
    pub fn choose(
        &mut self,
        peers: &[ConnectedPeer],
        near_limit: bool,
        waiting: bool,
        now: Instant,
    ) -> Vec<PeerKey> {
        self.seen.retain(|k, _| peers.iter().any(|p| p.key == *k));
        for p in peers {
            let e = self.seen.entry(p.key).or_insert((p.moved, now));
            if e.0 != p.moved || p.transferring {
                *e = (p.moved, now);
            }
        }
        let next = *self.next.get_or_insert(now + TURNOVER_INTERVAL);
        if now < next {
            return Vec::new();
        }
        self.next = Some(now + TURNOVER_INTERVAL);
        if !near_limit || !waiting {
            return Vec::new();
        }
        let mut idle: Vec<(u8, u64, Instant, PeerKey)> = peers
            .iter()
            .filter(|p| !p.manual && !p.transferring)
            .filter_map(|p| {
                let since = self.seen.get(&p.key)?.1;
                (now.saturating_duration_since(since) >= TURNOVER_IDLE)
                    .then_some((p.interest, p.moved, since, p.key))
            })
            .collect();
        idle.sort_unstable();
        let n = (peers.len() * TURNOVER_PERCENT / 100).max(1);
        idle.into_iter().take(n).map(|e| e.3).collect()
    }
}

#[cfg(test)]
mod tests;
