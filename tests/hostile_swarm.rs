//! Hostile trackers and hostile metadata peers, end to end: each misbehaviour
//! must show up as a clear tracker status or log line, stay bounded (requests,
//! bytes, time, memory), and leave the daemon's other torrents alone.
//!
//! Every test runs its daemons and fakes on its own 127.0.0.160–199
//! addresses, with ports picked by the kernel. The "bystander" of each test
//! is a second torrent on the same daemon, fed by a real peerlet seeder
//! through `--peer`, that must complete while the hostile one misbehaves.

mod common;

use common::daemon::{assert_same_tree, create_torrent, create_torrent_with, DaemonProc};
use common::fake_metadata::{FakeMetadataPeer, MetaCounters};
use common::fake_tracker::{compact_peers_body, FakeHttpTracker, FakeUdpTracker, HttpScript};
use common::{proc_kib, write_random_file, TempDir};
use peerlet::json::Json;
use peerlet::metainfo::Torrent;
use peerlet::net::peerlist::MAX_KNOWN;
use peerlet::tracker::http::MAX_BODY;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Upper bound for anything a test waits for.
const WAIT: Duration = Duration::from_secs(60);
/// `RUST_LOG` for daemons whose debug lines (peer closings) a test reads.
const DEBUG_LOG: &str = "info,peerlet=debug";

// ---------------------------------------------------------------------------
// Helpers.

/// A payload directory `src/NAME` with one file, and its torrent(s).
struct Payload {
    /// `.../src/NAME`: copy it to `DOWNLOADS/NAME` to seed.
    dir: PathBuf,
    /// The torrent with the trackers asked for.
    torrent: PathBuf,
    /// The same content without trackers (same info-hash), for seeders.
    plain: PathBuf,
    hash: String,
}

fn make_payload(tmp: &TempDir, name: &str, len: u64, seed: u64, trackers: &[String]) -> Payload {
    let dir = tmp.join("src").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    write_random_file(&dir.join("data.bin"), len, seed);
    let plain = tmp.join(&format!("{name}-plain.torrent"));
    let hash = create_torrent(&dir, &plain, "64K");
    let torrent = tmp.join(&format!("{name}.torrent"));
    let again = create_torrent_with(&dir, &torrent, "64K", trackers, &[]);
    assert_eq!(hash, again, "trackers are outside the info dictionary");
    Payload {
        dir,
        torrent,
        plain,
        hash,
    }
}

/// A daemon on `ip` seeding every payload (without trackers).
fn seeder(tmp: &TempDir, ip: &str, payloads: &[&Payload]) -> DaemonProc {
    let d = DaemonProc::start(tmp.path(), "seeder", ip, &[]);
    for p in payloads {
        let name = p.dir.file_name().unwrap().to_str().unwrap();
        copy_dir(&p.dir, &d.download_dir.join(name));
        d.add(&p.plain, &[]);
    }
    for p in payloads {
        d.wait_complete(&p.hash, WAIT);
    }
    d
}

fn copy_dir(from: &Path, to: &Path) {
    for f in peerlet::storage::walk(from).unwrap() {
        let dest = to.join(f.relative.join("/"));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&f.path, &dest).unwrap();
    }
}

