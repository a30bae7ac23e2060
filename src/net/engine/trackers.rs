//! Trackers on the net thread: each running torrent with trackers has an
//! [`Announcer`] (sans I/O, `crate::tracker`); this module does the I/O it
//! asks for. UDP datagrams go out of and come in on the engine's one UDP
//! socket; name resolution and HTTP announces run on the workers.

use super::*;
use crate::tracker::announcer::{Action, Announcer, AnnouncerConfig, AnnouncerParams, TrackerId};
use crate::tracker::{self, Event, Stats, TrackerError};

/// Largest tracker datagram read (a BEP 15 answer with 1,000 IPv6 peers fits).
const MAX_DATAGRAM: usize = 20 + 18 * 1000;

impl Engine {
    /// Announces a torrent that just started running: `started` to its trackers.
    pub(super) fn start_announcer(&mut self, tid: u32, now: Instant) {
        let port = self.listen_addr.port();
        let peer_id = self.peer_id;
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        if t.announcer.is_some() || t.meta.announce_list.is_empty() {
            return;
        }
        let params = AnnouncerParams {
            info_hash: t.meta.info_hash.0,
            peer_id,
            port,
            tiers: t.meta.announce_list.clone(),
            private: t.meta.private,
            seed: u64::from(tid) ^ u64::from_le_bytes(peer_id[12..20].try_into().unwrap_or([7; 8])),
        };
        // BEP 15's full schedule keeps a dead UDP tracker's tier for two
        // hours; two retransmissions (105 s) move on to the next tracker sooner.
        let config = AnnouncerConfig {
            udp_max_retransmits: 2,
            ..AnnouncerConfig::default()
        };
        let mut announcer = Announcer::new(params, config);
        let stats = announce_stats(t);
        announcer.announce(now, Event::Started, stats);
        t.announcer = Some(announcer);
        self.pump_announcer(tid, now);
    }

    /// `completed` to the trackers, once, when the download finishes.
    pub(super) fn announce_completed(&mut self, tid: u32, now: Instant) {
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        let stats = announce_stats(t);
        if let Some(a) = t.announcer.as_mut() {
            a.announce(now, Event::Completed, stats);
        }
        self.pump_announcer(tid, now);
    }

    /// Regular re-announces, retransmissions and timeouts.
    pub(super) fn tick_announcers(&mut self, now: Instant) {
        let tids: Vec<u32> = self
            .torrents
            .iter()
            .filter(|(_, t)| t.announcer.is_some())
            .map(|(k, _)| *k)
            .collect();
        for tid in tids {
            if let Some(t) = self.torrents.get_mut(&tid) {
                let stats = announce_stats(t);
                if let Some(a) = t.announcer.as_mut() {
                    a.tick(now, stats);
                }
            }
            self.pump_announcer(tid, now);
        }
    }

    /// `stopped` to every tracker (at shutdown; bounded by the announcer).
    pub(super) fn stop_announcers(&mut self, now: Instant) {
        let tids: Vec<u32> = self.torrents.keys().copied().collect();
        for tid in tids {
            if let Some(t) = self.torrents.get_mut(&tid) {
                let stats = announce_stats(t);
                if let Some(a) = t.announcer.as_mut() {
                    a.stop(now, stats);
                }
            }
            self.pump_announcer(tid, now);
        }
    }

    pub(super) fn announcers_stopped(&self) -> bool {
        self.torrents
            .values()
            .all(|t| t.announcer.as_ref().is_none_or(Announcer::is_stopped))
    }

    /// The earliest moment an announcer needs the loop.
    pub(super) fn announcer_deadline(&self) -> Option<Instant> {
        self.torrents
            .values()
            .filter_map(|t| t.announcer.as_ref().and_then(Announcer::next_deadline))
            .min()
    }

    /// Carries out what a torrent's announcer asked for.
    pub(super) fn pump_announcer(&mut self, tid: u32, now: Instant) {
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        let name = t.meta.name.clone();
        let Some(a) = t.announcer.as_mut() else {
            return;
        };
        let actions: Vec<Action> = a.drain_actions().collect();
        let mut got_peers = false;
        for action in actions {
            match action {
                Action::Resolve {
                    tracker,
                    host,
                    port,
                } => {
                    self.run_job(Ctx::TrackerResolve { tid, tracker }, move || {
                        let addrs: Vec<SocketAddr> = (host.as_str(), port)
                            .to_socket_addrs()
                            .map(|a| a.take(16).collect())
                            .unwrap_or_default();
                        Box::new(addrs)
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
                    self.run_job(Ctx::TrackerHttp { tid, tracker }, move || {
                        Box::new(tracker::http::fetch(&url, timeout))
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
            self.connect_peers(tid, now);
        }
    }

    fn announcer_mut(&mut self, tid: u32) -> Option<&mut Announcer> {
        self.torrents
            .get_mut(&tid)
            .and_then(|t| t.announcer.as_mut())
    }

    pub(super) fn on_tracker_resolved(
        &mut self,
        tid: u32,
        tracker: TrackerId,
        addrs: Vec<SocketAddr>,
        now: Instant,
    ) {
        if let Some(a) = self.announcer_mut(tid) {
            a.on_resolved(tracker, addrs, now);
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
        if let Some(a) = self.announcer_mut(tid) {
            a.on_http_result(tracker, result, now);
        }
        self.pump_announcer(tid, now);
    }

    /// Reads every waiting datagram and hands each to the announcer it answers.
    pub(super) fn on_udp_readable(&mut self, now: Instant) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        // Bounded: at most this many datagrams per turn, the rest next turn.
        for _ in 0..256 {
            let (n, from) = match self.udp.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("UDP receive: {e}");
                    return;
                }
            };
            let from = match from {
                SocketAddr::V6(v6) => v6
                    .ip()
                    .to_ipv4_mapped()
                    .map_or(from, |v4| SocketAddr::new(v4.into(), v6.port())),
                v4 => v4,
            };
            let tids: Vec<u32> = self
                .torrents
                .iter()
                .filter(|(_, t)| t.announcer.is_some())
                .map(|(k, _)| *k)
                .collect();
            for tid in tids {
                let taken = self
                    .torrents
                    .get_mut(&tid)
                    .and_then(|t| t.announcer.as_mut())
                    .is_some_and(|a| a.on_udp(from, &buf[..n], now));
                if taken {
                    self.pump_announcer(tid, now);
                    break;
                }
            }
        }
        // More may be waiting: the socket stays readable (edge-triggered), so look again next turn.
        self.udp_readable = true;
    }

    /// Tracker status for the API.
    pub(super) fn tracker_infos(&self, tid: u32, now: Instant) -> Vec<api::TrackerInfo> {
        let Some(t) = self.torrents.get(&tid) else {
            return Vec::new();
        };
        let Some(a) = t.announcer.as_ref() else {
            return t
                .meta
                .announce_list
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
                    })
                })
                .collect();
        };
        a.status(now)
            .into_iter()
            .map(|s| api::TrackerInfo {
                url: s.url,
                tier: s.tier,
                last_result: match s.warning {
                    Some(w) => format!("{} (warning: {w})", s.last_result),
                    None => s.last_result,
                },
                next_announce_secs: s.next_announce_secs,
                seeders: s.seeders,
                leechers: s.leechers,
            })
            .collect()
    }
}

/// What the trackers are told about a torrent.
fn announce_stats(t: &TorrentEntry) -> Stats {
    match t.swarm.as_ref() {
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
    }
}
