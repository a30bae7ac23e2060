//! HTTP trackers (BEP 3, compact peers BEP 23, IPv6 peers BEP 7, scrape
//! BEP 48): tracker URLs, the announce and scrape URLs, the bencoded
//! responses, and a minimal HTTP/1.1 client.
//!
//! Everything here is pure except [`fetch`], which resolves, connects and
//! reads with blocking std sockets (through [`crate::tls::dial`] and
//! [`crate::tls::connect`]). It is meant for a **worker thread**, never
//! the net thread. [`get`] is the protocol part of it over any
//! `Read + Write` stream, so tests can drive it without sockets; plain HTTP
//! and HTTPS share it.
//!
//! # HTTPS
//!
//! With the cargo feature `https` (on by default), `https://` URLs are
//! fetched over TLS 1.2/1.3 by [`crate::tls::connect`] (rustls over
//! RustCrypto), the host name as SNI, the certificate checked against the
//! [`LazyRoots`] given to [`fetch`] (the system's CA bundle or
//! `tls_ca_file`). Same deadline, limits and redirect rules as plain HTTP; a
//! redirect from `https` to `http` is refused
//! ([`TrackerError::InsecureRedirect`]), and a body framed by the end of the
//! connection must end with TLS `close_notify` (else [`TrackerError::Closed`]:
//! it may have been cut). Without the feature `https://` URLs are refused
//! with [`TrackerError::HttpsUnsupported`] when parsed.
//!
//! # Limits
//!
//! - URLs: at most [`MAX_URL`] bytes of printable ASCII; `http://`, and
//!   `https://` with the feature; no user names in URLs.
//! - Response headers: at most [`MAX_HEADERS`] bytes; body at most
//!   [`MAX_BODY`] bytes (835,584, libtorrent's number), checked against
//!   `Content-Length` *before* reading and while reading chunked or
//!   until-close bodies; at most [`MAX_REDIRECTS`] redirects, no loops.
//! - [`fetch`]: one overall deadline covering connect, send and receive; no
//!   single read waits longer than [`RECEIVE_TIMEOUT`]. Name resolution uses
//!   the system resolver, which the deadline cannot interrupt.
//! - Bencoded bodies decode under [`LIMITS`]; at most [`crate::tracker::MAX_PEERS`]
//!   peers and [`MAX_SCRAPE_FILES`] scrape entries are kept.
//!
//! # No-panic contract
//!
//! [`HttpUrl::parse`], [`get`], [`parse_announce`] and [`parse_scrape`]
//! accept any input and return a value or a [`TrackerError`]; they never
//! index past their input and never buffer more than the limits above.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::{text, udp, AnnounceParams, TrackerError, MAX_PEERS};
use crate::bencode::{self, Dict, Limits};
use crate::tls::{self, LazyRoots};

/// Largest response body accepted (libtorrent's `max_http_recv_buffer_size`).
pub const MAX_BODY: usize = 835_584;
/// Largest response head (status line and headers) accepted.
pub const MAX_HEADERS: usize = 16 * 1024;
/// What [`get`] reads of a response.
const RESPONSE_LIMITS: crate::http::ResponseLimits = crate::http::ResponseLimits {
    max_head: MAX_HEADERS,
    max_body: MAX_BODY,
};
/// Most redirects followed by [`fetch`].
pub const MAX_REDIRECTS: usize = 3;
/// Longest tracker URL accepted.
pub const MAX_URL: usize = 2048;
/// Longest wait for any single read in [`fetch`] (libtorrent's receive timeout).
pub const RECEIVE_TIMEOUT: Duration = tls::RECEIVE_TIMEOUT;
/// Most torrents kept from one scrape response.
pub const MAX_SCRAPE_FILES: usize = 1000;
/// Bencode limits for tracker responses: the whole body may be one compact
/// peer string, and a list of peer dictionaries takes about 7 values per peer.
pub const LIMITS: Limits = Limits {
    max_input: MAX_BODY,
    max_depth: 32,
    max_tokens: 200_000,
    max_string: MAX_BODY,
};

