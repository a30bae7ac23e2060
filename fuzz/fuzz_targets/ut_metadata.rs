//! BEP 9 ut_metadata payloads into `MetadataMsg::parse`, and fuzzed event
//! sequences into the sans-IO `swarm::metadata::MetadataFetch` that
//! assembles a magnet's info dictionary (and `MetadataServer`).
//!
//! Input: records `[op, len_hi, len_lo, bytes...]`. Every record's bytes go
//! through `MetadataMsg::parse`; the op (low 4 bits) and peer (bits 4-5,
//! four peers) then drive the fetch: a handshake built from the bytes or
//! parsed from them, the right data for a piece the fetch asked that peer
//! for, the same data corrupted or cut, a parsed (fuzzed) message, a reject,
//! a disconnect, the clock moving forward or backward, a tick, a request to
//! the server. The dictionary being fetched is 40,000 fixed bytes (three
//! pieces) whose SHA-1 is the info-hash, so `Done` is reachable.
//!
//! Invariants checked (beyond "no panic"):
//! - a message that parses re-emits to bytes that parse back equal; data
//!   carries at most `METADATA_PIECE_LEN` bytes;
//! - every request the fetch sends goes to a peer that handshook, is alive
//!   (not dropped, blamed or removed since) and offers ut_metadata, under
//!   that peer's own id, for a piece within the size being assembled, and
//!   parses as a request;
//! - `Done` comes at most once, is the last action, and its bytes hash to
//!   the info-hash; nothing comes after it;
//! - status: pieces held and requested at most the total, requests at most
//!   `MAX_REQUESTS`, the total matches the size, the size within
//!   `MAX_METADATA_SIZE`; once done, no pieces, requests or deadline;
//! - after `tick(now)`, `next_deadline()` is later than `now` (no busy loop);
//! - the server answers within the dictionary: data is the right slice.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerlet::hash::sha1;
use peerlet::metainfo::InfoHash;
use peerlet::swarm::metadata::{
    FetchOut, MetadataFetch, MetadataServer, MAX_METADATA_SIZE, MAX_REQUESTS,
};
use peerlet::wire::extension::{ExtendedHandshake, MetadataMsg, METADATA_PIECE_LEN, UT_METADATA};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const SIZE: usize = 40_000;
const PEERS: usize = 4;

fn info() -> &'static (Vec<u8>, InfoHash) {
    static INFO: OnceLock<(Vec<u8>, InfoHash)> = OnceLock::new();
    INFO.get_or_init(|| {
        let bytes: Vec<u8> = (0..SIZE as u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let hash = InfoHash(sha1(&bytes));
        (bytes, hash)
    })
}

#[derive(Clone, Copy, Default)]
struct PeerModel {
    /// Handshook and not dropped or removed since.
    alive: bool,
    /// The ut_metadata id it gave (None: not offered or disabled).
    ext_id: Option<u8>,
}

