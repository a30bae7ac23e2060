//! Banned addresses, with expiry, and the scoring that bans repeat protocol
//! offenders. Sans I/O: every call takes `now`, nothing reads the clock.
//!
//! - A ban lasts [`BAN_FIRST`] (1 h); an address banned again within
//!   [`REMEMBER`] (24 h) of its last ban's end gets twice the last length,
//!   up to [`BAN_MAX`] (24 h).
//! - The table holds at most [`MAX_BANS`] (4,096) active bans; a new one
//!   evicts the ban closest to its end. Offence history (for the doubling)
//!   is bounded the same way.
//! - Strikes: an address closed for a protocol violation [`STRIKES`] (5)
//!   times within [`STRIKE_WINDOW`] (10 min) is banned. Strike records are
//!   bounded by [`MAX_STRIKE_RECORDS`] (4,096; the oldest window goes first).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The first ban of an address.
pub const BAN_FIRST: Duration = Duration::from_secs(3600);
/// The longest ban (repeat offenders double up to this).
pub const BAN_MAX: Duration = Duration::from_secs(24 * 3600);
/// How long an address's past bans count after the last one ended.
pub const REMEMBER: Duration = Duration::from_secs(24 * 3600);
/// Active bans kept at most.
pub const MAX_BANS: usize = 4096;
/// Protocol violations within [`STRIKE_WINDOW`] that get an address banned.
pub const STRIKES: u32 = 5;
pub const STRIKE_WINDOW: Duration = Duration::from_secs(600);
/// Addresses with strikes remembered at most.
pub const MAX_STRIKE_RECORDS: usize = 4096;

/// One active ban.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ban {
    pub reason: String,
    pub since: Instant,
    pub until: Instant,
    /// 1 for a first ban, 2 for the second within [`REMEMBER`], ...
    pub offences: u32,
}

#[derive(Clone, Copy, Debug)]
struct Past {
    offences: u32,
    last_len: Duration,
    /// Forgotten after this.
    forget_at: Instant,
}

#[derive(Clone, Copy, Debug)]
struct Strikes {
    count: u32,
    window_start: Instant,
}

#[derive(Debug, Default)]
pub struct BanList {
    active: HashMap<IpAddr, Ban>,
    past: HashMap<IpAddr, Past>,
    strikes: HashMap<IpAddr, Strikes>,
}

impl BanList {
    pub fn new() -> BanList {
        BanList::default()
    }

