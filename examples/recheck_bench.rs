//! Recheck benchmark: peerlet's whole-torrent recheck against `sha1sum` and
//! `openssl sha1` on the same file, in the same run.
//!
//! Run by hand, in release:
//!
//! ```text
//! cargo run --release --example recheck_bench -- [--size-mib N] [--file PATH]
//!     [--threads N] [--rounds N] [--piece-size N] [--torrent-out PATH] [--smoke]
//! cargo run --release --features hw-sha1 --example recheck_bench
//! ```
//!
//! Steps:
//!
//! 1. Makes a test file of N MiB (default 1024) of xorshift bytes in a fresh
//!    temporary directory, or uses `--file` (created with N MiB if missing,
//!    and then kept).
//! 2. Builds a single-file torrent for it through the library. The piece
//!    hashes are computed here by one plain sequential read, deliberately not
//!    through the worker pool, so the recheck below is checked against an
//!    independent path. The same pass computes the whole-file SHA-1, which
//!    must equal what `sha1sum` and `openssl` print, and leaves the file in
//!    the page cache.
//! 3. Each round (default 3) times `sha1sum FILE`, `openssl sha1 FILE` (when
//!    installed) and peerlet's recheck (`workers::hash_all` on a `Pool` of
//!    `--threads` workers, default 2, exactly as `peerlet verify` runs it).
//!    Every piece must come back good, or the benchmark fails with exit 1.
//! 4. Prints a markdown table of the median throughput of each tool, its
//!    ratio to `sha1sum` and to `openssl` measured in the same run, and its
//!    median CPU time. On a shared machine the two-thread recheck loses wall
//!    time first when another process takes a core; CPU time shows that.
//!
//! What it does not do: drop the page cache (that needs root), so this
//! measures hashing and copying from cache, not the disk. MB/s is 10^6 bytes
//! per second. `--smoke` (64 MiB, one round) is the quick CI run.
//!
//! The temporary directory is removed on every exit path, failure included,
//! unless the file came from `--file`.

use argh::FromArgs;
use peerlet::hash::{self, Digest, Sha1};
use peerlet::metainfo::{self, InfoFile, Torrent, TorrentBuilder};
use peerlet::storage::{FileStorage, DEFAULT_MAX_OPEN_FILES};
use peerlet::workers::{hash_all, DiskTorrent, PieceCheck, Pool, PoolConfig, Priority};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(FromArgs)]
/// Times peerlet's recheck against sha1sum and openssl sha1 on one file.
struct Args {
    /// size of the generated test file in MiB (default 1024; 64 with --smoke)
    #[argh(option)]
    size_mib: Option<u64>,
    /// use this file instead of a temporary one (created with --size-mib if missing; never deleted)
    #[argh(option)]
    file: Option<PathBuf>,
    /// worker threads for peerlet's recheck (default 2)
    #[argh(option, default = "2")]
    threads: usize,
    /// rounds per tool; the median is reported (default 3; 1 with --smoke)
    #[argh(option)]
    rounds: Option<usize>,
    /// piece size in bytes, K and M suffixes allowed (default: what `peerlet create` picks)
    #[argh(option, from_str_fn(parse_piece_size))]
    piece_size: Option<u32>,
    /// also write the torrent here (for timing `peerlet verify` on the same file)
    #[argh(option)]
    torrent_out: Option<PathBuf>,
    /// quick CI run: 64 MiB and one round unless given otherwise
    #[argh(switch)]
    smoke: bool,
}

