//! Trackers: BEP 15 (UDP) and BEP 3/23/7 (HTTP) announce and scrape, and the
//! per-torrent [`Announcer`] (BEP 12 tiers, schedule, back-off, events).
//!
//! Three files, three jobs:
//!
//! - [`udp`]: the BEP 15 packets as views and values (`parse`/`emit`), no I/O.
//! - [`http`]: tracker URLs, the announce and scrape URLs, the bencoded
//!   responses (no I/O), and [`http::fetch`], a small blocking HTTP/1.1 GET
//!   (over TLS too, with the `https` feature) with hard limits for a
//!   **worker thread** (the only I/O in this module).
//! - [`announcer`]: one torrent's announce state machine, sans I/O. It takes
//!   `now: Instant` and inputs, and queues [`Action`]s for the caller.
//!
//! # How the engine drives an announcer
//!
//! ```text
//! let mut a = Announcer::new(params, AnnouncerConfig::default());
//! a.announce(now, Event::Started, stats);           // torrent starts
//! loop {
//!     for action in a.drain_actions() {
//!         Resolve { tracker, host, port }   -> worker: (host, port).to_socket_addrs()
//!                                              then a.on_resolved(tracker, addrs, now)
//!         SendUdp { to, bytes }             -> net thread's UDP socket: send_to(bytes, to)
//!         HttpGet { tracker, url, timeout } -> worker: http::fetch(&url, timeout)
//!                                              then a.on_http_result(tracker, result, now)
//!         Peers { tracker, peers }          -> candidate peers for the swarm
//!         Log(level, message)               -> log::log!(level, ...)
//!     }
//!     poll timeout <= a.next_deadline();
//!     UDP datagram (from, bytes)  -> a.on_udp(from, bytes, now)   // true if it was ours
//!     timer                       -> a.tick(now, stats)
//!     download finished           -> a.announce(now, Event::Completed, stats)
//!     "more peers, please"        -> a.announce(now, Event::None, stats)  // honours min interval
//! }
//! a.stop(now, stats);                                // clean shutdown: stopped events
//! keep driving until a.is_stopped() or a deadline of a few seconds passes
//! ```
//!
//! Results that arrive for a request the announcer no longer waits for (a
//! late DNS answer, a UDP packet with another transaction id or from another
//! address) are ignored. [`Announcer::status`] gives one [`TrackerStatus`]
//! per tracker for the control API.
//!
//! Notes for the engine:
//!
//! - One UDP socket serves every torrent: offer a datagram to each
//!   announcer's `on_udp` until one returns true, or route it first by
//!   [`udp::response_transaction_id`]. A receive buffer of
//!   [`udp::MAX_PACKET`] bytes holds the largest response we keep in full.
//! - `on_http_result` parses the body (at most 835,584 bytes of bencode) on
//!   the calling thread; that takes well under a millisecond for real
//!   responses.
//! - The BEP 15 schedule lets one silent UDP tracker hold its tier for about
//!   2 h before the next tracker is tried; [`AnnouncerConfig::udp_max_retransmits`]
//!   shortens that (2 gives 15 + 30 + 60 s).
//! - Each announcer caps its own requests in flight
//!   ([`AnnouncerConfig::max_inflight`]); the caller sets the room left
//!   under its cap over all torrents with [`Announcer::set_global_room`]
//!   (libtorrent keeps at most 50 HTTP announces in flight).
//!
//! # Limits
//!
//! - HTTP: response headers ≤ [`http::MAX_HEADERS`] (16 KiB), body ≤
//!   [`http::MAX_BODY`] (835,584 bytes, libtorrent's number), at most
//!   [`http::MAX_REDIRECTS`] (3) redirects (never from `https` to `http`),
//!   an overall deadline; `https://` only with the `https` feature.
//! - Peers kept from one response: [`MAX_PEERS`] (1,000), IPv4 and IPv6 together.
//! - UDP: connection ids live 60 s; retransmission after 15 × 2^n s, n = 0..8
//!   (BEP 15), then the attempt fails. Scrape: ≤ [`udp::MAX_SCRAPE_HASHES`] (74).
//! - Announcer: at most [`announcer::MAX_TRACKERS`] trackers per torrent;
//!   interval clamped to 300 s ..= 2 h (default 1,800 s); forced announces
//!   no sooner than the tracker's min interval (60 s when none, at least
//!   30 s); back-off after failures 15 s doubling up to 30 min; stopped
//!   events time out after 5 s; 8 requests in flight; a scrape per tracker
//!   every 30 min.
//!
//! # No-panic contract
//!
//! Every parser here (`udp::*::parse`, `http::HttpUrl::parse`,
//! `http::parse_announce`, `http::parse_scrape`, the HTTP response reader)
//! takes any bytes and returns a value or an error; none indexes past its
//! input, and each checks lengths before allocating.

