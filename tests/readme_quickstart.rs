//! README.md's quick start, "share something and fetch it elsewhere", run
//! as written against real daemons on 127.0.21.11-13 (issue 15, defect 8:
//! `add --dir ~/music` was refused as outside the download directory).
//!
//! The block is read from README.md, so a change there changes what runs.
//! Only these are replaced: `~` by a temporary home, `192.168.1.20:6881`
//! by the seeding node's peer address, the example info-hash by the real
//! one; every command gets `--api` of the node it runs on (and, as a user
//! on that machine would have, its state directory in the environment,
//! where the command finds the API token). Node A shares (`create`, `add`,
//! `ls`); node B is "another node" (`get --peer`); node C finds the
//! torrent through the overlay (`search`, `get INFO_HASH`), having only A
//! as a bootstrap node. Every command and wait is bounded.

mod common;

use common::daemon::{assert_same_tree, DaemonProc};
use common::{output_within, write_random_file, TempDir};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const EXAMPLE_PEER: &str = "192.168.1.20:6881";
const EXAMPLE_HASH: &str = "0123456789abcdef0123456789abcdef01234567";

/// The command lines of the README block after "share something and
/// fetch it elsewhere", comments cut.
fn quickstart_commands() -> Vec<(String, String)> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let at = readme
        .find("share something and fetch it elsewhere")
        .expect("the quick start's share block in README.md");
    let block = &readme[at..];
    let start = block.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let end = start + block[start..].find("```").expect("the end of the block");
    block[start..end]
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match l.split_once(" #") {
            Some((cmd, comment)) => (cmd.trim().to_string(), comment.trim().to_string()),
            None => (l.trim().to_string(), String::new()),
        })
        .collect()
}

/// Runs one README command line (`peerlet ...`) in `cwd` with `home` as
/// `~` and HOME, against `node` (None: an offline command); at most
/// `limit`. (exit code, stdout, stderr).
fn run_line(
    line: &str,
    cwd: &Path,
    home: &Path,
    node: Option<&DaemonProc>,
    limit: Duration,
) -> (i32, String, String) {
    let words: Vec<String> = line
        .split_whitespace()
        .map(|w| match w.strip_prefix("~/") {
            Some(rest) => home.join(rest).to_string_lossy().into_owned(),
            None => w.to_string(),
        })
        .collect();
    assert_eq!(words[0], "peerlet", "{line}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_peerlet"));
    cmd.args(&words[1..])
        .current_dir(cwd)
        .env("HOME", home)
        .env("PEERLET_CONFIG", "/dev/null")
        // Verbatim, but with no DHT router: tests never contact a public host.
        .env("PEERLET_DHT_BOOTSTRAP", "")
        .env_remove("PEERLET_API_TOKEN")
        .env_remove("PEERLET_STATE_DIR");
    if let Some(d) = node {
        cmd.args(["--api", &d.api])
            .env("PEERLET_STATE_DIR", &d.state_dir);
    }
    let (status, out, err) = output_within(&mut cmd, limit);
    (status.map_or(-9, |st| st.code().unwrap_or(-1)), out, err)
}

#[test]
fn the_readme_quick_start_shares_and_fetches() {
    let lines = quickstart_commands();
    let find = |prefix: &str| -> String {
        lines
            .iter()
            .find(|(l, _)| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no '{prefix}' line in the README block: {lines:?}"))
            .0
            .clone()
    };
    let create = find("peerlet create ");
    let add = find("peerlet add ");
    let get_peer = find(&format!("peerlet get album.torrent --peer {EXAMPLE_PEER}"));
    let search = find("peerlet search ");
    let get_hash = find(&format!("peerlet get {EXAMPLE_HASH}"));
    let ls = find("peerlet ls");
    assert_eq!(lines.len(), 6, "a line this test does not run: {lines:?}");

    let tmp = TempDir::new("readme-quickstart");
    let home = tmp.join("home");
    let work = tmp.join("work");
    std::fs::create_dir_all(home.join("music/album")).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    write_random_file(&home.join("music/album/01 intro.flac"), 300 << 10, 1);
    write_random_file(&home.join("music/album/02 song.flac"), 200 << 10, 2);

    let a = DaemonProc::start(tmp.path(), "a", "127.0.21.11", &[]);
    let boot = a.listen.to_string();
    let b = DaemonProc::start(tmp.path(), "b", "127.0.21.12", &["--bootstrap", &boot]);
    let c = DaemonProc::start(tmp.path(), "c", "127.0.21.13", &["--bootstrap", &boot]);
    let short = Duration::from_secs(30);
    let long = Duration::from_secs(120);

    // peerlet create ~/music/album -o album.torrent
    let (code, out, err) = run_line(&create, &work, &home, None, short);
    assert_eq!(code, 0, "{create}: {out}{err}");
    assert!(work.join("album.torrent").is_file(), "{out}{err}");
    let hash = common::field(&out, "info_hash").expect("info_hash");

    // peerlet add album.torrent --dir ~/music: seeds ~/music/album in place.
    let (code, out, err) = run_line(&add, &work, &home, Some(&a), short);
    assert_eq!(code, 0, "{add}: {out}{err}");
    assert!(out.contains("added album"), "{out}");
    let status = a.wait_complete(&hash, Duration::from_secs(60));
    assert_eq!(
        Path::new(
            status
                .get("dir")
                .and_then(peerlet::json::Json::as_str)
                .unwrap()
        ),
        home.join("music").canonicalize().unwrap()
    );
    assert!(
        !a.download_dir.join("album").exists(),
        "seeded where it lies, not copied"
    );

    // peerlet get album.torrent --peer 192.168.1.20:6881, on another node.
    let get_peer = get_peer.replace(EXAMPLE_PEER, &a.listen.to_string());
    let (code, out, err) = run_line(&get_peer, &work, &home, Some(&b), long);
    assert_eq!(code, 0, "{get_peer}: {out}{err}\n{}", b.log_tail(20));
    assert_same_tree(&home.join("music/album"), &b.download_dir.join("album"));

    // peerlet search album: C knows only A, through the overlay.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (code, out, err) = run_line(&search, &work, &home, Some(&c), short);
        if code == 0 && out.contains(&hash) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{search}: {code} {out}{err}\n{}",
            c.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // peerlet get <info-hash>: holders and metadata through the overlay.
    let get_hash = get_hash.replace(EXAMPLE_HASH, &hash);
    let (code, out, err) = run_line(&get_hash, &work, &home, Some(&c), long);
    assert_eq!(code, 0, "{get_hash}: {out}{err}\n{}", c.log_tail(20));
    assert_same_tree(&home.join("music/album"), &c.download_dir.join("album"));

    // peerlet ls
    let (code, out, err) = run_line(&ls, &work, &home, Some(&a), short);
    assert_eq!(code, 0, "{ls}: {out}{err}");
    assert!(out.contains("album") && out.contains("seeding"), "{out}");
}
