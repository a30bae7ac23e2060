//! Hostile-peer defences on the net thread: bans with expiry
//! ([`crate::net::bans::BanList`]), strikes for protocol violations, the
//! per-address connection caps, the accept back-off at the connection cap,
//! and slow readers.
//!
//! - Connection slots follow [`crate::net::admission`]: incoming
//!   connections still handshaking have `max_half_open_incoming` slots of
//!   their own (reserved within `max_connections`) and a handshake deadline
//!   of `incoming_handshake_timeout`; a new one takes the slot of a silent
//!   one, and a peer that completes its handshake at the limit takes the
//!   slot of the least useful connection. When no slot can be had,
//!   accepting stops (the rest wait in the kernel's listen backlog, not
//!   accepted and closed) until one frees; the listener is edge-triggered,
//!   so resuming calls `accept` at once.
//! - An address holds at most `max_connections_per_ip` connections (all
//!   torrents, both directions, handshakes included) and one per torrent.
//! - A connection closed for a protocol violation (a malformed or oversized
//!   message, a request outside the torrent, a bad bitfield, a bad
//!   ut_metadata or ut_pex message) or an incoming one that did not finish
//!   its handshake in time is a strike; [`bans::STRIKES`] within
//!   [`bans::STRIKE_WINDOW`] ban the address.
//! - Slow readers: a send buffer over [`SLOW_READER_BYTES`] for
//!   [`SLOW_READER_TIMEOUT`], or one that accepted no byte for
//!   [`SEND_STALL_TIMEOUT`] while data waits, closes the connection.
//! - Connections get their read buffer only once a whole handshake has
//!   arrived, at most [`HANDSHAKE_READS_PER_TURN`] per loop turn.

use super::*;
use crate::net::admission::{Activity, Knock, Slot, Standing};
use crate::net::bans;

/// Bytes waiting in a connection's send buffer above which it is a slow
/// reader if that lasts [`SLOW_READER_TIMEOUT`]. Uploads stop at the
/// send watermark (at most 512 KiB) plus at most 16 blocks being read, so only a
/// peer that is not reading what else we owe it gets here.
pub(super) const SLOW_READER_BYTES: usize = 1 << 20;
pub(super) const SLOW_READER_TIMEOUT: Duration = Duration::from_secs(20);
/// Data waiting and not one byte taken by the peer for this long: closed.
pub(super) const SEND_STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Accepting paused for want of a slot is logged at info level at most
/// this often (debug otherwise).
const PAUSE_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// Connections whose first bytes are read in one loop turn.
pub(super) const HANDSHAKE_READS_PER_TURN: usize = 16;

