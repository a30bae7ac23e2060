//! Opening torrent data beneath a trusted directory, the anchor, without
//! following a symbolic link anywhere below it, at the moment of the open.
//!
//! A path checked once and opened later is open to a race: any directory on
//! it may have become a link since (`ln -s /etc DOWNLOADS/real3` after the
//! torrent was added). So every open starts from a descriptor of the anchor
//! and resolves the rest relative to it:
//!
//! - `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` (Linux 5.6) where the
//!   kernel has it: one call, and the kernel refuses every link and `..`;
//! - else (`ENOSYS`: an older kernel; `EPERM`, `EINVAL`: a seccomp filter or
//!   a kernel that refuses the flags; remembered for the process, and a
//!   genuine `EPERM`, such as an immutable file, only costs the speed: the
//!   walk is as strict, and answers the open for itself) a walk,
//!   one component at a time: each opened with `O_PATH | O_NOFOLLOW` from
//!   the directory before, `fstat`ed on its descriptor (no race: the
//!   descriptor is the inode) and refused unless a directory; missing ones
//!   made with `mkdirat` when asked. The last is opened with `O_NOFOLLOW`.
//!
//! A link below the anchor is a [`Refused`] error. The anchor itself is
//! opened by its path, links followed: it is trusted (the download
//! directory, a configured allowed directory, or one the local user named
//! and the daemon resolved when the torrent was added).
//!
//! Descriptors: a walk holds at most two at once (the directory it stands
//! in and the one it opens), its result included: [`WALK_FDS`].

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Most descriptors one open below an anchor holds at once, its result included.
pub const WALK_FDS: usize = 2;

/// An open refused because a component below the anchor is a symbolic
/// link (or, for a directory on the way, not a directory).
#[derive(Debug)]
pub struct Refused {
    pub path: PathBuf,
    pub link: bool,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.link {
            write!(
                f,
                "refusing to follow a symbolic link at {}",
                self.path.display()
            )
        } else {
            write!(f, "{} exists and is not a directory", self.path.display())
        }
    }
}

impl std::error::Error for Refused {}

/// Whether `e` is a [`Refused`] open.
pub fn is_refused(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Refused>())
}

fn refused(path: PathBuf, link: bool) -> io::Error {
    let kind = if link {
        io::ErrorKind::InvalidInput
    } else {
        io::ErrorKind::AlreadyExists
    };
    io::Error::new(kind, Refused { path, link })
}

fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn cstr(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("file name {name:?} holds a NUL byte"),
        )
    })
}

/// Where a torrent's data lives: `dir` (its files at `dir/<name>/…`), at
/// or below `anchor`, the trusted directory every open starts from. The
/// components from `anchor` to `dir` are walked like the torrent's own
/// (not trusted: they may become links).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDir {
    anchor: PathBuf,
    dir: PathBuf,
    below: Vec<String>,
    local: bool,
}

impl DataDir {
    /// `dir` at or below `anchor`, both absolute, compared as written
    /// (nothing is resolved): every component between them a plain name.
    pub fn new(anchor: PathBuf, dir: PathBuf) -> Result<DataDir, String> {
        if !anchor.is_absolute() || !dir.is_absolute() {
            return Err(format!(
                "'{}' and '{}' must be absolute paths",
                anchor.display(),
                dir.display()
            ));
        }
        let rel = dir
            .strip_prefix(&anchor)
            .map_err(|_| format!("'{}' is not below '{}'", dir.display(), anchor.display()))?;
        let mut below = Vec::new();
        for c in rel.components() {
            let name = match c {
                std::path::Component::Normal(n) => n.to_str(),
                _ => None,
            };
            match name.filter(|n| crate::metainfo::path::check_component(n.as_bytes()).is_ok()) {
                Some(n) => below.push(n.to_string()),
                None => {
                    return Err(format!(
                        "'{}' below '{}' is not a plain name",
                        c.as_os_str().to_string_lossy(),
                        anchor.display()
                    ))
                }
            }
        }
        Ok(DataDir {
            anchor,
            dir,
            below,
            local: false,
        })
    }

