//! The boundary between the control thread and the engine (net thread):
//! commands with a reply channel, and the plain data the engine answers with.
//!
//! The control thread turns HTTP requests into [`Command`]s, sends them to
//! the engine's inbox through an [`EngineHandle`], and renders the replies
//! as JSON. Nothing here knows about sockets or HTTP.
//!
//! Each answer type has `to_json` (what the server writes) and
//! [`FromJson::from_json`] (what the command-line client reads), side by
//! side so that one schema serves both ends: a field renamed on one side
//! is an error on the other, never a silent `""` or `0`.

use crate::json::{FromJson, Json, SchemaError};
use crate::metainfo::InfoHash;
use crossbeam_channel::{bounded, Sender};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What to add.
#[derive(Clone, Debug)]
pub enum AddSource {
    /// The bytes of a .torrent file.
    Torrent(Vec<u8>),
    /// A magnet link.
    Magnet(String),
}

/// An error the engine reports for a command, with an HTTP-like class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiError {
    /// The request is malformed or names something invalid (HTTP 400).
    BadRequest(String),
    /// No torrent with that info-hash (HTTP 404).
    NotFound(String),
    /// The engine is shutting down or did not answer (HTTP 503).
    Unavailable(String),
    /// Anything else (HTTP 500).
    Internal(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::BadRequest(m)
            | ApiError::NotFound(m)
            | ApiError::Unavailable(m)
            | ApiError::Internal(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ApiError {}

pub type Reply<T> = Sender<Result<T, ApiError>>;

/// A request to the engine.
#[derive(Debug)]
pub enum Command {
    /// Add a torrent (or, if it is already there, add the peers to it).
    Add {
        source: AddSource,
        /// Where the data goes (checked by the caller: `control::server`);
        /// `None`: the download directory.
        dir: Option<crate::storage::DataDir>,
        peers: Vec<String>,
        paused: bool,
        reply: Reply<AddResult>,
    },
    /// Every torrent, short form.
    List { reply: Reply<Vec<TorrentStatus>> },
    /// One torrent in detail, with its peers and files.
    Status {
        info_hash: InfoHash,
        reply: Reply<TorrentDetail>,
    },
    /// Remove a torrent, and its data if asked.
    Remove {
        info_hash: InfoHash,
        delete_data: bool,
        reply: Reply<()>,
    },
    Pause {
        info_hash: InfoHash,
        reply: Reply<()>,
    },
    Resume {
        info_hash: InfoHash,
        reply: Reply<()>,
    },
    /// Set a torrent's rate limits in payload bytes per second (0: none;
    /// `None`: leave as it is). Remembered across restarts.
    SetLimits {
        info_hash: InfoHash,
        download: Option<u64>,
        upload: Option<u64>,
        reply: Reply<()>,
    },
    /// Connect to these peers (`host:port`) for a torrent; remembered across restarts.
    AddPeers {
        info_hash: InfoHash,
        peers: Vec<String>,
        reply: Reply<()>,
    },
    /// Node-wide status.
    Node { reply: Reply<NodeStatus> },
    /// Start an overlay search; the answer is its id.
    Search {
        query: SearchQuery,
        /// The search stays open (collecting hits) this long.
        timeout: Duration,
        reply: Reply<u64>,
    },
    /// The results of a search so far.
    SearchResults { id: u64, reply: Reply<SearchPage> },
    /// The overlay: routing table, neighbours, counters.
    Nodes { reply: Reply<OverlayStatus> },
    /// The Mainline DHT node (`GET /api/dht`).
    Dht { reply: Reply<DhtStatus> },
    /// Peer addresses banned now (`GET /api/bans`).
    Bans { reply: Reply<Vec<BanInfo>> },
    /// Counters and gauges for `GET /metrics`.
    Metrics { reply: Reply<MetricsSnapshot> },
    /// Node-wide settings changed while running (`peerlet daemon` on
    /// SIGHUP, `config::reload`): the global rate limits in payload bytes
    /// per second (0: none; `None`: leave as it is) and overlay bootstrap
    /// nodes to add (`ip:port` or `host:port`; ignored with the overlay off).
    Reconfigure {
        download_limit: Option<u64>,
        upload_limit: Option<u64>,
        add_bootstrap: Vec<String>,
        reply: Reply<()>,
    },
    /// Save state and stop the daemon.
    Shutdown { reply: Reply<()> },
}

#[derive(Clone, Debug, PartialEq)]
pub struct AddResult {
    pub info_hash: InfoHash,
    pub name: String,
    /// False when the torrent was already there (its peers were added).
    pub added: bool,
}

impl AddResult {
    pub fn to_json(&self) -> Json {
        Json::obj()
            .with("info_hash", self.info_hash.to_hex())
            .with("name", self.name.clone())
            .with("added", self.added)
    }
}

impl FromJson for AddResult {
    fn from_json(j: &Json) -> Result<AddResult, SchemaError> {
        Ok(AddResult {
            info_hash: j.field("info_hash")?,
            name: j.field("name")?,
            added: j.field("added")?,
        })
    }
}

impl FromJson for InfoHash {
    fn from_json(j: &Json) -> Result<InfoHash, SchemaError> {
        let s = String::from_json(j)?;
        InfoHash::parse(&s).ok_or_else(|| SchemaError::new(format!("\"{s}\" is not an info-hash")))
    }
}

impl FromJson for PathBuf {
    fn from_json(j: &Json) -> Result<PathBuf, SchemaError> {
        String::from_json(j).map(PathBuf::from)
    }
}

/// Where a connected or known peer's address came from ([`PeerStatus::source`],
/// [`SourceStats::source`]): every value the engine writes.
pub const PEER_SOURCES: &[&str] = &[
    "manual", "incoming", "tracker", "pex", "overlay", "magnet", "dht",
];

/// Where an overlay node was heard of ([`OverlayNode::source`]): every
/// value `overlay::table::Source::as_str` writes.
pub const NODE_SOURCES: &[&str] = &[
    "bootstrap",
    "beacon",
    "exchange",
    "incoming",
    "saved",
    "holder",
];

/// Where a torrent is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TorrentState {
    /// Fetching the info dictionary from peers (magnet).
    Metadata,
    /// Rechecking data on disk.
    Checking,
    Downloading,
    Seeding,
    Paused,
    /// Stopped by an error (see `error`); verified data is still served if possible.
    Error,
}

impl TorrentState {
    pub const ALL: [TorrentState; 6] = [
        TorrentState::Metadata,
        TorrentState::Checking,
        TorrentState::Downloading,
        TorrentState::Seeding,
        TorrentState::Paused,
        TorrentState::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TorrentState::Metadata => "metadata",
            TorrentState::Checking => "checking",
            TorrentState::Downloading => "downloading",
            TorrentState::Seeding => "seeding",
            TorrentState::Paused => "paused",
            TorrentState::Error => "error",
        }
    }
}