impl Engine {
    /// Why a connection from `ip` is not accepted now, if it is not.
    pub(super) fn refuse_incoming(&self, ip: IpAddr, now: Instant) -> Option<&'static str> {
        if self.shutdown.is_some() {
            return Some("shutting down");
        }
        if self.bans.is_banned(ip, now) {
            return Some("banned");
        }
        if self.conns_from(ip) >= self.config.max_connections_per_ip {
            return Some("too many connections from this address");
        }
        None
    }

    /// Connections from or to `ip`, in any state.
    pub(super) fn conns_from(&self, ip: IpAddr) -> usize {
        self.conns.values().filter(|c| c.addr.ip() == ip).count()
    }

    /// Every open connection (not closing) as admission sees it.
    pub(super) fn slots(&self, now: Instant) -> Vec<Slot> {
        self.conns
            .values()
            .filter(|c| c.closing.is_none())
            .map(|c| Slot {
                key: c.key,
                since: c.created,
                standing: self.standing(c, Some(now)),
            })
            .collect()
    }

    /// How `c` stands; with `now`, what an established one does (without,
    /// established ones read as protected: enough for a knock, which never
    /// takes them).
    fn standing(&self, c: &Conn, now: Option<Instant>) -> Standing {
        match c.state {
            ConnState::Active => {
                let Some(now) = now else {
                    return Standing::Established(Activity::PROTECTED);
                };
                let used = c
                    .torrent
                    .and_then(|tid| self.torrents.get(&tid))
                    .and_then(|t| t.swarm.as_ref())
                    .and_then(|s| s.peer_use(c.key, now));
                Standing::Established(used.map_or(Activity::PROTECTED, |u| Activity {
                    interest: u.interest,
                    transferring: u.transferring,
                    moved: u.moved,
                    protected: false,
                }))
            }
            _ if c.outgoing => Standing::Dialling,
            _ => Standing::Knocking {
                seen: c.handshake_seen(),
                // A plain handshake is 68 bytes; a private link's is not
                // known until it is read.
                whole: c.secure.is_none() && c.handshake_seen() >= HANDSHAKE_LEN,
            },
        }
    }

    /// Open connections (not closing) by standing.
    pub(super) fn census(&self) -> Census {
        let mut n = Census::default();
        for c in self.conns.values().filter(|c| c.closing.is_none()) {
            match c.state {
                ConnState::Active => n.established += 1,
                _ if c.outgoing => n.dialling += 1,
                _ => n.knocking += 1,
            }
        }
        n
    }

    /// Closes `key` to give its slot to a newcomer (not a strike).
    pub(super) fn evict(&mut self, key: PeerKey, why: &str) {
        if let Some(c) = self.conns.get_mut(key) {
            log::debug!("{}: closing for a newcomer: {why}", c.addr);
            c.close(format!("slot given to a newcomer: {why}"));
        }
    }

    /// Where the next incoming connection goes ([`Engine::knock_fresh`]);
    /// `None` when there is no slot for it, not even by taking a silent
    /// one's: accepting stops, and connections wait in the kernel's
    /// backlog until [`Engine::resume_accepting`].
    pub(super) fn next_knock(&mut self, now: Instant) -> Option<Knock> {
        if self.shutdown.is_some() {
            // Accepted and refused at once (`refuse_incoming`).
            return Some(Knock::Admit);
        }
        let knock = self.knock_fresh();
        if knock != Knock::Wait {
            return Some(knock);
        }
        if !self.accept_paused {
            // Pauses can come and go every loop turn (a burst of whole
            // handshakes waiting to be read): said once a minute.
            let say = self
                .accept_pause_said
                .is_none_or(|t| now.saturating_duration_since(t) >= PAUSE_LOG_INTERVAL);
            let n = self.census();
            let level = if say {
                self.accept_pause_said = Some(now);
                log::Level::Info
            } else {
                log::Level::Debug
            };
            log::log!(
                level,
                "{} connections, {} incoming handshaking: not accepting more until a slot frees",
                n.total(),
                n.knocking
            );
            self.accept_paused = true;
        }
        None
    }

    /// Where the next incoming connection goes.
    pub(super) fn knock(&self) -> Knock {
        let slots: Vec<Slot> = self
            .conns
            .values()
            .filter(|c| c.closing.is_none())
            .map(|c| Slot {
                key: c.key,
                since: c.created,
                standing: self.standing(c, None),
            })
            .collect();
        admission::on_knock(&self.config.limits(), &slots)
    }

    /// [`Engine::knock`], with the would-be victim's peek brought up to
    /// date first: a connection that looked silent and whose handshake has
    /// arrived since (not read yet: reads come later in the loop turn)
    /// keeps its slot.
    pub(super) fn knock_fresh(&mut self) -> Knock {
        // Bounded: each round finds a victim with more bytes than it showed.
        for _ in 0..=self.config.max_half_open_incoming {
            let knock = self.knock();
            let Knock::Evict(victim) = knock else {
                return knock;
            };
            let Some(c) = self.conns.get_mut(victim) else {
                return knock;
            };
            let mut head = [0u8; HANDSHAKE_LEN];
            match c.sock.peek(&mut head) {
                Ok(n) if n > c.peeked => c.peeked = n,
                _ => return knock,
            }
        }
        self.knock()
    }

    /// Accepting again once a slot can be had. The listener is
    /// edge-triggered: what waits in the backlog raises no new event, so
    /// this accepts at once.
    pub(super) fn resume_accepting(&mut self, now: Instant) {
        if !self.accept_paused || (self.shutdown.is_none() && self.knock() == Knock::Wait) {
            return;
        }
        log::debug!("{} connections: accepting again", self.conns.len());
        self.accept_paused = false;
        self.accept(now);
    }

    /// Counts the protocol violations noted since the last turn; bans the
    /// addresses that reached [`bans::STRIKES`].
    pub(super) fn apply_violations(&mut self, now: Instant) {
        if self.violations.is_empty() {
            return;
        }
        for (ip, what) in std::mem::take(&mut self.violations) {
            if self.bans.is_banned(ip, now) {
                continue;
            }
            if self.bans.strike(ip, now) {
                self.ban(
                    ip,
                    format!(
                        "{} protocol violations within {} min, the last: {what}",
                        bans::STRIKES,
                        bans::STRIKE_WINDOW.as_secs() / 60
                    ),
                );
            }
        }
    }

    /// Once a second: ended bans go; slow readers are closed.
    pub(super) fn tick_defences(&mut self, now: Instant) {
        self.bans.expire(now);
        let mut over = std::mem::take(&mut self.send_over);
        for c in self.conns.values_mut() {
            let pending = c.pending_out();
            if c.state == ConnState::Connecting || c.closing.is_some() {
                continue;
            }
            if pending > 0 && now.saturating_duration_since(c.last_send) > SEND_STALL_TIMEOUT {
                c.close(format!(
                    "not reading: {pending} bytes unsent for {} s",
                    SEND_STALL_TIMEOUT.as_secs()
                ));
                continue;
            }
            if pending <= SLOW_READER_BYTES {
                over.remove(&c.key);
                continue;
            }
            let since = *over.entry(c.key).or_insert(now);
            if now.saturating_duration_since(since) > SLOW_READER_TIMEOUT {
                c.close(format!(
                    "slow reader: over {} KiB unsent for {} s",
                    SLOW_READER_BYTES >> 10,
                    SLOW_READER_TIMEOUT.as_secs()
                ));
            }
        }
        over.retain(|k, _| self.conns.get(*k).is_some_and(|c| c.closing.is_none()));
        self.send_over = over;
    }

    /// True when `key`, waiting for the peer's handshake, is not read now:
    /// nothing has arrived yet, or the start of a handshake, not all of its
    /// 68 bytes (readiness is cleared, more data raises a new event), or
    /// [`HANDSHAKE_READS_PER_TURN`] connections already had theirs read in
    /// this loop turn (it stays readable for the next turn). A connection's
    /// read buffer (64 KiB) is allocated by its first read, so silent,
    /// trickling and half-open connections cost a few hundred bytes each,
    /// and a burst of new connections at most that many buffers at once
    /// before the closed ones are freed. Plain connections only (a private
    /// link's handshake keeps state of its own).
    pub(super) fn nothing_to_read_yet(&mut self, key: PeerKey) -> bool {
        let Some(c) = self.conns.get_mut(key) else {
            return false;
        };
        if c.state != ConnState::Handshake || c.secure.is_some() || !c.unparsed().is_empty() {
            return false;
        }
        if self.handshake_reads >= HANDSHAKE_READS_PER_TURN {
            return true;
        }
        let mut head = [0u8; HANDSHAKE_LEN];
        let peeked = c.sock.peek(&mut head);
        c.peeked = *peeked.as_ref().unwrap_or(&0);
        match peeked {
            // The start of a handshake: wait for the rest. (What cannot
            // start one is read and refused at once.)
            Ok(n) if n > 0 && n < HANDSHAKE_LEN && Handshake::parse(&head[..n]).is_ok() => {
                c.readable = false;
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                c.readable = false;
                true
            }
            // A handshake's worth, the end of the stream or an error:
            // `read_some` takes it.
            _ => {
                self.handshake_reads += 1;
                false
            }
        }
    }

    /// The bans in force, for `GET /api/bans`.
    pub(super) fn ban_list(&self, now: Instant) -> Vec<api::BanInfo> {
        self.bans
            .list(now)
            .into_iter()
            .map(|(ip, b)| api::BanInfo {
                ip: ip.to_string(),
                reason: b.reason.clone(),
                banned_secs_ago: now.saturating_duration_since(b.since).as_secs(),
                expires_in_secs: b.until.saturating_duration_since(now).as_secs(),
                offences: b.offences,
            })
            .collect()
    }
}
