//! The command line: argh structures and the subcommands that run without a
//! daemon (`create`, `inspect`, `verify`).
//!
//! Exit status: 0 on success, 1 when `verify` finds missing or wrong pieces,
//! 2 on usage or input errors (with a one-line message naming the problem).

pub mod client;
pub mod cmd;
mod config;

use crate::cli::cmd::printable;
use crate::hash::Digest;
use crate::json::Json;
use crate::metainfo::{self, path, InfoFile, Magnet, PieceIdx, Torrent, TorrentBuilder};
use crate::progress::{human_bytes, Progress};
use crate::storage::{self, FileStorage, Storage, DEFAULT_MAX_OPEN_FILES};
use crate::workers::{hash_all, DiskTorrent, PieceCheck, Pool, PoolConfig, Priority};
use argh::FromArgs;
use std::fmt;
use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(FromArgs, Debug)]
/// peerlet: a lean peer-to-peer file-sharing daemon for small machines.
#[argh(
    example = "$ {command_name} daemon                                      # run the node\n$ {command_name} create ~/music/album -o album.torrent       # make a torrent\n$ {command_name} add album.torrent --dir ~/music             # seed it\n$ {command_name} get album.torrent --peer 192.168.1.20:6881  # fetch it on another node\n$ {command_name} ls                                          # what the daemon is doing",
    note = "Commands that talk to the daemon take --api ADDR:PORT (default\n127.0.0.1:7441) and --token TOKEN (default: $PEERLET_API_TOKEN, else\napi.token in the daemon's state directory); `ls`, `status`, `peers`,\n`search`, `inspect`, `verify`, `add` and `get` print JSON with --json.\n`{command_name} COMMAND --help` describes each command.",
    error_code(1, "the action failed (verify mismatch, get timeout, nothing found)"),
    error_code(2, "usage, input or connection error, named in one line")
)]
pub struct Args {
    /// print the version and exit
    #[argh(switch)]
    pub version: bool,
    #[argh(subcommand)]
    pub command: Option<Command>,
}

// Parsed once per run: the size of the daemon's options does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(FromArgs, Debug)]
#[argh(subcommand)]
// The order here is the order of `peerlet --help`: the daemon, the commands
// that talk to it, then those that work without one.
pub enum Command {
    Daemon(crate::config::DaemonArgs),
    Add(crate::cli::cmd::AddArgs),
    Get(crate::cli::cmd::GetArgs),
    Ls(crate::cli::cmd::LsArgs),
    Status(crate::cli::cmd::StatusArgs),
    Pause(crate::cli::cmd::PauseArgs),
    Resume(crate::cli::cmd::ResumeArgs),
    Limit(crate::cli::cmd::LimitArgs),
    Rm(crate::cli::cmd::RmArgs),
    Search(crate::cli::cmd::SearchArgs),
    Peers(crate::cli::cmd::PeersArgs),
    Dht(crate::cli::cmd::DhtArgs),
    Stop(crate::cli::cmd::StopArgs),
    Create(CreateArgs),
    Inspect(InspectArgs),
    Verify(VerifyArgs),
    Config(config::ConfigArgs),
    Secret(SecretArgs),
}

#[derive(FromArgs, Debug)]
/// Write a new network secret to FILE, for a private network.
#[argh(
    subcommand,
    name = "secret",
    example = "$ {command_name} /etc/peerlet/network.secret",
    note = "The file gets mode 0600; an existing file is never replaced. Give the same\nfile to every node of the private network: `peerlet daemon --network-secret\nFILE` or `network_secret = \"FILE\"` in the configuration."
)]
pub struct SecretArgs {
    /// where to write the secret
    #[argh(positional)]
    pub file: PathBuf,
}

