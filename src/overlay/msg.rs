//! Overlay packets: one bencoded dictionary per UDP datagram, at most
//! [`MAX_PACKET`] bytes. The layout, key by key, is in docs/PROTOCOL.md;
//! its example packets are the fixtures of `tests/overlay_protocol.rs`.
//!
//! Every packet has `id` (the sender's 20-byte node id), `t` (the kind) and
//! `v` (protocol version, 1). Unknown keys are ignored (newer versions may
//! add some); a missing or malformed required key rejects the packet.

use super::NodeId;
use crate::bencode::{self, Dict, Limits, Value};
use crate::metainfo::InfoHash;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Largest packet sent or accepted: fits one Ethernet frame with IPv6 and
/// UDP headers, so packets are never fragmented.
pub const MAX_PACKET: usize = 1400;
/// Protocol version carried in `v`.
pub const VERSION: i64 = 1;
/// Longest name carried for a content item (longer names are cut).
pub const MAX_NAME: usize = 120;
/// Longest words string in a query.
pub const MAX_WORDS: usize = 100;
/// Most nodes in one `nodes` answer.
pub const MAX_NODES: usize = 16;
/// Most results in one `hit`, items in one `announce`, holders per result.
pub const MAX_ITEMS: usize = 32;
pub const MAX_HOLDERS: usize = 16;
/// A transaction id (`tx`): pairs an answer with its request.
pub type Tx = [u8; 4];
/// A search's query id (`q`).
pub type QueryId = [u8; 8];
/// An address token (`k`): proves the sender of a request owns its address.
pub type Token = [u8; 8];

/// Capability flags (`f`).
pub mod flags {
    /// Answers and forwards queries (every peerlet node).
    pub const SEARCH: i64 = 1;
    /// Holds at least one torrent it shares.
    pub const HOLDS: i64 = 2;
}

const LIMITS: Limits = Limits {
    max_input: MAX_PACKET,
    max_depth: 4,
    max_tokens: 512,
    max_string: MAX_PACKET,
};

/// Why a packet was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    TooLong(usize),
    Bencode(bencode::Error),
    NotDict,
    Missing(&'static str),
    BadValue(&'static str),
    UnknownKind(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooLong(n) => write!(f, "packet of {n} bytes exceeds {MAX_PACKET}"),
            Error::Bencode(e) => write!(f, "bad bencode: {e}"),
            Error::NotDict => f.write_str("packet is not a dictionary"),
            Error::Missing(k) => write!(f, "missing key `{k}`"),
            Error::BadValue(k) => write!(f, "bad value for `{k}`"),
            Error::UnknownKind(t) => write!(f, "unknown packet kind {t:?}"),
        }
    }
}

impl std::error::Error for Error {}

/// What a search looks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    Hash(InfoHash),
    /// Words of a name, as typed (normalised when matched).
    Words(String),
}

/// A content item: what a node holds or has heard of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub info_hash: InfoHash,
    pub name: String,
    pub size: u64,
}

/// Where a holder can be reached: its IP, BitTorrent (TCP) port and overlay
/// (UDP) port. An unspecified IP means "the node that sent this hit"; the
/// first node to receive the hit fills in the address it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Holder {
    pub ip: IpAddr,
    pub tcp_port: u16,
    pub udp_port: u16,
}

impl Holder {
    pub fn peer_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.tcp_port)
    }

    pub fn node_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.udp_port)
    }
}

/// One result of a hit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HitResult {
    pub item: Item,
    pub holders: Vec<Holder>,
}

