//! A torrent's directory replaced by a symbolic link after it was added
//! (issue 15): the daemon must neither write through the link nor seed
//! what lies behind it, and must show an error instead. Also a resume
//! record whose directory lies outside every anchor at the next start.
//! Real daemons on 127.0.21.x, every wait bounded.

mod common;

use common::daemon::{create_torrent, DaemonProc};
use common::{write_random_file, TempDir};
use peerlet::json::{self, Json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// `POST TARGET` to a daemon's API (no token: the API is on loopback and
/// does not ask for one, and this is not the local command line); the
/// status and body.
fn post(api: &str, target: &str, ctype: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: {api}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

fn state_and_error(s: &Json) -> (String, String) {
    (
        s.get("state")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string(),
        s.get("error")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string(),
    )
}

/// The torrent as `peerlet ls --json` lists it.
fn listed(d: &DaemonProc, hash: &str) -> Json {
    let (code, out, err) = d.cli(&["ls", "--json"]);
    assert_eq!(code, 0, "ls: {out}{err}");
    let list = json::parse(&out).unwrap_or_else(|e| panic!("ls JSON: {e}: {out}"));
    list.as_array()
        .unwrap()
        .iter()
        .find(|t| t.get("info_hash").and_then(Json::as_str) == Some(hash))
        .cloned()
        .unwrap_or_else(|| panic!("{hash} not in {out}"))
}

/// Waits (at most 60 s) until the torrent has left `checking`; its status.
fn settled(d: &DaemonProc, hash: &str) -> Json {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = d.status(hash);
        let (state, _) = state_and_error(&s);
        if state != "checking" || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_dir_made_a_link_after_the_add_is_never_written_through() {
    let tmp = TempDir::new("dir-links-write");
    let src = tmp.join("src");
    std::fs::create_dir_all(&src).unwrap();
    write_random_file(&src.join("track.bin"), 300 << 10, 15);
    let torrent = tmp.join("track.torrent");
    let hash = create_torrent(&src.join("track.bin"), &torrent, "32K");

    let seeder = DaemonProc::start(tmp.path(), "seeder", "127.0.21.1", &[]);
    std::fs::copy(src.join("track.bin"), seeder.download_dir.join("track.bin")).unwrap();
    seeder.add(&torrent, &[]);
    seeder.wait_complete(&hash, Duration::from_secs(60));

    let victim = DaemonProc::start(tmp.path(), "victim", "127.0.21.2", &[]);
    let real3 = victim.download_dir.join("real3");
    let q = |s: &str| peerlet::control::http::percent_encode(s);
    let (status, body) = post(
        &victim.api,
        &format!(
            "/api/torrents?dir={}&peer={}&paused=1",
            q(real3.to_str().unwrap()),
            q(&seeder.listen.to_string())
        ),
        "application/x-bittorrent",
        &std::fs::read(&torrent).unwrap(),
    );
    assert_eq!(status, 201, "{body}");
    settled(&victim, &hash);

    // The torrent's dir becomes a link to a directory holding a file of
    // the torrent's name.
    let outside = tmp.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let sentinel = b"sentinel: must stay as it is".repeat(100);
    std::fs::write(outside.join("track.bin"), &sentinel).unwrap();
    let _ = std::fs::remove_dir(&real3);
    std::os::unix::fs::symlink(&outside, &real3).unwrap();

    let (code, out, err) = victim.cli(&["resume", &hash]);
    assert_eq!(code, 0, "resume: {out}{err}");
    // Until the daemon shows an error, or the sentinel changes (the bug).
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let s = victim.status(&hash);
        let changed = std::fs::read(outside.join("track.bin")).unwrap() != sentinel;
        if !state_and_error(&s).1.is_empty() || changed || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        std::fs::read(outside.join("track.bin")).unwrap() == sentinel,
        "the file behind the link was written: {status}\n{}",
        victim.log_tail(20)
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    let (state, error) = state_and_error(&listed(&victim, &hash));
    assert_eq!(state, "error", "{status}");
    assert!(error.contains("symbolic link"), "{error}");
    // Retrying after the disk error does not go through it either.
    std::thread::sleep(Duration::from_secs(1));
    assert!(std::fs::read(outside.join("track.bin")).unwrap() == sentinel);
}

#[test]
fn after_a_restart_neither_a_link_nor_a_record_outside_the_anchors_is_seeded() {
    let tmp = TempDir::new("dir-links-restart");
    let mut d = DaemonProc::start(tmp.path(), "node", "127.0.21.3", &[]);
    let real3 = d.download_dir.join("real3");
    std::fs::create_dir_all(&real3).unwrap();
    write_random_file(&real3.join("track.bin"), 200 << 10, 16);
    let torrent = tmp.join("track.torrent");
    let hash = create_torrent(&real3.join("track.bin"), &torrent, "32K");
    let (code, out, err) = d.cli(&[
        "add",
        torrent.to_str().unwrap(),
        "--dir",
        real3.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "add: {out}{err}");
    d.wait_complete(&hash, Duration::from_secs(60));
    assert!(d.stop().is_some_and(|s| s.success()), "{}", d.log_tail(20));

    // The data moves outside (same bytes, same times) and the dir becomes
    // a link to it: only a walk that refuses the link keeps it unused.
    let outside = tmp.join("outside");
    std::fs::rename(&real3, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &real3).unwrap();
    d.restart();
    let s = settled(&d, &hash);
    let (state, error) = state_and_error(&s);
    assert_eq!(
        state,
        "error",
        "seeded through the link: {s}\n{}",
        d.log_tail(20)
    );
    assert!(error.contains("symbolic link"), "{error}");
    assert_eq!(
        state_and_error(&listed(&d, &hash)).0,
        "error",
        "{}",
        d.log_tail(20)
    );
    assert!(d.stop().is_some_and(|s| s.success()));

    // A resume record (as written before anchors) naming a directory
    // outside the download directory: refused at load, shown, not used.
    std::fs::remove_file(&real3).unwrap();
    let record = d.state_dir.join("torrents").join(format!("{hash}.resume"));
    let mut r = peerlet::resume::Resume::decode(&std::fs::read(&record).unwrap()).unwrap();
    r.dir = outside.clone();
    r.anchor = None;
    r.local_anchor = false;
    std::fs::write(&record, r.encode()).unwrap();
    d.restart();
    let s = settled(&d, &hash);
    let (state, error) = state_and_error(&s);
    assert_eq!(
        state,
        "error",
        "seeded from outside: {s}\n{}",
        d.log_tail(20)
    );
    assert!(error.contains("outside the download directory"), "{error}");
    assert_eq!(
        Path::new(s.get("dir").and_then(Json::as_str).unwrap()),
        outside
    );
    assert!(d.stop().is_some_and(|s| s.success()));

    // A record whose anchor is no longer the download directory nor an
    // allowed one: refused the same way.
    let write_record = |anchor: &Path, local: bool| {
        let mut r = peerlet::resume::Resume::decode(&std::fs::read(&record).unwrap()).unwrap();
        r.dir = outside.clone();
        r.anchor = Some(anchor.to_path_buf());
        r.local_anchor = local;
        std::fs::write(&record, r.encode()).unwrap();
    };
    write_record(&outside, false);
    d.restart();
    let s = settled(&d, &hash);
    let (state, error) = state_and_error(&s);
    assert_eq!(
        state,
        "error",
        "seeded from outside: {s}\n{}",
        d.log_tail(20)
    );
    assert!(error.contains("nor an allowed directory"), "{error}");
    assert!(d.stop().is_some_and(|s| s.success()));

    // The same directory chosen by the local user when adding (recorded
    // so): seeded again after the restart, where it lies.
    write_record(&outside, true);
    d.restart();
    d.wait_complete(&hash, Duration::from_secs(60));
    let (state, error) = state_and_error(&settled(&d, &hash));
    assert_eq!((state.as_str(), error.as_str()), ("seeding", ""));
}
