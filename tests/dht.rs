//! The Mainline DHT between peerlet daemons on loopback (127.0.61.x):
//! a trackerless magnet is found through the DHT alone; peers' `port`
//! messages put their nodes in our table; the table survives a restart;
//! the DHT is off where it must be (`--no-dht`, private networks).
//!
//! No test names a public router: every daemon starts from the others
//! (`--dht-bootstrap`) or from nothing (`tests/common` sets
//! `PEERLET_DHT_BOOTSTRAP=""`).

mod common;

use common::daemon::{one_file_torrent, DaemonProc};
use common::{run, TempDir};
use peerlet::json::{self, Json};
use std::time::{Duration, Instant};

fn dht_json(d: &DaemonProc) -> Json {
    let (code, out, err) = d.cli(&["dht", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    json::parse(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn num(j: &Json, path: &[&str]) -> u64 {
    let mut v = j;
    for k in path {
        v = v.get(k).unwrap_or_else(|| panic!("no {k} in {j}"));
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("{path:?} not a number in {j}"))
}

/// Waits (bounded) until `ok` holds for the daemon's `dht --json`.
fn wait_dht(d: &DaemonProc, what: &str, limit: Duration, ok: impl Fn(&Json) -> bool) -> Json {
    let start = Instant::now();
    loop {
        let j = dht_json(d);
        if ok(&j) {
            return j;
        }
        assert!(
            start.elapsed() < limit,
            "{}: {what} not reached in {limit:?}: {j}\n{}",
            d.name,
            d.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_trackerless_magnet_is_found_through_the_dht_alone() {
    let tmp = TempDir::new("dht-magnet");
    // A router everyone starts from, and a few plain nodes.
    let router = DaemonProc::start(tmp.path(), "router", "127.0.61.1", &[]);
    let boot = router.listen.to_string();
    let with_boot = ["--dht-bootstrap", boot.as_str()];
    let nodes: Vec<DaemonProc> = (2..6)
        .map(|i| {
            DaemonProc::start(
                tmp.path(),
                &format!("node{i}"),
                &format!("127.0.61.{i}"),
                &with_boot,
            )
        })
        .collect();
    // The seeder: a torrent with no tracker at all.
    let torrent = tmp.join("t.torrent");
    let hash = one_file_torrent(&tmp.join("src"), "dht.bin", 3 << 20, 61, &torrent, "64K");
    let seeder = DaemonProc::start(tmp.path(), "seeder", "127.0.61.10", &with_boot);
    common::daemon::copy_tree(&tmp.join("src"), &seeder.download_dir.join("src"));
    seeder.add(&torrent, &[]);
    seeder.wait_complete(&hash, Duration::from_secs(60));
    // The seeder announced: some node stores it as a peer.
    let start = Instant::now();
    loop {
        let stored: u64 = std::iter::once(&router)
            .chain(nodes.iter())
            .map(|d| num(&dht_json(d), &["stored_peers"]))
            .sum();
        if stored > 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no node stores the seeder's announce:\n{}",
            seeder.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let s = dht_json(&seeder);
    assert!(num(&s, &["tracked"]) >= 1, "{s}");
    assert!(num(&s, &["counters", "announces"]) >= 1, "{s}");

    // A leecher with no tracker and no --peer: only the DHT can find it.
    let leecher = DaemonProc::start(tmp.path(), "leecher", "127.0.61.20", &with_boot);
    let magnet = format!("magnet:?xt=urn:btih:{hash}");
    let t0 = Instant::now();
    let (code, out, err) = leecher.cli(&["get", &magnet, "--timeout", "120"]);
    assert_eq!(
        code,
        0,
        "{out}{err}\nleecher:\n{}\nseeder:\n{}",
        leecher.log_tail(40),
        seeder.log_tail(20)
    );
    eprintln!("trackerless magnet complete in {:?}", t0.elapsed());
    let got = std::fs::read(leecher.download_dir.join("src").join("dht.bin")).unwrap();
    let want = std::fs::read(tmp.join("src").join("dht.bin")).unwrap();
    assert!(got == want, "downloaded data differs");
    // The seeder's peer came from the DHT.
    let st = leecher.status(&hash);
    let peers = st
        .get("peer_list")
        .and_then(|p| p.as_array())
        .map(<[Json]>::to_vec);
    let sources: Vec<String> = peers
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.get("source").and_then(|s| s.as_str()).map(String::from))
        .collect();
    assert!(
        sources.is_empty() || sources.iter().any(|s| s == "dht" || s == "incoming"),
        "{sources:?}"
    );
    let l = dht_json(&leecher);
    assert!(num(&l, &["nodes"]) >= 1, "{l}");
    assert!(num(&l, &["counters", "lookups_started"]) >= 1, "{l}");
}

#[test]
fn a_peers_port_message_adds_its_node_and_the_table_survives_a_restart() {
    let tmp = TempDir::new("dht-port");
    let torrent = tmp.join("p.torrent");
    let hash = one_file_torrent(&tmp.join("src"), "p.bin", 1 << 20, 62, &torrent, "64K");
    let seeder = common::daemon::start_seeder(
        tmp.path(),
        "seeder",
        "127.0.62.1",
        &tmp.join("src"),
        &torrent,
        &hash,
    );
    // No router at all: the leecher learns the seeder's node from the
    // BitTorrent connection's `port` message.
    let mut leecher = DaemonProc::start(tmp.path(), "leecher", "127.0.62.2", &[]);
    assert_eq!(num(&dht_json(&leecher), &["nodes"]), 0);
    leecher.add(&torrent, &[seeder.listen]);
    leecher.wait_complete(&hash, Duration::from_secs(60));
    wait_dht(
        &leecher,
        "the seeder's node",
        Duration::from_secs(30),
        |j| num(j, &["nodes"]) >= 1,
    );
    wait_dht(
        &seeder,
        "the leecher's node",
        Duration::from_secs(30),
        |j| num(j, &["nodes"]) >= 1,
    );
    // An orderly stop saves the table; the next start begins from it.
    leecher.stop();
    let saved = leecher.state_dir.join("dht_nodes");
    assert!(
        std::fs::metadata(&saved)
            .map(|m| m.len() > 0)
            .unwrap_or(false),
        "no {}",
        saved.display()
    );
    leecher.restart();
    wait_dht(&leecher, "the saved node", Duration::from_secs(30), |j| {
        num(j, &["nodes"]) >= 1
    });
}

#[test]
fn the_dht_is_off_where_it_must_be() {
    let tmp = TempDir::new("dht-off");
    let off = DaemonProc::start(tmp.path(), "off", "127.0.62.10", &["--no-dht"]);
    let (code, out, err) = off.cli(&["dht"]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("DHT is off"), "{err}");
    let (_, metrics, _) = off.cli(&["status", "--json"]);
    assert!(!metrics.is_empty());
    drop(off);

    let secret = tmp.join("net.secret");
    let (code, _, err) = run(&["secret", secret.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let private = DaemonProc::start(
        tmp.path(),
        "private",
        "127.0.62.11",
        &[
            "--network-secret",
            secret.to_str().unwrap(),
            "--dht-bootstrap",
            "127.0.62.12:6881",
        ],
    );
    let (code, _, err) = private.cli(&["dht"]);
    assert_ne!(code, 0);
    assert!(err.contains("private network"), "{err}");

    // --no-dht with DHT options is a usage error.
    let (code, _, err) = run(&[
        "config",
        "show",
        "--no-dht",
        "--dht-bootstrap",
        "127.0.62.12:6881",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("--no-dht"), "{err}");
}
