//! Arbitrary bytes into `Torrent::from_bytes`.
//!
//! Invariants checked on success (beyond "no panic, no abort, no OOM"):
//! - every file path component and the name pass `check_component`, no path
//!   is empty or deeper than `MAX_DEPTH`, and `join_under("/root", ..)` of
//!   every file's relative path is `Some` and stays under `/root`;
//! - no two files share a path;
//! - the piece count is `ceil(total / piece length)`, within `MAX_PIECES`, and
//!   the file lengths add up to the total;
//! - `info_hash == sha1(info_bytes)`, and `info_bytes` is the raw `info`
//!   value of the input (a sub-slice, not a re-encoding);
//! - `Torrent::from_info_bytes(&t.info_bytes)` gives the same info-hash,
//!   name, files and sizes;
//! - the torrent's magnet link parses back to the same magnet (when it is
//!   within the magnet length and parameter caps).
//!
//! On failure the error's `Display` must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerlet::bencode::{decode, Limits};
use peerlet::hash::sha1;
use peerlet::metainfo::path::{check_component, join_under, MAX_DEPTH};
use peerlet::metainfo::{Magnet, Torrent, MAX_PIECES, MAX_PIECE_LENGTH, MIN_PIECE_LENGTH};
use std::collections::HashSet;
use std::path::Path;

/// `metainfo::magnet::{MAX_LEN, MAX_PARAMS}` (the module is private).
const MAGNET_MAX_LEN: usize = 16 * 1024;
const MAGNET_MAX_PARAMS: usize = 256;

fuzz_target!(|data: &[u8]| {
    let t = match Torrent::from_bytes(data) {
        Ok(t) => t,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    check_torrent(&t);

    // info_bytes is the `info` value exactly as received.
    let doc = decode(data, Limits::METAINFO).expect("from_bytes accepted it");
    let info = doc.root().as_dict().unwrap().get(b"info").unwrap();
    assert_eq!(info.raw(), &t.info_bytes[..]);
    assert_eq!(t.info_hash.0, sha1(&t.info_bytes), "info-hash is not sha1(info_bytes)");

    // The bare info dictionary (BEP 9 metadata) validates to the same torrent.
    let again = Torrent::from_info_bytes(&t.info_bytes).expect("info_bytes alone refused");
    assert_eq!(again.info_hash, t.info_hash);
    assert_eq!(again.name, t.name);
    assert_eq!(again.multi_file, t.multi_file);
    assert_eq!(again.files, t.files);
    assert_eq!(again.lengths, t.lengths);
    assert_eq!(again.file_map, t.file_map);
    assert_eq!(again.private, t.private);
    assert_eq!(again.info_bytes, t.info_bytes);
    for p in [t.lengths.piece(0), Some(t.lengths.last_piece())].into_iter().flatten() {
        assert_eq!(again.piece_hash(p), t.piece_hash(p));
    }

    // A magnet made from the torrent reads back the same.
    let m = t.magnet();
    let link = m.to_string();
    let n_params = 2 + m.trackers.len() + m.peers.len();
    if link.len() <= MAGNET_MAX_LEN && n_params <= MAGNET_MAX_PARAMS {
        let back = Magnet::parse(&link);
        assert!(back == Ok(m), "magnet round trip of {} bytes: {back:?}", link.len());
    }
});

fn check_torrent(t: &Torrent) {
    let root = Path::new("/root");
    assert_eq!(check_component(t.name.as_bytes()).as_ref(), Ok(&t.name));
    assert!(!t.files.is_empty());
    assert!(t.multi_file || t.files.len() == 1);
    let mut seen = HashSet::new();
    let mut total = 0u64;
    for (i, f) in t.files.iter().enumerate() {
        assert!(!f.path.is_empty(), "file {i} has an empty path");
        assert!(f.path.len() <= MAX_DEPTH, "file {i} is too deep");
        for c in &f.path {
            assert_eq!(
                check_component(c.as_bytes()).as_ref(),
                Ok(c),
                "file {i}: component {c:?} does not pass check_component"
            );
        }
        assert!(seen.insert(&f.path), "file {i}: duplicate path");
        total = total.checked_add(f.length).expect("total overflows");

        let rel = t.relative_path(i);
        assert_eq!(rel.first(), Some(&t.name));
        let joined = join_under(root, &rel)
            .unwrap_or_else(|| panic!("file {i}: join_under refused {rel:?}"));
        assert!(joined.starts_with(root), "{joined:?} is not under /root");
        assert_eq!(joined.components().count(), root.components().count() + rel.len());
        assert_eq!(t.file_map.file_len(i), f.length);
    }
    assert!(t.relative_path(t.files.len()).is_empty());

    let l = &t.lengths;
    assert!(total > 0);
    assert_eq!(l.total_length(), total);
    assert_eq!(t.total_length(), total);
    assert_eq!(t.file_map.total(), total);
    assert_eq!(t.file_map.n_files(), t.files.len());
    let pl = l.piece_length();
    assert!((MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&pl));
    assert_eq!(u64::from(l.n_pieces()), total.div_ceil(u64::from(pl)));
    assert!(l.n_pieces() >= 1 && l.n_pieces() <= MAX_PIECES);

    // Piece and block arithmetic stays consistent at the ends.
    let last = l.last_piece();
    let last_size = l.piece_size(last);
    assert!(last_size >= 1 && last_size <= pl);
    assert_eq!(l.piece_offset(last) + u64::from(last_size), total);
    assert!(l.piece(l.n_pieces()).is_none());
    let blocks = l.total_blocks();
    assert!(blocks >= u64::from(l.n_pieces()));
    for i in 0..t.files.len().min(64) {
        let r = t.file_map.pieces_of_file(l, i);
        assert!(r.end <= l.n_pieces(), "file {i} maps past the last piece");
        let covered: u64 = t.file_map.slices(t.file_map.file_offset(i), t.files[i].length)
            .inspect(|s| assert!(s.offset + s.len <= t.file_map.file_len(s.file_idx)))
            .map(|s| s.len)
            .sum();
        assert_eq!(covered, t.files[i].length);
    }
}
