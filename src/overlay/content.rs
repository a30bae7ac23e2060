//! The content routing table: info-hash → name, size and holders, filled
//! from hits and announcements. Bounded in entries and in holders per entry;
//! a holder expires when it has not been confirmed for [`HOLDER_TTL`].
//! Also the word matching used to answer searches by name.

use super::msg::{Holder, Item, MAX_HOLDERS};
use super::words::matches;
#[cfg(test)]
use super::words::words;
use crate::metainfo::InfoHash;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A holder not heard of again for this long is forgotten.
pub const HOLDER_TTL: Duration = Duration::from_secs(30 * 60);

#[derive(Clone, Debug)]
struct Entry {
    item: Item,
    holders: Vec<(Holder, Instant)>,
    updated: Instant,
}

/// Info-hash → holders, bounded: in entries, in holders per entry, and in
/// holder records per IP address (one eighth of the entries, at least 16),
/// so that one address can neither flush the table nor fill it.
#[derive(Debug)]
pub struct ContentTable {
    entries: HashMap<InfoHash, Entry>,
    capacity: usize,
    /// Holder records per IP address.
    per_ip: HashMap<IpAddr, usize>,
}

impl ContentTable {
    pub fn new(capacity: usize) -> ContentTable {
        ContentTable {
            entries: HashMap::new(),
            capacity: capacity.max(1),
            per_ip: HashMap::new(),
        }
    }

    /// Most holder records one IP address may have.
    pub fn per_ip_limit(&self) -> usize {
        (self.capacity / 8).max(16)
    }

    fn forget(per_ip: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
        if let Some(n) = per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&ip);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Holders known in total.
    pub fn holder_count(&self) -> usize {
        self.entries.values().map(|e| e.holders.len()).sum()
    }