/// What we send as `User-Agent`.
pub const USER_AGENT: &str = concat!("peerlet/", env!("CARGO_PKG_VERSION"));

// ---------------------------------------------------------------------------
// URLs.

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    /// Only produced by [`HttpUrl::parse`] with the `https` feature.
    Https,
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A checked `http://host[:port]/path[?query]` URL (or `https://` with the
/// `https` feature). The host is lower-case and without brackets; the path
/// starts with '/'; every byte is printable ASCII (so nothing can inject a
/// header line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    scheme: Scheme,
    host: String,
    port: u16,
    path: String,
    query: Option<String>,
}

impl HttpUrl {
    /// Parses an HTTP(S) URL; the fragment is dropped. Never panics.
    pub fn parse(s: &str) -> Result<HttpUrl, TrackerError> {
        let s = s.trim();
        if s.len() > MAX_URL {
            return Err(TrackerError::BadUrl(format!(
                "URL of {} bytes is longer than {MAX_URL}",
                s.len()
            )));
        }
        if let Some(c) = s.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(TrackerError::BadUrl(format!(
                "character {c:?} in '{}'",
                text(s.as_bytes())
            )));
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(TrackerError::BadUrl(format!("no scheme in '{s}'")));
        };
        let scheme = if scheme.eq_ignore_ascii_case("http") {
            Scheme::Http
        } else if scheme.eq_ignore_ascii_case("https") {
            if !cfg!(feature = "https") {
                return Err(TrackerError::HttpsUnsupported);
            }
            Scheme::Https
        } else {
            return Err(TrackerError::BadUrl(format!(
                "'{scheme}' trackers are not supported"
            )));
        };
        let rest = match rest.split_once('#') {
            Some((before, _fragment)) => before,
            None => rest,
        };
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (host, port) = parse_authority(authority, Some(scheme.default_port()))?;
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query.to_string())),
            None => (target, None),
        };
        let path = if path.is_empty() { "/" } else { path };
        Ok(HttpUrl {
            scheme,
            host,
            port,
            path: path.to_string(),
            query,
        })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host name or address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path, starting with '/'.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query without '?', if the URL has one (possibly empty).
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// What goes after `GET `: path and query.
    pub fn request_target(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }

    /// The `Host` header value: brackets around IPv6, the port unless the
    /// scheme's default (80, 443).
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.scheme.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The URL a redirect's `Location` points to: absolute `http(s)://`,
    /// scheme-relative `//host/...`, absolute path or relative path. (Whether
    /// a change of scheme may be followed is for [`fetch`] to say.)
    pub fn join(&self, location: &str) -> Result<HttpUrl, TrackerError> {
        let location = location.trim();
        let scheme = self.scheme.name();
        if location.contains("://") {
            return HttpUrl::parse(location);
        }
        if let Some(rest) = location.strip_prefix("//") {
            return HttpUrl::parse(&format!("{scheme}://{rest}"));
        }
        if location.is_empty() {
            return Err(TrackerError::BadUrl("empty redirect location".into()));
        }
        let target = if location.starts_with('/') {
            location.to_string()
        } else {
            // Relative to the directory of the current path (RFC 3986 §5.2.3, simplified).
            let dir = match self.path.rfind('/') {
                Some(i) => self.path.get(..=i).unwrap_or("/"),
                None => "/",
            };
            format!("{dir}{location}")
        };
        HttpUrl::parse(&format!("{scheme}://{}{target}", self.host_header()))
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.name(),
            self.host_header(),
            self.request_target()
        )
    }
}