impl FromJson for TorrentState {
    fn from_json(j: &Json) -> Result<TorrentState, SchemaError> {
        let s = String::from_json(j)?;
        TorrentState::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| SchemaError::new(format!("unknown state \"{s}\"")))
    }
}

/// One torrent, short form (for `ls`).
#[derive(Clone, Debug, PartialEq)]
pub struct TorrentStatus {
    pub info_hash: InfoHash,
    pub name: String,
    pub state: TorrentState,
    /// The last error, if the torrent is in trouble (full disk, permission denied, data gone).
    pub error: Option<String>,
    pub dir: PathBuf,
    pub total_size: u64,
    /// Bytes in verified pieces.
    pub have_bytes: u64,
    pub pieces: u32,
    pub pieces_have: u32,
    /// Payload bytes per second, averaged over a few seconds.
    pub download_rate: u64,
    pub upload_rate: u64,
    /// Payload bytes received / sent since the daemon started.
    pub downloaded: u64,
    pub uploaded: u64,
    pub peers: u32,
    /// Pieces that failed their hash check since the daemon started.
    pub hash_failures: u32,
    /// Pieces verified by download since the daemon started.
    pub pieces_downloaded: u32,
    /// Pieces found good on disk at start (resume file or recheck).
    pub pieces_resumed: u32,
    /// This torrent's rate limits, bytes per second (0: none).
    pub download_limit: u64,
    pub upload_limit: u64,
    /// Its trackers in one line (`ok: 12 peers`, the last error when none
    /// answers, ...); `None` without trackers.
    pub tracker: Option<String>,
    /// The swarm by its trackers: the most seeders and leechers any
    /// tracker reported (announce or scrape); `None` before one did.
    pub swarm_seeders: Option<u32>,
    pub swarm_leechers: Option<u32>,
}

impl TorrentStatus {
    /// 0.0 ..= 1.0
    pub fn progress(&self) -> f64 {
        if self.total_size == 0 {
            0.0
        } else {
            self.have_bytes as f64 / self.total_size as f64
        }
    }

    pub fn to_json(&self) -> Json {
        Json::obj()
            .with("info_hash", self.info_hash.to_hex())
            .with("name", self.name.clone())
            .with("state", self.state.as_str())
            .with("error", self.error.clone())
            .with("dir", self.dir.display().to_string())
            .with("total_size", self.total_size)
            .with("have_bytes", self.have_bytes)
            .with("pieces", self.pieces)
            .with("pieces_have", self.pieces_have)
            .with("download_rate", self.download_rate)
            .with("upload_rate", self.upload_rate)
            .with("downloaded", self.downloaded)
            .with("uploaded", self.uploaded)
            .with("peers", self.peers)
            .with("hash_failures", self.hash_failures)
            .with("pieces_downloaded", self.pieces_downloaded)
            .with("pieces_resumed", self.pieces_resumed)
            .with("download_limit", self.download_limit)
            .with("tracker", self.tracker.clone())
            .with("upload_limit", self.upload_limit)
            .with("swarm_seeders", self.swarm_seeders)
            .with("swarm_leechers", self.swarm_leechers)
    }
}

impl FromJson for TorrentStatus {
    fn from_json(j: &Json) -> Result<TorrentStatus, SchemaError> {
        Ok(TorrentStatus {
            info_hash: j.field("info_hash")?,
            name: j.field("name")?,
            state: j.field("state")?,
            error: j.field("error")?,
            dir: j.field("dir")?,
            total_size: j.field("total_size")?,
            have_bytes: j.field("have_bytes")?,
            pieces: j.field("pieces")?,
            pieces_have: j.field("pieces_have")?,
            download_rate: j.field("download_rate")?,
            upload_rate: j.field("upload_rate")?,
            downloaded: j.field("downloaded")?,
            uploaded: j.field("uploaded")?,
            peers: j.field("peers")?,
            hash_failures: j.field("hash_failures")?,
            pieces_downloaded: j.field("pieces_downloaded")?,
            pieces_resumed: j.field("pieces_resumed")?,
            download_limit: j.field("download_limit")?,
            upload_limit: j.field("upload_limit")?,
            tracker: j.field("tracker")?,
            swarm_seeders: j.field("swarm_seeders")?,
            swarm_leechers: j.field("swarm_leechers")?,
        })
    }
}

/// One connected peer.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerStatus {
    pub addr: String,
    /// "manual", "incoming", "tracker", "pex", "discovery".
    pub source: &'static str,
    /// Client name from the peer id, when known.
    pub client: String,
    pub download_rate: u64,
    pub upload_rate: u64,
    pub downloaded: u64,
    pub uploaded: u64,
    /// Fraction of pieces the peer has, 0.0 ..= 1.0.
    pub progress: f64,
    /// Short flags: "D" we download, "U" we upload, "c" we choke it, "C" it chokes us, "i"/"I" interest.
    pub flags: String,
}

