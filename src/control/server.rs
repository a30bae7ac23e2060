//! The control API server (HTTP/1.1 + JSON) on its own thread.
//!
//! One accept thread; each connection is served by a short-lived handler
//! thread. One request per connection. [`super::admission`] decides who is
//! served: connections whose request has not shown the daemon's token share
//! [`Config::max_connections`] slots (at most [`Config::max_per_address`]
//! per client address); when those are full, the oldest of them still
//! sending its request is closed for the newcomer (a burst of newcomers
//! within [`Config::eviction_grace`] may overflow to twice the slots).
//! Requests with the token (the command-line client sends it) move to
//! [`Config::max_trusted`] slots of their own, so no number of slow or
//! silent strangers keeps `peerlet ls` waiting. The head has
//! [`Config::head_timeout`] from the connection and the body
//! [`Config::body_timeout`] after the head: deadlines that no trickle of
//! bytes extends. A request body, and the parse of a torrent being added,
//! are paid for from the API's share of `memory_limit` ([`Config::memory`])
//! before they are read: 503 with `Retry-After` while other requests hold
//! it, 413 when one request alone needs more.
//!
//! Requests whose `Host` is a DNS name other than `localhost` (or a name in
//! [`Config::allowed_hosts`]) are refused (421) before anything else
//! happens (bar reading the head), and so are requests a browser marks as
//! cross-origin (403): a web page can neither rebind a name to this port
//! nor post a form to it. Then, when [`Config::token`] is set (the API is
//! not on loopback, or `api_token_required`), the request must carry the
//! token ([`super::token`]): `Authorization: Bearer TOKEN`, or the cookie
//! a browser gets from `GET /?token=TOKEN`; otherwise 401, and 429 for an
//! address that keeps sending wrong tokens. A torrent's `dir` must lie in
//! [`Config::dirs`] once symbolic links are resolved ([`check_dir`]),
//! unless the request is the local user's: it carries
//! [`Config::trusted_token`] in `Authorization: Bearer` and comes from a
//! loopback address (as `peerlet add --dir` does), and then any existing
//! directory outside the state directory will do ([`check_local_dir`]).
//! Either way the directory is resolved once, here, and becomes the
//! anchor (or lies below one) that every later open of the torrent's data
//! starts from without following links (`storage::beneath`). The endpoints are
//! documented in docs/API.md. Every answer is JSON except `GET /metrics`
//! (Prometheus text, written by [`super::metrics`]) and the web page's
//! files at `/`, `/app.js` and `/app.css` ([`super::web`]).

use super::admission::{self, Conns};
use super::http::{self, Head, HttpError};
use super::metrics;
use super::token::Token;
use super::web;
use crate::json::Json;
use crate::metainfo::InfoHash;
use crate::net::api::{AddSource, ApiError, Command, EngineHandle, SearchQuery};
use crate::net::memory::{self, MemoryCaps};
use crate::net::memory::{Budget, Refused};
use crate::storage::DataDir;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Largest request body (a .torrent file; libtorrent's limit).
pub const MAX_BODY: u64 = crate::metainfo::MAX_TORRENT_FILE;
/// Largest body of a request that takes none (a client may send `{}`).
pub const MAX_SMALL_BODY: u64 = 16 * 1024;
/// A request with the token gets [`Config::body_timeout`] plus the time its
/// body takes at this rate (bytes per second): 24 s for a 10 MB torrent.
pub const MIN_BODY_RATE: u64 = 512 * 1024;
/// Bytes counted per bencoded value while a torrent is parsed, beyond its
/// tape and a copy of its bytes: the strings, lists and files built from it.
pub const PARSE_BYTES_PER_VALUE: u64 = 64;
/// How long a new connection is safe from eviction: time to send a request.
pub const EVICTION_GRACE: Duration = Duration::from_millis(250);
/// Most peers one request may name.
pub const MAX_PEERS: usize = 200;
/// Longest search words (bytes, after trimming): what one overlay query carries.
pub const MAX_SEARCH_WORDS: usize = crate::overlay::msg::MAX_WORDS;
/// How long a search collects hits when the request does not say.
pub const DEFAULT_SEARCH_SECS: u64 = 10;
/// The longest a search may collect hits.
pub const MAX_SEARCH_SECS: u64 = 300;
/// Wrong tokens one client address may send in [`FAILURE_WINDOW`] before
/// it is answered 429 until the window ends.
pub const MAX_TOKEN_FAILURES: u32 = 10;
/// See [`MAX_TOKEN_FAILURES`].
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Client addresses whose wrong tokens are counted at once (the oldest
/// count is dropped for a new address).
const MAX_TRACKED_FAILURES: usize = 256;
/// The cookie the web page's login sets is this and the API's port
/// (cookies do not tell ports apart).
pub const COOKIE_PREFIX: &str = "peerlet_token_";

/// Limits and timeouts of the server.
#[derive(Clone, Debug)]
pub struct Config {
    /// Connections served at once whose request has not shown the token;
    /// a newcomer evicts the oldest still sending its request (or, when all
    /// are within [`Config::eviction_grace`], overflows up to twice this),
    /// else gets 503.
    pub max_connections: usize,
    /// Connections served at once whose request carries the token.
    pub max_trusted: usize,
    /// Connections from one client address that have not shown the token.
    pub max_per_address: usize,
    /// How long a new connection is safe from eviction ([`EVICTION_GRACE`]).
    pub eviction_grace: Duration,
    /// Timeout of each write on a connection.
    pub io_timeout: Duration,
    /// Time allowed for the request line and headers to arrive, from the connection.
    pub head_timeout: Duration,
    /// Time allowed for the body, after the head (with the token, plus
    /// its length at [`MIN_BODY_RATE`]).
    pub body_timeout: Duration,
    /// How long to wait for the engine to take and answer a command.
    pub engine_timeout: Duration,
    pub max_head: usize,
    pub max_body: u64,
    /// Serve the web page at `/`, `/app.js` and `/app.css` (404 when off).
    pub web: bool,
    /// When set, every request must carry this token (see the module doc).
    pub token: Option<Token>,
    /// The state directory's API token, whether or not requests must
    /// carry it: a request that shows it is served in the trusted slots,
    /// and one from a loopback address with it in `Authorization: Bearer`
    /// is the local user's, who may put a torrent's data in any existing
    /// directory ([`check_local_dir`]). `None`: neither.
    pub trusted_token: Option<Token>,
    /// Host names accepted in `Host` and `Origin` besides IP addresses and
    /// `localhost` (`api_allowed_hosts`).
    pub allowed_hosts: Vec<String>,
    /// Directories a torrent's `dir` may name or lie below (the download
    /// directory and `allowed_dirs`). Empty: requests with a `dir` are
    /// refused, the local user's too.
    pub dirs: Vec<PathBuf>,
    /// Never a torrent's `dir`, nor inside one (the state directory).
    pub state_dir: Option<PathBuf>,
    /// Bytes that request bodies and the parse of torrents being added may
    /// hold at once: the API's share of `memory_limit` (`MemoryCaps::requests`).
    pub memory: u64,
    /// The budget shared with the engine, which lends it from the
    /// downloads' share (the daemon sets it); `None`: one of our own of
    /// `memory` bytes.
    pub memory_budget: Option<Arc<Budget>>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_connections: 8,
            max_trusted: 8,
            max_per_address: 4,
            eviction_grace: EVICTION_GRACE,
            io_timeout: Duration::from_secs(5),
            head_timeout: Duration::from_secs(3),
            body_timeout: Duration::from_secs(5),
            engine_timeout: Duration::from_secs(10),
            max_head: http::MAX_HEAD,
            max_body: MAX_BODY,
            web: true,
            token: None,
            trusted_token: None,
            allowed_hosts: Vec::new(),
            dirs: Vec::new(),
            state_dir: None,
            memory: MemoryCaps::new(memory::DEFAULT_LIMIT).requests,
            memory_budget: None,
        }
    }
}