    /// Marks the anchor as one the local user named (recorded as such).
    pub fn chosen_locally(mut self, local: bool) -> DataDir {
        self.local = local;
        self
    }

    /// The anchor is one the local user named, not the download directory
    /// or an allowed directory.
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// A directory that is its own anchor.
    pub fn anchored_at(dir: PathBuf) -> Result<DataDir, String> {
        DataDir::new(dir.clone(), dir)
    }

    pub fn anchor(&self) -> &Path {
        &self.anchor
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The components from the anchor to the directory.
    pub fn below(&self) -> &[String] {
        &self.below
    }
}

/// Cleared for the process when the kernel (or a seccomp filter) has no
/// `openat2` for us.
static OPENAT2: AtomicBool = AtomicBool::new(true);

/// Opens the anchor directory (links in its own path followed: trusted).
fn open_anchor(anchor: &Path) -> io::Result<OwnedFd> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(anchor)
        .map(OwnedFd::from)
        .map_err(|e| at(anchor, e))
}

/// Opens file `comps` (directories, then the file's name) below `anchor`
/// with `flags` (`O_NOFOLLOW` added; `O_CREAT` with `mode`), making
/// missing directories when `create_dirs`. Refuses anything but a
/// regular file at the end.
pub fn open_file(
    anchor: &Path,
    comps: &[&str],
    flags: libc::c_int,
    mode: u32,
    create_dirs: bool,
) -> io::Result<File> {
    let Some((last, dirs)) = comps.split_last() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty file path",
        ));
    };
    let flags = flags | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_LARGEFILE;
    let shown = comps.iter().fold(anchor.to_path_buf(), |p, c| p.join(c));
    let fd = match openat2_beneath(anchor, comps, flags, mode)? {
        Some(Ok(fd)) => fd,
        Some(Err(e)) if !(create_dirs && e.kind() == io::ErrorKind::NotFound) => {
            return Err(at(&shown, e))
        }
        // Not there to be made by the kernel alone, or unavailable: walk.
        _ => {
            let dir = walk(anchor, dirs, create_dirs)?;
            sys::openat(dir.as_fd(), &cstr(last)?, flags, mode).map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    refused(shown.clone(), true)
                } else {
                    at(&shown, e)
                }
            })?
        }
    };
    let file = File::from(fd);
    let md = file.metadata().map_err(|e| at(&shown, e))?;
    if !md.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", shown.display()),
        ));
    }
    Ok(file)
}

/// The metadata of `comps` below `anchor` without following a link
/// (`lstat`): a link at the end is described, not followed; a missing
/// file is `NotFound`.
pub fn metadata(anchor: &Path, comps: &[&str]) -> io::Result<std::fs::Metadata> {
    let Some((last, dirs)) = comps.split_last() else {
        return File::from(open_anchor(anchor)?).metadata();
    };
    let flags = libc::O_PATH | libc::O_NOFOLLOW;
    let shown = comps.iter().fold(anchor.to_path_buf(), |p, c| p.join(c));
    let fd = match openat2_beneath(anchor, comps, flags, 0)? {
        Some(Ok(fd)) => fd,
        Some(Err(e)) if e.kind() == io::ErrorKind::NotFound => return Err(at(&shown, e)),
        _ => {
            let dir = walk(anchor, dirs, false)?;
            sys::openat(dir.as_fd(), &cstr(last)?, flags, 0).map_err(|e| at(&shown, e))?
        }
    };
    File::from(fd).metadata().map_err(|e| at(&shown, e))
}

/// Checks that directories `comps` below `anchor` are directories, not
/// links, as far as they exist (a missing one is fine: it is made when
/// data is written).
pub fn check_dirs(anchor: &Path, comps: &[&str]) -> io::Result<()> {
    match walk(anchor, comps, false) {
        Err(e) if e.kind() == io::ErrorKind::NotFound && !is_refused(&e) => Ok(()),
        r => r.map(drop),
    }
}

