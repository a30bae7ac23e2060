//! Client subcommands: each talks to a running daemon through the control API.
//!
//! Exit status: 0 done, 1 the daemon could not do it (or `get` timed out),
//! 2 usage or input errors, errors the daemon blames on the request, and
//! no daemon answering.

use super::client::{Client, ClientError};
use crate::cli::CliError;
use crate::control::http::percent_encode;
use crate::control::server::plausible_peer;
use crate::control::token::{self, TOKEN_ENV};
use crate::json::Json;
use crate::metainfo::{InfoHash, Magnet, Torrent};
use crate::progress::human_bytes;
use crate::storage;
use argh::FromArgs;
use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(FromArgs, Debug)]
/// Give the daemon a torrent (file, magnet link or info-hash).
#[argh(
    subcommand,
    name = "add",
    example = "$ {command_name} album.torrent --dir ~/music\n$ {command_name} 'magnet:?xt=urn:btih:...' --peer 192.168.1.20:6881 --wait",
    note = "Data already at DIR/<name> is rechecked, then seeded. Adding a torrent the\ndaemon already has adds the given peers. With --wait, progress goes to\nstandard error: a bar on a terminal, plain lines otherwise. `peerlet get`\nadds and waits until the download is complete."
)]
pub struct AddArgs {
    /// a .torrent file, a magnet link, or an info-hash (40 hex digits or 32
    /// base32; its holders and metadata are found through the overlay)
    #[argh(positional)]
    pub source: String,
    /// download directory: the data goes to DIR/<name> (default: the daemon's)
    #[argh(option, short = 'd')]
    pub dir: Option<std::path::PathBuf>,
    /// a peer to connect to, host:port (repeatable)
    #[argh(option)]
    pub peer: Vec<String>,
    /// wait until the daemon has the metadata and has checked the data on disk, showing progress
    #[argh(switch)]
    pub wait: bool,
    /// print JSON (for scripts): {"info_hash", "name", "added"}; with --wait, the torrent's status and "added"
    #[argh(switch)]
    pub json: bool,
    /// address of the daemon's control API (default 127.0.0.1:7441)
    #[argh(option, default = "crate::control::DEFAULT_API_ADDR.to_string()")]
    pub api: String,
    /// the API token (default: $PEERLET_API_TOKEN, else api.token in the daemon's state directory)
    #[argh(option)]
    pub token: Option<String>,
}

#[derive(FromArgs, Debug)]
/// Download a torrent and wait until it is complete.
#[argh(
    subcommand,
    name = "get",
    example = "$ {command_name} album.torrent --peer 192.168.1.20:6881\n$ {command_name} 0123456789abcdef0123456789abcdef01234567 --timeout 600",
    note = "Adds the torrent to the daemon as `add` does, then waits until every piece\nis verified. Progress goes to standard error: a bar with rate, peers and ETA\non a terminal, a line every 10% or 10 s otherwise. A bare info-hash finds\nholders and metadata through the discovery overlay."
)]
pub struct GetArgs {
    /// a .torrent file, a magnet link, or an info-hash (40 hex digits or 32
    /// base32; its holders and metadata are found through the overlay)
    #[argh(positional)]
    pub source: String,
    /// download directory: the data goes to DIR/<name> (default: the daemon's)
    #[argh(option, short = 'd')]
    pub dir: Option<PathBuf>,
    /// a peer to connect to, host:port (repeatable)
    #[argh(option)]
    pub peer: Vec<String>,
    /// give up (exit 1) after this many seconds; the daemon keeps the torrent (default: wait until done)
    #[argh(option)]
    pub timeout: Option<u64>,
    /// print JSON (for scripts): the torrent's status when done, no progress
    #[argh(switch)]
    pub json: bool,
    /// address of the daemon's control API (default 127.0.0.1:7441)
    #[argh(option, default = "crate::control::DEFAULT_API_ADDR.to_string()")]
    pub api: String,
    /// the API token (default: $PEERLET_API_TOKEN, else api.token in the daemon's state directory)
    #[argh(option)]
    pub token: Option<String>,
}

#[derive(FromArgs, Debug)]
/// List the daemon's torrents as a table.
#[argh(
    subcommand,
    name = "ls",
    example = "$ {command_name}\n$ {command_name} --json",
    note = "Columns: the first 8 digits of the info-hash (enough for other commands),\nstate, percent verified, size, download and upload rates, connected peers,\nthe trackers' last answer, name. A torrent in trouble gets an error line\nunder it."
)]
pub struct LsArgs {
    /// print JSON (for scripts)
    #[argh(switch)]
    pub json: bool,
    /// address of the daemon's control API (default 127.0.0.1:7441)
    #[argh(option, default = "crate::control::DEFAULT_API_ADDR.to_string()")]
    pub api: String,
    /// the API token (default: $PEERLET_API_TOKEN, else api.token in the daemon's state directory)
    #[argh(option)]
    pub token: Option<String>,
}

#[derive(FromArgs, Debug)]
/// Show the daemon's status, or one torrent's in detail.
#[argh(
    subcommand,
    name = "status",
    example = "$ {command_name}\n$ {command_name} ab81 --json"
)]
pub struct StatusArgs {
    /// info-hash of a torrent (40 hex digits, or a unique prefix of at least 4)
    #[argh(positional)]
    pub hash: Option<String>,
    /// print JSON (for scripts)
    #[argh(switch)]
    pub json: bool,
    /// address of the daemon's control API (default 127.0.0.1:7441)
    #[argh(option, default = "crate::control::DEFAULT_API_ADDR.to_string()")]
    pub api: String,
    /// the API token (default: $PEERLET_API_TOKEN, else api.token in the daemon's state directory)
    #[argh(option)]
    pub token: Option<String>,
}

#[derive(FromArgs, Debug)]
/// Remove a torrent (its data stays unless --delete-data).
#[argh(
    subcommand,
    name = "rm",
    example = "$ {command_name} ab81\n$ {command_name} ab81 --delete-data"
)]
pub struct RmArgs {
    /// info-hash of the torrent (40 hex digits, or a unique prefix of at least 4)
    #[argh(positional)]
    pub hash: String,
    /// delete the downloaded data too
    #[argh(switch)]
    pub delete_data: bool,
    /// address of the daemon's control API (default 127.0.0.1:7441)
    #[argh(option, default = "crate::control::DEFAULT_API_ADDR.to_string()")]
    pub api: String,
    /// the API token (default: $PEERLET_API_TOKEN, else api.token in the daemon's state directory)
    #[argh(option)]
    pub token: Option<String>,
}

#[derive(FromArgs, Debug)]
/// Pause a torrent: no transfers until it is resumed.
#[argh(subcommand, name = "pause")]
pub struct PauseArgs {
    /// info-hash of the torrent (40 hex digits, or a unique prefix of at least 4)
    #[argh(positional)]
    pub hash: String,
    /// address of the daemon's control API (default 127.0.0.1:7441)
    #[argh(option, default = "crate::control::DEFAULT_API_ADDR.to_string()")]
    pub api: String,
    /// the API token (default: $PEERLET_API_TOKEN, else api.token in the daemon's state directory)
    #[argh(option)]
    pub token: Option<String>,
}

#[derive(FromArgs, Debug)]
/// Resume a paused torrent.
#[argh(subcommand, name = "resume")]
pub struct ResumeArgs {
    /// info-hash of the torrent (40 hex digits, or a unique prefix of at least 4)
    #[argh(positional)]
    pub hash: String,
    /// address of the daemon's control API (default 127.0.0.1:7441)
    #[argh(option, default = "crate::control::DEFAULT_API_ADDR.to_string()")]
    pub api: String,
    /// the API token (default: $PEERLET_API_TOKEN, else api.token in the daemon's state directory)
    #[argh(option)]
    pub token: Option<String>,
}

