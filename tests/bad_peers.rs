//! Peers that lie or misbehave: a seeder serving corrupt pieces is caught
//! and banned while honest peers are not, and hostile connections are
//! dropped without disturbing a transfer in progress.

mod common;

use common::daemon::{assert_same_tree, one_file_torrent, DaemonProc};
use common::fake_peer::FakeSeeder;
use common::TempDir;
use peerlet::json::Json;
use peerlet::metainfo::Torrent;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn num(j: &Json, k: &str) -> u64 {
    j.get(k).and_then(Json::as_u64).unwrap_or(0)
}

fn copy_payload(from: &std::path::Path, to: &std::path::Path) {
    for f in peerlet::storage::walk(from).unwrap() {
        let dest = to.join(f.relative.join("/"));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&f.path, &dest).unwrap();
    }
}

#[test]
fn corrupt_seeder_is_banned_and_honest_ones_are_not() {
    let tmp = TempDir::new("corrupt");
    let payload = tmp.join("payload");
    let torrent_path = tmp.join("p.torrent");
    let hash = one_file_torrent(&payload, "data.bin", 12 << 20, 21, &torrent_path, "64K");
    let torrent = Torrent::from_bytes(&std::fs::read(&torrent_path).unwrap()).unwrap();

    // The liar corrupts every third piece; the honest seeder is slow, so the liar gets work.
    let liar = FakeSeeder::start("127.0.0.61", torrent, tmp.path().to_path_buf(), |p| {
        p % 3 == 0
    });
    let honest = DaemonProc::start(
        tmp.path(),
        "honest",
        "127.0.0.62",
        &["--upload-limit", "2000000"],
    );
    copy_payload(&payload, &honest.download_dir.join("payload"));
    honest.add(&torrent_path, &[]);
    honest.wait_complete(&hash, Duration::from_secs(60));

    let leecher = DaemonProc::start(tmp.path(), "leecher", "127.0.0.63", &[]);
    leecher.add(&torrent_path, &[liar.addr, honest.listen]);
    let st = leecher.wait_complete(&hash, Duration::from_secs(120));
    assert_same_tree(&payload, &leecher.download_dir.join("payload"));
    assert!(
        num(&st, "hash_failures") >= 1,
        "the liar's pieces should have failed: {st}"
    );
    assert!(liar.served.load(std::sync::atomic::Ordering::Relaxed) > 0);
    let log = std::fs::read_to_string(&leecher.log).unwrap();
    for line in log
        .lines()
        .filter(|l| l.contains("bann") || l.contains("failed its hash"))
    {
        eprintln!("{line}");
    }
    eprintln!("hash failures: {}", num(&st, "hash_failures"));
    assert!(
        log.contains("banned 127.0.0.61"),
        "liar not banned:\n{}",
        leecher.log_tail(30)
    );
    assert!(
        !log.contains("banned 127.0.0.62"),
        "honest seeder banned:\n{}",
        leecher.log_tail(30)
    );
    // Once banned, the liar is not dialled again.
    let accepted = liar.accepted.load(std::sync::atomic::Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        liar.accepted.load(std::sync::atomic::Ordering::Relaxed),
        accepted
    );
}

/// Connects, optionally sends a valid handshake, then `then`; returns how
/// long the daemon took to close the connection (None: still open after `wait`).
fn attack(
    addr: SocketAddr,
    info_hash: &[u8; 20],
    handshake: bool,
    then: &[u8],
    wait: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    if handshake {
        let mut h = vec![19];
        h.extend_from_slice(b"BitTorrent protocol");
        h.extend_from_slice(&[0; 8]);
        h.extend_from_slice(info_hash);
        h.extend_from_slice(b"-XX0001-attackattack");
        s.write_all(&h).unwrap();
    }
    let _ = s.write_all(then);
    let mut buf = [0u8; 65536];
    while start.elapsed() < wait {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

#[test]
fn hostile_connections_are_dropped_and_transfers_go_on() {
    let tmp = TempDir::new("hostile");
    let payload = tmp.join("payload");
    let torrent_path = tmp.join("p.torrent");
    let hash = one_file_torrent(&payload, "data.bin", 16 << 20, 31, &torrent_path, "64K");
    let info_hash = peerlet::hash::from_hex(&hash).unwrap();

    let seeder = DaemonProc::start(
        tmp.path(),
        "seeder",
        "127.0.0.71",
        &["--upload-limit", "3000000"],
    );
    copy_payload(&payload, &seeder.download_dir.join("payload"));
    seeder.add(&torrent_path, &[]);
    seeder.wait_complete(&hash, Duration::from_secs(60));
    let leecher = DaemonProc::start(tmp.path(), "leecher", "127.0.0.72", &[]);
    leecher.add(&torrent_path, &[seeder.listen]);

    let quick = Duration::from_secs(5);
    let a = seeder.listen;
    // A length prefix of 2 GiB after the handshake.
    assert!(
        attack(a, &info_hash, true, &[0x7f, 0xff, 0xff, 0xff], quick).is_some(),
        "oversized length prefix"
    );
    // A request outside the torrent.
    let mut req = vec![0, 0, 0, 1, 2];
    req.extend_from_slice(&[0, 0, 0, 13, 6, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0x40, 0]);
    assert!(
        attack(a, &info_hash, true, &req, quick).is_some(),
        "request outside the torrent"
    );
    // Garbage after the handshake.
    assert!(
        attack(
            a,
            &info_hash,
            true,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            quick
        )
        .is_some(),
        "garbage after the handshake"
    );
    // Garbage instead of a handshake.
    assert!(
        attack(a, &info_hash, false, b"\x13BitTorrent protocoX", quick).is_some(),
        "bad handshake"
    );
    // A handshake for a torrent the seeder does not have.
    assert!(
        attack(a, &[9; 20], true, b"", quick).is_some(),
        "unknown info-hash"
    );
    // Nothing at all: closed by the incoming handshake timeout (5 s).
    let silent = attack(a, &info_hash, false, b"", Duration::from_secs(20));
    assert!(
        silent.is_some_and(|d| d >= Duration::from_secs(4)),
        "silent connection: {silent:?}"
    );

    // Meanwhile the real transfer went on.
    leecher.wait_complete(&hash, Duration::from_secs(120));
    assert_same_tree(&payload, &leecher.download_dir.join("payload"));
    let st = seeder.status(&hash);
    assert_eq!(st.get("state").and_then(Json::as_str), Some("seeding"));
}
