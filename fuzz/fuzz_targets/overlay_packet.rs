//! Arbitrary datagrams into the overlay: `Packet::parse` and a whole
//! `Overlay` node (the state machine the daemon runs), fed from a few
//! source addresses with the clock moving.
//!
//! Input: a sequence of records `[selector, len_hi, len_lo, bytes...]`.
//! The selector picks the source address (low 2 bits), the LAN beacon
//! socket instead of the overlay socket (bit 2), a tick before the
//! datagram (bit 3) and a search started before it (bit 4).
//!
//! Invariants checked (beyond "no panic"):
//! - a packet that parses re-encodes to a packet that parses back equal
//!   (when the re-encoding fits in `MAX_PACKET`; canonical form may add
//!   default keys);
//! - everything the node sends fits in `MAX_PACKET` and parses;
//! - the routing table, query-id cache and content table stay within bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerlet::metainfo::InfoHash;
use peerlet::overlay::msg::{Packet, MAX_PACKET};
use peerlet::overlay::{Config, NodeId, Overlay, Target};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let mut now = start;
    let config = Config {
        capacity: 16,
        content_capacity: 32,
        seen_capacity: 64,
        ..Config::default()
    };
    let mut node = Overlay::new(NodeId([0xee; 20]), config.clone(), [7; 32], now);
    node.add_bootstrap("10.0.0.1:6881".parse().unwrap(), now);
    let sources: [SocketAddr; 4] = [
        "10.0.0.1:6881".parse().unwrap(),
        "10.0.0.2:7000".parse().unwrap(),
        "127.0.0.1:9".parse().unwrap(),
        "[fd00::1]:6881".parse().unwrap(),
    ];
    let mut rest = data;
    let mut records = 0;
    while rest.len() >= 3 && records < 64 {
        records += 1;
        let sel = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let bytes = &rest[3..3 + len];
        rest = &rest[3 + len..];
        check_roundtrip(bytes);
        if sel & 8 != 0 {
            now += Duration::from_secs(7);
            node.tick(now);
        }
        if sel & 16 != 0 {
            node.search(Target::Hash(InfoHash([sel; 20])), now);
        }
        let from = sources[usize::from(sel & 3)];
        if sel & 4 != 0 {
            node.on_beacon(bytes, from, now);
        } else {
            node.on_packet(bytes, from, now);
        }
        while let Some((_, out)) = node.poll_transmit() {
            assert!(out.len() <= MAX_PACKET, "sent {} bytes", out.len());
            assert!(Packet::parse(&out).is_ok(), "sent an unparsable packet");
        }
        while node.poll_event().is_some() {}
        assert!(node.table().len() <= config.capacity);
        assert!(node.routes() <= config.seen_capacity);
        assert!(node.content().len() <= config.content_capacity);
    }
});

fn check_roundtrip(bytes: &[u8]) {
    let Ok(p) = Packet::parse(bytes) else {
        return;
    };
    let again = p.encode();
    if again.len() <= MAX_PACKET {
        assert_eq!(Packet::parse(&again).as_ref(), Ok(&p));
    }
}
