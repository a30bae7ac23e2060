//! The swarm driven by fake peers and fake time.

use super::*;

const PIECE: u32 = 32 * 1024;

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, n], 6881))
}

fn swarm(n_pieces: u32, have_all: bool) -> (Swarm, Instant) {
    let lengths = Lengths::new(u64::from(n_pieces) * u64::from(PIECE) - 100, PIECE).unwrap();
    let have = if have_all {
        Bitfield::full(lengths.n_pieces())
    } else {
        Bitfield::new(lengths.n_pieces())
    };
    (
        Swarm::new(SwarmConfig::default(), lengths, have, 42),
        Instant::now(),
    )
}

fn full_bitfield(s: &Swarm) -> Vec<u8> {
    Bitfield::full(s.lengths().n_pieces()).as_bytes().to_vec()
}

fn requests(out: &[Out], key: PeerKey) -> Vec<BlockRef> {
    out.iter()
        .filter_map(|o| match o {
            Out::Send(k, Message::Request(b)) if *k == key => Some(*b),
            _ => None,
        })
        .collect()
}

fn sent(out: &[Out], key: PeerKey, m: Message<'static>) -> bool {
    out.contains(&Out::Send(key, m))
}

/// Delivers `b` from `key` (correct or corrupt data), writes it and returns the actions.
fn deliver(s: &mut Swarm, key: PeerKey, b: BlockRef, corrupt: bool, now: Instant) -> Vec<Out> {
    let data = vec![if corrupt { 0xee } else { 0x11 }; b.length as usize];
    s.on_message(
        key,
        Message::Piece {
            index: b.index,
            begin: b.begin,
            data: &data,
        },
        now,
    );
    let out: Vec<Out> = s.drain().collect();
    let mut rest = Vec::new();
    for o in out {
        if let Out::Write { piece, begin, data } = o {
            s.on_written(piece, begin, data.len() as u32, true, now);
        } else {
            rest.push(o);
        }
    }
    rest.extend(s.drain());
    rest
}

#[test]
fn downloads_everything_from_one_peer() {
    let (mut s, now) = swarm(3, false);
    s.add_peer(1, addr(1), false, now);
    assert!(
        s.drain().next().is_none(),
        "nothing to announce with no pieces and no fast extension"
    );
    let bf = full_bitfield(&s);
    s.on_message(1, Message::Bitfield(&bf), now);
    let out: Vec<Out> = s.drain().collect();
    assert!(sent(&out, 1, Message::Interested));
    assert!(requests(&out, 1).is_empty(), "no requests while choked");
    s.on_message(1, Message::Unchoke, now);
    let mut pending: Vec<BlockRef> = requests(&s.drain().collect::<Vec<_>>(), 1);
    assert_eq!(pending.len(), 4, "min pipeline depth");
    let mut verified = Vec::new();
    let mut complete = false;
    for _ in 0..100 {
        let Some(b) = pending.pop() else { break };
        let out = deliver(&mut s, 1, b, false, now);
        pending.extend(requests(&out, 1));
        for o in out {
            match o {
                Out::Hash(p) => s.on_hashed(p, true, now),
                other => assert!(!matches!(other, Out::Disconnect(..)), "{other:?}"),
            }
        }
        for o in s.drain() {
            match o {
                Out::Verified(p) => verified.push(p.get()),
                Out::Complete => complete = true,
                Out::Send(1, Message::Request(b)) => pending.push(b),
                _ => {}
            }
        }
    }
    verified.sort();
    assert_eq!(verified, vec![0, 1, 2]);
    assert!(complete && s.is_complete());
    assert_eq!(s.have_bytes(), s.lengths().total_length());
    assert_eq!(s.stats.downloaded, s.lengths().total_length());
    assert_eq!(s.in_flight(), 0);
}

#[test]
fn requests_spread_over_several_peers() {
    let (mut s, now) = swarm(8, false);
    let bf = full_bitfield(&s);
    for k in 1..=3 {
        s.add_peer(k, addr(k as u8), false, now);
        s.on_message(k, Message::Bitfield(&bf), now);
        s.on_message(k, Message::Unchoke, now);
    }
    let out: Vec<Out> = s.drain().collect();
    for k in 1..=3 {
        assert_eq!(requests(&out, k).len(), 4, "peer {k}");
    }
    let mut all: Vec<BlockRef> = (1..=3).flat_map(|k| requests(&out, k)).collect();
    let n = all.len();
    all.sort_by_key(|b| (b.index, b.begin));
    all.dedup();
    assert_eq!(all.len(), n, "no block asked twice outside endgame");
}

