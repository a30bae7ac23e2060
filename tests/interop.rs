//! peerlet with real BitTorrent clients on loopback, both directions:
//! aria2c and libtorrent (python3-libtorrent, run by `/usr/bin/python3`
//! through tests/fixtures/lt_peer.py).
//!
//! There is no tracker. Every client is bound to its own 127.0.0.x address
//! with DHT, LPD/LSD, PEX, UPnP/NAT-PMP and uTP off; peers meet because one
//! side dials the other's listen address: peerlet dials the client (`add
//! --peer`) in both directions, and in one test the libtorrent leecher dials
//! peerlet instead (`connect_peer`), so peerlet's accepting side is covered
//! too. The torrents come from `peerlet create`; every result is compared
//! byte for byte with the source.
//!
//! Client processes are killed by PID when their guard drops (also when a
//! test fails). Set PEERLET_TEST_LOG=debug for peerlet's debug log and the
//! clients' verbose logs; the tails are printed when a test fails.

mod common;

use common::daemon::{assert_same_tree, create_torrent, create_torrent_with, DaemonProc};
use common::{require_tool, write_random_file, TempDir};
use peerlet::json::Json;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long one transfer may take (a few tens of MiB; normally seconds).
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(150);
/// How long a client may take to start listening.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

const LT_PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/lt_peer.py");
/// Debian's libtorrent bindings are installed for this interpreter only.
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

fn verbose() -> bool {
    matches!(
        std::env::var("PEERLET_TEST_LOG").as_deref(),
        Ok("debug") | Ok("trace")
    )
}

// ---------------------------------------------------------------------------
// Payloads
// ---------------------------------------------------------------------------

/// A directory tree of `total_mib` MiB: files that start and end inside
/// pieces, a nested directory, a tiny file and an empty one.
fn make_tree(dir: &Path, total_mib: u64, seed: u64) -> u64 {
    std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    let files: [(&str, u64); 5] = [
        ("big.bin", ((total_mib - 6) << 20) + 4321),
        ("sub/five.bin", (5 << 20) - 4321),
        ("sub/deeper/odd.bin", (1 << 20) - 12345),
        ("sub/tiny.txt", 7),
        ("empty", 0),
    ];
    let mut total = 0;
    for (i, (name, len)) in files.iter().enumerate() {
        write_random_file(&dir.join(name), *len, seed + i as u64);
        total += len;
    }
    total
}

fn assert_same_file(a: &Path, b: &Path) {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert_eq!(
        x.len(),
        y.len(),
        "{} vs {}: length",
        a.display(),
        b.display()
    );
    assert!(x == y, "{} and {} differ", a.display(), b.display());
}

/// Compares a single file or a tree.
fn assert_same(src: &Path, copy: &Path) {
    assert!(copy.exists(), "{} is missing", copy.display());
    if src.is_dir() {
        assert_same_tree(src, copy);
    } else {
        assert_same_file(src, copy);
    }
}

// ---------------------------------------------------------------------------
// Client processes
// ---------------------------------------------------------------------------

/// A client child process with stdout and stderr in files; SIGKILLed by PID
/// and reaped when dropped.
struct Client {
    child: Child,
    name: String,
    out: PathBuf,
    err: PathBuf,
    /// Another log file of the client's own (aria2c `--log`), if any.
    extra_log: Option<PathBuf>,
}

