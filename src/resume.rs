//! The resume file of one torrent: which pieces are verified *and durable*,
//! where the data lives, and what the user set (peers, paused).
//!
//! Layout in the state directory (`torrents/`):
//!
//! - `<hex>.torrent` — the metainfo (written once).
//! - `<hex>.resume` — this record, bencoded, written whole and atomically
//!   (temporary file, fsync, rename, fsync dir) and only after the piece
//!   data it lists was fdatasync'ed. A piece listed here is never re-hashed
//!   after a crash unless its file changed size or vanished.
//! - `<hex>.journal` — 4-byte big-endian piece numbers appended as pieces
//!   pass their hash, without fsync. It is a *hint*: after an unclean stop
//!   the pieces it names that the resume file lacks are re-hashed (never
//!   trusted), so a crash costs only the pieces that were in flight.
//!
//! - `<hex>.peers` — the peers given by hand ([`ManualPeers`]), written
//!   atomically whenever they change. The resume record lists them too;
//!   this small file keeps them when the record is damaged (the torrent
//!   then comes back by a recheck, its peers from here).
//!
//! - `<hex>.magnet` — a torrent added by magnet link whose metadata has not
//!   arrived yet ([`MagnetRecord`]: the link, directory, peers, paused),
//!   written atomically when it is added or paused/resumed, removed when
//!   the `.torrent` made from its metadata is saved.
//!
//! A `clean` marker beside `torrents/` says the last stop was orderly.
//!
//! Decoding takes untrusted bytes (a corrupted file): any problem is an
//! error, and the caller falls back to a recheck.

use crate::bencode::{self, Limits, Value};
use crate::metainfo::InfoHash;
use std::path::PathBuf;

pub const VERSION: i64 = 1;

/// One torrent's resume record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    pub info_hash: InfoHash,
    /// The download directory (data at `dir/<name>`).
    pub dir: PathBuf,
    /// The trusted directory `dir` lies in, every open resolved beneath it
    /// (`storage::DataDir`); `None` in records written before anchors.
    pub anchor: Option<PathBuf>,
    /// The anchor is a directory the local user named (a token-holding
    /// caller on loopback), not the download directory or an allowed one.
    pub local_anchor: bool,
    /// Bitfield of verified, durable pieces.
    pub pieces: Vec<u8>,
    /// Peers given by hand, `host:port`.
    pub peers: Vec<String>,
    pub paused: bool,
    /// Size of each file when the record was written (resume sanity check).
    pub file_sizes: Vec<u64>,
    /// Modification time of each file (ns since the epoch, 0 unknown) when
    /// the record was written; after a clean stop a change means the data
    /// was touched while peerlet was not running.
    pub file_mtimes: Vec<i64>,
    /// The torrent's own rate limits, bytes per second (0: none).
    pub download_limit: u64,
    pub upload_limit: u64,
    /// Bitfield (empty: none) of pieces to re-hash at the next start
    /// whatever the files look like: pieces a check found suspect and had
    /// not cleared when this was written (they are not in `pieces`).
    pub recheck: Vec<u8>,
}