/// A running control server. Dropping it stops it too.
pub struct ControlServer {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and joins the thread (which waits up to two seconds
    /// for requests in progress to finish).
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept() with a connection of our own.
        let mut wake = self.local_addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
        }
        match TcpStream::connect_timeout(&wake, Duration::from_secs(1)) {
            Ok(_) => {
                let _ = thread.join();
            }
            // Leave the thread; it stops at its next connection.
            Err(e) => log::warn!("control API: cannot wake the accept thread: {e}"),
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Binds `addr` and serves the API on a new thread, with default limits.
pub fn spawn(addr: SocketAddr, engine: EngineHandle) -> io::Result<ControlServer> {
    spawn_with(addr, engine, Config::default())
}

/// Binds `addr` and serves the API on a new thread.
pub fn spawn_with(
    addr: SocketAddr,
    engine: EngineHandle,
    config: Config,
) -> io::Result<ControlServer> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("control API on {addr}: {e}")))?;
    let local_addr = listener.local_addr()?;
    if !local_addr.ip().is_loopback() {
        if config.token.is_some() {
            log::warn!("control API listens on {local_addr}, which is not a loopback address: requests need the API token");
        } else {
            log::warn!("control API listens on {local_addr}, which is not a loopback address, without a token: anyone who can reach it controls the daemon");
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let conns = Conns::new(admission::Limits {
        untrusted: config.max_connections,
        trusted: config.max_trusted,
        per_address: config.max_per_address,
        grace: config.eviction_grace,
    });
    let shared = Arc::new(Shared {
        engine,
        budget: config
            .memory_budget
            .clone()
            .unwrap_or_else(|| Arc::new(Budget::new(config.memory))),
        config,
        threads: AtomicUsize::new(0),
        conns: Mutex::new(conns),
        cookie: format!("{COOKIE_PREFIX}{}", local_addr.port()),
        failures: Mutex::new(Failures::default()),
    });
    let stop2 = stop.clone();
    let thread = thread::Builder::new()
        .name("control".into())
        .spawn(move || accept_loop(listener, shared, stop2))?;
    log::info!("control API on http://{local_addr}/api/");
    Ok(ControlServer {
        local_addr,
        stop,
        thread: Some(thread),
    })
}

struct Shared {
    engine: EngineHandle,
    config: Config,
    /// Handler threads alive (evicted ones finish at once).
    threads: AtomicUsize,
    /// The connections served, with a clone of each socket to evict it.
    conns: Mutex<Conns<TcpStream>>,
    budget: Arc<Budget>,
    /// The name of the web page's token cookie.
    cookie: String,
    failures: Mutex<Failures>,
}

/// Wrong tokens by client address: (address, start of its window, count).
#[derive(Default)]
struct Failures(Vec<(IpAddr, Instant, u32)>);

impl Failures {
    /// How long `ip` must still wait, when it sent too many wrong tokens.
    fn blocked(&mut self, ip: IpAddr, now: Instant) -> Option<Duration> {
        self.0
            .retain(|(_, start, _)| now.saturating_duration_since(*start) < FAILURE_WINDOW);
        self.0
            .iter()
            .find(|(a, _, n)| *a == ip && *n >= MAX_TOKEN_FAILURES)
            .map(|(_, start, _)| {
                FAILURE_WINDOW.saturating_sub(now.saturating_duration_since(*start))
            })
    }

    fn record(&mut self, ip: IpAddr, now: Instant) {
        if let Some(entry) = self.0.iter_mut().find(|(a, _, _)| *a == ip) {
            entry.2 = entry.2.saturating_add(1);
            return;
        }
        if self.0.len() >= MAX_TRACKED_FAILURES {
            if let Some(oldest) = (0..self.0.len()).min_by_key(|&i| self.0[i].1) {
                self.0.swap_remove(oldest);
            }
        }
        self.0.push((ip, now, 1));
    }
}

impl Shared {
    fn conns(&self) -> MutexGuard<'_, Conns<TcpStream>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Most handler threads alive at once: untrusted connections up to
    /// their overflow, trusted ones, and a few refusing or finishing.
    fn max_threads(&self) -> usize {
        2 * self.config.max_connections + self.config.max_trusted + 4
    }

    /// Counts a new thread, unless there are too many.
    fn start_thread(&self) -> bool {
        if self.threads.fetch_add(1, Ordering::SeqCst) >= self.max_threads() {
            self.threads.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }
}

/// Ends a handler's accounting however it ends: its connection (if any)
/// and its thread.
struct ThreadGuard(Arc<Shared>, Option<u64>);

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        if let Some(id) = self.1 {
            self.0.conns().remove(id);
        }
        self.0.threads.fetch_sub(1, Ordering::SeqCst);
    }
}

