//! The example packets of docs/PROTOCOL.md are fixtures: each ```hex block
//! must parse, be of the kind its name says, decode to the values the
//! document describes, and encode back to the same bytes.

use peerlet::metainfo::InfoHash;
use peerlet::overlay::msg::{self, flags, Body, HitResult, Holder, Item, Packet, Target};
use peerlet::overlay::NodeId;
use std::net::SocketAddr;

/// Node A (192.0.2.1, TCP and UDP port 6881) sends the requests; node B
/// (198.51.100.2) answers them.
const A: NodeId = NodeId([0x01; 20]);
const B: NodeId = NodeId([0x02; 20]);
/// B's token secret in the examples (a real one is random).
const B_SECRET: [u8; 16] = [0; 16];
const QID_WORDS: [u8; 8] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
const QID_HASH: [u8; 8] = [0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10];
const IH: InfoHash = InfoHash([0x5e; 20]);

fn a_addr() -> SocketAddr {
    "192.0.2.1:6881".parse().unwrap()
}

/// The token B gives A: SHA-1(secret || IP octets || port big-endian), first 8 bytes.
fn token() -> [u8; 8] {
    let mut input = B_SECRET.to_vec();
    input.extend_from_slice(&[192, 0, 2, 1]);
    input.extend_from_slice(&6881u16.to_be_bytes());
    peerlet::hash::sha1(&input)[..8].try_into().unwrap()
}

fn item() -> Item {
    Item {
        info_hash: IH,
        name: "ubuntu-24.04-desktop-amd64.iso".into(),
        size: 6_203_355_136,
    }
}

fn holder(ip: &str) -> Holder {
    Holder {
        ip: ip.parse().unwrap(),
        tcp_port: 6881,
        udp_port: 6881,
    }
}

/// What each example in the document decodes to.
fn expected(name: &str) -> Packet {
    let (id, body) = match name {
        "ping" => (
            A,
            Body::Ping {
                tx: *b"abcd",
                tcp_port: 6881,
                flags: flags::SEARCH | flags::HOLDS,
                pad: 63,
            },
        ),
        "pong" => (
            B,
            Body::Pong {
                tx: *b"abcd",
                tcp_port: 6881,
                flags: flags::SEARCH,
                token: token(),
                your_addr: a_addr(),
            },
        ),
        "beacon" => (
            A,
            Body::Beacon {
                tcp_port: 6881,
                udp_port: 6881,
                flags: flags::SEARCH | flags::HOLDS,
            },
        ),
        "getnodes" => (
            A,
            Body::GetNodes {
                tx: *b"efgh",
                token: token(),
                max: 16,
            },
        ),
        "nodes" => (
            B,
            Body::Nodes {
                tx: *b"efgh",
                nodes: vec![
                    (NodeId([0x03; 20]), "203.0.113.3:6881".parse().unwrap()),
                    (NodeId([0x04; 20]), "[2001:db8::4]:6881".parse().unwrap()),
                ],
            },
        ),
        "announce" => (
            A,
            Body::Announce {
                token: token(),
                tcp_port: 6881,
                items: vec![item()],
            },
        ),
        "query-words" => (
            A,
            Body::Query {
                token: token(),
                qid: QID_WORDS,
                ttl: 4,
                hops: 0,
                target: Target::Words("ubuntu iso".into()),
            },
        ),
        "query-hash" => (
            A,
            Body::Query {
                token: token(),
                qid: QID_HASH,
                ttl: 1,
                hops: 0,
                target: Target::Hash(IH),
            },
        ),
        "hit" => (
            B,
            Body::Hit {
                qid: QID_HASH,
                hops: 0,
                results: vec![HitResult {
                    item: item(),
                    holders: vec![
                        holder("0.0.0.0"),
                        holder("203.0.113.7"),
                        holder("2001:db8::7"),
                    ],
                }],
            },
        ),
        other => panic!("no expected packet for example {other:?}"),
    };
    Packet { id, body }
}

/// The ```hex blocks of the document: (info string after "hex ", bytes).
fn hex_blocks() -> Vec<(String, Vec<u8>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md");
    let doc = std::fs::read_to_string(path).expect("docs/PROTOCOL.md");
    let mut out = Vec::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in doc.lines() {
        match &mut current {
            None => {
                if let Some(info) = line.strip_prefix("```hex ") {
                    current = Some((info.trim().to_string(), Vec::new()));
                }
            }
            Some((info, lines)) if line.trim() == "```" => {
                let bytes = decode_hex(info, lines);
                out.push((std::mem::take(info), bytes));
                current = None;
            }
            Some((_, lines)) => lines.push(line),
        }
    }
    assert!(current.is_none(), "unterminated hex block");
    out
}

/// 32 bytes of lower-case hex per line (the last line may be shorter).
fn decode_hex(info: &str, lines: &[&str]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let full = line.len() == 64;
        let last = i + 1 == lines.len() && !line.is_empty() && line.len() <= 64;
        assert!(
            (full || last) && line.len() % 2 == 0,
            "{info}: line {i} is not 32 bytes of hex: {line:?}"
        );
        for pair in line.as_bytes().chunks(2) {
            let digits = std::str::from_utf8(pair).unwrap();
            assert!(
                digits
                    .bytes()
                    .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
                "{info}: not lower-case hex: {line:?}"
            );
            bytes.push(u8::from_str_radix(digits, 16).unwrap());
        }
    }
    bytes
}

