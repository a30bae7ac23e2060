//! Peer slots, end to end on loopback (src/net/admission.rs has the rules
//! and their fake-time tests):
//!
//! - Under a half-open flood: a seeder daemon (127.0.22.1) is knocked on by
//!   400 silent TCP connections from 400 addresses (127.0.24.1–200,
//!   127.0.25.1–200), each opened again as soon as the seeder closes it.
//!   Meanwhile a legitimate peer (127.0.22.2, written here with blocking
//!   sockets) must get through the BitTorrent handshake and receive a block
//!   within 2 s of its first try, and `GET /metrics` must never show more
//!   half-open connections than their published maximum.
//! - At the connection limit: idle handshaken peers (127.0.23.1–2) fill a
//!   seeder's (127.0.22.3) settled slots; a new peer (127.0.22.4) is
//!   refused while they are young and takes the slot of one of them once
//!   they are past their grace.
//!
//! The tests run one at a time (the flood would slow the other down).

mod common;

use common::daemon::{one_file_torrent, DaemonProc};
use common::TempDir;
use peerlet::metainfo::Torrent;
use socket2::{Domain, Socket, Type};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Silent connections, one per attacker address.
const ATTACKERS: usize = 400;
/// Attacker threads (each holds `ATTACKERS / THREADS` addresses).
const THREADS: usize = 4;
/// The legitimate peer's budget from its first try to its first block.
const LEGIT_DEADLINE: Duration = Duration::from_secs(2);
/// Upper bound for the whole attack.
const ATTACK_LIMIT: Duration = Duration::from_secs(40);

/// Attacker address `i`: 127.0.24.1–200, then 127.0.25.1–200.
fn attacker_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 24 + (i / 200) as u8, 1 + (i % 200) as u8)
}

/// A TCP connection to `to` from the loopback address `src`.
fn connect_from(src: Ipv4Addr, to: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SocketAddr::new(src.into(), 0).into())?;
    s.connect_timeout(&to.into(), timeout)?;
    Ok(s.into())
}

/// True when the peer closed `s` (end of stream or reset); `s` is non-blocking.
fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

/// What the attack did: connections opened, and how many were closed by
/// the seeder (and opened again).
#[derive(Default)]
struct AttackCounts {
    opened: AtomicU64,
    closed: AtomicU64,
}

/// Holds one silent connection from each of `ips`, opening it again when
/// the seeder closes it, until `stop` (or [`ATTACK_LIMIT`]).
fn attack(ips: Vec<Ipv4Addr>, target: SocketAddr, stop: Arc<AtomicBool>, n: Arc<AttackCounts>) {
    let mut held: Vec<Option<TcpStream>> = ips.iter().map(|_| None).collect();
    let deadline = Instant::now() + ATTACK_LIMIT;
    // Bounded: at most one pass every 2 ms for ATTACK_LIMIT.
    for _ in 0..(ATTACK_LIMIT.as_millis() / 2) {
        if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
            break;
        }
        for (ip, slot) in ips.iter().zip(held.iter_mut()) {
            if let Some(s) = slot.as_mut() {
                if !closed(s) {
                    continue;
                }
                n.closed.fetch_add(1, Ordering::Relaxed);
                *slot = None;
            }
            if let Ok(s) = connect_from(*ip, target, Duration::from_millis(500)) {
                let _ = s.set_nonblocking(true);
                n.opened.fetch_add(1, Ordering::Relaxed);
                *slot = Some(s);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A `name value` sample of a Prometheus text exposition (no labels).
fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse::<f64>().ok().map(|v| v as u64))?
    })
}

/// `GET /metrics` from the API at `api`: the body, or why not.
fn scrape(api: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(api).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(format!("bad answer: {text}")),
    }
}

/// Reads one length-prefixed peer message (`None`: a keep-alive).
fn read_message(s: &mut TcpStream) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 {
        return Ok(None);
    }
    if len > (1 << 20) {
        return Err(std::io::Error::other(format!("a {len} byte message")));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok(Some((body[0], body[1..].to_vec())))
}

/// One try of the legitimate peer, from 127.0.22.2, all of it before
/// `deadline`: handshake, interested, wait for unchoke, request the first
/// block, receive it. The block's bytes.
fn fetch_first_block(
    target: SocketAddr,
    info_hash: [u8; 20],
    deadline: Instant,
) -> Result<Vec<u8>, String> {
    fetch_first_block_from(Ipv4Addr::new(127, 0, 22, 2), target, info_hash, deadline)
}