#[derive(FromArgs, Debug)]
/// Make a .torrent from a file or a directory.
#[argh(
    subcommand,
    name = "create",
    example = "$ {command_name} ~/music/album -o album.torrent\n$ {command_name} big.iso -t udp://tracker.example:6969/announce --piece-size 1M",
    note = "Hashes on all cores. For the same files and piece size the info-hash equals\nmktorrent's. Progress goes to standard error: a bar on a terminal, a line\nevery 10% otherwise."
)]
pub struct CreateArgs {
    /// the file or directory to share
    #[argh(positional)]
    pub path: PathBuf,
    /// where to write the .torrent (default: NAME.torrent in the current directory)
    #[argh(option, short = 'o')]
    pub output: Option<PathBuf>,
    /// piece size in bytes, a power of two from 16K to 64M; K and M suffixes allowed (default: chosen by total size)
    #[argh(option, from_str_fn(parse_size))]
    pub piece_size: Option<u32>,
    /// tracker announce URL (repeat for more; each becomes its own tier)
    #[argh(option, short = 't')]
    pub tracker: Vec<String>,
    /// web seed URL (BEP 19; repeatable)
    #[argh(option, short = 'w')]
    pub web_seed: Vec<String>,
    /// mark the torrent private (BEP 27: trackers only, no other peer discovery)
    #[argh(switch, short = 'p')]
    pub private: bool,
    /// name of the torrent (default: the file or directory name)
    #[argh(option, short = 'n')]
    pub name: Option<String>,
    /// a comment stored in the torrent
    #[argh(option, short = 'c')]
    pub comment: Option<String>,
    /// leave out the creation date (for byte-identical output)
    #[argh(switch)]
    pub no_date: bool,
    /// overwrite the output file if it exists
    #[argh(switch, short = 'f')]
    pub force: bool,
    /// hashing threads (default: number of cores)
    #[argh(option)]
    pub threads: Option<usize>,
}

#[derive(FromArgs, Debug)]
/// Show what a .torrent file or magnet link holds.
#[argh(
    subcommand,
    name = "inspect",
    example = "$ {command_name} album.torrent\n$ {command_name} 'magnet:?xt=urn:btih:...' --json"
)]
pub struct InspectArgs {
    /// a .torrent file or a magnet link
    #[argh(positional)]
    pub source: String,
    /// print JSON (for scripts)
    #[argh(switch)]
    pub json: bool,
}

#[derive(FromArgs, Debug)]
/// Recheck a torrent's data on disk (exit 1 if incomplete).
#[argh(
    subcommand,
    name = "verify",
    example = "$ {command_name} album.torrent --dir ~/music",
    note = "Prints a table of files (ok, bad, incomplete, missing). Progress goes to\nstandard error: a bar with rate and ETA on a terminal, a line every 10%\notherwise."
)]
pub struct VerifyArgs {
    /// the .torrent file
    #[argh(positional)]
    pub torrent: PathBuf,
    /// download directory: the data lives at DIR/<name> (default: current directory)
    #[argh(option, short = 'd', default = "PathBuf::from(\".\")")]
    pub dir: PathBuf,
    /// hashing threads (default: number of cores)
    #[argh(option)]
    pub threads: Option<usize>,
    /// print JSON (for scripts)
    #[argh(switch)]
    pub json: bool,
    /// no progress on standard error
    #[argh(switch, short = 'q')]
    pub quiet: bool,
}

/// A fatal error: printed as one line, exit status 2.
#[derive(Debug)]
pub struct CliError(pub String);

/// Shown through [`crate::text::for_terminal`]: an error may quote a
/// torrent's name, a path or a daemon's answer, and none of their escape
/// sequences or bidirectional controls reach the terminal.
impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::text::for_terminal(&self.0))
    }
}

impl std::error::Error for CliError {}

impl From<crate::daemon::Error> for CliError {
    fn from(e: crate::daemon::Error) -> CliError {
        CliError(e.to_string())
    }
}

impl From<crate::state::Error> for CliError {
    fn from(e: crate::state::Error) -> CliError {
        CliError(e.to_string())
    }
}

fn fail<T>(msg: impl Into<String>) -> Result<T, CliError> {
    Err(CliError(msg.into()))
}

