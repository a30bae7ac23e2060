//! The daemon's configuration: one table of keys ([`KEYS`]) filled from four
//! sources, each overriding the one before it: built-in defaults, the TOML
//! file, the environment (`PEERLET_<KEY>`), the command line.
//!
//! - [`load`] assembles the effective [`Config`] for `peerlet daemon` and
//!   `peerlet config show`; [`Config::engine_config`] turns it into the
//!   engine's settings.
//! - [`args`]: `peerlet daemon`'s flags ([`DaemonArgs`]), the command-line layer.
//! - [`reload`] re-reads the sources while the daemon runs (SIGHUP) and
//!   applies what can change without a restart: the global rate limits,
//!   the log filter ([`logging`]) and bootstrap nodes (added).
//!
//! Every value is checked when it is read, and a bad one is named with its
//! source: `FILE:LINE: key "k": ...`, `environment variable PEERLET_K: ...`
//! or `--k: ...`.

mod args;
mod file;
pub mod logging;
mod reload;
#[cfg(test)]
mod tests;

pub use args::{default_data_dir, DaemonArgs, DEFAULT_LAN_BEACON, DEFAULT_LISTEN};
pub use file::parse_file;
pub use reload::reload;

use crate::net::{self, EngineConfig};
use std::ffi::OsString;
use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the file is looked for when neither `--config` nor
/// `$PEERLET_CONFIG` names one (read only if it exists).
pub const DEFAULT_FILE: &str = "/etc/peerlet/peerlet.toml";
/// The environment variable naming the file.
pub const CONFIG_ENV: &str = "PEERLET_CONFIG";
/// Largest configuration file read.
pub const MAX_FILE: u64 = 1 << 20;
/// The log filter when nothing sets one.
pub const DEFAULT_LOG: &str = "warn";

/// Why the configuration cannot be used.
#[derive(Debug)]
pub enum Error {
    /// Problems in the sources, each named with where it was found
    /// (`FILE:LINE: key "k": ...`, `environment variable ...`, `--k: ...`).
    Sources(Vec<String>),
    /// The `log` filter.
    LogFilter(String),
    /// The node key or the network secret the configuration names.
    State(crate::state::Error),
    AllowedNodesNeedSecret,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // One line: the first problem, and how many more there are.
            Error::Sources(problems) => match problems.split_first() {
                Some((first, [])) => f.write_str(first),
                Some((first, rest)) => write!(f, "{first} (and {} more)", rest.len()),
                None => f.write_str("the configuration has problems"),
            },
            Error::LogFilter(e) => f.write_str(e),
            Error::State(e) => e.fmt(f),
            Error::AllowedNodesNeedSecret => {
                f.write_str("allowed_nodes needs a private network: set network_secret too")
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<crate::state::Error> for Error {
    fn from(e: crate::state::Error) -> Error {
        Error::State(e)
    }
}

const K: u64 = 1024;
const M: u64 = 1024 * 1024;
const G: u64 = 1024 * 1024 * 1024;

/// What a key holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `IP:PORT`.
    Addr,
    /// A directory.
    Path,
    /// Bytes (or bytes per second): an integer or a string with a K, M or G
    /// suffix (1024-based).
    Size {
        min: u64,
        max: u64,
    },
    Int {
        min: u64,
        max: u64,
    },
    Bool,
    /// Strings (`HOST:PORT`).
    List,
    /// A log filter in `RUST_LOG` syntax.
    Filter,
}

/// One configuration key: the same name in the file, in the environment
/// (`PEERLET_` + upper case) and on the command line (`--` + dashes;
/// booleans are switches that turn a thing off: `--no-overlay`).
#[derive(Debug)]
pub struct Key {
    pub name: &'static str,
    pub kind: Kind,
    /// One line for `config show`, the example file and README.md.
    pub help: &'static str,
    /// Changes on SIGHUP; the others need a restart.
    pub reloads: bool,
}

impl Key {
    pub fn flag(&self) -> String {
        let dashed = self.name.replace('_', "-");
        if self.name == "allowed_nodes" {
            return "--allow-node".into();
        }
        if self.name == "allowed_dirs" {
            return "--allowed-dir".into();
        }
        match self.kind {
            Kind::Bool if SWITCHES_ON.contains(&self.name) => format!("--{dashed}"),
            Kind::Bool => format!("--no-{dashed}"),
            _ => format!("--{dashed}"),
        }
    }

    pub fn env(&self) -> String {
        format!("PEERLET_{}", self.name.to_ascii_uppercase())
    }

