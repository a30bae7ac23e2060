//! The net thread: one `mio::Poll` loop that owns every socket, every
//! torrent's [`Swarm`], and the bookkeeping that makes downloads durable.
//!
//! One turn of the loop: poll (timeout = next timer, or zero when sockets
//! still have unread data), handle socket readiness, drain control
//! commands and worker results, read sockets that still have data (unless
//! the job queue is backed up: backpressure), submit queued jobs, run the
//! once-a-second tick, flush output, close what must close.
//!
//! The thread never blocks: hashing, file I/O, state saves and name
//! resolution are [`Job`]s on the worker pool; a full job queue keeps jobs
//! in a backlog and stops socket reads until it drains.
//!
//! Durability (see [`crate::resume`]): a verified piece is appended to the
//! torrent's journal at once, and recorded in the resume file only after a
//! `Sync` job made its data durable — batched every `checkpoint_bytes` or
//! `checkpoint_interval`, at completion and at shutdown. Nothing is written
//! while a torrent is idle.

use super::admission::{self, Census, Limits};
use super::checkpoint::{Checkpoint, Due};
use super::conn::{Conn, ConnState};
use super::memory::MemoryCaps;
use super::peerlist::PeerList;
use super::slab::{index_of, Slab};
use super::statedir::{StateDir, StateWrite};
use crate::hash::Digest;
use crate::metainfo::{InfoHash, PieceIdx, Torrent};
use crate::net::api::{
    self, AddResult, AddSource, ApiError, Command, EngineHandle, FileStatus, NodeStatus,
    PeerStatus, TorrentDetail, TorrentState, TorrentStatus,
};
use crate::resume::{self, Resume};
use crate::storage::{self, DataDir, FilePool, FileStorage, Storage};
use crate::swarm::rate::TokenBucket;
use crate::swarm::{Bitfield, Disconnect, Out, PeerKey, Swarm, SwarmConfig};
use crate::wire::peer::{BlockRef, Handshake, Message, HANDSHAKE_LEN};
use crate::workers::{DiskTorrent, Job, JobDone, Pool, PoolConfig, Priority, RunResult};
use crossbeam_channel::{bounded, Receiver, Sender};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod commands;
mod defence;
mod dht;
mod magnets;
mod metrics;
mod overlay;
mod peers;
mod pex;
mod reconfigure;
mod torrents;
mod trackers;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const UDP: Token = Token(2);
const BEACON: Token = Token(3);
const FIRST_CONN: usize = 4;

pub use dht::{DhtSettings, DHT_ROUTERS, MAX_SAVED_DHT_NODES};
pub use overlay::{is_beacon_target, LanDiscovery, OverlaySettings, MAX_SAVED_NODES};

/// Opens the storage of a torrent whose data lives under `place.dir()`,
/// beneath `place.anchor()`.
pub type StorageFactory =
    Arc<dyn Fn(&Torrent, &DataDir) -> io::Result<Arc<dyn Storage>> + Send + Sync>;

/// The default: files under `dir/<name>`, every open resolved beneath the
/// anchor, all torrents' open handles in one LRU of at most
/// `max_open_files` descriptors.
pub fn file_storage_factory(max_open_files: usize) -> StorageFactory {
    let pool = FilePool::new(max_open_files);
    Arc::new(move |t: &Torrent, place: &DataDir| {
        let relative = (0..t.files.len()).map(|i| t.relative_path(i)).collect();
        Ok(
            Arc::new(FileStorage::beneath(place.clone(), relative, pool.clone())?)
                as Arc<dyn Storage>,
        )
    })
}

/// Everything the engine needs to run.
#[derive(Clone)]
pub struct EngineConfig {
    pub listen: SocketAddr,
    pub download_dir: PathBuf,
    /// The directories a torrent may lie in besides ones the local user
    /// named, resolved: the download directory and `allowed_dirs`
    /// (filled by `Daemon::start`; [`EngineConfig::download_dir`] counts
    /// in any case). A record naming another anchor is refused at load.
    pub anchors: Vec<PathBuf>,
    /// Holds `torrents/` (metainfo, resume, journal) and the `clean` marker.
    pub state_dir: PathBuf,
    pub max_connections: usize,
    /// Data files open at once, all torrents (the storage factory's pool).
    pub max_open_files: usize,
    pub max_connections_per_torrent: usize,
    /// Connections one IP address may hold at once (all torrents, both
    /// directions, handshakes included); one per torrent in any case.
    pub max_connections_per_ip: usize,
    /// Our dials still connecting or handshaking.
    pub max_half_open: usize,
    /// Incoming connections that have not sent a whole handshake; they
    /// have slots of their own within `max_connections` (see
    /// [`crate::net::admission`]).
    pub max_half_open_incoming: usize,
    /// Peers asked of each tracker per announce (`numwant`).
    pub tracker_numwant: u32,
    pub connect_timeout: Duration,
    /// Our dials: from the connect to the peer's whole handshake.
    pub handshake_timeout: Duration,
    /// Incoming connections: from the accept to the peer's whole handshake.
    pub incoming_handshake_timeout: Duration,
    /// Close a connection that sent nothing for this long.
    pub idle_timeout: Duration,
    /// Send a keep-alive after this long without sending.
    pub keepalive_interval: Duration,
    pub swarm: SwarmConfig,
    /// The memory budget (`memory_limit`), split into the caps of
    /// [`MemoryCaps`] for all torrents together.
    pub memory_budget: u64,
    /// What control API requests hold now ([`super::memory::Budget`]),
    /// lent by the downloads' share of `memory_budget`; `None`: no API.
    pub api_memory: Option<std::sync::Arc<super::memory::Budget>>,
    /// Payload bytes per second, 0 for unlimited.
    pub download_rate_limit: u64,
    pub upload_rate_limit: u64,
    /// Make verified data durable and record it after this many bytes...
    pub checkpoint_bytes: u64,
    /// ...or this long after the first unrecorded piece.
    pub checkpoint_interval: Duration,
    /// Retry a torrent stopped by a disk error after this long.
    pub disk_retry: Duration,
    pub workers: usize,
    /// Bytes per second a recheck may read (0: unlimited).
    pub recheck_rate: u64,
    pub storage_factory: StorageFactory,
    /// The discovery overlay (node key, bootstrap nodes, LAN beacons).
    pub overlay: OverlaySettings,
    /// A private network: every connection is a Noise link, every overlay
    /// packet sealed. `None`: public mode, plain BitTorrent.
    pub private: Option<Arc<crate::private::PrivateNetwork>>,
    /// The Mainline DHT (never with `private`).
    pub dht: DhtSettings,
    /// The CA certificates `https` trackers are checked against, read by
    /// the first `https` fetch on a network worker.
    pub tls_roots: Arc<crate::tls::LazyRoots>,
}

