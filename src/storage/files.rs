//! [`FileStorage`]: a torrent's files under a download directory.
//!
//! - Positioned I/O (`FileExt::read_at` / `write_all_at`), so threads never
//!   share a seek position.
//! - Sparse files: writing past the end leaves a hole; nothing is zero-filled.
//! - Open handles live in a [`FilePool`], an LRU bounded across every
//!   storage that shares it (the daemon has one for all its torrents,
//!   `max_open_files`, default 128): neither a torrent of 10,000 files nor
//!   10,000 torrents of one file hold 10,000 descriptors.
//! - Nothing below the anchor (the download directory, an allowed
//!   directory, or one the local user named: [`DataDir`]) is followed
//!   through a symbolic link, at the moment of each open: every open,
//!   creation, `stat` and removal starts from a descriptor of the anchor
//!   and resolves the torrent's directory and the file's path beneath it
//!   ([`super::beneath`]). The anchor itself is trusted. Each such open
//!   takes [`WALK_FDS`] slots of the pool while it runs.
//! - Durability is batched: writes mark a file dirty, [`Storage::sync`]
//!   fdatasyncs the dirty ones. A dirty handle evicted from the LRU is kept
//!   (a quarter of the pool) until its storage's next sync instead of being
//!   synced at once; beyond that only its index is kept, and the sync opens
//!   the file again to fdatasync it (the page cache belongs to the file, not
//!   to the descriptor). So a torrent of many small files costs one
//!   fdatasync per file per checkpoint, not one per eviction.

