//! The shared UDP port: one socket for UDP trackers, the discovery overlay,
//! and (reserved) the Mainline DHT and uTP, each datagram routed by its
//! content. The rule, byte for byte, is docs/PROTOCOL.md section 12 ("The
//! shared UDP port"):
//!
//! | first byte | more | route |
//! |---|---|---|
//! | (none: empty) | | [`Route::Junk`] |
//! | `0x00` | at least 8 bytes | [`Route::Tracker`] (BEP 15: a 32-bit action 0–3, then the transaction id) |
//! | `s` (0x73) | | [`Route::Sealed`] (a private network's sealed overlay packet) |
//! | `d` (0x64) | a top-level key `y` whose value is the 1-byte string `q`, `r` or `e` | [`Route::Dht`] (KRPC, BEP 5) |
//! | `d` (0x64) | anything else | [`Route::Overlay`] |
//! | `0x01` `0x11` `0x21` `0x31` `0x41` | at least 20 bytes | [`Route::Utp`] (BEP 29: type << 4, version 1) |
//! | anything else | | [`Route::Junk`] |
//!
//! KRPC and overlay packets are both bencoded dictionaries. They differ in
//! the top-level `y`: KRPC's is the message type (`1:q`, `1:r`, `1:e`), the
//! overlay's (in a `pong`) an address of 6 or 18 bytes. [`classify`] skims
//! the top-level keys to find it, skipping values without decoding or
//! allocating, and gives up ("overlay") at the first malformed byte: the
//! overlay's strict parser then drops the packet and counts it.
//!
//! [`classify`] takes any bytes and never panics. [`UdpPort`] owns the
//! socket: it receives, classifies and counts; the engine hands each
//! [`Datagram`] to the driver its route names.

use mio::event::Source;
use mio::{Interest, Registry, Token};
use std::io;
use std::net::SocketAddr;

/// Where a datagram of the shared UDP port goes. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// A UDP tracker's answer (BEP 15).
    Tracker,
    /// A plain overlay packet (docs/PROTOCOL.md sections 1–3).
    Overlay,
    /// A sealed overlay packet of a private network (section 11).
    Sealed,
    /// A Mainline DHT message (KRPC, BEP 5). Reserved: counted and dropped.
    Dht,
    /// A uTP packet (BEP 29). Reserved: counted and dropped.
    Utp,
    /// None of the above: dropped.
    Junk,
}

impl Route {
    pub const ALL: [Route; 6] = [
        Route::Tracker,
        Route::Overlay,
        Route::Sealed,
        Route::Dht,
        Route::Utp,
        Route::Junk,
    ];

    /// The route's name in counters and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Tracker => "tracker",
            Route::Overlay => "overlay",
            Route::Sealed => "sealed",
            Route::Dht => "dht",
            Route::Utp => "utp",
            Route::Junk => "junk",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Shortest datagram routed to the trackers: action (4) and transaction id (4).
pub const MIN_TRACKER: usize = 8;
/// Shortest datagram routed to uTP: its fixed header.
pub const MIN_UTP: usize = 20;
/// First byte of a sealed overlay packet (`crate::private::SEAL_TAG`).
const SEALED: u8 = crate::private::SEAL_TAG;

/// The route of a datagram by its content. Takes any bytes; never panics.
pub fn classify(bytes: &[u8]) -> Route {
    match bytes.first() {
        None => Route::Junk,
        Some(0x00) if bytes.len() >= MIN_TRACKER => Route::Tracker,
        Some(&SEALED) => Route::Sealed,
        Some(b'd') => match krpc_type(bytes) {
            Some(b'q' | b'r' | b'e') => Route::Dht,
            _ => Route::Overlay,
        },
        Some(0x01 | 0x11 | 0x21 | 0x31 | 0x41) if bytes.len() >= MIN_UTP => Route::Utp,
        Some(_) => Route::Junk,
    }
}

/// The byte of a top-level `y` key whose value is a 1-byte string, in the
/// bencoded dictionary `d` (which starts with `d`). `None` when there is no
/// such key, or at the first malformed byte before it.
fn krpc_type(d: &[u8]) -> Option<u8> {
    let mut pos = 1;
    loop {
        if *d.get(pos)? == b'e' {
            return None;
        }
        let (start, end) = string_at(d, pos)?;
        if &d[start..end] == b"y" {
            let (vs, ve) = string_at(d, end)?;
            return (ve - vs == 1).then(|| d[vs]);
        }
        pos = skip_value(d, end)?;
    }
}

/// The bounds of the bencoded string at `pos` (`<length>:<bytes>`).
fn string_at(d: &[u8], pos: usize) -> Option<(usize, usize)> {
    let mut len: usize = 0;
    let mut i = pos;
    loop {
        let b = *d.get(i)?;
        match b {
            b'0'..=b'9' if i - pos < 6 => len = len * 10 + usize::from(b - b'0'),
            b':' if i > pos => break,
            _ => return None,
        }
        i += 1;
    }
    let start = i + 1;
    let end = start.checked_add(len)?;
    (end <= d.len()).then_some((start, end))
}

/// Where the bencoded value at `pos` ends. Iterative (no recursion): a
/// depth count of the lists and dictionaries open.
fn skip_value(d: &[u8], mut pos: usize) -> Option<usize> {
    let mut depth: usize = 0;
    loop {
        match *d.get(pos)? {
            b'i' => {
                let rest = d.get(pos + 1..)?;
                pos += 2 + rest.iter().position(|&b| b == b'e')?;
            }
            b'l' | b'd' => {
                depth += 1;
                pos += 1;
                continue;
            }
            b'e' if depth > 0 => {
                depth -= 1;
                pos += 1;
            }
            b'0'..=b'9' => pos = string_at(d, pos)?.1,
            _ => return None,
        }
        if depth == 0 {
            return Some(pos);
        }
    }
}

/// A received datagram and its route.
#[derive(Debug)]
pub struct Datagram<'a> {
    pub route: Route,
    /// The sender (an IPv4-mapped IPv6 address given as IPv4).
    pub from: SocketAddr,
    pub bytes: &'a [u8],
}

