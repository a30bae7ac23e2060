//! The memory budget (`memory_limit`) and the per-part caps derived from it.
//!
//! One number bounds what peerlet allocates in proportion to its work. It
//! is split once, at start, into caps that the engine enforces as it runs:
//!
//! | part | share | what it holds |
//! |---|---|---|
//! | downloads | 1/2, less what requests hold | blocks requested and not yet written and hashed, divided among the torrents that download |
//! | requests | lent by downloads, at most 1/2 | control API request bodies and the parse of a torrent being added (`control::server`, through a [`Budget`]) |
//! | uploads | 1/4 | blocks read from disk for peers plus bytes waiting in send buffers |
//! | read buffers | 1/8 | connections' receive buffers beyond their first [`BASE_READ_BUF`] bytes |
//! | peer lists | 1/16 | every torrent's and magnet's known addresses and the memory of forgotten ones, [`crate::net::peerlist::BYTES_PER_ENTRY`] each: [`MemoryCaps::peer_list_cap`] |
//! | the rest | 1/16 | per-connection state, tables and caches with fixed caps (see README) |
//!
//! Requests are rare and short (a torrent being added), so they borrow
//! from the downloads' share instead of keeping a part of their own idle:
//! the engine takes what a [`Budget`] holds off the downloads' share at its
//! next tick (within a second; blocks already requested still arrive), and
//! gives it back as the requests are answered.
//!
//! A cap never stops the smallest unit of work: one block, one frame, one
//! connection's first buffer always fit, so a tiny budget slows transfers
//! down instead of stalling them.

use crate::net::peerlist;
use std::sync::atomic::{AtomicU64, Ordering};

/// The budget when `memory_limit` is not set.
pub const DEFAULT_LIMIT: u64 = 8 << 20;
/// Smallest accepted budget.
pub const MIN_LIMIT: u64 = 64 * 1024;
/// A connection's receive buffer starts at this size; it grows for a frame
/// that does not fit and, within [`MemoryCaps::read_buffers`], for a fast
/// peer, and is released when the connection has been idle a while.
pub const BASE_READ_BUF: usize = 4 * 1024;
/// Largest send backlog of one peer: no more blocks are read for it while
/// this much waits in its send buffer.
pub const MAX_SEND_WATERMARK: usize = 512 * 1024;
/// Smallest send backlog of one peer (four blocks).
pub const MIN_SEND_WATERMARK: usize = 64 * 1024;
/// Smallest share of downloads one torrent gets (one block).
pub const MIN_TORRENT_IN_FLIGHT: u64 = 16 * 1024;

/// The caps one `memory_limit` derives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryCaps {
    /// The budget itself.
    pub limit: u64,
    /// Blocks in flight for downloads, all torrents together.
    pub downloads: u64,
    /// Blocks read for upload plus bytes in send buffers, all peers together.
    pub uploads: u64,
    /// One peer's send backlog before its next block is read.
    pub send_watermark: usize,
    /// Receive-buffer bytes beyond each connection's base size, together.
    pub read_buffers: u64,
    /// Most that control API requests may hold at once: their bodies and
    /// what adding a torrent allocates to parse it (the control thread
    /// reserves before it reads), lent by the downloads' share.
    pub requests: u64,
    /// The known-peer lists of all torrents and magnets together.
    pub peer_lists: u64,
}

impl MemoryCaps {
    pub fn new(limit: u64) -> MemoryCaps {
        let limit = limit.max(MIN_LIMIT);
        let uploads = limit / 4;
        MemoryCaps {
            limit,
            downloads: limit / 2,
            uploads,
            send_watermark: ((uploads / 4) as usize).clamp(MIN_SEND_WATERMARK, MAX_SEND_WATERMARK),
            read_buffers: limit / 8,
            requests: limit / 2,
            peer_lists: limit / 16,
        }
    }

    /// Addresses one torrent's peer list may hold when `lists` torrents and
    /// magnets share [`MemoryCaps::peer_lists`]: between
    /// [`peerlist::MIN_KNOWN`] (below it a torrent cannot find its peers,
    /// so many torrents on a tiny budget may go over) and
    /// [`peerlist::MAX_KNOWN`].
    pub fn peer_list_cap(&self, lists: usize) -> usize {
        let entries = self.peer_lists / peerlist::BYTES_PER_ENTRY / lists.max(1) as u64;
        (entries.min(peerlist::MAX_KNOWN as u64) as usize).max(peerlist::MIN_KNOWN)
    }

    /// One downloading torrent's share of [`MemoryCaps::downloads`] when
    /// `downloading` torrents download at once (never below one block).
    pub fn torrent_downloads(&self, downloading: usize, lent: u64) -> u64 {
        (self.downloads.saturating_sub(lent) / downloading.max(1) as u64).max(MIN_TORRENT_IN_FLIGHT)
    }

    /// Whether `more` upload bytes may be taken with `held` already held.
    /// Nothing held: always (one read must be able to proceed).
    pub fn upload_allows(&self, held: u64, more: u64) -> bool {
        held == 0 || held + more <= self.uploads
    }
}

/// Bytes control API requests may hold at once ([`MemoryCaps::requests`]),
/// shared by the control thread (which reserves) and the engine (which
/// lends it from the downloads' share).
#[derive(Debug)]
pub struct Budget {
    cap: u64,
    held: AtomicU64,
}

/// Bytes taken from a [`Budget`], given back when dropped.
pub struct Reservation<'a> {
    budget: &'a Budget,
    bytes: u64,
}

/// Why a reservation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// More than the whole budget: it can never be granted.
    TooLarge { cap: u64 },
    /// Other requests hold too much now: try again shortly.
    Busy,
}

