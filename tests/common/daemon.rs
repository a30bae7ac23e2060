//! A `peerlet daemon` child process for tests: started on its own loopback
//! address with ports picked by the kernel, driven through the real CLI and
//! API, stopped (or SIGKILLed) by PID.
#![allow(dead_code)]

use peerlet::json::{self, Json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct DaemonProc {
    child: Option<Child>,
    pub name: String,
    pub ip: String,
    pub api: String,
    pub listen: SocketAddr,
    pub download_dir: PathBuf,
    pub state_dir: PathBuf,
    pub log: PathBuf,
    extra: Vec<String>,
    /// `RUST_LOG` for the child; `None`: `$PEERLET_TEST_LOG`, else `info`.
    rust_log: Option<String>,
    /// More environment for the child (`PEERLET_*`).
    env: Vec<(String, String)>,
}

impl DaemonProc {
    /// Starts a daemon listening on `ip` (e.g. "127.0.0.7") with its
    /// directories under `root/name`.
    pub fn start(root: &Path, name: &str, ip: &str, extra: &[&str]) -> DaemonProc {
        DaemonProc::start_inner(root, name, ip, extra, None)
    }

    /// [`DaemonProc::start`] with `RUST_LOG=rust_log` for this daemon only
    /// (e.g. `"info,peerlet=debug"` to assert on a debug line).
    pub fn start_with_log(
        root: &Path,
        name: &str,
        ip: &str,
        extra: &[&str],
        rust_log: &str,
    ) -> DaemonProc {
        DaemonProc::start_inner(root, name, ip, extra, Some(rust_log.to_string()))
    }

    /// [`DaemonProc::start`] with more environment (`PEERLET_CONFIG`,
    /// `PEERLET_UPLOAD_LIMIT`, ...) for this daemon only.
    pub fn start_with_env(
        root: &Path,
        name: &str,
        ip: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> DaemonProc {
        DaemonProc::start_env(root, name, ip, extra, None, env)
    }

    fn start_inner(
        root: &Path,
        name: &str,
        ip: &str,
        extra: &[&str],
        rust_log: Option<String>,
    ) -> DaemonProc {
        DaemonProc::start_env(root, name, ip, extra, rust_log, &[])
    }

    fn start_env(
        root: &Path,
        name: &str,
        ip: &str,
        extra: &[&str],
        rust_log: Option<String>,
        env: &[(&str, &str)],
    ) -> DaemonProc {
        let base = root.join(name);
        let mut d = DaemonProc {
            child: None,
            name: name.to_string(),
            ip: ip.to_string(),
            api: String::new(),
            listen: "127.0.0.1:1".parse().unwrap(),
            download_dir: base.join("downloads"),
            state_dir: base.join("state"),
            log: base.join("daemon.log"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            rust_log,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        std::fs::create_dir_all(&base).unwrap();
        d.spawn(None);
        d
    }

    /// (Re)starts the process; `listen` reuses a previous port.
    fn spawn(&mut self, listen: Option<SocketAddr>) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let listen_arg = listen
            .map(|a| a.to_string())
            .unwrap_or_else(|| format!("{}:0", self.ip));
        let before = std::fs::read_to_string(&self.log).unwrap_or_default().len();
        // 127.0.0.1 unless the test names its own `--api`.
        let api_arg: &[&str] = if self.extra.iter().any(|a| a == "--api") {
            &[]
        } else {
            &["--api", "127.0.0.1:0"]
        };
        let child = Command::new(env!("CARGO_BIN_EXE_peerlet"))
            .arg("daemon")
            .args(["--listen", &listen_arg])
            .args(api_arg)
            .arg("--download-dir")
            .arg(&self.download_dir)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(&self.extra)
            // Tests send nothing outside loopback: no multicast beacons.
            .arg("--no-lan-discovery")
            .env(
                "RUST_LOG",
                self.rust_log.clone().unwrap_or_else(|| {
                    std::env::var("PEERLET_TEST_LOG").unwrap_or_else(|_| "info".into())
                }),
            )
            // Not the machine's /etc/peerlet/peerlet.toml (an empty file
            // is a valid configuration), unless the test names one.
            .env("PEERLET_CONFIG", "/dev/null")
            // No DHT routers: tests never resolve or contact a public host
            // (a test that wants routers names its own).
            .env("PEERLET_DHT_BOOTSTRAP", "")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting peerlet daemon");
        self.child = Some(child);
        // Wait for the banner line with the real addresses.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let new = &text[before.min(text.len())..];
            // Only a whole line (the daemon may be writing it right now).
            if let Some(line) = new
                .split_inclusive('\n')
                .find(|l| l.starts_with("peerlet daemon: peers on ") && l.ends_with('\n'))
            {
                let words: Vec<&str> = line.split_whitespace().collect();
                self.listen = words[4]
                    .trim_end_matches(',')
                    .parse()
                    .expect("listen address");
                self.api = words[8]
                    .trim_start_matches("http://")
                    .trim_end_matches(',')
                    .to_string();
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("daemon {} exited with {status} at start:\n{new}", self.name);
            }
            assert!(
                Instant::now() < deadline,
                "daemon {} did not start:\n{new}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True when the daemon runs under qemu-user (a cross-compiled test
    /// run through binfmt_misc): its RSS then includes qemu's translation
    /// cache, so memory bounds do not apply.
    pub fn emulated(&self) -> bool {
        std::fs::read_link(format!("/proc/{}/exe", self.pid()))
            .map(|p| p.to_string_lossy().contains("qemu"))
            .unwrap_or(false)
    }

    /// The process's threads (name, state, CPU ticks), for a failure
    /// message: tells a hung thread from a spinning one.
    pub fn threads(&self) -> String {
        let pid = self.pid();
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return format!("process {pid} is gone");
        };
        let mut out = format!("threads of {pid} (name state utime stime):");
        for task in dir.flatten() {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // "tid (comm) S ... utime stime": fields after the last ')'.
            let (head, rest) = stat.rsplit_once(')').unwrap_or(("", ""));
            let name = head.split_once('(').map(|(_, n)| n).unwrap_or("?");
            let f: Vec<&str> = rest.split_whitespace().collect();
            let get = |i: usize| f.get(i).copied().unwrap_or("?");
            out.push_str(&format!("\n  {name} {} {} {}", get(0), get(11), get(12)));
        }
        out
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Runs `peerlet ARGS --api <this daemon>` (with its state directory
    /// in the environment, where the client finds the API token).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_peerlet"))
            .args(args)
            .args(["--api", &self.api])
            .env("PEERLET_STATE_DIR", &self.state_dir)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `peerlet add TORRENT [--peer P]...`; panics on failure.
    pub fn add(&self, torrent: &Path, peers: &[SocketAddr]) {
        let mut args = vec!["add".to_string(), torrent.to_str().unwrap().to_string()];
        for p in peers {
            args.push("--peer".into());
            args.push(p.to_string());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = self.cli(&refs);
        assert_eq!(code, 0, "{} add: {out}{err}", self.name);
    }

    /// The torrent's status as JSON (`peerlet status HASH --json`).
    pub fn status(&self, hash: &str) -> Json {
        let (code, out, err) = self.cli(&["status", hash, "--json"]);
        assert_eq!(code, 0, "{} status: {out}{err}", self.name);
        json::parse(&out).unwrap_or_else(|e| panic!("status JSON: {e}: {out}"))
    }

    pub fn try_status(&self, hash: &str) -> Option<Json> {
        let (code, out, _) = self.cli(&["status", hash, "--json"]);
        if code != 0 {
            return None;
        }
        json::parse(&out).ok()
    }

    /// Waits until every piece is verified; returns the last status.
    pub fn wait_complete(&self, hash: &str, timeout: Duration) -> Json {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status(hash) {
                let have = s.get("pieces_have").and_then(Json::as_u64);
                let total = s.get("pieces").and_then(Json::as_u64);
                // A magnet still fetching its metadata has 0 of 0 pieces.
                if have.is_some() && have == total && total != Some(0) {
                    return s;
                }
                if Instant::now() > deadline {
                    panic!(
                        "{} did not complete in {timeout:?}: {s}\nlog:\n{}",
                        self.name,
                        self.log_tail(30)
                    );
                }
            } else if Instant::now() > deadline {
                panic!("{} did not answer: log:\n{}", self.name, self.log_tail(30));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// SIGKILL, then wait for the process to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the process again on the same peer port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "still running");
        let listen = self.listen;
        self.spawn(Some(listen));
    }

    /// `peerlet stop`, then waits for the exit (SIGKILL after 20 s).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let _ = self.cli(&["stop"]);
        wait_exit(self.child.take()?)
    }

    /// SIGTERM by PID, then waits for the exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        wait_exit(child)
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A daemon seeding `source` (a file or directory, named as in `torrent`):
/// the data is copied into its download directory, the torrent added, and
/// the call returns once every piece is verified.
pub fn start_seeder(
    root: &Path,
    name: &str,
    ip: &str,
    source: &Path,
    torrent: &Path,
    hash: &str,
) -> DaemonProc {
    let d = DaemonProc::start(root, name, ip, &[]);
    copy_tree(source, &d.download_dir.join(source.file_name().unwrap()));
    d.add(torrent, &[]);
    d.wait_complete(hash, Duration::from_secs(60));
    d
}

/// Copies a file or a directory tree.
pub fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    }
}

/// The info-hash printed by `peerlet create`.
pub fn create_torrent(source: &Path, out: &Path, piece_size: &str) -> String {
    create_torrent_with(source, out, piece_size, &[], &[])
}

/// A directory `dir` holding one file of `size` random bytes (from
/// `seed`), and its torrent at `out`; the info-hash.
pub fn one_file_torrent(
    dir: &Path,
    file: &str,
    size: u64,
    seed: u64,
    out: &Path,
    piece_size: &str,
) -> String {
    std::fs::create_dir_all(dir).unwrap();
    super::write_random_file(&dir.join(file), size, seed);
    create_torrent(dir, out, piece_size)
}

/// `peerlet create` with trackers (one tier each, `-t URL`) and more
/// arguments (e.g. `--private`); the info-hash.
pub fn create_torrent_with(
    source: &Path,
    out: &Path,
    piece_size: &str,
    trackers: &[String],
    extra: &[&str],
) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_peerlet"));
    cmd.args([
        "create",
        source.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--piece-size",
        piece_size,
        "--no-date",
        "--force",
    ]);
    for t in trackers {
        cmd.args(["-t", t]);
    }
    let o = cmd.args(extra).output().unwrap();
    assert!(
        o.status.success(),
        "create: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout);
    super::field(&text, "info_hash").expect("info_hash")
}

/// Files under `a` and `b` are byte-identical (same relative names).
pub fn assert_same_tree(a: &Path, b: &Path) {
    let fa = peerlet::storage::walk(a).unwrap();
    let fb = peerlet::storage::walk(b).unwrap();
    assert_eq!(
        fa.len(),
        fb.len(),
        "file count differs: {} vs {}",
        a.display(),
        b.display()
    );
    for (x, y) in fa.iter().zip(fb.iter()) {
        assert_eq!(x.relative, y.relative);
        assert_eq!(x.length, y.length, "{:?}", x.relative);
        let (ba, bb) = (
            std::fs::read(&x.path).unwrap(),
            std::fs::read(&y.path).unwrap(),
        );
        assert!(ba == bb, "{:?} differs", x.relative);
    }
}

/// Waits up to 20 s for a child to exit; SIGKILLs it after that (`None`).
fn wait_exit(mut child: Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
