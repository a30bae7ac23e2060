//! Announcer tests with fake time and fake trackers: no sockets, no sleeping.

use super::*;
use crate::bencode::Value;
use crate::tracker::udp::{Request, Response};

const HASH: [u8; 20] = [0x11; 20];
const PEER_ID: [u8; 20] = *b"-PL0100-123456789012";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn stats() -> Stats {
    Stats {
        uploaded: 10,
        downloaded: 20,
        left: 30,
    }
}

fn seeding() -> Stats {
    Stats {
        uploaded: 10,
        downloaded: 20,
        left: 0,
    }
}

fn build(tiers: &[&[&str]], private: bool, seed: u64, config: AnnouncerConfig) -> Announcer {
    Announcer::new(
        AnnouncerParams {
            info_hash: HASH,
            peer_id: PEER_ID,
            port: 6881,
            tiers: tiers
                .iter()
                .map(|t| t.iter().map(|u| u.to_string()).collect())
                .collect(),
            private,
            seed,
        },
        config,
    )
}

/// Without scrapes: the announce tests count every request.
fn no_scrape() -> AnnouncerConfig {
    AnnouncerConfig {
        scrape: false,
        ..AnnouncerConfig::default()
    }
}

fn announcer(tiers: &[&[&str]]) -> Announcer {
    build(tiers, false, 1, no_scrape())
}

/// The actions since the last call, without log lines.
fn actions(a: &mut Announcer) -> Vec<Action> {
    a.drain_actions()
        .filter(|x| !matches!(x, Action::Log(..)))
        .collect()
}

/// Every HTTP request queued since the last call (nothing else allowed).
fn expect_https(a: &mut Announcer) -> Vec<(TrackerId, String)> {
    actions(a)
        .into_iter()
        .map(|x| match x {
            Action::HttpGet { tracker, url, .. } => (tracker, url),
            other => panic!("expected an HTTP request, got {other:?}"),
        })
        .collect()
}

fn expect_http(a: &mut Announcer) -> (TrackerId, String) {
    match actions(a).as_slice() {
        [Action::HttpGet { tracker, url, .. }] => (*tracker, url.clone()),
        other => panic!("expected one HttpGet, got {other:?}"),
    }
}

fn expect_udp(a: &mut Announcer) -> (SocketAddr, Request) {
    match actions(a).as_slice() {
        [Action::SendUdp { to, bytes }] => (*to, Request::parse(bytes).unwrap()),
        other => panic!("expected one SendUdp, got {other:?}"),
    }
}

fn expect_resolve(a: &mut Announcer) -> (TrackerId, String, u16) {
    match actions(a).as_slice() {
        [Action::Resolve {
            tracker,
            host,
            port,
        }] => (*tracker, host.clone(), *port),
        other => panic!("expected one Resolve, got {other:?}"),
    }
}

fn expect_nothing(a: &mut Announcer) {
    let got = actions(a);
    assert!(got.is_empty(), "expected no actions, got {got:?}");
}

/// After any input, the next deadline is in the future (no busy loop).
fn tick(a: &mut Announcer, now: Instant) {
    a.tick(now, stats());
    assert!(
        a.next_deadline().is_none_or(|d| d > now),
        "deadline not after tick"
    );
}

fn compact(peers: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in peers {
        let addr: SocketAddr = p.parse().unwrap();
        if let IpAddr::V4(ip) = addr.ip() {
            out.extend_from_slice(&ip.octets());
            out.extend_from_slice(&addr.port().to_be_bytes());
        }
    }
    out
}

fn http_reply(entries: Vec<(&str, Value)>) -> Result<Vec<u8>, TrackerError> {
    let mut d = Value::dict();
    for (k, v) in entries {
        d.insert(k, v);
    }
    Ok(d.to_bytes())
}

