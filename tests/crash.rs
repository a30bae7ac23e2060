//! Crash safety: a leecher SIGKILLed at 20 random moments (seeded, so a
//! failure can be replayed) finishes with correct data, never loses a
//! verified piece, and re-downloads only what was in flight at each kill.
//!
//! Checkpoints are set far apart (64 MiB), so between kills nothing reaches
//! the resume file by the normal path: what survives a kill survives
//! through the journal re-hash. The seeder, never killed, counts every byte
//! the leecher ever received; the excess over the payload is what the kills
//! cost.

mod common;

use common::daemon::{assert_same_tree, create_torrent, DaemonProc};
use common::{write_random_file, TempDir};
use peerlet::json::Json;
use std::time::{Duration, Instant};

const PIECE: u64 = 256 * 1024;
const MEMORY_LIMIT: u64 = 1 << 20;

fn num(j: &Json, k: &str) -> u64 {
    j.get(k).and_then(Json::as_u64).unwrap_or(0)
}

#[test]
fn sigkill_at_20_random_moments() {
    let tmp = TempDir::new("crash");
    let payload = tmp.join("payload");
    std::fs::create_dir_all(payload.join("d")).unwrap();
    write_random_file(&payload.join("a.bin"), 40 << 20, 11);
    write_random_file(&payload.join("d/b.bin"), (24 << 20) + 777, 12);
    let torrent = tmp.join("p.torrent");
    let hash = create_torrent(&payload, &torrent, "256K");
    let total: u64 = (64 << 20) + 777;

    let seeder = DaemonProc::start(
        tmp.path(),
        "seeder",
        "127.0.0.51",
        &["--upload-limit", "4000000"],
    );
    let seed_dir = seeder.download_dir.join("payload");
    std::fs::create_dir_all(seed_dir.join("d")).unwrap();
    std::fs::copy(payload.join("a.bin"), seed_dir.join("a.bin")).unwrap();
    std::fs::copy(payload.join("d/b.bin"), seed_dir.join("d/b.bin")).unwrap();
    seeder.add(&torrent, &[]);
    seeder.wait_complete(&hash, Duration::from_secs(60));

    let args = ["--memory-limit", "1M", "--checkpoint-mib", "64"];
    let mut leecher = DaemonProc::start(tmp.path(), "leecher", "127.0.0.52", &args);
    leecher.add(&torrent, &[seeder.listen]);

    let t0 = Instant::now();
    eprintln!("{:?} leecher started", t0.elapsed());
    let mut rng = 0x5eed_1234_u64;
    let mut kills = 0;
    let mut last_have = 0u64;
    let deadline = Instant::now() + Duration::from_secs(240);
    while kills < 20 {
        assert!(Instant::now() < deadline, "crash loop took too long");
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = Duration::from_millis(150 + rng % 600);
        let until = Instant::now() + delay;
        let mut have_before = 0;
        while Instant::now() < until {
            if let Some(st) = leecher.try_status(&hash) {
                have_before = num(&st, "pieces_have");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if have_before >= 250 {
            break; // Nearly done: the remaining kills would test nothing.
        }
        leecher.kill9();
        kills += 1;
        leecher.restart();
        // Once it has looked at its data again, nothing verified may be missing
        // (a few pieces of slack: the last ones verified may not have reached
        // the journal when the kill landed; those count as in flight).
        let st = wait_running(&leecher, &hash);
        let resumed = num(&st, "pieces_resumed");
        assert!(
            resumed + 4 >= have_before,
            "kill {kills}: {resumed} pieces after restart, {have_before} seen before the kill"
        );
        assert!(
            resumed + 4 >= last_have,
            "kill {kills}: progress went backwards"
        );
        last_have = resumed;
        eprintln!(
            "{:?} kill {kills}: {have_before} before, {resumed} after",
            t0.elapsed()
        );
    }
    assert!(
        kills >= 10,
        "only {kills} kills happened before the download finished"
    );
    let st = leecher.wait_complete(&hash, Duration::from_secs(120));
    eprintln!("{:?} complete", t0.elapsed());
    assert_eq!(
        num(&st, "hash_failures"),
        0,
        "no piece may fail: unverified bytes were trusted"
    );
    assert_same_tree(&payload, &leecher.download_dir.join("payload"));
    let sent = num(&seeder.status(&hash), "uploaded");
    let redownloaded = sent.saturating_sub(total);
    // In flight at a kill: requested or unwritten blocks (half the memory
    // limit), the pieces being assembled (a couple), the last verified pieces
    // not yet journaled, and what sat in socket buffers.
    let per_kill = MEMORY_LIMIT + 4 * PIECE;
    eprintln!("{kills} kills; seeder sent {sent} bytes for a {total}-byte payload: {redownloaded} re-sent, allowance {}", kills * per_kill);
    assert!(
        redownloaded <= kills * per_kill,
        "re-downloaded {redownloaded} bytes over {kills} kills"
    );
}

/// Waits until the restarted leecher has finished checking.
fn wait_running(d: &DaemonProc, hash: &str) -> Json {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let asked = Instant::now();
        let (code, out, err) = d.cli(&["status", hash, "--json"]);
        if code == 0 {
            if let Ok(st) = peerlet::json::parse(&out) {
                let state = st.get("state").and_then(Json::as_str).unwrap_or("");
                if state != "checking" {
                    return st;
                }
            }
        }
        let last = format!(
            "last `peerlet status` (after {:?}): exit {code}, stdout {:?}, stderr {:?}",
            asked.elapsed(),
            out.trim(),
            err.trim()
        );
        assert!(
            Instant::now() < deadline,
            "restart never finished checking:\n{last}\n{}\nlog:\n{}",
            d.threads(),
            d.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
