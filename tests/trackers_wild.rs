//! Trackers as they are in the wild: torrents and magnets whose first
//! trackers are dead, several live trackers in several tiers, scrapes.
//! Real opentracker instances and peerlet daemons on 127.0.52.x and
//! 127.0.53.x only; dead trackers are sockets this test holds and never
//! answers on. Every wait is bounded.

mod common;

use common::daemon::{create_torrent_with, start_seeder, DaemonProc};
use common::{require_tool, write_random_file, TempDir};
use peerlet::json::Json;
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the old announcer (one tier at a time, 105 s per dead UDP tracker,
/// 40 s per dead HTTP one) could never reach with five dead trackers first;
/// the new one answers in about a second.
const FIRST_PEER_BOUND: Duration = Duration::from_secs(20);

/// opentracker on `ip` (TCP and UDP on one port), with a whitelist of the
/// torrents under test; killed (by its own PID) when dropped.
struct OpenTracker {
    child: Child,
    ip: String,
    port: u16,
}

impl OpenTracker {
    fn start(root: &Path, name: &str, ip: &str, info_hashes: &[&str]) -> OpenTracker {
        require_tool("opentracker", "opentracker");
        use std::os::unix::fs::PermissionsExt;
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let list = dir.join("whitelist.txt");
        std::fs::write(&list, info_hashes.join("\n") + "\n").unwrap();
        std::fs::set_permissions(&list, std::fs::Permissions::from_mode(0o644)).unwrap();
        let conf = root.join(format!("{name}.conf"));
        // The path is inside the chroot.
        std::fs::write(&conf, "access.whitelist /whitelist.txt\n").unwrap();
        let port = free_port(ip);
        let p = port.to_string();
        let child = Command::new("opentracker")
            .args(["-i", ip, "-p", &p, "-P", &p, "-f"])
            .arg(&conf)
            .arg("-d")
            .arg(&dir)
            .args(["-u", "nobody"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting opentracker");
        let mut t = OpenTracker {
            child,
            ip: ip.to_string(),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((ip, port)).is_err() {
            assert!(Instant::now() < deadline, "opentracker did not come up");
            assert!(t.child.try_wait().unwrap().is_none(), "opentracker exited");
            std::thread::sleep(Duration::from_millis(50));
        }
        t
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}:{}/announce", self.ip, self.port)
    }

    /// (seeders, leechers) the tracker knows for `hash` (HTTP scrape).
    fn counts(&self, hash: &str) -> (u32, u32) {
        let raw = peerlet::hash::from_hex(hash).unwrap();
        let q: String = raw.iter().map(|b| format!("%{b:02X}")).collect();
        let url = format!("http://{}:{}/scrape?info_hash={q}", self.ip, self.port);
        // Plain HTTP: the roots are never read.
        let roots = peerlet::net::system_tls_roots(None);
        peerlet::tracker::http::fetch(&url, Duration::from_secs(5), &roots)
            .ok()
            .and_then(|body| peerlet::tracker::http::parse_scrape(&body).ok())
            .and_then(|files| {
                files
                    .into_iter()
                    .find(|(h, _)| *h == raw)
                    .map(|(_, s)| (s.complete, s.incomplete))
            })
            .unwrap_or((0, 0))
    }

    /// Waits until the tracker counts `seeders` seeders for `hash`.
    fn wait_seeders(&self, hash: &str, seeders: u32, within: Duration, what: &str) {
        let deadline = Instant::now() + within;
        while self.counts(hash).0 < seeders {
            assert!(
                Instant::now() < deadline,
                "{what}: no announce reached {}",
                self.url("http")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for OpenTracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port(ip: &str) -> u16 {
    let l = TcpListener::bind((ip, 0)).expect("binding a loopback port");
    l.local_addr().unwrap().port()
}

/// Five dead trackers on `ip`: three UDP sockets that read nothing and
/// two HTTP listeners whose connections are accepted (by the kernel: they
/// are never `accept`ed, read or answered). Held until dropped.
struct DeadTrackers {
    _udp: Vec<UdpSocket>,
    _tcp: Vec<TcpListener>,
    urls: Vec<String>,
}

impl DeadTrackers {
    fn start(ip: &str) -> DeadTrackers {
        let mut urls = Vec::new();
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for _ in 0..3 {
            let s = UdpSocket::bind((ip, 0)).unwrap();
            urls.push(format!("udp://{}/announce", s.local_addr().unwrap()));
            udp.push(s);
        }
        for _ in 0..2 {
            let l = TcpListener::bind((ip, 0)).unwrap();
            urls.push(format!("http://{}/announce", l.local_addr().unwrap()));
            tcp.push(l);
        }
        DeadTrackers {
            _udp: udp,
            _tcp: tcp,
            urls,
        }
    }
}

/// A directory with one random file, and the info-hash of its torrent
/// (the trackers are outside the info dictionary, so every torrent of it
/// has this hash).
fn payload(root: &Path) -> (std::path::PathBuf, String) {
    let dir = root.join("payload/data");
    std::fs::create_dir_all(&dir).unwrap();
    write_random_file(&dir.join("file.bin"), 3 << 20, 52);
    let hash = create_torrent_with(&dir, &root.join("probe.torrent"), "64K", &[], &[]);
    (dir, hash)
}

/// The same content announcing to `trackers`, one tier each, in order.
fn torrent(
    root: &Path,
    dir: &Path,
    name: &str,
    trackers: &[String],
    hash: &str,
) -> std::path::PathBuf {
    let out = root.join(name);
    let again = create_torrent_with(dir, &out, "64K", trackers, &[]);
    assert_eq!(again, hash);
    out
}

/// A peer is connected, or was (data came, or a magnet's metadata).
fn had_a_peer(st: &Json) -> bool {
    let n = |k: &str| st.get(k).and_then(Json::as_u64).unwrap_or(0);
    n("peers") > 0 || n("downloaded") > 0 || n("pieces") > 0
}

/// Time from now until `d` has a connected peer for `hash`.
fn time_to_first_peer(d: &DaemonProc, hash: &str, within: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        if d.try_status(hash).is_some_and(|st| had_a_peer(&st)) {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < within,
            "{}: no peer in {within:?}: {:?}\nlog:\n{}",
            d.name,
            d.try_status(hash).map(|s| s.to_string()),
            d.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn trackers_of(st: &Json) -> Vec<Json> {
    st.get("trackers")
        .and_then(Json::as_array)
        .map(|a| a.to_vec())
        .unwrap_or_default()
}

/// A torrent and a magnet whose first five trackers (three UDP, two HTTP)
/// are dead find the seeder through the sixth, live one within
/// [`FIRST_PEER_BOUND`].
#[test]
fn five_dead_trackers_in_front_of_a_live_one() {
    let tmp = TempDir::new("trackers-dead-first");
    let (dir, hash) = payload(tmp.path());
    let live = OpenTracker::start(tmp.path(), "ot-live", "127.0.52.1", &[&hash]);
    let dead = DeadTrackers::start("127.0.52.2");
    let mut urls = dead.urls.clone();
    urls.push(live.url("udp"));
    let t = torrent(tmp.path(), &dir, "dead-first.torrent", &urls, &hash);

    let seed_start = Instant::now();
    let seeder = start_seeder(tmp.path(), "seeder", "127.0.52.10", &dir, &t, &hash);
    live.wait_seeders(&hash, 1, FIRST_PEER_BOUND, "seeder");
    eprintln!(
        "seeder known to the live tracker after {:?}",
        seed_start.elapsed()
    );

    // A torrent file.
    let leecher = DaemonProc::start(tmp.path(), "leecher", "127.0.52.11", &["--no-overlay"]);
    leecher.add(&t, &[]);
    let took = time_to_first_peer(&leecher, &hash, FIRST_PEER_BOUND);
    eprintln!("torrent with 5 dead trackers first: first peer after {took:?}");
    leecher.wait_complete(&hash, Duration::from_secs(60));
    let st = leecher.status(&hash);
    let results: Vec<String> = trackers_of(&st)
        .iter()
        .map(|t| {
            t.get("last_result")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(results.len(), 6, "{st}");
    assert!(results.iter().any(|r| r.starts_with("ok")), "{results:?}");

    // A magnet with the same trackers (one tier each).
    let magnet = std::iter::once(format!("magnet:?xt=urn:btih:{hash}"))
        .chain(urls.iter().map(|u| {
            let mut enc = String::new();
            peerlet::http::percent_encode_into(
                u.as_bytes(),
                peerlet::http::KEEP_UNRESERVED,
                &mut enc,
            );
            format!("tr={enc}")
        }))
        .collect::<Vec<_>>()
        .join("&");
    let magnet_leecher = DaemonProc::start(tmp.path(), "magnet", "127.0.52.12", &["--no-overlay"]);
    let (code, out, err) = magnet_leecher.cli(&["add", &magnet]);
    assert_eq!(code, 0, "add magnet: {out}{err}");
    let took = time_to_first_peer(&magnet_leecher, &hash, FIRST_PEER_BOUND);
    eprintln!("magnet with 5 dead trackers first: first peer after {took:?}");
    magnet_leecher.wait_complete(&hash, Duration::from_secs(60));
    drop(seeder);
}

/// Two opentracker instances in separate tiers all hear the seeder's
/// announce; a leecher that knows only one of them finds the seeder, for
/// each one. The seeder's status shows each tracker's scrape (seeders,
/// leechers, downloads) and the swarm totals.
///
/// Tracker A is listed twice, over UDP and over HTTP (a third tier): an
/// HTTP announce leaves from 127.0.0.1 (the daemon binds only its UDP
/// socket to its own address), so A learns the seeder's real address from
/// the UDP one; the HTTP one covers the BEP 48 scrape.
#[test]
fn every_tier_announces_and_scrapes_show_in_status() {
    let tmp = TempDir::new("trackers-every-tier");
    let (dir, hash) = payload(tmp.path());
    let a = OpenTracker::start(tmp.path(), "ot-a", "127.0.53.1", &[&hash]);
    let b = OpenTracker::start(tmp.path(), "ot-b", "127.0.53.2", &[&hash]);
    let both = torrent(
        tmp.path(),
        &dir,
        "both.torrent",
        &[a.url("udp"), b.url("udp"), a.url("http")],
        &hash,
    );
    let seeder = start_seeder(tmp.path(), "seeder", "127.0.53.10", &dir, &both, &hash);
    // Tiers 0 and 2 both reach A: two entries (two source addresses).
    a.wait_seeders(&hash, 2, FIRST_PEER_BOUND, "tiers 0 (UDP) and 2 (HTTP)");
    b.wait_seeders(&hash, 1, FIRST_PEER_BOUND, "tier 1 (UDP)");

    for (name, ip, tracker) in [("only-a", "127.0.53.11", &a), ("only-b", "127.0.53.12", &b)] {
        let t = torrent(
            tmp.path(),
            &dir,
            &format!("{name}.torrent"),
            &[tracker.url("udp")],
            &hash,
        );
        let leecher = DaemonProc::start(tmp.path(), name, ip, &["--no-overlay"]);
        leecher.add(&t, &[]);
        let took = time_to_first_peer(&leecher, &hash, FIRST_PEER_BOUND);
        eprintln!("{name}: first peer after {took:?}");
        leecher.wait_complete(&hash, Duration::from_secs(60));
    }

    // Scrapes follow each tracker's first answer: every tracker shows
    // seeders, leechers and downloads; the torrent the swarm's totals.
    let deadline = Instant::now() + Duration::from_secs(20);
    let st = loop {
        let st = seeder.status(&hash);
        let scraped = trackers_of(&st)
            .iter()
            .all(|t| t.get("downloaded").and_then(Json::as_u64).is_some());
        if scraped {
            break st;
        }
        assert!(Instant::now() < deadline, "no scrape numbers: {st}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for t in trackers_of(&st) {
        assert!(
            t.get("last_result")
                .and_then(Json::as_str)
                .unwrap()
                .starts_with("ok"),
            "{st}"
        );
        assert!(
            t.get("seeders").and_then(Json::as_u64).unwrap() >= 1,
            "{st}"
        );
        assert!(t.get("leechers").and_then(Json::as_u64).is_some(), "{st}");
    }
    assert!(
        st.get("swarm_seeders").and_then(Json::as_u64).unwrap() >= 1,
        "{st}"
    );
    assert!(
        st.get("swarm_leechers").and_then(Json::as_u64).is_some(),
        "{st}"
    );
    let (code, text, err) = seeder.cli(&["status", &hash]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(text.matches(" downloads").count(), 3, "{text}");
    assert!(text.contains(" seeders, "), "{text}");
    let (code, ls, err) = seeder.cli(&["ls", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(ls.contains("\"swarm_seeders\""), "{ls}");
}
