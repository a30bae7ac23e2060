//! The overlay's control endpoints (`/api/search`, `/api/search/ID`,
//! `/api/nodes`) and the subcommands that use them (`search`, `peers`,
//! `status`, `get`/`add` with a bare info-hash), against a fake engine:
//! these check the control side only. Loopback only, port 0, every wait
//! bounded.

mod common;

use common::fake_engine::{self, client, logged, Log};
use crossbeam_channel::Receiver;
use peerlet::cli::client::ClientError;
use peerlet::control::server::{Config, ControlServer};
use peerlet::json::{self, Json};
use peerlet::metainfo::{InfoHash, Magnet};
use peerlet::net::api::{
    AddResult, AddSource, ApiError, Command, OverlayNode, OverlayStatus, SearchHit, SearchPage,
    SearchQuery, TorrentDetail, TorrentState, TorrentStatus,
};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const UBUNTU: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";
const DEBIAN: &str = "dddddddddddddddddddddddddddddddddddddddd";
const NODE_ID: &str = "0123456789abcdef0123456789abcdef01234567";

fn hash(h: &str) -> InfoHash {
    InfoHash::parse(h).unwrap()
}

fn hit(h: &str, name: &str, holders: usize) -> SearchHit {
    SearchHit {
        info_hash: hash(h),
        name: name.into(),
        size: 6 << 30,
        holders: (0..holders).map(|i| format!("10.0.0.{i}:6881")).collect(),
    }
}

/// One open search of the fake engine: what it asked for, how often it was polled.
struct FakeSearch {
    query: SearchQuery,
    polls: u32,
}

/// Canned answers. Searches by words: `ubuntu` finds one torrent on the
/// first poll, a second on the second (the first again, with more holders)
/// and is done on the third; `slow` never finishes and finds nothing;
/// anything else is done at once with nothing. A search by hash finds that
/// hash at once.
fn engine_loop(rx: Receiver<Command>, log: Log) {
    let note = |s: String| log.lock().unwrap().push(s);
    let mut searches: HashMap<u64, FakeSearch> = HashMap::new();
    let mut next_id = 7u64;
    for cmd in rx {
        match cmd {
            Command::Node { reply } => {
                let _ = reply.send(Ok(fake_engine::node_status(NODE_ID)));
            }
            Command::Search {
                query,
                timeout,
                reply,
            } => {
                note(format!("search {query:?} {}s", timeout.as_secs()));
                let id = next_id;
                next_id += 1;
                searches.insert(id, FakeSearch { query, polls: 0 });
                let _ = reply.send(Ok(id));
            }
            Command::SearchResults { id, reply } => {
                let Some(s) = searches.get_mut(&id) else {
                    let _ = reply.send(Err(ApiError::NotFound(format!("no search with id {id}"))));
                    continue;
                };
                s.polls += 1;
                let (results, done) = match &s.query {
                    SearchQuery::Hash(h) => (vec![hit(&h.to_hex(), "by-hash.iso", 2)], true),
                    SearchQuery::Words(w) if w == "ubuntu" => match s.polls {
                        1 => (vec![hit(UBUNTU, "ubuntu-24.04.iso", 1)], false),
                        n => (
                            vec![
                                hit(UBUNTU, "ubuntu-24.04.iso", 3),
                                hit(DEBIAN, "Ubuntu \u{1b}[2Jtricks.pdf", 1),
                            ],
                            n >= 3,
                        ),
                    },
                    SearchQuery::Words(w) if w == "slow" => (Vec::new(), false),
                    SearchQuery::Words(_) => (Vec::new(), true),
                };
                let _ = reply.send(Ok(SearchPage { id, results, done }));
            }
            Command::Nodes { reply } => {
                let _ = reply.send(Ok(overlay()));
            }
            Command::Add { source, reply, .. } => {
                let res = match &source {
                    AddSource::Magnet(m) => {
                        note(format!("add magnet {m}"));
                        Magnet::parse(m)
                            .map(|m| AddResult {
                                info_hash: m.info_hash,
                                name: m.info_hash.to_hex(),
                                added: true,
                            })
                            .map_err(|e| ApiError::BadRequest(e.to_string()))
                    }
                    AddSource::Torrent(_) => {
                        note("add torrent".into());
                        Err(ApiError::BadRequest("no torrents here".into()))
                    }
                };
                let _ = reply.send(res);
            }
            Command::Status { info_hash, reply } => {
                // Whatever was added is complete at once.
                let _ = reply.send(Ok(complete(info_hash)));
            }
            // Anything else: the reply is dropped (the server answers 503).
            _ => {}
        }
    }
}