#[derive(FromArgs, Debug)]
/// Search the discovery overlay by name or info-hash.
#[argh(
    subcommand,
    name = "search",
    example = "$ {command_name} ubuntu 24.04\n$ {command_name} 0123456789abcdef0123456789abcdef01234567 --timeout 30 --json",
    note = "Results are printed as they arrive: name, size, info-hash, number of\nholders. Exit 1 when nothing was found within --timeout."
)]
pub struct SearchArgs {
    /// words of a name (each must start a word of the name, in any case),
    /// or one info-hash (40 hex digits or 32 base32)
    #[argh(positional)]
    pub words: Vec<String>,
    /// seconds the search collects results, 1 to 300 (default 10)
    #[argh(option, default = "crate::control::server::DEFAULT_SEARCH_SECS")]
    pub timeout: u64,
    /// print JSON (for scripts): the final results, nothing while waiting
    #[argh(switch)]
    pub json: bool,
    /// address of the daemon's control API (default 127.0.0.1:7441)
    #[argh(option, default = "crate::control::DEFAULT_API_ADDR.to_string()")]
    pub api: String,
    /// the API token (default: $PEERLET_API_TOKEN, else api.token in the daemon's state directory)
    #[argh(option)]
    pub token: Option<String>,
}

#[derive(FromArgs, Debug)]
/// Show the discovery overlay and the banned peers.
#[argh(
    subcommand,
    name = "peers",
    example = "$ {command_name}\n$ {command_name} --json"
)]
pub struct PeersArgs {
    /// print JSON (for scripts)
    #[argh(switch)]
    pub json: bool,
    /// address of the daemon's control API (default 127.0.0.1:7441)
    #[argh(option, default = "crate::control::DEFAULT_API_ADDR.to_string()")]
    pub api: String,
    /// the API token (default: $PEERLET_API_TOKEN, else api.token in the daemon's state directory)
    #[argh(option)]
    pub token: Option<String>,
}

#[derive(FromArgs, Debug)]
/// Stop the daemon (it saves its state first).
#[argh(subcommand, name = "stop")]
pub struct StopArgs {
    /// address of the daemon's control API (default 127.0.0.1:7441)
    #[argh(option, default = "crate::control::DEFAULT_API_ADDR.to_string()")]
    pub api: String,
    /// the API token (default: $PEERLET_API_TOKEN, else api.token in the daemon's state directory)
    #[argh(option)]
    pub token: Option<String>,
}

/// Turns a failed request into the command's result: exit 1 when the
/// daemon failed (5xx), a one-line error and exit 2 for everything else.
fn failed(e: ClientError) -> Result<u8, CliError> {
    match e {
        ClientError::Api { status, message } if status >= 500 => {
            eprintln!("peerlet: {message}");
            Ok(1)
        }
        e => Err(CliError(e.to_string())),
    }
}

/// Runs `f` with a client of the API at `api` that sends the token
/// [`find_token`] finds, mapping a [`ClientError`] through [`failed`]; a
/// 401 says where the token was looked for.
fn with_client(
    api: &str,
    token: Option<&str>,
    f: impl FnOnce(&Client) -> Result<u8, Fail>,
) -> Result<u8, CliError> {
    let mut client = Client::new(api);
    let (found, whence) = find_token(token)?;
    client.token = found;
    match f(&client) {
        Ok(code) => Ok(code),
        Err(Fail::Client(ClientError::Api {
            status: 401,
            message,
        })) => Err(CliError(match client.token {
            None => format!(
                "the daemon on {api} wants its API token ({whence}): give --token TOKEN or set \
                     {TOKEN_ENV}, or run as a user who can read api.token in its state directory"
            ),
            Some(_) => {
                format!("the daemon on {api} refused the API token from {whence}: {message}")
            }
        })),
        Err(Fail::Client(e)) => failed(e),
        Err(Fail::Cli(e)) => Err(e),
    }
}

/// The API token to send, and where it came from (or why there is none):
/// `--token`, else `$PEERLET_API_TOKEN`, else the file `api.token` in the
/// state directory the daemon would use (from the configuration file and
/// the environment, as `peerlet daemon` reads them). No token is not an
/// error: a daemon on loopback needs none.
pub fn find_token(given: Option<&str>) -> Result<(Option<String>, String), CliError> {
    let checked = |t: &str, from: &str| {
        let t = t.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CliError(format!(
                "{from}: the API token must be printable characters without spaces"
            )));
        }
        Ok((Some(t.to_string()), from.to_string()))
    };
    if let Some(t) = given {
        return checked(t, "--token");
    }
    if let Some(t) = std::env::var_os(TOKEN_ENV).filter(|t| !t.is_empty()) {
        let t = t
            .into_string()
            .map_err(|_| CliError(format!("{TOKEN_ENV}: not UTF-8")))?;
        return checked(&t, TOKEN_ENV);
    }
    let state_dir = match crate::config::load(&crate::config::DaemonArgs::default()) {
        Ok(c) => c.path("state_dir"),
        Err(_) => {
            return Ok((
                None,
                "the configuration, which names the state directory, has problems".into(),
            ))
        }
    };
    let path = token::path(&state_dir);
    Ok(match token::read(&path) {
        Ok(Some(t)) => (Some(t.as_str().to_string()), path.display().to_string()),
        Ok(None) => (None, format!("{} does not exist", path.display())),
        Err(e) => (None, e),
    })
}

enum Fail {
    Client(ClientError),
    Cli(CliError),
}

impl From<ClientError> for Fail {
    fn from(e: ClientError) -> Fail {
        Fail::Client(e)
    }
}

impl From<CliError> for Fail {
    fn from(e: CliError) -> Fail {
        Fail::Cli(e)
    }
}

fn cli_err(msg: impl Into<String>) -> Fail {
    Fail::Cli(CliError(msg.into()))
}

// ---- reading fields of the daemon's answers (missing fields read as empty) ----

fn s<'a>(j: &'a Json, key: &str) -> &'a str {
    j.get(key).and_then(Json::as_str).unwrap_or("")
}

fn u(j: &Json, key: &str) -> u64 {
    j.get(key).and_then(Json::as_u64).unwrap_or(0)
}

fn b(j: &Json, key: &str) -> bool {
    j.get(key).and_then(Json::as_bool).unwrap_or(false)
}

fn error_of(j: &Json) -> Option<&str> {
    j.get("error")
        .and_then(Json::as_str)
        .filter(|e| !e.is_empty())
}

fn percent(have: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        have as f64 * 100.0 / total as f64
    }
}

fn rate(n: u64) -> String {
    format!("{}/s", human_bytes(n))
}

pub use crate::progress::human_duration;

// ---- add / get ----

/// What the user gave `add` or `get`, as a file name or a magnet link: a
/// bare info-hash that does not name an existing file becomes the magnet
/// link `magnet:?xt=urn:btih:HEX` (the daemon finds its holders through the
/// overlay).
fn source_link(source: &str) -> std::borrow::Cow<'_, str> {
    match InfoHash::parse(source) {
        Some(h) if !std::path::Path::new(source).exists() => {
            format!("magnet:?xt=urn:btih:{}", h.to_hex()).into()
        }
        _ => source.into(),
    }
}

/// What `add` sends: the body and its type, checked here first so that a
/// bad file or link is reported the same way `inspect` reports it.
fn read_source(source: &str) -> Result<(&'static str, Vec<u8>), CliError> {
    let source = &*source_link(source);
    if source
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("magnet:"))
    {
        Magnet::parse(source).map_err(|e| CliError(e.to_string()))?;
        return Ok(("text/plain", source.as_bytes().to_vec()));
    }
    let path = std::path::Path::new(source);
    let bytes = storage::read_limited(path, crate::metainfo::MAX_TORRENT_FILE).map_err(|e| {
        let hint = if path.exists() {
            ""
        } else {
            "; give a .torrent file, a magnet link or an info-hash"
        };
        CliError(format!("cannot read torrent: {e}{hint}"))
    })?;
    Torrent::from_bytes(&bytes).map_err(|e| CliError(format!("{}: {e}", path.display())))?;
    Ok(("application/x-bittorrent", bytes))
}

fn add_query(dir: Option<&PathBuf>, peers: &[String]) -> Result<String, CliError> {
    let mut params = Vec::new();
    if let Some(dir) = dir {
        let abs =
            std::path::absolute(dir).map_err(|e| CliError(format!("{}: {e}", dir.display())))?;
        let Some(text) = abs.to_str() else {
            return Err(CliError(format!(
                "{}: the directory name is not UTF-8",
                abs.display()
            )));
        };
        params.push(format!("dir={}", percent_encode(text)));
    }
    for p in peers {
        if !plausible_peer(p) {
            return Err(CliError(format!("peer '{p}' is not host:port")));
        }
        params.push(format!("peer={}", percent_encode(p)));
    }
    Ok(if params.is_empty() {
        String::new()
    } else {
        format!("?{}", params.join("&"))
    })
}