/// Runs a parsed command line; returns the exit status on success paths.
pub fn run(args: Args) -> Result<u8, CliError> {
    if args.version {
        println!("peerlet {}", env!("CARGO_PKG_VERSION"));
        return Ok(0);
    }
    match args.command {
        None => fail("no command given; see 'peerlet --help'"),
        Some(Command::Create(a)) => create(a),
        Some(Command::Inspect(a)) => inspect(a),
        Some(Command::Verify(a)) => verify(a),
        Some(Command::Daemon(a)) => Ok(crate::daemon::run(a)?),
        Some(Command::Config(a)) => config::run(a),
        Some(Command::Add(a)) => crate::cli::cmd::run_add(a),
        Some(Command::Get(a)) => crate::cli::cmd::run_get(a),
        Some(Command::Ls(a)) => crate::cli::cmd::run_ls(a),
        Some(Command::Status(a)) => crate::cli::cmd::run_status(a),
        Some(Command::Rm(a)) => crate::cli::cmd::run_rm(a),
        Some(Command::Pause(a)) => crate::cli::cmd::run_pause(a),
        Some(Command::Resume(a)) => crate::cli::cmd::run_resume(a),
        Some(Command::Limit(a)) => crate::cli::cmd::run_limit(a),
        Some(Command::Search(a)) => crate::cli::cmd::run_search(a),
        Some(Command::Peers(a)) => crate::cli::cmd::run_peers(a),
        Some(Command::Dht(a)) => crate::cli::cmd::run_dht(a),
        Some(Command::Stop(a)) => crate::cli::cmd::run_stop(a),
        Some(Command::Secret(a)) => {
            crate::state::write_network_secret(&a.file)?;
            eprintln!(
                "wrote a new network secret to {}; copy it to every node of the network (keep it private)",
                a.file.display()
            );
            Ok(0)
        }
    }
}

/// "256K", "1M", "16384" → bytes (at most 4 GiB - 1; see
/// [`crate::config::parse_size`]).
pub fn parse_size(s: &str) -> Result<u32, String> {
    let bytes = crate::config::parse_size(s)?;
    u32::try_from(bytes).map_err(|_| format!("'{s}' is too large"))
}

fn threads(requested: Option<usize>) -> usize {
    requested
        .filter(|&n| n > 0)
        .unwrap_or_else(|| PoolConfig::default().threads)
}

/// Reads and validates a .torrent file, with the file name in any error.
pub fn load_torrent(path: &Path) -> Result<Torrent, CliError> {
    let bytes = storage::read_limited(path, crate::metainfo::MAX_TORRENT_FILE)
        .map_err(|e| CliError(format!("cannot read torrent: {e}")))?;
    Torrent::from_bytes(&bytes).map_err(|e| CliError(format!("{}: {e}", path.display())))
}