use super::beneath::{self, DataDir, WALK_FDS};
use super::Storage;
use crate::metainfo::path::join_under;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Default bound on the descriptors of a [`FilePool`] (the daemon's
/// `max_open_files`). libtorrent keeps 40 by default, aria2 100.
pub const DEFAULT_MAX_OPEN_FILES: usize = 128;

/// A storage's files are keyed by (owner, file index).
type Key = (u64, usize);

struct Entry {
    file: Arc<File>,
    writable: bool,
    dirty: bool,
    last_used: u64,
}

#[derive(Default)]
struct Pool {
    entries: HashMap<Key, Entry>,
    /// Slots taken by files being opened (outside the lock), counted
    /// against the entries' share.
    opening: usize,
    /// Evicted handles with unsynced writes, oldest first.
    pending_sync: Vec<(Key, Arc<File>)>,
    /// Kept handles taken out by a sync that is fdatasyncing them, counted
    /// against the kept share until it is done.
    syncing: usize,
    /// Files closed with unsynced writes once the kept share was full
    /// (sorted, no duplicates).
    dirty_closed: Vec<Key>,
    tick: u64,
}

/// Open file handles shared by storages: at most `max_open` descriptors
/// for all of them together, three quarters for handles in use (least
/// recently used closed first) and a quarter for evicted handles that still
/// wait for their storage's next sync.
///
/// The bound is on descriptors, not table entries: slots are taken before
/// a file is opened ([`WALK_FDS`]: the walk from the anchor holds a second
/// descriptor while it runs, so between opens one slot of the entries'
/// share stays free), a handle a worker is reading or writing is never the
/// one evicted (so it cannot linger open outside the count), and a sync
/// reopening a file closed dirty, or a `stat` below the anchor, takes
/// slots too. The one way past it: a
/// pool smaller than the number of threads using it at once, when every
/// handle is in use.
pub struct FilePool {
    max_entries: usize,
    max_pending: usize,
    next_owner: AtomicU64,
    inner: Mutex<Pool>,
}

impl FilePool {
    /// A pool of at most `max_open` descriptors (at least 1).
    pub fn new(max_open: usize) -> Arc<FilePool> {
        let max_open = max_open.max(1);
        let max_pending = max_open / 4;
        Arc::new(FilePool {
            max_entries: max_open - max_pending,
            max_pending,
            next_owner: AtomicU64::new(0),
            inner: Mutex::new(Pool::default()),
        })
    }

    /// Descriptors open now (in use, being opened, waiting for a sync).
    pub fn open_files(&self) -> usize {
        let pool = self.lock();
        pool.entries.len() + pool.opening + pool.pending_sync.len() + pool.syncing
    }

    fn lock(&self) -> MutexGuard<'_, Pool> {
        // A worker that panicked while holding the lock left the pool in a
        // consistent state (every mutation is a single insert/remove), so
        // the poison flag can be ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The handle of `key` if open (and writable when `write`); else a slot
    /// is taken for opening it, which [`FilePool::insert`] or
    /// [`FilePool::unreserve`] gives back.
    /// The slots are [`WALK_FDS`]: the walk to the file may hold two
    /// descriptors at once; all but the file's are given back when the
    /// open is done.
    fn get_or_reserve(&self, key: Key, write: bool) -> Option<Arc<File>> {
        let mut pool = self.lock();
        if let Some(file) = pool.use_entry(key, write) {
            return Some(file);
        }
        self.reserve_locked(&mut pool, WALK_FDS);
        None
    }

    /// Takes `n` slots without looking anything up (a sync reopening a
    /// file, a `stat` below the anchor).
    fn reserve(&self, n: usize) {
        self.reserve_locked(&mut self.lock(), n);
    }

    fn reserve_locked(&self, pool: &mut Pool, n: usize) {
        self.make_room(pool, n);
        pool.opening += n;
    }

    fn unreserve(&self, n: usize) {
        let mut pool = self.lock();
        pool.opening = pool.opening.saturating_sub(n);
    }

    /// Closes least recently used handles nobody is using until `n` more
    /// fit in the entries' share.
    fn make_room(&self, pool: &mut Pool, n: usize) {
        // Each round removes an entry: bounded by their number.
        while pool.entries.len() + pool.opening + n > self.max_entries {
            let Some(lru) = pool
                .entries
                .iter()
                .filter(|(_, e)| Arc::strong_count(&e.file) == 1)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| *k)
            else {
                // Every handle is in use: more threads than descriptors.
                return;
            };
            if let Some(old) = pool.entries.remove(&lru) {
                if old.dirty {
                    self.keep_dirty(pool, lru, old.file);
                }
            }
        }
    }

    /// Adds a handle opened in a slot from [`FilePool::get_or_reserve`]
    /// (`writable`: opened read-write; `write`: for a write); returns the
    /// handle to use (another thread's, when it opened the same file
    /// meanwhile).
    fn insert(&self, key: Key, file: Arc<File>, writable: bool, write: bool) -> Arc<File> {
        let mut pool = self.lock();
        pool.opening = pool.opening.saturating_sub(1);
        if let Some(theirs) = pool.use_entry(key, write) {
            // Ours closes when dropped, right after the lock.
            return theirs;
        }
        pool.tick += 1;
        let tick = pool.tick;
        if let Some(old) = pool.entries.remove(&key) {
            // A read-only handle replaced by a writable one.
            if old.dirty {
                self.keep_dirty(&mut pool, key, old.file);
            }
        }
        pool.entries.insert(
            key,
            Entry {
                file: file.clone(),
                writable,
                dirty: write,
                last_used: tick,
            },
        );
        file
    }

    /// A write through `file` is done: its storage's next sync must cover
    /// it, even if a sync took the file as clean while the write was still
    /// under way.
    fn written(&self, key: Key, file: &Arc<File>) {
        let mut pool = self.lock();
        match pool.entries.get_mut(&key) {
            Some(e) if Arc::ptr_eq(&e.file, file) => e.dirty = true,
            // Not in the table: its storage is gone (a handle in use is
            // never evicted, and a writable one never replaced).
            _ => {}
        }
    }

    /// An evicted handle with unsynced writes: kept open while the kept
    /// share has room (the oldest kept one makes room, so the files most
    /// likely to be written again stay open), else closed and remembered.
    fn keep_dirty(&self, pool: &mut Pool, key: Key, file: Arc<File>) {
        if pool.pending_sync.len() + pool.syncing >= self.max_pending {
            if pool.pending_sync.is_empty() {
                remember(&mut pool.dirty_closed, key);
                return;
            }
            let (old, _) = pool.pending_sync.remove(0);
            remember(&mut pool.dirty_closed, old);
        }
        pool.pending_sync.push((key, file));
    }

    /// Takes what `owner` must fdatasync: its kept evicted handles
    /// (counted as syncing until [`FilePool::synced`]), the indexes of its
    /// dirty open handles (now marked clean), and the indexes of its files
    /// closed dirty.
    fn take_dirty(&self, owner: u64) -> Dirty {
        let mut pool = self.lock();
        let open: Vec<usize> = pool
            .entries
            .iter_mut()
            .filter(|((o, _), e)| *o == owner && e.dirty)
            .map(|((_, idx), e)| {
                e.dirty = false;
                *idx
            })
            .collect();
        let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut pool.pending_sync)
            .into_iter()
            .partition(|((o, _), _)| *o == owner);
        pool.pending_sync = others;
        let kept: Vec<(usize, Arc<File>)> = mine
            .into_iter()
            .map(|((_, idx), file)| (idx, file))
            .collect();
        pool.syncing += kept.len();
        let closed = take_owner(&mut pool.dirty_closed, owner);
        Dirty { kept, open, closed }
    }

    /// A sync is done with `n` kept handles it took (they are closed).
    fn synced(&self, n: usize) {
        let mut pool = self.lock();
        pool.syncing = pool.syncing.saturating_sub(n);
    }

    /// The open handle of `key`, without counting as a use (a sync takes
    /// them one at a time, so it never pins more than one).
    fn peek(&self, key: Key) -> Option<Arc<File>> {
        self.lock().entries.get(&key).map(|e| e.file.clone())
    }

    /// Files a failed sync did not make durable: the next sync tries them
    /// again (by reopening).
    fn still_dirty(&self, owner: u64, files: impl Iterator<Item = usize>) {
        let mut pool = self.lock();
        for idx in files {
            remember(&mut pool.dirty_closed, (owner, idx));
        }
    }

    /// Closes every handle of `owner` (its storage is gone).
    fn release(&self, owner: u64) {
        let mut pool = self.lock();
        pool.entries.retain(|(o, _), _| *o != owner);
        pool.pending_sync.retain(|((o, _), _)| *o != owner);
        take_owner(&mut pool.dirty_closed, owner);
    }
}

