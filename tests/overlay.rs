//! The discovery overlay between real daemons on loopback: a chain of eight
//! nodes finds and downloads a file held only by the last one; a repeated
//! search goes straight to the holder; hostile packets leave a node
//! responsive with bounded tables. (LAN beacons are tested inside network
//! namespaces by tests/netns_lan.sh.)

mod common;

use common::daemon::{create_torrent, DaemonProc};
use common::nodes::{counter, live_nodes, nodes};
use common::{write_random_file, TempDir};
use peerlet::json::{self, Json};
use peerlet::metainfo::InfoHash;
use peerlet::overlay::msg::{Body, Packet, Target};
use peerlet::overlay::NodeId;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

fn search(d: &DaemonProc, what: &[&str], timeout: u64) -> Json {
    let t = timeout.to_string();
    let mut args = vec!["search"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["--timeout", &t, "--json"]);
    let (_, out, err) = d.cli(&args);
    json::parse(&out).unwrap_or_else(|e| panic!("search JSON: {e}: {out}{err}"))
}

fn results(page: &Json) -> Vec<Json> {
    page.get("results")
        .and_then(Json::as_array)
        .map(|r| r.to_vec())
        .unwrap_or_default()
}

#[test]
fn a_chain_of_eight_finds_downloads_and_then_asks_the_holder_directly() {
    let tmp = TempDir::new("overlay-chain");
    let mut chain: Vec<DaemonProc> = Vec::new();
    for i in 0..8 {
        let ip = format!("127.0.0.{}", 201 + i);
        let mut extra: Vec<String> = Vec::new();
        if let Some(prev) = chain.last() {
            extra.push("--bootstrap".into());
            extra.push(prev.listen.to_string());
        }
        let refs: Vec<&str> = extra.iter().map(String::as_str).collect();
        chain.push(DaemonProc::start(tmp.path(), &format!("n{i}"), &ip, &refs));
    }
    // The last node holds the file.
    let last = &chain[7];
    let data = last.download_dir.join("holiday-photos-2026.tar");
    std::fs::create_dir_all(&last.download_dir).unwrap();
    write_random_file(&data, 3 << 20, 2026);
    let torrent = tmp.join("holiday.torrent");
    let hash = create_torrent(&data, &torrent, "64K");
    last.add(&torrent, &[]);
    last.wait_complete(&hash, Duration::from_secs(30));

    // Node exchange spreads the table along the chain.
    let first = &chain[0];
    let deadline = Instant::now() + Duration::from_secs(60);
    while live_nodes(&nodes(first)) < 4 {
        assert!(
            Instant::now() < deadline,
            "first node's table: {}",
            nodes(first)
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // Found by words of its name from the first node.
    let deadline = Instant::now() + Duration::from_secs(60);
    let found = loop {
        let page = search(first, &["holiday", "2026"], 3);
        let r = results(&page);
        if let Some(hit) = r
            .iter()
            .find(|h| h.get("info_hash").and_then(Json::as_str) == Some(hash.as_str()))
        {
            break hit.clone();
        }
        assert!(Instant::now() < deadline, "never found: {page}");
    };
    assert_eq!(
        found.get("name").and_then(Json::as_str),
        Some("holiday-photos-2026.tar")
    );
    assert_eq!(found.get("size").and_then(Json::as_u64), Some(3 << 20));
    let holders: Vec<&str> = found
        .get("holders")
        .and_then(Json::as_array)
        .unwrap()
        .iter()
        .filter_map(Json::as_str)
        .collect();
    assert!(
        holders.contains(&last.listen.to_string().as_str()),
        "holders {holders:?}, holder is {}",
        last.listen
    );

    // `get INFO_HASH`: no tracker, no peers: holders and metadata through the overlay.
    // (`-d` must name a directory in the daemon's download directory.)
    let dir = first.download_dir.join("got");
    std::fs::create_dir_all(&dir).unwrap();
    let (code, out, err) =
        first.cli(&["get", &hash, "-d", dir.to_str().unwrap(), "--timeout", "90"]);
    assert_eq!(code, 0, "get: {out}{err}\n{}", first.log_tail(30));
    assert_eq!(
        std::fs::read(dir.join("holiday-photos-2026.tar")).unwrap(),
        std::fs::read(&data).unwrap(),
        "byte-identical"
    );

    // Again by info-hash: straight to the holder, no flood.
    let before = nodes(first);
    let page = search(first, &[&hash], 3);
    let after = nodes(first);
    assert!(
        results(&page).iter().any(|h| h
            .get("holders")
            .and_then(Json::as_array)
            .unwrap()
            .iter()
            .any(|a| a.as_str() == Some(last.listen.to_string().as_str()))),
        "{page}"
    );
    assert_eq!(
        counter(&after, "searches_flooded"),
        counter(&before, "searches_flooded"),
        "the second search flooded: {after}"
    );
    assert!(counter(&after, "searches_direct") > counter(&before, "searches_direct"));
    // And the holder was asked directly (one query per direct holder).
    assert!(counter(&after, "sent_query") - counter(&before, "sent_query") <= 8);
}

/// A hand-made overlay client on its own loopback address.
struct Stranger {
    socket: UdpSocket,
    id: NodeId,
}

impl Stranger {
    fn new(ip: &str) -> Stranger {
        let socket = UdpSocket::bind(format!("{ip}:0")).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        Stranger {
            socket,
            id: NodeId([0x5a; 20]),
        }
    }

    fn send(&self, to: SocketAddr, body: Body) {
        let bytes = Packet { id: self.id, body }.encode();
        self.socket.send_to(&bytes, to).unwrap();
    }

    /// Pings (every 0.5 s, for up to 5 s: a flooded socket drops
    /// datagrams) and returns the pong's token (None when no pong came).
    fn token(&self, to: SocketAddr) -> Option<[u8; 8]> {
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            self.send(
                to,
                Body::Ping {
                    tx: *b"tokn",
                    tcp_port: 1,
                    flags: 0,
                    pad: 120,
                },
            );
            let Ok((n, from)) = self.socket.recv_from(&mut buf) else {
                continue;
            };
            if from != to {
                continue;
            }
            if let Ok(Packet {
                body: Body::Pong { token, tx, .. },
                ..
            }) = Packet::parse(&buf[..n])
            {
                if tx == *b"tokn" {
                    return Some(token);
                }
            }
        }
        None
    }
}

#[test]
fn hostile_packets_leave_the_node_responsive_and_bounded() {
    let tmp = TempDir::new("overlay-hostile");
    let target = DaemonProc::start(tmp.path(), "target", "127.0.0.210", &[]);
    let neighbour = DaemonProc::start(
        tmp.path(),
        "neighbour",
        "127.0.0.211",
        &["--bootstrap", &target.listen.to_string()],
    );
    let to = target.listen;
    let deadline = Instant::now() + Duration::from_secs(30);
    let has_neighbour = |j: &Json| {
        j.get("nodes")
            .and_then(Json::as_array)
            .unwrap()
            .iter()
            .any(|n| n.get("neighbour").and_then(Json::as_bool) == Some(true))
    };
    while !has_neighbour(&nodes(&target)) {
        assert!(Instant::now() < deadline, "{}", nodes(&target));
        std::thread::sleep(Duration::from_millis(200));
    }
    let evil = Stranger::new("127.0.0.212");
    // Malformed and oversized datagrams (paced a little: the kernel drops
    // what the socket buffer cannot hold, and the counters should see most).
    for i in 0..2000u32 {
        if i % 100 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        let junk: Vec<u8> = match i % 4 {
            0 => b"d1:t4:pinge".to_vec(),
            1 => vec![b'd'; 1 + (i as usize % 1400)],
            2 => {
                let mut v = b"d2:id20:".to_vec();
                v.extend_from_slice(&[1; 20]);
                v.extend_from_slice(b"1:t3:hit1:q8:");
                v.extend_from_slice(&i.to_be_bytes());
                v.extend_from_slice(b"e");
                v
            }
            _ => vec![b'd'; 9000],
        };
        let _ = evil.socket.send_to(&junk, to);
    }
    // Hits for query ids nobody asked.
    for i in 0..1000u64 {
        if i % 100 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        evil.send(
            to,
            Body::Hit {
                qid: i.to_be_bytes(),
                hops: 0,
                results: vec![],
            },
        );
    }
    // A query storm with a valid token and a forged huge TTL.
    let token = evil.token(to).expect("the target answers a padded ping");
    let storm = Instant::now();
    for i in 0..5000u64 {
        if i % 100 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        evil.send(
            to,
            Body::Query {
                token,
                qid: (i | 1 << 40).to_be_bytes(),
                ttl: 255,
                hops: 0,
                target: Target::Hash(InfoHash([7; 20])),
            },
        );
    }
    let storm_secs = storm.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));
    // Still answering: the API and a fresh overlay source.
    let polite = Stranger::new("127.0.0.213");
    assert!(polite.token(to).is_some(), "no pong after the storm");
    let st = nodes(&target);
    assert!(counter(&st, "malformed") >= 500, "{st}");
    assert_eq!(
        counter(&st, "unknown_hits"),
        counter(&st, "received_hit"),
        "every stray hit dropped: {st}"
    );
    assert!(counter(&st, "received_hit") >= 500, "{st}");
    // At most a burst of 4 × the rate plus the rate per second got through.
    let rate = f64::from(peerlet::overlay::Config::default().query_rate);
    let received = counter(&st, "received_query");
    assert!(received >= 2500, "{st}");
    let accepted = received - counter(&st, "rate_limited");
    assert!(
        accepted as f64 <= 4.0 * rate + rate * (storm_secs + 1.0),
        "{accepted} queries accepted in {storm_secs:.1} s: {st}"
    );
    assert_eq!(counter(&st, "ttl_capped"), accepted, "{st}");
    assert!(counter(&st, "forwarded") <= accepted);
    assert!(st.get("routes").and_then(Json::as_u64).unwrap() <= 4096);
    let table = st.get("nodes").and_then(Json::as_array).unwrap().len() as u64;
    assert!(table <= st.get("capacity").and_then(Json::as_u64).unwrap());
    // The neighbour received only the few queries that passed the limits.
    let n = nodes(&neighbour);
    assert!(counter(&st, "forwarded") >= 1, "{st}");
    assert!(
        counter(&n, "received_query") <= counter(&st, "forwarded"),
        "{n}"
    );
}

