//! The small part of HTTP/1.1 the control API needs, for both ends: reading
//! a request head under a size cap and a deadline, query strings with
//! %-escapes, the Host check against DNS rebinding, writing a response, and
//! splitting a response the client received.
//!
//! Every connection carries one request (`Connection: close`); there is no
//! keep-alive, no chunked encoding and no compression.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Most bytes of request line plus headers.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header lines in a request.
pub const MAX_HEADERS: usize = 64;

/// A request the server cannot or will not serve: answered with `status`
/// and `{"error": message}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub message: String,
}

impl HttpError {
    pub fn new(status: u16, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            message: message.into(),
        }
    }
}

/// Request line and headers.
#[derive(Clone, Debug)]
pub struct Head {
    pub method: String,
    /// The path part of the request target, as sent (not %-decoded).
    pub path: String,
    /// The raw query string after `?` (empty when there is none).
    pub query: String,
    /// True for HTTP/1.1, false for HTTP/1.0.
    pub http11: bool,
    /// Header names in lower case, values trimmed.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The value of a header (name in lower case); the first if repeated.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body length announced by `Content-Length` (0 when absent).
    /// Refuses `Transfer-Encoding` (411) and malformed or conflicting lengths (400).
    pub fn content_length(&self) -> Result<Option<u64>, HttpError> {
        if self.header("transfer-encoding").is_some() {
            return Err(HttpError::new(
                411,
                "Transfer-Encoding is not supported; send the body with a Content-Length",
            ));
        }
        let mut len = None;
        for v in self.headers_named("content-length") {
            if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HttpError::new(400, "bad Content-Length"));
            }
            let n: u64 = v
                .parse()
                .map_err(|_| HttpError::new(400, "bad Content-Length"))?;
            if len.is_some_and(|l| l != n) {
                return Err(HttpError::new(400, "conflicting Content-Length headers"));
            }
            len = Some(n);
        }
        Ok(len)
    }
}

/// Reads bytes until the blank line that ends the head, at most `max` bytes
/// and until `deadline`. Returns the head and whatever body bytes came with
/// it. `Ok(None)` when the peer closed without sending anything.
pub fn read_head(
    stream: &mut (impl Read + TimedRead),
    deadline: Instant,
    max: usize,
) -> Result<Option<(Head, Vec<u8>)>, HttpError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let mut scanned = 0;
    loop {
        if let Some((head_len, end)) = find_head_end(&buf, scanned) {
            let head = parse_head(&buf[..head_len])?;
            let rest = buf[end..].to_vec();
            return Ok(Some((head, rest)));
        }
        scanned = buf.len().saturating_sub(3);
        if buf.len() >= max {
            return Err(HttpError::new(
                431,
                format!("request line and headers are longer than {max} bytes"),
            ));
        }
        let want = chunk.len().min(max - buf.len());
        match read_before(stream, &mut chunk[..want], deadline) {
            Ok(0) if buf.iter().all(|b| b.is_ascii_whitespace()) => return Ok(None),
            Ok(0) => {
                return Err(HttpError::new(
                    400,
                    "connection closed in the middle of the request",
                ))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => {
                return Err(HttpError::new(408, "request not received in time"))
            }
            Err(_) => return Ok(None),
        }
    }
}

/// Reads exactly `len` body bytes (after the `already` received with the
/// head) until `deadline`.
pub fn read_body(
    stream: &mut (impl Read + TimedRead),
    mut already: Vec<u8>,
    len: usize,
    deadline: Instant,
) -> Result<Vec<u8>, HttpError> {
    already.truncate(len);
    let mut body = already;
    body.reserve_exact(len - body.len());
    let mut chunk = [0u8; 16 * 1024];
    while body.len() < len {
        let want = chunk.len().min(len - body.len());
        match read_before(stream, &mut chunk[..want], deadline) {
            Ok(0) => {
                return Err(HttpError::new(
                    400,
                    "connection closed before the whole body arrived",
                ))
            }
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => {
                return Err(HttpError::new(408, "request body not received in time"))
            }
            Err(e) => return Err(HttpError::new(400, format!("reading the body: {e}"))),
        }
    }
    Ok(body)
}

/// Something whose reads can be given a timeout (a `TcpStream`).
pub trait TimedRead {
    fn set_timeout(&mut self, t: Option<Duration>) -> io::Result<()>;
}

impl TimedRead for std::net::TcpStream {
    fn set_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(t)
    }
}

