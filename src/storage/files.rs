//! [`FileStorage`]: a torrent's files under a download directory.
//!
//! - Positioned I/O (`FileExt::read_at` / `write_all_at`), so threads never
//!   share a seek position.
//! - Sparse files: writing past the end leaves a hole; nothing is zero-filled.
//! - A bounded LRU of open handles (default 32): a torrent of 10,000 files
//!   never holds 10,000 descriptors.
//! - Below the download directory nothing is followed through a symbolic
//!   link: every directory is checked with `symlink_metadata` (and created
//!   one level at a time), and files are opened with `O_NOFOLLOW`. The
//!   download directory itself is trusted (it comes from the user).
//! - Durability is batched: writes mark a file dirty, [`Storage::sync`]
//!   fdatasyncs the dirty ones. A dirty handle evicted from the LRU is kept
//!   (up to a bound) until the next sync instead of being synced at once;
//!   beyond that bound only its index is kept, and the sync opens the file
//!   again to fdatasync it (the page cache belongs to the file, not to the
//!   descriptor). So a torrent of many small files costs one fdatasync per
//!   file per checkpoint, not one per eviction.

use super::Storage;
use crate::metainfo::path::join_under;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Default bound on open file handles per storage.
pub const DEFAULT_MAX_OPEN_FILES: usize = 32;
/// Dirty handles kept open after eviction, waiting for the next sync.
const MAX_PENDING_SYNC: usize = 32;

struct Entry {
    file_idx: usize,
    file: Arc<File>,
    writable: bool,
    dirty: bool,
    last_used: u64,
}

#[derive(Default)]
struct OpenFiles {
    entries: Vec<Entry>,
    /// Evicted handles with unsynced writes.
    pending_sync: Vec<Arc<File>>,
    /// Files closed with unsynced writes once `pending_sync` was full
    /// (sorted, no duplicates; at most one entry per file).
    dirty_closed: Vec<usize>,
    tick: u64,
}

/// The files of one torrent on a real filesystem.
pub struct FileStorage {
    root: PathBuf,
    /// Checked components of each file, relative to `root`.
    relative: Vec<Vec<String>>,
    paths: Vec<PathBuf>,
    max_open: usize,
    open: Mutex<OpenFiles>,
}