/// [`fetch_first_block`] from `src`.
fn fetch_first_block_from(
    src: Ipv4Addr,
    target: SocketAddr,
    info_hash: [u8; 20],
    deadline: Instant,
) -> Result<Vec<u8>, String> {
    let left = |what: &str| {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("out of time ({what})"))
    };
    let mut s = connect_from(src, target, left("connect")?).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(left("handshake")?))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    peerlet::wire::peer::Handshake::ours(info_hash, *b"-LG0001-legitimate01").emit(&mut out);
    out.extend_from_slice(&[0, 0, 0, 1, 2]); // interested
    s.write_all(&out)
        .map_err(|e| format!("send handshake: {e}"))?;
    let mut hs = [0u8; 68];
    s.read_exact(&mut hs)
        .map_err(|e| format!("no handshake back: {e}"))?;
    if hs[28..48] != info_hash {
        return Err("handshake for another torrent".into());
    }
    let mut requested = false;
    // Bounded: at most 64 messages before the block.
    for _ in 0..64 {
        s.set_read_timeout(Some(left("messages")?))
            .map_err(|e| e.to_string())?;
        let msg = read_message(&mut s).map_err(|e| format!("read: {e}"))?;
        match msg {
            // Unchoke: ask for the first block.
            Some((1, _)) if !requested => {
                let mut req = vec![0, 0, 0, 13, 6];
                req.extend_from_slice(&0u32.to_be_bytes());
                req.extend_from_slice(&0u32.to_be_bytes());
                req.extend_from_slice(&(16384u32).to_be_bytes());
                s.write_all(&req).map_err(|e| format!("request: {e}"))?;
                requested = true;
            }
            Some((7, body)) if body.len() > 8 => return Ok(body[8..].to_vec()),
            _ => {}
        }
    }
    Err("no block after 64 messages".into())
}

/// The attack, and `GET /metrics` scraped every 50 ms while it lasts.
struct Flood {
    stop: Arc<AtomicBool>,
    counts: Arc<AttackCounts>,
    threads: Vec<std::thread::JoinHandle<()>>,
    poller: std::thread::JoinHandle<()>,
    scrapes: Arc<Mutex<Scrapes>>,
}

/// What the scrapes saw: how many, the most half-open connections, and
/// every scrape over the published maximum (the first 10).
#[derive(Default)]
struct Scrapes {
    n: u64,
    most: u64,
    over: Vec<String>,
}

/// A finished flood.
struct FloodReport {
    opened: u64,
    closed: u64,
    scrapes: Scrapes,
}

impl Flood {
    /// Starts the attack on `target` and the scrapes of `api`; returns once
    /// it has taken hold: every attacker address connected once and the
    /// seeder closed some of them (3 s at most), plus 500 ms.
    fn start(target: SocketAddr, api: &str) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(AttackCounts::default());
        let mut threads = Vec::new();
        for t in 0..THREADS {
            let ips: Vec<Ipv4Addr> = (0..ATTACKERS)
                .filter(|i| i % THREADS == t)
                .map(attacker_ip)
                .collect();
            let (stop, counts) = (stop.clone(), counts.clone());
            threads.push(std::thread::spawn(move || {
                attack(ips, target, stop, counts)
            }));
        }
        let scrapes = Arc::new(Mutex::new(Scrapes::default()));
        let poller = {
            let (stop, scrapes) = (stop.clone(), scrapes.clone());
            let api = api.to_string();
            std::thread::spawn(move || {
                let deadline = Instant::now() + ATTACK_LIMIT;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let got = scrape(&api);
                    let mut s = scrapes.lock().unwrap();
                    match got {
                        Ok(text) => {
                            s.n += 1;
                            let n = sample(&text, "peerlet_connections_half_open").unwrap_or(0);
                            let m = sample(&text, "peerlet_connections_half_open_max").unwrap_or(0);
                            s.most = s.most.max(n);
                            if n > m && s.over.len() < 10 {
                                s.over.push(format!("half_open {n} > max {m}"));
                            }
                        }
                        Err(e) if s.over.len() < 10 => s.over.push(format!("scrape failed: {e}")),
                        Err(_) => {}
                    }
                    drop(s);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let settle = Instant::now() + Duration::from_secs(3);
        while Instant::now() < settle
            && (counts.opened.load(Ordering::Relaxed) < ATTACKERS as u64
                || counts.closed.load(Ordering::Relaxed) == 0)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        Flood {
            stop,
            counts,
            threads,
            poller,
            scrapes,
        }
    }

    fn stop(self) -> FloodReport {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        self.poller.join().unwrap();
        let scrapes = std::mem::take(&mut *self.scrapes.lock().unwrap());
        FloodReport {
            opened: self.counts.opened.load(Ordering::Relaxed),
            closed: self.counts.closed.load(Ordering::Relaxed),
            scrapes,
        }
    }
}

impl std::fmt::Display for FloodReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "attack: {} connections opened, {} closed by the seeder; {} scrapes, half-open at most {}",
            self.opened, self.closed, self.scrapes.n, self.scrapes.most
        )
    }
}

