//! The overlay in a simulated network: many nodes, instant delivery (or
//! loss), simulated time. The same state machine the daemon drives.

use super::*;
use crate::overlay::msg::MAX_PACKET;

/// Node `i`'s address: one per /24, as on the Internet (one network may
/// fill at most half a routing table).
fn addr(i: usize) -> SocketAddr {
    SocketAddr::new([10, (i / 250) as u8, (i % 250) as u8, 1].into(), 7000)
}

fn node_id(i: usize) -> NodeId {
    let mut id = [0u8; 20];
    id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    NodeId(crate::hash::sha1(&id))
}

fn seed(i: usize) -> [u8; 32] {
    let mut s = [7u8; 32];
    s[..8].copy_from_slice(&(i as u64).to_le_bytes());
    s
}

struct Sim {
    nodes: Vec<Overlay>,
    now: Instant,
    /// Datagrams delivered, by kind, over the whole run.
    delivered: u64,
    /// Drop every n-th datagram (0: none).
    loss_every: u64,
    events: Vec<(usize, Event)>,
}

impl Sim {
    fn new(n: usize, config: impl Fn(usize) -> Config) -> Sim {
        let now = Instant::now();
        let nodes = (0..n)
            .map(|i| {
                let mut c = config(i);
                c.udp_port = addr(i).port();
                Overlay::new(node_id(i), c, seed(i), now)
            })
            .collect();
        Sim {
            nodes,
            now,
            delivered: 0,
            loss_every: 0,
            events: Vec::new(),
        }
    }

    fn index(&self, a: &SocketAddr) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| addr(i) == *a)
    }

    /// Delivers everything queued (bounded rounds).
    fn deliver(&mut self) {
        for _ in 0..1000 {
            let mut any = false;
            for i in 0..self.nodes.len() {
                while let Some((to, bytes)) = self.nodes[i].poll_transmit() {
                    any = true;
                    assert!(bytes.len() <= MAX_PACKET);
                    self.delivered += 1;
                    if self.loss_every > 0 && self.delivered % self.loss_every == 0 {
                        continue;
                    }
                    if let Some(j) = self.index(&to) {
                        let now = self.now;
                        self.nodes[j].on_packet(&bytes, addr(i), now);
                    }
                }
                while let Some(e) = self.nodes[i].poll_event() {
                    self.events.push((i, e));
                }
            }
            if !any {
                return;
            }
        }
        panic!("the network never went quiet");
    }

    fn run(&mut self, secs: u64) {
        for _ in 0..secs {
            self.now += Duration::from_secs(1);
            for n in &mut self.nodes {
                n.tick(self.now);
            }
            self.deliver();
        }
    }

    fn results(&self, node: usize, search: SearchId) -> Vec<(Item, Vec<Holder>)> {
        let mut out: Vec<(Item, Vec<Holder>)> = Vec::new();
        for (i, e) in &self.events {
            let Event::Result {
                search: s,
                item,
                holders,
            } = e;
            if *i != node || *s != search {
                continue;
            }
            match out
                .iter_mut()
                .find(|(it, _)| it.info_hash == item.info_hash)
            {
                Some((_, hs)) => hs.extend(holders.iter().copied()),
                None => out.push((item.clone(), holders.clone())),
            }
        }
        out
    }
}

fn item(n: u8, name: &str) -> Item {
    Item {
        info_hash: InfoHash([n; 20]),
        name: name.into(),
        size: 1234,
    }
}

fn chain(n: usize) -> Sim {
    let mut sim = Sim::new(n, |i| Config {
        tcp_port: 6000 + i as u16,
        ..Config::default()
    });
    for i in 1..n {
        let now = sim.now;
        sim.nodes[i].add_bootstrap(addr(i - 1), now);
    }
    sim
}