impl Resume {
    pub fn encode(&self) -> Vec<u8> {
        let mut d = Value::dict();
        d.insert("version", Value::Int(VERSION));
        d.insert("info hash", Value::Bytes(self.info_hash.0.to_vec()));
        d.insert("download limit", Value::Int(self.download_limit as i64));
        d.insert("upload limit", Value::Int(self.upload_limit as i64));
        d.insert(
            "dir",
            Value::Bytes(self.dir.as_os_str().as_encoded_bytes().to_vec()),
        );
        encode_anchor(&mut d, self.anchor.as_ref(), self.local_anchor);
        d.insert("pieces", Value::Bytes(self.pieces.clone()));
        if !self.recheck.is_empty() {
            d.insert("recheck", Value::Bytes(self.recheck.clone()));
        }
        d.insert(
            "peers",
            Value::List(self.peers.iter().map(|p| Value::str(p)).collect()),
        );
        d.insert("paused", Value::Int(i64::from(self.paused)));
        d.insert(
            "file sizes",
            Value::List(
                self.file_sizes
                    .iter()
                    .map(|&s| Value::Int(s as i64))
                    .collect(),
            ),
        );
        d.insert(
            "file mtimes",
            Value::List(self.file_mtimes.iter().map(|&m| Value::Int(m)).collect()),
        );
        d.to_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Resume, String> {
        let limits = Limits {
            max_input: 16 << 20,
            max_depth: 4,
            max_tokens: 2_000_000,
            max_string: 8 << 20,
        };
        let doc = bencode::decode(bytes, limits).map_err(|e| e.to_string())?;
        let d = doc.root().as_dict().ok_or("not a dictionary")?;
        let version = d
            .get(b"version")
            .and_then(|n| n.as_int())
            .ok_or("no version")?;
        if version != VERSION {
            return Err(format!("unknown resume version {version}"));
        }
        let hash = d
            .get(b"info hash")
            .and_then(|n| n.as_bytes())
            .ok_or("no info hash")?;
        let info_hash = InfoHash(hash.try_into().map_err(|_| "bad info hash")?);
        let dir = d.get(b"dir").and_then(|n| n.as_str()).ok_or("no dir")?;
        let pieces = d
            .get(b"pieces")
            .and_then(|n| n.as_bytes())
            .ok_or("no pieces")?
            .to_vec();
        let peers = match d.get(b"peers").and_then(|n| n.as_list()) {
            Some(list) => list
                .filter_map(|p| p.as_str().map(str::to_string))
                .take(1000)
                .collect(),
            None => Vec::new(),
        };
        let paused = d.get(b"paused").and_then(|n| n.as_int()) == Some(1);
        let file_sizes = match d.get(b"file sizes").and_then(|n| n.as_list()) {
            Some(list) => list
                .map(|n| n.as_int().and_then(|i| u64::try_from(i).ok()))
                .collect::<Option<Vec<u64>>>()
                .ok_or("bad file sizes")?,
            None => Vec::new(),
        };
        let file_mtimes = match d.get(b"file mtimes").and_then(|n| n.as_list()) {
            Some(list) => list
                .map(|n| n.as_int())
                .collect::<Option<Vec<i64>>>()
                .ok_or("bad file mtimes")?,
            None => Vec::new(),
        };
        let limit = |key: &[u8]| {
            d.get(key)
                .and_then(|n| n.as_int())
                .and_then(|i| u64::try_from(i).ok())
                .unwrap_or(0)
        };
        let (download_limit, upload_limit) = (limit(b"download limit"), limit(b"upload limit"));
        let (anchor, local_anchor) = decode_anchor(&d)?;
        let recheck = match d.get(b"recheck") {
            Some(n) => n.as_bytes().ok_or("bad recheck")?.to_vec(),
            None => Vec::new(),
        };
        Ok(Resume {
            info_hash,
            dir: PathBuf::from(dir),
            anchor,
            local_anchor,
            pieces,
            peers,
            paused,
            file_sizes,
            file_mtimes,
            download_limit,
            upload_limit,
            recheck,
        })
    }
}

/// A magnet link waiting for its metadata (`<hex>.magnet`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MagnetRecord {
    /// The link as added (its trackers and `x.pe` peers included).
    pub link: String,
    pub dir: PathBuf,
    /// As in [`Resume::anchor`].
    pub anchor: Option<PathBuf>,
    pub local_anchor: bool,
    /// Peers added by hand (`--peer`), `host:port`.
    pub peers: Vec<String>,
    pub paused: bool,
}

/// Largest `.magnet` file read back.
pub const MAX_MAGNET_RECORD: u64 = 256 << 10;

impl MagnetRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut d = Value::dict();
        d.insert("version", Value::Int(VERSION));
        d.insert("link", Value::str(&self.link));
        d.insert(
            "dir",
            Value::Bytes(self.dir.as_os_str().as_encoded_bytes().to_vec()),
        );
        encode_anchor(&mut d, self.anchor.as_ref(), self.local_anchor);
        d.insert(
            "peers",
            Value::List(self.peers.iter().map(|p| Value::str(p)).collect()),
        );
        d.insert("paused", Value::Int(i64::from(self.paused)));
        d.to_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<MagnetRecord, String> {
        let limits = Limits {
            max_input: MAX_MAGNET_RECORD as usize,
            max_depth: 3,
            max_tokens: 10_000,
            max_string: 64 << 10,
        };
        let doc = bencode::decode(bytes, limits).map_err(|e| e.to_string())?;
        let d = doc.root().as_dict().ok_or("not a dictionary")?;
        let version = d.get(b"version").and_then(|n| n.as_int());
        if version != Some(VERSION) {
            return Err(format!("unknown magnet record version {version:?}"));
        }
        let link = d.get(b"link").and_then(|n| n.as_str()).ok_or("no link")?;
        let dir = d.get(b"dir").and_then(|n| n.as_str()).ok_or("no dir")?;
        let peers = match d.get(b"peers").and_then(|n| n.as_list()) {
            Some(list) => list
                .filter_map(|p| p.as_str().map(str::to_string))
                .take(200)
                .collect(),
            None => Vec::new(),
        };
        let (anchor, local_anchor) = decode_anchor(&d)?;
        Ok(MagnetRecord {
            link: link.to_string(),
            dir: PathBuf::from(dir),
            anchor,
            local_anchor,
            peers,
            paused: d.get(b"paused").and_then(|n| n.as_int()) == Some(1),
        })
    }
}

/// The `anchor` and `local anchor` keys (absent: no anchor recorded).
fn encode_anchor(d: &mut Value, anchor: Option<&PathBuf>, local: bool) {
    if let Some(a) = anchor {
        d.insert(
            "anchor",
            Value::Bytes(a.as_os_str().as_encoded_bytes().to_vec()),
        );
        d.insert("local anchor", Value::Int(i64::from(local)));
    }
}