impl EngineConfig {
    /// `<state dir>/torrents/<hex>.<ext>`: a torrent's `torrent`, `resume`,
    /// `journal` or `magnet` file.
    fn state_file(&self, info_hash: InfoHash, ext: &str) -> PathBuf {
        self.state_dir
            .join(crate::state::TORRENTS_DIR)
            .join(format!("{}.{ext}", info_hash.to_hex()))
    }

    /// The connection caps, as admission takes them.
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            max_half_open: self.max_half_open,
            max_half_open_incoming: self.max_half_open_incoming,
        }
    }

    pub fn new(listen: SocketAddr, download_dir: PathBuf, state_dir: PathBuf) -> EngineConfig {
        EngineConfig {
            listen,
            download_dir,
            anchors: Vec::new(),
            state_dir,
            max_connections: 100,
            max_open_files: storage::DEFAULT_MAX_OPEN_FILES,
            max_connections_per_torrent: 40,
            max_connections_per_ip: 4,
            max_half_open: 32,
            max_half_open_incoming: 8,
            tracker_numwant: 200,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            incoming_handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(120),
            keepalive_interval: Duration::from_secs(60),
            swarm: SwarmConfig::default(),
            memory_budget: super::memory::DEFAULT_LIMIT,
            api_memory: None,
            download_rate_limit: 0,
            upload_rate_limit: 0,
            checkpoint_bytes: 32 << 20,
            checkpoint_interval: Duration::from_secs(30),
            disk_retry: Duration::from_secs(30),
            workers: PoolConfig::default().threads,
            recheck_rate: 0,
            storage_factory: file_storage_factory(storage::DEFAULT_MAX_OPEN_FILES),
            overlay: OverlaySettings::new(),
            private: None,
            dht: DhtSettings::new(),
            tls_roots: Arc::new(system_tls_roots(None)),
        }
    }
}

/// The CA certificates of `tls_ca_file` (`Some`) or the system's
/// (`storage::certs`), read on first use.
pub fn system_tls_roots(ca_file: Option<PathBuf>) -> crate::tls::LazyRoots {
    crate::tls::LazyRoots::new(move || storage::certs::load_roots(ca_file.as_deref()))
}

/// A torrent found in the state directory at start.
pub struct LoadedTorrent {
    pub torrent_bytes: Vec<u8>,
    pub resume: Option<Resume>,
    pub journal: Vec<u32>,
    /// The peers given by hand, from `<hex>.peers` (kept apart from the
    /// resume record, so a damaged record does not lose them).
    pub peers: Vec<String>,
}

/// What the daemon read from the state directory before starting the engine.
pub struct Startup {
    pub torrents: Vec<LoadedTorrent>,
    /// Magnets still waiting for their metadata.
    pub magnets: Vec<resume::MagnetRecord>,
    /// The last stop was orderly (the `clean` marker was there).
    pub clean: bool,
    /// The overlay routing table saved by the last run.
    pub nodes: Vec<(crate::overlay::NodeId, SocketAddr)>,
    /// The DHT routing table saved by the last run.
    pub dht_nodes: Vec<(crate::dht::NodeId, SocketAddr)>,
}

/// A running engine thread.
pub struct EngineThread {
    pub handle: EngineHandle,
    pub listen_addr: SocketAddr,
    pub peer_id: [u8; 20],
    join: JoinHandle<()>,
}

impl EngineThread {
    /// Waits for the engine to stop (after a `Shutdown` command).
    pub fn join(self) {
        let _ = self.join.join();
    }
}

/// Starts the net thread and its worker pool.
pub fn spawn(config: EngineConfig, startup: Startup) -> io::Result<EngineThread> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let mut listener = TcpListener::bind(config.listen).map_err(|e| {
        io::Error::new(e.kind(), format!("cannot listen on {}: {e}", config.listen))
    })?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let listen_addr = listener.local_addr()?;
    // The shared UDP port (trackers, the overlay): the peer port when free.
    let mut udp = crate::net::udp::UdpPort::bind(listen_addr)?;
    poll.registry()
        .register(&mut udp, UDP, Interest::READABLE)?;
    // The node key, made now when the configuration has none (tests).
    let mut config = config;
    let key = match config.overlay.key.take() {
        Some(key) => key,
        None => {
            crate::overlay::NodeKey::from_secret(crate::rand::bytes().map_err(io::Error::other)?)
        }
    };
    config.overlay.key = Some(key.clone());
    let overlay = match config.overlay.enabled {
        true => Some(
            overlay::OverlayDriver::new(
                &config.overlay,
                &key,
                listen_addr,
                udp.local_addr().map_or(listen_addr.port(), |a| a.port()),
                &startup.nodes,
                &poll,
                BEACON,
                Instant::now(),
            )?
            .sealed(config.private.as_deref())?,
        ),
        false => None,
    };
    // The Mainline DHT: public mode only.
    let dht = match config.dht.enabled && config.private.is_none() {
        true => Some(dht::DhtDriver::new(
            listen_addr.port(),
            &startup.dht_nodes,
            Instant::now(),
        )?),
        false => None,
    };
    let (cmd_tx, cmd_rx) = bounded::<Command>(64);
    let wake_for_api = waker.clone();
    let handle = EngineHandle {
        commands: cmd_tx,
        wake: Arc::new(move || {
            let _ = wake_for_api.wake();
        }),
    };
    let peer_id = new_peer_id();
    let wake_for_pool = waker.clone();
    // One wake-up per batch of results: a worker wakes the loop only when
    // the loop has drained everything since the last wake-up.
    let wake_pending = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pending_for_pool = wake_pending.clone();
    let pool = Pool::new(
        PoolConfig {
            threads: config.workers,
            queue_len: 256,
            background_rate: (config.recheck_rate > 0).then_some(config.recheck_rate),
            ..PoolConfig::default()
        },
        Some(Arc::new(move || {
            if !pending_for_pool.swap(true, std::sync::atomic::Ordering::AcqRel) {
                let _ = wake_for_pool.wake();
            }
        })),
    );
    let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded();
    let down_bucket = TokenBucket::new(config.download_rate_limit);
    let caps = MemoryCaps::new(config.memory_budget);
    let up_bucket = TokenBucket::new(config.upload_rate_limit);
    let mut engine = Engine {
        poll,
        listener,
        udp,
        udp_readable: false,
        accept_more: false,
        beacon_readable: false,
        overlay,
        dht,
        config,
        listen_addr,
        external_ip: None,
        peer_id,
        conns: Slab::default(),
        torrents: HashMap::new(),
        by_hash: HashMap::new(),
        next_tid: 1,
        pool,
        jobs_tx,
        jobs_rx,
        wake_pending,
        commands: cmd_rx,
        backlog: VecDeque::new(),
        net_backlog: VecDeque::new(),
        jobs: HashMap::new(),
        next_tag: 1,
        bans: crate::net::bans::BanList::new(),
        violations: Vec::new(),
        accept_paused: false,
        accept_pause_said: None,
        accept_failed: false,
        send_over: HashMap::new(),
        handshake_reads: 0,
        down_bucket,
        up_bucket,
        deferred_reads: VecDeque::new(),
        caps,
        upload_reading: 0,
        send_buffered: 0,
        read_buffered: 0,
        started: Instant::now(),
        next_tick: Instant::now(),
        shutdown: None,
        clean_start: startup.clean,
        outs: Vec::new(),
        pending_writes: Vec::new(),
        magnets: HashMap::new(),
        trackers: HashMap::new(),
        state_lock: Arc::new(std::sync::Mutex::new(())),
        state_health: StateDir::new(),
        removals: Vec::new(),
        next_removal: 0,
        totals: metrics::Totals::default(),
    };
    for t in startup.torrents {
        engine.load(t);
    }
    engine.resolve_bootstrap(Instant::now());
    let now = Instant::now();
    for m in startup.magnets {
        let place = match engine.place_of_record(&m.dir, m.anchor.as_deref(), m.local_anchor) {
            Ok(p) => p,
            Err(e) => {
                log::error!("skipping a saved magnet link ({}): {e}", m.link);
                continue;
            }
        };
        if let Err(e) = engine.add_magnet(&m.link, Some(place), m.peers, m.paused, now) {
            log::error!("skipping a saved magnet link: {e}");
        }
    }
    let join = std::thread::Builder::new()
        .name("peerlet-net".into())
        .spawn(move || engine.run())?;
    Ok(EngineThread {
        handle,
        listen_addr,
        peer_id,
        join,
    })
}