impl PeerStatus {
    pub fn to_json(&self) -> Json {
        Json::obj()
            .with("addr", self.addr.clone())
            .with("source", self.source)
            .with("client", self.client.clone())
            .with("download_rate", self.download_rate)
            .with("upload_rate", self.upload_rate)
            .with("downloaded", self.downloaded)
            .with("uploaded", self.uploaded)
            .with("progress_permille", (self.progress * 1000.0).round() as u64)
            .with("flags", self.flags.clone())
    }
}

impl FromJson for PeerStatus {
    /// `progress` comes back in steps of 1/1000 (`progress_permille`).
    fn from_json(j: &Json) -> Result<PeerStatus, SchemaError> {
        Ok(PeerStatus {
            addr: j.field("addr")?,
            source: j.field_one_of("source", PEER_SOURCES)?,
            client: j.field("client")?,
            download_rate: j.field("download_rate")?,
            upload_rate: j.field("upload_rate")?,
            downloaded: j.field("downloaded")?,
            uploaded: j.field("uploaded")?,
            progress: j.field::<u64>("progress_permille")? as f64 / 1000.0,
            flags: j.field("flags")?,
        })
    }
}

/// One file of a torrent.
#[derive(Clone, Debug, PartialEq)]
pub struct FileStatus {
    pub path: String,
    pub size: u64,
    pub have_bytes: u64,
}

impl FileStatus {
    pub fn to_json(&self) -> Json {
        Json::obj()
            .with("path", self.path.clone())
            .with("size", self.size)
            .with("have_bytes", self.have_bytes)
    }
}

impl FromJson for FileStatus {
    fn from_json(j: &Json) -> Result<FileStatus, SchemaError> {
        Ok(FileStatus {
            path: j.field("path")?,
            size: j.field("size")?,
            have_bytes: j.field("have_bytes")?,
        })
    }
}

/// A torrent's peers by where they came from: `manual`, `tracker`, `pex`,
/// `magnet`, `incoming`, ...
#[derive(Clone, Debug, PartialEq)]
pub struct SourceStats {
    pub source: &'static str,
    /// Addresses known from this source (dialled or waiting to be).
    pub known: u32,
    /// Open connections from this source.
    pub connected: u32,
    /// Bytes of verified-or-not payload received from its peers, this session.
    pub downloaded: u64,
    pub uploaded: u64,
}

impl SourceStats {
    pub fn to_json(&self) -> Json {
        Json::obj()
            .with("source", self.source)
            .with("known", self.known)
            .with("connected", self.connected)
            .with("downloaded", self.downloaded)
            .with("uploaded", self.uploaded)
    }
}

impl FromJson for SourceStats {
    fn from_json(j: &Json) -> Result<SourceStats, SchemaError> {
        Ok(SourceStats {
            source: j.field_one_of("source", PEER_SOURCES)?,
            known: j.field("known")?,
            connected: j.field("connected")?,
            downloaded: j.field("downloaded")?,
            uploaded: j.field("uploaded")?,
        })
    }
}

/// One tracker of a torrent.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackerInfo {
    pub url: String,
    /// 0-based tier (BEP 12).
    pub tier: usize,
    /// `not contacted`, `ok: 37 peers`, `error: <reason>`, `timeout after 15 s`, ...
    pub last_result: String,
    /// Seconds until the next announce, when one is scheduled.
    pub next_announce_secs: Option<u64>,
    pub seeders: Option<u32>,
    pub leechers: Option<u32>,
    /// Completed downloads the tracker counted (from its scrape).
    pub downloaded: Option<u32>,
}

impl TrackerInfo {
    pub fn to_json(&self) -> Json {
        Json::obj()
            .with("url", self.url.clone())
            .with("tier", self.tier)
            .with("last_result", self.last_result.clone())
            .with("next_announce_secs", self.next_announce_secs)
            .with("seeders", self.seeders)
            .with("leechers", self.leechers)
            .with("downloaded", self.downloaded)
    }
}

impl FromJson for TrackerInfo {
    fn from_json(j: &Json) -> Result<TrackerInfo, SchemaError> {
        Ok(TrackerInfo {
            url: j.field("url")?,
            tier: j.field("tier")?,
            last_result: j.field("last_result")?,
            next_announce_secs: j.field("next_announce_secs")?,
            seeders: j.field("seeders")?,
            leechers: j.field("leechers")?,
            downloaded: j.field("downloaded")?,
        })
    }
}

/// One torrent in detail (for `status`).
#[derive(Clone, Debug, PartialEq)]
pub struct TorrentDetail {
    pub status: TorrentStatus,
    pub piece_length: u32,
    pub private: bool,
    pub magnet: String,
    pub peers: Vec<PeerStatus>,
    pub files: Vec<FileStatus>,
    pub trackers: Vec<TrackerInfo>,
    pub sources: Vec<SourceStats>,
}

impl TorrentDetail {
    pub fn to_json(&self) -> Json {
        let mut j = self.status.to_json();
        let peers: Vec<Json> = self.peers.iter().map(PeerStatus::to_json).collect();
        let files: Vec<Json> = self.files.iter().map(FileStatus::to_json).collect();
        if let Json::Obj(entries) = &mut j {
            entries.push(("piece_length".into(), self.piece_length.into()));
            entries.push(("private".into(), self.private.into()));
            entries.push(("magnet".into(), self.magnet.clone().into()));
            entries.push(("peer_list".into(), Json::Arr(peers)));
            entries.push(("files".into(), Json::Arr(files)));
            entries.push((
                "trackers".into(),
                Json::Arr(self.trackers.iter().map(TrackerInfo::to_json).collect()),
            ));
            entries.push((
                "sources".into(),
                Json::Arr(self.sources.iter().map(SourceStats::to_json).collect()),
            ));
        }
        j
    }
}