#[test]
fn the_node_key_and_routing_table_survive_a_restart() {
    let tmp = TempDir::new("overlay-restart");
    let a = DaemonProc::start(tmp.path(), "a", "127.0.0.214", &[]);
    let mut b = DaemonProc::start(
        tmp.path(),
        "b",
        "127.0.0.215",
        &["--bootstrap", &a.listen.to_string()],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while live_nodes(&nodes(&b)) < 1 {
        assert!(Instant::now() < deadline, "{}", nodes(&b));
        std::thread::sleep(Duration::from_millis(200));
    }
    let id = nodes(&b)
        .get("node_id")
        .and_then(Json::as_str)
        .unwrap()
        .to_string();
    let key = b.state_dir.join("node.key");
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&key).unwrap();
        assert_eq!(meta.len(), 32);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    b.stop();
    assert!(
        b.state_dir.join("nodes").exists(),
        "the table was saved at shutdown"
    );
    // Started again without --bootstrap: the saved table brings A back at once.
    let b = DaemonProc::start(tmp.path(), "b", "127.0.0.215", &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let j = nodes(&b);
        assert_eq!(
            j.get("node_id").and_then(Json::as_str),
            Some(id.as_str()),
            "same identity"
        );
        let back = j
            .get("nodes")
            .and_then(Json::as_array)
            .unwrap()
            .iter()
            .any(|n| {
                n.get("addr").and_then(Json::as_str) == Some(a.listen.to_string().as_str())
                    && n.get("source").and_then(Json::as_str) == Some("saved")
                    && n.get("last_seen_secs").is_some_and(|v| !v.is_null())
            });
        if back {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A not back from the saved table: {j}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
