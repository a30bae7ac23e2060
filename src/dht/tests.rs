//! Node-level tests (two or three nodes, fake time) and the simulated
//! network (many nodes, loss, churn, announces then lookups).

use super::krpc::{Body, Message, Query, Response};
use super::*;

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn node(id: u8, now: Instant) -> Dht {
    Dht::new(NodeId([id; 20]), Config::default(), [id; 32], now)
}

/// Delivers between the listed nodes until quiet (bounded rounds).
fn pump(nodes: &mut [(&mut Dht, SocketAddr)], now: Instant) -> usize {
    let mut n = 0;
    for _ in 0..50 {
        let mut any = false;
        for i in 0..nodes.len() {
            while let Some((to, bytes)) = nodes[i].0.poll_transmit() {
                any = true;
                n += 1;
                let from = nodes[i].1;
                if let Some(j) = nodes.iter().position(|(_, ad)| *ad == to) {
                    nodes[j].0.on_datagram(&bytes, from, now);
                }
            }
        }
        if !any {
            break;
        }
    }
    n
}

fn query(tid: &[u8], id: NodeId, q: Query, ro: bool) -> Vec<u8> {
    Message {
        tid: tid.to_vec(),
        body: Body::Query { id, query: q },
        ip: None,
        read_only: ro,
        version: None,
    }
    .emit()
}

fn sent(d: &mut Dht) -> Vec<(SocketAddr, Message)> {
    let mut out = Vec::new();
    while let Some((to, b)) = d.poll_transmit() {
        out.push((to, Message::parse(&b).unwrap()));
    }
    out
}

#[test]
fn bep42_vectors() {
    let cases: [(&str, u8, [u8; 3]); 5] = [
        ("124.31.75.21", 1, [0x5f, 0xbf, 0xbf]),
        ("21.75.31.124", 86, [0x5a, 0x3c, 0xe9]),
        ("65.23.51.170", 22, [0xa5, 0xd4, 0x32]),
        ("84.124.73.14", 65, [0x1b, 0x03, 0x21]),
        ("43.213.53.83", 90, [0xe5, 0x6f, 0x6c]),
    ];
    for (ip, rand, prefix) in cases {
        let ip: IpAddr = ip.parse().unwrap();
        let mut r = [0x11u8; 20];
        r[19] = rand;
        let id = id_for_ip(ip, r);
        assert_eq!(id.0[0], prefix[0], "{ip}");
        assert_eq!(id.0[1], prefix[1], "{ip}");
        assert_eq!(id.0[2] & 0xf8, prefix[2] & 0xf8, "{ip}");
        assert_eq!(id.0[19], rand);
        assert!(id_matches_ip(&id, &ip));
        assert!(!id_matches_ip(&id, &"1.1.1.1".parse().unwrap()));
    }
    // Local addresses are exempt; IPv6 ids check too.
    assert!(id_matches_ip(
        &NodeId([0; 20]),
        &"192.168.1.1".parse().unwrap()
    ));
    let v6: IpAddr = "2001:db8::5".parse().unwrap();
    assert!(id_matches_ip(&id_for_ip(v6, [7; 20]), &v6));
}

#[test]
fn ping_adds_node_both_ways_and_find_node_learns() {
    let now = Instant::now();
    let (aa, ba) = (a("10.0.1.1:6881"), a("10.0.2.1:6881"));
    let mut x = node(1, now);
    let mut y = node(2, now);
    x.add_node(ba, now);
    pump(&mut [(&mut x, aa), (&mut y, ba)], now);
    assert_eq!(x.summary(now).nodes, 1, "x added y after its pong");
    y.tick(now);
    pump(&mut [(&mut x, aa), (&mut y, ba)], now);
    // y heard a query from a stranger with room: pinged it, and x answered.
    assert_eq!(y.summary(now).nodes, 1);
    assert_eq!(x.saved_nodes(10), vec![(NodeId([2; 20]), ba)]);
    assert_eq!(x.stats().answered_ping, 1);
}

