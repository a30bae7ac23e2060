//! One torrent's tracker announcer, sans I/O: which tracker to ask, with
//! which event, when, and what to do with the answer. It never touches a
//! socket or the clock: every input carries `now`, and every output is an
//! [`Action`] queued for the caller ([`Announcer::drain_actions`]). The
//! module docs of [`crate::tracker`] show the calling loop.
//!
//! # Rules
//!
//! - **Every tier (libtorrent's `announce_to_all_tiers`).** Each tier
//!   announces on its own, in parallel with the others: to its first
//!   tracker that is not backing off. Within a tier (BEP 12) the order is a
//!   per-torrent random one (seeded, so tests are repeatable); a tracker
//!   that answers moves to the front of its tier, and a failure moves on at
//!   once to the tier's next tracker. A tier has at most one request in
//!   flight (an announce or a scrape); a torrent at most
//!   [`AnnouncerConfig::max_inflight`], and the caller may lower that with
//!   [`Announcer::set_global_room`] (its cap over all torrents). Tiers wait
//!   in order for a free slot, announces before scrapes.
//! - **Events.** The first successful announce to each tracker carries
//!   `started`; `completed` goes out once per tier when the caller reports
//!   the download finished (and is dropped for a tier whose tracker saw
//!   `started` with `left = 0`); `stopped` goes, in parallel, to every
//!   tracker that has seen `started`, when the caller calls
//!   [`Announcer::stop`].
//! - **Schedule, per tier.** Regular announces every `interval` of the
//!   tier's answering tracker (clamped to
//!   [`AnnouncerConfig::min_announce_interval`] ..=
//!   [`AnnouncerConfig::max_interval`]; [`AnnouncerConfig::default_interval`]
//!   when it gives none). A forced announce ([`Event::None`] from the
//!   caller, who sends it while it lacks peers) brings each tier's next
//!   announce forward to the tracker's `min interval` after its last answer
//!   ([`AnnouncerConfig::default_min_interval`] when it gives none, never
//!   under [`AnnouncerConfig::min_forced_interval`]); never sooner.
//! - **Scrape (BEP 48 over HTTP, BEP 15 over UDP).** A tracker is scraped
//!   right after its first answer and then every
//!   [`AnnouncerConfig::scrape_interval`]; seeders, leechers and completed
//!   downloads show in [`TrackerStatus`]. A failed scrape waits for the next
//!   interval and changes nothing else; an HTTP tracker whose URL has no
//!   scrape form (BEP 48: the last path segment starts with "announce") is
//!   never scraped.
//! - **Failures.** A tracker that fails backs off for
//!   [`AnnouncerConfig::backoff_base`] × 2^(failures − 1), at most
//!   [`AnnouncerConfig::backoff_max`]. Trackers whose URL we cannot use
//!   (`wss`, garbage, `https` without the `https` feature) are listed in the
//!   status and never tried.
//! - **UDP (BEP 15).** The host is resolved by the caller
//!   ([`Action::Resolve`]), cached for [`AnnouncerConfig::resolve_ttl`].
//!   Connection ids are cached per tracker address for
//!   [`AnnouncerConfig::connection_id_lifetime`] (60 s). A request without an
//!   answer is sent again after base × 2^n (n = 0, 1, …, up to
//!   [`AnnouncerConfig::udp_max_retransmits`]), then the attempt fails. A
//!   datagram counts only if both its transaction id and its source address
//!   match what is in flight; anything else is ignored.
//! - **HTTP.** The caller runs [`crate::tracker::http::fetch`] on a worker
//!   ([`Action::HttpGet`]); the announcer also keeps its own deadline, so a
//!   result that never comes back is a timeout, and a late one is ignored.
//! - **Private torrents (BEP 27)** use only the trackers they were built
//!   with: [`Announcer::add_tracker`] refuses others.
//!
//! # State per tracker
//!
//! A tracker is *idle* or has exactly one request *in flight* (resolving,
//! HTTP, UDP connect, UDP announce or scrape), an announce or a scrape.
//! While the announcer runs, at most one tracker per tier is in flight, and
//! at most `max_inflight` in all; while it stops, one `stopped` per
//! announced tracker. After `tick(now)` the next deadline is always later
//! than `now`.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::http;
use super::udp::{self, Family};
use super::{canonical, AnnounceParams, Event, Secs, Stats, TrackerError, TrackerUrl};

/// Most trackers per torrent; more are ignored (a hostile torrent could list thousands).
pub const MAX_TRACKERS: usize = 100;

/// Extra time the announcer gives a worker's [`http::fetch`] beyond its own
/// timeout (queueing) before it counts the request as lost.
const HTTP_GRACE: Duration = Duration::from_secs(10);

/// Timing and sizes; [`Default`] has the values of the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnouncerConfig {
    /// `numwant` (0 for `stopped`).
    pub num_want: u32,
    /// Interval when the tracker gives none (1,800 s).
    pub default_interval: Duration,
    /// Floor for the regular interval (300 s, libtorrent's `min_announce_interval`).
    pub min_announce_interval: Duration,
    /// Ceiling for the regular interval (2 h).
    pub max_interval: Duration,
    /// Floor for forced announces and for the tracker's `min interval` (30 s).
    pub min_forced_interval: Duration,
    /// `min interval` when the tracker gives none (60 s).
    pub default_min_interval: Duration,
    /// Requests (announces and scrapes) in flight at once for this torrent
    /// (8); `stopped` events are not counted.
    pub max_inflight: usize,
    /// Scrape trackers that answered (true).
    pub scrape: bool,
    /// Time between scrapes of one tracker (30 min).
    pub scrape_interval: Duration,
    /// First back-off after a failure (15 s), doubled for each further failure.
    pub backoff_base: Duration,
    /// Longest back-off (30 min).
    pub backoff_max: Duration,
    /// First UDP retransmission timeout (BEP 15: 15 s).
    pub udp_retransmit_base: Duration,
    /// Retransmissions before a UDP attempt fails (BEP 15: 8, about 2 h in all).
    pub udp_max_retransmits: u32,
    /// How long a UDP connection id may be used (BEP 15: 60 s).
    pub connection_id_lifetime: Duration,
    /// Timeout for an HTTP announce, passed to the worker (30 s).
    pub http_timeout: Duration,
    /// How long `stopped` announces may take in all (5 s).
    pub stop_timeout: Duration,
    /// How long a name resolution may take (30 s).
    pub resolve_timeout: Duration,
    /// How long resolved UDP tracker addresses are reused (30 min).
    pub resolve_ttl: Duration,
}