/// `host[:port]` or `[ipv6][:port]` → (host, port). `default_port` `None`
/// makes the port mandatory (UDP trackers). Host names are letters, digits,
/// '-', '.' and '_', at most 253 bytes, lower-cased.
pub(crate) fn parse_authority(
    authority: &str,
    default_port: Option<u16>,
) -> Result<(String, u16), TrackerError> {
    let bad =
        |why: &str| TrackerError::BadUrl(format!("{why} in '{}'", text(authority.as_bytes())));
    if authority.contains('@') {
        return Err(bad("user name"));
    }
    let (host, port_str) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        v6.parse::<Ipv6Addr>()
            .map_err(|_| bad("invalid IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
        };
        (v6.to_ascii_lowercase(), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !host_ok {
            return Err(bad("invalid host"));
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port_str {
        Some(p) => {
            let valid = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
            match p.parse::<u16>() {
                Ok(n) if valid && n != 0 => n,
                _ => return Err(bad("invalid port")),
            }
        }
        None => default_port.ok_or_else(|| bad("no port"))?,
    };
    Ok((host, port))
}

/// The announce URL: the tracker URL (its query kept) plus `info_hash`,
/// `peer_id` (raw bytes, percent-encoded), `port`, `uploaded`, `downloaded`,
/// `left`, `compact=1`, `numwant`, `key`, `event` unless a regular announce,
/// and `trackerid` when the tracker gave one (BEP 3, BEP 23).
pub fn announce_url(base: &HttpUrl, p: &AnnounceParams) -> String {
    let mut url = base.to_string();
    url.push_str(separator(base));
    url.push_str("info_hash=");
    percent_encode_into(&p.info_hash, &mut url);
    url.push_str("&peer_id=");
    percent_encode_into(&p.peer_id, &mut url);
    url.push_str(&format!(
        "&port={}&uploaded={}&downloaded={}&left={}&compact=1&numwant={}&key={:08x}",
        p.port, p.stats.uploaded, p.stats.downloaded, p.stats.left, p.num_want, p.key
    ));
    if let Some(event) = p.event.http_name() {
        url.push_str("&event=");
        url.push_str(event);
    }
    if let Some(id) = &p.tracker_id {
        url.push_str("&trackerid=");
        percent_encode_into(id, &mut url);
    }
    url
}

/// The scrape URL by the BEP 48 convention: the last path segment must
/// begin with "announce", which becomes "scrape" (`/announce.php` →
/// `/scrape.php`); `None` when the tracker has no scrape URL. One
/// `info_hash` parameter per torrent.
pub fn scrape_url(base: &HttpUrl, info_hashes: &[[u8; 20]]) -> Option<String> {
    let slash = base.path.rfind('/')?;
    let (dir, last) = base.path.split_at(slash + 1);
    let rest = last.strip_prefix("announce")?;
    let scrape = HttpUrl {
        path: format!("{dir}scrape{rest}"),
        ..base.clone()
    };
    let mut url = scrape.to_string();
    let mut sep = separator(&scrape);
    for hash in info_hashes {
        url.push_str(sep);
        url.push_str("info_hash=");
        percent_encode_into(hash, &mut url);
        sep = "&";
    }
    Some(url)
}

/// What goes between a URL and the parameters we add: '?' when it has no
/// query, '&' after a query, nothing after an empty query or a trailing '&'.
fn separator(base: &HttpUrl) -> &'static str {
    match base.query() {
        None => "?",
        Some(q) if q.is_empty() || q.ends_with('&') => "",
        Some(_) => "&",
    }
}

/// Percent-encodes raw bytes: RFC 3986 unreserved characters stay, the rest
/// become `%XX`.
fn percent_encode_into(bytes: &[u8], out: &mut String) {
    crate::http::percent_encode_into(bytes, crate::http::KEEP_UNRESERVED, out);
}

// ---------------------------------------------------------------------------
// The client.

/// What one HTTP exchange gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpResponse {
    /// A final response with its body (any status but a redirect).
    Body {
        status: u16,
        reason: String,
        body: Vec<u8>,
    },
    /// 301, 302, 303, 307 or 308 with a `Location` header; the body is not read.
    Redirect { status: u16, location: String },
}

/// Sends `GET` for `url` on a connected stream and reads the response under
/// the limits of this module. Sets no timeouts: the caller configures the
/// stream (see [`fetch`]); a read that times out becomes
/// [`TrackerError::Timeout`].
///
/// Request: `GET <target> HTTP/1.1`, `Host`, `User-Agent`,
/// `Accept-Encoding: identity`, `Connection: close`. Response bodies are
/// framed by `Content-Length`, `Transfer-Encoding: chunked` or the end of
/// the connection. Interim 1xx responses are skipped.
pub fn get<S: Read + Write>(stream: &mut S, url: &HttpUrl) -> Result<HttpResponse, TrackerError> {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {USER_AGENT}\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n",
        url.request_target(),
        url.host_header()
    );
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.flush())
        .map_err(io_error)?;
    let response = crate::http::read_response(stream, RESPONSE_LIMITS).map_err(read_error)?;
    if let Some(location) = response.redirect() {
        return Ok(HttpResponse::Redirect {
            status: response.status,
            location: location.to_string(),
        });
    }
    Ok(HttpResponse::Body {
        status: response.status,
        reason: response.reason,
        body: response.body,
    })
}

