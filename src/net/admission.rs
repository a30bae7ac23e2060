//! Who gets a connection slot, sans I/O: the engine describes its open
//! connections as [`Slot`]s, asks, and carries out the answer (accept,
//! close a victim, refuse). Time comes in as `now`; tests use fake time.
//!
//! The rules (libtorrent and Transmission drop the least useful peer for a
//! new one, never one that is transferring):
//!
//! - `max_connections` bounds every connection, in any state.
//! - *Dialling*: our own connections still connecting or handshaking; at
//!   most `max_half_open`.
//! - *Knocking*: incoming connections that have not sent a whole handshake
//!   (the BitTorrent handshake; in a private network the Noise handshake
//!   and then it). At most `max_half_open_incoming`, a cap of their own, and
//!   [`Limits::knock_reserve`] slots of `max_connections` are theirs alone:
//!   dialling and established connections together stay within
//!   [`Limits::settled_cap`], so a newcomer can always knock however many
//!   peers we hold. Half-open connections in all are thus at most
//!   [`Limits::max_half_open_total`], the published maximum.
//! - A knock with the knocking slots full takes the slot of the knocking
//!   connection that has shown least ([`knock_victim`]): silent before
//!   partial, then the oldest; one whose whole handshake waits to be read
//!   is never taken. No victim: the knock waits in the kernel's listen
//!   backlog ([`Knock::Wait`]).
//! - An incoming handshake completed for a torrent we serve, with the
//!   settled share (or the torrent's share) full: the least useful
//!   connection goes ([`settled_victim`]): a dial still connecting or
//!   handshaking first (the oldest), then an established peer older than
//!   [`ESTABLISHED_GRACE`] that moves nothing (no block asked for either
//!   way, no payload within the rate window): neither side interested
//!   first, then the fewest bytes moved, then the oldest. No victim: the
//!   newcomer is refused.

use crate::swarm::PeerKey;
use std::time::{Duration, Instant};

/// An established peer younger than this is never taken for a newcomer: it
/// has not had the time to say what it wants.
pub const ESTABLISHED_GRACE: Duration = Duration::from_secs(10);

/// The connection caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    /// Our dials still connecting or handshaking.
    pub max_half_open: usize,
    /// Incoming connections still handshaking.
    pub max_half_open_incoming: usize,
}

impl Limits {
    /// Slots of `max_connections` kept for knocking connections: the
    /// incoming cap, at most half of all connections.
    pub fn knock_reserve(&self) -> usize {
        self.max_half_open_incoming.min(self.max_connections / 2)
    }

    /// Most dialling and established connections together.
    pub fn settled_cap(&self) -> usize {
        self.max_connections - self.knock_reserve()
    }

    /// Most half-open connections at once, both directions.
    pub fn max_half_open_total(&self) -> usize {
        self.max_half_open + self.max_half_open_incoming
    }

    /// New dials allowed now.
    pub fn dial_budget(&self, c: Census) -> usize {
        let half = self.max_half_open.saturating_sub(c.dialling);
        let settled = self
            .settled_cap()
            .saturating_sub(c.dialling + c.established);
        let total = self.max_connections.saturating_sub(c.total());
        half.min(settled).min(total)
    }
}

/// What a connection shows to admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Incoming, handshake not complete: `seen` bytes of it so far;
    /// `whole` when a whole handshake waits to be read.
    Knocking { seen: usize, whole: bool },
    /// Ours, connecting or handshaking.
    Dialling,
    /// Handshakes done.
    Established(Activity),
}

/// What an established connection is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Activity {
    /// Sides interested in the other: 0, 1 or 2.
    pub interest: u8,
    /// Blocks asked for either way, or payload within the rate window.
    pub transferring: bool,
    /// Payload bytes moved both ways since it connected.
    pub moved: u64,
    /// Never taken (a magnet's metadata exchange, a peer of a torrent
    /// without a swarm).
    pub protected: bool,
}

impl Activity {
    /// A connection that is never taken.
    pub const PROTECTED: Activity = Activity {
        interest: 0,
        transferring: false,
        moved: 0,
        protected: true,
    };
}

/// One open connection (not closing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub key: PeerKey,
    /// When it was opened.
    pub since: Instant,
    pub standing: Standing,
}

/// Connections by standing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Census {
    pub knocking: usize,
    pub dialling: usize,
    pub established: usize,
}

