//! The shared UDP port's demultiplexer (`net::udp::classify`, docs/PROTOCOL.md
//! section 12): any datagram gets a route, and the route agrees with what
//! the bytes are.
//!
//! Invariants checked (beyond "no panic"):
//! - an empty datagram is junk; the tracker route needs the first byte 0
//!   and at least `MIN_TRACKER` bytes, uTP a version-1 type byte and
//!   `MIN_UTP` bytes, the sealed route the seal tag, the overlay and DHT
//!   routes a leading `d`;
//! - where the whole datagram decodes as a bencoded dictionary (the strict
//!   decoder, message limits), the route is DHT exactly when its `y` key
//!   holds one byte of `q`, `r` or `e`, and overlay otherwise.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerlet::bencode::{decode, Limits};
use peerlet::net::udp::{classify, Route, MIN_TRACKER, MIN_UTP};

fuzz_target!(|data: &[u8]| {
    let route = classify(data);
    match (data.first(), route) {
        (None, r) => assert_eq!(r, Route::Junk),
        (Some(0), Route::Tracker) => assert!(data.len() >= MIN_TRACKER),
        (Some(b), Route::Utp) => {
            assert!(matches!(b, 0x01 | 0x11 | 0x21 | 0x31 | 0x41));
            assert!(data.len() >= MIN_UTP);
        }
        (Some(b'd'), Route::Overlay | Route::Dht) => {}
        (Some(&peerlet::private::SEAL_TAG), Route::Sealed) => {}
        (Some(_), Route::Junk) => {}
        (Some(b), r) => panic!("first byte {b:#04x} routed to {r:?}"),
    }
    if let Ok(doc) = decode(data, Limits::MESSAGE) {
        if let Some(dict) = doc.root().as_dict() {
            let krpc = dict
                .get(b"y")
                .and_then(|y| y.as_bytes())
                .is_some_and(|y| matches!(y, b"q" | b"r" | b"e"));
            let want = if krpc { Route::Dht } else { Route::Overlay };
            assert_eq!(route, want, "a well-formed dictionary");
        }
    }
});