impl Pool {
    /// The handle of `key` if open and fit (writable for a write), marked
    /// used now (and dirty for a write).
    fn use_entry(&mut self, key: Key, write: bool) -> Option<Arc<File>> {
        self.tick += 1;
        let tick = self.tick;
        let e = self
            .entries
            .get_mut(&key)
            .filter(|e| e.writable || !write)?;
        e.last_used = tick;
        e.dirty |= write;
        Some(e.file.clone())
    }
}

/// What one storage's sync must make durable.
struct Dirty {
    /// Evicted handles kept for the sync: (file index, handle).
    kept: Vec<(usize, Arc<File>)>,
    /// Files open in the pool (if still there when their turn comes).
    open: Vec<usize>,
    /// Files to reopen.
    closed: Vec<usize>,
}

fn remember(sorted: &mut Vec<Key>, key: Key) {
    if let Err(at) = sorted.binary_search(&key) {
        sorted.insert(at, key);
    }
}

/// Removes `owner`'s keys from a sorted list and returns their file indexes.
fn take_owner(sorted: &mut Vec<Key>, owner: u64) -> Vec<usize> {
    let from = sorted.partition_point(|k| k.0 < owner);
    let to = sorted.partition_point(|k| k.0 <= owner);
    sorted.drain(from..to).map(|(_, idx)| idx).collect()
}

/// The files of one torrent on a real filesystem.
pub struct FileStorage {
    place: DataDir,
    /// Checked components of each file, relative to the torrent's directory.
    relative: Vec<Vec<String>>,
    /// Full paths, for messages.
    paths: Vec<PathBuf>,
    pool: Arc<FilePool>,
    owner: u64,
}

impl Drop for FileStorage {
    fn drop(&mut self) {
        self.pool.release(self.owner);
    }
}

