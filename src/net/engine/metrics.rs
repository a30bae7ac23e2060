//! Metrics on the net thread: the snapshot behind `GET /metrics`
//! ([`MetricsSnapshot`], written as Prometheus text by the control thread),
//! and [`Totals`], the counts that outlive what they were counted on
//! (removed torrents, tracker slots dropped after their `stopped`), so that
//! counters never go down.
//!
//! Nothing here is counted on a hot path: the snapshot sums what swarms,
//! connections, the pool and the overlay already keep, once per scrape.

use super::*;
use crate::net::api::{MetricsSnapshot, OverlayMetrics};
use crate::tracker::announcer::Announcer;

/// Counts kept by the engine itself: bans, and what removed torrents and
/// dropped tracker slots had counted.
#[derive(Debug, Default)]
pub(super) struct Totals {
    downloaded: u64,
    uploaded: u64,
    wasted: u64,
    pieces_verified: u64,
    pieces_failed: u64,
    announces_ok: u64,
    announces_failed: u64,
    /// Peers (IP addresses) banned since start.
    pub(super) bans: u64,
}

impl Totals {
    /// A torrent goes: keep what its swarm counted.
    pub(super) fn retire_swarm(&mut self, swarm: Option<&Swarm>) {
        if let Some(s) = swarm {
            self.downloaded += s.stats.downloaded;
            self.uploaded += s.stats.uploaded;
            self.wasted += s.stats.wasted;
            self.pieces_verified += u64::from(s.stats.pieces_downloaded);
            self.pieces_failed += u64::from(s.stats.hash_failures);
        }
    }

    /// A tracker slot goes: keep its announce counts.
    pub(super) fn retire_announcer(&mut self, announcer: &Announcer) {
        let (ok, failed) = announcer.announce_counts();
        self.announces_ok += ok;
        self.announces_failed += failed;
    }
}

/// Where a connected peer's address came from; always listed, zeros
/// included, so that a dashboard's series exist from the start. Others
/// (should a new source appear) are listed as they are seen.
const PEER_SOURCES: [&str; 6] = ["dht", "incoming", "manual", "overlay", "pex", "tracker"];

/// Adds `n` to the entry labelled `label`, appending it when missing.
fn bump(list: &mut Vec<(&'static str, u64)>, label: &'static str, n: u64) {
    match list.iter_mut().find(|(l, _)| *l == label) {
        Some(e) => e.1 += n,
        None => list.push((label, n)),
    }
}

impl Engine {
    /// Everything `GET /metrics` shows, as of now.
    pub(super) fn metrics(&mut self, now: Instant) -> MetricsSnapshot {
        let node = self.node_status(now);
        let mut m = MetricsSnapshot {
            version: node.version,
            uptime_secs: node.uptime_secs,
            download_rate: node.download_rate,
            upload_rate: node.upload_rate,
            bytes_in_flight: node.bytes_in_flight,
            memory_budget: node.memory_budget,
            ..MetricsSnapshot::default()
        };
        let totals = &self.totals;
        m.downloaded_bytes = totals.downloaded;
        m.uploaded_bytes = totals.uploaded;
        m.wasted_bytes = totals.wasted;
        m.pieces_verified = totals.pieces_verified;
        m.pieces_failed = totals.pieces_failed;
        m.bans_total = totals.bans;
        self.bans.expire(now);
        m.bans = self.bans.len() as u64;

        m.torrents = TorrentState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        for t in self.torrents.values() {
            bump(&mut m.torrents, t.api_state().as_str(), 1);
            if let Some(s) = &t.swarm {
                m.downloaded_bytes += s.stats.downloaded;
                m.uploaded_bytes += s.stats.uploaded;
                m.wasted_bytes += s.stats.wasted;
                m.pieces_verified += u64::from(s.stats.pieces_downloaded);
                m.pieces_failed += u64::from(s.stats.hash_failures);
            }
        }
        let magnet_states: Vec<TorrentState> = self
            .magnets
            .keys()
            .filter_map(|&tid| self.magnet_status(tid).map(|s| s.state))
            .collect();
        for state in magnet_states {
            bump(&mut m.torrents, state.as_str(), 1);
        }

        m.peers = PEER_SOURCES.iter().map(|s| (*s, 0)).collect();
        m.connections = vec![("incoming", 0), ("outgoing", 0)];
        for c in self.conns.values() {
            bump(
                &mut m.connections,
                if c.outgoing { "outgoing" } else { "incoming" },
                1,
            );
            if c.state != ConnState::Active {
                // Closing ones are gone by the end of this loop turn: a
                // newcomer may already hold the slot.
                if c.closing.is_none() {
                    m.half_open += 1;
                }
            } else if c.torrent.is_some() {
                bump(&mut m.peers, c.source, 1);
            }
        }
        m.max_connections = self.config.max_connections as u64;
        m.max_half_open = self.config.limits().max_half_open_total() as u64;

        m.worker_queues = [
            ("live", Priority::Live),
            ("background", Priority::Background),
            ("network", Priority::Network),
        ]
        .iter()
        .map(|&(label, p)| (label, self.pool.queue_len(p) as u64))
        .collect();
        let held = |p: Priority| self.backlog.iter().filter(|(_, q)| *q == p).count() as u64;
        m.job_backlog = vec![
            ("live", held(Priority::Live)),
            ("background", held(Priority::Background)),
            ("network", self.net_backlog.len() as u64),
        ];
        m.jobs_in_flight = self.jobs.len() as u64;
        m.worker_threads = self.pool.n_threads() as u64;

        let (mut ok, mut failed) = (totals.announces_ok, totals.announces_failed);
        for slot in self.trackers.values() {
            let (o, f) = slot.announce_counts();
            ok += o;
            failed += f;
        }
        m.announces = vec![("ok", ok), ("error", failed)];
        for k in self
            .torrents
            .values()
            .map(|t| &t.known)
            .chain(self.magnets.values().map(|m| &m.known))
        {
            m.known_peers += k.len() as u64;
            m.forgotten_peers += k.n_forgotten() as u64;
        }
        m.state_dir_error = u64::from(self.state_health.error().is_some());
        m.state_write_failures = self.state_health.failures();

        m.overlay = self.overlay.as_ref().map(|o| {
            let st = o.node.stats();
            let table = o.node.table();
            let kinds = crate::overlay::msg::KINDS;
            OverlayMetrics {
                sent: kinds.iter().copied().zip(st.sent).collect(),
                received: kinds.iter().copied().zip(st.received).collect(),
                dropped: st.drops().to_vec(),
                forwarded: st.forwarded,
                ttl_capped: st.ttl_capped,
                searches: vec![
                    ("flooded", st.searches_flooded),
                    ("direct", st.searches_direct),
                ],
                table_nodes: table.len() as u64,
                table_capacity: table.capacity() as u64,
                live_nodes: table.live_count() as u64,
                neighbours: table.neighbours().len() as u64,
                degree: o.node.config().degree as u64,
                content_entries: o.node.content().len() as u64,
                content_holders: o.node.content().holder_count() as u64,
                routes: o.node.routes() as u64,
                open_searches: o.node.open_searches() as u64,
            }
        });
        m.dht = self.dht_metrics(now);
        m
    }
}