impl FloodReport {
    /// The attack took hold, the scrapes went on, and none showed more
    /// half-open connections than `max` (the published maximum).
    fn check(&self, max: u64) {
        assert!(
            self.opened >= ATTACKERS as u64,
            "the attack did not take hold: {self}"
        );
        assert!(
            self.scrapes.n >= 10,
            "too few scrapes during the attack: {self}"
        );
        assert!(
            self.scrapes.over.is_empty(),
            "peerlet_connections_half_open over peerlet_connections_half_open_max ({max}):\n{}",
            self.scrapes.over.join("\n")
        );
    }
}

#[test]
fn a_peer_gets_in_past_400_silent_connections() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = TempDir::new("peer-slots");
    let payload = tmp.join("payload");
    let torrent_path = tmp.join("p.torrent");
    let hash = one_file_torrent(&payload, "data.bin", 1 << 20, 22, &torrent_path, "64K");
    let torrent = Torrent::from_bytes(&std::fs::read(&torrent_path).unwrap()).unwrap();
    let data = std::fs::read(payload.join("data.bin")).unwrap();

    let seeder = DaemonProc::start(tmp.path(), "seeder", "127.0.22.1", &[]);
    common::daemon::copy_tree(&payload, &seeder.download_dir.join("payload"));
    seeder.add(&torrent_path, &[]);
    seeder.wait_complete(&hash, Duration::from_secs(60));
    let target = seeder.listen;
    let max = sample(
        &scrape(&seeder.api).unwrap(),
        "peerlet_connections_half_open_max",
    )
    .expect("peerlet_connections_half_open_max");

    let flood = Flood::start(target, &seeder.api);

    // The legitimate peer: tries again at once until it has a block, for
    // 2 s from its first try.
    let started = Instant::now();
    let deadline = started + LEGIT_DEADLINE;
    let mut tries = Vec::new();
    let mut got = None;
    // Bounded: at most 200 tries, and the deadline.
    for _ in 0..200 {
        if Instant::now() >= deadline {
            break;
        }
        match fetch_first_block(target, torrent.info_hash.0, deadline) {
            Ok(block) => {
                got = Some(block);
                break;
            }
            Err(e) => {
                tries.push(format!("{:?}: {e}", started.elapsed()));
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    let took = started.elapsed();
    // Half-open counts while the flood goes on after it.
    std::thread::sleep(Duration::from_secs(2));

    let report = flood.stop();
    eprintln!(
        "{report}; legitimate peer: {} after {took:?} ({} failed tries)",
        if got.is_some() { "a block" } else { "nothing" },
        tries.len(),
    );

    let block = got.unwrap_or_else(|| {
        panic!(
            "the legitimate peer got no block within {LEGIT_DEADLINE:?} of its first try; \
             its tries:\n{}\nseeder log:\n{}",
            tries.join("\n"),
            seeder.log_tail(20)
        )
    });
    assert!(
        block[..] == data[..16384],
        "the block differs from the file's first 16 KiB"
    );
    report.check(max);
}

/// A handshaken peer that sends nothing more: connects from `src`, sends
/// its handshake, reads the seeder's. The connection, non-blocking.
fn idle_peer(src: Ipv4Addr, target: SocketAddr, info_hash: [u8; 20], id: u8) -> TcpStream {
    let mut s = connect_from(src, target, Duration::from_secs(2)).unwrap();
    let mut out = Vec::new();
    let mut peer_id = *b"-ID0001-idle00000000";
    peer_id[19] = id;
    peerlet::wire::peer::Handshake::ours(info_hash, peer_id).emit(&mut out);
    s.write_all(&out).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut hs = [0u8; 68];
    s.read_exact(&mut hs)
        .unwrap_or_else(|e| panic!("idle peer {src}: no handshake back: {e}"));
    assert_eq!(hs[28..48], info_hash);
    s.set_nonblocking(true).unwrap();
    s
}

#[test]
fn a_new_peer_takes_the_slot_of_an_idle_one_at_the_limit() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = TempDir::new("peer-slots-idle");
    let payload = tmp.join("payload");
    let torrent_path = tmp.join("p.torrent");
    let hash = one_file_torrent(&payload, "data.bin", 1 << 20, 23, &torrent_path, "64K");
    let torrent = Torrent::from_bytes(&std::fs::read(&torrent_path).unwrap()).unwrap();
    let info_hash = torrent.info_hash.0;
    let data = std::fs::read(payload.join("data.bin")).unwrap();

    // 4 connections: 2 kept for incoming handshakes, 2 for the rest.
    let seeder = DaemonProc::start(
        tmp.path(),
        "seeder",
        "127.0.22.3",
        &["--max-connections", "4"],
    );
    common::daemon::copy_tree(&payload, &seeder.download_dir.join("payload"));
    seeder.add(&torrent_path, &[]);
    seeder.wait_complete(&hash, Duration::from_secs(60));
    let target = seeder.listen;
    let newcomer = Ipv4Addr::new(127, 0, 22, 4);

    let since = Instant::now();
    let mut idle: Vec<TcpStream> = (1..=2)
        .map(|i| idle_peer(Ipv4Addr::new(127, 0, 23, i), target, info_hash, i))
        .collect();
    // Young idle peers keep their slots: the newcomer is refused.
    let early = fetch_first_block_from(
        newcomer,
        target,
        info_hash,
        Instant::now() + Duration::from_secs(2),
    );
    assert!(
        early.is_err() && since.elapsed() < peerlet::net::admission::ESTABLISHED_GRACE,
        "a newcomer got in while the idle peers were young: {early:?}"
    );
    // Past their grace, it takes the slot of one of them, within 2 s of
    // its first try.
    std::thread::sleep(
        (since + peerlet::net::admission::ESTABLISHED_GRACE + Duration::from_secs(1))
            .saturating_duration_since(Instant::now()),
    );
    let started = Instant::now();
    let deadline = started + LEGIT_DEADLINE;
    let mut tries = Vec::new();
    let mut got = None;
    // Bounded: at most 50 tries, and the deadline.
    for _ in 0..50 {
        if Instant::now() >= deadline {
            break;
        }
        match fetch_first_block_from(newcomer, target, info_hash, deadline) {
            Ok(block) => {
                got = Some(block);
                break;
            }
            Err(e) => {
                tries.push(format!("{:?}: {e}", started.elapsed()));
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    let block = got.unwrap_or_else(|| {
        panic!(
            "the newcomer got no block within {LEGIT_DEADLINE:?}; its tries:\n{}\nseeder log:\n{}",
            tries.join("\n"),
            seeder.log_tail(20)
        )
    });
    assert!(block[..] == data[..16384], "the block differs");
    // One idle peer gave its slot (within 2 s), the other kept its own.
    let mut gone = 0;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until && gone == 0 {
        gone = idle.iter_mut().map(closed).filter(|&c| c).count();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(gone, 1, "idle peers closed: {gone} of 2");
}

/// The flood on a private network's node (127.0.22.5): the silent
/// connections never start the Noise handshake, and a member (127.0.22.6,
/// a second daemon with the same secret) downloads the whole torrent
/// through it meanwhile.
#[test]
fn a_member_gets_in_past_400_silent_connections_on_a_private_network() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = TempDir::new("peer-slots-private");
    let secret = tmp.join("net.secret");
    let (code, out, err) = common::run(&["secret", secret.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let secret_arg = ["--network-secret", secret.to_str().unwrap()];
    let payload = tmp.join("payload");
    let torrent_path = tmp.join("p.torrent");
    let hash = one_file_torrent(&payload, "data.bin", 1 << 20, 24, &torrent_path, "64K");

    let seeder = DaemonProc::start(tmp.path(), "seeder", "127.0.22.5", &secret_arg);
    common::daemon::copy_tree(&payload, &seeder.download_dir.join("payload"));
    seeder.add(&torrent_path, &[]);
    seeder.wait_complete(&hash, Duration::from_secs(60));
    let max = sample(
        &scrape(&seeder.api).unwrap(),
        "peerlet_connections_half_open_max",
    )
    .expect("peerlet_connections_half_open_max");
    let member = DaemonProc::start(tmp.path(), "member", "127.0.22.6", &secret_arg);

    let flood = Flood::start(seeder.listen, &seeder.api);
    let started = Instant::now();
    member.add(&torrent_path, &[seeder.listen]);
    // Bounded: polls every 100 ms until the deadline.
    let deadline = started + Duration::from_secs(20);
    let mut done = false;
    while Instant::now() < deadline {
        let st = member.try_status(&hash);
        let have = st.as_ref().and_then(|s| s.get("pieces_have")?.as_u64());
        let total = st.as_ref().and_then(|s| s.get("pieces")?.as_u64());
        if have.is_some() && have == total {
            done = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = started.elapsed();
    // Half-open counts while the flood goes on after it.
    std::thread::sleep(Duration::from_secs(2));
    let report = flood.stop();
    eprintln!("{report}; the member: complete {done} after {took:?}");
    assert!(
        done,
        "the member did not complete within 20 s under the flood\nseeder log:\n{}\nmember log:\n{}",
        seeder.log_tail(20),
        member.log_tail(20)
    );
    report.check(max);
}
