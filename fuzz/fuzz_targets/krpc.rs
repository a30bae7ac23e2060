//! Arbitrary datagrams into the Mainline DHT: `dht::Message::parse` (the
//! lenient KRPC reader) and a whole `Dht` node (the state machine the
//! daemon runs), fed from a few source addresses with the clock moving.
//!
//! Input: a sequence of records `[selector, len_hi, len_lo, bytes...]`.
//! The selector picks the source address (low 2 bits), a tick 3 s later
//! before the datagram (bit 2), a tracked info-hash (bit 3), a node added
//! out of band (bit 4) and read-only mode (bit 5).
//!
//! Invariants checked (beyond "no panic"):
//! - a message that parses re-encodes to bytes that parse back equal;
//! - everything the node sends is at most `MAX_DATAGRAM` bytes and parses,
//!   and goes to a routable address (no port 0);
//! - the node's table, store, transactions and lookups stay within bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerlet::dht::{Config, Dht, Message, NodeId, MAX_DATAGRAM};
use peerlet::metainfo::InfoHash;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let mut now = start;
    let config = Config {
        max_peers_per_hash: 8,
        max_hashes: 8,
        ..Config::default()
    };
    let mut node = Dht::new(NodeId([0xee; 20]), config, [7; 32], now);
    node.add_bootstrap("10.0.0.1:6881".parse().unwrap(), now);
    let sources: [SocketAddr; 4] = [
        "10.0.0.1:6881".parse().unwrap(),
        "10.0.0.2:7000".parse().unwrap(),
        "1.2.3.4:9".parse().unwrap(),
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
        if sel & 4 != 0 {
            now += Duration::from_secs(3);
            node.tick(now);
        }
        if sel & 8 != 0 {
            node.track(InfoHash([sel; 20]), sel & 1 != 0, now);
        }
        let from = sources[usize::from(sel & 3)];
        if sel & 16 != 0 {
            node.add_node(from, now);
        }
        node.set_read_only(sel & 32 != 0);
        node.on_datagram(bytes, from, now);
        while let Some((to, out)) = node.poll_transmit() {
            assert!(out.len() <= MAX_DATAGRAM, "sent {} bytes", out.len());
            assert!(Message::parse(&out).is_ok(), "sent an unparsable message");
            assert!(to.port() != 0);
        }
        while node.poll_event().is_some() {}
        let (table, stored, txs, lookups) = node.footprint();
        assert!(table <= 12 * 160);
        assert!(stored <= 64);
        assert!(txs <= 512);
        assert!(lookups <= 32);
    }
});

fn check_roundtrip(bytes: &[u8]) {
    let Ok(m) = Message::parse(bytes) else {
        return;
    };
    let again = m.emit();
    if again.len() <= MAX_DATAGRAM {
        assert_eq!(Message::parse(&again).as_ref(), Ok(&m));
    }
}
