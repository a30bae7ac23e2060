//! peerlet ↔ peerlet transfers on loopback, each daemon on its own
//! 127.0.0.x address: one seeder to one leecher (64 MiB, multi-file), a
//! swarm where leechers trade with each other, and one leecher fed by three
//! seeders.

mod common;

use common::daemon::{assert_same_tree, create_torrent, DaemonProc};
use common::{write_random_file, TempDir};
use peerlet::json::Json;
use std::path::Path;
use std::time::Duration;

fn make_payload(dir: &Path, total_mib: u64) {
    std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    write_random_file(&dir.join("big.bin"), (total_mib - 5) << 20, 1);
    write_random_file(&dir.join("sub/four.bin"), 4 << 20, 2);
    write_random_file(&dir.join("sub/deeper/odd.bin"), (1 << 20) - 12345, 3);
    write_random_file(&dir.join("sub/tiny.txt"), 5, 4);
    std::fs::write(dir.join("empty"), b"").unwrap();
}

/// Copies the payload into a seeder's download directory.
fn seed_copy(from: &Path, d: &DaemonProc) {
    let to = d.download_dir.join("payload");
    std::fs::create_dir_all(&to).unwrap();
    for f in peerlet::storage::walk(from).unwrap() {
        let dest = to.join(f.relative.join("/"));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&f.path, &dest).unwrap();
    }
}

fn peers_of(status: &Json) -> Vec<(String, u64, u64)> {
    status
        .get("peer_list")
        .and_then(Json::as_array)
        .map(|list| {
            list.iter()
                .map(|p| {
                    (
                        p.get("addr")
                            .and_then(Json::as_str)
                            .unwrap_or("")
                            .to_string(),
                        p.get("downloaded").and_then(Json::as_u64).unwrap_or(0),
                        p.get("uploaded").and_then(Json::as_u64).unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn seeder_to_leecher_64_mib_multi_file() {
    let tmp = TempDir::new("xfer-1to1");
    let payload = tmp.join("payload");
    make_payload(&payload, 64);
    let torrent = tmp.join("payload.torrent");
    let hash = create_torrent(&payload, &torrent, "256K");
    let seeder = DaemonProc::start(tmp.path(), "seeder", "127.0.0.21", &[]);
    seed_copy(&payload, &seeder);
    seeder.add(&torrent, &[]);
    seeder.wait_complete(&hash, Duration::from_secs(60));
    let leecher = DaemonProc::start(tmp.path(), "leecher", "127.0.0.22", &[]);
    leecher.add(&torrent, &[seeder.listen]);
    let st = leecher.wait_complete(&hash, Duration::from_secs(120));
    assert_eq!(st.get("state").and_then(Json::as_str), Some("seeding"));
    assert_eq!(st.get("hash_failures").and_then(Json::as_u64), Some(0));
    assert_same_tree(&payload, &leecher.download_dir.join("payload"));
    let seeder_status = seeder.status(&hash);
    let total: u64 = peerlet::storage::walk(&payload)
        .unwrap()
        .iter()
        .map(|f| f.length)
        .sum();
    assert!(total > 63 << 20);
    assert!(
        seeder_status
            .get("uploaded")
            .and_then(Json::as_u64)
            .unwrap()
            >= total
    );
}

#[test]
fn leechers_trade_with_each_other_and_a_leecher_uses_three_seeders() {
    let tmp = TempDir::new("xfer-swarm");
    let payload = tmp.join("payload");
    make_payload(&payload, 24);
    let torrent = tmp.join("payload.torrent");
    let hash = create_torrent(&payload, &torrent, "64K");

    // One seeder, limited so the leechers must also trade among themselves.
    let seeder = DaemonProc::start(
        tmp.path(),
        "seeder",
        "127.0.0.31",
        &["--upload-limit", "3000000"],
    );
    seed_copy(&payload, &seeder);
    seeder.add(&torrent, &[]);
    seeder.wait_complete(&hash, Duration::from_secs(60));
    let leechers: Vec<DaemonProc> = (0..3)
        .map(|i| {
            DaemonProc::start(
                tmp.path(),
                &format!("leecher{i}"),
                &format!("127.0.0.{}", 32 + i),
                &[],
            )
        })
        .collect();
    for (i, l) in leechers.iter().enumerate() {
        let mut peers = vec![seeder.listen];
        peers.extend(
            leechers
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, o)| o.listen),
        );
        l.add(&torrent, &peers);
    }
    for l in &leechers {
        l.wait_complete(&hash, Duration::from_secs(180));
        assert_same_tree(&payload, &l.download_dir.join("payload"));
    }
    let uploaded_by_leechers: u64 = leechers
        .iter()
        .map(|l| {
            l.status(&hash)
                .get("uploaded")
                .and_then(Json::as_u64)
                .unwrap_or(0)
        })
        .sum();
    assert!(
        uploaded_by_leechers > 0,
        "leechers uploaded nothing to each other"
    );
    let seeder_up = seeder
        .status(&hash)
        .get("uploaded")
        .and_then(Json::as_u64)
        .unwrap_or(0);
    eprintln!("seeder uploaded {seeder_up}, leechers uploaded {uploaded_by_leechers} in total");

    // Now a fresh leecher with the four complete nodes as seeders... three of them.
    let uploaded_before: Vec<u64> = leechers
        .iter()
        .map(|l| {
            l.status(&hash)
                .get("uploaded")
                .and_then(Json::as_u64)
                .unwrap_or(0)
        })
        .collect();
    let fresh = DaemonProc::start(tmp.path(), "fresh", "127.0.0.40", &[]);
    let seeders: Vec<_> = leechers.iter().map(|l| l.listen).collect();
    fresh.add(&torrent, &seeders);
    // Watch while it downloads: the per-peer counters vanish when peers disconnect at the end.
    let mut from: std::collections::HashMap<String, u64> = Default::default();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let st = fresh.status(&hash);
        for (addr, down, _) in peers_of(&st) {
            let e = from.entry(addr).or_default();
            *e = (*e).max(down);
        }
        if st.get("pieces_have") == st.get("pieces") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fresh leecher did not finish: {st}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_same_tree(&payload, &fresh.download_dir.join("payload"));
    // Each seeder's upload counter grew: everyone else was already
    // complete, so those bytes went to `fresh` (on its connections or on
    // theirs: with peer exchange the seeders also learn of it and dial it).
    let uploaded_now = |d: &DaemonProc| {
        d.status(&hash)
            .get("uploaded")
            .and_then(Json::as_u64)
            .unwrap_or(0)
    };
    let gave: Vec<u64> = leechers
        .iter()
        .zip(&uploaded_before)
        .map(|(l, before)| uploaded_now(l) - before)
        .collect();
    assert!(
        gave.iter().all(|&g| g > 0),
        "pieces should come from all three seeders: uploaded {gave:?}; seen {from:?}"
    );
}