#[test]
fn read_only_answers_nothing_and_flags_queries() {
    let now = Instant::now();
    let mut d = node(1, now);
    d.set_read_only(true);
    let q = query(b"t1", NodeId([9; 20]), Query::Ping, false);
    d.on_datagram(&q, a("10.0.0.9:1"), now);
    assert!(sent(&mut d).is_empty());
    assert_eq!(d.stats().read_only_dropped, 1);
    d.add_node(a("10.0.0.9:1"), now);
    let out = sent(&mut d);
    assert_eq!(out.len(), 1);
    assert!(out[0].1.read_only, "queries carry ro=1");
    // A read-only querier is answered but never added.
    let mut e = node(2, now);
    e.on_datagram(
        &query(b"t2", NodeId([9; 20]), Query::Ping, true),
        a("10.0.0.9:1"),
        now,
    );
    let out = sent(&mut e);
    assert_eq!(
        out.len(),
        1,
        "answered, and no ping back to a read-only node"
    );
    assert_eq!(e.summary(now).nodes, 0);
}

#[test]
fn rate_limits_per_source_and_global() {
    let now = Instant::now();
    let mut d = node(1, now);
    let q = query(b"t1", NodeId([9; 20]), Query::Ping, true);
    for _ in 0..100 {
        d.on_datagram(&q, a("10.0.0.9:1"), now);
    }
    // Burst of 4× query_rate from one address.
    assert_eq!(sent(&mut d).len(), 40);
    assert_eq!(d.stats().rate_limited, 60);
    // A second later, query_rate more.
    let later = now + Duration::from_secs(1);
    for _ in 0..100 {
        d.on_datagram(&q, a("10.0.0.9:1"), later);
    }
    assert_eq!(sent(&mut d).len(), 10);
    // Global: 4 × 250 in a burst across many sources.
    let mut d = node(1, now);
    let mut n_sent = 0;
    for i in 0..2000u32 {
        let b = i.to_be_bytes();
        d.on_datagram(&q, SocketAddr::new([10, b[1], b[2], b[3]].into(), 1), now);
        n_sent += sent(&mut d).len();
    }
    assert_eq!(n_sent, 1000);
}

#[test]
fn announce_needs_our_token_and_implied_port_works() {
    let now = Instant::now();
    let mut d = node(1, now);
    let from = a("10.0.0.9:4000");
    let ih = [5u8; 20];
    let ann = |tok: &[u8], implied: bool| {
        query(
            b"an",
            NodeId([9; 20]),
            Query::AnnouncePeer {
                info_hash: ih,
                port: 7777,
                implied_port: implied,
                token: tok.to_vec(),
            },
            true,
        )
    };
    d.on_datagram(&ann(b"forged", false), from, now);
    let out = sent(&mut d);
    assert!(matches!(out[0].1.body, Body::Error { code: 203, .. }));
    assert_eq!(d.stats().bad_tokens, 1);
    let gp = query(
        b"gp",
        NodeId([9; 20]),
        Query::GetPeers {
            info_hash: ih,
            want: None,
        },
        true,
    );
    d.on_datagram(&gp, from, now);
    let out = sent(&mut d);
    let Body::Response { response, .. } = &out[0].1.body else {
        panic!()
    };
    let token = response.token.clone().unwrap();
    assert!(response.values.is_empty());
    // The token is bound to the IP.
    d.on_datagram(&ann(&token, false), a("10.0.0.10:4000"), now);
    assert!(matches!(sent(&mut d)[0].1.body, Body::Error { .. }));
    d.on_datagram(&ann(&token, true), from, now);
    assert!(matches!(sent(&mut d)[0].1.body, Body::Response { .. }));
    d.on_datagram(&gp, a("10.0.0.11:1"), now);
    let out = sent(&mut d);
    let Body::Response { response, .. } = &out[0].1.body else {
        panic!()
    };
    assert_eq!(response.values, vec![from], "implied_port: the source port");
    // Expired after 30 minutes.
    d.tick(now + Duration::from_secs(31 * 60));
    assert_eq!(d.summary(now).stored_peers, 0);
}