    /// "expected ..." for this key, without the word.
    fn expected(&self) -> String {
        match (self.name, self.kind) {
            ("lan_beacon", _) => {
                "a multicast group or a broadcast address (ending in .255) with a port, like \"239.192.76.80:7442\"".into()
            }
            ("api", _) => "an address like \"127.0.0.1:7441\"".into(),
            ("network_secret", _) => {
                "a secret file written by `peerlet secret FILE` (an absolute path, or relative to the file or the current directory), or \"\"".into()
            }
            ("tls_ca_file", _) => {
                "a PEM file or a directory of PEM files (an absolute path, or relative to the file or the current directory), or \"\"".into()
            }
            ("allowed_nodes", _) => {
                "an array of node public keys (64 hex digits each, as `peerlet status` shows them)".into()
            }
            ("api_allowed_hosts", _) => "an array of host names like \"pi.lan\"".into(),
            ("allowed_dirs", _) => "an array of absolute paths of existing directories".into(),
            (_, Kind::Addr) => "an address like \"0.0.0.0:6881\"".into(),
            (_, Kind::Path) => "a directory (an absolute path, or one relative to the file or the current directory)".into(),
            (_, Kind::Size { min: 0, max: u64::MAX }) => "a size like 500K".into(),
            (_, Kind::Size { min, max }) => {
                format!("a size from {} to {}", format_size(min), format_size(max))
            }
            (_, Kind::Int { min, max }) => format!("an integer from {min} to {max}"),
            (_, Kind::Bool) => "true or false".into(),
            (_, Kind::List) => "an array of \"HOST:PORT\" strings".into(),
            (_, Kind::Filter) => {
                "a log filter like \"info\" or \"warn,peerlet::net=debug\"".into()
            }
        }
    }
}

const NO_MAX: u64 = u64::MAX;

/// Path keys whose empty value means "none" (public mode, the system's
/// CA certificates).
const OPTIONAL_PATHS: &[&str] = &["network_secret", "tls_ca_file"];

/// Boolean keys that are off by default: their command-line switch turns
/// them on (`--api-token-required`) instead of off.
const SWITCHES_ON: &[&str] = &["api_token_required"];

/// Every key, in the order of `config show`, the example file and README.md.
pub const KEYS: &[Key] = &[
    Key {
        name: "listen",
        kind: Kind::Addr,
        help: "Address for peer connections (TCP; UDP for trackers and the overlay). Port 0 picks a free one.",
        reloads: false,
    },
    Key {
        name: "api",
        kind: Kind::Addr,
        help: "Address of the control API and `peerlet` commands. Keep it on loopback.",
        reloads: false,
    },
    Key {
        name: "api_token_required",
        kind: Kind::Bool,
        help: "Require the API token (api.token in the state directory) on loopback too; off loopback it is always required.",
        reloads: false,
    },
    Key {
        name: "api_allowed_hosts",
        kind: Kind::List,
        help: "Host names the API may be reached by besides IP addresses and localhost (DNS-rebinding check), like \"pi.lan\".",
        reloads: false,
    },
    Key {
        name: "web",
        kind: Kind::Bool,
        help: "The web page at / of the API address (same rules as the API).",
        reloads: false,
    },
    Key {
        name: "download_dir",
        kind: Kind::Path,
        help: "Where downloads go (default $XDG_DATA_HOME/peerlet/downloads or ~/.local/share/peerlet/downloads).",
        reloads: false,
    },
    Key {
        name: "allowed_dirs",
        kind: Kind::List,
        help: "Directories besides download_dir that the API may place a torrent's data in (absolute, existing). The local command line, with the API token, may name any existing directory.",
        reloads: false,
    },
    Key {
        name: "state_dir",
        kind: Kind::Path,
        help: "Where state goes: node key, torrents, resume records, routing table (default beside downloads, .../state).",
        reloads: false,
    },
    Key {
        name: "download_limit",
        kind: Kind::Size { min: 0, max: NO_MAX },
        help: "Global download rate limit in bytes per second, K/M/G suffixes; 0: none.",
        reloads: true,
    },
    Key {
        name: "upload_limit",
        kind: Kind::Size { min: 0, max: NO_MAX },
        help: "Global upload rate limit in bytes per second, K/M/G suffixes; 0: none.",
        reloads: true,
    },
    Key {
        name: "memory_limit",
        kind: Kind::Size { min: 64 * K, max: 4 * G },
        help: "Memory budget: split into caps for blocks in flight, uploads and send buffers, read buffers, control API requests (README, \"Memory budget\").",
        reloads: false,
    },
    Key {
        name: "workers",
        kind: Kind::Int { min: 0, max: 256 },
        help: "Worker threads for hashing and disk I/O; 0: one per core.",
        reloads: false,
    },
    Key {
        name: "disk_retry",
        kind: Kind::Int { min: 1, max: 86_400 },
        help: "Seconds before a torrent stopped by a disk error is retried.",
        reloads: false,
    },
    Key {
        name: "checkpoint_mib",
        kind: Kind::Int { min: 1, max: 4096 },
        help: "Make verified data durable and record it every this many MiB.",
        reloads: false,
    },
    Key {
        name: "max_connections",
        kind: Kind::Int { min: 1, max: 65_536 },
        help: "Peer connections at once (all torrents, both directions, handshakes included); up to 8 are kept for incoming handshakes, and at the cap a new peer takes the slot of a silent or idle one. Each needs a file descriptor (ulimit -n).",
        reloads: false,
    },
    Key {
        name: "max_connections_per_torrent",
        kind: Kind::Int { min: 1, max: 65_536 },
        help: "Peer connections one torrent may hold.",
        reloads: false,
    },
    Key {
        name: "max_connections_per_ip",
        kind: Kind::Int { min: 1, max: 1024 },
        help: "Connections one IP address may hold (all torrents; one per torrent in any case).",
        reloads: false,
    },
    Key {
        name: "max_open_files",
        kind: Kind::Int { min: 1, max: 65_536 },
        help: "Data files held open at once, all torrents together (least recently used closed first); each is a file descriptor.",
        reloads: false,
    },
    Key {
        name: "tracker_numwant",
        kind: Kind::Int { min: 0, max: 1000 },
        help: "Peers asked of each tracker per announce (numwant).",
        reloads: false,
    },
    Key {
        name: "bootstrap",
        kind: Kind::List,
        help: "Overlay nodes to contact at start, \"IP:PORT\" or \"HOST:PORT\" (added on reload).",
        reloads: true,
    },
    Key {
        name: "lan_discovery",
        kind: Kind::Bool,
        help: "Send and hear LAN beacons to find other nodes on the local network.",
        reloads: false,
    },
    Key {
        name: "lan_beacon",
        kind: Kind::Addr,
        help: "Where LAN beacons go: a multicast group or a broadcast address, with a port.",
        reloads: false,
    },
    Key {
        name: "beacon_interval",
        kind: Kind::Int { min: 1, max: 86_400 },
        help: "Seconds between LAN beacons.",
        reloads: false,
    },
    Key {
        name: "overlay",
        kind: Kind::Bool,
        help: "The discovery overlay (search, beacons, bootstrap); trackers, PEX and --peer work without it.",
        reloads: false,
    },
    Key {
        name: "overlay_degree",
        kind: Kind::Int { min: 1, max: 64 },
        help: "Overlay neighbours a search floods to.",
        reloads: false,
    },
    Key {
        name: "routing_table",
        kind: Kind::Int { min: 8, max: 65_536 },
        help: "Overlay routing-table size (nodes).",
        reloads: false,
    },
    Key {
        name: "search_ttl",
        kind: Kind::Int { min: 1, max: 7 },
        help: "TTL (hops) of this node's searches.",
        reloads: false,
    },
    Key {
        name: "dht",
        kind: Kind::Bool,
        help: "The Mainline DHT (BEP 5): find peers of public torrents without a tracker; never in a private network or for private torrents.",
        reloads: false,
    },
    Key {
        name: "dht_bootstrap",
        kind: Kind::List,
        help: "DHT routers to start from when no saved node answers, \"HOST:PORT\" or \"IP:PORT\"; [] for none.",
        reloads: false,
    },
    Key {
        name: "network_secret",
        kind: Kind::Path,
        help: "Private network: the secret file (`peerlet secret FILE`) its nodes share; \"\" for public mode (plain BitTorrent).",
        reloads: false,
    },
    Key {
        name: "allowed_nodes",
        kind: Kind::List,
        help: "In a private network, the node public keys (64 hex digits, `peerlet status`) that may connect; empty: every node with the secret.",
        reloads: false,
    },
    Key {
        name: "tls_ca_file",
        kind: Kind::Path,
        help: "CA certificates https trackers are checked against: a PEM bundle or a directory of PEM files; \"\": the system's (/etc/ssl/certs/ca-certificates.crt and the other usual places, SSL_CERT_FILE, SSL_CERT_DIR).",
        reloads: false,
    },
    Key {
        name: "log",
        kind: Kind::Filter,
        help: "Log filter in RUST_LOG syntax: error, warn, info, debug, trace, or per module (\"info,peerlet::net=debug\").",
        reloads: true,
    },
];

/// The key named `name` and its index in [`KEYS`].
pub fn key(name: &str) -> Option<(usize, &'static Key)> {
    KEYS.iter().enumerate().find(|(_, k)| k.name == name)
}

fn index(name: &str) -> usize {
    key(name).map(|(i, _)| i).expect("a known key")
}

/// A checked value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Addr(SocketAddr),
    /// Absolute.
    Path(PathBuf),
    Num(u64),
    Bool(bool),
    List(Vec<String>),
    Text(String),
}

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Default,
    /// A line of the configuration file.
    File(usize),
    /// An environment variable.
    Env(String),
    /// A command-line option.
    Cli(String),
}

