//! The memory budget holds under a fast download: 256 MiB from three
//! seeders on loopback (127.0.7.x) into a leecher with `--memory-limit 16M`,
//! whose peak RSS (VmHWM) must stay under its idle peak plus 16 MiB; and
//! under many uploads: a seeder with `--memory-limit 2M` serving eight
//! leechers at once stays under its seeding peak plus 2 MiB.

mod common;

use common::daemon::{assert_same_tree, one_file_torrent, DaemonProc};
use common::{proc_kib, TempDir};
use std::time::{Duration, Instant};

const LIMIT_MIB: u64 = 16;

#[test]
fn a_256_mib_download_from_three_seeders_stays_within_memory_limit() {
    let tmp = TempDir::new("memory-budget");
    let payload = tmp.join("payload");
    let torrent = tmp.join("payload.torrent");
    let hash = one_file_torrent(&payload, "big.bin", 256 << 20, 256, &torrent, "1M");

    // Three seeders share the data through hard links (no three copies).
    let seeders: Vec<DaemonProc> = (1..=3)
        .map(|i| {
            let d = DaemonProc::start(
                tmp.path(),
                &format!("seed{i}"),
                &format!("127.0.7.{i}"),
                &[],
            );
            let dir = d.download_dir.join("payload");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::hard_link(payload.join("big.bin"), dir.join("big.bin")).unwrap();
            d.add(&torrent, &[]);
            d
        })
        .collect();
    for s in &seeders {
        s.wait_complete(&hash, Duration::from_secs(120));
    }

    let limit = format!("{LIMIT_MIB}M");
    let leecher = DaemonProc::start(
        tmp.path(),
        "leecher",
        "127.0.7.10",
        &["--memory-limit", &limit],
    );
    // The idle peak: after start-up settles.
    std::thread::sleep(Duration::from_secs(2));
    let idle = proc_kib(leecher.pid(), "VmHWM:").expect("VmHWM");
    let started = Instant::now();
    let peers: Vec<_> = seeders.iter().map(|s| s.listen).collect();
    leecher.add(&torrent, &peers);
    leecher.wait_complete(&hash, Duration::from_secs(240));
    let secs = started.elapsed().as_secs_f64();
    let peak = proc_kib(leecher.pid(), "VmHWM:").expect("VmHWM");
    let bound = idle + (LIMIT_MIB << 10);
    eprintln!(
        "256 MiB from 3 seeders in {secs:.1} s ({:.0} MiB/s); leecher VmHWM idle {idle} KiB, \
         after {peak} KiB, bound {bound} KiB (idle + {LIMIT_MIB} MiB)",
        256.0 / secs
    );
    assert_same_tree(&payload, &leecher.download_dir.join("payload"));
    check_bound(&leecher, peak, bound);
}

/// Eight leechers at once from one seeder whose budget is 2 MiB: without
/// the cap on upload memory, each peer's send backlog (512 KiB) and blocks
/// read ahead (256 KiB) alone would hold 6 MiB.
#[test]
fn a_seeder_serving_eight_leechers_stays_within_memory_limit() {
    let tmp = TempDir::new("memory-upload");
    let payload = tmp.join("payload");
    let torrent = tmp.join("payload.torrent");
    let hash = one_file_torrent(&payload, "up.bin", 48 << 20, 257, &torrent, "256K");

    let seeder = DaemonProc::start(
        tmp.path(),
        "seeder",
        "127.0.7.20",
        &["--memory-limit", "2M"],
    );
    let dir = seeder.download_dir.join("payload");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::hard_link(payload.join("up.bin"), dir.join("up.bin")).unwrap();
    seeder.add(&torrent, &[]);
    seeder.wait_complete(&hash, Duration::from_secs(120));
    // The seeding peak: start-up and the check of the data are behind it.
    std::thread::sleep(Duration::from_secs(1));
    let idle = proc_kib(seeder.pid(), "VmHWM:").expect("VmHWM");

    let leechers: Vec<DaemonProc> = (1..=8)
        .map(|i| {
            DaemonProc::start(
                tmp.path(),
                &format!("leech{i}"),
                &format!("127.0.7.{}", 20 + i),
                &[],
            )
        })
        .collect();
    let started = Instant::now();
    for l in &leechers {
        l.add(&torrent, &[seeder.listen]);
    }
    for l in &leechers {
        l.wait_complete(&hash, Duration::from_secs(240));
    }
    let secs = started.elapsed().as_secs_f64();
    let peak = proc_kib(seeder.pid(), "VmHWM:").expect("VmHWM");
    let uploaded = seeder
        .status(&hash)
        .get("uploaded")
        .and_then(peerlet::json::Json::as_u64)
        .unwrap_or(0);
    let bound = idle + (2 << 10);
    eprintln!(
        "8 leechers × 48 MiB in {secs:.1} s, the seeder sent {} MiB; seeder VmHWM seeding {idle} KiB, \
         after {peak} KiB, bound {bound} KiB (seeding + 2 MiB)",
        uploaded >> 20
    );
    assert!(
        uploaded >= 48 << 20,
        "the seeder sent only {uploaded} bytes: the leechers did not load it"
    );
    for l in &leechers {
        assert_same_tree(&payload, &l.download_dir.join("payload"));
    }
    check_bound(&seeder, peak, bound);
}

fn check_bound(d: &DaemonProc, peak: u64, bound: u64) {
    if d.emulated() {
        eprintln!("memory bound not checked: the daemon runs under qemu-user, whose translation cache counts in its RSS");
    } else {
        assert!(
            peak <= bound,
            "peak RSS {peak} KiB over the bound {bound} KiB"
        );
    }
}