impl FromJson for TorrentDetail {
    /// The torrent status and the detail's own keys, in one object.
    fn from_json(j: &Json) -> Result<TorrentDetail, SchemaError> {
        Ok(TorrentDetail {
            status: TorrentStatus::from_json(j)?,
            piece_length: j.field("piece_length")?,
            private: j.field("private")?,
            magnet: j.field("magnet")?,
            peers: j.field("peer_list")?,
            files: j.field("files")?,
            trackers: j.field("trackers")?,
            sources: j.field("sources")?,
        })
    }
}

/// What an overlay search looks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchQuery {
    Hash(InfoHash),
    /// Words of a name (every word must start a word of the name).
    Words(String),
}

/// One search result: a torrent and who holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchHit {
    pub info_hash: InfoHash,
    pub name: String,
    pub size: u64,
    /// BitTorrent addresses (`ip:port`) of the holders.
    pub holders: Vec<String>,
}

impl SearchHit {
    pub fn to_json(&self) -> Json {
        Json::obj()
            .with("info_hash", self.info_hash.to_hex())
            .with("name", self.name.clone())
            .with("size", self.size)
            .with(
                "holders",
                Json::Arr(self.holders.iter().map(|h| h.clone().into()).collect()),
            )
    }
}

impl FromJson for SearchHit {
    fn from_json(j: &Json) -> Result<SearchHit, SchemaError> {
        Ok(SearchHit {
            info_hash: j.field("info_hash")?,
            name: j.field("name")?,
            size: j.field("size")?,
            holders: j.field("holders")?,
        })
    }
}

/// A search's results so far.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchPage {
    pub id: u64,
    pub results: Vec<SearchHit>,
    /// The search's time is up: no more results will come.
    pub done: bool,
}

impl SearchPage {
    pub fn to_json(&self) -> Json {
        Json::obj()
            .with("id", self.id)
            .with("done", self.done)
            .with(
                "results",
                Json::Arr(self.results.iter().map(SearchHit::to_json).collect()),
            )
    }
}

impl FromJson for SearchPage {
    fn from_json(j: &Json) -> Result<SearchPage, SchemaError> {
        Ok(SearchPage {
            id: j.field("id")?,
            results: j.field("results")?,
            done: j.field("done")?,
        })
    }
}

/// One routing-table entry.
#[derive(Clone, Debug, PartialEq)]
pub struct OverlayNode {
    /// Overlay (UDP) address.
    pub addr: String,
    pub id: Option<String>,
    /// `bootstrap`, `beacon`, `exchange`, `incoming`, `saved`, `holder`.
    pub source: &'static str,
    pub tcp_port: u16,
    pub last_seen_secs: Option<u64>,
    pub rtt_ms: Option<u64>,
    pub failures: u32,
    pub neighbour: bool,
}

impl OverlayNode {
    pub fn to_json(&self) -> Json {
        Json::obj()
            .with("addr", self.addr.clone())
            .with("id", self.id.clone())
            .with("source", self.source)
            .with("tcp_port", u32::from(self.tcp_port))
            .with("last_seen_secs", self.last_seen_secs)
            .with("rtt_ms", self.rtt_ms)
            .with("failures", self.failures)
            .with("neighbour", self.neighbour)
    }
}

impl FromJson for OverlayNode {
    fn from_json(j: &Json) -> Result<OverlayNode, SchemaError> {
        Ok(OverlayNode {
            addr: j.field("addr")?,
            id: j.field("id")?,
            source: j.field_one_of("source", NODE_SOURCES)?,
            tcp_port: j.field("tcp_port")?,
            last_seen_secs: j.field("last_seen_secs")?,
            rtt_ms: j.field("rtt_ms")?,
            failures: j.field("failures")?,
            neighbour: j.field("neighbour")?,
        })
    }
}

/// A status's `counters`: an object of named counts (the overlay's, the DHT's).
fn counters_to_json(counters: &[(String, u64)]) -> Json {
    let mut j = Json::obj();
    for (k, v) in counters {
        j = j.with(k, *v);
    }
    j
}

/// `counters` read back: every member a count.
fn counters_from_json(j: &Json) -> Result<Vec<(String, u64)>, SchemaError> {
    let mut counters = Vec::new();
    let entries = j.member("counters")?.entries();
    for (k, v) in entries.map_err(|e| e.under_key("counters"))? {
        let n = u64::from_json(v).map_err(|e| e.under_key(k).under_key("counters"))?;
        counters.push((k.clone(), n));
    }
    Ok(counters)
}

/// The discovery overlay as a whole (for `peerlet peers`).
#[derive(Clone, Debug, PartialEq)]
pub struct OverlayStatus {
    pub node_id: String,
    /// The node's public key (X25519), hex.
    pub public_key: String,
    /// Our overlay (UDP) address.
    pub udp: String,
    /// Our address as other nodes see it, once one answered.
    pub external: Option<String>,
    /// Where LAN beacons go, if LAN discovery is on.
    pub lan_beacon: Option<String>,
    pub capacity: u32,
    pub degree: u32,
    pub nodes: Vec<OverlayNode>,
    /// Info-hashes and holders in the content routing table.
    pub content_entries: u32,
    pub content_holders: u32,
    /// Query ids remembered (duplicates, reverse paths).
    pub routes: u32,
    pub open_searches: u32,
    /// Counters since start: packets by kind (`sent_ping`, `received_hit`,
    /// ...), drops by reason, `searches_flooded`, `searches_direct`, ...
    pub counters: Vec<(String, u64)>,
}

