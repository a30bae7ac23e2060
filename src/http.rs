//! What the tracker client and the control API share of HTTP and URLs: the
//! one HTTP/1.1 response reader ([`read_response`], over any `Read`), RFC
//! 3986 %-encoding and decoding, and what counts as a timeout. No sockets,
//! no clock: the callers bring the stream.
//!
//! # No-panic contract
//!
//! [`percent_decode`] accepts any text and returns `None` on a broken
//! escape; the encoders accept any bytes; [`read_response`] accepts any
//! bytes and buffers no more than its [`ResponseLimits`].

use std::fmt;
use std::io::{self, Read};

/// What [`percent_encode_into`] leaves as it is besides the RFC 3986
/// unreserved characters (letters, digits, `-._~`): nothing (tracker
/// parameters: raw info-hashes and peer ids).
pub const KEEP_UNRESERVED: &[u8] = b"";
/// ... and `/` (control API query values, which are often paths).
pub const KEEP_PATH: &[u8] = b"/";
/// ... and `:/[]` (magnet link values, which are often URLs and addresses).
pub const KEEP_URL: &[u8] = b":/[]";

/// Appends `bytes` to `out`, RFC 3986 unreserved characters and those in
/// `keep` as they are, every other byte as `%XX` (upper-case hex).
pub fn percent_encode_into(bytes: &[u8], keep: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0x0f)] as char);
        }
    }
}

/// [`percent_encode_into`] a new string.
pub fn percent_encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    percent_encode_into(s.as_bytes(), keep, &mut out);
    out
}

