//! Trackers on the net thread. Every torrent or magnet with trackers has a
//! [`TrackerSlot`] in `Engine::trackers`, keyed by torrent id, holding its
//! [`Announcer`] (sans I/O, `crate::tracker`); this module does the I/O it
//! asks for. UDP datagrams go out of and come in on the shared UDP port
//! (`net::udp::UdpPort`); `on_udp_readable` hands what it receives to the
//! trackers or the overlay by route. Name resolution and HTTP announces run
//! on the workers.
//!
//! Life of a slot: created when a torrent starts running (or a magnet is
//! added) with `started`; `stopped` when the torrent is paused, `started`
//! again on resume; moved to the new torrent id when a magnet's metadata
//! arrives (no second `started`); kept after the torrent is removed until
//! its `stopped` went out (bounded by the announcer's stop timeout); at
//! shutdown every slot sends `stopped`.

use super::*;
use crate::net::udp::Route;
use crate::tracker::announcer::{Action, Announcer, AnnouncerConfig, AnnouncerParams, TrackerId};
use crate::tracker::{self, Event, Stats, TrackerError};

/// Largest datagram read from the shared UDP port (a BEP 15 answer with
/// 1,000 IPv6 peers fits).
const MAX_DATAGRAM: usize = 20 + 18 * 1000;

/// Tracker requests (announces, scrapes) in flight at once, all torrents
/// together (libtorrent allows 50 HTTP announces; a Pi has four network
/// threads); each torrent has its own cap as well
/// ([`AnnouncerConfig::max_inflight`]). `stopped` events are counted but
/// never held back.
const MAX_TRACKER_REQUESTS: usize = 24;

/// Fewer connected peers than this, and not a finished torrent: ask the
/// trackers for more (each tier no sooner than its tracker's `min interval`).
const FEW_PEERS: usize = 10;

/// `left` announced for a magnet whose size is not known yet: not zero, so
/// that trackers count us as a leecher (and send us seeders).
const MAGNET_LEFT: u64 = 16 * 1024;

/// One torrent's trackers.
pub(super) struct TrackerSlot {
    name: String,
    announcer: Announcer,
    /// The torrent is gone: the slot goes once its `stopped` is sent.
    removed: bool,
}

impl TrackerSlot {
    /// Announces answered and failed by this slot's trackers (metrics).
    pub(super) fn announce_counts(&self) -> (u64, u64) {
        self.announcer.announce_counts()
    }
}

impl Engine {
    /// `started` to a torrent's or magnet's trackers (again after a pause).
    pub(super) fn start_announcer(&mut self, tid: u32, now: Instant) {
        let paused = match self.torrents.get(&tid) {
            Some(t) => t.paused,
            None => self.magnets.get(&tid).is_none_or(|m| m.paused),
        };
        if paused || self.shutdown.is_some() {
            return;
        }
        if let Some(slot) = self.trackers.get_mut(&tid) {
            // Also while `stopped` is still going out (a quick pause and
            // resume): `Started` abandons the stop and starts over.
            if !slot.announcer.is_running() {
                let stats = self.announce_stats(tid);
                self.set_tracker_room(tid);
                if let Some(slot) = self.trackers.get_mut(&tid) {
                    slot.announcer.announce(now, Event::Started, stats);
                }
                self.pump_announcer(tid, now);
            }
            return;
        }
        let (info_hash, name, tiers, private) = if let Some(t) = self.torrents.get(&tid) {
            let m = &t.meta;
            (
                m.info_hash,
                m.name.clone(),
                m.announce_list.clone(),
                m.private,
            )
        } else if let Some(m) = self.magnets.get(&tid) {
            let name = m.name.clone().unwrap_or_else(|| m.info_hash.to_hex());
            // One tier per tracker, as the .torrent saved from the metadata will have.
            let tiers = m.trackers.iter().map(|u| vec![u.clone()]).collect();
            (m.info_hash, name, tiers, false)
        } else {
            return;
        };
        if tiers.is_empty() {
            return;
        }
        let peer_id = self.peer_id;
        let params = AnnouncerParams {
            info_hash: info_hash.0,
            peer_id,
            port: self.listen_addr.port(),
            tiers,
            private,
            seed: u64::from(tid) ^ u64::from_le_bytes(peer_id[12..20].try_into().unwrap_or([7; 8])),
        };
        // BEP 15's full schedule keeps a dead UDP tracker's tier for two
        // hours; two retransmissions (105 s) move on to the next tracker sooner.
        let config = AnnouncerConfig {
            udp_max_retransmits: 2,
            num_want: self.config.tracker_numwant,
            ..AnnouncerConfig::default()
        };
        let mut announcer = Announcer::new(params, config);
        announcer.set_global_room(self.tracker_room(None));
        announcer.announce(now, Event::Started, self.announce_stats(tid));
        self.trackers.insert(
            tid,
            TrackerSlot {
                name,
                announcer,
                removed: false,
            },
        );
        self.pump_announcer(tid, now);
    }