impl OverlayStatus {
    pub fn to_json(&self) -> Json {
        let counters = counters_to_json(&self.counters);
        Json::obj()
            .with("node_id", self.node_id.clone())
            .with("public_key", self.public_key.clone())
            .with("udp", self.udp.clone())
            .with("external", self.external.clone())
            .with("lan_beacon", self.lan_beacon.clone())
            .with("capacity", self.capacity)
            .with("degree", self.degree)
            .with(
                "nodes",
                Json::Arr(self.nodes.iter().map(OverlayNode::to_json).collect()),
            )
            .with("content_entries", self.content_entries)
            .with("content_holders", self.content_holders)
            .with("routes", self.routes)
            .with("open_searches", self.open_searches)
            .with("counters", counters)
    }
}

impl FromJson for OverlayStatus {
    fn from_json(j: &Json) -> Result<OverlayStatus, SchemaError> {
        let counters = counters_from_json(j)?;
        Ok(OverlayStatus {
            node_id: j.field("node_id")?,
            public_key: j.field("public_key")?,
            udp: j.field("udp")?,
            external: j.field("external")?,
            lan_beacon: j.field("lan_beacon")?,
            capacity: j.field("capacity")?,
            degree: j.field("degree")?,
            nodes: j.field("nodes")?,
            content_entries: j.field("content_entries")?,
            content_holders: j.field("content_holders")?,
            routes: j.field("routes")?,
            open_searches: j.field("open_searches")?,
            counters,
        })
    }
}

/// The Mainline DHT node (`peerlet dht`, `GET /api/dht`).
#[derive(Clone, Debug, PartialEq)]
pub struct DhtStatus {
    /// Our DHT node id, hex.
    pub node_id: String,
    /// The UDP address the DHT uses (the shared UDP port).
    pub udp: String,
    /// Our address as the nodes that answered us see it (by vote).
    pub external_ip: Option<String>,
    /// BEP 43: we answer no queries (we seem unreachable).
    pub read_only: bool,
    /// Nodes in the routing table, and per bucket (farthest first).
    pub nodes: u32,
    pub buckets: Vec<u32>,
    /// Lookups in flight; torrents looked up and announced periodically.
    pub lookups: u32,
    pub tracked: u32,
    /// Info-hashes and peers other nodes announced to us.
    pub stored_hashes: u32,
    pub stored_peers: u32,
    /// The bootstrap routers configured (`dht_bootstrap`).
    pub bootstrap: Vec<String>,
    /// Counters since start: `packets_in`, `packets_out`, `bytes_in`,
    /// `bytes_out`, `answered_*`, `rate_limited`, `invalid`, `timeouts`,
    /// `lookups_started`, `lookups_done`, `announces`.
    pub counters: Vec<(String, u64)>,
}

impl DhtStatus {
    pub fn to_json(&self) -> Json {
        let counters = counters_to_json(&self.counters);
        Json::obj()
            .with("node_id", self.node_id.clone())
            .with("udp", self.udp.clone())
            .with("external_ip", self.external_ip.clone())
            .with("read_only", self.read_only)
            .with("nodes", self.nodes)
            .with(
                "buckets",
                Json::Arr(self.buckets.iter().map(|b| Json::from(*b)).collect()),
            )
            .with("lookups", self.lookups)
            .with("tracked", self.tracked)
            .with("stored_hashes", self.stored_hashes)
            .with("stored_peers", self.stored_peers)
            .with(
                "bootstrap",
                Json::Arr(
                    self.bootstrap
                        .iter()
                        .map(|b| Json::from(b.clone()))
                        .collect(),
                ),
            )
            .with("counters", counters)
    }
}

impl FromJson for DhtStatus {
    fn from_json(j: &Json) -> Result<DhtStatus, SchemaError> {
        let counters = counters_from_json(j)?;
        Ok(DhtStatus {
            node_id: j.field("node_id")?,
            udp: j.field("udp")?,
            external_ip: j.field("external_ip")?,
            read_only: j.field("read_only")?,
            nodes: j.field("nodes")?,
            buckets: j.field("buckets")?,
            lookups: j.field("lookups")?,
            tracked: j.field("tracked")?,
            stored_hashes: j.field("stored_hashes")?,
            stored_peers: j.field("stored_peers")?,
            bootstrap: j.field("bootstrap")?,
            counters,
        })
    }
}

/// A banned peer address (`GET /api/bans`).
#[derive(Clone, Debug, PartialEq)]
pub struct BanInfo {
    pub ip: String,
    pub reason: String,
    pub banned_secs_ago: u64,
    pub expires_in_secs: u64,
    /// 1 for a first ban; a repeat offender's bans double (1 h, 2 h, ... 24 h).
    pub offences: u32,
}

impl BanInfo {
    pub fn to_json(&self) -> Json {
        Json::obj()
            .with("ip", self.ip.clone())
            .with("reason", self.reason.clone())
            .with("banned_secs_ago", self.banned_secs_ago)
            .with("expires_in_secs", self.expires_in_secs)
            .with("offences", self.offences)
    }
}

impl FromJson for BanInfo {
    fn from_json(j: &Json) -> Result<BanInfo, SchemaError> {
        Ok(BanInfo {
            ip: j.field("ip")?,
            reason: j.field("reason")?,
            banned_secs_ago: j.field("banned_secs_ago")?,
            expires_in_secs: j.field("expires_in_secs")?,
            offences: j.field("offences")?,
        })
    }
}