/// Adds; returns the daemon's answer (`info_hash`, `name`, `added`) after
/// printing what happened, unless `quiet`.
fn add(
    client: &Client,
    source: &str,
    dir: Option<&PathBuf>,
    peers: &[String],
    quiet: bool,
) -> Result<Added, Fail> {
    let (ctype, body) = read_source(source)?;
    let query = add_query(dir, peers)?;
    let j = client.post(&format!("/api/torrents{query}"), Some((ctype, &body)))?;
    let added = Added {
        hash: s(&j, "info_hash").to_string(),
        name: s(&j, "name").to_string(),
        json: j,
    };
    if InfoHash::parse(&added.hash).is_none() {
        return Err(Fail::Client(ClientError::Transport(format!(
            "the daemon answered without an info-hash: {}",
            added.json
        ))));
    }
    if !quiet {
        println!("{}", add_line(&added.json, !peers.is_empty()));
    }
    Ok(added)
}

/// What the daemon answered to an add.
struct Added {
    hash: String,
    name: String,
    json: Json,
}

/// `added NAME (HASH)`, `already present: NAME (HASH)[, peers added]`; a
/// magnet link without a name shows the hash once.
fn add_line(j: &Json, with_peers: bool) -> String {
    let (hash, name) = (s(j, "info_hash"), printable(s(j, "name")));
    let what = if name.is_empty() || name == hash {
        format!("{hash} (name not known yet)")
    } else {
        format!("{name} ({hash})")
    };
    if b(j, "added") {
        format!("added {what}")
    } else if with_peers {
        format!("already present: {what}, peers added")
    } else {
        format!("already present: {what}")
    }
}

pub fn run_add(a: AddArgs) -> Result<u8, CliError> {
    with_client(&a.api, a.token.as_deref(), |c| {
        let added = add(c, &a.source, a.dir.as_ref(), &a.peer, a.json)?;
        if !a.wait {
            if a.json {
                println!("{}", added.json);
            }
            return Ok(0);
        }
        let (mut code, last) = wait_for(c, &added, Until::Checked, None, !a.json)?;
        if last.as_ref().is_some_and(|j| s(j, "state") == "error") {
            code = 1;
        }
        if a.json {
            if let Some(last) = last {
                println!("{}", last.with("added", b(&added.json, "added")));
            }
        }
        Ok(code)
    })
}

pub fn run_get(a: GetArgs) -> Result<u8, CliError> {
    with_client(&a.api, a.token.as_deref(), |c| {
        let added = add(c, &a.source, a.dir.as_ref(), &a.peer, a.json)?;
        let deadline = a.timeout.map(|t| Instant::now() + Duration::from_secs(t));
        let (code, last) = wait_for(c, &added, Until::Complete, deadline, !a.json)?;
        if a.json {
            if let Some(last) = last {
                println!("{last}");
            }
        }
        Ok(code)
    })
}

/// What [`wait_for`] waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Until {
    /// Every piece verified, the torrent seeding (or paused): `get`.
    Complete,
    /// The metadata known and the data on disk checked: `add --wait`.
    Checked,
}

/// True when a torrent's status `j` is what `until` waits for.
fn reached(j: &Json, until: Until) -> bool {
    let state = s(j, "state");
    match until {
        Until::Complete => {
            let pieces = u(j, "pieces");
            pieces > 0 && u(j, "pieces_have") == pieces && (state == "seeding" || state == "paused")
        }
        Until::Checked => !state.is_empty() && state != "metadata" && state != "checking",
    }
}

/// Polls the torrent until it reaches `until` (0) or `deadline` passes (1),
/// with progress on standard error when `show`; returns the exit status and
/// the torrent's last status.
fn wait_for(
    client: &Client,
    added: &Added,
    until: Until,
    deadline: Option<Instant>,
    show: bool,
) -> Result<(u8, Option<Json>), Fail> {
    let hash = &added.hash;
    let mut view = GetView::new(&added.name, show);
    let mut seen_errors: HashSet<String> = HashSet::new();
    let mut last: Option<Json> = None;
    let path = format!("/api/torrents/{hash}");
    loop {
        match client.get(&path) {
            Ok(j) => {
                if let Some(e) = error_of(&j) {
                    if seen_errors.insert(e.to_string()) {
                        view.message(&format!(
                            "peerlet: {}: {} (the daemon keeps retrying)",
                            view.name,
                            printable(e)
                        ));
                    }
                }
                if reached(&j, until) {
                    view.finish();
                    if show {
                        println!("{}", done_line(&j, until));
                    }
                    return Ok((0, Some(j)));
                }
                view.show(&j);
                last = Some(j);
            }
            Err(ClientError::Api { status: 404, .. }) => {
                view.finish();
                eprintln!(
                    "peerlet: {} ({hash}) was removed from the daemon",
                    view.name
                );
                return Ok((1, last));
            }
            // Gone for good: stop waiting.
            Err(ClientError::NoDaemon(addr)) => {
                view.finish();
                return Err(cli_err(format!(
                    "the daemon on {addr} stopped answering while waiting for {}; \
                     once it runs again, `peerlet status {}` shows where the torrent is",
                    view.name,
                    &hash[..8.min(hash.len())]
                )));
            }
            Err(e @ ClientError::BadAddress(_)) => {
                view.finish();
                return Err(e.into());
            }
            // Busy or hiccup: say it once and keep waiting.
            Err(e) => {
                if seen_errors.insert(e.to_string()) {
                    view.message(&format!("peerlet: {e} (still waiting)"));
                }
            }
        }
        let now = Instant::now();
        let mut pause = Duration::from_millis(500);
        if let Some(d) = deadline {
            if now >= d {
                view.finish();
                eprintln!(
                    "peerlet: timed out waiting for {}; the daemon keeps downloading it \
                     (`peerlet ls` shows how far it got)",
                    view.label(hash)
                );
                return Ok((1, last));
            }
            pause = pause.min(d - now);
        }
        std::thread::sleep(pause);
    }
}

/// The line `get` and `add --wait` end with.
fn done_line(j: &Json, until: Until) -> String {
    let (name, hash) = (printable(s(j, "name")), s(j, "info_hash"));
    match until {
        Until::Complete => format!("complete: {name} ({hash}) in {}", printable(s(j, "dir"))),
        Until::Checked => {
            let state = s(j, "state");
            let (have, total) = (u(j, "have_bytes"), u(j, "total_size"));
            let mut line = format!(
                "{state}: {name} ({hash}), {:.1}% of {} on disk in {}",
                percent(have, total),
                human_bytes(total),
                printable(s(j, "dir"))
            );
            if let Some(e) = error_of(j) {
                line.push_str(&format!(", error: {}", printable(e)));
            }
            line
        }
    }
}

/// Progress of `get` and `add --wait` on standard error: a bar redrawn in
/// place on a terminal, otherwise a line every 10% or every 10 seconds and
/// on every change of state; nothing when not `enabled`.
struct GetView {
    name: String,
    enabled: bool,
    terminal: bool,
    drawn: bool,
    last_line: Option<Instant>,
    last_decile: Option<u64>,
    last_state: String,
}

impl GetView {
    fn new(name: &str, enabled: bool) -> GetView {
        GetView {
            name: printable(name),
            enabled,
            terminal: std::io::stderr().is_terminal(),
            drawn: false,
            last_line: None,
            last_decile: None,
            last_state: String::new(),
        }
    }

    /// The torrent as messages name it: `NAME (HASH)`, or the hash alone
    /// while the name is not known.
    fn label(&self, hash: &str) -> String {
        if self.name.is_empty() || self.name == hash {
            hash.to_string()
        } else {
            format!("{} ({hash})", self.name)
        }
    }

    fn clear(&mut self) {
        if self.drawn {
            eprint!("\r{}\r", " ".repeat(79));
            self.drawn = false;
        }
    }

    fn message(&mut self, line: &str) {
        self.clear();
        eprintln!("{line}");
    }

    fn finish(&mut self) {
        self.clear();
        let _ = std::io::stderr().flush();
    }

