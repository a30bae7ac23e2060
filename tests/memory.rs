//! The memory budget holds under a fast download: 256 MiB from three
//! seeders on loopback (127.0.7.x) into a leecher with `--memory-limit 16M`,
//! whose peak RSS (VmHWM) must stay under its idle peak plus 16 MiB.

mod common;

use common::daemon::{assert_same_tree, create_torrent, DaemonProc};
use common::{proc_kib, write_random_file, TempDir};
use std::time::{Duration, Instant};

const LIMIT_MIB: u64 = 16;

#[test]
fn a_256_mib_download_from_three_seeders_stays_within_memory_limit() {
    let tmp = TempDir::new("memory-budget");
    let payload = tmp.join("payload");
    std::fs::create_dir_all(&payload).unwrap();
    write_random_file(&payload.join("big.bin"), 256 << 20, 256);
    let torrent = tmp.join("payload.torrent");
    let hash = create_torrent(&payload, &torrent, "1M");

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
    if leecher.emulated() {
        eprintln!("memory bound not checked: the daemon runs under qemu-user, whose translation cache counts in its RSS");
    } else {
        assert!(
            peak <= bound,
            "peak RSS {peak} KiB over idle {idle} KiB + {LIMIT_MIB} MiB"
        );
    }
}
