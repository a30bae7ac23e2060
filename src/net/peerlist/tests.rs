use super::*;

fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([a, b, c, d], port))
}

/// `n` distinct addresses in 10.x.y.z.
fn many(n: usize, port: u16) -> impl Iterator<Item = SocketAddr> {
    (0..n).map(move |i| v4(10, (i >> 16) as u8, (i >> 8) as u8, i as u8, port))
}

fn all(l: &PeerList, now: Instant) -> Vec<SocketAddr> {
    l.candidates(now, false, |_| false, usize::MAX)
}

#[test]
fn bep40_test_vectors() {
    // BEP 40's examples.
    let p = bep40_priority(v4(123, 213, 32, 10, 0), v4(98, 76, 54, 32, 0));
    assert_eq!(p, 0xec2d_7224);
    let p = bep40_priority(v4(123, 213, 32, 10, 0), v4(123, 213, 32, 234, 0));
    assert_eq!(p, 0x9956_8189);
    // Symmetric, and ports decide between equal addresses.
    assert_eq!(
        bep40_priority(v4(1, 2, 3, 4, 10), v4(5, 6, 7, 8, 20)),
        bep40_priority(v4(5, 6, 7, 8, 20), v4(1, 2, 3, 4, 10))
    );
    assert_ne!(
        bep40_priority(v4(1, 2, 3, 4, 10), v4(1, 2, 3, 4, 20)),
        bep40_priority(v4(1, 2, 3, 4, 10), v4(1, 2, 3, 4, 30))
    );
    let six: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
    let _ = bep40_priority(v4(1, 2, 3, 4, 10), six);
    let _ = bep40_priority("[2001:db8::2]:1".parse().unwrap(), six);
}

#[test]
fn forgotten_after_three_failures_and_not_taken_back_while_remembered() {
    let now = Instant::now();
    let mut l = PeerList::default();
    let a = v4(10, 0, 0, 1, 1);
    let b = v4(10, 0, 0, 2, 1);
    assert!(l.add(a, "tracker", now) && l.add(b, "tracker", now));
    l.failed(a, now);
    assert_eq!(all(&l, now), vec![b]);
    // Through a connection that closed before its handshake.
    assert_eq!(l.attach(a, 7), None.or(Some("tracker")));
    l.closed(7, false, now + Duration::from_secs(10));
    assert_eq!(l.iter().find(|k| k.addr == a).unwrap().fails, 2);
    l.failed(a, now + Duration::from_secs(20));
    assert_eq!(l.len(), 1);
    assert_eq!((l.n_forgotten(), l.forgotten_total()), (1, 1));
    // A tracker or a peer repeating it is refused while it is remembered.
    let later = now + Duration::from_secs(60);
    assert!(!l.add(a, "tracker", later));
    assert!(!l.add_exchanged(a, "pex", later));
    assert_eq!(l.len(), 1);
    // After the memory expires it may come back.
    let much_later = now + Duration::from_secs(20) + FORGET_FOR;
    assert!(l.add(a, "tracker", much_later));
    assert_eq!(l.n_forgotten(), 0);
    assert_eq!(l.iter().find(|k| k.addr == a).unwrap().fails, 0);
}

#[test]
fn a_handshake_resets_the_failures() {
    let now = Instant::now();
    let mut l = PeerList::default();
    let a = v4(10, 0, 0, 1, 1);
    l.add(a, "tracker", now);
    l.failed(a, now);
    l.failed(a, now);
    l.attach(a, 3);
    l.connected(3, now);
    l.closed(3, true, now);
    l.failed(a, now);
    l.failed(a, now);
    assert_eq!(l.len(), 1, "two failures since the handshake");
    l.failed(a, now);
    assert!(l.is_empty());
}

#[test]
fn manual_addresses_are_never_forgotten() {
    let now = Instant::now();
    let mut l = PeerList::default();
    let a = v4(10, 0, 0, 1, 1);
    let b = v4(10, 0, 0, 2, 1);
    l.add(a, "manual", now);
    // Known from a tracker first, then given by the user: manual.
    l.add(b, "tracker", now);
    l.add(b, "manual", now);
    let mut t = now;
    for _ in 0..20 {
        l.failed(a, t);
        l.failed(b, t);
        t += Duration::from_secs(1);
    }
    assert_eq!(l.len(), 2);
    // The back-off stays (2 min at most).
    assert!(all(&l, t).is_empty());
    assert_eq!(all(&l, t + Duration::from_secs(120)).len(), 2);
    // A forgotten address the user names again comes back at once.
    let c = v4(10, 0, 0, 3, 1);
    l.add(c, "tracker", t);
    for _ in 0..3 {
        l.failed(c, t);
    }
    assert!(!l.add(c, "tracker", t));
    assert!(l.add(c, "manual", t));
    assert_eq!(l.n_forgotten(), 0);
}

