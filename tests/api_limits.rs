//! The control API under abuse, against a real daemon (127.0.31.x; the
//! clients come from 127.0.0.1 and 127.0.32.x / 127.0.33.x):
//!
//! - slow clients (bodies or headers trickled at a byte a second, and
//!   reconnecting) cannot keep `peerlet ls`, which sends the state
//!   directory's token, from answering within a second, whether the API
//!   wants the token (as off loopback) or not;
//! - request bodies and the parse of torrents being added stay within the
//!   API's share of `memory_limit`: eight parallel 10 MB torrents of 999,000
//!   values leave the peak RSS under its idle peak plus the budget plus
//!   2 MiB, the requests that do not fit get 503 with Retry-After (or 413
//!   when one alone could never fit), and a normal add works after.

mod common;

use common::daemon::{one_file_torrent, DaemonProc};
use common::{proc_kib, TempDir};
use socket2::{Domain, Socket, Type};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The deadline of the acceptance test: `peerlet ls` answers within it.
const LS_DEADLINE: Duration = Duration::from_secs(1);
/// No attacker runs longer than this, whatever happens.
const ATTACK_MAX: Duration = Duration::from_secs(60);

/// A connection to `dst` from the source address `src` (None: the kernel's
/// choice, 127.0.0.1 here, the command-line client's own address).
fn connect_from(src: Option<&str>, dst: SocketAddr) -> std::io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    if let Some(src) = src {
        let ip: IpAddr = src.parse().unwrap();
        s.bind(&SocketAddr::new(ip, 0).into())?;
    }
    s.connect_timeout(&dst.into(), Duration::from_secs(2))?;
    Ok(s.into())
}

/// What one slow client does with each connection.
#[derive(Clone, Copy)]
enum Slow {
    /// A whole head announcing a body, then the body a byte a second.
    Body,
    /// The head a byte a second, a new connection every 5 s.
    Head,
}

/// One slow client: trickles until `stop` (or [`ATTACK_MAX`]), and
/// reconnects whenever the server closes on it.
fn slow_client(api: SocketAddr, src: Option<String>, how: Slow, stop: Arc<AtomicBool>) {
    let started = Instant::now();
    let head = format!(
        "POST /api/torrents HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/x-bittorrent\r\nContent-Length: 100000\r\n\r\n"
    );
    // Bounded: one round per connection, each at most 5 s.
    for _ in 0..1000 {
        if stop.load(Ordering::SeqCst) || started.elapsed() > ATTACK_MAX {
            return;
        }
        let Ok(mut s) = connect_from(src.as_deref(), api) else {
            thread::sleep(Duration::from_millis(100));
            continue;
        };
        let connected = Instant::now();
        let mut sent = match how {
            Slow::Body => {
                if s.write_all(head.as_bytes()).is_err() {
                    continue;
                }
                0
            }
            Slow::Head => 0,
        };
        // A byte a second (checking `stop` every 100 ms); a write error
        // means the server closed: start over.
        let mut ticks = 0;
        while !stop.load(Ordering::SeqCst) && connected.elapsed() < Duration::from_secs(5) {
            thread::sleep(Duration::from_millis(100));
            ticks += 1;
            if ticks % 10 != 0 {
                continue;
            }
            let byte = match how {
                Slow::Body => b'x',
                Slow::Head => head.as_bytes()[sent % head.len()],
            };
            if s.write_all(&[byte]).is_err() {
                break;
            }
            sent += 1;
        }
    }
}

/// Starts `n` slow clients; every other one from 127.0.0.1 (the address
/// of the command-line client), the rest from `127.0.32.{base + i}`.
fn attack(
    api: SocketAddr,
    n: usize,
    base: usize,
    how: Slow,
) -> (Arc<AtomicBool>, Vec<thread::JoinHandle<()>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let threads = (0..n)
        .map(|i| {
            let src = (i % 2 == 1).then(|| format!("127.0.32.{}", base + i));
            let stop = stop.clone();
            thread::spawn(move || slow_client(api, src, how, stop))
        })
        .collect();
    (stop, threads)
}

/// `peerlet ls` three times, each within [`LS_DEADLINE`].
fn ls_answers_in_time(d: &DaemonProc, what: &str) {
    for round in 0..3 {
        let t = Instant::now();
        let (code, out, err) = d.cli(&["ls"]);
        let took = t.elapsed();
        assert_eq!(
            code, 0,
            "{what}, round {round}: peerlet ls failed after {took:?}: {out}{err}"
        );
        assert!(
            took < LS_DEADLINE,
            "{what}, round {round}: peerlet ls took {took:?}, over {LS_DEADLINE:?}"
        );
        thread::sleep(Duration::from_millis(700));
    }
}