fn decode_anchor(d: &bencode::Dict<'_, '_>) -> Result<(Option<PathBuf>, bool), String> {
    let anchor = match d.get(b"anchor") {
        None => None,
        Some(n) => Some(PathBuf::from(n.as_str().ok_or("bad anchor")?)),
    };
    let local = anchor.is_some() && d.get(b"local anchor").and_then(|n| n.as_int()) == Some(1);
    Ok((anchor, local))
}

/// The peers given by hand to one torrent (`<hex>.peers`), `host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManualPeers {
    pub peers: Vec<String>,
}

/// Largest `.peers` file read back, and most peers kept from it.
pub const MAX_PEERS_FILE: u64 = 64 << 10;
pub const MAX_MANUAL_PEERS: usize = 200;

impl ManualPeers {
    pub fn encode(&self) -> Vec<u8> {
        let mut d = Value::dict();
        d.insert("version", Value::Int(VERSION));
        d.insert(
            "peers",
            Value::List(self.peers.iter().map(|p| Value::str(p)).collect()),
        );
        d.to_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<ManualPeers, String> {
        let limits = Limits {
            max_input: MAX_PEERS_FILE as usize,
            max_depth: 3,
            max_tokens: 10_000,
            max_string: 1 << 10,
        };
        let doc = bencode::decode(bytes, limits).map_err(|e| e.to_string())?;
        let d = doc.root().as_dict().ok_or("not a dictionary")?;
        let version = d.get(b"version").and_then(|n| n.as_int());
        if version != Some(VERSION) {
            return Err(format!("unknown peers file version {version:?}"));
        }
        let peers = d
            .get(b"peers")
            .and_then(|n| n.as_list())
            .ok_or("no peers")?
            .map(|p| p.as_str().map(str::to_string).ok_or("a peer is not text"))
            .take(MAX_MANUAL_PEERS)
            .collect::<Result<Vec<String>, &str>>()?;
        Ok(ManualPeers { peers })
    }
}

/// Piece numbers from journal bytes (a torn last entry is ignored).
pub fn decode_journal(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

pub fn encode_journal(pieces: &[u32]) -> Vec<u8> {
    pieces.iter().flat_map(|p| p.to_be_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magnet_records_round_trip_and_reject_garbage() {
        let r = MagnetRecord {
            link:
                "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&tr=udp%3A%2F%2Ft%3A1"
                    .into(),
            dir: PathBuf::from("/srv/data dir"),
            anchor: Some(PathBuf::from("/srv")),
            local_anchor: true,
            peers: vec!["127.0.0.1:6881".into(), "[::1]:1".into()],
            paused: true,
        };
        assert_eq!(MagnetRecord::decode(&r.encode()).unwrap(), r);
        assert!(MagnetRecord::decode(b"").is_err());
        assert!(MagnetRecord::decode(b"d4:linki3ee").is_err());
        let mut bytes = r.encode();
        bytes.truncate(bytes.len() / 2);
        assert!(MagnetRecord::decode(&bytes).is_err());
    }

    #[test]
    fn manual_peers_round_trip_and_reject_garbage() {
        let r = ManualPeers {
            peers: vec!["127.0.0.1:6881".into(), "host.example:51413".into()],
        };
        assert_eq!(ManualPeers::decode(&r.encode()), Ok(r.clone()));
        let bytes = r.encode();
        for cut in 0..bytes.len() {
            assert!(ManualPeers::decode(&bytes[..cut]).is_err());
        }
        assert!(ManualPeers::decode(b"d7:versioni1e5:peersli3eee").is_err());
    }

    #[test]
    fn round_trip_and_garbage() {
        let r = Resume {
            info_hash: InfoHash([7; 20]),
            dir: PathBuf::from("/data/dl"),
            anchor: Some(PathBuf::from("/data")),
            local_anchor: false,
            pieces: vec![0xff, 0x80],
            peers: vec!["127.0.0.1:6881".into()],
            paused: true,
            file_sizes: vec![10, 0, 5],
            file_mtimes: vec![1, 0, -3],
            download_limit: 1000,
            upload_limit: 0,
            recheck: Vec::new(),
        };
        assert_eq!(Resume::decode(&r.encode()), Ok(r.clone()));
        let suspect = Resume {
            recheck: vec![0x40, 0],
            ..r.clone()
        };
        assert_eq!(Resume::decode(&suspect.encode()), Ok(suspect));
        let bytes = r.encode();
        for cut in 0..bytes.len() {
            assert!(Resume::decode(&bytes[..cut]).is_err());
        }
        assert!(Resume::decode(b"d7:versioni9ee")
            .unwrap_err()
            .contains("version"));
        assert_eq!(decode_journal(&[0, 0, 0, 5, 0, 0, 1, 0, 9]), vec![5, 256]);
        assert_eq!(decode_journal(&encode_journal(&[1, 2, 3])), vec![1, 2, 3]);
    }
}
