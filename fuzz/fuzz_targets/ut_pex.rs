//! BEP 11 ut_pex payloads into `PexMessage::parse`, and fuzzed event
//! sequences into the sans-IO `swarm::pex::PeerExchange` that receives and
//! sends them for one torrent.
//!
//! Input: `[selector, records...]`, records `[op, len_hi, len_lo, bytes...]`.
//! Selector bit 0: a private torrent (PEX disabled). Every record's bytes
//! go through `PexMessage::parse`; the op (low 3 bits) and peer (bits 4-6,
//! eight peers) then drive the exchange: a connection (address and
//! direction from the bytes), an extended handshake (built from the bytes,
//! or parsed from them with bit 3), the parsed PEX message, a tick, a
//! disconnect, the seed flag, one of our own addresses, the clock.
//!
//! Invariants checked (beyond "no panic"):
//! - parse keeps at most `MAX_PEX_ADDED` added and `MAX_PEX_DROPPED`
//!   dropped addresses, counts every other whole entry in `n_ignored` (kept
//!   + ignored = the entries of `added`, `added6`, `dropped`, `dropped6`),
//!   takes each added peer's flags from its position in `added.f`/`added6.f`,
//!   and `parse(emit(m))` gives the same addresses and flags;
//! - from a received message: at most `MAX_NEW` candidates, unique, each
//!   connectable for the sender (no port 0, unspecified, multicast,
//!   broadcast, or loopback unless the sender is on loopback), none of our
//!   own addresses, source "pex"; nothing from an unknown or private peer;
//! - what `tick` sends goes to a connected peer that offered ut_pex, under
//!   its id; the payload parses, has at most `MAX_ADDED` added and
//!   `MAX_DROPPED` dropped; it never tells a peer its own listen address,
//!   never adds what that peer was already told nor drops what it was not
//!   told, adds only listen addresses of connected peers and drops none of
//!   them, nor any of our own addresses; a private torrent sends nothing;
//! - after `tick(now)`, `next_deadline()` is later than `now`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerlet::bencode;
use peerlet::swarm::pex::{
    connectable, PeerExchange, MAX_ADDED, MAX_DROPPED, MAX_NEW, MAX_OWN, SOURCE,
};
use peerlet::wire::extension::{
    ExtendedHandshake, PexMessage, LIMITS, MAX_PEX_ADDED, MAX_PEX_DROPPED, UT_PEX,
};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

const PEERS: usize = 8;

#[derive(Clone, Default)]
struct PeerModel {
    connected: bool,
    remote: Option<SocketAddr>,
    outgoing: bool,
    /// Its listen address as the exchange tracks it (connectable only).
    listen: Option<SocketAddr>,
    ext_id: Option<u8>,
    /// What it has been told is connected.
    told: HashSet<SocketAddr>,
}