impl Origin {
    pub fn describe(&self) -> String {
        match self {
            Origin::Default => "default".into(),
            Origin::File(line) => format!("file, line {line}"),
            Origin::Env(var) => format!("environment, {var}"),
            Origin::Cli(flag) => format!("command line, {flag}"),
        }
    }
}

/// The values one source gives, by key index.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Layer(pub Vec<(usize, Value, Origin)>);

impl Layer {
    fn set(&mut self, name: &str, value: Value, origin: Origin) {
        self.0.push((index(name), value, origin));
    }
}

/// "256K", "1M", "2G", "16384" → bytes (K, M, G are 1024-based; `KiB`,
/// `MiB`, `GiB` too).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let (digits, mult) = [
        ("kib", K),
        ("k", K),
        ("mib", M),
        ("m", M),
        ("gib", G),
        ("g", G),
    ]
    .iter()
    .find_map(|(suffix, mult)| lower.strip_suffix(suffix).map(|d| (d, *mult)))
    .unwrap_or((lower.as_str(), 1));
    let digits = digits.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{s}' is not a size (examples: 262144, 256K, 1M)"));
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("'{s}' is too large"))
}

/// The shortest exact form: `0`, `"500K"`, `"8M"`, `"1G"`, else bytes.
pub fn format_size(n: u64) -> String {
    match n {
        0 => "0".into(),
        n if n % G == 0 => format!("{}G", n / G),
        n if n % M == 0 => format!("{}M", n / M),
        n if n % K == 0 => format!("{}K", n / K),
        n => n.to_string(),
    }
}