    fn show(&mut self, j: &Json) {
        let n = s(j, "name");
        if !n.is_empty() {
            self.name = printable(n);
        }
        if !self.enabled {
            return;
        }
        let line = progress_line(&self.name, j, self.terminal);
        if self.terminal {
            eprint!("\r{line:<79}");
            let _ = std::io::stderr().flush();
            self.drawn = true;
        } else {
            let state = s(j, "state").to_string();
            let decile = (percent(u(j, "have_bytes"), u(j, "total_size")) / 10.0) as u64;
            let now = Instant::now();
            let due = self.last_decile != Some(decile)
                || state != self.last_state
                || self
                    .last_line
                    .is_none_or(|t| now - t >= Duration::from_secs(10));
            if due {
                eprintln!("{line}");
                self.last_decile = Some(decile);
                self.last_line = Some(now);
                self.last_state = state;
            }
        }
    }
}

/// One progress line of `get`: a bar for a terminal
/// (`album [####----] 20.0% 1.3 MiB/s 1 peer ETA 18s`), else a plain line
/// (`album: 20.0% of 28.6 MiB, 1.3 MiB/s, 1 peer, ETA 18s (downloading)`).
fn progress_line(name: &str, j: &Json, terminal: bool) -> String {
    let state = s(j, "state");
    let (have, total) = (u(j, "have_bytes"), u(j, "total_size"));
    let pct = percent(have, total);
    let down = u(j, "download_rate");
    let peers = match u(j, "peers") {
        1 => "1 peer".to_string(),
        n => format!("{n} peers"),
    };
    let eta = (down > 0 && total > have).then(|| human_duration((total - have).div_ceil(down)));
    let what = match state {
        "metadata" => "fetching metadata",
        "checking" => "checking data on disk",
        other => other,
    };
    if terminal {
        let width = 20;
        let filled = ((pct / 100.0 * width as f64) as usize).min(width);
        let bar = format!("{}{}", "#".repeat(filled), "-".repeat(width - filled));
        let mut short: String = name.chars().take(24).collect();
        if short.len() < name.len() {
            short.push('…');
        }
        let eta = eta.map(|e| format!(" ETA {e}")).unwrap_or_default();
        let what = if state == "downloading" { "" } else { what };
        format!(
            "{short} [{bar}] {pct:5.1}% {} {peers}{eta} {what}",
            rate(down)
        )
        .trim_end()
        .to_string()
    } else {
        let size = if total > 0 || state != "metadata" {
            format!(" of {}", human_bytes(total))
        } else {
            String::new()
        };
        let eta = eta.map(|e| format!(", ETA {e}")).unwrap_or_default();
        format!(
            "{name}: {pct:.1}%{size}, {}, {peers}{eta} ({what})",
            rate(down)
        )
    }
}

// ---- ls / status ----

pub fn run_ls(a: LsArgs) -> Result<u8, CliError> {
    with_client(&a.api, a.token.as_deref(), |c| {
        let j = c.get("/api/torrents")?;
        if a.json {
            println!("{j}");
            return Ok(0);
        }
        let list = j.as_array().unwrap_or_default();
        if list.is_empty() {
            println!("no torrents");
            return Ok(0);
        }
        print!("{}", ls_table(list));
        Ok(0)
    })
}

