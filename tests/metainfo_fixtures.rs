//! Hostile .torrent files (tests/fixtures/hostile, written by
//! make_hostile.py), each paired with the exact message peerlet must give.

mod common;

use common::{run, TempDir};
use peerlet::bencode::{self, Limits, Value};
use peerlet::metainfo::Torrent;
use std::path::Path;

const CASES: &[(&str, &str)] = &[
    ("parent-path", "unsafe file path '../../etc/passwd': a '..' component, which would leave the download directory"),
    ("absolute-path", "unsafe file path '/etc/passwd': a path separator '/' inside a file name"),
    ("absolute-name", "unsafe torrent name '/etc/passwd': a path separator '/' inside a file name"),
    ("dotdot-name", "unsafe torrent name '..': a '..' component, which would leave the download directory"),
    ("backslash-path", "unsafe file path 'a\\..\\..\\b': a path separator '\\' inside a file name"),
    ("drive-prefix", "unsafe file path 'C:/Windows/x': a drive prefix (like 'C:') in a file name"),
    ("nul-in-path", "a NUL byte in a file name"),
    ("empty-component", "unsafe file path 'a//b': an empty file name"),
    ("empty-path", "unsafe file path '': an empty file name"),
    ("sneaky-component", "unsafe file path 'Movie.avi /../../../Startup/x.exe': a path separator '/' inside a file name"),
    ("pieces-not-multiple-of-20", "'pieces' is 41 bytes, which is not a positive multiple of 20 (one SHA-1 per piece)"),
    ("too-few-pieces", "'pieces' and torrent size mismatch: 2 piece hashes, but 40000 bytes at piece length 16384 need 3"),
    ("too-many-pieces", "'pieces' and torrent size mismatch: 4 piece hashes, but 40000 bytes at piece length 16384 need 3"),
    ("empty-pieces", "'pieces' is 0 bytes, which is not a positive multiple of 20 (one SHA-1 per piece)"),
    ("missing-pieces", "'pieces' is missing"),
    ("zero-piece-length", "'piece length' 0 is out of range (must be 16384 to 67108864 bytes)"),
    ("huge-piece-length", "'piece length' 1099511627776 is out of range (must be 16384 to 67108864 bytes)"),
    ("negative-piece-length", "'piece length' -16384 is out of range (must be 16384 to 67108864 bytes)"),
    ("missing-name", "'name' is missing"),
    ("missing-info", "'info' is missing"),
    ("info-not-dict", "'info' should be a dictionary, found a list"),
    ("length-and-files", "the info dictionary has both 'length' and 'files'"),
    ("no-length-no-files", "is missing"),
    ("empty-files", "'files' is empty"),
    ("duplicate-files", "file 'a/b' appears twice"),
    ("file-and-directory", "'a' is both a file and a directory"),
    ("negative-file-length", "file 'a' has a negative length -5"),
    ("zero-total", "the torrent holds no data (total size 0)"),
    ("bad-file-entry", "entry 0 of 'files' needs an integer 'length' and a 'path' list of strings"),
    ("top-level-list", "not a valid .torrent file: the top level is not a dictionary"),
    ("unsorted-info-keys", "not a valid .torrent file: bencode: dictionary key 'name' is out of order at byte 47 (in info)"),
    ("duplicate-info-key", "not a valid .torrent file: bencode: duplicate dictionary key 'name' at byte 41 (in info)"),
    ("huge-string-length", "not a valid .torrent file: bencode: string of 9223372036854775807 bytes is too long at byte 14 (in info.name)"),
    ("leading-zero-integer", "not a valid .torrent file: bencode: invalid integer (not canonical) at byte 16 (in info.length)"),
    ("negative-zero", "not a valid .torrent file: bencode: invalid integer (not canonical) at byte 16 (in info.length)"),
    ("integer-overflow", "not a valid .torrent file: bencode: integer does not fit in 64 bits at byte 16 (in info.length)"),
    ("truncated", "not a valid .torrent file: bencode: input ends in the middle of a value at byte 102 (in info.pieces)"),
    ("trailing-garbage", "not a valid .torrent file: bencode: unexpected bytes after the end of the value at byte 178"),
    ("empty-file", "not a valid .torrent file: bencode: input ends in the middle of a value at byte 0"),
];

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hostile")
        .join(format!("{name}.torrent"))
}