    pub fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        self.active.get(&ip).is_some_and(|b| now < b.until)
    }

    /// Bans `ip` from `now`; `None` when it is banned already, else the
    /// length of this ban.
    pub fn ban(&mut self, ip: IpAddr, reason: String, now: Instant) -> Option<Duration> {
        if self.is_banned(ip, now) {
            return None;
        }
        self.active.remove(&ip);
        self.strikes.remove(&ip);
        let (offences, len) = match self.past.get(&ip).filter(|p| now < p.forget_at) {
            Some(p) => (p.offences + 1, (p.last_len * 2).min(BAN_MAX)),
            None => (1, BAN_FIRST),
        };
        let until = now + len;
        if self.active.len() >= MAX_BANS {
            if let Some(soonest) = self
                .active
                .iter()
                .min_by_key(|(_, b)| b.until)
                .map(|(k, _)| *k)
            {
                self.active.remove(&soonest);
            }
        }
        self.active.insert(
            ip,
            Ban {
                reason,
                since: now,
                until,
                offences,
            },
        );
        if self.past.len() >= MAX_BANS && !self.past.contains_key(&ip) {
            self.forget_past(now);
            if self.past.len() >= MAX_BANS {
                if let Some(k) = self
                    .past
                    .iter()
                    .min_by_key(|(_, p)| p.forget_at)
                    .map(|(k, _)| *k)
                {
                    self.past.remove(&k);
                }
            }
        }
        self.past.insert(
            ip,
            Past {
                offences,
                last_len: len,
                forget_at: until + REMEMBER,
            },
        );
        Some(len)
    }

    /// Counts a protocol violation by `ip`; true when that makes
    /// [`STRIKES`] within [`STRIKE_WINDOW`] (the record is cleared: the
    /// caller bans).
    pub fn strike(&mut self, ip: IpAddr, now: Instant) -> bool {
        if !self.strikes.contains_key(&ip) && self.strikes.len() >= MAX_STRIKE_RECORDS {
            self.strikes
                .retain(|_, s| now.saturating_duration_since(s.window_start) < STRIKE_WINDOW);
            if self.strikes.len() >= MAX_STRIKE_RECORDS {
                if let Some(k) = self
                    .strikes
                    .iter()
                    .min_by_key(|(_, s)| s.window_start)
                    .map(|(k, _)| *k)
                {
                    self.strikes.remove(&k);
                }
            }
        }
        let s = self.strikes.entry(ip).or_insert(Strikes {
            count: 0,
            window_start: now,
        });
        if now.saturating_duration_since(s.window_start) >= STRIKE_WINDOW {
            *s = Strikes {
                count: 0,
                window_start: now,
            };
        }
        s.count += 1;
        if s.count >= STRIKES {
            self.strikes.remove(&ip);
            return true;
        }
        false
    }

    /// Drops ended bans, stale strikes and forgotten history.
    pub fn expire(&mut self, now: Instant) {
        self.active.retain(|_, b| now < b.until);
        self.strikes
            .retain(|_, s| now.saturating_duration_since(s.window_start) < STRIKE_WINDOW);
        self.forget_past(now);
    }

    fn forget_past(&mut self, now: Instant) {
        self.past.retain(|_, p| now < p.forget_at);
    }

    /// Active bans (after [`BanList::expire`]: the ones in force).
    pub fn len(&self) -> usize {
        self.active.len()
    }

    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// Bans in force at `now`, the most recent first.
    pub fn list(&self, now: Instant) -> Vec<(IpAddr, &Ban)> {
        let mut out: Vec<(IpAddr, &Ban)> = self
            .active
            .iter()
            .filter(|(_, b)| now < b.until)
            .map(|(ip, b)| (*ip, b))
            .collect();
        crate::sort::sort_by(&mut out, |a, b| {
            b.1.since.cmp(&a.1.since).then(a.0.cmp(&b.0))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    const MIN: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_ban_ends_after_an_hour() {
        let t0 = Instant::now();
        let mut b = BanList::new();
        assert_eq!(b.ban(ip(1), "bad data".into(), t0), Some(HOUR));
        assert!(b.is_banned(ip(1), t0));
        assert!(!b.is_banned(ip(2), t0));
        // Banned already: nothing changes.
        assert_eq!(b.ban(ip(1), "again".into(), t0 + MIN), None);
        assert_eq!(b.list(t0)[0].1.reason, "bad data");
        assert!(b.is_banned(ip(1), t0 + HOUR - Duration::from_secs(1)));
        assert!(!b.is_banned(ip(1), t0 + HOUR));
        b.expire(t0 + HOUR - Duration::from_secs(1));
        assert_eq!(b.len(), 1);
        b.expire(t0 + HOUR);
        assert_eq!(b.len(), 0);
        assert!(b.list(t0 + HOUR).is_empty());
    }

    #[test]
    fn repeat_offenders_double_up_to_a_day_and_are_forgotten() {
        let t0 = Instant::now();
        let mut b = BanList::new();
        let mut now = t0;
        let mut lens = Vec::new();
        for _ in 0..7 {
            let len = b.ban(ip(1), "x".into(), now).unwrap();
            lens.push(len.as_secs() / 3600);
            now += len;
            b.expire(now);
            assert!(!b.is_banned(ip(1), now));
        }
        assert_eq!(lens, [1, 2, 4, 8, 16, 24, 24]);
        assert_eq!(b.list(t0).len(), 0);
        // A day after the last ban ended, the history is gone.
        now += REMEMBER;
        b.expire(now);
        assert_eq!(b.ban(ip(1), "x".into(), now), Some(HOUR));
        assert_eq!(b.list(now)[0].1.offences, 1);
    }

    #[test]
    fn the_table_is_bounded_and_evicts_the_ban_closest_to_its_end() {
        let t0 = Instant::now();
        let mut b = BanList::new();
        // ip(0) is banned for the second time (2 h): it outlasts the others.
        b.ban(ip(0), "first".into(), t0);
        b.expire(t0 + HOUR);
        b.ban(ip(0), "second".into(), t0 + HOUR);
        for n in 1..MAX_BANS as u32 {
            b.ban(
                ip(n),
                "flood".into(),
                t0 + HOUR + Duration::from_millis(n.into()),
            );
        }
        assert_eq!(b.len(), MAX_BANS);
        let now = t0 + HOUR + MIN;
        b.ban(ip(999_999), "one more".into(), now);
        assert_eq!(b.len(), MAX_BANS);
        // ip(1) ended soonest: evicted.
        assert!(!b.is_banned(ip(1), now));
        assert!(b.is_banned(ip(2), now));
        assert!(b.is_banned(ip(0), now));
        assert!(b.is_banned(ip(999_999), now));
    }

    #[test]
    fn five_strikes_in_ten_minutes_ban() {
        let t0 = Instant::now();
        let mut b = BanList::new();
        // Four, then a pause longer than the window: the count starts again.
        for i in 0..4 {
            assert!(!b.strike(ip(1), t0 + i * MIN));
        }
        let later = t0 + 11 * MIN;
        for i in 0..4 {
            assert!(!b.strike(ip(1), later + i * MIN), "strike {i}");
        }
        assert!(b.strike(ip(1), later + 5 * MIN));
        // The record is cleared.
        assert!(!b.strike(ip(1), later + 5 * MIN));
        // Others are counted apart.
        assert!(!b.strike(ip(2), later));
    }

    #[test]
    fn strike_records_are_bounded() {
        let t0 = Instant::now();
        let mut b = BanList::new();
        for n in 0..(MAX_STRIKE_RECORDS as u32 + 100) {
            b.strike(ip(n), t0 + Duration::from_millis(n.into()));
        }
        assert!(b.strikes.len() <= MAX_STRIKE_RECORDS);
        // The newest are kept.
        assert!(b.strikes.contains_key(&ip(MAX_STRIKE_RECORDS as u32 + 99)));
        assert!(!b.strikes.contains_key(&ip(0)));
        b.expire(t0 + STRIKE_WINDOW + Duration::from_secs(10));
        assert!(b.strikes.is_empty());
    }
}
