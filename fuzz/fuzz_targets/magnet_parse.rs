//! Arbitrary strings into `Magnet::parse`.
//!
//! Invariants checked (beyond "no panic"):
//! - on success, the canonical form (`Display`) parses back to an equal
//!   magnet: `Magnet::parse(&m.to_string()) == Ok(m)`, and formatting that
//!   again gives the same string (the canonical form is a fixed point);
//! - the canonical form starts with `magnet:?xt=urn:btih:` and 40 hex digits;
//! - trackers are non-empty and unique, peers are unique;
//! - a link that parses also parses with its `magnet:?` prefix in upper case.
//!
//! Bytes that are not UTF-8 are tried both rejected-as-is (the caller's
//! `&str` cannot hold them) and converted lossily.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerlet::metainfo::Magnet;

fuzz_target!(|data: &[u8]| {
    match std::str::from_utf8(data) {
        Ok(s) => check(s),
        Err(_) => check(&String::from_utf8_lossy(data)),
    }
});

fn check(s: &str) {
    let m = match Magnet::parse(s) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let canonical = m.to_string();
    let prefix = "magnet:?xt=urn:btih:";
    assert!(canonical.starts_with(prefix), "{canonical}");
    let hex = &canonical[prefix.len()..];
    assert!(hex.len() >= 40 && hex.as_bytes()[..40].iter().all(|b| b"0123456789abcdef".contains(b)));
    assert_eq!(&hex[..40], m.info_hash.to_hex());

    assert!(m.trackers.iter().all(|t| !t.is_empty()), "empty tracker kept");
    for (i, t) in m.trackers.iter().enumerate() {
        assert!(!m.trackers[..i].contains(t), "duplicate tracker {t:?}");
    }
    for (i, p) in m.peers.iter().enumerate() {
        assert!(!m.peers[..i].contains(p), "duplicate peer {p:?}");
    }

    let again = Magnet::parse(&canonical);
    if again.as_ref() != Ok(&m) {
        panic!(
            "round trip failed: input of {} bytes, canonical form of {} bytes ({:?}...), parsed back as {:?}",
            s.len(),
            canonical.len(),
            short(&canonical),
            again.map(|a| short(&a.to_string()).to_string()),
        );
    }
    assert_eq!(again.unwrap().to_string(), canonical);

    if let Some(rest) = s.get(8..) {
        let upper = format!("MAGNET:?{rest}");
        assert!(Magnet::parse(&upper).as_ref() == Ok(&m), "upper-case prefix");
    }
}

/// At most the first 200 bytes (on a character boundary), for messages.
fn short(s: &str) -> &str {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
