//! `GET /metrics`: the Prometheus text exposition format (version 0.0.4).
//!
//! [`TextWriter`] is a small writer for the format and [`render`] writes a
//! [`MetricsSnapshot`] (taken by the engine) with it. No I/O here: the
//! control server sends the text.
//!
//! The format, as the writer keeps it: every family (one metric name) has
//! one `# HELP name text` line and one `# TYPE name counter|gauge` line,
//! then all its samples together, one per line: `name{label="value",...} 42`.
//! Counter names end in `_total`; units are part of names (`_bytes`,
//! `_seconds`). Label values escape `\`, `"` and line feeds (`\\`, `\"`,
//! `\n`); HELP text escapes `\` and line feeds. Metric names match
//! `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*` (not
//! starting with `__`, which is reserved).

use crate::net::api::{DhtMetrics, MetricsSnapshot, OverlayMetrics};

/// The `Content-Type` of the answer.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (from zero at start); the name ends in `_total`.
    Counter,
    /// A value of the moment.
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

struct Family {
    name: String,
    kind: Kind,
    help: String,
    /// (rendered label set, value), in the order first given.
    samples: Vec<(String, u64)>,
}

/// Collects families and samples, then writes them in the order their
/// families first appeared, each family's lines together, HELP and TYPE
/// once.
#[derive(Default)]
pub struct TextWriter {
    families: Vec<Family>,
}

impl TextWriter {
    pub fn new() -> TextWriter {
        TextWriter::default()
    }