fn spawn_handler(guard: ThreadGuard, f: impl FnOnce(&ThreadGuard) + Send + 'static) {
    let spawned = thread::Builder::new()
        .name("control-conn".into())
        .stack_size(256 * 1024)
        .spawn(move || f(&guard));
    if let Err(e) = spawned {
        // The closure (with the guard and the stream) was dropped.
        log::warn!("control API: cannot start a handler thread: {e}");
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: do not spin.
                log::warn!("control API: accept: {e}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let now = Instant::now();
        let Ok(handle) = stream.try_clone() else {
            continue;
        };
        if !shared.start_thread() {
            // Evicted handlers still finishing: close this one at once.
            continue;
        }
        let admitted = shared.conns().admit(peer.ip(), now, handle);
        let id = match admitted {
            Ok((id, evicted)) => {
                if let Some(old) = evicted {
                    // Its handler's read ends now; it answers nothing.
                    log::debug!(
                        "control API: dropped a slow connection from {} for one from {peer}",
                        old.peer_addr()
                            .map_or_else(|_| "?".into(), |a| a.ip().to_string())
                    );
                    let _ = old.shutdown(Shutdown::Both);
                }
                Some(id)
            }
            Err(_) => None,
        };
        let guard = ThreadGuard(shared.clone(), id);
        match id {
            Some(id) => spawn_handler(guard, move |g| handle_connection(stream, &g.0, id, now)),
            None => spawn_handler(guard, move |_| refuse_busy(stream)),
        }
    }
    // Let requests in progress (such as the one that asked for shutdown)
    // finish writing their answers, for a while.
    let until = Instant::now() + Duration::from_secs(2);
    while shared.threads.load(Ordering::SeqCst) > 0 && Instant::now() < until {
        thread::sleep(Duration::from_millis(10));
    }
}

/// Answers 503 on a thread of its own. It reads what the client sends for
/// a moment before and after answering, so that closing does not reset the
/// connection before the client reads the answer.
fn refuse_busy(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let mut sink = [0u8; 4096];
    let _ = stream.read(&mut sink);
    let body = error_body("too many control connections at once; try again");
    let _ = http::write_response(
        &mut stream,
        503,
        "application/json",
        &[("Retry-After", "1")],
        &body,
    );
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.read(&mut sink);
}

fn error_body(message: &str) -> Vec<u8> {
    let mut s = Json::obj().with("error", message).to_string();
    s.push('\n');
    s.into_bytes()
}

/// A finished answer.
struct Answer {
    status: u16,
    body: Json,
    allow: Option<&'static str>,
    /// More response headers (`Set-Cookie`, `Location`).
    headers: Vec<(&'static str, String)>,
    /// A body that is not JSON: (Content-Type, bytes); `body` is unused then.
    raw: Option<(&'static str, Vec<u8>)>,
}

impl Answer {
    fn ok(body: Json) -> Answer {
        Answer {
            status: 200,
            body,
            allow: None,
            headers: Vec::new(),
            raw: None,
        }
    }

    /// 200 with a body of another type (`GET /metrics`).
    fn ok_raw(content_type: &'static str, bytes: Vec<u8>) -> Answer {
        Answer {
            raw: Some((content_type, bytes)),
            ..Answer::ok(Json::Null)
        }
    }
}

impl From<HttpError> for Answer {
    fn from(e: HttpError) -> Answer {
        Answer {
            status: e.status,
            body: Json::obj().with("error", e.message),
            allow: None,
            headers: Vec::new(),
            raw: None,
        }
    }
}

impl From<ApiError> for Answer {
    fn from(e: ApiError) -> Answer {
        let status = match e {
            ApiError::BadRequest(_) => 400,
            ApiError::NotFound(_) => 404,
            ApiError::Unavailable(_) => 503,
            ApiError::Internal(_) => 500,
        };
        Answer {
            status,
            body: Json::obj().with("error", e.to_string()),
            allow: None,
            headers: Vec::new(),
            raw: None,
        }
    }
}

fn handle_connection(mut stream: TcpStream, shared: &Shared, id: u64, start: Instant) {
    let cfg = &shared.config;
    let _ = stream.set_nodelay(true);
    if stream.set_read_timeout(Some(cfg.io_timeout)).is_err()
        || stream.set_write_timeout(Some(cfg.io_timeout)).is_err()
    {
        return;
    }
    let peer = match stream.peer_addr() {
        Ok(a) => a.ip(),
        Err(_) => return,
    };
    let (answer, method, path) = match serve(&mut stream, shared, start, peer, id) {
        Ok(None) => return,
        Ok(Some((a, m, p))) => (a, m, p),
        Err(e) => (Answer::from(e), String::new(), String::new()),
    };
    if matches!(answer.status, 401 | 429) {
        log::debug!(
            "control API: {method} {path} -> {} {} (from {peer})",
            answer.status,
            answer.body
        );
    } else if answer.status >= 400 {
        log::debug!(
            "control API: {method} {path} -> {} {}",
            answer.status,
            answer.body
        );
    } else {
        log::debug!("control API: {method} {path} -> {}", answer.status);
    }
    let (content_type, body) = match answer.raw {
        Some(raw) => raw,
        None => {
            let mut body = answer.body.to_string();
            body.push('\n');
            ("application/json", body.into_bytes())
        }
    };
    let mut headers: Vec<(&str, &str)> = answer.allow.map(|a| ("Allow", a)).into_iter().collect();
    headers.extend(answer.headers.iter().map(|(k, v)| (*k, v.as_str())));
    match answer.status {
        401 => headers.push(("WWW-Authenticate", "Bearer realm=\"peerlet\"")),
        429 => headers.push(("Retry-After", "60")),
        503 => headers.push(("Retry-After", "1")),
        _ => {}
    }
    headers.extend_from_slice(web::SECURITY_HEADERS);
    if http::write_response(&mut stream, answer.status, content_type, &headers, &body).is_err() {
        return;
    }
    // Close gently: stop sending, then read (for at most a second) whatever
    // the client still sends, so the kernel does not answer it with a reset that could
    // destroy our response before the client reads it.
    let _ = stream.shutdown(Shutdown::Write);
    let until = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < 256 * 1024 && Instant::now() < until {
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

type Served = Option<(Answer, String, String)>;

/// Reads and answers one request from `peer` on connection `id`.
/// `Ok(None)`: the client went away silently, or the connection was
/// evicted. The order matters: Host and Origin first (a rebinding page
/// learns nothing, not even whether a token is needed), then the token,
/// before the route is looked at or a body is read; memory is reserved
/// before the body is read.
fn serve(
    stream: &mut TcpStream,
    shared: &Shared,
    start: Instant,
    peer: IpAddr,
    id: u64,
) -> Result<Served, HttpError> {
    let cfg = &shared.config;
    let Some((head, rest)) = http::read_head(stream, start + cfg.head_timeout, cfg.max_head)?
    else {
        return Ok(None);
    };
    let head_end = Instant::now();
    check_origin(&head, &cfg.allowed_hosts)?;
    let method = head.method.clone();
    let path = head.path.clone();
    let (login, trusted) = authenticate(&head, shared, peer)?;
    if trusted {
        match shared.conns().trust(id) {
            None => return Ok(None),
            Some(false) => {
                return Err(HttpError::new(
                    503,
                    "too many requests with the API token at once; try again",
                ))
            }
            Some(true) => {}
        }
    }
    if let Some(answer) = login {
        return Ok(Some((answer, method, path)));
    }
    let len = head.content_length()?;
    let route = route(&head)?;
    let route = match route {
        Ok(r) => r,
        Err(answer) => return Ok(Some((answer, method, path))),
    };
    if route.needs_body() && len.is_none() {
        return Err(HttpError::new(411, "Content-Length required"));
    }
    let len = len.unwrap_or(0);
    check_body_length(&route, len, cfg.max_body)?;
    // The body's bytes, before they are read.
    let mut memory = shared.budget.none();
    memory.grow(len).map_err(|r| {
        let what = if route.needs_body() {
            format!("a .torrent file of {len} bytes")
        } else {
            format!("a request body of {len} bytes")
        };
        memory_refused(r, what)
    })?;
    if len > 0
        && head
            .header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|_| HttpError::new(400, "connection lost"))?;
    }
    let mut deadline = head_end + cfg.body_timeout;
    if trusted {
        deadline += Duration::from_secs(len / MIN_BODY_RATE);
    }
    // Fits in usize: at most max_body.
    let body = http::read_body(stream, rest, len as usize, deadline)?;
    if route.needs_body() {
        // What parsing a torrent takes: its tape, a copy of its bytes
        // (pieces, names) and the values built from it. An engine that
        // answers after its timeout still parses it, one at a time.
        let values =
            crate::bencode::count_values(&body, crate::bencode::Limits::METAINFO.max_tokens);
        let parse = len
            .saturating_add(crate::bencode::tape_bytes(values))
            .saturating_add(PARSE_BYTES_PER_VALUE.saturating_mul(values as u64));
        memory.grow(parse).map_err(|r| {
            memory_refused(
                r,
                format!("adding this torrent ({len} bytes, {values} bencoded values)"),
            )
        })?;
    }
    if !trusted {
        match shared.conns().working(id, true) {
            None => return Ok(None),
            Some(false) => {
                return Err(HttpError::new(
                    503,
                    "too many requests without the API token at once; try again",
                ))
            }
            Some(true) => {}
        }
    }
    let local = is_local(&head, shared, peer);
    let answer = dispatch(route, &head, body, shared, local).unwrap_or_else(|e| e);
    drop(memory);
    if !trusted {
        // Evictable again while the answer is written and the client reads it.
        shared.conns().working(id, false);
    }
    Ok(Some((answer, method, path)))
}

/// Refuses a body longer than the route takes: a .torrent file (or a
/// magnet link) for `POST /api/torrents`, next to nothing elsewhere.
fn check_body_length(route: &Route, len: u64, max_body: u64) -> Result<(), HttpError> {
    if route.needs_body() && len > max_body {
        return Err(HttpError::new(
            413,
            format!(
                "the request body (a .torrent file) is {len} bytes; at most {max_body} are accepted"
            ),
        ));
    }
    if !route.needs_body() && len > MAX_SMALL_BODY {
        return Err(HttpError::new(
            413,
            format!("this endpoint takes no body, and {len} bytes is more than {MAX_SMALL_BODY}"),
        ));
    }
    Ok(())
}

/// The answer when the API's share of the memory budget cannot pay for `what`.
fn memory_refused(r: Refused, what: String) -> HttpError {
    match r {
        Refused::TooLarge { cap } => HttpError::new(
            413,
            format!(
                "{what} needs more memory than the control API may use \
                 ({cap} bytes, half of memory_limit); raise memory_limit to add it"
            ),
        ),
        Refused::Busy => HttpError::new(
            503,
            "other requests hold the control API's share of memory_limit now; try again",
        ),
    }
}

/// Whether a request is the local user's: from a loopback address, with
/// the state directory's token in `Authorization: Bearer` (a browser's
/// cookie does not count: a page is not the command line).
fn is_local(head: &Head, shared: &Shared, peer: IpAddr) -> bool {
    peer.is_loopback()
        && shared
            .config
            .trusted_token
            .as_ref()
            .is_some_and(|t| bearer_token(head).is_some_and(|b| t.matches(b)))
}

/// What a request without the token is told.
const NEED_TOKEN: &str = "this API needs its token: send 'Authorization: Bearer TOKEN' \
     (the token is in api.token in the daemon's state directory; peerlet commands read it there, \
     or take --token or PEERLET_API_TOKEN); in a browser, open /?token=TOKEN once";

/// Checks the token when the server wants one, and returns whether the
/// request showed it (then it is served in the trusted slots; without
/// [`Config::token`], a request that shows [`Config::trusted_token`] is
/// trusted and any other is served as untrusted). The answer is `Some`
/// for a browser's login, `GET /?token=TOKEN`: a redirect to `/` that sets
/// an HttpOnly, SameSite=Strict cookie holding the token, which the page's
/// own requests then carry (a page on another site cannot send it).
/// A wrong token (not a missing one) counts against the client's
/// address; too many in [`FAILURE_WINDOW`] get 429.
fn authenticate(
    head: &Head,
    shared: &Shared,
    peer: IpAddr,
) -> Result<(Option<Answer>, bool), HttpError> {
    let login = login_token(head)?;
    let given = || bearer_token(head).or_else(|| cookie_token(head, &shared.cookie));
    let Some(token) = &shared.config.token else {
        // No token here: a login link just leads to the page.
        let trusted = (shared.config.trusted_token.as_ref())
            .is_some_and(|t| given().is_some_and(|g| t.matches(g)));
        return Ok((login.map(|_| redirect_home(None)), trusted));
    };
    let now = Instant::now();
    let failures = || shared.failures.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(wait) = failures().blocked(peer, now) {
        return Err(HttpError::new(
            429,
            format!(
                "too many wrong API tokens from {peer}; try again in {} s",
                wait.as_secs().max(1)
            ),
        ));
    }
    let given = match &login {
        Some(t) => Some(t.as_str()),
        None => given(),
    };
    match given {
        Some(t) if token.matches(t) => {}
        Some(_) => {
            failures().record(peer, now);
            return Err(HttpError::new(401, "wrong API token"));
        }
        None => return Err(HttpError::new(401, NEED_TOKEN)),
    }
    let login = login.map(|t| {
        redirect_home(Some(format!(
            "{}={t}; Path=/; HttpOnly; SameSite=Strict",
            shared.cookie
        )))
    });
    Ok((login, true))
}

/// The `token` of `GET /?token=TOKEN` (the web page's login), if this is one.
fn login_token(head: &Head) -> Result<Option<String>, HttpError> {
    if head.method != "GET" || head.path != "/" || head.query.is_empty() {
        return Ok(None);
    }
    let query = http::parse_query(&head.query)?;
    Ok(query
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v))
}

/// 303 to `/`, which takes the token out of the address bar.
fn redirect_home(cookie: Option<String>) -> Answer {
    let mut headers = vec![("Location", "/".to_string())];
    headers.extend(cookie.map(|c| ("Set-Cookie", c)));
    Answer {
        status: 303,
        body: done(),
        allow: None,
        headers,
        raw: None,
    }
}

/// The token of `Authorization: Bearer TOKEN`.
fn bearer_token(head: &Head) -> Option<&str> {
    let value = head.header("authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The value of the cookie `name` (from any `Cookie` header).
fn cookie_token<'a>(head: &'a Head, name: &str) -> Option<&'a str> {
    head.headers_named("cookie")
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Refuses requests a browser would make on behalf of another site: the
/// `Host` must not be a DNS name (rebinding) other than `localhost` and
/// the names in `allowed`, and `Origin`, when present, must be this very
/// host; `Sec-Fetch-Site`, when present, must say the request comes from
/// this origin or from the user (a typed address, a bookmark).
fn check_origin(head: &Head, allowed: &[String]) -> Result<(), HttpError> {
    let mut hosts = head.headers_named("host");
    let host = match (hosts.next(), hosts.next()) {
        (Some(h), None) => h,
        (None, _) => return Err(HttpError::new(400, "missing Host header")),
        (Some(_), Some(_)) => return Err(HttpError::new(400, "more than one Host header")),
    };
    if !http::host_allowed_with(host, allowed) {
        return Err(HttpError::new(
            421,
            "Host must be an IP address, localhost or a name in api_allowed_hosts \
             (requests through other names are refused as DNS rebinding)",
        ));
    }
    if let Some(origin) = head.header("origin") {
        let same = origin
            .strip_prefix("http://")
            .is_some_and(|o| o.eq_ignore_ascii_case(host) && http::host_allowed_with(o, allowed));
        if !same {
            return Err(HttpError::new(403, "cross-origin requests are refused"));
        }
    }
    if let Some(site) = head.header("sec-fetch-site") {
        if !site.eq_ignore_ascii_case("same-origin") && !site.eq_ignore_ascii_case("none") {
            return Err(HttpError::new(403, "cross-site requests are refused"));
        }
    }
    Ok(())
}

/// What a request asks for.
enum Route {
    Node,
    List,
    Add,
    Detail(InfoHash),
    Remove(InfoHash),
    Pause(InfoHash),
    Resume(InfoHash),
    AddPeers(InfoHash),
    Limits(InfoHash),
    Search,
    SearchResults(u64),
    Nodes,
    Dht,
    Bans,
    Shutdown,
    Metrics,
    /// A file of the web page: (Content-Type, bytes).
    Web(&'static str, &'static [u8]),
}

impl Route {
    fn needs_body(&self) -> bool {
        matches!(self, Route::Add)
    }

    /// Query parameters this route takes.
    fn params(&self) -> &'static [&'static str] {
        match self {
            Route::Add => &["dir", "peer", "paused"],
            Route::Remove(_) => &["delete_data"],
            Route::AddPeers(_) => &["peer"],
            Route::Limits(_) => &["down", "up"],
            Route::Search => &["q", "hash", "timeout"],
            _ => &[],
        }
    }
}

/// Maps method and path to a route. The inner `Err` is a finished answer
/// (404, 405); the outer one a malformed request.
#[allow(clippy::type_complexity)]
fn route(head: &Head) -> Result<Result<Route, Answer>, HttpError> {
    let path = head
        .path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(&head.path);
    let m = head.method.as_str();
    let not_found = || Answer::from(HttpError::new(404, format!("no such endpoint: {path}")));
    let wrong_method = |allow: &'static str| Answer {
        status: 405,
        body: Json::obj().with(
            "error",
            format!("{m} is not allowed on {path} (allowed: {allow})"),
        ),
        allow: Some(allow),
        headers: Vec::new(),
        raw: None,
    };
    let parts: Vec<&str> = path.split('/').collect();
    let hash = |s: &str| {
        InfoHash::parse(s).ok_or_else(|| {
            HttpError::new(400, format!("'{s}' is not an info-hash (40 hex digits)"))
        })
    };
    let r = match parts.as_slice() {
        ["", "api", "node"] => match m {
            "GET" => Route::Node,
            _ => return Ok(Err(wrong_method("GET"))),
        },
        ["", "api", "nodes"] => match m {
            "GET" => Route::Nodes,
            _ => return Ok(Err(wrong_method("GET"))),
        },
        ["", "api", "dht"] => match m {
            "GET" => Route::Dht,
            _ => return Ok(Err(wrong_method("GET"))),
        },
        ["", "api", "bans"] => match m {
            "GET" => Route::Bans,
            _ => return Ok(Err(wrong_method("GET"))),
        },
        ["", "api", "search"] => match m {
            "POST" => Route::Search,
            _ => return Ok(Err(wrong_method("POST"))),
        },
        ["", "api", "search", id] => match m {
            "GET" => Route::SearchResults(search_id(id)?),
            _ => return Ok(Err(wrong_method("GET"))),
        },
        ["", _] if web::asset(path).is_some() => match (m, web::asset(path)) {
            ("GET", Some((ctype, bytes))) => Route::Web(ctype, bytes),
            _ => return Ok(Err(wrong_method("GET"))),
        },
        ["", "metrics"] => match m {
            "GET" => Route::Metrics,
            _ => return Ok(Err(wrong_method("GET"))),
        },
        ["", "api", "shutdown"] => match m {
            "POST" => Route::Shutdown,
            _ => return Ok(Err(wrong_method("POST"))),
        },
        ["", "api", "torrents"] => match m {
            "GET" => Route::List,
            "POST" => Route::Add,
            _ => return Ok(Err(wrong_method("GET, POST"))),
        },
        ["", "api", "torrents", h] => match m {
            "GET" => Route::Detail(hash(h)?),
            "DELETE" => Route::Remove(hash(h)?),
            _ => return Ok(Err(wrong_method("GET, DELETE"))),
        },
        ["", "api", "torrents", h, action @ ("pause" | "resume" | "peers" | "limits")] => match m {
            "POST" => {
                let h = hash(h)?;
                match *action {
                    "pause" => Route::Pause(h),
                    "resume" => Route::Resume(h),
                    "limits" => Route::Limits(h),
                    _ => Route::AddPeers(h),
                }
            }
            _ => return Ok(Err(wrong_method("POST"))),
        },
        _ => return Ok(Err(not_found())),
    };
    Ok(Ok(r))
}

/// The `ID` of `/api/search/ID`: a decimal number.
fn search_id(s: &str) -> Result<u64, HttpError> {
    s.parse::<u64>()
        .ok()
        .filter(|_| s.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| HttpError::new(400, format!("'{s}' is not a search id (a number)")))
}

/// Checks the words of a search (`q=`): trimmed, not empty, at most
/// [`MAX_SEARCH_WORDS`] bytes, no control characters, and at least one
/// letter or digit (what a name is matched on). Returns them trimmed.
pub fn check_search_words(q: &str) -> Result<&str, String> {
    let q = q.trim();
    if q.is_empty() {
        return Err("the search words are empty".into());
    }
    if q.len() > MAX_SEARCH_WORDS {
        return Err(format!(
            "the search words are {} bytes long; at most {MAX_SEARCH_WORDS} are allowed",
            q.len()
        ));
    }
    if q.chars().any(char::is_control) {
        return Err("the search words contain control characters".into());
    }
    if !q.chars().any(char::is_alphanumeric) {
        return Err(format!(
            "'{q}' has no letter or digit to search for (names are matched word by word)"
        ));
    }
    Ok(q)
}

/// The parameters of `POST /api/search`: exactly one of `q` (words) and
/// `hash` (an info-hash), and `timeout` in seconds (1..=300, default 10).
fn search_request(
    q: Option<&str>,
    hash: Option<&str>,
    timeout: Option<&str>,
) -> Result<(SearchQuery, Duration), ApiError> {
    let bad = |m: String| ApiError::BadRequest(m);
    let query = match (q, hash) {
        (Some(_), Some(_)) => {
            return Err(bad("give either q=WORDS or hash=INFOHASH, not both".into()))
        }
        (None, None) => {
            return Err(bad(
                "nothing to search for: give q=WORDS or hash=INFOHASH".into()
            ))
        }
        (Some(words), None) => SearchQuery::Words(check_search_words(words).map_err(bad)?.into()),
        (None, Some(h)) => SearchQuery::Hash(InfoHash::parse(h).ok_or_else(|| {
            bad(format!(
                "hash '{h}' is not an info-hash (40 hex digits or 32 base32 characters)"
            ))
        })?),
    };
    let secs = match timeout {
        None => DEFAULT_SEARCH_SECS,
        Some(t) => t
            .parse::<u64>()
            .ok()
            .filter(|s| (1..=MAX_SEARCH_SECS).contains(s) && t.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                bad(format!(
                    "'timeout={t}': expected whole seconds from 1 to {MAX_SEARCH_SECS}"
                ))
            })?,
    };
    Ok((query, Duration::from_secs(secs)))
}