    /// Records that `holder` holds `item` (as of `now`). An unnamed item
    /// (a hash-only report) does not erase a known name. One record per IP
    /// address and info-hash (a newer one replaces its ports).
    pub fn insert(&mut self, item: &Item, holder: Holder, now: Instant) {
        if let Some(e) = self.entries.get_mut(&item.info_hash) {
            if let Some(h) = e.holders.iter_mut().find(|(h, _)| h.ip == holder.ip) {
                *h = (holder, now);
                e.updated = now;
                return;
            }
        }
        if self.per_ip.get(&holder.ip).copied().unwrap_or(0) >= self.per_ip_limit() {
            return;
        }
        if !self.entries.contains_key(&item.info_hash) && self.entries.len() >= self.capacity {
            // Full: forget the entry updated longest ago.
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.updated)
                .map(|(k, _)| *k)
            {
                if let Some(gone) = self.entries.remove(&oldest) {
                    for (h, _) in gone.holders {
                        Self::forget(&mut self.per_ip, h.ip);
                    }
                }
            }
        }
        let e = self.entries.entry(item.info_hash).or_insert_with(|| Entry {
            item: item.clone(),
            holders: Vec::new(),
            updated: now,
        });
        if e.item.name.is_empty() && !item.name.is_empty() {
            e.item.name = item.name.clone();
            e.item.size = item.size;
        }
        e.updated = now;
        if e.holders.len() >= MAX_HOLDERS {
            // Replace the holder confirmed longest ago.
            if let Some(i) = (0..e.holders.len()).min_by_key(|&i| e.holders[i].1) {
                let (gone, _) = e.holders.swap_remove(i);
                Self::forget(&mut self.per_ip, gone.ip);
            }
        }
        e.holders.push((holder, now));
        *self.per_ip.entry(holder.ip).or_insert(0) += 1;
    }

    /// The item and its live holders, freshest first.
    pub fn get(&self, ih: &InfoHash, now: Instant) -> Option<(Item, Vec<Holder>)> {
        let e = self.entries.get(ih)?;
        let mut hs: Vec<(Holder, Instant)> = e
            .holders
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(*t) < HOLDER_TTL)
            .copied()
            .collect();
        if hs.is_empty() {
            return None;
        }
        crate::sort::sort_by_key(&mut hs, |(_, t)| std::cmp::Reverse(*t));
        Some((e.item.clone(), hs.into_iter().map(|(h, _)| h).collect()))
    }

    /// Items whose names match all the words, with their live holders (at most `max`).
    pub fn search_words(
        &self,
        query: &[String],
        now: Instant,
        max: usize,
    ) -> Vec<(Item, Vec<Holder>)> {
        let mut out = Vec::new();
        for (ih, e) in &self.entries {
            if out.len() >= max {
                break;
            }
            if !e.item.name.is_empty() && matches(query, &e.item.name) {
                if let Some(found) = self.get(ih, now) {
                    out.push(found);
                }
            }
        }
        out
    }

    /// Drops expired holders and entries left without any.
    pub fn expire(&mut self, now: Instant) {
        let per_ip = &mut self.per_ip;
        self.entries.retain(|_, e| {
            e.holders.retain(|(h, t)| {
                let keep = now.saturating_duration_since(*t) < HOLDER_TTL;
                if !keep {
                    Self::forget(per_ip, h.ip);
                }
                keep
            });
            !e.holders.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: u8, name: &str) -> Item {
        Item {
            info_hash: InfoHash([n; 20]),
            name: name.into(),
            size: 100,
        }
    }

    fn holder(n: u8) -> Holder {
        Holder {
            ip: [10, 0, 0, n].into(),
            tcp_port: 6881,
            udp_port: 6881,
        }
    }

    #[test]
    fn one_address_can_neither_crowd_out_holders_nor_flush_the_table() {
        let t0 = Instant::now();
        let mut c = ContentTable::new(256);
        c.insert(&item(1, "real"), holder(1), t0);
        // The same IP with other ports replaces its own record only.
        for port in 0..40u16 {
            let mut h = holder(2);
            h.tcp_port = 1000 + port;
            c.insert(&item(1, "real"), h, t0);
        }
        let (_, hs) = c.get(&InfoHash([1; 20]), t0).unwrap();
        assert_eq!(hs.len(), 2);
        assert!(hs.contains(&holder(1)));
        // Many info-hashes from one IP: capped at an eighth of the table.
        for n in 0..255u8 {
            c.insert(&item(n.wrapping_add(2), "junk"), holder(3), t0);
        }
        assert_eq!(c.per_ip[&holder(3).ip], c.per_ip_limit());
        assert!(
            c.get(&InfoHash([1; 20]), t0).is_some(),
            "the real entry stays"
        );
        c.expire(t0 + HOLDER_TTL);
        assert!(c.is_empty());
        assert!(c.per_ip.is_empty(), "counts follow expiry");
    }

    #[test]
    fn word_matching() {
        let q = words("UBU 24");
        assert_eq!(q, ["ubu", "24"]);
        assert!(matches(&q, "Ubuntu-24.04-desktop.iso"));
        assert!(!matches(&q, "Ubuntu-22.04-desktop.iso"));
        assert!(!matches(&words("ntu"), "Ubuntu"));
        assert!(!matches(&[], "anything"));
        assert!(matches(&words("größe"), "Datei Größe.txt"));
    }

    #[test]
    fn bounded_and_expiring() {
        let t0 = Instant::now();
        let mut c = ContentTable::new(3);
        for n in 0..10u8 {
            c.insert(&item(n, "x"), holder(1), t0 + Duration::from_secs(n.into()));
        }
        assert_eq!(c.len(), 3);
        // The newest survive.
        assert!(c.get(&InfoHash([9; 20]), t0).is_some());
        assert!(c.get(&InfoHash([0; 20]), t0).is_none());
        // Holders per entry are capped.
        for n in 0..40u8 {
            c.insert(&item(9, "x"), holder(n), t0 + Duration::from_secs(20));
        }
        let (_, hs) = c
            .get(&InfoHash([9; 20]), t0 + Duration::from_secs(20))
            .unwrap();
        assert_eq!(hs.len(), MAX_HOLDERS);
        // Expiry.
        let later = t0 + HOLDER_TTL + Duration::from_secs(30);
        assert!(c.get(&InfoHash([9; 20]), later).is_none());
        c.expire(later);
        assert!(c.is_empty());
    }

    #[test]
    fn unnamed_reports_keep_the_name() {
        let t0 = Instant::now();
        let mut c = ContentTable::new(10);
        c.insert(&item(1, "movie.mkv"), holder(1), t0);
        c.insert(&item(1, ""), holder(2), t0);
        let found = c.search_words(&words("movie"), t0, 10);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1.len(), 2);
    }
}
