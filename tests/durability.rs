//! The state directory under damage: manual peers survive a damaged
//! resume record; a state directory remounted read-only mid-download is
//! shown (torrent, node, metrics), logged at most once per 10 s per
//! problem, retried, and caught up once it is writable again.

mod common;

use common::daemon::{create_torrent, start_seeder, DaemonProc};
use common::{write_random_file, TempDir};
use peerlet::json::Json;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Addresses the torrent knows from its `manual` source (`status --json`).
fn manual_known(st: &Json) -> u64 {
    st.get("sources")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter(|s| s.get("source").and_then(Json::as_str) == Some("manual"))
        .filter_map(|s| s.get("known").and_then(Json::as_u64))
        .sum()
}

/// Waits until the torrent has every piece and knows its manual peer.
fn wait_seeding_with_manual_peer(d: &DaemonProc, hash: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = d.try_status(hash) {
            let state = st.get("state").and_then(Json::as_str).unwrap_or("");
            if state == "seeding" && manual_known(&st) >= 1 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: the manual peer is gone: {st}\n{}",
                d.log_tail(20)
            );
        }
        assert!(Instant::now() < deadline, "{what}: no answer");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn manual_peers_survive_a_damaged_resume_record() {
    let tmp = TempDir::new("manual-peers");
    let src = tmp.join("src/album");
    std::fs::create_dir_all(&src).unwrap();
    write_random_file(&src.join("track.bin"), 1 << 20, 111);
    let file = tmp.join("album.torrent");
    let hash = create_torrent(&src, &file, "64K");
    let seeder = start_seeder(tmp.path(), "seeder", "127.0.41.20", &src, &file, &hash);
    let mut node = DaemonProc::start(tmp.path(), "node", "127.0.41.21", &[]);
    node.add(&file, &[seeder.listen]);
    node.wait_complete(&hash, Duration::from_secs(60));
    wait_seeding_with_manual_peer(&node, &hash, "before");
    let resume = node.state_dir.join(format!("torrents/{hash}.resume"));
    assert!(node.stop().is_some_and(|s| s.success()));
    assert!(resume.exists());

    // Truncated (a torn write on a card that lies about flushes).
    let bytes = std::fs::read(&resume).unwrap();
    std::fs::write(&resume, &bytes[..bytes.len() / 2]).unwrap();
    node.restart();
    wait_seeding_with_manual_peer(&node, &hash, "after truncation");
    node.kill9();

    // Garbage.
    std::fs::write(&resume, b"\x00\xffnot bencode at all").unwrap();
    node.restart();
    wait_seeding_with_manual_peer(&node, &hash, "after garbage");
    assert!(
        node.log_tail(200).contains(".resume is damaged"),
        "{}",
        node.log_tail(30)
    );
    node.stop();
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `dir` bind-mounted onto itself and remounted read-only; unmounted when
/// dropped (also when the test fails).
struct ReadOnly {
    dir: Option<PathBuf>,
}

impl ReadOnly {
    fn mount(dir: &Path) -> ReadOnly {
        let run = |args: &[&str]| {
            let st = Command::new("mount").args(args).status().unwrap();
            assert!(st.success(), "mount {args:?}");
        };
        let d = dir.to_str().unwrap();
        run(&["--bind", d, d]);
        let guard = ReadOnly {
            dir: Some(dir.to_path_buf()),
        };
        run(&["-o", "remount,bind,ro", d]);
        guard
    }

    /// Writable again.
    fn unmount(&mut self) {
        if let Some(dir) = self.dir.take() {
            for i in 0..50 {
                if Command::new("umount").arg(&dir).status().unwrap().success() {
                    return;
                }
                if i == 49 {
                    let _ = Command::new("umount").arg("-l").arg(&dir).status();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// `GET PATH` on the daemon's API (loopback: no token needed); the body.
fn api_get(d: &DaemonProc, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(&d.api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        d.api
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let r = peerlet::control::http::parse_response(&raw).unwrap();
    String::from_utf8(r.body).unwrap()
}

/// The torrent's line of `ls --json`.
fn listed(d: &DaemonProc, hash: &str) -> Json {
    let (code, out, err) = d.cli(&["ls", "--json"]);
    assert_eq!(code, 0, "ls: {out}{err}");
    let all = peerlet::json::parse(&out).unwrap();
    all.as_array()
        .into_iter()
        .flatten()
        .find(|t| t.get("info_hash").and_then(Json::as_str) == Some(hash))
        .cloned()
        .unwrap_or_else(|| panic!("{hash} not listed: {out}"))
}

fn error_of(t: &Json) -> Option<String> {
    t.get("error").and_then(Json::as_str).map(str::to_string)
}

fn state_dir_lines(d: &DaemonProc) -> Vec<String> {
    std::fs::read_to_string(&d.log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("state directory:"))
        .map(str::to_string)
        .collect()
}

/// Pieces the resume record lists.
fn recorded(d: &DaemonProc, hash: &str) -> u32 {
    std::fs::read(d.state_dir.join(format!("torrents/{hash}.resume")))
        .ok()
        .and_then(|b| peerlet::resume::Resume::decode(&b).ok())
        .map(|r| r.pieces.iter().map(|b| b.count_ones()).sum())
        .unwrap_or(0)
}

#[test]
fn a_read_only_state_directory_is_shown_retried_and_caught_up() {
    if !is_root() {
        eprintln!("skipped: a read-only bind mount of the state directory needs root");
        return;
    }
    let tmp = TempDir::new("ro-state");
    let src = tmp.join("src/movie");
    std::fs::create_dir_all(&src).unwrap();
    write_random_file(&src.join("movie.bin"), 8 << 20, 121);
    let file = tmp.join("movie.torrent");
    let hash = create_torrent(&src, &file, "32K");
    let seeder = DaemonProc::start(
        tmp.path(),
        "seeder",
        "127.0.41.22",
        &["--upload-limit", "300K"],
    );
    common::daemon::copy_tree(&src, &seeder.download_dir.join("movie"));
    seeder.add(&file, &[]);
    seeder.wait_complete(&hash, Duration::from_secs(60));
    let mut node = DaemonProc::start(
        tmp.path(),
        "node",
        "127.0.41.23",
        &["--checkpoint-mib", "1"],
    );
    node.add(&file, &[seeder.listen]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while listed(&node, &hash)
        .get("pieces_have")
        .and_then(Json::as_u64)
        .unwrap_or(0)
        < 8
    {
        assert!(Instant::now() < deadline, "the download did not start");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The state directory goes read-only mid-download.
    let mut ro = ReadOnly::mount(&node.state_dir);
    let lines_before = state_dir_lines(&node).len();
    let t0 = Instant::now();
    let error = loop {
        let t = listed(&node, &hash);
        if let Some(e) = error_of(&t) {
            break e;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no error in ls --json 5 s after the remount: {t}\n{}",
            node.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(error.contains("Read-only file system"), "{error}");
    let (code, ls, _) = node.cli(&["ls"]);
    assert_eq!(code, 0);
    assert!(ls.contains("Read-only file system"), "{ls}");
    let status: Json = peerlet::json::parse(&api_get(&node, "/api/node")).unwrap();
    assert!(
        status
            .get("state_dir_error")
            .and_then(Json::as_str)
            .is_some_and(|e| e.contains("Read-only file system")),
        "{status}"
    );
    let (_, node_text, _) = node.cli(&["status"]);
    assert!(
        node_text.contains("state directory error"),
        "{node_text}\n{}",
        node.log_tail(30)
    );
    assert!(api_get(&node, "/metrics").contains("\npeerlet_state_dir_error 1\n"));

    // 12 s of failing writes: at most one line per problem per 10 s.
    std::thread::sleep(Duration::from_secs(12).saturating_sub(t0.elapsed()));
    let lines: Vec<String> = state_dir_lines(&node).split_off(lines_before);
    let journal = lines.iter().filter(|l| l.contains("journal")).count();
    let record = lines.iter().filter(|l| l.contains("resume record")).count();
    assert!(
        (1..=2).contains(&journal) && record <= 2,
        "{} lines in 12 s:\n{}",
        lines.len(),
        lines.join("\n")
    );

    // Writable again: the error clears and the record catches up.
    ro.unmount();
    let t1 = Instant::now();
    loop {
        let t = listed(&node, &hash);
        if error_of(&t).is_none() {
            break;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(90),
            "the error stayed: {t}\n{}",
            node.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(api_get(&node, "/metrics").contains("\npeerlet_state_dir_error 0\n"));
    let st = node.wait_complete(&hash, Duration::from_secs(120));
    let pieces = st.get("pieces").and_then(Json::as_u64).unwrap() as u32;
    let deadline = Instant::now() + Duration::from_secs(90);
    while recorded(&node, &hash) < pieces {
        assert!(
            Instant::now() < deadline,
            "the record never caught up: {} of {pieces}\n{}",
            recorded(&node, &hash),
            node.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A crash now loses nothing.
    node.kill9();
    node.restart();
    let st = node.wait_complete(&hash, Duration::from_secs(60));
    assert_eq!(
        st.get("pieces_resumed").and_then(Json::as_u64),
        Some(u64::from(pieces)),
        "{st}"
    );
    node.stop();
}
