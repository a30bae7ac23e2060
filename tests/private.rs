//! Private networks between real daemons on loopback (127.0.3.x): nodes
//! with the same secret find each other, search and transfer; a node with
//! another secret and a plain BitTorrent client (aria2c) get nothing; a
//! recording relay between two members sees no plaintext; an allow-list
//! refuses a member whose key is not on it.

mod common;

use common::daemon::{create_torrent, create_torrent_with, DaemonProc};
use common::fake_tracker::{compact_peers_body, FakeHttpTracker, HttpScript};
use common::nodes::{counter, live_nodes, nodes};
use common::{require_tool, run, write_random_file, TempDir};
use peerlet::json::{self, Json};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEBUG_LOG: &str = "info,peerlet=debug";
const WAIT: Duration = Duration::from_secs(60);
/// The longest a relay thread lives, stopped or not.
const RELAY_LIFE: Duration = Duration::from_secs(240);

/// Search results (info-hash, holders).
fn search(d: &DaemonProc, what: &[&str], timeout: u64) -> Vec<(String, Vec<String>)> {
    let t = timeout.to_string();
    let mut args = vec!["search"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["--timeout", &t, "--json"]);
    let (_, out, err) = d.cli(&args);
    let page = json::parse(&out).unwrap_or_else(|e| panic!("search JSON: {e}: {out}{err}"));
    page.get("results")
        .and_then(Json::as_array)
        .map(|r| r.to_vec())
        .unwrap_or_default()
        .iter()
        .map(|h| {
            let hash = h.get("info_hash").and_then(Json::as_str).unwrap_or("");
            let holders = h
                .get("holders")
                .and_then(Json::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Json::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            (hash.to_string(), holders)
        })
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn log_has(d: &DaemonProc, parts: &[&str]) -> bool {
    std::fs::read_to_string(&d.log)
        .unwrap_or_default()
        .lines()
        .any(|l| parts.iter().all(|p| l.contains(p)))
}

fn public_key(d: &DaemonProc) -> String {
    let (code, out, err) = d.cli(&["status", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let j = json::parse(&out).unwrap();
    assert_eq!(
        j.get("network")
            .and_then(Json::as_str)
            .map(|s| s.starts_with("private")),
        Some(true),
        "{j}"
    );
    j.get("public_key")
        .and_then(Json::as_str)
        .unwrap()
        .to_string()
}

/// `peerlet secret FILE`: 0600, and never replaces a file.
fn make_secret(path: &Path) {
    let (code, out, err) = run(&["secret", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let before = std::fs::read(path).unwrap();
    let (code, _, err) = run(&["secret", path.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("exists"), "{err}");
    assert_eq!(std::fs::read(path).unwrap(), before);
}

/// A relay on `ip` that stands for `target` (same port): UDP datagrams and
/// TCP connections to `ip:port` go to `target` and back, and every byte is
/// recorded. The relay's UDP side towards `target` uses `ip2`.
struct Relay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    tcp: Arc<Mutex<Vec<u8>>>,
    udp: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Relay {
    fn start(ip: &str, ip2: &str, target: SocketAddr) -> Relay {
        let addr: SocketAddr = format!("{ip}:{}", target.port()).parse().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let tcp = Arc::new(Mutex::new(Vec::new()));
        let udp = Arc::new(Mutex::new(Vec::new()));
        let front = UdpSocket::bind(addr).unwrap();
        let back = UdpSocket::bind(format!("{ip2}:0")).unwrap();
        front
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        back.set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        {
            let (stop, udp) = (stop.clone(), udp.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut client: Option<SocketAddr> = None;
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) && started.elapsed() < RELAY_LIFE {
                    if let Ok((n, from)) = front.recv_from(&mut buf) {
                        client = Some(from);
                        udp.lock().unwrap().push(buf[..n].to_vec());
                        let _ = back.send_to(&buf[..n], target);
                    }
                    if let Ok((n, from)) = back.recv_from(&mut buf) {
                        if let (Some(c), true) = (client, from == target) {
                            udp.lock().unwrap().push(buf[..n].to_vec());
                            let _ = front.send_to(&buf[..n], c);
                        }
                    }
                }
            });
        }
        let listener = TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        {
            let (stop, tcp) = (stop.clone(), tcp.clone());
            let ip2 = ip2.to_string();
            std::thread::spawn(move || {
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) && started.elapsed() < RELAY_LIFE {
                    let Ok((inside, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let _ = inside.set_nonblocking(false);
                    let sock =
                        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                            .unwrap();
                    let local: SocketAddr = format!("{ip2}:0").parse().unwrap();
                    sock.bind(&local.into()).unwrap();
                    if sock.connect(&target.into()).is_err() {
                        continue;
                    }
                    let outside: TcpStream = sock.into();
                    for (mut from, mut to) in [
                        (inside.try_clone().unwrap(), outside.try_clone().unwrap()),
                        (outside, inside),
                    ] {
                        let (stop, tcp) = (stop.clone(), tcp.clone());
                        from.set_read_timeout(Some(Duration::from_millis(200)))
                            .unwrap();
                        std::thread::spawn(move || {
                            let mut buf = [0u8; 16384];
                            while !stop.load(Ordering::Relaxed) && started.elapsed() < RELAY_LIFE {
                                match from.read(&mut buf) {
                                    Ok(0) => break,
                                    Ok(n) => {
                                        tcp.lock().unwrap().extend_from_slice(&buf[..n]);
                                        if to.write_all(&buf[..n]).is_err() {
                                            break;
                                        }
                                    }
                                    Err(e)
                                        if matches!(
                                            e.kind(),
                                            std::io::ErrorKind::WouldBlock
                                                | std::io::ErrorKind::TimedOut
                                        ) => {}
                                    Err(_) => break,
                                }
                            }
                            let _ = to.shutdown(Shutdown::Write);
                        });
                    }
                }
            });
        }
        Relay {
            addr,
            stop,
            tcp,
            udp,
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn members_find_and_transfer_strangers_get_nothing_and_the_wire_shows_no_plaintext() {
    let tmp = TempDir::new("private-net");
    let secret = tmp.join("net.secret");
    make_secret(&secret);
    let other = tmp.join("other.secret");
    make_secret(&other);
    let with = |s: &Path, extra: &[&str]| -> Vec<String> {
        let mut v = vec![
            "--network-secret".to_string(),
            s.to_str().unwrap().to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };

    // B holds the file.
    let b_args = with(&secret, &[]);
    let b_refs: Vec<&str> = b_args.iter().map(String::as_str).collect();
    let b = DaemonProc::start_with_log(tmp.path(), "b", "127.0.3.2", &b_refs, DEBUG_LOG);
    let name = "confidential-budget-2027.xls";
    let data_path = b.download_dir.join(name);
    std::fs::create_dir_all(&b.download_dir).unwrap();
    write_random_file(&data_path, 2 << 20, 2027);
    let data = std::fs::read(&data_path).unwrap();
    let torrent = tmp.join("budget.torrent");
    let hash = create_torrent(&data_path, &torrent, "64K");
    b.add(&torrent, &[]);
    b.wait_complete(&hash, Duration::from_secs(30));
    let _ = public_key(&b);

    // A reaches B only through a recording relay (and knows no other node
    // until its download is done, so every byte it exchanges is recorded).
    let relay = Relay::start("127.0.3.50", "127.0.3.51", b.listen);
    let a_args = with(&secret, &["--bootstrap", &relay.addr.to_string()]);
    let a_refs: Vec<&str> = a_args.iter().map(String::as_str).collect();
    let a = DaemonProc::start(tmp.path(), "a", "127.0.3.1", &a_refs);
    wait_until("A knows a live node", WAIT, || live_nodes(&nodes(&a)) >= 1);

    // A finds the file by words of its name (through the relay)...
    let deadline = Instant::now() + WAIT;
    let holders = loop {
        let found = search(&a, &["confidential", "budget"], 3);
        if let Some((_, holders)) = found.into_iter().find(|(h, _)| *h == hash) {
            break holders;
        }
        assert!(Instant::now() < deadline, "A never found it");
    };
    assert!(
        holders.contains(&relay.addr.to_string()),
        "holders {holders:?}, relay {}",
        relay.addr
    );
    // ...and downloads it by info-hash alone, over the relay.
    let dir = a.download_dir.join("got");
    std::fs::create_dir_all(&dir).unwrap();
    let (code, out, err) = a.cli(&["get", &hash, "-d", dir.to_str().unwrap(), "--timeout", "90"]);
    assert_eq!(code, 0, "get: {out}{err}\n{}", a.log_tail(30));
    assert_eq!(
        std::fs::read(dir.join(name)).unwrap(),
        data,
        "byte-identical"
    );
    // C joins later and talks to B directly.
    let c_args = with(&secret, &["--bootstrap", &b.listen.to_string()]);
    let c_refs: Vec<&str> = c_args.iter().map(String::as_str).collect();
    let c = DaemonProc::start(tmp.path(), "c", "127.0.3.3", &c_refs);
    wait_until("C knows a live node", WAIT, || live_nodes(&nodes(&c)) >= 1);
    let dir_c = c.download_dir.join("got");
    std::fs::create_dir_all(&dir_c).unwrap();
    let (code, out, err) = c.cli(&[
        "get",
        &hash,
        "-d",
        dir_c.to_str().unwrap(),
        "--timeout",
        "90",
    ]);
    assert_eq!(code, 0, "get: {out}{err}\n{}", c.log_tail(30));
    assert_eq!(std::fs::read(dir_c.join(name)).unwrap(), data);

    // D has another secret: no overlay answer, no handshake, no data.
    let d_args = with(&other, &["--bootstrap", &b.listen.to_string()]);
    let d_refs: Vec<&str> = d_args.iter().map(String::as_str).collect();
    let d = DaemonProc::start_with_log(tmp.path(), "d", "127.0.3.4", &d_refs, DEBUG_LOG);
    let refused_before = counter(&nodes(&b), "dropped_unsealed");
    let (code, out, err) = d.cli(&[
        "add",
        &torrent.to_string_lossy(),
        "--peer",
        &b.listen.to_string(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    wait_until("B refuses D's handshake", WAIT, || {
        log_has(&b, &["127.0.3.4", "another network secret"])
    });
    wait_until("B drops D's overlay packets", WAIT, || {
        counter(&nodes(&b), "dropped_unsealed") > refused_before
    });
    assert!(search(&d, &["confidential", "budget"], 3).is_empty());
    assert!(search(&d, &[&hash], 2).is_empty());
    let dn = nodes(&d);
    assert_eq!(live_nodes(&dn), 0, "D heard an answer: {dn}");
    let st = d.status(&hash);
    assert_eq!(st.get("have_bytes").and_then(Json::as_u64), Some(0), "{st}");
    assert_eq!(st.get("downloaded").and_then(Json::as_u64), Some(0), "{st}");
    assert!(
        log_has(&d, &["127.0.3.2", "private-network handshake"]),
        "{}",
        d.log_tail(30)
    );

    // A plain BitTorrent client (aria2c) sent to B by a tracker: refused.
    require_tool("aria2c", "aria2");
    let tracker = FakeHttpTracker::start(
        "127.0.3.60",
        HttpScript::Body(compact_peers_body(1, &[b.listen])),
    );
    let tracked = tmp.join("budget-tracked.torrent");
    let hash2 = create_torrent_with(&data_path, &tracked, "64K", &[tracker.url()], &[]);
    assert_eq!(hash2, hash, "trackers are outside the info dictionary");
    let aria_dir = tmp.join("aria2");
    std::fs::create_dir_all(&aria_dir).unwrap();
    let aria_port = TcpListener::bind("127.0.3.61:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut aria = std::process::Command::new("aria2c")
        .args([
            "--no-conf=true",
            "--enable-dht=false",
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            "--disable-ipv6=true",
            "--interface=127.0.3.61",
            &format!("--listen-port={aria_port}"),
            "--seed-time=0",
            "--stop=40",
            "--file-allocation=none",
            "--summary-interval=0",
        ])
        .arg("-d")
        .arg(&aria_dir)
        .arg("-T")
        .arg(&tracked)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let refused = (|| {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if log_has(&b, &["127.0.3.61", "plain BitTorrent refused"]) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    })();
    let _ = aria.kill();
    let _ = aria.wait();
    assert!(refused, "B never saw aria2c: {}", b.log_tail(30));
    let got = std::fs::read(aria_dir.join(name)).unwrap_or_default();
    assert!(
        got.iter().all(|&x| x == 0),
        "aria2c got data ({} bytes)",
        got.len()
    );

    // The recording: everything between A and B, and no plaintext in it.
    let tcp = relay.tcp.lock().unwrap().clone();
    let udp = relay.udp.lock().unwrap().clone();
    assert!(
        tcp.len() >= data.len(),
        "only {} bytes through the relay",
        tcp.len()
    );
    assert!(!udp.is_empty());
    assert!(
        udp.iter().all(|d| d.first() == Some(&b's')),
        "an unsealed datagram"
    );
    let udp_all: Vec<u8> = udp.concat();
    let needles: [&[u8]; 4] = [
        name.as_bytes(),
        b"confidential",
        b"budget",
        b"BitTorrent protocol",
    ];
    for needle in needles {
        assert!(
            !contains(&tcp, needle),
            "TCP shows {:?}",
            String::from_utf8_lossy(needle)
        );
        assert!(
            !contains(&udp_all, needle),
            "UDP shows {:?}",
            String::from_utf8_lossy(needle)
        );
    }
    for off in (0..data.len() - 32).step_by(16 * 1024 + 7) {
        assert!(
            !contains(&tcp, &data[off..off + 32]),
            "file bytes at {off} visible"
        );
    }
    assert!(!contains(&tcp, &hex_bytes(&hash)), "info-hash visible");
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
fn a_node_off_the_allow_list_is_refused() {
    let tmp = TempDir::new("private-allow");
    let secret = tmp.join("net.secret");
    make_secret(&secret);
    let s = secret.to_str().unwrap();
    let friend = DaemonProc::start(tmp.path(), "friend", "127.0.3.21", &["--network-secret", s]);
    let outsider = DaemonProc::start_with_log(
        tmp.path(),
        "outsider",
        "127.0.3.22",
        &["--network-secret", s],
        DEBUG_LOG,
    );
    let friend_key = public_key(&friend);
    let owner = DaemonProc::start_with_log(
        tmp.path(),
        "owner",
        "127.0.3.20",
        &["--network-secret", s, "--allow-node", &friend_key],
        DEBUG_LOG,
    );
    let (code, out, _) = owner.cli(&["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("network: private, 1 allowed nodes"), "{out}");

    let data = owner.download_dir.join("family-photos.tar");
    std::fs::create_dir_all(&owner.download_dir).unwrap();
    write_random_file(&data, 1 << 20, 77);
    let torrent = tmp.join("photos.torrent");
    let hash = create_torrent(&data, &torrent, "64K");
    owner.add(&torrent, &[]);
    owner.wait_complete(&hash, Duration::from_secs(30));

    // The friend is on the list: it downloads.
    friend.add(&torrent, &[owner.listen]);
    friend.wait_complete(&hash, WAIT);
    assert_eq!(
        std::fs::read(friend.download_dir.join("family-photos.tar")).unwrap(),
        std::fs::read(&data).unwrap()
    );
    // The outsider has the secret but not the key: refused, gets nothing.
    outsider.add(&torrent, &[owner.listen]);
    let outsider_key = public_key(&outsider);
    wait_until("the owner refuses the outsider", WAIT, || {
        log_has(
            &owner,
            &["127.0.3.22", &outsider_key, "not on the allow-list"],
        )
    });
    // And the owner dialling the outsider refuses it too.
    let (code, out, err) = owner.cli(&[
        "add",
        &torrent.to_string_lossy(),
        "--peer",
        &outsider.listen.to_string(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    std::thread::sleep(Duration::from_secs(2));
    let st = outsider.status(&hash);
    assert_eq!(st.get("have_bytes").and_then(Json::as_u64), Some(0), "{st}");
    assert_eq!(st.get("downloaded").and_then(Json::as_u64), Some(0), "{st}");

    // Keys must be well formed, and need a secret.
    let (code, _, err) = run(&["config", "check", "/dev/null"]);
    assert_eq!(code, 0, "{err}");
    let bad = tmp.join("bad.toml");
    std::fs::write(&bad, "allowed_nodes = [\"abc\"]\n").unwrap();
    let (code, _, err) = run(&["config", "check", bad.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("allowed_nodes") && err.contains("64 hex digits"),
        "{err}"
    );
}