fn create(a: CreateArgs) -> Result<u8, CliError> {
    let source = a
        .path
        .canonicalize()
        .map_err(|e| CliError(format!("{}: {e}", a.path.display())))?;
    let base = source.file_name().map(|n| n.to_string_lossy().into_owned());
    let Some(base) = base else {
        return fail(format!(
            "{}: cannot share a file system root",
            a.path.display()
        ));
    };
    let name = a.name.clone().unwrap_or_else(|| base.clone());
    path::check_component(name.as_bytes())
        .map_err(|e| CliError(format!("torrent name '{name}' is not usable: {e}")))?;
    let walked = storage::walk(&source).map_err(|e| CliError(e.to_string()))?;
    let single_file = walked.len() == 1 && walked[0].relative.is_empty();
    if walked.is_empty() {
        return fail(format!("{}: no files to share", a.path.display()));
    }
    let total: u64 = walked.iter().map(|f| f.length).sum();
    if total == 0 {
        return fail(format!(
            "{}: all files are empty; a torrent needs at least one byte",
            a.path.display()
        ));
    }
    let piece_length = match a.piece_size {
        Some(n)
            if !n.is_power_of_two()
                || !(metainfo::MIN_PIECE_LENGTH..=metainfo::MAX_PIECE_LENGTH).contains(&n) =>
        {
            return fail(format!(
                "piece size {n} must be a power of two from 16K to 64M"
            ))
        }
        Some(n) => n,
        None => metainfo::auto_piece_length(total),
    };
    let lengths = metainfo::Lengths::new(total, piece_length)
        .ok_or_else(|| CliError("too much data".into()))?;
    if lengths.n_pieces() > metainfo::MAX_PIECES {
        return fail(format!(
            "{} pieces is too many; choose a larger --piece-size",
            lengths.n_pieces()
        ));
    }

    // Read the files where they are: root = the parent of the shared path.
    let root = source
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let mut relative = Vec::with_capacity(walked.len());
    for f in &walked {
        let mut rel = vec![base.clone()];
        rel.extend(f.relative.iter().cloned());
        path::check_path(rel.iter().map(|c| c.as_bytes()))
            .map_err(|e| CliError(format!("{}: cannot be shared: {e}", f.path.display())))?;
        relative.push(rel);
    }
    let st = FileStorage::new(root, relative, DEFAULT_MAX_OPEN_FILES)
        .map_err(|e| CliError(e.to_string()))?;
    let disk = Arc::new(DiskTorrent::new(
        Arc::new(st),
        metainfo::FileMap::new(walked.iter().map(|f| f.length)),
        lengths,
    ));

    let output = a
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{name}.torrent")));
    if output.exists() && !a.force {
        return fail(format!(
            "{} already exists (use --force to overwrite)",
            output.display()
        ));
    }

    let pool = Pool::new(
        PoolConfig {
            threads: threads(a.threads),
            network_threads: 0,
            ..PoolConfig::default()
        },
        None,
    );
    let mut progress = Progress::new("hashing", total, true);
    let checks = hash_all(&pool, &disk, Priority::Live, |_, bytes| {
        progress.update(bytes)
    });
    progress.finish();
    pool.shutdown();
    let mut pieces: Vec<Digest> = Vec::with_capacity(checks.len());
    for (i, c) in checks.into_iter().enumerate() {
        match c {
            PieceCheck::Hashed(d) => pieces.push(d),
            PieceCheck::Unreadable(e) => {
                return fail(format!(
                    "reading piece {i}: {e} (did a file change while hashing?)"
                ))
            }
        }
    }

    let files: Vec<InfoFile> = walked
        .iter()
        .map(|f| InfoFile {
            path: f.relative.clone(),
            length: f.length,
        })
        .collect();
    let info = metainfo::build_info(&name, &files, single_file, piece_length, &pieces, a.private);
    let creation_date = (!a.no_date).then(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    });
    let builder = TorrentBuilder {
        trackers: a.tracker.clone(),
        comment: a.comment.clone(),
        created_by: Some(format!("peerlet {}", env!("CARGO_PKG_VERSION"))),
        creation_date,
        url_list: a.web_seed.clone(),
    };
    let bytes = builder.to_bytes(info);
    let torrent = Torrent::from_bytes(&bytes).map_err(|e| {
        CliError(format!(
            "internal error: created torrent does not parse: {e}"
        ))
    })?;
    storage::write_atomic(&output, &bytes, 0o644)
        .map_err(|e| CliError(format!("cannot write torrent: {e}")))?;
    println!("created: {}", output.display());
    println!("name: {}", torrent.name);
    println!("info_hash: {}", torrent.info_hash);
    println!("piece length: {piece_length}");
    println!("pieces: {}", torrent.lengths.n_pieces());
    println!("files: {}", torrent.files.len());
    println!("total size: {} ({})", total, human_bytes(total));
    println!("magnet: {}", torrent.magnet());
    Ok(0)
}