impl Default for AnnouncerConfig {
    fn default() -> Self {
        AnnouncerConfig {
            num_want: 200,
            default_interval: Duration::from_secs(1800),
            min_announce_interval: Duration::from_secs(300),
            max_interval: Duration::from_secs(2 * 3600),
            min_forced_interval: Duration::from_secs(30),
            default_min_interval: Duration::from_secs(60),
            max_inflight: 8,
            scrape: true,
            scrape_interval: Duration::from_secs(30 * 60),
            backoff_base: Duration::from_secs(15),
            backoff_max: Duration::from_secs(30 * 60),
            udp_retransmit_base: Duration::from_secs(15),
            udp_max_retransmits: 8,
            connection_id_lifetime: Duration::from_secs(60),
            http_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(5),
            resolve_timeout: Duration::from_secs(30),
            resolve_ttl: Duration::from_secs(30 * 60),
        }
    }
}

/// What an announcer is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnouncerParams {
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    /// Our listening TCP port.
    pub port: u16,
    /// The torrent's `announce-list` (BEP 12), or `[[announce]]`.
    pub tiers: Vec<Vec<String>>,
    /// BEP 27: only these trackers, ever.
    pub private: bool,
    /// Seeds the tier shuffle, the key and transaction ids.
    pub seed: u64,
}

/// A tracker of one announcer (an index; stable for the announcer's life).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackerId(u32);

impl TrackerId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// What the announcer asks the caller to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Resolve `host` on a worker, then call [`Announcer::on_resolved`]
    /// with the addresses the net thread's UDP socket can reach (or none).
    Resolve {
        tracker: TrackerId,
        host: String,
        port: u16,
    },
    /// Send one datagram from the net thread's UDP socket. `to` is one of
    /// the addresses given to [`Announcer::on_resolved`], with IPv4-mapped
    /// IPv6 turned into plain IPv4; an IPv6 dual-stack socket must map it back.
    SendUdp { to: SocketAddr, bytes: Vec<u8> },
    /// Run [`http::fetch`]`(url, timeout)` on a worker, then call
    /// [`Announcer::on_http_result`].
    HttpGet {
        tracker: TrackerId,
        url: String,
        timeout: Duration,
    },
    /// Peers from a tracker (de-duplicated; no port 0 or unspecified address).
    Peers {
        tracker: TrackerId,
        peers: Vec<SocketAddr>,
    },
    /// Something for the log.
    Log(log::Level, String),
}

/// How the last request to a tracker went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    NotContacted,
    Answered,
    Failed,
}

/// One tracker, as the control API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackerStatus {
    pub id: TrackerId,
    pub url: String,
    /// 0-based tier (BEP 12).
    pub tier: usize,
    /// `not contacted`, `ok: 37 peers`, `error: <reason>`, `timeout after 15 s`, ...
    pub last_result: String,
    /// What `last_result` says, for code to decide on.
    pub outcome: Outcome,
    /// A request to this tracker is in flight.
    pub updating: bool,
    /// Seconds until this tracker is next asked (or may be asked again after
    /// failures); `None` when nothing is scheduled for it.
    pub next_announce_secs: Option<u64>,
    pub seeders: Option<u32>,
    pub leechers: Option<u32>,
    /// Completed downloads, from the last scrape.
    pub downloaded: Option<u32>,
    /// The tracker's last `warning message`.
    pub warning: Option<String>,
    /// Failures in a row.
    pub failures: u32,
}

/// One torrent's announcer. See the module docs.
#[derive(Debug)]
pub struct Announcer {
    info_hash: [u8; 20],
    peer_id: [u8; 20],
    port: u16,
    private: bool,
    key: u32,
    config: AnnouncerConfig,
    trackers: Vec<Tracker>,
    /// Tier by tier, indices into `trackers` in the order they are tried.
    tiers: Vec<Tier>,
    rng: u64,
    phase: Phase,
    /// Totals from the caller's last call.
    stats: Stats,
    /// Requests the caller lets this torrent start beyond those in flight
    /// (its cap over all torrents); `usize::MAX` until it says.
    global_room: usize,
    stop_deadline: Option<Instant>,
    /// UDP connection ids by tracker address, with the time they were issued.
    connection_ids: Vec<(SocketAddr, u64, Instant)>,
    actions: Vec<Action>,
    /// Announces answered and failed, since this announcer was made (metrics).
    n_answered: u64,
    n_failed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not started, or stopped.
    Idle,
    Running,
    /// Sending `stopped` events until they are answered or time runs out.
    Stopping,
}

/// One tier (BEP 12) and its schedule.
#[derive(Debug, Default)]
struct Tier {
    /// Indices into `trackers`, in the order they are tried.
    members: Vec<usize>,
    /// When this tier's next announce is due (running only).
    next_at: Option<Instant>,
    /// The member that answered last; its schedule is the tier's.
    current: Option<usize>,
    /// `completed` is owed to this tier's next announce.
    completed_pending: bool,
    /// This tier's tracker heard that we are complete (`completed`, or
    /// `started` with `left = 0`): `completed` is not sent again.
    completed_sent: bool,
}

#[derive(Debug)]
struct Tracker {
    url: String,
    tier: usize,
    /// `Err`: never usable (the status shows why).
    endpoint: Result<TrackerUrl, TrackerError>,
    failures: u32,
    retry_at: Option<Instant>,
    last: LastResult,
    warning: Option<String>,
    interval: Duration,
    min_interval: Duration,
    last_success: Option<Instant>,
    seeders: Option<u32>,
    leechers: Option<u32>,
    downloaded: Option<u32>,
    /// When this tracker is next scraped (`None`: not yet answered, or no scrape URL).
    next_scrape_at: Option<Instant>,
    tracker_id: Option<Vec<u8>>,
    /// A `started` announce succeeded and no `stopped` since.
    started_sent: bool,
    addrs: Vec<SocketAddr>,
    addr_idx: usize,
    resolved_at: Option<Instant>,
    inflight: Option<Inflight>,
}