#[test]
fn a_chain_finds_a_file_by_words_then_goes_straight_to_the_holder() {
    let mut sim = chain(8);
    sim.nodes[7].set_local(vec![item(9, "Holiday Photos 2026.tar")]);
    sim.run(60);
    // Node exchange taught the first node about nodes beyond its bootstrap.
    assert!(
        sim.nodes[0].table().live_count() >= 4,
        "{}",
        sim.nodes[0].table().live_count()
    );
    let now = sim.now;
    let s = sim.nodes[0].search(Target::Words("holiday 2026".into()), now);
    sim.run(2);
    let found = sim.results(0, s);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, item(9, "Holiday Photos 2026.tar"));
    let holder = Holder {
        ip: addr(7).ip(),
        tcp_port: 6007,
        udp_port: 7000,
    };
    assert!(found[0].1.contains(&holder), "{:?}", found[0].1);
    assert_eq!(sim.nodes[0].stats().searches_flooded, 1);

    // Again by info-hash: straight to the holder, no flood.
    let sent_queries = sim.nodes[0].stats().sent[kind_index("query")];
    let now = sim.now;
    let s2 = sim.nodes[0].search(Target::Hash(InfoHash([9; 20])), now);
    sim.run(5);
    assert_eq!(sim.nodes[0].stats().searches_flooded, 1, "no second flood");
    assert_eq!(sim.nodes[0].stats().searches_direct, 1);
    assert_eq!(
        sim.nodes[0].stats().sent[kind_index("query")] - sent_queries,
        1,
        "one query, to the holder"
    );
    let found = sim.results(0, s2);
    assert_eq!(found.len(), 1);
    assert!(found[0].1.contains(&holder));
}

#[test]
fn a_search_over_a_long_chain_with_small_tables_needs_hops() {
    // Degree 2 and a tiny table: nobody knows everybody, so the query has
    // to travel several hops and the hit has to come back along the path.
    let n = 8;
    let mut sim = Sim::new(n, |i| Config {
        tcp_port: 6000 + i as u16,
        capacity: 3,
        degree: 2,
        default_ttl: 7,
        ..Config::default()
    });
    for i in 1..n {
        let now = sim.now;
        sim.nodes[i].add_bootstrap(addr(i - 1), now);
    }
    sim.nodes[n - 1].set_local(vec![item(3, "far away.iso")]);
    sim.run(30);
    let now = sim.now;
    let s = sim.nodes[0].search(Target::Hash(InfoHash([3; 20])), now);
    sim.run(2);
    let found = sim.results(0, s);
    assert_eq!(found.len(), 1, "found over the chain");
    let forwarded: u64 = sim.nodes.iter().map(|n| n.stats().forwarded).sum();
    assert!(forwarded >= 2, "the query was forwarded ({forwarded})");
}

#[test]
fn two_hundred_nodes_find_what_one_of_them_holds() {
    let n = 200;
    let mut sim = Sim::new(n, |i| Config {
        tcp_port: 6000 + (i % 1000) as u16,
        ..Config::default()
    });
    // Each knows one random earlier node.
    let mut rng = Rng::new([3; 32]);
    for i in 1..n {
        let j = rng.below(i);
        let now = sim.now;
        sim.nodes[i].add_bootstrap(addr(j), now);
    }
    for (k, holder) in [17usize, 99, 150, 199].iter().enumerate() {
        sim.nodes[*holder].set_local(vec![item(100 + k as u8, &format!("dataset part {k}"))]);
    }
    sim.loss_every = 50; // 2 % loss
                         // Ten minutes: node exchange and neighbour rotation spread the
                         // neighbour sets chosen when each node knew only a few others.
    sim.run(600);
    let mut searches = Vec::new();
    for (q, from) in [0usize, 42, 123, 180].iter().enumerate() {
        let now = sim.now;
        let s = sim.nodes[*from].search(Target::Words(format!("dataset {q}")), now);
        searches.push((*from, s));
    }
    sim.run(3);
    let mut found = 0;
    for (from, s) in searches {
        let qid = sim.nodes[from].searches[&s].qid;
        let reached = sim
            .nodes
            .iter()
            .filter(|n| n.routes.contains_key(&qid))
            .count();
        let hit = !sim.results(from, s).is_empty();
        eprintln!("search from node {from}: reached {reached} of {n} nodes, found: {hit}");
        found += usize::from(hit);
    }
    let forwarded: u64 = sim.nodes.iter().map(|n| n.stats().forwarded).sum();
    let duplicates: u64 = sim.nodes.iter().map(|n| n.stats().duplicates).sum();
    eprintln!("{forwarded} queries forwarded, {duplicates} duplicates dropped");
    assert_eq!(found, 4);
    for node in &sim.nodes {
        assert!(node.table().len() <= 256);
        assert!(node.table().neighbours().len() <= 8);
    }
}

/// One node under test and packets crafted by a stranger at `evil`.
struct Target1 {
    node: Overlay,
    now: Instant,
}

fn lone_node() -> Target1 {
    let now = Instant::now();
    Target1 {
        node: Overlay::new(node_id(0), Config::default(), seed(0), now),
        now,
    }
}

impl Target1 {
    fn feed(&mut self, from: SocketAddr, body: Body) -> Vec<(SocketAddr, Packet)> {
        let bytes = Packet {
            id: node_id(1000 + from.port() as usize),
            body,
        }
        .encode();
        self.node.on_packet(&bytes, from, self.now);
        self.drain()
    }

