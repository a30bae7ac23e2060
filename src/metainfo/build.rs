//! Building new torrents from a list of files and their piece hashes.
//!
//! This part is pure: reading and hashing the files is done by the caller
//! (see `cli::create`, which walks with [`crate::storage::walk`] and hashes on
//! the worker pool). The info dictionary written here has exactly the keys
//! and order mktorrent writes (`files`/`length`, `name`, `piece length`,
//! `pieces`, `private`), so for the same files, file order and piece length
//! the info-hash is the one `mktorrent -l N` gives.

use crate::bencode::Value;
use crate::hash::Digest;

/// A file to put in a torrent: its path below the torrent root and its length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InfoFile {
    pub path: Vec<String>,
    pub length: u64,
}

/// Chooses a piece length for `total` bytes: the smallest power of two from
/// 32 KiB up that keeps the piece count at or below 2,048, capped at 16 MiB.
/// (1 GiB → 512 KiB, 8 GiB → 4 MiB.)
pub fn auto_piece_length(total: u64) -> u32 {
    let mut len: u32 = 32 * 1024;
    while len < 16 * 1024 * 1024 && total.div_ceil(u64::from(len)) > 2048 {
        len *= 2;
    }
    len
}

/// Builds the info dictionary. `files` holds one entry with an empty path
/// for a single-file torrent (then `name` is the file name).
pub fn build_info(
    name: &str,
    files: &[InfoFile],
    single_file: bool,
    piece_length: u32,
    pieces: &[Digest],
    private: bool,
) -> Value {
    let mut info = Value::dict();
    if single_file {
        let length = files.first().map(|f| f.length).unwrap_or(0);
        info.insert("length", Value::Int(length as i64));
    } else {
        let list = files
            .iter()
            .map(|f| {
                let mut d = Value::dict();
                d.insert("length", Value::Int(f.length as i64));
                d.insert(
                    "path",
                    Value::List(f.path.iter().map(|c| Value::str(c)).collect()),
                );
                d
            })
            .collect();
        info.insert("files", Value::List(list));
    }
    info.insert("name", Value::str(name));
    info.insert("piece length", Value::Int(i64::from(piece_length)));
    info.insert("pieces", Value::Bytes(pieces.concat()));
    if private {
        info.insert("private", Value::Int(1));
    }
    info
}

/// The parts of a .torrent outside the info dictionary.
#[derive(Clone, Debug, Default)]
pub struct TorrentBuilder {
    pub trackers: Vec<String>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    /// Unix seconds (the caller reads the clock).
    pub creation_date: Option<i64>,
    pub url_list: Vec<String>,
}

impl TorrentBuilder {
    /// The whole .torrent file around an already built info dictionary.
    pub fn to_bytes(&self, info: Value) -> Vec<u8> {
        let mut t = Value::dict();
        if let Some(first) = self.trackers.first() {
            t.insert("announce", Value::str(first));
        }
        if self.trackers.len() > 1 {
            let tiers = self
                .trackers
                .iter()
                .map(|u| Value::List(vec![Value::str(u)]))
                .collect();
            t.insert("announce-list", Value::List(tiers));
        }
        if let Some(c) = &self.comment {
            t.insert("comment", Value::str(c));
        }
        if let Some(c) = &self.created_by {
            t.insert("created by", Value::str(c));
        }
        if let Some(d) = self.creation_date {
            t.insert("creation date", Value::Int(d));
        }
        match self.url_list.len() {
            0 => {}
            1 => t.insert("url-list", Value::str(&self.url_list[0])),
            _ => t.insert(
                "url-list",
                Value::List(self.url_list.iter().map(|u| Value::str(u)).collect()),
            ),
        }
        t.insert("info", info);
        t.to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::Torrent;

    #[test]
    fn auto_sizes() {
        assert_eq!(auto_piece_length(1), 32 * 1024);
        assert_eq!(auto_piece_length(1 << 30), 512 * 1024);
        assert_eq!(auto_piece_length(8 << 30), 4 << 20);
        assert_eq!(auto_piece_length(u64::MAX / 2), 16 << 20);
    }

    #[test]
    fn built_torrent_parses_back() {
        let files = vec![
            InfoFile {
                path: vec!["a".into(), "x.bin".into()],
                length: 40000,
            },
            InfoFile {
                path: vec!["b.txt".into()],
                length: 100,
            },
        ];
        let info = build_info("dir", &files, false, 32768, &[[1; 20], [2; 20]], true);
        let b = TorrentBuilder {
            trackers: vec!["http://a/announce".into(), "udp://b:1".into()],
            ..Default::default()
        };
        let t = Torrent::from_bytes(&b.to_bytes(info)).unwrap();
        assert!(t.private && t.multi_file);
        assert_eq!(t.files[0].path, vec!["a".to_string(), "x.bin".to_string()]);
        assert_eq!(t.total_length(), 40100);
        assert_eq!(t.announce_list.len(), 2);
        assert_eq!(
            t.relative_path(1),
            vec!["dir".to_string(), "b.txt".to_string()]
        );
    }
}
