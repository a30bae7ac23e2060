//! `peerlet daemon`: configuration, the state directory, starting the
//! threads (net + workers, control), signals, and an orderly stop.
//!
//! Start-up reads the state directory on the main thread (before the net
//! thread exists, so blocking is fine): every `torrents/<hex>.torrent` with
//! its `.resume` record and `.journal`, and the `clean` marker, which is then
//! removed so that a crash from here on is recognised at the next start.

use crate::cli::CliError;
use crate::control::{self, api::Command, api::EngineHandle, server::ControlServer};
use crate::net::{self, EngineConfig, EngineThread, LoadedTorrent, Startup};
use crate::resume::{self, Resume};
use crate::storage;
use argh::FromArgs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default peer port.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:6881";
/// Default LAN beacon target: an organisation-local multicast group
/// (RFC 2365) and a port of its own.
pub const DEFAULT_LAN_BEACON: &str = "239.192.76.80:7442";
/// The node key in the state directory.
pub const NODE_KEY_FILE: &str = "node.key";
/// The saved overlay routing table in the state directory.
pub const NODES_FILE: &str = "nodes";

#[derive(FromArgs, Debug)]
/// Run the peerlet node (client and server at once) until SIGTERM, SIGINT or `peerlet stop`.
#[argh(subcommand, name = "daemon")]
pub struct DaemonArgs {
    /// address for peer connections (default 0.0.0.0:6881; port 0 picks a free one)
    #[argh(option)]
    pub listen: Option<SocketAddr>,
    /// where downloads go (default: $XDG_DATA_HOME/peerlet/downloads, ~/.local/share/peerlet/downloads, or ./peerlet-data/downloads)
    #[argh(option)]
    pub download_dir: Option<PathBuf>,
    /// where state goes: resume records, torrents (default: beside the downloads, in .../state)
    #[argh(option)]
    pub state_dir: Option<PathBuf>,
    /// address of the control API (default 127.0.0.1:7441)
    #[argh(option)]
    pub api: Option<SocketAddr>,
    /// configuration file (TOML; not read yet by this version)
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// download rate limit in bytes per second (0: none)
    #[argh(option, default = "0")]
    pub download_limit: u64,
    /// upload rate limit in bytes per second (0: none)
    #[argh(option, default = "0")]
    pub upload_limit: u64,
    /// worker threads for hashing and disk I/O (default: number of cores)
    #[argh(option)]
    pub workers: Option<usize>,
    /// seconds before a torrent stopped by a disk error is retried (default 30)
    #[argh(option, default = "30")]
    pub disk_retry: u64,
    /// make verified data durable and record it every this many MiB (default 32)
    #[argh(option, default = "32")]
    pub checkpoint_mib: u64,
    /// bound on bytes of blocks in flight (requested, being written, read for upload); K and M suffixes (default 8M)
    #[argh(option, from_str_fn(crate::cli::parse_size))]
    pub memory_limit: Option<u32>,
    /// an overlay node to contact at start, ADDR:PORT or HOST:PORT (repeatable)
    #[argh(option)]
    pub bootstrap: Vec<String>,
    /// no LAN beacons (sent and heard)
    #[argh(switch)]
    pub no_lan_discovery: bool,
    /// where LAN beacons go: a multicast group or broadcast address with a port (default 239.192.76.80:7442)
    #[argh(option)]
    pub lan_beacon: Option<SocketAddr>,
    /// seconds between LAN beacons (default 30)
    #[argh(option, default = "30")]
    pub beacon_interval: u64,
    /// no discovery overlay at all (no search, no beacons; trackers, PEX and --peer still work)
    #[argh(switch)]
    pub no_overlay: bool,
    /// overlay neighbours a search floods to (default 8)
    #[argh(option)]
    pub overlay_degree: Option<usize>,
    /// overlay routing-table size (default 256)
    #[argh(option)]
    pub routing_table: Option<usize>,
    /// TTL of this node's searches, 1 to 7 (default 4)
    #[argh(option)]
    pub search_ttl: Option<u8>,
}

/// The data directory when none is given.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("peerlet");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h).join(".local/share/peerlet");
    }
    PathBuf::from("peerlet-data")
}

