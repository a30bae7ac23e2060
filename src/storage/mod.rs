//! Storage: the only module that touches the filesystem.
//!
//! A [`Storage`] is the files of one torrent, addressed by file index and
//! offset, with positioned reads and writes (no shared seek position, so any
//! worker thread may use it at once). [`FileStorage`] is the real one: sparse
//! files, open handles in a [`FilePool`] bounded across torrents, and no
//! symbolic link followed below the anchor of the torrent's [`DataDir`]
//! at the moment of any open ([`beneath`]). [`FaultyStorage`] wraps any storage to inject
//! errors (ENOSPC, EACCES, short writes) and delays in tests.
//!
//! The functions here map torrent byte ranges (pieces, blocks) onto file
//! slices with [`FileMap`] and hash pieces straight from disk.

mod atomic;
pub mod beneath;
pub mod certs;
mod fault;
mod files;
mod walk;

pub use atomic::{
    append_file, create_new_atomic, create_private_dir, list_dir, read_limited, remove_files,
    remove_torrent_data, write_atomic,
};

pub use beneath::{is_refused, DataDir};
pub use fault::{FaultPlan, FaultyStorage};
pub use files::{FilePool, FileStorage, DEFAULT_MAX_OPEN_FILES};
pub use walk::{walk, WalkedFile};

use crate::hash::{Digest, Sha1};
use crate::metainfo::{FileMap, Lengths, PieceIdx};
use std::io;

/// The device and inode numbers of an open file descriptor (`fstat` on a
/// duplicate of it): `systemd` tells a service which stream is the journal
/// by these (`$JOURNAL_STREAM`).
pub fn fd_identity(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let file = std::fs::File::from(fd.try_clone_to_owned()?);
    let meta = file.metadata()?;
    Ok((meta.dev(), meta.ino()))
}

/// The files of one torrent.
///
/// Implementations must be safe to call from several threads at once.
pub trait Storage: Send + Sync {
    /// Number of files.
    fn n_files(&self) -> usize;

    /// Fills `buf` from file `file_idx` at `offset`. A missing file is
    /// `NotFound`; a file too short is `UnexpectedEof`.
    fn read_at(&self, file_idx: usize, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Writes all of `data` to file `file_idx` at `offset`, creating the file
    /// (and its directories) when needed. Not durable until [`Storage::sync`].
    fn write_at(&self, file_idx: usize, offset: u64, data: &[u8]) -> io::Result<()>;

    /// Extends file `file_idx` to `len` bytes if it is shorter (sparse, no
    /// zero-filling), creating it if needed. Never shrinks.
    fn ensure_len(&self, file_idx: usize, len: u64) -> io::Result<()>;

    /// Current size of file `file_idx`, or `None` when it does not exist.
    fn file_len(&self, file_idx: usize) -> io::Result<Option<u64>>;

    /// Modification time of file `file_idx` in nanoseconds since the epoch,
    /// when the storage knows it (resume checks that data did not change
    /// while the daemon was stopped).
    fn file_mtime(&self, file_idx: usize) -> io::Result<Option<i64>> {
        let _ = file_idx;
        Ok(None)
    }

    /// Makes every write so far durable (fdatasync of the files written).
    fn sync(&self) -> io::Result<()>;

    /// Checks, before the files are looked at, that the torrent's
    /// directory is still where it was put: for [`FileStorage`], that no
    /// directory between the anchor and it has become a link (a refusal
    /// is an error for which [`is_refused`] holds).
    fn check_place(&self) -> io::Result<()> {
        Ok(())
    }
}

/// The storage of a torrent whose directory was refused (a resume record
/// naming a directory outside every anchor): every call fails with the
/// reason, and nothing is touched.
pub struct Unplaced {
    n_files: usize,
    why: String,
}

impl Unplaced {
    pub fn new(n_files: usize, why: String) -> Unplaced {
        Unplaced { n_files, why }
    }

    fn refuse<T>(&self) -> io::Result<T> {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            self.why.clone(),
        ))
    }
}

impl Storage for Unplaced {
    fn n_files(&self) -> usize {
        self.n_files
    }
    fn read_at(&self, _: usize, _: u64, _: &mut [u8]) -> io::Result<()> {
        self.refuse()
    }
    fn write_at(&self, _: usize, _: u64, _: &[u8]) -> io::Result<()> {
        self.refuse()
    }
    fn ensure_len(&self, _: usize, _: u64) -> io::Result<()> {
        self.refuse()
    }
    fn file_len(&self, _: usize) -> io::Result<Option<u64>> {
        self.refuse()
    }
    fn sync(&self) -> io::Result<()> {
        self.refuse()
    }
    fn check_place(&self) -> io::Result<()> {
        self.refuse()
    }
}

