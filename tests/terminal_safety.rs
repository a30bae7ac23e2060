//! No untrusted string reaches a terminal as it is: torrent names, file
//! paths, magnet names and command-line arguments quoted by `peerlet`
//! (output and every error path) carry no control character but '\n'
//! (no ESC, no OSC title, no BEL, no C1) and no bidirectional control (so
//! `abc\u{202e}txt.exe` cannot pose as `abcexe.txt`). The daemon's log
//! follows the same rule. Daemon on 127.0.12.1.

mod common;

use common::daemon::DaemonProc;
use common::TempDir;
use std::path::Path;
use std::process::Command;

/// What a hostile torrent author puts in a name: clear screen, a window
/// title (OSC ... BEL), a C1 CSI, and a right-to-left override.
const HOSTILE: &str = "\x1b[2J\x1b]0;pwned\x07\u{9b}31m abc\u{202e}txt.exe";

/// The first character a terminal must not see, if any.
fn unsafe_char(text: &str) -> Option<char> {
    text.chars().find(|&c| {
        (c < ' ' && c != '\n')
            || ('\u{7f}'..='\u{9f}').contains(&c)
            || matches!(
                c,
                '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            )
    })
}

fn assert_clean(what: &str, out: &str, err: &str) {
    for (stream, text) in [("stdout", out), ("stderr", err)] {
        if let Some(c) = unsafe_char(text) {
            panic!("{what}: {stream} carries {c:?}: {text:?}");
        }
    }
}

/// A bencoded string.
fn bstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{}:", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// A one-piece torrent (16 KiB of zeros) whose info dictionary is
/// `name` plus either `length` or `files` (each file a list of path
/// components).
fn torrent(name: &str, files: Option<&[&[&str]]>) -> Vec<u8> {
    let piece = 16384u64;
    let mut info = Vec::new();
    info.push(b'd');
    match files {
        None => {
            bstr(&mut info, b"length");
            info.extend_from_slice(format!("i{piece}e").as_bytes());
        }
        Some(files) => {
            bstr(&mut info, b"files");
            info.push(b'l');
            let each = piece / files.len() as u64;
            for (i, path) in files.iter().enumerate() {
                let len = if i + 1 == files.len() {
                    piece - each * (files.len() as u64 - 1)
                } else {
                    each
                };
                info.push(b'd');
                bstr(&mut info, b"length");
                info.extend_from_slice(format!("i{len}e").as_bytes());
                bstr(&mut info, b"path");
                info.push(b'l');
                for c in *path {
                    bstr(&mut info, c.as_bytes());
                }
                info.extend_from_slice(b"ee");
            }
            info.push(b'e');
        }
    }
    bstr(&mut info, b"name");
    bstr(&mut info, name.as_bytes());
    bstr(&mut info, b"piece length");
    info.extend_from_slice(format!("i{piece}e").as_bytes());
    bstr(&mut info, b"pieces");
    let hash = peerlet::hash::sha1(&vec![0u8; piece as usize]);
    bstr(&mut info, &hash);
    info.push(b'e');
    let mut t = Vec::new();
    t.push(b'd');
    bstr(&mut t, b"info");
    t.extend_from_slice(&info);
    t.push(b'e');
    t
}

fn write(dir: &Path, file: &str, bytes: &[u8]) -> String {
    let p = dir.join(file);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

/// `peerlet ARGS` without a daemon: (code, stdout, stderr).
fn offline(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_peerlet"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn hostile_names_never_reach_the_terminal_raw() {
    let tmp = TempDir::new("terminal-safety");
    let files = tmp.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let empty = tmp.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let empty = empty.to_str().unwrap();

    // Refused by the path rule, each quoting the hostile text in its error.
    let bad_name = write(
        &files,
        "bad-name.torrent",
        &torrent(&format!("{HOSTILE}/x"), None),
    );
    let bad_path = write(
        &files,
        "bad-path.torrent",
        &torrent("dir", Some(&[&["ok"], &[&format!("{HOSTILE}/y")]])),
    );
    let dup_path = write(
        &files,
        "dup-path.torrent",
        &torrent("dir", Some(&[&[HOSTILE], &[HOSTILE]])),
    );
    // Accepted: the name is odd but not unsafe on disk.
    let odd_name = write(&files, "odd.torrent", &torrent(HOSTILE, None));
    let magnet = format!(
        "magnet:?xt=urn:btih:{}&dn=%1b%5b2J%1b%5d0%3bpwned%07abc%e2%80%aetxt.exe",
        "ab".repeat(20)
    );

    for refused in [&bad_name, &bad_path, &dup_path] {
        let (code, out, err) = offline(&["inspect", refused]);
        assert_eq!(code, 2, "inspect {refused}: {out}{err}");
        assert!(err.contains("unsafe") || err.contains("twice"), "{err}");
        assert_clean("inspect (refused)", &out, &err);
        let (code, out, err) = offline(&["verify", refused, "--dir", empty]);
        assert_eq!(code, 2, "verify {refused}: {out}{err}");
        assert_clean("verify (refused)", &out, &err);
    }
    let (code, out, err) = offline(&["inspect", &odd_name]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("abc?txt.exe"), "{out}");
    assert_clean("inspect", &out, &err);
    let (code, out, err) = offline(&["inspect", &magnet]);
    assert_eq!(code, 0, "{out}{err}");
    assert_clean("inspect magnet", &out, &err);
    // No data: the "no file of NAME found" hint on stderr.
    let (code, out, err) = offline(&["verify", &odd_name, "--dir", empty, "-q"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("no file of"), "{err}");
    assert_clean("verify (no data)", &out, &err);
    // An argument quoted back in a usage error.
    let (code, out, err) = offline(&["ls", &format!("--x{HOSTILE}")]);
    assert_eq!(code, 2, "{out}{err}");
    assert_clean("usage error", &out, &err);
    let (code, out, err) = offline(&[&format!("cmd{HOSTILE}")]);
    assert_eq!(code, 2, "{out}{err}");
    assert_clean("unknown command", &out, &err);

    let d = DaemonProc::start(tmp.path(), "d", "127.0.12.1", &[]);
    for refused in [&bad_name, &bad_path, &dup_path] {
        let (code, out, err) = d.cli(&["add", refused, "--json"]);
        assert_eq!(code, 2, "add {refused}: {out}{err}");
        assert_clean("add (refused)", &out, &err);
    }
    let (code, out, err) = d.cli(&["add", &odd_name]);
    assert_eq!(code, 0, "{out}{err}");
    assert_clean("add", &out, &err);
    let (code, out, err) = d.cli(&["add", &magnet, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_clean("add magnet", &out, &err);
    let (code, out, err) = d.cli(&["add", &odd_name]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("already present"), "{out}{err}");
    assert_clean("add (twice)", &out, &err);

    let (code, out, err) = d.cli(&["ls"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("abc?txt.exe"), "{out}");
    assert_clean("ls", &out, &err);
    let (code, out, err) = d.cli(&["ls", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_clean("ls --json", &out, &err);
    // The JSON still carries the name itself, escaped.
    let list = peerlet::json::parse(&out).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.get("name")?.as_str())
        .collect();
    assert!(out.contains("\\u202e"), "{out}");
    assert!(names.contains(&HOSTILE), "{names:?}");
    for hash in [
        peerlet::metainfo::Torrent::from_bytes(&std::fs::read(&odd_name).unwrap())
            .unwrap()
            .info_hash
            .to_hex(),
        "ab".repeat(20),
    ] {
        for args in [&["status", &hash][..], &["status", &hash, "--json"]] {
            let (code, out, err) = d.cli(args);
            assert_eq!(code, 0, "{args:?}: {out}{err}");
            assert_clean("status", &out, &err);
        }
    }
    let (code, out, err) = d.cli(&["peers"]);
    assert_eq!(code, 0, "peers: {out}{err}");
    assert_clean("peers", &out, &err);
    let (code, out, err) = d.cli(&["status"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_clean("node status", &out, &err);

    // The daemon's own log quotes the names too.
    let log = std::fs::read(&d.log).unwrap();
    let log = String::from_utf8_lossy(&log);
    assert!(
        log.contains("added ?[2J?]0;pwned??31m abc?txt.exe"),
        "{log}"
    );
    assert_clean("daemon log", "", &log);
}