impl Census {
    pub fn of(slots: &[Slot]) -> Census {
        let mut c = Census::default();
        for s in slots {
            match s.standing {
                Standing::Knocking { .. } => c.knocking += 1,
                Standing::Dialling => c.dialling += 1,
                Standing::Established(_) => c.established += 1,
            }
        }
        c
    }

    pub fn total(&self) -> usize {
        self.knocking + self.dialling + self.established
    }

    /// Connections still connecting or handshaking, both directions.
    pub fn half_open(&self) -> usize {
        self.knocking + self.dialling
    }
}

/// What to do with the next connection in the listen backlog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Knock {
    Admit,
    /// Close this knocking connection, then admit.
    Evict(PeerKey),
    /// Leave it in the backlog until a slot frees.
    Wait,
}

/// Room for one more knocking connection among `slots` (all open ones).
pub fn on_knock(limits: &Limits, slots: &[Slot]) -> Knock {
    let c = Census::of(slots);
    if c.knocking < limits.max_half_open_incoming && c.total() < limits.max_connections {
        return Knock::Admit;
    }
    knock_victim(slots).map_or(Knock::Wait, Knock::Evict)
}

/// The knocking connection to give up for a new one: silent before
/// partial, then the oldest; never one with a whole handshake waiting.
pub fn knock_victim(slots: &[Slot]) -> Option<PeerKey> {
    slots
        .iter()
        .filter_map(|s| match s.standing {
            Standing::Knocking { seen, whole: false } => Some(((seen > 0, s.since), s.key)),
            _ => None,
        })
        .min()
        .map(|(_, key)| key)
}

/// What to do with an incoming connection that completed its handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    Admit,
    /// Close this connection, then admit.
    Evict(PeerKey),
    /// No room: close the newcomer.
    Refuse,
}

/// Room for one more settled connection within `cap` among `slots` (the
/// ones that count, the newcomer not among them): dialling and established
/// ones count, knocking ones do not.
pub fn on_arrival(slots: &[Slot], cap: usize, now: Instant) -> Arrival {
    let c = Census::of(slots);
    if c.dialling + c.established < cap {
        return Arrival::Admit;
    }
    settled_victim(slots, now).map_or(Arrival::Refuse, Arrival::Evict)
}

