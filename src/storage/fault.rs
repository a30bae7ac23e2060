//! [`FaultyStorage`]: wraps a storage and injects faults, for tests.
//!
//! The plan can be changed while the storage is in use (through the shared
//! [`FaultPlan`] handle), so a test can fill the "disk", watch the torrent
//! pause, then clear the fault and watch it resume.

use super::Storage;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What to inject. Errors are raw OS error numbers such as `libc::ENOSPC`.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    /// Every write fails with this error.
    pub write_error: Option<i32>,
    /// Every read fails with this error.
    pub read_error: Option<i32>,
    /// Writes succeed until this many more bytes are written; the write that
    /// crosses it writes only up to it and then fails with ENOSPC (a short
    /// write, as a filling disk gives).
    pub write_budget: Option<u64>,
    /// Sleep before every read and write (a slow SD card).
    pub delay: Duration,
    /// Sync fails with this error.
    pub sync_error: Option<i32>,
    /// A failing sync loses what was written since the last sync, as a
    /// failed writeback does: reads still return it (the page cache), but
    /// the next successful sync leaves zeros there (the device never got
    /// it) unless it was written again meanwhile.
    pub sync_loses_writes: bool,
}

/// Byte ranges of one file: (file index, offset, length).
type Ranges = Vec<(usize, u64, u64)>;

pub struct FaultyStorage<S> {
    inner: S,
    plan: Arc<Mutex<FaultPlan>>,
    /// Written since the last sync, and lost by a failed one (for
    /// [`FaultPlan::sync_loses_writes`]).
    written: Mutex<Ranges>,
    lost: Mutex<Ranges>,
}

impl<S: Storage> FaultyStorage<S> {
    pub fn new(inner: S) -> (FaultyStorage<S>, Arc<Mutex<FaultPlan>>) {
        let plan = Arc::new(Mutex::new(FaultPlan::default()));
        (
            FaultyStorage {
                inner,
                plan: plan.clone(),
                written: Mutex::default(),
                lost: Mutex::default(),
            },
            plan,
        )
    }

    fn plan(&self) -> FaultPlan {
        self.plan.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `len` bytes at `offset` of file `file_idx` were written: they are
    /// due at the next sync, and no longer lost.
    fn wrote(&self, file_idx: usize, offset: u64, len: u64) {
        lock(&self.written).push((file_idx, offset, len));
        lock(&self.lost)
            .retain(|&(f, o, l)| !(f == file_idx && o >= offset && o + l <= offset + len));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<S: Storage> Storage for FaultyStorage<S> {
    fn n_files(&self) -> usize {
        self.inner.n_files()
    }

    fn read_at(&self, file_idx: usize, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let plan = self.plan();
        if !plan.delay.is_zero() {
            std::thread::sleep(plan.delay);
        }
        if let Some(errno) = plan.read_error {
            return Err(io::Error::from_raw_os_error(errno));
        }
        self.inner.read_at(file_idx, offset, buf)
    }

    fn write_at(&self, file_idx: usize, offset: u64, data: &[u8]) -> io::Result<()> {
        let plan = self.plan();
        if !plan.delay.is_zero() {
            std::thread::sleep(plan.delay);
        }
        if let Some(errno) = plan.write_error {
            return Err(io::Error::from_raw_os_error(errno));
        }
        if let Some(budget) = plan.write_budget {
            let n = (data.len() as u64).min(budget);
            self.plan
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .write_budget = Some(budget - n);
            if n < data.len() as u64 {
                self.inner.write_at(file_idx, offset, &data[..n as usize])?;
                self.wrote(file_idx, offset, n);
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
        }
        self.inner.write_at(file_idx, offset, data)?;
        self.wrote(file_idx, offset, data.len() as u64);
        Ok(())
    }

    fn ensure_len(&self, file_idx: usize, len: u64) -> io::Result<()> {
        if let Some(errno) = self.plan().write_error {
            return Err(io::Error::from_raw_os_error(errno));
        }
        self.inner.ensure_len(file_idx, len)
    }

    fn file_len(&self, file_idx: usize) -> io::Result<Option<u64>> {
        self.inner.file_len(file_idx)
    }

    fn file_mtime(&self, file_idx: usize) -> io::Result<Option<i64>> {
        self.inner.file_mtime(file_idx)
    }

    fn sync(&self) -> io::Result<()> {
        let plan = self.plan();
        let written = std::mem::take(&mut *lock(&self.written));
        if let Some(errno) = plan.sync_error {
            if plan.sync_loses_writes {
                lock(&self.lost).extend(written);
            }
            return Err(io::Error::from_raw_os_error(errno));
        }
        // What a failed sync lost and nothing wrote again is not on the
        // device: it reads as zeros once the cache is gone.
        let lost = std::mem::take(&mut *lock(&self.lost));
        for (file_idx, offset, len) in lost {
            self.inner
                .write_at(file_idx, offset, &vec![0; len as usize])?;
        }
        self.inner.sync()
    }

    fn check_place(&self) -> io::Result<()> {
        self.inner.check_place()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{tests::tempdir, FileStorage};

    #[test]
    fn short_write_then_recover() {
        let dir = tempdir("fault");
        let inner = FileStorage::new(dir.clone(), vec![vec!["f".into()]], 4).unwrap();
        let (st, plan) = FaultyStorage::new(inner);
        plan.lock().unwrap().write_budget = Some(3);
        let e = st.write_at(0, 0, b"hello").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(std::fs::read(dir.join("f")).unwrap(), b"hel");
        plan.lock().unwrap().write_error = Some(libc::EACCES);
        assert_eq!(
            st.write_at(0, 0, b"x").unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
        *plan.lock().unwrap() = FaultPlan::default();
        st.write_at(0, 0, b"hello").unwrap();
        assert_eq!(std::fs::read(dir.join("f")).unwrap(), b"hello");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failed_sync_loses_what_is_not_written_again() {
        let dir = tempdir("fault-sync");
        let inner = FileStorage::new(dir.clone(), vec![vec!["f".into()]], 4).unwrap();
        let (st, plan) = FaultyStorage::new(inner);
        st.write_at(0, 0, b"aaaa").unwrap();
        st.sync().unwrap();
        st.write_at(0, 4, b"bbbb").unwrap();
        st.write_at(0, 8, b"cccc").unwrap();
        *plan.lock().unwrap() = FaultPlan {
            sync_error: Some(libc::EIO),
            sync_loses_writes: true,
            ..FaultPlan::default()
        };
        assert!(st.sync().is_err());
        let mut buf = [0u8; 12];
        st.read_at(0, 0, &mut buf).unwrap();
        assert_eq!(&buf, b"aaaabbbbcccc", "still in the cache");
        *plan.lock().unwrap() = FaultPlan::default();
        st.write_at(0, 8, b"CCCC").unwrap();
        st.sync().unwrap();
        st.read_at(0, 0, &mut buf).unwrap();
        assert_eq!(&buf, b"aaaa\0\0\0\0CCCC", "written again or lost");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
