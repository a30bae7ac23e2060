//! Jobs the pool runs, and their results.
//!
//! Every job carries a caller-chosen `tag` (for the network thread: the
//! connection's slab key and generation, so a result for a connection that
//! has since closed can be recognised and dropped).

use crate::hash::{Digest, Sha1};
use crate::metainfo::{FileMap, Lengths, PieceIdx, BLOCK_SIZE};
use crate::storage::{self, Storage};
use crate::tracker::TrackerError;
use crate::wire::peer::{Message, PIECE_HEADER};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// What the workers need to know of a torrent's data on disk.
pub struct DiskTorrent {
    pub storage: Arc<dyn Storage>,
    pub map: FileMap,
    pub lengths: Lengths,
    /// Pieces hashed in order as their blocks are written.
    pub hash_ahead: HashAhead,
}

impl DiskTorrent {
    pub fn new(storage: Arc<dyn Storage>, map: FileMap, lengths: Lengths) -> DiskTorrent {
        DiskTorrent {
            storage,
            map,
            lengths,
            hash_ahead: HashAhead::default(),
        }
    }
}

/// SHA-1 states of pieces whose first bytes were written in order: a write
/// that continues a piece exactly where its state stops feeds the state
/// from memory, so hashing the finished piece reads back only what arrived
/// out of order (usually nothing). The lock is held only to take or put a
/// state, never while hashing; a worker that finds a piece's state taken
/// simply leaves that write to be read back later.
#[derive(Default)]
pub struct HashAhead {
    states: Mutex<HashMap<u32, (u32, Sha1)>>,
}

impl HashAhead {
    fn take(&self, piece: u32) -> Option<(u32, Sha1)> {
        self.states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&piece)
    }

    fn put(&self, piece: u32, next: u32, state: Sha1) {
        self.states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(piece, (next, state));
    }

    /// Feeds data just written at torrent `offset`, when it lies inside one piece.
    fn feed_at(&self, lengths: &Lengths, offset: u64, data: &[u8]) {
        let pl = u64::from(lengths.piece_length());
        if let Some(piece) = lengths.piece((offset / pl) as u32) {
            let begin = (offset % pl) as u32;
            if u64::from(begin) + data.len() as u64 <= u64::from(lengths.piece_size(piece)) {
                self.feed(piece.get(), begin, data);
            }
        }
    }

    /// Feeds `data`, just written at `begin` of `piece`, if it continues the piece's state.
    fn feed(&self, piece: u32, begin: u32, data: &[u8]) {
        let state = if begin == 0 {
            // A fresh start (also after a failed copy was discarded).
            self.take(piece);
            Some((0, Sha1::new()))
        } else {
            match self.take(piece) {
                Some((next, s)) if next == begin => Some((next, s)),
                Some((next, s)) => {
                    self.put(piece, next, s);
                    None
                }
                None => None,
            }
        };
        if let Some((next, mut s)) = state {
            s.update(data);
            self.put(piece, next + data.len() as u32, s);
        }
    }
}

/// A unit of blocking work.
pub enum Job {
    /// Read a piece from disk and hash it.
    HashPiece {
        tag: u64,
        torrent: Arc<DiskTorrent>,
        piece: PieceIdx,
    },
    /// Write bytes at a torrent offset (a block, or a whole piece).
    Write {
        tag: u64,
        torrent: Arc<DiskTorrent>,
        offset: u64,
        data: Vec<u8>,
    },
    /// Write consecutive blocks starting at a torrent offset (one job, no copy into one buffer).
    WriteBlocks {
        tag: u64,
        torrent: Arc<DiskTorrent>,
        offset: u64,
        blocks: Vec<Vec<u8>>,
    },
    /// Read consecutive blocks of piece `index` from `begin` (torrent
    /// offset `offset`) as piece messages ready to send: each block behind
    /// its 13-byte header, read straight into place (no copy afterwards).
    Read {
        tag: u64,
        torrent: Arc<DiskTorrent>,
        offset: u64,
        index: u32,
        begin: u32,
        lens: Vec<u32>,
    },
    /// Make the torrent's writes durable.
    Sync { tag: u64, torrent: Arc<DiskTorrent> },
    /// Read back a piece a failed sync covered, hash it, and when it still
    /// matches `expected` write it again for the next sync
    /// (`storage::rewrite_piece`).
    Reverify {
        tag: u64,
        torrent: Arc<DiskTorrent>,
        piece: PieceIdx,
        expected: Digest,
    },
    /// Read a piece and hash each 16 KiB block of it (smart ban).
    HashBlocks {
        tag: u64,
        torrent: Arc<DiskTorrent>,
        piece: PieceIdx,
    },
    /// Any other blocking work (state files, file probes, removals, name
    /// resolution, HTTP tracker requests), as a closure; what it gives back
    /// comes back as `JobDone::Ran`.
    Run {
        tag: u64,
        work: Box<dyn FnOnce() -> RunResult + Send>,
    },
}

