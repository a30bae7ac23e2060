//! A flood of KRPC at a seeder's shared UDP port: 100,000 datagrams (junk,
//! malformed and valid-looking queries of every method, forged
//! announces) from 1,000 loopback addresses (127.0.64.1 – 127.0.67.250).
//! A transfer running at the same time completes byte-identical, the
//! daemon's peak RSS stays within its memory budget, and what the daemon
//! sends back is never more than the spec's answers to what it was sent:
//! no amplification.

mod common;

use common::daemon::{one_file_torrent, start_seeder, DaemonProc};
use common::{proc_kib, TempDir};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Datagrams sent in all, and the source addresses they come from.
const DATAGRAMS: usize = 100_000;
const SOURCES: usize = 1_000;

/// A bencoded KRPC query: `method` with the `a` dictionary `args` (its
/// inner bytes, keys sorted), transaction id `t`.
fn query(method: &str, args: &[u8], t: u32) -> Vec<u8> {
    let mut q = b"d1:ad".to_vec();
    q.extend_from_slice(args);
    q.extend_from_slice(format!("e1:q{}:{method}1:t4:", method.len()).as_bytes());
    q.extend_from_slice(&t.to_be_bytes());
    q.extend_from_slice(b"1:y1:qe");
    q
}

fn id20(seed: u64) -> [u8; 20] {
    let mut out = [0u8; 20];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for b in out.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    out
}

fn bytes_arg(key: &str, v: &[u8]) -> Vec<u8> {
    let mut a = format!("{}:{key}{}:", key.len(), v.len()).into_bytes();
    a.extend_from_slice(v);
    a
}

/// Datagram `i` of the flood, and its kind.
fn datagram(i: usize) -> (&'static str, Vec<u8>) {
    let id = bytes_arg("id", &id20(i as u64));
    let target = id20(i as u64 ^ 0xABCD);
    match i % 8 {
        0 => ("ping", query("ping", &id, i as u32)),
        1 => {
            let mut a = id.clone();
            a.extend(bytes_arg("target", &target));
            ("find_node", query("find_node", &a, i as u32))
        }
        2 => {
            let mut a = id.clone();
            a.extend(bytes_arg("info_hash", &target));
            ("get_peers", query("get_peers", &a, i as u32))
        }
        3 => {
            // A forged announce: a token we never gave.
            let mut a = id.clone();
            a.extend(bytes_arg("info_hash", &target));
            a.extend(b"4:porti6881e");
            a.extend(bytes_arg("token", b"forged!!"));
            ("announce_peer", query("announce_peer", &a, i as u32))
        }
        4 => {
            // Unknown method.
            ("unknown", query("vote", &id, i as u32))
        }
        5 => {
            // Truncated at a random point.
            let mut q = query("find_node", &id, i as u32);
            q.truncate(1 + i % (q.len() - 1));
            ("truncated", q)
        }
        6 => {
            // An answer nobody asked for.
            let mut r = b"d1:rd".to_vec();
            r.extend(id);
            r.extend(b"5:nodes0:e1:t2:zz1:y1:re");
            ("unsolicited", r)
        }
        _ => {
            // Junk that starts like KRPC.
            let mut j = b"d1:y1:q".to_vec();
            j.extend((0..(i % 300)).map(|k| (k * 31 + i) as u8));
            ("junk", j)
        }
    }
}