fuzz_target!(|data: &[u8]| {
    let [sel, records @ ..] = data else {
        return;
    };
    let private = sel & 1 != 0;
    let base = Instant::now();
    let mut secs: u64 = 1_000;
    let mut pex = PeerExchange::new(private);
    assert_eq!(pex.is_enabled(), !private);
    let mut peers: Vec<PeerModel> = vec![PeerModel::default(); PEERS];
    let mut own: Vec<SocketAddr> = Vec::new();

    let mut rest = records;
    let mut n = 0;
    while rest.len() >= 3 && n < 200 {
        n += 1;
        let op = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let bytes = &rest[3..3 + len];
        rest = &rest[3 + len..];
        let parsed = check_parse(bytes);
        let p = usize::from(op >> 4) % PEERS;
        let key = p as u64;
        let now = base + Duration::from_secs(secs);
        let b = |i: usize| bytes.get(i).copied().unwrap_or(0);
        match op & 7 {
            0 => {
                let remote = addr(b(0), b(1), u16::from_be_bytes([b(2), b(3)]));
                let outgoing = b(0) & 4 != 0;
                pex.on_connect(key, remote, outgoing, now);
                let listen = outgoing.then_some(remote);
                peers[p] = PeerModel {
                    connected: !private,
                    remote: Some(remote),
                    outgoing,
                    listen: listen.filter(|a| connectable(*a, a.ip())),
                    ..PeerModel::default()
                };
            }
            1 => {
                let hs = if op & 8 != 0 {
                    match ExtendedHandshake::parse(bytes) {
                        Ok(hs) => hs,
                        Err(_) => continue,
                    }
                } else {
                    let mut hs = ExtendedHandshake::default();
                    if b(0) & 1 != 0 {
                        hs.m.push((UT_PEX.to_vec(), b(1)));
                    }
                    if b(0) & 2 != 0 {
                        hs.port = Some(u16::from_be_bytes([b(2), b(3)])).filter(|&p| p != 0);
                    }
                    hs
                };
                pex.on_handshake(key, &hs, now);
                let m = &mut peers[p];
                if m.connected {
                    if let Some(id) = hs.extension(UT_PEX) {
                        let ext_id = (id != 0).then_some(id);
                        if ext_id.is_none() || m.ext_id.is_none() {
                            m.told.clear();
                        }
                        m.ext_id = ext_id;
                    }
                    if let (Some(port), false, Some(remote)) = (hs.port, m.outgoing, m.remote) {
                        let listen = SocketAddr::new(remote.ip(), port);
                        m.listen = Some(listen).filter(|a| connectable(*a, a.ip()));
                    }
                }
            }
            2 => {
                let Some(msg) = &parsed else { continue };
                let got = pex.on_message(key, msg, now);
                let m = &peers[p];
                if !m.connected {
                    assert!(got.is_empty(), "candidates from an unknown peer");
                }
                assert!(got.len() <= MAX_NEW, "{} candidates", got.len());
                let sender = m.remote.map(|a| a.ip());
                for (i, c) in got.iter().enumerate() {
                    assert_eq!(c.source, SOURCE);
                    assert!(!got[..i].iter().any(|o| o.addr == c.addr), "duplicate");
                    if let Some(sender) = sender {
                        assert!(connectable(c.addr, sender), "{} from {sender}", c.addr);
                    }
                    assert!(!own.contains(&c.addr), "our own address {}", c.addr);
                    assert!(msg
                        .added
                        .iter()
                        .any(|a| a.addr == c.addr && a.flags == c.flags));
                }
            }
            3 => {
                pex.tick(now);
                check_sends(&mut pex, &mut peers, &own, private);
                if let Some(d) = pex.next_deadline() {
                    assert!(d > now, "next deadline not after a tick");
                }
            }
            4 => {
                pex.on_disconnect(key);
                peers[p] = PeerModel::default();
            }
            5 => pex.set_seed(key, b(0) & 1 != 0),
            6 => {
                let a = addr(b(0), b(1), u16::from_be_bytes([b(2), b(3)]));
                pex.add_own_addr(a);
                if !own.contains(&a) && own.len() < MAX_OWN {
                    own.push(a);
                }
            }
            _ => secs += u64::from(b(0)) * 4 + 1,
        }
    }
    // Whatever is due at the end.
    secs += 3600;
    pex.tick(base + Duration::from_secs(secs));
    check_sends(&mut pex, &mut peers, &own, private);
});

/// An address of one of a few kinds: loopback, private IPv4, IPv6,
/// unspecified, multicast; the port as given (0 included).
fn addr(kind: u8, x: u8, port: u16) -> SocketAddr {
    let ip: IpAddr = match kind & 7 {
        0 | 1 => Ipv4Addr::new(127, 0, 0, x).into(),
        2 | 3 => Ipv4Addr::new(10, 0, x >> 4, x & 15).into(),
        4 => Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(x)).into(),
        5 => Ipv4Addr::UNSPECIFIED.into(),
        6 => Ipv4Addr::new(224, 0, 0, x).into(),
        _ => Ipv6Addr::LOCALHOST.into(),
    };
    SocketAddr::new(ip, port)
}

