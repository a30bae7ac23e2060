//! Arbitrary bytes as the state directory's records: a damaged or hostile
//! file there must give an error the daemon can act on (recheck, skip),
//! never a panic.
//!
//! Invariants checked (beyond "no panic, no abort, no OOM"):
//! - a resume record, magnet record or manual-peers file that decodes
//!   encodes back to bytes that decode to the same value (the daemon
//!   rewrites what it read without changing it);
//! - a manual-peers file never yields more than `MAX_MANUAL_PEERS` peers;
//! - the journal decoder returns at most one piece per 4 bytes of input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerlet::resume::{decode_journal, MagnetRecord, ManualPeers, Resume, MAX_MANUAL_PEERS};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Resume::decode(data) {
        let again = Resume::decode(&r.encode()).expect("a re-encoded resume record decodes");
        assert_eq!(again, r, "resume record changed through encode");
    }
    if let Ok(m) = MagnetRecord::decode(data) {
        let again = MagnetRecord::decode(&m.encode()).expect("a re-encoded magnet record decodes");
        assert_eq!(again, m, "magnet record changed through encode");
    }
    if let Ok(p) = ManualPeers::decode(data) {
        assert!(p.peers.len() <= MAX_MANUAL_PEERS);
        let again = ManualPeers::decode(&p.encode()).expect("a re-encoded peers file decodes");
        assert_eq!(again, p, "peers file changed through encode");
    }
    assert!(decode_journal(data).len() <= data.len() / 4);
});
