//! An HTTP tracker's answer, at every layer: the response stream into
//! `http::get` (status line, headers, `Content-Length`/chunked/until-close
//! bodies, interim responses, redirects), bencoded bodies into
//! `parse_announce`/`parse_scrape` and through an `Announcer`, and
//! `HttpUrl::parse`/`join` for tracker URLs and `Location` headers.
//!
//! Input: `[selector, seed, rest...]`. Selector low 2 bits: 0-1 `rest` is
//! the server's byte stream (read in chunks of fuzzed sizes; bit 2 makes
//! them 1-8 bytes), 2 `rest` is a response body, 3 `rest` is text: a base
//! URL, a newline, a redirect location.
//!
//! Invariants checked (beyond "no panic"):
//! - `get` gives the same result whether the stream arrives in one read or
//!   in small ones; it writes one well-formed `GET` request; a body is at
//!   most `MAX_BODY` bytes (and no larger than the stream), empty for 204
//!   and 304; a final status is never 1xx; a redirect has a redirect status;
//!   the reason is printable and bounded;
//! - `parse_announce`: at most `MAX_PEERS` peers, bounded printable
//!   warning, tracker id of 1 to 256 bytes; re-encoding the response
//!   (compact `peers`/`peers6`) and parsing it again gives the same values
//!   and the same peers (IPv4 first);
//! - `parse_scrape`: at most `MAX_SCRAPE_FILES` entries with strictly
//!   increasing info-hashes; re-encoding and parsing gives the same;
//! - an announcer given the body reports only unique peers with a port
//!   and an address, at most `MAX_PEERS`, and its next deadline is after
//!   `now`;
//! - a URL that parses is printable ASCII with a path starting with '/',
//!   and (within `MAX_URL`) its `Display` parses back to the same URL; a
//!   joined location is such a URL too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerlet::bencode::Encoder;
use peerlet::tracker::http::{
    get, parse_announce, parse_scrape, HttpResponse, HttpUrl, MAX_BODY, MAX_SCRAPE_FILES, MAX_URL,
};
use peerlet::tracker::{
    Action, Announcer, AnnouncerConfig, AnnouncerParams, Event, Stats, TrackerError, MAX_PEERS,
    MAX_TEXT,
};
use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let [sel, seed, rest @ ..] = data else {
        return;
    };
    match sel & 3 {
        0 | 1 => check_get(rest, *seed, sel & 4 != 0),
        2 => {
            check_announce(rest);
            check_scrape(rest);
            check_announcer(rest);
        }
        _ => check_urls(&String::from_utf8_lossy(rest)),
    }
});

/// The server side of a connection: reads come from `input` in chunks.
struct Server<'a> {
    input: &'a [u8],
    rng: u64,
    small: bool,
    whole: bool,
    request: Vec<u8>,
}

impl Read for Server<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = self.input.len().min(buf.len());
        if !self.whole {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let cap = if self.small { 8 } else { 3000 };
            n = n.min(1 + (self.rng % cap) as usize);
        }
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

