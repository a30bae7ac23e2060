//! Removing a torrent: `rm` answers once its files are gone, so what comes
//! next never races the deletion. Mid-download, `rm --delete-data` leaves
//! no file behind (a write still in flight must not create one again), and
//! adding the same torrent right away downloads it afresh; `rm` then `add`
//! of a seeding torrent keeps the new state files (a restart finds it).

mod common;

use common::daemon::{assert_same_tree, create_torrent, DaemonProc};
use common::{write_random_file, TempDir};
use std::path::Path;
use std::time::{Duration, Instant};

fn files_below(dir: &Path) -> usize {
    if !dir.exists() {
        return 0;
    }
    peerlet::storage::walk(dir).map(|f| f.len()).unwrap_or(0)
}

fn pieces_have(d: &DaemonProc, hash: &str) -> u64 {
    d.try_status(hash)
        .and_then(|s| s.get("pieces_have").and_then(|v| v.as_u64()))
        .unwrap_or(0)
}

#[test]
fn remove_answers_when_the_files_are_gone() {
    let tmp = TempDir::new("remove");
    let src = tmp.join("src/album");
    std::fs::create_dir_all(&src).unwrap();
    for (i, len) in [(0u64, 6u64 << 20), (1, 3 << 20), (2, 5 << 20)] {
        write_random_file(&src.join(format!("track{i}.bin")), len, 90 + i);
    }
    let file = tmp.join("album.torrent");
    let hash = create_torrent(&src, &file, "64K");
    // Slow enough that the removal comes mid-download.
    let mut seeder = DaemonProc::start(
        tmp.path(),
        "seeder",
        "127.0.11.10",
        &["--upload-limit", "3M"],
    );
    common::daemon::copy_tree(&src, &seeder.download_dir.join("album"));
    seeder.add(&file, &[]);
    seeder.wait_complete(&hash, Duration::from_secs(60));

    let leecher = DaemonProc::start(tmp.path(), "leecher", "127.0.11.11", &[]);
    let got = leecher.download_dir.join("album");
    leecher.add(&file, &[seeder.listen]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while pieces_have(&leecher, &hash) < 8 {
        assert!(Instant::now() < deadline, "{}", leecher.log_tail(20));
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, out, err) = leecher.cli(&["rm", &hash, "--delete-data"]);
    assert_eq!(code, 0, "rm: {out}{err}");
    // Gone when rm answers, and nothing comes back afterwards.
    assert_eq!(files_below(&got), 0, "files left at {}", got.display());
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        files_below(&got),
        0,
        "a file came back at {}",
        got.display()
    );
    assert!(leecher.try_status(&hash).is_none(), "still there after rm");

    // Added again at once: a fresh download, complete and identical.
    leecher.add(&file, &[seeder.listen]);
    let st = leecher.wait_complete(&hash, Duration::from_secs(120));
    assert_eq!(
        st.get("pieces_resumed").and_then(|v| v.as_u64()),
        Some(0),
        "{st}"
    );
    assert_same_tree(&src, &got);

    // The seeder: rm (data kept) and add at once, then a restart: the
    // torrent is still there, its record intact.
    let (code, out, err) = seeder.cli(&["rm", &hash]);
    assert_eq!(code, 0, "rm: {out}{err}");
    seeder.add(&file, &[]);
    seeder.wait_complete(&hash, Duration::from_secs(60));
    // Let the checkpoint after the check write its record.
    std::thread::sleep(Duration::from_millis(500));
    seeder.stop();
    seeder.restart();
    let st = seeder.wait_complete(&hash, Duration::from_secs(60));
    assert_eq!(st.get("state").and_then(|v| v.as_str()), Some("seeding"));
    assert_same_tree(&src, &seeder.download_dir.join("album"));
}