impl Budget {
    pub fn new(cap: u64) -> Budget {
        Budget {
            cap,
            held: AtomicU64::new(0),
        }
    }

    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Bytes reserved now.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::SeqCst)
    }

    /// An empty reservation, to grow with [`Reservation::grow`].
    pub fn none(&self) -> Reservation<'_> {
        Reservation {
            budget: self,
            bytes: 0,
        }
    }

    fn take(&self, bytes: u64) -> Result<(), Refused> {
        if bytes > self.cap {
            return Err(Refused::TooLarge { cap: self.cap });
        }
        self.held
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |held| {
                held.checked_add(bytes).filter(|&h| h <= self.cap)
            })
            .map(|_| ())
            .map_err(|_| Refused::Busy)
    }
}

impl Reservation<'_> {
    /// Takes `bytes` more; on refusal, what is held stays held.
    pub fn grow(&mut self, bytes: u64) -> Result<(), Refused> {
        let total = self.bytes.saturating_add(bytes);
        if total > self.budget.cap {
            return Err(Refused::TooLarge {
                cap: self.budget.cap,
            });
        }
        self.budget.take(bytes)?;
        self.bytes = total;
        Ok(())
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_of_the_default_budget() {
        let c = MemoryCaps::new(8 << 20);
        assert_eq!(c.downloads, 4 << 20);
        assert_eq!(c.uploads, 2 << 20);
        assert_eq!(c.send_watermark, 512 * 1024);
        assert_eq!(c.read_buffers, 1 << 20);
        assert_eq!(c.requests, 4 << 20);
        // Requests borrow from downloads: together they never take more
        // than the downloads' share, and the parts never add up to more
        // than the budget (an eighth is left for the fixed-size state).
        assert!(c.requests <= c.downloads);
        assert_eq!(c.peer_lists, 512 << 10);
        assert_eq!(
            c.downloads + c.uploads + c.read_buffers + c.peer_lists,
            c.limit - c.limit / 16
        );
    }

    #[test]
    fn peer_lists_shrink_with_the_budget_and_the_torrents() {
        // The default budget: one torrent keeps 2,048 addresses.
        let c = MemoryCaps::new(DEFAULT_LIMIT);
        assert_eq!(c.peer_list_cap(1), 2048);
        assert_eq!(c.peer_list_cap(2), 1024);
        assert_eq!(c.peer_list_cap(10), 204);
        // Many torrents never take more than the share, down to the floor.
        for n in [1, 3, 7, 20] {
            let cap = c.peer_list_cap(n) as u64;
            assert!(cap * n as u64 * peerlist::BYTES_PER_ENTRY <= c.peer_lists);
        }
        assert_eq!(c.peer_list_cap(1000), peerlist::MIN_KNOWN);
        assert_eq!(
            MemoryCaps::new(MIN_LIMIT).peer_list_cap(1),
            peerlist::MIN_KNOWN
        );
        assert_eq!(MemoryCaps::new(64 << 20).peer_list_cap(8), 2048);
    }

    #[test]
    fn small_budgets_keep_the_smallest_units() {
        let c = MemoryCaps::new(1);
        assert_eq!(c.limit, MIN_LIMIT);
        assert_eq!(c.send_watermark, MIN_SEND_WATERMARK);
        assert_eq!(MemoryCaps::new(1 << 20).send_watermark, 64 * 1024);
        assert_eq!(MemoryCaps::new(4 << 20).send_watermark, 256 * 1024);
        assert_eq!(MemoryCaps::new(1 << 30).send_watermark, MAX_SEND_WATERMARK);
    }

    #[test]
    fn downloads_are_divided_among_downloading_torrents() {
        let c = MemoryCaps::new(16 << 20);
        assert_eq!(c.torrent_downloads(0, 0), 8 << 20);
        assert_eq!(c.torrent_downloads(1, 0), 8 << 20);
        assert_eq!(c.torrent_downloads(4, 0), 2 << 20);
        assert_eq!(c.torrent_downloads(100_000, 0), MIN_TORRENT_IN_FLIGHT);
        // What requests hold comes off the downloads' share.
        assert_eq!(c.torrent_downloads(1, 3 << 20), 5 << 20);
        assert_eq!(c.torrent_downloads(2, 3 << 20), (5 << 20) / 2);
        assert_eq!(c.torrent_downloads(1, c.requests), MIN_TORRENT_IN_FLIGHT);
        assert_eq!(c.torrent_downloads(1, u64::MAX), MIN_TORRENT_IN_FLIGHT);
    }

    #[test]
    fn uploads_stop_at_the_cap_but_one_read_always_proceeds() {
        let c = MemoryCaps::new(1 << 20); // uploads: 256 KiB
        assert!(c.upload_allows(0, 4 << 20));
        assert!(c.upload_allows(200 * 1024, 56 * 1024));
        assert!(!c.upload_allows(200 * 1024, 57 * 1024));
    }

    #[test]
    fn the_budget_is_shared_and_given_back() {
        let b = Budget::new(1000);
        let mut r1 = b.none();
        r1.grow(600).unwrap();
        let mut r2 = b.none();
        assert_eq!(r2.grow(500), Err(Refused::Busy));
        assert_eq!(r2.grow(1001), Err(Refused::TooLarge { cap: 1000 }));
        r2.grow(400).unwrap();
        assert_eq!(r2.grow(600), Err(Refused::Busy));
        assert_eq!(r2.grow(601), Err(Refused::TooLarge { cap: 1000 }));
        assert_eq!(b.held(), 1000);
        drop(r1);
        assert_eq!(b.held(), 400);
        drop(r2);
        assert_eq!(b.held(), 0);
    }
}