#[derive(Debug)]
enum LastResult {
    Never,
    Ok { peers: usize },
    Err(TrackerError),
}

#[derive(Debug)]
struct Inflight {
    event: Event,
    /// A scrape (`event` is then [`Event::None`]), not an announce.
    scrape: bool,
    stats: Stats,
    stage: Stage,
}

#[derive(Clone, Copy, Debug)]
enum Stage {
    Resolving {
        deadline: Instant,
    },
    Http {
        deadline: Instant,
        timeout: Duration,
    },
    UdpConnect {
        to: SocketAddr,
        transaction_id: u32,
        attempt: u32,
        deadline: Instant,
    },
    UdpAnnounce {
        to: SocketAddr,
        transaction_id: u32,
        attempt: u32,
        deadline: Instant,
    },
}

impl Stage {
    fn deadline(&self) -> Instant {
        match self {
            Stage::Resolving { deadline }
            | Stage::Http { deadline, .. }
            | Stage::UdpConnect { deadline, .. }
            | Stage::UdpAnnounce { deadline, .. } => *deadline,
        }
    }
}

/// An announce answer from either protocol.
struct Reply {
    interval: Option<u32>,
    min_interval: Option<u32>,
    seeders: Option<u32>,
    leechers: Option<u32>,
    tracker_id: Option<Vec<u8>>,
    warning: Option<String>,
    peers: Vec<SocketAddr>,
}

impl Announcer {
    /// Builds the announcer: trackers de-duplicated (at most
    /// [`MAX_TRACKERS`]), each tier shuffled with `params.seed`. Nothing is
    /// sent until [`Announcer::announce`] with [`Event::Started`].
    pub fn new(params: AnnouncerParams, config: AnnouncerConfig) -> Announcer {
        let mut rng = params.seed ^ 0x5851_f42d_4c95_7f2d;
        let key = splitmix64(&mut rng) as u32;
        let mut a = Announcer {
            info_hash: params.info_hash,
            peer_id: params.peer_id,
            port: params.port,
            private: params.private,
            key,
            config,
            trackers: Vec::new(),
            tiers: Vec::new(),
            rng,
            phase: Phase::Idle,
            stats: Stats::default(),
            global_room: usize::MAX,
            stop_deadline: None,
            connection_ids: Vec::new(),
            actions: Vec::new(),
            n_answered: 0,
            n_failed: 0,
        };
        for tier in &params.tiers {
            let mut members = Vec::new();
            for url in tier {
                if let Some(i) = a.push_tracker(url, a.tiers.len()) {
                    members.push(i);
                }
            }
            if !members.is_empty() {
                // BEP 12: shuffle each tier once, when the torrent is loaded.
                for i in (1..members.len()).rev() {
                    let j = (splitmix64(&mut a.rng) % (i as u64 + 1)) as usize;
                    members.swap(i, j);
                }
                a.tiers.push(Tier {
                    members,
                    ..Tier::default()
                });
            }
        }
        a
    }

    /// Starts (`Started`), reports the finished download (`Completed`, sent
    /// once), forces an early announce (`None`, honouring min intervals) or
    /// stops (`Stopped`, the same as [`Announcer::stop`]).
    pub fn announce(&mut self, now: Instant, event: Event, stats: Stats) {
        self.stats = stats;
        match event {
            Event::Started => {
                for t in &mut self.trackers {
                    t.inflight = None;
                    t.started_sent = false;
                }
                self.phase = Phase::Running;
                for tier in &mut self.tiers {
                    tier.completed_pending = false;
                    tier.completed_sent = false;
                    tier.next_at = Some(now);
                }
                self.stop_deadline = None;
                self.maybe_start(now);
            }
            Event::Completed => {
                if self.phase != Phase::Running {
                    return;
                }
                for tier in &mut self.tiers {
                    if !tier.completed_sent {
                        tier.completed_pending = true;
                        // A tier announcing now sends it when it is answered.
                        if !tier
                            .members
                            .iter()
                            .any(|&i| self.trackers[i].inflight.is_some())
                        {
                            tier.next_at = Some(now);
                        }
                    }
                }
                self.maybe_start(now);
            }
            Event::None => {
                if self.phase != Phase::Running {
                    return;
                }
                for tier in &mut self.tiers {
                    // Only a tier whose tracker answered: the others are
                    // still trying, or backing off on their own schedule.
                    let Some(t) = tier.current.and_then(|i| self.trackers.get(i)) else {
                        continue;
                    };
                    if t.inflight.is_some() {
                        continue;
                    }
                    let earliest = t
                        .last_success
                        .map_or(now, |at| at + t.min_interval)
                        .max(now);
                    tier.next_at = Some(tier.next_at.map_or(earliest, |at| at.min(earliest)));
                }
                self.maybe_start(now);
            }
            Event::Stopped => self.stop(now, stats),
        }
    }

    /// How many more requests the caller lets this torrent start now (its
    /// cap over all torrents, less what the others have in flight); the
    /// torrent's own [`AnnouncerConfig::max_inflight`] applies as well.
    pub fn set_global_room(&mut self, room: usize) {
        self.global_room = room;
    }

    /// Requests in flight (announces, scrapes, `stopped` events).
    pub fn n_inflight(&self) -> usize {
        self.trackers
            .iter()
            .filter(|t| t.inflight.is_some())
            .count()
    }

    /// Clean shutdown: abandons what is in flight and sends `stopped` to
    /// every tracker that saw `started`, in parallel. Keep calling `tick`
    /// (and feeding results) until [`Announcer::is_stopped`]; it becomes true
    /// after [`AnnouncerConfig::stop_timeout`] at the latest.
    pub fn stop(&mut self, now: Instant, stats: Stats) {
        self.stats = stats;
        if self.phase == Phase::Idle {
            return;
        }
        for t in &mut self.trackers {
            t.inflight = None;
        }
        self.phase = Phase::Stopping;
        for tier in &mut self.tiers {
            tier.next_at = None;
            tier.completed_pending = false;
        }
        self.stop_deadline = Some(now + self.config.stop_timeout);
        let announced: Vec<usize> = (0..self.trackers.len())
            .filter(|&i| self.trackers[i].started_sent)
            .collect();
        for i in announced {
            self.start_attempt(i, now, Event::Stopped, false);
        }
        self.finish_stopping_if_done();
    }

