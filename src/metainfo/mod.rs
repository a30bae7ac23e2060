//! Metainfo (.torrent, BEP 3) and magnet links: parse untrusted bytes, then
//! validate into a [`Torrent`] that cannot be wrong.
//!
//! The info-hash is the SHA-1 of the `info` dictionary's bytes exactly as
//! received (see [`crate::bencode`]). Outside `info` the parser is lenient:
//! a malformed `announce-list` entry is skipped, unknown keys (`url-list`,
//! `comment`, anything else) are tolerated. Inside `info` it is strict, since
//! those bytes decide what is written to disk.
//!
//! Supported: single- and multi-file torrents (BEP 3), `private` (BEP 27),
//! `announce-list` tiers (BEP 12), `url-list` (BEP 19, kept for display).

mod build;
mod lengths;
mod magnet;
pub mod path;

pub use build::{auto_piece_length, build_info, InfoFile, TorrentBuilder};
pub use lengths::{BlockIdx, FileMap, FileSlice, Lengths, PieceIdx, BLOCK_SIZE};
pub use magnet::{percent_decode, Magnet, MagnetError};

use crate::bencode::{self, Dict, Limits, Node};
use crate::hash::{self, Digest};

/// Largest .torrent file read (libtorrent's limit).
pub const MAX_TORRENT_FILE: u64 = 10_000_000;
use path::PathError;
use std::fmt;

/// Smallest accepted piece length (one block).
pub const MIN_PIECE_LENGTH: u32 = 16 * 1024;
/// Largest accepted piece length.
pub const MAX_PIECE_LENGTH: u32 = 64 * 1024 * 1024;
/// Most pieces accepted (libtorrent's limit).
pub const MAX_PIECES: u32 = 2_097_152;
/// Most BEP 5 `nodes` read from a .torrent file.
pub const MAX_NODES: usize = 64;

/// The SHA-1 of a torrent's info dictionary.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub Digest);

impl InfoHash {
    pub fn to_hex(&self) -> String {
        hash::to_hex(&self.0)
    }

    /// 40 hex digits or 32 base32 characters (as in magnet links).
    pub fn parse(s: &str) -> Option<InfoHash> {
        match s.len() {
            40 => hash::from_hex(s).map(InfoHash),
            32 => magnet::base32_decode(s).map(InfoHash),
            _ => None,
        }
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.to_hex())
    }
}

/// One file of a torrent, with its checked path relative to the torrent's root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// Checked components (see [`path`]). For a single-file torrent: `[name]`.
    pub path: Vec<String>,
    pub length: u64,
    /// BEP 47 padding file (`attr` contains `p`).
    pub pad: bool,
}

/// A validated torrent.
#[derive(Clone, Debug)]
pub struct Torrent {
    pub info_hash: InfoHash,
    /// The checked `name`: the file name (single file) or the top directory.
    pub name: String,
    /// True when the info dictionary has a `files` list.
    pub multi_file: bool,
    pub files: Vec<FileInfo>,
    pub lengths: Lengths,
    pub file_map: FileMap,
    pieces: Vec<u8>,
    pub private: bool,
    pub announce: Option<String>,
    /// BEP 12 tiers; when absent, `announce` alone.
    pub announce_list: Vec<Vec<String>>,
    pub url_list: Vec<String>,
    /// BEP 5 `nodes`: DHT nodes to start from, as `host:port` (at most
    /// [`MAX_NODES`]; malformed entries skipped).
    pub nodes: Vec<String>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
    /// The info dictionary as received (served to peers for BEP 9).
    pub info_bytes: Vec<u8>,
}

