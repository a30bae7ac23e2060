//! `https://` trackers end to end: a TLS tracker on loopback (rustls with
//! ring, the test certificates of tests/fixtures/tls/, made by make.sh
//! there) answers announces with a peer list; a daemon given the test CA by
//! `tls_ca_file` gets the peers and downloads; a wrong CA, a certificate
//! for another address and a missing CA file are tracker errors in
//! `peerlet status`, and the daemon carries on.
//!
//! Addresses: 127.0.51.1 to 127.0.51.8 (named by the test certificates),
//! 127.0.51.9 (not named).
#![cfg(feature = "https")]

mod common;

use common::daemon::{assert_same_tree, create_torrent, create_torrent_with, DaemonProc};
use common::fake_tracker::compact_peers_body;
use common::{write_random_file, TempDir};
use peerlet::json::Json;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Upper bound for anything a test waits for.
const WAIT: Duration = Duration::from_secs(60);
/// The longest a tracker thread lives, dropped or not.
const MAX_LIFE: Duration = Duration::from_secs(180);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// An HTTPS tracker answering every announce with `body`, with the
/// certificate `cert`/`key` (fixture names); handshakes that fail (the
/// client refusing the certificate) are counted, not fatal.
struct TlsTracker {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl TlsTracker {
    fn start(ip: &str, cert: &str, key: &str, body: Vec<u8>) -> TlsTracker {
        let cert = CertificateDer::from_pem_file(fixture(cert)).unwrap();
        let key = PrivateKeyDer::from_pem_file(fixture(key)).unwrap();
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert], key)
                .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind((ip, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (requests2, stop2) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            // Bounded: MAX_LIFE at 10 ms per idle turn, and until dropped;
            // one connection at a time (announces are seconds apart).
            while started.elapsed() < MAX_LIFE && !stop2.load(Ordering::Relaxed) {
                let Ok((sock, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = sock.set_nonblocking(false);
                let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = sock.set_write_timeout(Some(Duration::from_secs(5)));
                let conn = ServerConnection::new(config.clone()).unwrap();
                let mut tls = StreamOwned::new(conn, sock);
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while head.len() < 16 << 10
                    && !head.ends_with(b"\r\n\r\n")
                    && matches!(tls.read(&mut byte), Ok(1))
                {
                    head.push(byte[0]);
                }
                if !head.starts_with(b"GET /announce?") {
                    continue; // The handshake failed, or not an announce.
                }
                requests2.fetch_add(1, Ordering::Relaxed);
                let mut answer =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                        .into_bytes();
                answer.extend_from_slice(&body);
                let _ = tls.write_all(&answer);
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        TlsTracker {
            addr,
            requests,
            stop,
        }
    }

    fn url(&self) -> String {
        format!("https://{}/announce", self.addr)
    }
}

impl Drop for TlsTracker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `src/NAME/data.bin` and its torrent with `trackers`; (dir, torrent, hash).
fn payload(tmp: &TempDir, name: &str, len: u64, trackers: &[String]) -> (PathBuf, PathBuf, String) {
    let dir = tmp.join("src").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    write_random_file(&dir.join("data.bin"), len, 7);
    let torrent = tmp.join(&format!("{name}.torrent"));
    let hash = create_torrent_with(&dir, &torrent, "64K", trackers, &[]);
    (dir, torrent, hash)
}

/// The first tracker's `last_result`, once it is no longer "not contacted".
fn wait_tracker_result(d: &DaemonProc, hash: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let st = d.status(hash);
        let result = st
            .get("trackers")
            .and_then(Json::as_array)
            .and_then(|t| t.first())
            .and_then(|t| t.get("last_result"))
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string();
        if !result.is_empty() && result != "not contacted" && !result.starts_with("announcing") {
            return result;
        }
        assert!(
            Instant::now() < deadline,
            "tracker never answered: {st}\nlog:\n{}",
            d.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A daemon whose `tls_ca_file` is the test CA gets the seeder's address
/// from an https tracker and downloads from it.
#[test]
fn https_tracker_gives_peers() {
    let tmp = TempDir::new("https-tracker-peers");
    let seeder = DaemonProc::start(tmp.path(), "seeder", "127.0.51.2", &[]);
    let tracker = TlsTracker::start(
        "127.0.51.1",
        "tracker.pem",
        "tracker.key",
        compact_peers_body(1, &[seeder.listen]),
    );
    let (dir, torrent, hash) = payload(&tmp, "data", 512 << 10, &[tracker.url()]);
    let plain = tmp.join("plain.torrent");
    assert_eq!(create_torrent(&dir, &plain, "64K"), hash);
    common::daemon::copy_tree(&dir, &seeder.download_dir.join("data"));
    seeder.add(&plain, &[]);
    seeder.wait_complete(&hash, WAIT);

    let ca = fixture("ca.pem");
    let leecher = DaemonProc::start(
        tmp.path(),
        "leecher",
        "127.0.51.3",
        &["--tls-ca-file", ca.to_str().unwrap()],
    );
    leecher.add(&torrent, &[]);
    leecher.wait_complete(&hash, WAIT);
    assert_same_tree(&dir, &leecher.download_dir.join("data"));
    assert_eq!(wait_tracker_result(&leecher, &hash), "ok: 1 peer");
    assert!(tracker.requests.load(Ordering::Relaxed) >= 1);
}

/// A certificate from a CA the daemon does not trust, and one that does not
/// name the tracker's address: each a tracker error in `peerlet status`,
/// no request sent, and the daemon answers on.
#[test]
fn https_tracker_wrong_ca_and_wrong_name() {
    let tmp = TempDir::new("https-tracker-refused");
    let body = compact_peers_body(1, &["127.0.51.2:1".parse().unwrap()]);
    let other_ca = TlsTracker::start(
        "127.0.51.5",
        "rsa-tracker.pem",
        "rsa-tracker.key",
        body.clone(),
    );
    let wrong_name = TlsTracker::start("127.0.51.9", "tracker.pem", "tracker.key", body);
    let (_, t1, h1) = payload(&tmp, "one", 64 << 10, &[other_ca.url()]);
    let (_, t2, h2) = payload(&tmp, "two", 96 << 10, &[wrong_name.url()]);
    let ca = fixture("ca.pem");
    let d = DaemonProc::start_with_env(
        tmp.path(),
        "leecher",
        "127.0.51.6",
        &[],
        &[("PEERLET_TLS_CA_FILE", ca.to_str().unwrap())],
    );
    d.add(&t1, &[]);
    d.add(&t2, &[]);
    assert_eq!(
        wait_tracker_result(&d, &h1),
        "error: tracker certificate refused: not issued by a trusted certificate authority (unknown issuer)"
    );
    let r2 = wait_tracker_result(&d, &h2);
    assert!(
        r2.starts_with("error: tracker certificate refused: ") && r2.contains("not valid for name"),
        "{r2}"
    );
    assert_eq!(other_ca.requests.load(Ordering::Relaxed), 0);
    assert_eq!(wrong_name.requests.load(Ordering::Relaxed), 0);
    // The human status shows it too.
    let (code, out, err) = d.cli(&["status", &h1]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("unknown issuer"), "{out}");
}

/// A `tls_ca_file` that does not exist: the announce says so and how to fix
/// it; the daemon does not stop.
#[test]
fn https_tracker_without_ca_certificates() {
    let tmp = TempDir::new("https-tracker-no-ca");
    let tracker = TlsTracker::start(
        "127.0.51.7",
        "tracker.pem",
        "tracker.key",
        compact_peers_body(0, &[]),
    );
    let (_, torrent, hash) = payload(&tmp, "data", 64 << 10, &[tracker.url()]);
    let missing = tmp.join("no-such-ca.pem");
    let d = DaemonProc::start(
        tmp.path(),
        "leecher",
        "127.0.51.8",
        &["--tls-ca-file", missing.to_str().unwrap()],
    );
    d.add(&torrent, &[]);
    assert_eq!(
        wait_tracker_result(&d, &hash),
        format!(
            "error: TLS error: no CA certificates found at {} (missing); set tls_ca_file",
            missing.display()
        )
    );
    assert_eq!(tracker.requests.load(Ordering::Relaxed), 0);
    assert!(d.try_status(&hash).is_some(), "the daemon answers");
}
