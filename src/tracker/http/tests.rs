//! Tests of the HTTP tracker client: URLs, the response reader over an
//! in-memory stream, [`fetch`] against loopback servers with canned and
//! hostile behaviour, and the bencoded responses.

use super::*;
use crate::bencode::Value;
use crate::tracker::{Event, Stats};
use std::io::Cursor;
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;

// ---------------------------------------------------------------------------
// URLs.

fn url(s: &str) -> HttpUrl {
    HttpUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn parse_urls() {
    let u = url("http://Tracker.Example.org:8080/announce?passkey=abc#frag");
    assert_eq!(u.host(), "tracker.example.org");
    assert_eq!(u.port(), 8080);
    assert_eq!(u.path(), "/announce");
    assert_eq!(u.query(), Some("passkey=abc"));
    assert_eq!(u.request_target(), "/announce?passkey=abc");
    assert_eq!(u.host_header(), "tracker.example.org:8080");
    assert_eq!(
        u.to_string(),
        "http://tracker.example.org:8080/announce?passkey=abc"
    );

    let u = url("HTTP://t.example");
    assert_eq!((u.port(), u.path(), u.query()), (80, "/", None));
    assert_eq!(u.host_header(), "t.example");
    assert_eq!(u.to_string(), "http://t.example/");

    let u = url("http://t.example?x=1");
    assert_eq!(u.request_target(), "/?x=1");

    let u = url("http://[2001:DB8::1]:6969/a");
    assert_eq!(u.host(), "2001:db8::1");
    assert_eq!(u.host_header(), "[2001:db8::1]:6969");
    assert_eq!(u.to_string(), "http://[2001:db8::1]:6969/a");

    let u = url("http://10.0.0.1/announce?");
    assert_eq!(u.query(), Some(""));
    let u = url("  http://t.example/a?b=c?d  ");
    assert_eq!(u.query(), Some("b=c?d"));
}

#[test]
fn https_urls() {
    let res = HttpUrl::parse("HTTPS://T.example/announce?x=1");
    if !cfg!(feature = "https") {
        assert_eq!(res, Err(TrackerError::HttpsUnsupported));
        assert_eq!(
            TrackerError::HttpsUnsupported.to_string(),
            "https trackers are not supported: peerlet was built without the `https` feature"
        );
        return;
    }
    let u = res.unwrap();
    assert_eq!((u.scheme(), u.port()), (Scheme::Https, 443));
    assert_eq!(u.host_header(), "t.example");
    assert_eq!(u.to_string(), "https://t.example/announce?x=1");
    let u = url("https://t.example:80/announce");
    assert_eq!(u.host_header(), "t.example:80");
    assert_eq!(u.to_string(), "https://t.example:80/announce");
    // Redirect locations keep the scheme unless they name one.
    assert_eq!(u.join("/b").unwrap().to_string(), "https://t.example:80/b");
    assert_eq!(
        u.join("//u.example/b").unwrap().to_string(),
        "https://u.example/b"
    );
    assert_eq!(u.join("http://u.example/b").unwrap().scheme(), Scheme::Http);
    let base = url("http://t.example/a");
    assert_eq!(
        base.join("https://u.example/b").unwrap().to_string(),
        "https://u.example/b"
    );
}

#[test]
fn refuse_bad_urls() {
    for bad in [
        "",
        "t.example/announce",
        "udp://t.example:80",
        "ftp://t.example/",
        "http://",
        "http:///announce",
        "http://t.example:/a",
        "http://t.example:0/a",
        "http://t.example:65536/a",
        "http://t.example:80a/a",
        "http://t.example:+80/a",
        "http://user:pw@t.example/a",
        "http://t example/a",
        "http://t.example/a b",
        "http://t.example/a\r\nX-Injected: 1",
        "http://t.example/\u{e9}",
        "http://ex\u{e4}mple.org/",
        "http://[2001:db8::1/a",
        "http://[not-v6]/a",
        "http://[::1]x/a",
        "http://t.exa%mple/a",
        "http://a:b:c/",
    ] {
        assert!(HttpUrl::parse(bad).is_err(), "accepted {bad:?}");
    }
    let long = format!("http://t.example/{}", "a".repeat(MAX_URL));
    assert!(HttpUrl::parse(&long).is_err());
}

#[test]
fn join_redirect_locations() {
    let base = url("http://t.example:8080/dir/announce?x=1");
    assert_eq!(
        base.join("/other?y=2").unwrap().to_string(),
        "http://t.example:8080/other?y=2"
    );
    assert_eq!(
        base.join("announce2").unwrap().to_string(),
        "http://t.example:8080/dir/announce2"
    );
    assert_eq!(
        base.join("http://u.example/a").unwrap().to_string(),
        "http://u.example/a"
    );
    assert_eq!(
        base.join("//u.example:81/a").unwrap().to_string(),
        "http://u.example:81/a"
    );
    if !cfg!(feature = "https") {
        assert_eq!(
            base.join("https://u.example/a"),
            Err(TrackerError::HttpsUnsupported)
        );
    }
    assert!(base.join("").is_err());
    assert!(base.join("/a\u{1}b").is_err());
}

fn params(event: Event) -> AnnounceParams {
    let mut info_hash = [0u8; 20];
    info_hash[0] = 0x00;
    info_hash[1] = b'A';
    info_hash[2] = 0xff;
    info_hash[3] = b'~';
    info_hash[4] = b' ';
    AnnounceParams {
        info_hash,
        peer_id: *b"-PL0100-abc.def_ghi~",
        port: 6881,
        stats: Stats {
            uploaded: 1,
            downloaded: 2,
            left: 3,
        },
        event,
        num_want: 50,
        key: 0xbeef,
        tracker_id: None,
    }
}

const ENCODED_HASH: &str = "%00A%FF~%20%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00";

#[test]
fn announce_urls() {
    let base = url("http://t.example/announce");
    assert_eq!(
        announce_url(&base, &params(Event::Started)),
        format!(
            "http://t.example/announce?info_hash={ENCODED_HASH}&peer_id=-PL0100-abc.def_ghi~\
             &port=6881&uploaded=1&downloaded=2&left=3&compact=1&numwant=50&key=0000beef&event=started"
        )
    );
    // An existing query is kept; a regular announce has no event.
    let base = url("http://t.example:2710/pk/announce?passkey=s3cr3t");
    let u = announce_url(&base, &params(Event::None));
    assert!(u.starts_with("http://t.example:2710/pk/announce?passkey=s3cr3t&info_hash="));
    assert!(!u.contains("event="));
    // An empty query or a trailing '&' takes no extra separator.
    assert!(announce_url(&url("http://t/a?"), &params(Event::None))
        .starts_with("http://t/a?info_hash="));
    assert!(announce_url(&url("http://t/a?x=1&"), &params(Event::None))
        .starts_with("http://t/a?x=1&info_hash="));
    // The tracker id goes back, encoded; stopped events say so.
    let mut p = params(Event::Stopped);
    p.tracker_id = Some(b"id 1".to_vec());
    let u = announce_url(&url("http://t/a"), &p);
    assert!(u.ends_with("&event=stopped&trackerid=id%201"), "{u}");
    // Whatever the URL, it parses back.
    assert!(HttpUrl::parse(&u).is_ok());
}

#[test]
fn scrape_urls() {
    let hash = [0xab; 20];
    let enc = "%AB".repeat(20);
    assert_eq!(
        scrape_url(&url("http://t.example/announce"), &[hash]).unwrap(),
        format!("http://t.example/scrape?info_hash={enc}")
    );
    assert_eq!(
        scrape_url(
            &url("http://t.example:81/x/announce.php?pk=1"),
            &[hash, hash]
        )
        .unwrap(),
        format!("http://t.example:81/x/scrape.php?pk=1&info_hash={enc}&info_hash={enc}")
    );
    for no_scrape in [
        "http://t.example/",
        "http://t.example/a",
        "http://t.example/announce/x",
        "http://t.example/x/Announce",
        "http://t.example/xannounce",
    ] {
        assert_eq!(scrape_url(&url(no_scrape), &[hash]), None, "{no_scrape}");
    }
}

// ---------------------------------------------------------------------------
// The response reader over an in-memory stream.

/// A stream that serves `input` in reads of at most `chunk` bytes, then
/// either ends or fails with `WouldBlock` (a read timeout).
struct Mock {
    input: Cursor<Vec<u8>>,
    chunk: usize,
    then_timeout: bool,
    written: Vec<u8>,
}

impl Mock {
    fn new(input: &[u8]) -> Mock {
        Mock {
            input: Cursor::new(input.to_vec()),
            chunk: 7,
            then_timeout: false,
            written: Vec::new(),
        }
    }
}

impl Read for Mock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.chunk);
        let got = self.input.read(&mut buf[..n])?;
        if got == 0 && self.then_timeout {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(got)
    }
}