fn check_sends(pex: &mut PeerExchange, peers: &mut [PeerModel], own: &[SocketAddr], private: bool) {
    let sends: Vec<_> = pex.drain().collect();
    if private {
        assert!(sends.is_empty(), "PEX sent for a private torrent");
        return;
    }
    let listening: HashSet<SocketAddr> = peers
        .iter()
        .filter(|m| m.connected)
        .filter_map(|m| m.listen)
        .collect();
    for s in sends {
        let m = &mut peers[usize::try_from(s.peer).unwrap()];
        assert!(m.connected, "sent to a peer that is not connected");
        assert_eq!(Some(s.ext_id), m.ext_id, "sent under the wrong id");
        let msg = PexMessage::parse(&s.payload).expect("our PEX message parses");
        assert!(msg.added.len() <= MAX_ADDED && msg.dropped.len() <= MAX_DROPPED);
        assert!(
            !msg.added.is_empty() || !msg.dropped.is_empty(),
            "empty message"
        );
        for a in &msg.added {
            assert_ne!(Some(a.addr), m.listen, "told a peer its own address");
            assert!(
                listening.contains(&a.addr),
                "added {} is not connected",
                a.addr
            );
            assert!(
                !own.contains(&a.addr),
                "advertised our own address {}",
                a.addr
            );
            assert!(m.told.insert(a.addr), "added {} twice", a.addr);
        }
        for a in &msg.dropped {
            assert!(!listening.contains(a), "dropped {a}, which is connected");
            assert!(m.told.remove(a), "dropped {a}, which it was not told");
        }
    }
}

/// Whole entries of a compact address string.
fn entries(d: &bencode::Dict<'_, '_>, key: &[u8], width: usize) -> usize {
    d.get(key)
        .and_then(|v| v.as_bytes())
        .map_or(0, |b| b.len() / width)
}

/// `PexMessage::parse` with its invariants; the message when it parses.
fn check_parse(bytes: &[u8]) -> Option<PexMessage> {
    let msg = match PexMessage::parse(bytes) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.to_string();
            return None;
        }
    };
    assert!(msg.added.len() <= MAX_PEX_ADDED);
    assert!(msg.dropped.len() <= MAX_PEX_DROPPED);
    let doc = bencode::decode(bytes, LIMITS).expect("parsed, so it decodes");
    let d = doc.root().as_dict().expect("parsed, so a dictionary");
    let whole = entries(&d, b"added", 6)
        + entries(&d, b"added6", 18)
        + entries(&d, b"dropped", 6)
        + entries(&d, b"dropped6", 18);
    assert_eq!(
        msg.added.len() + msg.dropped.len() + msg.n_ignored,
        whole,
        "kept + ignored != entries"
    );
    // Flags by position within each family.
    let flags = |k: &[u8]| d.get(k).and_then(|v| v.as_bytes()).unwrap_or(&[]);
    let (f4, f6) = (flags(b"added.f"), flags(b"added6.f"));
    let (mut i4, mut i6) = (0, 0);
    for a in &msg.added {
        let (f, i) = match a.addr {
            SocketAddr::V4(_) => (f4, &mut i4),
            SocketAddr::V6(_) => (f6, &mut i6),
        };
        assert_eq!(
            a.flags,
            f.get(*i).copied().unwrap_or(0),
            "flags of {}",
            a.addr
        );
        *i += 1;
    }
    let again = PexMessage::parse(&msg.to_bytes()).expect("our PEX message parses");
    assert_eq!(again.added, msg.added, "added changed in the round trip");
    assert_eq!(
        again.dropped, msg.dropped,
        "dropped changed in the round trip"
    );
    assert_eq!(again.n_ignored, 0);
    Some(msg)
}
