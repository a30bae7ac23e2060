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

use super::conn::{Conn, ConnState};
use super::slab::{index_of, Slab};
use crate::control::api::{
    self, AddResult, AddSource, ApiError, Command, EngineHandle, FileStatus, NodeStatus,
    PeerStatus, TorrentDetail, TorrentState, TorrentStatus,
};
use crate::hash::Digest;
use crate::metainfo::{InfoHash, PieceIdx, Torrent};
use crate::resume::{self, Resume};
use crate::storage::{self, FileStorage, Storage};
use crate::swarm::rate::TokenBucket;
use crate::swarm::{Bitfield, Out, PeerKey, Swarm, SwarmConfig};
use crate::wire::peer::{BlockRef, Handshake, Message, HANDSHAKE_LEN};
use crate::workers::{DiskTorrent, Job, JobDone, Pool, PoolConfig, Priority};
use crossbeam_channel::{bounded, Receiver, Sender};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;

/// Opens the storage of a torrent whose data lives under `dir`.
pub type StorageFactory =
    Arc<dyn Fn(&Torrent, &Path) -> io::Result<Arc<dyn Storage>> + Send + Sync>;

/// The default: files under `dir/<name>` with an LRU of open handles.
pub fn file_storage_factory(max_open_files: usize) -> StorageFactory {
    Arc::new(move |t: &Torrent, dir: &Path| {
        let relative = (0..t.files.len()).map(|i| t.relative_path(i)).collect();
        Ok(Arc::new(FileStorage::new(
            dir.to_path_buf(),
            relative,
            max_open_files,
        )?) as Arc<dyn Storage>)
    })
}

/// Everything the engine needs to run.
#[derive(Clone)]
pub struct EngineConfig {
    pub listen: SocketAddr,
    pub download_dir: PathBuf,
    /// Holds `torrents/` (metainfo, resume, journal) and the `clean` marker.
    pub state_dir: PathBuf,
    pub max_connections: usize,
    pub max_connections_per_torrent: usize,
    pub max_half_open: usize,
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    /// Close a connection that sent nothing for this long.
    pub idle_timeout: Duration,
    /// Send a keep-alive after this long without sending.
    pub keepalive_interval: Duration,
    pub swarm: SwarmConfig,
    /// Bound on bytes of blocks in flight (requested, received, being
    /// written, read for upload), shared by all torrents.
    pub memory_budget: u64,
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
}

impl EngineConfig {
    pub fn new(listen: SocketAddr, download_dir: PathBuf, state_dir: PathBuf) -> EngineConfig {
        EngineConfig {
            listen,
            download_dir,
            state_dir,
            max_connections: 100,
            max_connections_per_torrent: 40,
            max_half_open: 8,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            keepalive_interval: Duration::from_secs(60),
            swarm: SwarmConfig::default(),
            memory_budget: 16 << 20,
            download_rate_limit: 0,
            upload_rate_limit: 0,
            checkpoint_bytes: 32 << 20,
            checkpoint_interval: Duration::from_secs(30),
            disk_retry: Duration::from_secs(30),
            workers: PoolConfig::default().threads,
            recheck_rate: 0,
            storage_factory: file_storage_factory(storage::DEFAULT_MAX_OPEN_FILES),
        }
    }
}

/// A torrent found in the state directory at start.
pub struct LoadedTorrent {
    pub torrent_bytes: Vec<u8>,
    pub resume: Option<Resume>,
    pub journal: Vec<u32>,
}

/// What the daemon read from the state directory before starting the engine.
pub struct Startup {
    pub torrents: Vec<LoadedTorrent>,
    /// The last stop was orderly (the `clean` marker was there).
    pub clean: bool,
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
        },
        Some(Arc::new(move || {
            if !pending_for_pool.swap(true, std::sync::atomic::Ordering::AcqRel) {
                let _ = wake_for_pool.wake();
            }
        })),
    );
    let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded();
    let down_bucket = TokenBucket::new(config.download_rate_limit);
    let up_bucket = TokenBucket::new(config.upload_rate_limit);
    let mut engine = Engine {
        poll,
        listener,
        config,
        listen_addr,
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
        jobs: HashMap::new(),
        next_tag: 1,
        bans: HashMap::new(),
        down_bucket,
        up_bucket,
        deferred_reads: VecDeque::new(),
        started: Instant::now(),
        next_tick: Instant::now(),
        shutdown: None,
        clean_start: startup.clean,
        outs: Vec::new(),
        pending_writes: Vec::new(),
    };
    for t in startup.torrents {
        engine.load(t);
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
    use std::hash::{BuildHasher, Hasher};
    let mut id = *b"-PL0100-000000000000";
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    let mut r = h.finish();
    for b in id[8..].iter_mut() {
        *b = b"0123456789abcdefghijklmnopqrstuvwxyz"[(r % 36) as usize];
        r /= 36;
        if r == 0 {
            let mut h2 = std::collections::hash_map::RandomState::new().build_hasher();
            h2.write_u64(r);
            r = h2.finish();
        }
    }
    id
}

/// A peer address we may connect to.
struct KnownPeer {
    addr: SocketAddr,
    source: &'static str,
    fails: u32,
    next_try: Instant,
    conn: Option<PeerKey>,
    /// It had every piece when we last saw it.
    seed: bool,
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
}

struct TorrentEntry {
    id: u32,
    meta: Arc<Torrent>,
    disk: Arc<DiskTorrent>,
    dir: PathBuf,
    phase: Phase,
    paused: bool,
    error: Option<String>,
    retry_at: Option<Instant>,
    swarm: Option<Swarm>,
    /// Pieces taken from the resume file (trusted unless the probe disagrees).
    resume_have: Bitfield,
    resume_sizes: Vec<u64>,
    resume_mtimes: Vec<i64>,
    /// This torrent's own rate limits (0: none), on top of the global ones.
    down_limit: TokenBucket,
    up_limit: TokenBucket,
    journal: Vec<u32>,
    check: Option<Check>,
    known: Vec<KnownPeer>,
    manual_peers: Vec<String>,
    durable: Bitfield,
    unsynced: Vec<u32>,
    unsynced_bytes: u64,
    first_unsynced: Option<Instant>,
    sync_in_flight: bool,
    save_dirty: bool,
    save_in_flight: bool,
    journal_pending: Vec<u32>,
    pieces_resumed: u32,
    /// Write jobs not yet finished (shutdown waits for them).
    writes_in_flight: u32,
}

impl TorrentEntry {
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
            dir: self.dir.clone(),
            pieces: self.durable.as_bytes().to_vec(),
            peers: self.manual_peers.clone(),
            paused: self.paused,
            file_sizes: self.resume_sizes.clone(),
            file_mtimes: self.resume_mtimes.clone(),
            download_limit: self.down_limit.rate(),
            upload_limit: self.up_limit.rate(),
        }
    }
}