/// GETs an `http://` (or, with the `https` feature, `https://`) URL and
/// returns the body: resolves the host, connects (trying each address),
/// sends, reads, and follows up to [`MAX_REDIRECTS`] redirects, all within
/// `timeout`. Redirects may go from `http` to `https`, never back. A
/// non-2xx status is an error unless its body is a bencoded `failure reason`
/// (some trackers send those with 4xx), which is returned as the body so the
/// announce parser reports the tracker's words. `https` certificates are
/// checked against `roots` (read on the first `https` fetch).
///
/// **Blocking**: for worker threads only.
pub fn fetch(url: &str, timeout: Duration, roots: &LazyRoots) -> Result<Vec<u8>, TrackerError> {
    let start = Instant::now();
    let deadline = start.checked_add(timeout).unwrap_or(start);
    let with_elapsed = |e: TrackerError| match e {
        TrackerError::Timeout(None) => TrackerError::Timeout(Some(round(start.elapsed()))),
        e => e,
    };
    let mut url = HttpUrl::parse(url)?;
    let mut visited = vec![url.to_string()];
    loop {
        match fetch_once(&url, deadline, roots).map_err(with_elapsed)? {
            HttpResponse::Body { status, body, .. } if (200..300).contains(&status) => {
                return Ok(body)
            }
            HttpResponse::Body {
                status,
                reason,
                body,
            } => {
                return if has_failure_reason(&body) {
                    Ok(body)
                } else {
                    Err(TrackerError::Status(status, reason))
                };
            }
            HttpResponse::Redirect { location, .. } => {
                let next = url.join(&location)?;
                if url.scheme() == Scheme::Https && next.scheme() != Scheme::Https {
                    return Err(TrackerError::InsecureRedirect(next.to_string()));
                }
                let key = next.to_string();
                if visited.contains(&key) {
                    return Err(TrackerError::RedirectLoop);
                }
                if visited.len() > MAX_REDIRECTS {
                    return Err(TrackerError::TooManyRedirects);
                }
                visited.push(key);
                url = next;
            }
        }
    }
}

fn fetch_once(
    url: &HttpUrl,
    deadline: Instant,
    roots: &LazyRoots,
) -> Result<HttpResponse, TrackerError> {
    match url.scheme() {
        Scheme::Http => {
            let mut stream = tls::dial(url.host(), url.port(), deadline).map_err(tls_error)?;
            get(&mut stream, url)
        }
        Scheme::Https => {
            let mut stream =
                tls::connect(url.host(), url.port(), deadline, roots).map_err(tls_error)?;
            get(&mut stream, url)
        }
    }
}

/// A connection's failure as the tracker reports it.
fn tls_error(e: tls::Error) -> TrackerError {
    match e {
        tls::Error::Resolve(host) => TrackerError::Resolve(host),
        tls::Error::Connect(e) => TrackerError::Connect(e),
        tls::Error::Timeout => TrackerError::Timeout(None),
        tls::Error::Io(e) => io_error(e),
        tls::Error::Certificate(e) => TrackerError::Certificate(e),
        tls::Error::Unsupported => TrackerError::HttpsUnsupported,
        e @ (tls::Error::Tls(_)
        | tls::Error::BadName(_)
        | tls::Error::NoRoots(_)
        | tls::Error::RootsUnavailable(_)) => TrackerError::Tls(e.to_string()),
    }
}

