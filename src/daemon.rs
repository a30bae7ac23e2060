//! `peerlet daemon`: configuration, the state directory, starting the
//! threads (net + workers, control), signals, and an orderly stop.
//!
//! Start-up reads the state directory on the main thread (before the net
//! thread exists, so blocking is fine): every `torrents/<hex>.torrent` with
//! its `.resume` record and `.journal`, and the `clean` marker, which is then
//! removed so that a crash from here on is recognised at the next start.

use crate::config::DaemonArgs;
use crate::control::{self, server::ControlServer};
use crate::net::api::{Command, EngineHandle};
use crate::net::{self, EngineConfig, EngineThread, LoadedTorrent, Startup};
use crate::resume::{self, Resume};
use crate::storage;
use crate::systemd;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Why `peerlet daemon` could not start.
#[derive(Debug)]
pub enum Error {
    /// The configuration (file, environment, flags) or the state it names.
    Config(crate::config::Error),
    Signals(io::Error),
    /// The control API token could not be read or made.
    Token(String),
    /// A listener, the state directory or a thread.
    Start(io::Error),
    Thread(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => e.fmt(f),
            Error::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
            Error::Token(e) => f.write_str(e),
            Error::Start(e) => e.fmt(f),
            Error::Thread(e) => write!(f, "cannot start a thread: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<crate::config::Error> for Error {
    fn from(e: crate::config::Error) -> Error {
        Error::Config(e)
    }
}

/// Reads the state directory: torrents, resume records, journals, the clean marker.
pub fn load_state(state_dir: &Path) -> io::Result<Startup> {
    let torrents_dir = state_dir.join(crate::state::TORRENTS_DIR);
    storage::create_private_dir(&torrents_dir)?;
    let marker = state_dir.join(crate::state::CLEAN_MARKER);
    let clean = storage::read_limited(&marker, 64).is_ok();
    storage::remove_files(&[marker])?;
    let mut torrents = Vec::new();
    let mut magnets = Vec::new();
    let mut names = storage::list_dir(&torrents_dir)?;
    crate::sort::sort_by(&mut names, |a, b| a.cmp(b));
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
        let torrent_bytes = match storage::read_limited(
            &torrents_dir.join(&name),
            crate::metainfo::MAX_TORRENT_FILE,
        ) {
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
        let peers_file = torrents_dir.join(format!("{hex}.peers"));
        let peers = match storage::read_limited(&peers_file, resume::MAX_PEERS_FILE) {
            Ok(bytes) => match resume::ManualPeers::decode(&bytes) {
                Ok(m) => m.peers,
                Err(e) => {
                    log::warn!("{hex}.peers is damaged ({e}); its peers are lost");
                    Vec::new()
                }
            },
            Err(_) => Vec::new(),
        };
        torrents.push(LoadedTorrent {
            torrent_bytes,
            resume,
            journal,
            peers,
        });
    }
    let nodes = storage::read_limited(&state_dir.join(crate::state::NODES_FILE), 64 << 10)
        .map(|b| crate::overlay::decode_saved(&b, net::MAX_SAVED_NODES))
        .unwrap_or_default();
    let dht_nodes = storage::read_limited(&state_dir.join(crate::state::DHT_NODES_FILE), 64 << 10)
        .map(|b| crate::dht::decode_saved(&b, net::MAX_SAVED_DHT_NODES))
        .unwrap_or_default();
    Ok(Startup {
        torrents,
        magnets,
        clean,
        nodes,
        dht_nodes,
    })
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
        Daemon::start_with(config, api, control::server::Config::default())
    }

    /// [`Daemon::start`] with the control server's settings (`web` off, ...).
    /// Without `server.dirs`, a torrent's `dir` must lie in the download
    /// directory. The engine's anchors (when it has none) are `server.dirs`,
    /// resolved.
    pub fn start_with(
        mut config: EngineConfig,
        api: Option<SocketAddr>,
        mut server: control::server::Config,
    ) -> io::Result<Daemon> {
        storage::create_private_dir(&config.download_dir)?;
        if server.dirs.is_empty() {
            server.dirs.push(config.download_dir.clone());
        }
        if config.anchors.is_empty() {
            for d in &server.dirs {
                let resolved = d
                    .canonicalize()
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", d.display())))?;
                config.anchors.push(resolved);
            }
        }
        // What the API may hold of memory_limit (request bodies, torrent
        // parses), lent by the engine's downloads while it is held.
        server.memory = net::memory::MemoryCaps::new(config.memory_budget).requests;
        let lent = std::sync::Arc::new(net::memory::Budget::new(server.memory));
        config.api_memory = Some(lent.clone());
        server.memory_budget = Some(lent);
        let startup = load_state(&config.state_dir)?;
        let has_work = !startup.torrents.is_empty() || !startup.magnets.is_empty();
        if !startup.clean && has_work {
            log::warn!("the last stop was not orderly: pieces verified since the last checkpoint will be re-hashed");
        }
        if let Some(w) = crate::config::fd_limit_warning(
            config.max_connections,
            config.max_open_files,
            crate::config::soft_fd_limit(),
        ) {
            log::warn!("{w}");
        }
        let engine = net::spawn(config, startup)?;
        let control = match api {
            Some(addr) => match control::server::spawn_with(addr, engine.handle.clone(), server) {
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
pub fn run(a: DaemonArgs) -> Result<u8, Error> {
    // Defaults < configuration file < PEERLET_* < command line; this also
    // sets the log filter and remembers what a reload (SIGHUP) needs.
    let settings = crate::config::load_for_daemon(&a)?;
    let (config, api) = settings.engine_config()?;
    let download_dir = config.download_dir.clone();
    let state_dir = config.state_dir.clone();
    let config_file = settings
        .file
        .as_ref()
        .map_or_else(|| "none".to_string(), |f| f.display().to_string());
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(Error::Signals)?;
    let node_id = (config.overlay.key.as_ref()).map_or_else(String::new, |k| k.node_id().to_hex());
    // READY=1, STATUS=, WATCHDOG=1 and STOPPING=1 for systemd (no-ops
    // without $NOTIFY_SOCKET), and the bound on an orderly stop.
    let supervisor = systemd::Supervisor::from_env();
    // The token is made at the first start whatever the address, so that
    // moving the API off loopback later needs no new step; it is asked for
    // off loopback, or everywhere with `api_token_required`.
    let token = control::token::load_or_create(&state_dir).map_err(Error::Token)?;
    let server = control::server::Config {
        web: settings.flag("web"),
        token: control::token::required(api, settings.flag("api_token_required"))
            .then(|| token.clone()),
        // The command-line client sends it: its requests are served in
        // slots that clients without it cannot fill, and from loopback it
        // may add data where it lies.
        trusted_token: Some(token),
        allowed_hosts: settings.list("api_allowed_hosts"),
        dirs: std::iter::once(download_dir.clone())
            .chain(settings.list("allowed_dirs").into_iter().map(PathBuf::from))
            .collect(),
        state_dir: Some(state_dir.clone()),
        ..Default::default()
    };
    let daemon = match Daemon::start_with(config, Some(api), server) {
        Ok(d) => d,
        Err(e) => {
            supervisor.status(&format!("cannot start: {e}"));
            return Err(Error::Start(e));
        }
    };
    // Under journald the banner is a notice (sd-daemon priority 5).
    let notice = if systemd::stderr_is_journal() {
        "<5>"
    } else {
        ""
    };
    // One write (eprintln! writes its pieces one by one), so that whoever
    // reads the log never sees half of the line.
    let banner = format!(
        "{notice}peerlet daemon: peers on {}, control API on http://{}, downloads in {}, state in {}, node {node_id}, config {config_file}\n",
        daemon.listen_addr(),
        daemon.api_addr().map(|a| a.to_string()).unwrap_or_default(),
        download_dir.display(),
        state_dir.display()
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), banner.as_bytes());
    let handle = daemon.handle().clone();
    let signal_handle = signals.handle();
    let mut signals = signals;
    let stopper = Arc::clone(&supervisor);
    let watcher = std::thread::Builder::new()
        .name("peerlet-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let name = signal_name(sig);
                if sig == signal_hook::consts::SIGHUP {
                    // At warn so that the default filter shows it: an
                    // operator asked for it and wants to see the outcome.
                    match crate::config::reload(None, &handle) {
                        Ok(summary) => log::warn!("{name}: {summary}"),
                        Err(e) => log::error!("{name}: configuration not reloaded: {e}"),
                    }
                    continue;
                }
                log::info!("{name}: stopping");
                // STOPPING=1, and the process exits after
                // systemd::STOP_DEADLINE even if the engine never answers.
                stopper.begin_stop(name);
                let _ = handle.call(Duration::from_secs(15), |reply| Command::Shutdown { reply });
                break;
            }
        })
        .map_err(Error::Thread)?;
    // Every listener is bound: the peer port, the UDP socket (trackers,
    // overlay) and the control API.
    if let Err(e) = supervisor.ready(
        daemon.handle().clone(),
        &format!(
            "peers on {}, control API on {}",
            daemon.listen_addr(),
            daemon.api_addr().map(|a| a.to_string()).unwrap_or_default()
        ),
    ) {
        log::warn!("cannot start the systemd status thread: {e}");
    }
    daemon.wait();
    // A stop by `peerlet stop` (the monitor may not have seen it yet).
    supervisor.begin_stop("asked to stop");
    signal_handle.close();
    let _ = watcher.join();
    log::info!("exiting");
    Ok(0)
}

/// "SIGTERM" for 15, and so on, for log lines.
fn signal_name(sig: i32) -> &'static str {
    match sig {
        signal_hook::consts::SIGINT => "SIGINT",
        signal_hook::consts::SIGTERM => "SIGTERM",
        signal_hook::consts::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}