#[test]
fn answers_only_from_the_queried_address_with_our_tid() {
    let now = Instant::now();
    let mut d = node(1, now);
    d.add_node(a("10.0.0.2:1"), now);
    let out = sent(&mut d);
    let tid = out[0].1.tid.clone();
    let resp = |tid: &[u8]| {
        Message {
            tid: tid.to_vec(),
            body: Body::Response {
                id: NodeId([2; 20]),
                response: Response::default(),
            },
            ip: None,
            read_only: false,
            version: None,
        }
        .emit()
    };
    d.on_datagram(&resp(&tid), a("10.0.0.3:1"), now);
    d.on_datagram(&resp(b"zzzz"), a("10.0.0.2:1"), now);
    assert_eq!(d.stats().invalid, 2);
    assert_eq!(d.summary(now).nodes, 0);
    d.on_datagram(&resp(&tid), a("10.0.0.2:1"), now);
    assert_eq!(d.summary(now).nodes, 1);
    // The same answer again: the transaction is gone.
    d.on_datagram(&resp(&tid), a("10.0.0.2:1"), now);
    assert_eq!(d.stats().invalid, 3);
}

#[test]
fn external_ip_votes_change_id() {
    let now = Instant::now();
    let mut d = node(1, now);
    let me = a("84.124.73.14:6881");
    for i in 0..4u8 {
        let from = SocketAddr::new([20, i, 0, 1].into(), 6881);
        d.add_node(from, now);
        let out = sent(&mut d);
        let tid = out.last().unwrap().1.tid.clone();
        let r = Message {
            tid,
            body: Body::Response {
                id: NodeId([10 + i; 20]),
                response: Response::default(),
            },
            ip: Some(me),
            read_only: false,
            version: None,
        };
        d.on_datagram(&r.emit(), from, now);
        if i < 2 {
            assert_eq!(d.external_ip(), None, "two votes are not enough");
        }
    }
    assert_eq!(d.external_ip(), Some(me.ip()));
    assert_eq!(d.poll_event(), Some(Event::ExternalIp(me.ip())));
    assert!(id_matches_ip(&d.id(), &me.ip()));
    assert_eq!(d.summary(now).nodes, 4, "the table is kept");
    // Never sent to our own address.
    d.add_node(me, now);
    assert!(sent(&mut d).is_empty());
}

#[test]
fn saved_round_trip_and_damage() {
    let nodes = vec![
        (NodeId([1; 20]), a("1.2.3.4:5")),
        (NodeId([2; 20]), a("[2001:db8::1]:6881")),
        (NodeId([3; 20]), a("5.6.7.8:9")),
    ];
    let b = encode_saved(&nodes);
    assert_eq!(decode_saved(&b, 10), nodes);
    assert_eq!(decode_saved(&b, 2), nodes[..2]);
    for i in 0..b.len() {
        assert!(decode_saved(&b[..i], 10).len() <= 3);
    }
    assert_eq!(decode_saved(&b[..b.len() - 1], 10), nodes[..2]);
    assert!(decode_saved(b"garbage", 10).is_empty());
    let mut bad = b.clone();
    bad[SAVED_MAGIC.len() + 27] = 9;
    assert_eq!(decode_saved(&bad, 10), nodes[..1]);
}

#[test]
fn hostile_datagrams_never_panic() {
    let now = Instant::now();
    let mut d = node(1, now);
    let mut rng = Rng::new([3; 32]);
    let valid = query(
        b"aa",
        NodeId([9; 20]),
        Query::GetPeers {
            info_hash: [1; 20],
            want: None,
        },
        false,
    );
    for i in 0..20_000u32 {
        let mut b = valid.clone();
        for _ in 0..1 + rng.below(4) {
            let p = rng.below(b.len());
            b[p] = rng.next_u64() as u8;
        }
        b.truncate(rng.below(b.len() + 1));
        let from = SocketAddr::new([10, 0, (i % 7) as u8, 1].into(), 1 + (i % 3) as u16);
        d.on_datagram(&b, from, now + Duration::from_millis(u64::from(i)));
        while d.poll_transmit().is_some() {}
    }
    let deep = [
        b"d1:t2:aa1:y1:q1:ad".as_slice(),
        &[b'l'; 5000],
        &[b'e'; 5000],
        b"ee",
    ]
    .concat();
    d.on_datagram(&deep, a("10.0.0.1:1"), now);
}