/// A TOML basic string.
pub fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A value as TOML, in the form `config show` writes.
pub fn to_toml(kind: Kind, v: &Value) -> String {
    match (kind, v) {
        (Kind::Size { .. }, Value::Num(0)) => "0".into(),
        (Kind::Size { .. }, Value::Num(n)) => match format_size(*n) {
            s if s.ends_with(['K', 'M', 'G']) => toml_string(&s),
            s => s,
        },
        (_, Value::Num(n)) => n.to_string(),
        (_, Value::Addr(a)) => toml_string(&a.to_string()),
        (_, Value::Path(p)) => toml_string(&p.to_string_lossy()),
        (_, Value::Bool(b)) => b.to_string(),
        (_, Value::Text(t)) => toml_string(t),
        (_, Value::List(l)) => {
            let items: Vec<String> = l.iter().map(|s| toml_string(s)).collect();
            format!("[{}]", items.join(", "))
        }
    }
}

/// A value for a key from text (the environment, or a string in the
/// file for addresses, paths, sizes and filters); relative paths are taken
/// from `base`. The error is "expected ..., got ...".
fn from_text(key: &Key, s: &str, base: &Path) -> Result<Value, String> {
    let bad = || format!("expected {}, got {s:?}", key.expected());
    let v = match key.kind {
        Kind::Addr => Value::Addr(s.trim().parse().map_err(|_| bad())?),
        Kind::Path if s.is_empty() && OPTIONAL_PATHS.contains(&key.name) => {
            Value::Path(PathBuf::new())
        }
        Kind::Path => {
            if s.is_empty() {
                return Err(bad());
            }
            if s == "~" || s.starts_with("~/") {
                return Err(format!(
                    "expected an absolute path (~ is not expanded), got {s:?}"
                ));
            }
            Value::Path(base.join(s))
        }
        Kind::Size { .. } => Value::Num(parse_size(s).map_err(|_| bad())?),
        Kind::Int { .. } => Value::Num(s.trim().parse().map_err(|_| bad())?),
        Kind::Bool => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Value::Bool(true),
            "false" | "no" | "off" | "0" => Value::Bool(false),
            _ => return Err(bad()),
        },
        Kind::List => Value::List(
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
        ),
        Kind::Filter => Value::Text(s.trim().to_string()),
    };
    check(key, v, &format!("{s:?}"))
}

/// Range and form checks shared by every source; `got` is the value as
/// the user wrote it, for the message.
fn check(key: &Key, v: Value, got: &str) -> Result<Value, String> {
    let bad = || format!("expected {}, got {got}", key.expected());
    let ok = match (&v, key.kind) {
        (Value::Num(n), Kind::Size { min, max } | Kind::Int { min, max }) => {
            (min..=max).contains(n)
        }
        (Value::Addr(a), _) if key.name == "lan_beacon" => {
            net::is_beacon_target(a.ip()) && a.port() != 0
        }
        (Value::List(items), _) if key.name == "api_allowed_hosts" => {
            if let Some(h) = items
                .iter()
                .find(|h| !crate::control::http::valid_host_name(h))
            {
                return Err(format!(
                    "expected a host name (letters, digits, '-' and '.'; no port, address or wildcard), got {h:?}"
                ));
            }
            true
        }
        (Value::List(items), _) if key.name == "allowed_dirs" => {
            for d in items {
                let p = Path::new(d);
                if !p.is_absolute() {
                    return Err(format!(
                        "expected {} (~ is not expanded), got {d:?}",
                        key.expected()
                    ));
                }
                if !p.is_dir() {
                    return Err(format!(
                        "expected {}, got {d:?}, which does not exist or is not a directory",
                        key.expected()
                    ));
                }
            }
            true
        }
        (Value::List(items), _) if key.name == "allowed_nodes" => {
            if let Some(k) = items
                .iter()
                .find(|k| crate::private::parse_hex32(k).is_none())
            {
                return Err(format!("expected {}, got {k:?}", key.expected()));
            }
            true
        }
        (Value::List(items), _) => {
            if let Some(b) = items.iter().find(|b| !valid_bootstrap(b)) {
                return Err(format!(
                    "expected IP:PORT, [IPv6]:PORT or HOST:PORT (a unicast address, port not 0), got {b:?}"
                ));
            }
            true
        }
        (Value::Text(f), Kind::Filter) => {
            if let Err(e) = logging::parse_filter(f) {
                return Err(format!("expected {} ({e}), got {got}", key.expected()));
            }
            true
        }
        _ => true,
    };
    if ok {
        Ok(v)
    } else {
        Err(bad())
    }
}

/// `IP:PORT` (unicast, port not 0), `[IPv6]:PORT` or `HOST:PORT`.
pub fn valid_bootstrap(b: &str) -> bool {
    match b.parse::<SocketAddr>() {
        Ok(addr) => addr.port() != 0 && !addr.ip().is_unspecified() && !addr.ip().is_multicast(),
        // A host name: no ':' in it (an IPv6 address needs [brackets]).
        Err(_) => b.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty()
                && !host.contains(':')
                && !host.contains(char::is_whitespace)
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        }),
    }
}

