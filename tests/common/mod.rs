//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `peerlet` binary built for these tests.
/// No DHT routers for the daemons it starts: tests never resolve or
/// contact a public host.
pub fn peerlet() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_peerlet"));
    cmd.env("PEERLET_DHT_BOOTSTRAP", "");
    cmd
}

/// Runs `peerlet ARGS` and returns (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let out: Output = peerlet().args(args).output().expect("running peerlet");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `peerlet ARGS` (in `cwd` if given) for at most 30 s, killing it
/// after that; returns (exit code, stdout, stderr).
pub fn run_bounded(args: &[&str], cwd: Option<&Path>) -> (i32, String, String) {
    let mut cmd = peerlet();
    cmd.args(args);
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let (status, out, err) = output_within(&mut cmd, std::time::Duration::from_secs(30));
    match status {
        Some(st) => (st.code().unwrap_or(-1), out, err),
        None => panic!("peerlet {args:?} ran for more than 30 s"),
    }
}

/// Runs `cmd` (stdin empty, stdout and stderr captured) for at most
/// `limit`, killing it after that; (its exit status, `None` when killed;
/// stdout; stderr).
pub fn output_within(
    cmd: &mut Command,
    limit: std::time::Duration,
) -> (Option<std::process::ExitStatus>, String, String) {
    use std::io::Read;
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting a child process");
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().expect("waiting for a child process") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status,
        out_t.join().unwrap_or_default(),
        err_t.join().unwrap_or_default(),
    )
}

/// A fresh empty directory under cargo's per-target temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let p =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), fast enough for gigabytes.
pub fn fill_random(buf: &mut [u8], seed: u64) {
    let mut s = seed | 1;
    for chunk in buf.chunks_mut(8) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        let v = s.wrapping_mul(0x2545F4914F6CDD1D).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// Writes a file of `len` pseudo-random bytes in 8 MiB chunks.
pub fn write_random_file(path: &Path, len: u64, seed: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut buf = vec![0u8; 8 << 20];
    let mut left = len;
    let mut n = 0;
    while left > 0 {
        let k = left.min(buf.len() as u64) as usize;
        fill_random(&mut buf[..k], seed.wrapping_add(n));
        f.write_all(&buf[..k]).unwrap();
        left -= k as u64;
        n += 1;
    }
    f.flush().unwrap();
}

/// Path to an external tool, or a panic naming the package to install
/// (`.ci/test` installs them all).
pub fn require_tool(name: &str, package: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("'{name}' is not installed: install the Debian package '{package}' (or run .ci/test, which does)");
}

/// The value of a `key: value` line in peerlet's output.
pub fn field(output: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}: ");
    output
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|s| s.trim().to_string())
}

pub mod daemon;
pub mod fake_engine;
pub mod fake_metadata;
pub mod fake_peer;
pub mod fake_tracker;
pub mod nodes;

/// A `/proc/PID/status` value in KiB (`VmHWM:`, `VmRSS:`, ...).
pub fn proc_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