fn inspect(a: InspectArgs) -> Result<u8, CliError> {
    if a.source.starts_with("magnet:") || a.source.starts_with("MAGNET:") {
        let m = Magnet::parse(&a.source).map_err(|e| CliError(e.to_string()))?;
        if a.json {
            let j = Json::obj()
                .with("kind", "magnet")
                .with("info_hash", m.info_hash.to_hex())
                .with("name", m.name.clone())
                .with("trackers", m.trackers.clone())
                .with("peers", m.peers.clone());
            println!("{j}");
        } else {
            println!("magnet link (metadata is fetched from peers when downloading)");
            println!("name: {}", printable(m.name.as_deref().unwrap_or("(none)")));
            println!("info_hash: {}", m.info_hash);
            for t in &m.trackers {
                println!("tracker: {}", printable(t));
            }
            for p in &m.peers {
                println!("peer: {}", printable(p));
            }
        }
        return Ok(0);
    }
    let t = load_torrent(Path::new(&a.source))?;
    if a.json {
        println!("{}", torrent_json(&t));
        return Ok(0);
    }
    println!("name: {}", printable(&t.name));
    println!("info_hash: {}", t.info_hash);
    println!(
        "piece length: {} ({})",
        t.lengths.piece_length(),
        human_bytes(t.lengths.piece_length().into())
    );
    println!("pieces: {}", t.lengths.n_pieces());
    println!(
        "total size: {} ({})",
        t.total_length(),
        human_bytes(t.total_length())
    );
    println!("private: {}", if t.private { "yes" } else { "no" });
    if let Some(c) = &t.comment {
        println!("comment: {}", printable(c));
    }
    if let Some(c) = &t.created_by {
        println!("created by: {}", printable(c));
    }
    if let Some(d) = t.creation_date {
        println!("creation date: {d} (unix seconds)");
    }
    for (i, tier) in t.announce_list.iter().enumerate() {
        println!("tracker tier {}: {}", i + 1, printable(&tier.join(" ")));
    }
    for w in &t.url_list {
        println!("web seed: {}", printable(w));
    }
    println!("files: {}", t.files.len());
    for i in 0..t.files.len() {
        println!(
            "  {:>14}  {}",
            t.files[i].length,
            printable(&t.relative_path(i).join("/"))
        );
    }
    println!("magnet: {}", t.magnet());
    Ok(0)
}

fn torrent_json(t: &Torrent) -> Json {
    let files: Vec<Json> = (0..t.files.len())
        .map(|i| {
            Json::obj()
                .with("path", t.relative_path(i).join("/"))
                .with("length", t.files[i].length)
        })
        .collect();
    let tiers: Vec<Json> = t
        .announce_list
        .iter()
        .map(|tier| Json::from(tier.clone()))
        .collect();
    Json::obj()
        .with("kind", "torrent")
        .with("name", t.name.clone())
        .with("info_hash", t.info_hash.to_hex())
        .with("piece_length", t.lengths.piece_length())
        .with("pieces", t.lengths.n_pieces())
        .with("total_size", t.total_length())
        .with("private", t.private)
        .with("multi_file", t.multi_file)
        .with("files", Json::Arr(files))
        .with("trackers", Json::Arr(tiers))
        .with("url_list", t.url_list.clone())
        .with("comment", t.comment.clone())
        .with("created_by", t.created_by.clone())
        .with("creation_date", t.creation_date)
        .with("magnet", t.magnet().to_string())
}

/// The state of one piece after a recheck.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PieceState {
    Good,
    Bad,
    Missing,
}

