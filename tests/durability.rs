//! The state directory under damage: manual peers survive a damaged
//! resume record.

mod common;

use common::daemon::{create_torrent, start_seeder, DaemonProc};
use common::{write_random_file, TempDir};
use peerlet::json::Json;
use std::time::{Duration, Instant};

/// Addresses the torrent knows from its `manual` source (`status --json`).
fn manual_known(st: &Json) -> u64 {
    st.get("sources")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter(|s| s.get("source").and_then(Json::as_str) == Some("manual"))
        .filter_map(|s| s.get("known").and_then(Json::as_u64))
        .sum()
}

/// Waits until the torrent has every piece and knows its manual peer.
fn wait_seeding_with_manual_peer(d: &DaemonProc, hash: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = d.try_status(hash) {
            let state = st.get("state").and_then(Json::as_str).unwrap_or("");
            if state == "seeding" && manual_known(&st) >= 1 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: the manual peer is gone: {st}\n{}",
                d.log_tail(20)
            );
        }
        assert!(Instant::now() < deadline, "{what}: no answer");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn manual_peers_survive_a_damaged_resume_record() {
    let tmp = TempDir::new("manual-peers");
    let src = tmp.join("src/album");
    std::fs::create_dir_all(&src).unwrap();
    write_random_file(&src.join("track.bin"), 1 << 20, 111);
    let file = tmp.join("album.torrent");
    let hash = create_torrent(&src, &file, "64K");
    let seeder = start_seeder(tmp.path(), "seeder", "127.0.41.20", &src, &file, &hash);
    let mut node = DaemonProc::start(tmp.path(), "node", "127.0.41.21", &[]);
    node.add(&file, &[seeder.listen]);
    node.wait_complete(&hash, Duration::from_secs(60));
    wait_seeding_with_manual_peer(&node, &hash, "before");
    let resume = node.state_dir.join(format!("torrents/{hash}.resume"));
    assert!(node.stop().is_some_and(|s| s.success()));
    assert!(resume.exists());

    // Truncated (a torn write on a card that lies about flushes).
    let bytes = std::fs::read(&resume).unwrap();
    std::fs::write(&resume, &bytes[..bytes.len() / 2]).unwrap();
    node.restart();
    wait_seeding_with_manual_peer(&node, &hash, "after truncation");
    node.kill9();

    // Garbage.
    std::fs::write(&resume, b"\x00\xffnot bencode at all").unwrap();
    node.restart();
    wait_seeding_with_manual_peer(&node, &hash, "after garbage");
    assert!(
        node.log_tail(200).contains(".resume is damaged"),
        "{}",
        node.log_tail(30)
    );
    node.stop();
}