/// The `ls` table: one row per torrent, an error line under a torrent in trouble.
pub fn ls_table(list: &[Json]) -> String {
    let header = [
        "HASH", "STATE", "DONE", "SIZE", "DOWN", "UP", "PEERS", "TRACKER", "NAME",
    ];
    let rows: Vec<([String; 9], Option<String>)> = list
        .iter()
        .map(|t| {
            let hash: String = s(t, "info_hash").chars().take(8).collect();
            (
                [
                    hash,
                    s(t, "state").to_string(),
                    format!("{:.1}%", percent(u(t, "have_bytes"), u(t, "total_size"))),
                    human_bytes(u(t, "total_size")),
                    rate(u(t, "download_rate")),
                    rate(u(t, "upload_rate")),
                    u(t, "peers").to_string(),
                    tracker_word(t),
                    printable(s(t, "name")),
                ],
                error_of(t).map(printable),
            )
        })
        .collect();
    let mut width = header.map(str::len);
    for (r, _) in &rows {
        for (w, cell) in width.iter_mut().zip(r.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // Left-aligned text, right-aligned numbers; the name last, unpadded.
    let right = [false, false, true, true, true, true, true, false, false];
    let line = |cells: [&str; 9]| {
        let mut out = String::new();
        for i in 0..9 {
            if i == 8 {
                out.push_str(cells[i]);
            } else if right[i] {
                out.push_str(&format!("{:>w$}  ", cells[i], w = width[i]));
            } else {
                out.push_str(&format!("{:<w$}  ", cells[i], w = width[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header);
    for (r, err) in &rows {
        out.push_str(&line([
            &r[0], &r[1], &r[2], &r[3], &r[4], &r[5], &r[6], &r[7], &r[8],
        ]));
        if let Some(e) = err {
            out.push_str(&format!("{:w$}  error: {e}\n", "", w = width[0]));
        }
    }
    out
}

/// Text from torrents, trackers and peers with control characters (terminal
/// escapes) replaced.
pub(crate) fn printable(text: &str) -> String {
    crate::text::printable(text.as_bytes(), usize::MAX)
}

/// The `TRACKER` cell of `ls`: `-` without trackers, else the first word of
/// the best tracker result (`ok`, `error`, `timeout`, `not`...).
fn tracker_word(t: &Json) -> String {
    match t.get("tracker").and_then(Json::as_str) {
        None => "-".into(),
        Some(r) if r.starts_with("not contacted") => "waiting".into(),
        Some(r) => printable(r.split([':', ' ']).next().unwrap_or("")),
    }
}

/// A full info-hash from what the user typed: 40 hex digits (or 32 base32)
/// as is, or a unique prefix of at least 4 hex digits looked up in the list.
fn resolve_hash(client: &Client, given: &str) -> Result<String, Fail> {
    if let Some(h) = InfoHash::parse(given) {
        return Ok(h.to_hex());
    }
    let prefix = given.to_ascii_lowercase();
    if prefix.len() < 4 || prefix.len() > 40 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(cli_err(format!(
            "'{given}' is not an info-hash (40 hex digits, or a unique prefix of at least 4)"
        )));
    }
    let list = client.get("/api/torrents")?;
    let matches: Vec<&str> = list
        .as_array()
        .unwrap_or_default()
        .iter()
        .map(|t| s(t, "info_hash"))
        .filter(|h| h.starts_with(&prefix))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(cli_err(format!(
            "no torrent's info-hash starts with '{given}'"
        ))),
        many => Err(cli_err(format!(
            "'{given}' matches {} torrents; give more digits",
            many.len()
        ))),
    }
}

pub fn run_status(a: StatusArgs) -> Result<u8, CliError> {
    with_client(&a.api, a.token.as_deref(), |c| {
        let Some(given) = &a.hash else {
            let j = c.get("/api/node")?;
            if a.json {
                println!("{j}");
            } else {
                print!("{}", node_text(&j));
            }
            return Ok(0);
        };
        let hash = resolve_hash(c, given)?;
        let j = c.get(&format!("/api/torrents/{hash}"))?;
        if a.json {
            println!("{j}");
        } else {
            print!("{}", detail_text(&j));
        }
        Ok(0)
    })
}

pub fn node_text(j: &Json) -> String {
    let mut out = String::new();
    out.push_str(&format!("version: {}\n", s(j, "version")));
    out.push_str(&format!("listen: {}\n", s(j, "listen")));
    out.push_str(&format!("peer id: {}\n", s(j, "peer_id")));
    for (label, key) in [
        ("node id", "node_id"),
        ("public key", "public_key"),
        ("network", "network"),
    ] {
        let v = s(j, key);
        if !v.is_empty() {
            out.push_str(&format!("{label}: {}\n", printable(v)));
        }
    }
    out.push_str(&format!("torrents: {}\n", u(j, "torrents")));
    out.push_str(&format!("peers: {}\n", u(j, "peers")));
    out.push_str(&format!("download: {}\n", rate(u(j, "download_rate"))));
    out.push_str(&format!("upload: {}\n", rate(u(j, "upload_rate"))));
    let limit = |key: &str| match u(j, key) {
        0 => "none".to_string(),
        n => rate(n),
    };
    out.push_str(&format!(
        "limits: download {}, upload {}\n",
        limit("download_limit"),
        limit("upload_limit")
    ));
    out.push_str(&format!(
        "memory in flight: {} of {}\n",
        human_bytes(u(j, "bytes_in_flight")),
        human_bytes(u(j, "memory_budget"))
    ));
    out.push_str(&format!(
        "uptime: {}\n",
        human_duration(u(j, "uptime_secs"))
    ));
    out
}

pub fn detail_text(j: &Json) -> String {
    let mut out = String::new();
    let mut kv = |k: &str, v: String| out.push_str(&format!("{k}: {v}\n"));
    kv("name", printable(s(j, "name")));
    kv("info_hash", s(j, "info_hash").to_string());
    kv("state", s(j, "state").to_string());
    if let Some(e) = error_of(j) {
        kv("error", printable(e));
    }
    kv("dir", printable(s(j, "dir")));
    let (have, total) = (u(j, "have_bytes"), u(j, "total_size"));
    kv("size", format!("{total} ({})", human_bytes(total)));
    kv(
        "progress",
        format!(
            "{:.1}% ({} of {} pieces, {})",
            percent(have, total),
            u(j, "pieces_have"),
            u(j, "pieces"),
            human_bytes(have)
        ),
    );
    kv("piece length", human_bytes(u(j, "piece_length")));
    kv(
        "private",
        if b(j, "private") { "yes" } else { "no" }.to_string(),
    );
    kv(
        "download",
        format!(
            "{} ({} this session)",
            rate(u(j, "download_rate")),
            human_bytes(u(j, "downloaded"))
        ),
    );
    kv(
        "upload",
        format!(
            "{} ({} this session)",
            rate(u(j, "upload_rate")),
            human_bytes(u(j, "uploaded"))
        ),
    );
    kv(
        "pieces",
        format!(
            "{} downloaded, {} found on disk, {} failed the hash check",
            u(j, "pieces_downloaded"),
            u(j, "pieces_resumed"),
            u(j, "hash_failures")
        ),
    );
    kv("magnet", printable(s(j, "magnet")));
    let trackers = j
        .get("trackers")
        .and_then(Json::as_array)
        .unwrap_or_default();
    if !trackers.is_empty() {
        out.push_str(&format!("trackers: {}\n", trackers.len()));
    }
    for t in trackers {
        let mut line = format!(
            "  [{}] {}  {}",
            u(t, "tier"),
            printable(s(t, "url")),
            printable(s(t, "last_result"))
        );
        let counts = (
            t.get("seeders").and_then(Json::as_u64),
            t.get("leechers").and_then(Json::as_u64),
        );
        if let (Some(seeders), Some(leechers)) = counts {
            line.push_str(&format!(", {seeders} seeders, {leechers} leechers"));
        }
        if let Some(next) = t.get("next_announce_secs").and_then(Json::as_u64) {
            line.push_str(&format!(", next in {}", human_duration(next)));
        }
        out.push_str(&line);
        out.push('\n');
    }
    let sources = j
        .get("sources")
        .and_then(Json::as_array)
        .unwrap_or_default();
    if !sources.is_empty() {
        out.push_str("peer sources:\n");
    }
    for src in sources {
        out.push_str(&format!(
            "  {:<9} {:>4} known {:>4} connected  {:>10} down {:>10} up\n",
            s(src, "source"),
            u(src, "known"),
            u(src, "connected"),
            human_bytes(u(src, "downloaded")),
            human_bytes(u(src, "uploaded"))
        ));
    }
    let peers = j
        .get("peer_list")
        .and_then(Json::as_array)
        .unwrap_or_default();
    out.push_str(&format!("peers: {}\n", peers.len()));
    for p in peers {
        out.push_str(&format!(
            "  {:<40} {:<9} {:>11} {:>11} {:>5.1}% {:<5} {}\n",
            s(p, "addr"),
            s(p, "source"),
            rate(u(p, "download_rate")),
            rate(u(p, "upload_rate")),
            u(p, "progress_permille") as f64 / 10.0,
            printable(s(p, "flags")),
            printable(s(p, "client"))
        ));
    }
    let files = j.get("files").and_then(Json::as_array).unwrap_or_default();
    out.push_str(&format!("files: {}\n", files.len()));
    for f in files {
        out.push_str(&format!(
            "  {:>10} {:>6.1}%  {}\n",
            human_bytes(u(f, "size")),
            percent(u(f, "have_bytes"), u(f, "size")),
            printable(s(f, "path"))
        ));
    }
    out
}

// ---- search / peers ----

/// The query string of `POST /api/search` for what was typed after
/// `peerlet search`: one argument that is an info-hash searches for its
/// holders (`hash=HEX`); anything else is words, joined with spaces and
/// checked as the daemon checks them (`q=WORDS`).
pub fn search_query(words: &[String], timeout: u64) -> Result<String, CliError> {
    if !(1..=crate::control::server::MAX_SEARCH_SECS).contains(&timeout) {
        return Err(CliError(format!(
            "--timeout {timeout}: give 1 to {} seconds",
            crate::control::server::MAX_SEARCH_SECS
        )));
    }
    if words.is_empty() {
        return Err(CliError(
            "nothing to search for: give words of a name or an info-hash".into(),
        ));
    }
    let hash = match words {
        [one] => InfoHash::parse(one),
        _ => None,
    };
    let what = match hash {
        Some(h) => format!("hash={}", h.to_hex()),
        None => {
            let joined = words.join(" ");
            let q = crate::control::server::check_search_words(&joined).map_err(CliError)?;
            format!("q={}", percent_encode(q))
        }
    };
    Ok(format!("{what}&timeout={timeout}"))
}

/// Width of the name column of `search`; longer names are cut.
const SEARCH_NAME_WIDTH: usize = 40;

/// The header of `search`'s lines (shown on a terminal).
pub fn search_header() -> String {
    format!(
        "{:<w$}  {:>10}  {:<40}  HOLDERS",
        "NAME",
        "SIZE",
        "INFO-HASH",
        w = SEARCH_NAME_WIDTH
    )
}

/// One result of `search` on one line: name (cut to fit, terminal escapes
/// replaced), size, info-hash, number of holders.
pub fn search_line(hit: &Json) -> String {
    let name = printable(s(hit, "name"));
    let name = if name.chars().count() > SEARCH_NAME_WIDTH {
        let mut cut: String = name.chars().take(SEARCH_NAME_WIDTH - 1).collect();
        cut.push('…');
        cut
    } else {
        name
    };
    let holders = hit
        .get("holders")
        .and_then(Json::as_array)
        .map_or(0, <[Json]>::len);
    format!(
        "{name:<w$}  {:>10}  {:<40}  {holders:>7}",
        human_bytes(u(hit, "size")),
        printable(s(hit, "info_hash")),
        w = SEARCH_NAME_WIDTH
    )
}

pub fn run_search(a: SearchArgs) -> Result<u8, CliError> {
    let query = search_query(&a.words, a.timeout)?;
    with_client(&a.api, a.token.as_deref(), |c| {
        let started = c.post(&format!("/api/search?{query}"), None)?;
        let Some(id) = started.get("id").and_then(Json::as_u64) else {
            return Err(Fail::Client(ClientError::Transport(format!(
                "the daemon answered without a search id: {started}"
            ))));
        };
        // The daemon closes the search after `timeout`; a little grace for
        // the last answers, then stop asking whatever it says.
        let deadline = Instant::now() + Duration::from_secs(a.timeout + 2);
        let show = !a.json;
        if show && crate::cli::stdout_is_terminal() {
            println!("{}", search_header());
        }
        let mut shown: HashSet<String> = HashSet::new();
        let mut said: HashSet<String> = HashSet::new();
        let mut last = Json::obj()
            .with("id", id)
            .with("done", false)
            .with("results", Json::Arr(Vec::new()));
        loop {
            match c.get(&format!("/api/search/{id}")) {
                Ok(page) => {
                    let results = page
                        .get("results")
                        .and_then(Json::as_array)
                        .unwrap_or_default();
                    for hit in results {
                        if shown.insert(s(hit, "info_hash").to_string()) && show {
                            println!("{}", search_line(hit));
                        }
                    }
                    let done = b(&page, "done");
                    last = page;
                    if done {
                        break;
                    }
                }
                Err(ClientError::Api { status: 404, .. }) => {
                    eprintln!("peerlet: search {id} is gone from the daemon (did it restart?)");
                    return Ok(1);
                }
                Err(e @ (ClientError::NoDaemon(_) | ClientError::BadAddress(_))) => {
                    return Err(e.into());
                }
                // Busy or hiccup: say it once and keep asking.
                Err(e) => {
                    if said.insert(e.to_string()) {
                        eprintln!("peerlet: {e} (still waiting)");
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(250).min(deadline - now));
        }
        let n = shown.len();
        if a.json {
            println!("{last}");
        } else if n == 0 {
            println!("no results within {} s", a.timeout);
        } else {
            println!("{n} result{}", if n == 1 { "" } else { "s" });
        }
        Ok(if n == 0 { 1 } else { 0 })
    })
}

pub fn run_peers(a: PeersArgs) -> Result<u8, CliError> {
    with_client(&a.api, a.token.as_deref(), |c| {
        // Banned addresses (`GET /api/bans`); a daemon without that
        // endpoint shows none.
        let bans = c.get("/api/bans").ok().and_then(|j| j.get("bans").cloned());
        let j = match c.get("/api/nodes") {
            Ok(j) => j,
            // The overlay is off: the bans are still worth showing.
            Err(ClientError::Api { message, .. }) if bans.is_some() => {
                Json::obj().with("error", message)
            }
            Err(e) => return Err(e.into()),
        };
        if a.json {
            match bans {
                Some(list) => println!("{}", j.with("bans", list)),
                None => println!("{j}"),
            }
        } else {
            match error_of(&j) {
                Some(e) => println!("discovery overlay: {}", printable(e)),
                None => print!("{}", peers_text(&j)),
            }
            if let Some(list) = bans {
                print!("{}", bans_text(list.as_array().unwrap_or_default()));
            }
        }
        Ok(0)
    })
}

/// The banned addresses of `peers`: one line each, or a line saying none.
pub fn bans_text(bans: &[Json]) -> String {
    if bans.is_empty() {
        return "banned: none\n".to_string();
    }
    let mut out = format!("banned: {}\n", bans.len());
    for b in bans {
        let n = u(b, "offences");
        let again = if n > 1 {
            format!(", ban {n} in a row")
        } else {
            String::new()
        };
        out.push_str(&format!(
            "  {}  {} left{again}: {}\n",
            printable(s(b, "ip")),
            human_duration(u(b, "expires_in_secs")),
            printable(s(b, "reason"))
        ));
    }
    out
}

/// `peerlet peers`: a summary line, the routing table, the counters.
pub fn peers_text(j: &Json) -> String {
    let nodes = j.get("nodes").and_then(Json::as_array).unwrap_or_default();
    let neighbours = nodes.iter().filter(|n| b(n, "neighbour")).count();
    let mut summary = format!(
        "node {} on {}",
        printable(s(j, "node_id")),
        printable(s(j, "udp"))
    );
    if let Some(ext) = j.get("external").and_then(Json::as_str) {
        summary.push_str(&format!(", external {}", printable(ext)));
    }
    match j.get("lan_beacon").and_then(Json::as_str) {
        Some(to) => summary.push_str(&format!(", LAN beacons to {}", printable(to))),
        None => summary.push_str(", LAN discovery off"),
    }
    summary.push_str(&format!(
        "; table {}/{}, neighbours {neighbours}/{}, content {} entries\n",
        nodes.len(),
        u(j, "capacity"),
        u(j, "degree"),
        u(j, "content_entries")
    ));
    let mut out = summary;
    if nodes.is_empty() {
        out.push_str("routing table: empty\n");
    } else {
        out.push_str(&nodes_table(nodes));
        if neighbours > 0 {
            out.push_str("(* neighbour)\n");
        }
    }
    out.push_str(&format!(
        "content holders: {}, open searches: {}, query ids remembered: {}\n",
        u(j, "content_holders"),
        u(j, "open_searches"),
        u(j, "routes")
    ));
    let counters: &[(String, Json)] = match j.get("counters") {
        Some(Json::Obj(entries)) => entries,
        _ => &[],
    };
    let (mut sent, mut received, mut dropped, mut other) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (k, v) in counters {
        let v = v.as_u64().unwrap_or(0);
        let k = printable(k);
        if let Some(kind) = k.strip_prefix("sent_") {
            sent.push(format!("{kind} {v}"));
        } else if let Some(kind) = k.strip_prefix("received_") {
            received.push(format!("{kind} {v}"));
        } else if let Some(why) = k
            .strip_prefix("dropped_")
            .or_else(|| k.strip_prefix("drop_"))
        {
            dropped.push(format!("{why} {v}"));
        } else {
            other.push(format!("{k} {v}"));
        }
    }
    for (label, items) in [
        ("sent", sent),
        ("received", received),
        ("dropped", dropped),
        ("other", other),
    ] {
        if !items.is_empty() {
            out.push_str(&wrap_list(label, &items));
        }
    }
    out
}

/// `label: a 1, b 2, ...` wrapped at 79 columns, continuation lines indented.
fn wrap_list(label: &str, items: &[String]) -> String {
    let mut out = String::new();
    let mut line = format!("{label}:");
    let indent = " ".repeat(label.len() + 2);
    for (i, item) in items.iter().enumerate() {
        let sep = if i + 1 < items.len() { "," } else { "" };
        let piece = format!(" {item}{sep}");
        if line.len() + piece.len() > 79 && line.len() > indent.len() {
            out.push_str(line.trim_end());
            out.push('\n');
            line = format!("{indent}{}", piece.trim_start());
        } else {
            line.push_str(&piece);
        }
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// The routing table of `peers`: a `*` before neighbours, aligned columns.
fn nodes_table(nodes: &[Json]) -> String {
    let header = ["ADDR", "ID", "SOURCE", "RTT", "LAST SEEN", "FAILS"];
    let rows: Vec<(bool, [String; 6])> = nodes
        .iter()
        .map(|n| {
            let id = n
                .get("id")
                .and_then(Json::as_str)
                .map_or("-".to_string(), |id| {
                    printable(&id.chars().take(12).collect::<String>())
                });
            let rtt = n
                .get("rtt_ms")
                .and_then(Json::as_u64)
                .map_or("-".to_string(), |ms| format!("{ms} ms"));
            let seen = n
                .get("last_seen_secs")
                .and_then(Json::as_u64)
                .map_or("never".to_string(), |t| {
                    format!("{} ago", human_duration(t))
                });
            (
                b(n, "neighbour"),
                [
                    printable(s(n, "addr")),
                    id,
                    printable(s(n, "source")),
                    rtt,
                    seen,
                    u(n, "failures").to_string(),
                ],
            )
        })
        .collect();
    let mut width = header.map(str::len);
    for (_, r) in &rows {
        for (w, cell) in width.iter_mut().zip(r.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let right = [false, false, false, true, true, true];
    let line = |mark: bool, cells: [&str; 6]| {
        let mut out = String::from(if mark { "* " } else { "  " });
        for i in 0..6 {
            if right[i] {
                out.push_str(&format!("{:>w$}  ", cells[i], w = width[i]));
            } else {
                out.push_str(&format!("{:<w$}  ", cells[i], w = width[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(false, header);
    for (mark, r) in &rows {
        out.push_str(&line(*mark, [&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]));
    }
    out
}

// ---- rm / pause / resume / stop ----

pub fn run_rm(a: RmArgs) -> Result<u8, CliError> {
    with_client(&a.api, a.token.as_deref(), |c| {
        let hash = resolve_hash(c, &a.hash)?;
        let q = if a.delete_data { "?delete_data=1" } else { "" };
        c.delete(&format!("/api/torrents/{hash}{q}"))?;
        if a.delete_data {
            println!("removed {hash} and deleted its data");
        } else {
            println!("removed {hash} (its data stays on disk)");
        }
        Ok(0)
    })
}

pub fn run_pause(a: PauseArgs) -> Result<u8, CliError> {
    with_client(&a.api, a.token.as_deref(), |c| {
        let hash = resolve_hash(c, &a.hash)?;
        c.post(&format!("/api/torrents/{hash}/pause"), None)?;
        println!("paused {hash}");
        Ok(0)
    })
}

pub fn run_resume(a: ResumeArgs) -> Result<u8, CliError> {
    with_client(&a.api, a.token.as_deref(), |c| {
        let hash = resolve_hash(c, &a.hash)?;
        c.post(&format!("/api/torrents/{hash}/resume"), None)?;
        println!("resumed {hash}");
        Ok(0)
    })
}

#[derive(FromArgs, Debug)]
/// Set a torrent's download and upload rate limits.
#[argh(
    subcommand,
    name = "limit",
    example = "$ {command_name} ab81 --down 500K\n$ {command_name} ab81 --down 0 --up 1M",
    note = "Limits are bytes per second with K and M suffixes; 0 is no limit. A limit\nnot given stays as it is."
)]
pub struct LimitArgs {
    /// info-hash of the torrent (40 hex digits, or a unique prefix of at least 4)
    #[argh(positional)]
    pub hash: String,
    /// download limit in bytes per second (0: none)
    #[argh(option, from_str_fn(crate::cli::parse_size))]
    pub down: Option<u32>,
    /// upload limit in bytes per second (0: none)
    #[argh(option, from_str_fn(crate::cli::parse_size))]
    pub up: Option<u32>,
    /// address of the daemon's control API (default 127.0.0.1:7441)
    #[argh(option, default = "crate::control::DEFAULT_API_ADDR.to_string()")]
    pub api: String,
    /// the API token (default: $PEERLET_API_TOKEN, else api.token in the daemon's state directory)
    #[argh(option)]
    pub token: Option<String>,
}

pub fn run_limit(a: LimitArgs) -> Result<u8, CliError> {
    if a.down.is_none() && a.up.is_none() {
        return Err(CliError(
            "give --down and/or --up (bytes per second, 0 for no limit)".into(),
        ));
    }
    with_client(&a.api, a.token.as_deref(), |c| {
        let hash = resolve_hash(c, &a.hash)?;
        let mut q = Vec::new();
        if let Some(d) = a.down {
            q.push(format!("down={d}"));
        }
        if let Some(u) = a.up {
            q.push(format!("up={u}"));
        }
        c.post(
            &format!("/api/torrents/{hash}/limits?{}", q.join("&")),
            None,
        )?;
        let show = |v: Option<u32>| match v {
            None => "unchanged".to_string(),
            Some(0) => "none".to_string(),
            Some(n) => format!("{}/s", crate::progress::human_bytes(n.into())),
        };
        println!(
            "limits of {hash}: download {}, upload {}",
            show(a.down),
            show(a.up)
        );
        Ok(0)
    })
}

pub fn run_stop(a: StopArgs) -> Result<u8, CliError> {
    with_client(&a.api, a.token.as_deref(), |c| {
        c.post("/api/shutdown", None)?;
        println!("daemon on {} is stopping", c.addr());
        Ok(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_progress_lines() {
        let t = |state: &str, have: u64, rate: u64, peers: u64| {
            Json::obj()
                .with("state", state)
                .with("total_size", 30u64 << 20)
                .with("have_bytes", have)
                .with("download_rate", rate)
                .with("peers", peers)
        };
        let j = t("downloading", 6 << 20, 1 << 20, 1);
        assert_eq!(
            progress_line("album", &j, false),
            "album: 20.0% of 30.0 MiB, 1.0 MiB/s, 1 peer, ETA 24s (downloading)"
        );
        assert_eq!(
            progress_line("album", &j, true),
            "album [####----------------]  20.0% 1.0 MiB/s 1 peer ETA 24s"
        );
        // No rate: no ETA; the state says what is going on.
        let j = t("checking", 0, 0, 0);
        assert_eq!(
            progress_line("album", &j, false),
            "album: 0.0% of 30.0 MiB, 0 B/s, 0 peers (checking data on disk)"
        );
        assert!(progress_line("album", &j, true).ends_with("0 peers checking data on disk"));
        // A magnet link before its metadata: no size yet.
        let j = Json::obj().with("state", "metadata").with("peers", 3u64);
        assert_eq!(
            progress_line("h", &j, false),
            "h: 0.0%, 0 B/s, 3 peers (fetching metadata)"
        );
        let long = "a-very-long-name-of-a-torrent-indeed.iso";
        let line = progress_line(long, &t("downloading", 0, 0, 2), true);
        assert!(line.starts_with("a-very-long-name-of-a-to… ["), "{line}");
    }

    #[test]
    fn ls_and_detail_hide_terminal_escapes() {
        let evil = "x\u{1b}]0;owned\u{7}";
        let t = Json::obj()
            .with("info_hash", "c12fe1c06bba254a9dc9f519b335aa7c1367a88a")
            .with("name", evil)
            .with("state", "error")
            .with("error", evil)
            .with("dir", evil)
            .with("tracker", evil)
            .with(
                "peer_list",
                Json::Arr(vec![Json::obj()
                    .with("addr", "1.2.3.4:5")
                    .with("client", evil)]),
            )
            .with(
                "files",
                Json::Arr(vec![Json::obj().with("path", evil).with("size", 1u64)]),
            );
        for out in [ls_table(std::slice::from_ref(&t)), detail_text(&t)] {
            assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
            assert!(out.contains("x?]0;owned?"), "{out}");
        }
    }

    #[test]
    fn add_lines() {
        let hash = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";
        let j = |name: &str, added: bool| {
            Json::obj()
                .with("info_hash", hash)
                .with("name", name)
                .with("added", added)
        };
        assert_eq!(
            add_line(&j("album", true), false),
            format!("added album ({hash})")
        );
        assert_eq!(
            add_line(&j("album", false), true),
            format!("already present: album ({hash}), peers added")
        );
        assert_eq!(
            add_line(&j(hash, true), false),
            format!("added {hash} (name not known yet)")
        );
        assert_eq!(
            add_line(&j("bad\x1b[2J", false), false),
            format!("already present: bad?[2J ({hash})")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(75), "1m15s");
        assert_eq!(human_duration(3600 + 120), "1h02m");
        assert_eq!(human_duration(86400 * 2 + 3600), "2d01h");
    }

    #[test]
    fn table_aligns() {
        let t = |h: &str, name: &str, err: Option<&str>, tracker: Option<&str>| {
            Json::obj()
                .with("info_hash", h)
                .with("name", name)
                .with("state", "downloading")
                .with("error", err)
                .with("total_size", 2048u64)
                .with("have_bytes", 1024u64)
                .with("download_rate", 1536u64)
                .with("peers", 12u64)
                .with("tracker", tracker)
        };
        let out = ls_table(&[
            t(
                "c12fe1c06bba254a9dc9f519b335aa7c1367a88a",
                "one",
                None,
                Some("ok: 3 peers"),
            ),
            t(
                "0123456789012345678901234567890123456789",
                "two",
                Some("disk full"),
                None,
            ),
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(lines[0].starts_with("HASH      STATE"), "{out}");
        assert!(
            lines[1].starts_with("c12fe1c0  downloading  50.0%"),
            "{out}"
        );
        assert!(lines[1].ends_with("12  ok       one"), "{out}");
        assert!(lines[2].ends_with("12  -        two"), "{out}");
        assert_eq!(lines[3].trim(), "error: disk full");
        let name_col = lines[0].find("NAME").unwrap();
        assert_eq!(lines[2].find("two"), Some(name_col));
    }

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn search_words_or_hash() {
        let hex = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";
        let q = |words: &[&str], t| search_query(&strings(words), t);
        assert_eq!(q(&[hex], 10).unwrap(), format!("hash={hex}&timeout=10"));
        assert_eq!(
            q(&["C12FE1C06BBA254A9DC9F519B335AA7C1367A88A"], 5).unwrap(),
            format!("hash={hex}&timeout=5")
        );
        assert_eq!(
            q(&["YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK"], 300).unwrap(),
            format!("hash={hex}&timeout=300")
        );
        // Words, joined and %-encoded; a hash among other words is a word.
        assert_eq!(
            q(&["ubuntu", "24.04"], 10).unwrap(),
            "q=ubuntu%2024.04&timeout=10"
        );
        assert_eq!(
            q(&["  debian & co "], 10).unwrap(),
            "q=debian%20%26%20co&timeout=10"
        );
        assert_eq!(
            q(&[hex, "x"], 10).unwrap(),
            format!("q={hex}%20x&timeout=10")
        );
        assert_eq!(q(&["c12f"], 10).unwrap(), "q=c12f&timeout=10");
        assert!(q(&[], 10).unwrap_err().0.contains("nothing to search for"));
        assert!(q(&["  "], 10).unwrap_err().0.contains("empty"));
        assert!(q(&["--", "."], 10)
            .unwrap_err()
            .0
            .contains("no letter or digit"));
        assert!(q(&[&"a".repeat(101)], 10)
            .unwrap_err()
            .0
            .contains("at most 100"));
        assert!(q(&["a"], 0).unwrap_err().0.contains("--timeout 0"));
        assert!(q(&["a"], 301).is_err());
    }

    #[test]
    fn bare_info_hash_is_a_magnet() {
        let hex = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";
        let link = format!("magnet:?xt=urn:btih:{hex}");
        assert_eq!(source_link(hex), link);
        assert_eq!(source_link(&hex.to_uppercase()), link);
        assert_eq!(source_link("YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK"), link);
        for other in ["x.torrent", "c12f", &link, "/"] {
            assert_eq!(source_link(other), other);
        }
        let (ctype, body) = read_source(hex).unwrap();
        assert_eq!((ctype, body), ("text/plain", link.into_bytes()));
        // Not a char boundary at byte 7: no panic, just a file not found.
        assert!(read_source("ééééé").is_err());
    }

    #[test]
    fn search_lines_align() {
        let hit = |name: &str, size: u64, holders: usize| {
            Json::obj()
                .with("info_hash", "c12fe1c06bba254a9dc9f519b335aa7c1367a88a")
                .with("name", name)
                .with("size", size)
                .with(
                    "holders",
                    Json::Arr(
                        (0..holders)
                            .map(|i| format!("10.0.0.{i}:6881").into())
                            .collect(),
                    ),
                )
        };
        let header = search_header();
        let a = search_line(&hit("ubuntu-24.04.iso", 6 << 30, 3));
        let b = search_line(&hit(&"x\u{1b}[2J".repeat(30), 100, 12));
        assert_eq!(
            a,
            format!(
                "{:<40}     6.0 GiB  c12fe1c06bba254a9dc9f519b335aa7c1367a88a        3",
                "ubuntu-24.04.iso"
            )
        );
        assert!(!b.contains('\u{1b}'), "{b}");
        assert!(b.starts_with("x?[2Jx?[2J"), "{b}");
        assert_eq!(b.chars().nth(39), Some('…'), "{b}");
        assert!(b.ends_with("       12"), "{b}");
        assert_eq!(header.chars().count(), a.chars().count());
        assert_eq!(b.chars().count(), a.chars().count());
        assert_eq!(header.find("INFO-HASH"), a.find("c12fe1"));
    }

    fn overlay_json() -> Json {
        let node = |addr: &str, id: Option<&str>, neighbour: bool| {
            Json::obj()
                .with("addr", addr)
                .with("id", id)
                .with("source", "bootstrap")
                .with("tcp_port", 6881u64)
                .with("last_seen_secs", id.map(|_| 75u64))
                .with("rtt_ms", id.map(|_| 12u64))
                .with("failures", if id.is_some() { 0u64 } else { 3 })
                .with("neighbour", neighbour)
        };
        Json::obj()
            .with("node_id", "ab".repeat(20))
            .with("public_key", "cd".repeat(32))
            .with("udp", "0.0.0.0:6881")
            .with("external", Some("203.0.113.5:6881"))
            .with("lan_beacon", None::<String>)
            .with("capacity", 64u64)
            .with("degree", 8u64)
            .with(
                "nodes",
                Json::Arr(vec![
                    node(
                        "192.168.1.20:6881",
                        Some(&"0123456789abcdef".repeat(3)[..40]),
                        true,
                    ),
                    node("[2001:db8::1]:16881", None, false),
                ]),
            )
            .with("content_entries", 42u64)
            .with("content_holders", 50u64)
            .with("routes", 7u64)
            .with("open_searches", 1u64)
            .with(
                "counters",
                Json::obj()
                    .with("sent_ping", 12u64)
                    .with("sent_query", 3u64)
                    .with("received_pong", 11u64)
                    .with("dropped_rate_limit", 2u64)
                    .with("searches_flooded", 4u64),
            )
    }

    #[test]
    fn bans_lines() {
        assert_eq!(bans_text(&[]), "banned: none\n");
        let ban = |ip: &str, left: u64, n: u32, why: &str| {
            Json::obj()
                .with("ip", ip)
                .with("reason", why)
                .with("banned_secs_ago", 5u64)
                .with("expires_in_secs", left)
                .with("offences", n)
        };
        let out = bans_text(&[
            ban("10.0.0.7", 3595, 1, "sent 5 pieces that failed"),
            ban("10.0.0.8", 7000, 2, "bad\x1b[2J"),
        ]);
        assert_eq!(
            out,
            "banned: 2\n  10.0.0.7  59m55s left: sent 5 pieces that failed\n  \
             10.0.0.8  1h56m left, ban 2 in a row: bad?[2J\n"
        );
    }

    #[test]
    fn peers_summary_table_and_counters() {
        let out = peers_text(&overlay_json());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            format!(
                "node {} on 0.0.0.0:6881, external 203.0.113.5:6881, LAN discovery off; \
                 table 2/64, neighbours 1/8, content 42 entries",
                "ab".repeat(20)
            )
        );
        assert_eq!(
            lines[1],
            "  ADDR                 ID            SOURCE       RTT  LAST SEEN  FAILS"
        );
        assert_eq!(
            lines[2],
            "* 192.168.1.20:6881    0123456789ab  bootstrap  12 ms  1m15s ago      0"
        );
        assert_eq!(
            lines[3],
            "  [2001:db8::1]:16881  -             bootstrap      -      never      3"
        );
        assert_eq!(lines[4], "(* neighbour)");
        assert_eq!(
            lines[5],
            "content holders: 50, open searches: 1, query ids remembered: 7"
        );
        assert_eq!(lines[6], "sent: ping 12, query 3");
        assert_eq!(lines[7], "received: pong 11");
        assert_eq!(lines[8], "dropped: rate_limit 2");
        assert_eq!(lines[9], "other: searches_flooded 4");
        assert_eq!(lines.len(), 10, "{out}");

        let mut j = overlay_json();
        if let Json::Obj(entries) = &mut j {
            for (k, v) in entries.iter_mut() {
                match k.as_str() {
                    "lan_beacon" => *v = "239.192.152.143:6771".into(),
                    "external" => *v = Json::Null,
                    "nodes" => *v = Json::Arr(Vec::new()),
                    _ => {}
                }
            }
        }
        let out = peers_text(&j);
        assert!(
            out.starts_with(&format!(
                "node {} on 0.0.0.0:6881, LAN beacons to 239.192.152.143:6771; table 0/64, neighbours 0/8",
                "ab".repeat(20)
            )),
            "{out}"
        );
        assert!(out.contains("\nrouting table: empty\n"), "{out}");
    }

    #[test]
    fn counters_wrap() {
        let items: Vec<String> = (0..30).map(|i| format!("kind_{i} {i}")).collect();
        let out = wrap_list("sent", &items);
        assert!(out.lines().count() > 1, "{out}");
        for l in out.lines() {
            assert!(l.len() <= 79, "{l}");
        }
        assert!(
            out.lines().nth(1).unwrap().starts_with("      kind_"),
            "{out}"
        );
        assert!(out.trim_end().ends_with("kind_29 29"), "{out}");
    }

    #[test]
    fn node_status_shows_overlay_identity() {
        let j = Json::obj()
            .with("version", "0.1.0")
            .with("peer_id", "-PL0010-abcdefghijkl")
            .with("node_id", "ab".repeat(20))
            .with("public_key", "cd".repeat(32));
        let out = node_text(&j);
        assert!(
            out.contains(&format!(
                "peer id: -PL0010-abcdefghijkl\nnode id: {}\npublic key: {}\n",
                "ab".repeat(20),
                "cd".repeat(32)
            )),
            "{out}"
        );
        // An older daemon without them: no empty lines.
        assert!(!node_text(&Json::obj()).contains("node id"));
    }

    #[test]
    fn queries() {
        let q = add_query(Some(&PathBuf::from("/a b")), &["1.2.3.4:5".into()]).unwrap();
        assert_eq!(q, "?dir=/a%20b&peer=1.2.3.4%3A5");
        assert!(add_query(None, &["nope".into()]).is_err());
        let rel = add_query(Some(&PathBuf::from("x")), &[]).unwrap();
        assert!(rel.starts_with("?dir=/"), "{rel}");
        assert_eq!(add_query(None, &[]).unwrap(), "");
    }
}