    /// `stopped` to a paused torrent's trackers.
    pub(super) fn pause_announcer(&mut self, tid: u32, now: Instant) {
        let stats = self.announce_stats(tid);
        if let Some(slot) = self.trackers.get_mut(&tid) {
            slot.announcer.stop(now, stats);
        }
        self.pump_announcer(tid, now);
    }

    /// The torrent is removed: `stopped`, then the slot goes.
    pub(super) fn retire_announcer(&mut self, tid: u32, now: Instant) {
        self.pause_announcer(tid, now);
        if let Some(slot) = self.trackers.get_mut(&tid) {
            slot.removed = true;
        }
        self.drop_stopped_slots();
    }

    /// A magnet became torrent `to`: same trackers, no second `started`.
    pub(super) fn move_announcer(&mut self, from: u32, to: u32) {
        if let Some(slot) = self.trackers.remove(&from) {
            self.trackers.insert(to, slot);
        }
    }

    fn drop_stopped_slots(&mut self) {
        let totals = &mut self.totals;
        self.trackers.retain(|_, s| {
            let keep = !(s.removed && s.announcer.is_stopped());
            if !keep {
                totals.retire_announcer(&s.announcer);
            }
            keep
        });
    }

    /// Requests other torrents' announcers leave for this one under
    /// [`MAX_TRACKER_REQUESTS`] (`except`: the torrent asking).
    fn tracker_room(&self, except: Option<u32>) -> usize {
        let busy: usize = self
            .trackers
            .iter()
            .filter(|(tid, _)| Some(**tid) != except)
            .map(|(_, s)| s.announcer.n_inflight())
            .sum();
        MAX_TRACKER_REQUESTS.saturating_sub(busy)
    }

    /// Tells a torrent's announcer how many requests it may start (before
    /// any call that may start some).
    fn set_tracker_room(&mut self, tid: u32) {
        let room = self.tracker_room(Some(tid));
        if let Some(slot) = self.trackers.get_mut(&tid) {
            slot.announcer.set_global_room(room);
        }
    }

    /// Too few peers, and not a finished torrent (a seed waits for leechers
    /// to find it): a magnet, or a download with under [`FEW_PEERS`].
    fn wants_more_peers(&self, tid: u32) -> bool {
        if let Some(t) = self.torrents.get(&tid) {
            return match t.swarm.as_ref() {
                Some(s) => s.have_bytes() < t.meta.total_length() && s.n_peers() < FEW_PEERS,
                None => false,
            };
        }
        if self.magnets.contains_key(&tid) {
            let peers = self
                .conns
                .values()
                .filter(|c| c.torrent == Some(tid) && c.state == ConnState::Active)
                .count();
            return peers < FEW_PEERS;
        }
        false
    }

    /// `completed` to the trackers, once, when the download finishes.
    pub(super) fn announce_completed(&mut self, tid: u32, now: Instant) {
        let stats = self.announce_stats(tid);
        self.set_tracker_room(tid);
        if let Some(slot) = self.trackers.get_mut(&tid) {
            slot.announcer.announce(now, Event::Completed, stats);
        }
        self.pump_announcer(tid, now);
    }

    /// Regular re-announces, early ones while peers are few (the
    /// announcer holds each tier to its `min interval`), scrapes,
    /// retransmissions and timeouts.
    pub(super) fn tick_announcers(&mut self, now: Instant) {
        let tids: Vec<u32> = self.trackers.keys().copied().collect();
        for tid in tids {
            let stats = self.announce_stats(tid);
            let more = self.wants_more_peers(tid);
            self.set_tracker_room(tid);
            if let Some(slot) = self.trackers.get_mut(&tid) {
                slot.announcer.tick(now, stats);
                if more && slot.announcer.is_running() {
                    slot.announcer.announce(now, Event::None, stats);
                }
            }
            self.pump_announcer(tid, now);
        }
        self.drop_stopped_slots();
    }