    /// Declares a family without adding a sample (a family with no samples
    /// is valid: HELP and TYPE only). The first declaration's kind and help
    /// stand. Returns its index, or `None` when the name is not valid for
    /// the kind (an invalid metric name, or a counter not ending in
    /// `_total`); such a family is left out, with an error in the log.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> Option<usize> {
        if let Some(i) = self.families.iter().position(|f| f.name == name) {
            if self.families[i].kind != kind {
                log::error!("metrics: {name} given as both counter and gauge; left out");
                return None;
            }
            return Some(i);
        }
        if !valid_metric_name(name) || (kind == Kind::Counter && !name.ends_with("_total")) {
            log::error!(
                "metrics: '{name}' is not a valid {} name; left out",
                kind.as_str()
            );
            return None;
        }
        self.families.push(Family {
            name: name.to_string(),
            kind,
            help: help.to_string(),
            samples: Vec::new(),
        });
        Some(self.families.len() - 1)
    }

    /// Adds a sample to a family (declared now if new). A sample whose
    /// labels equal an earlier one's replaces its value; one with an
    /// invalid or repeated label name is left out.
    pub fn sample(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        labels: &[(&str, &str)],
        value: u64,
    ) {
        let Some(i) = self.family(name, kind, help) else {
            return;
        };
        let mut rendered = String::new();
        for (n, (k, v)) in labels.iter().enumerate() {
            if !valid_label_name(k) || labels[..n].iter().any(|(k2, _)| k2 == k) {
                log::error!("metrics: {name}: bad or repeated label name '{k}'; sample left out");
                return;
            }
            rendered.push_str(if n == 0 { "{" } else { "," });
            rendered.push_str(k);
            rendered.push_str("=\"");
            escape_label_value(v, &mut rendered);
            rendered.push('"');
        }
        if !labels.is_empty() {
            rendered.push('}');
        }
        let samples = &mut self.families[i].samples;
        match samples.iter_mut().find(|(l, _)| *l == rendered) {
            Some(s) => s.1 = value,
            None => samples.push((rendered, value)),
        }
    }

    /// A family with one unlabelled sample.
    pub fn value(&mut self, name: &str, kind: Kind, help: &str, value: u64) {
        self.sample(name, kind, help, &[], value);
    }

    /// A family with one label: a sample per `(label value, value)`. The
    /// family is written even when `values` is empty.
    pub fn by_label(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        label: &str,
        values: &[(&str, u64)],
    ) {
        if self.family(name, kind, help).is_none() {
            return;
        }
        for (l, v) in values {
            self.sample(name, kind, help, &[(label, l)], *v);
        }
    }

    /// The text, ending in a line feed.
    pub fn finish(self) -> String {
        let mut out = String::new();
        for f in &self.families {
            out.push_str("# HELP ");
            out.push_str(&f.name);
            out.push(' ');
            escape_help(&f.help, &mut out);
            out.push_str("\n# TYPE ");
            out.push_str(&f.name);
            out.push(' ');
            out.push_str(f.kind.as_str());
            out.push('\n');
            for (labels, value) in &f.samples {
                out.push_str(&f.name);
                out.push_str(labels);
                out.push(' ');
                out.push_str(&value.to_string());
                out.push('\n');
            }
        }
        out
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`.
fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with("__")
}

fn escape_label_value(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Writes a snapshot as the body of `GET /metrics`. The families are
/// listed in docs/API.md.
pub fn render(m: &MetricsSnapshot) -> String {
    use Kind::{Counter, Gauge};
    let mut w = TextWriter::new();
    w.sample(
        "peerlet_build_info",
        Gauge,
        "Always 1; the version of the running daemon is in the label.",
        &[("version", &m.version)],
        1,
    );
    w.value(
        "peerlet_uptime_seconds",
        Gauge,
        "Seconds since the daemon started.",
        m.uptime_secs,
    );

    // Transfers.
    w.value(
        "peerlet_downloaded_bytes_total",
        Counter,
        "Payload bytes received from peers (every torrent, removed ones included).",
        m.downloaded_bytes,
    );
    w.value(
        "peerlet_uploaded_bytes_total",
        Counter,
        "Payload bytes sent to peers (every torrent, removed ones included).",
        m.uploaded_bytes,
    );
    w.value(
        "peerlet_wasted_bytes_total",
        Counter,
        "Payload bytes received that were not needed (duplicates, blocks that came late).",
        m.wasted_bytes,
    );
    w.value(
        "peerlet_download_rate_bytes_per_second",
        Gauge,
        "Payload bytes received per second, averaged over a few seconds.",
        m.download_rate,
    );
    w.value(
        "peerlet_upload_rate_bytes_per_second",
        Gauge,
        "Payload bytes sent per second, averaged over a few seconds.",
        m.upload_rate,
    );
    w.value(
        "peerlet_pieces_verified_total",
        Counter,
        "Downloaded pieces that passed their SHA-1 check.",
        m.pieces_verified,
    );
    w.value(
        "peerlet_pieces_failed_total",
        Counter,
        "Downloaded pieces that failed their SHA-1 check.",
        m.pieces_failed,
    );
    w.value(
        "peerlet_bans_total",
        Counter,
        "Peers (IP addresses) banned for bad data or misbehaviour.",
        m.bans_total,
    );
    w.value(
        "peerlet_banned_peers",
        Gauge,
        "IP addresses banned now.",
        m.bans,
    );
    w.by_label(
        "peerlet_torrents",
        Gauge,
        "Torrents (and magnet links still fetching metadata) by state.",
        "state",
        &m.torrents,
    );

    // Connections.
    w.by_label(
        "peerlet_peers",
        Gauge,
        "Connected peers (handshake done) by where their address came from.",
        "source",
        &m.peers,
    );
    w.by_label(
        "peerlet_connections",
        Gauge,
        "Open peer connections by direction.",
        "direction",
        &m.connections,
    );
    w.value(
        "peerlet_connections_half_open",
        Gauge,
        "Peer connections still connecting or handshaking.",
        m.half_open,
    );
    w.value(
        "peerlet_known_peers",
        Gauge,
        "Peer addresses known (all torrents' peer lists).",
        m.known_peers,
    );
    w.value(
        "peerlet_forgotten_peers",
        Gauge,
        "Peer addresses forgotten after failing and kept out for a while.",
        m.forgotten_peers,
    );
    w.value(
        "peerlet_connections_max",
        Gauge,
        "Most peer connections open at once (the limit).",
        m.max_connections,
    );
    w.value(
        "peerlet_connections_half_open_max",
        Gauge,
        "Most half-open connections at once (the limit: dials plus incoming handshakes).",
        m.max_half_open,
    );
    w.by_label(
        "peerlet_tracker_announces_total",
        Counter,
        "Tracker announces by result: answered (ok) or failed (error).",
        "result",
        &m.announces,
    );
    w.value(
        "peerlet_state_dir_error",
        Gauge,
        "1 while state files (resume records, journals) cannot be written (a read-only or full state directory), else 0.",
        m.state_dir_error,
    );
    w.value(
        "peerlet_state_write_failures_total",
        Counter,
        "Writes of state files that failed.",
        m.state_write_failures,
    );

    // Workers and memory.
    w.by_label(
        "peerlet_worker_queue_jobs",
        Gauge,
        "Jobs waiting in the worker pool's queues.",
        "queue",
        &m.worker_queues,
    );
    w.by_label(
        "peerlet_job_backlog_jobs",
        Gauge,
        "Jobs the engine holds back because their worker queue is full (sockets are not read meanwhile).",
        "queue",
        &m.job_backlog,
    );
    w.value(
        "peerlet_jobs_in_flight",
        Gauge,
        "Jobs submitted (or held back) and not answered yet.",
        m.jobs_in_flight,
    );
    w.value(
        "peerlet_worker_threads",
        Gauge,
        "Disk and hashing worker threads.",
        m.worker_threads,
    );
    w.value(
        "peerlet_memory_in_flight_bytes",
        Gauge,
        "Bytes the memory budget counts now: blocks in flight for downloads, blocks read for upload and send buffers, grown receive buffers.",
        m.bytes_in_flight,
    );
    w.value(
        "peerlet_memory_budget_bytes",
        Gauge,
        "The memory budget (--memory-limit).",
        m.memory_budget,
    );

    w.value(
        "peerlet_overlay_enabled",
        Gauge,
        "1 when the discovery overlay runs, 0 when it is off.",
        u64::from(m.overlay.is_some()),
    );
    if let Some(o) = &m.overlay {
        render_overlay(&mut w, o);
    }
    w.value(
        "peerlet_dht_enabled",
        Gauge,
        "1 when the Mainline DHT runs, 0 when it is off (dht = false, or a private network).",
        u64::from(m.dht.is_some()),
    );
    if let Some(d) = &m.dht {
        render_dht(&mut w, d);
    }
    w.finish()
}

fn render_dht(w: &mut TextWriter, d: &DhtMetrics) {
    use Kind::{Counter, Gauge};
    let get = |name: &str| {
        d.counters
            .iter()
            .find(|(k, _)| *k == name)
            .map_or(0, |(_, v)| *v)
    };
    w.by_label(
        "peerlet_dht_packets_total",
        Counter,
        "DHT datagrams by direction.",
        "direction",
        &[("in", get("packets_in")), ("out", get("packets_out"))],
    );
    w.by_label(
        "peerlet_dht_bytes_total",
        Counter,
        "DHT bytes by direction.",
        "direction",
        &[("in", get("bytes_in")), ("out", get("bytes_out"))],
    );
    w.by_label(
        "peerlet_dht_queries_answered_total",
        Counter,
        "DHT queries answered, by method.",
        "method",
        &[
            ("ping", get("answered_ping")),
            ("find_node", get("answered_find_node")),
            ("get_peers", get("answered_get_peers")),
            ("announce_peer", get("answered_announce")),
        ],
    );
    w.by_label(
        "peerlet_dht_dropped_total",
        Counter,
        "DHT datagrams dropped, by reason.",
        "reason",
        &[
            ("rate_limited", get("rate_limited")),
            ("invalid", get("invalid")),
        ],
    );
    w.value(
        "peerlet_dht_query_timeouts_total",
        Counter,
        "Our DHT queries that got no answer in time.",
        get("timeouts"),
    );
    w.value(
        "peerlet_dht_lookups_total",
        Counter,
        "DHT lookups (get_peers) finished.",
        get("lookups_done"),
    );
    w.value(
        "peerlet_dht_announces_total",
        Counter,
        "announce_peer messages the DHT nodes accepted.",
        get("announces"),
    );
    w.value(
        "peerlet_dht_nodes",
        Gauge,
        "Nodes in the DHT routing table.",
        d.nodes,
    );
    w.value(
        "peerlet_dht_tracked_torrents",
        Gauge,
        "Torrents the DHT looks up and announces periodically.",
        d.tracked,
    );
    w.value(
        "peerlet_dht_lookups_running",
        Gauge,
        "DHT lookups in flight.",
        d.lookups,
    );
    w.value(
        "peerlet_dht_stored_peers",
        Gauge,
        "Peers other nodes announced to us, stored now.",
        d.stored_peers,
    );
    w.value(
        "peerlet_dht_read_only",
        Gauge,
        "1 in BEP 43 read-only mode (we seem unreachable and answer no queries).",
        d.read_only,
    );
}

fn render_overlay(w: &mut TextWriter, o: &OverlayMetrics) {
    use Kind::{Counter, Gauge};
    w.by_label(
        "peerlet_overlay_packets_sent_total",
        Counter,
        "Overlay packets sent by kind.",
        "kind",
        &o.sent,
    );
    w.by_label(
        "peerlet_overlay_packets_received_total",
        Counter,
        "Overlay packets received and accepted by kind.",
        "kind",
        &o.received,
    );
    w.by_label(
        "peerlet_overlay_dropped_total",
        Counter,
        "Overlay packets dropped, or forwards not sent, by reason.",
        "reason",
        &o.dropped,
    );
    w.value(
        "peerlet_overlay_queries_forwarded_total",
        Counter,
        "Search queries forwarded to a neighbour.",
        o.forwarded,
    );
    w.value(
        "peerlet_overlay_queries_ttl_capped_total",
        Counter,
        "Search queries whose TTL was larger than allowed and was lowered.",
        o.ttl_capped,
    );
    w.by_label(
        "peerlet_overlay_searches_total",
        Counter,
        "Searches this node started, by how they went out: to every neighbour (flooded) or straight to known holders (direct).",
        "mode",
        &o.searches,
    );
    w.value(
        "peerlet_overlay_routing_table_nodes",
        Gauge,
        "Nodes in the routing table.",
        o.table_nodes,
    );
    w.value(
        "peerlet_overlay_routing_table_capacity",
        Gauge,
        "Most nodes the routing table holds.",
        o.table_capacity,
    );
    w.value(
        "peerlet_overlay_live_nodes",
        Gauge,
        "Nodes in the routing table that answered recently.",
        o.live_nodes,
    );
    w.value(
        "peerlet_overlay_neighbours",
        Gauge,
        "Neighbours (the nodes queries are flooded to).",
        o.neighbours,
    );
    w.value(
        "peerlet_overlay_neighbours_wanted",
        Gauge,
        "Neighbours wanted (--overlay-degree).",
        o.degree,
    );
    w.value(
        "peerlet_overlay_content_entries",
        Gauge,
        "Info-hashes in the content routing table.",
        o.content_entries,
    );
    w.value(
        "peerlet_overlay_content_holders",
        Gauge,
        "Holders in the content routing table, all info-hashes together.",
        o.content_holders,
    );
    w.value(
        "peerlet_overlay_routes",
        Gauge,
        "Query ids remembered (to drop duplicates and route hits back).",
        o.routes,
    );
    w.value(
        "peerlet_overlay_open_searches",
        Gauge,
        "Searches still collecting results.",
        o.open_searches,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut w = TextWriter::new();
        w.sample(
            "x_info",
            Kind::Gauge,
            "a \\ back\nslash",
            &[("v", "q\"uo\\te\nnl"), ("w", "é ok")],
            1,
        );
        assert_eq!(
            w.finish(),
            "# HELP x_info a \\\\ back\\nslash\n# TYPE x_info gauge\n\
             x_info{v=\"q\\\"uo\\\\te\\nnl\",w=\"é ok\"} 1\n"
        );
    }

    #[test]
    fn help_and_type_once_per_family_and_samples_together() {
        let mut w = TextWriter::new();
        w.sample("a_total", Kind::Counter, "A.", &[("k", "1")], 1);
        w.value("b", Kind::Gauge, "B.", 7);
        // Later samples of `a_total` join its family; the first help stands.
        w.sample("a_total", Kind::Counter, "other help", &[("k", "2")], 2);
        // The same labels again: the value is replaced, not repeated.
        w.sample("a_total", Kind::Counter, "A.", &[("k", "1")], 3);
        w.by_label("c_total", Kind::Counter, "Empty.", "x", &[]);
        assert_eq!(
            w.finish(),
            "# HELP a_total A.\n# TYPE a_total counter\na_total{k=\"1\"} 3\na_total{k=\"2\"} 2\n\
             # HELP b B.\n# TYPE b gauge\nb 7\n\
             # HELP c_total Empty.\n# TYPE c_total counter\n"
        );
    }

    #[test]
    fn bad_names_are_left_out() {
        let mut w = TextWriter::new();
        w.value("1abc", Kind::Gauge, "", 1);
        w.value("has-dash", Kind::Gauge, "", 1);
        w.value("", Kind::Gauge, "", 1);
        w.value("no_total_suffix", Kind::Counter, "", 1);
        w.sample("ok", Kind::Gauge, "", &[("__reserved", "x")], 1);
        w.sample("ok", Kind::Gauge, "", &[("bad-label", "x")], 1);
        w.sample("ok", Kind::Gauge, "", &[("l", "x"), ("l", "y")], 1);
        // A gauge family cannot take counter samples.
        w.value("ok", Kind::Counter, "", 1);
        w.value("ns:ok_total", Kind::Counter, "", 5);
        assert_eq!(
            w.finish(),
            "# HELP ok \n# TYPE ok gauge\n# HELP ns:ok_total \n# TYPE ns:ok_total counter\nns:ok_total 5\n"
        );
    }

    /// Every family of a full snapshot: valid names, HELP and TYPE once and
    /// right before its samples, counters ending in `_total`.
    #[test]
    fn a_full_snapshot_is_well_formed() {
        let m = MetricsSnapshot {
            version: "0.1.0".into(),
            uptime_secs: 12,
            downloaded_bytes: 1 << 20,
            torrents: vec![("downloading", 1), ("seeding", 2)],
            peers: vec![("manual", 1), ("tracker", 0)],
            connections: vec![("incoming", 1), ("outgoing", 2)],
            worker_queues: vec![("live", 0), ("background", 0), ("network", 0)],
            job_backlog: vec![("live", 0), ("background", 0), ("network", 0)],
            announces: vec![("ok", 3), ("error", 1)],
            overlay: Some(OverlayMetrics {
                sent: vec![("ping", 4), ("pong", 3)],
                dropped: vec![("malformed", 1)],
                searches: vec![("flooded", 1), ("direct", 0)],
                ..Default::default()
            }),
            dht: Some(DhtMetrics {
                nodes: 9,
                counters: vec![("packets_in", 5), ("announces", 2)],
                ..Default::default()
            }),
            ..Default::default()
        };
        let text = render(&m);
        assert!(text.ends_with('\n'));
        assert!(text.contains("peerlet_build_info{version=\"0.1.0\"} 1\n"));
        assert!(text.contains("peerlet_downloaded_bytes_total 1048576\n"));
        assert!(text.contains("peerlet_torrents{state=\"seeding\"} 2\n"));
        assert!(text.contains("peerlet_overlay_packets_sent_total{kind=\"pong\"} 3\n"));
        assert!(text.contains("peerlet_overlay_enabled 1\n"));
        assert!(text.contains("peerlet_dht_packets_total{direction=\"in\"} 5\n"));
        assert!(text.contains("peerlet_dht_announces_total 2\n"));
        assert!(text.contains("peerlet_dht_nodes 9\n"));
        let mut seen: Vec<String> = Vec::new();
        let mut current: Option<(String, String)> = None;
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let help = lines[i]
                .strip_prefix("# HELP ")
                .expect("a family starts with HELP");
            let name = help.split(' ').next().unwrap().to_string();
            let ty = lines[i + 1]
                .strip_prefix(&format!("# TYPE {name} "))
                .expect("TYPE follows HELP");
            assert!(!seen.contains(&name), "{name} twice");
            assert!(valid_metric_name(&name) && name.starts_with("peerlet_"));
            match ty {
                "counter" => assert!(name.ends_with("_total"), "{name}"),
                "gauge" => assert!(!name.ends_with("_total"), "{name}"),
                other => panic!("type {other}"),
            }
            seen.push(name.clone());
            current = Some((name, ty.to_string()));
            i += 2;
            while i < lines.len() && !lines[i].starts_with('#') {
                let (n, _) = current.as_ref().unwrap();
                let rest = lines[i]
                    .strip_prefix(n.as_str())
                    .expect("sample of its family");
                assert!(
                    rest.starts_with('{') || rest.starts_with(' '),
                    "{}",
                    lines[i]
                );
                let value = rest.rsplit(' ').next().unwrap();
                assert!(value.parse::<u64>().is_ok(), "{}", lines[i]);
                i += 1;
            }
        }
        assert!(current.is_some());
        // Without the overlay, its families are left out.
        let text = render(&MetricsSnapshot::default());
        assert!(text.contains("peerlet_overlay_enabled 0\n"));
        assert!(!text.contains("peerlet_overlay_packets"));
    }
}
