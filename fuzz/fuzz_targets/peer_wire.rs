//! A peer's byte stream into the peer wire parsers, the way the net thread
//! reads it (`net/engine/peers.rs`): the 68-byte `Handshake` first (when the
//! selector asks for it), then `Message::parse` in a loop, consuming what
//! each message used, with the bytes arriving in chunks of fuzzed sizes.
//!
//! Input: `[selector, bitfield, chunk seed, stream...]`. Selector bit 0:
//! start with a handshake; bits 1-2: the bitfield length passed to `parse`
//! (unknown, `bitfield` byte, 0, or 262,144); bit 3: small chunks (1-8
//! bytes) instead of up to 4 KiB.
//!
//! Invariants checked (beyond "no panic"):
//! - a message that parses used between 4 and the buffered bytes, exactly
//!   its `encoded_len()`, and `emit` writes back those very bytes (the wire
//!   format has one encoding); `parse(emit(m)) == m`;
//! - per-id sizes: a bitfield has exactly the known length, a piece carries
//!   at most `MAX_BLOCK` bytes, extended and unknown payloads stay under
//!   their caps, an unknown id is not one we know;
//! - every strict prefix of a parsed message is "need more";
//! - "need more" is only said for a legal length prefix (at most
//!   `MAX_FRAME`), and the full declared frame then decides (message or
//!   error): the parser never waits for bytes it would refuse;
//! - an error stays an error (the same one) when more bytes follow;
//! - the messages, the error (up to whether a too-long frame names its id)
//!   and the leftover bytes are the same whether the stream arrives in one
//!   piece or in chunks;
//! - a handshake that parses re-emits the 68 bytes it came from; "need
//!   more" only for a prefix of the protocol string; an error only when one
//!   of the first 20 bytes differs from it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerlet::wire::extension;
use peerlet::wire::peer::{
    Error, Handshake, Message, HANDSHAKE_LEN, ID_ALLOWED_FAST, ID_BITFIELD, ID_CANCEL, ID_CHOKE,
    ID_EXTENDED, ID_HAVE, ID_HAVE_ALL, ID_HAVE_NONE, ID_INTERESTED, ID_NOT_INTERESTED, ID_PIECE,
    ID_PORT, ID_REJECT, ID_REQUEST, ID_SUGGEST, ID_UNCHOKE, MAX_BITFIELD, MAX_BLOCK, MAX_EXTENDED,
    MAX_FRAME, MAX_UNKNOWN, PROTOCOL,
};

const KNOWN_IDS: [u8; 16] = [
    ID_CHOKE,
    ID_UNCHOKE,
    ID_INTERESTED,
    ID_NOT_INTERESTED,
    ID_HAVE,
    ID_BITFIELD,
    ID_REQUEST,
    ID_PIECE,
    ID_CANCEL,
    ID_PORT,
    ID_SUGGEST,
    ID_HAVE_ALL,
    ID_HAVE_NONE,
    ID_REJECT,
    ID_ALLOWED_FAST,
    ID_EXTENDED,
];

/// What one pass over the stream saw: the handshake, every message as
/// emitted bytes, the error that ended it, and the bytes left unparsed.
#[derive(Debug, PartialEq)]
struct Trace {
    handshake: Option<Handshake>,
    messages: Vec<Vec<u8>>,
    error: Option<Error>,
    leftover: usize,
}

fuzz_target!(|data: &[u8]| {
    let [sel, bf, seed, stream @ ..] = data else {
        return;
    };
    let with_handshake = sel & 1 != 0;
    let bitfield_len = match (sel >> 1) & 3 {
        0 => None,
        1 => Some(usize::from(*bf)),
        2 => Some(0),
        _ => Some(MAX_BITFIELD),
    };
    let small = sel & 8 != 0;

    let whole = run(
        stream,
        with_handshake,
        bitfield_len,
        true,
        &mut std::iter::once(stream.len()),
    );
    let mut rng = u64::from(*seed) | 0x9e37_79b9_0000_0000;
    let mut sizes = std::iter::from_fn(|| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let cap = if small { 8 } else { 4096 };
        Some(1 + (rng % cap) as usize)
    });
    let chunked = run(stream, with_handshake, bitfield_len, false, &mut sizes);
    assert_eq!(whole, chunked, "chunking changed what was parsed");
});