#[test]
fn exchanged_addresses_are_capped_and_do_not_reset_back_off() {
    let now = Instant::now();
    let mut l = PeerList::default();
    let a = v4(10, 0, 0, 1, 1);
    assert!(l.add(a, "tracker", now));
    l.failed(a, now);
    let next = l.iter().next().unwrap().next_try;
    assert!(next > now);
    assert!(l.add_exchanged(a, "pex", now));
    assert_eq!(l.iter().next().unwrap().next_try, next);
    assert_eq!(l.iter().next().unwrap().source, "tracker");
    for source in ["pex", "dht", "overlay"] {
        for addr in many(MAX_KNOWN, 2) {
            l.add_exchanged(addr, source, now);
        }
    }
    for source in ["pex", "dht", "overlay"] {
        let n = l.iter().filter(|k| k.source == source).count();
        assert!(n <= MAX_PEX_KNOWN, "{source}: {n}");
    }
    assert_eq!(l.len(), MAX_KNOWN);
    // The rest of the list stays open to other sources: a fresh tracker
    // address takes the place of a stranger's.
    assert!(l.add(v4(10, 200, 0, 1, 3), "tracker", now));
    assert!(l.len() <= MAX_KNOWN);
}

#[test]
fn caps_follow_the_memory_share() {
    let now = Instant::now();
    let mut l = PeerList::default();
    for addr in many(5000, 1) {
        l.add(addr, "tracker", now);
    }
    assert_eq!(l.len(), MAX_KNOWN);
    l.set_cap(300);
    assert_eq!((l.cap(), l.len()), (300, 300));
    l.set_cap(1);
    assert_eq!((l.cap(), l.len()), (MIN_KNOWN, MIN_KNOWN));
    // Exchanged sources: half of the smaller cap.
    for addr in many(1000, 9) {
        l.add(addr, "pex", now);
    }
    assert!(l.iter().filter(|k| k.source == "pex").count() <= MIN_KNOWN / 2);
    l.set_cap(usize::MAX);
    assert_eq!(l.cap(), MAX_KNOWN);
}

#[test]
fn a_new_address_replaces_a_worse_one_when_full() {
    let now = Instant::now();
    let mut l = PeerList::default();
    l.set_cap(MIN_KNOWN);
    let addrs: Vec<SocketAddr> = many(MIN_KNOWN, 1).collect();
    for &a in &addrs {
        assert!(l.add(a, "tracker", now));
    }
    let manual = v4(10, 99, 0, 1, 1);
    // Full of good tracker addresses: a new tracker or pex one is refused.
    assert!(!l.add(v4(10, 100, 0, 1, 1), "tracker", now));
    assert!(!l.add(v4(10, 100, 0, 2, 1), "pex", now));
    // The user's always gets in (nothing worse than it: a good one goes).
    // One failed: it goes first.
    l.failed(addrs[5], now);
    assert!(l.add(manual, "manual", now));
    assert!(!l.iter().any(|k| k.addr == addrs[5]));
    // Connected entries are never replaced; stale ones are.
    for (i, &a) in addrs.iter().enumerate().skip(6) {
        l.attach(a, i as u64);
    }
    let t = now + STALE;
    assert!(l.add(v4(10, 100, 0, 3, 1), "tracker", t));
    assert_eq!(l.len(), MIN_KNOWN);
    assert!(l.iter().any(|k| k.addr == manual));
    assert_eq!(l.n_connected(), MIN_KNOWN - 6);
    // Nothing left to replace but connected and manual entries and the
    // fresh one: refused.
    for i in 0..10u8 {
        l.add(v4(10, 101, 0, i, 1), "tracker", t);
    }
    assert_eq!(l.len(), MIN_KNOWN);
    assert_eq!(l.n_connected(), MIN_KNOWN - 6);
}

#[test]
fn dial_order_is_fewer_failures_then_priority() {
    let now = Instant::now();
    let own = v4(203, 0, 113, 5, 6881);
    let mut l = PeerList::default();
    l.set_own_addr(own);
    let addrs: Vec<SocketAddr> = (1..51u8).map(|i| v4(i, 51, 100, 7, 6881)).collect();
    for &a in &addrs {
        l.add(a, "tracker", now);
    }
    let mut by_priority = addrs.clone();
    by_priority.sort_by_key(|&a| std::cmp::Reverse(bep40_priority(own, a)));
    by_priority.dedup_by_key(|a| bep40_priority(own, *a));
    assert_eq!(by_priority.len(), addrs.len(), "no two alike");
    assert_eq!(all(&l, now), by_priority);
    // The top 5 only, the same order.
    assert_eq!(l.candidates(now, false, |_| false, 5), by_priority[..5]);
    // A failure sends an address behind those that never failed.
    let first = by_priority[0];
    l.failed(first, now);
    let t = now + Duration::from_secs(5);
    let order = all(&l, t);
    assert_eq!(order.last(), Some(&first));
    assert_eq!(order[0], by_priority[1]);
    // Priorities follow our own address.
    let own2 = v4(192, 0, 2, 1, 6881);
    l.set_own_addr(own2);
    let best = addrs[1..]
        .iter()
        .chain(std::iter::once(&addrs[0]))
        .copied()
        .filter(|&a| a != first)
        .max_by_key(|&a| bep40_priority(own2, a))
        .unwrap();
    assert_eq!(all(&l, t)[0], best);
}