/// Answer size over query size for each method, with a full answer
/// (8 nodes, 50 stored peers). Printed, and bounded.
#[test]
fn amplification_ratios() {
    let now = Instant::now();
    let mut d = node(1, now);
    // Fill the table with 8 nodes near the target, by answering pings.
    for i in 0..8u8 {
        let from = SocketAddr::new([30, i, 0, 1].into(), 6881);
        d.add_node(from, now);
        let out = sent(&mut d);
        let r = Message {
            tid: out[0].1.tid.clone(),
            body: Body::Response {
                id: NodeId([100 + i; 20]),
                response: Response::default(),
            },
            ip: None,
            read_only: false,
            version: None,
        };
        d.on_datagram(&r.emit(), from, now);
    }
    assert_eq!(d.summary(now).nodes, 8);
    let ih = [7u8; 20];
    for i in 0..60u32 {
        let from = SocketAddr::new([40, 0, (i / 200) as u8, (i % 200) as u8 + 1].into(), 6881);
        let gp = query(
            b"aa",
            NodeId([9; 20]),
            Query::GetPeers {
                info_hash: ih,
                want: None,
            },
            true,
        );
        d.on_datagram(&gp, from, now);
        let out = sent(&mut d);
        let Body::Response { response, .. } = &out[0].1.body else {
            panic!()
        };
        let ann = Query::AnnouncePeer {
            info_hash: ih,
            port: 1,
            implied_port: true,
            token: response.token.clone().unwrap(),
        };
        d.on_datagram(&query(b"aa", NodeId([9; 20]), ann, true), from, now);
        sent(&mut d);
    }
    let cases = [
        ("ping", Query::Ping, 1.6),
        (
            "find_node",
            Query::FindNode {
                target: NodeId([101; 20]),
                want: None,
            },
            4.0,
        ),
        (
            "get_peers",
            Query::GetPeers {
                info_hash: ih,
                want: None,
            },
            9.0,
        ),
        (
            "announce_peer",
            Query::AnnouncePeer {
                info_hash: ih,
                port: 1,
                implied_port: true,
                token: vec![0; 8],
            },
            1.0,
        ),
    ];
    for (i, (name, q, max)) in cases.into_iter().enumerate() {
        let bytes = query(b"aa", NodeId([9; 20]), q, true);
        let from = SocketAddr::new([50, 0, 0, i as u8 + 1].into(), 6881);
        d.on_datagram(&bytes, from, now);
        let out: Vec<_> = std::iter::from_fn(|| d.poll_transmit()).collect();
        assert_eq!(out.len(), 1, "{name}");
        let ratio = out[0].1.len() as f64 / bytes.len() as f64;
        println!(
            "amplification {name}: query {} B, answer {} B, ratio {ratio:.2}",
            bytes.len(),
            out[0].1.len()
        );
        assert!(ratio <= max, "{name}: {ratio}");
    }
}

/// The simulated network: `n` nodes on distinct /24s, 5 % loss, churn of
/// 10 %/hour, `n_hashes` announced by one node each and looked up by
/// another. Returns the figures the report quotes.
struct SimResult {
    lookups: usize,
    found: usize,
    median_hops: u8,
    messages_per_lookup: f64,
    max_table: usize,
    max_store: usize,
    max_txs: usize,
}

fn sim_addr(i: usize) -> SocketAddr {
    SocketAddr::new([10, (i / 250) as u8 + 1, (i % 250) as u8, 1].into(), 6881)
}

struct Sim {
    nodes: Vec<Option<Dht>>,
    index: HashMap<SocketAddr, usize>,
    now: Instant,
    rng: Rng,
    loss_pct: usize,
    delivered: u64,
    max: (usize, usize, usize),
}