fn parse_piece_size(s: &str) -> Result<u32, String> {
    peerlet::cli::parse_size(s)
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    // Build the guard before anything can fail, so every exit path after
    // this line (errors included) removes the temporary directory.
    let scratch = match &args.file {
        Some(_) => TempDir(None),
        None => {
            let dir =
                std::env::temp_dir().join(format!("peerlet-recheck-bench-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            if let Err(e) = std::fs::create_dir_all(&dir) {
                eprintln!("recheck_bench: {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
            TempDir(Some(dir))
        }
    };
    let res = run(&args, &scratch);
    drop(scratch);
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("recheck_bench: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Removes the directory when dropped (main returns normally even on
/// failure, because the release profile aborts on panic and skips drops).
struct TempDir(Option<PathBuf>);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                eprintln!("recheck_bench: could not remove {}: {e}", dir.display());
            }
        }
    }
}

fn run(args: &Args, scratch: &TempDir) -> Result<(), String> {
    let size_mib = args.size_mib.unwrap_or(if args.smoke { 64 } else { 1024 });
    let rounds = args.rounds.unwrap_or(if args.smoke { 1 } else { 3 }).max(1);
    let threads = args.threads.max(1);
    if size_mib == 0 {
        return Err("--size-mib must be at least 1".into());
    }

    let path = match (&args.file, &scratch.0) {
        (Some(f), _) => f.clone(),
        (None, Some(dir)) => dir.join("recheck-bench.bin"),
        (None, None) => return Err("no temporary directory".into()),
    };
    if path.exists() {
        eprintln!("using existing {}", path.display());
    } else {
        eprintln!("writing {size_mib} MiB to {}", path.display());
        write_test_file(&path, size_mib << 20).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let total = std::fs::metadata(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if total == 0 {
        return Err(format!("{} is empty", path.display()));
    }

    let piece_length = args
        .piece_size
        .unwrap_or_else(|| metainfo::auto_piece_length(total));
    eprintln!("building the torrent (one sequential pass, which also warms the page cache)");
    let (torrent, file_sha1) = make_torrent(&path, total, piece_length)?;
    if let Some(out) = &args.torrent_out {
        std::fs::write(out, &torrent.1).map_err(|e| format!("{}: {e}", out.display()))?;
        eprintln!("wrote {}", out.display());
    }
    let torrent = torrent.0;
    let expected_hex = hash::to_hex(&file_sha1);

    let have_openssl = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have_openssl {
        eprintln!("openssl not found: skipping it");
    }

    let mut sha1sum = Samples::default();
    let mut openssl = Samples::default();
    let mut peerlet = Samples::default();
    for round in 1..=rounds {
        let t = sha1sum.push(time_tool("sha1sum", &[], &path, &expected_hex)?);
        let mut line = format!("round {round}/{rounds}: sha1sum {t:.3}s");
        if have_openssl {
            let t = openssl.push(time_tool("openssl", &["sha1"], &path, &expected_hex)?);
            line += &format!(", openssl {t:.3}s");
        }
        let t = peerlet.push(time_peerlet(&path, &torrent, threads)?);
        line += &format!(", peerlet {t:.3}s");
        eprintln!("{line}");
    }
    let base_sha1sum = sha1sum.mb_per_s(total);
    let base_openssl = openssl.mb_per_s(total);
    let ratio = |x: Option<f64>, base: Option<f64>| match (x, base) {
        (Some(x), Some(b)) if b > 0.0 => format!("{:.2}x", x / b),
        _ => "n/a".to_string(),
    };

    println!();
    println!(
        "recheck of {} MiB ({total} bytes), page cache warm, median of {rounds} round(s)",
        total >> 20
    );
    println!("hash backend: {}", hash::backend());
    println!(
        "piece size: {piece_length} ({} KiB), {} pieces; peerlet threads: {threads}",
        piece_length / 1024,
        torrent.lengths.n_pieces()
    );
    println!();
    println!("| tool | MB/s | vs sha1sum | vs openssl | CPU s |");
    println!("|---|---:|---:|---:|---:|");
    let peerlet_name = format!("peerlet recheck ({threads} threads)");
    let rows = [
        ("sha1sum", &mut sha1sum),
        ("openssl sha1", &mut openssl),
        (peerlet_name.as_str(), &mut peerlet),
    ];
    for (name, samples) in rows {
        let Some(rate) = samples.mb_per_s(total) else {
            continue;
        };
        let cpu = samples
            .median_cpu()
            .map_or("n/a".to_string(), |c| format!("{c:.2}"));
        println!(
            "| {name} | {rate:.0} | {} | {} | {cpu} |",
            ratio(Some(rate), base_sha1sum),
            ratio(Some(rate), base_openssl)
        );
    }
    println!();
    println!(
        "MB/s is 10^6 bytes per wall-clock second; CPU s is user + system time \
         (median). Ratios compare medians from this run."
    );
    Ok(())
}

/// Fills `path` with `len` bytes from a xorshift64 generator (incompressible
/// enough that no filesystem or cache shortcut applies).
fn write_test_file(path: &Path, len: u64) -> io::Result<()> {
    let mut file = File::create(path)?;
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        file.write_all(&buf[..n])?;
        left -= n as u64;
    }
    file.sync_all()
}

/// Reads the file once, front to back, hashing each piece and the whole
/// file; returns the parsed torrent, its bytes and the whole-file SHA-1.
fn make_torrent(
    path: &Path,
    total: u64,
    piece_length: u32,
) -> Result<((Torrent, Vec<u8>), Digest), String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: file name is not UTF-8", path.display()))?
        .to_string();
    let lengths = metainfo::Lengths::new(total, piece_length)
        .ok_or_else(|| format!("piece size {piece_length} is not usable"))?;
    let mut file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut whole = Sha1::new();
    let mut pieces = Vec::with_capacity(lengths.n_pieces() as usize);
    let mut buf = vec![0u8; piece_length as usize];
    for piece in lengths.pieces() {
        let buf = &mut buf[..lengths.piece_size(piece) as usize];
        file.read_exact(buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        whole.update(buf);
        pieces.push(hash::sha1(buf));
    }
    let files = [InfoFile {
        path: Vec::new(),
        length: total,
    }];
    let info = metainfo::build_info(&name, &files, true, piece_length, &pieces, false);
    let builder = TorrentBuilder {
        created_by: Some("peerlet recheck_bench".into()),
        ..TorrentBuilder::default()
    };
    let bytes = builder.to_bytes(info);
    let torrent = Torrent::from_bytes(&bytes)
        .map_err(|e| format!("the built torrent does not parse: {e}"))?;
    Ok(((torrent, bytes), whole.finish()))
}

/// Runs `tool ARGS FILE`, checks that it printed `expected_hex`, and returns
/// its wall time (process start-up included) and CPU time.
fn time_tool(tool: &str, args: &[&str], path: &Path, expected_hex: &str) -> Result<Sample, String> {
    let cpu_before = cpu_times();
    let start = Instant::now();
    let out = Command::new(tool)
        .args(args)
        .arg(path)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running {tool}: {e}"))?;
    let wall = start.elapsed();
    let cpu = cpu_times()
        .zip(cpu_before)
        .map(|(after, before)| after.children - before.children);
    if !out.status.success() {
        return Err(format!("{tool} failed: {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    if !text.contains(expected_hex) {
        return Err(format!(
            "{tool} printed '{}', but peerlet's SHA-1 of the file is {expected_hex}",
            text.trim()
        ));
    }
    Ok(Sample { wall, cpu })
}

/// One recheck of the whole torrent, as `peerlet verify` does it: a fresh
/// storage and pool, `hash_all`, then every piece compared with the torrent.
fn time_peerlet(path: &Path, torrent: &Torrent, threads: usize) -> Result<Sample, String> {
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let relative = vec![torrent.relative_path(0)];
    let cpu_before = cpu_times();
    let start = Instant::now();
    let storage = FileStorage::new(dir, relative, DEFAULT_MAX_OPEN_FILES)
        .map_err(|e| format!("opening storage: {e}"))?;
    let disk = Arc::new(DiskTorrent::new(
        Arc::new(storage),
        torrent.file_map.clone(),
        torrent.lengths,
    ));
    let pool = Pool::new(
        PoolConfig {
            threads,
            ..PoolConfig::default()
        },
        None,
    );
    let checks = hash_all(&pool, &disk, Priority::Live, |_, _| {});
    pool.shutdown();
    let wall = start.elapsed();
    // The pool's threads have been joined, so their time is in `own`.
    let cpu = cpu_times()
        .zip(cpu_before)
        .map(|(after, before)| after.own - before.own);

    if checks.len() != torrent.lengths.n_pieces() as usize {
        return Err(format!(
            "recheck returned {} results for {} pieces",
            checks.len(),
            torrent.lengths.n_pieces()
        ));
    }
    let mut n_bad = 0usize;
    let mut first_problem = None;
    for (piece, check) in torrent.lengths.pieces().zip(&checks) {
        let problem = match check {
            PieceCheck::Hashed(d) if *d == torrent.piece_hash(piece) => continue,
            PieceCheck::Hashed(d) => format!("piece {} hashed to {}", piece.get(), hash::to_hex(d)),
            PieceCheck::Unreadable(e) => format!("piece {} unreadable: {e}", piece.get()),
        };
        n_bad += 1;
        first_problem.get_or_insert(problem);
    }
    if let Some(problem) = first_problem {
        return Err(format!(
            "peerlet found {n_bad} of {} pieces not good (first: {problem})",
            checks.len()
        ));
    }
    Ok(Sample { wall, cpu })
}

/// One timed run.
struct Sample {
    wall: Duration,
    /// User + system seconds; `None` where /proc is not readable.
    cpu: Option<f64>,
}

/// The runs of one tool.
#[derive(Default)]
struct Samples {
    wall: Vec<Duration>,
    cpu: Vec<f64>,
}

impl Samples {
    /// Records a run and returns its wall time in seconds.
    fn push(&mut self, sample: Sample) -> f64 {
        self.wall.push(sample.wall);
        self.cpu.extend(sample.cpu);
        sample.wall.as_secs_f64()
    }

    /// Throughput of the median wall time, or `None` without runs.
    fn mb_per_s(&mut self, bytes: u64) -> Option<f64> {
        self.wall.sort();
        let median = self.wall.get(self.wall.len().checked_sub(1)? / 2)?;
        Some(bytes as f64 / 1e6 / median.as_secs_f64().max(1e-9))
    }

    fn median_cpu(&mut self) -> Option<f64> {
        self.cpu.sort_by(f64::total_cmp);
        self.cpu.get(self.cpu.len().checked_sub(1)? / 2).copied()
    }
}

/// CPU seconds (user + system) of this process and of its waited-for children.
struct CpuTimes {
    own: f64,
    children: f64,
}

/// Reads `utime stime cutime cstime` from /proc/self/stat (Linux; clock
/// ticks of 1/100 s, the fixed USER_HZ of /proc).
fn cpu_times() -> Option<CpuTimes> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<f64> = rest
        .split_whitespace()
        .skip(11) // state .. cmajflt: fields 3 to 13
        .take(4)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let [utime, stime, cutime, cstime] = fields[..] else {
        return None;
    };
    Some(CpuTimes {
        own: (utime + stime) / 100.0,
        children: (cutime + cstime) / 100.0,
    })
}
