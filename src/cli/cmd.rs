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
use crate::json::{FromJson, Json};
use crate::metainfo::{InfoHash, Magnet, Torrent};
use crate::net::api::{
    AddResult, BanInfo, DhtStatus, NodeStatus, OverlayNode, OverlayStatus, SearchHit, SearchPage,
    TorrentDetail, TorrentState, TorrentStatus,
};
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
/// Show the Mainline DHT node: id, table, lookups, counters.
#[argh(
    subcommand,
    name = "dht",
    example = "$ {command_name}\n$ {command_name} --json"
)]
pub struct DhtArgs {
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
            eprintln!("peerlet: {}", crate::text::for_terminal(&message));
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

// ---- the daemon's answers, read as the types the server writes (`api`) ----

/// An answer read as `T`, or an error naming the field that does not fit.
fn decode<T: FromJson>(client: &Client, j: &Json) -> Result<T, ClientError> {
    T::from_json(j).map_err(|e| client.schema_error(e))
}

/// A torrent's error, if it has one worth showing.
fn error_of(t: &TorrentStatus) -> Option<&str> {
    t.error.as_deref().filter(|e| !e.is_empty())
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
) -> Result<AddResult, Fail> {
    let (ctype, body) = read_source(source)?;
    let query = add_query(dir, peers)?;
    let j = client.post(&format!("/api/torrents{query}"), Some((ctype, &body)))?;
    let added: AddResult = decode(client, &j)?;
    if !quiet {
        println!("{}", add_line(&added, !peers.is_empty()));
    }
    Ok(added)
}

/// `added NAME (HASH)`, `already present: NAME (HASH)[, peers added]`; a
/// magnet link without a name shows the hash once.
fn add_line(a: &AddResult, with_peers: bool) -> String {
    let (hash, name) = (a.info_hash.to_hex(), printable(&a.name));
    let what = if name.is_empty() || name == hash {
        format!("{hash} (name not known yet)")
    } else {
        format!("{name} ({hash})")
    };
    if a.added {
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
                println!("{}", added.to_json());
            }
            return Ok(0);
        }
        let (mut code, last) = wait_for(c, &added, Until::Checked, None, !a.json)?;
        if last
            .as_ref()
            .is_some_and(|d| d.status.state == TorrentState::Error)
        {
            code = 1;
        }
        if a.json {
            if let Some(last) = last {
                println!("{}", last.to_json().with("added", added.added));
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
                println!("{}", last.to_json());
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

/// True when a torrent's status `t` is what `until` waits for.
fn reached(t: &TorrentStatus, until: Until) -> bool {
    match until {
        Until::Complete => {
            t.pieces > 0
                && t.pieces_have == t.pieces
                && matches!(t.state, TorrentState::Seeding | TorrentState::Paused)
        }
        Until::Checked => !matches!(t.state, TorrentState::Metadata | TorrentState::Checking),
    }
}

/// Polls the torrent until it reaches `until` (0) or `deadline` passes (1),
/// with progress on standard error when `show`; returns the exit status and
/// the torrent's last status.
fn wait_for(
    client: &Client,
    added: &AddResult,
    until: Until,
    deadline: Option<Instant>,
    show: bool,
) -> Result<(u8, Option<TorrentDetail>), Fail> {
    let hash = &added.info_hash.to_hex();
    let mut view = GetView::new(&added.name, show);
    let mut seen_errors: HashSet<String> = HashSet::new();
    let mut last: Option<TorrentDetail> = None;
    let path = format!("/api/torrents/{hash}");
    loop {
        match client.get(&path) {
            Ok(j) => {
                let d: TorrentDetail = match decode(client, &j) {
                    Ok(d) => d,
                    Err(e) => {
                        view.finish();
                        return Err(e.into());
                    }
                };
                if let Some(e) = error_of(&d.status) {
                    if seen_errors.insert(e.to_string()) {
                        view.message(&format!(
                            "peerlet: {}: {} (the daemon keeps retrying)",
                            view.name,
                            printable(e)
                        ));
                    }
                }
                if reached(&d.status, until) {
                    view.finish();
                    if show {
                        println!("{}", done_line(&d.status, until));
                    }
                    return Ok((0, Some(d)));
                }
                view.show(&d.status);
                last = Some(d);
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
fn done_line(t: &TorrentStatus, until: Until) -> String {
    let (name, hash) = (printable(&t.name), t.info_hash.to_hex());
    let dir = printable(&t.dir.display().to_string());
    match until {
        Until::Complete => format!("complete: {name} ({hash}) in {dir}"),
        Until::Checked => {
            let state = t.state.as_str();
            let (have, total) = (t.have_bytes, t.total_size);
            let mut line = format!(
                "{state}: {name} ({hash}), {:.1}% of {} on disk in {dir}",
                percent(have, total),
                human_bytes(total),
            );
            if let Some(e) = error_of(t) {
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
    last_state: Option<TorrentState>,
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
            last_state: None,
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

    fn show(&mut self, t: &TorrentStatus) {
        if !t.name.is_empty() {
            self.name = printable(&t.name);
        }
        if !self.enabled {
            return;
        }
        let line = progress_line(&self.name, t, self.terminal);
        if self.terminal {
            eprint!("\r{line:<79}");
            let _ = std::io::stderr().flush();
            self.drawn = true;
        } else {
            let state = Some(t.state);
            let decile = (percent(t.have_bytes, t.total_size) / 10.0) as u64;
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
fn progress_line(name: &str, t: &TorrentStatus, terminal: bool) -> String {
    let state = t.state;
    let (have, total) = (t.have_bytes, t.total_size);
    let pct = percent(have, total);
    let down = t.download_rate;
    let peers = match t.peers {
        1 => "1 peer".to_string(),
        n => format!("{n} peers"),
    };
    let eta = (down > 0 && total > have).then(|| human_duration((total - have).div_ceil(down)));
    let what = match state {
        TorrentState::Metadata => "fetching metadata",
        TorrentState::Checking => "checking data on disk",
        other => other.as_str(),
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
        let what = if state == TorrentState::Downloading {
            ""
        } else {
            what
        };
        format!(
            "{short} [{bar}] {pct:5.1}% {} {peers}{eta} {what}",
            rate(down)
        )
        .trim_end()
        .to_string()
    } else {
        let size = if total > 0 || state != TorrentState::Metadata {
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
        let list: Vec<TorrentStatus> = decode(c, &c.get("/api/torrents")?)?;
        if a.json {
            println!(
                "{}",
                Json::Arr(list.iter().map(TorrentStatus::to_json).collect())
            );
            return Ok(0);
        }
        if list.is_empty() {
            println!("no torrents");
            return Ok(0);
        }
        print!("{}", ls_table(&list));
        Ok(0)
    })
}

/// The `ls` table: one row per torrent, an error line under a torrent in trouble.
pub fn ls_table(list: &[TorrentStatus]) -> String {
    let header = [
        "HASH", "STATE", "DONE", "SIZE", "DOWN", "UP", "PEERS", "TRACKER", "NAME",
    ];
    let rows: Vec<([String; 9], Option<String>)> = list
        .iter()
        .map(|t| {
            let hash: String = t.info_hash.to_hex().chars().take(8).collect();
            (
                [
                    hash,
                    t.state.as_str().to_string(),
                    format!("{:.1}%", percent(t.have_bytes, t.total_size)),
                    human_bytes(t.total_size),
                    rate(t.download_rate),
                    rate(t.upload_rate),
                    t.peers.to_string(),
                    tracker_word(t),
                    printable(&t.name),
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
fn tracker_word(t: &TorrentStatus) -> String {
    match t.tracker.as_deref() {
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
    let list: Vec<TorrentStatus> = decode(client, &client.get("/api/torrents")?)?;
    let matches: Vec<String> = list
        .iter()
        .map(|t| t.info_hash.to_hex())
        .filter(|h| h.starts_with(&prefix))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.clone()),
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
            let node: NodeStatus = decode(c, &c.get("/api/node")?)?;
            if a.json {
                println!("{}", node.to_json());
            } else {
                print!("{}", node_text(&node));
            }
            return Ok(0);
        };
        let hash = resolve_hash(c, given)?;
        let d: TorrentDetail = decode(c, &c.get(&format!("/api/torrents/{hash}"))?)?;
        if a.json {
            println!("{}", d.to_json());
        } else {
            print!("{}", detail_text(&d));
        }
        Ok(0)
    })
}

pub fn node_text(n: &NodeStatus) -> String {
    let mut out = String::new();
    out.push_str(&format!("version: {}\n", n.version));
    out.push_str(&format!("listen: {}\n", n.listen));
    out.push_str(&format!("peer id: {}\n", n.peer_id));
    for (label, v) in [
        ("node id", &n.node_id),
        ("public key", &n.public_key),
        ("network", &n.network),
    ] {
        if !v.is_empty() {
            out.push_str(&format!("{label}: {}\n", printable(v)));
        }
    }
    out.push_str(&format!("torrents: {}\n", n.torrents));
    out.push_str(&format!("peers: {}\n", n.peers));
    out.push_str(&format!("download: {}\n", rate(n.download_rate)));
    out.push_str(&format!("upload: {}\n", rate(n.upload_rate)));
    let limit = |v: u64| match v {
        0 => "none".to_string(),
        v => rate(v),
    };
    out.push_str(&format!(
        "limits: download {}, upload {}\n",
        limit(n.download_limit),
        limit(n.upload_limit)
    ));
    out.push_str(&format!(
        "memory in flight: {} of {}\n",
        human_bytes(n.bytes_in_flight),
        human_bytes(n.memory_budget)
    ));
    out.push_str(&format!("uptime: {}\n", human_duration(n.uptime_secs)));
    if let Some(e) = n.state_dir_error.as_deref() {
        out.push_str(&format!("state directory error: {}\n", printable(e)));
    }
    out
}

pub fn detail_text(d: &TorrentDetail) -> String {
    let t = &d.status;
    let mut out = String::new();
    let mut kv = |k: &str, v: String| out.push_str(&format!("{k}: {v}\n"));
    kv("name", printable(&t.name));
    kv("info_hash", t.info_hash.to_hex());
    kv("state", t.state.as_str().to_string());
    if let Some(e) = error_of(t) {
        kv("error", printable(e));
    }
    kv("dir", printable(&t.dir.display().to_string()));
    let (have, total) = (t.have_bytes, t.total_size);
    kv("size", format!("{total} ({})", human_bytes(total)));
    kv(
        "progress",
        format!(
            "{:.1}% ({} of {} pieces, {})",
            percent(have, total),
            t.pieces_have,
            t.pieces,
            human_bytes(have)
        ),
    );
    kv("piece length", human_bytes(d.piece_length.into()));
    kv("private", if d.private { "yes" } else { "no" }.to_string());
    kv(
        "download",
        format!(
            "{} ({} this session)",
            rate(t.download_rate),
            human_bytes(t.downloaded)
        ),
    );
    kv(
        "upload",
        format!(
            "{} ({} this session)",
            rate(t.upload_rate),
            human_bytes(t.uploaded)
        ),
    );
    kv(
        "pieces",
        format!(
            "{} downloaded, {} found on disk, {} failed the hash check",
            t.pieces_downloaded, t.pieces_resumed, t.hash_failures
        ),
    );
    kv("magnet", printable(&d.magnet));
    if !d.trackers.is_empty() {
        out.push_str(&format!("trackers: {}\n", d.trackers.len()));
    }
    for tr in &d.trackers {
        let mut line = format!(
            "  [{}] {}  {}",
            tr.tier,
            printable(&tr.url),
            printable(&tr.last_result)
        );
        if let (Some(seeders), Some(leechers)) = (tr.seeders, tr.leechers) {
            line.push_str(&format!(", {seeders} seeders, {leechers} leechers"));
        }
        if let Some(downloaded) = tr.downloaded {
            line.push_str(&format!(", {downloaded} downloads"));
        }
        if let Some(next) = tr.next_announce_secs {
            line.push_str(&format!(", next in {}", human_duration(next)));
        }
        out.push_str(&line);
        out.push('\n');
    }
    if !d.sources.is_empty() {
        out.push_str("peer sources:\n");
    }
    for src in &d.sources {
        out.push_str(&format!(
            "  {:<9} {:>4} known {:>4} connected  {:>10} down {:>10} up\n",
            src.source,
            src.known,
            src.connected,
            human_bytes(src.downloaded),
            human_bytes(src.uploaded)
        ));
    }
    out.push_str(&format!("peers: {}\n", d.peers.len()));
    for p in &d.peers {
        out.push_str(&format!(
            "  {:<40} {:<9} {:>11} {:>11} {:>5.1}% {:<5} {}\n",
            p.addr,
            p.source,
            rate(p.download_rate),
            rate(p.upload_rate),
            (p.progress * 1000.0).round() / 10.0,
            printable(&p.flags),
            printable(&p.client)
        ));
    }
    out.push_str(&format!("files: {}\n", d.files.len()));
    for f in &d.files {
        out.push_str(&format!(
            "  {:>10} {:>6.1}%  {}\n",
            human_bytes(f.size),
            percent(f.have_bytes, f.size),
            printable(&f.path)
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
pub fn search_line(hit: &SearchHit) -> String {
    let name = printable(&hit.name);
    let name = if name.chars().count() > SEARCH_NAME_WIDTH {
        let mut cut: String = name.chars().take(SEARCH_NAME_WIDTH - 1).collect();
        cut.push('…');
        cut
    } else {
        name
    };
    format!(
        "{name:<w$}  {:>10}  {:<40}  {:>7}",
        human_bytes(hit.size),
        hit.info_hash.to_hex(),
        hit.holders.len(),
        w = SEARCH_NAME_WIDTH
    )
}

pub fn run_search(a: SearchArgs) -> Result<u8, CliError> {
    let query = search_query(&a.words, a.timeout)?;
    with_client(&a.api, a.token.as_deref(), |c| {
        let started = c.post(&format!("/api/search?{query}"), None)?;
        let Ok(id) = started.field::<u64>("id") else {
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
        let mut shown: HashSet<InfoHash> = HashSet::new();
        let mut said: HashSet<String> = HashSet::new();
        let mut last = SearchPage {
            id,
            results: Vec::new(),
            done: false,
        };
        loop {
            match c.get(&format!("/api/search/{id}")) {
                Ok(page) => {
                    let page: SearchPage = decode(c, &page)?;
                    for hit in &page.results {
                        if shown.insert(hit.info_hash) && show {
                            println!("{}", search_line(hit));
                        }
                    }
                    let done = page.done;
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
            println!("{}", last.to_json());
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
        let bans: Option<Vec<BanInfo>> = match c.get("/api/bans") {
            Ok(j) => Some(j.field("bans").map_err(|e| c.schema_error(e))?),
            Err(_) => None,
        };
        // The overlay, or why it is not there.
        let overlay: Result<OverlayStatus, String> = match c.get("/api/nodes") {
            Ok(j) => Ok(decode(c, &j)?),
            // The overlay is off: the bans are still worth showing.
            Err(ClientError::Api { message, .. }) if bans.is_some() => Err(message),
            Err(e) => return Err(e.into()),
        };
        if a.json {
            let j = match &overlay {
                Ok(o) => o.to_json(),
                Err(message) => Json::obj().with("error", message.as_str()),
            };
            match &bans {
                Some(list) => println!(
                    "{}",
                    j.with(
                        "bans",
                        Json::Arr(list.iter().map(BanInfo::to_json).collect())
                    )
                ),
                None => println!("{j}"),
            }
        } else {
            match &overlay {
                Err(e) => println!("discovery overlay: {}", printable(e)),
                Ok(o) => print!("{}", peers_text(o)),
            }
            if let Some(list) = &bans {
                print!("{}", bans_text(list));
            }
        }
        Ok(0)
    })
}

pub fn run_dht(a: DhtArgs) -> Result<u8, CliError> {
    with_client(&a.api, a.token.as_deref(), |c| {
        let j = c.get("/api/dht")?;
        let d: DhtStatus = decode(c, &j)?;
        if a.json {
            println!("{}", d.to_json());
        } else {
            print!("{}", dht_text(&d));
        }
        Ok(0)
    })
}

/// `peerlet dht` as text.
pub fn dht_text(d: &DhtStatus) -> String {
    let mut out = String::new();
    let counter = |name: &str| {
        d.counters
            .iter()
            .find(|(k, _)| k == name)
            .map_or(0, |(_, v)| *v)
    };
    out.push_str(&format!("node id      {}\n", printable(&d.node_id)));
    out.push_str(&format!("udp          {}\n", printable(&d.udp)));
    out.push_str(&format!(
        "external ip  {}{}\n",
        d.external_ip.as_deref().map_or("unknown".into(), printable),
        if d.read_only {
            " (read-only: we seem unreachable)"
        } else {
            ""
        }
    ));
    let buckets: Vec<String> = d.buckets.iter().map(|b| b.to_string()).collect();
    out.push_str(&format!(
        "nodes        {} in {} buckets [{}]\n",
        d.nodes,
        d.buckets.len(),
        buckets.join(" ")
    ));
    out.push_str(&format!(
        "torrents     {} tracked, {} lookups running, {} lookups done, {} announces\n",
        d.tracked,
        d.lookups,
        counter("lookups_done"),
        counter("announces")
    ));
    out.push_str(&format!(
        "stored       {} peers for {} info-hashes\n",
        d.stored_peers, d.stored_hashes
    ));
    out.push_str(&format!(
        "packets      {} in ({} B), {} out ({} B), {} timeouts, {} rate-limited, {} invalid\n",
        counter("packets_in"),
        counter("bytes_in"),
        counter("packets_out"),
        counter("bytes_out"),
        counter("timeouts"),
        counter("rate_limited"),
        counter("invalid")
    ));
    let routers: Vec<String> = d.bootstrap.iter().map(|b| printable(b)).collect();
    out.push_str(&format!(
        "routers      {}\n",
        if routers.is_empty() {
            "none".to_string()
        } else {
            routers.join(", ")
        }
    ));
    out
}

/// The banned addresses of `peers`: one line each, or a line saying none.
pub fn bans_text(bans: &[BanInfo]) -> String {
    if bans.is_empty() {
        return "banned: none\n".to_string();
    }
    let mut out = format!("banned: {}\n", bans.len());
    for b in bans {
        let n = b.offences;
        let again = if n > 1 {
            format!(", ban {n} in a row")
        } else {
            String::new()
        };
        out.push_str(&format!(
            "  {}  {} left{again}: {}\n",
            printable(&b.ip),
            human_duration(b.expires_in_secs),
            printable(&b.reason)
        ));
    }
    out
}

/// `peerlet peers`: a summary line, the routing table, the counters.
pub fn peers_text(o: &OverlayStatus) -> String {
    let nodes = &o.nodes;
    let neighbours = nodes.iter().filter(|n| n.neighbour).count();
    let mut summary = format!("node {} on {}", printable(&o.node_id), printable(&o.udp));
    if let Some(ext) = &o.external {
        summary.push_str(&format!(", external {}", printable(ext)));
    }
    match &o.lan_beacon {
        Some(to) => summary.push_str(&format!(", LAN beacons to {}", printable(to))),
        None => summary.push_str(", LAN discovery off"),
    }
    summary.push_str(&format!(
        "; table {}/{}, neighbours {neighbours}/{}, content {} entries\n",
        nodes.len(),
        o.capacity,
        o.degree,
        o.content_entries
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
        o.content_holders, o.open_searches, o.routes
    ));
    let (mut sent, mut received, mut dropped, mut other) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (k, v) in &o.counters {
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
fn nodes_table(nodes: &[OverlayNode]) -> String {
    let header = ["ADDR", "ID", "SOURCE", "RTT", "LAST SEEN", "FAILS"];
    let rows: Vec<(bool, [String; 6])> = nodes
        .iter()
        .map(|n| {
            let id = n.id.as_deref().map_or("-".to_string(), |id| {
                printable(&id.chars().take(12).collect::<String>())
            });
            let rtt = n.rtt_ms.map_or("-".to_string(), |ms| format!("{ms} ms"));
            let seen = n.last_seen_secs.map_or("never".to_string(), |t| {
                format!("{} ago", human_duration(t))
            });
            (
                n.neighbour,
                [
                    printable(&n.addr),
                    id,
                    n.source.to_string(),
                    rtt,
                    seen,
                    n.failures.to_string(),
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
    use crate::net::api::{FileStatus, PeerStatus};

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

    /// A torrent's status with every number zero and every text empty.
    fn status() -> TorrentStatus {
        TorrentStatus {
            info_hash: InfoHash::parse(HEX).unwrap(),
            name: String::new(),
            state: TorrentState::Downloading,
            error: None,
            dir: PathBuf::new(),
            total_size: 0,
            have_bytes: 0,
            pieces: 0,
            pieces_have: 0,
            download_rate: 0,
            upload_rate: 0,
            downloaded: 0,
            uploaded: 0,
            peers: 0,
            hash_failures: 0,
            pieces_downloaded: 0,
            pieces_resumed: 0,
            download_limit: 0,
            upload_limit: 0,
            tracker: None,
            swarm_seeders: None,
            swarm_leechers: None,
        }
    }

    fn detail(status: TorrentStatus) -> TorrentDetail {
        TorrentDetail {
            status,
            piece_length: 0,
            private: false,
            magnet: String::new(),
            peers: Vec::new(),
            files: Vec::new(),
            trackers: Vec::new(),
            sources: Vec::new(),
        }
    }

    #[test]
    fn get_progress_lines() {
        let t = |state, have: u64, rate: u64, peers: u32| TorrentStatus {
            state,
            total_size: 30 << 20,
            have_bytes: have,
            download_rate: rate,
            peers,
            ..status()
        };
        let j = t(TorrentState::Downloading, 6 << 20, 1 << 20, 1);
        assert_eq!(
            progress_line("album", &j, false),
            "album: 20.0% of 30.0 MiB, 1.0 MiB/s, 1 peer, ETA 24s (downloading)"
        );
        assert_eq!(
            progress_line("album", &j, true),
            "album [####----------------]  20.0% 1.0 MiB/s 1 peer ETA 24s"
        );
        // No rate: no ETA; the state says what is going on.
        let j = t(TorrentState::Checking, 0, 0, 0);
        assert_eq!(
            progress_line("album", &j, false),
            "album: 0.0% of 30.0 MiB, 0 B/s, 0 peers (checking data on disk)"
        );
        assert!(progress_line("album", &j, true).ends_with("0 peers checking data on disk"));
        // A magnet link before its metadata: no size yet.
        let j = TorrentStatus {
            state: TorrentState::Metadata,
            peers: 3,
            ..status()
        };
        assert_eq!(
            progress_line("h", &j, false),
            "h: 0.0%, 0 B/s, 3 peers (fetching metadata)"
        );
        let long = "a-very-long-name-of-a-torrent-indeed.iso";
        let line = progress_line(long, &t(TorrentState::Downloading, 0, 0, 2), true);
        assert!(line.starts_with("a-very-long-name-of-a-to… ["), "{line}");
    }

    #[test]
    fn ls_and_detail_hide_terminal_escapes() {
        let evil = "x\u{1b}]0;owned\u{7}";
        let t = TorrentStatus {
            name: evil.into(),
            state: TorrentState::Error,
            error: Some(evil.into()),
            dir: evil.into(),
            tracker: Some(evil.into()),
            ..status()
        };
        let d = TorrentDetail {
            peers: vec![PeerStatus {
                addr: "1.2.3.4:5".into(),
                source: "manual",
                client: evil.into(),
                download_rate: 0,
                upload_rate: 0,
                downloaded: 0,
                uploaded: 0,
                progress: 0.0,
                flags: evil.into(),
            }],
            files: vec![FileStatus {
                path: evil.into(),
                size: 1,
                have_bytes: 0,
            }],
            ..detail(t.clone())
        };
        for out in [ls_table(std::slice::from_ref(&t)), detail_text(&d)] {
            assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
            assert!(out.contains("x?]0;owned?"), "{out}");
        }
    }

    #[test]
    fn add_lines() {
        let hash = HEX;
        let j = |name: &str, added: bool| AddResult {
            info_hash: InfoHash::parse(hash).unwrap(),
            name: name.into(),
            added,
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
        let t = |h: &str, name: &str, err: Option<&str>, tracker: Option<&str>| TorrentStatus {
            info_hash: InfoHash::parse(h).unwrap(),
            name: name.into(),
            error: err.map(str::to_string),
            total_size: 2048,
            have_bytes: 1024,
            download_rate: 1536,
            peers: 12,
            tracker: tracker.map(str::to_string),
            ..status()
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
        let hit = |name: &str, size: u64, holders: usize| SearchHit {
            info_hash: InfoHash::parse(HEX).unwrap(),
            name: name.into(),
            size,
            holders: (0..holders).map(|i| format!("10.0.0.{i}:6881")).collect(),
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

    fn overlay() -> OverlayStatus {
        let node = |addr: &str, id: Option<&str>, neighbour: bool| OverlayNode {
            addr: addr.into(),
            id: id.map(str::to_string),
            source: "bootstrap",
            tcp_port: 6881,
            last_seen_secs: id.map(|_| 75),
            rtt_ms: id.map(|_| 12),
            failures: if id.is_some() { 0 } else { 3 },
            neighbour,
        };
        OverlayStatus {
            node_id: "ab".repeat(20),
            public_key: "cd".repeat(32),
            udp: "0.0.0.0:6881".into(),
            external: Some("203.0.113.5:6881".into()),
            lan_beacon: None,
            capacity: 64,
            degree: 8,
            nodes: vec![
                node(
                    "192.168.1.20:6881",
                    Some(&"0123456789abcdef".repeat(3)[..40]),
                    true,
                ),
                node("[2001:db8::1]:16881", None, false),
            ],
            content_entries: 42,
            content_holders: 50,
            routes: 7,
            open_searches: 1,
            counters: [
                ("sent_ping", 12),
                ("sent_query", 3),
                ("received_pong", 11),
                ("dropped_rate_limit", 2),
                ("searches_flooded", 4),
            ]
            .map(|(k, v)| (k.to_string(), v))
            .to_vec(),
        }
    }

    #[test]
    fn bans_lines() {
        assert_eq!(bans_text(&[]), "banned: none\n");
        let ban = |ip: &str, left: u64, n: u32, why: &str| BanInfo {
            ip: ip.into(),
            reason: why.into(),
            banned_secs_ago: 5,
            expires_in_secs: left,
            offences: n,
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
        let out = peers_text(&overlay());
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

        let j = OverlayStatus {
            lan_beacon: Some("239.192.152.143:6771".into()),
            external: None,
            nodes: Vec::new(),
            ..overlay()
        };
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
        let node = |node_id: String, public_key: String| NodeStatus {
            version: "0.1.0".into(),
            listen: "0.0.0.0:6881".into(),
            peer_id: "-PL0010-abcdefghijkl".into(),
            node_id,
            public_key,
            network: String::new(),
            torrents: 0,
            peers: 0,
            download_rate: 0,
            upload_rate: 0,
            download_limit: 0,
            upload_limit: 0,
            bytes_in_flight: 0,
            memory_budget: 0,
            uptime_secs: 0,
            state_dir_error: None,
        };
        let out = node_text(&node("ab".repeat(20), "cd".repeat(32)));
        assert!(
            out.contains(&format!(
                "peer id: -PL0010-abcdefghijkl\nnode id: {}\npublic key: {}\n",
                "ab".repeat(20),
                "cd".repeat(32)
            )),
            "{out}"
        );
        // Empty ones: no empty lines.
        assert!(!node_text(&node(String::new(), String::new())).contains("node id"));
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