/// One `read` that gives up at `deadline` (so a peer sending a byte every
/// few seconds cannot hold the connection past it).
fn read_before(
    stream: &mut (impl Read + TimedRead),
    buf: &mut [u8],
    deadline: Instant,
) -> io::Result<usize> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_timeout(Some(left.max(Duration::from_millis(1))))?;
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Where the head ends: (length of the head without the blank line, index
/// of the first body byte). Accepts CRLF and bare LF line ends.
pub fn find_head_end(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    // Leading blank lines before the request line are skipped (RFC 9112 2.2).
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let from = from.max(start);
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some((i, i + 2));
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some((i, i + 3));
            }
        }
        i += 1;
    }
    None
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses the request line and header lines (without the final blank line).
pub fn parse_head(raw: &[u8]) -> Result<Head, HttpError> {
    let bad = |m: &str| HttpError::new(400, m.to_string());
    let raw = {
        let start = raw
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(raw.len());
        &raw[start..]
    };
    let mut lines = raw
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(
            "malformed request line (expected 'METHOD /path HTTP/1.1')",
        ));
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(bad("malformed request method"));
    }
    let http11 = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        v if v.starts_with(b"HTTP/") => {
            return Err(HttpError::new(
                505,
                "only HTTP/1.0 and HTTP/1.1 are supported",
            ))
        }
        _ => {
            return Err(bad(
                "malformed request line (expected 'METHOD /path HTTP/1.1')",
            ))
        }
    };
    if target.first() != Some(&b'/') || !target.iter().all(|&b| (0x21..0x7f).contains(&b)) {
        return Err(bad("the request target must be a path starting with '/'"));
    }
    // Checked: visible ASCII only.
    let target = String::from_utf8_lossy(target);
    let target = target.split('#').next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    for line in lines {
        if headers.len() >= MAX_HEADERS {
            return Err(HttpError::new(
                431,
                format!("more than {MAX_HEADERS} header lines"),
            ));
        }
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            return Err(bad("folded header lines are not accepted"));
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(bad("malformed header line (no ':')"));
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(bad("malformed header name"));
        }
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(bad("control character in a header value"));
        }
        let value = String::from_utf8_lossy(value)
            .trim_matches([' ', '\t'])
            .to_string();
        headers.push((String::from_utf8_lossy(name).to_ascii_lowercase(), value));
    }
    Ok(Head {
        method: String::from_utf8_lossy(method).into_owned(),
        path: path.to_string(),
        query: query.to_string(),
        http11,
        headers,
    })
}

/// Whether a `Host` header value names this machine by address rather than
/// by a DNS name an attacker could point at it (DNS rebinding, Transmission
/// CVE-2018-5702): an IP literal, `localhost` or `localhost.`, each with an
/// optional port.
pub fn host_allowed(host: &str) -> bool {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        if addr.parse::<Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => (addr, Some(port)),
                None => return false,
            },
        }
    } else if host.parse::<Ipv6Addr>().is_ok() {
        return true;
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty()
            || port.len() > 5
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u16>().is_err()
        {
            return false;
        }
    }
    if host.starts_with('[') {
        return true;
    }
    name.parse::<IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || name.eq_ignore_ascii_case("localhost.")
}

/// [`host_allowed`], or a `Host` whose name (port aside, any case, a
/// final dot ignored) is one of `allowed`: names the owner listed
/// (`api_allowed_hosts`) to reach the API by, such as `pi.lan`.
pub fn host_allowed_with(host: &str, allowed: &[String]) -> bool {
    if host_allowed(host) {
        return true;
    }
    let name = match host.rsplit_once(':') {
        Some((name, port))
            if port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok() =>
        {
            name
        }
        Some(_) => return false,
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && allowed.iter().any(|a| {
            let a = a.strip_suffix('.').unwrap_or(a);
            a.eq_ignore_ascii_case(name)
        })
}

/// Whether `name` can be listed in `api_allowed_hosts`: a DNS name of
/// letters, digits, `-` and `.` (no port, no address, no wildcard).
pub fn valid_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && name.parse::<IpAddr>().is_err()
}

pub use crate::http::{is_timeout, percent_decode};

/// Escapes everything but unreserved characters (RFC 3986) and `/`, for
/// query values.
pub fn percent_encode(s: &str) -> String {
    crate::http::percent_encode(s, crate::http::KEEP_PATH)
}

/// `a=1&b=x%20y` → [("a","1"), ("b","x y")]; a key without `=` gets "".
pub fn parse_query(q: &str) -> Result<Vec<(String, String)>, HttpError> {
    let mut out = Vec::new();
    for part in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let (Some(k), Some(v)) = (percent_decode(k), percent_decode(v)) else {
            return Err(HttpError::new(
                400,
                format!("bad %-escape in query parameter '{part}'"),
            ));
        };
        out.push((k, v));
    }
    Ok(out)
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Writes a whole response with `Connection: close`.
pub fn write_response(
    w: &mut impl Write,
    status: u16,
    content_type: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n",
        reason(status),
        body.len()
    );
    for (k, v) in extra_headers {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    w.write_all(&out)?;
    w.flush()
}

pub use crate::http::Response;