fn verify(a: VerifyArgs) -> Result<u8, CliError> {
    let t = load_torrent(&a.torrent)?;
    let relative: Vec<Vec<String>> = (0..t.files.len()).map(|i| t.relative_path(i)).collect();
    let st = FileStorage::new(a.dir.clone(), relative, DEFAULT_MAX_OPEN_FILES)
        .map_err(|e| CliError(e.to_string()))?;
    let st = Arc::new(st);
    let disk = Arc::new(DiskTorrent::new(st.clone(), t.file_map.clone(), t.lengths));

    let pool = Pool::new(
        PoolConfig {
            threads: threads(a.threads),
            network_threads: 0,
            ..PoolConfig::default()
        },
        None,
    );
    let show = !a.quiet && !a.json;
    let mut progress = Progress::new("verifying", t.total_length(), show);
    let checks = hash_all(&pool, &disk, Priority::Live, |_, bytes| {
        progress.update(bytes)
    });
    progress.finish();
    pool.shutdown();

    let mut states = Vec::with_capacity(checks.len());
    let mut io_errors = Vec::new();
    for (i, c) in checks.iter().enumerate() {
        let piece = PieceIdx::clone(&t.lengths.piece(i as u32).unwrap_or(t.lengths.last_piece()));
        states.push(match c {
            PieceCheck::Hashed(d) if *d == t.piece_hash(piece) => PieceState::Good,
            PieceCheck::Hashed(_) => PieceState::Bad,
            PieceCheck::Unreadable(e) => {
                if !matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof
                ) && io_errors.len() < 5
                {
                    io_errors.push(format!("piece {i}: {e}"));
                }
                PieceState::Missing
            }
        });
    }
    let count = |s: PieceState, range: std::ops::Range<u32>| {
        states[range.start as usize..range.end as usize]
            .iter()
            .filter(|&&x| x == s)
            .count()
    };
    let all = 0..t.lengths.n_pieces();
    let (good, bad, missing) = (
        count(PieceState::Good, all.clone()),
        count(PieceState::Bad, all.clone()),
        count(PieceState::Missing, all),
    );

    let mut file_rows = Vec::new();
    for i in 0..t.files.len() {
        let range = t.file_map.pieces_of_file(&t.lengths, i);
        let (g, b, m) = (
            count(PieceState::Good, range.clone()),
            count(PieceState::Bad, range.clone()),
            count(PieceState::Missing, range.clone()),
        );
        let on_disk = st.file_len(i).ok().flatten();
        let status = match on_disk {
            None => "missing",
            Some(_) if b > 0 => "bad",
            Some(_) if m > 0 => "incomplete",
            Some(_) => "ok",
        };
        file_rows.push((
            t.relative_path(i).join("/"),
            t.files[i].length,
            on_disk,
            range.len(),
            g,
            b,
            m,
            status,
        ));
    }
    let bad_pieces: Vec<u32> = states
        .iter()
        .enumerate()
        .filter(|(_, s)| **s == PieceState::Bad)
        .map(|(i, _)| i as u32)
        .collect();
    let complete = bad == 0 && missing == 0;

    if a.json {
        let files: Vec<Json> = file_rows
            .iter()
            .map(|(p, size, on_disk, n, g, b, m, status)| {
                Json::obj()
                    .with("path", p.clone())
                    .with("size", *size)
                    .with("size_on_disk", *on_disk)
                    .with("pieces", *n)
                    .with("good", *g)
                    .with("bad", *b)
                    .with("missing", *m)
                    .with("status", *status)
            })
            .collect();
        let j = Json::obj()
            .with("info_hash", t.info_hash.to_hex())
            .with("pieces", t.lengths.n_pieces())
            .with("good", good)
            .with("bad", bad)
            .with("missing", missing)
            .with("complete", complete)
            .with("bad_pieces", bad_pieces.clone())
            .with("files", Json::Arr(files));
        println!("{j}");
    } else {
        let width = file_rows
            .iter()
            .map(|r| printable(&r.0).chars().count())
            .max()
            .unwrap_or(4)
            .clamp(4, 60);
        println!(
            "{:<width$}  {:>12}  {:>7}  {:>7}  {:>5}  {:>7}  status",
            "file", "size", "pieces", "good", "bad", "missing"
        );
        for (p, size, _, n, g, b, m, status) in &file_rows {
            let p = printable(p);
            println!("{p:<width$}  {size:>12}  {n:>7}  {g:>7}  {b:>5}  {m:>7}  {status}");
        }
        if !bad_pieces.is_empty() {
            let shown: Vec<String> = bad_pieces.iter().take(20).map(|p| p.to_string()).collect();
            let more = if bad_pieces.len() > 20 {
                format!(" and {} more", bad_pieces.len() - 20)
            } else {
                String::new()
            };
            println!("bad pieces: {}{more}", shown.join(" "));
        }
        for e in &io_errors {
            println!("read error: {e}");
        }
        println!(
            "{}: {good} of {} pieces good, {bad} bad, {missing} missing",
            if complete { "complete" } else { "INCOMPLETE" },
            t.lengths.n_pieces()
        );
        if file_rows.iter().all(|r| r.2.is_none()) {
            let message = format!(
                "peerlet: no file of {} found under {}; --dir names the directory that holds {}",
                t.name,
                a.dir.display(),
                t.relative_path(0)
                    .first()
                    .map_or(t.name.as_str(), String::as_str)
            );
            eprintln!("{}", crate::text::for_terminal(&message));
        }
    }
    Ok(if complete { 0 } else { 1 })
}

