//! `GET /metrics` on real daemons (loopback 127.0.0.240-241): a seeder and
//! a leecher of a few MiB, scraped before and after the transfer and after
//! the torrent is removed. Every scrape must parse with the Python
//! `prometheus_client` text parser (Debian: python3-prometheus-client,
//! which `.ci/test` installs), have the expected families with the right
//! types, and its counters must move with the transfer.

mod common;

use common::daemon::{one_file_torrent, start_seeder, DaemonProc};
use common::TempDir;
use peerlet::json::{self, Json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Reads the exposition text on stdin, prints its families as JSON:
/// `{"families": [{"name", "type", "samples": [[name, {labels}, value]]}]}`.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
families = []
for f in text_string_to_metric_families(sys.stdin.read()):
    families.append({"name": f.name, "type": f.type,
                     "samples": [[s.name, s.labels, s.value] for s in f.samples]})
print(json.dumps({"families": families}))
"#;

/// True when the parser is there. Missing: fail as root (CI installs it),
/// skip with a reason otherwise.
fn have_parser() -> bool {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import prometheus_client.parser"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return true;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    assert!(
        !root,
        "python3-prometheus-client is missing (bash .ci/test installs it as root)"
    );
    eprintln!("skipped: the Python prometheus_client parser is missing (apt-get install python3-prometheus-client)");
    false
}

/// A raw HTTP/1.1 request to the API; (status, Content-Type, body).
fn http(api: &str, request: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let r = peerlet::control::http::parse_response(&raw).unwrap();
    let ctype = r
        .headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    (r.status, ctype, String::from_utf8(r.body).unwrap())
}

/// The samples of one scrape, as the Python parser read them.
struct Scrape {
    text: String,
    families: Vec<Json>,
}