impl Client {
    fn spawn(mut cmd: Command, dir: &Path, name: &str, extra_log: Option<PathBuf>) -> Client {
        std::fs::create_dir_all(dir).unwrap();
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Client {
            child,
            name: name.to_string(),
            out,
            err,
            extra_log,
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// The last lines of everything the client wrote, for failure messages.
    fn logs(&self) -> String {
        let tail = |p: &Path, n: usize| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        let mut s = format!(
            "--- {} stdout:\n{}\n--- {} stderr:\n{}",
            self.name,
            tail(&self.out, 30),
            self.name,
            tail(&self.err, 40)
        );
        if let Some(p) = &self.extra_log {
            s += &format!("\n--- {} log:\n{}", self.name, tail(p, 40));
        }
        s
    }

    /// Polls stdout until `find` returns something, the client exits, or
    /// `timeout` passes.
    fn wait_stdout<T>(&mut self, timeout: Duration, find: impl Fn(&str) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.stdout();
            if let Some(v) = text.lines().find_map(&find) {
                return Some(v);
            }
            if self.child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                // One last look: the line may have landed just before the exit.
                return self.stdout().lines().find_map(&find);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the exit; None after `timeout` (the process is left running).
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Child::kill is kill(pid, SIGKILL) on this child only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free on `ip` a moment ago (for clients that cannot be
/// told to use port 0; callers retry when the client fails to bind it).
fn free_port(ip: &str) -> u16 {
    let l = TcpListener::bind((ip, 0)).expect("binding a loopback port");
    l.local_addr().unwrap().port()
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().unwrap()
}

// --- aria2c ---

/// Starts aria2c on `ip` for `torrent`: seeding the data under `dir`
/// (`--bt-seed-unverified`, seeds until killed), or leeching into `dir` and
/// exiting when complete (`--seed-time=0`). Returns it once it listens.
fn start_aria2(
    logs: &Path,
    name: &str,
    ip: &str,
    torrent: &Path,
    dir: &Path,
    seed: bool,
) -> (Client, SocketAddr) {
    start_aria2_with(
        logs,
        name,
        ip,
        &[std::ffi::OsStr::new("-T"), torrent.as_os_str()],
        dir,
        seed,
    )
}

/// aria2c on `ip` with `target` as its last arguments (`-T FILE` or a magnet link).
fn start_aria2_with(
    logs: &Path,
    name: &str,
    ip: &str,
    target: &[&std::ffi::OsStr],
    dir: &Path,
    seed: bool,
) -> (Client, SocketAddr) {
    require_tool("aria2c", "aria2");
    let mut last = String::new();
    for attempt in 0..5 {
        let port = free_port(ip);
        let log = logs.join(format!("{name}-{attempt}.log"));
        let mut cmd = Command::new("aria2c");
        cmd.args([
            "--no-conf=true",
            "--enable-dht=false",
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            "--disable-ipv6=true",
            "--async-dns=false",
            &format!("--interface={ip}"),
            &format!("--listen-port={port}"),
            &format!("--dht-listen-port={port}"),
            "--console-log-level=notice",
            "--summary-interval=0",
            "--show-console-readout=false",
            "--file-allocation=none",
            "--bt-save-metadata=false",
            "--auto-file-renaming=false",
            "--allow-overwrite=true",
            "--max-overall-upload-limit=0",
            "--max-overall-download-limit=0",
            // Exit after this long even if nobody stops it.
            &format!("--stop={}", 2 * TRANSFER_TIMEOUT.as_secs()),
            &format!("--log={}", log.display()),
            if verbose() {
                "--log-level=debug"
            } else {
                "--log-level=info"
            },
        ]);
        cmd.arg("-d").arg(dir);
        if seed {
            cmd.args([
                "--seed-ratio=0.0",
                "--bt-seed-unverified=true",
                "--check-integrity=false",
            ]);
        } else {
            cmd.args(["--seed-time=0"]);
        }
        cmd.args(target);
        let mut c = Client::spawn(cmd, logs, &format!("{name}-{attempt}"), Some(log));
        let listening = c.wait_stdout(LISTEN_TIMEOUT, |l| {
            if l.contains(&format!("listening on TCP port {port}")) {
                Some(true)
            } else if l.contains("failed to bind TCP port") {
                Some(false)
            } else {
                None
            }
        });
        if listening == Some(true) {
            return (c, addr(ip, port));
        }
        last = c.logs();
        // Port taken meanwhile (or no answer): try another one.
    }
    panic!("aria2c {name} did not listen on {ip} after 5 tries:\n{last}");
}

// --- libtorrent ---

fn require_libtorrent() {
    let ok = Command::new(SYSTEM_PYTHON)
        .args(["-c", "import libtorrent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "libtorrent's python bindings are not importable by {SYSTEM_PYTHON}: install the \
         Debian package 'python3-libtorrent' (or run .ci/test, which does)"
    );
}

/// Starts tests/fixtures/lt_peer.py on `ip` (port picked by the kernel),
/// seeding from `save_path` or leeching into it, dialling `peers`.
/// Returns it once it listens. A helper that dies before listening, with
/// no word on stdout or stderr (seen once in CI: python3-libtorrent under
/// load, exit status not recorded then), is started once more; the second
/// failure panics with both attempts' logs and exit statuses.
fn start_lt(
    logs: &Path,
    name: &str,
    ip: &str,
    torrent: &Path,
    save_path: &Path,
    seed: bool,
    peers: &[SocketAddr],
) -> (Client, SocketAddr) {
    require_libtorrent();
    let try_start = || -> Result<(Client, SocketAddr), String> {
        let mut cmd = Command::new(SYSTEM_PYTHON);
        cmd.arg(LT_PEER)
            .arg("--torrent")
            .arg(torrent)
            .arg("--save-path")
            .arg(save_path)
            .args([
                "--bind",
                ip,
                "--timeout",
                &TRANSFER_TIMEOUT.as_secs().to_string(),
            ]);
        if seed {
            cmd.arg("--seed");
        }
        if verbose() {
            cmd.arg("--verbose");
        }
        for p in peers {
            cmd.args(["--peer", &p.to_string()]);
        }
        let mut c = Client::spawn(cmd, logs, name, None);
        let port = c.wait_stdout(LISTEN_TIMEOUT, |l| {
            l.strip_prefix("LISTEN ")
                .and_then(|p| p.trim().parse::<u16>().ok())
        });
        match port {
            Some(port) => Ok((c, addr(ip, port))),
            None => {
                let status = match c.child.try_wait() {
                    Ok(Some(s)) => format!("exited: {s}"),
                    _ => format!("still running after {LISTEN_TIMEOUT:?}"),
                };
                Err(format!("{status}\n{}", c.logs()))
            }
        }
    };
    let first = match try_start() {
        Ok(started) => return started,
        Err(why) => why,
    };
    eprintln!("libtorrent {name} did not start (trying once more):\n{first}");
    match try_start() {
        Ok(started) => started,
        Err(why) => {
            panic!("libtorrent {name} did not listen on {ip}, twice:\n{first}\n--- again:\n{why}")
        }
    }
}

// ---------------------------------------------------------------------------
// peerlet side
// ---------------------------------------------------------------------------

fn u64_of(j: &Json, key: &str) -> u64 {
    j.get(key).and_then(Json::as_u64).unwrap_or(0)
}

/// The end of a daemon's log without the control API's request lines (the
/// tests poll status).
fn peerlet_log(d: &DaemonProc) -> String {
    let text = std::fs::read_to_string(&d.log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("control API: GET"))
        .collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn report(what: &str, bytes: u64, since: Instant) {
    let s = since.elapsed().as_secs_f64();
    eprintln!(
        "{what}: {:.1} MiB in {s:.1} s ({:.0} MB/s)",
        bytes as f64 / 1048576.0,
        bytes as f64 / s.max(1e-3) / 1e6
    );
}

/// A peerlet daemon seeding `source` (copied to `seed/` in its download
/// directory, since `-d` must name a directory there, and added with `-d`
/// that directory, so the data is checked where it lies), once every piece
/// is verified.
fn peerlet_seeder(root: &Path, ip: &str, torrent: &Path, hash: &str, source: &Path) -> DaemonProc {
    let d = DaemonProc::start(root, "peerlet-seeder", ip, &[]);
    let seed = d.download_dir.join("seed");
    common::daemon::copy_tree(source, &seed.join(source.file_name().unwrap()));
    let parent = seed.to_str().unwrap();
    let (code, out, err) = d.cli(&["add", torrent.to_str().unwrap(), "-d", parent]);
    assert_eq!(code, 0, "peerlet add -d: {out}{err}");
    let st = d.wait_complete(hash, Duration::from_secs(60));
    assert_eq!(
        st.get("state").and_then(Json::as_str),
        Some("seeding"),
        "{st}"
    );
    d
}

/// Waits until a client leecher exits; panics with every log if it fails
/// or takes too long.
fn wait_client_done(client: &mut Client, seeder: &DaemonProc, hash: &str) {
    let status = client.wait_exit(TRANSFER_TIMEOUT);
    let ok = status.map(|s| s.success()).unwrap_or(false);
    if !ok {
        let st = seeder
            .try_status(hash)
            .map(|s| s.to_string())
            .unwrap_or_default();
        panic!(
            "{} did not finish (exit: {status:?})\n{}\n--- peerlet status: {st}\n--- peerlet log:\n{}",
            client.name,
            client.logs(),
            peerlet_log(seeder)
        );
    }
}

/// Waits until the peerlet leecher has verified everything; panics with the
/// client's logs too if not.
fn wait_peerlet_done(leecher: &DaemonProc, client: &mut Client, hash: &str) -> Json {
    let deadline = Instant::now() + TRANSFER_TIMEOUT;
    loop {
        if let Some(s) = leecher.try_status(hash) {
            let have = s.get("pieces_have").and_then(Json::as_u64);
            if have.is_some() && have == s.get("pieces").and_then(Json::as_u64) {
                return s;
            }
            if Instant::now() > deadline || client.child.try_wait().unwrap().is_some() {
                panic!(
                    "peerlet did not complete from {} (client exited: {:?}): {s}\n{}\n--- peerlet log:\n{}",
                    client.name,
                    client.child.try_wait().unwrap(),
                    client.logs(),
                    peerlet_log(leecher)
                );
            }
        } else if Instant::now() > deadline {
            panic!("peerlet did not answer:\n{}", peerlet_log(leecher));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn check_peerlet_leecher(st: &Json, payload_len: u64) {
    assert_eq!(
        st.get("state").and_then(Json::as_str),
        Some("seeding"),
        "{st}"
    );
    assert_eq!(u64_of(st, "hash_failures"), 0, "{st}");
    assert!(u64_of(st, "downloaded") >= payload_len, "{st}");
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------
//
// Each test: payload, `peerlet create`, one side seeds, the other leeches,
// byte-for-byte comparison. peerlet dials the client unless said otherwise.

#[test]
fn peerlet_seeds_aria2c_leeches_multi_file() {
    require_tool("aria2c", "aria2");
    let tmp = TempDir::new("interop-pl-aria2");
    let payload = tmp.join("seed/tree");
    let total = make_tree(&payload, 32, 100);
    let torrent = tmp.join("tree.torrent");
    let hash = create_torrent(&payload, &torrent, "256K");

    let seeder = peerlet_seeder(tmp.path(), "127.0.0.41", &torrent, &hash, &payload);
    let dl = tmp.join("aria2-dl");
    let (mut aria, aria_addr) = start_aria2(
        tmp.path(),
        "aria2-leech",
        "127.0.0.42",
        &torrent,
        &dl,
        false,
    );
    let t = Instant::now();
    seeder.add(&torrent, &[aria_addr]);
    wait_client_done(&mut aria, &seeder, &hash);
    report("peerlet → aria2c, 5 files", total, t);

    assert_same(&payload, &dl.join("tree"));
    let st = seeder.status(&hash);
    assert!(u64_of(&st, "uploaded") >= total, "{st}");
}

#[test]
fn aria2c_seeds_peerlet_leeches_single_file() {
    require_tool("aria2c", "aria2");
    let tmp = TempDir::new("interop-aria2-pl");
    let file = tmp.join("seed/single.bin");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let len = (24 << 20) + 777;
    write_random_file(&file, len, 200);
    let torrent = tmp.join("single.torrent");
    let hash = create_torrent(&file, &torrent, "1M");

    let (mut aria, aria_addr) = start_aria2(
        tmp.path(),
        "aria2-seed",
        "127.0.0.43",
        &torrent,
        &tmp.join("seed"),
        true,
    );
    let leecher = DaemonProc::start(tmp.path(), "peerlet-leecher", "127.0.0.44", &[]);
    let t = Instant::now();
    leecher.add(&torrent, &[aria_addr]);
    let st = wait_peerlet_done(&leecher, &mut aria, &hash);
    report("aria2c → peerlet, 1 file", len, t);
    check_peerlet_leecher(&st, len);
    assert_same(&file, &leecher.download_dir.join("single.bin"));
}

#[test]
fn aria2c_seeds_peerlet_leeches_multi_file() {
    require_tool("aria2c", "aria2");
    let tmp = TempDir::new("interop-aria2-pl-multi");
    let payload = tmp.join("seed/tree");
    let total = make_tree(&payload, 24, 250);
    let torrent = tmp.join("tree.torrent");
    let hash = create_torrent(&payload, &torrent, "64K");

    let (mut aria, aria_addr) = start_aria2(
        tmp.path(),
        "aria2-seed",
        "127.0.0.45",
        &torrent,
        &tmp.join("seed"),
        true,
    );
    let leecher = DaemonProc::start(tmp.path(), "peerlet-leecher", "127.0.0.46", &[]);
    let t = Instant::now();
    leecher.add(&torrent, &[aria_addr]);
    let st = wait_peerlet_done(&leecher, &mut aria, &hash);
    report("aria2c → peerlet, 5 files", total, t);
    check_peerlet_leecher(&st, total);
    assert_same(&payload, &leecher.download_dir.join("tree"));
}

#[test]
fn peerlet_seeds_libtorrent_leeches_single_file() {
    require_libtorrent();
    let tmp = TempDir::new("interop-pl-lt");
    let file = tmp.join("seed/single.bin");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let len = (24 << 20) + 999;
    write_random_file(&file, len, 300);
    let torrent = tmp.join("single.torrent");
    let hash = create_torrent(&file, &torrent, "512K");

    let seeder = peerlet_seeder(tmp.path(), "127.0.0.51", &torrent, &hash, &file);
    let dl = tmp.join("lt-dl");
    let (mut lt, lt_addr) = start_lt(
        tmp.path(),
        "lt-leech",
        "127.0.0.52",
        &torrent,
        &dl,
        false,
        &[],
    );
    let t = Instant::now();
    seeder.add(&torrent, &[lt_addr]);
    wait_client_done(&mut lt, &seeder, &hash);
    report("peerlet → libtorrent, 1 file", len, t);

    assert!(lt.stdout().contains("DONE"), "{}", lt.logs());
    assert_same(&file, &dl.join("single.bin"));
    let st = seeder.status(&hash);
    assert!(u64_of(&st, "uploaded") >= len, "{st}");
}

#[test]
fn peerlet_seeds_libtorrent_leeches_multi_file_libtorrent_dials() {
    require_libtorrent();
    let tmp = TempDir::new("interop-pl-lt-in");
    let payload = tmp.join("seed/tree");
    let total = make_tree(&payload, 24, 400);
    let torrent = tmp.join("tree.torrent");
    let hash = create_torrent(&payload, &torrent, "128K");

    // Here peerlet accepts the connection: libtorrent dials it.
    let seeder = peerlet_seeder(tmp.path(), "127.0.0.53", &torrent, &hash, &payload);
    let dl = tmp.join("lt-dl");
    let t = Instant::now();
    let (mut lt, _) = start_lt(
        tmp.path(),
        "lt-leech",
        "127.0.0.54",
        &torrent,
        &dl,
        false,
        &[seeder.listen],
    );
    wait_client_done(&mut lt, &seeder, &hash);
    report("peerlet ← libtorrent dials, 5 files", total, t);

    assert!(lt.stdout().contains("DONE"), "{}", lt.logs());
    assert_same(&payload, &dl.join("tree"));
    let st = seeder.status(&hash);
    assert!(u64_of(&st, "uploaded") >= total, "{st}");
}

#[test]
fn libtorrent_seeds_peerlet_leeches_multi_file() {
    require_libtorrent();
    let tmp = TempDir::new("interop-lt-pl");
    let payload = tmp.join("seed/tree");
    let total = make_tree(&payload, 32, 500);
    let torrent = tmp.join("tree.torrent");
    let hash = create_torrent(&payload, &torrent, "256K");

    let (mut lt, lt_addr) = start_lt(
        tmp.path(),
        "lt-seed",
        "127.0.0.55",
        &torrent,
        &tmp.join("seed"),
        true,
        &[],
    );
    let leecher = DaemonProc::start(tmp.path(), "peerlet-leecher", "127.0.0.56", &[]);
    let t = Instant::now();
    leecher.add(&torrent, &[lt_addr]);
    let st = wait_peerlet_done(&leecher, &mut lt, &hash);
    report("libtorrent → peerlet, 5 files", total, t);
    check_peerlet_leecher(&st, total);
    assert_same(&payload, &leecher.download_dir.join("tree"));
}

/// BEP 9 serving: aria2c starts from nothing but a magnet link; peerlet, the
/// seeder, dials it, and aria2c fetches the info dictionary from peerlet over
/// ut_metadata before downloading the data.
#[test]
fn aria2c_fetches_metadata_from_a_peerlet_seeder_with_a_magnet_link() {
    require_tool("aria2c", "aria2");
    let tmp = TempDir::new("interop-magnet-aria2");
    let payload = tmp.join("seed/tree");
    let total = make_tree(&payload, 8, 300);
    let torrent = tmp.join("tree.torrent");
    let hash = create_torrent(&payload, &torrent, "64K");
    let seeder = peerlet_seeder(tmp.path(), "127.0.0.45", &torrent, &hash, &payload);
    let dl = tmp.join("aria2-dl");
    let magnet = format!("magnet:?xt=urn:btih:{hash}&dn=tree");
    let (mut aria, aria_addr) = start_aria2_with(
        tmp.path(),
        "aria2-magnet",
        "127.0.0.46",
        &[std::ffi::OsStr::new(&magnet)],
        &dl,
        false,
    );
    let t = Instant::now();
    seeder.add(&torrent, &[aria_addr]);
    wait_client_done(&mut aria, &seeder, &hash);
    report("peerlet → aria2c from a magnet link", total, t);
    assert_same(&payload, &dl.join("tree"));
}

// --- trackers (opentracker) ---

/// opentracker on 127.0.0.1 (TCP and UDP on one port), with a whitelist of
/// the torrents under test; killed when dropped.
struct OpenTracker {
    child: Child,
    port: u16,
}

impl OpenTracker {
    fn start(root: &Path, info_hashes: &[&str]) -> OpenTracker {
        require_tool("opentracker", "opentracker");
        let dir = root.join("otroot");
        std::fs::create_dir_all(&dir).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("whitelist.txt"), info_hashes.join("\n") + "\n").unwrap();
        std::fs::set_permissions(
            dir.join("whitelist.txt"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let conf = root.join("opentracker.conf");
        // The path is inside the chroot.
        std::fs::write(&conf, "access.whitelist /whitelist.txt\n").unwrap();
        let port = free_port("127.0.0.1");
        let p = port.to_string();
        let child = Command::new("opentracker")
            .args(["-i", "127.0.0.1", "-p", &p, "-P", &p, "-f"])
            .arg(&conf)
            .arg("-d")
            .arg(&dir)
            .args(["-u", "nobody"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting opentracker");
        let mut t = OpenTracker { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "opentracker did not come up");
            assert!(t.child.try_wait().unwrap().is_none(), "opentracker exited");
            std::thread::sleep(Duration::from_millis(50));
        }
        t
    }

    /// Seeders the tracker knows for `hash` (HTTP scrape).
    fn seeders(&self, hash: &str) -> u32 {
        let raw = peerlet::hash::from_hex(hash).unwrap();
        let q: String = raw.iter().map(|b| format!("%{b:02X}")).collect();
        let url = format!("http://127.0.0.1:{}/scrape?info_hash={q}", self.port);
        // Plain HTTP: the roots are never read.
        let roots = peerlet::net::system_tls_roots(None);
        peerlet::tracker::http::fetch(&url, Duration::from_secs(5), &roots)
            .ok()
            .and_then(|body| peerlet::tracker::http::parse_scrape(&body).ok())
            .and_then(|files| {
                files
                    .into_iter()
                    .find(|(h, _)| *h == raw)
                    .map(|(_, s)| s.complete)
            })
            .unwrap_or(0)
    }
}

impl Drop for OpenTracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tracker_result(st: &Json) -> String {
    st.get("trackers")
        .and_then(Json::as_array)
        .and_then(|t| t.first())
        .and_then(|t| t.get("last_result"))
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_string()
}

/// Starts opentracker for the torrent of `source` and writes that torrent,
/// announcing to it at `scheme://127.0.0.1:PORT/announce` for each scheme
/// (one tier each, in order), to `out`. (The info-hash does not depend on
/// the tracker URLs, so a first torrent gives the hash for the whitelist.)
fn tracker_and_torrent(
    root: &Path,
    source: &Path,
    out: &Path,
    schemes: &[&str],
) -> (OpenTracker, String) {
    let probe = root.join("probe.torrent");
    let hash = create_torrent_with(
        source,
        &probe,
        "64K",
        &["http://127.0.0.1:1/announce".to_string()],
        &[],
    );
    let tracker = OpenTracker::start(root, &[&hash]);
    let urls: Vec<String> = schemes
        .iter()
        .map(|s| format!("{s}://127.0.0.1:{}/announce", tracker.port))
        .collect();
    let again = create_torrent_with(source, out, "64K", &urls, &[]);
    assert_eq!(
        hash, again,
        "the tracker URL is outside the info dictionary"
    );
    (tracker, hash)
}

/// HTTP announce: a peerlet seeder and an aria2c leecher that know each
/// other only through opentracker.
#[test]
fn http_tracker_peerlet_seeds_aria2c_leeches() {
    require_tool("aria2c", "aria2");
    let tmp = TempDir::new("tracker-http");
    let payload = tmp.join("seed/tree");
    let total = make_tree(&payload, 8, 400);
    let torrent = tmp.join("tree.torrent");
    let (tracker, hash) = tracker_and_torrent(tmp.path(), &payload, &torrent, &["http"]);
    let seeder = peerlet_seeder(tmp.path(), "127.0.0.1", &torrent, &hash, &payload);
    let deadline = Instant::now() + Duration::from_secs(30);
    while tracker.seeders(&hash) == 0 {
        assert!(
            Instant::now() < deadline,
            "peerlet never announced: {}",
            seeder.status(&hash)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        tracker_result(&seeder.status(&hash)).starts_with("ok"),
        "{}",
        seeder.status(&hash)
    );
    let dl = tmp.join("aria2-dl");
    let (mut aria, _) = start_aria2(
        tmp.path(),
        "aria2-tracker-leech",
        "127.0.0.1",
        &torrent,
        &dl,
        false,
    );
    let t = Instant::now();
    wait_client_done(&mut aria, &seeder, &hash);
    report("peerlet → aria2c via an HTTP tracker", total, t);
    assert_same(&payload, &dl.join("tree"));
}

/// UDP announce: an aria2c seeder and a peerlet leecher that know each
/// other only through opentracker. peerlet announces over UDP (the first
/// tier); aria2c speaks UDP trackers only with its DHT on, so it falls
/// through to the HTTP tier of the same opentracker (one swarm for both).
#[test]
fn udp_tracker_aria2c_seeds_peerlet_leeches() {
    require_tool("aria2c", "aria2");
    let tmp = TempDir::new("tracker-udp");
    let src = tmp.join("src/tree");
    let total = make_tree(&src, 8, 500);
    let torrent = tmp.join("tree.torrent");
    let (tracker, hash) = tracker_and_torrent(tmp.path(), &src, &torrent, &["udp", "http"]);
    let mut aria = aria2_seeding_via(&tracker, &hash, tmp.path(), "127.0.0.1", &src, &torrent);
    let leecher = DaemonProc::start(tmp.path(), "peerlet-leecher", "127.0.0.1", &[]);
    leecher.add(&torrent, &[]);
    let t = Instant::now();
    let st = wait_peerlet_done(&leecher, &mut aria, &hash);
    report("aria2c → peerlet via a UDP tracker", total, t);
    assert!(tracker_result(&st).starts_with("ok"), "{st}");
    assert_same(&src, &leecher.download_dir.join("tree"));
}

/// An aria2c seeder of a copy of `src` (a tree named `tree`) on `ip`,
/// once `tracker` lists it as a seeder.
fn aria2_seeding_via(
    tracker: &OpenTracker,
    hash: &str,
    root: &Path,
    ip: &str,
    src: &Path,
    torrent: &Path,
) -> Client {
    let seed_dir = root.join(format!("aria2-seed-{ip}"));
    copy_tree(src, &seed_dir.join("tree"));
    let (aria, _) = start_aria2(root, "aria2-tracker-seed", ip, torrent, &seed_dir, true);
    let deadline = Instant::now() + Duration::from_secs(30);
    while tracker.seeders(hash) == 0 {
        assert!(
            Instant::now() < deadline,
            "aria2c never announced:\n{}",
            aria.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    aria
}

fn copy_tree(from: &Path, to: &Path) {
    for f in peerlet::storage::walk(from).unwrap() {
        let dest = to.join(f.relative.join("/"));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&f.path, &dest).unwrap();
    }
}

/// Waits until `leecher` has the torrent's metadata and every piece.
fn wait_magnet_done(leecher: &DaemonProc, client: &mut Client, hash: &str) -> Json {
    let deadline = Instant::now() + TRANSFER_TIMEOUT;
    loop {
        if let Some(s) = leecher.try_status(hash) {
            let pieces = s.get("pieces").and_then(Json::as_u64).unwrap_or(0);
            if pieces > 0 && s.get("pieces_have").and_then(Json::as_u64) == Some(pieces) {
                return s;
            }
            assert!(
                Instant::now() < deadline && client.child.try_wait().unwrap().is_none(),
                "peerlet did not complete from a magnet link via {}: {s}\n{}\n--- peerlet log:\n{}",
                client.name,
                client.logs(),
                peerlet_log(leecher)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// BEP 9 fetching: peerlet starts from nothing but a magnet link whose
/// `x.pe` names an aria2c seeder, fetches the info dictionary from it, then
/// the data; the metadata is kept as a .torrent in the state directory.
#[test]
fn magnet_link_downloads_from_an_aria2c_seeder() {
    require_tool("aria2c", "aria2");
    let tmp = TempDir::new("magnet-aria2");
    let src = tmp.join("src/tree");
    let total = make_tree(&src, 8, 600);
    let torrent = tmp.join("tree.torrent");
    let hash = create_torrent(&src, &torrent, "64K");
    let seed_dir = tmp.join("aria2-seed");
    copy_tree(&src, &seed_dir.join("tree"));
    let (mut aria, aria_addr) = start_aria2(
        tmp.path(),
        "aria2-magnet-seed",
        "127.0.0.47",
        &torrent,
        &seed_dir,
        true,
    );
    let leecher = DaemonProc::start(tmp.path(), "peerlet-magnet", "127.0.0.48", &[]);
    let magnet = format!("magnet:?xt=urn:btih:{hash}&dn=tree&x.pe={aria_addr}");
    let (code, out, err) = leecher.cli(&["add", &magnet]);
    assert_eq!(code, 0, "{out}{err}");
    let t = Instant::now();
    let st = wait_magnet_done(&leecher, &mut aria, &hash);
    report("aria2c → peerlet from a magnet link", total, t);
    assert_eq!(st.get("hash_failures").and_then(Json::as_u64), Some(0));
    assert_same(&src, &leecher.download_dir.join("tree"));
    let saved = leecher
        .state_dir
        .join("torrents")
        .join(format!("{hash}.torrent"));
    let meta = peerlet::metainfo::Torrent::from_bytes(&std::fs::read(&saved).unwrap()).unwrap();
    assert_eq!(meta.info_hash.to_hex(), hash);
}

/// The same with a libtorrent seeder.
#[test]
fn magnet_link_downloads_from_a_libtorrent_seeder() {
    require_libtorrent();
    let tmp = TempDir::new("magnet-lt");
    let src = tmp.join("src/tree");
    let total = make_tree(&src, 8, 700);
    let torrent = tmp.join("tree.torrent");
    let hash = create_torrent(&src, &torrent, "64K");
    let seed_dir = tmp.join("lt-seed");
    copy_tree(&src, &seed_dir.join("tree"));
    let (mut lt, lt_addr) = start_lt(
        tmp.path(),
        "lt-magnet-seed",
        "127.0.0.49",
        &torrent,
        &seed_dir,
        true,
        &[],
    );
    let leecher = DaemonProc::start(tmp.path(), "peerlet-magnet", "127.0.0.50", &[]);
    let magnet = format!("magnet:?xt=urn:btih:{hash}&x.pe={lt_addr}");
    let (code, out, err) = leecher.cli(&["add", &magnet]);
    assert_eq!(code, 0, "{out}{err}");
    let t = Instant::now();
    wait_magnet_done(&leecher, &mut lt, &hash);
    report("libtorrent → peerlet from a magnet link", total, t);
    assert_same(&src, &leecher.download_dir.join("tree"));
}

/// A magnet link with only trackers (`tr`, no `x.pe`): peerlet announces
/// the magnet over UDP to opentracker (left unknown, so counted as a
/// leecher), learns the aria2c seeder (which announces over HTTP to the same
/// opentracker), fetches the metadata and the data; the .torrent it saves
/// keeps the trackers, and the seeder's bytes are counted under `tracker`.
#[test]
fn magnet_link_with_only_a_tracker_downloads_from_aria2c() {
    require_tool("aria2c", "aria2");
    let tmp = TempDir::new("magnet-tracker");
    let src = tmp.join("src/tree");
    let total = make_tree(&src, 8, 800);
    let torrent = tmp.join("tree.torrent");
    let (tracker, hash) = tracker_and_torrent(tmp.path(), &src, &torrent, &["http"]);
    let mut aria = aria2_seeding_via(&tracker, &hash, tmp.path(), "127.0.0.51", &src, &torrent);
    let enc = |u: String| u.replace(':', "%3A").replace('/', "%2F");
    let udp = format!("udp://127.0.0.1:{}/announce", tracker.port);
    let http = format!("http://127.0.0.1:{}/announce", tracker.port);
    let magnet = format!(
        "magnet:?xt=urn:btih:{hash}&dn=tree&tr={}&tr={}",
        enc(udp.clone()),
        enc(http.clone())
    );
    let leecher = DaemonProc::start(tmp.path(), "peerlet-magnet-tracker", "127.0.0.52", &[]);
    let (code, out, err) = leecher.cli(&["add", &magnet]);
    assert_eq!(code, 0, "{out}{err}");
    let t = Instant::now();
    let st = wait_magnet_done(&leecher, &mut aria, &hash);
    report(
        "aria2c → peerlet from a magnet link with a tracker",
        total,
        t,
    );
    assert_same(&src, &leecher.download_dir.join("tree"));
    let trackers = st.get("trackers").and_then(Json::as_array).unwrap();
    assert_eq!(trackers.len(), 2, "{st}");
    assert!(tracker_result(&st).starts_with("ok"), "{st}");
    let from_tracker = st
        .get("sources")
        .and_then(Json::as_array)
        .unwrap()
        .iter()
        .find(|s| s.get("source").and_then(Json::as_str) == Some("tracker"))
        .and_then(|s| s.get("downloaded").and_then(Json::as_u64))
        .unwrap_or(0);
    assert!(from_tracker >= total, "{st}");
    let saved = leecher
        .state_dir
        .join("torrents")
        .join(format!("{hash}.torrent"));
    let meta = peerlet::metainfo::Torrent::from_bytes(&std::fs::read(&saved).unwrap()).unwrap();
    assert_eq!(meta.announce_list, vec![vec![udp], vec![http]]);
    assert!(!leecher
        .state_dir
        .join("torrents")
        .join(format!("{hash}.magnet"))
        .exists());
}