/// The query parameters of a request, checked against what its route takes.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(head: &Head, allowed: &[&str]) -> Result<Query, ApiError> {
        let q = http::parse_query(&head.query).map_err(|e| ApiError::BadRequest(e.message))?;
        for (k, _) in &q {
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter '{k}'"
                )));
            }
        }
        Ok(Query(q))
    }

    fn one(&self, key: &str) -> Result<Option<&str>, ApiError> {
        let mut it = self.0.iter().filter(|(k, _)| k == key);
        match (it.next(), it.next()) {
            (None, _) => Ok(None),
            (Some((_, v)), None) => Ok(Some(v)),
            _ => Err(ApiError::BadRequest(format!(
                "query parameter '{key}' given twice"
            ))),
        }
    }

    fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.one(key)? {
            None | Some("0" | "false" | "no") => Ok(false),
            Some("" | "1" | "true" | "yes") => Ok(true),
            Some(v) => Err(ApiError::BadRequest(format!(
                "'{key}={v}': expected 1 or 0"
            ))),
        }
    }

    fn peers(&self) -> Result<Vec<String>, ApiError> {
        let peers: Vec<String> = self
            .0
            .iter()
            .filter(|(k, _)| k == "peer")
            .map(|(_, v)| v.clone())
            .collect();
        if peers.len() > MAX_PEERS {
            return Err(ApiError::BadRequest(format!(
                "more than {MAX_PEERS} peers in one request"
            )));
        }
        for p in &peers {
            if !plausible_peer(p) {
                return Err(ApiError::BadRequest(format!("peer '{p}' is not host:port")));
            }
        }
        Ok(peers)
    }
}

