//! The control API's safety, against real daemons on loopback
//! (127.0.2.1-127.0.2.3, every port picked by the kernel): the token file
//! (made once, mode 0600, a damaged one stops the start), requests without
//! or with a wrong token (401, then 429), with the token (header, or the
//! web page's login cookie), Host and Origin checks that no token gets
//! past (DNS rebinding), the CLI finding the token, and a torrent's `dir`
//! kept inside the download directory for every caller but the local
//! user (the token as a Bearer header from loopback: the command line),
//! who may name any existing directory but the state directory. A daemon started with
//! `--api-token-required` stands in for one bound off loopback (the same
//! code path; `control::token::required` is unit-tested for the addresses).
//! Every wait is bounded.

mod common;

use common::daemon::DaemonProc;
use common::TempDir;
use peerlet::json::{self, Json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An answer: status, head (lower-cased header names kept as sent), body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Json {
        json::parse(&self.body).unwrap_or(Json::Null)
    }

    fn error(&self) -> String {
        self.json()
            .get("error")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// One request over a fresh connection; `Host` defaults to the address.
fn request(api: &str, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {api}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    s.write_all(&bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    Answer {
        status: head[9..12].parse().unwrap(),
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn get(api: &str, target: &str, headers: &[(&str, &str)]) -> Answer {
    request(api, "GET", target, headers, b"")
}

/// `peerlet ARGS --api API` with only `env` set of the PEERLET_* variables,
/// and a data directory of its own (no token found by accident); at most 30 s.
fn cli(api: &str, args: &[&str], env: &[(&str, &str)], home: &Path) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_peerlet"));
    cmd.args(args)
        .args(["--api", api])
        .env_remove("PEERLET_API_TOKEN")
        .env_remove("PEERLET_STATE_DIR")
        .env("PEERLET_CONFIG", "/dev/null")
        .env("XDG_DATA_HOME", home)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("peerlet {args:?} ran for more than 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn token_of(d: &DaemonProc) -> String {
    let text = std::fs::read_to_string(d.state_dir.join("api.token")).unwrap();
    assert_eq!(text.len(), 65, "{text:?}");
    assert!(text.ends_with('\n'));
    let token = text.trim_end().to_string();
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    token
}

fn assert_private(path: &Path) {
    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}: mode {:o}", path.display(), mode);
}

#[test]
fn a_daemon_that_requires_the_token() {
    let tmp = TempDir::new("control-security");
    let mut d = DaemonProc::start_with_log(
        tmp.path(),
        "guarded",
        "127.0.2.1",
        &["--api-token-required", "--no-overlay"],
        "info,peerlet::control=debug",
    );
    let api = d.api.clone();
    let api = api.as_str();
    let token_path = d.state_dir.join("api.token");
    assert_private(&token_path);
    let token = token_of(&d);
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];

    // Without the token: 401 and a short JSON error, on every kind of route.
    for target in [
        "/api/node",
        "/api/torrents",
        "/metrics",
        "/",
        "/app.js",
        "/nope",
    ] {
        let a = get(api, target, &[]);
        assert_eq!(a.status, 401, "{target}: {}", a.body);
        assert!(
            a.error().contains("needs its token"),
            "{target}: {}",
            a.body
        );
        assert_eq!(
            a.header("www-authenticate").as_deref(),
            Some("Bearer realm=\"peerlet\"")
        );
        assert!(a
            .header("content-type")
            .unwrap()
            .starts_with("application/json"));
    }
    // Nor can a POST with a body get anywhere.
    let a = request(api, "POST", "/api/shutdown", &[], b"");
    assert_eq!(a.status, 401);
    // With it: served.
    let a = get(api, "/api/node", &auth);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.json().get("peer_id").is_some(), "{}", a.body);
    let a = get(api, "/metrics", &auth);
    assert_eq!(a.status, 200);
    assert!(a.body.contains("# TYPE "), "{}", a.body);
    // A wrong one: 401, and it is logged at debug with the client's address.
    let wrong = format!("Bearer {}", "0".repeat(64));
    let a = get(api, "/api/node", &[("Authorization", &wrong)]);
    assert_eq!((a.status, a.error().as_str()), (401, "wrong API token"));

    // DNS rebinding: a name that is not allowed is refused before the token
    // is even looked at, with or without it; so is another site's page.
    for host in [
        "evil.example:7441",
        "evil.example",
        "localhost.evil.example",
    ] {
        let a = get(api, "/api/node", &[("Host", host), auth[0]]);
        assert_eq!(a.status, 421, "{host}: {}", a.body);
        assert!(a.error().contains("DNS rebinding"), "{}", a.body);
        let a = get(api, "/api/node", &[("Host", host)]);
        assert_eq!(a.status, 421, "{host}");
    }
    let a = request(
        api,
        "POST",
        "/api/shutdown",
        &[("Origin", "http://evil.example"), auth[0]],
        b"",
    );
    assert_eq!(
        (a.status, a.error().as_str()),
        (403, "cross-origin requests are refused")
    );
    let a = request(
        api,
        "DELETE",
        &format!("/api/torrents/{}", "a".repeat(40)),
        &[("Sec-Fetch-Site", "cross-site"), auth[0]],
        b"",
    );
    assert_eq!(a.status, 403, "{}", a.body);

    // The browser: log in once with ?token=, then the cookie does it.
    let a = get(
        api,
        &format!("/?token={token}"),
        &[("Sec-Fetch-Site", "none")],
    );
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(a.header("location").as_deref(), Some("/"));
    let set = a.header("set-cookie").expect("a cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let port = api.rsplit_once(':').unwrap().1;
    assert_eq!(cookie, format!("peerlet_token_{port}={token}"));
    let page = get(api, "/", &[("Cookie", &cookie)]);
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let same_origin = format!("http://{api}");
    let list = get(
        api,
        "/api/torrents",
        &[
            ("Cookie", &cookie),
            ("Origin", &same_origin),
            ("Sec-Fetch-Site", "same-origin"),
        ],
    );
    assert_eq!(list.status, 200, "{}", list.body);
    let a = get(api, "/?token=0123", &[]);
    assert_eq!((a.status, a.error().as_str()), (401, "wrong API token"));
    assert!(a.header("set-cookie").is_none());

    // The CLI: finds the token in the state directory, or takes it given.
    let home = tmp.join("cli-home");
    let (code, _, err) = cli(api, &["ls"], &[], &home);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("wants its API token") && err.contains("--token"),
        "{err}"
    );
    let state = d.state_dir.to_str().unwrap().to_string();
    let (code, out, err) = cli(api, &["ls"], &[("PEERLET_STATE_DIR", &state)], &home);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "no torrents");
    let (code, out, err) = cli(
        api,
        &["status", "--json"],
        &[("PEERLET_API_TOKEN", &token)],
        &home,
    );
    assert_eq!(code, 0, "{err}");
    assert!(json::parse(&out).unwrap().get("peer_id").is_some());
    let (code, _, err) = cli(api, &["ls", "--token", &token], &[], &home);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(api, &["ls", "--token", &"f".repeat(64)], &[], &home);
    assert_eq!(code, 2);
    assert!(
        err.contains("refused the API token from --token: wrong API token"),
        "{err}"
    );

    // A torrent's dir stays in the download directory, links followed,
    // for any caller but the local user: here the browser (its cookie is
    // the token, but a page is not the command line).
    let outside = tmp.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, d.download_dir.join("escape")).unwrap();
    let magnet = format!("magnet:?xt=urn:btih:{}&dn=x", "c0ffee".repeat(6) + "c0ff");
    let add_as = |dir: &Path, who: (&str, &str), magnet: &str| {
        let q = peerlet::control::http::percent_encode(dir.to_str().unwrap());
        request(
            api,
            "POST",
            &format!("/api/torrents?dir={q}&paused=1"),
            &[who, ("Content-Type", "text/plain")],
            magnet.as_bytes(),
        )
    };
    let browser = ("Cookie", cookie.as_str());
    let add = |dir: &Path| add_as(dir, browser, &magnet);
    for bad in [
        outside.clone(),
        d.download_dir.join("escape"),
        d.download_dir.join("escape/deeper"),
        d.download_dir.join("../outside"),
        d.state_dir.clone(),
        "/etc".into(),
    ] {
        let a = add(&bad);
        assert_eq!(a.status, 400, "{}: {}", bad.display(), a.body);
        assert!(a.error().contains("dir '"), "{}", a.body);
    }
    assert!(add(&outside)
        .error()
        .contains("outside the download directory"));
    let inside = d.download_dir.join("films/new");
    let a = add(&inside);
    assert_eq!(a.status, 201, "{}", a.body);
    let dir_of = |hash: &str| {
        let list = get(api, "/api/torrents", &auth).json();
        let t = list
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t.get("info_hash").and_then(Json::as_str) == Some(hash))
            .cloned()
            .unwrap_or_else(|| panic!("{hash} not listed"));
        PathBuf::from(t.get("dir").and_then(Json::as_str).unwrap())
    };
    assert_eq!(
        dir_of(&("c0ffee".repeat(6) + "c0ff")),
        d.download_dir.canonicalize().unwrap().join("films/new")
    );

    // The local user (the token as a Bearer header, from loopback: the
    // command line) may name any existing directory but the state
    // directory, and gets it resolved.
    let local_hash = "beef".repeat(10);
    let local_magnet = format!("magnet:?xt=urn:btih:{local_hash}&dn=y");
    let (code, out, err) = cli(
        api,
        &[
            "add",
            &local_magnet,
            "-d",
            d.download_dir.join("escape").to_str().unwrap(),
        ],
        &[("PEERLET_STATE_DIR", &state)],
        &home,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(dir_of(&local_hash), outside.canonicalize().unwrap());
    for (bad, why) in [
        (d.state_dir.clone(), "state directory"),
        (
            d.state_dir.parent().unwrap().to_path_buf(),
            "state directory",
        ),
        (outside.join("missing"), "does not exist"),
        (d.download_dir.join("../outside"), ".."),
    ] {
        let a = add_as(
            &bad,
            auth[0],
            &format!("magnet:?xt=urn:btih:{}", "ab".repeat(20)),
        );
        assert_eq!(a.status, 400, "{}: {}", bad.display(), a.body);
        assert!(a.error().contains(why), "{}: {}", bad.display(), a.body);
    }

    // Too many wrong tokens from one address: 429 for a while, even with
    // the right one (last: this address stays blocked for a minute).
    let mut n_wrong = 0;
    let blocked = loop {
        let a = get(api, "/api/node", &[("Authorization", &wrong)]);
        if a.status == 429 {
            break a;
        }
        assert_eq!(a.status, 401);
        n_wrong += 1;
        assert!(n_wrong <= 10, "never rate-limited");
    };
    assert!(
        blocked.error().contains("too many wrong API tokens"),
        "{}",
        blocked.body
    );
    assert!(blocked.header("retry-after").is_some());
    assert_eq!(get(api, "/api/node", &auth).status, 429);

    // The failures were logged at debug, with the address.
    let log = std::fs::read_to_string(&d.log).unwrap();
    assert!(
        log.lines().any(|l| l.contains("-> 401")
            && l.contains("wrong API token")
            && l.contains("(from 127.0.0.1)")),
        "{}",
        d.log_tail(20)
    );
    let status = d.terminate().expect("stopped");
    assert!(status.success(), "{status}");

    // Restarted: the same token (never replaced).
    d.restart();
    assert_eq!(token_of(&d), token);
    assert_private(&token_path);
    d.terminate();
}

