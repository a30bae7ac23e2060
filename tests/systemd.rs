//! Running under systemd, without systemd: `peerlet daemon` is started the
//! way a `Type=notify` unit starts it ($NOTIFY_SOCKET bound by the test,
//! $WATCHDOG_USEC, $JOURNAL_STREAM), and the unit in examples/ is checked
//! with `systemd-analyze verify` when that tool is installed.
//!
//! Daemons listen on 127.0.0.230 to 127.0.0.233.

mod common;

use common::daemon::create_torrent;
use common::{peerlet, write_random_file, TempDir};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A `peerlet daemon` child with the environment a test gives it.
struct Daemon {
    child: Option<Child>,
    log: PathBuf,
    state_dir: PathBuf,
    download_dir: PathBuf,
}

impl Daemon {
    /// Starts `peerlet daemon` on `ip` with its directories under `dir`,
    /// stderr to `dir/daemon.log` (created beforehand, so a test can stat
    /// it) and `env` on top of an environment without any systemd variable.
    fn start(dir: &Path, ip: &str, env: &[(&str, String)]) -> Daemon {
        let log = dir.join("daemon.log");
        Daemon::start_with_log(dir, ip, env, &log)
    }

    fn start_with_log(dir: &Path, ip: &str, env: &[(&str, String)], log: &Path) -> Daemon {
        let state_dir = dir.join("state");
        let download_dir = dir.join("downloads");
        std::fs::create_dir_all(&download_dir).unwrap();
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut cmd = peerlet();
        cmd.arg("daemon")
            .args(["--listen", &format!("{ip}:0"), "--api", &format!("{ip}:0")])
            .arg("--download-dir")
            .arg(&download_dir)
            .arg("--state-dir")
            .arg(&state_dir)
            // Tests send nothing outside loopback: no multicast beacons.
            .arg("--no-lan-discovery")
            .env("RUST_LOG", "info");
        for var in [
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "JOURNAL_STREAM",
            "LISTEN_FDS",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting peerlet daemon");
        Daemon {
            child: Some(child),
            log: log.to_path_buf(),
            state_dir,
            download_dir,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The control API address from the start-up banner, once it is there.
    fn wait_api(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(api) = banner_api(&self.log_text()) {
                return api;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("daemon exited with {st} at start:\n{}", self.log_text());
            }
            assert!(Instant::now() < deadline, "no banner:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn sigterm(&self) {
        self.signal("-TERM");
    }

    /// `kill SIGNAL PID`.
    fn signal(&self, signal: &str) {
        let st = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Waits up to `limit` for the exit; SIGKILL and `None` after that.
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `http://ADDR` from "peerlet daemon: peers on ..., control API on http://ADDR, ...".
fn banner_api(log: &str) -> Option<String> {
    let line = log
        .lines()
        .find(|l| l.contains("peerlet daemon: peers on "))?;
    let rest = line.split("control API on http://").nth(1)?;
    Some(rest.split(',').next()?.to_string())
}

fn cli(api: &str, args: &[&str]) -> (i32, String, String) {
    let out = peerlet().args(args).args(["--api", api]).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The datagrams a daemon sends to the notify socket the test bound, as
/// single `KEY=VALUE` assignments in arrival order.
struct NotifySocket {
    socket: UnixDatagram,
    seen: Vec<(Instant, String)>,
}

impl NotifySocket {
    fn bind(path: &Path) -> NotifySocket {
        let _ = std::fs::remove_file(path);
        let socket = UnixDatagram::bind(path).unwrap();
        NotifySocket {
            socket,
            seen: Vec::new(),
        }
    }

    /// Receives for at most `timeout`; false when nothing came.
    fn recv(&mut self, timeout: Duration) -> bool {
        self.socket
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = vec![0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => {
                let text = String::from_utf8(buf[..n].to_vec()).expect("UTF-8 datagram");
                let now = Instant::now();
                for line in text.lines() {
                    self.seen.push((now, line.to_string()));
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Waits until an assignment (seen at or after `since`) matches; its text.
    fn wait_for(
        &mut self,
        since: Instant,
        what: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((_, l)) = self.seen.iter().find(|(t, l)| *t >= since && what(l)) {
                return Some(l.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.recv(left);
        }
    }

    fn lines(&self) -> Vec<&str> {
        self.seen.iter().map(|(_, l)| l.as_str()).collect()
    }
}

#[test]
fn notify_ready_status_then_sigterm_stops_cleanly_and_saves_state() {
    let tmp = TempDir::new("systemd-notify");
    let mut notify = NotifySocket::bind(&tmp.join("notify"));
    let start = Instant::now();
    let mut d = Daemon::start(
        tmp.path(),
        "127.0.0.230",
        &[(
            "NOTIFY_SOCKET",
            tmp.join("notify").to_string_lossy().into_owned(),
        )],
    );
    // A torrent whose data is already there, so there is state to save.
    let data = d.download_dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_random_file(&data.join("a.bin"), 2 << 20, 7);
    let torrent = tmp.join("data.torrent");
    let hash = create_torrent(&data, &torrent, "256K");

    let ready = notify.wait_for(start, |l| l == "READY=1", Duration::from_secs(20));
    assert!(ready.is_some(), "no READY=1:\n{}", d.log_text());
    // READY=1 comes after the banner, with the API up.
    let api = banner_api(&d.log_text()).expect("the banner is written before READY=1");
    let (code, out, err) = cli(&api, &["ls"]);
    assert_eq!(code, 0, "ls right after READY=1: {out}{err}");

    let (code, out, err) = cli(&api, &["add", torrent.to_str().unwrap()]);
    assert_eq!(code, 0, "add: {out}{err}");
    let status = notify.wait_for(
        start,
        |l| l.starts_with("STATUS=1 torrent, 0 peers, down "),
        Duration::from_secs(20),
    );
    assert!(
        status.is_some(),
        "no STATUS= line with the torrent: {:?}",
        notify.lines()
    );
    // Seeding: every piece verified, which the stop must record.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, out, _) = cli(&api, &["status", &hash, "--json"]);
        let state = peerlet::json::parse(&out)
            .ok()
            .and_then(|j| j.get("state").and_then(|s| s.as_str().map(str::to_string)));
        if state.as_deref() == Some("seeding") {
            break;
        }
        assert!(Instant::now() < deadline, "never seeding: {out}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !notify.lines().contains(&"STOPPING=1"),
        "STOPPING=1 before any stop: {:?}",
        notify.lines()
    );

    // SIGHUP reloads the configuration (none here) and stops nothing.
    d.signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log_text().contains("SIGHUP: reloaded") {
        assert!(Instant::now() < deadline, "no reload:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, out, err) = cli(&api, &["ls"]);
    assert_eq!(code, 0, "ls after SIGHUP: {out}{err}");

    let term = Instant::now();
    d.sigterm();
    let stopping = notify.wait_for(term, |l| l == "STOPPING=1", Duration::from_secs(5));
    assert!(
        stopping.is_some(),
        "no STOPPING=1 after SIGTERM: {:?}\n{}",
        notify.lines(),
        d.log_text()
    );
    let status = d.wait_exit(Duration::from_secs(20));
    let took = term.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after SIGTERM: {status:?}\n{}",
        d.log_text()
    );
    assert!(
        took < Duration::from_secs(15),
        "the stop took {took:?}\n{}",
        d.log_text()
    );
    let log = d.log_text();
    assert!(log.contains("SIGTERM: stopping"), "{log}");
    assert!(!log.contains("did not finish"), "{log}");

    // The state is saved: the resume record lists every piece, the stop
    // was marked clean, and the journal is gone.
    let torrents = d.state_dir.join("torrents");
    let bytes = std::fs::read(torrents.join(format!("{hash}.resume"))).expect("resume record");
    let resume = peerlet::resume::Resume::decode(&bytes).expect("a valid resume record");
    let pieces: u32 = resume.pieces.iter().map(|b| b.count_ones()).sum();
    assert_eq!(pieces, 8, "2 MiB in 256 KiB pieces, all verified");
    assert!(d.state_dir.join("clean").exists(), "no clean marker");
    assert!(!torrents.join(format!("{hash}.journal")).exists());
}

#[test]
fn watchdog_pings_while_the_engine_answers() {
    let tmp = TempDir::new("systemd-watchdog");
    let mut notify = NotifySocket::bind(&tmp.join("notify"));
    let start = Instant::now();
    let mut d = Daemon::start(
        tmp.path(),
        "127.0.0.231",
        &[
            (
                "NOTIFY_SOCKET",
                tmp.join("notify").to_string_lossy().into_owned(),
            ),
            ("WATCHDOG_USEC", "2000000".into()),
        ],
    );
    let ready = notify.wait_for(start, |l| l == "READY=1", Duration::from_secs(20));
    assert!(ready.is_some(), "no READY=1:\n{}", d.log_text());
    let after_ready = Instant::now();
    // Pings every second (half of 2 s): at least 3 in 4 s.
    let deadline = after_ready + Duration::from_secs(4);
    while Instant::now() < deadline {
        notify.recv(deadline.saturating_duration_since(Instant::now()));
    }
    let pings: Vec<Instant> = notify
        .seen
        .iter()
        .filter(|(t, l)| *t >= after_ready && l == "WATCHDOG=1")
        .map(|(t, _)| *t)
        .collect();
    assert!(
        pings.len() >= 3,
        "{} WATCHDOG=1 in 4 s: {:?}\n{}",
        pings.len(),
        notify.lines(),
        d.log_text()
    );
    for w in pings.windows(2) {
        assert!(
            w[1] - w[0] < Duration::from_millis(1900),
            "pings {:?} apart",
            w[1] - w[0]
        );
    }
    d.sigterm();
    assert!(d
        .wait_exit(Duration::from_secs(20))
        .is_some_and(|s| s.success()));
}

#[test]
fn journal_stream_gives_priority_prefixes_without_colours_or_timestamps() {
    use std::os::unix::fs::MetadataExt;
    let tmp = TempDir::new("systemd-journal");
    let log = tmp.join("journal.log");
    std::fs::write(&log, b"").unwrap();
    let meta = std::fs::metadata(&log).unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let mut d = Daemon::start_with_log(
        &tmp.join("a"),
        "127.0.0.232",
        &[("JOURNAL_STREAM", stream)],
        &log,
    );
    d.wait_api();
    d.sigterm();
    assert!(d
        .wait_exit(Duration::from_secs(20))
        .is_some_and(|s| s.success()));
    let text = d.log_text();
    assert!(!text.contains('\x1b'), "ANSI escapes:\n{text}");
    for line in text.lines() {
        let level = line.get(..3).unwrap_or("");
        assert!(
            ["<3>", "<4>", "<5>", "<6>", "<7>"].contains(&level),
            "a line without a priority prefix: {line:?}\n{text}"
        );
        // No timestamp or level word: the logger's target comes first
        // (journald adds the time and keeps the level).
        assert!(
            line[3..].starts_with("peerlet"),
            "not `<N>peerlet...`: {line:?}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("<6>") && l.contains("SIGTERM: stopping")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("<5>peerlet daemon: peers on ")),
        "{text}"
    );

    // JOURNAL_STREAM naming another file (an inherited variable): the usual format.
    let mut d = Daemon::start(
        &tmp.join("b"),
        "127.0.0.233",
        &[("JOURNAL_STREAM", "1:1".into())],
    );
    d.wait_api();
    d.sigterm();
    assert!(d
        .wait_exit(Duration::from_secs(20))
        .is_some_and(|s| s.success()));
    let text = d.log_text();
    assert!(
        text.lines()
            .any(|l| l.starts_with("peerlet daemon: peers on ")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("[INFO") && l.contains("SIGTERM: stopping")),
        "{text}"
    );
    assert!(!text.contains("<6>"), "{text}");
}

#[test]
fn systemd_analyze_verifies_the_example_unit() {
    let Some(analyze) = find_in_path("systemd-analyze") else {
        eprintln!("skipped: systemd-analyze is not installed (Debian package 'systemd'; .ci/test installs it as root)");
        return;
    };
    let tmp = TempDir::new("systemd-unit");
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/peerlet.service"),
    )
    .unwrap();
    assert_eq!(
        unit.matches("\nExecStart=/usr/local/bin/peerlet daemon")
            .count(),
        1,
        "ExecStart changed; update this test"
    );
    // verify wants ExecStart's binary to exist: a copy of the one built.
    let bin = tmp.join("peerlet");
    std::fs::copy(env!("CARGO_BIN_EXE_peerlet"), &bin).unwrap();
    let unit = unit.replace(
        "\nExecStart=/usr/local/bin/peerlet daemon",
        &format!("\nExecStart={} daemon", bin.display()),
    );
    let path = tmp.join("peerlet.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(&path)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "systemd-analyze verify: {stdout}{stderr}"
    );
    // Unknown keys and bad values are only warnings (exit 0): none may name our unit.
    let ours: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .filter(|l| l.contains("peerlet"))
        .collect();
    assert!(
        ours.is_empty(),
        "systemd-analyze verify warns:\n{}",
        ours.join("\n")
    );
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}
