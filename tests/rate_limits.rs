//! Rate limits: a per-torrent upload limit set with `peerlet limit` and a
//! global download limit both hold (checked as lower bounds on duration,
//! which a slow machine cannot break), and per-torrent limits survive a restart.

mod common;

use common::daemon::{assert_same_tree, create_torrent, DaemonProc};
use common::{write_random_file, TempDir};
use peerlet::json::Json;
use std::time::{Duration, Instant};

#[test]
fn per_torrent_and_global_limits_hold_and_persist() {
    let tmp = TempDir::new("limits");
    let mut seeder = DaemonProc::start(tmp.path(), "seeder", "127.0.0.101", &[]);
    let mut hashes = Vec::new();
    for name in ["one", "two"] {
        let data = seeder.download_dir.join(name);
        std::fs::create_dir_all(&data).unwrap();
        write_random_file(&data.join("f.bin"), 8 << 20, name.len() as u64);
        let t = tmp.join(&format!("{name}.torrent"));
        hashes.push((create_torrent(&data, &t, "64K"), t));
    }
    for (h, t) in &hashes {
        seeder.add(t, &[]);
        seeder.wait_complete(h, Duration::from_secs(60));
    }
    let (one, one_torrent) = &hashes[0];
    let (code, out, err) = seeder.cli(&["limit", &one[..8], "--up", "2M"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        seeder
            .status(one)
            .get("upload_limit")
            .and_then(Json::as_u64),
        Some(2 << 20)
    );

    // 8 MiB at 2 MiB/s with a one-second burst: at least 3 s.
    let leecher = DaemonProc::start(tmp.path(), "leecher", "127.0.0.102", &[]);
    let start = Instant::now();
    leecher.add(one_torrent, &[seeder.listen]);
    leecher.wait_complete(one, Duration::from_secs(60));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(2900),
        "per-torrent upload limit not applied: {took:?}"
    );
    assert_same_tree(
        &seeder.download_dir.join("one"),
        &leecher.download_dir.join("one"),
    );

    // A global download limit on another leecher: 8 MiB at 4 MiB/s, at least 1 s.
    let (two, two_torrent) = &hashes[1];
    let limited = DaemonProc::start(
        tmp.path(),
        "limited",
        "127.0.0.103",
        &["--download-limit", "4194304"],
    );
    let start = Instant::now();
    limited.add(two_torrent, &[seeder.listen]);
    limited.wait_complete(two, Duration::from_secs(60));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(950),
        "global download limit not applied: {took:?}"
    );

    // The per-torrent limit is remembered.
    assert!(seeder.stop().is_some_and(|s| s.success()));
    seeder.restart();
    let st = seeder.status(one);
    assert_eq!(st.get("upload_limit").and_then(Json::as_u64), Some(2 << 20));
    assert_eq!(
        seeder
            .status(two)
            .get("upload_limit")
            .and_then(Json::as_u64),
        Some(0)
    );
    let (code, _, err) = seeder.cli(&["limit", &one[..8]]);
    assert_eq!(code, 2, "no limit given is a usage error: {err}");
}