/// `host:port` or `[v6]:port` with a non-zero port (the engine resolves and checks further).
pub fn plausible_peer(p: &str) -> bool {
    let Some((host, port)) = p.rsplit_once(':') else {
        return false;
    };
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    };
    host_ok && port.parse::<u16>().is_ok_and(|p| p != 0) && port.bytes().all(|b| b.is_ascii_digit())
}

fn done() -> Json {
    Json::obj().with("ok", true)
}

fn dispatch(
    route: Route,
    head: &Head,
    body: Vec<u8>,
    shared: &Shared,
    local: bool,
) -> Result<Answer, Answer> {
    let q = Query::parse(head, route.params())?;
    let engine = &shared.engine;
    let t = shared.config.engine_timeout;
    let answer = match route {
        Route::Node => Answer::ok(engine.call(t, |reply| Command::Node { reply })?.to_json()),
        Route::List => {
            let list = engine.call(t, |reply| Command::List { reply })?;
            Answer::ok(Json::Arr(list.iter().map(|s| s.to_json()).collect()))
        }
        Route::Detail(info_hash) => Answer::ok(
            engine
                .call(t, |reply| Command::Status { info_hash, reply })?
                .to_json(),
        ),
        Route::Add => {
            let source = add_source(head, body)?;
            let dir = match q.one("dir")? {
                None | Some("") => None,
                Some(d) if local => Some(
                    check_local_dir(
                        Path::new(d),
                        &shared.config.dirs,
                        shared.config.state_dir.as_deref(),
                    )
                    .map_err(ApiError::BadRequest)?,
                ),
                Some(d) => Some(
                    check_dir(Path::new(d), &shared.config.dirs).map_err(ApiError::BadRequest)?,
                ),
            };
            let peers = q.peers()?;
            let paused = q.flag("paused")?;
            let r = engine.call(t, |reply| Command::Add {
                source,
                dir,
                peers,
                paused,
                reply,
            })?;
            let status = if r.added { 201 } else { 200 };
            Answer {
                status,
                body: r.to_json(),
                allow: None,
                headers: Vec::new(),
                raw: None,
            }
        }
        Route::Remove(info_hash) => {
            let delete_data = q.flag("delete_data")?;
            engine.call(t, |reply| Command::Remove {
                info_hash,
                delete_data,
                reply,
            })?;
            Answer::ok(done())
        }
        Route::Pause(info_hash) => {
            engine.call(t, |reply| Command::Pause { info_hash, reply })?;
            Answer::ok(done())
        }
        Route::Resume(info_hash) => {
            engine.call(t, |reply| Command::Resume { info_hash, reply })?;
            Answer::ok(done())
        }
        Route::AddPeers(info_hash) => {
            let peers = q.peers()?;
            if peers.is_empty() {
                return Err(
                    ApiError::BadRequest("no peer given (use ?peer=HOST:PORT)".into()).into(),
                );
            }
            engine.call(t, |reply| Command::AddPeers {
                info_hash,
                peers,
                reply,
            })?;
            Answer::ok(done())
        }
        Route::Limits(info_hash) => {
            let rate = |key: &str| -> Result<Option<u64>, ApiError> {
                match q.one(key)? {
                    None => Ok(None),
                    Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
                        ApiError::BadRequest(format!("'{key}={v}': expected bytes per second"))
                    }),
                }
            };
            let (download, upload) = (rate("down")?, rate("up")?);
            if download.is_none() && upload.is_none() {
                return Err(ApiError::BadRequest(
                    "give down=BYTES_PER_SEC and/or up=BYTES_PER_SEC (0: no limit)".into(),
                )
                .into());
            }
            engine.call(t, |reply| Command::SetLimits {
                info_hash,
                download,
                upload,
                reply,
            })?;
            Answer::ok(done())
        }
        Route::Search => {
            let (query, timeout) = search_request(q.one("q")?, q.one("hash")?, q.one("timeout")?)?;
            let id = engine.call(t, |reply| Command::Search {
                query,
                timeout,
                reply,
            })?;
            Answer::ok(Json::obj().with("id", id))
        }
        Route::SearchResults(id) => Answer::ok(
            engine
                .call(t, |reply| Command::SearchResults { id, reply })?
                .to_json(),
        ),
        Route::Nodes => Answer::ok(engine.call(t, |reply| Command::Nodes { reply })?.to_json()),
        Route::Dht => Answer::ok(engine.call(t, |reply| Command::Dht { reply })?.to_json()),
        Route::Bans => {
            let bans = engine.call(t, |reply| Command::Bans { reply })?;
            Answer::ok(Json::obj().with(
                "bans",
                Json::Arr(bans.iter().map(crate::net::api::BanInfo::to_json).collect()),
            ))
        }
        Route::Shutdown => {
            engine.call(t, |reply| Command::Shutdown { reply })?;
            Answer::ok(done())
        }
        Route::Web(ctype, bytes) => {
            if !shared.config.web {
                return Err(Answer::from(HttpError::new(
                    404,
                    "the web page is turned off on this daemon",
                )));
            }
            Answer::ok_raw(ctype, bytes.to_vec())
        }
        Route::Metrics => {
            let snapshot = engine.call(t, |reply| Command::Metrics { reply })?;
            Answer::ok_raw(
                metrics::CONTENT_TYPE,
                metrics::render(&snapshot).into_bytes(),
            )
        }
    };
    Ok(answer)
}