#[test]
fn every_fixture_has_a_case_and_every_case_its_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile");
    let n_files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        n_files,
        CASES.len(),
        "every fixture in {} needs a case here",
        dir.display()
    );
    for (name, expected) in CASES {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let err = Torrent::from_bytes(&bytes).expect_err(name).to_string();
        assert!(
            err == *expected || (expected.len() < 40 && err.contains(expected)),
            "{name}: got \"{err}\", want \"{expected}\""
        );
    }
}

#[test]
fn cli_refuses_hostile_torrents_with_one_line_and_writes_nothing() {
    for name in [
        "parent-path",
        "absolute-path",
        "absolute-name",
        "sneaky-component",
    ] {
        let dir = TempDir::new(&format!("hostile-{name}"));
        let path = fixture(name);
        let (code, stdout, stderr) = run(&[
            "verify",
            path.to_str().unwrap(),
            "--dir",
            dir.path().to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "{name}: {stderr}");
        assert!(stdout.is_empty());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("peerlet: ") && stderr.contains("unsafe"),
            "{stderr}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "{name}: something was written"
        );
        let (code, _, stderr) = run(&["inspect", path.to_str().unwrap()]);
        assert_eq!(code, 2, "{stderr}");
    }
}

fn valid_torrent() -> Vec<u8> {
    let mut info = Value::dict();
    info.insert("name", Value::str("dir"));
    info.insert("piece length", Value::Int(16384));
    info.insert("pieces", Value::Bytes(vec![9; 40]));
    let file = |p: &str, len: i64| {
        let mut d = Value::dict();
        d.insert("length", Value::Int(len));
        d.insert("path", Value::List(p.split('/').map(Value::str).collect()));
        d
    };
    info.insert(
        "files",
        Value::List(vec![file("a/b.bin", 20000), file("c.txt", 100)]),
    );
    let mut t = Value::dict();
    t.insert("announce", Value::str("udp://tracker.invalid:80"));
    t.insert(
        "announce-list",
        Value::List(vec![
            Value::List(vec![Value::str("udp://tracker.invalid:80")]),
            Value::str("junk tier"),
        ]),
    );
    t.insert("url-list", Value::str("http://seed.invalid/"));
    t.insert("x-unknown", Value::Int(5));
    t.insert("info", info);
    t.to_bytes()
}

#[test]
fn valid_torrent_with_unknown_and_malformed_outer_keys_loads() {
    let t = Torrent::from_bytes(&valid_torrent()).unwrap();
    assert_eq!(t.files.len(), 2);
    assert_eq!(t.trackers(), vec!["udp://tracker.invalid:80".to_string()]);
    assert_eq!(t.url_list, vec!["http://seed.invalid/".to_string()]);
}

#[test]
fn truncated_at_every_prefix_is_an_error_never_a_panic() {
    let bytes = valid_torrent();
    for cut in 0..bytes.len() {
        let e = Torrent::from_bytes(&bytes[..cut]).expect_err("prefix must not parse");
        assert!(
            e.to_string()
                .contains("input ends in the middle of a value"),
            "prefix {cut}: {e}"
        );
    }
}

#[test]
fn a_million_nested_lists_are_refused() {
    let mut bytes = b"d4:info".to_vec();
    bytes.extend(std::iter::repeat_n(b'l', 1_000_000));
    bytes.extend(std::iter::repeat_n(b'e', 1_000_000));
    bytes.push(b'e');
    let e = Torrent::from_bytes(&bytes).unwrap_err();
    assert_eq!(e.to_string(), "not a valid .torrent file: bencode: nesting deeper than 100 levels at byte 106 (in info[0][0][0]...[0][0][0][0])");
    // The same depth as a message is refused at its own, smaller limit.
    let e = bencode::decode(
        &[&[b'l'; 1000][..], &[b'e'; 1000][..]].concat(),
        Limits::MESSAGE,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "bencode: nesting deeper than 32 levels at byte 32 (in [0][0][0][0]...[0][0][0][0])"
    );
}

#[test]
fn lengths_near_2_pow_63_are_refused() {
    for (input, msg) in [
        (
            &b"9223372036854775807:x"[..],
            "string of 9223372036854775807 bytes is too long",
        ),
        (
            b"9223372036854775808:x",
            "string of 9223372036854775808 bytes is too long",
        ),
        (b"18446744073709551616:x", "too long"),
        (b"i9223372036854775808e", "integer does not fit in 64 bits"),
    ] {
        let e = bencode::decode(input, Limits::METAINFO)
            .unwrap_err()
            .to_string();
        assert!(e.contains(msg), "{e}");
    }
}