/// Removes file (or, with `dir`, empty directory) `comps` below `anchor`;
/// a link there is removed, never followed. Missing: `NotFound`.
pub fn remove(anchor: &Path, comps: &[&str], dir: bool) -> io::Result<()> {
    let Some((last, dirs)) = comps.split_last() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to remove the anchor directory",
        ));
    };
    let shown = comps.iter().fold(anchor.to_path_buf(), |p, c| p.join(c));
    let parent = walk(anchor, dirs, false)?;
    let flags = if dir { libc::AT_REMOVEDIR } else { 0 };
    sys::unlinkat(parent.as_fd(), &cstr(last)?, flags).map_err(|e| at(&shown, e))
}

/// `openat2` of the whole path below the anchor: `None` when the kernel
/// has no usable `openat2` (then walk); `Some(Err)` of a link or a
/// non-directory on the way only where a walk would say more (it runs
/// then: ELOOP, EXDEV, ENOTDIR come back as `None`).
fn openat2_beneath(
    anchor: &Path,
    comps: &[&str],
    flags: libc::c_int,
    mode: u32,
) -> io::Result<Option<io::Result<OwnedFd>>> {
    if !OPENAT2.load(Ordering::Relaxed) {
        return Ok(None);
    }
    let rel = cstr(&comps.join("/"))?;
    let dir = open_anchor(anchor)?;
    match sys::openat2(dir.as_fd(), &rel, flags, mode) {
        Ok(fd) => Ok(Some(Ok(fd))),
        Err(e) => match e.raw_os_error() {
            Some(libc::ENOSYS | libc::EPERM | libc::EINVAL | libc::E2BIG) => {
                OPENAT2.store(false, Ordering::Relaxed);
                Ok(None)
            }
            Some(libc::ELOOP | libc::EXDEV | libc::ENOTDIR) => Ok(None),
            _ => Ok(Some(Err(e))),
        },
    }
}

/// Walks directories `comps` below `anchor` one at a time, refusing links
/// and non-directories; makes missing ones when `create` (mode 0777 less
/// the umask, as `create_dir`). Returns the last directory (`O_PATH`).
fn walk(anchor: &Path, comps: &[&str], create: bool) -> io::Result<OwnedFd> {
    let mut cur = open_anchor(anchor)?;
    let mut shown = anchor.to_path_buf();
    for c in comps {
        shown.push(c);
        let name = cstr(c)?;
        let flags = libc::O_PATH | libc::O_NOFOLLOW;
        let fd = match sys::openat(cur.as_fd(), &name, flags, 0) {
            Err(e) if create && e.kind() == io::ErrorKind::NotFound => {
                match sys::mkdirat(cur.as_fd(), &name, 0o777) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(at(&shown, e)),
                }
                // Whatever is there now is checked like anything found.
                sys::openat(cur.as_fd(), &name, flags, 0)
            }
            r => r,
        }
        .map_err(|e| at(&shown, e))?;
        let dir = File::from(fd);
        let ft = dir.metadata().map_err(|e| at(&shown, e))?.file_type();
        if ft.is_symlink() {
            return Err(refused(shown, true));
        }
        if !ft.is_dir() {
            return Err(refused(shown, false));
        }
        // The directory before closes here: two descriptors at most.
        cur = OwnedFd::from(dir);
    }
    Ok(cur)
}

/// The system calls, each wrapped so that the rest of the module is safe
/// code. Soundness, for every function here: each path is a `CStr` (NUL
/// terminated, no interior NUL) borrowed for the whole call; each
/// directory a `BorrowedFd`, open for the whole call; the kernel keeps
/// neither pointer after it returns; a descriptor it returns is new and
/// owned by nobody else, so `OwnedFd::from_raw_fd` takes sole ownership
/// (and closes it once).
#[allow(unsafe_code)]
mod sys {
    use std::ffi::CStr;
    use std::io;
    use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