fn overlay() -> OverlayStatus {
    OverlayStatus {
        node_id: NODE_ID.into(),
        public_key: "ab".repeat(32),
        udp: "0.0.0.0:6881".into(),
        external: Some("203.0.113.5:6881".into()),
        lan_beacon: None,
        capacity: 64,
        degree: 8,
        nodes: vec![
            OverlayNode {
                addr: "192.168.1.20:6881".into(),
                id: Some("fedcba9876543210fedcba9876543210fedcba98".into()),
                source: "beacon",
                tcp_port: 6881,
                last_seen_secs: Some(3),
                rtt_ms: Some(12),
                failures: 0,
                neighbour: true,
            },
            OverlayNode {
                addr: "198.51.100.7:6881".into(),
                id: None,
                source: "bootstrap",
                tcp_port: 0,
                last_seen_secs: None,
                rtt_ms: None,
                failures: 2,
                neighbour: false,
            },
        ],
        content_entries: 42,
        content_holders: 50,
        routes: 7,
        open_searches: 1,
        counters: vec![
            ("sent_ping".into(), 12),
            ("received_pong".into(), 11),
            ("searches_flooded".into(), 4),
        ],
    }
}

fn complete(info_hash: InfoHash) -> TorrentDetail {
    let status = TorrentStatus {
        info_hash,
        name: "by-hash.iso".into(),
        state: TorrentState::Seeding,
        error: None,
        dir: "/srv/data".into(),
        total_size: 1 << 20,
        have_bytes: 1 << 20,
        pieces: 1,
        pieces_have: 1,
        download_rate: 0,
        upload_rate: 0,
        downloaded: 1 << 20,
        uploaded: 0,
        peers: 1,
        hash_failures: 0,
        pieces_downloaded: 1,
        pieces_resumed: 0,
        download_limit: 0,
        upload_limit: 0,
        tracker: None,
        swarm_seeders: None,
        swarm_leechers: None,
    };
    TorrentDetail {
        magnet: format!("magnet:?xt=urn:btih:{info_hash}"),
        status,
        piece_length: 1 << 20,
        private: false,
        peers: Vec::new(),
        files: Vec::new(),
        trackers: Vec::new(),
        sources: Vec::new(),
    }
}

fn start() -> (ControlServer, Log) {
    let config = Config {
        head_timeout: Duration::from_secs(1),
        io_timeout: Duration::from_secs(1),
        engine_timeout: Duration::from_secs(1),
        ..Config::default()
    };
    fake_engine::serve(config, engine_loop)
}