impl Sim {
    fn spawn(&mut self, i: usize, seeds: &[usize]) {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
        seed[8] = 0x5a;
        let id = NodeId(crate::hash::sha1(&seed));
        let config = Config {
            peer_port: 6881,
            ..Config::default()
        };
        let mut d = Dht::new(id, config, seed, self.now);
        for &s in seeds {
            d.add_bootstrap(sim_addr(s), self.now);
        }
        if i >= self.nodes.len() {
            self.nodes.resize_with(i + 1, || None);
        }
        self.nodes[i] = Some(d);
        self.index.insert(sim_addr(i), i);
    }

    /// Delivers until quiet (bounded rounds); loss applies per datagram.
    fn deliver(&mut self) {
        for _ in 0..200 {
            let mut queue = Vec::new();
            for (i, slot) in self.nodes.iter_mut().enumerate() {
                if let Some(d) = slot {
                    while let Some((to, b)) = d.poll_transmit() {
                        queue.push((i, to, b));
                    }
                }
            }
            if queue.is_empty() {
                return;
            }
            for (i, to, b) in queue {
                self.delivered += 1;
                if self.rng.below(100) < self.loss_pct {
                    continue;
                }
                if let Some(&j) = self.index.get(&to) {
                    if let Some(d) = self.nodes.get_mut(j).and_then(Option::as_mut) {
                        d.on_datagram(&b, sim_addr(i), self.now);
                    }
                }
            }
        }
    }

    fn step(&mut self, dt: Duration) {
        self.now += dt;
        let now = self.now;
        for d in self.nodes.iter_mut().flatten() {
            d.tick(now);
        }
        self.deliver();
        for d in self.nodes.iter().flatten() {
            let (t, s, x, _) = d.footprint();
            self.max = (self.max.0.max(t), self.max.1.max(s), self.max.2.max(x));
        }
    }

    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_some())
            .collect()
    }
}

