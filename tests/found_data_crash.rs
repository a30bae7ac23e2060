//! Data already on disk when a torrent is added is checked and seeded. Those
//! pieces reach the resume record only at the first checkpoint (30 s, or
//! 32 MiB); the record written at once holds the file sizes and no pieces.
//! A crash before that checkpoint must not make the torrent forget them:
//! they are journalled like downloaded pieces and re-hashed after the
//! restart. (Found by benches/scale.sh: without the journal entry the torrent
//! came back "0 of N pieces, downloading" and was never checked again.)

mod common;

use common::daemon::{create_torrent, DaemonProc};
use common::{write_random_file, TempDir};
use peerlet::json::Json;
use std::time::Duration;

#[test]
fn data_found_at_add_survives_a_kill_before_the_first_checkpoint() {
    let tmp = TempDir::new("found-data-crash");
    let payload = tmp.join("found.bin");
    write_random_file(&payload, 3 << 20, 7);
    let torrent = tmp.join("found.torrent");
    let hash = create_torrent(&payload, &torrent, "256K");
    let mut d = DaemonProc::start(tmp.path(), "seeder", "127.0.9.240", &[]);
    std::fs::create_dir_all(&d.download_dir).unwrap();
    std::fs::copy(&payload, d.download_dir.join("found.bin")).unwrap();
    d.add(&torrent, &[]);
    let s = d.wait_complete(&hash, Duration::from_secs(30));
    assert_eq!(s.get("state").and_then(Json::as_str), Some("seeding"));
    // Well before the 30 s checkpoint.
    d.kill9();
    d.restart();
    let s = d.wait_complete(&hash, Duration::from_secs(30));
    assert_eq!(
        s.get("state").and_then(Json::as_str),
        Some("seeding"),
        "{s}"
    );
    assert!(
        d.log_tail(20).contains("checking 12 pieces on disk"),
        "the journal did not bring the pieces back for a re-hash:\n{}",
        d.log_tail(20)
    );
    d.stop();
}