/// A daemon on `ip` (with `extra` arguments) under `n` slow clients doing
/// `how`: `peerlet ls` answers in time.
fn ls_under_attack(name: &str, ip: &str, extra: &[&str], n: usize, base: usize, how: Slow) {
    let tmp = TempDir::new(name);
    let api_arg = format!("{ip}:0");
    let mut args = vec!["--api", &api_arg];
    args.extend_from_slice(extra);
    let d = DaemonProc::start(tmp.path(), "d", ip, &args);
    let api: SocketAddr = d.api.parse().unwrap();
    assert_eq!(d.cli(&["ls"]).0, 0);
    let (stop, threads) = attack(api, n, base, how);
    // Every slot taken, and older than the eviction grace.
    thread::sleep(Duration::from_millis(1500));
    ls_answers_in_time(&d, name);
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn bodies_trickled_at_a_byte_a_second_do_not_keep_ls_waiting() {
    ls_under_attack("api-slow-bodies", "127.0.31.1", &[], 10, 1, Slow::Body);
}

#[test]
fn heads_trickled_with_reconnects_do_not_keep_ls_waiting() {
    ls_under_attack("api-slow-heads", "127.0.31.4", &[], 12, 20, Slow::Head);
}

/// As off loopback: every request needs the token, so strangers never get
/// past their heads, which they trickle and start over.
#[test]
fn heads_trickled_against_a_daemon_that_wants_the_token() {
    ls_under_attack(
        "api-slow-heads-token",
        "127.0.31.5",
        &["--api-token-required"],
        12,
        40,
        Slow::Head,
    );
}

/// A response: status, head text, body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// Reads one response head (an interim 100 or the final one) and, for a
/// final one, the body until the server closes.
fn read_answer(s: &mut TcpStream) -> Answer {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            other => panic!(
                "no answer: {other:?} after {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
        assert!(buf.len() < 16384, "endless head");
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let status = head[9..12].parse().unwrap();
    let mut body = Vec::new();
    if status != 100 {
        let _ = s.read_to_end(&mut body);
    }
    Answer {
        status,
        head,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Sends the head of `POST /api/torrents` for `len` bytes with
/// `Expect: 100-continue` (as curl does for large bodies).
fn post_head(api: SocketAddr, src: &str, len: usize) -> TcpStream {
    let mut s = connect_from(Some(src), api).unwrap();
    let head = format!(
        "POST /api/torrents HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/x-bittorrent\r\n\
         Expect: 100-continue\r\nContent-Length: {len}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    s
}

/// A ~10 MB torrent of 999,000 bencoded values: a small valid `info`
/// and a list of 999,000 ten-byte integers beside it (outside `info`,
/// where the parser is lenient), so the whole of it is decoded.
fn hostile_torrent() -> Vec<u8> {
    let mut t = b"d4:infod6:lengthi1e4:name1:a12:piece lengthi16384e6:pieces20:".to_vec();
    t.extend_from_slice(&[7u8; 20]);
    t.extend_from_slice(b"e1:xl");
    for i in 0..998_987u32 {
        t.extend_from_slice(format!("i{}e", 10_000_000 + i).as_bytes());
    }
    t.extend_from_slice(b"ee");
    t
}

/// Eight posts of `body` at once, from 127.0.33.{base}...: the eight heads
/// first (so that all are in the server together), then, in parallel, the
/// bodies of those the server asked to continue.
fn eight_posts(api: SocketAddr, base: u8, body: &Arc<Vec<u8>>) -> Vec<Answer> {
    let conns: Vec<TcpStream> = (0..8u8)
        .map(|i| post_head(api, &format!("127.0.33.{}", base + i), body.len()))
        .collect();
    // Every head is answered (its body reserved, or refused) before any
    // body is sent: otherwise a slow daemon (qemu-user) may finish one
    // body and free its reservation before it reads the last heads.
    let mut answers = Vec::new();
    let mut admitted = Vec::new();
    for mut s in conns {
        let first = read_answer(&mut s);
        if first.status != 100 {
            answers.push(first);
        } else {
            admitted.push(s);
        }
    }
    let mut threads = Vec::new();
    for mut s in admitted {
        let body = body.clone();
        threads.push(thread::spawn(move || {
            s.write_all(&body).unwrap();
            read_answer(&mut s)
        }));
    }
    answers.extend(threads.into_iter().map(|t| t.join().unwrap()));
    answers
}

fn vmhwm(d: &DaemonProc) -> u64 {
    proc_kib(d.pid(), "VmHWM:").expect("VmHWM")
}

fn assert_within(d: &DaemonProc, idle: u64, limit_mib: u64, what: &str) {
    let peak = vmhwm(d);
    let bound = idle + ((limit_mib + 2) << 10);
    eprintln!("{what}: VmHWM idle {idle} KiB, now {peak} KiB, bound {bound} KiB (idle + {limit_mib} MiB + 2 MiB)");
    if d.emulated() {
        eprintln!("memory bound not checked: the daemon runs under qemu-user");
        return;
    }
    assert!(
        peak <= bound,
        "{what}: peak RSS {peak} KiB over the bound {bound} KiB"
    );
}

#[test]
fn request_memory_stays_within_memory_limit() {
    let tmp = TempDir::new("api-memory");
    let hostile = Arc::new(hostile_torrent());
    assert!(
        hostile.len() <= 10_000_000 && hostile.len() > 9_900_000,
        "{}",
        hostile.len()
    );

    // 8 MiB: the share (4 MiB) cannot hold one such body: 413 at once.
    let d = DaemonProc::start(
        tmp.path(),
        "small",
        "127.0.31.2",
        &["--api", "127.0.31.2:0", "--memory-limit", "8M"],
    );
    let api: SocketAddr = d.api.parse().unwrap();
    thread::sleep(Duration::from_secs(2));
    let idle = vmhwm(&d);
    let answers = eight_posts(api, 11, &hostile);
    assert_within(&d, idle, 8, "8 x 10 MB torrents, memory_limit 8M");
    for a in answers {
        assert_eq!(a.status, 413, "{}", a.body);
        assert!(a.body.contains("raise memory_limit"), "{}", a.body);
    }
    // What `peerlet add` says about it (the file is a valid torrent).
    let big = tmp.join("big.torrent");
    std::fs::write(&big, &*hostile).unwrap();
    let (code, out, err) = d.cli(&["add", big.to_str().unwrap()]);
    assert_ne!(code, 0, "{out}");
    eprintln!("peerlet add of the 10 MB torrent: {err}");
    assert!(
        err.contains("needs more memory than the control API may use")
            && err.contains("raise memory_limit"),
        "{err}"
    );

    // 1.5 MB bodies: two fit in the share (4 MiB) at once, a third does not.
    let mut body = format!("d1:x{}:", 1_500_000 - 13).into_bytes();
    body.resize(1_500_000 - 1, b'z');
    body.push(b'e');
    let conns: Vec<TcpStream> = (0..8u8)
        .map(|i| post_head(api, &format!("127.0.33.{}", 21 + i), body.len()))
        .collect();
    let mut refused = 0;
    let mut admitted = Vec::new();
    for mut s in conns {
        let a = read_answer(&mut s);
        match a.status {
            100 => admitted.push(s),
            503 => {
                assert!(a.head.contains("\r\nRetry-After: 1\r\n"), "{}", a.head);
                refused += 1;
            }
            st => panic!("unexpected {st}: {}", a.body),
        }
    }
    assert_eq!(admitted.len(), 2, "{refused} refused");
    // The first body read cannot also pay for its parse while the other
    // body is reserved: 503. Then the other goes through to the engine
    // (which finds no `info`: 400).
    let mut finals = Vec::new();
    for mut s in admitted {
        s.write_all(&body).unwrap();
        finals.push(read_answer(&mut s));
    }
    assert_eq!(finals[0].status, 503, "{}", finals[0].body);
    assert!(finals[0].head.contains("\r\nRetry-After: 1\r\n"));
    assert_eq!(finals[1].status, 400, "{}", finals[1].body);
    assert!(finals[1].body.contains("info"), "{}", finals[1].body);

    // A normal add still works.
    let torrent = tmp.join("normal.torrent");
    one_file_torrent(&tmp.join("normal"), "n.bin", 1 << 20, 7, &torrent, "64K");
    d.add(&torrent, &[]);
    let (code, out, _) = d.cli(&["ls"]);
    assert_eq!(code, 0);
    assert!(out.contains("normal"), "{out}");
    assert_within(&d, idle, 8, "memory_limit 8M, after all");
    drop(d);

    // 64 MiB: the API's share (32 MiB) holds three such bodies at a time.
    let d = DaemonProc::start(
        tmp.path(),
        "big",
        "127.0.31.3",
        &["--api", "127.0.31.3:0", "--memory-limit", "64M"],
    );
    let api: SocketAddr = d.api.parse().unwrap();
    thread::sleep(Duration::from_secs(2));
    let idle = vmhwm(&d);
    let answers = eight_posts(api, 1, &hostile);
    assert_within(&d, idle, 64, "8 x 10 MB torrents, memory_limit 64M");
    let busy = answers.iter().filter(|a| a.status == 503).count();
    for a in &answers {
        match a.status {
            503 => {
                assert!(a.head.contains("\r\nRetry-After: 1\r\n"), "{}", a.head);
                assert!(a.body.contains("memory_limit"), "{}", a.body);
            }
            // The one whose body was read: its parse alone is over the share.
            413 => assert!(
                a.body.contains("999000 bencoded values") && a.body.contains("raise memory_limit"),
                "{}",
                a.body
            ),
            s => panic!("unexpected {s}: {}", a.body),
        }
    }
    // Three bodies fit in the share at a time (each head reserves its
    // body before any is sent): the other five wait for them.
    assert_eq!(busy, 5, "refused for memory");
}