fn simulate(n: usize, n_hashes: usize, seed: u8) -> SimResult {
    let mut sim = Sim {
        nodes: Vec::new(),
        index: HashMap::new(),
        now: Instant::now(),
        rng: Rng::new([seed; 32]),
        loss_pct: 5,
        delivered: 0,
        max: (0, 0, 0),
    };
    // Join in waves of 50 a second, each from 3 random earlier nodes.
    sim.spawn(0, &[]);
    let mut next = 1;
    while next < n {
        for _ in 0..50.min(n - next) {
            let seeds: Vec<usize> = (0..3).map(|_| sim.rng.below(next)).collect();
            sim.spawn(next, &seeds);
            next += 1;
        }
        sim.step(Duration::from_secs(1));
    }
    // Settle for five minutes.
    for _ in 0..300 {
        sim.step(Duration::from_secs(1));
    }
    // Churn: 10 %/hour of n, spread over the measured period (one churn
    // event every `churn_every` seconds); announce, then look up.
    let churn_every = (36_000 / n).max(1) as u64;
    let mut holders = Vec::new();
    let live = sim.live();
    for h in 0..n_hashes {
        let holder = live[sim.rng.below(live.len())];
        let mut ih = [0u8; 20];
        ih[..8].copy_from_slice(&(h as u64 * 7919 + 1).to_be_bytes());
        let ih = InfoHash(crate::hash::sha1(&ih));
        let now = sim.now;
        if let Some(d) = sim.nodes[holder].as_mut() {
            d.track(ih, true, now);
        }
        holders.push((ih, holder));
    }
    let mut t = 0u64;
    let churn = |sim: &mut Sim, t: u64, next: &mut usize| {
        if t % churn_every == 0 {
            let live = sim.live();
            let victim = live[sim.rng.below(live.len())];
            sim.nodes[victim] = None;
            sim.index.remove(&sim_addr(victim));
            let live = sim.live();
            let seeds: Vec<usize> = (0..3).map(|_| live[sim.rng.below(live.len())]).collect();
            sim.spawn(*next, &seeds);
            *next += 1;
        }
    };
    for _ in 0..120 {
        t += 1;
        churn(&mut sim, t, &mut next);
        sim.step(Duration::from_secs(1));
    }
    // Lookups from other nodes, spread over ten minutes.
    let before = sim.delivered;
    let mut lookers = Vec::new();
    for (k, (ih, holder)) in holders.iter().enumerate() {
        let live = sim.live();
        let mut looker = live[sim.rng.below(live.len())];
        if looker == *holder {
            looker = live[(k + 1) % live.len()];
        }
        let now = sim.now;
        if let Some(d) = sim.nodes[looker].as_mut() {
            d.track(*ih, false, now);
        }
        lookers.push((looker, *ih, sim_addr(*holder)));
        if k % 10 == 9 {
            t += 1;
            churn(&mut sim, t, &mut next);
            sim.step(Duration::from_secs(1));
        }
    }
    for _ in 0..120 {
        t += 1;
        churn(&mut sim, t, &mut next);
        sim.step(Duration::from_secs(1));
    }
    let messages = sim.delivered - before;
    // Which lookups found their holder (from the looker's events).
    let mut found = 0;
    let mut hops = Vec::new();
    let mut done = 0;
    let mut events: HashMap<usize, Vec<Event>> = HashMap::new();
    for (i, d) in sim.nodes.iter_mut().enumerate() {
        if let Some(d) = d {
            events.insert(i, std::iter::from_fn(|| d.poll_event()).collect());
        }
    }
    for (looker, ih, holder) in &lookers {
        let Some(events) = events.get(looker) else {
            continue;
        };
        let hit = events.iter().any(|e| {
            matches!(e, Event::Peers { info_hash, peers } if info_hash == ih && peers.contains(holder))
        });
        let d = &sim.nodes[*looker];
        let Some(d) = d.as_ref() else { continue };
        done += 1;
        let report = d.recent_lookups().find(|r| r.target.0 == ih.0).cloned();
        if hit {
            found += 1;
        } else {
            let mut rng = Rng::new([1; 32]);
            let mut dists: Vec<usize> = sim
                .nodes
                .iter()
                .flatten()
                .filter(|n| !n.store.get(&ih.0, false, 50, &mut rng).is_empty())
                .map(|n| distance_lz(&n.id, &NodeId(ih.0)))
                .collect();
            dists.sort();
            println!("miss: {report:?} stored at {dists:?}");
        }
        if let Some(h) = report.and_then(|r| r.first_value_hops) {
            hops.push(h);
        }
    }
    hops.sort_unstable();
    SimResult {
        lookups: done,
        found,
        median_hops: hops.get(hops.len() / 2).copied().unwrap_or(0),
        messages_per_lookup: messages as f64 / done.max(1) as f64,
        max_table: sim.max.0,
        max_store: sim.max.1,
        max_txs: sim.max.2,
    }
}

fn check_sim(n: usize, n_hashes: usize) {
    let started = std::time::Instant::now();
    let r = simulate(n, n_hashes, 42);
    println!(
        "dht sim: {n} nodes, {} lookups, {} found ({:.1} %), median hops {}, {:.1} messages per lookup (all traffic in the lookup window), max table {}, max store {}, max open transactions {}, {:.1} s",
        r.lookups,
        r.found,
        100.0 * r.found as f64 / r.lookups.max(1) as f64,
        r.median_hops,
        r.messages_per_lookup,
        r.max_table,
        r.max_store,
        r.max_txs,
        started.elapsed().as_secs_f64(),
    );
    assert!(
        r.lookups * 100 >= n_hashes * 95,
        "lookers churned away: {}",
        r.lookups
    );
    assert!(
        r.found * 100 >= r.lookups * 99,
        "found {} of {}",
        r.found,
        r.lookups
    );
    assert!(r.max_table <= (table::K + table::REPLACEMENTS) * table::MAX_BUCKETS);
    assert!(r.max_store <= Config::default().max_hashes * Config::default().max_peers_per_hash);
    assert!(r.max_txs <= node::MAX_TXS);
}

#[test]
fn simulation_1000_nodes() {
    check_sim(1000, 100);
}

#[test]
#[ignore = "10,000 nodes: run with --release -- --ignored --nocapture"]
fn simulation_10000_nodes() {
    check_sim(10_000, 200);
}