    /// `stopped` to every tracker (at shutdown; bounded by the announcer).
    pub(super) fn stop_announcers(&mut self, now: Instant) {
        let tids: Vec<u32> = self.trackers.keys().copied().collect();
        for tid in tids {
            self.pause_announcer(tid, now);
        }
    }

    pub(super) fn announcers_stopped(&self) -> bool {
        self.trackers.values().all(|s| s.announcer.is_stopped())
    }

    /// The earliest moment an announcer needs the loop.
    pub(super) fn announcer_deadline(&self) -> Option<Instant> {
        self.trackers
            .values()
            .filter_map(|s| s.announcer.next_deadline())
            .min()
    }

    /// What the trackers are told about a torrent (a removed one keeps
    /// what it reported last: the announcer holds it).
    fn announce_stats(&self, tid: u32) -> Stats {
        if let Some(t) = self.torrents.get(&tid) {
            return match t.swarm.as_ref() {
                Some(s) => Stats {
                    uploaded: s.stats.uploaded,
                    downloaded: s.stats.downloaded,
                    left: t.meta.total_length().saturating_sub(s.have_bytes()),
                },
                None => Stats {
                    uploaded: 0,
                    downloaded: 0,
                    left: t.meta.total_length(),
                },
            };
        }
        if self.magnets.contains_key(&tid) {
            return Stats {
                uploaded: 0,
                downloaded: 0,
                left: MAGNET_LEFT,
            };
        }
        self.trackers
            .get(&tid)
            .map(|s| s.announcer.stats())
            .unwrap_or_default()
    }

    /// Carries out what a torrent's announcer asked for.
    pub(super) fn pump_announcer(&mut self, tid: u32, now: Instant) {
        let Some(slot) = self.trackers.get_mut(&tid) else {
            return;
        };
        let name = slot.name.clone();
        let actions: Vec<Action> = slot.announcer.drain_actions().collect();
        let mut got_peers = false;
        for action in actions {
            match action {
                Action::Resolve {
                    tracker,
                    host,
                    port,
                } => {
                    self.run_net_job(Ctx::TrackerResolve { tid, tracker }, move || {
                        let addrs: Vec<SocketAddr> = (host.as_str(), port)
                            .to_socket_addrs()
                            .map(|a| a.take(16).collect())
                            .unwrap_or_default();
                        RunResult::Addrs(addrs)
                    });
                }
                Action::SendUdp { to, bytes } => {
                    if let Err(e) = self.udp.send_to(&bytes, to) {
                        // The announcer retransmits; nothing else to do.
                        log::debug!("{name}: UDP to tracker {to}: {e}");
                    }
                }
                Action::HttpGet {
                    tracker,
                    url,
                    timeout,
                } => {
                    let roots = Arc::clone(&self.config.tls_roots);
                    self.run_net_job(Ctx::TrackerHttp { tid, tracker }, move || {
                        RunResult::Http(tracker::http::fetch(&url, timeout, &roots))
                    });
                }
                Action::Peers { peers, .. } => {
                    for addr in peers {
                        self.add_known_peer(tid, addr, "tracker", now);
                    }
                    got_peers = true;
                }
                Action::Log(level, msg) => log::log!(level, "{name}: {msg}"),
            }
        }
        if got_peers {
            if self.magnets.contains_key(&tid) {
                self.connect_magnet_peers(tid, now);
            } else {
                self.connect_peers(tid, now);
            }
        }
    }

    pub(super) fn on_tracker_resolved(
        &mut self,
        tid: u32,
        tracker: TrackerId,
        addrs: Vec<SocketAddr>,
        now: Instant,
    ) {
        self.set_tracker_room(tid);
        if let Some(slot) = self.trackers.get_mut(&tid) {
            slot.announcer.on_resolved(tracker, addrs, now);
        }
        self.pump_announcer(tid, now);
    }

    pub(super) fn on_tracker_http(
        &mut self,
        tid: u32,
        tracker: TrackerId,
        result: Result<Vec<u8>, TrackerError>,
        now: Instant,
    ) {
        self.set_tracker_room(tid);
        if let Some(slot) = self.trackers.get_mut(&tid) {
            slot.announcer.on_http_result(tracker, result, now);
        }
        self.pump_announcer(tid, now);
    }

