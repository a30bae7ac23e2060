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
fn failed_sync_keeps_pieces_pending_until_a_later_success() {
    let (mut c, t0) = checkpoint();
    c.verified(1, t0);
    c.verified(2, t0);
    assert_eq!(c.poll(t0, true), Due::Sync(&[1, 2]));
    // fdatasync fails at t0 + 5 s.
    let failed_at = t0 + secs(5);
    c.sync_failed(failed_at);
    assert!(!c.syncing());
    assert!(recorded(&c).is_empty(), "never recorded after a failure");
    // A record written meanwhile (a pause, say) still lists nothing.
    c.record_changed();
    assert_eq!(write_record(&mut c, true), Some(vec![]));
    // Due again checkpoint_interval after the failure, with no new piece.
    assert_eq!(c.poll(failed_at + secs(29), false), Due::Nothing);
    assert_eq!(c.next_deadline(failed_at), Some(failed_at + secs(30)));
    assert_eq!(c.poll(failed_at + secs(30), false), Due::Sync(&[1, 2]));
    // It fails again: still pending, still not recorded.
    c.sync_failed(failed_at + secs(31));
    assert!(recorded(&c).is_empty());
    assert_eq!(c.poll(failed_at + secs(60), false), Due::Nothing);
    assert_eq!(c.poll(failed_at + secs(61), false), Due::Sync(&[1, 2]));
    c.sync_succeeded();
    assert_eq!(recorded(&c), vec![1, 2]);
    assert_eq!(write_record(&mut c, true), Some(vec![1, 2]));
    // The journal had them once, at verification; failures add nothing.
    assert_eq!(c.take_journal(), Some(vec![1, 2]));
    assert_eq!(c.take_journal(), None);
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