    fn retry<T: PartialOrd + Default + Copy>(mut call: impl FnMut() -> T) -> io::Result<T> {
        loop {
            let r = call();
            if r >= T::default() {
                return Ok(r);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    pub fn openat(
        dir: BorrowedFd<'_>,
        name: &CStr,
        flags: libc::c_int,
        mode: u32,
    ) -> io::Result<OwnedFd> {
        let flags = flags | libc::O_CLOEXEC | libc::O_LARGEFILE;
        // SAFETY: see the module comment; `mode` is passed as the
        // variadic `mode_t` argument, read only with O_CREAT.
        let fd = retry(|| unsafe {
            libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, mode as libc::c_uint)
        })?;
        // SAFETY: a new descriptor from the kernel, owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// The kernel's `struct open_how` (linux/openat2.h), version 0: 24 bytes.
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }

    /// `openat2(dir, path, {flags, mode, RESOLVE_BENEATH |
    /// RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS})`.
    pub fn openat2(
        dir: BorrowedFd<'_>,
        path: &CStr,
        flags: libc::c_int,
        mode: u32,
    ) -> io::Result<OwnedFd> {
        let how = OpenHow {
            flags: u64::from((flags | libc::O_CLOEXEC | libc::O_LARGEFILE) as u32),
            mode: if flags & libc::O_CREAT != 0 {
                u64::from(mode)
            } else {
                0
            },
            resolve: libc::RESOLVE_BENEATH
                | libc::RESOLVE_NO_SYMLINKS
                | libc::RESOLVE_NO_MAGICLINKS,
        };
        // SAFETY: see the module comment; `how` is a repr(C) copy of the
        // kernel's struct, alive for the call, and its size is passed.
        let r = retry(|| unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        })?;
        let fd = libc::c_int::try_from(r).map_err(|_| io::Error::other("openat2: bad fd"))?;
        // SAFETY: a new descriptor from the kernel, owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    pub fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
        // SAFETY: see the module comment.
        retry(|| unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t) })
            .map(drop)
    }

    pub fn unlinkat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<()> {
        // SAFETY: see the module comment.
        retry(|| unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) }).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::tests::tempdir;

    #[test]
    fn links_below_the_anchor_are_refused_with_and_without_openat2() {
        for use_openat2 in [true, false] {
            OPENAT2.store(use_openat2, Ordering::Relaxed);
            let dir = tempdir(&format!("beneath-{use_openat2}"));
            let outside = tempdir(&format!("beneath-outside-{use_openat2}"));
            std::fs::write(outside.join("f"), b"outside").unwrap();
            std::fs::create_dir_all(dir.join("a/b")).unwrap();
            std::fs::write(dir.join("a/b/f"), b"inside").unwrap();
            std::os::unix::fs::symlink(&outside, dir.join("a/link")).unwrap();
            std::os::unix::fs::symlink(outside.join("f"), dir.join("a/flink")).unwrap();
            let rd = libc::O_RDONLY;
            let mut s = String::new();
            use std::io::Read;
            open_file(&dir, &["a", "b", "f"], rd, 0, false)
                .unwrap()
                .read_to_string(&mut s)
                .unwrap();
            assert_eq!(s, "inside");
            for comps in [&["a", "link", "f"][..], &["a", "flink"]] {
                let e =
                    open_file(&dir, comps, libc::O_RDWR | libc::O_CREAT, 0o644, true).unwrap_err();
                assert!(is_refused(&e), "{comps:?}: {e}");
                assert!(e.to_string().contains("symbolic link"), "{e}");
                assert!(metadata(&dir, &["a", "link", "f"]).is_err());
            }
            assert!(metadata(&dir, &["a", "flink"])
                .unwrap()
                .file_type()
                .is_symlink());
            assert!(is_refused(&check_dirs(&dir, &["a", "link"]).unwrap_err()));
            check_dirs(&dir, &["a", "b", "missing", "deeper"]).unwrap();
            // Missing directories are made, below the anchor only.
            open_file(
                &dir,
                &["n", "m", "f"],
                libc::O_RDWR | libc::O_CREAT,
                0o644,
                true,
            )
            .unwrap();
            assert!(dir.join("n/m/f").is_file());
            remove(&dir, &["a", "flink"], false).unwrap();
            assert!(is_refused(
                &remove(&dir, &["a", "link", "f"], false).unwrap_err()
            ));
            assert_eq!(std::fs::read(outside.join("f")).unwrap(), b"outside");
            std::fs::remove_dir_all(dir).unwrap();
            std::fs::remove_dir_all(outside).unwrap();
        }
        OPENAT2.store(true, Ordering::Relaxed);
    }
}