    /// The transfer totals last given to the announcer.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Announces (any event) answered and failed so far: `(ok, failed)`.
    pub fn announce_counts(&self) -> (u64, u64) {
        (self.n_answered, self.n_failed)
    }

    /// Started and not stopping.
    pub fn is_running(&self) -> bool {
        self.phase == Phase::Running
    }

    /// True when not started, or when stopping is over.
    pub fn is_stopped(&self) -> bool {
        self.phase == Phase::Idle
    }

    /// BEP 27: the torrent is private (no DHT, PEX, LSD or extra trackers).
    pub fn is_private(&self) -> bool {
        self.private
    }

    /// Handles timers: retransmissions, lost requests, the next announce.
    pub fn tick(&mut self, now: Instant, stats: Stats) {
        self.stats = stats;
        for i in 0..self.trackers.len() {
            self.check_timeout(i, now);
        }
        if self.phase == Phase::Stopping && self.stop_deadline.is_some_and(|d| d <= now) {
            let timeout = self.config.stop_timeout;
            for t in &mut self.trackers {
                if t.inflight.take().is_some() {
                    t.started_sent = false;
                    t.last = LastResult::Err(TrackerError::Timeout(Some(timeout)));
                    self.n_failed += 1;
                }
            }
            self.finish_stopping_if_done();
        }
        self.maybe_start(now);
    }

    /// The earliest time [`Announcer::tick`] has work; `None` when idle.
    /// A due announce or scrape that waits for a free slot is not counted:
    /// a finished request starts it, or the caller's next regular tick.
    pub fn next_deadline(&self) -> Option<Instant> {
        let inflight = self
            .trackers
            .iter()
            .filter_map(|t| t.inflight.as_ref().map(|f| f.stage.deadline()));
        let own = match self.phase {
            Phase::Idle => None,
            Phase::Running if self.room() == 0 => None,
            Phase::Running => self
                .tiers
                .iter()
                .filter(|tier| !self.tier_busy(tier))
                .flat_map(|tier| {
                    let scrapes = tier
                        .members
                        .iter()
                        .filter_map(|&i| self.trackers[i].next_scrape_at);
                    tier.next_at.into_iter().chain(scrapes)
                })
                .min(),
            Phase::Stopping => self.stop_deadline,
        };
        inflight.chain(own).min()
    }