/// Feeds `stream` in chunks and parses as the net thread does. `deep`: also
/// the costlier checks (prefixes, the full declared frame, appended bytes).
fn run(
    stream: &[u8],
    with_handshake: bool,
    bitfield_len: Option<usize>,
    deep: bool,
    sizes: &mut dyn Iterator<Item = usize>,
) -> Trace {
    let mut trace = Trace {
        handshake: None,
        messages: Vec::new(),
        error: None,
        leftover: 0,
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut need_handshake = with_handshake;
    'feed: while fed < stream.len() {
        let n = sizes
            .next()
            .unwrap_or(stream.len())
            .max(1)
            .min(stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
        if need_handshake {
            match check_handshake(&buf) {
                Ok(Some(h)) => {
                    trace.handshake = Some(h);
                    buf.drain(..HANDSHAKE_LEN);
                    need_handshake = false;
                }
                Ok(None) => continue,
                Err(e) => {
                    trace.error = Some(e);
                    break 'feed;
                }
            }
        }
        loop {
            match check_message(&buf, bitfield_len, deep) {
                Ok(Some(used)) => {
                    trace.messages.push(buf[..used].to_vec());
                    buf.drain(..used);
                }
                Ok(None) => break,
                Err(e) => {
                    // Whether the id is named depends on whether its byte
                    // arrived with the length prefix; that is all.
                    trace.error = Some(match e {
                        Error::TooLong { len, .. } => Error::TooLong { id: None, len },
                        e => e,
                    });
                    break 'feed;
                }
            }
        }
    }
    trace.leftover = stream.len() - fed + buf.len();
    trace
}

fn check_handshake(buf: &[u8]) -> Result<Option<Handshake>, Error> {
    let mut expected = vec![19u8];
    expected.extend_from_slice(PROTOCOL);
    let n = buf.len().min(20);
    let res = Handshake::parse(buf);
    match &res {
        Ok(Some(h)) => {
            assert!(buf.len() >= HANDSHAKE_LEN);
            let mut out = Vec::new();
            h.emit(&mut out);
            assert_eq!(
                out,
                &buf[..HANDSHAKE_LEN],
                "handshake did not re-emit its bytes"
            );
            assert_eq!(Handshake::parse(&out), Ok(Some(*h)));
        }
        Ok(None) => {
            assert!(buf.len() < HANDSHAKE_LEN);
            assert_eq!(
                &buf[..n],
                &expected[..n],
                "waited on a wrong protocol string"
            );
        }
        Err(e) => {
            assert_eq!(*e, Error::NotBitTorrent);
            assert_ne!(&buf[..n], &expected[..n], "refused a right protocol string");
            let _ = e.to_string();
        }
    }
    res
}

/// Parses one message from `buf` and checks it; the bytes it used.
fn check_message(
    buf: &[u8],
    bitfield_len: Option<usize>,
    deep: bool,
) -> Result<Option<usize>, Error> {
    match Message::parse(buf, bitfield_len) {
        Ok(Some((m, used))) => {
            check_parsed(buf, bitfield_len, m, used, deep);
            Ok(Some(used))
        }
        Ok(None) => {
            check_need_more(buf, bitfield_len, deep);
            Ok(None)
        }
        Err(e) => {
            let _ = e.to_string();
            if deep {
                // More bytes do not turn a refusal into a message (with only
                // the length prefix there, the error learns the id).
                let mut longer = buf.to_vec();
                longer.extend_from_slice(&[0xa5; 16]);
                let again = Message::parse(&longer, bitfield_len);
                assert!(again.is_err(), "an error became {again:?} with more bytes");
                if buf.len() > 4 {
                    assert_eq!(again.err(), Some(e.clone()), "the error changed");
                }
            }
            Err(e)
        }
    }
}

fn check_parsed(buf: &[u8], bitfield_len: Option<usize>, m: Message<'_>, used: usize, deep: bool) {
    assert!(
        (4..=buf.len()).contains(&used),
        "used {used} of {}",
        buf.len()
    );
    assert_eq!(used, m.encoded_len());
    let mut out = vec![0xa5; 3];
    m.emit(&mut out);
    assert_eq!(
        &out[3..],
        &buf[..used],
        "emit differs from the parsed bytes: {m:?}"
    );
    let (back, n) = Message::parse(&out[3..], bitfield_len)
        .expect("emitted message parses")
        .expect("emitted message is complete");
    assert_eq!((back, n), (m, used));
    match m {
        Message::Bitfield(b) => {
            if let Some(n) = bitfield_len {
                assert_eq!(b.len(), n);
            }
            assert!(b.len() <= MAX_BITFIELD);
        }
        Message::Piece { data, .. } => assert!(data.len() <= MAX_BLOCK as usize),
        Message::Extended { id, payload } => {
            assert!(payload.len() <= MAX_EXTENDED);
            // The routing parser takes any payload without panicking.
            if let Err(e) = extension::parse(id, payload) {
                let _ = e.to_string();
            }
        }
        Message::Unknown { id, payload } => {
            assert!(payload.len() <= MAX_UNKNOWN);
            assert!(!KNOWN_IDS.contains(&id), "known id {id} parsed as unknown");
        }
        _ => {}
    }
    assert!(used <= 4 + MAX_FRAME);
    if !deep {
        return;
    }
    // Strict prefixes are "need more".
    for cut in [0, 1, 3, 4, 5, used / 2, used - 1] {
        if cut < used {
            assert_eq!(
                Message::parse(&buf[..cut], bitfield_len),
                Ok(None),
                "prefix of {cut} bytes of a {used}-byte message"
            );
        }
    }
}

fn check_need_more(buf: &[u8], bitfield_len: Option<usize>, deep: bool) {
    if buf.len() < 4 {
        return;
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    assert!(len > 0, "a keep-alive needs no more bytes");
    assert!(len <= MAX_FRAME, "waits for a {len}-byte frame");
    let total = 4 + len;
    assert!(buf.len() < total, "waits with the whole frame buffered");
    if !deep {
        return;
    }
    // With the whole declared frame the parser decides.
    let mut full = buf.to_vec();
    full.resize(total, 0);
    match Message::parse(&full, bitfield_len) {
        Ok(Some((_, used))) => assert_eq!(used, total),
        Ok(None) => panic!("still waiting with the declared {total}-byte frame"),
        Err(_) => {}
    }
}