#[test]
fn a_krpc_flood_leaves_a_transfer_alone_and_is_not_amplified() {
    let tmp = TempDir::new("dht-flood");
    let torrent = tmp.join("f.torrent");
    let hash = one_file_torrent(
        &tmp.join("src"),
        "flood.bin",
        24 << 20,
        63,
        &torrent,
        "256K",
    );
    let seeder = start_seeder(
        tmp.path(),
        "seeder",
        "127.0.63.1",
        &tmp.join("src"),
        &torrent,
        &hash,
    );
    std::thread::sleep(Duration::from_secs(1));
    let idle = proc_kib(seeder.pid(), "VmHWM:").expect("VmHWM");
    let target: SocketAddr = seeder.listen;

    // The sources: 1,000 sockets, each on its own address.
    let socks: Vec<UdpSocket> = (0..SOURCES)
        .map(|i| {
            let ip = format!("127.0.{}.{}", 64 + i / 250, 1 + i % 250);
            let s = UdpSocket::bind(format!("{ip}:0")).unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();

    // The leecher starts as the flood starts.
    let leecher = DaemonProc::start(tmp.path(), "leecher", "127.0.63.2", &[]);
    leecher.add(&torrent, &[seeder.listen]);

    let kinds = [
        "ping",
        "find_node",
        "get_peers",
        "announce_peer",
        "unknown",
        "truncated",
        "unsolicited",
        "junk",
    ];
    let mut sent_bytes = vec![0u64; kinds.len()];
    let mut got_bytes = vec![0u64; kinds.len()];
    let mut got = vec![0u64; kinds.len()];
    // The daemon's own queries to the flood's addresses (it may ping a
    // node that queried it): (datagrams, bytes).
    let mut asked = (0u64, 0u64);
    let mut buf = [0u8; 2048];
    let drain = |socks: &[UdpSocket],
                 got: &mut [u64],
                 got_bytes: &mut [u64],
                 asked: &mut (u64, u64),
                 buf: &mut [u8]| {
        for s in socks {
            // Bounded: a socket holds at most what its buffer took.
            for _ in 0..64 {
                match s.recv_from(buf) {
                    Ok((n, _)) if is_query(&buf[..n]) => {
                        asked.0 += 1;
                        asked.1 += n as u64;
                    }
                    Ok((n, _)) => {
                        // The reply's transaction id tells which query it answers.
                        let k = transaction_kind(&buf[..n]);
                        got[k] += 1;
                        got_bytes[k] += n as u64;
                    }
                    Err(_) => break,
                }
            }
        }
    };
    let t0 = Instant::now();
    for i in 0..DATAGRAMS {
        let (kind, d) = datagram(i);
        let k = kinds.iter().position(|x| *x == kind).unwrap();
        sent_bytes[k] += d.len() as u64;
        let _ = socks[i % SOURCES].send_to(&d, target);
        if i % 5_000 == 4_999 {
            drain(&socks, &mut got, &mut got_bytes, &mut asked, &mut buf);
        }
    }
    let flood_time = t0.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    drain(&socks, &mut got, &mut got_bytes, &mut asked, &mut buf);

    let done = leecher.wait_complete(&hash, Duration::from_secs(120));
    let elapsed = t0.elapsed();
    assert!(
        std::fs::read(leecher.download_dir.join("src").join("flood.bin")).unwrap()
            == std::fs::read(tmp.join("src").join("flood.bin")).unwrap(),
        "{done}"
    );
    let peak = proc_kib(seeder.pid(), "VmHWM:").expect("VmHWM");
    let total_sent: u64 = sent_bytes.iter().sum();
    let total_got: u64 = got_bytes.iter().sum();
    eprintln!(
        "flood: {DATAGRAMS} datagrams ({total_sent} B) from {SOURCES} addresses in {flood_time:?}; \
         {} answers ({total_got} B), {} queries of its own ({} B); transfer done {elapsed:?} after the flood began; \
         VmHWM idle {idle} KiB, peak {peak} KiB",
        got.iter().sum::<u64>(),
        asked.0,
        asked.1
    );
    for (i, k) in kinds.iter().enumerate() {
        eprintln!(
            "  {k:>13}: sent {:>9} B, answered {:>6} times, {:>8} B",
            sent_bytes[i], got[i], got_bytes[i]
        );
    }
    // An answer nobody asked for is never answered.
    let i = kinds.iter().position(|x| *x == "unsolicited").unwrap();
    assert_eq!(got_bytes[i], 0, "an unsolicited answer was answered");
    // Per kind, what came back is at most the spec's answer size times the
    // queries: a ping's answer (or an error) is no larger than what it
    // answers; find_node and
    // get_peers answers (8 nodes, 26 bytes each, or a token and values) at
    // most 5 times a query of about 80 bytes; rate limits cut the rest.
    for (k, factor) in [
        ("ping", 1.0),
        ("announce_peer", 1.0),
        ("unknown", 1.0),
        ("truncated", 1.0),
        ("junk", 1.0),
        ("find_node", 5.0),
        ("get_peers", 5.0),
    ] {
        let i = kinds.iter().position(|x| *x == k).unwrap();
        assert!(
            got_bytes[i] as f64 <= factor * sent_bytes[i] as f64,
            "{k}: {} B answered for {} B sent",
            got_bytes[i],
            sent_bytes[i]
        );
    }
    // The node may query a few of the sources (to check them before they
    // enter its table), within its own rate: a small share of the flood.
    assert!(
        asked.1 <= total_sent / 20,
        "the daemon sent {} B of its own queries to the flood's sources",
        asked.1
    );
    assert!(
        total_got + asked.1 <= total_sent,
        "answers ({total_got} B) outweigh the flood ({total_sent} B)"
    );
    // The seeder's memory: its budget (8 MiB by default) and some slack.
    if !seeder.emulated() {
        assert!(
            peak <= idle + (10 << 10),
            "peak RSS {peak} KiB over idle {idle} KiB + 10 MiB"
        );
    }
}

/// A KRPC query (`y` = `q`), not an answer or an error.
fn is_query(d: &[u8]) -> bool {
    d.windows(6).any(|w| w == b"1:y1:q")
}

/// Which kind of query a reply answers: the flood's transaction ids are
/// the datagram's index (4 bytes, big-endian), and index % 8 is its kind.
fn transaction_kind(reply: &[u8]) -> usize {
    let Some(p) = reply.windows(5).position(|w| w == b"1:t4:") else {
        return 7;
    };
    match reply.get(p + 5..p + 9) {
        Some(t) => (u32::from_be_bytes([t[0], t[1], t[2], t[3]]) % 8) as usize,
        None => 7,
    }
}