fn http_ok(interval: i64, peers: &[&str]) -> Result<Vec<u8>, TrackerError> {
    http_reply(vec![
        ("interval", Value::Int(interval)),
        ("peers", Value::Bytes(compact(peers))),
    ])
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn status_of(a: &Announcer, id: TrackerId, now: Instant) -> TrackerStatus {
    a.status(now).into_iter().find(|s| s.id == id).unwrap()
}

fn url_of(a: &Announcer, id: TrackerId) -> String {
    a.status(Instant::now())
        .into_iter()
        .find(|s| s.id == id)
        .unwrap()
        .url
}

// ---------------------------------------------------------------------------
// HTTP: events and schedule.

#[test]
fn started_then_regular_announces() {
    let t0 = Instant::now();
    let mut a = announcer(&[&["http://a.example/announce"]]);
    assert!(a.is_stopped());
    assert_eq!(a.next_deadline(), None);
    a.announce(t0, Event::Started, stats());
    assert!(!a.is_stopped());
    let (id, url) = expect_http(&mut a);
    for part in [
        "http://a.example/announce?info_hash=%11%11",
        "&peer_id=-PL0100-123456789012",
        "&port=6881",
        "&uploaded=10&downloaded=20&left=30",
        "&compact=1&numwant=200",
        "&event=started",
    ] {
        assert!(url.contains(part), "{url} lacks {part}");
    }
    assert!(status_of(&a, id, t0).updating);
    assert_eq!(status_of(&a, id, t0).last_result, "not contacted");
    assert_eq!(status_of(&a, id, t0).outcome, Outcome::NotContacted);

    let t1 = t0 + secs(1);
    a.on_http_result(id, http_ok(1800, &["10.0.0.1:6881", "10.0.0.2:6882"]), t1);
    assert_eq!(
        actions(&mut a),
        vec![Action::Peers {
            tracker: id,
            peers: addrs(&["10.0.0.1:6881", "10.0.0.2:6882"])
        }]
    );
    assert_eq!(a.next_deadline(), Some(t1 + secs(1800)));
    let s = status_of(&a, id, t1);
    assert_eq!(s.last_result, "ok: 2 peers");
    assert_eq!(s.outcome, Outcome::Answered);
    assert_eq!(s.next_announce_secs, Some(1800));
    assert!(!s.updating);

    tick(&mut a, t1 + secs(1799));
    expect_nothing(&mut a);
    tick(&mut a, t1 + secs(1800));
    let (id2, url) = expect_http(&mut a);
    assert_eq!(id2, id);
    assert!(!url.contains("event="), "{url}");
}

#[test]
fn interval_is_clamped() {
    let t0 = Instant::now();
    for (given, expect) in [
        (Some(5), 300),
        (Some(1_000_000), 7200),
        (None, 1800),
        (Some(-7), 1800),
        (Some(900), 900),
    ] {
        let mut a = announcer(&[&["http://a.example/announce"]]);
        a.announce(t0, Event::Started, stats());
        let (id, _) = expect_http(&mut a);
        let reply = match given {
            Some(n) => http_reply(vec![("interval", Value::Int(n))]),
            None => http_reply(vec![("peers", Value::Bytes(Vec::new()))]),
        };
        a.on_http_result(id, reply, t0);
        assert_eq!(a.next_deadline(), Some(t0 + secs(expect)), "{given:?}");
    }
}

#[test]
fn forced_announce_honours_min_interval() {
    let t0 = Instant::now();
    let mut a = announcer(&[&["http://a.example/announce"]]);
    a.announce(t0, Event::Started, stats());
    let (id, _) = expect_http(&mut a);
    a.on_http_result(
        id,
        http_reply(vec![
            ("interval", Value::Int(1800)),
            ("min interval", Value::Int(600)),
        ]),
        t0,
    );
    a.announce(t0 + secs(10), Event::None, stats());
    expect_nothing(&mut a);
    assert_eq!(a.next_deadline(), Some(t0 + secs(600)));
    tick(&mut a, t0 + secs(600));
    let (_, url) = expect_http(&mut a);
    assert!(!url.contains("event="));

    // Without a min interval, the default of 60 s applies.
    let mut a = announcer(&[&["http://a.example/announce"]]);
    a.announce(t0, Event::Started, stats());
    let (id, _) = expect_http(&mut a);
    a.on_http_result(id, http_ok(1800, &[]), t0);
    a.announce(t0 + secs(1), Event::None, stats());
    assert_eq!(a.next_deadline(), Some(t0 + secs(60)));
    // Long after, a forced announce goes at once.
    let mut a = announcer(&[&["http://a.example/announce"]]);
    a.announce(t0, Event::Started, stats());
    let (id, _) = expect_http(&mut a);
    a.on_http_result(id, http_ok(1800, &[]), t0);
    a.announce(t0 + secs(100), Event::None, stats());
    expect_http(&mut a);
}

#[test]
fn completed_is_sent_once() {
    let t0 = Instant::now();
    let mut a = announcer(&[&["http://a.example/announce"]]);
    a.announce(t0, Event::Started, stats());
    let (id, _) = expect_http(&mut a);
    a.on_http_result(id, http_ok(1800, &[]), t0);

    let t1 = t0 + secs(100);
    a.announce(t1, Event::Completed, seeding());
    let (_, url) = expect_http(&mut a);
    assert!(
        url.contains("&left=0&") && url.contains("event=completed"),
        "{url}"
    );
    a.on_http_result(id, http_ok(1800, &[]), t1);
    a.announce(t1 + secs(5), Event::Completed, seeding());
    expect_nothing(&mut a);
    a.tick(t1 + secs(1800), seeding());
    let (_, url) = expect_http(&mut a);
    assert!(!url.contains("event="), "{url}");
}

#[test]
fn completed_while_started_is_in_flight_follows_it() {
    let t0 = Instant::now();
    let mut a = announcer(&[&["http://a.example/announce"]]);
    a.announce(t0, Event::Started, stats());
    let (id, _) = expect_http(&mut a);
    a.announce(t0 + secs(1), Event::Completed, seeding());
    expect_nothing(&mut a);
    a.on_http_result(id, http_ok(1800, &[]), t0 + secs(2));
    let (_, url) = expect_http(&mut a);
    assert!(url.contains("event=completed"), "{url}");
}

#[test]
fn no_completed_when_started_complete() {
    let t0 = Instant::now();
    let mut a = announcer(&[&["http://a.example/announce"]]);
    a.announce(t0, Event::Started, seeding());
    let (id, url) = expect_http(&mut a);
    assert!(url.contains("&left=0&"));
    a.on_http_result(id, http_ok(1800, &[]), t0);
    a.announce(t0 + secs(60), Event::Completed, seeding());
    expect_nothing(&mut a);
}

#[test]
fn tracker_id_and_warning() {
    let t0 = Instant::now();
    let mut a = announcer(&[&["http://a.example/announce?pk=1"]]);
    a.announce(t0, Event::Started, stats());
    let (id, _) = expect_http(&mut a);
    a.on_http_result(
        id,
        http_reply(vec![
            ("interval", Value::Int(300)),
            ("tracker id", Value::str("T-1")),
            ("warning message", Value::str("client is old")),
            ("complete", Value::Int(8)),
            ("incomplete", Value::Int(2)),
        ]),
        t0,
    );
    let s = status_of(&a, id, t0);
    assert_eq!(s.warning.as_deref(), Some("client is old"));
    assert_eq!((s.seeders, s.leechers), (Some(8), Some(2)));
    tick(&mut a, t0 + secs(300));
    let (_, url) = expect_http(&mut a);
    assert!(
        url.starts_with("http://a.example/announce?pk=1&info_hash="),
        "{url}"
    );
    assert!(url.ends_with("&trackerid=T-1"), "{url}");
}

// ---------------------------------------------------------------------------
// Failures, back-off, tiers.

#[test]
fn backoff_doubles_and_resets() {
    let t0 = Instant::now();
    let mut a = announcer(&[&["http://a.example/announce"]]);
    a.announce(t0, Event::Started, stats());
    let mut now = t0;
    let mut waits = Vec::new();
    for _ in 0..10 {
        let (id, url) = expect_http(&mut a);
        assert!(url.contains("event=started"));
        a.on_http_result(id, Err(TrackerError::Timeout(Some(secs(30)))), now);
        let next = a.next_deadline().unwrap();
        waits.push(next.duration_since(now).as_secs());
        now = next;
        tick(&mut a, now);
    }
    assert_eq!(waits, [15, 30, 60, 120, 240, 480, 960, 1800, 1800, 1800]);
    let (id, _) = expect_http(&mut a);
    let s = status_of(&a, id, now);
    assert_eq!(s.failures, 10);
    assert_eq!(s.last_result, "timeout after 30 s");
    assert_eq!(s.outcome, Outcome::Failed);
    assert!(s.updating);
    a.on_http_result(id, http_ok(1800, &[]), now);
    let s = status_of(&a, id, now);
    assert_eq!((s.failures, s.last_result.as_str()), (0, "ok: 0 peers"));
    assert_eq!(a.next_deadline(), Some(now + secs(1800)));
    assert_eq!(a.announce_counts(), (1, 10));
}

#[test]
fn every_tier_at_once_and_failure_moves_on_within_the_tier() {
    let t0 = Instant::now();
    let mut a = announcer(&[
        &["http://a.example/announce", "http://b.example/announce"],
        &["http://c.example/announce"],
    ]);
    a.announce(t0, Event::Started, stats());
    // One request per tier, in parallel.
    let got = expect_https(&mut a);
    assert_eq!(got.len(), 2);
    let (first, third) = (got[0].0, got[1].0);
    assert_eq!(status_of(&a, first, t0).tier, 0);
    assert_eq!(url_of(&a, third), "http://c.example/announce");
    assert!(got[1].1.contains("event=started"));
    a.on_http_result(first, Ok(b"d14:failure reason4:nopee".to_vec()), t0);
    let (second, _) = expect_http(&mut a);
    assert_ne!(first, second);
    assert_eq!(status_of(&a, second, t0).tier, 0);
    assert_eq!(status_of(&a, first, t0).last_result, "error: nope");
    a.on_http_result(second, Err(TrackerError::Connect("refused".into())), t0);
    // Tier 0 is out of trackers: it waits for the first back-off.
    expect_nothing(&mut a);
    a.on_http_result(third, http_ok(1800, &["10.0.0.9:1"]), t0 + secs(1));
    assert!(
        matches!(actions(&mut a).as_slice(), [Action::Peers { tracker, .. }] if *tracker == third)
    );
    // For metrics: one answered, two failed (a failure reason counts as failed).
    assert_eq!(a.announce_counts(), (1, 2));

    // Tier 0 tries again when its first back-off (15 s) is over, with `started`;
    // tier 1 keeps its own schedule.
    assert_eq!(a.next_deadline(), Some(t0 + secs(15)));
    tick(&mut a, t0 + secs(15));
    let (again, url) = expect_http(&mut a);
    assert_eq!(status_of(&a, again, t0).tier, 0);
    assert!(url.contains("event=started"), "{url}");
    a.on_http_result(again, http_ok(900, &[]), t0 + secs(16));
    assert_eq!(status_of(&a, third, t0).next_announce_secs, Some(1801));
    assert_eq!(status_of(&a, again, t0).next_announce_secs, Some(916));
}

#[test]
fn answering_tracker_moves_to_front_of_tier() {
    let t0 = Instant::now();
    let mut a = announcer(&[&[
        "http://a.example/announce",
        "http://b.example/announce",
        "http://c.example/announce",
    ]]);
    a.announce(t0, Event::Started, stats());
    let (first, _) = expect_http(&mut a);
    a.on_http_result(first, Err(TrackerError::Closed), t0);
    let (second, _) = expect_http(&mut a);
    a.on_http_result(second, http_ok(1800, &[]), t0);
    let order: Vec<TrackerId> = a.status(t0).iter().map(|s| s.id).collect();
    assert_eq!(order[0], second);
    // Next round: the answering tracker first, though the failed one is ready again.
    tick(&mut a, t0 + secs(1800));
    let (next, url) = expect_http(&mut a);
    assert_eq!(next, second);
    assert!(!url.contains("event="));
}

#[test]
fn tiers_are_shuffled_by_seed() {
    let urls: Vec<String> = (0..8)
        .map(|i| format!("http://t{i}.example/announce"))
        .collect();
    let tier: Vec<&str> = urls.iter().map(String::as_str).collect();
    let order = |seed: u64| -> Vec<String> {
        build(
            &[&tier, &["http://last.example/announce"]],
            false,
            seed,
            no_scrape(),
        )
        .status(Instant::now())
        .into_iter()
        .map(|s| s.url)
        .collect()
    };
    assert_eq!(order(7), order(7));
    let orders: HashSet<Vec<String>> = (0..20).map(order).collect();
    assert!(orders.len() > 5, "shuffle looks constant");
    for o in &orders {
        // Same members; the second tier stays last.
        let mut sorted = o[..8].to_vec();
        sorted.sort();
        assert_eq!(sorted, urls);
        assert_eq!(o[8], "http://last.example/announce");
    }
}

#[test]
fn lost_http_result_times_out_and_late_result_is_ignored() {
    let t0 = Instant::now();
    let mut a = announcer(&[&["http://a.example/announce", "http://b.example/announce"]]);
    a.announce(t0, Event::Started, stats());
    let (first, _) = expect_http(&mut a);
    assert_eq!(a.next_deadline(), Some(t0 + secs(40)));
    tick(&mut a, t0 + secs(40));
    let (second, _) = expect_http(&mut a);
    assert_ne!(first, second);
    assert_eq!(status_of(&a, first, t0).last_result, "timeout after 30 s");
    // The first tracker's answer arrives late: ignored.
    a.on_http_result(first, http_ok(1800, &["10.0.0.1:1"]), t0 + secs(41));
    expect_nothing(&mut a);
    // Results for trackers that do not exist are ignored too.
    a.on_http_result(TrackerId(99), http_ok(1800, &[]), t0);
    a.on_resolved(TrackerId(99), addrs(&["10.0.0.1:1"]), t0);
    a.on_resolved(second, addrs(&["10.0.0.1:1"]), t0);
    expect_nothing(&mut a);
    assert!(status_of(&a, second, t0).updating);
}

#[test]
fn unusable_urls_are_listed_but_never_tried() {
    let t0 = Instant::now();
    let mut a = announcer(&[&["wss://b.example", "not a url", ""]]);
    a.announce(t0, Event::Started, stats());
    expect_nothing(&mut a);
    assert_eq!(a.next_deadline(), None);
    let status = a.status(t0);
    assert_eq!(status.len(), 2);
    let wss = status.iter().find(|s| s.url.starts_with("wss")).unwrap();
    assert_eq!(
        wss.last_result,
        "error: unusable tracker URL: 'wss' trackers are not supported"
    );
    assert_eq!(wss.next_announce_secs, None);
}

#[cfg(not(feature = "https"))]
#[test]
fn https_urls_need_the_feature() {
    let t0 = Instant::now();
    let mut a = announcer(&[&["https://a.example/announce"]]);
    a.announce(t0, Event::Started, stats());
    expect_nothing(&mut a);
    let status = a.status(t0);
    assert_eq!(status.len(), 1);
    assert_eq!(
        status[0].last_result,
        "error: https trackers are not supported: peerlet was built without the `https` feature"
    );
    assert_eq!(status[0].next_announce_secs, None);
}

#[test]
fn hostile_http_answers() {
    let t0 = Instant::now();
    let mut a = announcer(&[&["http://a.example/announce"]]);
    a.announce(t0, Event::Started, stats());
    let (id, _) = expect_http(&mut a);
    a.on_http_result(id, Ok(b"<html>oops</html>".to_vec()), t0);
    let s = status_of(&a, id, t0);
    assert!(
        s.last_result
            .starts_with("error: response is not bencode: "),
        "{}",
        s.last_result
    );

    // A huge peer list: capped, and the junk filtered out.
    tick(&mut a, t0 + secs(15));
    let (id, _) = expect_http(&mut a);
    let mut peers = compact(&[
        "0.0.0.0:80",
        "10.0.0.1:0",
        "224.0.0.1:80",
        "255.255.255.255:1",
    ]);
    for i in 0..50_000u32 {
        peers.extend_from_slice(&(0x0a00_0000 + i % 700).to_be_bytes());
        peers.extend_from_slice(&[0x1a, 0xe1]);
    }
    a.on_http_result(
        id,
        http_reply(vec![("peers", Value::Bytes(peers))]),
        t0 + secs(16),
    );
    match actions(&mut a).as_slice() {
        [Action::Peers { peers, .. }] => {
            // 1,000 kept by the parser, 4 of them junk, then 700 distinct.
            assert_eq!(peers.len(), 700);
            assert!(peers.iter().all(|p| p.port() == 6881));
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------
// UDP.

const UDP_ADDR: &str = "192.0.2.1:6969";

/// Starts a UDP announcer and answers resolve; returns the first connect's tid.
fn udp_started(a: &mut Announcer, t0: Instant) -> (TrackerId, u32) {
    a.announce(t0, Event::Started, stats());
    let (id, host, port) = expect_resolve(a);
    assert_eq!((host.as_str(), port), ("tracker.example", 6969));
    a.on_resolved(id, addrs(&[UDP_ADDR]), t0);
    let (to, req) = expect_udp(a);
    assert_eq!(to, UDP_ADDR.parse().unwrap());
    let Request::Connect(c) = req else {
        panic!("{req:?}")
    };
    (id, c.transaction_id)
}

fn udp_bytes(r: &Response) -> Vec<u8> {
    r.to_bytes().unwrap()
}

fn connect_reply(tid: u32, connection_id: u64) -> Vec<u8> {
    udp_bytes(&Response::Connect {
        transaction_id: tid,
        connection_id,
    })
}

fn announce_reply(tid: u32, interval: u32, peers: &[&str]) -> Vec<u8> {
    udp_bytes(&Response::Announce(udp::AnnounceResponse {
        transaction_id: tid,
        interval,
        leechers: 3,
        seeders: 4,
        peers: addrs(peers),
    }))
}

fn expect_announce(a: &mut Announcer) -> udp::AnnounceRequest {
    match expect_udp(a) {
        (_, Request::Announce(r)) => r,
        other => panic!("expected an announce, got {other:?}"),
    }
}

#[test]
fn udp_connect_announce() {
    let t0 = Instant::now();
    let from: SocketAddr = UDP_ADDR.parse().unwrap();
    let mut a = announcer(&[&["udp://tracker.example:6969/announce"]]);
    let (id, tid) = udp_started(&mut a, t0);
    assert!(a.on_udp(from, &connect_reply(tid, 0xc0ffee), t0 + secs(1)));
    let r = expect_announce(&mut a);
    assert_eq!(r.connection_id, 0xc0ffee);
    assert_eq!(r.info_hash, HASH);
    assert_eq!(r.peer_id, PEER_ID);
    assert_eq!((r.uploaded, r.downloaded, r.left), (10, 20, 30));
    assert_eq!(
        (r.event, r.port, r.num_want, r.ip),
        (Event::Started, 6881, 200, 0)
    );
    assert_ne!(r.transaction_id, tid);
    assert!(a.on_udp(
        from,
        &announce_reply(r.transaction_id, 900, &["10.0.0.5:7000"]),
        t0 + secs(2)
    ));
    assert_eq!(
        actions(&mut a),
        vec![Action::Peers {
            tracker: id,
            peers: addrs(&["10.0.0.5:7000"])
        }]
    );
    let s = status_of(&a, id, t0 + secs(2));
    assert_eq!((s.seeders, s.leechers), (Some(4), Some(3)));
    assert_eq!(s.last_result, "ok: 1 peer");
    assert_eq!(s.next_announce_secs, Some(900));
    // The same answer again is no longer expected.
    assert!(!a.on_udp(
        from,
        &announce_reply(r.transaction_id, 900, &[]),
        t0 + secs(3)
    ));
}

#[test]
fn udp_ipv6_tracker_gets_18_byte_peers() {
    let t0 = Instant::now();
    let from: SocketAddr = "[2001:db8::1]:6969".parse().unwrap();
    let mut a = announcer(&[&["udp://tracker.example:6969"]]);
    a.announce(t0, Event::Started, stats());
    let (id, _, _) = expect_resolve(&mut a);
    a.on_resolved(id, vec![from], t0);
    let (to, req) = expect_udp(&mut a);
    assert_eq!(to, from);
    assert!(a.on_udp(from, &connect_reply(req.transaction_id(), 1), t0));
    let r = expect_announce(&mut a);
    assert!(a.on_udp(
        from,
        &announce_reply(r.transaction_id, 900, &["[2001:db8::7]:51413"]),
        t0
    ));
    assert_eq!(
        actions(&mut a),
        vec![Action::Peers {
            tracker: id,
            peers: addrs(&["[2001:db8::7]:51413"])
        }]
    );
}

#[test]
fn udp_retransmission_schedule() {
    let t0 = Instant::now();
    let mut a = announcer(&[&["udp://tracker.example:6969"]]);
    let (id, tid) = udp_started(&mut a, t0);
    let mut sent_at = vec![0];
    let mut now = t0;
    while let Some(next) = a.next_deadline() {
        now = next;
        tick(&mut a, now);
        let got = actions(&mut a);
        match got.as_slice() {
            [Action::SendUdp { bytes, .. }] => {
                // The same connect request, same transaction id.
                assert_eq!(
                    Request::parse(bytes),
                    Ok(Request::Connect(udp::ConnectRequest {
                        transaction_id: tid
                    }))
                );
                sent_at.push(now.duration_since(t0).as_secs());
            }
            [] => break,
            other => panic!("{other:?}"),
        }
    }
    // BEP 15: 15 × 2^n seconds after each send, n = 0..=8.
    assert_eq!(sent_at, [0, 15, 45, 105, 225, 465, 945, 1905, 3825]);
    assert_eq!(now.duration_since(t0).as_secs(), 7665);
    let s = status_of(&a, id, now);
    assert_eq!(s.last_result, "timeout after 7665 s");
    assert_eq!(s.next_announce_secs, Some(15));
}

#[test]
fn udp_retransmission_base_is_configurable() {
    let t0 = Instant::now();
    let config = AnnouncerConfig {
        udp_retransmit_base: Duration::from_millis(100),
        udp_max_retransmits: 2,
        ..no_scrape()
    };
    let mut a = build(&[&["udp://tracker.example:6969"]], false, 3, config);
    udp_started(&mut a, t0);
    let mut sends = 1;
    let mut now = t0;
    for _ in 0..3 {
        now = a.next_deadline().unwrap();
        tick(&mut a, now);
        sends += actions(&mut a).len();
    }
    assert_eq!(sends, 3);
    assert_eq!(now.duration_since(t0), Duration::from_millis(700));
}

#[test]
fn udp_connection_id_is_reused_for_60_seconds() {
    let t0 = Instant::now();
    let from: SocketAddr = UDP_ADDR.parse().unwrap();
    let mut a = announcer(&[&["udp://tracker.example:6969"]]);
    let (_, tid) = udp_started(&mut a, t0);
    assert!(a.on_udp(from, &connect_reply(tid, 77), t0));
    let r = expect_announce(&mut a);
    assert!(a.on_udp(from, &announce_reply(r.transaction_id, 1800, &[]), t0));
    // Completed within 60 s: straight to announce with the same id.
    a.announce(t0 + secs(59), Event::Completed, seeding());
    let r = expect_announce(&mut a);
    assert_eq!(
        (r.connection_id, r.event, r.left),
        (77, Event::Completed, 0)
    );
    assert!(a.on_udp(
        from,
        &announce_reply(r.transaction_id, 1800, &[]),
        t0 + secs(59)
    ));
    // The regular announce, much later: the addresses are older than the
    // resolve TTL (30 min), so resolve again, then connect again.
    tick(&mut a, t0 + secs(59 + 1800));
    let (id, _, _) = expect_resolve(&mut a);
    a.on_resolved(id, vec![from], t0 + secs(59 + 1800));
    assert!(matches!(expect_udp(&mut a), (_, Request::Connect(_))));
}

#[test]
fn udp_connection_id_expires_during_retransmission() {
    let t0 = Instant::now();
    let from: SocketAddr = UDP_ADDR.parse().unwrap();
    let mut a = announcer(&[&["udp://tracker.example:6969"]]);
    let (_, tid) = udp_started(&mut a, t0);
    assert!(a.on_udp(from, &connect_reply(tid, 5), t0));
    expect_announce(&mut a);
    // 15 s and 45 s: still within the id's minute.
    for at in [15, 45] {
        assert_eq!(a.next_deadline(), Some(t0 + secs(at)));
        tick(&mut a, t0 + secs(at));
        assert_eq!(expect_announce(&mut a).connection_id, 5);
    }
    // 105 s: expired, so connect first.
    assert_eq!(a.next_deadline(), Some(t0 + secs(105)));
    tick(&mut a, t0 + secs(105));
    let (_, req) = expect_udp(&mut a);
    let Request::Connect(c) = req else {
        panic!("{req:?}")
    };
    // The retransmission count goes on: this is send 3, so the wait is 15 × 2^3.
    assert_eq!(a.next_deadline(), Some(t0 + secs(105 + 120)));
    assert!(a.on_udp(from, &connect_reply(c.transaction_id, 6), t0 + secs(106)));
    assert_eq!(expect_announce(&mut a).connection_id, 6);
}

#[test]
fn udp_answers_must_match_transaction_and_address() {
    let t0 = Instant::now();
    let from: SocketAddr = UDP_ADDR.parse().unwrap();
    let mut a = announcer(&[&["udp://tracker.example:6969"]]);
    let (id, tid) = udp_started(&mut a, t0);
    let deadline = a.next_deadline();
    // Wrong transaction id, wrong address, wrong port, too short: not ours.
    assert!(!a.on_udp(from, &connect_reply(tid ^ 1, 1), t0));
    assert!(!a.on_udp(
        "192.0.2.2:6969".parse().unwrap(),
        &connect_reply(tid, 1),
        t0
    ));
    assert!(!a.on_udp(
        "192.0.2.1:6970".parse().unwrap(),
        &connect_reply(tid, 1),
        t0
    ));
    assert!(!a.on_udp(from, &[0, 0, 0, 0, 1, 2, 3], t0));
    assert!(!a.on_udp(from, &[], t0));
    expect_nothing(&mut a);
    assert_eq!(a.next_deadline(), deadline);
    assert!(status_of(&a, id, t0).updating);
    // The same address as a dual-stack socket reports it: ours.
    let mapped: SocketAddr = "[::ffff:192.0.2.1]:6969".parse().unwrap();
    assert!(a.on_udp(mapped, &connect_reply(tid, 1), t0));
    let r = expect_announce(&mut a);
    // An answer of the wrong kind from the right place is a failure.
    let wrong = connect_reply(r.transaction_id, 9);
    assert!(a.on_udp(from, &wrong, t0));
    assert_eq!(
        status_of(&a, id, t0).last_result,
        "error: bad response: unexpected connect response"
    );
}

#[test]
fn udp_garbage_from_the_tracker_is_a_failure() {
    let t0 = Instant::now();
    let from: SocketAddr = UDP_ADDR.parse().unwrap();
    let tiers: &[&[&str]] = &[&["udp://tracker.example:6969", "http://b.example/announce"]];
    // A seed whose shuffle puts the UDP tracker first.
    let mut a = (1..64)
        .map(|seed| build(tiers, false, seed, no_scrape()))
        .find(|a| a.status(t0)[0].url.starts_with("udp:"))
        .unwrap();
    let (id, tid) = udp_started(&mut a, t0);
    assert!(a.on_udp(from, &connect_reply(tid, 1), t0));
    let r = expect_announce(&mut a);
    // An announce response whose peer list ends mid-peer.
    let mut bad = announce_reply(r.transaction_id, 900, &["10.0.0.1:1"]);
    bad.pop();
    assert!(a.on_udp(from, &bad, t0));
    assert!(status_of(&a, id, t0)
        .last_result
        .starts_with("error: bad UDP packet: "));
    // And the tier's next tracker gets its turn at once.
    let (next, _) = expect_http(&mut a);
    assert_eq!(url_of(&a, next), "http://b.example/announce");
}

#[test]
fn udp_error_response_drops_the_connection_id() {
    let t0 = Instant::now();
    let from: SocketAddr = UDP_ADDR.parse().unwrap();
    let mut a = announcer(&[&["udp://tracker.example:6969"]]);
    let (id, tid) = udp_started(&mut a, t0);
    assert!(a.on_udp(from, &connect_reply(tid, 1), t0));
    let r = expect_announce(&mut a);
    let err = udp_bytes(&Response::Error {
        transaction_id: r.transaction_id,
        message: "unregistered torrent".into(),
    });
    assert!(a.on_udp(from, &err, t0));
    assert_eq!(
        status_of(&a, id, t0).last_result,
        "error: unregistered torrent"
    );
    // Retry after the back-off starts with a connect, though 15 s < 60 s.
    tick(&mut a, t0 + secs(15));
    assert!(matches!(expect_udp(&mut a), (_, Request::Connect(_))));
}

#[test]
fn udp_resolution_failures() {
    let t0 = Instant::now();
    let mut a = announcer(&[&["udp://tracker.example:6969"]]);
    a.announce(t0, Event::Started, stats());
    let (id, _, _) = expect_resolve(&mut a);
    a.on_resolved(id, Vec::new(), t0);
    assert_eq!(
        status_of(&a, id, t0).last_result,
        "error: could not resolve tracker.example"
    );
    // Next try after the back-off; this time the resolver never answers.
    tick(&mut a, t0 + secs(15));
    expect_resolve(&mut a);
    assert_eq!(a.next_deadline(), Some(t0 + secs(45)));
    tick(&mut a, t0 + secs(45));
    assert!(status_of(&a, id, t0)
        .last_result
        .contains("(no answer in 30 s)"));
}

// ---------------------------------------------------------------------------
// Stopping.

#[test]
fn stop_sends_stopped_to_announced_trackers() {
    let t0 = Instant::now();
    let mut a = announcer(&[&["http://a.example/announce", "http://b.example/announce"]]);
    a.announce(t0, Event::Started, stats());
    let (first, _) = expect_http(&mut a);
    a.on_http_result(first, http_ok(1800, &[]), t0);
    // Later the first fails, so the second hears `started` too.
    tick(&mut a, t0 + secs(1800));
    let (again, _) = expect_http(&mut a);
    a.on_http_result(again, Err(TrackerError::Closed), t0 + secs(1800));
    let (second, _) = expect_http(&mut a);
    a.on_http_result(second, http_ok(1800, &[]), t0 + secs(1801));
    actions(&mut a);

    let ts = t0 + secs(2000);
    a.stop(ts, seeding());
    let got = actions(&mut a);
    assert_eq!(got.len(), 2);
    for action in &got {
        let Action::HttpGet { url, timeout, .. } = action else {
            panic!("{action:?}")
        };
        assert!(
            url.contains("event=stopped") && url.contains("numwant=0"),
            "{url}"
        );
        assert_eq!(*timeout, secs(5));
    }
    assert!(!a.is_stopped());
    a.on_http_result(first, http_ok(1800, &["10.0.0.1:1"]), ts);
    assert!(!a.is_stopped());
    // No peers are handed out while stopping.
    expect_nothing(&mut a);
    a.on_http_result(second, Err(TrackerError::Closed), ts);
    assert!(a.is_stopped());
    assert_eq!(a.next_deadline(), None);
    tick(&mut a, ts + secs(10_000));
    expect_nothing(&mut a);
}

#[test]
fn stop_is_bounded_in_time() {
    let t0 = Instant::now();
    let from: SocketAddr = UDP_ADDR.parse().unwrap();
    let mut a = announcer(&[&["udp://tracker.example:6969"]]);
    let (_, tid) = udp_started(&mut a, t0);
    assert!(a.on_udp(from, &connect_reply(tid, 1), t0));
    let r = expect_announce(&mut a);
    assert!(a.on_udp(from, &announce_reply(r.transaction_id, 1800, &[]), t0));
    actions(&mut a);
    // Stopping a minute later: the id expired, so connect, and nobody answers.
    let ts = t0 + secs(100);
    a.stop(ts, stats());
    assert!(matches!(expect_udp(&mut a), (_, Request::Connect(_))));
    assert_eq!(a.next_deadline(), Some(ts + secs(5)));
    tick(&mut a, ts + secs(5));
    assert!(a.is_stopped());
    assert_eq!(a.next_deadline(), None);
}

#[test]
fn stop_with_nothing_announced_is_immediate() {
    let t0 = Instant::now();
    let mut a = announcer(&[&["http://a.example/announce"]]);
    a.stop(t0, stats());
    assert!(a.is_stopped());
    a.announce(t0, Event::Started, stats());
    let (id, _) = expect_http(&mut a);
    // `started` still in flight: nothing to stop; its late answer is ignored.
    a.stop(t0 + secs(1), stats());
    assert!(a.is_stopped());
    expect_nothing(&mut a);
    a.on_http_result(id, http_ok(1800, &["10.0.0.1:1"]), t0 + secs(2));
    expect_nothing(&mut a);
    assert_eq!(a.next_deadline(), None);
}

#[test]
fn restart_after_stop_sends_started_again() {
    let t0 = Instant::now();
    let mut a = announcer(&[&["http://a.example/announce"]]);
    a.announce(t0, Event::Started, stats());
    let (id, _) = expect_http(&mut a);
    a.on_http_result(id, http_ok(1800, &[]), t0);
    a.stop(t0 + secs(10), stats());
    let (_, url) = expect_http(&mut a);
    assert!(url.contains("event=stopped"));
    a.on_http_result(id, http_ok(1800, &[]), t0 + secs(11));
    assert!(a.is_stopped());
    a.announce(t0 + secs(20), Event::Started, stats());
    let (_, url) = expect_http(&mut a);
    assert!(url.contains("event=started"), "{url}");
}

// ---------------------------------------------------------------------------
// Tracker lists.

#[test]
fn private_torrents_take_no_extra_trackers() {
    let t0 = Instant::now();
    let mut a = build(&[&["http://a.example/announce"]], true, 1, no_scrape());
    assert!(a.is_private());
    assert_eq!(
        a.add_tracker("http://other.example/announce", t0),
        Err(TrackerError::Private)
    );
    assert_eq!(a.status(t0).len(), 1);
}

#[test]
fn add_tracker_to_public_torrent() {
    let t0 = Instant::now();
    let mut a = announcer(&[]);
    a.announce(t0, Event::Started, stats());
    expect_nothing(&mut a);
    assert_eq!(a.next_deadline(), None);
    let id = a.add_tracker("http://new.example/announce", t0).unwrap();
    assert_eq!(a.add_tracker(" http://new.example/announce ", t0), Ok(id));
    let (got, url) = expect_http(&mut a);
    assert_eq!(got, id);
    assert!(url.contains("event=started"));
    assert_eq!(status_of(&a, id, t0).tier, 0);
}

#[test]
fn tracker_lists_are_bounded_and_deduplicated() {
    let urls: Vec<String> = (0..150).map(|i| format!("http://t{i}.example/a")).collect();
    let tier: Vec<&str> = urls.iter().map(String::as_str).collect();
    let a = announcer(&[&tier, &["http://t0.example/a"]]);
    let status = a.status(Instant::now());
    assert_eq!(status.len(), MAX_TRACKERS);
    assert!(status.iter().all(|s| s.tier == 0));
    let mut a = announcer(&[&tier]);
    assert!(a.add_tracker("http://x.example/a", Instant::now()).is_err());
}

// ---------------------------------------------------------------------------
// Every tier in parallel, caps, early re-announces, scrapes.

/// Five dead trackers (each its own tier, as magnets and most public
/// torrents list them) do not delay the live one in the sixth tier.
#[test]
fn dead_tiers_in_front_do_not_delay_a_live_one() {
    let t0 = Instant::now();
    let mut a = announcer(&[
        &["udp://127.0.52.1:1"],
        &["udp://127.0.52.1:2"],
        &["udp://127.0.52.1:3"],
        &["http://127.0.52.1:4/announce"],
        &["http://127.0.52.1:5/announce"],
        &["http://live.example/announce"],
    ]);
    a.announce(t0, Event::Started, stats());
    let got = actions(&mut a);
    assert_eq!(got.len(), 6, "{got:?}");
    let live = got
        .iter()
        .find_map(|x| match x {
            Action::HttpGet { tracker, url, .. } if url.starts_with("http://live.") => {
                Some(*tracker)
            }
            _ => None,
        })
        .expect("the live tracker is asked at once");
    a.on_http_result(live, http_ok(1800, &["10.0.0.1:6881"]), t0 + secs(1));
    assert!(matches!(actions(&mut a).as_slice(), [Action::Peers { .. }]));
}

#[test]
fn requests_in_flight_are_capped() {
    let t0 = Instant::now();
    let urls: Vec<String> = (0..20)
        .map(|i| format!("http://t{i}.example/announce"))
        .collect();
    let tiers: Vec<Vec<&str>> = urls.iter().map(|u| vec![u.as_str()]).collect();
    let tiers: Vec<&[&str]> = tiers.iter().map(Vec::as_slice).collect();
    let mut a = announcer(&tiers);
    a.announce(t0, Event::Started, stats());
    let first = expect_https(&mut a);
    assert_eq!(first.len(), 8);
    assert_eq!(a.n_inflight(), 8);
    // A slot frees: the next tier in order takes it.
    a.on_http_result(first[0].0, http_ok(1800, &[]), t0);
    let next = expect_https(&mut a);
    assert_eq!(next.len(), 1);
    assert_eq!(url_of(&a, next[0].0), "http://t8.example/announce");
    // The caller's cap over all torrents: no room, nothing starts, and no
    // deadline for the waiting tiers (the caller ticks again).
    a.set_global_room(0);
    a.on_http_result(first[1].0, http_ok(1800, &[]), t0);
    expect_nothing(&mut a);
    assert!(a.next_deadline().is_some_and(|d| d > t0));
    // Room again: up to the torrent's own cap.
    a.set_global_room(5);
    tick(&mut a, t0 + secs(1));
    assert_eq!(expect_https(&mut a).len(), 1);
    assert_eq!(a.n_inflight(), 8);
}

#[test]
fn completed_goes_once_to_each_tier() {
    let t0 = Instant::now();
    let mut a = announcer(&[
        &["http://a.example/announce"],
        &["http://b.example/announce"],
    ]);
    a.announce(t0, Event::Started, stats());
    for (id, _) in expect_https(&mut a) {
        a.on_http_result(id, http_ok(1800, &[]), t0);
    }
    a.announce(t0 + secs(5), Event::Completed, seeding());
    let got = expect_https(&mut a);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|(_, u)| u.contains("event=completed")));
    for (id, _) in got {
        a.on_http_result(id, http_ok(1800, &[]), t0 + secs(6));
    }
    a.announce(t0 + secs(7), Event::Completed, seeding());
    expect_nothing(&mut a);
    // Stop: `stopped` to both.
    a.stop(t0 + secs(8), seeding());
    let got = expect_https(&mut a);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|(_, u)| u.contains("event=stopped")));
}