#[test]
fn choke_without_fast_frees_requests_and_reject_with_fast_frees_one() {
    let (mut s, now) = swarm(4, false);
    let bf = full_bitfield(&s);
    s.add_peer(1, addr(1), false, now);
    s.add_peer(2, addr(2), true, now);
    s.on_message(2, Message::HaveNone, now);
    for k in [1, 2] {
        s.on_message(k, Message::Bitfield(&bf), now);
    }
    assert!(
        !s.drain().any(|o| matches!(o, Out::Disconnect(2, _))),
        "a later bitfield adds pieces (aria2c sends them)"
    );
    s.remove_peer(2);
    s.add_peer(3, addr(3), true, now);
    s.on_message(3, Message::HaveAll, now);
    s.on_message(1, Message::Unchoke, now);
    s.on_message(3, Message::Unchoke, now);
    let out: Vec<Out> = s.drain().collect();
    let r1 = requests(&out, 1);
    let r3 = requests(&out, 3);
    assert!(!r1.is_empty() && !r3.is_empty());
    let before = s.in_flight();
    s.on_message(1, Message::Choke, now);
    assert_eq!(
        s.in_flight(),
        before - r1.iter().map(|b| u64::from(b.length)).sum::<u64>()
    );
    s.on_message(3, Message::Choke, now);
    assert_eq!(
        s.in_flight(),
        before - r1.iter().map(|b| u64::from(b.length)).sum::<u64>(),
        "fast peers keep requests until rejected"
    );
    s.on_message(3, Message::Reject(r3[0]), now);
    assert_eq!(
        s.in_flight(),
        before
            - r1.iter()
                .chain(&r3[..1])
                .map(|b| u64::from(b.length))
                .sum::<u64>()
    );
    s.drain().count();
    // A reject from a peer without the Fast extension is a protocol violation.
    s.on_message(1, Message::Reject(r1[0]), now);
    let reason = s.drain().find_map(|o| match o {
        Out::Disconnect(1, reason) => Some(reason),
        _ => None,
    });
    assert_eq!(reason, Some(Disconnect::RejectWithoutFast));
    assert!(Disconnect::RejectWithoutFast.is_violation());
    assert!(!Disconnect::BothSeeds.is_violation());
    assert_eq!(
        Disconnect::RejectWithoutFast.to_string(),
        "reject without the Fast extension"
    );
}

#[test]
fn serves_requests_and_drops_bad_ones() {
    let (mut s, now) = swarm(4, true);
    s.add_peer(1, addr(1), true, now);
    assert!(s.drain().any(|o| o == Out::Send(1, Message::HaveAll)));
    let b = BlockRef {
        index: 1,
        begin: 16384,
        length: 16384,
    };
    s.on_message(1, Message::Request(b), now);
    assert!(
        s.drain().any(|o| o == Out::Send(1, Message::Reject(b))),
        "choked peers get rejects"
    );
    s.on_message(1, Message::Interested, now);
    assert!(
        s.drain().any(|o| o == Out::Send(1, Message::Unchoke)),
        "a free slot unchokes at once"
    );
    s.on_message(1, Message::Request(b), now);
    assert!(s.drain().any(|o| o == Out::Read { peer: 1, block: b }));
    assert!(s.on_read_done(1, b));
    s.on_piece_sent(1, 16384, now);
    assert_eq!(s.stats.uploaded, 16384);
    // Cancelled while reading: not sent.
    s.on_message(1, Message::Request(b), now);
    s.drain().count();
    s.on_message(1, Message::Cancel(b), now);
    assert!(!s.on_read_done(1, b));
    // Outside the torrent: disconnect.
    for bad in [
        BlockRef {
            index: 4,
            begin: 0,
            length: 16384,
        },
        BlockRef {
            index: 3,
            begin: 32768 - 100 - 16384 + 1,
            length: 16384,
        },
        BlockRef {
            index: 0,
            begin: 0,
            length: 32768,
        },
        BlockRef {
            index: 0,
            begin: 0,
            length: 0,
        },
    ] {
        s.on_message(1, Message::Request(bad), now);
        assert!(
            s.drain().any(|o| matches!(o, Out::Disconnect(1, _))),
            "{bad:?}"
        );
    }
}