/// Reads a complete response (the connection was closed after it) with the
/// crate's one response reader.
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let limits = crate::http::ResponseLimits {
        max_head: MAX_HEAD,
        max_body: raw.len(),
    };
    crate::http::read_response(&mut &raw[..], limits).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:7441",
            "192.168.1.5:80",
            "[::1]",
            "[::1]:7441",
            "::1",
            "localhost",
            "LocalHost:7441",
            "localhost.",
            "localhost.:7441",
        ] {
            assert!(host_allowed(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example",
            "evil.example:7441",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "2130706433",
            "127.1",
            "[::1",
            "[::1]x",
            "[evil]:80",
            "127.0.0.1:",
            "127.0.0.1:99999",
            "127.0.0.1:+80",
            "localhost:80:80",
            "local host",
        ] {
            assert!(!host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn allowed_host_names() {
        let allowed = vec!["pi.lan".to_string(), "NAS.example.".to_string()];
        for ok in [
            "pi.lan",
            "PI.LAN:7441",
            "pi.lan.",
            "pi.lan.:80",
            "nas.example",
            "127.0.0.1",
            "localhost",
        ] {
            assert!(host_allowed_with(ok, &allowed), "{ok}");
        }
        for bad in [
            "evil.example:7441",
            "pi.lan.evil.example",
            "x.pi.lan",
            "pi.lan:",
            "pi.lan:99x",
            "pi.lan:80:80",
            ".",
            "",
        ] {
            assert!(!host_allowed_with(bad, &allowed), "{bad}");
        }
        assert!(!host_allowed_with("pi.lan", &[]));
        for ok in ["pi.lan", "pi", "my-nas.home.arpa", "pi.lan."] {
            assert!(valid_host_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "pi.lan:80",
            "*.lan",
            "-pi.lan",
            "pi..lan",
            "10.0.0.1",
            "a b",
            "[::1]",
            "pi_lan",
        ] {
            assert!(!valid_host_name(bad), "{bad}");
        }
    }

    #[test]
    fn heads() {
        let h = parse_head(b"\r\nPOST /api/torrents?dir=%2Ftmp&x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nX-A:  b \t")
            .unwrap();
        assert_eq!(
            (h.method.as_str(), h.path.as_str(), h.query.as_str()),
            ("POST", "/api/torrents", "dir=%2Ftmp&x")
        );
        assert!(h.http11);
        assert_eq!(h.header("host"), Some("localhost"));
        assert_eq!(h.header("x-a"), Some("b"));
        assert_eq!(h.content_length(), Ok(Some(5)));
        let bad = |raw: &[u8]| parse_head(raw).unwrap_err().status;
        assert_eq!(bad(b"GET /"), 400);
        assert_eq!(bad(b"GET / HTTP/1.1 x"), 400);
        assert_eq!(bad(b"GET http://x/ HTTP/1.1"), 400);
        assert_eq!(bad(b"GET / HTTP/2.0"), 505);
        assert_eq!(bad(b"G(T / HTTP/1.1"), 400);
        assert_eq!(bad(b"GET / HTTP/1.1\r\nHost localhost"), 400);
        assert_eq!(bad(b"GET / HTTP/1.1\r\n folded"), 400);
        assert_eq!(bad(b"GET / HTTP/1.1\r\nBad Name: x"), 400);
        assert_eq!(bad(b"GET / HTTP/1.1\r\nX: a\x01b"), 400);
        let many = format!("GET / HTTP/1.1{}", "\r\nX: y".repeat(MAX_HEADERS + 1));
        assert_eq!(bad(many.as_bytes()), 431);
        let cl = |v: &str| {
            parse_head(format!("GET / HTTP/1.1\r\n{v}").as_bytes())
                .unwrap()
                .content_length()
        };
        assert_eq!(cl("Content-Length: 1\r\nContent-Length: 1"), Ok(Some(1)));
        assert_eq!(
            cl("Content-Length: 1\r\nContent-Length: 2")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(cl("Content-Length: -1").unwrap_err().status, 400);
        assert_eq!(cl("Content-Length: 1, 1").unwrap_err().status, 400);
        assert_eq!(
            cl("Content-Length: 99999999999999999999")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(cl("Transfer-Encoding: chunked").unwrap_err().status, 411);
        assert_eq!(cl("X: y"), Ok(None));
    }

    #[test]
    fn head_end() {
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\n\r\nbody", 0),
            Some((15, 18))
        );
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\nbody", 0), Some((14, 16)));
        assert_eq!(find_head_end(b"\r\n\r\nGET / HTTP/1.1\r\n", 0), None);
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n", 0), None);
    }

    #[test]
    fn queries() {
        let q = parse_query("dir=%2Fa%20b+c&peer=1.2.3.4%3A5&&flag").unwrap();
        assert_eq!(
            q,
            vec![
                ("dir".into(), "/a b c".into()),
                ("peer".into(), "1.2.3.4:5".into()),
                ("flag".into(), "".into())
            ]
        );
        assert!(parse_query("a=%zz").is_err());
        assert!(parse_query("a=%4").is_err());
        assert!(parse_query("a=%ff").is_err());
        let s = "/dir with space/+plus/é&=?";
        assert_eq!(percent_decode(&percent_encode(s)).as_deref(), Some(s));
    }

    #[test]
    fn responses() {
        let mut out = Vec::new();
        write_response(
            &mut out,
            404,
            "application/json",
            &[("Allow", "GET")],
            b"{}",
        )
        .unwrap();
        let r = parse_response(&out).unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.body, b"{}");
        assert!(r.headers.contains(&("allow".into(), "GET".into())));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab").is_err());
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