#[test]
fn loopback_needs_no_token_but_still_checks_the_host() {
    let tmp = TempDir::new("control-security-lo");
    let mut d = DaemonProc::start(tmp.path(), "open", "127.0.2.2", &["--no-overlay"]);
    let api = d.api.clone();
    let api = api.as_str();
    // The token is made anyway (for a later move off loopback), privately.
    assert_private(&d.state_dir.join("api.token"));
    token_of(&d);
    assert_eq!(get(api, "/api/node", &[]).status, 200);
    assert_eq!(get(api, "/api/node", &[("Host", "localhost")]).status, 200);
    let a = get(api, "/api/node", &[("Host", "evil.example:7441")]);
    assert_eq!(a.status, 421, "{}", a.body);
    let a = request(
        api,
        "POST",
        "/api/shutdown",
        &[("Origin", "http://evil.example:7441")],
        b"",
    );
    assert_eq!(a.status, 403);
    // A login link just leads to the page.
    let a = get(api, "/?token=whatever", &[]);
    assert_eq!(a.status, 303);
    assert!(a.header("set-cookie").is_none());
    // The CLI works with no token at all.
    let (code, _, err) = cli(api, &["ls"], &[], &tmp.join("cli-home"));
    assert_eq!(code, 0, "{err}");
    d.terminate();
}

