//! One torrent's durability bookkeeping, sans I/O: which verified pieces
//! wait for a sync, which one sync covers, which are durable, whether the
//! resume record and the journal need writing.
//!
//! The rules (the headline guarantee of ARCHITECTURE.md):
//!
//! - A piece enters [`Checkpoint::durable`], and so the resume record,
//!   only through [`Checkpoint::sync_succeeded`]: after a `Sync` job made
//!   the data of every piece it covered durable. A record written at any
//!   moment says no more than that.
//! - The journal only hints which pieces to re-hash after a crash: every
//!   verified piece is handed out for appending once, at once, and again
//!   when the append failed ([`Checkpoint::journal_failed`]).
//! - A sync is due after `every_bytes` of verified pieces, `every` after
//!   the first of them, or when forced (completion, shutdown); one sync at
//!   a time. Pieces verified while it runs wait for the next one.
//! - A failed sync makes suspect every piece verified before it failed
//!   (the pieces it covered and those waiting): the kernel reports a lost
//!   writeback once, so a later sync may succeed with their data gone.
//!   They are never recorded on the strength of a later sync: each is
//!   handed out once for re-verification ([`Checkpoint::take_suspect`]:
//!   read back, hashed and written again, which dirties its pages so the
//!   next sync writes them for real) and waits for a sync again only when
//!   it passed ([`Checkpoint::reverified`]); one that fails is dropped (the
//!   engine downloads it again). The next sync is due `every` after the
//!   failure.
//! - Nothing is asked for while nothing changed: an idle torrent costs no
//!   write.
//!
//! The engine drives it: [`Checkpoint::poll`] on every tick says what to
//! submit; the results of the jobs come back through `sync_*` and
//! `record_finished`. Time is passed in.

use crate::metainfo::Lengths;
use crate::swarm::Bitfield;
use std::time::{Duration, Instant};

/// What [`Checkpoint::poll`] asks the engine to do now.
#[derive(Debug, PartialEq, Eq)]
pub enum Due<'a> {
    Nothing,
    /// Submit a `Sync` job; it covers these pieces. Its result goes to
    /// [`Checkpoint::sync_succeeded`] or [`Checkpoint::sync_failed`].
    Sync(&'a [u32]),
    /// Write the resume record (when the torrent runs): start it with
    /// [`Checkpoint::start_record`].
    Record,
}

/// One torrent's checkpoint state (see the module documentation).
pub struct Checkpoint {
    lengths: Lengths,
    /// A sync is due after this many bytes of verified pieces...
    every_bytes: u64,
    /// ...or this long after the first of them.
    every: Duration,
    /// Pieces whose data a sync made durable: what the record says.
    durable: Bitfield,
    /// Verified pieces waiting for the next sync.
    unsynced: Vec<u32>,
    unsynced_bytes: u64,
    /// When the oldest of `unsynced` joined them.
    first_unsynced: Option<Instant>,
    /// The pieces the sync in flight covers.
    syncing: Option<Vec<u32>>,
    /// Pieces a failed sync made suspect, not yet handed out for
    /// re-verification.
    suspect: Vec<u32>,
    /// Re-verifications handed out and not answered yet.
    reverifying: usize,
    /// The record on disk is behind (durable pieces or other fields changed).
    record_dirty: bool,
    record_in_flight: bool,
    /// Verified pieces not yet handed out for the journal.
    journal: Vec<u32>,
}

impl Checkpoint {
    /// Nothing durable yet; a sync every `every_bytes` or `every`.
    pub fn new(lengths: Lengths, every_bytes: u64, every: Duration) -> Checkpoint {
        Checkpoint {
            lengths,
            every_bytes,
            every,
            durable: Bitfield::new(lengths.n_pieces()),
            unsynced: Vec::new(),
            unsynced_bytes: 0,
            first_unsynced: None,
            syncing: None,
            suspect: Vec::new(),
            reverifying: 0,
            record_dirty: false,
            record_in_flight: false,
            journal: Vec::new(),
        }
    }

    /// The torrent starts with `durable` (the pieces its resume record
    /// lists and the probe trusted); `record_matches`: the record on disk
    /// already says what is true, so it is not written again. Pieces
    /// queued before stay queued.
    pub fn begin(&mut self, durable: Bitfield, record_matches: bool) {
        self.durable = durable;
        self.record_dirty = !record_matches;
    }

    /// The pieces a record written now may list.
    pub fn durable(&self) -> &Bitfield {
        &self.durable
    }

    /// Piece `p` was written and verified (or found on disk, verified and
    /// not recorded): it goes into the journal at once and waits for a sync.
    pub fn verified(&mut self, p: u32, now: Instant) {
        self.queue_for_sync(p, now);
        self.journal.push(p);
    }