impl FileStorage {
    /// `root` is the anchor and the torrent's directory at once (trusted);
    /// `relative` the checked path of each file below it (see
    /// [`crate::metainfo::path`]). Its own pool of at most `max_open`
    /// descriptors.
    pub fn new(
        root: PathBuf,
        relative: Vec<Vec<String>>,
        max_open: usize,
    ) -> io::Result<FileStorage> {
        Self::with_pool(root, relative, FilePool::new(max_open))
    }

    /// As [`FileStorage::new`], with handles from a shared pool.
    pub fn with_pool(
        root: PathBuf,
        relative: Vec<Vec<String>>,
        pool: Arc<FilePool>,
    ) -> io::Result<FileStorage> {
        // A relative root (`peerlet verify` in the current directory) is
        // taken from the working directory, once.
        let root = std::path::absolute(&root)?;
        let place = DataDir::anchored_at(root)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Self::beneath(place, relative, pool)
    }

    /// Files at `relative` below `place.dir()`, every open resolved beneath
    /// `place.anchor()`, with handles from a shared pool.
    pub fn beneath(
        place: DataDir,
        relative: Vec<Vec<String>>,
        pool: Arc<FilePool>,
    ) -> io::Result<FileStorage> {
        let root = place.dir();
        let mut paths = Vec::with_capacity(relative.len());
        for rel in &relative {
            let p = join_under(root, rel).ok_or_else(|| {
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
        let owner = pool.next_owner.fetch_add(1, Ordering::Relaxed);
        Ok(FileStorage {
            place,
            relative,
            paths,
            pool,
            owner,
        })
    }

    /// Full path of file `file_idx`.
    pub fn path(&self, file_idx: usize) -> Option<&Path> {
        self.paths.get(file_idx).map(|p| p.as_path())
    }

    fn handle(&self, file_idx: usize, write: bool) -> io::Result<Arc<File>> {
        let key = (self.owner, file_idx);
        if let Some(file) = self.pool.get_or_reserve(key, write) {
            return Ok(file);
        }
        // Open outside the lock: it may create directories.
        let opened = self.open_handle(file_idx, write);
        // The walk's other descriptors are closed: only the file's slot is kept.
        self.pool.unreserve(WALK_FDS - 1);
        match opened {
            Ok((file, writable)) => Ok(self.pool.insert(key, Arc::new(file), writable, write)),
            Err(e) => {
                self.pool.unreserve(1);
                Err(e)
            }
        }
    }

    /// fdatasyncs a file closed since its last write, in slots of the pool.
    fn sync_closed(&self, file_idx: usize) -> io::Result<()> {
        self.pool.reserve(WALK_FDS);
        let r = self
            .open_file(file_idx, Open::Read)
            .and_then(|f| f.sync_data());
        self.pool.unreserve(WALK_FDS);
        match r {
            // Deleted since (by hand): nothing of it to make durable; the
            // next start's probe finds the file missing and rechecks.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    /// A handle for reading (`write` false) or writing. One for reading is
    /// opened read-write when the file allows it, so that a later write
    /// (a check, then a download) needs no second descriptor.
    fn open_handle(&self, file_idx: usize, write: bool) -> io::Result<(File, bool)> {
        if write {
            return Ok((self.open_file(file_idx, Open::Create)?, true));
        }
        match self.open_file(file_idx, Open::ReadWrite) {
            Ok(f) => Ok((f, true)),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EACCES | libc::EPERM | libc::EROFS | libc::ETXTBSY)
                ) =>
            {
                Ok((self.open_file(file_idx, Open::Read)?, false))
            }
            Err(e) => Err(e),
        }
    }

    /// The components of file `file_idx` below the anchor.
    fn comps(&self, file_idx: usize) -> io::Result<Vec<&str>> {
        let rel = self
            .relative
            .get(file_idx)
            .ok_or_else(|| bad_index(file_idx))?;
        Ok(self
            .place
            .below()
            .iter()
            .chain(rel)
            .map(String::as_str)
            .collect())
    }

    /// Opens file `file_idx` beneath the anchor (see [`super::beneath`]).
    fn open_file(&self, file_idx: usize, how: Open) -> io::Result<File> {
        let comps = self.comps(file_idx)?;
        let (flags, create) = match how {
            Open::Read => (libc::O_RDONLY, false),
            Open::ReadWrite => (libc::O_RDWR, false),
            Open::Create => (libc::O_RDWR | libc::O_CREAT, true),
        };
        beneath::open_file(self.place.anchor(), &comps, flags, 0o644, create)
    }

    /// `lstat` of file `file_idx` beneath the anchor, in slots of the pool:
    /// `None` when missing or not a regular file.
    fn stat(&self, file_idx: usize) -> io::Result<Option<std::fs::Metadata>> {
        let comps = self.comps(file_idx)?;
        self.pool.reserve(WALK_FDS);
        let r = beneath::metadata(self.place.anchor(), &comps);
        self.pool.unreserve(WALK_FDS);
        match r {
            Ok(md) if md.is_file() => Ok(Some(md)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    Read,
    /// Read and write; the file must exist.
    ReadWrite,
    /// Read and write, creating the file (and its directories).
    Create,
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
        let r = file.write_all_at(data, offset);
        self.pool.written((self.owner, file_idx), &file);
        r
    }

    fn ensure_len(&self, file_idx: usize, len: u64) -> io::Result<()> {
        let file = self.handle(file_idx, true)?;
        let r = file.metadata().and_then(|md| {
            if md.len() < len {
                file.set_len(len)
            } else {
                Ok(())
            }
        });
        self.pool.written((self.owner, file_idx), &file);
        r
    }

    fn file_len(&self, file_idx: usize) -> io::Result<Option<u64>> {
        Ok(self.stat(file_idx)?.map(|md| md.len()))
    }

    fn file_mtime(&self, file_idx: usize) -> io::Result<Option<i64>> {
        use std::os::unix::fs::MetadataExt;
        Ok(self.stat(file_idx)?.map(|md| {
            md.mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(md.mtime_nsec())
        }))
    }

    fn check_place(&self) -> io::Result<()> {
        let below: Vec<&str> = self.place.below().iter().map(String::as_str).collect();
        self.pool.reserve(WALK_FDS);
        let r = beneath::check_dirs(self.place.anchor(), &below);
        self.pool.unreserve(WALK_FDS);
        r
    }

    fn sync(&self) -> io::Result<()> {
        let Dirty { kept, open, closed } = self.pool.take_dirty(self.owner);
        let n_kept = kept.len();
        let mut failed = None;
        for (i, (_, f)) in kept.iter().enumerate() {
            if let Err(e) = f.sync_data() {
                failed = Some((e, i));
                break;
            }
        }
        // The file indexes still to make durable if something fails.
        let mut left: Vec<usize> = match &failed {
            Some((_, i)) => kept[*i..].iter().map(|(idx, _)| *idx).collect(),
            None => Vec::new(),
        };
        // The kept handles close here, and give their slots back after.
        drop(kept);
        self.pool.synced(n_kept);
        if let Some((e, _)) = failed {
            left.extend(open.into_iter().chain(closed));
            self.pool.still_dirty(self.owner, left.into_iter());
            return Err(e);
        }
        // Open handles one at a time; one closed meanwhile is reopened.
        let todo: Vec<usize> = open.into_iter().chain(closed).collect();
        for (i, &idx) in todo.iter().enumerate() {
            let r = match self.pool.peek((self.owner, idx)) {
                Some(f) => f.sync_data(),
                None => self.sync_closed(idx),
            };
            if let Err(e) = r {
                self.pool.still_dirty(self.owner, todo[i..].iter().copied());
                return Err(e);
            }
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

    /// Every (file index) of `st` that its next sync will fdatasync.
    fn to_sync(st: &FileStorage) -> Vec<usize> {
        let pool = st.pool.lock();
        let mut all: Vec<usize> = pool
            .entries
            .iter()
            .filter(|((o, _), e)| *o == st.owner && e.dirty)
            .map(|((_, idx), _)| *idx)
            .chain(
                pool.pending_sync
                    .iter()
                    .filter(|((o, _), _)| *o == st.owner)
                    .map(|((_, idx), _)| *idx),
            )
            .chain(
                pool.dirty_closed
                    .iter()
                    .filter(|(o, _)| *o == st.owner)
                    .map(|(_, idx)| *idx),
            )
            .collect();
        crate::sort::sort_by(&mut all, Ord::cmp);
        all
    }

    #[test]
    fn every_file_written_since_the_last_sync_is_synced_once() {
        let dir = tempdir("many-dirty");
        let n = 60;
        let files: Vec<Vec<String>> = (0..n).map(|i| rel(&["m", &format!("f{i}")])).collect();
        // 12 descriptors: 9 for handles in use (8 open, and the second
        // descriptor of the next open's walk), 3 kept for the sync.
        let st = FileStorage::new(dir.clone(), files, 12).unwrap();
        for round in 0..2 {
            for i in 0..n {
                st.write_at(i, round, b"y").unwrap();
            }
            {
                let pool = st.pool.lock();
                assert_eq!(pool.entries.len(), 8);
                assert_eq!(pool.pending_sync.len(), 3);
                // Evictions beyond the kept handles cost no fdatasync now:
                // they are remembered by index, once each.
                assert_eq!(pool.dirty_closed.len(), n - 11);
            }
            assert_eq!(to_sync(&st), (0..n).collect::<Vec<_>>());
            assert_eq!(st.pool.open_files(), 11);
            st.sync().unwrap();
            assert!(to_sync(&st).is_empty());
            // The kept handles are closed; reopening the closed files took
            // two slots (a handle in use made room for the second).
            assert_eq!(st.pool.open_files(), 7);
            assert_eq!(st.pool.lock().opening, 0);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn storages_share_one_bound_and_sync_only_their_own_files() {
        let dir = tempdir("shared-pool");
        let pool = FilePool::new(8);
        let storages: Vec<FileStorage> = (0..5)
            .map(|t| {
                let files = (0..4)
                    .map(|i| rel(&[&format!("t{t}"), &format!("f{i}")]))
                    .collect();
                FileStorage::with_pool(dir.clone(), files, pool.clone()).unwrap()
            })
            .collect();
        // 5 torrents x 4 files written: never more than 8 descriptors.
        for (t, st) in storages.iter().enumerate() {
            for i in 0..4 {
                st.write_at(i, 0, &[t as u8, i as u8]).unwrap();
                assert!(pool.open_files() <= 8, "{} open", pool.open_files());
            }
        }
        for st in &storages {
            assert_eq!(to_sync(st), vec![0, 1, 2, 3]);
        }
        // One torrent's sync leaves the others' dirty files alone.
        storages[2].sync().unwrap();
        assert!(to_sync(&storages[2]).is_empty());
        for t in [0, 1, 3, 4] {
            assert_eq!(to_sync(&storages[t]), vec![0, 1, 2, 3], "torrent {t}");
        }
        // Reading (every file of every torrent, twice) stays in bounds too,
        // and reads back what each wrote.
        for _ in 0..2 {
            for (t, st) in storages.iter().enumerate() {
                for i in 0..4 {
                    let mut b = [0u8; 2];
                    st.read_at(i, 0, &mut b).unwrap();
                    assert_eq!(b, [t as u8, i as u8]);
                    assert!(pool.open_files() <= 8);
                }
            }
        }
        // A storage dropped closes its handles and forgets its dirty files.
        let mut storages = storages;
        let gone = storages.remove(4);
        let owner = gone.owner;
        drop(gone);
        {
            let p = pool.lock();
            assert!(p.entries.keys().all(|(o, _)| *o != owner));
            assert!(p.pending_sync.iter().all(|((o, _), _)| *o != owner));
            assert!(p.dirty_closed.iter().all(|(o, _)| *o != owner));
        }
        for st in &storages {
            st.sync().unwrap();
            assert!(to_sync(st).is_empty());
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_handle_in_use_is_never_the_one_closed() {
        let dir = tempdir("pool-in-use");
        let files: Vec<Vec<String>> = (0..5).map(|i| rel(&[&format!("f{i}")])).collect();
        // 5 descriptors: 4 for handles (3 open and the second descriptor
        // of a walk), 1 kept for syncs.
        let st = FileStorage::new(dir.clone(), files, 5).unwrap();
        for i in 0..5 {
            st.write_at(i, 0, b"w").unwrap();
        }
        st.sync().unwrap();
        // Two handles held by "workers", f0 the least recently used.
        let a = st.handle(0, false).unwrap();
        let b = st.handle(1, false).unwrap();
        let _c = st.handle(2, false).unwrap();
        drop(_c);
        // f3 needs two slots: f2 is the only handle nobody holds.
        st.handle(3, false).unwrap();
        let open: Vec<usize> = {
            let mut v: Vec<usize> = st.pool.lock().entries.keys().map(|k| k.1).collect();
            v.sort_unstable();
            v
        };
        assert_eq!(open, vec![0, 1, 3]);
        assert_eq!(st.pool.open_files(), 3);
        // Every handle held: the pool can only go past its bound (by the
        // walk's descriptor while f4 opens; 4 handles after).
        let d = st.handle(3, false).unwrap();
        st.handle(4, false).unwrap();
        assert_eq!(st.pool.open_files(), 4);
        drop((a, b, d));
        st.handle(2, false).unwrap();
        assert_eq!(st.pool.open_files(), 3);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_write_finishing_after_a_sync_began_is_in_the_next_sync() {
        let dir = tempdir("pool-write-in-flight");
        let st = FileStorage::new(dir.clone(), vec![rel(&["f"])], 8).unwrap();
        // What write_at does, with a sync between taking the handle and
        // the write landing.
        let h = st.handle(0, true).unwrap();
        st.sync().unwrap();
        assert!(to_sync(&st).is_empty());
        h.write_all_at(b"data", 0).unwrap();
        st.pool.written((st.owner, 0), &h);
        drop(h);
        assert_eq!(to_sync(&st), vec![0]);
        // A file opened for reading is opened read-write when it may be:
        // the write after it takes no second descriptor.
        let mut b = [0u8; 4];
        st.sync().unwrap();
        let files: Vec<Vec<String>> = vec![rel(&["f"]), rel(&["g"])];
        let st2 = FileStorage::new(dir.clone(), files, 8).unwrap();
        st2.read_at(0, 0, &mut b).unwrap();
        assert_eq!(&b, b"data");
        st2.write_at(0, 4, b"more").unwrap();
        assert_eq!(st2.pool.open_files(), 1);
        // A read of a missing file creates nothing.
        assert!(st2.read_at(1, 0, &mut b).is_err());
        assert!(!dir.join("g").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_pool_of_one_descriptor_still_works() {
        let dir = tempdir("pool-of-one");
        let files: Vec<Vec<String>> = (0..3).map(|i| rel(&[&format!("f{i}")])).collect();
        let st = FileStorage::new(dir.clone(), files, 1).unwrap();
        for i in 0..3 {
            st.write_at(i, 0, b"z").unwrap();
            assert_eq!(st.pool.open_files(), 1);
        }
        assert_eq!(to_sync(&st), vec![0, 1, 2]);
        st.sync().unwrap();
        assert!(to_sync(&st).is_empty());
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
        assert!(st.pool.open_files() <= 3);
        st.sync().unwrap();
        assert!(to_sync(&st).is_empty());
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

    /// A storage of `dl/real3/t/f` anchored at `dl`; `outside` holds a
    /// sentinel `t/f`.
    fn swapped_setup(name: &str) -> (PathBuf, PathBuf, FileStorage) {
        let dl = tempdir(name);
        let outside = tempdir(&format!("{name}-outside"));
        std::fs::create_dir_all(outside.join("t")).unwrap();
        std::fs::write(outside.join("t/f"), b"sentinel").unwrap();
        let place = DataDir::new(dl.clone(), dl.join("real3")).unwrap();
        let st = FileStorage::beneath(place, vec![rel(&["t", "f"])], FilePool::new(8)).unwrap();
        (dl, outside, st)
    }

    #[test]
    fn a_torrent_dir_made_a_link_after_the_storage_is_refused() {
        let (dl, outside, st) = swapped_setup("swap-dir");
        // Missing directories between the anchor and the file are made.
        st.write_at(0, 0, b"legit").unwrap();
        st.sync().unwrap();
        let mut b = [0u8; 5];
        st.read_at(0, 0, &mut b).unwrap();
        assert_eq!(&b, b"legit");
        assert_eq!(st.file_len(0).unwrap(), Some(5));
        st.check_place().unwrap();
        // Swapped for a link: every open refused, from a fresh storage
        // (nothing cached) and from this one (its handle closed first).
        std::fs::remove_dir_all(dl.join("real3")).unwrap();
        std::os::unix::fs::symlink(&outside, dl.join("real3")).unwrap();
        st.pool.release(st.owner);
        let place = DataDir::new(dl.clone(), dl.join("real3")).unwrap();
        let fresh = FileStorage::beneath(place, vec![rel(&["t", "f"])], FilePool::new(8)).unwrap();
        for s in [&st, &fresh] {
            let e = s.write_at(0, 0, b"evil").unwrap_err();
            assert!(crate::storage::is_refused(&e), "{e}");
            assert!(e.to_string().contains("symbolic link"), "{e}");
            assert!(s.read_at(0, 0, &mut b).is_err());
            assert!(s.ensure_len(0, 100).is_err());
            assert!(crate::storage::is_refused(&s.file_len(0).unwrap_err()));
            assert!(s.file_mtime(0).is_err());
            assert!(crate::storage::is_refused(&s.check_place().unwrap_err()));
        }
        let place = DataDir::new(dl.clone(), dl.join("real3")).unwrap();
        let e = crate::storage::remove_torrent_data(&place, &[rel(&["t", "f"])]).unwrap_err();
        assert!(crate::storage::is_refused(&e), "{e}");
        assert_eq!(std::fs::read(outside.join("t/f")).unwrap(), b"sentinel");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
        std::fs::remove_dir_all(dl).unwrap();
        std::fs::remove_dir_all(outside).unwrap();
    }

    #[test]
    fn a_middle_directory_made_a_link_is_refused() {
        let (dl, outside, st) = swapped_setup("swap-middle");
        st.write_at(0, 0, b"legit").unwrap();
        st.sync().unwrap();
        st.pool.release(st.owner);
        // `real3/t`, between the torrent's directory and its file.
        std::fs::remove_dir_all(dl.join("real3/t")).unwrap();
        std::os::unix::fs::symlink(outside.join("t"), dl.join("real3/t")).unwrap();
        let e = st.write_at(0, 0, b"evil").unwrap_err();
        assert!(crate::storage::is_refused(&e), "{e}");
        assert!(crate::storage::is_refused(&st.file_len(0).unwrap_err()));
        let mut b = [0u8; 4];
        assert!(st.read_at(0, 0, &mut b).is_err());
        // The file itself a link: refused too (its directory is fine).
        std::fs::remove_file(dl.join("real3/t")).unwrap();
        std::fs::create_dir(dl.join("real3/t")).unwrap();
        std::os::unix::fs::symlink(outside.join("t/f"), dl.join("real3/t/f")).unwrap();
        assert!(st.write_at(0, 0, b"evil").is_err());
        assert_eq!(st.file_len(0).unwrap(), None);
        // Removing the data removes the link, not what it points to.
        let place = DataDir::new(dl.clone(), dl.join("real3")).unwrap();
        crate::storage::remove_torrent_data(&place, &[rel(&["t", "f"])]).unwrap();
        assert!(dl.join("real3").is_dir() && !dl.join("real3/t").exists());
        assert_eq!(std::fs::read(outside.join("t/f")).unwrap(), b"sentinel");
        std::fs::remove_dir_all(dl).unwrap();
        std::fs::remove_dir_all(outside).unwrap();
    }

    #[test]
    fn data_dirs_lie_below_their_anchor_as_written() {
        assert!(DataDir::new("/a".into(), "/a/b/c".into()).is_ok());
        assert_eq!(
            DataDir::new("/a".into(), "/a/b/c".into()).unwrap().below(),
            ["b", "c"]
        );
        assert!(DataDir::new("/a".into(), "/b".into()).is_err());
        assert!(DataDir::new("/a".into(), "/a/../b".into()).is_err());
        assert!(DataDir::new("/a".into(), "a/b".into()).is_err());
        assert!(DataDir::anchored_at("/a".into())
            .unwrap()
            .below()
            .is_empty());
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