/// The node as a whole.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeStatus {
    pub version: String,
    pub listen: String,
    pub peer_id: String,
    /// The overlay node id (SHA-1 of the public key), hex.
    pub node_id: String,
    /// The node's public key (X25519), hex.
    pub public_key: String,
    /// "public" (plain BitTorrent) or "private" (Noise links, sealed
    /// overlay), with the allow-list size when there is one.
    pub network: String,
    pub torrents: u32,
    pub peers: u32,
    pub download_rate: u64,
    pub upload_rate: u64,
    /// The global rate limits, payload bytes per second (0: none).
    pub download_limit: u64,
    pub upload_limit: u64,
    /// Bytes of blocks requested, being written or queued for upload, now.
    pub bytes_in_flight: u64,
    pub memory_budget: u64,
    pub uptime_secs: u64,
    /// Why state files (resume records, journals) cannot be written now,
    /// while they cannot (a read-only or full state directory).
    pub state_dir_error: Option<String>,
}

impl NodeStatus {
    pub fn to_json(&self) -> Json {
        Json::obj()
            .with("version", self.version.clone())
            .with("listen", self.listen.clone())
            .with("peer_id", self.peer_id.clone())
            .with("node_id", self.node_id.clone())
            .with("public_key", self.public_key.clone())
            .with("network", self.network.clone())
            .with("torrents", self.torrents)
            .with("peers", self.peers)
            .with("download_rate", self.download_rate)
            .with("upload_rate", self.upload_rate)
            .with("download_limit", self.download_limit)
            .with("upload_limit", self.upload_limit)
            .with("bytes_in_flight", self.bytes_in_flight)
            .with("memory_budget", self.memory_budget)
            .with("uptime_secs", self.uptime_secs)
            .with("state_dir_error", self.state_dir_error.clone())
    }
}

impl FromJson for NodeStatus {
    fn from_json(j: &Json) -> Result<NodeStatus, SchemaError> {
        Ok(NodeStatus {
            version: j.field("version")?,
            listen: j.field("listen")?,
            peer_id: j.field("peer_id")?,
            node_id: j.field("node_id")?,
            public_key: j.field("public_key")?,
            network: j.field("network")?,
            torrents: j.field("torrents")?,
            peers: j.field("peers")?,
            download_rate: j.field("download_rate")?,
            upload_rate: j.field("upload_rate")?,
            download_limit: j.field("download_limit")?,
            upload_limit: j.field("upload_limit")?,
            bytes_in_flight: j.field("bytes_in_flight")?,
            memory_budget: j.field("memory_budget")?,
            uptime_secs: j.field("uptime_secs")?,
            state_dir_error: j.field("state_dir_error")?,
        })
    }
}

// ----- metrics (`GET /metrics`) -----

