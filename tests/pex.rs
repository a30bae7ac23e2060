//! Peer exchange (BEP 11) between daemons on loopback: a leecher that knows
//! only one peer learns the seeder from it through ut_pex and downloads from
//! the seeder (the per-source counters of `status --json` prove it); a
//! private torrent never learns peers that way; a peer flooding PEX
//! addresses gets at most the per-message cap in, and the rest is ignored.

mod common;

use common::daemon::{create_torrent, create_torrent_with, DaemonProc};
use common::{write_random_file, TempDir};
use peerlet::json::Json;
use peerlet::wire::peer::{Handshake, Message, HANDSHAKE_LEN};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(60);

/// `sources` of a torrent's status: source → (known, connected, downloaded).
fn source(status: &Json, name: &str) -> (u64, u64, u64) {
    let list = status
        .get("sources")
        .and_then(Json::as_array)
        .unwrap_or_default();
    for s in list {
        if s.get("source").and_then(Json::as_str) == Some(name) {
            let u = |k: &str| s.get(k).and_then(Json::as_u64).unwrap_or(0);
            return (u("known"), u("connected"), u("downloaded"));
        }
    }
    (0, 0, 0)
}

fn peers(status: &Json) -> u64 {
    status.get("peers").and_then(Json::as_u64).unwrap_or(0)
}