pub mod announcer;
pub mod http;
pub mod udp;

pub use announcer::{
    Action, Announcer, AnnouncerConfig, AnnouncerParams, Outcome, TrackerId, TrackerStatus,
};

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Most peers kept from one announce response (compact IPv4 and IPv6 together).
pub const MAX_PEERS: usize = 1000;

/// Longest tracker-supplied text (failure reason, warning) kept, in bytes.
pub const MAX_TEXT: usize = 512;

/// The announce event (BEP 3 `event`, BEP 15 event codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// A regular announce.
    None,
    /// The download finished (sent once; not sent when we started complete).
    Completed,
    /// The first announce to a tracker.
    Started,
    /// The torrent stops (clean shutdown, pause, removal).
    Stopped,
}

impl Event {
    /// The BEP 15 code: 0 none, 1 completed, 2 started, 3 stopped.
    pub fn udp_code(self) -> u32 {
        match self {
            Event::None => 0,
            Event::Completed => 1,
            Event::Started => 2,
            Event::Stopped => 3,
        }
    }

    pub fn from_udp_code(code: u32) -> Option<Event> {
        match code {
            0 => Some(Event::None),
            1 => Some(Event::Completed),
            2 => Some(Event::Started),
            3 => Some(Event::Stopped),
            _ => None,
        }
    }

    /// The BEP 3 `event` value; `None` for a regular announce (no parameter).
    pub fn http_name(self) -> Option<&'static str> {
        match self {
            Event::None => None,
            Event::Completed => Some("completed"),
            Event::Started => Some("started"),
            Event::Stopped => Some("stopped"),
        }
    }
}

/// Transfer totals reported to trackers, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub uploaded: u64,
    pub downloaded: u64,
    /// Bytes still missing (0 when seeding).
    pub left: u64,
}

/// Everything one announce says about us, for either protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceParams {
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    /// Our listening TCP port.
    pub port: u16,
    pub stats: Stats,
    pub event: Event,
    /// Peers wanted; 0 for `stopped`.
    pub num_want: u32,
    /// A random per-torrent key, so the tracker can recognise us across address changes.
    pub key: u32,
    /// The `tracker id` an HTTP tracker gave us earlier (sent back as `trackerid`).
    pub tracker_id: Option<Vec<u8>>,
}

/// Why an announce or scrape did not work. `Display` gives a sentence for
/// the log and the status API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackerError {
    /// The tracker answered with a `failure reason` (HTTP) or an error packet (UDP).
    Failure(String),
    /// The body does not decode as bencode.
    NotBencode(String),
    /// Bencode, but not a valid announce or scrape response.
    BadResponse(String),
    /// A UDP packet from the tracker that does not parse.
    BadPacket(udp::Error),
    /// The body is over [`http::MAX_BODY`].
    TooLarge,
    /// The response headers are over [`http::MAX_HEADERS`].
    HeadersTooLarge,
    /// Not HTTP/1.x, or broken framing (status line, headers, chunks).
    BadHttp(String),
    /// An HTTP status other than 2xx (and not a usable redirect).
    Status(u16, String),
    /// A redirect back to a URL already visited.
    RedirectLoop,
    /// More than [`http::MAX_REDIRECTS`] redirects.
    TooManyRedirects,
    /// No complete answer in time; the duration when known.
    Timeout(Option<Duration>),
    /// The connection closed before the response was complete.
    Closed,
    /// `https://` tracker URLs in a build without the `https` feature.
    HttpsUnsupported,
    /// A redirect from `https` to this `http` URL (a downgrade), not followed.
    InsecureRedirect(String),
    /// The tracker's TLS certificate was refused (unknown issuer, wrong
    /// name, expired...).
    Certificate(String),
    /// Another TLS failure (handshake, alert, bad record).
    Tls(String),
    /// A URL we cannot use (scheme, syntax).
    BadUrl(String),
    /// The host name did not resolve to a usable address.
    Resolve(String),
    /// No address of the host accepted a connection.
    Connect(String),
    /// Another I/O error while talking to the tracker.
    Io(String),
    /// A private torrent (BEP 27) accepts no trackers beyond its own.
    Private,
}