impl FileStorage {
    /// `root` is the download directory (trusted); `relative` the checked
    /// path of each file below it (see [`crate::metainfo::path`]).
    pub fn new(
        root: PathBuf,
        relative: Vec<Vec<String>>,
        max_open: usize,
    ) -> io::Result<FileStorage> {
        let mut paths = Vec::with_capacity(relative.len());
        for rel in &relative {
            let p = join_under(&root, rel).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("unsafe path '{}'", rel.join("/")),
                )
            })?;
            if rel.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "empty file path",
                ));
            }
            paths.push(p);
        }
        Ok(FileStorage {
            root,
            relative,
            paths,
            max_open: max_open.max(1),
            open: Mutex::new(OpenFiles::default()),
        })
    }

    /// Full path of file `file_idx`.
    pub fn path(&self, file_idx: usize) -> Option<&Path> {
        self.paths.get(file_idx).map(|p| p.as_path())
    }

    fn lock(&self) -> MutexGuard<'_, OpenFiles> {
        // A worker that panicked while holding the lock left the cache in a
        // consistent state (every mutation is a single push/remove), so the
        // poison flag can be ignored.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn handle(&self, file_idx: usize, write: bool) -> io::Result<Arc<File>> {
        {
            let mut open = self.lock();
            open.tick += 1;
            let tick = open.tick;
            if let Some(e) = open
                .entries
                .iter_mut()
                .find(|e| e.file_idx == file_idx && (e.writable || !write))
            {
                e.last_used = tick;
                if write {
                    e.dirty = true;
                }
                return Ok(e.file.clone());
            }
        }
        // Open outside the lock: it may create directories.
        let file = Arc::new(self.open_file(file_idx, write)?);
        let mut open = self.lock();
        open.tick += 1;
        let tick = open.tick;
        if let Some(pos) = open.entries.iter().position(|e| e.file_idx == file_idx) {
            let old = open.entries.swap_remove(pos);
            if old.dirty {
                open.pending_sync.push(old.file);
            }
        }
        if open.entries.len() >= self.max_open {
            if let Some((lru, _)) = open
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_used)
            {
                let old = open.entries.swap_remove(lru);
                if old.dirty {
                    if open.pending_sync.len() >= MAX_PENDING_SYNC {
                        if let Err(at) = open.dirty_closed.binary_search(&old.file_idx) {
                            open.dirty_closed.insert(at, old.file_idx);
                        }
                    } else {
                        open.pending_sync.push(old.file);
                    }
                }
            }
        }
        open.entries.push(Entry {
            file_idx,
            file: file.clone(),
            writable: write,
            dirty: write,
            last_used: tick,
        });
        Ok(file)
    }

    fn open_file(&self, file_idx: usize, write: bool) -> io::Result<File> {
        let rel = self
            .relative
            .get(file_idx)
            .ok_or_else(|| bad_index(file_idx))?;
        let path = &self.paths[file_idx];
        self.check_dirs(rel, write)?;
        let mut opts = OpenOptions::new();
        opts.read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
        if write {
            opts.write(true).create(true).mode(0o644);
        }
        opts.open(path).map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("refusing to follow a symbolic link at {}", path.display()),
                )
            } else {
                io::Error::new(e.kind(), format!("{}: {e}", path.display()))
            }
        })
    }

    /// Walks the directories between `root` and the file, refusing links and
    /// creating missing directories when `create`.
    fn check_dirs(&self, rel: &[String], create: bool) -> io::Result<()> {
        let mut dir = self.root.clone();
        for component in &rel[..rel.len().saturating_sub(1)] {
            dir.push(component);
            match std::fs::symlink_metadata(&dir) {
                Ok(md) if md.file_type().is_symlink() => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("refusing to follow a symbolic link at {}", dir.display()),
                    ))
                }
                Ok(md) if md.is_dir() => {}
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists and is not a directory", dir.display()),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    match std::fs::create_dir(&dir) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => {
                            return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display())))
                        }
                    }
                }
                Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
            }
        }
        Ok(())
    }
}

fn bad_index(file_idx: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("no file with index {file_idx}"),
    )
}

impl Storage for FileStorage {
    fn n_files(&self) -> usize {
        self.paths.len()
    }