/// What a [`Job::Run`] closure gives back: one variant per kind of work,
/// so the submitter matches on values and the compiler lists every case.
#[derive(Debug)]
pub enum RunResult {
    /// A file written, appended, extended or removed.
    Io(io::Result<()>),
    /// What a host name resolved to (empty when it did not resolve).
    Addrs(Vec<SocketAddr>),
    /// Per file of a torrent: its length and modification time (`None`
    /// where the file is missing or unreadable); an error when the
    /// storage refuses the torrent's directory (`Storage::check_place`,
    /// a link on the way).
    Files(io::Result<Vec<(Option<u64>, Option<i64>)>>),
    /// An HTTP tracker's response body.
    Http(Result<Vec<u8>, TrackerError>),
}

/// A finished job.
pub enum JobDone {
    Hashed {
        tag: u64,
        piece: PieceIdx,
        result: io::Result<Digest>,
    },
    Written {
        tag: u64,
        offset: u64,
        len: usize,
        result: io::Result<()>,
    },
    Read {
        tag: u64,
        offset: u64,
        result: io::Result<Vec<u8>>,
    },
    Synced {
        tag: u64,
        result: io::Result<()>,
    },
    /// A [`Job::Reverify`]: `Ok(true)` passed and written again.
    Reverified {
        tag: u64,
        piece: PieceIdx,
        result: io::Result<bool>,
    },
    BlockHashes {
        tag: u64,
        piece: PieceIdx,
        result: io::Result<Vec<Digest>>,
    },
    Ran {
        tag: u64,
        result: RunResult,
    },
}

impl JobDone {
    pub fn tag(&self) -> u64 {
        match self {
            JobDone::Hashed { tag, .. }
            | JobDone::Written { tag, .. }
            | JobDone::Read { tag, .. }
            | JobDone::Synced { tag, .. }
            | JobDone::Reverified { tag, .. }
            | JobDone::BlockHashes { tag, .. }
            | JobDone::Ran { tag, .. } => *tag,
        }
    }
}

impl Job {
    /// Bytes of disk traffic, for the background rate limit.
    pub fn cost_bytes(&self) -> u64 {
        match self {
            Job::HashPiece { torrent, piece, .. } => u64::from(torrent.lengths.piece_size(*piece)),
            Job::Write { data, .. } => data.len() as u64,
            Job::WriteBlocks { blocks, .. } => blocks.iter().map(|b| b.len() as u64).sum(),
            Job::Read { lens, .. } => lens.iter().map(|&l| u64::from(l)).sum(),
            Job::HashBlocks { torrent, piece, .. } => u64::from(torrent.lengths.piece_size(*piece)),
            Job::Reverify { torrent, piece, .. } => {
                2 * u64::from(torrent.lengths.piece_size(*piece))
            }
            Job::Sync { .. } | Job::Run { .. } => 0,
        }
    }