/// Decodes `%XX` escapes and `+` (a space, as in form encoding). `None` on a
/// broken escape or bytes that are not UTF-8. Used for magnet links and the
/// control API's query strings.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hi = (*hex.first()? as char).to_digit(16)?;
                let lo = (*hex.get(1)? as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Whether an I/O error means "no answer in time": a read or write timeout
/// (`WouldBlock` on some systems, `TimedOut` on others).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

// ---------------------------------------------------------------------------
// Reading a response: the one HTTP/1.1 response reader of the crate (the
// tracker client reads from its socket, the control client from the bytes it
// collected). It takes any `Read` and never buffers more than its limits.

/// What [`read_response`] accepts.
#[derive(Clone, Copy, Debug)]
pub struct ResponseLimits {
    /// Status line and headers, terminators included.
    pub max_head: usize,
    /// The body, whatever frames it.
    pub max_body: usize,
}

/// Most interim (1xx) responses skipped before the real one.
pub const MAX_INTERIM: usize = 4;
/// Longest chunk-size line (size, extensions) of a chunked body.
const MAX_CHUNK_LINE: usize = 1024;
/// Bytes asked of the stream per read.
const READ_CHUNK: usize = 8 * 1024;
/// Longest piece of a response quoted in an error.
const MAX_QUOTE: usize = 120;

/// Why a response could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The stream failed (a timeout, a reset, a TLS error inside).
    Io(io::Error),
    /// The stream ended before the response did.
    Closed,
    HeadTooLarge,
    BodyTooLarge,
    /// Not HTTP/1.x as we read it; says what.
    Bad(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => e.fmt(f),
            ReadError::Closed => f.write_str("connection closed before the response was complete"),
            ReadError::HeadTooLarge => f.write_str("response headers too large"),
            ReadError::BodyTooLarge => f.write_str("response body too large"),
            ReadError::Bad(e) => write!(f, "malformed HTTP response: {e}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// A response: status, headers (names in lower case, values trimmed, in
/// order) and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A redirect with somewhere to go: 301, 302, 303, 307 or 308 with a
    /// `Location`.
    pub fn redirect(&self) -> Option<&str> {
        matches!(self.status, 301 | 302 | 303 | 307 | 308)
            .then(|| self.header("location"))
            .flatten()
    }
}

/// Reads one response from `input`: interim 1xx responses skipped (at most
/// [`MAX_INTERIM`]; 101 is an error), then the status line, the headers and
/// the body, framed by `Transfer-Encoding: chunked`, `Content-Length` or the
/// end of the stream. The body of a 204, a 304 and a redirect with a
/// `Location` is not read. Refused: folded header lines, bad header names,
/// conflicting `Content-Length`s, transfer and content codings other than
/// chunked and identity.
///
/// No-panic contract: any bytes give a [`Response`] or a [`ReadError`];
/// nothing past `limits` is buffered (a `Content-Length` over the limit is
/// refused before the body is read).
pub fn read_response<R: Read>(
    input: &mut R,
    limits: ResponseLimits,
) -> Result<Response, ReadError> {
    let mut input = Input {
        stream: input,
        buf: Vec::new(),
        pos: 0,
    };
    let mut head = read_head(&mut input, limits.max_head)?;
    let mut n_interim = 0;
    while (100..200).contains(&head.response.status) {
        if head.response.status == 101 || n_interim == MAX_INTERIM {
            return Err(ReadError::Bad(format!(
                "unexpected status {}",
                head.response.status
            )));
        }
        n_interim += 1;
        head = read_head(&mut input, limits.max_head)?;
    }
    let mut response = head.response;
    if matches!(response.status, 204 | 304) || response.redirect().is_some() {
        return Ok(response);
    }
    response.body = if head.chunked {
        read_chunked(&mut input, limits)?
    } else if let Some(len) = head.content_length {
        if len > limits.max_body as u64 {
            return Err(ReadError::BodyTooLarge);
        }
        let mut body = Vec::with_capacity(len as usize);
        input.take(len as usize, &mut body)?;
        body
    } else {
        input.take_to_end(limits.max_body)?
    };
    Ok(response)
}

/// A response head and how its body is framed.
struct Head {
    response: Response,
    content_length: Option<u64>,
    chunked: bool,
}

fn quote(bytes: &[u8]) -> String {
    crate::text::printable(bytes, MAX_QUOTE)
}

fn read_head<S: Read>(input: &mut Input<'_, S>, max_head: usize) -> Result<Head, ReadError> {
    let mut used = 0;
    let mut next_line = |input: &mut Input<'_, S>| -> Result<Vec<u8>, ReadError> {
        let room = max_head.saturating_sub(used);
        let (line, n) = input.line(room, || ReadError::HeadTooLarge)?;
        used += n;
        Ok(line)
    };
    let status_line = next_line(input)?;
    let (status, reason) = parse_status_line(&status_line)?;
    let mut head = Head {
        response: Response {
            status,
            reason,
            headers: Vec::new(),
            body: Vec::new(),
        },
        content_length: None,
        chunked: false,
    };
    loop {
        let line = next_line(input)?;
        if line.is_empty() {
            return Ok(head);
        }
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            return Err(ReadError::Bad("folded header line".into()));
        }
        let colon = line.iter().position(|&b| b == b':').ok_or_else(|| {
            ReadError::Bad(format!("header line without ':': '{}'", quote(&line)))
        })?;
        let (name, value) = line.split_at(colon);
        let value = trim(value.get(1..).unwrap_or(&[]));
        if name.is_empty() || name.iter().any(|b| !b.is_ascii_graphic()) {
            return Err(ReadError::Bad(format!("bad header name '{}'", quote(name))));
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let valid =
                !value.is_empty() && value.len() <= 19 && value.iter().all(u8::is_ascii_digit);
            let n = std::str::from_utf8(value)
                .ok()
                .filter(|_| valid)
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| ReadError::Bad(format!("bad Content-Length '{}'", quote(value))))?;
            if head.content_length.is_some_and(|old| old != n) {
                return Err(ReadError::Bad("conflicting Content-Length headers".into()));
            }
            head.content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            for coding in value.split(|&b| b == b',').map(trim) {
                if coding.eq_ignore_ascii_case(b"chunked") {
                    head.chunked = true;
                } else if !coding.eq_ignore_ascii_case(b"identity") {
                    return Err(ReadError::Bad(format!(
                        "unsupported Transfer-Encoding '{}'",
                        quote(value)
                    )));
                }
            }
        } else if name.eq_ignore_ascii_case(b"content-encoding")
            && !value.is_empty()
            && !value.eq_ignore_ascii_case(b"identity")
        {
            return Err(ReadError::Bad(format!(
                "unsupported Content-Encoding '{}' (we asked for identity)",
                quote(value)
            )));
        }
        head.response.headers.push((
            String::from_utf8_lossy(name).to_ascii_lowercase(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
}

/// `HTTP/1.x NNN reason` → (status, reason).
fn parse_status_line(line: &[u8]) -> Result<(u16, String), ReadError> {
    let bad = || ReadError::Bad(format!("bad status line '{}'", quote(line)));
    let rest = line
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| line.strip_prefix(b"HTTP/1.0 "))
        .ok_or_else(bad)?;
    let code = rest.get(..3).ok_or_else(bad)?;
    if !code.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if !(100..=599).contains(&status) {
        return Err(bad());
    }
    let reason = match rest.get(3..) {
        None | Some([]) => String::new(),
        Some([b' ', reason @ ..]) => quote(trim(reason)),
        Some(_) => return Err(bad()),
    };
    Ok((status, reason))
}

fn read_chunked<S: Read>(
    input: &mut Input<'_, S>,
    limits: ResponseLimits,
) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let (line, _) = input.line(MAX_CHUNK_LINE, || {
            ReadError::Bad("chunk size line too long".into())
        })?;
        let size_field = match line.iter().position(|&b| b == b';') {
            Some(i) => line.get(..i).unwrap_or(&[]),
            None => &line[..],
        };
        let size = parse_hex(trim(size_field))
            .ok_or_else(|| ReadError::Bad(format!("bad chunk size '{}'", quote(&line))))?;
        if size == 0 {
            // Trailer fields until an empty line; a server that just closes is fine too.
            let mut used = 0;
            loop {
                match input.line(limits.max_head.saturating_sub(used), || {
                    ReadError::HeadTooLarge
                }) {
                    Ok((l, n)) if !l.is_empty() => used += n,
                    Ok(_) | Err(ReadError::Closed) => return Ok(body),
                    Err(e) => return Err(e),
                }
            }
        }
        if size > limits.max_body.saturating_sub(body.len()) as u64 {
            return Err(ReadError::BodyTooLarge);
        }
        input.take(size as usize, &mut body)?;
        let (end, _) = input.line(2, || ReadError::Bad("chunk not followed by CRLF".into()))?;
        if !end.is_empty() {
            return Err(ReadError::Bad("chunk not followed by CRLF".into()));
        }
    }
}