/// The packet examples: (name, bytes) for every ```hex name=NAME block.
fn examples() -> Vec<(String, Vec<u8>)> {
    hex_blocks()
        .into_iter()
        .filter_map(|(info, bytes)| Some((info.strip_prefix("name=")?.to_string(), bytes)))
        .collect()
}

fn example(name: &str) -> Packet {
    let (_, bytes) = examples()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no example {name}"));
    Packet::parse(&bytes).unwrap()
}

#[test]
fn every_example_parses_to_its_kind_and_encodes_to_the_same_bytes() {
    let examples = examples();
    assert_eq!(examples.len(), 9, "one per kind, two queries");
    for (name, bytes) in &examples {
        assert!(
            bytes.len() <= msg::MAX_PACKET,
            "{name}: {} bytes",
            bytes.len()
        );
        assert_eq!(
            bytes.first(),
            Some(&b'd'),
            "{name}: overlay packets start with d"
        );
        let packet = Packet::parse(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let kind = name.split('-').next().unwrap();
        assert_eq!(packet.body.kind(), kind, "{name}");
        assert_eq!(packet.encode(), *bytes, "{name}: re-encoded bytes differ");
        assert_eq!(packet, expected(name), "{name}: decoded values");
    }
}

#[test]
fn every_kind_has_an_example() {
    let names: Vec<String> = examples().into_iter().map(|(n, _)| n).collect();
    for kind in msg::KINDS {
        assert!(
            names.iter().any(|n| n.split('-').next() == Some(kind)),
            "no example of {kind}"
        );
    }
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "example names repeat: {names:?}");
}

#[test]
fn the_padded_ping_is_longer_than_any_pong() {
    let ping = example("ping");
    let pong = example("pong");
    assert!(matches!(ping.body, Body::Ping { pad: 63, .. }));
    assert_eq!(ping.encode().len(), 138);
    assert_eq!(pong.encode().len(), 93);
    // The longest pong: IPv6 source, five-digit ports.
    let mut longest = pong.clone();
    if let Body::Pong {
        your_addr,
        tcp_port,
        ..
    } = &mut longest.body
    {
        *your_addr = "[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
            .parse()
            .unwrap();
        *tcp_port = 65535;
    }
    assert_eq!(longest.encode().len(), 107);
    assert!(longest.encode().len() <= ping.encode().len());
    // Without its padding, the ping would get no answer.
    let mut bare = ping.clone();
    if let Body::Ping { pad, .. } = &mut bare.body {
        *pad = 0;
    }
    assert!(bare.encode().len() < pong.encode().len());
}

#[test]
fn requests_carry_the_token_of_the_pong() {
    assert_eq!(peerlet::hash::to_hex(&token()), "76f152d96ed1e184");
    let Body::Pong {
        token: given,
        your_addr,
        ..
    } = example("pong").body
    else {
        panic!("not a pong")
    };
    assert_eq!(given, token());
    assert_eq!(your_addr, a_addr());
    for name in ["getnodes", "announce", "query-words", "query-hash"] {
        let k = match example(name).body {
            Body::GetNodes { token, .. }
            | Body::Announce { token, .. }
            | Body::Query { token, .. } => token,
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(k, given, "{name}");
    }
}

#[test]
fn the_hit_answers_the_direct_query_with_the_documented_holders() {
    let Body::Query {
        qid,
        ttl,
        hops,
        target,
        ..
    } = example("query-hash").body
    else {
        panic!("not a query")
    };
    assert_eq!((ttl, hops, target), (1, 0, Target::Hash(IH)));
    let Body::Hit {
        qid: hit_qid,
        hops,
        results,
    } = example("hit").body
    else {
        panic!("not a hit")
    };
    assert_eq!((hit_qid, hops), (qid, 0));
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].item, item());
    let holders: Vec<(SocketAddr, SocketAddr)> = results[0]
        .holders
        .iter()
        .map(|h| (h.peer_addr(), h.node_addr()))
        .collect();
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert_eq!(
        holders,
        [
            (addr("0.0.0.0:6881"), addr("0.0.0.0:6881")),
            (addr("203.0.113.7:6881"), addr("203.0.113.7:6881")),
            (addr("[2001:db8::7]:6881"), addr("[2001:db8::7]:6881")),
        ]
    );
    assert!(
        results[0].holders[0].ip.is_unspecified(),
        "the answering node itself"
    );
}

#[test]
fn the_saved_table_example_is_what_encode_saved_writes() {
    let (_, bytes) = hex_blocks()
        .into_iter()
        .find(|(info, _)| info == "file=nodes")
        .expect("a ```hex file=nodes block");
    let Body::Nodes { nodes, .. } = example("nodes").body else {
        panic!("not nodes")
    };
    assert_eq!(peerlet::overlay::encode_saved(&nodes), bytes);
    assert_eq!(peerlet::overlay::decode_saved(&bytes, 1024), nodes);
}