/// Whole seconds from 1 s up, tenths below, for messages.
fn round(d: Duration) -> Duration {
    if d >= Duration::from_secs(1) {
        Duration::from_secs(d.as_secs_f64().round() as u64)
    } else {
        Duration::from_millis((d.as_millis() as u64 + 50) / 100 * 100)
    }
}

fn io_error(e: io::Error) -> TrackerError {
    #[cfg(feature = "https")]
    if let Some(e) = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        return TrackerError::Tls(e.to_string());
    }
    match e.kind() {
        _ if crate::http::is_timeout(&e) => TrackerError::Timeout(None),
        io::ErrorKind::UnexpectedEof => TrackerError::Closed,
        _ => TrackerError::Io(e.to_string()),
    }
}

fn has_failure_reason(body: &[u8]) -> bool {
    bencode::decode(body, LIMITS)
        .ok()
        .and_then(|doc| {
            doc.root()
                .as_dict()
                .map(|d| d.get(b"failure reason").is_some())
        })
        .unwrap_or(false)
}

/// The response reader's errors as the tracker reports them.
fn read_error(e: crate::http::ReadError) -> TrackerError {
    use crate::http::ReadError;
    match e {
        ReadError::Io(e) => io_error(e),
        ReadError::Closed => TrackerError::Closed,
        ReadError::HeadTooLarge => TrackerError::HeadersTooLarge,
        ReadError::BodyTooLarge => TrackerError::TooLarge,
        ReadError::Bad(e) => TrackerError::BadHttp(e),
    }
}

// ---------------------------------------------------------------------------
// Responses.

/// An HTTP announce response (BEP 3, BEP 23, BEP 7). Integers the tracker
/// sent negative or not at all are `None`; larger than `u32` saturate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnnounceResponse {
    /// Seconds until the next regular announce.
    pub interval: Option<u32>,
    /// Seconds before which we must not announce again.
    pub min_interval: Option<u32>,
    /// Seeders.
    pub complete: Option<u32>,
    /// Leechers.
    pub incomplete: Option<u32>,
    /// To send back as `trackerid` on later announces.
    pub tracker_id: Option<Vec<u8>>,
    /// `warning message`: the announce worked, but the tracker has a word.
    pub warning: Option<String>,
    /// IPv4 peers then IPv6 peers, at most [`MAX_PEERS`].
    pub peers: Vec<SocketAddr>,
}

/// Parses an announce response body. A `failure reason` becomes
/// [`TrackerError::Failure`]. `peers` may be a compact string (6 bytes per
/// peer) or a list of dictionaries with `ip` (an address; host names are
/// skipped) and `port`; `peers6` is compact, 18 bytes per peer. Never panics.
pub fn parse_announce(body: &[u8]) -> Result<AnnounceResponse, TrackerError> {
    let doc = decode(body)?;
    let root = doc.root();
    let dict = root.as_dict().ok_or_else(|| {
        TrackerError::BadResponse(format!("a {} instead of a dictionary", root.kind_name()))
    })?;
    check_failure(&dict)?;
    let mut res = AnnounceResponse {
        interval: uint(&dict, b"interval"),
        min_interval: uint(&dict, b"min interval"),
        complete: uint(&dict, b"complete"),
        incomplete: uint(&dict, b"incomplete"),
        tracker_id: dict
            .get(b"tracker id")
            .and_then(|n| n.as_bytes())
            .filter(|b| !b.is_empty() && b.len() <= 256)
            .map(<[u8]>::to_vec),
        warning: dict
            .get(b"warning message")
            .and_then(|n| n.as_bytes())
            .map(text),
        peers: Vec::new(),
    };
    if let Some(peers) = dict.get(b"peers") {
        if let Some(compact) = peers.as_bytes() {
            compact_peers(compact, 6, "peers", &mut res.peers)?;
        } else if let Some(list) = peers.as_list() {
            for entry in list {
                if res.peers.len() >= MAX_PEERS {
                    break;
                }
                if let Some(addr) = entry.as_dict().and_then(|d| dict_peer(&d)) {
                    res.peers.push(addr);
                }
            }
        } else {
            return Err(TrackerError::BadResponse(format!(
                "'peers' is a {}",
                peers.kind_name()
            )));
        }
    }
    if let Some(peers6) = dict.get(b"peers6") {
        let compact = peers6.as_bytes().ok_or_else(|| {
            TrackerError::BadResponse(format!("'peers6' is a {}", peers6.kind_name()))
        })?;
        compact_peers(compact, 18, "peers6", &mut res.peers)?;
    }
    Ok(res)
}

