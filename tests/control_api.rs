//! The control API against a fake engine: every endpoint through the real
//! client, hostile requests over raw sockets, and the CLI subcommands run as
//! a separate process. Loopback only, port 0, every wait bounded.

mod common;

use common::fake_engine::{self, client, Log};
use common::{field, write_random_file, TempDir};
use crossbeam_channel::{bounded, Receiver};
use peerlet::cli::client::ClientError;
use peerlet::control::server::{self, Config, ControlServer};
use peerlet::json::{self, Json};
use peerlet::metainfo::{InfoHash, Magnet, Torrent};
use peerlet::net::api::{
    AddResult, AddSource, ApiError, Command, EngineHandle, FileStatus, NodeStatus, PeerStatus,
    SourceStats, TorrentDetail, TorrentState, TorrentStatus, TrackerInfo,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const ALPHA: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";
const BETA: &str = "c12f0000000000000000000000000000000000b0";
/// Completes after a few status polls (for `get`).
const GAMMA: &str = "dddddddddddddddddddddddddddddddddddddddd";
/// Never completes.
const STUCK: &str = "ffffffffffffffffffffffffffffffffffffffff";
/// The engine holds the reply and never answers.
const SLOW: &str = "5555555555555555555555555555555555555555";
/// The engine answers with an internal error.
const BROKEN: &str = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";

fn hash(h: &str) -> InfoHash {
    InfoHash::parse(h).unwrap()
}

fn status(h: &str, name: &str) -> TorrentStatus {
    TorrentStatus {
        info_hash: hash(h),
        name: name.into(),
        state: TorrentState::Downloading,
        error: None,
        dir: "/srv/data".into(),
        total_size: 4 << 20,
        have_bytes: 2 << 20,
        pieces: 4,
        pieces_have: 2,
        download_rate: 1536,
        upload_rate: 512,
        downloaded: 2 << 20,
        uploaded: 1 << 20,
        peers: 3,
        hash_failures: 1,
        pieces_downloaded: 2,
        pieces_resumed: 0,
        download_limit: 0,
        upload_limit: 0,
        tracker: None,
        swarm_seeders: Some(3),
        swarm_leechers: Some(9),
    }
}

fn detail(s: TorrentStatus) -> TorrentDetail {
    TorrentDetail {
        magnet: format!("magnet:?xt=urn:btih:{}", s.info_hash),
        status: s,
        piece_length: 1 << 20,
        private: false,
        peers: vec![PeerStatus {
            addr: "127.0.0.1:6881".into(),
            source: "manual",
            client: "peerlet 0.1.0".into(),
            download_rate: 1536,
            upload_rate: 0,
            downloaded: 2 << 20,
            uploaded: 0,
            progress: 1.0,
            flags: "DI".into(),
        }],
        files: vec![FileStatus {
            path: "dir/file.bin".into(),
            size: 4 << 20,
            have_bytes: 2 << 20,
        }],
        trackers: vec![TrackerInfo {
            url: "udp://tracker.example:6969/announce".into(),
            tier: 0,
            last_result: "ok: 12 peers".into(),
            next_announce_secs: Some(1800),
            seeders: Some(3),
            leechers: Some(9),
            downloaded: Some(41),
        }],
        sources: vec![SourceStats {
            source: "tracker",
            known: 12,
            connected: 1,
            downloaded: 2 << 20,
            uploaded: 0,
        }],
    }
}

/// The fake engine: canned answers, some errors, one torrent that
/// progresses as it is polled.
fn engine_loop(rx: Receiver<Command>, log: Log) {
    let mut torrents = vec![status(ALPHA, "alpha"), {
        let mut b = status(BETA, "beta");
        b.state = TorrentState::Error;
        b.error = Some("disk full: No space left on device".into());
        b
    }];
    let mut held = Vec::new();
    let mut gamma_polls = 0u32;
    let note = |s: String| log.lock().unwrap().push(s);
    let find =
        |torrents: &[TorrentStatus], h: InfoHash| torrents.iter().position(|t| t.info_hash == h);
    let missing = |h: InfoHash| ApiError::NotFound(format!("no torrent with info-hash {h}"));
    for cmd in rx {
        match cmd {
            Command::Node { reply } => {
                let _ = reply.send(Ok(NodeStatus {
                    torrents: torrents.len() as u32,
                    peers: 3,
                    download_rate: 1536,
                    upload_rate: 512,
                    upload_limit: 4096,
                    bytes_in_flight: 1 << 20,
                    uptime_secs: 3725,
                    ..fake_engine::node_status("0123456789abcdef0123456789abcdef01234567")
                }));
            }
            Command::List { reply } => {
                let _ = reply.send(Ok(torrents.clone()));
            }
            Command::Status { info_hash, reply } => {
                let h = info_hash.to_hex();
                if h == SLOW {
                    held.push(reply);
                    continue;
                }
                if h == BROKEN {
                    let _ = reply.send(Err(ApiError::Internal("the engine fell over".into())));
                    continue;
                }
                let Some(i) = find(&torrents, info_hash) else {
                    let _ = reply.send(Err(missing(info_hash)));
                    continue;
                };
                if h == GAMMA {
                    gamma_polls += 1;
                    let t = &mut torrents[i];
                    t.pieces = 4;
                    t.pieces_have = gamma_polls.min(4);
                    t.have_bytes = u64::from(t.pieces_have) << 20;
                    t.state = if t.pieces_have == 4 {
                        TorrentState::Seeding
                    } else {
                        TorrentState::Downloading
                    };
                    t.error = (gamma_polls <= 2).then(|| "tracker unreachable".to_string());
                }
                let _ = reply.send(Ok(detail(torrents[i].clone())));
            }
            Command::Add {
                source,
                dir,
                peers,
                paused,
                reply,
            } => {
                // The directory the data goes to (its anchor aside).
                let dir = dir.map(|d| d.dir().to_path_buf());
                let parsed = match &source {
                    AddSource::Torrent(bytes) => Torrent::from_bytes(bytes)
                        .map(|t| (t.info_hash, t.name.clone()))
                        .map_err(|e| ApiError::BadRequest(e.to_string())),
                    AddSource::Magnet(m) => Magnet::parse(m)
                        .map(|m| {
                            (
                                m.info_hash,
                                m.name.clone().unwrap_or_else(|| m.info_hash.to_hex()),
                            )
                        })
                        .map_err(|e| ApiError::BadRequest(e.to_string())),
                };
                let kind = if matches!(source, AddSource::Torrent(_)) {
                    "torrent"
                } else {
                    "magnet"
                };
                note(format!(
                    "add {kind} dir={dir:?} peers={peers:?} paused={paused}"
                ));
                let res = parsed.map(|(info_hash, name)| {
                    let added = find(&torrents, info_hash).is_none();
                    if added {
                        let mut t = status(&info_hash.to_hex(), &name);
                        if let Some(d) = dir {
                            t.dir = d;
                        }
                        torrents.push(t);
                    }
                    AddResult {
                        info_hash,
                        name,
                        added,
                    }
                });
                let _ = reply.send(res);
            }
            Command::Remove {
                info_hash,
                delete_data,
                reply,
            } => {
                note(format!("remove {info_hash} delete_data={delete_data}"));
                let res = find(&torrents, info_hash)
                    .map(|i| drop(torrents.remove(i)))
                    .ok_or_else(|| missing(info_hash));
                let _ = reply.send(res);
            }
            Command::Pause { info_hash, reply } => {
                note(format!("pause {info_hash}"));
                let _ = reply.send(
                    find(&torrents, info_hash)
                        .map(|_| ())
                        .ok_or_else(|| missing(info_hash)),
                );
            }
            Command::Resume { info_hash, reply } => {
                note(format!("resume {info_hash}"));
                let _ = reply.send(
                    find(&torrents, info_hash)
                        .map(|_| ())
                        .ok_or_else(|| missing(info_hash)),
                );
            }
            Command::AddPeers {
                info_hash,
                peers,
                reply,
            } => {
                note(format!("peers {info_hash} {peers:?}"));
                let _ = reply.send(
                    find(&torrents, info_hash)
                        .map(|_| ())
                        .ok_or_else(|| missing(info_hash)),
                );
            }
            Command::SetLimits {
                info_hash,
                download,
                upload,
                reply,
            } => {
                note(format!("limits {info_hash} {download:?} {upload:?}"));
                let _ = reply.send(
                    find(&torrents, info_hash)
                        .map(|_| ())
                        .ok_or_else(|| missing(info_hash)),
                );
            }
            Command::Shutdown { reply } => {
                note("shutdown".into());
                let _ = reply.send(Ok(()));
            }
            // Reloading is tested in tests/config.rs.
            Command::Reconfigure { reply, .. } => {
                let _ = reply.send(Ok(()));
            }
            // A version that needs escaping in a label value.
            Command::Metrics { reply } => {
                note("metrics".into());
                let _ = reply.send(Ok(peerlet::net::api::MetricsSnapshot {
                    version: "0.1.0 \"x\"\\y".into(),
                    downloaded_bytes: 5 << 20,
                    torrents: vec![("downloading", 1), ("error", 1)],
                    ..Default::default()
                }));
            }
            // The overlay's commands are tested in tests/overlay_cli.rs.
            Command::Search { .. }
            | Command::SearchResults { .. }
            | Command::Nodes { .. }
            | Command::Dht { .. }
            | Command::Bans { .. } => {}
        }
    }
}

fn test_config() -> Config {
    Config {
        head_timeout: Duration::from_secs(1),
        io_timeout: Duration::from_secs(1),
        engine_timeout: Duration::from_secs(1),
        // Large bodies are tested here; tests/api_limits.rs tests the share.
        memory: 64 << 20,
        // Any `dir` (the engine is a fake); tests/control_security.rs
        // checks that a daemon keeps it in its download directory.
        dirs: vec!["/".into()],
        ..Config::default()
    }
}

fn start(config: Config) -> (ControlServer, Log) {
    fake_engine::serve(config, engine_loop)
}

/// Sends raw bytes, returns (status, parsed JSON body); status 0 when the
/// server closed without answering.
fn raw(addr: SocketAddr, request: &[u8]) -> (u16, Json) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(request);
    read_answer(&mut s)
}