impl fmt::Display for TrackerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrackerError::Failure(reason) => write!(f, "tracker said: {reason}"),
            TrackerError::NotBencode(e) => write!(f, "response is not bencode: {e}"),
            TrackerError::BadResponse(e) => write!(f, "bad response: {e}"),
            TrackerError::BadPacket(e) => write!(f, "bad UDP packet: {e}"),
            TrackerError::TooLarge => {
                write!(f, "response larger than {} bytes", http::MAX_BODY)
            }
            TrackerError::HeadersTooLarge => {
                write!(
                    f,
                    "response headers larger than {} bytes",
                    http::MAX_HEADERS
                )
            }
            TrackerError::BadHttp(e) => write!(f, "malformed HTTP response: {e}"),
            TrackerError::Status(code, reason) if reason.is_empty() => {
                write!(f, "HTTP status {code}")
            }
            TrackerError::Status(code, reason) => write!(f, "HTTP status {code} {reason}"),
            TrackerError::RedirectLoop => write!(f, "redirect loop"),
            TrackerError::TooManyRedirects => {
                write!(
                    f,
                    "redirect loop (more than {} redirects)",
                    http::MAX_REDIRECTS
                )
            }
            TrackerError::Timeout(None) => write!(f, "timed out"),
            TrackerError::Timeout(Some(d)) => write!(f, "timed out after {}", Secs(*d)),
            TrackerError::Closed => write!(f, "connection closed before the response was complete"),
            TrackerError::HttpsUnsupported => write!(
                f,
                "https trackers are not supported: peerlet was built without the `https` feature"
            ),
            TrackerError::InsecureRedirect(url) => {
                write!(f, "refused a redirect from https to {url}")
            }
            TrackerError::Certificate(e) => write!(f, "tracker certificate refused: {e}"),
            TrackerError::Tls(e) => write!(f, "TLS error: {e}"),
            TrackerError::BadUrl(e) => write!(f, "unusable tracker URL: {e}"),
            TrackerError::Resolve(host) => write!(f, "could not resolve {host}"),
            TrackerError::Connect(e) => write!(f, "could not connect: {e}"),
            TrackerError::Io(e) => write!(f, "connection error: {e}"),
            TrackerError::Private => {
                write!(
                    f,
                    "private torrent: only the trackers of the torrent file may be used"
                )
            }
        }
    }
}

impl std::error::Error for TrackerError {}

impl From<udp::Error> for TrackerError {
    fn from(e: udp::Error) -> TrackerError {
        TrackerError::BadPacket(e)
    }
}

/// "15 s", "1.5 s", "2 min": a duration for messages.
pub(crate) struct Secs(pub Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_millis() == 0 {
            write!(f, "{} s", d.as_secs())
        } else {
            write!(f, "{:.1} s", d.as_secs_f64())
        }
    }
}

/// A tracker URL the announcer can use: `udp://host:port[/...]` or an
/// `http://` URL (or `https://` with the `https` feature). Other schemes
/// are refused with a message that says why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackerUrl {
    Udp { host: String, port: u16 },
    Http(http::HttpUrl),
}

