//! Restarts: after a clean stop the resume record is trusted (no recheck);
//! data changed while the daemon was stopped is rechecked; a download
//! directory that vanished (unmounted drive) stops the torrent with a clear
//! error instead of downloading again into the empty mount point; and an
//! idle daemon writes nothing.

mod common;

use common::daemon::{create_torrent, DaemonProc};
use common::{write_random_file, TempDir};
use peerlet::json::Json;
use std::time::{Duration, Instant};

fn num(j: &Json, k: &str) -> u64 {
    j.get(k).and_then(Json::as_u64).unwrap_or(0)
}

fn state(j: &Json) -> String {
    j.get("state")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_string()
}

fn wait_state(d: &DaemonProc, hash: &str, want: &str) -> Json {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = d.try_status(hash) {
            if state(&st) == want {
                return st;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never reached {want}:\n{}",
            d.name,
            d.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn checks_in_log(d: &DaemonProc) -> usize {
    std::fs::read_to_string(&d.log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("pieces on disk"))
        .count()
}

#[test]
fn restart_trusts_resume_rechecks_changes_and_refuses_a_vanished_directory() {
    let tmp = TempDir::new("restart");
    let t0 = Instant::now();
    let mut d = DaemonProc::start(tmp.path(), "node", "127.0.0.91", &[]);
    let data = d.download_dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_random_file(&data.join("a.bin"), 6 << 20, 1);
    write_random_file(&data.join("b.bin"), 2 << 20, 2);
    let torrent = tmp.join("data.torrent");
    let hash = create_torrent(&data, &torrent, "256K");
    d.add(&torrent, &[]);
    let st = wait_state(&d, &hash, "seeding");
    assert_eq!(num(&st, "pieces_have"), 32);
    assert_eq!(checks_in_log(&d), 1, "existing data is rechecked on add");

    eprintln!("{:?} Clean stop and start: trust", t0.elapsed());
    // Clean stop and start: trusted, no recheck.
    assert!(d.stop().is_some_and(|s| s.success()));
    d.restart();
    let st = wait_state(&d, &hash, "seeding");
    assert_eq!(num(&st, "pieces_resumed"), 32);
    assert_eq!(
        checks_in_log(&d),
        1,
        "a clean restart must not recheck:\n{}",
        d.log_tail(10)
    );

    eprintln!("{:?} Idle: nothing is written.", t0.elapsed());
    // Idle: nothing is written.
    std::thread::sleep(Duration::from_millis(1500));
    let state_files = |d: &DaemonProc| -> Vec<(String, u64, std::time::SystemTime)> {
        let mut v: Vec<_> = std::fs::read_dir(d.state_dir.join("torrents"))
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| {
                let md = e.metadata().unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    md.len(),
                    md.modified().unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = state_files(&d);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(state_files(&d), before, "an idle daemon wrote state");

    eprintln!("{:?} A clean restart leaves the record alone", t0.elapsed());
    // The record says what is true: starting again does not rewrite it
    // (with 10,000 torrents that was 20,000 fsyncs at every start).
    let records = |d: &DaemonProc| -> Vec<(String, u64, std::time::SystemTime)> {
        state_files(d)
            .into_iter()
            .filter(|f| f.0.ends_with(".resume"))
            .collect()
    };
    let record = records(&d);
    assert_eq!(record.len(), 1);
    assert!(d.stop().is_some_and(|s| s.success()));
    d.restart();
    let st = wait_state(&d, &hash, "seeding");
    assert_eq!(num(&st, "pieces_resumed"), 32);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        records(&d),
        record,
        "a clean restart rewrote the resume record"
    );

    eprintln!("{:?} Data modified while stopped", t0.elapsed());
    // Data modified while stopped (same size, new mtime): that file is rechecked, the bad piece found.
    assert!(d.stop().is_some_and(|s| s.success()));
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(data.join("b.bin"))
            .unwrap();
        f.write_all_at(b"tampered", 300_000).unwrap();
    }
    d.restart();
    let st = wait_state(&d, &hash, "downloading");
    assert_eq!(
        num(&st, "pieces_have"),
        31,
        "exactly the tampered piece is missing: {st}"
    );
    assert_eq!(checks_in_log(&d), 2);

    eprintln!("{:?} The drive is unmounted", t0.elapsed());
    // The drive is "unmounted": the data directory is gone. No re-download, a clear error.
    assert!(d.stop().is_some_and(|s| s.success()));
    std::fs::rename(&data, tmp.join("unmounted")).unwrap();
    d.restart();
    let st = wait_state(&d, &hash, "error");
    let error = st
        .get("error")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_string();
    assert!(
        error.contains("no data found") && error.contains("is the drive mounted?"),
        "{error}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !data.exists(),
        "nothing may be created in the empty mount point"
    );
    eprintln!("{:?} The drive comes back", t0.elapsed());
    // The drive comes back; resume picks the data up without downloading it.
    std::fs::rename(tmp.join("unmounted"), &data).unwrap();
    let (code, out, err) = d.cli(&["resume", &hash]);
    assert_eq!(code, 0, "{out}{err}");
    let st = wait_state(&d, &hash, "downloading");
    assert_eq!(num(&st, "pieces_have"), 31);
    assert_eq!(num(&st, "downloaded"), 0);
}

/// A magnet whose metadata has not arrived survives a restart (with its
/// peers and its paused flag); once the metadata comes, its record gives way
/// to the .torrent.
#[test]
fn a_magnet_waiting_for_metadata_survives_a_restart() {
    let tmp = TempDir::new("restart-magnet");
    let seeder = DaemonProc::start(tmp.path(), "seeder", "127.0.0.93", &[]);
    let data = seeder.download_dir.join("data.bin");
    std::fs::create_dir_all(&seeder.download_dir).unwrap();
    write_random_file(&data, 3 << 20, 9);
    let torrent = tmp.join("data.torrent");
    let hash = create_torrent(&data, &torrent, "64K");
    // The seeder does not have the torrent yet: no metadata to be had.
    let mut d = DaemonProc::start(tmp.path(), "leecher", "127.0.0.94", &[]);
    let magnet = format!("magnet:?xt=urn:btih:{hash}&dn=data.bin");
    let peer = seeder.listen.to_string();
    let (code, out, err) = d.cli(&["add", &magnet, "--peer", &peer]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(state(&d.status(&hash)), "metadata");
    let (code, out, err) = d.cli(&["pause", &hash]);
    assert_eq!(code, 0, "{out}{err}");
    let record = d.state_dir.join("torrents").join(format!("{hash}.magnet"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let paused_record = || {
        std::fs::read(&record)
            .ok()
            .and_then(|b| peerlet::resume::MagnetRecord::decode(&b).ok())
            .is_some_and(|r| r.paused && r.peers == [peer.clone()])
    };
    while !paused_record() {
        assert!(Instant::now() < deadline, "no paused magnet record");
        std::thread::sleep(Duration::from_millis(50));
    }

    assert!(d.stop().is_some_and(|s| s.success()));
    d.restart();
    let st = wait_state(&d, &hash, "paused");
    assert_eq!(st.get("name").and_then(Json::as_str), Some("data.bin"));

    // Now the seeder has it; resuming reaches it through the saved --peer.
    seeder.add(&torrent, &[]);
    wait_state(&seeder, &hash, "seeding");
    let (code, out, err) = d.cli(&["resume", &hash]);
    assert_eq!(code, 0, "{out}{err}");
    d.wait_complete(&hash, Duration::from_secs(60));
    common::daemon::assert_same_tree(&seeder.download_dir, &d.download_dir);
    let deadline = Instant::now() + Duration::from_secs(10);
    while record.exists() {
        assert!(
            Instant::now() < deadline,
            "the magnet record must go once the .torrent is saved:\n{}",
            d.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(d
        .state_dir
        .join("torrents")
        .join(format!("{hash}.torrent"))
        .exists());

    // And after another restart it is an ordinary torrent, still complete.
    assert!(d.stop().is_some_and(|s| s.success()));
    d.restart();
    let st = wait_state(&d, &hash, "seeding");
    assert_eq!(num(&st, "pieces_resumed"), num(&st, "pieces"));
}