/// The built-in defaults; `data_dir` holds `downloads` and `state`.
pub fn defaults(data_dir: &Path) -> Layer {
    let mut l = Layer::default();
    let addr = |s: &str| Value::Addr(s.parse().expect("valid default address"));
    let d = Origin::Default;
    l.set("listen", addr(DEFAULT_LISTEN), d.clone());
    l.set("api", addr(crate::control::DEFAULT_API_ADDR), d.clone());
    l.set("api_token_required", Value::Bool(false), d.clone());
    l.set("api_allowed_hosts", Value::List(Vec::new()), d.clone());
    l.set("web", Value::Bool(true), d.clone());
    l.set(
        "download_dir",
        Value::Path(data_dir.join("downloads")),
        d.clone(),
    );
    l.set("allowed_dirs", Value::List(Vec::new()), d.clone());
    l.set("state_dir", Value::Path(data_dir.join("state")), d.clone());
    l.set("download_limit", Value::Num(0), d.clone());
    l.set("upload_limit", Value::Num(0), d.clone());
    let e = EngineConfig::new(
        "0.0.0.0:0".parse().expect("valid"),
        PathBuf::new(),
        PathBuf::new(),
    );
    l.set("memory_limit", Value::Num(e.memory_budget), d.clone());
    l.set("workers", Value::Num(0), d.clone());
    l.set("disk_retry", Value::Num(30), d.clone());
    l.set("checkpoint_mib", Value::Num(32), d.clone());
    l.set(
        "max_connections",
        Value::Num(e.max_connections as u64),
        d.clone(),
    );
    l.set(
        "max_connections_per_torrent",
        Value::Num(e.max_connections_per_torrent as u64),
        d.clone(),
    );
    l.set(
        "max_connections_per_ip",
        Value::Num(e.max_connections_per_ip as u64),
        d.clone(),
    );
    l.set(
        "max_open_files",
        Value::Num(e.max_open_files as u64),
        d.clone(),
    );
    l.set(
        "tracker_numwant",
        Value::Num(u64::from(e.tracker_numwant)),
        d.clone(),
    );
    l.set("bootstrap", Value::List(Vec::new()), d.clone());
    l.set("lan_discovery", Value::Bool(true), d.clone());
    l.set("lan_beacon", addr(DEFAULT_LAN_BEACON), d.clone());
    l.set("beacon_interval", Value::Num(30), d.clone());
    l.set("overlay", Value::Bool(true), d.clone());
    let o = crate::overlay::Config::default();
    l.set("overlay_degree", Value::Num(o.degree as u64), d.clone());
    l.set("routing_table", Value::Num(o.capacity as u64), d.clone());
    l.set(
        "search_ttl",
        Value::Num(u64::from(o.default_ttl)),
        d.clone(),
    );
    l.set("dht", Value::Bool(true), d.clone());
    l.set(
        "dht_bootstrap",
        Value::List(
            crate::net::DHT_ROUTERS
                .iter()
                .map(|r| r.to_string())
                .collect(),
        ),
        d.clone(),
    );
    l.set("network_secret", Value::Path(PathBuf::new()), d.clone());
    l.set("allowed_nodes", Value::List(Vec::new()), d.clone());
    l.set("tls_ca_file", Value::Path(PathBuf::new()), d.clone());
    l.set("log", Value::Text(DEFAULT_LOG.into()), d);
    l
}

