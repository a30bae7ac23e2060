//! Walking a file or directory to make a torrent of it.
//!
//! Order: files are sorted by their full relative path, compared byte by
//! byte with `/` as the separator. This is the order mktorrent uses, so
//! `peerlet create` and `mktorrent` give the same info-hash for the same
//! directory and piece length. Regular files only: symbolic links and
//! special files are skipped (and logged), hidden files are included.

use std::io;
use std::path::{Path, PathBuf};

/// Most files a directory walk accepts.
pub const MAX_FILES: usize = 1_000_000;

/// A file found by [`walk`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalkedFile {
    /// Components below the walked directory (empty when a single file was walked).
    pub relative: Vec<String>,
    pub path: PathBuf,
    pub length: u64,
}

/// Lists the regular files under `root` (or `root` itself if it is a file).
pub fn walk(root: &Path) -> io::Result<Vec<WalkedFile>> {
    let md = std::fs::metadata(root)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", root.display())))?;
    if md.is_file() {
        return Ok(vec![WalkedFile {
            relative: Vec::new(),
            path: root.to_path_buf(),
            length: md.len(),
        }]);
    }
    if !md.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is neither a file nor a directory", root.display()),
        ));
    }
    let mut out = Vec::new();
    let mut stack: Vec<(PathBuf, Vec<String>)> = vec![(root.to_path_buf(), Vec::new())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().into_string().map_err(|n| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("file name {n:?} in {} is not UTF-8", dir.display()),
                )
            })?;
            let ft = entry.file_type()?;
            let mut child_rel = rel.clone();
            child_rel.push(name);
            if ft.is_dir() {
                stack.push((entry.path(), child_rel));
            } else if ft.is_file() {
                let length = entry.metadata()?.len();
                out.push(WalkedFile {
                    relative: child_rel,
                    path: entry.path(),
                    length,
                });
                if out.len() > MAX_FILES {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("more than {MAX_FILES} files"),
                    ));
                }
            } else {
                log::warn!("skipping {} (not a regular file)", entry.path().display());
            }
        }
    }
    crate::sort::sort_by_cached_key(&mut out, |f| f.relative.join("/"));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::tests::tempdir;

    #[test]
    fn sorted_like_mktorrent() {
        let dir = tempdir("walk");
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/c"), b"1").unwrap();
        std::fs::write(dir.join("a.txt"), b"22").unwrap();
        std::fs::write(dir.join("a/z"), b"").unwrap();
        std::fs::write(dir.join(".hidden"), b"4444").unwrap();
        std::os::unix::fs::symlink(dir.join("a.txt"), dir.join("link")).unwrap();
        let files = walk(&dir).unwrap();
        let names: Vec<String> = files.iter().map(|f| f.relative.join("/")).collect();
        assert_eq!(names, vec![".hidden", "a.txt", "a/b/c", "a/z"]);
        assert_eq!(files[1].length, 2);
        let single = walk(&dir.join("a.txt")).unwrap();
        assert_eq!(single.len(), 1);
        assert!(single[0].relative.is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