impl Write for Server<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.request.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn check_get(stream: &[u8], seed: u8, small: bool) {
    let url = HttpUrl::parse("http://tracker.example:6969/announce?info_hash=%01").unwrap();
    let run = |whole: bool| {
        let mut server = Server {
            input: stream,
            rng: u64::from(seed) | 0x5bd1_e995_0000_0000,
            small,
            whole,
            request: Vec::new(),
        };
        let res = get(&mut server, &url);
        let req = String::from_utf8(server.request).expect("an ASCII request");
        assert!(
            req.starts_with("GET /announce?info_hash=%01 HTTP/1.1\r\n"),
            "{req:?}"
        );
        assert!(req.ends_with("\r\n\r\n") && req.matches("\r\n\r\n").count() == 1);
        res
    };
    let whole = run(true);
    let chunked = run(false);
    assert_eq!(whole, chunked, "the result depends on how the bytes arrive");
    match whole {
        Ok(HttpResponse::Body {
            status,
            reason,
            body,
        }) => {
            assert!((200..=599).contains(&status), "final status {status}");
            assert!(body.len() <= MAX_BODY && body.len() <= stream.len());
            if status == 204 || status == 304 {
                assert!(body.is_empty());
            }
            check_text(&reason);
            check_announce(&body);
            check_scrape(&body);
        }
        Ok(HttpResponse::Redirect { status, location }) => {
            assert!(
                matches!(status, 301 | 302 | 303 | 307 | 308),
                "redirect {status}"
            );
            if let Ok(next) = url.join(&location) {
                check_url(&next);
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fn check_text(s: &str) {
    assert!(
        s.len() <= MAX_TEXT + '…'.len_utf8(),
        "text of {} bytes",
        s.len()
    );
    assert!(!s.chars().any(char::is_control));
}

fn check_announce(body: &[u8]) {
    let r = match parse_announce(body) {
        Ok(r) => r,
        Err(TrackerError::Failure(reason)) => return check_text(&reason),
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert!(r.peers.len() <= MAX_PEERS);
    if let Some(w) = &r.warning {
        check_text(w);
    }
    if let Some(id) = &r.tracker_id {
        assert!(!id.is_empty() && id.len() <= 256);
    }
    // Re-encoded with compact peers (keys in order).
    let (v4, v6): (Vec<SocketAddr>, Vec<SocketAddr>) = r.peers.iter().partition(|p| p.is_ipv4());
    let mut out = Vec::new();
    let mut e = Encoder { out: &mut out };
    e.begin_dict();
    let int = |e: &mut Encoder<'_>, k: &[u8], v: Option<u32>| {
        if let Some(v) = v {
            e.bytes(k);
            e.int(i64::from(v));
        }
    };
    int(&mut e, b"complete", r.complete);
    int(&mut e, b"incomplete", r.incomplete);
    int(&mut e, b"interval", r.interval);
    int(&mut e, b"min interval", r.min_interval);
    e.bytes(b"peers");
    e.bytes(&compact(&v4));
    e.bytes(b"peers6");
    e.bytes(&compact(&v6));
    if let Some(id) = &r.tracker_id {
        e.bytes(b"tracker id");
        e.bytes(id);
    }
    if let Some(w) = &r.warning {
        e.bytes(b"warning message");
        e.bytes(w.as_bytes());
    }
    e.end();
    let again = parse_announce(&out).expect("our re-encoding parses");
    let mut sorted = r.clone();
    sorted.peers = v4.iter().chain(&v6).copied().collect();
    assert_eq!(again, sorted, "announce round trip");
}

fn compact(peers: &[SocketAddr]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in peers {
        match p {
            SocketAddr::V4(a) => out.extend_from_slice(&a.ip().octets()),
            SocketAddr::V6(a) => out.extend_from_slice(&a.ip().octets()),
        }
        out.extend_from_slice(&p.port().to_be_bytes());
    }
    out
}

fn check_scrape(body: &[u8]) {
    let files = match parse_scrape(body) {
        Ok(f) => f,
        Err(TrackerError::Failure(reason)) => return check_text(&reason),
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert!(files.len() <= MAX_SCRAPE_FILES);
    for w in files.windows(2) {
        assert!(w[0].0 < w[1].0, "info-hashes out of order");
    }
    let mut out = Vec::new();
    let mut e = Encoder { out: &mut out };
    e.begin_dict();
    e.bytes(b"files");
    e.begin_dict();
    for (hash, s) in &files {
        e.bytes(hash);
        e.begin_dict();
        e.bytes(b"complete");
        e.int(i64::from(s.complete));
        e.bytes(b"downloaded");
        e.int(i64::from(s.downloaded));
        e.bytes(b"incomplete");
        e.int(i64::from(s.incomplete));
        e.end();
    }
    e.end();
    e.end();
    assert_eq!(parse_scrape(&out).as_ref(), Ok(&files), "scrape round trip");
}

fn check_announcer(body: &[u8]) {
    let base = Instant::now();
    let mut a = Announcer::new(
        AnnouncerParams {
            info_hash: [0x22; 20],
            peer_id: *b"-PL0001-fuzzfuzzfuzz",
            port: 6881,
            tiers: vec![vec!["http://tracker.example/announce".into()]],
            private: false,
            seed: 3,
        },
        AnnouncerConfig::default(),
    );
    a.announce(base, Event::Started, Stats::default());
    let tracker = a
        .drain_actions()
        .find_map(|act| match act {
            Action::HttpGet { tracker, url, .. } => {
                assert!(url.starts_with("http://tracker.example/announce?"), "{url}");
                Some(tracker)
            }
            _ => None,
        })
        .expect("an HTTP announce");
    let now = base + Duration::from_secs(1);
    a.on_http_result(tracker, Ok(body.to_vec()), now);
    for act in a.drain_actions() {
        if let Action::Peers { peers, .. } = act {
            assert!(peers.len() <= MAX_PEERS);
            let mut seen = HashSet::new();
            for p in &peers {
                assert!(p.port() != 0 && !p.ip().is_unspecified(), "peer {p}");
                assert!(seen.insert(*p), "peer {p} twice");
            }
        }
    }
    a.tick(now, Stats::default());
    if let Some(d) = a.next_deadline() {
        assert!(d > now, "next deadline not after a tick");
    }
    for s in a.status(now) {
        if let Some(w) = &s.warning {
            check_text(w);
        }
    }
}

fn check_url(u: &HttpUrl) {
    let shown = u.to_string();
    assert!(shown.bytes().all(|b| b.is_ascii_graphic()), "{shown:?}");
    assert!(u.path().starts_with('/'));
    assert!(!u.host().is_empty());
    assert!(u.request_target().starts_with('/'));
    if shown.len() <= MAX_URL {
        assert_eq!(
            HttpUrl::parse(&shown).as_ref(),
            Ok(u),
            "URL round trip via {shown:?}"
        );
    }
}

fn check_urls(text: &str) {
    let (first, location) = text.split_once('\n').unwrap_or((text, ""));
    match HttpUrl::parse(first) {
        Ok(base) => {
            check_url(&base);
            if let Ok(next) = base.join(location) {
                check_url(&next);
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