    fn queue_for_sync(&mut self, p: u32, now: Instant) {
        if let Some(piece) = self.lengths.piece(p) {
            self.unsynced_bytes += u64::from(self.lengths.piece_size(piece));
        }
        self.unsynced.push(p);
        self.first_unsynced.get_or_insert(now);
    }

    /// What to do now; `force` makes a sync of any pending piece due (the
    /// download completed, or the daemon stops). A `Due::Sync` has been
    /// started: its pieces are in flight until its result comes back.
    pub fn poll(&mut self, now: Instant, force: bool) -> Due<'_> {
        if self.syncing.is_some() {
            return Due::Nothing;
        }
        if self.unsynced.is_empty() {
            return if self.record_dirty && !self.record_in_flight {
                Due::Record
            } else {
                Due::Nothing
            };
        }
        let due = force
            || self.unsynced_bytes >= self.every_bytes
            || self
                .first_unsynced
                .is_some_and(|f| now.duration_since(f) >= self.every);
        if !due {
            return Due::Nothing;
        }
        self.unsynced_bytes = 0;
        self.first_unsynced = None;
        Due::Sync(self.syncing.insert(std::mem::take(&mut self.unsynced)))
    }

    /// When [`Checkpoint::poll`] will ask for something without new input:
    /// `now` when it would at once, `None` while a sync runs or nothing
    /// is pending.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        if self.syncing.is_some() {
            return None;
        }
        match self.first_unsynced {
            Some(_) if self.unsynced_bytes >= self.every_bytes => Some(now),
            Some(first) => Some((first + self.every).max(now)),
            None if self.record_dirty && !self.record_in_flight => Some(now),
            None => None,
        }
    }

    /// The sync in flight made its pieces durable: they go into the
    /// record, which is now behind.
    pub fn sync_succeeded(&mut self) {
        for p in self.syncing.take().unwrap_or_default() {
            self.durable.set(p);
        }
        self.record_dirty = true;
    }

    /// The sync in flight failed: its pieces, and every piece waiting for
    /// a sync, are suspect (their data may be gone although a later sync
    /// succeeds); they wait for [`Checkpoint::take_suspect`].
    pub fn sync_failed(&mut self) {
        let mut suspect = self.syncing.take().unwrap_or_default();
        suspect.append(&mut self.unsynced);
        self.unsynced_bytes = 0;
        self.first_unsynced = None;
        self.suspect.append(&mut suspect);
    }

    /// Suspect pieces to re-verify now (each handed out once); report each
    /// with [`Checkpoint::reverified`].
    pub fn take_suspect(&mut self) -> Option<Vec<u32>> {
        if self.suspect.is_empty() {
            return None;
        }
        self.reverifying += self.suspect.len();
        Some(std::mem::take(&mut self.suspect))
    }

    /// A suspect piece was read back: `ok` when it passed its hash and was
    /// written again, and so waits for the next sync (due `every` after
    /// `now` at the latest); otherwise it is no longer verified.
    pub fn reverified(&mut self, p: u32, ok: bool, now: Instant) {
        self.reverifying = self.reverifying.saturating_sub(1);
        if ok {
            self.queue_for_sync(p, now);
        }
    }

    /// A sync is in flight.
    pub fn syncing(&self) -> bool {
        self.syncing.is_some()
    }

    /// Something the record holds besides the pieces changed (pause,
    /// rate limits, manual peers): write it again.
    pub fn record_changed(&mut self) {
        self.record_dirty = true;
    }

    /// The record is behind what is true.
    pub fn record_dirty(&self) -> bool {
        self.record_dirty
    }

    /// Starts writing the record, when it is behind and no write of it
    /// runs: true when the caller must now write a record of
    /// [`Checkpoint::durable`] and report with `record_finished`.
    pub fn start_record(&mut self) -> bool {
        if self.record_in_flight || !self.record_dirty {
            return false;
        }
        self.record_dirty = false;
        self.record_in_flight = true;
        true
    }

    /// The record write ended; a failed one is due again.
    pub fn record_finished(&mut self, ok: bool) {
        self.record_in_flight = false;
        if !ok {
            self.record_dirty = true;
        }
    }

    /// A sync, a record write or a re-verification is in flight.
    pub fn in_flight(&self) -> bool {
        self.syncing.is_some() || self.record_in_flight || self.reverifying > 0
    }

    /// Verified pieces to append to the journal now (each handed out once).
    pub fn take_journal(&mut self) -> Option<Vec<u32>> {
        (!self.journal.is_empty()).then(|| std::mem::take(&mut self.journal))
    }

    /// An append of `pieces` failed: they are handed out again.
    pub fn journal_failed(&mut self, mut pieces: Vec<u32>) {
        pieces.append(&mut self.journal);
        self.journal = pieces;
    }

    /// Pieces wait for the journal.
    pub fn journal_pending(&self) -> bool {
        !self.journal.is_empty()
    }
}

#[cfg(test)]
mod tests;
