//! Jobs the pool runs, and their results.
//!
//! Every job carries a caller-chosen `tag` (for the network thread: the
//! connection's slab key and generation, so a result for a connection that
//! has since closed can be recognised and dropped).

use crate::hash::Digest;
use crate::metainfo::{FileMap, Lengths, PieceIdx, BLOCK_SIZE};
use crate::storage::{self, Storage};
use std::any::Any;
use std::io;
use std::sync::Arc;

/// What the workers need to know of a torrent's data on disk.
pub struct DiskTorrent {
    pub storage: Arc<dyn Storage>,
    pub map: FileMap,
    pub lengths: Lengths,
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
    /// Read `len` bytes at a torrent offset (a block to upload).
    Read {
        tag: u64,
        torrent: Arc<DiskTorrent>,
        offset: u64,
        len: u32,
    },
    /// Make the torrent's writes durable.
    Sync { tag: u64, torrent: Arc<DiskTorrent> },
    /// Read a piece and hash each 16 KiB block of it (smart ban).
    HashBlocks {
        tag: u64,
        torrent: Arc<DiskTorrent>,
        piece: PieceIdx,
    },
    /// Any other blocking work (state files, metadata checks, name
    /// resolution), as a closure; its result comes back as `JobDone::Ran`
    /// for the submitter to downcast.
    Run {
        tag: u64,
        work: Box<dyn FnOnce() -> Box<dyn Any + Send> + Send>,
    },
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
    BlockHashes {
        tag: u64,
        piece: PieceIdx,
        result: io::Result<Vec<Digest>>,
    },
    Ran {
        tag: u64,
        result: Box<dyn Any + Send>,
    },
}

impl JobDone {
    pub fn tag(&self) -> u64 {
        match self {
            JobDone::Hashed { tag, .. }
            | JobDone::Written { tag, .. }
            | JobDone::Read { tag, .. }
            | JobDone::Synced { tag, .. }
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
            Job::Read { len, .. } => u64::from(*len),
            Job::HashBlocks { torrent, piece, .. } => u64::from(torrent.lengths.piece_size(*piece)),
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
                let result = storage::hash_piece(&*t.storage, &t.map, &t.lengths, piece, scratch);
                JobDone::Hashed { tag, piece, result }
            }
            Job::Write {
                tag,
                torrent,
                offset,
                data,
            } => {
                let result = storage::write_span(&*torrent.storage, &torrent.map, offset, &data);
                JobDone::Written {
                    tag,
                    offset,
                    len: data.len(),
                    result,
                }
            }
            Job::Read {
                tag,
                torrent,
                offset,
                len,
            } => {
                let mut buf = vec![0u8; len as usize];
                let result = storage::read_span(&*torrent.storage, &torrent.map, offset, &mut buf)
                    .map(|()| buf);
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