/// What `GET /metrics` shows, taken by the engine in one turn of its loop
/// and written as Prometheus text by the control thread
/// (`control::metrics`). Counters count since the daemon started, torrents
/// removed since then included; gauges are values of the moment. Lists are
/// `(label value, value)` pairs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsSnapshot {
    pub version: String,
    pub uptime_secs: u64,
    /// Payload bytes received and sent.
    pub downloaded_bytes: u64,
    pub uploaded_bytes: u64,
    /// Payload bytes received that were not needed (duplicates, late blocks).
    pub wasted_bytes: u64,
    /// Payload bytes per second, averaged over a few seconds.
    pub download_rate: u64,
    pub upload_rate: u64,
    /// Pieces downloaded that passed / failed their SHA-1 check.
    pub pieces_verified: u64,
    pub pieces_failed: u64,
    /// Peers (IP addresses) banned since start, and banned now.
    pub bans_total: u64,
    pub bans: u64,
    /// Torrents and magnets by state (every [`TorrentState`], zeros included).
    pub torrents: Vec<(&'static str, u64)>,
    /// Connections past the handshake by where the peer's address came from.
    pub peers: Vec<(&'static str, u64)>,
    /// Open peer connections by direction (`incoming`, `outgoing`).
    pub connections: Vec<(&'static str, u64)>,
    /// Connections still connecting or handshaking.
    pub half_open: u64,
    /// Addresses in the peer lists of all torrents and magnets, and
    /// addresses forgotten after failing (kept out for a while).
    pub known_peers: u64,
    pub forgotten_peers: u64,
    pub max_connections: u64,
    pub max_half_open: u64,
    /// Jobs waiting in the worker pool's queues (`live`, `background`, `network`).
    pub worker_queues: Vec<(&'static str, u64)>,
    /// Jobs the engine keeps back because their pool queue was full, by queue.
    pub job_backlog: Vec<(&'static str, u64)>,
    /// Jobs submitted and not answered yet.
    pub jobs_in_flight: u64,
    pub worker_threads: u64,
    /// Bytes of blocks requested, being written or queued for upload, now.
    pub bytes_in_flight: u64,
    pub memory_budget: u64,
    /// Tracker announces answered (`ok`) and failed (`error`).
    pub announces: Vec<(&'static str, u64)>,
    /// 1 while state files cannot be written, else 0.
    pub state_dir_error: u64,
    /// Writes of state files that failed.
    pub state_write_failures: u64,
    /// `None` when the overlay is off.
    pub overlay: Option<OverlayMetrics>,
    /// `None` when the DHT is off.
    pub dht: Option<DhtMetrics>,
}

/// The Mainline DHT's part of [`MetricsSnapshot`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DhtMetrics {
    pub nodes: u64,
    pub tracked: u64,
    pub lookups: u64,
    pub stored_peers: u64,
    /// 1 in BEP 43 read-only mode.
    pub read_only: u64,
    /// Counters by name (the keys of [`DhtStatus::counters`]).
    pub counters: Vec<(&'static str, u64)>,
}

/// The discovery overlay's part of [`MetricsSnapshot`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OverlayMetrics {
    /// Packets sent and received by kind (`overlay::msg::KINDS`).
    pub sent: Vec<(&'static str, u64)>,
    pub received: Vec<(&'static str, u64)>,
    /// Packets dropped (or not sent) by reason.
    pub dropped: Vec<(&'static str, u64)>,
    /// Queries forwarded to a neighbour, and queries whose TTL was capped.
    pub forwarded: u64,
    pub ttl_capped: u64,
    /// Our searches by how they went out (`flooded`, `direct`).
    pub searches: Vec<(&'static str, u64)>,
    pub table_nodes: u64,
    pub table_capacity: u64,
    pub live_nodes: u64,
    pub neighbours: u64,
    /// Neighbours wanted.
    pub degree: u64,
    pub content_entries: u64,
    pub content_holders: u64,
    /// Query ids remembered, and our searches still open.
    pub routes: u64,
    pub open_searches: u64,
}

/// How the control thread reaches the engine: a bounded channel plus a
/// wake-up hook (the net thread's `mio::Waker`, hidden behind a closure so
/// this module does not depend on mio).
#[derive(Clone)]
pub struct EngineHandle {
    pub commands: Sender<Command>,
    pub wake: Arc<dyn Fn() + Send + Sync>,
}

impl EngineHandle {
    /// Sends a command built around a fresh reply channel and waits up to
    /// `timeout` for the answer.
    pub fn call<T>(
        &self,
        timeout: Duration,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, ApiError> {
        let (tx, rx) = bounded(1);
        self.commands
            .send_timeout(make(tx), timeout)
            .map_err(|_| ApiError::Unavailable("the daemon is busy or shutting down".into()))?;
        (self.wake)();
        match rx.recv_timeout(timeout) {
            Ok(res) => res,
            Err(_) => Err(ApiError::Unavailable(
                "the daemon did not answer in time".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(byte: u8) -> InfoHash {
        InfoHash([byte; 20])
    }

    fn status() -> TorrentStatus {
        TorrentStatus {
            info_hash: hash(0xc1),
            name: "album \u{e9}\"\n".into(),
            state: TorrentState::Downloading,
            error: Some("disk full".into()),
            dir: PathBuf::from("/srv/data"),
            total_size: u64::MAX,
            have_bytes: 2,
            pieces: u32::MAX,
            pieces_have: 4,
            download_rate: 5,
            upload_rate: 6,
            downloaded: 7,
            uploaded: 8,
            peers: 9,
            hash_failures: 10,
            pieces_downloaded: 11,
            pieces_resumed: 12,
            download_limit: 13,
            upload_limit: 14,
            tracker: None,
            swarm_seeders: Some(40),
            swarm_leechers: None,
        }
    }

    fn detail() -> TorrentDetail {
        TorrentDetail {
            status: status(),
            piece_length: 1 << 20,
            private: true,
            magnet: "magnet:?xt=urn:btih:c1c1".into(),
            peers: vec![PeerStatus {
                addr: "[::1]:6881".into(),
                source: "pex",
                client: "peerlet 0.1.0".into(),
                download_rate: 1,
                upload_rate: 2,
                downloaded: 3,
                uploaded: 4,
                progress: 0.123,
                flags: "DI".into(),
            }],
            files: vec![FileStatus {
                path: "dir/file.bin".into(),
                size: 4,
                have_bytes: 2,
            }],
            trackers: vec![
                TrackerInfo {
                    url: "udp://t.example:6969/announce".into(),
                    tier: 1,
                    last_result: "ok: 12 peers".into(),
                    next_announce_secs: Some(1800),
                    seeders: Some(3),
                    leechers: None,
                    downloaded: Some(77),
                },
                TrackerInfo {
                    url: "http://t.example/a".into(),
                    tier: 0,
                    last_result: "not contacted".into(),
                    next_announce_secs: None,
                    seeders: None,
                    leechers: Some(0),
                    downloaded: None,
                },
            ],
            sources: vec![SourceStats {
                source: "tracker",
                known: 12,
                connected: 1,
                downloaded: 2,
                uploaded: 0,
            }],
        }
    }

    fn overlay() -> OverlayStatus {
        OverlayStatus {
            node_id: "ab".repeat(20),
            public_key: "cd".repeat(32),
            udp: "0.0.0.0:6881".into(),
            external: Some("203.0.113.5:6881".into()),
            lan_beacon: None,
            capacity: 64,
            degree: 8,
            nodes: vec![OverlayNode {
                addr: "192.168.1.20:6881".into(),
                id: None,
                source: "beacon",
                tcp_port: u16::MAX,
                last_seen_secs: Some(75),
                rtt_ms: None,
                failures: 3,
                neighbour: true,
            }],
            content_entries: 42,
            content_holders: 50,
            routes: 7,
            open_searches: 1,
            counters: vec![("sent_ping".into(), 12), ("dropped_rate_limit".into(), 0)],
        }
    }

    fn node() -> NodeStatus {
        NodeStatus {
            version: "0.1.0".into(),
            listen: "0.0.0.0:6881".into(),
            peer_id: "-PL0010-abcdefghijkl".into(),
            node_id: "ab".repeat(20),
            public_key: "cd".repeat(32),
            network: "private (3 allowed)".into(),
            torrents: 2,
            peers: 3,
            download_rate: 4,
            upload_rate: 5,
            download_limit: 0,
            upload_limit: 4096,
            bytes_in_flight: 1 << 20,
            memory_budget: 64 << 20,
            uptime_secs: 3725,
            state_dir_error: Some("cannot write the state directory (x)".into()),
        }
    }

    /// `T::from_json(&t.to_json()) == t`, also through the printed text.
    fn round_trip<T: FromJson + PartialEq + std::fmt::Debug>(t: &T, to_json: fn(&T) -> Json) {
        let j = to_json(t);
        assert_eq!(&T::from_json(&j).unwrap(), t);
        let printed = crate::json::parse(&j.to_string()).unwrap();
        assert_eq!(&T::from_json(&printed).unwrap(), t);
    }

    #[test]
    fn every_answer_reads_back() {
        round_trip(&status(), TorrentStatus::to_json);
        let mut t = status();
        t.error = None;
        t.tracker = Some("error: refused".into());
        for state in TorrentState::ALL {
            t.state = state;
            round_trip(&t, TorrentStatus::to_json);
        }
        round_trip(&detail(), TorrentDetail::to_json);
        let d = detail();
        round_trip(&d.peers[0], PeerStatus::to_json);
        round_trip(&d.files[0], FileStatus::to_json);
        round_trip(&d.trackers[0], TrackerInfo::to_json);
        round_trip(&d.sources[0], SourceStats::to_json);
        round_trip(&node(), NodeStatus::to_json);
        round_trip(&overlay(), OverlayStatus::to_json);
        let dht = DhtStatus {
            node_id: "5fbfbff10c5d6a4ec8a88e4c6ab4c28b95eee401".into(),
            udp: "0.0.0.0:6881".into(),
            external_ip: Some("203.0.113.5".into()),
            read_only: false,
            nodes: 12,
            buckets: vec![8, 4],
            lookups: 1,
            tracked: 2,
            stored_hashes: 3,
            stored_peers: 4,
            bootstrap: vec!["router.example:6881".into()],
            counters: vec![("packets_in".into(), 5), ("announces".into(), 1)],
        };
        round_trip(&dht, DhtStatus::to_json);
        round_trip(
            &DhtStatus {
                external_ip: None,
                read_only: true,
                buckets: Vec::new(),
                bootstrap: Vec::new(),
                counters: Vec::new(),
                ..dht
            },
            DhtStatus::to_json,
        );
        round_trip(&overlay().nodes[0], OverlayNode::to_json);
        let ban = BanInfo {
            ip: "10.0.0.7".into(),
            reason: "sent 5 pieces that failed".into(),
            banned_secs_ago: 5,
            expires_in_secs: 3595,
            offences: 2,
        };
        round_trip(&ban, BanInfo::to_json);
        let hit = SearchHit {
            info_hash: hash(7),
            name: "ubuntu".into(),
            size: 6 << 30,
            holders: vec!["10.0.0.1:6881".into(), "[::1]:1".into()],
        };
        round_trip(&hit, SearchHit::to_json);
        let page = SearchPage {
            id: 7,
            results: vec![hit],
            done: true,
        };
        round_trip(&page, SearchPage::to_json);
        let added = AddResult {
            info_hash: hash(9),
            name: String::new(),
            added: true,
        };
        round_trip(&added, AddResult::to_json);
    }

    #[test]
    fn peer_progress_reads_back_in_permille() {
        for (progress, back) in [(0.0, 0.0), (1.0, 1.0), (0.5, 0.5), (0.1234, 0.123)] {
            let mut p = detail().peers[0].clone();
            p.progress = progress;
            assert_eq!(PeerStatus::from_json(&p.to_json()).unwrap().progress, back);
        }
    }

    /// Removes `key` from an object, wherever `path` (keys and indexes) leads.
    fn without(mut j: Json, path: &[&str], key: &str) -> Json {
        let mut at = &mut j;
        for step in path {
            at = match at {
                Json::Obj(entries) => &mut entries.iter_mut().find(|(k, _)| k == step).unwrap().1,
                Json::Arr(items) => &mut items[step.parse::<usize>().unwrap()],
                _ => panic!("{step}"),
            };
        }
        let Json::Obj(entries) = at else { panic!() };
        entries.retain(|(k, _)| k != key);
        j
    }

    #[test]
    fn a_missing_or_mistyped_field_is_named() {
        let j = status().to_json();
        // Every key of the status is required, optional ones included.
        let Json::Obj(entries) = &j else { panic!() };
        for (key, _) in entries {
            let e = TorrentStatus::from_json(&without(j.clone(), &[], key)).unwrap_err();
            assert_eq!(e.path, *key);
            assert_eq!(e.problem, "missing");
        }
        let e =
            TorrentDetail::from_json(&without(detail().to_json(), &["peer_list", "0"], "flags"))
                .unwrap_err();
        assert_eq!(e.to_string(), "field 'peer_list[0].flags': missing");
        let e = OverlayStatus::from_json(&without(overlay().to_json(), &["nodes", "0"], "id"))
            .unwrap_err();
        assert_eq!(e.to_string(), "field 'nodes[0].id': missing");
        let renamed = without(status().to_json(), &[], "state").with("state", "sleeping");
        assert_eq!(
            TorrentStatus::from_json(&renamed).unwrap_err().to_string(),
            "field 'state': unknown state \"sleeping\""
        );
        let j = without(node().to_json(), &[], "uptime_secs").with("uptime_secs", "1h");
        assert_eq!(
            NodeStatus::from_json(&j).unwrap_err().to_string(),
            "field 'uptime_secs': expected a non-negative integer"
        );
        let j = without(overlay().to_json(), &[], "counters")
            .with("counters", Json::obj().with("sent_ping", -1i64));
        assert_eq!(
            OverlayStatus::from_json(&j).unwrap_err().path,
            "counters.sent_ping"
        );
        let j = without(detail().to_json(), &["sources", "0"], "source");
        let j = TorrentDetail::from_json(&j).unwrap_err();
        assert_eq!(j.path, "sources[0].source");
        assert!(AddResult::from_json(
            &Json::obj()
                .with("info_hash", "xyz")
                .with("name", "")
                .with("added", true)
        )
        .unwrap_err()
        .to_string()
        .contains("'info_hash'"));
        assert!(NodeStatus::from_json(&Json::Arr(Vec::new())).is_err());
    }
}