impl TrackerUrl {
    /// Parses a tracker URL from a torrent or magnet link. At most
    /// [`http::MAX_URL`] bytes, ASCII only; never panics.
    pub fn parse(s: &str) -> Result<TrackerUrl, TrackerError> {
        let s = s.trim();
        let Some((scheme, _)) = s.split_once("://") else {
            return Err(TrackerError::BadUrl(format!(
                "no scheme in '{}'",
                text(s.as_bytes())
            )));
        };
        if scheme.eq_ignore_ascii_case("udp") {
            if s.len() > http::MAX_URL {
                return Err(TrackerError::BadUrl("URL too long".into()));
            }
            let rest = s.get(scheme.len() + 3..).unwrap_or("");
            // BEP 15 URLs may carry a path (BEP 41 sends it as an option; we do not).
            let authority = match rest.find(['/', '?', '#']) {
                Some(i) => rest.get(..i).unwrap_or(""),
                None => rest,
            };
            let (host, port) = http::parse_authority(authority, None)?;
            Ok(TrackerUrl::Udp { host, port })
        } else {
            http::HttpUrl::parse(s).map(TrackerUrl::Http)
        }
    }
}

/// Tracker-supplied bytes as a printable, bounded string: invalid UTF-8 is
/// replaced, control characters become '?', at most [`MAX_TEXT`] bytes.
pub(crate) fn text(bytes: &[u8]) -> String {
    crate::text::printable(bytes, MAX_TEXT)
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, as a dual-stack socket
/// reports them) as plain IPv4, so addresses compare equal across families.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_urls() {
        assert_eq!(
            TrackerUrl::parse("udp://tracker.example.org:6969/announce").unwrap(),
            TrackerUrl::Udp {
                host: "tracker.example.org".into(),
                port: 6969
            }
        );
        assert_eq!(
            TrackerUrl::parse("UDP://[2001:db8::1]:80").unwrap(),
            TrackerUrl::Udp {
                host: "2001:db8::1".into(),
                port: 80
            }
        );
        assert!(matches!(
            TrackerUrl::parse("http://t.example/announce").unwrap(),
            TrackerUrl::Http(_)
        ));
        let https = TrackerUrl::parse("https://t.example/announce");
        if cfg!(feature = "https") {
            assert!(matches!(https, Ok(TrackerUrl::Http(_))), "{https:?}");
        } else {
            assert_eq!(https, Err(TrackerError::HttpsUnsupported));
        }
        for bad in [
            "udp://host",
            "udp://host:0",
            "udp://:80",
            "udp://host:99999",
            "wss://t.example/announce",
            "tracker.example.org:6969",
            "",
            "udp://ho st:80",
        ] {
            assert!(TrackerUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            TrackerError::Failure("unregistered torrent".into()).to_string(),
            "tracker said: unregistered torrent"
        );
        assert_eq!(
            TrackerError::TooLarge.to_string(),
            "response larger than 835584 bytes"
        );
        assert_eq!(
            TrackerError::Timeout(Some(Duration::from_secs(15))).to_string(),
            "timed out after 15 s"
        );
        assert_eq!(
            TrackerError::Timeout(Some(Duration::from_millis(1500))).to_string(),
            "timed out after 1.5 s"
        );
        assert_eq!(
            TrackerError::HttpsUnsupported.to_string(),
            "https trackers are not supported: peerlet was built without the `https` feature"
        );
        assert_eq!(TrackerError::RedirectLoop.to_string(), "redirect loop");
        assert_eq!(
            TrackerError::Status(404, "Not Found".into()).to_string(),
            "HTTP status 404 Not Found"
        );
    }

    #[test]
    fn text_is_bounded_and_printable() {
        assert_eq!(text(b"ok\r\n\x00\xff"), "ok???\u{fffd}");
        let long = vec![b'a'; 10_000];
        assert!(text(&long).len() <= MAX_TEXT + '…'.len_utf8());
    }

    #[test]
    fn canonical_unmaps_v4() {
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:80".parse().unwrap();
        assert_eq!(canonical(mapped), "10.0.0.1:80".parse().unwrap());
        let v6: SocketAddr = "[2001:db8::1]:80".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }

    #[test]
    fn event_codes() {
        for e in [
            Event::None,
            Event::Completed,
            Event::Started,
            Event::Stopped,
        ] {
            assert_eq!(Event::from_udp_code(e.udp_code()), Some(e));
        }
        assert_eq!(Event::from_udp_code(4), None);
        assert_eq!(Event::None.http_name(), None);
        assert_eq!(Event::Stopped.http_name(), Some("stopped"));
    }
}