/// Why a job was submitted, keyed by its tag.
enum Ctx {
    Read {
        tid: u32,
        peer: PeerKey,
        block: BlockRef,
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
    Sync {
        tid: u32,
        pieces: Vec<u32>,
    },
    Probe {
        tid: u32,
    },
    Save {
        tid: u32,
    },
    Resolve {
        tid: u32,
        source: &'static str,
    },
    Other(&'static str),
}

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
    config: EngineConfig,
    listen_addr: SocketAddr,
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
    jobs: HashMap<u64, Ctx>,
    next_tag: u64,
    bans: HashMap<IpAddr, String>,
    down_bucket: TokenBucket,
    up_bucket: TokenBucket,
    deferred_reads: VecDeque<(u32, PeerKey, BlockRef)>,
    started: Instant,
    next_tick: Instant,
    shutdown: Option<Shutdown>,
    clean_start: bool,
    outs: Vec<Out>,
    pending_writes: Vec<(PieceIdx, u32, Vec<u8>)>,
}

/// Bytes a single socket may deliver per loop turn (fairness).
const READ_BUDGET: usize = 1 << 20;
/// Jobs waiting for the pool beyond which sockets are not read.
const BACKLOG_LIMIT: usize = 64;
/// Output bytes buffered for one peer beyond which its uploads wait.
const SEND_WATERMARK: usize = 512 * 1024;
/// A run of contiguous blocks of one piece: (piece, first begin, next begin, blocks).
type WriteRun = (PieceIdx, u32, u32, Vec<Vec<u8>>);

/// Most blocks in one write job.
const MAX_WRITE_BLOCKS: usize = 64;

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
            let timeout = if self.has_pending_reads(now) {
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
            self.read_pending(now);
            self.submit_backlog();
            self.process_deferred_reads(now);
            if now >= self.next_tick {
                self.next_tick = now + Duration::from_secs(1);
                self.tick(now);
            }
            self.flush_all(now);
            self.close_marked(now);
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

    fn run_job(&mut self, ctx: Ctx, work: impl FnOnce() -> Box<dyn Any + Send> + Send + 'static) {
        self.submit(
            |tag| Job::Run {
                tag,
                work: Box::new(work),
            },
            ctx,
            Priority::Live,
        );
    }

    fn submit_backlog(&mut self) {
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
        loop {
            let done = match self.jobs_rx.try_recv() {
                Ok(d) => d,
                Err(_) => break,
            };
            let Some(ctx) = self.jobs.remove(&done.tag()) else {
                continue;
            };
            self.on_job(ctx, done, now);
        }
    }

    fn on_job(&mut self, ctx: Ctx, done: JobDone, now: Instant) {
        match (ctx, done) {
            (Ctx::Read { tid, peer, block }, JobDone::Read { result, .. }) => {
                self.on_read(tid, peer, block, result, now)
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
            (Ctx::Sync { tid, pieces }, JobDone::Synced { result, .. }) => {
                let Some(t) = self.torrents.get_mut(&tid) else {
                    return;
                };
                t.sync_in_flight = false;
                match result {
                    Ok(()) => {
                        for p in pieces {
                            t.durable.set(p);
                        }
                        t.save_dirty = true;
                        self.save_resume(tid);
                    }
                    Err(e) => {
                        // Not durable: try again at the next checkpoint.
                        t.unsynced.extend(pieces);
                        log::warn!("{}: cannot make data durable: {e}", t.meta.name);
                    }
                }
            }
            (Ctx::Save { tid }, JobDone::Ran { result, .. }) => {
                let Some(t) = self.torrents.get_mut(&tid) else {
                    return;
                };
                t.save_in_flight = false;
                if let Ok(r) = result.downcast::<io::Result<()>>() {
                    if let Err(e) = *r {
                        log::warn!("{}: cannot save resume state: {e}", t.meta.name);
                        t.save_dirty = true;
                    }
                }
            }
            (Ctx::Probe { tid }, JobDone::Ran { result, .. }) => {
                if let Ok(files) = result.downcast::<Vec<(Option<u64>, Option<i64>)>>() {
                    self.on_probe(tid, *files, now);
                }
            }
            (Ctx::Resolve { tid, source }, JobDone::Ran { result, .. }) => {
                if let Ok(addrs) = result.downcast::<Vec<SocketAddr>>() {
                    for addr in *addrs {
                        self.add_known_peer(tid, addr, source, now);
                    }
                    self.connect_peers(tid, now);
                }
            }
            (Ctx::Other(what), JobDone::Ran { result, .. }) => {
                if let Ok(r) = result.downcast::<io::Result<()>>() {
                    if let Err(e) = *r {
                        log::warn!("{what}: {e}");
                    }
                }
            }
            _ => log::error!("a job result did not match its context"),
        }
    }

    /// A write or read of piece data failed: stop downloading this torrent
    /// (keep seeding what is verified) and retry later.
    fn disk_error(&mut self, tid: u32, e: &io::Error, now: Instant) {
        let retry = self.config.disk_retry;
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        let what = match e.raw_os_error() {
            Some(libc::ENOSPC) => "the disk is full",
            Some(libc::EACCES) | Some(libc::EPERM) => "permission denied",
            Some(libc::EROFS) => "the file system is read-only",
            Some(libc::ENOENT) => "the download directory is gone (is the drive mounted?)",
            _ => "disk error",
        };
        let msg = format!(
            "{what}: {e} (downloading paused; retrying in {}s)",
            retry.as_secs()
        );
        if t.error.as_deref() != Some(msg.as_str()) {
            log::error!("{}: {msg}", t.meta.name);
        }
        t.error = Some(msg);
        t.retry_at = Some(now + retry);
        if let Some(s) = t.swarm.as_mut() {
            s.set_download_enabled(false, now);
        }
    }

    // ----- torrents: loading, probing, checking -----

    fn new_entry(&mut self, meta: Torrent, dir: PathBuf) -> Result<u32, String> {
        let storage = (self.config.storage_factory)(&meta, &dir)
            .map_err(|e| format!("cannot open storage: {e}"))?;
        let n = meta.lengths.n_pieces();
        let disk = Arc::new(DiskTorrent::new(
            storage,
            meta.file_map.clone(),
            meta.lengths,
        ));
        let tid = self.next_tid;
        self.next_tid += 1;
        self.by_hash.insert(meta.info_hash, tid);
        self.torrents.insert(
            tid,
            TorrentEntry {
                id: tid,
                meta: Arc::new(meta),
                disk,
                dir,
                phase: Phase::Probing,
                paused: false,
                error: None,
                retry_at: None,
                swarm: None,
                resume_have: Bitfield::new(n),
                resume_sizes: Vec::new(),
                resume_mtimes: Vec::new(),
                down_limit: TokenBucket::new(0),
                up_limit: TokenBucket::new(0),
                journal: Vec::new(),
                check: None,
                known: Vec::new(),
                manual_peers: Vec::new(),
                durable: Bitfield::new(n),
                unsynced: Vec::new(),
                unsynced_bytes: 0,
                first_unsynced: None,
                sync_in_flight: false,
                save_dirty: false,
                save_in_flight: false,
                journal_pending: Vec::new(),
                pieces_resumed: 0,
                writes_in_flight: 0,
            },
        );
        Ok(tid)
    }

    fn load(&mut self, loaded: LoadedTorrent) {
        let meta = match Torrent::from_bytes(&loaded.torrent_bytes) {
            Ok(m) => m,
            Err(e) => return log::error!("a torrent in the state directory does not load: {e}"),
        };
        let resume = loaded.resume.filter(|r| r.info_hash == meta.info_hash);
        let dir = resume
            .as_ref()
            .map(|r| r.dir.clone())
            .unwrap_or_else(|| self.config.download_dir.clone());
        let name = meta.name.clone();
        let tid = match self.new_entry(meta, dir) {
            Ok(tid) => tid,
            Err(e) => return log::error!("{name}: {e}"),
        };
        let now = Instant::now();
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        if let Some(r) = resume {
            if let Some(bits) = Bitfield::from_bytes(&r.pieces, t.meta.lengths.n_pieces()) {
                t.resume_have = bits;
            }
            t.resume_sizes = r.file_sizes;
            t.resume_mtimes = r.file_mtimes;
            t.down_limit.set_rate(r.download_limit);
            t.up_limit.set_rate(r.upload_limit);
            t.paused = r.paused;
            t.manual_peers = r.peers;
        }
        if !self.clean_start {
            t.journal = loaded.journal;
        }
        let peers = t.manual_peers.clone();
        for p in peers {
            self.resolve_peer(tid, p, "manual", now);
        }
        self.probe(tid);
    }

    /// Reads file sizes on a worker to decide what to recheck.
    fn probe(&mut self, tid: u32) {
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        t.phase = Phase::Probing;
        let disk = t.disk.clone();
        self.run_job(Ctx::Probe { tid }, move || {
            let files: Vec<(Option<u64>, Option<i64>)> = (0..disk.storage.n_files())
                .map(|i| {
                    (
                        disk.storage.file_len(i).ok().flatten(),
                        disk.storage.file_mtime(i).ok().flatten(),
                    )
                })
                .collect();
            Box::new(files)
        });
    }

    fn on_probe(&mut self, tid: u32, files: Vec<(Option<u64>, Option<i64>)>, now: Instant) {
        let clean = self.clean_start;
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        let sizes: Vec<Option<u64>> = files.iter().map(|(s, _)| *s).collect();
        let meta = t.meta.clone();
        let lengths = meta.lengths;
        let mut have = t.resume_have.clone();
        let any_file = sizes.iter().any(|s| s.is_some());
        if have.count() > 0 && !any_file {
            let msg = format!(
                "no data found at {} although {} pieces were verified before (is the drive mounted?); not downloading again",
                t.dir.join(&meta.name).display(),
                have.count()
            );
            log::error!("{}: {msg}", meta.name);
            t.error = Some(msg);
            t.phase = Phase::Stopped;
            t.retry_at = Some(now + self.config.disk_retry);
            return;
        }
        let mut to_check: Vec<u32> = Vec::new();
        // Files that are missing, shorter than the data we had, shorter than
        // when the resume record was written, or (after a clean stop, when
        // nothing of ours wrote to them since) modified: recheck their pieces.
        for (i, size) in sizes.iter().enumerate() {
            let recorded = t.resume_sizes.get(i).copied().unwrap_or(0);
            let recorded_mtime = t.resume_mtimes.get(i).copied().unwrap_or(0);
            let touched =
                clean && recorded_mtime != 0 && files[i].1.is_some_and(|m| m != recorded_mtime);
            let suspect = match size {
                None => meta.files[i].length > 0,
                Some(s) => *s < recorded || (touched && *s > 0),
            };
            if suspect && t.resume_have.count() > 0 {
                log::warn!(
                    "{}: {} changed while peerlet was stopped; rechecking it",
                    meta.name,
                    meta.relative_path(i).join("/")
                );
            }
            if suspect {
                for p in meta.file_map.pieces_of_file(&lengths, i) {
                    if have.clear(p) {
                        to_check.push(p);
                    }
                }
            }
        }
        if t.resume_have.count() == 0 && t.resume_sizes.is_empty() && any_file {
            // A new torrent with data already there: check every piece whose files exist.
            for p in lengths.pieces() {
                let start = lengths.piece_offset(p);
                let exists = meta
                    .file_map
                    .slices(start, u64::from(lengths.piece_size(p)))
                    .all(|s| sizes[s.file_idx].is_some_and(|len| len >= s.offset + s.len));
                if exists {
                    to_check.push(p.get());
                }
            }
        }
        // After an unclean stop, pieces verified since the last checkpoint are re-hashed.
        for &p in &t.journal {
            if lengths.piece(p).is_some() && !have.get(p) && !to_check.contains(&p) {
                to_check.push(p);
            }
        }
        t.journal.clear();
        t.resume_have = have;
        to_check.sort_unstable();
        to_check.dedup();
        if to_check.is_empty() {
            self.start_swarm(tid, Vec::new(), now);
        } else {
            log::info!("{}: checking {} pieces on disk", meta.name, to_check.len());
            t.phase = Phase::Checking;
            t.check = Some(Check {
                pieces: to_check,
                next: 0,
                in_flight: 0,
                good: Vec::new(),
            });
            self.pump_check(tid);
        }
    }

    fn pump_check(&mut self, tid: u32) {
        let window = (self.config.workers * 2).max(2);
        loop {
            let Some(t) = self.torrents.get_mut(&tid) else {
                return;
            };
            let Some(c) = t.check.as_mut() else { return };
            if c.in_flight >= window || c.next >= c.pieces.len() {
                return;
            }
            let p = c.pieces[c.next];
            c.next += 1;
            c.in_flight += 1;
            let Some(piece) = t.meta.lengths.piece(p) else {
                continue;
            };
            let disk = t.disk.clone();
            self.submit(
                |tag| Job::HashPiece {
                    tag,
                    torrent: disk,
                    piece,
                },
                Ctx::Check { tid },
                Priority::Background,
            );
        }
    }

    fn on_check_result(
        &mut self,
        tid: u32,
        piece: PieceIdx,
        result: io::Result<Digest>,
        now: Instant,
    ) {
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        let expected = t.meta.piece_hash(piece);
        let Some(c) = t.check.as_mut() else { return };
        c.in_flight -= 1;
        if result.is_ok_and(|d| d == expected) {
            c.good.push(piece.get());
        }
        if c.in_flight == 0 && c.next >= c.pieces.len() {
            let good = std::mem::take(&mut c.good);
            t.check = None;
            self.start_swarm(tid, good, now);
        } else {
            self.pump_check(tid);
        }
    }

    /// Starts transfers: `have` = trusted resume pieces + `found` by recheck.
    fn start_swarm(&mut self, tid: u32, found: Vec<u32>, now: Instant) {
        let n_torrents = self.torrents.len().max(1) as u64;
        let budget = self.config.memory_budget;
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        let mut have = t.resume_have.clone();
        t.durable = t.resume_have.clone();
        for &p in &found {
            if have.set(p) {
                // Found on disk but not recorded as durable: record at the next checkpoint.
                t.unsynced.push(p);
                t.unsynced_bytes += u64::from(
                    t.meta.lengths.piece_size(PieceIdx::clone(
                        &t.meta
                            .lengths
                            .piece(p)
                            .unwrap_or(t.meta.lengths.last_piece()),
                    )),
                );
                t.first_unsynced.get_or_insert(now);
            }
        }
        t.pieces_resumed = have.count();
        let mut config = self.config.swarm.clone();
        config.max_in_flight_bytes = (budget / 2 / n_torrents).max(32 * 1024);
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(tid);
            h.finish()
        };
        let mut swarm = Swarm::new(config, t.meta.lengths, have, seed);
        if t.paused || t.error.is_some() {
            swarm.set_download_enabled(false, now);
        }
        if swarm.is_complete() {
            swarm.set_download_enabled(false, now);
        }
        log::info!(
            "{}: {} of {} pieces verified, {}",
            t.meta.name,
            swarm.have().count(),
            t.meta.lengths.n_pieces(),
            if swarm.is_complete() {
                "seeding"
            } else {
                "downloading"
            }
        );
        t.swarm = Some(swarm);
        t.phase = Phase::Running;
        t.save_dirty = true;
        self.save_resume(tid);
        self.connect_peers(tid, now);
    }

    // ----- peers -----

    fn add_known_peer(&mut self, tid: u32, addr: SocketAddr, source: &'static str, now: Instant) {
        if addr == self.listen_addr || addr.port() == 0 {
            return;
        }
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        if let Some(k) = t.known.iter_mut().find(|k| k.addr == addr) {
            k.next_try = now;
            k.fails = 0;
            return;
        }
        if t.known.len() >= 500 {
            return;
        }
        t.known.push(KnownPeer {
            addr,
            source,
            fails: 0,
            next_try: now,
            conn: None,
            seed: false,
        });
    }

    /// Adds `host:port` (resolved on a worker when it is a name).
    fn resolve_peer(&mut self, tid: u32, peer: String, source: &'static str, now: Instant) {
        if let Ok(addr) = peer.parse::<SocketAddr>() {
            self.add_known_peer(tid, addr, source, now);
            return;
        }
        self.run_job(Ctx::Resolve { tid, source }, move || {
            let addrs: Vec<SocketAddr> = peer
                .to_socket_addrs()
                .map(|a| a.take(8).collect())
                .unwrap_or_default();
            Box::new(addrs)
        });
    }

    fn connect_peers(&mut self, tid: u32, now: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        let half_open = self
            .conns
            .values()
            .filter(|c| c.state != ConnState::Active)
            .count();
        let mut budget_half = self.config.max_half_open.saturating_sub(half_open);
        let mut budget_total = self.config.max_connections.saturating_sub(self.conns.len());
        let per_torrent = self.config.max_connections_per_torrent;
        let Some(t) = self.torrents.get(&tid) else {
            return;
        };
        if t.paused || t.phase != Phase::Running {
            return;
        }
        let complete = t.swarm.as_ref().is_some_and(|s| s.is_complete());
        let mut n_conns = t.known.iter().filter(|k| k.conn.is_some()).count()
            + self
                .conns
                .values()
                .filter(|c| c.torrent == Some(tid) && !c.outgoing)
                .count();
        let candidates: Vec<(usize, SocketAddr)> = t
            .known
            .iter()
            .enumerate()
            .filter(|(_, k)| {
                k.conn.is_none()
                    && k.next_try <= now
                    && !(complete && k.seed)
                    && !self.bans.contains_key(&k.addr.ip())
            })
            .map(|(i, k)| (i, k.addr))
            .collect();
        let info_hash = t.meta.info_hash.0;
        for (i, addr) in candidates {
            if budget_half == 0 || budget_total == 0 || n_conns >= per_torrent {
                break;
            }
            // Already connected to this address (it dialled us)?
            if self
                .conns
                .values()
                .any(|c| c.torrent == Some(tid) && c.addr == addr)
            {
                continue;
            }
            match self.open_outgoing(addr, tid, info_hash, now) {
                Ok(key) => {
                    if let Some(k) = self.torrents.get_mut(&tid).and_then(|t| t.known.get_mut(i)) {
                        k.conn = Some(key);
                        if let Some(c) = self.conns.get_mut(key) {
                            c.source = k.source;
                        }
                    }
                    budget_half -= 1;
                    budget_total -= 1;
                    n_conns += 1;
                }
                Err(e) => {
                    log::debug!("connect to {addr}: {e}");
                    self.peer_failed(tid, addr, now);
                }
            }
        }
    }

    fn open_outgoing(
        &mut self,
        addr: SocketAddr,
        tid: u32,
        info_hash: [u8; 20],
        now: Instant,
    ) -> io::Result<PeerKey> {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        socket.set_tcp_nodelay(true)?;
        // Dial from our listening address when it is a specific one, so the
        // peer sees the address we serve on.
        let local = self.listen_addr.ip();
        if !local.is_unspecified() && local.is_ipv4() == addr.is_ipv4() {
            socket.bind(&SocketAddr::new(local, 0).into())?;
        }
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e)
                if e.raw_os_error() == Some(libc::EINPROGRESS)
                    || e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        let std_stream: std::net::TcpStream = socket.into();
        let mut sock = TcpStream::from_std(std_stream);
        let key = self.conns.next_key();
        self.poll.registry().register(
            &mut sock,
            Token(index_of(key) + FIRST_CONN),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let mut c = Conn::new(key, sock, addr, true, now);
        c.torrent = Some(tid);
        c.queue_handshake(&Handshake::ours(info_hash, self.peer_id));
        let inserted = self.conns.insert_with(|_| c);
        debug_assert_eq!(inserted, key);
        Ok(key)
    }

    fn peer_failed(&mut self, tid: u32, addr: SocketAddr, now: Instant) {
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        if let Some(k) = t.known.iter_mut().find(|k| k.addr == addr) {
            k.conn = None;
            k.fails += 1;
            let backoff = Duration::from_secs(2u64.saturating_pow(k.fails.min(8)))
                .min(Duration::from_secs(120));
            k.next_try = now + backoff;
        }
    }

    fn accept(&mut self, now: Instant) {
        loop {
            match self.listener.accept() {
                Ok((mut sock, addr)) => {
                    if self.shutdown.is_some()
                        || self.conns.len() >= self.config.max_connections
                        || self.bans.contains_key(&addr.ip())
                    {
                        continue;
                    }
                    let _ = sock.set_nodelay(true);
                    let key = self.conns.next_key();
                    let token = Token(index_of(key) + FIRST_CONN);
                    if self
                        .poll
                        .registry()
                        .register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
                        .is_err()
                    {
                        continue;
                    }
                    let mut c = Conn::new(key, sock, addr, false, now);
                    c.readable = true;
                    self.conns.insert_with(|_| c);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("accept: {e}");
                    return;
                }
            }
        }
    }

    // ----- connections -----

    fn on_ready(&mut self, key: PeerKey, now: Instant) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.state == ConnState::Connecting && c.writable {
            match c.sock.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return c.close(format!("connect failed: {e}")),
            }
            match c.sock.peer_addr() {
                Ok(_) => c.state = ConnState::Handshake,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return c.close(format!("connect failed: {e}")),
            }
        }
        if c.writable && c.pending_out() > 0 {
            if let Err(e) = c.flush(now) {
                c.close(format!("write: {e}"));
                return;
            }
            self.after_flush(key);
        }
        if self.conns.get(key).is_some_and(|c| c.readable) && !self.reads_blocked() {
            self.read_conn(key, now);
        }
    }

    /// When the loop must run again without any socket event: the next
    /// tick, or the moment a rate limit lets waiting work go on.
    fn next_wakeup(&mut self, now: Instant) -> Instant {
        let soon = now + Duration::from_millis(1);
        let mut at = self.next_tick.min(now + Duration::from_millis(250));
        let mut deferred_tids: Vec<u32> =
            self.deferred_reads.iter().map(|(tid, _, _)| *tid).collect();
        deferred_tids.sort_unstable();
        deferred_tids.dedup();
        for tid in deferred_tids {
            let mut ready = self
                .up_bucket
                .ready_at(u64::from(crate::metainfo::BLOCK_SIZE), now);
            if let Some(t) = self.torrents.get_mut(&tid) {
                ready = ready.max(
                    t.up_limit
                        .ready_at(u64::from(crate::metainfo::BLOCK_SIZE), now),
                );
            }
            at = at.min(ready.max(soon));
        }
        if self.backlog.len() <= BACKLOG_LIMIT {
            for key in self.readable_keys() {
                let tid = self.conns.get(key).and_then(|c| c.torrent);
                let mut ready = self.down_bucket.ready_at(1, now);
                if let Some(t) = tid.and_then(|tid| self.torrents.get_mut(&tid)) {
                    ready = ready.max(t.down_limit.ready_at(1, now));
                }
                at = at.min(ready.max(soon));
            }
        }
        at
    }

    /// Connections with unread data that may be read (connected, not closing).
    fn readable_keys(&self) -> Vec<PeerKey> {
        self.conns
            .values()
            .filter(|c| c.readable && c.state != ConnState::Connecting && c.closing.is_none())
            .map(|c| c.key)
            .collect()
    }

    /// Bytes `key` may read now under the global and its torrent's download limits.
    fn read_allowance(&mut self, key: PeerKey, now: Instant) -> u64 {
        let global = self.down_bucket.available(now);
        let tid = self.conns.get(key).and_then(|c| c.torrent);
        let torrent = tid
            .and_then(|tid| self.torrents.get_mut(&tid))
            .map_or(u64::MAX, |t| t.down_limit.available(now));
        global.min(torrent)
    }

    fn reads_blocked(&self) -> bool {
        self.backlog.len() > BACKLOG_LIMIT
    }

    fn has_pending_reads(&mut self, now: Instant) -> bool {
        if self.reads_blocked() {
            return false;
        }
        let keys = self.readable_keys();
        keys.into_iter().any(|k| self.read_allowance(k, now) > 0)
    }

    fn read_pending(&mut self, now: Instant) {
        for key in self.readable_keys() {
            if self.reads_blocked() {
                break;
            }
            self.read_conn(key, now);
        }
    }

    fn read_conn(&mut self, key: PeerKey, now: Instant) {
        let mut budget = READ_BUDGET;
        loop {
            let limit = self.read_allowance(key, now).min(budget as u64) as usize;
            let Some(c) = self.conns.get_mut(key) else {
                return;
            };
            if c.closing.is_some() || !c.readable || c.state == ConnState::Connecting || limit == 0
            {
                return;
            }
            let n = match c.read_some(limit) {
                Ok(n) => n,
                Err(e) => {
                    c.close(if e.kind() == io::ErrorKind::UnexpectedEof {
                        "closed by peer".to_string()
                    } else {
                        format!("read: {e}")
                    });
                    return;
                }
            };
            if n > 0 {
                c.last_recv = now;
                let tid = c.torrent;
                self.down_bucket.take(n as u64, now);
                if let Some(t) = tid.and_then(|tid| self.torrents.get_mut(&tid)) {
                    t.down_limit.take(n as u64, now);
                }
                budget = budget.saturating_sub(n);
            }
            self.process_input(key, now);
            let Some(c) = self.conns.get(key) else { return };
            if n == 0 || budget == 0 || c.closing.is_some() || self.backlog.len() > BACKLOG_LIMIT {
                return;
            }
        }
    }

    /// Parses what the connection received: the handshake, then messages.
    fn process_input(&mut self, key: PeerKey, now: Instant) {
        if self
            .conns
            .get(key)
            .is_some_and(|c| c.state == ConnState::Handshake)
        {
            self.process_handshake(key, now);
        }
        let Some(c) = self.conns.get(key) else { return };
        if c.state != ConnState::Active || c.closing.is_some() {
            return;
        }
        let Some(tid) = c.torrent else { return };
        loop {
            let Some(t) = self.torrents.get_mut(&tid) else {
                return;
            };
            let Some(swarm) = t.swarm.as_mut() else {
                return;
            };
            let Some(c) = self.conns.get_mut(key) else {
                return;
            };
            let bitfield_len = Some(swarm.lengths().bitfield_len());
            let parsed = match Message::parse(c.unparsed(), bitfield_len) {
                Ok(Some((msg, used))) => {
                    swarm.on_message(key, msg, now);
                    Some(used)
                }
                Ok(None) => None,
                Err(e) => {
                    c.close(format!("protocol error: {e}"));
                    None
                }
            };
            match parsed {
                Some(used) => c.consume(used),
                None => break,
            }
            if c.closing.is_some() {
                break;
            }
        }
        self.apply_swarm(tid, now);
    }

    fn process_handshake(&mut self, key: PeerKey, now: Instant) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let h = match Handshake::parse(c.unparsed()) {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(e) => return c.close(format!("handshake: {e}")),
        };
        c.consume(HANDSHAKE_LEN);
        let addr = c.addr;
        if h.peer_id == self.peer_id {
            return c.close("connected to ourselves");
        }
        let tid = match c.torrent {
            Some(tid) => {
                let ok = self
                    .torrents
                    .get(&tid)
                    .is_some_and(|t| t.meta.info_hash.0 == h.info_hash);
                if !ok {
                    return c.close("handshake for another torrent");
                }
                tid
            }
            None => {
                let found = self.by_hash.get(&InfoHash(h.info_hash)).copied();
                let usable = found
                    .and_then(|tid| self.torrents.get(&tid))
                    .filter(|t| !t.paused && t.phase == Phase::Running && t.swarm.is_some());
                let Some(t) = usable else {
                    return c.close("handshake for a torrent we do not serve");
                };
                let tid = t.id;
                let info_hash = t.meta.info_hash.0;
                let per_torrent = self.config.max_connections_per_torrent;
                let n = self
                    .conns
                    .values()
                    .filter(|x| x.torrent == Some(tid))
                    .count();
                let Some(c) = self.conns.get_mut(key) else {
                    return;
                };
                if n >= per_torrent {
                    return c.close("too many connections for this torrent");
                }
                c.torrent = Some(tid);
                c.queue_handshake(&Handshake::ours(info_hash, self.peer_id));
                tid
            }
        };
        let duplicate = self.conns.values().any(|x| {
            x.key != key
                && x.torrent == Some(tid)
                && x.state == ConnState::Active
                && x.peer_id == h.peer_id
        });
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if duplicate {
            return c.close("already connected to this peer");
        }
        c.peer_id = h.peer_id;
        c.fast = h.supports_fast();
        c.state = ConnState::Active;
        if h.supports_extensions() {
            // BEP 10: tell the peer how many requests we queue (reqq), so it
            // does not send more than we accept, plus our port and version.
            let mut d = crate::bencode::Value::dict();
            d.insert("m", crate::bencode::Value::dict());
            d.insert(
                "p",
                crate::bencode::Value::Int(i64::from(self.listen_addr.port())),
            );
            d.insert(
                "reqq",
                crate::bencode::Value::Int(self.config.swarm.max_upload_queue as i64),
            );
            d.insert(
                "v",
                crate::bencode::Value::str(concat!("peerlet ", env!("CARGO_PKG_VERSION"))),
            );
            c.queue(&Message::Extended {
                id: 0,
                payload: &d.to_bytes(),
            });
        }
        let fast = c.fast;
        log::debug!(
            "{addr}: connected ({})",
            String::from_utf8_lossy(&h.peer_id[..8])
        );
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        if let Some(k) = t.known.iter_mut().find(|k| k.conn == Some(key)) {
            k.fails = 0;
        }
        if let Some(s) = t.swarm.as_mut() {
            s.add_peer(key, addr, fast, now);
        }
        self.apply_swarm(tid, now);
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
                if reason == "both sides are seeds" {
                    if let Some(t) = self.torrents.get_mut(&tid) {
                        if let Some(k) = t.known.iter_mut().find(|k| k.conn == Some(key)) {
                            k.seed = true;
                        }
                    }
                }
                if let Some(c) = self.conns.get_mut(key) {
                    c.close(reason);
                }
            }
            Out::Ban(ip, reason) => {
                if self.bans.contains_key(&ip) {
                    return;
                }
                log::warn!("banned {ip}: {reason}");
                self.bans.insert(ip, reason.clone());
                for c in self.conns.values_mut() {
                    if c.addr.ip() == ip {
                        c.close(format!("banned: {reason}"));
                    }
                }
            }
            Out::Verified(piece) => {
                let Some(t) = self.torrents.get_mut(&tid) else {
                    return;
                };
                t.unsynced.push(piece.get());
                t.unsynced_bytes += u64::from(t.meta.lengths.piece_size(piece));
                t.first_unsynced.get_or_insert(now);
                t.journal_pending.push(piece.get());
            }
            Out::Complete => {
                if let Some(t) = self.torrents.get(&tid) {
                    log::info!("{}: download complete, seeding", t.meta.name);
                    // Empty files get no blocks: create them, and give every file its full length.
                    let disk = t.disk.clone();
                    let lengths: Vec<u64> = t.meta.files.iter().map(|f| f.length).collect();
                    self.run_job(Ctx::Other("completing files"), move || {
                        let res = lengths
                            .iter()
                            .enumerate()
                            .try_for_each(|(i, &len)| disk.storage.ensure_len(i, len));
                        Box::new(res)
                    });
                }
                self.checkpoint(tid, now, true);
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

    /// Upload reads wait here for the rate limit and the peer's send buffer.
    fn process_deferred_reads(&mut self, now: Instant) {
        let mut n = self.deferred_reads.len();
        while n > 0 {
            n -= 1;
            let Some((tid, peer, block)) = self.deferred_reads.pop_front() else {
                break;
            };
            let Some(c) = self.conns.get(peer) else {
                continue;
            };
            let len = u64::from(block.length);
            let torrent_allows = self
                .torrents
                .get_mut(&tid)
                .is_some_and(|t| t.up_limit.available(now) >= len);
            if c.pending_out() > SEND_WATERMARK
                || self.up_bucket.available(now) < len
                || !torrent_allows
            {
                self.deferred_reads.push_back((tid, peer, block));
                continue;
            }
            let Some(t) = self.torrents.get_mut(&tid) else {
                continue;
            };
            t.up_limit.take(len, now);
            let Some(piece) = t.meta.lengths.piece(block.index) else {
                continue;
            };
            let offset = t.meta.lengths.piece_offset(piece) + u64::from(block.begin);
            let disk = t.disk.clone();
            self.up_bucket.take(u64::from(block.length), now);
            self.submit(
                |tag| Job::Read {
                    tag,
                    torrent: disk,
                    offset,
                    len: block.length,
                },
                Ctx::Read { tid, peer, block },
                Priority::Live,
            );
        }
    }

    fn on_read(
        &mut self,
        tid: u32,
        peer: PeerKey,
        block: BlockRef,
        result: io::Result<Vec<u8>>,
        now: Instant,
    ) {
        let Some(s) = self.torrents.get_mut(&tid).and_then(|t| t.swarm.as_mut()) else {
            return;
        };
        let send = s.on_read_done(peer, block);
        match result {
            Ok(data) if send => {
                if let Some(c) = self.conns.get_mut(peer) {
                    Message::emit_piece_header(block.index, block.begin, data.len(), c.out());
                    c.out().extend_from_slice(&data);
                    s.on_piece_sent(peer, data.len() as u64, now);
                }
            }
            Ok(_) => {}
            Err(e) => {
                log::warn!("reading a block to upload: {e}");
                if let Some(c) = self.conns.get_mut(peer) {
                    c.close("cannot read the requested data");
                }
            }
        }
        s.pump_uploads(peer);
        self.apply_swarm(tid, now);
    }

    fn after_flush(&mut self, key: PeerKey) {
        let _ = key;
    }

    fn flush_all(&mut self, now: Instant) {
        for c in self.conns.values_mut() {
            if c.writable && c.pending_out() > 0 && c.closing.is_none() {
                if let Err(e) = c.flush(now) {
                    c.close(format!("write: {e}"));
                }
            }
        }
    }

    fn close_marked(&mut self, now: Instant) {
        let closing: Vec<PeerKey> = self
            .conns
            .values()
            .filter(|c| c.closing.is_some())
            .map(|c| c.key)
            .collect();
        for key in closing {
            let Some(mut c) = self.conns.remove(key) else {
                continue;
            };
            let _ = c.flush(now);
            let _ = self.poll.registry().deregister(&mut c.sock);
            let reason = c.closing.clone().unwrap_or_default();
            log::debug!("{}: closed: {reason}", c.addr);
            let Some(tid) = c.torrent else { continue };
            let was_active = c.state == ConnState::Active;
            if let Some(t) = self.torrents.get_mut(&tid) {
                if let Some(s) = t.swarm.as_mut() {
                    s.remove_peer(key);
                }
                if let Some(k) = t.known.iter_mut().find(|k| k.conn == Some(key)) {
                    k.conn = None;
                    if !was_active {
                        k.fails += 1;
                    }
                    let backoff = Duration::from_secs(2u64.saturating_pow(k.fails.min(8)))
                        .min(Duration::from_secs(120));
                    k.next_try = now + backoff.max(Duration::from_secs(1));
                }
            }
            self.apply_swarm(tid, now);
        }
    }

    // ----- timers -----

    fn tick(&mut self, now: Instant) {
        // Connection timeouts and keep-alives.
        let (connect_t, handshake_t, idle_t, keepalive) = (
            self.config.connect_timeout,
            self.config.handshake_timeout,
            self.config.idle_timeout,
            self.config.keepalive_interval,
        );
        for c in self.conns.values_mut() {
            if now.duration_since(c.last_recv) > Duration::from_secs(5) {
                c.trim();
            }
            match c.state {
                ConnState::Connecting if now.duration_since(c.created) > connect_t => {
                    c.close("connect timed out")
                }
                ConnState::Handshake if now.duration_since(c.created) > handshake_t => {
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
        let tids: Vec<u32> = self.torrents.keys().copied().collect();
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
            self.connect_peers(tid, now);
        }
    }

    /// Syncs verified data and records it, when enough has accumulated.
    fn checkpoint(&mut self, tid: u32, now: Instant, force: bool) {
        let (bytes, interval) = (
            self.config.checkpoint_bytes,
            self.config.checkpoint_interval,
        );
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        if t.sync_in_flight || t.unsynced.is_empty() {
            if t.save_dirty && !t.sync_in_flight {
                self.save_resume(tid);
            }
            return;
        }
        let due = force
            || t.unsynced_bytes >= bytes
            || t.first_unsynced
                .is_some_and(|f| now.duration_since(f) >= interval);
        if !due {
            return;
        }
        let pieces = std::mem::take(&mut t.unsynced);
        t.unsynced_bytes = 0;
        t.first_unsynced = None;
        t.sync_in_flight = true;
        let disk = t.disk.clone();
        self.submit(
            |tag| Job::Sync { tag, torrent: disk },
            Ctx::Sync { tid, pieces },
            Priority::Live,
        );
    }

    fn save_resume(&mut self, tid: u32) {
        let state_dir = self.config.state_dir.join("torrents");
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        if t.save_in_flight || !t.save_dirty || t.phase != Phase::Running {
            return;
        }
        t.save_dirty = false;
        t.save_in_flight = true;
        // Record current file sizes with the pieces (sizes only grow while we download).
        let disk = t.disk.clone();
        let mut record = t.resume_record();
        let path = state_dir.join(format!("{}.resume", t.meta.info_hash.to_hex()));
        self.run_job(Ctx::Save { tid }, move || {
            record.file_sizes = (0..disk.storage.n_files())
                .map(|i| disk.storage.file_len(i).ok().flatten().unwrap_or(0))
                .collect();
            record.file_mtimes = (0..disk.storage.n_files())
                .map(|i| disk.storage.file_mtime(i).ok().flatten().unwrap_or(0))
                .collect();
            Box::new(storage::write_atomic(&path, &record.encode(), 0o600))
        });
    }

    fn flush_journal(&mut self, tid: u32) {
        let state_dir = self.config.state_dir.join("torrents");
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        if t.journal_pending.is_empty() {
            return;
        }
        let bytes = resume::encode_journal(&std::mem::take(&mut t.journal_pending));
        let path = state_dir.join(format!("{}.journal", t.meta.info_hash.to_hex()));
        self.run_job(Ctx::Other("journal"), move || {
            Box::new(storage::append_file(&path, &bytes))
        });
    }

    // ----- control commands -----

    fn drain_commands(&mut self, now: Instant) {
        while let Ok(cmd) = self.commands.try_recv() {
            self.on_command(cmd, now);
        }
        // Journal appends batch per loop turn.
        let tids: Vec<u32> = self
            .torrents
            .iter()
            .filter(|(_, t)| !t.journal_pending.is_empty())
            .map(|(k, _)| *k)
            .collect();
        for tid in tids {
            self.flush_journal(tid);
        }
    }

    fn on_command(&mut self, cmd: Command, now: Instant) {
        if self.shutdown.is_some() {
            if let Command::Shutdown { reply } = cmd {
                if let Some(s) = self.shutdown.as_mut() {
                    s.replies.push(reply);
                }
            }
            return;
        }
        match cmd {
            Command::Add {
                source,
                dir,
                peers,
                paused,
                reply,
            } => {
                let _ = reply.send(self.cmd_add(source, dir, peers, paused, now));
            }
            Command::List { reply } => {
                let mut list: Vec<TorrentStatus> = self
                    .torrents
                    .keys()
                    .copied()
                    .collect::<Vec<_>>()
                    .into_iter()
                    .filter_map(|tid| self.status(tid, now))
                    .collect();
                list.sort_by(|a, b| a.name.cmp(&b.name));
                let _ = reply.send(Ok(list));
            }
            Command::Status { info_hash, reply } => {
                let _ = reply.send(self.detail(info_hash, now));
            }
            Command::Remove {
                info_hash,
                delete_data,
                reply,
            } => {
                let _ = reply.send(self.cmd_remove(info_hash, delete_data));
            }
            Command::Pause { info_hash, reply } => {
                let _ = reply.send(self.cmd_pause(info_hash, true, now));
            }
            Command::Resume { info_hash, reply } => {
                let _ = reply.send(self.cmd_pause(info_hash, false, now));
            }
            Command::AddPeers {
                info_hash,
                peers,
                reply,
            } => {
                let res = match self.by_hash.get(&info_hash).copied() {
                    None => Err(ApiError::NotFound(format!("no torrent {info_hash}"))),
                    Some(tid) => self.add_manual_peers(tid, peers, now),
                };
                let _ = reply.send(res);
            }
            Command::SetLimits {
                info_hash,
                download,
                upload,
                reply,
            } => {
                let res = match self
                    .by_hash
                    .get(&info_hash)
                    .copied()
                    .and_then(|tid| self.torrents.get_mut(&tid))
                {
                    None => Err(ApiError::NotFound(format!("no torrent {info_hash}"))),
                    Some(t) => {
                        if let Some(d) = download {
                            t.down_limit.set_rate(d);
                        }
                        if let Some(u) = upload {
                            t.up_limit.set_rate(u);
                        }
                        t.save_dirty = true;
                        let tid = t.id;
                        self.save_resume(tid);
                        Ok(())
                    }
                };
                let _ = reply.send(res);
            }
            Command::Node { reply } => {
                let _ = reply.send(Ok(self.node_status(now)));
            }
            Command::Shutdown { reply } => self.begin_shutdown(Some(reply), now),
        }
    }

    fn add_manual_peers(
        &mut self,
        tid: u32,
        peers: Vec<String>,
        now: Instant,
    ) -> Result<(), ApiError> {
        for p in &peers {
            if p.rsplit_once(':')
                .is_none_or(|(h, port)| h.is_empty() || port.parse::<u16>().is_err())
            {
                return Err(ApiError::BadRequest(format!("peer '{p}' is not host:port")));
            }
        }
        for p in peers {
            if let Some(t) = self.torrents.get_mut(&tid) {
                if !t.manual_peers.contains(&p) && t.manual_peers.len() < 200 {
                    t.manual_peers.push(p.clone());
                    t.save_dirty = true;
                }
            }
            self.resolve_peer(tid, p, "manual", now);
        }
        self.connect_peers(tid, now);
        self.save_resume(tid);
        Ok(())
    }

    fn cmd_add(
        &mut self,
        source: AddSource,
        dir: Option<PathBuf>,
        peers: Vec<String>,
        paused: bool,
        now: Instant,
    ) -> Result<AddResult, ApiError> {
        let bytes = match source {
            AddSource::Torrent(b) => b,
            AddSource::Magnet(_) => {
                return Err(ApiError::BadRequest("magnet links need metadata exchange with peers, which this version cannot do yet; add the .torrent file".into()))
            }
        };
        let meta = Torrent::from_bytes(&bytes).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        if let Some(&tid) = self.by_hash.get(&meta.info_hash) {
            let name = meta.name.clone();
            self.add_manual_peers(tid, peers, now)?;
            return Ok(AddResult {
                info_hash: meta.info_hash,
                name,
                added: false,
            });
        }
        let dir = dir.unwrap_or_else(|| self.config.download_dir.clone());
        if !dir.is_absolute() {
            return Err(ApiError::BadRequest(format!(
                "download directory '{}' must be an absolute path",
                dir.display()
            )));
        }
        let info_hash = meta.info_hash;
        let name = meta.name.clone();
        let tid = self.new_entry(meta, dir).map_err(ApiError::Internal)?;
        if let Some(t) = self.torrents.get_mut(&tid) {
            t.paused = paused;
        }
        log::info!("added {name} ({info_hash})");
        // Keep the metainfo in the state directory (written once).
        let path = self
            .config
            .state_dir
            .join("torrents")
            .join(format!("{}.torrent", info_hash.to_hex()));
        self.run_job(Ctx::Other("saving the torrent file"), move || {
            Box::new(storage::write_atomic(&path, &bytes, 0o600))
        });
        self.add_manual_peers(tid, peers, now)?;
        self.probe(tid);
        Ok(AddResult {
            info_hash,
            name,
            added: true,
        })
    }

    fn cmd_remove(&mut self, info_hash: InfoHash, delete_data: bool) -> Result<(), ApiError> {
        let tid = self
            .by_hash
            .remove(&info_hash)
            .ok_or_else(|| ApiError::NotFound(format!("no torrent {info_hash}")))?;
        let Some(t) = self.torrents.remove(&tid) else {
            return Ok(());
        };
        for c in self.conns.values_mut() {
            if c.torrent == Some(tid) {
                c.close("torrent removed");
            }
        }
        let state = self.config.state_dir.join("torrents");
        let hex = info_hash.to_hex();
        let files: Vec<PathBuf> = ["torrent", "resume", "journal"]
            .iter()
            .map(|ext| state.join(format!("{hex}.{ext}")))
            .collect();
        let data: Option<(PathBuf, Vec<Vec<String>>)> = delete_data.then(|| {
            (
                t.dir.clone(),
                (0..t.meta.files.len())
                    .map(|i| t.meta.relative_path(i))
                    .collect(),
            )
        });
        log::info!(
            "removed {} ({info_hash}){}",
            t.meta.name,
            if delete_data { " and its data" } else { "" }
        );
        self.run_job(Ctx::Other("removing a torrent"), move || {
            let mut res = storage::remove_files(&files);
            if let Some((dir, relative)) = data {
                res = res.and(storage::remove_torrent_data(&dir, &relative));
            }
            Box::new(res)
        });
        Ok(())
    }

    fn cmd_pause(
        &mut self,
        info_hash: InfoHash,
        pause: bool,
        now: Instant,
    ) -> Result<(), ApiError> {
        let tid = *self
            .by_hash
            .get(&info_hash)
            .ok_or_else(|| ApiError::NotFound(format!("no torrent {info_hash}")))?;
        let Some(t) = self.torrents.get_mut(&tid) else {
            return Ok(());
        };
        // Resuming a torrent stopped by an error retries at once, paused or not.
        if t.paused == pause && (pause || t.error.is_none()) {
            return Ok(());
        }
        t.paused = pause;
        t.save_dirty = true;
        if pause {
            if let Some(s) = t.swarm.as_mut() {
                s.set_download_enabled(false, now);
            }
            for c in self.conns.values_mut() {
                if c.torrent == Some(tid) {
                    c.close("torrent paused");
                }
            }
        } else {
            t.error = None;
            t.retry_at = None;
            for k in t.known.iter_mut() {
                k.next_try = now;
                k.fails = 0;
            }
            match t.phase {
                Phase::Stopped => self.probe(tid),
                Phase::Running => {
                    if let Some(s) = t.swarm.as_mut() {
                        s.set_download_enabled(true, now);
                    }
                }
                _ => {}
            }
        }
        self.apply_swarm(tid, now);
        self.save_resume(tid);
        self.connect_peers(tid, now);
        Ok(())
    }

    fn status(&mut self, tid: u32, now: Instant) -> Option<TorrentStatus> {
        let t = self.torrents.get_mut(&tid)?;
        let state = t.api_state();
        let (have_bytes, pieces_have, down, up, stats, peers) = match t.swarm.as_mut() {
            Some(s) => (
                s.have_bytes(),
                s.have().count(),
                s.down.per_second(now),
                s.up.per_second(now),
                s.stats.clone(),
                s.n_peers() as u32,
            ),
            None => (0, 0, 0, 0, Default::default(), 0),
        };
        let error = t.error.clone();
        Some(TorrentStatus {
            info_hash: t.meta.info_hash,
            name: t.meta.name.clone(),
            state,
            error,
            dir: t.dir.clone(),
            total_size: t.meta.total_length(),
            have_bytes,
            pieces: t.meta.lengths.n_pieces(),
            pieces_have,
            download_rate: down,
            upload_rate: up,
            downloaded: stats.downloaded,
            uploaded: stats.uploaded,
            peers,
            hash_failures: stats.hash_failures,
            pieces_downloaded: stats.pieces_downloaded,
            pieces_resumed: t.pieces_resumed,
            download_limit: t.down_limit.rate(),
            upload_limit: t.up_limit.rate(),
        })
    }

    fn detail(&mut self, info_hash: InfoHash, now: Instant) -> Result<TorrentDetail, ApiError> {
        let tid = *self
            .by_hash
            .get(&info_hash)
            .ok_or_else(|| ApiError::NotFound(format!("no torrent {info_hash}")))?;
        let status = self
            .status(tid, now)
            .ok_or_else(|| ApiError::NotFound(format!("no torrent {info_hash}")))?;
        let conns = &self.conns;
        let Some(t) = self.torrents.get_mut(&tid) else {
            return Err(ApiError::NotFound(info_hash.to_string()));
        };
        let meta = t.meta.clone();
        let mut peers = Vec::new();
        let mut files = Vec::new();
        if let Some(s) = t.swarm.as_mut() {
            for p in s.peer_infos(now) {
                let c = conns.get(p.key);
                peers.push(PeerStatus {
                    addr: p.addr.to_string(),
                    source: c.map(|c| c.source).unwrap_or("incoming"),
                    client: c.map(|c| client_name(&c.peer_id)).unwrap_or_default(),
                    download_rate: p.download_rate,
                    upload_rate: p.upload_rate,
                    downloaded: p.downloaded,
                    uploaded: p.uploaded,
                    progress: p.progress,
                    flags: p.flags,
                });
            }
        }
        let have = t.swarm.as_ref().map(|s| s.have().clone());
        for i in 0..meta.files.len() {
            let mut have_bytes = 0;
            if let Some(have) = &have {
                let start = meta.file_map.file_offset(i);
                let end = start + meta.files[i].length;
                for p in meta.file_map.pieces_of_file(&meta.lengths, i) {
                    if have.get(p) {
                        let Some(pi) = meta.lengths.piece(p) else {
                            continue;
                        };
                        let ps = meta.lengths.piece_offset(pi);
                        let pe = ps + u64::from(meta.lengths.piece_size(pi));
                        have_bytes += pe.min(end) - ps.max(start);
                    }
                }
            }
            files.push(FileStatus {
                path: meta.relative_path(i).join("/"),
                size: meta.files[i].length,
                have_bytes,
            });
        }
        Ok(TorrentDetail {
            status,
            piece_length: meta.lengths.piece_length(),
            private: meta.private,
            magnet: meta.magnet().to_string(),
            peers,
            files,
        })
    }

    fn node_status(&mut self, now: Instant) -> NodeStatus {
        let mut down = 0;
        let mut up = 0;
        let mut in_flight = 0;
        let mut peers = 0;
        for t in self.torrents.values_mut() {
            if let Some(s) = t.swarm.as_mut() {
                down += s.down.per_second(now);
                up += s.up.per_second(now);
                in_flight += s.in_flight();
                peers += s.n_peers() as u32;
            }
        }
        in_flight += self
            .deferred_reads
            .iter()
            .map(|(_, _, b)| u64::from(b.length))
            .sum::<u64>();
        NodeStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            listen: self.listen_addr.to_string(),
            peer_id: String::from_utf8_lossy(&self.peer_id).into_owned(),
            torrents: self.torrents.len() as u32,
            peers,
            download_rate: down,
            upload_rate: up,
            bytes_in_flight: in_flight,
            memory_budget: self.config.memory_budget,
            uptime_secs: now.duration_since(self.started).as_secs(),
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
                t.sync_in_flight || t.save_in_flight || (t.save_dirty && t.phase == Phase::Running)
            });
            if busy {
                // Saves that became dirty after a sync finished.
                let tids: Vec<u32> = self.torrents.keys().copied().collect();
                for tid in tids {
                    self.save_resume(tid);
                }
            }
            if !busy && !timed_out {
                let state = self.config.state_dir.clone();
                let journals: Vec<PathBuf> = self
                    .torrents
                    .values()
                    .map(|t| {
                        state
                            .join("torrents")
                            .join(format!("{}.journal", t.meta.info_hash.to_hex()))
                    })
                    .collect();
                self.run_job(Ctx::Other("clean marker"), move || {
                    let res = storage::remove_files(&journals).and_then(|()| {
                        storage::write_atomic(&state.join("clean"), b"clean\n", 0o600)
                    });
                    Box::new(res)
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
                .any(|c| matches!(c, Ctx::Other("clean marker")));
        if marking_done || timed_out {
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

/// "-PL0100-..." → "PL 0100"; "-lt0D80-" → "lt 0D80"; otherwise hex.
fn client_name(peer_id: &[u8; 20]) -> String {
    if peer_id[0] == b'-'
        && peer_id[7] == b'-'
        && peer_id[1..7].iter().all(|b| b.is_ascii_alphanumeric())
    {
        let s = String::from_utf8_lossy(&peer_id[1..7]).into_owned();
        return format!("{} {}", &s[..2], &s[2..]);
    }
    if peer_id[0].is_ascii_alphabetic()
        && peer_id[1..]
            .iter()
            .take(5)
            .all(|b| b.is_ascii_digit() || *b == b'-')
    {
        return String::from_utf8_lossy(&peer_id[..6]).into_owned();
    }
    crate::hash::to_hex(&peer_id[..8])
}