#[test]
fn bad_have_and_bitfield_disconnect() {
    let (mut s, now) = swarm(9, false);
    s.add_peer(1, addr(1), false, now);
    s.on_message(1, Message::Have(9), now);
    assert!(s.drain().any(|o| matches!(o, Out::Disconnect(1, _))));
    s.add_peer(2, addr(2), false, now);
    s.on_message(2, Message::Bitfield(&[0xff]), now);
    assert!(s.drain().any(|o| matches!(o, Out::Disconnect(2, _))));
    s.add_peer(3, addr(3), false, now);
    s.on_message(3, Message::Bitfield(&[0xff, 0xff]), now);
    assert!(
        s.drain().any(|o| matches!(o, Out::Disconnect(3, _))),
        "spare bits set"
    );
}

#[test]
fn port_message_is_kept_for_the_dht() {
    let (mut s, now) = swarm(4, false);
    s.add_peer(1, addr(1), false, now);
    s.add_peer(2, addr(2), false, now);
    s.add_peer(3, addr(3), false, now);
    assert_eq!(s.dht_port(1), None);
    s.on_message(1, Message::Port(6882), now);
    s.on_message(2, Message::Port(0), now);
    assert_eq!(s.dht_port(1), Some(6882));
    assert_eq!(s.dht_port(2), None, "port 0 is no DHT node");
    assert_eq!(s.dht_port(3), None);
    // A later `port` replaces the earlier one; nothing is sent back.
    s.on_message(1, Message::Port(7000), now);
    assert!(s.drain().all(|o| !matches!(o, Out::Disconnect(..))));
    let nodes: Vec<_> = s.dht_nodes().collect();
    assert_eq!(nodes, vec![(1, SocketAddr::from(([127, 0, 0, 1], 7000)))]);
    s.remove_peer(1);
    assert_eq!(s.dht_port(1), None);
    assert_eq!(s.dht_nodes().count(), 0);
}