impl Torrent {
    /// Parses and validates a .torrent file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Torrent, Error> {
        let doc = bencode::decode(bytes, Limits::METAINFO).map_err(Error::Bencode)?;
        let root = doc.root().as_dict().ok_or(Error::NotDict)?;
        let info = root.get(b"info").ok_or(Error::Missing("info"))?;
        let mut t = Torrent::from_info_node(info)?;
        t.read_outer(&root);
        Ok(t)
    }

    /// Validates a bare info dictionary (as fetched with BEP 9).
    pub fn from_info_bytes(info_bytes: &[u8]) -> Result<Torrent, Error> {
        let doc = bencode::decode(info_bytes, Limits::METAINFO).map_err(Error::Bencode)?;
        Torrent::from_info_node(doc.root())
    }

    fn from_info_node(info: Node<'_, '_>) -> Result<Torrent, Error> {
        let info_bytes = info.raw();
        let info_hash = InfoHash(hash::sha1(info_bytes));
        let info = info.as_dict().ok_or(Error::WrongType {
            key: "info",
            expected: "a dictionary",
            found: info.kind_name(),
        })?;

        let name_raw = bytes_field(&info, "name")?.ok_or(Error::Missing("name"))?;
        let name = path::check_component(name_raw).map_err(|e| Error::BadName {
            name: lossy(name_raw),
            reason: e,
        })?;

        let piece_length =
            int_field(&info, "piece length")?.ok_or(Error::Missing("piece length"))?;
        if piece_length < i64::from(MIN_PIECE_LENGTH) || piece_length > i64::from(MAX_PIECE_LENGTH)
        {
            return Err(Error::PieceLength(piece_length));
        }
        let piece_length = piece_length as u32;

        let pieces = bytes_field(&info, "pieces")?.ok_or(Error::Missing("pieces"))?;
        if pieces.is_empty() || pieces.len() % 20 != 0 {
            return Err(Error::PiecesNotMultipleOf20(pieces.len()));
        }

        let (multi_file, files) = match (info.get(b"length"), info.get(b"files")) {
            (Some(_), Some(_)) => return Err(Error::LengthAndFiles),
            (None, None) => return Err(Error::Missing("length' or 'files")),
            (Some(len), None) => {
                let length = len.as_int().ok_or(Error::WrongType {
                    key: "length",
                    expected: "an integer",
                    found: len.kind_name(),
                })?;
                let length = u64::try_from(length).map_err(|_| Error::BadFileLength {
                    file: name.clone(),
                    length,
                })?;
                (
                    false,
                    vec![FileInfo {
                        path: vec![name.clone()],
                        length,
                        pad: false,
                    }],
                )
            }
            (None, Some(list)) => (true, parse_files(list)?),
        };

        let total = files
            .iter()
            .try_fold(0u64, |acc, f| acc.checked_add(f.length))
            .ok_or(Error::TotalTooLarge)?;
        if total == 0 {
            return Err(Error::NoData);
        }
        let lengths = Lengths::new(total, piece_length).ok_or(Error::TotalTooLarge)?;
        let n_hashes = pieces.len() / 20;
        if lengths.n_pieces() > MAX_PIECES {
            return Err(Error::TooManyPieces(lengths.n_pieces()));
        }
        if n_hashes != lengths.n_pieces() as usize {
            return Err(Error::PieceCountMismatch {
                hashes: n_hashes,
                needed: lengths.n_pieces(),
                total,
                piece_length,
            });
        }

        let private = matches!(info.get(b"private").and_then(|n| n.as_int()), Some(1));
        let file_map = FileMap::new(files.iter().map(|f| f.length));
        Ok(Torrent {
            info_hash,
            name,
            multi_file,
            files,
            lengths,
            file_map,
            pieces: pieces.to_vec(),
            private,
            announce: None,
            announce_list: Vec::new(),
            url_list: Vec::new(),
            nodes: Vec::new(),
            comment: None,
            created_by: None,
            creation_date: None,
            info_bytes: info_bytes.to_vec(),
        })
    }

    /// Reads the keys outside `info`, leniently.
    fn read_outer(&mut self, root: &Dict<'_, '_>) {
        let text = |key: &[u8]| root.get(key).and_then(|n| n.as_bytes()).map(lossy);
        self.announce = text(b"announce").filter(|s| !s.is_empty());
        self.comment = text(b"comment");
        self.created_by = text(b"created by");
        self.creation_date = root.get(b"creation date").and_then(|n| n.as_int());
        if let Some(tiers) = root.get(b"announce-list").and_then(|n| n.as_list()) {
            for tier in tiers.filter_map(|t| t.as_list()) {
                let urls: Vec<String> = tier
                    .filter_map(|u| u.as_bytes())
                    .map(lossy)
                    .filter(|u| !u.is_empty())
                    .collect();
                if !urls.is_empty() {
                    self.announce_list.push(urls);
                }
            }
        }
        if self.announce_list.is_empty() {
            if let Some(a) = &self.announce {
                self.announce_list.push(vec![a.clone()]);
            }
        }
        self.read_nodes(root);
        match root.get(b"url-list") {
            Some(n) if n.as_bytes().is_some() => self.url_list.extend(n.as_bytes().map(lossy)),
            Some(n) => self.url_list.extend(
                n.as_list()
                    .into_iter()
                    .flatten()
                    .filter_map(|u| u.as_bytes())
                    .map(lossy),
            ),
            None => {}
        }
    }

    /// BEP 5 `nodes`: `[["host", port], ...]`.
    fn read_nodes(&mut self, root: &Dict<'_, '_>) {
        let Some(list) = root.get(b"nodes").and_then(|n| n.as_list()) else {
            return;
        };
        for pair in list.filter_map(|p| p.as_list()) {
            if self.nodes.len() >= MAX_NODES {
                break;
            }
            let mut it = pair;
            let (Some(host), Some(port)) = (
                it.next().and_then(|h| h.as_bytes()),
                it.next().and_then(|p| p.as_int()),
            ) else {
                continue;
            };
            let host = lossy(host);
            let ok_host = !host.is_empty()
                && host.len() <= 253
                && !host.contains(|c: char| c.is_whitespace() || c.is_control() || c == '/');
            if !ok_host || !(1..=65535).contains(&port) {
                continue;
            }
            self.nodes.push(if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            });
        }
    }

    /// The expected SHA-1 of a piece.
    pub fn piece_hash(&self, piece: PieceIdx) -> Digest {
        let at = piece.get() as usize * 20;
        let mut out = [0u8; 20];
        // Validation proved one hash per piece.
        if let Some(h) = self.pieces.get(at..at + 20) {
            out.copy_from_slice(h);
        }
        out
    }

    pub fn total_length(&self) -> u64 {
        self.lengths.total_length()
    }

    /// Every tracker URL, tiers flattened, without duplicates.
    pub fn trackers(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for url in self.announce_list.iter().flatten() {
            if !out.contains(url) {
                out.push(url.clone());
            }
        }
        out
    }

    /// The path of file `idx` relative to the download directory:
    /// `name` for a single file, `name/path...` for a multi-file torrent.
    pub fn relative_path(&self, file_idx: usize) -> Vec<String> {
        let Some(file) = self.files.get(file_idx) else {
            return Vec::new();
        };
        if self.multi_file {
            let mut p = vec![self.name.clone()];
            p.extend(file.path.iter().cloned());
            p
        } else {
            vec![self.name.clone()]
        }
    }

    /// A magnet link for this torrent.
    pub fn magnet(&self) -> Magnet {
        Magnet {
            info_hash: self.info_hash,
            name: Some(self.name.clone()),
            trackers: self.trackers(),
            peers: Vec::new(),
        }
    }
}