/// The kinds of packets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Are you there? `pad` makes the ping at least as long as the pong, so
    /// answering a forged source never amplifies.
    Ping {
        tx: Tx,
        tcp_port: u16,
        flags: i64,
        pad: usize,
    },
    /// Yes, with a token for further requests and the address the ping came from.
    Pong {
        tx: Tx,
        tcp_port: u16,
        flags: i64,
        token: Token,
        your_addr: SocketAddr,
    },
    /// LAN discovery, to a multicast group or broadcast address.
    Beacon {
        tcp_port: u16,
        udp_port: u16,
        flags: i64,
    },
    /// Send me up to `max` of your routing-table entries.
    GetNodes { tx: Tx, token: Token, max: u8 },
    Nodes {
        tx: Tx,
        nodes: Vec<(NodeId, SocketAddr)>,
    },
    /// I hold these.
    Announce {
        token: Token,
        tcp_port: u16,
        items: Vec<Item>,
    },
    Query {
        token: Token,
        qid: QueryId,
        ttl: u8,
        hops: u8,
        target: Target,
    },
    Hit {
        qid: QueryId,
        hops: u8,
        results: Vec<HitResult>,
    },
}

impl Body {
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Ping { .. } => "ping",
            Body::Pong { .. } => "pong",
            Body::Beacon { .. } => "beacon",
            Body::GetNodes { .. } => "getnodes",
            Body::Nodes { .. } => "nodes",
            Body::Announce { .. } => "announce",
            Body::Query { .. } => "query",
            Body::Hit { .. } => "hit",
        }
    }
}

/// Every kind, in the order the statistics list them.
pub const KINDS: [&str; 8] = [
    "ping", "pong", "beacon", "getnodes", "nodes", "announce", "query", "hit",
];

/// A packet: who sent it and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub id: NodeId,
    pub body: Body,
}

fn b(bytes: &[u8]) -> Value {
    Value::Bytes(bytes.to_vec())
}

fn int(n: impl Into<i64>) -> Value {
    Value::Int(n.into())
}

/// Compact address: 4 or 16 bytes of IP, then the port (big-endian).
pub fn compact_addr(addr: &SocketAddr, out: &mut Vec<u8>) {
    match addr.ip() {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

fn parse_ip(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]).into()),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            Some(Ipv6Addr::from(a).into())
        }
        _ => None,
    }
}

/// Parses a 6- or 18-byte compact address.
pub fn parse_compact_addr(b: &[u8]) -> Option<SocketAddr> {
    let (ip, port) = b.split_at_checked(b.len().checked_sub(2)?)?;
    Some(SocketAddr::new(
        parse_ip(ip)?,
        u16::from_be_bytes([port[0], port[1]]),
    ))
}

/// Node records: 26 bytes each (id, IPv4, port) for `n4`, 38 bytes (id,
/// IPv6, port) for `n6`.
pub fn compact_nodes(nodes: &[(NodeId, SocketAddr)]) -> (Vec<u8>, Vec<u8>) {
    let (mut n4, mut n6) = (Vec::new(), Vec::new());
    for (id, addr) in nodes {
        let out = if addr.is_ipv4() { &mut n4 } else { &mut n6 };
        out.extend_from_slice(id.as_bytes());
        compact_addr(addr, out);
    }
    (n4, n6)
}

/// One 26- or 38-byte node record.
pub fn parse_node_record(c: &[u8]) -> Option<(NodeId, SocketAddr)> {
    let (id, addr) = c.split_at_checked(20)?;
    let id: [u8; 20] = id.try_into().ok()?;
    Some((NodeId(id), parse_compact_addr(addr)?))
}

fn holders_bytes(holders: &[Holder]) -> Value {
    let mut out = Vec::new();
    for h in holders {
        match h.ip {
            IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
        }
        out.extend_from_slice(&h.tcp_port.to_be_bytes());
        out.extend_from_slice(&h.udp_port.to_be_bytes());
    }
    Value::Bytes(out)
}