fn api_err(r: Result<Json, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Api { status, message }) => (status, message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[test]
fn search_and_nodes_endpoints() {
    let (server, log) = start();
    let c = client(&server);

    let j = c.post("/api/search?q=+ubuntu+", None).unwrap();
    let id = j.get("id").and_then(Json::as_u64).unwrap();
    assert!(
        logged(&log, "search Words(\"ubuntu\") 10s"),
        "{:?}",
        log.lock().unwrap()
    );
    let page = c.get(&format!("/api/search/{id}")).unwrap();
    assert_eq!(page.get("id").and_then(Json::as_u64), Some(id));
    assert_eq!(page.get("done").and_then(Json::as_bool), Some(false));
    let results = page.get("results").and_then(Json::as_array).unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(
        results[0].get("info_hash").and_then(Json::as_str),
        Some(UBUNTU)
    );
    assert_eq!(
        results[0]
            .get("holders")
            .and_then(Json::as_array)
            .map(<[Json]>::len),
        Some(1)
    );

    // By hash (base32 too), with a timeout.
    c.post(
        "/api/search?hash=YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK&timeout=300",
        None,
    )
    .unwrap();
    assert!(
        logged(&log, &format!("search Hash(InfoHash({UBUNTU})) 300s")),
        "{:?}",
        log.lock().unwrap()
    );
    c.post("/api/search?q=ubuntu%2024.04&timeout=1", None)
        .unwrap();
    assert!(logged(&log, "search Words(\"ubuntu 24.04\") 1s"));

    // Bad requests never reach the engine.
    let before = log.lock().unwrap().len();
    for (target, want) in [
        ("/api/search", "nothing to search for"),
        ("/api/search?q=a&hash=" /* both */, "not both"),
        ("/api/search?q=", "empty"),
        ("/api/search?q=%20%20", "empty"),
        ("/api/search?q=...%20--", "no letter or digit"),
        ("/api/search?q=a%1B", "control characters"),
        ("/api/search?hash=c12f", "not an info-hash"),
        ("/api/search?q=a&timeout=0", "timeout=0"),
        ("/api/search?q=a&timeout=301", "timeout=301"),
        ("/api/search?q=a&timeout=soon", "timeout=soon"),
        ("/api/search?q=a&q=b", "given twice"),
        ("/api/search?q=a&dir=/x", "unknown query parameter 'dir'"),
    ] {
        let (status, message) = api_err(c.post(target, None));
        assert_eq!(status, 400, "{target}: {message}");
        assert!(message.contains(want), "{target}: {message}");
    }
    let long = format!("/api/search?q={}", "a".repeat(101));
    let (status, message) = api_err(c.post(&long, None));
    assert_eq!(status, 400);
    assert!(message.contains("at most 100"), "{message}");
    c.post(&format!("/api/search?q={}", "a".repeat(100)), None)
        .unwrap();
    assert_eq!(log.lock().unwrap().len(), before + 1);

    // Unknown, malformed ids; wrong methods.
    let (status, message) = api_err(c.get("/api/search/999"));
    assert_eq!((status, message.as_str()), (404, "no search with id 999"));
    let (status, message) = api_err(c.get("/api/search/abc"));
    assert_eq!(status, 400);
    assert!(message.contains("not a search id"), "{message}");
    assert_eq!(api_err(c.get("/api/search")).0, 405);
    assert_eq!(api_err(c.post(&format!("/api/search/{id}"), None)).0, 405);
    assert_eq!(api_err(c.post("/api/nodes", None)).0, 405);

    let nodes = c.get("/api/nodes").unwrap();
    assert_eq!(nodes, overlay().to_json());
    assert_eq!(nodes.get("degree").and_then(Json::as_u64), Some(8));
    assert_eq!(
        nodes.get("counters").and_then(|c| c.get("sent_ping")),
        Some(&Json::UInt(12))
    );
    let node = c.get("/api/node").unwrap();
    assert_eq!(node.get("node_id").and_then(Json::as_str), Some(NODE_ID));
    server.shutdown();
}

/// Runs `peerlet ARGS` with a time limit; returns (exit code, stdout, stderr).
fn peerlet(args: &[&str]) -> (i32, String, String) {
    common::run_bounded(args, None)
}

#[test]
fn cli_search() {
    let (server, log) = start();
    let api = server.local_addr().to_string();
    let api = api.as_str();

    // Each result once, in the order found, then the count (no header:
    // stdout is a pipe).
    let t = Instant::now();
    let (code, out, err) = peerlet(&["search", "ubuntu", "--api", api]);
    assert_eq!(code, 0, "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(
        lines[0],
        format!("{:<40}     6.0 GiB  {UBUNTU}        1", "ubuntu-24.04.iso")
    );
    assert!(lines[1].starts_with("Ubuntu ?[2Jtricks.pdf "), "{out}");
    assert!(lines[1].contains(DEBIAN), "{out}");
    assert_eq!(lines[2], "2 results");
    assert!(err.is_empty(), "{err}");
    // Three polls, 250 ms apart.
    assert!(t.elapsed() < Duration::from_secs(5));

    // Several words are one query; --timeout goes to the daemon.
    let (code, out, _) = peerlet(&["search", "no", "such", "--timeout", "30", "--api", api]);
    assert_eq!(code, 1);
    assert_eq!(out, "no results within 30 s\n");
    assert!(logged(&log, "search Words(\"no such\") 30s"));

    // A daemon that never says done: the client stops 2 s after the timeout.
    let t = Instant::now();
    let (code, out, _) = peerlet(&["search", "slow", "--timeout", "1", "--api", api]);
    assert_eq!(code, 1);
    assert_eq!(out, "no results within 1 s\n");
    assert!(t.elapsed() >= Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    // One info-hash searches for it.
    let (code, out, _) = peerlet(&["search", &UBUNTU.to_uppercase(), "--api", api]);
    assert_eq!(code, 0);
    assert!(logged(
        &log,
        &format!("search Hash(InfoHash({UBUNTU})) 10s")
    ));
    assert!(out.starts_with("by-hash.iso "), "{out}");
    assert!(out.ends_with("\n1 result\n"), "{out}");

    // --json: only the final page.
    let (code, out, _) = peerlet(&["search", "ubuntu", "--json", "--api", api]);
    assert_eq!(code, 0);
    let page = json::parse(&out).unwrap();
    assert_eq!(page.get("done").and_then(Json::as_bool), Some(true));
    assert_eq!(
        page.get("results")
            .and_then(Json::as_array)
            .map(<[Json]>::len),
        Some(2)
    );
    let (code, out, _) = peerlet(&["search", "nothing", "--json", "--api", api]);
    assert_eq!(code, 1);
    assert_eq!(
        json::parse(&out).unwrap().get("results"),
        Some(&Json::Arr(Vec::new()))
    );

    // Usage errors: exit 2 before the daemon is asked.
    let before = log.lock().unwrap().len();
    for (args, want) in [
        (vec![], "nothing to search for"),
        (vec!["--", "..."], "no letter or digit"),
        (vec!["a", "--timeout", "0"], "--timeout 0"),
        (vec!["a", "--timeout", "301"], "--timeout 301"),
    ] {
        let mut args = args.clone();
        args.splice(0..0, ["search", "--api", api]);
        let (code, out, err) = peerlet(&args);
        assert_eq!(code, 2, "{args:?}");
        assert!(out.is_empty(), "{out}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert_eq!(log.lock().unwrap().len(), before);
    server.shutdown();
}

#[test]
fn cli_peers_status_and_get_by_hash() {
    let (server, log) = start();
    let api = server.local_addr().to_string();
    let api = api.as_str();

    let (code, out, err) = peerlet(&["peers", "--api", api]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "node {NODE_ID} on 0.0.0.0:6881, external 203.0.113.5:6881, LAN discovery off; \
             table 2/64, neighbours 1/8, content 42 entries"
        )
    );
    assert!(lines[1].starts_with("  ADDR "), "{out}");
    assert!(
        lines[2].starts_with("* 192.168.1.20:6881  fedcba987654  beacon"),
        "{out}"
    );
    assert!(
        lines[3].starts_with("  198.51.100.7:6881  -             bootstrap"),
        "{out}"
    );
    assert!(
        out.contains("\nsent: ping 12\nreceived: pong 11\n"),
        "{out}"
    );
    let (code, out, _) = peerlet(&["peers", "--json", "--api", api]);
    assert_eq!(code, 0);
    assert_eq!(json::parse(&out).unwrap(), overlay().to_json());

    let (code, out, _) = peerlet(&["status", "--api", api]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("\nnode id: {NODE_ID}\n")), "{out}");
    assert!(
        out.contains(&format!("\npublic key: {}\n", "ab".repeat(32))),
        "{out}"
    );

    // A bare info-hash is a magnet link without trackers or peers.
    let (code, out, err) = peerlet(&["get", UBUNTU, "--timeout", "10", "--api", api]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        logged(&log, &format!("add magnet magnet:?xt=urn:btih:{UBUNTU}")),
        "{:?}",
        log.lock().unwrap()
    );
    assert!(
        out.contains(&format!("complete: by-hash.iso ({UBUNTU})")),
        "{out}"
    );
    let (code, out, _) = peerlet(&["add", "YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK", "--api", api]);
    assert_eq!(code, 0);
    assert_eq!(out, format!("added {UBUNTU} (name not known yet)\n"));
    // Not a hash, not a file: the file error as before.
    let (code, _, err) = peerlet(&["add", "c12f", "--api", api]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read torrent"), "{err}");
    server.shutdown();
}
