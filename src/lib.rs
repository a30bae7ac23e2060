//! peerlet: a lean peer-to-peer file-sharing daemon for small machines.
//!
//! Layers, bottom up (dependencies point one way only):
//!
//! - [`bencode`]: strict, limited decoding of untrusted bytes; encoding.
//! - [`metainfo`]: .torrent files and magnet links, validated into types that
//!   cannot be wrong ([`metainfo::Torrent`], [`metainfo::Lengths`],
//!   [`metainfo::PieceIdx`]); path sanitisation; building new torrents.
//! - [`wire`]: peer wire protocol messages (parse/emit, size limits).
//! - [`swarm`]: sans-IO torrent logic: picker, choker, per-peer protocol state.
//! - [`tracker`]: sans-IO tracker protocols (UDP, HTTP) and the announcer.
//! - [`overlay`]: sans-IO discovery overlay: routing table, content table, flooded search.
//! - [`dht`]: sans-IO Mainline DHT node (BEP 5/32/42/43): KRPC, routing table,
//!   peer store, iterative lookups and announces.
//! - [`sort`]: stable sorting with one copy of the sorting code.
//! - [`http`]: what the tracker client and the control API share of HTTP
//!   and URLs (%-encoding, timeouts); pure.
//! - [`hash`]: SHA-1 behind one interface (RustCrypto's where the CPU has SHA-1
//!   instructions, sha1_smol elsewhere).
//! - [`storage`]: the only module that touches the filesystem: pieces mapped
//!   onto files, positioned reads and writes, an LRU of open files, directory walks.
//! - [`workers`]: the worker pool that hashes and does disk I/O off the network thread.
//! - [`net`]: the mio event loop: sockets, torrents, jobs, resume checkpoints.
//! - [`config`]: the daemon's configuration (TOML file, `PEERLET_*`
//!   environment, command line), `peerlet config`, reload on SIGHUP.
//! - [`daemon`]: the state directory, threads, signals.
//! - [`systemd`]: sd_notify (ready, status, watchdog, stopping), journald log
//!   format, the bound on an orderly stop.
//! - [`control`]: the local HTTP + JSON control API and the CLI client of it.
//! - [`cli`]: command-line parsing and the subcommands.
//!
//! `bencode`, `metainfo`, `overlay` and `hash` do no I/O and never read the clock.
#![deny(unsafe_code)]

pub mod bencode;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dht;
pub mod hash;
pub mod http;
pub mod json;
pub mod metainfo;
pub mod net;
pub mod overlay;
pub mod private;
pub mod progress;
pub mod rand;
pub mod resume;
pub mod sort;
pub mod state;
pub mod storage;
pub mod swarm;
pub mod systemd;
pub mod text;
pub mod tls;
pub mod tracker;
pub mod wire;
pub mod workers;