/// The `PEERLET_<KEY>` variables (`get` reads one; an empty value counts
/// as unset). `RUST_LOG` is read for `log` when `PEERLET_LOG` is not set.
/// Relative paths are taken from `cwd`. One error per bad variable.
pub fn env_layer(get: &dyn Fn(&str) -> Option<OsString>, cwd: &Path) -> Result<Layer, Vec<String>> {
    let mut layer = Layer::default();
    let mut errors = Vec::new();
    for (i, key) in KEYS.iter().enumerate() {
        let mut vars = vec![key.env()];
        if key.name == "log" {
            vars.push("RUST_LOG".into());
        }
        let Some((var, raw)) = vars
            .into_iter()
            .find_map(|v| get(&v).filter(|s| !s.is_empty()).map(|s| (v, s)))
        else {
            continue;
        };
        let res = match raw.to_str() {
            Some(s) => from_text(key, s, cwd),
            None => Err(format!(
                "expected {}, got bytes that are not UTF-8",
                key.expected()
            )),
        };
        match res {
            Ok(v) => layer.0.push((i, v, Origin::Env(var))),
            Err(e) => errors.push(format!("environment variable {var}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(layer)
    } else {
        Err(errors)
    }
}

/// The options given to `peerlet daemon` (relative paths from `cwd`).
pub fn cli_layer(a: &DaemonArgs, cwd: &Path) -> Result<Layer, Vec<String>> {
    let mut given: Vec<(&str, Value, String)> = Vec::new();
    let mut put = |name: &str, v: Option<Value>, got: String| {
        if let Some(v) = v {
            given.push((key(name).expect("a known key").1.name, v, got));
        }
    };
    let addr_got = |a: &Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    put("listen", a.listen.map(Value::Addr), addr_got(&a.listen));
    put("api", a.api.map(Value::Addr), addr_got(&a.api));
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| Value::Path(cwd.join(p)));
    let path_got = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| format!("{:?}", p.display().to_string()))
            .unwrap_or_default()
    };
    put(
        "download_dir",
        path(&a.download_dir),
        path_got(&a.download_dir),
    );
    if !a.allowed_dir.is_empty() {
        let dirs: Vec<String> = a
            .allowed_dir
            .iter()
            .map(|d| cwd.join(d).to_string_lossy().into_owned())
            .collect();
        put(
            "allowed_dirs",
            Some(Value::List(dirs)),
            format!("{:?}", a.allowed_dir),
        );
    }
    put("state_dir", path(&a.state_dir), path_got(&a.state_dir));
    let num = |n: Option<u64>| {
        (
            n.map(Value::Num),
            n.map(|n| n.to_string()).unwrap_or_default(),
        )
    };
    for (name, n) in [
        ("download_limit", a.download_limit),
        ("upload_limit", a.upload_limit),
        ("memory_limit", a.memory_limit),
        ("workers", a.workers),
        ("disk_retry", a.disk_retry),
        ("checkpoint_mib", a.checkpoint_mib),
        ("max_connections", a.max_connections),
        ("max_connections_per_torrent", a.max_connections_per_torrent),
        ("max_connections_per_ip", a.max_connections_per_ip),
        ("max_open_files", a.max_open_files),
        ("tracker_numwant", a.tracker_numwant),
        ("beacon_interval", a.beacon_interval),
        ("overlay_degree", a.overlay_degree),
        ("routing_table", a.routing_table),
        ("search_ttl", a.search_ttl),
    ] {
        let (v, got) = num(n);
        put(name, v, got);
    }
    if !a.bootstrap.is_empty() {
        put(
            "bootstrap",
            Some(Value::List(a.bootstrap.clone())),
            format!("{:?}", a.bootstrap),
        );
    }
    put(
        "lan_beacon",
        a.lan_beacon.map(Value::Addr),
        addr_got(&a.lan_beacon),
    );
    put(
        "log",
        a.log.clone().map(Value::Text),
        format!("{:?}", a.log.as_deref().unwrap_or("")),
    );
    if a.no_lan_discovery {
        put("lan_discovery", Some(Value::Bool(false)), String::new());
    }
    if a.no_overlay {
        put("overlay", Some(Value::Bool(false)), String::new());
    }
    if a.no_web {
        put("web", Some(Value::Bool(false)), String::new());
    }
    if a.no_dht {
        put("dht", Some(Value::Bool(false)), String::new());
    }
    if !a.dht_bootstrap.is_empty() {
        put(
            "dht_bootstrap",
            Some(Value::List(a.dht_bootstrap.clone())),
            format!("{:?}", a.dht_bootstrap),
        );
    }
    put(
        "network_secret",
        path(&a.network_secret),
        path_got(&a.network_secret),
    );
    put(
        "tls_ca_file",
        path(&a.tls_ca_file),
        path_got(&a.tls_ca_file),
    );
    if !a.allow_node.is_empty() {
        put(
            "allowed_nodes",
            Some(Value::List(a.allow_node.clone())),
            format!("{:?}", a.allow_node),
        );
    }
    if a.api_token_required {
        put("api_token_required", Some(Value::Bool(true)), String::new());
    }
    if !a.api_allowed_hosts.is_empty() {
        put(
            "api_allowed_hosts",
            Some(Value::List(a.api_allowed_hosts.clone())),
            format!("{:?}", a.api_allowed_hosts),
        );
    }
    crate::sort::sort_by_key(&mut given, |(name, _, _)| index(name));
    let mut layer = Layer::default();
    let mut errors = Vec::new();
    for (name, v, got) in given {
        let (i, key) = key(name).expect("a known key");
        match check(key, v, &got) {
            Ok(v) => layer.0.push((i, v, Origin::Cli(key.flag()))),
            Err(e) => errors.push(format!("{}: {e}", key.flag())),
        }
    }
    let overlay_options = [
        "bootstrap",
        "lan_beacon",
        "overlay_degree",
        "routing_table",
        "search_ttl",
    ];
    if a.no_overlay
        && layer
            .0
            .iter()
            .any(|(i, _, _)| overlay_options.contains(&KEYS[*i].name))
    {
        errors.push(
            "--no-overlay turns the discovery overlay off; drop it or the overlay options".into(),
        );
    }
    if a.no_dht && !a.dht_bootstrap.is_empty() {
        errors.push("--no-dht turns the DHT off; drop it or --dht-bootstrap".into());
    }
    if errors.is_empty() {
        Ok(layer)
    } else {
        Err(errors)
    }
}

/// The effective configuration: one value per key and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file read, if any.
    pub file: Option<PathBuf>,
    values: Vec<(Value, Origin)>,
}

impl Config {
    /// Later layers win; `layers[0]` must be [`defaults`].
    pub fn resolve(file: Option<PathBuf>, layers: &[&Layer]) -> Config {
        let mut values: Vec<Option<(Value, Origin)>> = vec![None; KEYS.len()];
        for layer in layers {
            for (i, v, o) in &layer.0 {
                values[*i] = Some((v.clone(), o.clone()));
            }
        }
        Config {
            file,
            values: values
                .into_iter()
                .map(|v| v.expect("the defaults set every key"))
                .collect(),
        }
    }

    pub fn value(&self, name: &str) -> &Value {
        &self.values[index(name)].0
    }

    pub fn origin(&self, name: &str) -> &Origin {
        &self.values[index(name)].1
    }

