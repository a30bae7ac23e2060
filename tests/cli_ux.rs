//! The command-line experience as a new user meets it: help that names
//! defaults and shows examples, usage errors in one line that say where
//! help is, `--json` on every read command, `add --wait` and `get --json`,
//! and clear errors for a wrong `--api` address. Daemons listen on
//! 127.0.10.x with kernel-picked ports.

mod common;

use common::daemon::{create_torrent, DaemonProc};
use common::{run, run_bounded, write_random_file, TempDir};
use peerlet::json::{self, Json};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// Commands that talk to a daemon.
const CLIENT_COMMANDS: [&str; 12] = [
    "add", "get", "ls", "status", "pause", "resume", "limit", "rm", "search", "peers", "dht",
    "stop",
];

#[test]
fn help_names_defaults_and_shows_examples() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for section in ["Commands:", "Examples:", "Notes:", "Error codes:"] {
        assert!(out.contains(section), "{section} missing:\n{out}");
    }
    // Every command's description fits its line of the list (`config`'s
    // text lives with the configuration code).
    let commands = out
        .split("Commands:\n")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .unwrap();
    for line in commands.lines() {
        assert!(
            line.starts_with("  ") && !line.starts_with("   ") || line.contains("configuration."),
            "a description wraps: {line:?}\n{out}"
        );
    }
    for cmd in CLIENT_COMMANDS {
        let (code, out, err) = run(&[cmd, "--help"]);
        assert_eq!(code, 0, "{cmd}: {err}");
        assert!(
            out.contains("(default 127.0.0.1:7441)"),
            "{cmd} --help does not name the API default:\n{out}"
        );
    }
    for cmd in ["add", "get", "ls", "status", "search", "create", "verify"] {
        let (_, out, _) = run(&[cmd, "--help"]);
        assert!(
            out.contains(&format!("Examples:\n  $ peerlet {cmd}")),
            "{cmd} --help has no example:\n{out}"
        );
    }
    let (_, out, _) = run(&["get", "--help"]);
    assert!(out.contains("(default: wait until done)"), "{out}");
}

#[test]
fn usage_errors_are_one_line_and_point_to_help() {
    for (args, want) in [
        (&["ls", "--bogus"][..], "peerlet: unrecognized argument: --bogus; see 'peerlet ls --help'"),
        (&["frobnicate"][..], "peerlet: unknown command 'frobnicate'; see 'peerlet --help'"),
        (&["config", "bogus"][..], "peerlet: unknown command 'bogus'; see 'peerlet config --help'"),
        (
            &["create"][..],
            "peerlet: required positional arguments not provided: path; see 'peerlet create --help'",
        ),
        (&["ls", "--api"][..], "peerlet: no value provided for option '--api'; see 'peerlet ls --help'"),
        (&["status", "a", "b"][..], "peerlet: unrecognized argument: b; see 'peerlet status --help'"),
    ] {
        let (code, out, err) = run(args);
        assert_eq!(code, 2, "{args:?}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert_eq!(err, format!("{want}\n"), "{args:?}");
    }
    let (code, _, err) = run(&["limit", "ab81", "--down", "fast"]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("peerlet: error parsing option '--down'"),
        "{err}"
    );
    assert!(
        err.trim_end().ends_with("see 'peerlet limit --help'"),
        "{err}"
    );

    // Something that is neither a file, a magnet link nor an info-hash.
    let (code, _, err) = run(&["add", "no-such-thing", "--api", "127.0.10.9:1"]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot read torrent")
            && err.contains("give a .torrent file, a magnet link or an info-hash"),
        "{err}"
    );
}

/// An HTTP server that is not peerlet, answering every request with
/// `status` and an HTML or empty body, for `count` requests.
fn not_peerlet(status: &'static str, body: &'static str, count: usize) -> String {
    let listener = TcpListener::bind("127.0.10.9:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for _ in 0..count {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

#[test]
fn a_wrong_api_address_is_named() {
    let api = not_peerlet("404 Not Found", "", 1);
    let (code, _, err) = run_bounded(&["ls", "--api", &api], None);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        format!(
            "peerlet: {api} answered HTTP 404 Not Found without a peerlet error: \
             is it peerlet's control API? (check --api)\n"
        )
    );
    let api = not_peerlet("200 OK", "<html>hello</html>", 1);
    let (code, _, err) = run_bounded(&["status", "--api", &api], None);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("the answer from {api} is not JSON"))
            && err.contains("(check --api)"),
        "{err}"
    );
}

fn parse(out: &str) -> Json {
    json::parse(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn str_of<'a>(j: &'a Json, key: &str) -> &'a str {
    j.get(key).and_then(Json::as_str).unwrap_or("")
}