/// Checks the `dir` of a new torrent: an absolute path without `..` that,
/// once symbolic links are resolved, is one of `roots` or lies below one
/// (itself resolved). Parts of `dir` that do not exist yet are appended to
/// its deepest existing ancestor as they are; none of them may be a
/// dangling link. Returns the resolved path with the deepest root holding
/// it as its anchor; the engine keeps both, and every later open walks
/// from the anchor without following links (so a link made later does not
/// move the torrent). The API's only path-taking parameter: everything
/// else a request names is an info-hash, and a torrent's own file names
/// are checked by `metainfo::path` and `FileStorage`.
pub fn check_dir(dir: &Path, roots: &[PathBuf]) -> Result<DataDir, String> {
    if roots.is_empty() {
        return Err("this server takes no dir: torrents go to the download directory".into());
    }
    let full = resolve_dir(dir)?;
    match anchor_of(&full, roots) {
        Some(anchor) => DataDir::new(anchor, full).map_err(|e| format!("dir: {e}")),
        None => {
            let roots: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
            Err(format!(
                "dir '{}' is outside the download directory and the allowed directories ({}); \
                 links are followed (allowed_dirs in the configuration adds directories; \
                 the local command line may name any existing one)",
                dir.display(),
                roots.join(", ")
            ))
        }
    }
}