impl Scrape {
    fn take(d: &DaemonProc) -> Scrape {
        let (status, ctype, text) = http(
            &d.api,
            &format!("GET /metrics HTTP/1.1\r\nHost: {}\r\n\r\n", d.api),
        );
        assert_eq!(status, 200, "{}: {text}", d.name);
        assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
        let mut child = Command::new("/usr/bin/python3")
            .args(["-c", PARSE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the exposition does not parse: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let parsed = json::parse(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
        let families = parsed
            .get("families")
            .and_then(Json::as_array)
            .unwrap()
            .to_vec();
        Scrape { text, families }
    }

    /// The type of a family, by its name as the parser gives it (counters
    /// without `_total`).
    fn type_of(&self, family: &str) -> Option<&str> {
        self.families
            .iter()
            .find(|f| f.get("name").and_then(Json::as_str) == Some(family))
            .and_then(|f| f.get("type").and_then(Json::as_str))
    }

    /// The value of the sample `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        for f in &self.families {
            for s in f.get("samples").and_then(Json::as_array).unwrap_or(&[]) {
                let s = s.as_array().unwrap();
                let sample_labels = &s[1];
                if s[0].as_str() == Some(name)
                    && labels
                        .iter()
                        .all(|(k, v)| sample_labels.get(k).and_then(Json::as_str) == Some(v))
                {
                    return s[2].as_f64();
                }
            }
        }
        None
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in:\n{}", self.text))
            as u64
    }

    /// Checks that every family we promise is there with its type.
    fn check_families(&self, overlay: bool) {
        let counters = [
            "peerlet_downloaded_bytes",
            "peerlet_uploaded_bytes",
            "peerlet_wasted_bytes",
            "peerlet_pieces_verified",
            "peerlet_pieces_failed",
            "peerlet_bans",
            "peerlet_tracker_announces",
        ];
        let gauges = [
            "peerlet_build_info",
            "peerlet_uptime_seconds",
            "peerlet_download_rate_bytes_per_second",
            "peerlet_upload_rate_bytes_per_second",
            "peerlet_banned_peers",
            "peerlet_torrents",
            "peerlet_peers",
            "peerlet_connections",
            "peerlet_connections_half_open",
            "peerlet_connections_max",
            "peerlet_worker_queue_jobs",
            "peerlet_job_backlog_jobs",
            "peerlet_jobs_in_flight",
            "peerlet_worker_threads",
            "peerlet_memory_in_flight_bytes",
            "peerlet_memory_budget_bytes",
            "peerlet_overlay_enabled",
        ];
        let overlay_counters = [
            "peerlet_overlay_packets_sent",
            "peerlet_overlay_packets_received",
            "peerlet_overlay_dropped",
            "peerlet_overlay_queries_forwarded",
            "peerlet_overlay_searches",
        ];
        let overlay_gauges = [
            "peerlet_overlay_routing_table_nodes",
            "peerlet_overlay_routing_table_capacity",
            "peerlet_overlay_live_nodes",
            "peerlet_overlay_neighbours",
            "peerlet_overlay_content_entries",
            "peerlet_overlay_content_holders",
        ];
        for f in counters {
            assert_eq!(self.type_of(f), Some("counter"), "{f} in:\n{}", self.text);
        }
        for f in gauges {
            assert_eq!(self.type_of(f), Some("gauge"), "{f} in:\n{}", self.text);
        }
        for f in overlay_counters {
            let want = overlay.then_some("counter");
            assert_eq!(self.type_of(f), want, "{f} in:\n{}", self.text);
        }
        for f in overlay_gauges {
            let want = overlay.then_some("gauge");
            assert_eq!(self.type_of(f), want, "{f} in:\n{}", self.text);
        }
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(self.get("peerlet_build_info", &[("version", version)]), 1);
        for state in [
            "metadata",
            "checking",
            "downloading",
            "seeding",
            "paused",
            "error",
        ] {
            self.get("peerlet_torrents", &[("state", state)]);
        }
        for source in ["incoming", "manual", "overlay", "pex", "tracker"] {
            self.get("peerlet_peers", &[("source", source)]);
        }
        for queue in ["live", "background", "network"] {
            self.get("peerlet_worker_queue_jobs", &[("queue", queue)]);
            self.get("peerlet_job_backlog_jobs", &[("queue", queue)]);
        }
        assert_eq!(self.get("peerlet_memory_budget_bytes", &[]), 8 << 20);
        if overlay {
            for kind in [
                "ping", "pong", "beacon", "getnodes", "nodes", "announce", "query", "hit",
            ] {
                self.get("peerlet_overlay_packets_sent_total", &[("kind", kind)]);
                self.get("peerlet_overlay_packets_received_total", &[("kind", kind)]);
            }
            for reason in ["malformed", "bad_token", "rate_limited", "duplicates"] {
                self.get("peerlet_overlay_dropped_total", &[("reason", reason)]);
            }
        }
    }
}

#[test]
fn metrics_parse_and_counters_move_with_a_transfer() {
    if !have_parser() {
        return;
    }
    let tmp = TempDir::new("metrics");
    let payload = tmp.join("payload");
    let size: u64 = (3 << 20) + 12_345;
    let torrent = tmp.join("payload.torrent");
    let hash = one_file_torrent(&payload, "data.bin", size, 7, &torrent, "256K");
    let n_pieces = size.div_ceil(256 << 10);

    let seeder = start_seeder(
        tmp.path(),
        "seeder",
        "127.0.0.240",
        &payload,
        &torrent,
        &hash,
    );
    let bootstrap = seeder.listen.to_string();
    let leecher = DaemonProc::start(
        tmp.path(),
        "leecher",
        "127.0.0.241",
        &["--bootstrap", &bootstrap],
    );

    let before_seeder = Scrape::take(&seeder);
    let before_leecher = Scrape::take(&leecher);
    before_seeder.check_families(true);
    before_leecher.check_families(true);
    assert_eq!(before_seeder.get("peerlet_uploaded_bytes_total", &[]), 0);
    assert_eq!(
        before_seeder.get("peerlet_torrents", &[("state", "seeding")]),
        1
    );
    // The seeder's pieces were found on disk, not downloaded.
    assert_eq!(before_seeder.get("peerlet_pieces_verified_total", &[]), 0);
    assert_eq!(before_leecher.get("peerlet_downloaded_bytes_total", &[]), 0);
    assert_eq!(before_leecher.get("peerlet_pieces_verified_total", &[]), 0);
    assert_eq!(
        before_leecher.get("peerlet_torrents", &[("state", "downloading")]),
        0
    );

    leecher.add(&torrent, &[seeder.listen]);
    leecher.wait_complete(&hash, Duration::from_secs(60));

    let after_seeder = Scrape::take(&seeder);
    let after_leecher = Scrape::take(&leecher);
    after_seeder.check_families(true);
    after_leecher.check_families(true);
    let downloaded = after_leecher.get("peerlet_downloaded_bytes_total", &[]);
    assert!(downloaded >= size, "downloaded {downloaded} of {size}");
    let uploaded = after_seeder.get("peerlet_uploaded_bytes_total", &[]);
    assert!(uploaded >= size, "uploaded {uploaded} of {size}");
    assert_eq!(
        after_leecher.get("peerlet_pieces_verified_total", &[]),
        n_pieces
    );
    assert_eq!(after_leecher.get("peerlet_pieces_failed_total", &[]), 0);
    assert_eq!(after_leecher.get("peerlet_bans_total", &[]), 0);
    assert_eq!(
        after_leecher.get("peerlet_torrents", &[("state", "seeding")]),
        1
    );
    assert!(
        after_leecher.get("peerlet_uptime_seconds", &[])
            >= before_leecher.get("peerlet_uptime_seconds", &[])
    );

    // The overlay: the leecher pings its bootstrap node, which answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = Scrape::take(&leecher);
        let pings = s.get("peerlet_overlay_packets_sent_total", &[("kind", "ping")]);
        let pongs = s.get(
            "peerlet_overlay_packets_received_total",
            &[("kind", "pong")],
        );
        if pings >= 1 && pongs >= 1 && s.get("peerlet_overlay_routing_table_nodes", &[]) >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no overlay traffic counted:\n{}",
            s.text
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // Counters outlive the torrent they counted on.
    let (code, out, err) = leecher.cli(&["rm", &hash]);
    assert_eq!(code, 0, "rm: {out}{err}");
    let removed = Scrape::take(&leecher);
    removed.check_families(true);
    assert!(removed.get("peerlet_downloaded_bytes_total", &[]) >= downloaded);
    assert_eq!(removed.get("peerlet_pieces_verified_total", &[]), n_pieces);
    assert_eq!(removed.get("peerlet_torrents", &[("state", "seeding")]), 0);

    // The API's safety rules hold here too.
    let (status, _, _) = http(
        &leecher.api,
        "GET /metrics HTTP/1.1\r\nHost: rebind.example:7441\r\n\r\n",
    );
    assert_eq!(status, 421);
    let (status, _, _) = http(
        &leecher.api,
        &format!(
            "GET /metrics HTTP/1.1\r\nHost: {0}\r\nOrigin: http://evil.example\r\n\r\n",
            leecher.api
        ),
    );
    assert_eq!(status, 403);
    let (status, _, body) = http(
        &leecher.api,
        &format!(
            "POST /metrics HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
            leecher.api
        ),
    );
    assert_eq!(status, 405, "{body}");
}

#[test]
fn metrics_without_the_overlay() {
    if !have_parser() {
        return;
    }
    let tmp = TempDir::new("metrics-no-overlay");
    let d = DaemonProc::start(tmp.path(), "lone", "127.0.0.242", &["--no-overlay"]);
    let s = Scrape::take(&d);
    s.check_families(false);
    assert_eq!(s.get("peerlet_overlay_enabled", &[]), 0);
    assert_eq!(
        s.get("peerlet_connections", &[("direction", "incoming")]),
        0
    );
    // curl, as README.md shows it.
    if let Ok(out) = Command::new("curl")
        .args(["-s", "--max-time", "10", &format!("{}/metrics", d.api)])
        .output()
    {
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("# TYPE peerlet_uptime_seconds gauge\n"),
                "{text}"
            );
        }
    }
}