/// Reads the state directory: torrents, resume records, journals, the clean marker.
pub fn load_state(state_dir: &Path) -> io::Result<Startup> {
    let torrents_dir = state_dir.join("torrents");
    storage::create_private_dir(&torrents_dir)?;
    let marker = state_dir.join("clean");
    let clean = storage::read_limited(&marker, 64).is_ok();
    storage::remove_files(&[marker])?;
    let mut torrents = Vec::new();
    let mut magnets = Vec::new();
    let mut names = storage::list_dir(&torrents_dir)?;
    names.sort();
    for name in &names {
        let Some(hex) = name.strip_suffix(".magnet") else {
            continue;
        };
        let path = torrents_dir.join(name);
        if names.contains(&format!("{hex}.torrent")) {
            // The metadata arrived and was saved just before a crash.
            storage::remove_files(&[path])?;
            continue;
        }
        match storage::read_limited(&path, resume::MAX_MAGNET_RECORD)
            .map_err(|e| e.to_string())
            .and_then(|b| resume::MagnetRecord::decode(&b))
        {
            Ok(m) => magnets.push(m),
            Err(e) => log::error!("skipping {name}: {e}"),
        }
    }
    for name in names {
        let Some(hex) = name.strip_suffix(".torrent") else {
            continue;
        };
        let torrent_bytes =
            match storage::read_limited(&torrents_dir.join(&name), crate::cli::MAX_TORRENT_FILE) {
                Ok(b) => b,
                Err(e) => {
                    log::error!("skipping {name}: {e}");
                    continue;
                }
            };
        let resume =
            match storage::read_limited(&torrents_dir.join(format!("{hex}.resume")), 16 << 20) {
                Ok(bytes) => match Resume::decode(&bytes) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        log::warn!("{hex}.resume is damaged ({e}); the data will be rechecked");
                        None
                    }
                },
                Err(_) => None,
            };
        let journal = storage::read_limited(&torrents_dir.join(format!("{hex}.journal")), 64 << 20)
            .map(|b| resume::decode_journal(&b))
            .unwrap_or_default();
        torrents.push(LoadedTorrent {
            torrent_bytes,
            resume,
            journal,
        });
    }
    let nodes = storage::read_limited(&state_dir.join(NODES_FILE), 64 << 10)
        .map(|b| crate::overlay::decode_saved(&b, net::MAX_SAVED_NODES))
        .unwrap_or_default();
    Ok(Startup {
        torrents,
        magnets,
        clean,
        nodes,
    })
}

/// Reads the node key from the state directory, or creates it (mode 0600)
/// on the first start. A damaged key is an error, never silently replaced:
/// the key is the node's identity.
pub fn load_node_key(state_dir: &Path) -> Result<crate::overlay::NodeKey, CliError> {
    let path = state_dir.join(NODE_KEY_FILE);
    match storage::read_limited(&path, 1024) {
        Ok(bytes) => {
            let secret: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                CliError(format!(
                    "{} is damaged ({} bytes, expected 32); move it away to create a new node identity",
                    path.display(),
                    bytes.len()
                ))
            })?;
            Ok(crate::overlay::NodeKey::from_secret(secret))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            storage::create_private_dir(state_dir)
                .map_err(|e| CliError(format!("cannot create {}: {e}", state_dir.display())))?;
            let key = crate::overlay::NodeKey::from_secret(net::random_bytes());
            storage::write_atomic(&path, key.secret_bytes(), 0o600)
                .map_err(|e| CliError(format!("cannot write {}: {e}", path.display())))?;
            log::info!("created a new node key in {}", path.display());
            Ok(key)
        }
        Err(e) => Err(CliError(format!("cannot read {}: {e}", path.display()))),
    }
}

/// A running daemon: the engine and the control server.
pub struct Daemon {
    engine: EngineThread,
    control: Option<ControlServer>,
}

impl Daemon {
    /// Reads the state directory and starts every thread. `api: None` runs
    /// without a control server (tests that drive the engine directly).
    pub fn start(config: EngineConfig, api: Option<SocketAddr>) -> io::Result<Daemon> {
        storage::create_private_dir(&config.download_dir)?;
        let startup = load_state(&config.state_dir)?;
        let has_work = !startup.torrents.is_empty() || !startup.magnets.is_empty();
        if !startup.clean && has_work {
            log::warn!("the last stop was not orderly: pieces verified since the last checkpoint will be re-hashed");
        }
        let engine = net::spawn(config, startup)?;
        let control = match api {
            Some(addr) => match control::server::spawn(addr, engine.handle.clone()) {
                Ok(c) => Some(c),
                Err(e) => {
                    let _ = engine
                        .handle
                        .call(Duration::from_secs(15), |reply| Command::Shutdown { reply });
                    engine.join();
                    return Err(e);
                }
            },
            None => None,
        };
        Ok(Daemon { engine, control })
    }

    pub fn handle(&self) -> &EngineHandle {
        &self.engine.handle
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.engine.listen_addr
    }

    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.control.as_ref().map(|c| c.local_addr())
    }

    /// Asks the engine to save state and stop, then waits for every thread.
    pub fn stop(self) {
        let _ = self
            .engine
            .handle
            .call(Duration::from_secs(15), |reply| Command::Shutdown { reply });
        self.wait();
    }

    /// Waits until the engine stops (by `peerlet stop` or a signal).
    pub fn wait(self) {
        self.engine.join();
        if let Some(c) = self.control {
            c.shutdown();
        }
    }
}

