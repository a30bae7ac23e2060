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
}

pub struct FaultyStorage<S> {
    inner: S,
    plan: Arc<Mutex<FaultPlan>>,
}

impl<S: Storage> FaultyStorage<S> {
    pub fn new(inner: S) -> (FaultyStorage<S>, Arc<Mutex<FaultPlan>>) {
        let plan = Arc::new(Mutex::new(FaultPlan::default()));
        (
            FaultyStorage {
                inner,
                plan: plan.clone(),
            },
            plan,
        )
    }

    fn plan(&self) -> FaultPlan {
        self.plan.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
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
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
        }
        self.inner.write_at(file_idx, offset, data)
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
        if let Some(errno) = self.plan().sync_error {
            return Err(io::Error::from_raw_os_error(errno));
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
}
