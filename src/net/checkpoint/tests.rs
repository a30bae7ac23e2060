//! Fake time: an `Instant` base plus durations. The "record" is what the
//! engine would write at that moment: `durable()`.

use super::*;

/// 10 pieces of 1 MiB; a sync every 4 MiB or 30 s.
fn checkpoint() -> (Checkpoint, Instant) {
    let lengths = Lengths::new(10 << 20, 1 << 20).unwrap();
    let mut c = Checkpoint::new(lengths, 4 << 20, Duration::from_secs(30));
    // A fresh start: the record matches what the probe found.
    c.begin(Bitfield::new(10), true);
    (c, Instant::now())
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn recorded(c: &Checkpoint) -> Vec<u32> {
    c.durable().ones().collect()
}

/// Writes the record as the engine does (when one is due), and returns its pieces.
fn write_record(c: &mut Checkpoint, ok: bool) -> Option<Vec<u32>> {
    if !c.start_record() {
        return None;
    }
    let pieces = recorded(c);
    c.record_finished(ok);
    Some(pieces)
}

#[test]
fn sync_success_records_after_the_sync() {
    let (mut c, t0) = checkpoint();
    c.verified(3, t0);
    c.verified(5, t0 + secs(1));
    assert_eq!(c.take_journal(), Some(vec![3, 5]), "journaled at once");
    assert_eq!(c.take_journal(), None);
    // Below 4 MiB and before 30 s: nothing yet.
    assert_eq!(c.poll(t0 + secs(29), false), Due::Nothing);
    assert_eq!(c.next_deadline(t0 + secs(29)), Some(t0 + secs(30)));
    assert_eq!(c.poll(t0 + secs(30), false), Due::Sync(&[3, 5]));
    assert!(c.syncing());
    assert_eq!(
        c.poll(t0 + secs(31), false),
        Due::Nothing,
        "one sync at a time"
    );
    assert_eq!(c.next_deadline(t0 + secs(31)), None);
    assert!(recorded(&c).is_empty(), "not durable before the sync ends");
    c.sync_succeeded();
    assert_eq!(recorded(&c), vec![3, 5]);
    assert!(c.record_dirty());
    assert_eq!(c.poll(t0 + secs(32), false), Due::Record);
    assert_eq!(write_record(&mut c, true), Some(vec![3, 5]));
    assert_eq!(c.poll(t0 + secs(33), false), Due::Nothing);
    assert_eq!(c.next_deadline(t0 + secs(33)), None);
    assert!(!c.in_flight());
}

#[test]
fn bytes_or_force_make_a_sync_due_at_once() {
    let (mut c, t0) = checkpoint();
    for p in 0..3 {
        c.verified(p, t0);
    }
    assert_eq!(c.poll(t0, false), Due::Nothing, "3 MiB");
    c.verified(3, t0);
    assert_eq!(c.next_deadline(t0 + secs(1)), Some(t0 + secs(1)));
    assert_eq!(c.poll(t0 + secs(1), false), Due::Sync(&[0, 1, 2, 3]));
    c.sync_succeeded();
    c.verified(9, t0 + secs(2));
    assert_eq!(c.poll(t0 + secs(2), false), Due::Nothing);
    assert_eq!(c.poll(t0 + secs(2), true), Due::Sync(&[9]), "completion");
}

#[test]
fn a_failed_sync_makes_its_pieces_suspect_until_read_back() {
    let (mut c, t0) = checkpoint();
    c.verified(1, t0);
    c.verified(2, t0);
    assert_eq!(c.poll(t0, true), Due::Sync(&[1, 2]));
    // fdatasync fails at t0 + 5 s.
    let failed_at = t0 + secs(5);
    c.verified(3, t0 + secs(4));
    c.sync_failed();
    assert!(!c.syncing());
    assert!(recorded(&c).is_empty(), "never recorded after a failure");
    // A record written meanwhile (a pause, say) still lists nothing.
    c.record_changed();
    assert_eq!(write_record(&mut c, true), Some(vec![]));
    // Nothing is synced before the suspect pieces were read back: the
    // ones covered and the one waiting (its writeback may have failed too).
    assert_eq!(c.poll(failed_at + secs(60), false), Due::Nothing);
    assert_eq!(c.next_deadline(failed_at + secs(60)), None);
    assert_eq!(c.take_suspect(), Some(vec![1, 2, 3]));
    assert_eq!(c.take_suspect(), None, "handed out once");
    assert!(c.in_flight(), "a shutdown waits for re-verification");
    // Piece 2 no longer passes its hash: it is dropped, never recorded.
    c.reverified(1, true, failed_at);
    c.reverified(2, false, failed_at);
    c.reverified(3, true, failed_at);
    assert!(!c.in_flight());
    // Due again checkpoint_interval after the failure, with no new piece.
    assert_eq!(c.poll(failed_at + secs(29), false), Due::Nothing);
    assert_eq!(c.next_deadline(failed_at), Some(failed_at + secs(30)));
    assert_eq!(c.poll(failed_at + secs(30), false), Due::Sync(&[1, 3]));
    // It fails again: suspect again, still not recorded.
    c.sync_failed();
    assert!(recorded(&c).is_empty());
    assert_eq!(c.poll(failed_at + secs(90), false), Due::Nothing);
    assert_eq!(c.take_suspect(), Some(vec![1, 3]));
    c.reverified(1, true, failed_at + secs(31));
    c.reverified(3, true, failed_at + secs(31));
    assert_eq!(c.poll(failed_at + secs(61), false), Due::Sync(&[1, 3]));
    c.sync_succeeded();
    assert_eq!(recorded(&c), vec![1, 3]);
    assert_eq!(write_record(&mut c, true), Some(vec![1, 3]));
    // The journal had them once, at verification; failures add nothing.
    assert_eq!(c.take_journal(), Some(vec![1, 2, 3]));
    assert_eq!(c.take_journal(), None);
}

/// A later sync succeeding says nothing of the pieces an earlier failed
/// sync covered (the kernel reports a lost writeback once): they are
/// recorded only after passing re-verification and a sync after it.
#[test]
fn a_later_sync_never_records_what_a_failed_one_covered() {
    let (mut c, t0) = checkpoint();
    c.verified(6, t0);
    assert_eq!(c.poll(t0, true), Due::Sync(&[6]));
    c.sync_failed();
    // A new piece, and a sync that succeeds before 6 was read back.
    c.verified(7, t0 + secs(1));
    assert_eq!(c.poll(t0 + secs(1), true), Due::Sync(&[7]));
    c.sync_succeeded();
    assert_eq!(recorded(&c), vec![7], "6 waits for its re-verification");
    assert_eq!(c.take_suspect(), Some(vec![6]));
    c.reverified(6, true, t0 + secs(2));
    assert_eq!(recorded(&c), vec![7], "read back, not yet synced again");
    assert_eq!(c.poll(t0 + secs(2), true), Due::Sync(&[6]));
    c.sync_succeeded();
    assert_eq!(recorded(&c), vec![6, 7]);
}

#[test]
fn failed_record_write_is_due_again() {
    let (mut c, t0) = checkpoint();
    c.verified(4, t0);
    assert_eq!(c.poll(t0, true), Due::Sync(&[4]));
    c.sync_succeeded();
    assert_eq!(c.poll(t0, false), Due::Record);
    assert!(c.start_record());
    assert_eq!(
        c.poll(t0, false),
        Due::Nothing,
        "one record write at a time"
    );
    assert!(!c.start_record());
    c.record_finished(false);
    assert_eq!(c.poll(t0 + secs(1), false), Due::Record);
    assert_eq!(write_record(&mut c, true), Some(vec![4]));
    assert_eq!(c.poll(t0 + secs(2), false), Due::Nothing);
}

#[test]
fn kill_between_write_and_sync_records_nothing() {
    let (mut c, t0) = checkpoint();
    c.verified(7, t0);
    assert_eq!(
        c.take_journal(),
        Some(vec![7]),
        "only a hint for the next start"
    );
    assert_eq!(c.poll(t0 + secs(30), false), Due::Sync(&[7]));
    // Anything that writes the record before the sync's result (a
    // command, the shutdown) writes one without piece 7.
    c.record_changed();
    assert_eq!(write_record(&mut c, true), Some(vec![]));
    // The process dies here: the sync never reports. What was on disk is
    // the record above.
    drop(c);
}

#[test]
fn piece_verified_during_a_sync_waits_for_the_next_one() {
    let (mut c, t0) = checkpoint();
    c.verified(0, t0);
    assert_eq!(c.poll(t0, true), Due::Sync(&[0]));
    c.verified(1, t0 + secs(10));
    assert_eq!(c.poll(t0 + secs(40), true), Due::Nothing, "sync in flight");
    c.sync_succeeded();
    assert_eq!(recorded(&c), vec![0], "1 was not covered by that sync");
    // Pieces wait: the sync for piece 1 comes before the record.
    assert_eq!(c.poll(t0 + secs(39), false), Due::Nothing);
    assert_eq!(c.poll(t0 + secs(40), false), Due::Sync(&[1]));
    c.sync_succeeded();
    assert_eq!(c.poll(t0 + secs(41), false), Due::Record);
    assert_eq!(write_record(&mut c, true), Some(vec![0, 1]));
}

#[test]
fn idle_asks_for_nothing() {
    let (mut c, t0) = checkpoint();
    let idle = |c: &mut Checkpoint, from: Instant| {
        for i in 0..10_000u64 {
            let now = from + Duration::from_millis(i * 1000);
            assert_eq!(c.poll(now, false), Due::Nothing, "tick {i}");
            assert_eq!(c.next_deadline(now), None);
            assert_eq!(c.take_journal(), None);
            assert!(!c.start_record());
        }
    };
    // A torrent started from a record that matches.
    idle(&mut c, t0);
    // And after a full round: verified, synced, recorded.
    c.verified(2, t0);
    assert_eq!(c.poll(t0, true), Due::Sync(&[2]));
    c.sync_succeeded();
    assert_eq!(write_record(&mut c, true), Some(vec![2]));
    assert!(c.take_journal().is_some());
    idle(&mut c, t0 + secs(1));
}

#[test]
fn start_with_a_stale_record_writes_it_once() {
    let lengths = Lengths::new(10 << 20, 1 << 20).unwrap();
    let mut c = Checkpoint::new(lengths, 4 << 20, Duration::from_secs(30));
    let mut have = Bitfield::new(10);
    have.set(6);
    c.begin(have, false);
    let t0 = Instant::now();
    assert_eq!(c.next_deadline(t0), Some(t0));
    assert_eq!(c.poll(t0, false), Due::Record);
    assert_eq!(write_record(&mut c, true), Some(vec![6]));
    assert_eq!(c.poll(t0 + secs(1), false), Due::Nothing);
}

#[test]
fn a_failed_journal_append_is_handed_out_again() {
    let (mut c, t0) = checkpoint();
    c.verified(1, t0);
    c.verified(2, t0);
    let first = c.take_journal().unwrap();
    c.verified(3, t0);
    c.journal_failed(first);
    assert!(c.journal_pending());
    assert_eq!(c.take_journal(), Some(vec![1, 2, 3]), "in order, none lost");
    assert_eq!(c.take_journal(), None);
}