#[test]
fn backoff_and_seeds() {
    let now = Instant::now();
    let a = v4(127, 0, 0, 1, 1);
    let b = v4(127, 0, 0, 2, 1);
    let mut l = PeerList::default();
    assert!(l.add(a, "manual", now) && l.add(b, "pex", now));
    let mut both = all(&l, now);
    both.sort();
    assert_eq!(both, vec![a, b]);
    assert_eq!(l.candidates(now, false, |x| *x == a, 9), vec![b]);
    assert_eq!(l.attach(a, 7), Some("manual"));
    l.failed(b, now);
    assert!(all(&l, now).is_empty());
    assert_eq!(all(&l, now + Duration::from_secs(2)), vec![b]);
    l.mark_seed(7);
    l.closed(7, true, now);
    assert_eq!(
        l.candidates(now + Duration::from_secs(3), true, |_| false, 9),
        vec![b]
    );
    l.retry_all(now);
    assert_eq!(all(&l, now).len(), 2);
}

fn peer(key: PeerKey, moved: u64) -> ConnectedPeer {
    ConnectedPeer {
        key,
        moved,
        transferring: false,
        interest: 1,
        manual: false,
    }
}

#[test]
fn turnover_lets_the_least_useful_go_every_five_minutes() {
    let t0 = Instant::now();
    let mut tv = Turnover::default();
    let mut peers: Vec<ConnectedPeer> = (0..40).map(|k| peer(k, 1000)).collect();
    peers[0].manual = true;
    peers[0].moved = 0;
    peers[0].interest = 0;
    // Peer 1 keeps moving payload, peer 2 is transferring now, peer 3 moves
    // nothing and nobody is interested, peer 4 moved least.
    peers[3].interest = 0;
    peers[4].moved = 10;
    let sec = Duration::from_secs(1);
    let mut chosen = Vec::new();
    let mut t = t0;
    while t <= t0 + TURNOVER_INTERVAL + 10 * sec {
        peers[1].moved += 100;
        peers[2].transferring = true;
        let got = tv.choose(&peers, true, true, t);
        if !got.is_empty() {
            chosen.push((t.duration_since(t0), got));
        }
        t += 10 * sec;
    }
    // 4 % of 40, rounded down, is 1: the one nobody is interested in.
    assert_eq!(chosen, vec![(TURNOVER_INTERVAL, vec![3])]);
    // Not again before the next round; then the next least useful.
    peers.retain(|p| p.key != 3);
    assert!(tv
        .choose(&peers, true, true, t0 + TURNOVER_INTERVAL + 60 * sec)
        .is_empty());
    let next = t0 + 2 * TURNOVER_INTERVAL;
    assert_eq!(tv.choose(&peers, true, true, next), vec![4]);
    // Nothing when not near the limit, or nothing to dial instead.
    let r3 = t0 + 3 * TURNOVER_INTERVAL;
    assert!(tv.choose(&peers, false, true, r3).is_empty());
    let r4 = t0 + 4 * TURNOVER_INTERVAL;
    assert!(tv.choose(&peers, true, false, r4).is_empty());
    // 4 % of 100 is 4.
    let many: Vec<ConnectedPeer> = (100..200).map(|k| peer(k, 5)).collect();
    let mut tv = Turnover::default();
    assert!(tv.choose(&many, true, true, t0).is_empty());
    assert_eq!(
        tv.choose(&many, true, true, t0 + TURNOVER_INTERVAL).len(),
        4
    );
}

#[test]
fn a_new_peer_is_not_turned_over_before_it_had_its_time() {
    let t0 = Instant::now();
    let mut tv = Turnover::default();
    let old = peer(1, 0);
    assert!(tv.choose(&[old], true, true, t0).is_empty());
    // Peer 2 connects just before the round: only peer 1 may go.
    let t = t0 + TURNOVER_INTERVAL - Duration::from_secs(10);
    tv.choose(&[old, peer(2, 0)], true, true, t);
    let got = tv.choose(&[peer(2, 0), old], true, true, t0 + TURNOVER_INTERVAL);
    assert_eq!(got, vec![1]);
}

#[test]
fn an_entry_costs_what_the_budget_counts() {
    use std::mem::size_of;
    let known = size_of::<KnownPeer>() + size_of::<(SocketAddr, u32)>() * 8 / 7 + 1;
    let forgotten = size_of::<u64>() + size_of::<(u64, Instant)>() * 8 / 7 + 1;
    assert!(
        (known + forgotten) as u64 <= BYTES_PER_ENTRY,
        "{known} + {forgotten}"
    );
}