fn parse_hex(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        let v = (d as char).to_digit(16)?;
        Some(n * 16 + u64::from(v))
    })
}

fn trim(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

/// A read buffer over the stream: lines for the head and chunk sizes,
/// counted bytes for bodies. Holds at most one line or one read ahead.
struct Input<'s, S> {
    stream: &'s mut S,
    buf: Vec<u8>,
    pos: usize,
}

impl<S: Read> Input<'_, S> {
    fn buffered(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    /// Reads more bytes; `Ok(false)` at the end of the stream.
    fn fill(&mut self) -> Result<bool, ReadError> {
        if self.pos > 0 {
            self.buf.drain(..self.pos.min(self.buf.len()));
            self.pos = 0;
        }
        let old_len = self.buf.len();
        self.buf.resize(old_len + READ_CHUNK, 0);
        loop {
            let res = match self.buf.get_mut(old_len..) {
                Some(space) => self.stream.read(space),
                None => Ok(0),
            };
            match res {
                Ok(n) => {
                    self.buf.truncate(old_len + n.min(READ_CHUNK));
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(old_len);
                    return Err(ReadError::Io(e));
                }
            }
        }
    }

    /// The next line without "\n" or "\r\n", and the bytes it took. A line
    /// longer than `max` bytes (terminator included) is `too_long`; the end
    /// of the stream before "\n" is [`ReadError::Closed`].
    fn line(
        &mut self,
        max: usize,
        too_long: impl FnOnce() -> ReadError,
    ) -> Result<(Vec<u8>, usize), ReadError> {
        let mut scanned = 0;
        loop {
            let avail = self.buffered();
            let unscanned = avail.get(scanned..).unwrap_or(&[]);
            if let Some(i) = unscanned.iter().position(|&b| b == b'\n') {
                let used = scanned + i + 1;
                if used > max {
                    return Err(too_long());
                }
                let mut line = avail.get(..scanned + i).unwrap_or(&[]);
                if let [rest @ .., b'\r'] = line {
                    line = rest;
                }
                let line = line.to_vec();
                self.pos += used;
                return Ok((line, used));
            }
            scanned = avail.len();
            if scanned >= max {
                return Err(too_long());
            }
            if !self.fill()? {
                return Err(ReadError::Closed);
            }
        }
    }

    /// Moves exactly `n` bytes to `out`.
    fn take(&mut self, mut n: usize, out: &mut Vec<u8>) -> Result<(), ReadError> {
        loop {
            let avail = self.buffered();
            let k = n.min(avail.len());
            out.extend_from_slice(avail.get(..k).unwrap_or(&[]));
            self.pos += k;
            n -= k;
            if n == 0 {
                return Ok(());
            }
            if !self.fill()? {
                return Err(ReadError::Closed);
            }
        }
    }

    /// Everything until the end of the stream, at most `max` bytes.
    fn take_to_end(&mut self, max: usize) -> Result<Vec<u8>, ReadError> {
        let mut out = Vec::new();
        loop {
            let avail = self.buffered();
            if out.len() + avail.len() > max {
                return Err(ReadError::BodyTooLarge);
            }
            out.extend_from_slice(avail);
            self.pos = self.buf.len();
            if !self.fill()? {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_with_each_keep_set() {
        let s = "a b\u{e9}\n~:/[]&";
        assert_eq!(
            percent_encode(s, KEEP_UNRESERVED),
            "a%20b%C3%A9%0A~%3A%2F%5B%5D%26"
        );
        assert_eq!(percent_encode(s, KEEP_PATH), "a%20b%C3%A9%0A~%3A/%5B%5D%26");
        assert_eq!(percent_encode(s, KEEP_URL), "a%20b%C3%A9%0A~:/[]%26");
        let mut out = String::from("x=");
        percent_encode_into(&[0, 0xff, b'A'], KEEP_UNRESERVED, &mut out);
        assert_eq!(out, "x=%00%FFA");
        for keep in [KEEP_UNRESERVED, KEEP_PATH, KEEP_URL] {
            assert_eq!(percent_decode(&percent_encode(s, keep)).as_deref(), Some(s));
        }
    }

    #[test]
    fn decodes_and_refuses_broken_escapes() {
        assert_eq!(percent_decode("a+b%20c").as_deref(), Some("a b c"));
        for bad in ["%", "%4", "%zz", "%ff", "a%e9"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn timeouts() {
        assert!(is_timeout(&io::ErrorKind::WouldBlock.into()));
        assert!(is_timeout(&io::ErrorKind::TimedOut.into()));
        assert!(!is_timeout(&io::ErrorKind::ConnectionReset.into()));
    }

    const LIMITS: ResponseLimits = ResponseLimits {
        max_head: 256,
        max_body: 64,
    };

    fn read(raw: &[u8]) -> Result<Response, ReadError> {
        read_response(&mut &raw[..], LIMITS)
    }

    /// A reader that hands out one byte per call: every boundary is crossed.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((b, rest)), Some(out)) => {
                    *out = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn bodies_by_length_chunks_and_close() {
        let r = read(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhelloextra",
        )
        .unwrap();
        assert_eq!(
            (r.status, r.reason.as_str(), &r.body[..]),
            (200, "OK", &b"hello"[..])
        );
        assert_eq!(r.header("content-type"), Some("text/plain"));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: 1\r\n\r\n";
        assert_eq!(read(chunked).unwrap().body, b"abcde");
        let mut trickle = Trickle(chunked);
        assert_eq!(read_response(&mut trickle, LIMITS).unwrap().body, b"abcde");
        assert_eq!(
            read(b"HTTP/1.0 200 OK\n\nuntil close").unwrap().body,
            b"until close"
        );
        let r =
            read(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nignored").unwrap();
        assert_eq!((r.status, r.body.len()), (204, 0));
    }

    #[test]
    fn a_redirect_body_is_not_read() {
        let r = read(b"HTTP/1.1 302 Found\r\nLocation: http://b/\r\n\r\n").unwrap();
        assert_eq!((r.status, r.redirect()), (302, Some("http://b/")));
        // Without a Location it is an answer like any other.
        let r = read(b"HTTP/1.1 302 Found\r\nContent-Length: 2\r\n\r\nno").unwrap();
        assert_eq!((r.redirect(), &r.body[..]), (None, &b"no"[..]));
    }

    #[test]
    fn limits_and_malformed_responses_are_errors() {
        let big_head = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(300));
        assert!(matches!(
            read(big_head.as_bytes()),
            Err(ReadError::HeadTooLarge)
        ));
        let claimed = b"HTTP/1.1 200 OK\r\nContent-Length: 65\r\n\r\n";
        assert!(matches!(read(claimed), Err(ReadError::BodyTooLarge)));
        let long = [&b"HTTP/1.1 200 OK\r\n\r\n"[..], &[b'x'; 65]].concat();
        assert!(matches!(read(&long), Err(ReadError::BodyTooLarge)));
        let chunks = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n";
        assert!(matches!(read(chunks), Err(ReadError::BodyTooLarge)));
        assert!(matches!(
            read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"),
            Err(ReadError::Closed)
        ));
        assert!(matches!(read(b""), Err(ReadError::Closed)));
        for bad in [
            &b"garbage\r\n\r\n"[..],
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n folded\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 101 Switching\r\n\r\n",
        ] {
            assert!(
                matches!(read(bad), Err(ReadError::Bad(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn any_bytes_give_an_answer_or_an_error() {
        // A small deterministic walk over mutations of a valid response.
        let base = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let mut state = 7u64;
        for _ in 0..5_000 {
            let mut raw = base.to_vec();
            for _ in 0..3 {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let i = (state >> 33) as usize % raw.len();
                raw[i] = (state >> 17) as u8;
            }
            let cut = (state >> 40) as usize % (raw.len() + 1);
            let _ = read(&raw[..cut]);
        }
    }
}
