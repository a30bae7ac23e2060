//! BEP 15 UDP tracker datagrams into `udp::Response::parse` (IPv4 and IPv6
//! peer layouts) and `udp::Request::parse`, and fuzzed tracker answers into
//! the sans-IO `tracker::Announcer` that sends and reads them.
//!
//! Input: records `[op, len_hi, len_lo, bytes...]`. Every record's bytes go
//! through both parsers. The op (low 4 bits) then drives an announcer with
//! one UDP tracker (answering its requests with the record as the whole
//! datagram, or as a connect or announce response with the right
//! transaction id and the record as the body, from the right or a wrong
//! address), name resolutions to fuzzed addresses, announces, stops, ticks
//! and the clock.
//!
//! Invariants checked (beyond "no panic"):
//! - a response that parses: at most `MAX_PEERS` peers and
//!   `MAX_SCRAPE_HASHES` scrape entries, error text at most `MAX_TEXT`
//!   bytes (plus an ellipsis) without control characters; its transaction
//!   id is what `response_transaction_id`/`matches` read; `to_bytes` then
//!   `parse` gives the same response;
//! - a request that parses: `to_bytes` then `parse` gives the same request;
//! - the announcer sends only requests that parse, only to an address it was
//!   given; a datagram from another address or with another transaction id
//!   is refused (`on_udp` false) and changes nothing; peers it reports are
//!   unique, at most `MAX_PEERS`, none with port 0 or an unspecified
//!   address; after `tick(now)`, `next_deadline()` is later than `now`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerlet::tracker::udp::{self, Family, Request, Response, MAX_SCRAPE_HASHES};
use peerlet::tracker::{
    Action, Announcer, AnnouncerConfig, AnnouncerParams, Event, Stats, TrackerId, MAX_PEERS,
    MAX_TEXT,
};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let base = Instant::now();
    let mut secs: u64 = 1_000;
    let mut a = Announcer::new(
        AnnouncerParams {
            info_hash: [0x11; 20],
            peer_id: *b"-PL0001-fuzzfuzzfuzz",
            port: 6881,
            tiers: vec![vec!["udp://tracker.example:6969/announce".into()]],
            private: false,
            seed: 7,
        },
        AnnouncerConfig::default(),
    );
    let mut world = World::default();
    a.announce(base + Duration::from_secs(secs), Event::Started, stats(0));
    world.take(&mut a);

    let mut rest = data;
    let mut n = 0;
    while rest.len() >= 3 && n < 100 {
        n += 1;
        let op = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let bytes = &rest[3..3 + len];
        rest = &rest[3 + len..];
        check_response(bytes);
        check_request(bytes);
        let now = base + Duration::from_secs(secs);
        let b = |i: usize| bytes.get(i).copied().unwrap_or(0);
        match op & 0x0f {
            0..=2 => {
                // An answer to the request in flight: the record as it is
                // (0), or as a connect (1) or announce (2) response body.
                let Some((to, tid)) = world.inflight else {
                    continue;
                };
                let mut dgram = match op & 0x0f {
                    0 => bytes.to_vec(),
                    k => {
                        let mut d = (u32::from(k) - 1).to_be_bytes().to_vec();
                        d.extend_from_slice(&tid.to_be_bytes());
                        d.extend_from_slice(bytes);
                        d
                    }
                };
                if let Some(t) = dgram.get_mut(4..8) {
                    t.copy_from_slice(&tid.to_be_bytes());
                }
                let wrong_addr = op & 0x10 != 0;
                let wrong_tid = op & 0x20 != 0 && dgram.len() >= 8;
                if wrong_tid {
                    dgram[7] ^= 1;
                }
                let from = if wrong_addr {
                    SocketAddr::new(to.ip(), to.port() ^ 1)
                } else {
                    to
                };
                // (A right answer may still be refused: the request may
                // have timed out since.)
                let answered = a.on_udp(from, &dgram, now);
                if wrong_addr || wrong_tid || dgram.len() < 8 {
                    assert!(!answered, "took a datagram that was not an answer");
                    assert_eq!(a.drain_actions().count(), 0, "a refused datagram acted");
                }
            }
            3 => {
                secs += u64::from(b(0)) * 16 + u64::from(b(1));
                let now = base + Duration::from_secs(secs);
                a.tick(now, stats(1));
                world.take(&mut a);
                if let Some(d) = a.next_deadline() {
                    assert!(d > now, "next deadline not after a tick");
                }
            }
            4 => {
                // Jump to the next deadline.
                if let Some(d) = a.next_deadline() {
                    if d > now {
                        secs += (d - now).as_secs() + 1;
                    }
                }
                let now = base + Duration::from_secs(secs);
                a.tick(now, stats(2));
                world.take(&mut a);
                if let Some(d) = a.next_deadline() {
                    assert!(d > now, "next deadline not after a tick");
                }
            }
            5 => {
                let event = match b(0) & 3 {
                    0 => Event::None,
                    1 => Event::Completed,
                    2 => Event::Started,
                    _ => Event::Stopped,
                };
                a.announce(now, event, stats(u64::from(b(1))));
            }
            6 => a.stop(now, stats(3)),
            7 => {
                // Resolve the pending name to fuzzed addresses (or none).
                let Some(tracker) = world.resolving.take() else {
                    continue;
                };
                let addrs: Vec<SocketAddr> = bytes
                    .chunks(3)
                    .take(4)
                    .map(|c| {
                        addr(
                            c[0],
                            c.get(1).copied().unwrap_or(0),
                            c.get(2).copied().unwrap_or(0),
                        )
                    })
                    .collect();
                world.given.extend(addrs.iter().copied().map(unmap));
                a.on_resolved(tracker, addrs, now);
            }
            8 => {
                let _ = a.add_tracker(&String::from_utf8_lossy(bytes), now);
            }
            _ => secs += u64::from(b(0)),
        }
        world.take(&mut a);
        let status = a.status(now);
        assert!(!status.is_empty());
    }
});