/// `last_result` of every tracker of the torrent, in status order.
fn tracker_results(st: &Json) -> Vec<String> {
    st.get("trackers")
        .and_then(Json::as_array)
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    t.get("last_result")
                        .and_then(Json::as_str)
                        .unwrap_or("")
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The first tracker's status object.
fn first_tracker(st: &Json) -> Json {
    st.get("trackers")
        .and_then(Json::as_array)
        .and_then(|t| t.first())
        .cloned()
        .unwrap_or_else(|| panic!("no tracker in {st}"))
}

/// Polls the torrent's status until its first tracker's `last_result`
/// satisfies `ok`; returns the whole status.
fn wait_tracker(d: &DaemonProc, hash: &str, ok: impl Fn(&str) -> bool) -> Json {
    let deadline = Instant::now() + WAIT;
    loop {
        let st = d.status(hash);
        let results = tracker_results(&st);
        if results.first().is_some_and(|r| ok(r)) {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "tracker of {hash} never reached the expected result: {results:?}\nlog:\n{}",
            d.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn log_text(d: &DaemonProc) -> String {
    std::fs::read_to_string(&d.log).unwrap_or_default()
}

/// Waits until the daemon's log has a line containing every one of `parts`; returns it.
fn wait_log_line(d: &DaemonProc, parts: &[&str]) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(line) = log_text(d)
            .lines()
            .find(|l| parts.iter().all(|p| l.contains(p)))
        {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {parts:?}:\n{}",
            d.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for `cond`, panicking with `what` after [`WAIT`].
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The node status answers (the control API and the net thread are alive).
fn assert_responsive(d: &DaemonProc) {
    let (code, out, err) = d.cli(&["status", "--json"]);
    assert_eq!(code, 0, "{} status: {out}{err}", d.name);
    assert!(out.contains("\"torrents\""), "{out}");
}

fn state(st: &Json) -> String {
    st.get("state")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_string()
}

/// `x.pe=ADDR` for each address.
fn magnet(hash: &str, peers: &[std::net::SocketAddr]) -> String {
    let mut m = format!("magnet:?xt=urn:btih:{hash}");
    for p in peers {
        m.push_str(&format!("&x.pe={p}"));
    }
    m
}

// ---------------------------------------------------------------------------
// HTTP trackers.

/// A tracker that answers `200 OK` with an HTML page: the status says the
/// response is not bencode, the log says so with the back-off, the tracker
/// is not hammered, and a second torrent completes meanwhile.
#[test]
fn http_tracker_answering_garbage() {
    let tmp = TempDir::new("hostile-garbage");
    let tracker = FakeHttpTracker::start(
        "127.0.0.162",
        HttpScript::Body(b"<html><body>502 gateway sadness</body></html>".to_vec()),
    );
    let hostile = make_payload(&tmp, "garbage", 256 << 10, 1, &[tracker.url()]);
    let bystander = make_payload(&tmp, "bystander", 2 << 20, 2, &[]);
    let seed = seeder(&tmp, "127.0.0.161", &[&bystander]);
    let leecher = DaemonProc::start(tmp.path(), "leecher", "127.0.0.160", &[]);
    leecher.add(&hostile.torrent, &[]);
    leecher.add(&bystander.torrent, &[seed.listen]);

    let st = wait_tracker(&leecher, &hostile.hash, |r| r != "not contacted");
    let result = tracker_results(&st).remove(0);
    assert!(
        result.starts_with("error: response is not bencode"),
        "tracker status: {result}"
    );
    // Backing off, with the next try scheduled (15 s after a first failure).
    let next = first_tracker(&st)
        .get("next_announce_secs")
        .and_then(Json::as_u64);
    assert!(next.is_some_and(|s| s <= 15), "next announce: {next:?}");
    let line = wait_log_line(
        &leecher,
        &[
            &tracker.url(),
            "response is not bencode",
            "trying again in 15 s",
        ],
    );
    eprintln!("log: {line}");

    leecher.wait_complete(&bystander.hash, WAIT);
    assert_same_tree(&bystander.dir, &leecher.download_dir.join("bystander"));
    // One announce per back-off period, not a retry loop.
    let failures = log_text(&leecher)
        .lines()
        .filter(|l| l.contains(&tracker.url()) && l.contains("trying again"))
        .count() as u64;
    assert!(
        tracker.requests() >= 1 && tracker.requests() <= failures + 1,
        "{} requests for {failures} failures",
        tracker.requests()
    );
    assert_eq!(state(&leecher.status(&hostile.hash)), "downloading");
    assert_responsive(&leecher);
}

/// A tracker answering 100,000 compact peers (600,000 bytes, under the body
/// cap): at most `MAX_PEERS` (1,000) are kept, the first of them (a real
/// seeder) serves the torrent, the daemon stays responsive. A tracker
/// answering 150,000 peers (900,000 bytes) is refused by the body cap.
#[test]
fn http_tracker_answering_a_huge_peer_list() {
    let tmp = TempDir::new("hostile-flood");
    let flood_data = make_payload(&tmp, "flooded", 1 << 20, 3, &[]);
    let bystander = make_payload(&tmp, "bystander", 2 << 20, 4, &[]);
    let seed = seeder(&tmp, "127.0.0.164", &[&flood_data, &bystander]);

    let body = compact_peers_body(100_000, &[seed.listen]);
    assert!(body.len() > 600_000 && body.len() < MAX_BODY);
    let flood = FakeHttpTracker::start("127.0.0.165", HttpScript::Body(body));
    let oversized = FakeHttpTracker::start(
        "127.0.0.165",
        HttpScript::Body(compact_peers_body(150_000, &[])),
    );
    let flooded = &flood_data;
    create_torrent_with(
        &flood_data.dir,
        &flood_data.torrent,
        "64K",
        &[flood.url()],
        &[],
    );
    let over = make_payload(&tmp, "oversized", 256 << 10, 5, &[oversized.url()]);

    let leecher = DaemonProc::start(tmp.path(), "leecher", "127.0.0.163", &[]);
    leecher.add(&flooded.torrent, &[]);
    leecher.add(&over.torrent, &[]);
    leecher.add(&bystander.torrent, &[seed.listen]);

    // Capped at MAX_PEERS, counted after the cap.
    let st = wait_tracker(&leecher, &flooded.hash, |r| r != "not contacted");
    assert_eq!(
        tracker_results(&st),
        vec!["ok: 1000 peers".to_string()],
        "the flood"
    );
    let st = wait_tracker(&leecher, &over.hash, |r| r != "not contacted");
    assert_eq!(
        tracker_results(&st),
        vec![format!("error: response larger than {MAX_BODY} bytes")]
    );
    wait_log_line(
        &leecher,
        &[
            &oversized.url(),
            &format!("response larger than {MAX_BODY} bytes"),
        ],
    );
    assert_responsive(&leecher);

    // The one real peer among the 100,000 is found and serves the torrent.
    leecher.wait_complete(&flooded.hash, WAIT);
    assert_same_tree(&flood_data.dir, &leecher.download_dir.join("flooded"));
    leecher.wait_complete(&bystander.hash, WAIT);
    assert_same_tree(&bystander.dir, &leecher.download_dir.join("bystander"));
    assert_responsive(&leecher);
    // Dialling 999 dead loopback addresses does not take a connection per
    // address at once: the node's peer count stays small.
    let (code, out, _) = leecher.cli(&["status", "--json"]);
    assert_eq!(code, 0);
    let node = peerlet::json::parse(&out).unwrap();
    let peers = node.get("peers").and_then(Json::as_u64).unwrap_or(0);
    assert!(peers <= 100, "node peers: {peers}");
    // The known-peer list is bounded (checked when the daemon reports it:
    // `sources[].known` in the torrent detail).
    let st = leecher.status(&flooded.hash);
    match st.get("sources").and_then(Json::as_array) {
        Some(sources) => {
            let known: u64 = sources
                .iter()
                .filter_map(|s| s.get("known").and_then(Json::as_u64))
                .sum();
            eprintln!("known peers: {known}");
            assert!(
                known as usize <= MAX_KNOWN,
                "{known} known peers, more than {MAX_KNOWN}"
            );
        }
        None => eprintln!("no `sources` in the status: known-peer count not checked"),
    }
    let rss = proc_kib(leecher.pid(), "VmHWM:");
    eprintln!("leecher VmHWM: {rss:?} KiB");
}

/// A tracker redirecting to itself fails at once ("redirect loop", one
/// request); one redirecting to ever new URLs fails after 3 redirects
/// (4 requests). The daemon never follows a fifth.
#[test]
fn http_tracker_redirect_loops() {
    let tmp = TempDir::new("hostile-redirect");
    let to_self = FakeHttpTracker::start("127.0.0.168", HttpScript::RedirectToSelf);
    let chain = FakeHttpTracker::start("127.0.0.169", HttpScript::RedirectChain);
    let looped = make_payload(&tmp, "looped", 256 << 10, 6, &[to_self.url()]);
    let chained = make_payload(&tmp, "chained", 256 << 10, 7, &[chain.url()]);
    let bystander = make_payload(&tmp, "bystander", 2 << 20, 8, &[]);
    let seed = seeder(&tmp, "127.0.0.167", &[&bystander]);
    let leecher = DaemonProc::start(tmp.path(), "leecher", "127.0.0.166", &[]);
    leecher.add(&looped.torrent, &[]);
    leecher.add(&chained.torrent, &[]);
    leecher.add(&bystander.torrent, &[seed.listen]);

    let st = wait_tracker(&leecher, &looped.hash, |r| r != "not contacted");
    assert_eq!(
        tracker_results(&st),
        vec!["error: redirect loop".to_string()]
    );
    let st = wait_tracker(&leecher, &chained.hash, |r| r != "not contacted");
    assert_eq!(
        tracker_results(&st),
        vec!["error: redirect loop (more than 3 redirects)".to_string()]
    );
    wait_log_line(
        &leecher,
        &[&to_self.url(), "redirect loop", "trying again in"],
    );
    wait_log_line(
        &leecher,
        &[&chain.url(), "more than 3 redirects", "trying again in"],
    );

    // Self: every request went to the same target, one per attempt.
    let targets = to_self.targets.lock().unwrap().clone();
    assert!(!targets.is_empty());
    assert!(
        targets.iter().all(|t| t == &targets[0]),
        "self redirect: {targets:?}"
    );
    let attempts = |url: &str| {
        log_text(&leecher)
            .lines()
            .filter(|l| l.contains(url) && l.contains("trying again in"))
            .count() as u64
    };
    let n = to_self.requests();
    assert!(
        n <= attempts(&to_self.url()) + 1,
        "{n} requests for {} attempts",
        attempts(&to_self.url())
    );
    // Chain: /announce, /announce/1, /announce/2, /announce/3, never /announce/4.
    let targets = chain.targets.lock().unwrap().clone();
    let paths: Vec<&str> = targets
        .iter()
        .map(|t| t.split('?').next().unwrap())
        .collect();
    assert_eq!(
        &paths[..4],
        &["/announce", "/announce/1", "/announce/2", "/announce/3"]
    );
    assert!(
        !paths.contains(&"/announce/4"),
        "followed a 4th redirect: {paths:?}"
    );
    // The query (info_hash, peer_id, ...) went along.
    assert!(targets[3].contains("info_hash="), "{}", targets[3]);

    leecher.wait_complete(&bystander.hash, WAIT);
    assert_same_tree(&bystander.dir, &leecher.download_dir.join("bystander"));
    assert_responsive(&leecher);
}

/// Responses that never end. A body streamed as fast as the daemon reads
/// it is cut at the body cap; bodies trickling a byte at a time are cut by
/// the 30 s fetch deadline. The fake servers see the daemon close and stop.
/// While the slow fetches hang on two workers (the daemon has exactly two),
/// a second torrent must still complete: tracker requests must not starve
/// disk work.
#[test]
fn http_tracker_responses_that_never_end() {
    let tmp = TempDir::new("hostile-endless");
    let endless = FakeHttpTracker::start("127.0.0.172", HttpScript::Endless);
    let slow = Duration::from_millis(200);
    let trickle1 = FakeHttpTracker::start("127.0.0.173", HttpScript::Trickle { pause: slow });
    let trickle2 = FakeHttpTracker::start("127.0.0.173", HttpScript::Trickle { pause: slow });
    let endless_t = make_payload(&tmp, "endless", 256 << 10, 9, &[endless.url()]);
    let slow1 = make_payload(&tmp, "slow1", 256 << 10, 10, &[trickle1.url()]);
    let slow2 = make_payload(&tmp, "slow2", 256 << 10, 11, &[trickle2.url()]);
    let bystander = make_payload(&tmp, "bystander", 2 << 20, 12, &[]);
    let seed = seeder(&tmp, "127.0.0.171", &[&bystander]);
    let leecher = DaemonProc::start(tmp.path(), "leecher", "127.0.0.170", &["--workers", "2"]);
    leecher.add(&endless_t.torrent, &[]);
    leecher.add(&slow1.torrent, &[]);
    leecher.add(&slow2.torrent, &[]);
    wait_until("both trickling trackers asked", || {
        trickle1.requests() >= 1 && trickle2.requests() >= 1
    });
    let t0 = Instant::now();
    leecher.add(&bystander.torrent, &[seed.listen]);

    // The endless body: refused at the cap, the connection closed by the daemon.
    let st = wait_tracker(&leecher, &endless_t.hash, |r| r != "not contacted");
    assert_eq!(
        tracker_results(&st),
        vec![format!("error: response larger than {MAX_BODY} bytes")]
    );
    wait_log_line(
        &leecher,
        &[
            &endless.url(),
            &format!("response larger than {MAX_BODY} bytes"),
        ],
    );
    wait_until("the endless server saw the daemon close", || {
        endless.client_closed() >= 1 && endless.finished() == endless.accepted()
    });
    // What was written is the cap plus socket buffers, not an unbounded stream.
    assert!(
        endless.bytes_sent() < 32 << 20,
        "{} bytes sent",
        endless.bytes_sent()
    );

    // The bystander completes while the trickling fetches still hang. (A
    // fetch's result reaches the net thread before any job queued behind it
    // on the same worker, so with starved workers the trackers would show
    // their timeouts by the time the bystander completes.)
    leecher.wait_complete(&bystander.hash, WAIT);
    let took = t0.elapsed();
    let slow_results: Vec<Vec<String>> = [&slow1, &slow2]
        .iter()
        .map(|p| tracker_results(&leecher.status(&p.hash)))
        .collect();
    eprintln!("bystander complete after {took:?}; slow trackers: {slow_results:?}");
    assert!(
        slow_results.iter().all(|r| r == &["not contacted".to_string()]),
        "the bystander completed only after the trickling tracker fetches ended ({took:?}): {slow_results:?}"
    );
    assert_responsive(&leecher);

    // The trickles end at the fetch deadline, with a clear status and line.
    for (t, p) in [(&trickle1, &slow1), (&trickle2, &slow2)] {
        let st = wait_tracker(&leecher, &p.hash, |r| r != "not contacted");
        assert_eq!(tracker_results(&st), vec!["timeout after 30 s".to_string()]);
        wait_log_line(
            &leecher,
            &[&t.url(), "timed out after 30 s", "trying again"],
        );
        wait_until("the trickling server saw the daemon close", || {
            t.finished() >= 1 && t.client_closed() >= 1
        });
        // 30 s at one byte per 200 ms: far below the 800,000 announced.
        assert!(t.bytes_sent() < 10_000, "{} bytes", t.bytes_sent());
        assert_eq!(t.requests(), 1);
    }
    assert_same_tree(&bystander.dir, &leecher.download_dir.join("bystander"));
}

// ---------------------------------------------------------------------------
// UDP tracker.

const UDP_MAGIC: u64 = 0x41727101980;

/// Garbage first (short, wrong transaction ids, huge), then the answer:
/// a real connect response, and for the announce a response with a ragged
/// peer list, followed by a flood of garbage.
fn udp_garbage_script(req: &[u8]) -> Vec<Vec<u8>> {
    if req.len() < 16 {
        return Vec::new();
    }
    let action = u32::from_be_bytes(req[8..12].try_into().unwrap());
    let tx = u32::from_be_bytes(req[12..16].try_into().unwrap());
    let mut out: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0xff],
        b"garbage".to_vec(),
        b"<html>not a tracker</html>".to_vec(),
    ];
    for i in 1..40u32 {
        // Well-formed headers with someone else's transaction id.
        let mut d = (i % 4).to_be_bytes().to_vec();
        d.extend_from_slice(&(tx ^ i).to_be_bytes());
        d.extend_from_slice(&vec![0xa5; (i as usize * 37) % 1500]);
        out.push(d);
    }
    let mut huge = 1u32.to_be_bytes().to_vec();
    huge.extend_from_slice(&(tx ^ 0xdead).to_be_bytes());
    huge.resize(60_000, 7);
    out.push(huge);
    match action {
        0 if u64::from_be_bytes(req[0..8].try_into().unwrap()) == UDP_MAGIC => {
            let mut d = 0u32.to_be_bytes().to_vec();
            d.extend_from_slice(&tx.to_be_bytes());
            d.extend_from_slice(&0x1122_3344_5566_7788u64.to_be_bytes());
            out.push(d);
        }
        1 => {
            // interval, leechers, seeders, then 5 bytes: not whole 6-byte peers.
            let mut d = 1u32.to_be_bytes().to_vec();
            d.extend_from_slice(&tx.to_be_bytes());
            d.extend_from_slice(&1800u32.to_be_bytes());
            d.extend_from_slice(&3u32.to_be_bytes());
            d.extend_from_slice(&4u32.to_be_bytes());
            d.extend_from_slice(&[127, 0, 0, 1, 0]);
            out.push(d);
            // Then a flood.
            for i in 0..2000u32 {
                let mut d = 1u32.to_be_bytes().to_vec();
                d.extend_from_slice(&tx.wrapping_add(1 + i).to_be_bytes());
                d.extend_from_slice(&[0x5a; 100]);
                out.push(d);
            }
        }
        _ => {}
    }
    out
}

/// A UDP tracker that surrounds its answers with garbage datagrams: the
/// garbage is ignored (the connect goes through), the malformed announce
/// answer is a clear error, the flood after it does no harm.
#[test]
fn udp_tracker_answering_garbage() {
    let tmp = TempDir::new("hostile-udp");
    let tracker = FakeUdpTracker::start("127.0.0.179", udp_garbage_script);
    let hostile = make_payload(&tmp, "udpjunk", 256 << 10, 16, &[tracker.url()]);
    let bystander = make_payload(&tmp, "bystander", 2 << 20, 17, &[]);
    let seed = seeder(&tmp, "127.0.0.178", &[&bystander]);
    let leecher = DaemonProc::start(tmp.path(), "leecher", "127.0.0.177", &[]);
    leecher.add(&hostile.torrent, &[]);
    leecher.add(&bystander.torrent, &[seed.listen]);

    let st = wait_tracker(&leecher, &hostile.hash, |r| r != "not contacted");
    let result = tracker_results(&st).remove(0);
    assert!(
        result.starts_with("error: bad UDP packet: ") && result.contains("6-byte"),
        "tracker status: {result}"
    );
    let line = wait_log_line(
        &leecher,
        &[&tracker.url(), "bad UDP packet", "trying again"],
    );
    eprintln!("log: {line}");
    // Exactly one connect and one announce: the garbage around the connect
    // answer neither failed nor repeated the attempt.
    assert_eq!(tracker.actions(), vec![0, 1]);

    leecher.wait_complete(&bystander.hash, WAIT);
    assert_same_tree(&bystander.dir, &leecher.download_dir.join("bystander"));
    assert_responsive(&leecher);
    assert_eq!(
        tracker_results(&leecher.status(&hostile.hash)),
        vec![result]
    );
}

// ---------------------------------------------------------------------------
// Magnet links.

/// A peer serving metadata that does not hash to the info-hash: the fetch
/// refuses it, bans the peer's address with a clear reason (it alone sent
/// the whole dictionary, so it lied), saves nothing; a real seeder added
/// afterwards completes the magnet link.
#[test]
fn magnet_metadata_with_the_wrong_hash_is_refused() {
    let tmp = TempDir::new("hostile-badmeta");
    let content = make_payload(&tmp, "magnetic", 1 << 20, 18, &[]);
    let bystander = make_payload(&tmp, "bystander", 1 << 20, 19, &[]);
    let seed = seeder(&tmp, "127.0.0.181", &[&content, &bystander]);
    let meta = Torrent::from_bytes(&std::fs::read(&content.plain).unwrap()).unwrap();
    assert!(meta.info_bytes.len() <= 16 * 1024, "one metadata piece");
    // Same length, one byte changed inside the piece hashes.
    let mut forged = meta.info_bytes.clone();
    let at = forged.len() - 10;
    forged[at] ^= 0x55;
    let liar =
        FakeMetadataPeer::start("127.0.0.182", meta.info_hash.0, forged.len() as i64, forged);

    let leecher = DaemonProc::start_with_log(tmp.path(), "leecher", "127.0.0.180", &[], DEBUG_LOG);
    leecher.add(&bystander.torrent, &[seed.listen]);
    let (code, out, err) = leecher.cli(&["add", &magnet(&content.hash, &[liar.addr])]);
    assert_eq!(code, 0, "{out}{err}");

    let line = wait_log_line(
        &leecher,
        &["banned 127.0.0.182: metadata: sent metadata that does not match the info-hash"],
    );
    eprintln!("log: {line}");
    wait_until("the liar served and was dropped", || {
        liar.get(|c: &MetaCounters| &c.served) >= 1
            && liar.get(|c: &MetaCounters| &c.closed_by_peer) >= 1
    });
    let st = leecher.status(&content.hash);
    assert_eq!(state(&st), "metadata", "{st}");
    let saved = leecher
        .state_dir
        .join("torrents")
        .join(format!("{}.torrent", content.hash));
    assert!(!saved.exists(), "forged metadata saved");
    assert_responsive(&leecher);

    // A good source: the same link again with the seeder.
    let (code, out, err) = leecher.cli(&[
        "add",
        &magnet(&content.hash, &[]),
        "--peer",
        &seed.listen.to_string(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    leecher.wait_complete(&content.hash, WAIT);
    assert_same_tree(&content.dir, &leecher.download_dir.join("magnetic"));
    let saved_meta = Torrent::from_bytes(&std::fs::read(&saved).unwrap()).unwrap();
    assert_eq!(saved_meta.info_bytes, meta.info_bytes);
    leecher.wait_complete(&bystander.hash, WAIT);
}

/// Metadata of three pieces, a liar that corrupts every piece it sends and
/// answers slowly, then a real seeder joining while the liar's requests are
/// out: the assembled dictionary mixes both and fails its hash, both are
/// dropped (BEP 9 cannot tell which piece was bad), and the link must still
/// complete from the honest seeder.
#[test]
fn magnet_completes_despite_a_lying_peer_alongside_a_good_one() {
    let tmp = TempDir::new("hostile-badmeta-mixed");
    // 600 files with long names: an info dictionary of about 40 KiB.
    let dir = tmp.join("src").join("many");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..600 {
        write_random_file(
            &dir.join(format!("a-file-with-a-rather-long-name-number-{i:04}.bin")),
            100,
            1000 + i,
        );
    }
    let plain = tmp.join("many.torrent");
    let hash = create_torrent(&dir, &plain, "16K");
    let content = Payload {
        dir: dir.clone(),
        torrent: plain.clone(),
        plain,
        hash: hash.clone(),
    };
    let seed = seeder(&tmp, "127.0.0.184", &[&content]);
    let meta = Torrent::from_bytes(&std::fs::read(&content.plain).unwrap()).unwrap();
    let n_pieces = meta.info_bytes.len().div_ceil(16 * 1024);
    assert!(n_pieces >= 3, "{} bytes of metadata", meta.info_bytes.len());
    let forged: Vec<u8> = meta.info_bytes.iter().map(|b| b ^ 0x20).collect();
    let liar = FakeMetadataPeer::start_with_delay(
        "127.0.0.185",
        meta.info_hash.0,
        forged.len() as i64,
        forged,
        Duration::from_secs(2),
    );

    let leecher = DaemonProc::start_with_log(tmp.path(), "leecher", "127.0.0.183", &[], DEBUG_LOG);
    let link = magnet(&hash, &[liar.addr]);
    let (code, out, err) = leecher.cli(&["add", &link]);
    assert_eq!(code, 0, "{out}{err}");
    wait_until("the liar was asked for metadata", || {
        liar.get(|c: &MetaCounters| &c.requests) >= 1
    });
    let (code, out, err) = leecher.cli(&["add", &link, "--peer", &seed.listen.to_string()]);
    assert_eq!(code, 0, "{out}{err}");
    let deadline = Instant::now() + WAIT;
    loop {
        let st = leecher.status(&hash);
        let pieces = st.get("pieces").and_then(Json::as_u64).unwrap_or(0);
        if pieces > 0 && st.get("pieces_have").and_then(Json::as_u64) == Some(pieces) {
            break;
        }
        if Instant::now() > deadline {
            let drops = log_text(&leecher)
                .lines()
                .filter(|l| l.contains("closed: metadata"))
                .count();
            panic!(
                "magnet not complete after {WAIT:?} ({drops} metadata drops, liar served {} pieces): {st}\n{}",
                liar.get(|c: &MetaCounters| &c.served),
                leecher.log_tail(20)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_same_tree(&dir, &leecher.download_dir.join("many"));
    let drops: Vec<String> = log_text(&leecher)
        .lines()
        .filter(|l| l.contains("closed: metadata"))
        .map(str::to_string)
        .collect();
    eprintln!(
        "liar served {} pieces; metadata drops: {drops:#?}",
        liar.get(|c: &MetaCounters| &c.served)
    );
    // The scenario happened: a mixed assembly failed and both were dropped.
    let mixed = "closed: metadata: one of 2 peers whose metadata pieces together do not match the info-hash";
    for ip in ["127.0.0.184", "127.0.0.185"] {
        assert!(
            drops.iter().any(|l| l.contains(ip) && l.contains(mixed)),
            "{ip} not dropped after the mixed assembly: {drops:#?}"
        );
    }
    assert!(liar.get(|c: &MetaCounters| &c.served) >= 1);
}

/// Peers announcing an absurd `metadata_size` (1 GiB, 30 MiB + 1, 0) are
/// refused before any request or allocation: each dropped with the reason,
/// the daemon's peak RSS stays small, the API answers, another torrent
/// completes.
#[test]
fn magnet_peer_with_a_huge_metadata_size_is_refused() {
    let tmp = TempDir::new("hostile-bigmeta");
    let bystander = make_payload(&tmp, "bystander", 2 << 20, 20, &[]);
    let seed = seeder(&tmp, "127.0.0.187", &[&bystander]);
    let hash = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";
    let info_hash: [u8; 20] = peerlet::hash::from_hex(hash).unwrap();
    let sizes: [(i64, &str); 3] = [
        (
            1 << 30,
            "reports metadata_size 1073741824 bytes, over the 30 MiB limit",
        ),
        (
            (30 << 20) + 1,
            "reports metadata_size 31457281 bytes, over the 30 MiB limit",
        ),
        (0, "reports metadata_size 0"),
    ];
    let fakes: Vec<FakeMetadataPeer> = sizes
        .iter()
        .enumerate()
        .map(|(i, (size, _))| {
            FakeMetadataPeer::start(
                &format!("127.0.0.{}", 188 + i),
                info_hash,
                *size,
                vec![b'x'; 16 * 1024],
            )
        })
        .collect();

    let leecher = DaemonProc::start_with_log(tmp.path(), "leecher", "127.0.0.186", &[], DEBUG_LOG);
    let rss_before = proc_kib(leecher.pid(), "VmHWM:");
    let addrs: Vec<_> = fakes.iter().map(|f| f.addr).collect();
    let (code, out, err) = leecher.cli(&["add", &magnet(hash, &addrs)]);
    assert_eq!(code, 0, "{out}{err}");
    leecher.add(&bystander.torrent, &[seed.listen]);

    for (i, (_, reason)) in sizes.iter().enumerate() {
        let ip = format!("127.0.0.{}", 188 + i);
        let line = wait_log_line(&leecher, &[&ip, "closed: metadata: ", reason]);
        eprintln!("log: {line}");
        let f = &fakes[i];
        wait_until("the fake saw the daemon close", || {
            f.get(|c: &MetaCounters| &c.closed_by_peer) >= 1
        });
        assert_eq!(
            f.get(|c: &MetaCounters| &c.requests),
            0,
            "a metadata piece was requested from the peer reporting {reason}"
        );
    }
    let st = leecher.status(hash);
    assert_eq!(state(&st), "metadata", "{st}");
    assert_responsive(&leecher);
    leecher.wait_complete(&bystander.hash, WAIT);

    let rss = proc_kib(leecher.pid(), "VmHWM:");
    eprintln!("leecher VmHWM before {rss_before:?} KiB, after {rss:?} KiB");
    if let Some(kib) = rss {
        assert!(kib < 128 * 1024, "peak RSS {kib} KiB");
    }
}