    /// Runs the job on the calling thread. `scratch` is the worker's reusable buffer.
    pub fn run(self, scratch: &mut Vec<u8>) -> JobDone {
        match self {
            Job::HashPiece {
                tag,
                torrent,
                piece,
            } => {
                let t = &*torrent;
                let result = match t.hash_ahead.take(piece.get()) {
                    Some((next, state)) => finish_hash(t, piece, next, state, scratch),
                    None => storage::hash_piece(&*t.storage, &t.map, &t.lengths, piece, scratch),
                };
                JobDone::Hashed { tag, piece, result }
            }
            Job::Write {
                tag,
                torrent,
                offset,
                data,
            } => {
                let result = storage::write_span(&*torrent.storage, &torrent.map, offset, &data);
                if result.is_ok() {
                    torrent.hash_ahead.feed_at(&torrent.lengths, offset, &data);
                }
                JobDone::Written {
                    tag,
                    offset,
                    len: data.len(),
                    result,
                }
            }
            Job::WriteBlocks {
                tag,
                torrent,
                offset,
                blocks,
            } => {
                let t = &*torrent;
                let mut at = offset;
                let mut result = Ok(());
                for b in &blocks {
                    result = storage::write_span(&*t.storage, &t.map, at, b);
                    if result.is_err() {
                        break;
                    }
                    t.hash_ahead.feed_at(&t.lengths, at, b);
                    at += b.len() as u64;
                }
                let len = blocks.iter().map(Vec::len).sum();
                JobDone::Written {
                    tag,
                    offset,
                    len,
                    result,
                }
            }
            Job::Read {
                tag,
                torrent,
                offset,
                index,
                begin,
                lens,
            } => {
                let total: usize = lens.iter().map(|&l| PIECE_HEADER + l as usize).sum();
                let mut buf = Vec::with_capacity(total);
                let (mut at, mut block_begin) = (offset, begin);
                let mut result = Ok(());
                for len in lens {
                    Message::emit_piece_header(index, block_begin, len as usize, &mut buf);
                    let start = buf.len();
                    buf.resize(start + len as usize, 0);
                    result =
                        storage::read_span(&*torrent.storage, &torrent.map, at, &mut buf[start..]);
                    if result.is_err() {
                        break;
                    }
                    at += u64::from(len);
                    block_begin += len;
                }
                let result = result.map(|()| buf);
                JobDone::Read {
                    tag,
                    offset,
                    result,
                }
            }
            Job::Sync { tag, torrent } => JobDone::Synced {
                tag,
                result: torrent.storage.sync(),
            },
            Job::Reverify {
                tag,
                torrent,
                piece,
                expected,
            } => {
                let t = &*torrent;
                let result = storage::rewrite_piece(
                    &*t.storage,
                    &t.map,
                    &t.lengths,
                    piece,
                    &expected,
                    scratch,
                );
                JobDone::Reverified { tag, piece, result }
            }
            Job::HashBlocks {
                tag,
                torrent,
                piece,
            } => {
                let t = &*torrent;
                let mut digests = Vec::new();
                let mut offset = t.lengths.piece_offset(piece);
                let mut left = u64::from(t.lengths.piece_size(piece));
                let mut buf = vec![0u8; BLOCK_SIZE as usize];
                let result = loop {
                    if left == 0 {
                        break Ok(digests);
                    }
                    let n = left.min(u64::from(BLOCK_SIZE)) as usize;
                    if let Err(e) = storage::read_span(&*t.storage, &t.map, offset, &mut buf[..n]) {
                        break Err(e);
                    }
                    digests.push(crate::hash::sha1(&buf[..n]));
                    offset += n as u64;
                    left -= n as u64;
                };
                JobDone::BlockHashes { tag, piece, result }
            }
            Job::Run { tag, work } => JobDone::Ran {
                tag,
                result: work(),
            },
        }
    }
}

/// Finishes a piece hash from a hash-ahead state that covers its first `next` bytes.
fn finish_hash(
    t: &DiskTorrent,
    piece: PieceIdx,
    next: u32,
    mut state: Sha1,
    scratch: &mut Vec<u8>,
) -> io::Result<Digest> {
    let size = t.lengths.piece_size(piece);
    let mut offset = t.lengths.piece_offset(piece) + u64::from(next);
    let mut left = u64::from(size.saturating_sub(next));
    if scratch.len() < storage::HASH_CHUNK {
        scratch.resize(storage::HASH_CHUNK, 0);
    }
    while left > 0 {
        let n = left.min(storage::HASH_CHUNK as u64) as usize;
        storage::read_span(&*t.storage, &t.map, offset, &mut scratch[..n])?;
        state.update(&scratch[..n]);
        offset += n as u64;
        left -= n as u64;
    }
    Ok(state.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{tests::tempdir, FileStorage};

    #[test]
    fn hash_ahead_matches_hashing_from_disk_in_any_write_order() {
        let dir = tempdir("hash-ahead");
        let lengths = Lengths::new(3 * 32768 + 100, 32768).unwrap();
        let st = FileStorage::new(dir.clone(), vec![vec!["f".into()]], 4).unwrap();
        let disk = Arc::new(DiskTorrent::new(
            Arc::new(st),
            FileMap::new([lengths.total_length()]),
            lengths,
        ));
        let data: Vec<u8> = (0..lengths.total_length())
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        // Piece 0 in order, piece 1 out of order, piece 2 half in order, last piece whole.
        let writes: [(u64, u64); 7] = [
            (0, 16384),
            (16384, 32768),
            (49152, 65536),
            (32768, 49152),
            (65536, 81920),
            (98304, 98404),
            (81920, 98304),
        ];
        let mut scratch = Vec::new();
        for (a, b) in writes {
            let job = Job::Write {
                tag: 0,
                torrent: disk.clone(),
                offset: a,
                data: data[a as usize..b as usize].to_vec(),
            };
            assert!(matches!(
                job.run(&mut scratch),
                JobDone::Written { result: Ok(()), .. }
            ));
        }
        for p in lengths.pieces() {
            let JobDone::Hashed { result, .. } = (Job::HashPiece {
                tag: 0,
                torrent: disk.clone(),
                piece: p,
            })
            .run(&mut scratch) else {
                panic!()
            };
            let start = lengths.piece_offset(p) as usize;
            let end = start + lengths.piece_size(p) as usize;
            assert_eq!(
                result.unwrap(),
                crate::hash::sha1(&data[start..end]),
                "piece {p}"
            );
        }
        assert!(disk.hash_ahead.states.lock().unwrap().is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