    fn read_at(&self, file_idx: usize, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let file = self.handle(file_idx, false)?;
        let mut done = 0;
        while done < buf.len() {
            match file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "{} is shorter than expected",
                            self.paths[file_idx].display()
                        ),
                    ))
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn write_at(&self, file_idx: usize, offset: u64, data: &[u8]) -> io::Result<()> {
        let file = self.handle(file_idx, true)?;
        file.write_all_at(data, offset)
    }

    fn ensure_len(&self, file_idx: usize, len: u64) -> io::Result<()> {
        let file = self.handle(file_idx, true)?;
        if file.metadata()?.len() < len {
            file.set_len(len)?;
        }
        Ok(())
    }

    fn file_len(&self, file_idx: usize) -> io::Result<Option<u64>> {
        let path = self
            .paths
            .get(file_idx)
            .ok_or_else(|| bad_index(file_idx))?;
        match std::fs::symlink_metadata(path) {
            Ok(md) if md.is_file() => Ok(Some(md.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn file_mtime(&self, file_idx: usize) -> io::Result<Option<i64>> {
        use std::os::unix::fs::MetadataExt;
        let path = self
            .paths
            .get(file_idx)
            .ok_or_else(|| bad_index(file_idx))?;
        match std::fs::symlink_metadata(path) {
            Ok(md) if md.is_file() => Ok(Some(
                md.mtime()
                    .saturating_mul(1_000_000_000)
                    .saturating_add(md.mtime_nsec()),
            )),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn sync(&self) -> io::Result<()> {
        let (dirty, pending, closed) = {
            let mut open = self.lock();
            let mut dirty = Vec::new();
            for e in open.entries.iter_mut().filter(|e| e.dirty) {
                e.dirty = false;
                dirty.push(e.file.clone());
            }
            (
                dirty,
                std::mem::take(&mut open.pending_sync),
                std::mem::take(&mut open.dirty_closed),
            )
        };
        for f in dirty.iter().chain(pending.iter()) {
            f.sync_data()?;
        }
        for idx in closed {
            self.open_file(idx, false)?.sync_data()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::tests::tempdir;

    fn rel(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_file_written_since_the_last_sync_is_synced_once() {
        let dir = tempdir("many-dirty");
        let n = 3 + MAX_PENDING_SYNC + 20;
        let files: Vec<Vec<String>> = (0..n).map(|i| rel(&["m", &format!("f{i}")])).collect();
        let st = FileStorage::new(dir.clone(), files, 3).unwrap();
        for round in 0..2 {
            for i in 0..n {
                st.write_at(i, round, b"y").unwrap();
            }
            {
                let open = st.lock();
                // Evictions beyond the kept handles cost no fdatasync now:
                // they are remembered by index, once each.
                assert_eq!(open.pending_sync.len(), MAX_PENDING_SYNC);
                assert_eq!(open.dirty_closed.len(), n - 3 - MAX_PENDING_SYNC);
                let mut all: Vec<usize> = open
                    .entries
                    .iter()
                    .filter(|e| e.dirty)
                    .map(|e| e.file_idx)
                    .chain(open.dirty_closed.iter().copied())
                    .collect();
                all.sort_unstable();
                all.dedup();
                assert_eq!(all.len(), n - MAX_PENDING_SYNC);
            }
            st.sync().unwrap();
            let open = st.lock();
            assert!(open.pending_sync.is_empty() && open.dirty_closed.is_empty());
            assert!(open.entries.iter().all(|e| !e.dirty));
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn sparse_write_and_lru() {
        let dir = tempdir("lru");
        let files: Vec<Vec<String>> = (0..10).map(|i| rel(&["t", &format!("f{i}")])).collect();
        let st = FileStorage::new(dir.clone(), files, 3).unwrap();
        for i in 0..10 {
            st.write_at(i, 1 << 20, b"x").unwrap();
        }
        assert!(st.lock().entries.len() <= 3);
        st.sync().unwrap();
        assert!(st.lock().pending_sync.is_empty());
        let md = std::fs::metadata(dir.join("t/f0")).unwrap();
        assert_eq!(md.len(), (1 << 20) + 1);
        use std::os::unix::fs::MetadataExt;
        assert!(md.blocks() * 512 < 1 << 20, "file should be sparse");
        let mut b = [0u8; 2];
        assert_eq!(
            st.read_at(0, 1 << 20, &mut b).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert_eq!(st.file_len(3).unwrap(), Some((1 << 20) + 1));
        st.ensure_len(3, 5).unwrap();
        assert_eq!(st.file_len(3).unwrap(), Some((1 << 20) + 1));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refuses_symlinks_below_root() {
        let dir = tempdir("symlink");
        let outside = tempdir("symlink-outside");
        std::fs::create_dir_all(dir.join("t")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("t/sub")).unwrap();
        std::os::unix::fs::symlink(outside.join("victim"), dir.join("t/file")).unwrap();
        let st = FileStorage::new(
            dir.clone(),
            vec![rel(&["t", "sub", "x"]), rel(&["t", "file"])],
            4,
        )
        .unwrap();
        let e = st.write_at(0, 0, b"evil").unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let e = st.write_at(1, 0, b"evil").unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::remove_dir_all(outside).unwrap();
    }

    #[test]
    fn missing_file() {
        let dir = tempdir("missing");
        let st = FileStorage::new(dir.clone(), vec![rel(&["nope"])], 4).unwrap();
        assert_eq!(st.file_len(0).unwrap(), None);
        let mut b = [0u8; 1];
        assert_eq!(
            st.read_at(0, 0, &mut b).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert!(FileStorage::new(dir.clone(), vec![rel(&[".."])], 4).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