#[test]
fn read_commands_speak_json_and_add_waits() {
    let tmp = TempDir::new("cli-ux");
    let mut d = DaemonProc::start(tmp.path(), "node", "127.0.10.1", &[]);
    // Data already in the download directory: `add --wait` rechecks it and
    // the torrent seeds.
    let data = d.download_dir.join("album");
    std::fs::create_dir_all(&data).unwrap();
    write_random_file(&data.join("a.bin"), 300_000, 1);
    write_random_file(&data.join("b.bin"), 70_000, 2);
    let torrent = tmp.join("album.torrent");
    let hash = create_torrent(&data, &torrent, "32K");
    let torrent = torrent.to_str().unwrap();

    let (code, out, err) = d.cli(&["add", torrent, "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("added album ({hash})"), "{out}");
    assert_eq!(
        lines[1],
        format!(
            "seeding: album ({hash}), 100.0% of 361.3 KiB on disk in {}",
            d.download_dir.display()
        ),
        "{out}"
    );

    // add --json: the daemon's answer, one object.
    let (code, out, err) = d.cli(&["add", torrent, "--json"]);
    assert_eq!(code, 0, "{err}");
    let j = parse(&out);
    assert_eq!(str_of(&j, "info_hash"), hash);
    assert_eq!(str_of(&j, "name"), "album");
    assert_eq!(j.get("added").and_then(Json::as_bool), Some(false));
    // add --wait --json: the status, with "added".
    let (code, out, err) = d.cli(&["add", torrent, "--wait", "--json"]);
    assert_eq!(code, 0, "{err}");
    let j = parse(&out);
    assert_eq!(str_of(&j, "state"), "seeding");
    assert_eq!(j.get("added").and_then(Json::as_bool), Some(false));
    // get --json on a complete torrent: its status at once, no progress.
    let t = Instant::now();
    let (code, out, err) = d.cli(&["get", torrent, "--json", "--timeout", "20"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "{err}");
    let j = parse(&out);
    assert_eq!(str_of(&j, "info_hash"), hash);
    assert_eq!(j.get("pieces_have"), j.get("pieces"));
    assert!(t.elapsed() < Duration::from_secs(10));

    // Every read command has --json, one JSON document on stdout.
    let (code, out, _) = d.cli(&["ls", "--json"]);
    assert_eq!(code, 0);
    let list = parse(&out);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    for key in [
        "info_hash",
        "name",
        "state",
        "total_size",
        "have_bytes",
        "peers",
    ] {
        assert!(list[0].get(key).is_some(), "ls --json lacks {key}: {out}");
    }
    let (code, out, _) = d.cli(&["status", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(str_of(&parse(&out), "listen"), d.listen.to_string());
    let (code, out, _) = d.cli(&["status", &hash[..6], "--json"]);
    assert_eq!(code, 0);
    let j = parse(&out);
    assert_eq!(
        j.get("files").and_then(Json::as_array).map(<[Json]>::len),
        Some(2)
    );
    let (code, out, _) = d.cli(&["peers", "--json"]);
    assert_eq!(code, 0);
    let j = parse(&out);
    assert!(j.get("bans").and_then(Json::as_array).is_some(), "{out}");
    let (code, out, _) = d.cli(&["search", "nothing", "--timeout", "1", "--json"]);
    assert_eq!(code, 1, "nothing found");
    assert_eq!(parse(&out).get("done").and_then(Json::as_bool), Some(true));
    let (code, out, _) = run(&["inspect", torrent, "--json"]);
    assert_eq!(code, 0);
    assert_eq!(str_of(&parse(&out), "info_hash"), hash);
    let (code, out, _) = run(&[
        "verify",
        torrent,
        "--dir",
        d.download_dir.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        parse(&out).get("complete").and_then(Json::as_bool),
        Some(true)
    );

    // verify in the wrong place: one hint naming --dir.
    let (code, _, err) = run_bounded(&["verify", torrent, "-q"], Some(tmp.path()));
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "peerlet: no file of album found under .; --dir names the directory that holds album\n"
    );

    // The daemon stopping while `get` waits: one line saying so, exit 2.
    let magnet = "magnet:?xt=urn:btih:1111111111111111111111111111111111111111";
    let mut waiting = common::peerlet()
        .args(["get", magnet, "--timeout", "30", "--api", &d.api])
        .env("PEERLET_STATE_DIR", &d.state_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    d.stop();
    let deadline = Instant::now() + Duration::from_secs(20);
    while waiting.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if waiting.try_wait().unwrap().is_none() {
        let _ = waiting.kill();
        panic!("get kept waiting after the daemon stopped");
    }
    let out = waiting.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("added 1111111111111111111111111111111111111111 (name not known yet)\n"),
        "{stdout}"
    );
    let last = stderr.lines().last().unwrap_or("");
    assert!(
        last.contains("stopped answering while waiting for")
            && last.contains("`peerlet status 11111111`"),
        "{stderr}"
    );
}
