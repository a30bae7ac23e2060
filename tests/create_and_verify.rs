//! `peerlet create` against mktorrent (same info-hash), `peerlet verify` on a
//! 1 GiB file (every piece good; one flipped byte makes exactly that piece
//! and file bad), and aria2c reading the torrents peerlet writes.

mod common;

use common::{field, peerlet, require_tool, run, write_random_file, TempDir};
use std::path::Path;
use std::process::Command;

fn mktorrent_hash(dir: &Path, target: &str, log2_piece: u32, out: &str) -> String {
    let mk = require_tool("mktorrent", "mktorrent");
    let status = Command::new(mk)
        .current_dir(dir)
        .args(["-l", &log2_piece.to_string(), "-o", out, target])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "mktorrent failed");
    let (code, stdout, stderr) = run(&["inspect", dir.join(out).to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    field(&stdout, "info_hash").expect("info_hash line")
}

fn peerlet_create_hash(dir: &Path, target: &str, piece: u32, out: &str) -> String {
    let output = peerlet()
        .current_dir(dir)
        .args([
            "create",
            target,
            "--piece-size",
            &piece.to_string(),
            "-o",
            out,
            "--no-date",
            "--threads",
            "2",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    field(&stdout, "info_hash").expect("info_hash line")
}

/// aria2c's own reading of a .torrent: its "Info Hash:" line.
fn aria2_hash(torrent: &Path) -> String {
    let aria2 = require_tool("aria2c", "aria2");
    let out = Command::new(aria2).arg("-S").arg(torrent).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Info Hash: "))
        .unwrap_or_else(|| panic!("no info hash from aria2c: {text}"))
        .trim()
        .to_string()
}

#[test]
fn one_gib_file_matches_mktorrent_and_verifies() {
    let dir = TempDir::new("gib");
    let big = dir.join("big.bin");
    write_random_file(&big, 1 << 30, 42);
    for log2 in [18u32, 20] {
        let mk = mktorrent_hash(dir.path(), "big.bin", log2, &format!("mk-{log2}.torrent"));
        let ours = peerlet_create_hash(
            dir.path(),
            "big.bin",
            1 << log2,
            &format!("pl-{log2}.torrent"),
        );
        assert_eq!(ours, mk, "piece size 2^{log2}");
        assert_eq!(aria2_hash(&dir.join(&format!("pl-{log2}.torrent"))), ours);
    }

    let torrent = dir.join("pl-20.torrent");
    let (code, stdout, stderr) = run(&[
        "verify",
        torrent.to_str().unwrap(),
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("complete: 1024 of 1024 pieces good, 0 bad, 0 missing"),
        "{stdout}"
    );

    // Flip one byte inside piece 500 (1 MiB pieces).
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&big)
            .unwrap();
        let at = 500u64 * (1 << 20) + 12345;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap();
        b[0] ^= 0x40;
        f.write_all_at(&b, at).unwrap();
    }
    let (code, stdout, _) = run(&[
        "verify",
        torrent.to_str().unwrap(),
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("bad pieces: 500\n"), "{stdout}");
    assert!(
        stdout.contains("INCOMPLETE: 1023 of 1024 pieces good, 1 bad, 0 missing"),
        "{stdout}"
    );
    let row = stdout.lines().find(|l| l.starts_with("big.bin")).unwrap();
    assert!(row.ends_with(" bad"), "{row}");

    let (code, json, _) = run(&[
        "verify",
        torrent.to_str().unwrap(),
        "--dir",
        dir.path().to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 1);
    assert!(
        json.contains(
            "\"good\":1023,\"bad\":1,\"missing\":0,\"complete\":false,\"bad_pieces\":[500]"
        ),
        "{json}"
    );
}

/// 1,000 files in nested folders, with names chosen to catch ordering
/// mistakes ('a.txt' sorts before 'a/...' byte-wise), empty files, hidden
/// files, spaces and non-ASCII names.
fn make_tree(root: &Path) -> u64 {
    let mut total = 0;
    let mut seed = 7u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let special = [
        "a.txt",
        "a/b.txt",
        "a-b/c",
        "A/upper",
        "_under",
        ".hidden",
        "sp ace/x y.bin",
        "é/ü.dat",
        "a/.h/z",
        "zz/empty",
    ];
    for i in 0..1000usize {
        let rel = if i < special.len() {
            special[i].to_string()
        } else {
            format!(
                "d{}/s{}/f{:04}.dat",
                i % 7,
                i % 13,
                (next() % 100_000) * 10 + i as u64
            )
        };
        let path = root.join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let len = match i % 10 {
            0 => 0,
            1 => 16384,
            _ => next() % 70_000,
        };
        if path.exists() {
            panic!("duplicate {rel}");
        }
        write_random_file(&path, len, i as u64);
        total += len;
    }
    total
}

#[test]
fn thousand_files_in_nested_folders_match_mktorrent() {
    let dir = TempDir::new("tree");
    make_tree(&dir.join("tree"));
    let n_files = peerlet::storage::walk(&dir.join("tree")).unwrap().len();
    assert_eq!(n_files, 1000);
    for log2 in [15u32, 17] {
        let mk = mktorrent_hash(dir.path(), "tree", log2, &format!("mk-{log2}.torrent"));
        let ours =
            peerlet_create_hash(dir.path(), "tree", 1 << log2, &format!("pl-{log2}.torrent"));
        assert_eq!(ours, mk, "piece size 2^{log2}");
        assert_eq!(aria2_hash(&dir.join(&format!("pl-{log2}.torrent"))), ours);
    }
    let (code, stdout, stderr) = run(&[
        "verify",
        dir.join("mk-15.torrent").to_str().unwrap(),
        "--dir",
        dir.path().to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.lines().last().unwrap().starts_with("complete:"),
        "{stdout}"
    );

    // Remove one file and truncate another: "missing" and "incomplete".
    std::fs::remove_file(dir.join("tree/a/b.txt")).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("tree/_under"))
        .unwrap();
    f.set_len(10).unwrap();
    let (code, stdout, _) = run(&[
        "verify",
        dir.join("mk-15.torrent").to_str().unwrap(),
        "--dir",
        dir.path().to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(code, 1, "{stdout}");
    let status = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .split_whitespace()
            .last()
            .unwrap()
            .to_string()
    };
    assert_eq!(status("tree/a/b.txt "), "missing");
    assert_eq!(status("tree/_under "), "incomplete");
    assert_eq!(status("tree/a.txt "), "ok");
}