/// `peerlet daemon`.
pub fn run(a: DaemonArgs) -> Result<u8, CliError> {
    if let Some(c) = &a.config {
        log::warn!(
            "configuration files are not read yet by this version; ignoring {}",
            c.display()
        );
    }
    let data = default_data_dir();
    let download_dir = a
        .download_dir
        .clone()
        .unwrap_or_else(|| data.join("downloads"));
    let state_dir = a.state_dir.clone().unwrap_or_else(|| data.join("state"));
    let download_dir = absolute(&download_dir)?;
    let state_dir = absolute(&state_dir)?;
    let listen = a
        .listen
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
    let api = a
        .api
        .unwrap_or_else(|| control::DEFAULT_API_ADDR.parse().expect("valid default"));
    let mut config = EngineConfig::new(listen, download_dir.clone(), state_dir.clone());
    config.download_rate_limit = a.download_limit;
    config.upload_rate_limit = a.upload_limit;
    config.disk_retry = Duration::from_secs(a.disk_retry.max(1));
    config.checkpoint_bytes = a.checkpoint_mib.max(1) << 20;
    if let Some(m) = a.memory_limit {
        config.memory_budget = u64::from(m).max(64 * 1024);
    }
    if let Some(w) = a.workers.filter(|&w| w > 0) {
        config.workers = w;
    }
    config.overlay.enabled = !a.no_overlay;
    let overlay_flags = !a.bootstrap.is_empty()
        || a.lan_beacon.is_some()
        || a.overlay_degree.is_some()
        || a.routing_table.is_some()
        || a.search_ttl.is_some();
    if a.no_overlay && overlay_flags {
        return Err(CliError(
            "--no-overlay turns the discovery overlay off; drop it or the overlay options".into(),
        ));
    }
    if let Some(t) = a.lan_beacon {
        if !net::is_beacon_target(t.ip()) || t.port() == 0 {
            return Err(CliError(format!(
                "--lan-beacon {t}: give a multicast group or a broadcast address (ending in .255) with a port"
            )));
        }
    }
    if !(1..=86_400).contains(&a.beacon_interval) {
        return Err(CliError(format!(
            "--beacon-interval {}: give 1 to 86400 seconds",
            a.beacon_interval
        )));
    }
    config.overlay.key = load_node_key(&state_dir)?;
    for b in &a.bootstrap {
        let ok = match b.parse::<SocketAddr>() {
            Ok(addr) => {
                addr.port() != 0 && !addr.ip().is_unspecified() && !addr.ip().is_multicast()
            }
            // A host name: no ':' in it (an IPv6 address needs [brackets]).
            Err(_) => b.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && !host.contains(':') && port.parse::<u16>().is_ok_and(|p| p > 0)
            }),
        };
        if !ok {
            return Err(CliError(format!(
                "--bootstrap {b:?}: give IP:PORT, [IPv6]:PORT or HOST:PORT (a unicast address, port not 0)"
            )));
        }
    }
    config.overlay.bootstrap = a.bootstrap.clone();
    if !a.no_lan_discovery && !a.no_overlay {
        config.overlay.lan = Some(net::LanDiscovery {
            target: a
                .lan_beacon
                .unwrap_or_else(|| DEFAULT_LAN_BEACON.parse().expect("valid default")),
            interval: Duration::from_secs(a.beacon_interval),
        });
    }
    if let Some(d) = a.overlay_degree {
        if !(1..=64).contains(&d) {
            return Err(CliError(format!("--overlay-degree {d}: give 1 to 64")));
        }
        config.overlay.degree = d;
    }
    if let Some(n) = a.routing_table {
        if !(8..=65536).contains(&n) {
            return Err(CliError(format!("--routing-table {n}: give 8 to 65536")));
        }
        config.overlay.capacity = n;
    }
    if let Some(t) = a.search_ttl {
        if !(1..=7).contains(&t) {
            return Err(CliError(format!("--search-ttl {t}: give 1 to 7")));
        }
        config.overlay.ttl = t;
    }
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|e| CliError(format!("cannot install signal handlers: {e}")))?;
    let node_id = config.overlay.key.node_id();
    let daemon = Daemon::start(config, Some(api)).map_err(|e| CliError(e.to_string()))?;
    eprintln!(
        "peerlet daemon: peers on {}, control API on http://{}, downloads in {}, state in {}, node {node_id}",
        daemon.listen_addr(),
        daemon.api_addr().map(|a| a.to_string()).unwrap_or_default(),
        download_dir.display(),
        state_dir.display()
    );
    let handle = daemon.handle().clone();
    let signal_handle = signals.handle();
    let mut signals = signals;
    let watcher = std::thread::Builder::new()
        .name("peerlet-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                log::info!("signal {sig}: stopping");
                let _ = handle.call(Duration::from_secs(15), |reply| Command::Shutdown { reply });
            }
        })
        .map_err(|e| CliError(e.to_string()))?;
    daemon.wait();
    signal_handle.close();
    let _ = watcher.join();
    Ok(0)
}

fn absolute(p: &Path) -> Result<PathBuf, CliError> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    let cwd = std::env::current_dir()
        .map_err(|e| CliError(format!("cannot read the current directory: {e}")))?;
    Ok(cwd.join(p))
}