    /// The queued actions, oldest first.
    pub fn drain_actions(&mut self) -> std::vec::Drain<'_, Action> {
        self.actions.drain(..)
    }

    /// The result of an [`Action::Resolve`]: the addresses of the host that
    /// the UDP socket can reach (empty if none or on error). Ignored unless
    /// that tracker is waiting for it.
    pub fn on_resolved(&mut self, tracker: TrackerId, addrs: Vec<SocketAddr>, now: Instant) {
        let i = tracker.index();
        let Some(t) = self.trackers.get_mut(i) else {
            return;
        };
        if !matches!(
            t.inflight,
            Some(Inflight {
                stage: Stage::Resolving { .. },
                ..
            })
        ) {
            return;
        }
        let mut unique = Vec::new();
        for addr in addrs.into_iter().map(canonical) {
            if !unique.contains(&addr) && unique.len() < 8 {
                unique.push(addr);
            }
        }
        if unique.is_empty() {
            let host = match &t.endpoint {
                Ok(TrackerUrl::Udp { host, .. }) => host.clone(),
                _ => t.url.clone(),
            };
            self.fail(i, now, TrackerError::Resolve(host));
            return;
        }
        t.addrs = unique;
        t.addr_idx = 0;
        t.resolved_at = Some(now);
        self.udp_send(i, now, 0);
    }

    /// The result of an [`Action::HttpGet`]: the body, or why there is none.
    /// Ignored unless that tracker has an HTTP request in flight.
    pub fn on_http_result(
        &mut self,
        tracker: TrackerId,
        result: Result<Vec<u8>, TrackerError>,
        now: Instant,
    ) {
        let i = tracker.index();
        let waiting = self.trackers.get(i).is_some_and(|t| {
            matches!(
                t.inflight,
                Some(Inflight {
                    stage: Stage::Http { .. },
                    ..
                })
            )
        });
        if !waiting {
            return;
        }
        if self.trackers[i].inflight.as_ref().is_some_and(|f| f.scrape) {
            let info_hash = self.info_hash;
            let res = result
                .and_then(|body| http::parse_scrape(&body))
                .and_then(|files| {
                    files
                        .into_iter()
                        .find(|(hash, _)| *hash == info_hash)
                        .map(|(_, s)| udp::ScrapeEntry {
                            seeders: s.complete,
                            completed: s.downloaded,
                            leechers: s.incomplete,
                        })
                        .ok_or_else(|| {
                            TrackerError::BadResponse("torrent not in the scrape".into())
                        })
                });
            self.scraped(i, now, res);
            return;
        }
        match result.and_then(|body| http::parse_announce(&body)) {
            Ok(r) => self.succeed(
                i,
                now,
                Reply {
                    interval: r.interval,
                    min_interval: r.min_interval,
                    seeders: r.complete,
                    leechers: r.incomplete,
                    tracker_id: r.tracker_id,
                    warning: r.warning,
                    peers: r.peers,
                },
            ),
            Err(e) => self.fail(i, now, e),
        }
    }

    /// A datagram that arrived on the UDP socket. Returns true if it answered
    /// a request of this announcer (same source address and transaction id),
    /// false if it is someone else's: then nothing changed.
    pub fn on_udp(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) -> bool {
        let from = canonical(from);
        let Some(tid) = udp::response_transaction_id(bytes) else {
            return false;
        };
        let found = self.trackers.iter().position(|t| match &t.inflight {
            Some(Inflight {
                stage:
                    Stage::UdpConnect {
                        to, transaction_id, ..
                    }
                    | Stage::UdpAnnounce {
                        to, transaction_id, ..
                    },
                ..
            }) => *to == from && *transaction_id == tid,
            _ => false,
        });
        let Some(i) = found else {
            return false;
        };
        let connecting = matches!(
            self.trackers[i].inflight,
            Some(Inflight {
                stage: Stage::UdpConnect { .. },
                ..
            })
        );
        let scrape = self.trackers[i].inflight.as_ref().is_some_and(|f| f.scrape);
        match udp::Response::parse(bytes, Family::of(&from)) {
            Err(e) => self.fail(i, now, TrackerError::BadPacket(e)),
            Ok(udp::Response::Connect { connection_id, .. }) if connecting => {
                self.connection_ids.retain(|(addr, _, at)| {
                    *addr != from && now.saturating_duration_since(*at) < Duration::from_secs(3600)
                });
                self.connection_ids.push((from, connection_id, now));
                self.udp_send(i, now, 0);
            }
            Ok(udp::Response::Scrape { entries, .. }) if !connecting && scrape => {
                let res = entries
                    .first()
                    .copied()
                    .ok_or_else(|| TrackerError::BadResponse("empty scrape response".into()));
                self.scraped(i, now, res);
            }
            Ok(udp::Response::Announce(r)) if !connecting && !scrape => self.succeed(
                i,
                now,
                Reply {
                    interval: Some(r.interval),
                    min_interval: None,
                    seeders: Some(r.seeders),
                    leechers: Some(r.leechers),
                    tracker_id: None,
                    warning: None,
                    peers: r.peers,
                },
            ),
            Ok(udp::Response::Error { message, .. }) => {
                // The connection id may be what it objects to: get a new one next time.
                self.connection_ids.retain(|(addr, _, _)| *addr != from);
                self.fail(i, now, TrackerError::Failure(message));
            }
            Ok(other) => {
                let what = match other {
                    udp::Response::Connect { .. } => "connect",
                    udp::Response::Announce(_) => "announce",
                    udp::Response::Scrape { .. } => "scrape",
                    udp::Response::Error { .. } => "error",
                };
                self.fail(
                    i,
                    now,
                    TrackerError::BadResponse(format!("unexpected {what} response")),
                );
            }
        }
        true
    }

    /// Adds a tracker in a new last tier (a magnet's `tr`, a user's request).
    /// Refused for private torrents (BEP 27) and beyond [`MAX_TRACKERS`]; an
    /// URL already listed gives its existing id.
    pub fn add_tracker(&mut self, url: &str, now: Instant) -> Result<TrackerId, TrackerError> {
        if self.private {
            return Err(TrackerError::Private);
        }
        if let Some(i) = self.trackers.iter().position(|t| t.url == url.trim()) {
            return Ok(TrackerId(i as u32));
        }
        let tier = self.tiers.len();
        let i = self
            .push_tracker(url, tier)
            .ok_or_else(|| TrackerError::BadUrl(format!("more than {MAX_TRACKERS} trackers")))?;
        let running = self.phase == Phase::Running;
        self.tiers.push(Tier {
            members: vec![i],
            next_at: running.then_some(now),
            ..Tier::default()
        });
        self.maybe_start(now);
        Ok(TrackerId(i as u32))
    }

    /// Every tracker, tier by tier in the order they are tried.
    pub fn status(&self, now: Instant) -> Vec<TrackerStatus> {
        let secs_until = |at: Instant| at.saturating_duration_since(now).as_secs();
        let mut out = Vec::with_capacity(self.trackers.len());
        for tier in &self.tiers {
            for &i in &tier.members {
                let Some(t) = self.trackers.get(i) else {
                    continue;
                };
                let next = if self.phase != Phase::Running
                    || t.inflight.is_some()
                    || t.endpoint.is_err()
                {
                    None
                } else if let Some(at) = t.retry_at.filter(|&at| at > now) {
                    Some(secs_until(at))
                } else if tier.current == Some(i) {
                    tier.next_at.map(secs_until)
                } else {
                    None
                };
                out.push(TrackerStatus {
                    id: TrackerId(i as u32),
                    url: t.url.clone(),
                    tier: t.tier,
                    last_result: t.describe(),
                    outcome: t.outcome(),
                    updating: t.inflight.is_some(),
                    next_announce_secs: next,
                    seeders: t.seeders,
                    leechers: t.leechers,
                    downloaded: t.downloaded,
                    warning: t.warning.clone(),
                    failures: t.failures,
                });
            }
        }
        out
    }

    // -----------------------------------------------------------------------
    // Internals.

    fn push_tracker(&mut self, url: &str, tier: usize) -> Option<usize> {
        let url = url.trim();
        if url.is_empty()
            || self.trackers.len() >= MAX_TRACKERS
            || self.trackers.iter().any(|t| t.url == url)
        {
            return None;
        }
        self.trackers.push(Tracker {
            url: url.to_string(),
            tier,
            endpoint: TrackerUrl::parse(url),
            failures: 0,
            retry_at: None,
            last: LastResult::Never,
            warning: None,
            interval: self.config.default_interval,
            min_interval: self.config.min_forced_interval,
            last_success: None,
            seeders: None,
            leechers: None,
            downloaded: None,
            next_scrape_at: None,
            tracker_id: None,
            started_sent: false,
            addrs: Vec::new(),
            addr_idx: 0,
            resolved_at: None,
            inflight: None,
        });
        Some(self.trackers.len() - 1)
    }

    fn any_inflight(&self) -> bool {
        self.trackers.iter().any(|t| t.inflight.is_some())
    }

    /// Requests this torrent may still start (its own cap and the caller's).
    fn room(&self) -> usize {
        self.config
            .max_inflight
            .saturating_sub(self.n_inflight())
            .min(self.global_room)
    }

    /// A member of the tier has a request in flight.
    fn tier_busy(&self, tier: &Tier) -> bool {
        tier.members
            .iter()
            .any(|&i| self.trackers[i].inflight.is_some())
    }

    /// Starts what is due, while there is room: each idle tier's announce
    /// (tier order), then scrapes.
    fn maybe_start(&mut self, now: Instant) {
        if self.phase != Phase::Running {
            return;
        }
        for k in 0..self.tiers.len() {
            if self.room() == 0 {
                return;
            }
            let tier = &self.tiers[k];
            if tier.next_at.is_none_or(|at| at > now) || self.tier_busy(tier) {
                continue;
            }
            let pick = tier.members.iter().copied().find(|&i| {
                let t = &self.trackers[i];
                t.endpoint.is_ok() && t.retry_at.is_none_or(|r| r <= now)
            });
            match pick {
                Some(i) => {
                    let event = if !self.trackers[i].started_sent {
                        Event::Started
                    } else if tier.completed_pending {
                        Event::Completed
                    } else {
                        Event::None
                    };
                    self.start_attempt(i, now, event, false);
                }
                None => {
                    // The whole tier backs off: wait for its first to be ready.
                    let ready = tier
                        .members
                        .iter()
                        .map(|&i| &self.trackers[i])
                        .filter(|t| t.endpoint.is_ok())
                        .filter_map(|t| t.retry_at)
                        .min();
                    self.tiers[k].next_at = ready;
                }
            }
        }
        for k in 0..self.tiers.len() {
            if self.room() == 0 {
                return;
            }
            let tier = &self.tiers[k];
            if self.tier_busy(tier) {
                continue;
            }
            let due = tier
                .members
                .iter()
                .copied()
                .find(|&i| self.trackers[i].next_scrape_at.is_some_and(|at| at <= now));
            if let Some(i) = due {
                self.start_attempt(i, now, Event::None, true);
            }
        }
    }

    fn start_attempt(&mut self, i: usize, now: Instant, event: Event, scrape: bool) {
        let stats = self.stats;
        let tracker = TrackerId(i as u32);
        let params = self.params(i, event, stats);
        let info_hash = self.info_hash;
        let stop_timeout = self.config.stop_timeout;
        let http_timeout = self.config.http_timeout;
        let resolve_timeout = self.config.resolve_timeout;
        let resolve_ttl = self.config.resolve_ttl;
        let scrape_interval = self.config.scrape_interval;
        let t = &mut self.trackers[i];
        let Ok(endpoint) = &t.endpoint else {
            return;
        };
        if scrape {
            t.next_scrape_at = Some(now + scrape_interval);
        }
        match endpoint {
            TrackerUrl::Http(url) => {
                let timeout = if event == Event::Stopped {
                    stop_timeout
                } else {
                    http_timeout
                };
                let url = if scrape {
                    match http::scrape_url(url, &[info_hash]) {
                        Some(url) => url,
                        None => {
                            // BEP 48: no scrape form of this announce URL.
                            t.next_scrape_at = None;
                            return;
                        }
                    }
                } else {
                    http::announce_url(url, &params)
                };
                t.inflight = Some(Inflight {
                    event,
                    scrape,
                    stats,
                    stage: Stage::Http {
                        deadline: now + timeout + HTTP_GRACE,
                        timeout,
                    },
                });
                self.actions.push(Action::HttpGet {
                    tracker,
                    url,
                    timeout,
                });
            }
            TrackerUrl::Udp { host, port } => {
                let stale = t
                    .resolved_at
                    .is_none_or(|at| now.saturating_duration_since(at) >= resolve_ttl);
                // Stopping uses what it has rather than wait for a resolver.
                if t.addrs.is_empty() || (stale && event != Event::Stopped) {
                    let (host, port) = (host.clone(), *port);
                    t.inflight = Some(Inflight {
                        event,
                        scrape,
                        stats,
                        stage: Stage::Resolving {
                            deadline: now + resolve_timeout,
                        },
                    });
                    self.actions.push(Action::Resolve {
                        tracker,
                        host,
                        port,
                    });
                } else {
                    // A placeholder stage that `udp_send` replaces at once.
                    t.inflight = Some(Inflight {
                        event,
                        scrape,
                        stats,
                        stage: Stage::Resolving { deadline: now },
                    });
                    self.udp_send(i, now, 0);
                }
            }
        }
    }

    fn params(&self, i: usize, event: Event, stats: Stats) -> AnnounceParams {
        AnnounceParams {
            info_hash: self.info_hash,
            peer_id: self.peer_id,
            port: self.port,
            stats,
            event,
            num_want: if event == Event::Stopped {
                0
            } else {
                self.config.num_want
            },
            key: self.key,
            tracker_id: self.trackers.get(i).and_then(|t| t.tracker_id.clone()),
        }
    }

    /// Sends the UDP request the tracker's in-flight attempt needs next: an
    /// announce if a live connection id is known for its address, otherwise
    /// a connect (BEP 15: "if the connection id expired, connect again").
    fn udp_send(&mut self, i: usize, now: Instant, attempt: u32) {
        let lifetime = self.config.connection_id_lifetime;
        let timeout = self.retransmit_timeout(attempt);
        let Some(t) = self.trackers.get(i) else {
            return;
        };
        let Some(to) = t.addrs.get(t.addr_idx % t.addrs.len().max(1)).copied() else {
            return;
        };
        let Some(inflight) = &t.inflight else {
            return;
        };
        let (event, stats, scrape) = (inflight.event, inflight.stats, inflight.scrape);
        let live_id = self
            .connection_ids
            .iter()
            .find(|(addr, _, at)| *addr == to && now.saturating_duration_since(*at) < lifetime)
            .map(|(_, id, _)| *id);
        let transaction_id = splitmix64(&mut self.rng) as u32;
        let (request, stage) = match live_id {
            Some(connection_id) if scrape => (
                udp::Request::Scrape(udp::ScrapeRequest {
                    connection_id,
                    transaction_id,
                    info_hashes: vec![self.info_hash],
                }),
                Stage::UdpAnnounce {
                    to,
                    transaction_id,
                    attempt,
                    deadline: now + timeout,
                },
            ),
            Some(connection_id) => {
                let p = self.params(i, event, stats);
                (
                    udp::Request::Announce(udp::AnnounceRequest {
                        connection_id,
                        transaction_id,
                        info_hash: p.info_hash,
                        peer_id: p.peer_id,
                        downloaded: p.stats.downloaded,
                        left: p.stats.left,
                        uploaded: p.stats.uploaded,
                        event,
                        ip: 0,
                        key: p.key,
                        num_want: if event == Event::Stopped {
                            0
                        } else {
                            i32::try_from(p.num_want).unwrap_or(i32::MAX)
                        },
                        port: p.port,
                    }),
                    Stage::UdpAnnounce {
                        to,
                        transaction_id,
                        attempt,
                        deadline: now + timeout,
                    },
                )
            }
            None => (
                udp::Request::Connect(udp::ConnectRequest { transaction_id }),
                Stage::UdpConnect {
                    to,
                    transaction_id,
                    attempt,
                    deadline: now + timeout,
                },
            ),
        };
        self.send_request(i, to, &request, stage);
    }

    fn send_request(&mut self, i: usize, to: SocketAddr, request: &udp::Request, stage: Stage) {
        match request.to_bytes() {
            Ok(bytes) => {
                if let Some(inflight) = self.trackers.get_mut(i).and_then(|t| t.inflight.as_mut()) {
                    inflight.stage = stage;
                }
                self.actions.push(Action::SendUdp { to, bytes });
            }
            Err(e) => {
                // Only a scrape with too many hashes can fail; we never build one here.
                self.actions.push(Action::Log(
                    log::Level::Error,
                    format!("tracker: cannot emit UDP request: {e}"),
                ));
            }
        }
    }

    fn retransmit_timeout(&self, attempt: u32) -> Duration {
        self.config
            .udp_retransmit_base
            .saturating_mul(1u32 << attempt.min(16))
    }

    /// Expires the in-flight stage of tracker `i` if its deadline passed.
    fn check_timeout(&mut self, i: usize, now: Instant) {
        let Some(stage) = self
            .trackers
            .get(i)
            .and_then(|t| t.inflight.as_ref())
            .map(|f| f.stage)
        else {
            return;
        };
        if stage.deadline() > now {
            return;
        }
        match stage {
            Stage::Resolving { .. } => {
                let t = &self.trackers[i];
                let host = match &t.endpoint {
                    Ok(TrackerUrl::Udp { host, .. }) => host.clone(),
                    _ => t.url.clone(),
                };
                let waited = Secs(self.config.resolve_timeout);
                self.fail(
                    i,
                    now,
                    TrackerError::Resolve(format!("{host} (no answer in {waited})")),
                );
            }
            Stage::Http { timeout, .. } => self.fail(i, now, TrackerError::Timeout(Some(timeout))),
            Stage::UdpConnect { attempt, .. } | Stage::UdpAnnounce { attempt, .. }
                if attempt >= self.config.udp_max_retransmits =>
            {
                // Try another address of the host next time.
                let t = &mut self.trackers[i];
                t.addr_idx = t.addr_idx.wrapping_add(1);
                let total = (0..=attempt).map(|n| self.retransmit_timeout(n)).sum();
                self.fail(i, now, TrackerError::Timeout(Some(total)));
            }
            Stage::UdpConnect {
                to,
                transaction_id,
                attempt,
                ..
            } => {
                // BEP 15: retransmit the same request after 15 × 2^n seconds.
                let stage = Stage::UdpConnect {
                    to,
                    transaction_id,
                    attempt: attempt + 1,
                    deadline: now + self.retransmit_timeout(attempt + 1),
                };
                let request = udp::Request::Connect(udp::ConnectRequest { transaction_id });
                self.log_retransmit(i, attempt + 1);
                self.send_request(i, to, &request, stage);
            }
            Stage::UdpAnnounce { attempt, .. } => {
                // The announce again, or a connect first if the connection id
                // expired meanwhile (BEP 15); with a fresh transaction id.
                self.log_retransmit(i, attempt + 1);
                self.udp_send(i, now, attempt + 1);
            }
        }
    }

    fn log_retransmit(&mut self, i: usize, attempt: u32) {
        let url = &self.trackers[i].url;
        self.actions.push(Action::Log(
            log::Level::Debug,
            format!("tracker {url}: no answer, sending again (retransmission {attempt})"),
        ));
    }

    fn succeed(&mut self, i: usize, now: Instant, reply: Reply) {
        let cfg = &self.config;
        let interval = reply
            .interval
            .map_or(cfg.default_interval, |s| Duration::from_secs(u64::from(s)))
            .clamp(cfg.min_announce_interval, cfg.max_interval);
        let min_interval = reply
            .min_interval
            .map_or(cfg.default_min_interval, |s| {
                Duration::from_secs(u64::from(s))
            })
            .clamp(cfg.min_forced_interval, interval);
        let scrape_now = Some(now);
        let scrape = cfg.scrape;
        let Some(t) = self.trackers.get_mut(i) else {
            return;
        };
        let Some(inflight) = t.inflight.take() else {
            return;
        };
        self.n_answered += 1;
        let recovered = !matches!(t.last, LastResult::Ok { .. });
        t.failures = 0;
        t.retry_at = None;
        t.warning = reply.warning;
        if reply.seeders.is_some() || reply.leechers.is_some() {
            t.seeders = reply.seeders;
            t.leechers = reply.leechers;
        }
        if let Some(id) = reply.tracker_id {
            t.tracker_id = Some(id);
        }
        let url = t.url.clone();
        if inflight.event == Event::Stopped {
            t.started_sent = false;
            t.last = LastResult::Ok { peers: 0 };
            self.actions.push(Action::Log(
                log::Level::Debug,
                format!("tracker {url}: stopped"),
            ));
            self.finish_stopping_if_done();
            return;
        }
        let completed_now = match inflight.event {
            Event::Started => {
                t.started_sent = true;
                // Started with `left = 0`: the tracker knows we are
                // complete; a `completed` would be noise.
                inflight.stats.left == 0
            }
            Event::Completed => true,
            Event::None | Event::Stopped => false,
        };
        t.interval = interval;
        t.min_interval = min_interval;
        t.last_success = Some(now);
        if t.next_scrape_at.is_none() && scrape {
            // First answer: scrape it now (BEP 48 or BEP 15), then every interval.
            t.next_scrape_at = scrape_now;
        }

        let mut seen = HashSet::new();
        let peers: Vec<SocketAddr> = reply
            .peers
            .into_iter()
            .filter(|p| usable_peer(p) && seen.insert(*p))
            .collect();
        t.last = LastResult::Ok { peers: peers.len() };
        let level = if recovered {
            log::Level::Info
        } else {
            log::Level::Debug
        };
        let warning = t
            .warning
            .as_ref()
            .map(|w| format!(" (warning: {w})"))
            .unwrap_or_default();
        self.actions.push(Action::Log(
            level,
            format!(
                "tracker {url}: {} peers, next announce in {}{warning}",
                peers.len(),
                Secs(interval)
            ),
        ));
        if !peers.is_empty() {
            self.actions.push(Action::Peers {
                tracker: TrackerId(i as u32),
                peers,
            });
        }
        self.promote(i);
        if let Some(tier) = self.tier_of(i) {
            if completed_now {
                tier.completed_pending = false;
                tier.completed_sent = true;
            }
            tier.current = Some(i);
            tier.next_at = Some(if tier.completed_pending {
                now
            } else {
                now + interval
            });
        }
        self.maybe_start(now);
    }

    /// The tier tracker `i` belongs to.
    fn tier_of(&mut self, i: usize) -> Option<&mut Tier> {
        self.tiers.iter_mut().find(|tier| tier.members.contains(&i))
    }

    /// The end of a scrape: numbers for the status, or a line in the log.
    /// The next scrape was scheduled when this one started.
    fn scraped(&mut self, i: usize, now: Instant, res: Result<udp::ScrapeEntry, TrackerError>) {
        let Some(t) = self.trackers.get_mut(i) else {
            return;
        };
        if t.inflight.take().is_none() {
            return;
        }
        let url = t.url.clone();
        match res {
            Ok(e) => {
                t.seeders = Some(e.seeders);
                t.leechers = Some(e.leechers);
                t.downloaded = Some(e.completed);
                self.actions.push(Action::Log(
                    log::Level::Debug,
                    format!(
                        "tracker {url}: scrape: {} seeders, {} leechers, {} downloads",
                        e.seeders, e.leechers, e.completed
                    ),
                ));
            }
            Err(err) => self.actions.push(Action::Log(
                log::Level::Debug,
                format!("tracker {url}: scrape failed: {err}"),
            )),
        }
        self.maybe_start(now);
    }

    fn fail(&mut self, i: usize, now: Instant, err: TrackerError) {
        let backoff = {
            let failures = self.trackers.get(i).map_or(0, |t| t.failures);
            let factor = 1u32 << failures.min(16);
            self.config
                .backoff_base
                .saturating_mul(factor)
                .min(self.config.backoff_max)
        };
        if self
            .trackers
            .get(i)
            .and_then(|t| t.inflight.as_ref())
            .is_some_and(|f| f.scrape)
        {
            self.scraped(i, now, Err(err));
            return;
        }
        let Some(t) = self.trackers.get_mut(i) else {
            return;
        };
        let Some(inflight) = t.inflight.take() else {
            return;
        };
        self.n_failed += 1;
        let url = t.url.clone();
        if inflight.event == Event::Stopped {
            t.started_sent = false;
            t.last = LastResult::Err(err.clone());
            self.actions.push(Action::Log(
                log::Level::Debug,
                format!("tracker {url}: stopped event failed: {err}"),
            ));
            self.finish_stopping_if_done();
            return;
        }
        t.failures = t.failures.saturating_add(1);
        t.retry_at = Some(now + backoff);
        t.last = LastResult::Err(err.clone());
        self.actions.push(Action::Log(
            log::Level::Info,
            format!(
                "tracker {url}: {err}; trying again in {} at the earliest",
                Secs(backoff)
            ),
        ));
        if let Some(tier) = self.tier_of(i) {
            if tier.current == Some(i) {
                tier.current = None;
            }
            // Move on to the tier's next tracker now (BEP 12).
            tier.next_at = Some(now);
        }
        self.maybe_start(now);
    }

    fn finish_stopping_if_done(&mut self) {
        if self.phase == Phase::Stopping && !self.any_inflight() {
            self.phase = Phase::Idle;
            self.stop_deadline = None;
            self.actions
                .push(Action::Log(log::Level::Debug, "trackers: stopped".into()));
        }
    }

    /// BEP 12: a tracker that answered moves to the front of its tier.
    fn promote(&mut self, i: usize) {
        for tier in &mut self.tiers {
            if let Some(pos) = tier.members.iter().position(|&x| x == i) {
                tier.members[..=pos].rotate_right(1);
                return;
            }
        }
    }
}

