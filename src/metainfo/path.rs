//! File names from untrusted metadata, and the rule that keeps them inside
//! the download directory.
//!
//! # The rule
//!
//! A torrent's `name` and every component of every file `path` must be a
//! plain file name. peerlet **rejects** the whole torrent (it does not try to
//! repair it) when a component:
//!
//! - is empty, `.` or `..`;
//! - contains `/` or `\` (a path separator on some system), or a NUL byte;
//! - starts with a Windows drive prefix such as `C:`;
//! - is longer than 255 bytes (the file-name limit of Linux file systems),
//!   measured after the lossy UTF-8 conversion below.
//!
//! and when a path has more than 100 components. Names that are not valid
//! UTF-8 are converted lossily (invalid bytes become U+FFFD), which cannot
//! create a separator but makes a name longer (one invalid byte becomes the
//! three bytes of U+FFFD). A path that passes is joined under the download
//! directory with [`join_under`], which can only add plain components, so
//! nothing derived from a torrent can name a path outside that directory.
//! Links on disk are the storage layer's concern: it refuses to follow a
//! symbolic link inside the download tree.

use std::fmt;
use std::path::{Path, PathBuf};

/// Longest component accepted (NAME_MAX on Linux).
pub const MAX_COMPONENT_LEN: usize = 255;
/// Deepest path accepted (libtorrent's limit).
pub const MAX_DEPTH: usize = 100;

/// Why a name was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathError {
    Empty,
    Dot,
    DotDot,
    Separator(char),
    Nul,
    DrivePrefix,
    TooLong(usize),
    TooDeep(usize),
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::Empty => write!(f, "an empty file name"),
            PathError::Dot => write!(f, "a '.' component"),
            PathError::DotDot => write!(
                f,
                "a '..' component, which would leave the download directory"
            ),
            PathError::Separator(c) => write!(f, "a path separator '{c}' inside a file name"),
            PathError::Nul => write!(f, "a NUL byte in a file name"),
            PathError::DrivePrefix => write!(f, "a drive prefix (like 'C:') in a file name"),
            PathError::TooLong(n) => write!(
                f,
                "a file name of {n} bytes (the limit is {MAX_COMPONENT_LEN})"
            ),
            PathError::TooDeep(n) => {
                write!(f, "a path of {n} components (the limit is {MAX_DEPTH})")
            }
        }
    }
}

/// Checks one name from a torrent and returns it as a string.
///
/// The length limit applies to the returned string, the name as it will be
/// written to disk: lossy conversion turns each invalid byte into a 3-byte
/// U+FFFD, so 100 raw bytes can become 300. Checking the result (not the raw
/// bytes) also makes the check idempotent: a returned name always passes again.
pub fn check_component(raw: &[u8]) -> Result<String, PathError> {
    if raw.is_empty() {
        return Err(PathError::Empty);
    }
    if raw.len() > MAX_COMPONENT_LEN {
        return Err(PathError::TooLong(raw.len()));
    }
    match raw {
        b"." => return Err(PathError::Dot),
        b".." => return Err(PathError::DotDot),
        _ => {}
    }
    if raw.contains(&0) {
        return Err(PathError::Nul);
    }
    if let Some(&sep) = raw.iter().find(|&&b| b == b'/' || b == b'\\') {
        return Err(PathError::Separator(sep as char));
    }
    if let [letter, b':', ..] = raw {
        if letter.is_ascii_alphabetic() {
            return Err(PathError::DrivePrefix);
        }
    }
    let name = String::from_utf8_lossy(raw).into_owned();
    if name.len() > MAX_COMPONENT_LEN {
        return Err(PathError::TooLong(name.len()));
    }
    Ok(name)
}

/// Checks a whole path (a list of components).
pub fn check_path<'a>(
    components: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<String>, PathError> {
    let mut out = Vec::new();
    for c in components {
        out.push(check_component(c)?);
        if out.len() > MAX_DEPTH {
            return Err(PathError::TooDeep(out.len()));
        }
    }
    if out.is_empty() {
        return Err(PathError::Empty);
    }
    Ok(out)
}

/// Joins checked components under `root`. Components that are not plain
/// names (which [`check_component`] never returns) are refused here too, so
/// the result always lies under `root`.
pub fn join_under(root: &Path, components: &[String]) -> Option<PathBuf> {
    let mut out = root.to_path_buf();
    for c in components {
        check_component(c.as_bytes()).ok()?;
        out.push(c);
    }
    Some(out)
}

/// A path joined with '/' for display and for sorting like mktorrent.
pub fn display(components: &[String]) -> String {
    components.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        assert_eq!(check_component(b"file.txt"), Ok("file.txt".into()));
        assert_eq!(check_component(b"..hidden"), Ok("..hidden".into()));
        assert_eq!(check_component(b"ab:c"), Ok("ab:c".into()));
        assert_eq!(check_component(b"\xff.bin"), Ok("\u{fffd}.bin".into()));
    }

    #[test]
    fn rejects_escapes() {
        assert_eq!(check_component(b""), Err(PathError::Empty));
        assert_eq!(check_component(b"."), Err(PathError::Dot));
        assert_eq!(check_component(b".."), Err(PathError::DotDot));
        assert_eq!(check_component(b"/etc"), Err(PathError::Separator('/')));
        assert_eq!(check_component(b"a\\b"), Err(PathError::Separator('\\')));
        assert_eq!(
            check_component(b"x /../../y"),
            Err(PathError::Separator('/'))
        );
        assert_eq!(check_component(b"a\0b"), Err(PathError::Nul));
        assert_eq!(check_component(b"C:"), Err(PathError::DrivePrefix));
        assert_eq!(check_component(b"c:evil"), Err(PathError::DrivePrefix));
        assert_eq!(check_component(&[b'a'; 256]), Err(PathError::TooLong(256)));
        let deep: Vec<&[u8]> = vec![b"d"; 101];
        assert_eq!(check_path(deep), Err(PathError::TooDeep(101)));
        assert_eq!(check_path(Vec::<&[u8]>::new()), Err(PathError::Empty));
    }

    #[test]
    fn length_limit_applies_after_lossy_conversion() {
        // Caught by the fuzz/metainfo_parse invariants: 100 invalid bytes
        // become 300 bytes of U+FFFD, which join_under (and the file
        // system) would then refuse.
        assert_eq!(check_component(&[0xff; 100]), Err(PathError::TooLong(300)));
        let mut edge = vec![b'a'; 252];
        edge.push(0xff);
        assert_eq!(check_component(&edge).map(|s| s.len()), Ok(255));
        edge.push(0xff);
        assert_eq!(check_component(&edge), Err(PathError::TooLong(258)));
        // What check_component returns always passes it again.
        for raw in [&b"\xff.bin"[..], &[0xff; 85], b"plain"] {
            let name = check_component(raw).unwrap();
            assert_eq!(check_component(name.as_bytes()), Ok(name.clone()));
            assert!(join_under(Path::new("/data"), &[name]).is_some());
        }
    }

    #[test]
    fn join_stays_under_root() {
        let root = Path::new("/data");
        assert_eq!(
            join_under(root, &["a".into(), "b".into()]),
            Some(PathBuf::from("/data/a/b"))
        );
        assert_eq!(join_under(root, &["..".into()]), None);
        assert_eq!(join_under(root, &["/etc".into()]), None);
    }
}