fn read_answer(s: &mut TcpStream) -> (u16, Json) {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return (0, Json::Null);
    };
    assert!(
        head.contains("\r\nContent-Type: application/json\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
    let status = head[9..12].parse().unwrap();
    (status, json::parse(body).unwrap_or(Json::Null))
}

fn error_message(j: &Json) -> String {
    j.get("error")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string()
}

fn api_err(r: Result<Json, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Api { status, message }) => (status, message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[test]
fn every_endpoint_through_the_client() {
    let (server, log) = start(test_config());
    let c = client(&server);

    let node = c.get("/api/node").unwrap();
    assert_eq!(node.get("version").and_then(Json::as_str), Some("0.1.0"));
    assert_eq!(node.get("uptime_secs").and_then(Json::as_u64), Some(3725));

    let list = c.get("/api/torrents").unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].get("info_hash").and_then(Json::as_str), Some(ALPHA));
    assert_eq!(
        list[1].get("error").and_then(Json::as_str),
        Some("disk full: No space left on device")
    );
    assert!(list[0].get("error").unwrap().is_null());

    let d = c.get(&format!("/api/torrents/{ALPHA}")).unwrap();
    assert_eq!(d.get("name").and_then(Json::as_str), Some("alpha"));
    assert_eq!(
        d.get("peer_list")
            .and_then(Json::as_array)
            .map(<[Json]>::len),
        Some(1)
    );
    assert_eq!(
        d.get("files").and_then(Json::as_array).map(<[Json]>::len),
        Some(1)
    );
    // Upper-case hex and a trailing slash are fine too.
    assert!(c
        .get(&format!("/api/torrents/{}/", ALPHA.to_uppercase()))
        .is_ok());

    // Add a magnet: 201, then the same again: 200 with added=false.
    let magnet = format!("magnet:?xt=urn:btih:{GAMMA}&dn=gamma");
    let path =
        "/api/torrents?dir=%2Fsrv%2Fmy%20data&peer=127.0.0.1%3A6881&peer=[::1]:6881&paused=1";
    let r = c
        .exchange("POST", path, Some(("text/plain", magnet.as_bytes())))
        .unwrap();
    assert_eq!(r.status, 201);
    let j = json::parse(std::str::from_utf8(&r.body).unwrap()).unwrap();
    assert_eq!(j.get("info_hash").and_then(Json::as_str), Some(GAMMA));
    assert_eq!(j.get("name").and_then(Json::as_str), Some("gamma"));
    assert_eq!(j.get("added").and_then(Json::as_bool), Some(true));
    assert!(log.lock().unwrap().contains(
        &"add magnet dir=Some(\"/srv/my data\") peers=[\"127.0.0.1:6881\", \"[::1]:6881\"] paused=true".to_string()
    ));
    let r = c
        .exchange(
            "POST",
            "/api/torrents",
            Some(("text/plain", magnet.as_bytes())),
        )
        .unwrap();
    assert_eq!(r.status, 200);
    // Without a Content-Type the body is sniffed.
    let r = c
        .exchange("POST", "/api/torrents", Some(("", magnet.as_bytes())))
        .unwrap();
    assert_eq!(r.status, 200);

    // Errors from the engine keep their class and message.
    let (st, msg) = api_err(c.post(
        "/api/torrents",
        Some(("text/plain", b"magnet:?xt=urn:btih:nothex")),
    ));
    assert_eq!(st, 400);
    assert!(msg.contains("neither 40 hex digits"), "{msg}");
    let (st, msg) = api_err(c.post(
        "/api/torrents",
        Some(("application/x-bittorrent", b"d4:infoi1ee")),
    ));
    assert_eq!(st, 400, "{msg}");
    let missing = "0000000000000000000000000000000000000000";
    let (st, msg) = api_err(c.get(&format!("/api/torrents/{missing}")));
    assert_eq!(
        (st, msg.as_str()),
        (404, format!("no torrent with info-hash {missing}").as_str())
    );
    assert_eq!(
        api_err(c.get(&format!("/api/torrents/{BROKEN}"))),
        (500, "the engine fell over".into())
    );

    // Actions.
    assert_eq!(
        c.post(&format!("/api/torrents/{ALPHA}/pause"), None)
            .unwrap()
            .get("ok"),
        Some(&Json::Bool(true))
    );
    c.post(&format!("/api/torrents/{ALPHA}/resume"), None)
        .unwrap();
    c.post(
        &format!("/api/torrents/{ALPHA}/peers?peer=10.0.0.1%3A51413"),
        None,
    )
    .unwrap();
    assert_eq!(
        api_err(c.post(&format!("/api/torrents/{ALPHA}/peers"), None)).0,
        400
    );
    assert_eq!(
        api_err(c.post(&format!("/api/torrents/{ALPHA}/peers?peer=nonsense"), None)).0,
        400
    );
    assert_eq!(
        api_err(c.post(&format!("/api/torrents/{missing}/pause"), None)).0,
        404
    );
    c.delete(&format!("/api/torrents/{ALPHA}?delete_data=1"))
        .unwrap();
    assert_eq!(api_err(c.delete(&format!("/api/torrents/{ALPHA}"))).0, 404);
    c.post("/api/shutdown", None).unwrap();
    let log = log.lock().unwrap().clone();
    for want in [
        format!("pause {ALPHA}"),
        format!("resume {ALPHA}"),
        format!("peers {ALPHA} [\"10.0.0.1:51413\"]"),
        format!("remove {ALPHA} delete_data=true"),
        format!("remove {ALPHA} delete_data=false"),
        "shutdown".to_string(),
    ] {
        assert!(log.contains(&want), "{want} not in {log:?}");
    }

    // Routing and parameter errors.
    let (st, msg) = api_err(c.get("/api/nothing"));
    assert_eq!(st, 404, "{msg}");
    // `/` is the web page (tests/web.rs); other paths outside /api are not found.
    assert_eq!(api_err(c.get("/index.html")).0, 404);
    let r = c.exchange("PUT", "/api/torrents", None).unwrap();
    assert_eq!(r.status, 405);
    assert!(r.headers.contains(&("allow".into(), "GET, POST".into())));
    assert_eq!(api_err(c.delete("/api/node")).0, 405);
    assert_eq!(api_err(c.get("/api/shutdown")).0, 405);
    let (st, msg) = api_err(c.get("/api/torrents/xyz"));
    assert_eq!(st, 400);
    assert!(msg.contains("not an info-hash"), "{msg}");
    let (st, msg) = api_err(c.delete(&format!("/api/torrents/{BETA}?delete-data=1")));
    assert_eq!(
        (st, msg.as_str()),
        (400, "unknown query parameter 'delete-data'")
    );
    assert_eq!(
        api_err(c.delete(&format!("/api/torrents/{BETA}?delete_data=maybe"))).0,
        400
    );
    assert_eq!(
        api_err(c.post(
            "/api/torrents?dir=relative/path",
            Some(("text/plain", magnet.as_bytes()))
        ))
        .0,
        400
    );
    assert_eq!(
        api_err(c.post(
            "/api/torrents?dir=%zz",
            Some(("text/plain", magnet.as_bytes()))
        ))
        .0,
        400
    );
    assert_eq!(
        api_err(c.post("/api/torrents", Some(("text/plain", b"")))).0,
        400
    );
    let (st, msg) = api_err(c.post("/api/torrents", Some(("image/png", b"x"))));
    assert_eq!(st, 415, "{msg}");

    let t = Instant::now();
    server.shutdown();
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[test]
fn hostile_requests_get_clear_errors() {
    let (server, _log) = start(test_config());
    let addr = server.local_addr();
    let get = |extra: &str| format!("GET /api/node HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n");

    assert_eq!(raw(addr, get("").as_bytes()).0, 200);
    // HTTP/1.0, bare LF line ends, leading blank line: still served.
    assert_eq!(
        raw(addr, b"GET /api/node HTTP/1.0\nHost: localhost\n\n").0,
        200
    );
    assert_eq!(
        raw(
            addr,
            b"\r\nGET /api/node HTTP/1.1\r\nHost: [::1]:7441\r\n\r\n"
        )
        .0,
        200
    );

    // DNS rebinding: a Host that is a name other than localhost.
    for host in [
        "evil.example",
        "evil.example:7441",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
    ] {
        let (st, j) = raw(
            addr,
            format!("GET /api/node HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
        );
        assert_eq!(st, 421, "{host}");
        assert!(error_message(&j).contains("DNS rebinding"), "{j}");
    }
    for ok in [
        "localhost",
        "localhost.:7441",
        "LOCALHOST",
        "127.0.0.1:7441",
    ] {
        assert_eq!(
            raw(
                addr,
                format!("GET /api/node HTTP/1.1\r\nHost: {ok}\r\n\r\n").as_bytes()
            )
            .0,
            200,
            "{ok}"
        );
    }
    assert_eq!(raw(addr, b"GET /api/node HTTP/1.1\r\n\r\n").0, 400);
    assert_eq!(
        raw(
            addr,
            b"GET /api/node HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n"
        )
        .0,
        400
    );
    // Cross-origin requests from a browser (form posts, fetch).
    let post = |origin: &str| {
        format!("POST /api/shutdown HTTP/1.1\r\nHost: 127.0.0.1:7441\r\nOrigin: {origin}\r\nContent-Length: 0\r\n\r\n")
    };
    assert_eq!(raw(addr, post("http://evil.example").as_bytes()).0, 403);
    assert_eq!(raw(addr, post("null").as_bytes()).0, 403);
    assert_eq!(raw(addr, post("http://127.0.0.1:8080").as_bytes()).0, 403);
    assert_eq!(raw(addr, post("http://127.0.0.1:7441").as_bytes()).0, 200);
    assert_eq!(
        raw(addr, get("Sec-Fetch-Site: cross-site\r\n").as_bytes()).0,
        403
    );

    // Malformed requests.
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET /api/node\r\n\r\n",
        b"GET  /api/node HTTP/1.1\r\n\r\n",
        b"GET http://127.0.0.1/api/node HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"GET /api/node HTTP/1.1\r\nHost: 127.0.0.1\r\n folded\r\n\r\n",
        b"GET /api/node HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon\r\n\r\n",
    ] {
        let (st, j) = raw(addr, garbage);
        assert_eq!(st, 400, "{:?} {j}", String::from_utf8_lossy(garbage));
        assert!(!error_message(&j).is_empty());
    }
    assert_eq!(
        raw(addr, b"GET /api/node HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n").0,
        505
    );
    // Cut short: the client half-closes in the middle of the head.
    {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /api/node HTTP/1.1\r\nHost: 127").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(read_answer(&mut s).0, 400);
    }

    // Oversized head: 431 without reading more than the cap.
    let big = get(&format!("X-Filler: {}\r\n", "a".repeat(20_000)));
    assert_eq!(raw(addr, big.as_bytes()).0, 431);
    let many = get(&"X-A: b\r\n".repeat(100));
    assert_eq!(raw(addr, many.as_bytes()).0, 431);
    // Bodies: too large, chunked, length missing, bad length.
    let (st, j) = raw(
        addr,
        b"POST /api/torrents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000000000\r\n\r\n",
    );
    assert_eq!(st, 413);
    assert!(error_message(&j).contains("at most 10000000"), "{j}");
    assert_eq!(
        raw(addr, b"POST /api/torrents HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            .0,
        411
    );
    assert_eq!(
        raw(
            addr,
            b"POST /api/torrents HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )
        .0,
        411
    );
    assert_eq!(
        raw(
            addr,
            b"POST /api/torrents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: x\r\n\r\n"
        )
        .0,
        400
    );
    // A body that never fully arrives: 400 when the client gives up.
    {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(
            b"POST /api/torrents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 50\r\n\r\nmagnet:",
        )
        .unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(read_answer(&mut s).0, 400);
    }
    // A connection that sends nothing and closes gets no answer, and no harm done.
    drop(TcpStream::connect(addr).unwrap());
    assert_eq!(raw(addr, get("").as_bytes()).0, 200);
    // Expect: 100-continue (curl, large uploads) gets the interim answer first.
    {
        let magnet = format!("magnet:?xt=urn:btih:{GAMMA}");
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = format!(
            "POST /api/torrents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            magnet.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        let mut interim = [0u8; 25];
        s.read_exact(&mut interim).unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        s.write_all(magnet.as_bytes()).unwrap();
        assert_eq!(read_answer(&mut s).0, 201);
    }
    // A large valid body within the cap is read completely (and refused by the engine).
    let body = vec![b'x'; 5_000_000];
    let c = client(&server);
    assert_eq!(
        api_err(c.post("/api/torrents", Some(("application/x-bittorrent", &body)))).0,
        400
    );
    // Over the cap through the client: the 413 still reaches it.
    let body = vec![b'x'; 10_000_001];
    let (st, _) = api_err(c.post("/api/torrents", Some(("application/x-bittorrent", &body))));
    assert_eq!(st, 413);
    server.shutdown();
}

#[test]
fn slow_clients_time_out_without_blocking_others() {
    let (server, _log) = start(test_config());
    let addr = server.local_addr();
    let t0 = Instant::now();
    // Slowloris: a partial head, then a byte now and then, within the per-read timeout.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"GET /api/node HTTP/1.1\r\nHo").unwrap();
    let mut silent = TcpStream::connect(addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Others are served meanwhile.
    let c = client(&server);
    for _ in 0..5 {
        c.get("/api/node").unwrap();
        let _ = slow.write_all(b"s");
        thread::sleep(Duration::from_millis(100));
    }
    // The head deadline (1 s here) ends both, with 408.
    assert_eq!(read_answer(&mut slow).0, 408);
    assert_eq!(read_answer(&mut silent).0, 408);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    c.get("/api/node").unwrap();
    server.shutdown();
}

#[test]
fn connections_over_the_limit_get_503() {
    let (server, _log) = start(Config {
        max_connections: 2,
        // Nobody is old enough to be evicted.
        eviction_grace: Duration::from_secs(60),
        ..test_config()
    });
    let addr = server.local_addr();
    // Two, and two more beyond the cap while nobody is old enough to evict.
    let stalled: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // Give the accept thread time to hand them to handlers.
    thread::sleep(Duration::from_millis(200));
    let (st, j) = raw(addr, b"GET /api/node HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(st, 503);
    assert!(error_message(&j).contains("too many"), "{j}");
    drop(stalled);
    // The handlers notice the close at once; then there is room again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (st, _) = raw(addr, b"GET /api/node HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        if st == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still {st}");
        thread::sleep(Duration::from_millis(50));
    }
    server.shutdown();
}

#[test]
fn a_new_connection_evicts_the_oldest_silent_one() {
    let (server, _log) = start(Config {
        max_connections: 2,
        eviction_grace: Duration::from_millis(100),
        ..test_config()
    });
    let addr = server.local_addr();
    let mut stalled: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    thread::sleep(Duration::from_millis(300));
    // Served: the oldest silent connection made room.
    let (st, _) = raw(addr, b"GET /api/node HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(st, 200);
    // The evicted one is closed without an answer; the other still waits.
    stalled[0]
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(matches!(stalled[0].read(&mut buf), Ok(0) | Err(_)));
    stalled[1]
        .write_all(b"GET /api/node HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    stalled[1]
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(read_answer(&mut stalled[1]).0, 200);
    server.shutdown();
}

#[test]
fn an_engine_that_does_not_answer_gives_503() {
    let (server, _log) = start(test_config());
    let c = client(&server);
    let t = Instant::now();
    let (st, msg) = api_err(c.get(&format!("/api/torrents/{SLOW}")));
    assert_eq!(st, 503);
    assert!(msg.contains("did not answer"), "{msg}");
    assert!(t.elapsed() < Duration::from_secs(4));
    // A dead engine (its inbox gone): 503 at once.
    let (tx, rx) = bounded::<Command>(1);
    drop(rx);
    let dead = server::spawn_with(
        "127.0.0.1:0".parse().unwrap(),
        EngineHandle {
            commands: tx,
            wake: Arc::new(|| {}),
        },
        test_config(),
    )
    .unwrap();
    let (st, _) = api_err(client(&dead).get("/api/node"));
    assert_eq!(st, 503);
    dead.shutdown();
    server.shutdown();
}

// ---- the command-line client, as a separate process ----

/// Runs `peerlet ARGS` with a time limit; returns (exit code, stdout, stderr).
fn peerlet(args: &[&str]) -> (i32, String, String) {
    peerlet_in(args, None)
}

fn peerlet_in(args: &[&str], cwd: Option<&std::path::Path>) -> (i32, String, String) {
    common::run_bounded(args, cwd)
}

#[test]
fn cli_against_the_fake_daemon() {
    let (server, log) = start(test_config());
    let api = server.local_addr().to_string();
    let api = api.as_str();

    let (code, out, err) = peerlet(&["ls", "--api", api]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("HASH"), "{out}");
    assert!(lines[1].starts_with("c12fe1c0  downloading"), "{out}");
    assert!(lines[1].ends_with("alpha"), "{out}");
    assert!(lines[2].starts_with("c12f0000  error"), "{out}");
    assert_eq!(
        lines[3].trim(),
        "error: disk full: No space left on device",
        "{out}"
    );
    let (code, out, _) = peerlet(&["ls", "--json", "--api", api]);
    assert_eq!(code, 0);
    assert_eq!(
        json::parse(&out).unwrap().as_array().map(<[Json]>::len),
        Some(2)
    );

    let (code, out, _) = peerlet(&["status", "--api", api]);
    assert_eq!(code, 0);
    assert_eq!(field(&out, "version").as_deref(), Some("0.1.0"));
    assert_eq!(field(&out, "uptime").as_deref(), Some("1h02m"));
    let (code, out, _) = peerlet(&["status", "--json", "--api", api]);
    assert_eq!(code, 0);
    assert!(json::parse(&out).unwrap().get("peer_id").is_some());
    // A unique prefix, a full hash, an ambiguous prefix, an unknown one.
    let (code, out, err) = peerlet(&["status", "c12fe", "--api", api]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(field(&out, "info_hash").as_deref(), Some(ALPHA));
    assert_eq!(
        field(&out, "progress").as_deref(),
        Some("50.0% (2 of 4 pieces, 2.0 MiB)")
    );
    assert!(out.contains("127.0.0.1:6881"), "{out}");
    assert!(out.contains("dir/file.bin"), "{out}");
    assert!(
        out.contains(
            "[0] udp://tracker.example:6969/announce  ok: 12 peers, 3 seeders, 9 leechers, 41 downloads, next in 30m"
        ),
        "{out}"
    );
    assert!(out.contains("tracker     12 known    1 connected"), "{out}");
    let (code, out, _) = peerlet(&["status", BETA, "--api", api]);
    assert_eq!(code, 0);
    assert_eq!(
        field(&out, "error").as_deref(),
        Some("disk full: No space left on device")
    );
    let (code, _, err) = peerlet(&["status", "c12", "--api", api]);
    assert_eq!(code, 2);
    assert!(err.contains("not an info-hash"), "{err}");
    let (code, _, err) = peerlet(&["status", "C12F", "--api", api]);
    assert_eq!(code, 2);
    assert!(
        err.contains("'C12F' matches 2 torrents; give more digits"),
        "{err}"
    );
    let (code, _, err) = peerlet(&["status", "c1ab", "--api", api]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no torrent's info-hash starts with 'c1ab'"),
        "{err}"
    );
    let (code, out, err) = peerlet(&["status", "C12F0", "--api", api]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(field(&out, "name").as_deref(), Some("beta"));
    // The daemon failing: exit 1 with its message.
    let (code, _, err) = peerlet(&["status", BROKEN, "--api", api]);
    assert_eq!(code, 1);
    assert_eq!(err.trim(), "peerlet: the engine fell over");

    // add: a .torrent made by `peerlet create`, with a relative --dir.
    let tmp = TempDir::new("control-add");
    write_random_file(&tmp.join("payload.bin"), 100_000, 7);
    let torrent = tmp.join("payload.torrent");
    let (code, _, err) = peerlet(&[
        "create",
        tmp.join("payload.bin").to_str().unwrap(),
        "-o",
        torrent.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let t = Torrent::from_bytes(&std::fs::read(&torrent).unwrap()).unwrap();
    let (code, out, err) = peerlet_in(
        &[
            "add",
            "payload.torrent",
            "--dir",
            "downloads",
            "--peer",
            "127.0.0.1:1",
            "--api",
            api,
        ],
        Some(tmp.path()),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("added payload.bin ({})", t.info_hash));
    let want_dir: PathBuf = tmp.join("downloads");
    let want = format!("add torrent dir=Some({want_dir:?}) peers=[\"127.0.0.1:1\"] paused=false");
    assert!(
        log.lock().unwrap().contains(&want),
        "{want} not in {:?}",
        log.lock().unwrap()
    );
    let (code, out, _) = peerlet_in(
        &[
            "add",
            "payload.torrent",
            "--peer",
            "127.0.0.1:2",
            "--api",
            api,
        ],
        Some(tmp.path()),
    );
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!(
            "already present: payload.bin ({}), peers added",
            t.info_hash
        )
    );
    // Input errors are caught before the daemon is asked.
    let (code, _, err) = peerlet(&["add", "/nonexistent.torrent", "--api", api]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read torrent"), "{err}");
    let (code, _, err) = peerlet(&["add", "magnet:?xt=urn:btih:nothex", "--api", api]);
    assert_eq!(code, 2);
    assert!(err.contains("neither 40 hex digits"), "{err}");
    let (code, _, err) = peerlet(&[
        "add",
        torrent.to_str().unwrap(),
        "--peer",
        "nope",
        "--api",
        api,
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("not host:port"), "{err}");

    // rm / pause / resume / stop.
    let (code, out, _) = peerlet(&["pause", ALPHA, "--api", api]);
    assert_eq!((code, out.trim()), (0, format!("paused {ALPHA}").as_str()));
    let (code, _, _) = peerlet(&["resume", "c12fe1", "--api", api]);
    assert_eq!(code, 0);
    let (code, _, _) = peerlet(&["rm", ALPHA, "--delete-data", "--api", api]);
    assert_eq!(code, 0);
    let (code, _, err) = peerlet(&["rm", ALPHA, "--api", api]);
    assert_eq!(code, 2);
    assert!(err.contains("no torrent with info-hash"), "{err}");
    let (code, out, _) = peerlet(&["stop", "--api", api]);
    assert_eq!(code, 0);
    assert!(out.contains("stopping"), "{out}");
    let log = log.lock().unwrap().clone();
    assert!(
        log.contains(&format!("remove {ALPHA} delete_data=true")),
        "{log:?}"
    );
    assert!(log.contains(&format!("resume {ALPHA}")), "{log:?}");
    assert!(log.contains(&"shutdown".to_string()), "{log:?}");
    server.shutdown();
}

#[test]
fn cli_get_waits_for_completion() {
    let (server, _log) = start(test_config());
    let api = server.local_addr().to_string();
    let magnet = format!("magnet:?xt=urn:btih:{GAMMA}&dn=gamma");
    let t = Instant::now();
    let (code, out, err) = peerlet(&["get", &magnet, "--timeout", "20", "--api", &api]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("added gamma ({GAMMA})")), "{out}");
    assert!(out.contains(&format!("complete: gamma ({GAMMA})")), "{out}");
    // The daemon's error is shown once, though it was reported twice.
    assert_eq!(err.matches("tracker unreachable").count(), 1, "{err}");
    // Plain progress lines (stderr is a pipe here).
    assert!(err.contains("gamma: 25.0%"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10));

    // Never completes: exit 1 when --timeout passes.
    let magnet = format!("magnet:?xt=urn:btih:{STUCK}&dn=stuck");
    let t = Instant::now();
    let (code, _, err) = peerlet(&["get", &magnet, "--timeout", "1", "--api", &api]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("timed out"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5));
    server.shutdown();
}

#[test]
fn cli_without_a_daemon() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let api = format!("127.0.0.1:{port}");
    for args in [
        vec!["ls"],
        vec!["status"],
        vec!["stop"],
        vec!["pause", ALPHA],
    ] {
        let mut args = args.clone();
        args.extend(["--api", &api]);
        let (code, out, err) = peerlet(&args);
        assert_eq!(code, 2, "{args:?}");
        assert!(out.is_empty());
        assert_eq!(
            err,
            format!("peerlet: no daemon answering on {api} — is 'peerlet daemon' running?\n")
        );
    }
    let (code, _, err) = peerlet(&["ls", "--api", "not an address"]);
    assert_eq!(code, 2);
    assert!(err.contains("expected host:port"), "{err}");
}

/// `GET /metrics`: Prometheus text from the engine's snapshot, under the
/// API's Host and method rules (parsed by a real parser in tests/metrics.rs).
#[test]
fn metrics_endpoint() {
    let (server, log) = start(test_config());
    let addr = server.local_addr();
    let get = |host: &str, method: &str| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let request = format!("{method} /metrics HTTP/1.1\r\nHost: {host}\r\n\r\n");
        s.write_all(request.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        peerlet::control::http::parse_response(&out).unwrap()
    };
    let r = get(&addr.to_string(), "GET");
    assert_eq!(r.status, 200);
    assert!(r.headers.contains(&(
        "content-type".into(),
        "text/plain; version=0.0.4; charset=utf-8".into()
    )));
    let text = String::from_utf8(r.body).unwrap();
    assert!(
        text.contains("peerlet_build_info{version=\"0.1.0 \\\"x\\\"\\\\y\"} 1\n"),
        "{text}"
    );
    assert!(text.contains(
        "# TYPE peerlet_downloaded_bytes_total counter\npeerlet_downloaded_bytes_total 5242880\n"
    ));
    assert!(text.contains("peerlet_torrents{state=\"error\"} 1\n"));
    assert_eq!(text.matches("# TYPE peerlet_torrents ").count(), 1);
    assert!(log.lock().unwrap().contains(&"metrics".to_string()));
    assert_eq!(get("rebind.example", "GET").status, 421);
    let r = get("localhost", "DELETE");
    assert_eq!(r.status, 405);
    assert!(r.headers.contains(&("allow".into(), "GET".into())));
}