#[test]
fn smart_ban_catches_the_liar_and_spares_the_honest() {
    // One piece of two blocks: the liar sends block 0, the honest peer block 1.
    let lengths = Lengths::new(u64::from(PIECE), PIECE).unwrap();
    let mut s = Swarm::new(
        SwarmConfig {
            min_requests: 1,
            max_requests: 1,
            ..SwarmConfig::default()
        },
        lengths,
        Bitfield::new(1),
        1,
    );
    let now = Instant::now();
    let bf = [0x80u8];
    for k in [1, 2] {
        s.add_peer(k, addr(k as u8), false, now);
        s.on_message(k, Message::Bitfield(&bf), now);
        s.on_message(k, Message::Unchoke, now);
    }
    let out: Vec<Out> = s.drain().collect();
    let (r1, r2) = (requests(&out, 1), requests(&out, 2));
    assert_eq!((r1.len(), r2.len()), (1, 1));
    deliver(&mut s, 1, r1[0], true, now);
    let out = deliver(&mut s, 2, r2[0], false, now);
    let piece = lengths.piece(0).unwrap();
    assert!(out.contains(&Out::Hash(piece)));
    s.on_hashed(piece, false, now);
    let out: Vec<Out> = s.drain().collect();
    assert!(out.contains(&Out::HashBlocks(piece)));
    assert!(
        requests(&out, 1).is_empty() && requests(&out, 2).is_empty(),
        "not re-requested before the block hashes are in"
    );
    let bad = [[0xb0u8; 20], [0x60u8; 20]];
    s.on_block_hashes(piece, bad.to_vec(), now);
    // Re-download: the liar leaves, both blocks come from the honest peer.
    let out: Vec<Out> = s.drain().collect();
    let mut pending = requests(&out, 2);
    s.remove_peer(1);
    s.tick(now);
    pending.extend(requests(&s.drain().collect::<Vec<_>>(), 2));
    let mut out = Vec::new();
    for _ in 0..4 {
        let Some(b) = pending.pop() else { break };
        let o = deliver(&mut s, 2, b, false, now);
        pending.extend(requests(&o, 2));
        out.extend(o);
    }
    assert!(out.contains(&Out::Hash(piece)) || s.drain().any(|o| o == Out::Hash(piece)));
    s.on_hashed(piece, true, now);
    let out: Vec<Out> = s.drain().collect();
    assert!(out.contains(&Out::HashBlocks(piece)), "{out:?}");
    // Good copy: block 0 differs from the liar's, block 1 equals the honest peer's.
    s.on_block_hashes(piece, vec![[0xa0; 20], [0x60; 20]], now);
    let bans: Vec<IpAddr> = s
        .drain()
        .filter_map(|o| {
            if let Out::Ban(ip, _) = o {
                Some(ip)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(bans, vec![addr(1).ip()]);
}

#[test]
fn endgame_asks_twice_and_cancels() {
    let lengths = Lengths::new(16384, 16384).unwrap();
    let mut s = Swarm::new(SwarmConfig::default(), lengths, Bitfield::new(1), 5);
    let now = Instant::now();
    for k in [1, 2] {
        s.add_peer(k, addr(k as u8), false, now);
        s.on_message(k, Message::Bitfield(&[0x80]), now);
        s.on_message(k, Message::Unchoke, now);
    }
    let out: Vec<Out> = s.drain().collect();
    let (r1, r2) = (requests(&out, 1), requests(&out, 2));
    assert_eq!(
        r1.len() + r2.len(),
        2,
        "the only block is asked from both: {out:?}"
    );
    let first = if r1.is_empty() { 2 } else { 1 };
    let other = 3 - first;
    let b = BlockRef {
        index: 0,
        begin: 0,
        length: 16384,
    };
    let out = deliver(&mut s, first, b, false, now);
    assert!(
        out.contains(&Out::Send(other, Message::Cancel(b))),
        "{out:?}"
    );
    // The late copy is counted as waste, not written again.
    let late = deliver(&mut s, other, b, false, now);
    assert!(!late.iter().any(|o| matches!(o, Out::Hash(_))));
    assert_eq!(s.stats.wasted, 16384);
}

#[test]
fn stalled_peer_is_snubbed_and_its_blocks_go_elsewhere() {
    let (mut s, now) = swarm(8, false);
    let bf = full_bitfield(&s);
    s.add_peer(1, addr(1), false, now);
    s.on_message(1, Message::Bitfield(&bf), now);
    s.on_message(1, Message::Unchoke, now);
    let first = requests(&s.drain().collect::<Vec<_>>(), 1);
    assert_eq!(first.len(), 4);
    let t15 = now + Duration::from_secs(15);
    s.add_peer(2, addr(2), false, t15);
    s.on_message(2, Message::Bitfield(&bf), t15);
    s.on_message(2, Message::Unchoke, t15);
    let mut pending = requests(&s.drain().collect::<Vec<_>>(), 2);
    assert_eq!(pending.len(), 4);
    assert!(pending.iter().all(|b| !first.contains(b)));
    let t21 = now + Duration::from_secs(21);
    s.tick(t21);
    let out: Vec<Out> = s.drain().collect();
    let cancelled: Vec<BlockRef> = out
        .iter()
        .filter_map(|o| {
            if let Out::Send(1, Message::Cancel(b)) = o {
                Some(*b)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(cancelled.len(), 4);
    // Peer 2 delivers; the blocks peer 1 never sent are asked of peer 2 now.
    let mut asked_of_2 = Vec::new();
    for _ in 0..8 {
        let Some(b) = pending.pop() else { break };
        let more = requests(&deliver(&mut s, 2, b, false, t21), 2);
        asked_of_2.extend(more.iter().copied());
        pending.extend(more);
    }
    assert!(
        first.iter().all(|b| asked_of_2.contains(b)),
        "{first:?} not in {asked_of_2:?}"
    );
}

#[test]
fn seeding_rechoke_keeps_upload_slots() {
    let (mut s, now) = swarm(2, true);
    for k in 1..=6 {
        s.add_peer(k, addr(k as u8), false, now);
        s.on_message(k, Message::Interested, now);
    }
    s.drain().count();
    s.tick(now);
    s.drain().count();
    let unchoked = s
        .peer_infos(now)
        .iter()
        .filter(|p| !p.flags.contains('c'))
        .count();
    assert_eq!(unchoked, 4);
    let optimistic = s
        .peer_infos(now)
        .iter()
        .filter(|p| p.flags.contains('O'))
        .count();
    assert_eq!(optimistic, 1);
}

#[test]
fn in_flight_bytes_are_capped() {
    let lengths = Lengths::new(64 * u64::from(PIECE), PIECE).unwrap();
    let config = SwarmConfig {
        max_in_flight_bytes: 5 * 16384,
        min_requests: 100,
        ..SwarmConfig::default()
    };
    let mut s = Swarm::new(config, lengths, Bitfield::new(64), 9);
    let now = Instant::now();
    let bf = Bitfield::full(64).as_bytes().to_vec();
    for k in 1..=3 {
        s.add_peer(k, addr(k as u8), false, now);
        s.on_message(k, Message::Bitfield(&bf), now);
        s.on_message(k, Message::Unchoke, now);
    }
    let out: Vec<Out> = s.drain().collect();
    let total: usize = (1..=3).map(|k| requests(&out, k).len()).sum();
    assert_eq!(total, 5);
    assert_eq!(s.in_flight(), 5 * 16384);
}

#[test]
fn pause_cancels_and_stops_requests() {
    let (mut s, now) = swarm(4, false);
    let bf = full_bitfield(&s);
    s.add_peer(1, addr(1), false, now);
    s.on_message(1, Message::Bitfield(&bf), now);
    s.on_message(1, Message::Unchoke, now);
    s.drain().count();
    s.set_download_enabled(false, now);
    let out: Vec<Out> = s.drain().collect();
    assert!(out
        .iter()
        .any(|o| matches!(o, Out::Send(1, Message::Cancel(_)))));
    assert!(sent(&out, 1, Message::NotInterested));
    assert_eq!(s.in_flight(), 0);
    s.set_download_enabled(true, now);
    let out: Vec<Out> = s.drain().collect();
    assert!(sent(&out, 1, Message::Interested));
    assert!(!requests(&out, 1).is_empty());
}

#[test]
fn finished_writes_refill_the_pipeline_at_once() {
    let lengths = Lengths::new(8 * u64::from(PIECE), PIECE).unwrap();
    let config = SwarmConfig {
        max_in_flight_bytes: 2 * 16384,
        ..SwarmConfig::default()
    };
    let mut s = Swarm::new(config, lengths, Bitfield::new(8), 3);
    let now = Instant::now();
    s.add_peer(1, addr(1), false, now);
    s.on_message(1, Message::Bitfield(&[0xff]), now);
    s.on_message(1, Message::Unchoke, now);
    let first = requests(&s.drain().collect::<Vec<_>>(), 1);
    assert_eq!(first.len(), 2, "capped by the budget");
    let data = vec![0u8; 16384];
    s.on_message(
        1,
        Message::Piece {
            index: first[0].index,
            begin: first[0].begin,
            data: &data,
        },
        now,
    );
    let out: Vec<Out> = s.drain().collect();
    assert!(
        requests(&out, 1).is_empty(),
        "the received block still holds the budget until written"
    );
    let (piece, begin) = out
        .iter()
        .find_map(|o| {
            if let Out::Write { piece, begin, .. } = o {
                Some((*piece, *begin))
            } else {
                None
            }
        })
        .unwrap();
    s.on_written(piece, begin, 16384, true, now);
    assert_eq!(
        requests(&s.drain().collect::<Vec<_>>(), 1).len(),
        1,
        "written: one more request right away"
    );
}

/// After a failed sync: a lost piece is wanted again from peers that have
/// it, and a piece half written starts over.
#[test]
fn a_lost_piece_and_unverified_writes_are_downloaded_again() {
    let (mut s, now) = swarm(3, true);
    s.add_peer(1, addr(1), false, now);
    let bf = full_bitfield(&s);
    s.on_message(1, Message::Bitfield(&bf), now);
    s.on_message(1, Message::Unchoke, now);
    s.drain().for_each(drop);
    assert!(s.is_complete());
    s.lose_piece(s.lengths().piece(1).unwrap(), now);
    assert!(!s.have().get(1) && s.have().count() == 2);
    s.lose_piece(s.lengths().piece(1).unwrap(), now);
    assert_eq!(s.have().count(), 2, "lost once");
    s.set_download_enabled(true, now);
    let out: Vec<Out> = s.drain().collect();
    assert!(sent(&out, 1, Message::Interested), "{out:?}");
    let wanted = requests(&out, 1);
    assert!(!wanted.is_empty() && wanted.iter().all(|b| b.index == 1));
    // The first block is written, then a sync fails: it is asked for again.
    let first = wanted[0];
    deliver(&mut s, 1, first, false, now);
    s.forget_unverified_writes(now);
    // Every block still requested stays requested; the written one is free
    // and goes out again once the pipeline has room.
    let mut asked = Vec::new();
    for b in wanted.iter().skip(1) {
        asked.extend(requests(&deliver(&mut s, 1, *b, false, now), 1));
    }
    assert!(asked.contains(&first), "{asked:?}");
    let out = deliver(&mut s, 1, first, false, now);
    assert!(
        out.contains(&Out::Hash(s.lengths().piece(1).unwrap())),
        "{out:?}"
    );
}
