//! `peerlet daemon`'s command line (the configuration's command-line
//! layer, read by [`super::cli_layer`]) and the defaults that are not a
//! plain number: the addresses and the data directory.

use argh::FromArgs;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Default peer port.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:6881";
/// Default LAN beacon target: an organisation-local multicast group
/// (RFC 2365) and a port of its own.
pub const DEFAULT_LAN_BEACON: &str = "239.192.76.80:7442";
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
    /// a directory besides the download directory that the API may place torrents in (repeatable)
    #[argh(option, long = "allowed-dir")]
    pub allowed_dir: Vec<PathBuf>,
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
    /// peers asked of each tracker per announce, 0 to 1000 (default 200)
    #[argh(option)]
    pub tracker_numwant: Option<u64>,
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
    /// no Mainline DHT (trackers, PEX, the overlay and --peer still find peers)
    #[argh(switch)]
    pub no_dht: bool,
    /// a DHT router to start from, ADDR:PORT or HOST:PORT (repeatable; replaces the default routers)
    #[argh(option)]
    pub dht_bootstrap: Vec<String>,
    /// log filter like RUST_LOG: error, warn, info, debug, or per module ("info,peerlet::net=debug"; default warn)
    #[argh(option)]
    pub log: Option<String>,
    /// private network: the secret file (from `peerlet secret FILE`) every node of the network shares; links are then encrypted and only its nodes get in
    #[argh(option)]
    pub network_secret: Option<PathBuf>,
    /// in a private network, a node public key (64 hex digits, from `peerlet status`) that may connect; repeat for more; none: every node with the secret
    #[argh(option)]
    pub allow_node: Vec<String>,
    /// CA certificates for https trackers: a PEM bundle or a directory of PEM files (default: the system's)
    #[argh(option)]
    pub tls_ca_file: Option<PathBuf>,
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