/// The caller asks for peers every second (it has too few): each tier
/// announces no more often than its tracker's min interval.
#[test]
fn early_reannounce_respects_min_interval() {
    let t0 = Instant::now();
    let mut a = announcer(&[
        &["http://a.example/announce"],
        &["http://b.example/announce"],
    ]);
    a.announce(t0, Event::Started, stats());
    let ids: Vec<TrackerId> = expect_https(&mut a).into_iter().map(|(id, _)| id).collect();
    // a: min interval 120 s; b: none given (60 s).
    a.on_http_result(
        ids[0],
        http_reply(vec![
            ("interval", Value::Int(1800)),
            ("min interval", Value::Int(120)),
        ]),
        t0,
    );
    a.on_http_result(ids[1], http_ok(1800, &[]), t0);
    let mut sent: Vec<(TrackerId, u64)> = Vec::new();
    for s in 1..=600u64 {
        let now = t0 + secs(s);
        a.announce(now, Event::None, stats());
        tick(&mut a, now);
        for (id, url) in expect_https(&mut a) {
            assert!(!url.contains("event="), "{url}");
            sent.push((id, s));
            a.on_http_result(id, http_ok(1800, &[]), now);
        }
    }
    let at = |id: TrackerId| -> Vec<u64> {
        sent.iter()
            .filter(|(x, _)| *x == id)
            .map(|(_, s)| *s)
            .collect()
    };
    // The min interval of a reply without one is the default (60 s).
    assert_eq!(
        at(ids[0]),
        vec![120, 180, 240, 300, 360, 420, 480, 540, 600]
    );
    assert_eq!(
        at(ids[1]),
        vec![60, 120, 180, 240, 300, 360, 420, 480, 540, 600]
    );
}