    pub fn addr(&self, name: &str) -> SocketAddr {
        match self.value(name) {
            Value::Addr(a) => *a,
            v => panic!("{name} is not an address: {v:?}"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        match self.value(name) {
            Value::Path(p) => p.clone(),
            v => panic!("{name} is not a path: {v:?}"),
        }
    }

    pub fn num(&self, name: &str) -> u64 {
        match self.value(name) {
            Value::Num(n) => *n,
            v => panic!("{name} is not a number: {v:?}"),
        }
    }

    pub fn flag(&self, name: &str) -> bool {
        match self.value(name) {
            Value::Bool(b) => *b,
            v => panic!("{name} is not a boolean: {v:?}"),
        }
    }

    pub fn list(&self, name: &str) -> Vec<String> {
        match self.value(name) {
            Value::List(l) => l.clone(),
            v => panic!("{name} is not a list: {v:?}"),
        }
    }

    pub fn text(&self, name: &str) -> String {
        match self.value(name) {
            Value::Text(t) => t.clone(),
            v => panic!("{name} is not text: {v:?}"),
        }
    }

    /// The value of `name` as `config show` writes it.
    pub fn show_value(&self, name: &str) -> String {
        let (_, k) = key(name).expect("a known key");
        to_toml(k.kind, self.value(name))
    }

    /// `peerlet config show`: valid TOML, every key, each with its help
    /// line and where its value came from.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        out.push_str("# peerlet daemon: the effective configuration.\n");
        match &self.file {
            Some(f) => {
                let _ = writeln!(out, "# File: {}", f.display());
            }
            None => {
                let _ = writeln!(out, "# File: none ({DEFAULT_FILE} does not exist)");
            }
        }
        out.push_str("# Precedence: command line > environment (PEERLET_*) > file > defaults.\n");
        for (k, (v, o)) in KEYS.iter().zip(&self.values) {
            let _ = write!(
                out,
                "\n# {}\n{} = {}  # {}\n",
                k.help,
                k.name,
                to_toml(k.kind, v),
                o.describe()
            );
        }
        out
    }

    /// `peerlet config show --json`: `{"file": PATH or null, "keys":
    /// {NAME: {"value", "origin", "line" | "variable" | "option"}}}`,
    /// values as numbers (sizes and rates in bytes), booleans, strings and
    /// lists of strings.
    pub fn to_json(&self) -> crate::json::Json {
        use crate::json::Json;
        let mut keys = Json::obj();
        for (k, (v, o)) in KEYS.iter().zip(&self.values) {
            let value = match v {
                Value::Addr(a) => Json::from(a.to_string()),
                Value::Path(p) => Json::from(p.display().to_string()),
                Value::Num(n) => Json::from(*n),
                Value::Bool(b) => Json::from(*b),
                Value::List(l) => Json::Arr(l.iter().map(|s| Json::from(s.as_str())).collect()),
                Value::Text(t) => Json::from(t.as_str()),
            };
            let entry = Json::obj().with("value", value);
            let entry = match o {
                Origin::Default => entry.with("origin", "default"),
                Origin::File(line) => entry.with("origin", "file").with("line", *line),
                Origin::Env(var) => entry
                    .with("origin", "environment")
                    .with("variable", var.as_str()),
                Origin::Cli(flag) => entry
                    .with("origin", "command line")
                    .with("option", flag.as_str()),
            };
            keys = keys.with(k.name, entry);
        }
        let file = match &self.file {
            Some(f) => Json::from(f.display().to_string()),
            None => Json::Null,
        };
        Json::obj().with("file", file).with("keys", keys)
    }

    /// The engine's settings and the control API address. Reads (or, the
    /// first time, creates) the node key in the state directory.
    pub fn engine_config(&self) -> Result<(EngineConfig, SocketAddr), Error> {
        let state_dir = self.path("state_dir");
        let mut c = EngineConfig::new(
            self.addr("listen"),
            self.path("download_dir"),
            state_dir.clone(),
        );
        c.download_rate_limit = self.num("download_limit");
        c.upload_rate_limit = self.num("upload_limit");
        c.memory_budget = self.num("memory_limit");
        if let Some(w) = Some(self.num("workers")).filter(|&w| w > 0) {
            c.workers = w as usize;
        }
        c.disk_retry = Duration::from_secs(self.num("disk_retry"));
        c.checkpoint_bytes = self.num("checkpoint_mib") << 20;
        c.max_connections = self.num("max_connections") as usize;
        c.max_connections_per_torrent = self.num("max_connections_per_torrent") as usize;
        c.max_connections_per_ip = self.num("max_connections_per_ip") as usize;
        c.max_open_files = self.num("max_open_files") as usize;
        c.storage_factory = crate::net::file_storage_factory(c.max_open_files);
        c.tracker_numwant = u32::try_from(self.num("tracker_numwant")).unwrap_or(u32::MAX);
        c.overlay.enabled = self.flag("overlay");
        // The node id is shown by `peerlet status` even with the overlay off.
        let key = crate::state::load_node_key(&state_dir)?;
        let secret_file = self.path("network_secret");
        if !secret_file.as_os_str().is_empty() {
            let secret = crate::state::load_network_secret(&secret_file)?;
            let keys = self.list("allowed_nodes");
            let allowed = (!keys.is_empty()).then(|| {
                keys.iter()
                    .filter_map(|k| crate::private::parse_hex32(k))
                    .collect()
            });
            c.private = Some(std::sync::Arc::new(crate::private::PrivateNetwork::new(
                &secret,
                *key.secret_bytes(),
                allowed,
            )));
        } else if !self.list("allowed_nodes").is_empty() {
            return Err(Error::AllowedNodesNeedSecret);
        }
        c.overlay.key = Some(key);
        // Never in a private network: its torrents are ours alone.
        c.dht.enabled = self.flag("dht") && c.private.is_none();
        c.dht.bootstrap = self.list("dht_bootstrap");
        let ca_file = self.path("tls_ca_file");
        c.tls_roots = std::sync::Arc::new(net::system_tls_roots(
            (!ca_file.as_os_str().is_empty()).then_some(ca_file),
        ));
        if c.overlay.enabled {
            c.overlay.bootstrap = self.list("bootstrap");
            if self.flag("lan_discovery") {
                c.overlay.lan = Some(net::LanDiscovery {
                    target: self.addr("lan_beacon"),
                    interval: Duration::from_secs(self.num("beacon_interval")),
                });
            }
            c.overlay.degree = self.num("overlay_degree") as usize;
            c.overlay.capacity = self.num("routing_table") as usize;
            c.overlay.ttl = self.num("search_ttl") as u8;
        }
        Ok((c, self.addr("api")))
    }
}

/// Descriptors the daemon needs besides one per peer connection and one
/// per torrent: listener, UDP, epoll, waker, control API, state files.
const FD_RESERVE: u64 = 64;

/// The process's soft limit on open files (`ulimit -n`, systemd's
/// `LimitNOFILE=`), from `/proc/self/limits`; `None` when unknown or
/// unlimited.
pub fn soft_fd_limit() -> Option<u64> {
    let bytes = crate::storage::read_limited(Path::new("/proc/self/limits"), 64 << 10).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    text.lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A warning when `max_connections` peer connections and
/// `max_open_files` data files (all torrents share them) would not fit
/// under the soft descriptor limit; past it, accepting fails with "Too many
/// open files" and so do checks and state saves.
pub fn fd_limit_warning(
    max_connections: usize,
    max_open_files: usize,
    limit: Option<u64>,
) -> Option<String> {
    let limit = limit?;
    let need = max_connections as u64 + max_open_files as u64 + FD_RESERVE;
    (need > limit).then(|| {
        format!(
            "max_connections = {max_connections} and max_open_files = {max_open_files} need about {need} file \
             descriptors, but the limit is {limit}: raise it (LimitNOFILE= in the systemd unit, ulimit -n) or \
             lower them, or checks, state saves and connections will fail with \"Too many open files\""
        )
    })
}

/// Which file to read: `--config`, else `$PEERLET_CONFIG`, else
/// [`DEFAULT_FILE`] if it exists. The second part says how it was chosen.
pub fn choose_file(given: Option<&Path>, env: Option<OsString>) -> Option<(PathBuf, &'static str)> {
    if let Some(p) = given {
        return Some((p.to_path_buf(), "--config"));
    }
    if let Some(p) = env.filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(p), CONFIG_ENV));
    }
    let d = Path::new(DEFAULT_FILE);
    d.exists()
        .then(|| (d.to_path_buf(), "the default location"))
}