/// The local user's `dir` (see [`is_local`]): as [`check_dir`] when it
/// lies in one of `roots`; else it must exist and be a directory, and
/// neither hold nor lie in `state_dir`. Resolved once, it is its own
/// anchor (recorded as chosen locally): data where it lies, e.g. `peerlet
/// add album.torrent --dir ~/music` to seed `~/music/album`.
pub fn check_local_dir(
    dir: &Path,
    roots: &[PathBuf],
    state_dir: Option<&Path>,
) -> Result<DataDir, String> {
    if roots.is_empty() {
        return Err("this server takes no dir: torrents go to the download directory".into());
    }
    let full = resolve_dir(dir)?;
    if let Some(anchor) = anchor_of(&full, roots) {
        return DataDir::new(anchor, full).map_err(|e| format!("dir: {e}"));
    }
    let shown = dir.display();
    if !full.is_dir() {
        return Err(format!(
            "dir '{shown}' does not exist; outside the download directory and the allowed \
             directories ({}), a dir must be an existing directory",
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(state) = state_dir.and_then(|s| s.canonicalize().ok()) {
        if full.starts_with(&state) || state.starts_with(&full) {
            return Err(format!(
                "dir '{shown}' holds or lies in the daemon's state directory ({})",
                state.display()
            ));
        }
    }
    DataDir::anchored_at(full)
        .map(|p| p.chosen_locally(true))
        .map_err(|e| format!("dir: {e}"))
}

/// The deepest of `roots` (resolved) that `full` lies in.
fn anchor_of(full: &Path, roots: &[PathBuf]) -> Option<PathBuf> {
    roots
        .iter()
        .filter_map(|r| r.canonicalize().ok())
        .filter(|root| full.starts_with(root))
        .max_by_key(|root| root.components().count())
}

/// `dir` resolved: absolute, no `..`; the deepest ancestor that exists
/// resolved, the rest appended as given (none of it a dangling link).
fn resolve_dir(dir: &Path) -> Result<PathBuf, String> {
    let shown = dir.display();
    if !dir.is_absolute() {
        return Err(format!("dir '{shown}' must be an absolute path"));
    }
    if dir.components().any(|c| c == Component::ParentDir) {
        return Err(format!("dir '{shown}' must not contain '..'"));
    }
    // The loop ends: each round takes one component off a finite path.
    let mut existing = dir;
    let mut missing = Vec::new();
    let resolved = loop {
        match existing.canonicalize() {
            Ok(p) => break p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if existing.symlink_metadata().is_ok() {
                    return Err(format!(
                        "dir '{shown}' goes through a dangling symbolic link"
                    ));
                }
                match (existing.parent(), existing.file_name()) {
                    (Some(parent), Some(name)) => {
                        missing.push(name);
                        existing = parent;
                    }
                    _ => return Err(format!("dir '{shown}': {e}")),
                }
            }
            Err(e) => return Err(format!("dir '{shown}': {e}")),
        }
    };
    Ok(missing.iter().rev().fold(resolved, |p, name| p.join(name)))
}

/// The body of `POST /api/torrents`: .torrent bytes or a magnet link,
/// by Content-Type (or by its first bytes when the type says nothing).
fn add_source(head: &Head, body: Vec<u8>) -> Result<AddSource, HttpError> {
    if body.is_empty() {
        return Err(HttpError::new(
            400,
            "empty body: send the bytes of a .torrent file or a magnet link",
        ));
    }
    let ctype = head.header("content-type").unwrap_or("");
    let mime = ctype
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let magnet = |body: Vec<u8>| -> Result<AddSource, HttpError> {
        let text = String::from_utf8(body)
            .map_err(|_| HttpError::new(400, "the magnet link is not UTF-8 text"))?;
        Ok(AddSource::Magnet(text.trim().to_string()))
    };
    match mime.as_str() {
        "application/x-bittorrent" => Ok(AddSource::Torrent(body)),
        "text/plain" => magnet(body),
        "" | "application/octet-stream" => {
            let start = body.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(0);
            if body[start..].len() >= 7 && body[start..start + 7].eq_ignore_ascii_case(b"magnet:") {
                magnet(body)
            } else {
                Ok(AddSource::Torrent(body))
            }
        }
        other => Err(HttpError::new(
            415,
            format!(
                "unsupported Content-Type '{other}': use application/x-bittorrent for a .torrent file, \
                 text/plain for a magnet link"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: &str, target: &str) -> Head {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Head {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            http11: true,
            headers: vec![("host".into(), "127.0.0.1:7441".into())],
        }
    }

    /// The route, or the status of the finished answer or error.
    fn routed(method: &str, target: &str) -> Result<Route, u16> {
        match route(&head(method, target)) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(answer)) => Err(answer.status),
            Err(e) => Err(e.status),
        }
    }

    #[test]
    fn overlay_routes() {
        assert!(matches!(routed("POST", "/api/search"), Ok(Route::Search)));
        assert!(matches!(routed("POST", "/api/search/"), Ok(Route::Search)));
        assert!(matches!(
            routed("GET", "/api/search/42"),
            Ok(Route::SearchResults(42))
        ));
        assert!(matches!(routed("GET", "/api/nodes"), Ok(Route::Nodes)));
        assert!(matches!(routed("GET", "/api/dht"), Ok(Route::Dht)));
        assert_eq!(routed("POST", "/api/dht").err(), Some(405));
        assert!(matches!(routed("GET", "/api/bans"), Ok(Route::Bans)));
        assert_eq!(routed("DELETE", "/api/bans").err(), Some(405));
        assert_eq!(routed("GET", "/api/search").err(), Some(405));
        assert_eq!(routed("POST", "/api/search/1").err(), Some(405));
        assert_eq!(routed("POST", "/api/nodes").err(), Some(405));
        for bad in [
            "/api/search/x",
            "/api/search/-1",
            "/api/search/+1",
            "/api/search/1e3",
        ] {
            assert_eq!(routed("GET", bad).err(), Some(400), "{bad}");
        }
        assert_eq!(
            routed("GET", "/api/search/99999999999999999999").err(),
            Some(400)
        );
        assert_eq!(routed("GET", "/api/search/1/2").err(), Some(404));
        assert_eq!(routed("GET", "/api/node/s").err(), Some(404));
        assert_eq!(Route::Search.params(), &["q", "hash", "timeout"]);
        assert!(Route::SearchResults(1).params().is_empty());
        assert!(!Route::Search.needs_body());
    }

    #[test]
    fn web_routes() {
        for path in ["/", "/app.js", "/app.css"] {
            assert!(matches!(routed("GET", path), Ok(Route::Web(..))), "{path}");
            assert_eq!(routed("POST", path).err(), Some(405), "{path}");
        }
        assert_eq!(routed("GET", "/app.jsx").err(), Some(404));
        assert_eq!(routed("GET", "/index.html").err(), Some(404));
        assert!(Route::Web("text/css", b"").params().is_empty());
    }

    #[test]
    fn metrics_route() {
        assert!(matches!(routed("GET", "/metrics"), Ok(Route::Metrics)));
        assert!(matches!(routed("GET", "/metrics/"), Ok(Route::Metrics)));
        assert_eq!(routed("POST", "/metrics").err(), Some(405));
        assert_eq!(routed("GET", "/api/metrics").err(), Some(404));
        assert_eq!(routed("GET", "/metrics/x").err(), Some(404));
        assert!(Route::Metrics.params().is_empty());
        let answer = Answer::ok_raw(super::metrics::CONTENT_TYPE, b"x 1\n".to_vec());
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.raw.map(|(t, _)| t),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
    }

    #[test]
    fn search_parameters() {
        let hex = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";
        let ok = |q, h, t| search_request(q, h, t).unwrap();
        let err = |q, h, t| match search_request(q, h, t) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("expected 400 for {q:?} {h:?} {t:?}, got {other:?}"),
        };
        assert_eq!(
            ok(Some("  ubuntu 24.04 "), None, None),
            (
                SearchQuery::Words("ubuntu 24.04".into()),
                Duration::from_secs(10)
            )
        );
        let (query, timeout) = ok(None, Some(hex), Some("300"));
        assert_eq!(query, SearchQuery::Hash(InfoHash::parse(hex).unwrap()));
        assert_eq!(timeout, Duration::from_secs(300));
        let (query, _) = ok(None, Some("YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK"), Some("1"));
        assert_eq!(query, SearchQuery::Hash(InfoHash::parse(hex).unwrap()));
        let longest = "a".repeat(MAX_SEARCH_WORDS);
        assert!(search_request(Some(&longest), None, None).is_ok());

        assert!(err(Some("a"), Some(hex), None).contains("not both"));
        assert!(err(None, None, None).contains("nothing to search for"));
        assert!(err(Some(""), None, None).contains("empty"));
        assert!(err(Some(" \t "), None, None).contains("empty"));
        assert!(err(Some("--- ..."), None, None).contains("no letter or digit"));
        assert!(err(Some("a\u{1b}[2J"), None, None).contains("control characters"));
        let long = "a".repeat(MAX_SEARCH_WORDS + 1);
        assert!(err(Some(&long), None, None).contains("at most 100"));
        assert!(err(None, Some("c12f"), None).contains("not an info-hash"));
        assert!(err(None, Some(""), None).contains("not an info-hash"));
        for t in ["0", "301", "", "ten", "+5", "-1", "1.5"] {
            assert!(err(Some("x"), None, Some(t)).contains("timeout"), "{t}");
        }
        // Unicode letters count.
        assert!(check_search_words("été").is_ok());
    }

    #[test]
    fn dirs_must_stay_in_the_download_directory() {
        let tmp = crate::storage::tests::tempdir("check-dir");
        let root = tmp.join("downloads");
        let outside = tmp.join("elsewhere");
        std::fs::create_dir_all(root.join("films")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        std::os::unix::fs::symlink(root.join("films"), root.join("inner")).unwrap();
        std::os::unix::fs::symlink(tmp.join("nowhere"), root.join("dangling")).unwrap();
        let roots = vec![root.clone()];
        let root_c = root.canonicalize().unwrap();
        let ok = |d: &Path| check_dir(d, &roots).unwrap().dir().to_path_buf();
        assert_eq!(ok(&root), root_c);
        assert_eq!(ok(&root.join("films")), root_c.join("films"));
        assert_eq!(ok(&root.join("new/deeper")), root_c.join("new/deeper"));
        // A link that stays inside resolves to its target.
        assert_eq!(ok(&root.join("inner/x")), root_c.join("films/x"));
        let err = |d: &Path| check_dir(d, &roots).unwrap_err();
        assert!(err(&outside).contains("outside the download directory"));
        assert!(err(&root.join("escape")).contains("outside"));
        assert!(err(&root.join("escape/new")).contains("outside"));
        assert!(err(&root.join("dangling/x")).contains("dangling"));
        assert!(err(&root.join("../elsewhere")).contains(".."));
        assert!(err(&root.join("films/../../elsewhere")).contains(".."));
        assert!(err(Path::new("relative/path")).contains("absolute"));
        assert!(err(Path::new("/")).contains("outside"));
        assert!(err(Path::new("/etc")).contains("outside"));
        assert!(check_dir(&root, &[]).unwrap_err().contains("takes no dir"));
        // The anchor is the root, resolved; the rest is walked.
        let p = check_dir(&root.join("inner/x"), &roots).unwrap();
        assert_eq!(p.anchor(), root_c);
        assert_eq!(p.below(), ["films", "x"]);
        assert!(!p.is_local());
        // The local user: any existing directory outside the state
        // directory, resolved, its own anchor; inside a root as before.
        let state = root.join("state");
        std::fs::create_dir_all(&state).unwrap();
        let local = |d: &Path| check_local_dir(d, &roots, Some(&state));
        let p = local(&root.join("escape")).unwrap();
        assert_eq!(p.anchor(), outside.canonicalize().unwrap());
        assert!(p.is_local() && p.below().is_empty());
        assert!(!local(&root.join("films")).unwrap().is_local());
        assert!(local(&outside.join("new"))
            .unwrap_err()
            .contains("does not exist"));
        assert!(local(&root.join("../elsewhere"))
            .unwrap_err()
            .contains(".."));
        assert!(local(&root.join("dangling"))
            .unwrap_err()
            .contains("dangling"));
        assert!(local(&tmp).unwrap_err().contains("state directory"));
        std::fs::remove_dir_all(tmp).unwrap();
    }

    #[test]
    fn wrong_tokens_are_rate_limited_per_address() {
        let mut f = Failures::default();
        let t0 = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..MAX_TOKEN_FAILURES {
            assert_eq!(f.blocked(a, t0), None);
            f.record(a, t0);
        }
        assert_eq!(f.blocked(a, t0), Some(FAILURE_WINDOW));
        assert_eq!(f.blocked(b, t0), None);
        let later = t0 + Duration::from_secs(59);
        assert_eq!(f.blocked(a, later), Some(Duration::from_secs(1)));
        assert_eq!(f.blocked(a, t0 + FAILURE_WINDOW), None);
        // Bounded: many addresses push the oldest out.
        for i in 0..2 * MAX_TRACKED_FAILURES as u32 {
            f.record(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(f.0.len() <= MAX_TRACKED_FAILURES);
    }

    #[test]
    fn tokens_come_from_the_header_or_the_cookie() {
        let mut h = head("GET", "/api/node");
        assert_eq!(bearer_token(&h), None);
        h.headers
            .push(("authorization".into(), "bearer  abc ".into()));
        h.headers
            .push(("cookie".into(), "a=1; peerlet_token_7441=def".into()));
        h.headers
            .push(("cookie".into(), "peerlet_token_1=ghi".into()));
        assert_eq!(bearer_token(&h), Some("abc"));
        assert_eq!(cookie_token(&h, "peerlet_token_7441"), Some("def"));
        assert_eq!(cookie_token(&h, "peerlet_token_1"), Some("ghi"));
        assert_eq!(cookie_token(&h, "peerlet_token_2"), None);
        h.headers[1].1 = "Basic YTpi".into();
        assert_eq!(bearer_token(&h), None);
        assert_eq!(
            login_token(&head("GET", "/?token=xyz")).unwrap().as_deref(),
            Some("xyz")
        );
        assert_eq!(
            login_token(&head("GET", "/api/node?token=xyz")).unwrap(),
            None
        );
        assert_eq!(login_token(&head("POST", "/?token=xyz")).unwrap(), None);
        assert_eq!(login_token(&head("GET", "/")).unwrap(), None);
    }

    #[test]
    fn peers_look_plausible() {
        for ok in [
            "1.2.3.4:6881",
            "[::1]:6881",
            "host.example:1",
            "a_b-c:65535",
        ] {
            assert!(plausible_peer(ok), "{ok}");
        }
        for bad in [
            "1.2.3.4",
            "1.2.3.4:0",
            "1.2.3.4:65536",
            ":80",
            "[::1:80",
            "[zz]:80",
            "a b:80",
            "h:+80",
            "::1:80",
        ] {
            assert!(!plausible_peer(bad), "{bad}");
        }
    }
}