fn new_peer_id() -> [u8; 20] {
    let mut id = *b"-PL0100-000000000000";
    let mut r = crate::rand::seed(0);
    for (i, b) in id[8..].iter_mut().enumerate() {
        if r == 0 {
            r = crate::rand::seed(i as u64);
        }
        *b = b"0123456789abcdefghijklmnopqrstuvwxyz"[(r % 36) as usize];
        r /= 36;
    }
    id
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading file sizes to see what must be rechecked.
    Probing,
    /// Hashing pieces on disk.
    Checking,
    /// The swarm runs.
    Running,
    /// Could not start (data missing); waits for a resume command or retry.
    Stopped,
}

struct Check {
    pieces: Vec<u32>,
    next: usize,
    in_flight: usize,
    good: Vec<u32>,
    /// A read failed for another reason than missing data (EIO, EMFILE,
    /// EACCES...): nothing more is submitted, and once the pieces in
    /// flight are back the torrent stops with this error and retries.
    failed: Option<io::Error>,
}

struct TorrentEntry {
    id: u32,
    meta: Arc<Torrent>,
    disk: Arc<DiskTorrent>,
    /// Where the data lives (`dir/<name>`) and the anchor opens start from.
    place: DataDir,
    phase: Phase,
    paused: bool,
    error: Option<String>,
    /// Its state files cannot be written (shown as its error when it has
    /// no other; cleared when the state directory takes writes again).
    state_error: Option<String>,
    retry_at: Option<Instant>,
    swarm: Option<Swarm>,
    /// Pieces taken from the resume file (trusted unless the probe disagrees).
    resume_have: Bitfield,
    resume_sizes: Vec<u64>,
    resume_mtimes: Vec<i64>,
    /// The resume record on disk lists pieces to re-hash (`Resume::recheck`).
    resume_recheck: bool,
    /// The resume record on disk still says what is true (the probe found
    /// the files as recorded): starting does not write it again.
    record_matches: bool,
    /// This torrent's own rate limits (0: none), on top of the global ones.
    down_limit: TokenBucket,
    up_limit: TokenBucket,
    journal: Vec<u32>,
    check: Option<Check>,
    known: PeerList,
    manual_peers: Vec<String>,
    /// `<hex>.peers` is being written, and is behind again.
    peers_saving: bool,
    peers_dirty: bool,
    /// Verified pieces on their way to the journal, a sync and the record.
    checkpoint: Checkpoint,
    pieces_resumed: u32,
    /// Write jobs not yet finished (shutdown waits for them).
    writes_in_flight: u32,
    /// Bytes moved by connections already closed, per source: (source, down, up).
    closed_transfer: Vec<(&'static str, u64, u64)>,
    /// Peer exchange (BEP 11); disabled for private torrents.
    pex: crate::swarm::pex::PeerExchange,
}

impl TorrentEntry {
    /// Stops the torrent with an error until `retry_at` (the tick probes
    /// it again then, or `peerlet resume` does).
    fn stop_until_retry(&mut self, msg: String, retry_at: Instant) {
        log::error!("{}: {msg}", self.meta.name);
        self.error = Some(msg);
        self.phase = Phase::Stopped;
        self.retry_at = Some(retry_at);
    }

    fn add_closed_transfer(&mut self, source: &'static str, down: u64, up: u64) {
        match self.closed_transfer.iter_mut().find(|e| e.0 == source) {
            Some(e) => {
                e.1 += down;
                e.2 += up;
            }
            None => self.closed_transfer.push((source, down, up)),
        }
    }

    /// Known addresses, connections and bytes per peer source.
    fn source_stats(&self, conns: &Slab<Conn>) -> Vec<api::SourceStats> {
        let mut out: Vec<api::SourceStats> = Vec::new();
        fn entry<'a>(
            out: &'a mut Vec<api::SourceStats>,
            source: &'static str,
        ) -> &'a mut api::SourceStats {
            let i = match out.iter().position(|e| e.source == source) {
                Some(i) => i,
                None => {
                    out.push(api::SourceStats {
                        source,
                        known: 0,
                        connected: 0,
                        downloaded: 0,
                        uploaded: 0,
                    });
                    out.len() - 1
                }
            };
            &mut out[i]
        }
        for k in self.known.iter() {
            entry(&mut out, k.source).known += 1;
        }
        for &(source, down, up) in &self.closed_transfer {
            let e = entry(&mut out, source);
            e.downloaded += down;
            e.uploaded += up;
        }
        for c in conns.values() {
            if c.torrent != Some(self.id) || c.state != ConnState::Active {
                continue;
            }
            let (down, up) = self
                .swarm
                .as_ref()
                .and_then(|s| s.peer_transfer(c.key))
                .unwrap_or((0, 0));
            let e = entry(&mut out, c.source);
            e.connected += 1;
            e.downloaded += down;
            e.uploaded += up;
        }
        crate::sort::sort_by(&mut out, |a, b| a.source.cmp(b.source));
        out
    }

    fn api_state(&self) -> TorrentState {
        if self.paused {
            return TorrentState::Paused;
        }
        if self.error.is_some() {
            return TorrentState::Error;
        }
        match self.phase {
            Phase::Probing | Phase::Checking => TorrentState::Checking,
            Phase::Stopped => TorrentState::Error,
            Phase::Running => match &self.swarm {
                Some(s) if s.is_complete() => TorrentState::Seeding,
                _ => TorrentState::Downloading,
            },
        }
    }

    fn resume_record(&self) -> Resume {
        Resume {
            info_hash: self.meta.info_hash,
            dir: self.place.dir().to_path_buf(),
            anchor: Some(self.place.anchor().to_path_buf()),
            local_anchor: self.place.is_local(),
            pieces: self.checkpoint.durable().as_bytes().to_vec(),
            peers: self.manual_peers.clone(),
            paused: self.paused,
            file_sizes: self.resume_sizes.clone(),
            file_mtimes: self.resume_mtimes.clone(),
            download_limit: self.down_limit.rate(),
            upload_limit: self.up_limit.rate(),
            recheck: Vec::new(),
        }
    }
}