impl Write for Mock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn check_get(response: &[u8]) -> Result<HttpResponse, TrackerError> {
    let res = get(&mut Mock::new(response), &url("http://t.example/announce"));
    // The same bytes in one read give the same answer.
    let mut big = Mock::new(response);
    big.chunk = usize::MAX;
    assert_eq!(res, get(&mut big, &url("http://t.example/announce")));
    res
}

fn body(status: u16, bytes: &[u8]) -> Result<HttpResponse, TrackerError> {
    Ok(HttpResponse::Body {
        status,
        reason: if status == 200 {
            "OK".into()
        } else {
            String::new()
        },
        body: bytes.to_vec(),
    })
}

#[test]
fn request_bytes() {
    let mut mock = Mock::new(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    get(&mut mock, &url("http://[::1]:8080/announce?a=%20b")).unwrap();
    assert_eq!(
        String::from_utf8(mock.written).unwrap(),
        format!(
            "GET /announce?a=%20b HTTP/1.1\r\nHost: [::1]:8080\r\nUser-Agent: {USER_AGENT}\r\n\
             Accept-Encoding: identity\r\nConnection: close\r\n\r\n"
        )
    );
}

#[test]
fn content_length_body() {
    assert_eq!(
        check_get(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"),
        body(200, b"hello")
    );
    // Extra bytes after the announced length are ignored (the connection closes).
    assert_eq!(
        check_get(b"HTTP/1.1 200 OK\r\ncontent-length:2\r\n\r\nhello"),
        body(200, b"he")
    );
    // Bare LF line ends and HTTP/1.0 are accepted; a missing reason too.
    assert_eq!(
        check_get(b"HTTP/1.0 200\nContent-Length: 1\n\nx"),
        Ok(HttpResponse::Body {
            status: 200,
            reason: String::new(),
            body: b"x".to_vec()
        })
    );
    // The same length twice is fine.
    assert_eq!(
        check_get(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"),
        body(200, b"x")
    );
}

#[test]
fn body_until_close() {
    assert_eq!(
        check_get(b"HTTP/1.1 200 OK\r\n\r\nd8:intervali1800ee"),
        body(200, b"d8:intervali1800ee")
    );
    assert_eq!(check_get(b"HTTP/1.1 200 OK\r\n\r\n"), body(200, b""));
}

#[test]
fn chunked_body() {
    let response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        5\r\nhello\r\n\
        1;name=value\r\n \r\n\
        A \r\n0123456789\r\n\
        0\r\nX-Trailer: 1\r\n\r\n";
    assert_eq!(check_get(response), body(200, b"hello 0123456789"));
    // Chunked wins over Content-Length; a server that closes after the last chunk is fine.
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n";
    assert_eq!(check_get(response), body(200, b"abc"));
}

#[test]
fn interim_and_empty_responses() {
    assert_eq!(
        check_get(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        body(200, b"ok")
    );
    assert_eq!(
        check_get(b"HTTP/1.1 204 No Content\r\n\r\n"),
        Ok(HttpResponse::Body {
            status: 204,
            reason: "No Content".into(),
            body: Vec::new()
        })
    );
    let many = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(crate::http::MAX_INTERIM + 1);
    assert!(matches!(check_get(&many), Err(TrackerError::BadHttp(_))));
    assert!(matches!(
        check_get(b"HTTP/1.1 101 Switching Protocols\r\n\r\n"),
        Err(TrackerError::BadHttp(_))
    ));
}

#[test]
fn redirects_are_returned() {
    for status in [301, 302, 303, 307, 308] {
        let response = format!("HTTP/1.1 {status} Moved\r\nLocation: /new?x=1\r\n\r\nignored");
        assert_eq!(
            check_get(response.as_bytes()),
            Ok(HttpResponse::Redirect {
                status,
                location: "/new?x=1".into()
            })
        );
    }
    // Without a Location it is just a status.
    assert_eq!(
        check_get(b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n"),
        Ok(HttpResponse::Body {
            status: 302,
            reason: "Found".into(),
            body: Vec::new()
        })
    );
}

#[test]
fn malformed_responses() {
    for bad in [
        &b"hello world\r\n\r\n"[..],
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 999 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\nxx",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
    ] {
        let res = check_get(bad);
        assert!(
            matches!(res, Err(TrackerError::BadHttp(_))),
            "{:?}: {res:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(check_get(b""), Err(TrackerError::Closed));
}

#[test]
fn truncated_responses_are_errors() {
    let cl = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789".to_vec();
    let chunked =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n"
            .to_vec();
    for i in 0..cl.len() {
        assert!(check_get(&cl[..i]).is_err(), "content-length prefix {i}");
    }
    // After "0\r\n" a closed connection is an accepted end.
    let last = chunked.windows(3).position(|w| w == b"0\r\n").unwrap() + 3;
    for i in 0..last {
        assert!(check_get(&chunked[..i]).is_err(), "chunked prefix {i}");
    }
    for i in last..=chunked.len() {
        assert_eq!(
            check_get(&chunked[..i]),
            body(200, b"abcdef"),
            "chunked prefix {i}"
        );
    }
    assert_eq!(check_get(&cl[..cl.len() - 1]), Err(TrackerError::Closed));
}

#[test]
fn size_limits() {
    // Rejected on the header alone: nothing of the body is read.
    let claim = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY + 1
    );
    assert_eq!(check_get(claim.as_bytes()), Err(TrackerError::TooLarge));
    let exact = format!("HTTP/1.1 200 OK\r\nContent-Length: {MAX_BODY}\r\n\r\n");
    let mut exact = exact.into_bytes();
    exact.resize(exact.len() + MAX_BODY, b'x');
    assert!(
        matches!(check_get(&exact), Ok(HttpResponse::Body { body, .. }) if body.len() == MAX_BODY)
    );

    let mut until_close = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    until_close.resize(until_close.len() + MAX_BODY + 1, b'x');
    assert_eq!(check_get(&until_close), Err(TrackerError::TooLarge));

    let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..(MAX_BODY / 4096 + 1) {
        chunked.extend_from_slice(b"1000\r\n");
        chunked.resize(chunked.len() + 4096, b'x');
        chunked.extend_from_slice(b"\r\n");
    }
    assert_eq!(check_get(&chunked), Err(TrackerError::TooLarge));
    let huge_chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffff\r\n";
    assert_eq!(check_get(huge_chunk), Err(TrackerError::TooLarge));

    let mut headers = b"HTTP/1.1 200 OK\r\n".to_vec();
    while headers.len() <= MAX_HEADERS {
        headers.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    headers.extend_from_slice(b"\r\n");
    assert_eq!(check_get(&headers), Err(TrackerError::HeadersTooLarge));
    let mut one_line = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
    one_line.resize(one_line.len() + 100_000, b'a');
    assert_eq!(check_get(&one_line), Err(TrackerError::HeadersTooLarge));
    let mut long_chunk_line = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;".to_vec();
    long_chunk_line.resize(long_chunk_line.len() + 5000, b'a');
    assert!(matches!(
        check_get(&long_chunk_line),
        Err(TrackerError::BadHttp(_))
    ));
}

#[test]
fn read_timeout_is_a_timeout() {
    let mut mock = Mock::new(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    mock.then_timeout = true;
    assert_eq!(
        get(&mut mock, &url("http://t/")),
        Err(TrackerError::Timeout(None))
    );
}

#[test]
fn garbage_never_panics() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let pieces: [&[u8]; 12] = [
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.0 302 x\r\n",
        b"Content-Length: 5\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Location: /x\r\n",
        b"\r\n",
        b"5\r\n",
        b"0\r\n",
        b"hello",
        b"\n",
        b"\xff\x00:",
        b"ffffffffff\r\n",
    ];
    for _ in 0..5000 {
        let mut input = Vec::new();
        for _ in 0..(next() % 12) {
            input.extend_from_slice(pieces[(next() % 12) as usize]);
        }
        let mut mock = Mock::new(&input);
        mock.chunk = 1 + (next() % 9) as usize;
        let _ = get(&mut mock, &url("http://t/"));
    }
}

// ---------------------------------------------------------------------------
// fetch against loopback servers.

enum Serve {
    /// Read the request, send these bytes, close.
    Reply(Vec<u8>),
    /// Read the request and never answer (until the client gives up).
    Silent,
    /// A 200 response whose body never ends, as fast as possible.
    Endless,
    /// These bytes, then one more byte every 100 ms, forever.
    Drip(Vec<u8>),
}

/// A server on [`IP`] that handles one connection per entry of `plan`,
/// in order, and reports each request head it read.
fn server(plan: Vec<Serve>) -> (u16, mpsc::Receiver<String>) {
    serve_plan(IP, plan, serve_one)
}

/// Binds `ip`, port 0 (a loopback address), and runs `handle` on a thread
/// for each accepted connection, one per entry of `plan`.
fn serve_plan<H>(ip: &str, plan: Vec<Serve>, handle: H) -> (u16, mpsc::Receiver<String>)
where
    H: Fn(TcpStream, Serve, &mpsc::Sender<String>) + Send + 'static,
{
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for serve in plan {
            let Ok((s, _)) = listener.accept() else {
                return;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
            handle(s, serve, &tx);
        }
    });
    (port, rx)
}

/// Reads a request head from `s`, reports it, and answers as `serve` says.
fn serve_one<S: Read + Write>(mut s: S, serve: Serve, tx: &mpsc::Sender<String>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && matches!(s.read(&mut byte), Ok(1)) {
        head.push(byte[0]);
    }
    let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
    match serve {
        Serve::Reply(bytes) => {
            let _ = s.write_all(&bytes).and_then(|()| s.flush());
        }
        Serve::Silent => {
            let mut sink = [0u8; 64];
            while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
        }
        Serve::Endless => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
            let block = [b'x'; 8192];
            while s.write_all(&block).is_ok() {}
        }
        Serve::Drip(bytes) => {
            let _ = s.write_all(&bytes);
            loop {
                thread::sleep(Duration::from_millis(100));
                if s.write_all(b"x").and_then(|()| s.flush()).is_err() {
                    break;
                }
            }
        }
    }
}

fn reply(s: &str) -> Serve {
    Serve::Reply(s.as_bytes().to_vec())
}

const TIMEOUT: Duration = Duration::from_secs(5);

/// The address of the tests' servers (this test suite's share of loopback;
/// the test certificates name it).
const IP: &str = "127.0.51.1";

/// [`super::fetch`] with roots that must not be needed (plain HTTP).
fn fetch(url: &str, timeout: Duration) -> Result<Vec<u8>, TrackerError> {
    let unused =
        crate::tls::LazyRoots::new(|| Err(crate::tls::Error::NoRoots("(plain HTTP test)".into())));
    super::fetch(url, timeout, &unused)
}

/// [`super::fetch`].
#[cfg(feature = "https")]
fn fetch_with(
    url: &str,
    timeout: Duration,
    roots: &crate::tls::LazyRoots,
) -> Result<Vec<u8>, TrackerError> {
    super::fetch(url, timeout, roots)
}

#[test]
fn fetch_ok() {
    let (port, requests) = server(vec![reply(
        "HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\nd8:intervali900ee",
    )]);
    let body = fetch(&format!("http://{IP}:{port}/announce?x=1"), TIMEOUT).unwrap();
    assert_eq!(body, b"d8:intervali900ee");
    let request = requests.recv().unwrap();
    assert!(
        request.starts_with("GET /announce?x=1 HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(request.contains(&format!("\r\nHost: {IP}:{port}\r\n")));
    assert!(request.contains("\r\nConnection: close\r\n"));
    assert!(request.contains("\r\nAccept-Encoding: identity\r\n"));
    assert!(request.contains("\r\nUser-Agent: peerlet/"));
}

#[test]
fn fetch_chunked_and_until_close() {
    let (port, _) = server(vec![
        reply("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nd8\r\nf\r\n:intervali900ee\r\n0\r\n\r\n"),
        reply("HTTP/1.0 200 OK\r\n\r\nd8:intervali900ee"),
    ]);
    let u = format!("http://{IP}:{port}/announce");
    assert_eq!(fetch(&u, TIMEOUT).unwrap(), b"d8:intervali900ee");
    assert_eq!(fetch(&u, TIMEOUT).unwrap(), b"d8:intervali900ee");
}

#[test]
fn fetch_garbage() {
    let (port, _) = server(vec![
        Serve::Reply(b"\x00\x01garbage that is not HTTP\r\n\r\n".to_vec()),
        reply(""),
    ]);
    let u = format!("http://{IP}:{port}/announce");
    assert!(matches!(fetch(&u, TIMEOUT), Err(TrackerError::BadHttp(_))));
    assert_eq!(fetch(&u, TIMEOUT), Err(TrackerError::Closed));
}

#[test]
fn fetch_status_and_failure_bodies() {
    let (port, _) = server(vec![
        reply("HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"),
        reply("HTTP/1.1 400 Bad Request\r\nContent-Length: 28\r\n\r\nd14:failure reason7:invalide"),
    ]);
    let u = format!("http://{IP}:{port}/announce");
    assert_eq!(
        fetch(&u, TIMEOUT),
        Err(TrackerError::Status(404, "Not Found".into()))
    );
    let body = fetch(&u, TIMEOUT).unwrap();
    assert_eq!(
        parse_announce(&body),
        Err(TrackerError::Failure("invalid".into()))
    );
}

#[test]
fn fetch_follows_redirects() {
    let (port, requests) = server(vec![
        reply("HTTP/1.1 302 Found\r\nLocation: /second\r\nContent-Length: 0\r\n\r\n"),
        reply("HTTP/1.1 301 Moved\r\nLocation: third?a=b\r\n\r\n"),
        reply("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    ]);
    let u = format!("http://{IP}:{port}/dir/first");
    assert_eq!(fetch(&u, TIMEOUT).unwrap(), b"ok");
    assert!(requests.recv().unwrap().starts_with("GET /dir/first "));
    assert!(requests.recv().unwrap().starts_with("GET /second "));
    assert!(requests.recv().unwrap().starts_with("GET /third?a=b "));
}

#[test]
fn fetch_redirect_loop() {
    // To itself: caught at once.
    let (port, _) = server(vec![reply(
        "HTTP/1.1 302 Found\r\nLocation: /announce\r\n\r\n",
    )]);
    let u = format!("http://{IP}:{port}/announce");
    assert_eq!(fetch(&u, TIMEOUT), Err(TrackerError::RedirectLoop));
    // Between two URLs.
    let (port, _) = server(vec![
        reply("HTTP/1.1 302 Found\r\nLocation: /b\r\n\r\n"),
        reply("HTTP/1.1 302 Found\r\nLocation: /a\r\n\r\n"),
    ]);
    let u = format!("http://{IP}:{port}/a");
    assert_eq!(fetch(&u, TIMEOUT), Err(TrackerError::RedirectLoop));
    // A chain that never ends: at most MAX_REDIRECTS followed.
    let plan = (1..=10)
        .map(|i| Serve::Reply(format!("HTTP/1.1 307 x\r\nLocation: /{i}\r\n\r\n").into_bytes()))
        .collect();
    let (port, requests) = server(plan);
    let u = format!("http://{IP}:{port}/0");
    assert_eq!(fetch(&u, TIMEOUT), Err(TrackerError::TooManyRedirects));
    assert_eq!(requests.try_iter().count(), MAX_REDIRECTS + 1);
}

#[cfg(not(feature = "https"))]
#[test]
fn fetch_redirect_to_https_needs_the_feature() {
    let (port, _) = server(vec![reply(
        "HTTP/1.1 302 Found\r\nLocation: https://t.example/announce\r\n\r\n",
    )]);
    let u = format!("http://{IP}:{port}/announce");
    assert_eq!(fetch(&u, TIMEOUT), Err(TrackerError::HttpsUnsupported));
}

#[test]
fn fetch_endless_body_is_cut() {
    let (port, _) = server(vec![Serve::Endless]);
    let start = Instant::now();
    let res = fetch(&format!("http://{IP}:{port}/announce"), TIMEOUT);
    assert_eq!(res, Err(TrackerError::TooLarge));
    assert!(start.elapsed() < TIMEOUT);
}

#[test]
fn fetch_silent_server_times_out() {
    let (port, _) = server(vec![Serve::Silent]);
    let start = Instant::now();
    let res = fetch(
        &format!("http://{IP}:{port}/announce"),
        Duration::from_millis(500),
    );
    let elapsed = start.elapsed();
    assert!(
        matches!(res, Err(TrackerError::Timeout(Some(_)))),
        "{res:?}"
    );
    assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    // "timed out after 0.5 s", give or take a loaded machine.
    let message = res.unwrap_err().to_string();
    assert!(message.starts_with("timed out after "), "{message}");
}

#[test]
fn fetch_trickling_server_times_out() {
    // Each read gets a byte before the per-read timeout; only the overall deadline stops it.
    let (port, _) = server(vec![Serve::Drip(b"HTTP/1.1 200 OK\r\n\r\n".to_vec())]);
    let start = Instant::now();
    let res = fetch(
        &format!("http://{IP}:{port}/announce"),
        Duration::from_millis(800),
    );
    assert!(
        matches!(res, Err(TrackerError::Timeout(Some(_)))),
        "{res:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(3));
    // Headers that never end stop at the deadline as well.
    let (port, _) = server(vec![Serve::Drip(b"HTTP/1.1 200 OK\r\nX-Slow: ".to_vec())]);
    let res = fetch(
        &format!("http://{IP}:{port}/announce"),
        Duration::from_millis(500),
    );
    assert!(
        matches!(res, Err(TrackerError::Timeout(Some(_)))),
        "{res:?}"
    );
}

#[test]
fn fetch_connection_refused() {
    let port = {
        let l = TcpListener::bind((IP, 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    let res = fetch(&format!("http://{IP}:{port}/announce"), TIMEOUT);
    assert!(matches!(res, Err(TrackerError::Connect(_))), "{res:?}");
}

#[test]
fn fetch_bad_urls_without_network() {
    // With the feature this URL would be resolved: not in a test.
    #[cfg(not(feature = "https"))]
    assert_eq!(
        fetch("https://t.example/announce", TIMEOUT),
        Err(TrackerError::HttpsUnsupported)
    );
    assert!(matches!(
        fetch("udp://t.example:80", TIMEOUT),
        Err(TrackerError::BadUrl(_))
    ));
}

// ---------------------------------------------------------------------------
// HTTPS (feature `https`): loopback TLS servers (rustls with ring: another
// implementation than our RustCrypto provider on the other side) with the
// test certificates of tests/fixtures/tls/ (made by make.sh there: CAs and
// server certificates for 127.0.51.1 to 127.0.51.8, not 127.0.51.9).

#[cfg(feature = "https")]
mod https {
    use super::*;
    use crate::tls::{LazyRoots, Roots};
    use rustls::crypto::ring as ring_provider;
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::{ServerConfig, ServerConnection, StreamOwned, SupportedCipherSuite};
    use std::sync::Arc;

    const CA: &[u8] = include_bytes!("../../../tests/fixtures/tls/ca.pem");
    const CERT: &[u8] = include_bytes!("../../../tests/fixtures/tls/tracker.pem");
    const KEY: &[u8] = include_bytes!("../../../tests/fixtures/tls/tracker.key");
    const RSA_CA: &[u8] = include_bytes!("../../../tests/fixtures/tls/rsa-ca.pem");
    const RSA_CERT: &[u8] = include_bytes!("../../../tests/fixtures/tls/rsa-tracker.pem");
    const RSA_KEY: &[u8] = include_bytes!("../../../tests/fixtures/tls/rsa-tracker.key");

    fn roots(pem: &[u8]) -> LazyRoots {
        LazyRoots::ready(Roots::from_pem(&[pem.to_vec()], "test").unwrap())
    }

    /// The ECDSA test CA and the RSA test CA.
    fn test_roots() -> LazyRoots {
        LazyRoots::ready(Roots::from_pem(&[CA.to_vec(), RSA_CA.to_vec()], "test").unwrap())
    }

    /// What the test server speaks.
    struct Tls {
        cert: &'static [u8],
        key: &'static [u8],
        /// Only these suites (TLS 1.2 ones make a TLS 1.2 server); empty: ring's.
        suites: Vec<SupportedCipherSuite>,
        /// Only P-256 for key exchange (else ring's: X25519 first).
        p256_only: bool,
    }

    const ECDSA: Tls = Tls {
        cert: CERT,
        key: KEY,
        suites: Vec::new(),
        p256_only: false,
    };

    /// [`serve_plan`] speaking TLS as `tls` says, on `ip`; ends each
    /// connection with `close_notify`.
    fn tls_server_with(ip: &str, tls: Tls, plan: Vec<Serve>) -> (u16, mpsc::Receiver<String>) {
        let cert = CertificateDer::from_pem_slice(tls.cert).unwrap();
        let key = PrivateKeyDer::from_pem_slice(tls.key).unwrap();
        let mut provider = ring_provider::default_provider();
        if !tls.suites.is_empty() {
            provider.cipher_suites = tls.suites.clone();
        }
        if tls.p256_only {
            provider.kx_groups = vec![ring_provider::kx_group::SECP256R1];
        }
        let tls12 = tls
            .suites
            .iter()
            .any(|s| matches!(s, SupportedCipherSuite::Tls12(_)));
        let versions: &[&rustls::SupportedProtocolVersion] = if tls12 {
            &[&rustls::version::TLS12]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let config = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        let config = Arc::new(config);
        serve_plan(ip, plan, move |tcp, serve, tx| {
            let conn = ServerConnection::new(Arc::clone(&config)).unwrap();
            let mut tls = StreamOwned::new(conn, tcp);
            serve_one(&mut tls, serve, tx);
            tls.conn.send_close_notify();
            let _ = tls.flush();
        })
    }

    fn tls_server(plan: Vec<Serve>) -> (u16, mpsc::Receiver<String>) {
        tls_server_with(IP, ECDSA, plan)
    }

    fn ok() -> Serve {
        reply("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    }

    #[test]
    fn https_fetch() {
        let body = b"d8:intervali900e5:peers6:\x7f\x00\x00\x01\x1a\xe1e";
        let mut ok =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        ok.extend_from_slice(body);
        let (port, requests) = tls_server(vec![
            Serve::Reply(ok),
            // Framed by the end of the connection: fine after close_notify.
            reply("HTTP/1.0 200 OK\r\n\r\nd8:intervali60ee"),
        ]);
        let roots = roots(CA);
        let u = format!("https://{IP}:{port}/announce?x=1");
        let got = fetch_with(&u, TIMEOUT, &roots).unwrap();
        assert_eq!(got, body);
        let res = parse_announce(&got).unwrap();
        assert_eq!(res.interval, Some(900));
        assert_eq!(res.peers, vec!["127.0.0.1:6881".parse().unwrap()]);
        let request = requests.recv().unwrap();
        assert!(
            request.starts_with("GET /announce?x=1 HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains(&format!("\r\nHost: {IP}:{port}\r\n")));
        assert_eq!(
            fetch_with(&u, TIMEOUT, &roots).unwrap(),
            b"d8:intervali60ee"
        );
    }

    /// Every suite, key exchange and signature kind the provider offers,
    /// against ring: TLS 1.3 with X25519 and P-256, each TLS 1.2 suite, an
    /// ECDSA P-256 certificate under a P-384 CA, an RSA one (PSS in the
    /// handshake, PKCS#1 in the chain).
    #[test]
    fn https_every_suite_against_ring() {
        use ring_provider::cipher_suite as cs;
        let ecdsa = |suites: Vec<SupportedCipherSuite>, p256_only| Tls {
            cert: CERT,
            key: KEY,
            suites,
            p256_only,
        };
        let rsa = |suites: Vec<SupportedCipherSuite>| Tls {
            cert: RSA_CERT,
            key: RSA_KEY,
            suites,
            p256_only: false,
        };
        let cases: Vec<(&str, Tls)> = vec![
            (
                "1.3 AES-128-GCM X25519",
                ecdsa(vec![cs::TLS13_AES_128_GCM_SHA256], false),
            ),
            (
                "1.3 AES-256-GCM P-256",
                ecdsa(vec![cs::TLS13_AES_256_GCM_SHA384], true),
            ),
            (
                "1.3 ChaCha20",
                ecdsa(vec![cs::TLS13_CHACHA20_POLY1305_SHA256], false),
            ),
            ("1.3 RSA", rsa(vec![cs::TLS13_AES_128_GCM_SHA256])),
            (
                "1.2 ECDSA AES-128",
                ecdsa(vec![cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256], false),
            ),
            (
                "1.2 ECDSA AES-256",
                ecdsa(vec![cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384], true),
            ),
            (
                "1.2 ECDSA ChaCha20",
                ecdsa(
                    vec![cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256],
                    false,
                ),
            ),
            (
                "1.2 RSA AES-128",
                rsa(vec![cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]),
            ),
            (
                "1.2 RSA AES-256",
                rsa(vec![cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]),
            ),
            (
                "1.2 RSA ChaCha20",
                rsa(vec![cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256]),
            ),
        ];
        // A body of several records, so sequence numbers move on.
        let big = vec![b'x'; 40_000];
        let mut answer =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", big.len()).into_bytes();
        answer.extend_from_slice(&big);
        for (name, tls) in cases {
            // Fresh roots, so a fresh session cache: each server is new, and
            // rustls's client drops a resumption ticket of another hash after
            // a HelloRetryRequest, which rustls's server then refuses
            // (MissingPskExtensionInSecondClientHello; ring's client too).
            let roots = test_roots();
            let (port, _) = tls_server_with(IP, tls, vec![Serve::Reply(answer.clone())]);
            let got = fetch_with(&format!("https://{IP}:{port}/a"), TIMEOUT, &roots)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got, big, "{name}");
        }
    }

    #[test]
    fn https_wrong_ca_is_refused() {
        let (port, _) = tls_server(vec![ok()]);
        let res = fetch_with(
            &format!("https://{IP}:{port}/announce"),
            TIMEOUT,
            &roots(RSA_CA),
        );
        assert!(matches!(res, Err(TrackerError::Certificate(_))), "{res:?}");
        assert_eq!(
            res.unwrap_err().to_string(),
            "tracker certificate refused: not issued by a trusted certificate authority (unknown issuer)"
        );
    }

    #[test]
    fn https_no_ca_certificates_is_a_clear_error() {
        let (port, requests) = tls_server(vec![ok()]);
        let none = LazyRoots::new(|| {
            crate::storage::certs::load_roots(Some(std::path::Path::new("/nonexistent/ca.pem")))
        });
        let res = fetch_with(&format!("https://{IP}:{port}/announce"), TIMEOUT, &none);
        assert_eq!(
            res.unwrap_err().to_string(),
            "TLS error: no CA certificates found at /nonexistent/ca.pem (missing); set tls_ca_file"
        );
        assert!(requests.try_recv().is_err(), "no connection without roots");
    }

    #[test]
    fn https_certificate_must_name_the_host() {
        // 127.0.51.9 is loopback too, but not named by the certificate.
        let (port, _) = tls_server_with("127.0.51.9", ECDSA, vec![ok()]);
        let res = fetch_with(
            &format!("https://127.0.51.9:{port}/announce"),
            TIMEOUT,
            &test_roots(),
        );
        let Err(TrackerError::Certificate(why)) = res else {
            panic!("{res:?}");
        };
        assert!(why.contains("not valid for name"), "{why}");
    }

    #[test]
    fn https_redirect_to_http_is_refused() {
        let (plain, plain_requests) = server(vec![ok()]);
        let target = format!("http://{IP}:{plain}/announce");
        let (port, _) = tls_server(vec![Serve::Reply(
            format!("HTTP/1.1 302 Found\r\nLocation: {target}\r\n\r\n").into_bytes(),
        )]);
        let res = fetch_with(
            &format!("https://{IP}:{port}/announce"),
            TIMEOUT,
            &test_roots(),
        );
        assert_eq!(res, Err(TrackerError::InsecureRedirect(target.clone())));
        assert_eq!(
            res.unwrap_err().to_string(),
            format!("refused a redirect from https to {target}")
        );
        assert!(
            plain_requests.try_recv().is_err(),
            "the http URL was fetched"
        );
    }

    #[test]
    fn https_redirects_from_http_and_within_https_are_followed() {
        let (tls_port, tls_requests) = tls_server(vec![
            reply("HTTP/1.1 301 Moved\r\nLocation: /second\r\nContent-Length: 0\r\n\r\n"),
            ok(),
        ]);
        let (port, _) = server(vec![Serve::Reply(
            format!("HTTP/1.1 302 Found\r\nLocation: https://{IP}:{tls_port}/first\r\n\r\n")
                .into_bytes(),
        )]);
        let u = format!("http://{IP}:{port}/announce");
        assert_eq!(fetch_with(&u, TIMEOUT, &test_roots()).unwrap(), b"ok");
        assert!(tls_requests.recv().unwrap().starts_with("GET /first "));
        assert!(tls_requests.recv().unwrap().starts_with("GET /second "));
    }

    #[test]
    fn https_stalled_handshake_times_out() {
        // A plain TCP server: it takes the ClientHello and never answers.
        let (port, _) = server(vec![Serve::Silent]);
        let start = Instant::now();
        let res = fetch_with(
            &format!("https://{IP}:{port}/announce"),
            Duration::from_millis(500),
            &test_roots(),
        );
        let elapsed = start.elapsed();
        assert!(
            matches!(res, Err(TrackerError::Timeout(Some(_)))),
            "{res:?}"
        );
        assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    }

    #[test]
    fn https_roots_need_a_usable_certificate() {
        let res = Roots::from_pem(&[b"not a certificate".to_vec()], "x.pem");
        assert_eq!(
            res.unwrap_err().to_string(),
            "no CA certificates found at x.pem; set tls_ca_file"
        );
    }

    /// The provider is what the client uses, and has no ring in it.
    #[test]
    fn provider_is_rustcrypto() {
        let p: CryptoProvider = crate::tls::provider::provider();
        assert_eq!(p.cipher_suites.len(), 9);
        assert_eq!(p.kx_groups.len(), 2);
        assert!(p
            .key_provider
            .load_private_key(PrivateKeyDer::from_pem_slice(KEY).unwrap())
            .is_err());
    }
}

// ---------------------------------------------------------------------------
// Announce and scrape responses.

fn dict(entries: Vec<(&str, Value)>) -> Value {
    let mut d = Value::dict();
    for (k, v) in entries {
        d.insert(k, v);
    }
    d
}

fn compact4(peers: &[([u8; 4], u16)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (ip, port) in peers {
        out.extend_from_slice(ip);
        out.extend_from_slice(&port.to_be_bytes());
    }
    out
}

#[test]
fn announce_compact() {
    let mut peers6 = "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets().to_vec();
    peers6.extend_from_slice(&51413u16.to_be_bytes());
    let body = dict(vec![
        ("interval", Value::Int(1800)),
        ("min interval", Value::Int(900)),
        ("complete", Value::Int(12)),
        ("incomplete", Value::Int(3)),
        ("tracker id", Value::str("abc")),
        ("warning message", Value::str("slow down")),
        (
            "peers",
            Value::Bytes(compact4(&[([10, 0, 0, 1], 6881), ([192, 168, 0, 9], 80)])),
        ),
        ("peers6", Value::Bytes(peers6)),
    ])
    .to_bytes();
    assert_eq!(
        parse_announce(&body),
        Ok(AnnounceResponse {
            interval: Some(1800),
            min_interval: Some(900),
            complete: Some(12),
            incomplete: Some(3),
            tracker_id: Some(b"abc".to_vec()),
            warning: Some("slow down".into()),
            peers: vec![
                "10.0.0.1:6881".parse().unwrap(),
                "192.168.0.9:80".parse().unwrap(),
                "[2001:db8::7]:51413".parse().unwrap(),
            ],
        })
    );
}

#[test]
fn announce_dictionary_peers() {
    let peer = |ip: &str, port: i64| {
        dict(vec![
            ("ip", Value::str(ip)),
            ("peer id", Value::Bytes(vec![b'x'; 20])),
            ("port", Value::Int(port)),
        ])
    };
    let body = dict(vec![
        ("interval", Value::Int(60)),
        (
            "peers",
            Value::List(vec![
                peer("10.0.0.2", 6881),
                peer("::1", 7000),
                peer("host.example", 80), // host names are skipped
                peer("10.0.0.3", 70000),  // bad port
                peer("10.0.0.4", -1),
                Value::Int(5), // not a dictionary
                dict(vec![("ip", Value::str("10.0.0.5"))]),
            ]),
        ),
    ])
    .to_bytes();
    let res = parse_announce(&body).unwrap();
    assert_eq!(
        res.peers,
        vec![
            "10.0.0.2:6881".parse::<SocketAddr>().unwrap(),
            "[::1]:7000".parse().unwrap()
        ]
    );
    assert_eq!(res.interval, Some(60));
    assert_eq!(res.min_interval, None);
}

#[test]
fn announce_failure_and_odd_values() {
    let body = dict(vec![(
        "failure reason",
        Value::str("torrent not registered"),
    )])
    .to_bytes();
    assert_eq!(
        parse_announce(&body),
        Err(TrackerError::Failure("torrent not registered".into()))
    );
    let body = dict(vec![("failure reason", Value::Int(1))]).to_bytes();
    assert_eq!(
        parse_announce(&body),
        Err(TrackerError::Failure("(no reason given)".into()))
    );
    let body = dict(vec![
        ("interval", Value::Int(-5)),
        ("min interval", Value::str("60")),
        ("complete", Value::Int(1 << 40)),
    ])
    .to_bytes();
    let res = parse_announce(&body).unwrap();
    assert_eq!(res.interval, None);
    assert_eq!(res.min_interval, None);
    assert_eq!(res.complete, Some(u32::MAX));
    assert!(res.peers.is_empty());
}

#[test]
fn announce_garbage() {
    for (body, kind) in [
        (&b""[..], "not bencode"),
        (b"<html>502 Bad Gateway</html>", "not bencode"),
        (b"d8:intervali1800e", "not bencode"),
        (b"d8:intervali1800eexyz", "not bencode"),
        (b"d5:peers0:8:intervali1e", "not bencode"), // unsorted keys
        (b"li1ee", "bad"),
        (b"d5:peersi5ee", "bad"),
        (b"d5:peers5:abcdee", "bad"),
        (
            b"d5:peers67:abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnoe",
            "bad",
        ),
        (b"d6:peers6i1ee", "bad"),
    ] {
        let res = parse_announce(body);
        let ok = match kind {
            "not bencode" => matches!(res, Err(TrackerError::NotBencode(_))),
            _ => matches!(res, Err(TrackerError::BadResponse(_))),
        };
        assert!(ok, "{:?}: {res:?}", String::from_utf8_lossy(body));
    }
    assert_eq!(
        parse_announce(&vec![b'x'; MAX_BODY + 1]),
        Err(TrackerError::TooLarge)
    );
    let e = parse_announce(b"<html>").unwrap_err().to_string();
    assert!(e.starts_with("response is not bencode: "), "{e}");
}

#[test]
fn announce_huge_peer_lists_are_capped() {
    // The largest compact string a body can hold.
    let n = (MAX_BODY - 64) / 6;
    let peers: Vec<u8> = (0..n as u32)
        .flat_map(|i| {
            let mut p = i.to_be_bytes().to_vec();
            p.extend_from_slice(&[0x1a, 0xe1]);
            p
        })
        .collect();
    let body = dict(vec![("peers", Value::Bytes(peers))]).to_bytes();
    assert!(body.len() <= MAX_BODY);
    assert_eq!(parse_announce(&body).unwrap().peers.len(), MAX_PEERS);
    // As many dictionaries as fit.
    let entry = dict(vec![
        ("ip", Value::str("10.1.2.3")),
        ("port", Value::Int(1)),
    ]);
    let n = MAX_BODY / entry.to_bytes().len() - 1;
    let body = dict(vec![("peers", Value::List(vec![entry; n]))]).to_bytes();
    assert!(body.len() <= MAX_BODY);
    assert_eq!(parse_announce(&body).unwrap().peers.len(), MAX_PEERS);
    // peers6 fills only what peers left.
    let body = dict(vec![
        ("peers", Value::Bytes(vec![1; 6 * 999])),
        ("peers6", Value::Bytes(vec![2; 18 * 10])),
    ])
    .to_bytes();
    let peers = parse_announce(&body).unwrap().peers;
    assert_eq!(peers.len(), MAX_PEERS);
    assert!(peers[998].is_ipv4() && peers[999].is_ipv6());
}

#[test]
fn announce_prefixes_and_noise_never_panic() {
    let body = dict(vec![
        ("interval", Value::Int(1800)),
        ("peers", Value::Bytes(compact4(&[([1, 2, 3, 4], 5)]))),
    ])
    .to_bytes();
    for i in 0..body.len() {
        assert!(parse_announce(&body[..i]).is_err(), "prefix {i}");
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..5000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut b = body.clone();
        let at = (state % b.len() as u64) as usize;
        b[at] = (state >> 32) as u8;
        let _ = parse_announce(&b);
        let _ = parse_scrape(&b);
    }
}

#[test]
fn scrape_response() {
    let stats = dict(vec![
        ("complete", Value::Int(5)),
        ("downloaded", Value::Int(50)),
        ("incomplete", Value::Int(2)),
    ]);
    let mut files = Value::dict();
    if let Value::Dict(map) = &mut files {
        map.insert(vec![0xaa; 20], stats.clone());
        map.insert(b"short".to_vec(), stats.clone());
        map.insert(vec![0xbb; 20], Value::Int(1));
    }
    let body = dict(vec![("files", files)]).to_bytes();
    assert_eq!(
        parse_scrape(&body),
        Ok(vec![(
            [0xaa; 20],
            ScrapeStats {
                complete: 5,
                incomplete: 2,
                downloaded: 50
            }
        )])
    );
    let body = dict(vec![("failure reason", Value::str("no scrape here"))]).to_bytes();
    assert_eq!(
        parse_scrape(&body),
        Err(TrackerError::Failure("no scrape here".into()))
    );
    assert!(matches!(
        parse_scrape(b"de"),
        Err(TrackerError::BadResponse(_))
    ));
    assert!(matches!(
        parse_scrape(b"garbage"),
        Err(TrackerError::NotBencode(_))
    ));
}
