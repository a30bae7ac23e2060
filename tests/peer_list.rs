//! The peer list in a public-swarm shape: a leecher whose three trackers
//! (three tiers, announced in parallel) name 2,000 dead addresses and one
//! live seeder (last in the second reply, where the old list of 500 refused it)
//! finds the seeder within 30 s, downloads byte-identical data, and drops
//! the dead addresses after three failures each (`peerlet_forgotten_peers`
//! in /metrics, the trackers' `known` count in the status).
//!
//! Dead addresses: most refuse at once (nothing listens: RST); some hang
//! (a listener with a backlog of one, filled and never accepted, so
//! further SYNs are dropped and the dial runs into the connect timeout).
//! Addresses: daemons on 127.0.54.0/24, hanging listeners on
//! 127.0.55.0/24, refusing addresses on 127.0.56.0/24–127.0.59.0/24.

mod common;

use common::daemon::{assert_same_tree, create_torrent, create_torrent_with, DaemonProc};
use common::fake_tracker::{compact_peers_body, FakeHttpTracker, HttpScript};
use common::{write_random_file, TempDir};
use peerlet::json::Json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Addresses one tracker reply holds (the most it may).
const PER_REPLY: usize = 1000;
/// Dead addresses in all (both replies), besides the seeder.
const N_DEAD: usize = 2000;
/// Of the dead ones, those whose dials hang until the connect timeout.
const N_HANGING: usize = 12;

/// A listener on `ip` whose accept queue is full: dials to it hang.
struct Hanging {
    addr: SocketAddr,
    _listener: socket2::Socket,
    _fillers: Vec<socket2::Socket>,
}

fn hanging(ip: &str) -> Hanging {
    use socket2::{Domain, Socket, Type};
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    l.bind(&format!("{ip}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..3 {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&addr.into());
        fillers.push(s);
    }
    std::thread::sleep(Duration::from_millis(50));
    Hanging {
        addr,
        _listener: l,
        _fillers: fillers,
    }
}

/// `GET /metrics`: the value of the unlabelled sample `name`.
fn metric(d: &DaemonProc, name: &str) -> Option<u64> {
    let mut s = TcpStream::connect(d.api.as_str()).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        d.api
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `sources[].known` of source `source` in a torrent status.
fn known_from(st: &Json, source: &str) -> u64 {
    st.get("sources")
        .and_then(Json::as_array)
        .and_then(|a| {
            a.iter()
                .find(|s| s.get("source").and_then(Json::as_str) == Some(source))
        })
        .and_then(|s| s.get("known").and_then(Json::as_u64))
        .unwrap_or(0)
}

#[test]
fn a_leecher_finds_the_one_seeder_among_dead_addresses() {
    let tmp = TempDir::new("peer-list");
    let dir = tmp.join("src").join("payload");
    std::fs::create_dir_all(&dir).unwrap();
    write_random_file(&dir.join("data.bin"), 4 << 20, 54);
    let plain = tmp.join("plain.torrent");
    let hash = create_torrent(&dir, &plain, "64K");

    let seed = DaemonProc::start(tmp.path(), "seeder", "127.0.54.2", &[]);
    common::daemon::copy_tree(&dir, &seed.download_dir.join("payload"));
    seed.add(&plain, &[]);
    seed.wait_complete(&hash, Duration::from_secs(60));

    let hang: Vec<Hanging> = (0..N_HANGING)
        .map(|i| hanging(&format!("127.0.55.{}", i + 1)))
        .collect();
    // Do they hang? (A kernel that answers anyway only makes the test easier.)
    let probe = TcpStream::connect_timeout(&hang[0].addr, Duration::from_millis(300));
    eprintln!("a dial to a full backlog: {:?}", probe.map(|_| "connected"));
    let mut addrs: Vec<SocketAddr> = hang.iter().map(|h| h.addr).collect();
    let mut i = 0u32;
    while addrs.len() < N_DEAD {
        // Distinct addresses (one connection per address and torrent).
        let ip = [127, 0, 56 + (i / 250 % 4) as u8, (i % 250) as u8 + 1];
        addrs.push(SocketAddr::from((ip, 9 + (i / 1000) as u16)));
        i += 1;
    }
    // Spread the hanging ones through the replies; the seeder last.
    addrs.sort_by_key(|a| peerlet::hash::crc32c(a.to_string().as_bytes()));
    // 1,000 + (999 and the seeder) + 1: three replies, three tiers.
    let mut second: Vec<SocketAddr> = addrs.split_off(PER_REPLY);
    let third: Vec<SocketAddr> = second.split_off(PER_REPLY - 1);
    second.push(seed.listen);
    let first_tracker = FakeHttpTracker::start(
        "127.0.54.9",
        HttpScript::Body(compact_peers_body(PER_REPLY, &addrs)),
    );
    let second_tracker = FakeHttpTracker::start(
        "127.0.54.10",
        HttpScript::Body(compact_peers_body(second.len(), &second)),
    );
    let third_tracker = FakeHttpTracker::start(
        "127.0.54.11",
        HttpScript::Body(compact_peers_body(third.len(), &third)),
    );
    let torrent = tmp.join("tracked.torrent");
    create_torrent_with(
        &dir,
        &torrent,
        "64K",
        &[
            first_tracker.url(),
            second_tracker.url(),
            third_tracker.url(),
        ],
        &[],
    );

    let leecher = DaemonProc::start(tmp.path(), "leecher", "127.0.54.1", &[]);
    let start = Instant::now();
    leecher.add(&torrent, &[]);
    let first = loop {
        let st = leecher.status(&hash);
        if st.get("pieces_have").and_then(Json::as_u64).unwrap_or(0) > 0 {
            break start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no piece after 120 s: {st}\nlog:\n{}",
            leecher.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("time to the first verified piece: {first:?}");
    assert!(
        first < Duration::from_secs(30),
        "first piece after {first:?}"
    );
    leecher.wait_complete(&hash, Duration::from_secs(60));
    assert_same_tree(&dir, &leecher.download_dir.join("payload"));

    // The dead addresses go after three failures each (2 s and 4 s of
    // back-off between them; the hanging ones take the connect timeout).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = leecher.status(&hash);
        let known = known_from(&st, "tracker");
        let forgotten = metric(&leecher, "peerlet_forgotten_peers").unwrap_or(0);
        if known <= 1 && forgotten as usize >= N_DEAD {
            eprintln!(
                "all dead addresses forgotten after {:?} (known {known}, forgotten {forgotten})",
                start.elapsed()
            );
            assert_eq!(metric(&leecher, "peerlet_known_peers"), Some(known));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "known {known}, forgotten {forgotten} after {:?}",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