/// The shared UDP socket: receives and routes, sends for every driver.
pub struct UdpPort {
    socket: mio::net::UdpSocket,
    /// Datagrams received per route (index: `Route as usize`).
    received: [u64; Route::ALL.len()],
}

impl UdpPort {
    /// Binds the peer listening address (same port as TCP) when the UDP
    /// port is free, else a free port on the same address.
    pub fn bind(listen: SocketAddr) -> io::Result<UdpPort> {
        let socket = mio::net::UdpSocket::bind(listen)
            .or_else(|_| mio::net::UdpSocket::bind(SocketAddr::new(listen.ip(), 0)))?;
        Ok(UdpPort {
            socket,
            received: [0; Route::ALL.len()],
        })
    }

    /// Receives one datagram into `buf` and routes it. `WouldBlock` when
    /// none waits (readiness is edge-triggered: read until then).
    pub fn recv<'a>(&mut self, buf: &'a mut [u8]) -> io::Result<Datagram<'a>> {
        let (n, from) = self.socket.recv_from(buf)?;
        let from = match from {
            SocketAddr::V6(v6) => v6
                .ip()
                .to_ipv4_mapped()
                .map_or(from, |v4| SocketAddr::new(v4.into(), v6.port())),
            v4 => v4,
        };
        let bytes = &buf[..n];
        let route = classify(bytes);
        self.received[route.index()] += 1;
        Ok(Datagram { route, from, bytes })
    }

    pub fn send_to(&self, bytes: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.socket.send_to(bytes, to)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Datagrams received so far on `route`.
    pub fn received(&self, route: Route) -> u64 {
        self.received[route.index()]
    }
}