fuzz_target!(|data: &[u8]| {
    let (info, info_hash) = info();
    let base = Instant::now();
    let mut secs: u64 = 1_000_000;
    let at = |s: u64| base + Duration::from_secs(s);
    let mut fetch = MetadataFetch::new(*info_hash);
    let mut server = MetadataServer::new();
    let mut peers = [PeerModel::default(); PEERS];
    // Requests seen per peer (piece numbers), to answer them.
    let mut asked: [Vec<u32>; PEERS] = Default::default();
    let mut done = false;

    let mut rest = data;
    let mut records = 0;
    while rest.len() >= 3 && records < 200 {
        records += 1;
        let op = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let bytes = &rest[3..3 + len];
        rest = &rest[3 + len..];
        let parsed = check_parse(bytes);
        let p = usize::from(op >> 4) % PEERS;
        let key = p as u64;
        let b0 = bytes.first().copied().unwrap_or(0);
        let b1 = bytes.get(1).copied().unwrap_or(0);
        let now = at(secs);
        match op & 0x0f {
            0 => {
                // A handshake made from the bytes.
                let mut hs = ExtendedHandshake::default();
                if b0 & 1 != 0 {
                    hs.m.push((UT_METADATA.to_vec(), b1));
                }
                hs.metadata_size = match (b0 >> 1) & 7 {
                    0 => None,
                    1..=4 => Some(SIZE as u64),
                    5 => Some(u64::from(b1) * 1000),
                    6 => Some(MAX_METADATA_SIZE + u64::from(b1)),
                    _ => bytes
                        .get(2..10)
                        .map(|s| u64::from_be_bytes(s.try_into().unwrap())),
                };
                handshake(&mut fetch, &mut peers[p], key, &hs, now);
            }
            1 => {
                if let Ok(hs) = ExtendedHandshake::parse(bytes) {
                    handshake(&mut fetch, &mut peers[p], key, &hs, now);
                }
            }
            2 | 3 | 4 => {
                // The right data for a piece this peer was asked for:
                // as is (2), with a byte changed (3), or cut short (4).
                if asked[p].is_empty() {
                    continue;
                }
                let piece = asked[p].remove(usize::from(b0) % asked[p].len());
                let start = piece as usize * METADATA_PIECE_LEN;
                let end = (start + METADATA_PIECE_LEN).min(SIZE);
                let mut chunk = info.get(start..end).unwrap_or(&[]).to_vec();
                match op & 0x0f {
                    3 if !chunk.is_empty() => {
                        let i = usize::from(b1) % chunk.len();
                        chunk[i] ^= 0x55;
                    }
                    4 => chunk.truncate(usize::from(b1)),
                    _ => {}
                }
                let msg = MetadataMsg::Data {
                    piece,
                    total_size: SIZE as u64,
                    data: &chunk,
                };
                fetch.on_message(key, &msg, now);
            }
            5 => {
                if let Some(msg) = &parsed {
                    fetch.on_message(key, msg, now);
                }
            }
            6 => {
                let piece = match asked[p].first() {
                    Some(&piece) if b0 & 1 == 0 => piece,
                    _ => u32::from(b1),
                };
                asked[p].retain(|&x| x != piece);
                fetch.on_message(key, &MetadataMsg::Reject { piece }, now);
            }
            7 => {
                fetch.remove_peer(key, now);
                peers[p] = PeerModel::default();
                asked[p].clear();
            }
            8 => {
                secs += u64::from(b0) * u64::from(b1 | 1);
                let now = at(secs);
                fetch.tick(now);
                if let Some(d) = fetch.next_deadline() {
                    assert!(d > now, "next deadline {:?} not after a tick", now - d);
                }
            }
            9 => {
                secs = secs.saturating_sub(u64::from(b0));
                fetch.tick(at(secs));
            }
            10 => {
                // Jump to the next deadline, then tick.
                if let Some(d) = fetch.next_deadline() {
                    if d > now {
                        secs += (d - now).as_secs() + 1;
                    }
                }
                fetch.tick(at(secs));
            }
            11 => {
                let piece = u32::from_be_bytes([b0, b1, 0, 0]) >> (b0 & 31);
                let answer = server.serve(key, info, piece, now);
                check_served(info, piece, &answer);
                if b1 & 1 != 0 {
                    server.remove_peer(key);
                }
            }
            _ => secs += u64::from(b0),
        }
        drain(&mut fetch, &mut peers, &mut asked, &mut done, info_hash);
        check_status(&fetch, done);
    }
});

fn handshake(
    fetch: &mut MetadataFetch,
    model: &mut PeerModel,
    key: u64,
    hs: &ExtendedHandshake,
    now: Instant,
) {
    model.alive = true;
    if let Some(id) = hs.extension(UT_METADATA) {
        model.ext_id = (id != 0).then_some(id);
    }
    fetch.on_handshake(key, hs, now);
}