/// Why a job was submitted, keyed by its tag.
enum Ctx {
    /// Consecutive blocks of one piece read in one job for one peer.
    Read {
        tid: u32,
        peer: PeerKey,
        blocks: Vec<BlockRef>,
    },
    /// Contiguous blocks of one piece written in one job: (begin, len) each.
    Write {
        tid: u32,
        piece: PieceIdx,
        blocks: Vec<(u32, u32)>,
    },
    Hash {
        tid: u32,
    },
    Check {
        tid: u32,
    },
    HashBlocks {
        tid: u32,
    },
    TrackerResolve {
        tid: u32,
        tracker: crate::tracker::announcer::TrackerId,
    },
    TrackerHttp {
        tid: u32,
        tracker: crate::tracker::announcer::TrackerId,
    },
    /// The pieces it covers are in the torrent's `Checkpoint`.
    Sync {
        tid: u32,
    },
    /// Reading back a piece a failed sync covered.
    Reverify {
        tid: u32,
    },
    Probe {
        tid: u32,
    },
    /// Writing the record without the pieces a check is about to re-hash;
    /// the check starts when it is done.
    ClearSuspect {
        tid: u32,
    },
    Save {
        tid: u32,
    },
    /// Writing a torrent's `<hex>.peers`.
    SavePeers {
        tid: u32,
    },
    Resolve {
        tid: u32,
        source: &'static str,
    },
    /// Deleting a removed torrent's state files (and data): `Removal::id`.
    Remove {
        id: u64,
    },
    /// Resolving the overlay's bootstrap node names.
    Bootstrap,
    /// Writing the overlay's routing table (`<state>/nodes`); a shutdown
    /// waits for it.
    SaveNodes,
    /// Resolving the DHT's bootstrap routers.
    DhtBootstrap,
    /// Writing the DHT's routing table (`<state>/dht_nodes`); a shutdown
    /// waits for it.
    SaveDhtNodes,
    /// Removing the journals and writing the `clean` marker, the last
    /// step of a shutdown.
    CleanMarker,
    /// Appending verified pieces to a torrent's journal; given back to
    /// its checkpoint when the append fails.
    Journal {
        tid: u32,
        pieces: Vec<u32>,
    },
    /// Work whose result is only logged when it fails.
    Chore(Chore),
}

/// Jobs whose failure is logged and changes nothing else (the next start
/// copes: a missing journal entry means a recheck, a missing .torrent or
/// magnet file a torrent to add again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chore {
    /// Writing a torrent's metainfo into the state directory.
    SaveTorrentFile,
    /// Writing a magnet link's record.
    SaveMagnet,
    /// Giving every file of a complete torrent its full length.
    CompleteFiles,
}

impl Chore {
    /// The state file it writes, if it writes one.
    fn state_write(self) -> Option<StateWrite> {
        match self {
            Chore::SaveTorrentFile => Some(StateWrite::TorrentFile),
            Chore::SaveMagnet => Some(StateWrite::Magnet),
            Chore::CompleteFiles => None,
        }
    }
}

impl std::fmt::Display for Chore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Chore::SaveTorrentFile => "saving the torrent file",
            Chore::SaveMagnet => "saving a magnet link",
            Chore::CompleteFiles => "completing files",
        })
    }
}

/// A torrent taken out of the engine whose files are still to be deleted.
/// The deletion waits until no job holds the torrent's storage (a write
/// finishing after it would create a file again), and the API's answer
/// waits for the deletion (an `add` of the same torrent right after
/// `remove` would otherwise find the files half gone, or lose its state
/// files to the deletion).
struct Removal {
    id: u64,
    info_hash: InfoHash,
    disk: Option<Arc<DiskTorrent>>,
    work: Option<Box<dyn FnOnce() -> io::Result<()> + Send>>,
    reply: api::Reply<()>,
    since: Instant,
}

/// How long a deletion waits for the torrent's jobs before going ahead.
const REMOVAL_WAIT: Duration = Duration::from_secs(5);

struct Shutdown {
    replies: Vec<api::Reply<()>>,
    deadline: Instant,
    /// Phase 2 started: final syncs and saves are out.
    saving: bool,
    /// The clean marker job is out.
    marking: bool,
    done: bool,
}

