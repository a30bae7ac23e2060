//! Arbitrary payloads of extended message 0 into the BEP 10
//! `ExtendedHandshake::parse`, and the handshakes that parse into
//! `PeerExtensions::update`, the way the net thread applies them.
//!
//! Invariants checked (beyond "no panic"):
//! - on success, `parse(emit(hs)) == hs` (everything kept survives our own
//!   encoding), and the emitted payload is valid bencode within the
//!   extension limits;
//! - the caps: at most `MAX_EXTENSIONS` entries of `m` plus ut_metadata and
//!   ut_pex, names at most `MAX_NAME_LEN` bytes, sorted and unique; the
//!   client name at most `MAX_CLIENT_LEN` bytes without control characters;
//!   port not 0; `reqq` positive;
//! - `extension(name)` finds each entry of `m`; `PeerExtensions::update`
//!   takes a listed id, disables with 0 and keeps what is not mentioned;
//! - the routing `extension::parse(HANDSHAKE_ID, ..)` agrees with the direct
//!   parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerlet::bencode;
use peerlet::wire::extension::{
    self, ExtMessage, ExtendedHandshake, PeerExtensions, HANDSHAKE_ID, LIMITS, MAX_CLIENT_LEN,
    MAX_EXTENSIONS, MAX_NAME_LEN, UT_METADATA, UT_PEX,
};

fuzz_target!(|data: &[u8]| {
    let routed = extension::parse(HANDSHAKE_ID, data);
    let hs = match ExtendedHandshake::parse(data) {
        Ok(hs) => hs,
        Err(e) => {
            let _ = e.to_string();
            assert_eq!(routed, Err(e));
            return;
        }
    };
    assert_eq!(routed, Ok(ExtMessage::Handshake(hs.clone())));

    let specials =
        hs.m.iter()
            .filter(|(n, _)| n == UT_METADATA || n == UT_PEX)
            .count();
    assert!(
        hs.m.len() <= MAX_EXTENSIONS + specials,
        "{} entries",
        hs.m.len()
    );
    for (i, (name, id)) in hs.m.iter().enumerate() {
        assert!(name.len() <= MAX_NAME_LEN);
        if i > 0 {
            assert!(hs.m[i - 1].0 < *name, "m not sorted and unique");
        }
        assert_eq!(hs.extension(name), Some(*id));
    }
    if let Some(v) = &hs.client {
        assert!(v.len() <= MAX_CLIENT_LEN, "client of {} bytes", v.len());
        assert!(!v.chars().any(char::is_control));
    }
    assert_ne!(hs.port, Some(0));
    assert_ne!(hs.reqq, Some(0));

    let bytes = hs.to_bytes();
    assert!(bytes.len() <= LIMITS.max_input);
    bencode::decode(&bytes, LIMITS).expect("our own handshake decodes");
    assert_eq!(
        ExtendedHandshake::parse(&bytes).as_ref(),
        Ok(&hs),
        "round trip"
    );

    // Applied to a peer that offered both extensions before.
    let before = PeerExtensions {
        ut_metadata: Some(7),
        ut_pex: Some(9),
    };
    let mut ext = before;
    ext.update(&hs);
    for (name, old, new) in [
        (UT_METADATA, before.ut_metadata, ext.ut_metadata),
        (UT_PEX, before.ut_pex, ext.ut_pex),
    ] {
        let expected = match hs.extension(name) {
            None => old,
            Some(0) => None,
            Some(id) => Some(id),
        };
        assert_eq!(new, expected);
    }
});