impl Tracker {
    fn outcome(&self) -> Outcome {
        match (&self.endpoint, &self.last) {
            (Err(_), _) | (_, LastResult::Err(_)) => Outcome::Failed,
            (_, LastResult::Never) => Outcome::NotContacted,
            (_, LastResult::Ok { .. }) => Outcome::Answered,
        }
    }

    fn describe(&self) -> String {
        match (&self.endpoint, &self.last) {
            (Err(e), _) => format!("error: {e}"),
            (_, LastResult::Never) => "not contacted".into(),
            (_, LastResult::Ok { peers: 1 }) => "ok: 1 peer".into(),
            (_, LastResult::Ok { peers }) => format!("ok: {peers} peers"),
            (_, LastResult::Err(TrackerError::Timeout(Some(d)))) => {
                format!("timeout after {}", Secs(*d))
            }
            (_, LastResult::Err(TrackerError::Timeout(None))) => "timeout".into(),
            (_, LastResult::Err(TrackerError::Failure(reason))) => format!("error: {reason}"),
            (_, LastResult::Err(e)) => format!("error: {e}"),
        }
    }
}

/// A peer address worth dialling: a port, and a unicast address.
fn usable_peer(addr: &SocketAddr) -> bool {
    let ip = canonical(*addr).ip();
    addr.port() != 0
        && !ip.is_unspecified()
        && !ip.is_multicast()
        && ip != IpAddr::V4(std::net::Ipv4Addr::BROADCAST)
}

/// SplitMix64: a tiny, good-enough generator for shuffles and transaction ids.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