/// The least useful dialling or established connection, if one may go.
pub fn settled_victim(slots: &[Slot], now: Instant) -> Option<PeerKey> {
    let dial = slots
        .iter()
        .filter(|s| s.standing == Standing::Dialling)
        .min_by_key(|s| (s.since, s.key));
    if let Some(s) = dial {
        return Some(s.key);
    }
    slots
        .iter()
        .filter_map(|s| match s.standing {
            Standing::Established(a)
                if !a.protected
                    && !a.transferring
                    && now.saturating_duration_since(s.since) >= ESTABLISHED_GRACE =>
            {
                Some(((a.interest, a.moved, s.since, s.key), s.key))
            }
            _ => None,
        })
        .min()
        .map(|(_, key)| key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_connections: 20,
        max_half_open: 4,
        max_half_open_incoming: 3,
    };

    fn knocking(key: PeerKey, since: Instant, seen: usize, whole: bool) -> Slot {
        Slot {
            key,
            since,
            standing: Standing::Knocking { seen, whole },
        }
    }

    fn dialling(key: PeerKey, since: Instant) -> Slot {
        Slot {
            key,
            since,
            standing: Standing::Dialling,
        }
    }

    fn idle(key: PeerKey, since: Instant) -> Slot {
        established(key, since, 0, false, 0)
    }

    fn established(key: PeerKey, since: Instant, interest: u8, busy: bool, moved: u64) -> Slot {
        Slot {
            key,
            since,
            standing: Standing::Established(Activity {
                interest,
                transferring: busy,
                moved,
                protected: false,
            }),
        }
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn reserve_and_caps() {
        assert_eq!(LIMITS.knock_reserve(), 3);
        assert_eq!(LIMITS.settled_cap(), 17);
        assert_eq!(LIMITS.max_half_open_total(), 7);
        // A tiny cap keeps half of it for knocks at most.
        let tiny = Limits {
            max_connections: 1,
            ..LIMITS
        };
        assert_eq!((tiny.knock_reserve(), tiny.settled_cap()), (0, 1));
        let small = Limits {
            max_connections: 4,
            ..LIMITS
        };
        assert_eq!((small.knock_reserve(), small.settled_cap()), (2, 2));
    }

    #[test]
    fn dials_leave_the_knock_reserve_free() {
        let t0 = Instant::now();
        let mut slots: Vec<Slot> = (0..15).map(|k| idle(k, t0)).collect();
        // 15 established: 2 more settled ones fit, and 4 half-open dials would.
        assert_eq!(LIMITS.dial_budget(Census::of(&slots)), 2);
        slots.push(dialling(100, t0));
        slots.push(dialling(101, t0));
        assert_eq!(LIMITS.dial_budget(Census::of(&slots)), 0);
        // Knocking ones use the reserve, not the dial budget.
        let mut few: Vec<Slot> = (0..3).map(|k| knocking(k, t0, 0, false)).collect();
        assert_eq!(LIMITS.dial_budget(Census::of(&few)), 4);
        few.extend((10..14).map(|k| dialling(k, t0)));
        assert_eq!(LIMITS.dial_budget(Census::of(&few)), 0);
    }

    #[test]
    fn knocks_are_admitted_under_the_cap() {
        let t0 = Instant::now();
        let mut slots: Vec<Slot> = (0..17).map(|k| idle(k, t0)).collect();
        slots.push(knocking(50, t0, 0, false));
        // Settled share full, reserve not: admitted.
        assert_eq!(on_knock(&LIMITS, &slots), Knock::Admit);
    }

    #[test]
    fn a_knock_takes_the_silent_oldest_slot() {
        let t0 = Instant::now();
        let slots = [
            knocking(1, secs(t0, 1), 30, false),
            knocking(2, secs(t0, 3), 0, false),
            knocking(3, secs(t0, 2), 0, false),
        ];
        assert_eq!(on_knock(&LIMITS, &slots), Knock::Evict(3));
        // Partial ones go once no silent one is left, the oldest first.
        let slots = [
            knocking(1, secs(t0, 2), 30, false),
            knocking(2, secs(t0, 1), 67, false),
            knocking(3, secs(t0, 0), 68, true),
        ];
        assert_eq!(on_knock(&LIMITS, &slots), Knock::Evict(2));
    }

    #[test]
    fn a_whole_handshake_is_never_taken() {
        let t0 = Instant::now();
        let slots: Vec<Slot> = (0..3).map(|k| knocking(k, t0, 68, true)).collect();
        assert_eq!(on_knock(&LIMITS, &slots), Knock::Wait);
        assert_eq!(knock_victim(&slots), None);
    }

    #[test]
    fn a_knock_at_the_connection_cap_takes_a_knocking_slot() {
        let t0 = Instant::now();
        // 17 settled + 3 knocking = 20 = max_connections.
        let mut slots: Vec<Slot> = (0..17).map(|k| idle(k, t0)).collect();
        slots.extend((20..23).map(|k| knocking(k, secs(t0, k - 20), 0, false)));
        assert_eq!(on_knock(&LIMITS, &slots), Knock::Evict(20));
        // Never an established one, however idle.
        let mut slots: Vec<Slot> = (0..20).map(|k| idle(k, t0)).collect();
        assert_eq!(on_knock(&LIMITS, &slots), Knock::Wait);
        slots.truncate(19);
        assert_eq!(on_knock(&LIMITS, &slots), Knock::Admit);
    }

    /// A flood of silent knocks, each taking a slot; a peer whose whole
    /// handshake is waiting keeps its slot however many follow.
    #[test]
    fn a_flood_of_silent_knocks_never_takes_a_talking_peer() {
        let t0 = Instant::now();
        let mut slots: Vec<Slot> = Vec::new();
        let mut next: PeerKey = 0;
        let mut evicted = 0;
        for i in 0..400u64 {
            let now = t0 + Duration::from_millis(i);
            match on_knock(&LIMITS, &slots) {
                Knock::Admit => {}
                Knock::Evict(v) => {
                    assert_ne!(v, 1000, "the talking peer was taken");
                    slots.retain(|s| s.key != v);
                    evicted += 1;
                }
                Knock::Wait => panic!("a silent slot was there to take"),
            }
            // The legitimate peer arrives among them.
            let (key, seen, whole) = if i == 200 {
                (1000, 68, true)
            } else {
                next += 1;
                (next, 0, false)
            };
            slots.push(knocking(key, now, seen, whole));
            let c = Census::of(&slots);
            assert!(c.knocking <= LIMITS.max_half_open_incoming);
            assert!(c.half_open() <= LIMITS.max_half_open_total());
        }
        assert!(slots.iter().any(|s| s.key == 1000));
        assert_eq!(evicted, 400 - LIMITS.max_half_open_incoming);
    }

    #[test]
    fn an_arrival_under_the_cap_is_admitted() {
        let t0 = Instant::now();
        let mut slots: Vec<Slot> = (0..16).map(|k| idle(k, t0)).collect();
        // Knocking ones do not count against the settled cap.
        slots.extend((50..53).map(|k| knocking(k, t0, 0, false)));
        assert_eq!(on_arrival(&slots, 17, secs(t0, 60)), Arrival::Admit);
    }

    #[test]
    fn an_arrival_at_the_cap_takes_a_dial_first() {
        let t0 = Instant::now();
        let mut slots: Vec<Slot> = (0..15).map(|k| idle(k, t0)).collect();
        slots.push(dialling(30, secs(t0, 50)));
        slots.push(dialling(31, secs(t0, 40)));
        assert_eq!(on_arrival(&slots, 17, secs(t0, 60)), Arrival::Evict(31));
    }

    #[test]
    fn an_arrival_takes_the_least_useful_idle_peer() {
        let t0 = Instant::now();
        let now = secs(t0, 100);
        let slots = [
            // Transferring: never, however little it moved.
            established(1, t0, 0, true, 0),
            // Interested both ways.
            established(2, t0, 2, false, 0),
            // One side interested, much moved.
            established(3, t0, 1, false, 1 << 30),
            // One side interested, little moved.
            established(4, t0, 1, false, 10),
        ];
        assert_eq!(on_arrival(&slots, 4, now), Arrival::Evict(4));
        // Nobody interested goes before anyone interested; the oldest first.
        let mut more = slots.to_vec();
        more.push(established(5, secs(t0, 20), 0, false, 1 << 20));
        more.push(established(6, secs(t0, 10), 0, false, 1 << 20));
        assert_eq!(on_arrival(&more, 6, now), Arrival::Evict(6));
    }

    #[test]
    fn an_arrival_never_takes_a_transferring_young_or_protected_peer() {
        let t0 = Instant::now();
        let now = secs(t0, 100);
        let young = now - ESTABLISHED_GRACE + Duration::from_secs(1);
        let mut slots = vec![
            established(1, t0, 0, true, 0),
            established(2, young, 0, false, 0),
            Slot {
                key: 3,
                since: t0,
                standing: Standing::Established(Activity::PROTECTED),
            },
            knocking(4, t0, 0, false),
        ];
        assert_eq!(on_arrival(&slots, 3, now), Arrival::Refuse);
        // Once past its grace, the idle one may go.
        assert_eq!(
            on_arrival(&slots, 3, now + Duration::from_secs(1)),
            Arrival::Evict(2)
        );
        slots.remove(1);
        assert_eq!(
            on_arrival(&slots, 2, now + Duration::from_secs(1)),
            Arrival::Refuse
        );
    }

    /// Idle handshaken connections filling every settled slot: each useful
    /// newcomer takes the slot of one of them.
    #[test]
    fn useful_newcomers_replace_idle_ones_at_the_limit() {
        let t0 = Instant::now();
        let cap = LIMITS.settled_cap();
        let mut slots: Vec<Slot> = (0..cap as u64).map(|k| idle(k, t0)).collect();
        let mut now = secs(t0, 30);
        for newcomer in 1000..1000 + cap as u64 {
            match on_arrival(&slots, cap, now) {
                Arrival::Evict(v) => {
                    assert!(v < 1000, "a newcomer was taken for another");
                    slots.retain(|s| s.key != v);
                }
                other => panic!("{other:?} with idle peers to take"),
            }
            // The newcomer starts a transfer.
            slots.push(established(newcomer, now, 2, true, 0));
            assert_eq!(Census::of(&slots).established, cap);
            now += Duration::from_millis(100);
        }
        assert!(slots.iter().all(|s| s.key >= 1000));
        assert_eq!(on_arrival(&slots, cap, now), Arrival::Refuse);
    }
}