/// Reads `buf.len()` torrent bytes at `offset`, across files.
pub fn read_span(
    storage: &dyn Storage,
    map: &FileMap,
    offset: u64,
    buf: &mut [u8],
) -> io::Result<()> {
    let mut done = 0usize;
    for slice in map.slices(offset, buf.len() as u64) {
        let part = &mut buf[done..done + slice.len as usize];
        storage.read_at(slice.file_idx, slice.offset, part)?;
        done += slice.len as usize;
    }
    if done != buf.len() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "read past the end of the torrent",
        ));
    }
    Ok(())
}

/// Writes torrent bytes at `offset`, across files.
pub fn write_span(
    storage: &dyn Storage,
    map: &FileMap,
    offset: u64,
    data: &[u8],
) -> io::Result<()> {
    if offset
        .checked_add(data.len() as u64)
        .is_none_or(|end| end > map.total())
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "write past the end of the torrent",
        ));
    }
    let mut done = 0usize;
    for slice in map.slices(offset, data.len() as u64) {
        storage.write_at(
            slice.file_idx,
            slice.offset,
            &data[done..done + slice.len as usize],
        )?;
        done += slice.len as usize;
    }
    if done != data.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "write past the end of the torrent",
        ));
    }
    Ok(())
}

/// Size of the scratch buffer [`hash_piece`] reads through.
pub const HASH_CHUNK: usize = 256 * 1024;

/// Reads piece `piece` from disk in chunks through `scratch` and returns its SHA-1.
pub fn hash_piece(
    storage: &dyn Storage,
    map: &FileMap,
    lengths: &Lengths,
    piece: PieceIdx,
    scratch: &mut Vec<u8>,
) -> io::Result<Digest> {
    let mut hasher = Sha1::new();
    let mut offset = lengths.piece_offset(piece);
    let mut left = u64::from(lengths.piece_size(piece));
    if scratch.len() < HASH_CHUNK {
        scratch.resize(HASH_CHUNK, 0);
    }
    while left > 0 {
        let n = left.min(HASH_CHUNK as u64) as usize;
        let buf = &mut scratch[..n];
        read_span(storage, map, offset, buf)?;
        hasher.update(buf);
        offset += n as u64;
        left -= n as u64;
    }
    Ok(hasher.finish())
}

/// Re-verifies a piece whose sync failed: hashes it as read back, and when
/// it matches `expected` writes it again, chunk by chunk, so its pages are
/// dirty and the next sync writes them to the device (a failed writeback
/// leaves them clean in the page cache, and no later sync would). `false`:
/// the data no longer matches; nothing is written.
pub fn rewrite_piece(
    storage: &dyn Storage,
    map: &FileMap,
    lengths: &Lengths,
    piece: PieceIdx,
    expected: &Digest,
    scratch: &mut Vec<u8>,
) -> io::Result<bool> {
    if hash_piece(storage, map, lengths, piece, scratch)? != *expected {
        return Ok(false);
    }
    let mut offset = lengths.piece_offset(piece);
    let mut left = u64::from(lengths.piece_size(piece));
    while left > 0 {
        let n = left.min(HASH_CHUNK as u64) as usize;
        let buf = &mut scratch[..n];
        read_span(storage, map, offset, buf)?;
        write_span(storage, map, offset, buf)?;
        offset += n as u64;
        left -= n as u64;
    }
    Ok(true)
}

/// The permission bits of `path` (`mode & 0o777`).
pub fn permissions_of(path: &std::path::Path) -> std::io::Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hash::sha1;

    #[test]
    fn spans_across_files() {
        let dir = tempdir("spans");
        let rel = vec![
            vec!["t".to_string(), "a".to_string()],
            vec!["t".to_string(), "b".to_string()],
        ];
        let st = FileStorage::new(dir.clone(), rel, 4).unwrap();
        let map = FileMap::new([5, 7]);
        write_span(&st, &map, 3, b"hello wor").unwrap();
        write_span(&st, &map, 0, b"abc").unwrap();
        write_span(&st, &map, 11, b"!").unwrap();
        let mut buf = [0u8; 12];
        read_span(&st, &map, 0, &mut buf).unwrap();
        assert_eq!(&buf, b"abchello wo!");
        assert_eq!(std::fs::read(dir.join("t/a")).unwrap(), b"abche");
        assert!(write_span(&st, &map, 10, b"toolong").is_err());
        read_span(&st, &map, 0, &mut buf).unwrap();
        assert_eq!(&buf, b"abchello wo!", "a refused write must write nothing");
        let lengths = Lengths::new(12, 16384).unwrap();
        let mut scratch = Vec::new();
        let h = hash_piece(&st, &map, &lengths, lengths.piece(0).unwrap(), &mut scratch).unwrap();
        assert_eq!(h, sha1(&buf));
        std::fs::remove_dir_all(dir).unwrap();
    }

    pub(crate) fn tempdir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("peerlet-unit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