impl Source for UdpPort {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.socket.register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.socket.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.socket.deregister(registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn tracker_answers() {
        // BEP 15 connect answer: action 0, transaction id, connection id.
        let mut connect = vec![0, 0, 0, 0, 1, 2, 3, 4];
        connect.extend_from_slice(&[9; 8]);
        assert_eq!(classify(&connect), Route::Tracker);
        // Announce (1) and error (3) answers; the shortest one routed.
        assert_eq!(classify(&[0, 0, 0, 1, 1, 2, 3, 4, 0, 0]), Route::Tracker);
        assert_eq!(classify(b"\0\0\0\x03abcdbad tracker"), Route::Tracker);
        assert_eq!(classify(&[0; MIN_TRACKER]), Route::Tracker);
        // Too short to carry a transaction id.
        assert_eq!(classify(&[0; MIN_TRACKER - 1]), Route::Junk);
        assert_eq!(classify(&[0]), Route::Junk);
    }

    #[test]
    fn every_overlay_example_of_the_protocol_is_overlay() {
        // The example packets of docs/PROTOCOL.md (a `pong` has a `y`, an
        // address of 6 bytes; a `hit` has an `a` and an `r` and a query a `q`,
        // all of other types than KRPC's).
        let doc = include_str!("../../docs/PROTOCOL.md");
        let mut seen = 0;
        let mut rest = doc;
        // Blocks open at the start of a line (the introduction quotes one).
        while let Some(at) = rest.find("\n```hex name=") {
            let block = &rest[at + 1..];
            let body_start = block.find('\n').unwrap() + 1;
            let body_len = block[body_start..].find("```").unwrap();
            let bytes = hex(&block[body_start..body_start + body_len]);
            assert_eq!(classify(&bytes), Route::Overlay, "{}", &block[..body_start]);
            seen += 1;
            rest = &block[body_start + body_len..];
        }
        assert!(seen >= 8, "{seen} examples");
    }

    #[test]
    fn krpc_messages() {
        // BEP 5's examples.
        for m in [
            &b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"[..],
            b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re",
            b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee",
            b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e\
              1:q9:get_peers1:t2:aa1:y1:qe",
            b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee\
              1:t2:aa1:y1:re",
            // BEP 42's `ip` first, BEP 43's `ro`, a client version `v`.
            b"d2:ip6:\x7f\0\0\x01\x1a\xe11:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:v4:LT\x01\x021:y1:re",
            b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping2:roi1e1:t2:aa1:y1:qe",
            // Unsorted keys (not strict bencode, but some senders): still KRPC.
            b"d1:y1:q1:t2:aa1:q4:ping1:ad2:id20:abcdefghij0123456789ee",
        ] {
            assert_eq!(classify(m), Route::Dht, "{}", String::from_utf8_lossy(m));
        }
    }

    #[test]
    fn ambiguous_dictionaries_go_to_the_overlay() {
        for m in [
            // A `y` that is not a KRPC type: another letter, longer, an int.
            &b"d1:t2:aa1:y1:xe"[..],
            b"d1:t2:aa1:y2:qqe",
            b"d1:t2:aa1:yi1ee",
            b"d1:t2:aa1:y0:e",
            // `y` only inside a value, never at the top level.
            b"d1:ad1:y1:qe1:t2:aae",
            b"d1:ald1:y1:qeee",
            b"d1:x6:1:y1:qe",
            b"d2:yy1:qe",
            // Malformed before the `y`: given up, the overlay drops it.
            b"d1:ai1:y1:qe",
            b"d1:a5:1:y1:qe",
            b"di1e1:y1:qe",
            b"d1:al1:y1:qe",
            b"d99999999999:y1:qe",
            b"d-1:y1:qe",
            b"d:1:y1:qe",
            b"d1:y",
            b"d1:y1:",
            b"d1:y5:q",
            b"d1:ae",
            b"d",
            b"de",
            b"dee",
        ] {
            assert_eq!(
                classify(m),
                Route::Overlay,
                "{}",
                String::from_utf8_lossy(m)
            );
        }
    }

    #[test]
    fn sealed_packets() {
        let mut sealed = vec![b's'];
        sealed.extend_from_slice(&[7; 60]);
        assert_eq!(classify(&sealed), Route::Sealed);
        // Too short to open: still the overlay's to refuse (and count).
        assert_eq!(classify(b"s"), Route::Sealed);
    }

    #[test]
    fn utp_headers() {
        for ty in 0..5u8 {
            let mut h = [0u8; MIN_UTP];
            h[0] = ty << 4 | 1;
            assert_eq!(classify(&h), Route::Utp, "type {ty}");
            assert_eq!(classify(&h[..MIN_UTP - 1]), Route::Junk, "short, type {ty}");
        }
        // Type 5 does not exist; version 0 and 2 are not uTP v1.
        for first in [0x51u8, 0x10, 0x02, 0x12, 0x40, 0xf1] {
            let mut h = [0u8; MIN_UTP];
            h[0] = first;
            assert_eq!(classify(&h), Route::Junk, "{first:#04x}");
        }
    }

    #[test]
    fn junk() {
        assert_eq!(classify(&[]), Route::Junk);
        for d in [
            &b"\x13BitTorrent protocol"[..],
            b"GET / HTTP/1.1\r\n",
            b"\xff\xff\xff\xff",
            b"l1:ye",
            b"i42e",
        ] {
            assert_eq!(classify(d), Route::Junk);
        }
    }

    #[test]
    fn any_bytes_are_classified_without_panicking() {
        // A cheap deterministic generator; biased toward bencode's alphabet.
        let alphabet = b"deil0123456789:yqr-x\x00\x01s";
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut buf = Vec::new();
        for _ in 0..20_000 {
            buf.clear();
            let len = (next() % 64) as usize;
            for i in 0..len {
                let r = next();
                buf.push(if i == 0 && r % 2 == 0 {
                    b'd'
                } else if r % 3 == 0 {
                    r as u8
                } else {
                    alphabet[(r >> 8) as usize % alphabet.len()]
                });
            }
            let _ = classify(&buf);
        }
    }

    #[test]
    fn the_port_routes_and_counts_what_it_receives() {
        let mut port = UdpPort::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = port.local_addr().unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let krpc = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
        sender.send_to(krpc, to).unwrap();
        sender.send_to(b"\x13junk", to).unwrap();
        let mut buf = [0u8; 1500];
        let mut got = Vec::new();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < 2 {
            match port.recv(&mut buf) {
                Ok(d) => {
                    assert_eq!(d.from, sender.local_addr().unwrap());
                    got.push((d.route, d.bytes.len()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < until, "datagrams lost");
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, vec![(Route::Dht, krpc.len()), (Route::Junk, 5)]);
        assert_eq!(port.received(Route::Dht), 1);
        assert_eq!(port.received(Route::Junk), 1);
        assert_eq!(port.received(Route::Overlay), 0);
    }
}
