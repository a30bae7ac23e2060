//! The memory budget (`memory_limit`) and the per-part caps derived from it.
//!
//! One number bounds what peerlet allocates in proportion to its work. It
//! is split once, at start, into caps that the engine enforces as it runs:
//!
//! | part | share | what it holds |
//! |---|---|---|
//! | downloads | 1/4 | blocks requested and not yet written and hashed, divided among the torrents that download |
//! | uploads | 1/4 | blocks read from disk for peers plus bytes waiting in send buffers |
//! | requests | 1/4 | control API request bodies and the parse of a torrent being added (`control::server`) |
//! | read buffers | 1/8 | connections' receive buffers beyond their first [`BASE_READ_BUF`] bytes |
//! | the rest | 1/8 | per-connection state, tables and caches with fixed caps (see README) |
//!
//! A cap never stops the smallest unit of work: one block, one frame, one
//! connection's first buffer always fit, so a tiny budget slows transfers
//! down instead of stalling them.

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
    /// Control API requests: their bodies and what adding a torrent
    /// allocates to parse it, all requests together (the control thread
    /// reserves before it reads; the engine never uses this share).
    pub requests: u64,
}

impl MemoryCaps {
    pub fn new(limit: u64) -> MemoryCaps {
        let limit = limit.max(MIN_LIMIT);
        let uploads = limit / 4;
        MemoryCaps {
            limit,
            downloads: limit / 4,
            uploads,
            send_watermark: ((uploads / 4) as usize).clamp(MIN_SEND_WATERMARK, MAX_SEND_WATERMARK),
            read_buffers: limit / 8,
            requests: limit / 4,
        }
    }

    /// One downloading torrent's share of [`MemoryCaps::downloads`] when
    /// `downloading` torrents download at once (never below one block).
    pub fn torrent_downloads(&self, downloading: usize) -> u64 {
        (self.downloads / downloading.max(1) as u64).max(MIN_TORRENT_IN_FLIGHT)
    }

    /// Whether `more` upload bytes may be taken with `held` already held.
    /// Nothing held: always (one read must be able to proceed).
    pub fn upload_allows(&self, held: u64, more: u64) -> bool {
        held == 0 || held + more <= self.uploads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_of_the_default_budget() {
        let c = MemoryCaps::new(8 << 20);
        assert_eq!(c.downloads, 2 << 20);
        assert_eq!(c.uploads, 2 << 20);
        assert_eq!(c.send_watermark, 512 * 1024);
        assert_eq!(c.read_buffers, 1 << 20);
        assert_eq!(c.requests, 2 << 20);
        // The parts never add up to more than the budget (an eighth is left
        // for the fixed-size state).
        assert_eq!(
            c.downloads + c.uploads + c.read_buffers + c.requests,
            c.limit - c.limit / 8
        );
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
        assert_eq!(c.torrent_downloads(0), 4 << 20);
        assert_eq!(c.torrent_downloads(1), 4 << 20);
        assert_eq!(c.torrent_downloads(4), 1 << 20);
        assert_eq!(c.torrent_downloads(100_000), MIN_TORRENT_IN_FLIGHT);
    }

    #[test]
    fn uploads_stop_at_the_cap_but_one_read_always_proceeds() {
        let c = MemoryCaps::new(1 << 20); // uploads: 256 KiB
        assert!(c.upload_allows(0, 4 << 20));
        assert!(c.upload_allows(200 * 1024, 56 * 1024));
        assert!(!c.upload_allows(200 * 1024, 57 * 1024));
    }
}
