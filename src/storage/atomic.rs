//! Whole-file reads with a size cap, and atomic whole-file writes
//! (temporary file, fsync, rename, fsync of the directory), so a crash or
//! power cut leaves either the old file or the new one, never a torn one.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Reads a whole file, refusing one larger than `max` bytes.
pub fn read_limited(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let file = File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let mut buf = Vec::new();
    file.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {max} bytes", path.display()),
        ));
    }
    Ok(buf)
}

/// Writes `data` with permissions `mode` to a new temporary file beside
/// `path` and syncs it; returns `path`'s directory and the temporary file
/// (removed again if writing failed).
fn write_temp<'a>(path: &'a Path, data: &[u8], mode: u32) -> io::Result<(&'a Path, PathBuf)> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    // Unique per call: two saves of one file in flight at once (on two
    // workers) must not write through the same temporary file.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{n}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()
    })();
    match written {
        Ok(()) => Ok((dir, tmp)),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Writes `data` to `path` atomically with permissions `mode`.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let result = write_temp(path, data, mode).and_then(|(dir, tmp)| {
        let placed = std::fs::rename(&tmp, path).and_then(|()| File::open(dir)?.sync_all());
        if placed.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        placed
    });
    result.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Creates `path` holding `data` with permissions `mode`, atomically (a
/// reader sees no file or the whole file) and only if nothing is there:
/// `Ok(false)` when `path` already exists, which is then left untouched.
/// The file is written and synced under a temporary name, then hard-linked
/// into place (the link fails rather than replace), and the directory synced.
pub fn create_new_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<bool> {
    let result = write_temp(path, data, mode).and_then(|(dir, tmp)| {
        let placed = (|| {
            let created = match std::fs::hard_link(&tmp, path) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                // A file system without hard links (FAT): rename, after a last look.
                Err(_) if !path.exists() => {
                    std::fs::rename(&tmp, path)?;
                    true
                }
                Err(e) => return Err(e),
            };
            File::open(dir)?.sync_all()?;
            Ok(created)
        })();
        let _ = std::fs::remove_file(&tmp);
        placed
    });
    result.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Appends `data` to `path` (created 0600 if missing), without fsync: for
/// hint files such as the resume journal.
pub fn append_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

/// Removes files that exist; missing ones are fine.
pub fn remove_files(paths: &[std::path::PathBuf]) -> io::Result<()> {
    for p in paths {
        match std::fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", p.display()))),
        }
    }
    Ok(())
}

/// Deletes a torrent's files under `place.dir()` (checked relative
/// paths), then the directories they leave empty, never the directory
/// itself. Every removal is resolved beneath the anchor: a link is removed,
/// not followed, and nothing is removed through one.
pub fn remove_torrent_data(place: &super::DataDir, relative: &[Vec<String>]) -> io::Result<()> {
    use super::beneath;
    let below: Vec<&str> = place.below().iter().map(String::as_str).collect();
    let mut dirs: Vec<&[String]> = Vec::new();
    for rel in relative {
        if rel.is_empty() {
            continue;
        }
        let comps: Vec<&str> = below
            .iter()
            .copied()
            .chain(rel.iter().map(String::as_str))
            .collect();
        match beneath::metadata(place.anchor(), &comps) {
            Ok(md) if !md.is_dir() => beneath::remove(place.anchor(), &comps, false)?,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound && !beneath::is_refused(&e) => {}
            Err(e) => return Err(e),
        }
        for n in 1..rel.len() {
            if !dirs.contains(&&rel[..n]) {
                dirs.push(&rel[..n]);
            }
        }
    }
    // Deepest first; only empty directories go.
    crate::sort::sort_by_key(&mut dirs, |d| std::cmp::Reverse(d.len()));
    for d in dirs {
        let comps: Vec<&str> = below
            .iter()
            .copied()
            .chain(d.iter().map(String::as_str))
            .collect();
        let _ = beneath::remove(place.anchor(), &comps, true);
    }
    Ok(())
}

/// Lists the file names in `dir` (empty when it does not exist).
pub fn list_dir(dir: &Path) -> io::Result<Vec<String>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Creates `dir` and its parents with mode 0700 when missing.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::tests::tempdir;

    #[test]
    fn write_then_read() {
        let dir = tempdir("atomic");
        let p = dir.join("state");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(read_limited(&p, 3).unwrap(), b"two");
        assert!(read_limited(&p, 2).is_err());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn create_new_never_replaces() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempdir("create-new");
        let p = dir.join("secret");
        assert!(create_new_atomic(&p, b"one", 0o600).unwrap());
        assert!(!create_new_atomic(&p, b"two", 0o600).unwrap());
        assert_eq!(read_limited(&p, 3).unwrap(), b"one");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
