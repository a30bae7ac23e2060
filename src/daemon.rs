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
use crate::systemd;
use argh::FromArgs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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

#[derive(FromArgs, Debug, Default)]
/// Run the node (client and server at once) until stopped.
#[argh(
    subcommand,
    name = "daemon",
    note = "Runs until SIGTERM, SIGINT or `peerlet stop`. Every option can also be set\nin the configuration file or as PEERLET_<OPTION> in the environment;\n`peerlet config show` prints the result. SIGHUP reloads the configuration."
)]
pub struct DaemonArgs {
    /// configuration file (TOML; default $PEERLET_CONFIG, else /etc/peerlet/peerlet.toml if it exists)
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// address for peer connections (default 0.0.0.0:6881; port 0 picks a free one)
    #[argh(option)]
    pub listen: Option<SocketAddr>,
    /// where downloads go (default: $XDG_DATA_HOME/peerlet/downloads, ~/.local/share/peerlet/downloads, or ./peerlet-data/downloads)
    #[argh(option)]
    pub download_dir: Option<PathBuf>,
    /// where state goes: resume records, torrents (default: beside the downloads, in .../state)
    #[argh(option)]
    pub state_dir: Option<PathBuf>,
    /// address of the control API (default 127.0.0.1:7441); off loopback every request needs the API token
    #[argh(option)]
    pub api: Option<SocketAddr>,
    /// require the API token (api.token in the state directory) on loopback too
    #[argh(switch)]
    pub api_token_required: bool,
    /// a host name the API may be reached by besides IP addresses and localhost, like pi.lan (repeatable)
    #[argh(option)]
    pub api_allowed_hosts: Vec<String>,
    /// no web page at / of the API address (the API itself stays)
    #[argh(switch)]
    pub no_web: bool,
    /// global download rate limit in bytes per second; K, M, G suffixes (default 0: none)
    #[argh(option, from_str_fn(crate::config::parse_size))]
    pub download_limit: Option<u64>,
    /// global upload rate limit in bytes per second; K, M, G suffixes (default 0: none)
    #[argh(option, from_str_fn(crate::config::parse_size))]
    pub upload_limit: Option<u64>,
    /// worker threads for hashing and disk I/O (default 0: one per core)
    #[argh(option)]
    pub workers: Option<u64>,
    /// seconds before a torrent stopped by a disk error is retried (default 30)
    #[argh(option)]
    pub disk_retry: Option<u64>,
    /// make verified data durable and record it every this many MiB (default 32)
    #[argh(option)]
    pub checkpoint_mib: Option<u64>,
    /// peer connections at once, all torrents (default 100); each is a file descriptor
    #[argh(option)]
    pub max_connections: Option<u64>,
    /// peer connections one torrent may hold (default 40)
    #[argh(option)]
    pub max_connections_per_torrent: Option<u64>,
    /// connections one IP address may hold, all torrents (default 4)
    #[argh(option)]
    pub max_connections_per_ip: Option<u64>,
    /// data files held open at once, all torrents together (default 128)
    #[argh(option)]
    pub max_open_files: Option<u64>,
    /// memory budget: blocks in flight, uploads, buffers (README, "Memory budget"); K, M, G suffixes (default 8M)
    #[argh(option, from_str_fn(crate::config::parse_size))]
    pub memory_limit: Option<u64>,
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
    #[argh(option)]
    pub beacon_interval: Option<u64>,
    /// no discovery overlay at all (no search, no beacons; trackers, PEX and --peer still work)
    #[argh(switch)]
    pub no_overlay: bool,
    /// overlay neighbours a search floods to (default 8)
    #[argh(option)]
    pub overlay_degree: Option<u64>,
    /// overlay routing-table size (default 256)
    #[argh(option)]
    pub routing_table: Option<u64>,
    /// TTL of this node's searches, 1 to 7 (default 4)
    #[argh(option)]
    pub search_ttl: Option<u64>,
    /// log filter like RUST_LOG: error, warn, info, debug, or per module ("info,peerlet::net=debug"; default warn)
    #[argh(option)]
    pub log: Option<String>,
    /// private network: the secret file (from `peerlet secret FILE`) every node of the network shares; links are then encrypted and only its nodes get in
    #[argh(option)]
    pub network_secret: Option<PathBuf>,
    /// in a private network, a node public key (64 hex digits, from `peerlet status`) that may connect; repeat for more; none: every node with the secret
    #[argh(option)]
    pub allow_node: Vec<String>,
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

/// Reads a private network's secret file. A file that others can read is
/// used, with a warning: anyone who reads it can join the network.
pub fn load_network_secret(path: &Path) -> Result<crate::private::NetworkSecret, CliError> {
    let bytes = storage::read_limited(path, crate::private::MAX_SECRET_FILE)
        .map_err(|e| CliError(format!("network secret: cannot read {e}")))?;
    let secret = crate::private::NetworkSecret::parse(&bytes)
        .map_err(|e| CliError(format!("network secret {}: {e}", path.display())))?;
    if let Ok(mode) = storage::permissions_of(path) {
        if mode & 0o077 != 0 {
            log::warn!(
                "network secret {} is readable by others (mode {mode:o}); anyone who reads it can join: chmod 600 it",
                path.display()
            );
        }
    }
    Ok(secret)
}

/// `peerlet secret FILE`: writes a new random network secret (mode 0600);
/// never replaces an existing file.
pub fn write_network_secret(path: &Path) -> Result<(), CliError> {
    let secret = crate::private::NetworkSecret::from_bytes(net::random_bytes());
    let created = storage::create_new_atomic(path, secret.to_file_text().as_bytes(), 0o600)
        .map_err(|e| CliError(format!("cannot write the secret: {e}")))?;
    if !created {
        return Err(CliError(format!(
            "{} exists: not replaced (a network's nodes must share one secret; remove it first to make a new network)",
            path.display()
        )));
    }
    Ok(())
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
    /// Without `server.dirs`, a torrent's `dir` must lie in the download directory.
    pub fn start_with(
        config: EngineConfig,
        api: Option<SocketAddr>,
        mut server: control::server::Config,
    ) -> io::Result<Daemon> {
        storage::create_private_dir(&config.download_dir)?;
        if server.dirs.is_empty() {
            server.dirs.push(config.download_dir.clone());
        }
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
pub fn run(a: DaemonArgs) -> Result<u8, CliError> {
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
    .map_err(|e| CliError(format!("cannot install signal handlers: {e}")))?;
    let node_id = config.overlay.key.node_id();
    // READY=1, STATUS=, WATCHDOG=1 and STOPPING=1 for systemd (no-ops
    // without $NOTIFY_SOCKET), and the bound on an orderly stop.
    let supervisor = systemd::Supervisor::from_env();
    // The token is made at the first start whatever the address, so that
    // moving the API off loopback later needs no new step; it is asked for
    // off loopback, or everywhere with `api_token_required`.
    let token = control::token::load_or_create(&state_dir).map_err(CliError)?;
    let server = control::server::Config {
        web: settings.flag("web"),
        token: control::token::required(api, settings.flag("api_token_required")).then_some(token),
        allowed_hosts: settings.list("api_allowed_hosts"),
        dirs: vec![download_dir.clone()],
        ..Default::default()
    };
    let daemon = match Daemon::start_with(config, Some(api), server) {
        Ok(d) => d,
        Err(e) => {
            supervisor.status(&format!("cannot start: {e}"));
            return Err(CliError(e.to_string()));
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
        .map_err(|e| CliError(e.to_string()))?;
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