    /// Reads every waiting datagram of the shared UDP port and hands each
    /// to the driver its route names (`net::udp`: trackers, the overlay;
    /// KRPC and uTP are counted there and dropped until their drivers come).
    pub(super) fn on_udp_readable(&mut self, now: Instant) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        // Bounded: at most this many datagrams per turn, the rest next turn.
        for _ in 0..256 {
            let d = match self.udp.recv(&mut buf) {
                Ok(d) => d,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("UDP receive: {e}");
                    return;
                }
            };
            let (from, bytes) = (d.from, d.bytes);
            match d.route {
                Route::Tracker => {
                    let taker = self
                        .trackers
                        .iter_mut()
                        .find_map(|(&tid, s)| s.announcer.on_udp(from, bytes, now).then_some(tid));
                    match taker {
                        Some(tid) => self.pump_announcer(tid, now),
                        None => log::debug!(
                            "UDP datagram from {from} ({} bytes) answers no request",
                            bytes.len()
                        ),
                    }
                }
                // Plain or sealed: the overlay driver opens what it may.
                Route::Overlay | Route::Sealed => self.overlay_input(bytes, from, now),
                Route::Dht => self.dht_input(bytes, from, now),
                Route::Utp | Route::Junk => log::trace!(
                    "UDP datagram from {from} ({} bytes, {}) dropped",
                    bytes.len(),
                    d.route.as_str()
                ),
            }
        }
        // More may be waiting: the socket stays readable (edge-triggered), so look again next turn.
        self.udp_readable = true;
    }

    /// The trackers in one line for `ls`: the best answer (an `ok` one if
    /// any tracker answered), `None` without trackers.
    pub(super) fn tracker_summary(&self, tid: u32, now: Instant) -> Option<String> {
        use crate::tracker::Outcome;
        let Some(slot) = self.trackers.get(&tid) else {
            // Not started: every tracker is "not contacted".
            let first = self.tracker_infos(tid, now).into_iter().next()?;
            return Some(first.last_result);
        };
        let statuses = slot.announcer.status(now);
        let best = statuses
            .iter()
            .find(|s| s.outcome == Outcome::Answered)
            .or_else(|| statuses.iter().find(|s| s.outcome != Outcome::NotContacted))
            .or(statuses.first())?;
        Some(shown_result(best))
    }

    /// Tracker status for the API.
    pub(super) fn tracker_infos(&self, tid: u32, now: Instant) -> Vec<api::TrackerInfo> {
        let Some(slot) = self.trackers.get(&tid) else {
            let tiers: Vec<Vec<String>> = if let Some(t) = self.torrents.get(&tid) {
                t.meta.announce_list.clone()
            } else if let Some(m) = self.magnets.get(&tid) {
                m.trackers.iter().map(|u| vec![u.clone()]).collect()
            } else {
                Vec::new()
            };
            return tiers
                .iter()
                .enumerate()
                .flat_map(|(tier, urls)| {
                    urls.iter().map(move |u| api::TrackerInfo {
                        url: u.clone(),
                        tier,
                        last_result: "not contacted".into(),
                        next_announce_secs: None,
                        seeders: None,
                        leechers: None,
                        downloaded: None,
                    })
                })
                .collect();
        };
        slot.announcer
            .status(now)
            .into_iter()
            .map(|s| api::TrackerInfo {
                last_result: shown_result(&s),
                url: s.url,
                tier: s.tier,
                next_announce_secs: s.next_announce_secs,
                seeders: s.seeders,
                leechers: s.leechers,
                downloaded: s.downloaded,
            })
            .collect()
    }

    /// The swarm as the trackers see it: the most seeders and leechers any
    /// tracker reported (trackers overlap, so a sum would count twice).
    pub(super) fn swarm_counts(&self, tid: u32, now: Instant) -> (Option<u32>, Option<u32>) {
        let Some(slot) = self.trackers.get(&tid) else {
            return (None, None);
        };
        let statuses = slot.announcer.status(now);
        (
            statuses.iter().filter_map(|s| s.seeders).max(),
            statuses.iter().filter_map(|s| s.leechers).max(),
        )
    }
}

/// A tracker's last result as `ls` and the API show it, with its warning.
fn shown_result(s: &crate::tracker::TrackerStatus) -> String {
    match &s.warning {
        Some(w) => format!("{} (warning: {w})", s.last_result),
        None => s.last_result.clone(),
    }
}