fn drain(
    fetch: &mut MetadataFetch,
    peers: &mut [PeerModel; PEERS],
    asked: &mut [Vec<u32>; PEERS],
    done: &mut bool,
    info_hash: &InfoHash,
) {
    let total = fetch.status().pieces_total;
    let out: Vec<FetchOut> = fetch.drain().collect();
    for (i, action) in out.iter().enumerate() {
        assert!(!*done, "an action after Done: {action:?}");
        match action {
            FetchOut::Send {
                peer,
                ext_id,
                payload,
            } => {
                let p = usize::try_from(*peer).unwrap();
                let model = peers[p];
                assert!(model.alive, "request to a peer that is gone");
                assert_eq!(Some(*ext_id), model.ext_id, "request under the wrong id");
                let msg = MetadataMsg::parse(payload).expect("our request parses");
                let MetadataMsg::Request { piece } = msg else {
                    panic!("sent {msg:?} instead of a request");
                };
                // Requests are made last, at the size the event settled on.
                assert!((piece as usize) < total, "piece {piece} of {total}");
                asked[p].push(piece);
            }
            FetchOut::Drop { peer, reason } | FetchOut::Blame { peer, reason } => {
                let p = usize::try_from(*peer).unwrap();
                assert!(!reason.is_empty());
                peers[p] = PeerModel::default();
                asked[p].clear();
            }
            FetchOut::Done(bytes) => {
                assert_eq!(sha1(bytes), info_hash.0, "Done with the wrong bytes");
                assert!(bytes.len() as u64 <= MAX_METADATA_SIZE);
                assert_eq!(i + 1, out.len(), "Done is not the last action");
                *done = true;
            }
        }
    }
    assert_eq!(fetch.is_done(), *done);
}

fn check_status(fetch: &MetadataFetch, done: bool) {
    let s = fetch.status();
    assert_eq!(s.done, done);
    assert!(s.requests <= MAX_REQUESTS);
    if done {
        // (The pieces are let go with the dictionary; the count stays.)
        assert_eq!((s.pieces_total, s.requests), (0, 0));
        assert_eq!(fetch.next_deadline(), None);
        return;
    }
    assert!(s.pieces_have <= s.pieces_total);
    if let Some(size) = s.size {
        assert!(size > 0 && size <= MAX_METADATA_SIZE);
        assert_eq!(s.pieces_total, (size as usize).div_ceil(METADATA_PIECE_LEN));
        assert!(s.pieces_have + s.requests <= s.pieces_total);
    }
}

fn check_served(info: &[u8], piece: u32, answer: &MetadataMsg<'_>) {
    assert_eq!(answer.piece(), piece);
    match *answer {
        MetadataMsg::Data {
            total_size, data, ..
        } => {
            assert_eq!(total_size, info.len() as u64);
            let start = piece as usize * METADATA_PIECE_LEN;
            assert_eq!(Some(data), info.get(start..start + data.len()));
            assert!(!data.is_empty() && data.len() <= METADATA_PIECE_LEN);
            assert!(start + data.len() == info.len() || data.len() == METADATA_PIECE_LEN);
        }
        MetadataMsg::Reject { .. } => {}
        MetadataMsg::Request { .. } => panic!("the server answered with a request"),
    }
    let bytes = answer.to_bytes();
    assert_eq!(MetadataMsg::parse(&bytes).as_ref(), Ok(answer));
}

/// `MetadataMsg::parse` with its round trip; the message when it parses.
fn check_parse(bytes: &[u8]) -> Option<MetadataMsg<'_>> {
    let msg = match MetadataMsg::parse(bytes) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.to_string();
            return None;
        }
    };
    if let MetadataMsg::Data { data, .. } = msg {
        assert!(data.len() <= METADATA_PIECE_LEN);
        assert!(bytes.ends_with(data));
    }
    let again = msg.to_bytes();
    assert_eq!(MetadataMsg::parse(&again).as_ref(), Ok(&msg), "round trip");
    Some(msg)
}