fn parse_files(list: Node<'_, '_>) -> Result<Vec<FileInfo>, Error> {
    let items = list.as_list().ok_or(Error::WrongType {
        key: "files",
        expected: "a list",
        found: list.kind_name(),
    })?;
    let mut files = Vec::new();
    for (idx, item) in items.enumerate() {
        let entry = item.as_dict().ok_or(Error::BadFileEntry(idx))?;
        let length = entry
            .get(b"length")
            .and_then(|n| n.as_int())
            .ok_or(Error::BadFileEntry(idx))?;
        let path_node = entry
            .get(b"path")
            .and_then(|n| n.as_list())
            .ok_or(Error::BadFileEntry(idx))?;
        let mut raw_components = Vec::new();
        for c in path_node {
            raw_components.push(c.as_bytes().ok_or(Error::BadFileEntry(idx))?);
        }
        let shown = raw_components
            .iter()
            .map(|c| lossy(c))
            .collect::<Vec<_>>()
            .join("/");
        let path = path::check_path(raw_components).map_err(|reason| Error::BadPath {
            path: shown.clone(),
            reason,
        })?;
        let length = u64::try_from(length).map_err(|_| Error::BadFileLength {
            file: shown,
            length,
        })?;
        let pad = entry
            .get(b"attr")
            .and_then(|a| a.as_bytes())
            .is_some_and(|a| a.contains(&b'p'));
        files.push(FileInfo { path, length, pad });
    }
    if files.is_empty() {
        return Err(Error::NoFiles);
    }
    check_unique(&files)?;
    Ok(files)
}