#[test]
fn allowed_host_names_and_a_damaged_token_file() {
    let tmp = TempDir::new("control-security-hosts");
    let mut d = DaemonProc::start_with_env(
        tmp.path(),
        "named",
        "127.0.2.3",
        &["--no-overlay", "--api-allowed-hosts", "pi.lan"],
        &[("PEERLET_API_TOKEN_REQUIRED", "true")],
    );
    let api = d.api.clone();
    let api = api.as_str();
    let bearer = format!("Bearer {}", token_of(&d));
    for host in ["pi.lan", "PI.lan:7441", "pi.lan."] {
        let a = get(
            api,
            "/api/node",
            &[("Host", host), ("Authorization", &bearer)],
        );
        assert_eq!(a.status, 200, "{host}: {}", a.body);
        // Listed names need the token like everything else.
        assert_eq!(
            get(api, "/api/node", &[("Host", host)]).status,
            401,
            "{host}"
        );
    }
    let a = get(
        api,
        "/api/node",
        &[("Host", "nas.lan"), ("Authorization", &bearer)],
    );
    assert_eq!(a.status, 421);
    d.terminate();

    // A damaged token file stops the start, naming the file; it is kept.
    let token_path = d.state_dir.join("api.token");
    std::fs::write(&token_path, "garbage\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_peerlet"))
        .env("PEERLET_DHT_BOOTSTRAP", "")
        .arg("daemon")
        .args([
            "--listen",
            "127.0.2.3:0",
            "--api",
            "127.0.0.1:0",
            "--no-lan-discovery",
            "--no-overlay",
        ])
        .arg("--download-dir")
        .arg(&d.download_dir)
        .arg("--state-dir")
        .arg(&d.state_dir)
        .env("PEERLET_CONFIG", "/dev/null")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon started with a damaged token file");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{} is damaged", token_path.display())),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&token_path).unwrap(), "garbage\n");
}