struct Engine {
    poll: Poll,
    listener: TcpListener,
    udp: crate::net::udp::UdpPort,
    /// The UDP socket may hold more datagrams (edge-triggered readiness).
    udp_readable: bool,
    /// The listener may hold more connections than one turn accepts
    /// (edge-triggered readiness).
    accept_more: bool,
    beacon_readable: bool,
    /// The discovery overlay (`None` when turned off).
    overlay: Option<overlay::OverlayDriver>,
    /// The Mainline DHT (`None` when off, and in a private network).
    dht: Option<dht::DhtDriver>,
    config: EngineConfig,
    listen_addr: SocketAddr,
    /// Our address as the DHT's voters see it (BEP 42): our own address
    /// for BEP 40 priorities, and one never to dial.
    external_ip: Option<IpAddr>,
    peer_id: [u8; 20],
    conns: Slab<Conn>,
    torrents: HashMap<u32, TorrentEntry>,
    by_hash: HashMap<InfoHash, u32>,
    next_tid: u32,
    pool: Pool,
    jobs_tx: Sender<JobDone>,
    jobs_rx: Receiver<JobDone>,
    wake_pending: Arc<std::sync::atomic::AtomicBool>,
    commands: Receiver<Command>,
    backlog: VecDeque<(Job, Priority)>,
    /// Network jobs waiting for room in the pool's network queue.
    net_backlog: VecDeque<Job>,
    jobs: HashMap<u64, Ctx>,
    next_tag: u64,
    /// Banned addresses (with expiry) and strikes towards a ban.
    bans: crate::net::bans::BanList,
    /// Protocol violations seen this turn: (address, what), counted as
    /// strikes by `apply_violations`.
    violations: Vec<(IpAddr, String)>,
    /// At the connection cap: connections wait in the listen backlog.
    accept_paused: bool,
    /// When a pause was last logged at info level (at most once a minute).
    accept_pause_said: Option<Instant>,
    /// The last accept failed (no file descriptor left, ...): `tick`
    /// tries again.
    accept_failed: bool,
    /// Connections whose send buffer is over `SLOW_READER_BYTES`, since when.
    send_over: HashMap<PeerKey, Instant>,
    /// Connections whose handshake was read this loop turn (bounded).
    handshake_reads: usize,
    down_bucket: TokenBucket,
    up_bucket: TokenBucket,
    deferred_reads: VecDeque<(u32, PeerKey, BlockRef)>,
    /// The caps derived from `memory_budget`.
    caps: MemoryCaps,
    /// Bytes of upload reads submitted and not yet back.
    upload_reading: u64,
    /// Bytes waiting in send buffers (recounted every loop turn, raised
    /// as blocks are queued).
    send_buffered: u64,
    /// Receive-buffer bytes of all connections beyond their base size.
    read_buffered: u64,
    started: Instant,
    next_tick: Instant,
    shutdown: Option<Shutdown>,
    clean_start: bool,
    outs: Vec<Out>,
    pending_writes: Vec<(PieceIdx, u32, Vec<u8>)>,
    /// Torrents added by magnet link whose metadata is not known yet.
    magnets: HashMap<u32, magnets::MagnetEntry>,
    /// Tracker announcers by torrent id (torrents, magnets, and removed
    /// torrents still sending `stopped`).
    trackers: HashMap<u32, trackers::TrackerSlot>,
    /// Counts for `GET /metrics` that outlive what they counted on.
    totals: metrics::Totals,
    /// Held by the jobs that write or remove a magnet's record and the
    /// .torrent replacing it, which would otherwise race on the workers.
    state_lock: Arc<std::sync::Mutex<()>>,
    /// Whether the state directory takes writes (shown on the node).
    state_health: StateDir,
    /// Removed torrents whose files are still to be deleted.
    removals: Vec<Removal>,
    next_removal: u64,
}

/// Connections accepted in one loop turn at most: a flood of connections
/// cannot hold the loop in `accept`.
const MAX_ACCEPTS_PER_TURN: usize = 64;
/// Bytes a single socket may deliver per loop turn (fairness).
const READ_BUDGET: usize = 1 << 20;
/// Jobs waiting for the pool beyond which sockets are not read.
const BACKLOG_LIMIT: usize = 64;
/// Runs `f` on a connection and applies the change in its grown receive
/// buffer to `total` (what the read buffers' share of the memory budget
/// counts).
fn count_read_buffer<R>(total: &mut u64, c: &mut Conn, f: impl FnOnce(&mut Conn) -> R) -> R {
    let before = c.read_buffer_extra() as u64;
    let r = f(c);
    *total = (*total + c.read_buffer_extra() as u64).saturating_sub(before);
    r
}

/// A run of contiguous blocks of one piece: (piece, first begin, next begin, blocks).
type WriteRun = (PieceIdx, u32, u32, Vec<Vec<u8>>);

/// Most blocks in one write job.
const MAX_WRITE_BLOCKS: usize = 64;
/// Most blocks read for one peer in one job.
const MAX_READ_RUN: usize = 16;