/// Parses the process's arguments; `Err(code)` after printing help or a usage error.
pub fn parse_env() -> Result<Args, u8> {
    let strings: Vec<String> = std::env::args_os()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let cmd = strings
        .first()
        .map(|s| {
            Path::new(s)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("peerlet")
        })
        .unwrap_or("peerlet");
    let mut rest: Vec<&str> = strings.iter().skip(1).map(String::as_str).collect();
    // `config show` takes the daemon's options as they are (its own
    // parser is `DaemonArgs`'s): everything after it is positional.
    if rest.len() > 2 && rest[..2] == ["config", "show"] && rest[2] != "--" {
        rest.insert(2, "--");
    }
    match Args::from_args(&[cmd], &rest) {
        Ok(args) => Ok(args),
        Err(early) => match early.status {
            Ok(()) => {
                println!("{}", early.output);
                Err(0)
            }
            Err(()) => {
                let message = usage_error(&rest, &early.output);
                eprintln!("peerlet: {}", crate::text::for_terminal(&message));
                Err(2)
            }
        },
    }
}

/// The subcommands named at the start of `args` (`["config", "show"]`),
/// as far as they are commands.
fn command_path<'a>(args: &[&'a str]) -> Vec<&'a str> {
    use argh::SubCommands;
    let mut path = Vec::new();
    let Some(&first) = args.first() else {
        return path;
    };
    if Command::COMMANDS.iter().any(|c| c.name == first) {
        path.push(first);
        if let Some(&second) = args.get(1) {
            if first == "config" && ["check", "show"].contains(&second) {
                path.push(second);
            }
        }
    }
    path
}

/// argh's usage error for `args` in one line, lower case, with where to
/// find help: "unrecognized argument: --bogus; see 'peerlet ls --help'".
pub fn usage_error(args: &[&str], output: &str) -> String {
    let path = command_path(args);
    let help = if path.is_empty() {
        "peerlet --help".to_string()
    } else {
        format!("peerlet {} --help", path.join(" "))
    };
    // An unknown subcommand where one is expected.
    let next = args.get(path.len()).copied().unwrap_or("");
    let takes_command = path.is_empty() || path == ["config"];
    if takes_command && !next.is_empty() && !next.starts_with('-') {
        return format!("unknown command '{next}'; see '{help}'");
    }
    // "Required positional arguments not provided:\n    path" and the like:
    // the indented lines are the items of the first.
    let mut lines = output.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut text = lines.next().unwrap_or("bad arguments").to_string();
    let items: Vec<&str> = lines.collect();
    if !items.is_empty() {
        text = format!(
            "{} {}",
            text.trim_end_matches(':').to_string() + ":",
            items.join(", ")
        );
    }
    let text = text.trim_end_matches('.');
    let mut chars = text.chars();
    let text = match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect::<String>(),
        None => String::new(),
    };
    format!("{text}; see '{help}'")
}

/// True when standard output is a terminal.
pub fn stdout_is_terminal() -> bool {
    io::stdout().is_terminal()
}