#[derive(Default)]
struct World {
    /// The tracker whose name is being resolved.
    resolving: Option<TrackerId>,
    /// Addresses given to `on_resolved` (as the announcer sees them).
    given: HashSet<SocketAddr>,
    /// The last request sent: address and transaction id.
    inflight: Option<(SocketAddr, u32)>,
}

impl World {
    fn take(&mut self, a: &mut Announcer) {
        for action in a.drain_actions() {
            match action {
                Action::Resolve { tracker, .. } => self.resolving = Some(tracker),
                Action::SendUdp { to, bytes } => {
                    assert!(
                        self.given.contains(&to),
                        "sent to {to}, an address never given"
                    );
                    let req = Request::parse(&bytes).expect("the announcer's request parses");
                    self.inflight = Some((to, req.transaction_id()));
                }
                // An http:// tracker given with `add_tracker`: never answered.
                Action::HttpGet { url, .. } => assert!(url.starts_with("http")),
                Action::Peers { peers, .. } => {
                    assert!(peers.len() <= MAX_PEERS);
                    let mut seen = HashSet::new();
                    for p in &peers {
                        assert!(p.port() != 0 && !p.ip().is_unspecified(), "peer {p}");
                        assert!(seen.insert(*p), "peer {p} twice");
                    }
                }
                Action::Log(_, text) => assert!(!text.is_empty()),
            }
        }
    }
}

fn stats(k: u64) -> Stats {
    Stats {
        uploaded: k * 1000,
        downloaded: k * 2000,
        left: k % 3 * 16384,
    }
}

fn addr(kind: u8, x: u8, port: u8) -> SocketAddr {
    let ip: IpAddr = match kind & 3 {
        0 => Ipv4Addr::new(192, 0, 2, x).into(),
        1 => Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(x)).into(),
        2 => Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0200 | u16::from(x)).into(),
        _ => Ipv4Addr::UNSPECIFIED.into(),
    };
    SocketAddr::new(ip, u16::from(port) | 0x1000)
}

/// IPv4-mapped IPv6 as plain IPv4, as the announcer reports addresses.
fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => a,
        },
        SocketAddr::V4(_) => a,
    }
}

fn check_response(bytes: &[u8]) {
    for family in [Family::V4, Family::V6] {
        let r = match Response::parse(bytes, family) {
            Ok(r) => r,
            Err(e) => {
                let _ = e.to_string();
                continue;
            }
        };
        assert_eq!(
            udp::response_transaction_id(bytes),
            Some(r.transaction_id())
        );
        assert!(udp::matches(bytes, r.transaction_id()));
        match &r {
            Response::Announce(a) => {
                assert!(a.peers.len() <= MAX_PEERS);
                let v6 = matches!(family, Family::V6);
                assert!(a.peers.iter().all(|p| p.is_ipv6() == v6), "wrong family");
            }
            Response::Scrape { entries, .. } => assert!(entries.len() <= MAX_SCRAPE_HASHES),
            Response::Error { message, .. } => {
                assert!(message.len() <= MAX_TEXT + '…'.len_utf8());
                assert!(!message.chars().any(char::is_control));
            }
            Response::Connect { .. } => {}
        }
        let again = r.to_bytes().expect("emit into its own buffer_len");
        assert_eq!(again.len(), r.buffer_len());
        assert_eq!(
            Response::parse(&again, family).as_ref(),
            Ok(&r),
            "round trip"
        );
    }
}

fn check_request(bytes: &[u8]) {
    let r = match Request::parse(bytes) {
        Ok(r) => r,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let again = r.to_bytes().expect("emit into its own buffer_len");
    assert_eq!(again.len(), r.buffer_len());
    assert_eq!(Request::parse(&again).as_ref(), Ok(&r), "round trip");
}