impl Engine {
    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        log::info!(
            "listening on {} as {}",
            self.listen_addr,
            String::from_utf8_lossy(&self.peer_id)
        );
        loop {
            let now = Instant::now();
            let timeout = if self.udp_readable
                || self.beacon_readable
                || self.accept_more
                || self.has_pending_reads(now)
            {
                Duration::ZERO
            } else {
                self.next_wakeup(now).saturating_duration_since(now)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("poll failed: {e}");
                    return;
                }
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(now),
                    UDP => self.udp_readable = true,
                    BEACON => self.beacon_readable = true,
                    WAKER => {}
                    Token(t) => {
                        let Some(key) = self.conns.key_at(t - FIRST_CONN) else {
                            continue;
                        };
                        if let Some(c) = self.conns.get_mut(key) {
                            if event.is_readable() || event.is_read_closed() || event.is_error() {
                                c.readable = true;
                            }
                            if event.is_writable() {
                                c.writable = true;
                            }
                        }
                        self.on_ready(key, now);
                    }
                }
            }
            self.drain_commands(now);
            self.drain_jobs(now);
            if std::mem::take(&mut self.accept_more) {
                self.accept(now);
            }
            if std::mem::take(&mut self.udp_readable) {
                self.on_udp_readable(now);
            }
            if std::mem::take(&mut self.beacon_readable) {
                self.on_beacon_readable(now);
            }
            self.read_pending(now);
            self.handshake_reads = 0;
            self.submit_backlog();
            self.process_deferred_reads(now);
            if now >= self.next_tick {
                self.next_tick = now + Duration::from_secs(1);
                self.tick(now);
            }
            self.flush_all(now);
            self.apply_violations(now);
            self.close_marked(now);
            self.resume_accepting(now);
            if self.shutdown_step(now) {
                break;
            }
        }
        self.pool_shutdown();
    }

    fn pool_shutdown(self) {
        let Engine { pool, .. } = self;
        pool.shutdown();
    }

    // ----- jobs -----

    fn submit(&mut self, job_of: impl FnOnce(u64) -> Job, ctx: Ctx, priority: Priority) {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.jobs.insert(tag, ctx);
        let job = job_of(tag);
        if !self.backlog.is_empty() {
            self.backlog.push_back((job, priority));
            return;
        }
        if let Err(job) = self.pool.try_submit(job, priority, &self.jobs_tx) {
            self.backlog.push_back((job, priority));
        }
    }

    fn run_job(&mut self, ctx: Ctx, work: impl FnOnce() -> RunResult + Send + 'static) {
        self.submit(
            |tag| Job::Run {
                tag,
                work: Box::new(work),
            },
            ctx,
            Priority::Live,
        );
    }

    /// A blocking network call (name resolution, an HTTP tracker request)
    /// on the pool's network threads, never on the disk workers. Waits in
    /// its own backlog when that queue is full, so it never holds up disk jobs.
    fn run_net_job(&mut self, ctx: Ctx, work: impl FnOnce() -> RunResult + Send + 'static) {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.jobs.insert(tag, ctx);
        let job = Job::Run {
            tag,
            work: Box::new(work),
        };
        if !self.net_backlog.is_empty() {
            self.net_backlog.push_back(job);
        } else if let Err(job) = self.pool.try_submit(job, Priority::Network, &self.jobs_tx) {
            self.net_backlog.push_back(job);
        }
    }

    fn submit_backlog(&mut self) {
        while let Some(job) = self.net_backlog.pop_front() {
            if let Err(job) = self.pool.try_submit(job, Priority::Network, &self.jobs_tx) {
                self.net_backlog.push_front(job);
                break;
            }
        }
        while let Some((job, priority)) = self.backlog.pop_front() {
            if let Err(job) = self.pool.try_submit(job, priority, &self.jobs_tx) {
                self.backlog.push_front((job, priority));
                break;
            }
        }
    }

    fn drain_jobs(&mut self, now: Instant) {
        self.wake_pending
            .store(false, std::sync::atomic::Ordering::Release);
        while let Ok(done) = self.jobs_rx.try_recv() {
            let Some(ctx) = self.jobs.remove(&done.tag()) else {
                continue;
            };
            self.on_job(ctx, done, now);
        }
        if !self.removals.is_empty() {
            self.pump_removals(now);
        }
    }

    fn on_job(&mut self, ctx: Ctx, done: JobDone, now: Instant) {
        match (ctx, done) {
            (Ctx::Read { tid, peer, blocks }, JobDone::Read { result, .. }) => {
                self.on_read(tid, peer, blocks, result, now)
            }
            (Ctx::Write { tid, piece, blocks }, JobDone::Written { result, .. }) => {
                let Some(t) = self.torrents.get_mut(&tid) else {
                    return;
                };
                t.writes_in_flight = t.writes_in_flight.saturating_sub(1);
                let ok = result.is_ok();
                if let Some(s) = t.swarm.as_mut() {
                    for (begin, len) in blocks {
                        s.on_written(piece, begin, len, ok, now);
                    }
                }
                if let Err(e) = result {
                    self.disk_error(tid, &e, now);
                }
                self.apply_swarm(tid, now);
            }
            (Ctx::Hash { tid }, JobDone::Hashed { piece, result, .. }) => {
                let Some(t) = self.torrents.get_mut(&tid) else {
                    return;
                };
                let expected = t.meta.piece_hash(piece);
                let Some(s) = t.swarm.as_mut() else { return };
                match result {
                    Ok(d) => s.on_hashed(piece, d == expected, now),
                    Err(e) => {
                        s.on_hash_io_error(piece, now);
                        self.disk_error(tid, &e, now);
                    }
                }
                self.apply_swarm(tid, now);
            }
            (Ctx::HashBlocks { tid }, JobDone::BlockHashes { piece, result, .. }) => {
                let Some(s) = self.torrents.get_mut(&tid).and_then(|t| t.swarm.as_mut()) else {
                    return;
                };
                match result {
                    Ok(digests) => s.on_block_hashes(piece, digests, now),
                    Err(_) => s.on_block_hashes_failed(piece, now),
                }
                self.apply_swarm(tid, now);
            }
            (Ctx::Check { tid }, JobDone::Hashed { piece, result, .. }) => {
                self.on_check_result(tid, piece, result, now)
            }
            (Ctx::Sync { tid }, JobDone::Synced { result, .. }) => {
                let Some(t) = self.torrents.get_mut(&tid) else {
                    return;
                };
                match result {
                    Ok(()) => {
                        t.checkpoint.sync_succeeded();
                        self.save_resume(tid);
                    }
                    Err(e) => {
                        // Not durable, and a later sync may succeed with
                        // the data gone: what was written is read back
                        // before it may be synced again, with downloading
                        // paused and the error shown (a failing SD card
                        // says so here first).
                        t.checkpoint.sync_failed();
                        log::warn!("{}: cannot make data durable: {e}", t.meta.name);
                        if let Some(s) = t.swarm.as_mut() {
                            s.forget_unverified_writes(now);
                        }
                        self.disk_error(tid, &e, now);
                        self.reverify(tid, now);
                        self.apply_swarm(tid, now);
                    }
                }
            }
            (Ctx::Reverify { tid }, JobDone::Reverified { piece, result, .. }) => {
                self.on_reverified(tid, piece, result, now)
            }
            (
                Ctx::Save { tid },
                JobDone::Ran {
                    result: RunResult::Io(result),
                    ..
                },
            ) => {
                let Some(t) = self.torrents.get_mut(&tid) else {
                    return;
                };
                t.checkpoint.record_finished(result.is_ok());
                self.state_written(Some(tid), StateWrite::Record, result, now);
            }
            (
                Ctx::Journal { tid, pieces },
                JobDone::Ran {
                    result: RunResult::Io(result),
                    ..
                },
            ) => {
                if result.is_err() {
                    if let Some(t) = self.torrents.get_mut(&tid) {
                        t.checkpoint.journal_failed(pieces);
                    }
                }
                self.state_written(Some(tid), StateWrite::Journal, result, now);
            }
            (
                Ctx::ClearSuspect { tid },
                JobDone::Ran {
                    result: RunResult::Io(result),
                    ..
                },
            ) => {
                self.state_written(Some(tid), StateWrite::Record, result, now);
                self.pump_check(tid);
            }
            (
                Ctx::SavePeers { tid },
                JobDone::Ran {
                    result: RunResult::Io(result),
                    ..
                },
            ) => self.on_peers_saved(tid, result, now),
            (
                Ctx::Probe { tid },
                JobDone::Ran {
                    result: RunResult::Files(files),
                    ..
                },
            ) => match files {
                Ok(files) => self.on_probe(tid, files, now),
                Err(e) => self.on_probe_refused(tid, &e, now),
            },
            (
                Ctx::Resolve { tid, source },
                JobDone::Ran {
                    result: RunResult::Addrs(addrs),
                    ..
                },
            ) => {
                for addr in addrs {
                    self.add_known_peer(tid, addr, source, now);
                }
                self.connect_peers(tid, now);
            }
            (
                Ctx::TrackerResolve { tid, tracker },
                JobDone::Ran {
                    result: RunResult::Addrs(addrs),
                    ..
                },
            ) => self.on_tracker_resolved(tid, tracker, addrs, now),
            (
                Ctx::TrackerHttp { tid, tracker },
                JobDone::Ran {
                    result: RunResult::Http(r),
                    ..
                },
            ) => self.on_tracker_http(tid, tracker, r, now),
            (
                Ctx::Bootstrap,
                JobDone::Ran {
                    result: RunResult::Addrs(addrs),
                    ..
                },
            ) => self.on_bootstrap_resolved(addrs, now),
            (
                Ctx::SaveNodes,
                JobDone::Ran {
                    result: RunResult::Io(r),
                    ..
                },
            ) => {
                self.on_nodes_saved(r.is_ok());
                self.state_written(None, StateWrite::Nodes, r, now);
            }
            (
                Ctx::DhtBootstrap,
                JobDone::Ran {
                    result: RunResult::Addrs(addrs),
                    ..
                },
            ) => self.on_dht_routers_resolved(addrs, now),
            (
                Ctx::SaveDhtNodes,
                JobDone::Ran {
                    result: RunResult::Io(r),
                    ..
                },
            ) => {
                self.on_dht_nodes_saved(r.is_ok());
                self.state_written(None, StateWrite::Nodes, r, now);
            }
            (Ctx::Remove { id }, JobDone::Ran { result, .. }) => {
                let result = match result {
                    RunResult::Io(r) => r,
                    _ => Err(io::Error::other("the job gave no result")),
                };
                self.on_removed(id, result);
            }
            (
                Ctx::CleanMarker,
                JobDone::Ran {
                    result: RunResult::Io(r),
                    ..
                },
            ) => {
                if let Err(e) = r {
                    log::warn!("clean marker: {e}");
                }
            }
            (
                Ctx::Chore(what),
                JobDone::Ran {
                    result: RunResult::Io(r),
                    ..
                },
            ) => match what.state_write() {
                Some(file) => self.state_written(None, file, r, now),
                None => {
                    if let Err(e) = r {
                        log::warn!("{what}: {e}");
                    }
                }
            },
            _ => log::error!("a job result did not match its context"),
        }
    }

    /// A state file was written, or not: the state directory's health,
    /// the torrent's error, and a log line (rate-limited per problem).
    fn state_written(
        &mut self,
        tid: Option<u32>,
        what: StateWrite,
        result: io::Result<()>,
        now: Instant,
    ) {
        match result {
            Ok(()) => {
                if let Some(line) = self.state_health.succeeded() {
                    log::info!("{line}");
                    for t in self.torrents.values_mut() {
                        t.state_error = None;
                    }
                }
            }
            Err(e) => {
                if let Some(line) = self.state_health.failed(what, &e, now) {
                    log::warn!("{line}");
                }
                if let Some(t) = tid.and_then(|tid| self.torrents.get_mut(&tid)) {
                    t.state_error =
                        Some(format!("its state cannot be saved ({what}: {e}); retrying"));
                }
            }
        }
    }

    /// Carries out what a swarm asked for.
    fn apply_swarm(&mut self, tid: u32, now: Instant) {
        let mut outs = std::mem::take(&mut self.outs);
        while let Some(s) = self.torrents.get_mut(&tid).and_then(|t| t.swarm.as_mut()) {
            outs.extend(s.drain());
            if outs.is_empty() {
                break;
            }
            for out in outs.drain(..) {
                self.apply_out(tid, out, now);
            }
        }
        self.submit_writes(tid);
        self.outs = outs;
    }

    /// Bans `ip` (1 h, doubling for a repeat offender up to 24 h; see
    /// `net::bans`) and drops its connections.
    fn ban(&mut self, ip: IpAddr, reason: String) {
        let Some(len) = self.bans.ban(ip, reason.clone(), Instant::now()) else {
            return;
        };
        log::warn!("banned {ip}: {reason} (for {} min)", len.as_secs() / 60);
        self.totals.bans += 1;
        for c in self.conns.values_mut() {
            if c.addr.ip() == ip {
                c.close(format!("banned: {reason}"));
            }
        }
    }

    /// The Noise link for a new connection, in a private network.
    fn new_link(&self, initiator: bool) -> io::Result<Option<Box<crate::private::SecureLink>>> {
        match &self.config.private {
            None => Ok(None),
            Some(p) => Ok(Some(Box::new(p.link(initiator)?))),
        }
    }

    fn apply_out(&mut self, tid: u32, out: Out, now: Instant) {
        match out {
            Out::Send(key, msg) => {
                if let Some(c) = self.conns.get_mut(key) {
                    c.queue(&msg);
                }
            }
            Out::SendBitfield(key, bytes) => {
                if let Some(c) = self.conns.get_mut(key) {
                    c.queue(&Message::Bitfield(&bytes));
                }
            }
            Out::Read { peer, block } => self.deferred_reads.push_back((tid, peer, block)),
            Out::Write { piece, begin, data } => self.pending_writes.push((piece, begin, data)),
            Out::Hash(piece) | Out::HashBlocks(piece) => {
                let Some(t) = self.torrents.get(&tid) else {
                    return;
                };
                let torrent = t.disk.clone();
                if matches!(out, Out::Hash(_)) {
                    self.submit(
                        |tag| Job::HashPiece {
                            tag,
                            torrent,
                            piece,
                        },
                        Ctx::Hash { tid },
                        Priority::Live,
                    );
                } else {
                    self.submit(
                        |tag| Job::HashBlocks {
                            tag,
                            torrent,
                            piece,
                        },
                        Ctx::HashBlocks { tid },
                        Priority::Live,
                    );
                }
            }
            Out::Disconnect(key, reason) => {
                if reason == Disconnect::BothSeeds {
                    if let Some(t) = self.torrents.get_mut(&tid) {
                        t.known.mark_seed(key);
                    }
                }
                if let Some(c) = self.conns.get_mut(key) {
                    if reason.is_violation() {
                        self.violations.push((c.addr.ip(), reason.to_string()));
                    }
                    c.close(reason.to_string());
                }
            }
            Out::Ban(ip, reason) => self.ban(ip, reason),
            Out::Verified(piece) => {
                let Some(t) = self.torrents.get_mut(&tid) else {
                    return;
                };
                t.checkpoint.verified(piece.get(), now);
            }
            Out::Complete => {
                if let Some(t) = self.torrents.get(&tid) {
                    log::info!("{}: download complete, seeding", t.meta.name);
                    // Empty files get no blocks: create them, and give every file its full length.
                    let disk = t.disk.clone();
                    let lengths: Vec<u64> = t.meta.files.iter().map(|f| f.length).collect();
                    self.run_job(Ctx::Chore(Chore::CompleteFiles), move || {
                        RunResult::Io(
                            lengths
                                .iter()
                                .enumerate()
                                .try_for_each(|(i, &len)| disk.storage.ensure_len(i, len)),
                        )
                    });
                }
                self.checkpoint(tid, now, true);
                self.announce_completed(tid, now);
            }
        }
    }

    /// Submits the blocks received in this batch, contiguous runs of one
    /// piece merged into one job (fewer jobs, wake-ups and syscalls; and the
    /// worker hashes in-order runs as it writes them).
    fn submit_writes(&mut self, tid: u32) {
        if self.pending_writes.is_empty() {
            return;
        }
        let mut writes = std::mem::take(&mut self.pending_writes);
        writes.sort_by_key(|(piece, begin, _)| (*piece, *begin));
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        let disk = t.disk.clone();
        let lengths = t.meta.lengths;
        // (piece, first begin, next begin, blocks)
        let mut jobs: Vec<WriteRun> = Vec::new();
        for (piece, begin, data) in writes {
            match jobs.last_mut() {
                Some((p, _, next, blocks))
                    if *p == piece && *next == begin && blocks.len() < MAX_WRITE_BLOCKS =>
                {
                    *next += data.len() as u32;
                    blocks.push(data);
                }
                _ => jobs.push((piece, begin, begin + data.len() as u32, vec![data])),
            }
        }
        t.writes_in_flight += jobs.len() as u32;
        for (piece, begin, _, blocks) in jobs {
            let offset = lengths.piece_offset(piece) + u64::from(begin);
            let mut at = begin;
            let spans = blocks
                .iter()
                .map(|b| {
                    let span = (at, b.len() as u32);
                    at += b.len() as u32;
                    span
                })
                .collect();
            let d = disk.clone();
            self.submit(
                |tag| Job::WriteBlocks {
                    tag,
                    torrent: d,
                    offset,
                    blocks,
                },
                Ctx::Write {
                    tid,
                    piece,
                    blocks: spans,
                },
                Priority::Live,
            );
        }
    }

    // ----- timers -----

    fn tick(&mut self, now: Instant) {
        self.pump_removals(now);
        self.tick_announcers(now);
        self.tick_magnets(now);
        self.tick_pex(now);
        self.tick_overlay(now);
        self.tick_dht(now);
        self.tick_defences(now);
        self.rebalance_downloads();
        self.fit_peer_lists();
        if self.accept_failed {
            self.accept(now);
        }
        // Connection timeouts and keep-alives.
        let (connect_t, handshake_t, incoming_t, idle_t, keepalive) = (
            self.config.connect_timeout,
            self.config.handshake_timeout,
            self.config.incoming_handshake_timeout,
            self.config.idle_timeout,
            self.config.keepalive_interval,
        );
        for c in self.conns.values_mut() {
            let idle = now.duration_since(c.last_recv) > Duration::from_secs(5);
            count_read_buffer(&mut self.read_buffered, c, |c| c.trim(idle));
            match c.state {
                ConnState::Connecting if now.duration_since(c.created) > connect_t => {
                    c.close("connect timed out")
                }
                ConnState::Handshake
                    if now.duration_since(c.created)
                        > if c.outgoing { handshake_t } else { incoming_t } =>
                {
                    if !c.outgoing {
                        // Connected and silent: a strike (half-open floods).
                        self.violations
                            .push((c.addr.ip(), "handshake timed out".to_string()));
                    }
                    c.close("handshake timed out")
                }
                ConnState::Active if now.duration_since(c.last_recv) > idle_t => c.close("idle"),
                ConnState::Active
                    if now.duration_since(c.last_send) > keepalive && c.pending_out() == 0 =>
                {
                    c.queue(&Message::KeepAlive);
                }
                _ => {}
            }
        }
        // A different torrent goes first each second: whoever goes first
        // gets the free connection slots.
        let mut tids: Vec<u32> = self.torrents.keys().copied().collect();
        tids.sort_unstable();
        if !tids.is_empty() {
            let first = (now.duration_since(self.started).as_secs() as usize) % tids.len();
            tids.rotate_left(first);
        }
        for tid in tids {
            let Some(t) = self.torrents.get_mut(&tid) else {
                continue;
            };
            // Disk errors: retry after a while.
            if t.retry_at.is_some_and(|r| now >= r) && !t.paused {
                t.retry_at = None;
                if t.phase == Phase::Stopped {
                    t.error = None;
                    self.probe(tid);
                    continue;
                }
                log::info!("{}: retrying after the disk error", t.meta.name);
                t.error = None;
                if let Some(s) = t.swarm.as_mut() {
                    s.set_download_enabled(true, now);
                }
            }
            if let Some(s) = t.swarm.as_mut() {
                s.tick(now);
            }
            self.apply_swarm(tid, now);
            self.checkpoint(tid, now, false);
            self.flush_journal(tid);
            self.retry_peers(tid, now);
            self.turn_over(tid, now);
            self.connect_peers(tid, now);
        }
    }

    // ----- shutdown -----

    fn begin_shutdown(&mut self, reply: Option<api::Reply<()>>, now: Instant) {
        log::info!("shutting down: saving state");
        self.shutdown = Some(Shutdown {
            replies: reply.into_iter().collect(),
            deadline: now + Duration::from_secs(10),
            saving: false,
            marking: false,
            done: false,
        });
        for c in self.conns.values_mut() {
            c.close("shutting down");
        }
        self.stop_announcers(now);
        let tids: Vec<u32> = self.torrents.keys().copied().collect();
        for tid in tids {
            if let Some(s) = self.torrents.get_mut(&tid).and_then(|t| t.swarm.as_mut()) {
                s.set_download_enabled(false, now);
            }
        }
    }

    /// Advances an orderly shutdown; true when the loop may end.
    fn shutdown_step(&mut self, now: Instant) -> bool {
        let Some(sd) = self.shutdown.as_ref() else {
            return false;
        };
        if sd.done {
            return true;
        }
        let timed_out = now >= sd.deadline;
        let writes_pending = self.torrents.values().any(|t| t.writes_in_flight > 0);
        if !sd.saving && !writes_pending {
            let tids: Vec<u32> = self.torrents.keys().copied().collect();
            for tid in tids {
                self.flush_journal(tid);
                self.checkpoint(tid, now, true);
                self.save_resume(tid);
            }
            self.save_nodes();
            self.save_dht_nodes();
            if let Some(sd) = self.shutdown.as_mut() {
                sd.saving = true;
            }
            return false;
        }
        let Some(sd) = self.shutdown.as_ref() else {
            return false;
        };
        if sd.saving && !sd.marking {
            let busy = self.torrents.values().any(|t| {
                t.checkpoint.in_flight()
                    || (t.checkpoint.record_dirty() && t.phase == Phase::Running)
            });
            if busy {
                // Saves that became dirty after a sync finished.
                let tids: Vec<u32> = self.torrents.keys().copied().collect();
                for tid in tids {
                    self.save_resume(tid);
                }
            }
            if !busy && !timed_out && self.removals.is_empty() {
                let clean = self.config.state_dir.join(crate::state::CLEAN_MARKER);
                let journals: Vec<PathBuf> = self
                    .torrents
                    .values()
                    .map(|t| self.config.state_file(t.meta.info_hash, "journal"))
                    .collect();
                self.run_job(Ctx::CleanMarker, move || {
                    RunResult::Io(
                        storage::remove_files(&journals)
                            .and_then(|()| storage::write_atomic(&clean, b"clean\n", 0o600)),
                    )
                });
                if let Some(sd) = self.shutdown.as_mut() {
                    sd.marking = true;
                }
                return false;
            }
        }
        let marking_done = self.shutdown.as_ref().is_some_and(|s| s.marking)
            && !self
                .jobs
                .values()
                .any(|c| matches!(c, Ctx::CleanMarker | Ctx::SaveNodes | Ctx::SaveDhtNodes));
        if (marking_done && self.announcers_stopped()) || timed_out {
            if timed_out {
                log::warn!("shutdown: state could not be saved in time");
            }
            if let Some(sd) = self.shutdown.as_mut() {
                for r in sd.replies.drain(..) {
                    let _ = r.send(Ok(()));
                }
                sd.done = true;
            }
            log::info!("stopped");
            return true;
        }
        false
    }
}