/// Polls `status` until `ok` holds; panics with the log after `TIMEOUT`.
fn wait_until(d: &DaemonProc, hash: &str, what: &str, ok: impl Fn(&Json) -> bool) -> Json {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let st = d.status(hash);
        if ok(&st) {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "{}: {what} did not happen: {st}\n{}",
            d.name,
            d.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A seeder C, a leecher B dialling C (downloading slowly, so it has little
/// to give), and a leecher A told only of B.
struct Trio {
    _tmp: TempDir,
    c: DaemonProc,
    b: DaemonProc,
    a: DaemonProc,
    hash: String,
}

fn trio(name: &str, ips: [&str; 3], private: bool) -> Trio {
    let tmp = TempDir::new(name);
    let src = tmp.join("payload.bin");
    write_random_file(&src, 8 << 20, 17);
    let torrent = tmp.join("payload.torrent");
    let extra: &[&str] = if private { &["--private"] } else { &[] };
    let hash = create_torrent_with(&src, &torrent, "64K", &[], extra);
    let c = DaemonProc::start(tmp.path(), "c", ips[2], &[]);
    std::fs::create_dir_all(&c.download_dir).unwrap();
    std::fs::copy(&src, c.download_dir.join("payload.bin")).unwrap();
    c.add(&torrent, &[]);
    c.wait_complete(&hash, TIMEOUT);
    // B leeches at 32 KiB/s: it stays connected to C all along.
    let b = DaemonProc::start(tmp.path(), "b", ips[1], &["--download-limit", "32768"]);
    b.add(&torrent, &[c.listen]);
    wait_until(&b, &hash, "B connected to C", |st| peers(st) >= 1);
    let a = DaemonProc::start(tmp.path(), "a", ips[0], &[]);
    a.add(&torrent, &[b.listen]);
    Trio {
        _tmp: tmp,
        c,
        b,
        a,
        hash,
    }
}

#[test]
fn leecher_learns_the_seeder_through_pex_and_downloads_from_it() {
    let t = trio(
        "pex-trio",
        ["127.0.0.111", "127.0.0.112", "127.0.0.113"],
        false,
    );
    let st = t.a.wait_complete(&t.hash, TIMEOUT);
    let total = st.get("total_size").and_then(Json::as_u64).unwrap();
    let (pex_known, _, _) = source(&st, "pex");
    let (manual_known, _, manual_down) = source(&st, "manual");
    assert_eq!(manual_known, 1, "A was told of B only: {st}");
    assert!(pex_known >= 1, "A learned no peer through PEX: {st}");
    // Whatever did not come from B came from C, which A could only reach
    // through PEX: A dialled the address B sent (source `pex`), or C dialled
    // A after B told C of A (source `incoming`). B downloads at 32 KiB/s, so
    // most of the 8 MiB must have come from C.
    let downloaded = st.get("downloaded").and_then(Json::as_u64).unwrap();
    let from_c = downloaded - manual_down;
    assert!(
        from_c >= total / 2,
        "only {from_c} of {total} bytes came from C (B gave {manual_down}): {st}"
    );
    // C sees A as an incoming peer it uploaded to.
    let c_st = t.c.status(&t.hash);
    let uploaded = c_st.get("uploaded").and_then(Json::as_u64).unwrap_or(0);
    assert!(uploaded >= total / 2, "C uploaded only {uploaded}: {c_st}");
    assert!(t.b.status(&t.hash).get("name").is_some());
}

#[test]
fn private_torrents_do_not_exchange_peers() {
    let t = trio(
        "pex-private",
        ["127.0.0.114", "127.0.0.115", "127.0.0.116"],
        true,
    );
    // A and B talk (A gets some of B's slow trickle); give PEX its chance.
    wait_until(&t.a, &t.hash, "A connected to B", |st| peers(st) >= 1);
    std::thread::sleep(Duration::from_secs(3));
    let st = t.a.status(&t.hash);
    assert_eq!(source(&st, "pex"), (0, 0, 0), "{st}");
    assert_eq!(peers(&st), 1, "A must know B only: {st}");
    drop(t.c);
}

/// A BitTorrent peer on a plain socket that offers ut_pex and then sends
/// `n` made-up addresses in one ut_pex message, twice.
fn flood(to: SocketAddr, info_hash: [u8; 20], n: u32) -> TcpStream {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    Handshake::ours(info_hash, *b"-XX0001-pexflood0000").emit(&mut out);
    s.write_all(&out).unwrap();
    let mut hs = [0u8; HANDSHAKE_LEN];
    s.read_exact(&mut hs).unwrap();
    let mut send = |msg: Message| {
        let mut buf = Vec::new();
        msg.emit(&mut buf);
        s.write_all(&buf).unwrap();
    };
    send(Message::Extended {
        id: 0,
        payload: b"d1:md6:ut_pexi1eee",
    });
    let mut compact = Vec::new();
    for i in 0..n {
        compact.extend_from_slice(&[127, 0, 0, 119]);
        compact.extend_from_slice(&(1024 + (i % 60000) as u16).to_be_bytes());
    }
    let mut payload = format!("d5:added{}:", compact.len()).into_bytes();
    payload.extend_from_slice(&compact);
    payload.push(b'e');
    // peerlet's ut_pex id is 2 (its extended handshake says so).
    for _ in 0..2 {
        send(Message::Extended {
            id: 2,
            payload: &payload,
        });
    }
    s
}

#[test]
fn a_pex_flood_is_capped() {
    let tmp = TempDir::new("pex-flood");
    let src = tmp.join("payload.bin");
    write_random_file(&src, 1 << 20, 18);
    let torrent = tmp.join("payload.torrent");
    let hash = create_torrent(&src, &torrent, "64K");
    let a = DaemonProc::start(tmp.path(), "a", "127.0.0.117", &[]);
    a.add(&torrent, &[]);
    let info_hash: [u8; 20] = hex(&hash);
    // Connections wait until the torrent runs (its files probed).
    wait_until(&a, &hash, "the torrent running", |st| {
        st.get("state").and_then(Json::as_str) == Some("downloading")
    });
    let _conn = flood(a.listen, info_hash, 5000);
    let st = wait_until(&a, &hash, "PEX addresses taken", |st| {
        source(st, "pex").0 > 0
    });
    // Give the second message (and any late processing) time to land.
    std::thread::sleep(Duration::from_secs(2));
    let st2 = a.status(&hash);
    let (known, _, _) = source(&st2, "pex");
    assert!(
        known <= peerlet::swarm::pex::MAX_NEW as u64,
        "{known} PEX addresses taken from one peer: {st2}"
    );
    assert!(source(&st, "pex").0 >= 1);
    let log = std::fs::read_to_string(&a.log).unwrap();
    assert!(
        log.contains("addresses offered, taking at most 50"),
        "no log line about the capped PEX message:\n{}",
        a.log_tail(30)
    );
    // The daemon still answers and still has the torrent.
    assert!(a.try_status(&hash).is_some());
    let _ = Path::new(&a.log);
}

fn hex(s: &str) -> [u8; 20] {
    let mut out = [0u8; 20];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}