#[test]
fn early_reannounce_never_below_the_floor() {
    let t0 = Instant::now();
    let mut a = announcer(&[&["http://a.example/announce"]]);
    a.announce(t0, Event::Started, stats());
    let (id, _) = expect_http(&mut a);
    // A tracker that allows anything: the 30 s floor still holds.
    a.on_http_result(
        id,
        http_reply(vec![
            ("interval", Value::Int(1800)),
            ("min interval", Value::Int(0)),
        ]),
        t0,
    );
    a.announce(t0 + secs(1), Event::None, stats());
    expect_nothing(&mut a);
    assert_eq!(a.next_deadline(), Some(t0 + secs(30)));
}

fn scraping() -> AnnouncerConfig {
    AnnouncerConfig::default()
}

#[test]
fn http_scrape_after_first_answer_then_every_30_minutes() {
    let t0 = Instant::now();
    let mut a = build(
        &[&["http://a.example/x/announce.php"]],
        false,
        1,
        scraping(),
    );
    a.announce(t0, Event::Started, stats());
    let (id, _) = expect_http(&mut a);
    a.on_http_result(id, http_ok(3600, &[]), t0);
    // The scrape follows the first answer (BEP 48 URL).
    let (sid, url) = expect_http(&mut a);
    assert_eq!(sid, id);
    assert!(
        url.starts_with("http://a.example/x/scrape.php?info_hash=%11%11"),
        "{url}"
    );
    let mut entry = Value::dict();
    entry.insert("complete", Value::Int(4));
    entry.insert("incomplete", Value::Int(7));
    entry.insert("downloaded", Value::Int(31));
    let files = Value::Dict([(HASH.to_vec(), entry)].into_iter().collect());
    a.on_http_result(id, http_reply(vec![("files", files)]), t0 + secs(1));
    let s = status_of(&a, id, t0);
    assert_eq!(
        (s.seeders, s.leechers, s.downloaded),
        (Some(4), Some(7), Some(31))
    );
    assert_eq!(s.last_result, "ok: 0 peers");
    // The next scrape is 30 min later, the announce an hour later.
    assert_eq!(a.next_deadline(), Some(t0 + secs(1800)));
    tick(&mut a, t0 + secs(1800));
    let (_, url) = expect_http(&mut a);
    assert!(url.contains("/scrape.php"), "{url}");
    // A failed scrape changes nothing for announces.
    a.on_http_result(id, Err(TrackerError::Closed), t0 + secs(1801));
    let s = status_of(&a, id, t0 + secs(1801));
    assert_eq!((s.failures, s.outcome), (0, Outcome::Answered));
    assert_eq!(s.seeders, Some(4));
    assert_eq!(a.next_deadline(), Some(t0 + secs(3600)));

    // No scrape form (BEP 48): never scraped.
    let mut a = build(&[&["http://a.example/track"]], false, 1, scraping());
    a.announce(t0, Event::Started, stats());
    let (id, _) = expect_http(&mut a);
    a.on_http_result(id, http_ok(1800, &[]), t0);
    expect_nothing(&mut a);
    assert_eq!(a.next_deadline(), Some(t0 + secs(1800)));
}