/// Reads and checks a configuration file; `via` says how it was chosen
/// (for the error when it cannot be read). Every problem is one line.
pub fn read_file(path: &Path, via: &str) -> Result<Layer, Vec<String>> {
    let bytes = crate::storage::read_limited(path, MAX_FILE).map_err(|e| {
        let how = if via.is_empty() {
            String::new()
        } else {
            format!(" (from {via})")
        };
        vec![format!(
            "cannot read the configuration file{how}: {}",
            with_path(path, &e)
        )]
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| vec![format!("{}: not UTF-8 text", path.display())])?;
    parse_file(&text, &absolute(path))
}

/// "PATH: error", without repeating the path when the error already starts with it.
fn with_path(path: &Path, e: &std::io::Error) -> String {
    let p = path.display().to_string();
    let e = e.to_string();
    if e.starts_with(&p) {
        e
    } else {
        format!("{p}: {e}")
    }
}

fn cwd() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"))
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd().join(p)
    }
}

pub fn env_var(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// Every source for `peerlet daemon` with these options, from the process
/// environment; `cli` is the command line's layer.
fn load_with(config: Option<&Path>, cli: &Layer) -> Result<Config, Vec<String>> {
    let file = choose_file(config, env_var(CONFIG_ENV));
    let mut errors = Vec::new();
    let file_layer = match &file {
        Some((path, via)) => read_file(path, via).unwrap_or_else(|e| {
            errors.extend(e);
            Layer::default()
        }),
        None => Layer::default(),
    };
    let env = env_layer(&env_var, &cwd()).unwrap_or_else(|e| {
        errors.extend(e);
        Layer::default()
    });
    if !errors.is_empty() {
        return Err(errors);
    }
    let data = absolute(&default_data_dir());
    let defaults = defaults(&data);
    let file = file.map(|(p, _)| absolute(&p));
    Ok(Config::resolve(file, &[&defaults, &file_layer, &env, cli]))
}

/// The effective configuration of `peerlet daemon` with these options.
pub fn load(a: &DaemonArgs) -> Result<Config, Vec<String>> {
    let cli = cli_layer(a, &cwd())?;
    load_with(a.config.as_deref(), &cli)
}

/// [`load`] for the daemon itself: one error line (the first problem),
/// the log filter applied, and what [`reload`] needs remembered.
pub fn load_for_daemon(a: &DaemonArgs) -> Result<Config, Error> {
    let cli = cli_layer(a, &cwd()).map_err(Error::Sources)?;
    let config = load_with(a.config.as_deref(), &cli).map_err(Error::Sources)?;
    logging::set_filter(&config.text("log")).map_err(Error::LogFilter)?;
    match &config.file {
        Some(f) => log::info!("configuration file {}", f.display()),
        None => log::info!("no configuration file ({DEFAULT_FILE} does not exist); defaults"),
    }
    reload::remember(a.config.clone(), cli, config.clone());
    Ok(config)
}