/// No two files share a path, and no file is also a directory of another.
fn check_unique(files: &[FileInfo]) -> Result<(), Error> {
    use std::collections::HashSet;
    let mut file_paths: HashSet<&[String]> = HashSet::with_capacity(files.len());
    for f in files {
        if !file_paths.insert(&f.path) {
            return Err(Error::DuplicatePath(path::display(&f.path)));
        }
    }
    let mut dirs: HashSet<&[String]> = HashSet::new();
    for f in files {
        for depth in 1..f.path.len() {
            let dir = &f.path[..depth];
            if !dirs.insert(dir) {
                continue;
            }
            if file_paths.contains(dir) {
                return Err(Error::FileIsDirectory(path::display(dir)));
            }
        }
    }
    Ok(())
}

fn bytes_field<'a>(d: &Dict<'_, 'a>, key: &'static str) -> Result<Option<&'a [u8]>, Error> {
    match d.get(key.as_bytes()) {
        None => Ok(None),
        Some(n) => n.as_bytes().map(Some).ok_or(Error::WrongType {
            key,
            expected: "a string",
            found: n.kind_name(),
        }),
    }
}

fn int_field(d: &Dict<'_, '_>, key: &'static str) -> Result<Option<i64>, Error> {
    match d.get(key.as_bytes()) {
        None => Ok(None),
        Some(n) => n.as_int().map(Some).ok_or(Error::WrongType {
            key,
            expected: "an integer",
            found: n.kind_name(),
        }),
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Why a .torrent was refused. Each message says what is wrong in terms a
/// user can check against the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    Bencode(bencode::Error),
    NotDict,
    Missing(&'static str),
    WrongType {
        key: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    BadName {
        name: String,
        reason: PathError,
    },
    BadPath {
        path: String,
        reason: PathError,
    },
    PieceLength(i64),
    PiecesNotMultipleOf20(usize),
    PieceCountMismatch {
        hashes: usize,
        needed: u32,
        total: u64,
        piece_length: u32,
    },
    TooManyPieces(u32),
    LengthAndFiles,
    NoFiles,
    BadFileEntry(usize),
    BadFileLength {
        file: String,
        length: i64,
    },
    DuplicatePath(String),
    FileIsDirectory(String),
    NoData,
    TotalTooLarge,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Bencode(e) => write!(f, "not a valid .torrent file: {e}"),
            Error::NotDict => write!(f, "not a valid .torrent file: the top level is not a dictionary"),
            Error::Missing(key) => write!(f, "'{key}' is missing"),
            Error::WrongType { key, expected, found } => write!(f, "'{key}' should be {expected}, found a {found}"),
            Error::BadName { name, reason } => write!(f, "unsafe torrent name '{name}': {reason}"),
            Error::BadPath { path, reason } => write!(f, "unsafe file path '{path}': {reason}"),
            Error::PieceLength(n) => write!(
                f,
                "'piece length' {n} is out of range (must be {MIN_PIECE_LENGTH} to {MAX_PIECE_LENGTH} bytes)"
            ),
            Error::PiecesNotMultipleOf20(n) => {
                write!(f, "'pieces' is {n} bytes, which is not a positive multiple of 20 (one SHA-1 per piece)")
            }
            Error::PieceCountMismatch { hashes, needed, total, piece_length } => write!(
                f,
                "'pieces' and torrent size mismatch: {hashes} piece hashes, but {total} bytes at piece length {piece_length} need {needed}"
            ),
            Error::TooManyPieces(n) => write!(f, "{n} pieces is more than the limit of {MAX_PIECES}"),
            Error::LengthAndFiles => write!(f, "the info dictionary has both 'length' and 'files'"),
            Error::NoFiles => write!(f, "'files' is empty"),
            Error::BadFileEntry(i) => write!(f, "entry {i} of 'files' needs an integer 'length' and a 'path' list of strings"),
            Error::BadFileLength { file, length } => write!(f, "file '{file}' has a negative length {length}"),
            Error::DuplicatePath(p) => write!(f, "file '{p}' appears twice"),
            Error::FileIsDirectory(p) => write!(f, "'{p}' is both a file and a directory"),
            Error::NoData => write!(f, "the torrent holds no data (total size 0)"),
            Error::TotalTooLarge => write!(f, "the total size of the files is too large"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::Value;

    fn info(extra: &[(&str, Value)]) -> Value {
        let mut d = Value::dict();
        d.insert("name", Value::str("file.bin"));
        d.insert("piece length", Value::Int(16384));
        d.insert("length", Value::Int(20000));
        d.insert("pieces", Value::Bytes(vec![7u8; 40]));
        for (k, v) in extra {
            d.insert(k, v.clone());
        }
        d
    }

    fn torrent(info: Value) -> Vec<u8> {
        let mut t = Value::dict();
        t.insert("announce", Value::str("http://tracker/announce"));
        t.insert("info", info);
        t.to_bytes()
    }

    #[test]
    fn single_file() {
        let bytes = torrent(info(&[]));
        let t = Torrent::from_bytes(&bytes).unwrap();
        assert_eq!(t.name, "file.bin");
        assert_eq!(t.total_length(), 20000);
        assert_eq!(t.lengths.n_pieces(), 2);
        assert!(!t.multi_file);
        assert_eq!(t.trackers(), vec!["http://tracker/announce".to_string()]);
        assert_eq!(t.info_hash.0, hash::sha1(&info(&[]).to_bytes()));
        assert_eq!(t.piece_hash(t.lengths.last_piece()), [7u8; 20]);
        assert_eq!(t.relative_path(0), vec!["file.bin".to_string()]);
    }

    #[test]
    fn dht_nodes_are_read_and_bad_ones_skipped() {
        let pair = |h: &str, p: i64| Value::List(vec![Value::str(h), Value::Int(p)]);
        let mut t = Value::dict();
        t.insert("info", info(&[]));
        t.insert(
            "nodes",
            Value::List(vec![
                pair("127.0.0.1", 6881),
                pair("::1", 7000),
                pair("router.example", 6881),
                pair("bad host", 1),
                pair("127.0.0.2", 0),
                pair("127.0.0.3", 70000),
                Value::Int(5),
                Value::List(vec![Value::str("127.0.0.4")]),
            ]),
        );
        let t = Torrent::from_bytes(&t.to_bytes()).unwrap();
        assert_eq!(
            t.nodes,
            vec!["127.0.0.1:6881", "[::1]:7000", "router.example:6881"]
        );
        let many = Value::List((0..100).map(|i| pair("10.0.0.1", 1000 + i)).collect());
        let mut t = Value::dict();
        t.insert("info", info(&[]));
        t.insert("nodes", many);
        assert_eq!(
            Torrent::from_bytes(&t.to_bytes()).unwrap().nodes.len(),
            MAX_NODES
        );
    }

    #[test]
    fn errors() {
        let check = |extra: &[(&str, Value)], msg: &str| {
            let e = Torrent::from_bytes(&torrent(info(extra))).unwrap_err();
            assert_eq!(e.to_string(), msg);
        };
        check(
            &[("pieces", Value::Bytes(vec![0; 41]))],
            "'pieces' is 41 bytes, which is not a positive multiple of 20 (one SHA-1 per piece)",
        );
        check(
            &[("pieces", Value::Bytes(vec![0; 60]))],
            "'pieces' and torrent size mismatch: 3 piece hashes, but 20000 bytes at piece length 16384 need 2",
        );
        check(
            &[("piece length", Value::Int(0))],
            "'piece length' 0 is out of range (must be 16384 to 67108864 bytes)",
        );
        check(
            &[("name", Value::str(".."))],
            "unsafe torrent name '..': a '..' component, which would leave the download directory",
        );
        check(
            &[("length", Value::Int(0))],
            "the torrent holds no data (total size 0)",
        );
        check(
            &[("length", Value::str("x"))],
            "'length' should be an integer, found a string",
        );
    }

    #[test]
    fn name_too_long_once_made_utf8() {
        // Caught by the fuzz/metainfo_parse invariants: 100 invalid bytes
        // pass a raw-length check but become a 300-byte name that
        // join_under refuses.
        let e = Torrent::from_bytes(&torrent(info(&[("name", Value::Bytes(vec![0xff; 100]))])))
            .unwrap_err();
        assert!(matches!(
            e,
            Error::BadName {
                reason: PathError::TooLong(300),
                ..
            }
        ));
    }
}