#[test]
fn udp_scrape_after_first_answer() {
    let t0 = Instant::now();
    let from: SocketAddr = UDP_ADDR.parse().unwrap();
    let mut a = build(&[&["udp://tracker.example:6969"]], false, 1, scraping());
    let (id, tid) = udp_started(&mut a, t0);
    assert!(a.on_udp(from, &connect_reply(tid, 7), t0));
    let r = expect_announce(&mut a);
    assert!(a.on_udp(from, &announce_reply(r.transaction_id, 1800, &[]), t0));
    // The connection id is still good: the scrape goes at once.
    let (to, req) = expect_udp(&mut a);
    assert_eq!(to, from);
    let Request::Scrape(s) = req else {
        panic!("{req:?}")
    };
    assert_eq!((s.connection_id, s.info_hashes), (7, vec![HASH]));
    let reply = udp_bytes(&Response::Scrape {
        transaction_id: s.transaction_id,
        entries: vec![udp::ScrapeEntry {
            seeders: 2,
            completed: 9,
            leechers: 5,
        }],
    });
    assert!(a.on_udp(from, &reply, t0 + secs(1)));
    let st = status_of(&a, id, t0);
    assert_eq!(
        (st.seeders, st.leechers, st.downloaded),
        (Some(2), Some(5), Some(9))
    );
    expect_nothing(&mut a);
}