/// Holders: `a` holds 8-byte IPv4 records, `a6` 20-byte IPv6 records (IP,
/// TCP port, UDP port).
fn parse_holders(b: &[u8], width: usize) -> Option<Vec<Holder>> {
    if b.len() % width != 0 || b.len() / width > MAX_HOLDERS {
        return None;
    }
    b.chunks_exact(width)
        .map(|c| {
            let ip = parse_ip(&c[..width - 4])?;
            let tcp_port = u16::from_be_bytes([c[width - 4], c[width - 3]]);
            let udp_port = u16::from_be_bytes([c[width - 2], c[width - 1]]);
            Some(Holder {
                ip,
                tcp_port,
                udp_port,
            })
        })
        .collect()
}

fn item_value(item: &Item) -> BTreeMap<Vec<u8>, Value> {
    let mut d = BTreeMap::new();
    d.insert(b"ih".to_vec(), b(&item.info_hash.0));
    d.insert(b"n".to_vec(), b(cut_name(&item.name).as_bytes()));
    d.insert(
        b"s".to_vec(),
        int(i64::try_from(item.size).unwrap_or(i64::MAX)),
    );
    d
}

/// A name cut to [`MAX_NAME`] bytes on a character boundary.
pub fn cut_name(name: &str) -> &str {
    if name.len() <= MAX_NAME {
        return name;
    }
    let mut end = MAX_NAME;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

impl Packet {
    /// The packet's bytes. The caller keeps it within [`MAX_PACKET`]
    /// (the node packs hits and announcements by encoded size).
    pub fn encode(&self) -> Vec<u8> {
        let mut d: BTreeMap<Vec<u8>, Value> = BTreeMap::new();
        d.insert(b"id".to_vec(), b(self.id.as_bytes()));
        d.insert(b"t".to_vec(), b(self.body.kind().as_bytes()));
        d.insert(b"v".to_vec(), int(VERSION));
        let mut put = |k: &str, v: Value| {
            d.insert(k.as_bytes().to_vec(), v);
        };
        match &self.body {
            Body::Ping {
                tx,
                tcp_port,
                flags,
                pad,
            } => {
                put("tx", b(tx));
                put("p", int(*tcp_port));
                put("f", int(*flags));
                if *pad > 0 {
                    put("x", Value::Bytes(vec![0; *pad]));
                }
            }
            Body::Pong {
                tx,
                tcp_port,
                flags,
                token,
                your_addr,
            } => {
                put("tx", b(tx));
                put("p", int(*tcp_port));
                put("f", int(*flags));
                put("k", b(token));
                let mut y = Vec::new();
                compact_addr(your_addr, &mut y);
                put("y", Value::Bytes(y));
            }
            Body::Beacon {
                tcp_port,
                udp_port,
                flags,
            } => {
                put("p", int(*tcp_port));
                put("u", int(*udp_port));
                put("f", int(*flags));
            }
            Body::GetNodes { tx, token, max } => {
                put("tx", b(tx));
                put("k", b(token));
                put("n", int(*max));
            }
            Body::Nodes { tx, nodes } => {
                put("tx", b(tx));
                let (n4, n6) = compact_nodes(nodes);
                put("n4", Value::Bytes(n4));
                if !n6.is_empty() {
                    put("n6", Value::Bytes(n6));
                }
            }
            Body::Announce {
                token,
                tcp_port,
                items,
            } => {
                put("k", b(token));
                put("p", int(*tcp_port));
                put(
                    "c",
                    Value::List(items.iter().map(|i| Value::Dict(item_value(i))).collect()),
                );
            }
            Body::Query {
                token,
                qid,
                ttl,
                hops,
                target,
            } => {
                put("k", b(token));
                put("q", b(qid));
                put("ttl", int(*ttl));
                put("h", int(*hops));
                match target {
                    Target::Hash(ih) => put("ih", b(&ih.0)),
                    Target::Words(w) => put("w", b(cut_words(w).as_bytes())),
                }
            }
            Body::Hit { qid, hops, results } => {
                put("q", b(qid));
                put("h", int(*hops));
                let list = results
                    .iter()
                    .map(|r| {
                        let mut d = item_value(&r.item);
                        let (v4, v6): (Vec<Holder>, Vec<Holder>) =
                            r.holders.iter().partition(|h| h.ip.is_ipv4());
                        d.insert(b"a".to_vec(), holders_bytes(&v4));
                        if !v6.is_empty() {
                            d.insert(b"a6".to_vec(), holders_bytes(&v6));
                        }
                        Value::Dict(d)
                    })
                    .collect();
                put("r", Value::List(list));
            }
        }
        Value::Dict(d).to_bytes()
    }

    /// Parses a datagram. Never panics; refuses anything over [`MAX_PACKET`].
    pub fn parse(bytes: &[u8]) -> Result<Packet, Error> {
        if bytes.len() > MAX_PACKET {
            return Err(Error::TooLong(bytes.len()));
        }
        let doc = bencode::decode(bytes, LIMITS).map_err(Error::Bencode)?;
        let d = doc.root().as_dict().ok_or(Error::NotDict)?;
        let id = NodeId(fixed::<20>(&d, "id")?);
        let kind = d
            .get(b"t")
            .and_then(|v| v.as_bytes())
            .ok_or(Error::Missing("t"))?;
        let body = match kind {
            b"ping" => Body::Ping {
                tx: fixed(&d, "tx")?,
                tcp_port: port(&d, "p")?,
                flags: int_of(&d, "f").unwrap_or(0),
                pad: d
                    .get(b"x")
                    .and_then(|v| v.as_bytes())
                    .map_or(0, |x| x.len()),
            },
            b"pong" => Body::Pong {
                tx: fixed(&d, "tx")?,
                tcp_port: port(&d, "p")?,
                flags: int_of(&d, "f").unwrap_or(0),
                token: fixed(&d, "k")?,
                your_addr: d
                    .get(b"y")
                    .and_then(|v| v.as_bytes())
                    .and_then(parse_compact_addr)
                    .ok_or(Error::BadValue("y"))?,
            },
            b"beacon" => Body::Beacon {
                tcp_port: port(&d, "p")?,
                udp_port: port(&d, "u")?,
                flags: int_of(&d, "f").unwrap_or(0),
            },
            b"getnodes" => Body::GetNodes {
                tx: fixed(&d, "tx")?,
                token: fixed(&d, "k")?,
                max: int_of(&d, "n")?.clamp(0, MAX_NODES as i64) as u8,
            },
            b"nodes" => {
                let mut nodes = Vec::new();
                for (key, width) in [(&b"n4"[..], 26usize), (&b"n6"[..], 38)] {
                    let Some(v) = d.get(key) else { continue };
                    let label = if width == 26 { "n4" } else { "n6" };
                    let raw = v.as_bytes().ok_or(Error::BadValue(label))?;
                    if raw.len() % width != 0 || raw.len() / width > MAX_NODES {
                        return Err(Error::BadValue(label));
                    }
                    for c in raw.chunks_exact(width) {
                        nodes.push(parse_node_record(c).ok_or(Error::BadValue(label))?);
                    }
                }
                Body::Nodes {
                    tx: fixed(&d, "tx")?,
                    nodes,
                }
            }
            b"announce" => {
                let list = d
                    .get(b"c")
                    .and_then(|v| v.as_list())
                    .ok_or(Error::Missing("c"))?;
                let mut items = Vec::new();
                for v in list.take(MAX_ITEMS) {
                    let item = v.as_dict().ok_or(Error::BadValue("c"))?;
                    items.push(parse_item(&item)?);
                }
                Body::Announce {
                    token: fixed(&d, "k")?,
                    tcp_port: port(&d, "p")?,
                    items,
                }
            }
            b"query" => {
                let target = if let Some(ih) = d.get(b"ih") {
                    let ih: [u8; 20] = ih
                        .as_bytes()
                        .and_then(|b| b.try_into().ok())
                        .ok_or(Error::BadValue("ih"))?;
                    Target::Hash(InfoHash(ih))
                } else {
                    let w = d
                        .get(b"w")
                        .and_then(|v| v.as_str())
                        .ok_or(Error::Missing("ih or w"))?;
                    if w.len() > MAX_WORDS || super::words::words(w).is_empty() {
                        return Err(Error::BadValue("w"));
                    }
                    Target::Words(w.to_string())
                };
                Body::Query {
                    token: fixed(&d, "k")?,
                    qid: fixed(&d, "q")?,
                    // Forged huge values are clamped here; the node caps TTL further.
                    ttl: int_of(&d, "ttl")?.clamp(0, 255) as u8,
                    hops: int_of(&d, "h")?.clamp(0, 255) as u8,
                    target,
                }
            }
            b"hit" => {
                let list = d
                    .get(b"r")
                    .and_then(|v| v.as_list())
                    .ok_or(Error::Missing("r"))?;
                let mut results = Vec::new();
                for v in list.take(MAX_ITEMS) {
                    let r = v.as_dict().ok_or(Error::BadValue("r"))?;
                    let item = parse_item(&r)?;
                    let mut holders = Vec::new();
                    for (key, width) in [(&b"a"[..], 8usize), (&b"a6"[..], 20)] {
                        if let Some(a) = r.get(key) {
                            let raw = a.as_bytes().ok_or(Error::BadValue("a"))?;
                            holders.extend(parse_holders(raw, width).ok_or(Error::BadValue("a"))?);
                        }
                    }
                    results.push(HitResult { item, holders });
                }
                Body::Hit {
                    qid: fixed(&d, "q")?,
                    hops: int_of(&d, "h")?.clamp(0, 255) as u8,
                    results,
                }
            }
            other => {
                return Err(Error::UnknownKind(
                    String::from_utf8_lossy(&other[..other.len().min(16)]).into_owned(),
                ))
            }
        };
        Ok(Packet { id, body })
    }
}

fn cut_words(w: &str) -> &str {
    if w.len() <= MAX_WORDS {
        return w;
    }
    let mut end = MAX_WORDS;
    while !w.is_char_boundary(end) {
        end -= 1;
    }
    &w[..end]
}

fn parse_item(d: &Dict<'_, '_>) -> Result<Item, Error> {
    let ih: [u8; 20] = d
        .get(b"ih")
        .and_then(|v| v.as_bytes())
        .and_then(|b| b.try_into().ok())
        .ok_or(Error::BadValue("ih"))?;
    let name = d.get(b"n").and_then(|v| v.as_str()).unwrap_or("");
    if name.len() > MAX_NAME {
        return Err(Error::BadValue("n"));
    }
    let size = d
        .get(b"s")
        .and_then(|v| v.as_int())
        .and_then(|s| u64::try_from(s).ok())
        .ok_or(Error::BadValue("s"))?;
    Ok(Item {
        info_hash: InfoHash(ih),
        name: name.to_string(),
        size,
    })
}

fn fixed<const N: usize>(d: &Dict<'_, '_>, key: &'static str) -> Result<[u8; N], Error> {
    d.get(key.as_bytes())
        .ok_or(Error::Missing(key))?
        .as_bytes()
        .and_then(|b| b.try_into().ok())
        .ok_or(Error::BadValue(key))
}

fn int_of(d: &Dict<'_, '_>, key: &'static str) -> Result<i64, Error> {
    d.get(key.as_bytes())
        .ok_or(Error::Missing(key))?
        .as_int()
        .ok_or(Error::BadValue(key))
}

fn port(d: &Dict<'_, '_>, key: &'static str) -> Result<u16, Error> {
    u16::try_from(int_of(d, key)?)
        .ok()
        .filter(|&p| p != 0)
        .ok_or(Error::BadValue(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId([n; 20])
    }

    fn roundtrip(body: Body) {
        let p = Packet { id: id(7), body };
        let bytes = p.encode();
        assert!(bytes.len() <= MAX_PACKET);
        assert_eq!(Packet::parse(&bytes), Ok(p));
    }

    #[test]
    fn every_kind_roundtrips() {
        let a4: SocketAddr = "10.0.0.2:6881".parse().unwrap();
        let a6: SocketAddr = "[fd00::2]:6882".parse().unwrap();
        roundtrip(Body::Ping {
            tx: *b"abcd",
            tcp_port: 6881,
            flags: flags::SEARCH,
            pad: 40,
        });
        roundtrip(Body::Pong {
            tx: *b"abcd",
            tcp_port: 6881,
            flags: 3,
            token: *b"12345678",
            your_addr: a6,
        });
        roundtrip(Body::Beacon {
            tcp_port: 1,
            udp_port: 2,
            flags: 1,
        });
        roundtrip(Body::GetNodes {
            tx: *b"wxyz",
            token: [9; 8],
            max: 16,
        });
        roundtrip(Body::Nodes {
            tx: *b"wxyz",
            nodes: vec![(id(1), a4), (id(2), a6)],
        });
        let item = Item {
            info_hash: InfoHash([5; 20]),
            name: "ubuntu-24.04.iso".into(),
            size: 1 << 32,
        };
        roundtrip(Body::Announce {
            token: [1; 8],
            tcp_port: 6881,
            items: vec![item.clone()],
        });
        roundtrip(Body::Query {
            token: [1; 8],
            qid: [2; 8],
            ttl: 4,
            hops: 0,
            target: Target::Words("ubuntu iso".into()),
        });
        roundtrip(Body::Query {
            token: [1; 8],
            qid: [2; 8],
            ttl: 4,
            hops: 3,
            target: Target::Hash(InfoHash([5; 20])),
        });
        roundtrip(Body::Hit {
            qid: [2; 8],
            hops: 1,
            results: vec![HitResult {
                item,
                holders: vec![
                    Holder {
                        ip: a4.ip(),
                        tcp_port: 6881,
                        udp_port: 6882,
                    },
                    Holder {
                        ip: a6.ip(),
                        tcp_port: 1,
                        udp_port: 2,
                    },
                ],
            }],
        });
    }

    #[test]
    fn refuses_bad_packets() {
        assert!(matches!(
            Packet::parse(&vec![b'x'; MAX_PACKET + 1]),
            Err(Error::TooLong(_))
        ));
        assert!(matches!(Packet::parse(b"le"), Err(Error::NotDict)));
        assert!(matches!(
            Packet::parse(b"d1:t4:pinge"),
            Err(Error::Missing("id"))
        ));
        let mut p = Packet {
            id: id(1),
            body: Body::Beacon {
                tcp_port: 1,
                udp_port: 2,
                flags: 0,
            },
        }
        .encode();
        // Port 0 is refused.
        let s = String::from_utf8_lossy(&p).replace("1:ui2e", "1:ui0e");
        p = s.into_bytes();
        assert_eq!(Packet::parse(&p), Err(Error::BadValue("u")));
        // Unknown kinds.
        let mut raw = b"d2:id20:".to_vec();
        raw.extend_from_slice(&[1; 20]);
        raw.extend_from_slice(b"1:t4:evile");
        assert_eq!(Packet::parse(&raw), Err(Error::UnknownKind("evil".into())));
        // Garbage never panics.
        for n in 0..200u8 {
            let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37) ^ n).collect();
            let _ = Packet::parse(&junk);
        }
    }

    #[test]
    fn huge_ttl_is_clamped_when_parsed() {
        let p = Packet {
            id: id(1),
            body: Body::Query {
                token: [0; 8],
                qid: [0; 8],
                ttl: 4,
                hops: 0,
                target: Target::Hash(InfoHash([1; 20])),
            },
        }
        .encode();
        let s = String::from_utf8_lossy(&p).replace("3:ttli4e", "3:ttli99999999999e");
        match Packet::parse(s.as_bytes()).unwrap().body {
            Body::Query { ttl, .. } => assert_eq!(ttl, 255),
            other => panic!("{other:?}"),
        }
    }
}