/// One torrent's line of a scrape response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrapeStats {
    /// Seeders.
    pub complete: u32,
    /// Leechers.
    pub incomplete: u32,
    /// Completed downloads so far.
    pub downloaded: u32,
}

/// Parses a scrape response: `files` maps 20-byte info-hashes to
/// `complete`/`incomplete`/`downloaded`. Entries with other keys are
/// skipped; at most [`MAX_SCRAPE_FILES`] are kept. Never panics.
pub fn parse_scrape(body: &[u8]) -> Result<Vec<([u8; 20], ScrapeStats)>, TrackerError> {
    let doc = decode(body)?;
    let root = doc.root();
    let dict = root.as_dict().ok_or_else(|| {
        TrackerError::BadResponse(format!("a {} instead of a dictionary", root.kind_name()))
    })?;
    check_failure(&dict)?;
    let files = dict
        .get(b"files")
        .and_then(|n| n.as_dict())
        .ok_or_else(|| TrackerError::BadResponse("no 'files' dictionary".into()))?;
    let mut out = Vec::new();
    for (key, value) in files.iter() {
        if out.len() >= MAX_SCRAPE_FILES {
            break;
        }
        let (Ok(hash), Some(stats)) = (<[u8; 20]>::try_from(key), value.as_dict()) else {
            continue;
        };
        out.push((
            hash,
            ScrapeStats {
                complete: uint(&stats, b"complete").unwrap_or(0),
                incomplete: uint(&stats, b"incomplete").unwrap_or(0),
                downloaded: uint(&stats, b"downloaded").unwrap_or(0),
            },
        ));
    }
    Ok(out)
}

fn decode(body: &[u8]) -> Result<bencode::Document<'_>, TrackerError> {
    if body.len() > MAX_BODY {
        return Err(TrackerError::TooLarge);
    }
    if body.is_empty() {
        return Err(TrackerError::NotBencode("empty body".into()));
    }
    bencode::decode(body, LIMITS)
        .map_err(|e| TrackerError::NotBencode(format!("{} at byte {}", e.kind, e.offset)))
}

fn check_failure(dict: &Dict<'_, '_>) -> Result<(), TrackerError> {
    match dict.get(b"failure reason") {
        Some(reason) => Err(TrackerError::Failure(match reason.as_bytes() {
            Some(b) if !b.is_empty() => text(b),
            _ => "(no reason given)".into(),
        })),
        None => Ok(()),
    }
}

/// A non-negative integer at `key`, saturated to `u32`.
fn uint(dict: &Dict<'_, '_>, key: &[u8]) -> Option<u32> {
    let n = dict.get(key)?.as_int()?;
    (n >= 0).then(|| u32::try_from(n).unwrap_or(u32::MAX))
}

fn compact_peers(
    bytes: &[u8],
    unit: usize,
    key: &str,
    out: &mut Vec<SocketAddr>,
) -> Result<(), TrackerError> {
    if bytes.len() % unit != 0 {
        return Err(TrackerError::BadResponse(format!(
            "'{key}' of {} bytes is not a whole number of {unit}-byte peers",
            bytes.len()
        )));
    }
    let room = MAX_PEERS.saturating_sub(out.len());
    out.extend(
        bytes
            .chunks_exact(unit)
            .take(room)
            .filter_map(udp::compact_peer),
    );
    Ok(())
}

/// `{ip: "1.2.3.4" | "2001:db8::1", port: n}`; host names and bad ports are skipped.
fn dict_peer(d: &Dict<'_, '_>) -> Option<SocketAddr> {
    let ip: IpAddr = d.get(b"ip")?.as_str()?.parse().ok()?;
    let port = u16::try_from(d.get(b"port")?.as_int()?).ok()?;
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests;