    fn drain(&mut self) -> Vec<(SocketAddr, Packet)> {
        let mut out = Vec::new();
        while let Some((to, b)) = self.node.poll_transmit() {
            out.push((to, Packet::parse(&b).unwrap()));
        }
        out
    }

    /// A token the node issued to `from` (by pinging it).
    fn token(&mut self, from: SocketAddr) -> Token {
        let out = self.feed(
            from,
            Body::Ping {
                tx: [1; 4],
                tcp_port: 1,
                flags: 1,
                pad: 100,
            },
        );
        match &out[0].1.body {
            Body::Pong { token, .. } => *token,
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn pings_are_answered_only_when_padded_and_pongs_never_exceed_pings() {
    let mut t = lone_node();
    let evil = addr(5);
    let out = t.feed(
        evil,
        Body::Ping {
            tx: [1; 4],
            tcp_port: 1,
            flags: 0,
            pad: 0,
        },
    );
    assert!(out.is_empty(), "an unpadded ping gets nothing");
    assert_eq!(t.node.stats().unpadded, 1);
    // Our own pings are long enough for the largest pong (IPv6 source).
    let v6: SocketAddr = "[fd00:1:2:3:4:5:6:7]:65535".parse().unwrap();
    let mut probe = lone_node();
    probe.node = Overlay::new(node_id(1), Config::default(), seed(1), probe.now);
    probe.node.add_bootstrap(v6, probe.now);
    probe.node.tick(probe.now);
    let (_, ping) = probe.node.poll_transmit().unwrap();
    t.node.on_packet(&ping, v6, t.now);
    let out = t.drain();
    assert!(matches!(out[0].1.body, Body::Pong { .. }), "{out:?}");
    assert!(out[0].1.encode().len() <= ping.len());
}

#[test]
fn requests_without_our_token_get_nothing() {
    let mut t = lone_node();
    let evil = addr(5);
    let out = t.feed(
        evil,
        Body::GetNodes {
            tx: [1; 4],
            token: [0; 8],
            max: 16,
        },
    );
    assert!(out.is_empty());
    // A token given to another address does not work from this one.
    let other_token = t.token(addr(6));
    let out = t.feed(
        evil,
        Body::Query {
            token: other_token,
            qid: [1; 8],
            ttl: 3,
            hops: 0,
            target: Target::Words("x".into()),
        },
    );
    assert!(out.is_empty());
    assert_eq!(t.node.stats().bad_token, 2);
}

#[test]
fn a_query_storm_from_one_source_is_rate_limited() {
    let mut t = lone_node();
    t.node.set_local(vec![item(1, "popular file")]);
    let evil = addr(5);
    let token = t.token(evil);
    let mut hits = 0;
    for q in 0..10_000u32 {
        let mut qid = [0u8; 8];
        qid[..4].copy_from_slice(&q.to_be_bytes());
        let out = t.feed(
            evil,
            Body::Query {
                token,
                qid,
                ttl: 4,
                hops: 0,
                target: Target::Words("popular".into()),
            },
        );
        hits += out.len();
    }
    // Burst of 4 × rate, no time passed.
    let burst = 4 * Config::default().query_rate as usize;
    assert_eq!(hits, burst);
    assert_eq!(t.node.stats().rate_limited, 10_000 - burst as u64);
    assert!(t.node.routes() <= burst);
    // Another source is not affected.
    let good = addr(6);
    let token = t.token(good);
    let out = t.feed(
        good,
        Body::Query {
            token,
            qid: [0xff; 8],
            ttl: 4,
            hops: 0,
            target: Target::Words("popular".into()),
        },
    );
    assert_eq!(out.len(), 1);
}

#[test]
fn forged_ttl_is_capped_and_duplicates_dropped() {
    let mut sim = chain(3);
    sim.run(20);
    // Node 1 has node 0 and node 2 as neighbours; a stranger's query with TTL 255.
    let evil = addr(50);
    let token = {
        let now = sim.now;
        let ping = Packet {
            id: node_id(50),
            body: Body::Ping {
                tx: [1; 4],
                tcp_port: 1,
                flags: 0,
                pad: 100,
            },
        }
        .encode();
        sim.nodes[1].on_packet(&ping, evil, now);
        let mut tok = None;
        while let Some((to, b)) = sim.nodes[1].poll_transmit() {
            if let (
                true,
                Ok(Packet {
                    body: Body::Pong { token, .. },
                    ..
                }),
            ) = (to == evil, Packet::parse(&b))
            {
                tok = Some(token);
            }
        }
        tok.unwrap()
    };
    let query = Packet {
        id: node_id(50),
        body: Body::Query {
            token,
            qid: [9; 8],
            ttl: 255,
            hops: 0,
            target: Target::Words("nothing here".into()),
        },
    }
    .encode();
    let now = sim.now;
    sim.nodes[1].on_packet(&query, evil, now);
    sim.nodes[1].on_packet(&query, evil, now);
    assert_eq!(sim.nodes[1].stats().ttl_capped, 1);
    assert_eq!(sim.nodes[1].stats().duplicates, 1);
    let mut forwarded = Vec::new();
    while let Some((to, b)) = sim.nodes[1].poll_transmit() {
        if let Ok(Packet {
            body: Body::Query { ttl, .. },
            ..
        }) = Packet::parse(&b)
        {
            forwarded.push((to, ttl));
        }
    }
    assert!(!forwarded.is_empty());
    assert!(
        forwarded
            .iter()
            .all(|(_, ttl)| *ttl == Config::default().max_ttl - 1),
        "{forwarded:?}"
    );
}

#[test]
fn hits_for_unknown_queries_or_from_strangers_are_dropped() {
    let mut sim = chain(3);
    sim.nodes[2].set_local(vec![item(4, "thing")]);
    sim.run(20);
    let now = sim.now;
    let s = sim.nodes[0].search(Target::Words("nope".into()), now);
    let qid = sim.nodes[0].searches[&s].qid;
    sim.deliver();
    let fake = |qid| {
        Packet {
            id: node_id(77),
            body: Body::Hit {
                qid,
                hops: 0,
                results: vec![HitResult {
                    item: item(5, "nope malware"),
                    holders: vec![Holder {
                        ip: [10, 9, 9, 9].into(),
                        tcp_port: 1,
                        udp_port: 1,
                    }],
                }],
            },
        }
        .encode()
    };
    // Unknown query id.
    sim.nodes[0].on_packet(&fake([0xaa; 8]), addr(77), now);
    // Right query id, but from a node the query did not go to.
    sim.nodes[0].on_packet(&fake(qid), addr(77), now);
    assert_eq!(sim.nodes[0].stats().unknown_hits, 2);
    sim.deliver();
    assert!(sim.results(0, s).is_empty());
    assert!(sim.nodes[0].holders(&InfoHash([5; 20]), now).is_empty());
}

#[test]
fn tables_stay_bounded_under_a_flood_of_made_up_nodes() {
    let mut t = lone_node();
    // A real neighbour that answers getnodes with made-up nodes.
    let liar = addr(1);
    t.node.add_bootstrap(liar, t.now);
    for round in 0..200u32 {
        t.now += Duration::from_secs(1);
        t.node.tick(t.now);
        for (to, p) in t.drain() {
            if to != liar {
                continue; // Made-up nodes never answer.
            }
            let id = node_id(1);
            let reply = match p.body {
                Body::Ping { tx, .. } => Body::Pong {
                    tx,
                    tcp_port: 1,
                    flags: 1,
                    token: [1; 8],
                    your_addr: addr(0),
                },
                Body::GetNodes { tx, .. } => Body::Nodes {
                    tx,
                    nodes: (0..16)
                        .map(|k| {
                            (
                                node_id(10_000 + (round * 16 + k) as usize),
                                addr(300 + (round * 16 + k) as usize),
                            )
                        })
                        .collect(),
                },
                _ => continue,
            };
            let bytes = Packet { id, body: reply }.encode();
            t.node.on_packet(&bytes, liar, t.now);
        }
    }
    assert!(t.node.table().len() <= Config::default().capacity);
    assert!(t.node.table().get(&liar).is_some(), "the real node stays");
    // Junk of every shape.
    for n in 0..5000u32 {
        let junk: Vec<u8> = (0..(n % 1500))
            .map(|i| (i as u8).wrapping_mul(n as u8))
            .collect();
        t.node.on_packet(&junk, addr(2), t.now);
    }
    assert!(t.node.stats().malformed >= 4000);
}

#[test]
fn unsolicited_node_lists_are_ignored() {
    let mut t = lone_node();
    let out = t.feed(
        addr(3),
        Body::Nodes {
            tx: [1; 4],
            nodes: vec![(node_id(4), addr(4))],
        },
    );
    assert!(out.is_empty());
    assert!(t.node.table().is_empty());
    assert_eq!(t.node.stats().unsolicited, 1);
}

#[test]
fn the_saved_table_roundtrips_and_damage_is_skipped() {
    let nodes = vec![
        (node_id(1), addr(1)),
        (node_id(2), "[fd00::1]:7000".parse().unwrap()),
    ];
    let bytes = encode_saved(&nodes);
    assert_eq!(decode_saved(&bytes, 100), nodes);
    assert_eq!(decode_saved(&bytes, 1).len(), 1);
    assert!(decode_saved(b"garbage", 100).is_empty());
    assert!(decode_saved(&bytes[..bytes.len() - 3], 100).is_empty());
}

#[test]
fn announcements_fill_the_content_table() {
    let mut sim = chain(2);
    sim.nodes[1].set_local(vec![item(8, "announced.bin")]);
    sim.run(10);
    let holders = sim.nodes[0].holders(&InfoHash([8; 20]), sim.now);
    assert_eq!(
        holders,
        vec![Holder {
            ip: addr(1).ip(),
            tcp_port: 6001,
            udp_port: 7000
        }]
    );
}

#[test]
fn only_a_proven_address_becomes_an_entry_and_beacons_count_only_from_the_lan_socket() {
    let mut t = lone_node();
    let stranger = addr(5);
    let token = t.token(stranger);
    assert!(t.node.table().is_empty(), "a ping alone adds nothing");
    assert!(t.drain().is_empty(), "and is not pinged back");
    t.feed(
        stranger,
        Body::GetNodes {
            tx: [2; 4],
            token,
            max: 4,
        },
    );
    assert!(
        t.node.table().get(&stranger).is_some(),
        "a request with our token does"
    );
    // A beacon on the unicast socket is ignored...
    let beacon = Packet {
        id: node_id(9),
        body: Body::Beacon {
            tcp_port: 6881,
            udp_port: 7001,
            flags: 1,
        },
    }
    .encode();
    t.node.on_packet(&beacon, addr(9), t.now);
    assert!(t
        .node
        .table()
        .get(&SocketAddr::new(addr(9).ip(), 7001))
        .is_none());
    // ...and heard on the LAN socket it adds the sender's overlay port.
    t.node.on_beacon(&beacon, addr(9), t.now);
    assert!(t
        .node
        .table()
        .get(&SocketAddr::new(addr(9).ip(), 7001))
        .is_some());
    // Our own beacon (multicast loops back) is not.
    let own = t.node.beacon();
    t.node.on_beacon(&own, addr(0), t.now);
    assert!(t.node.table().get(&addr(0)).is_none());
}

#[test]
fn a_node_on_the_path_can_neither_exhaust_a_search_nor_slip_in_other_results() {
    let mut sim = chain(3);
    sim.run(20);
    let now = sim.now;
    let s = sim.nodes[0].search(Target::Hash(InfoHash([6; 20])), now);
    let qid = sim.nodes[0].searches[&s].qid;
    // The query goes to node 1 (and maybe 2); node 1 answers with junk, 40 times.
    sim.nodes[0].out.clear();
    let junk = |n: u8| HitResult {
        item: item(n + 100, "junk"),
        holders: vec![Holder {
            ip: [10, 9, 9, n].into(),
            tcp_port: 1,
            udp_port: 1,
        }],
    };
    for n in 0..40u8 {
        let p = Packet {
            id: node_id(1),
            body: Body::Hit {
                qid,
                hops: 0,
                results: vec![junk(n)],
            },
        }
        .encode();
        sim.nodes[0].on_packet(&p, addr(1), now);
    }
    assert!(
        sim.nodes[0].stats().mismatched_hits >= 8,
        "{:?} {:?}",
        sim.nodes[0].stats(),
        sim.nodes[0].own_routes[&qid].sent_to
    );
    assert!(sim.nodes[0].content().is_empty(), "no junk stored");
    // Node 2's honest hit still counts: budgets are per hop.
    let honest = Packet {
        id: node_id(2),
        body: Body::Hit {
            qid,
            hops: 0,
            results: vec![HitResult {
                item: item(6, "wanted"),
                holders: vec![Holder {
                    ip: Ipv4Addr::UNSPECIFIED.into(),
                    tcp_port: 6002,
                    udp_port: 7000,
                }],
            }],
        },
    }
    .encode();
    let sent_to_2 = sim.nodes[0].own_routes[&qid]
        .sent_to
        .iter()
        .any(|(a, _)| *a == addr(2));
    sim.nodes[0].on_packet(&honest, addr(2), now);
    sim.deliver();
    assert_eq!(!sim.results(0, s).is_empty(), sent_to_2);
}
