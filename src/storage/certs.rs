//! The CA certificates `https` connections are checked against, read from
//! the filesystem for [`crate::tls::Roots`].
//!
//! Where, in order (the first that gives a usable certificate wins):
//!
//! 1. `tls_ca_file` from the configuration, when set: a PEM bundle, or a
//!    directory of PEM files; nothing else is tried.
//! 2. Else `SSL_CERT_FILE` and `SSL_CERT_DIR` (directories separated by
//!    ':'), when either is set, as OpenSSL reads them; nothing else is tried.
//! 3. Else the system's bundle at the usual paths ([`BUNDLE_FILES`]: Debian,
//!    Ubuntu, Alpine, Arch, OpenWrt, Fedora, openSUSE...), then the
//!    directory [`CERT_DIR`].
//! 4. With the feature `bundled-roots`, Mozilla's roots when step 3 found
//!    nothing.
//!
//! Limits: a file is read only up to [`MAX_BUNDLE`] bytes; a directory gives
//! at most [`MAX_DIR_FILES`] files, links followed (`/etc/ssl/certs` is
//! links), each file once. Nothing found is an error that names the places
//! searched, never a panic.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use crate::tls::{Error, Roots};

/// System CA bundles, most common first.
pub const BUNDLE_FILES: &[&str] = &[
    // Debian, Ubuntu, Alpine, Arch, Gentoo, OpenWrt (ca-bundle).
    "/etc/ssl/certs/ca-certificates.crt",
    // Fedora, RHEL, CentOS.
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    // openSUSE.
    "/etc/ssl/ca-bundle.pem",
    // Alpine, the BSDs.
    "/etc/ssl/cert.pem",
    "/etc/pki/tls/cacert.pem",
];

/// The system's directory of CA files, tried after [`BUNDLE_FILES`].
pub const CERT_DIR: &str = "/etc/ssl/certs";

/// Largest CA bundle file read (Debian's is about 220 KB).
pub const MAX_BUNDLE: u64 = 4 << 20;

/// Most files read from one CA directory.
pub const MAX_DIR_FILES: usize = 1000;

/// The roots: from `ca_file` when set, else as the module docs say.
/// Blocking (reads files): for a worker thread.
pub fn load_roots(ca_file: Option<&Path>) -> Result<Roots, Error> {
    let env_file = std::env::var_os("SSL_CERT_FILE").filter(|v| !v.is_empty());
    let env_dir = std::env::var_os("SSL_CERT_DIR").filter(|v| !v.is_empty());
    if let Some(path) = ca_file {
        return load_first(&[path.to_path_buf()]);
    }
    if env_file.is_some() || env_dir.is_some() {
        let mut places: Vec<PathBuf> = env_file.into_iter().map(PathBuf::from).collect();
        if let Some(dirs) = env_dir {
            places.extend(std::env::split_paths(&dirs));
        }
        return load_all(&places);
    }
    let mut places: Vec<PathBuf> = BUNDLE_FILES.iter().map(PathBuf::from).collect();
    places.push(PathBuf::from(CERT_DIR));
    let res = load_first(&places);
    #[cfg(feature = "bundled-roots")]
    if let Err(e) = &res {
        log::warn!("{e}: using the CA certificates compiled in (bundled-roots)");
        return Ok(Roots::bundled());
    }
    res
}

/// The first of `places` (files or directories) with a usable certificate.
pub fn load_first(places: &[PathBuf]) -> Result<Roots, Error> {
    let mut tried = Vec::new();
    for place in places {
        match read_place(place) {
            Ok(bundles) => match Roots::from_pem(&bundles, &place.display().to_string()) {
                Ok(roots) => return Ok(roots),
                Err(Error::NoRoots(why)) => tried.push(why),
                Err(e) => return Err(e),
            },
            Err(e) => tried.push(describe(place, &e)),
        }
    }
    Err(Error::NoRoots(tried.join(", ")))
}

/// Every certificate of all `places` together (`SSL_CERT_FILE` and the
/// directories of `SSL_CERT_DIR`).
pub fn load_all(places: &[PathBuf]) -> Result<Roots, Error> {
    let mut bundles = Vec::new();
    let mut tried = Vec::new();
    for place in places {
        match read_place(place) {
            Ok(b) => {
                bundles.extend(b);
                tried.push(place.display().to_string());
            }
            Err(e) => tried.push(describe(place, &e)),
        }
    }
    Roots::from_pem(&bundles, &tried.join(", "))
}

fn describe(place: &Path, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => format!("{} (missing)", place.display()),
        _ => format!("{} ({e})", place.display()),
    }
}

/// The bytes of a file, or of each file of a directory (sorted by name,
/// each real file once).
fn read_place(place: &Path) -> io::Result<Vec<Vec<u8>>> {
    let meta = std::fs::metadata(place)?;
    if !meta.is_dir() {
        return Ok(vec![read(place)?]);
    }
    let mut names: Vec<PathBuf> = std::fs::read_dir(place)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    names.sort();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for path in names {
        if out.len() >= MAX_DIR_FILES {
            break;
        }
        // Hash-named links and the files they point to are one file.
        let Ok(real) = std::fs::canonicalize(&path) else {
            continue;
        };
        if !real.is_file() || !seen.insert(real.clone()) {
            continue;
        }
        // An unreadable file among many is skipped, as OpenSSL does.
        if let Ok(bytes) = read(&real) {
            out.push(bytes);
        }
    }
    Ok(out)
}

fn read(path: &Path) -> io::Result<Vec<u8>> {
    super::read_limited(path, MAX_BUNDLE)
}

#[cfg(all(test, feature = "https"))]
mod tests {
    use super::*;
    use crate::storage::tests::tempdir as tempdir_named;

    struct TempDir(std::path::PathBuf);
    impl TempDir {
        fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn tempdir() -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        TempDir(tempdir_named(&format!("certs-{n}")))
    }

    const CA: &[u8] = include_bytes!("../../tests/fixtures/tls/ca.pem");
    const OTHER_CA: &[u8] = include_bytes!("../../tests/fixtures/tls/rsa-ca.pem");

    #[test]
    fn a_bundle_file() {
        let dir = tempdir();
        let file = dir.path().join("bundle.pem");
        let mut both = CA.to_vec();
        both.extend_from_slice(b"\n# a comment between certificates\n");
        both.extend_from_slice(OTHER_CA);
        std::fs::write(&file, &both).unwrap();
        let roots = load_roots(Some(&file)).unwrap();
        assert_eq!(roots.len(), 2);
    }

    #[test]
    fn a_directory_with_links_and_other_files() {
        let dir = tempdir();
        std::fs::write(dir.path().join("a.pem"), CA).unwrap();
        std::fs::write(dir.path().join("b.crt"), OTHER_CA).unwrap();
        std::fs::write(dir.path().join("README"), b"not a certificate\n").unwrap();
        std::os::unix::fs::symlink(dir.path().join("a.pem"), dir.path().join("1a2b3c4d.0"))
            .unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let roots = load_roots(Some(dir.path())).unwrap();
        assert_eq!(roots.len(), 2, "each file once; README and sub skipped");
    }

    #[test]
    fn a_missing_file_is_a_clear_error() {
        let dir = tempdir();
        let file = dir.path().join("nope.pem");
        let e = load_roots(Some(&file)).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "no CA certificates found at {} (missing); set tls_ca_file",
                file.display()
            )
        );
    }

    #[test]
    fn garbage_and_empty_files_give_no_roots() {
        let dir = tempdir();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = load_roots(Some(&garbage)).unwrap_err().to_string();
        assert!(e.starts_with("no CA certificates found at "), "{e}");
        assert!(e.contains("(1 unusable)"), "{e}");
        let broken = dir.path().join("broken.pem");
        std::fs::write(&broken, b"-----BEGIN CERTIFICATE-----\n@@@@\n").unwrap();
        assert!(matches!(load_roots(Some(&broken)), Err(Error::NoRoots(_))));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, b"").unwrap();
        let e = load_roots(Some(&empty)).unwrap_err().to_string();
        assert!(e.ends_with("empty.pem; set tls_ca_file"), "{e}");
        let empty_dir = dir.path().join("d");
        std::fs::create_dir(&empty_dir).unwrap();
        assert!(matches!(
            load_roots(Some(&empty_dir)),
            Err(Error::NoRoots(_))
        ));
    }

    #[test]
    fn the_first_usable_place_wins_and_all_are_named_when_none_is() {
        let dir = tempdir();
        let good = dir.path().join("good.pem");
        std::fs::write(&good, CA).unwrap();
        let missing = dir.path().join("missing.pem");
        let roots = load_first(&[missing.clone(), good]).unwrap();
        assert_eq!(roots.len(), 1);
        let e = load_first(&[missing.clone(), dir.path().join("also-missing")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.pem (missing), "), "{e}");
        assert!(
            e.ends_with("also-missing (missing); set tls_ca_file"),
            "{e}"
        );
    }

    #[test]
    fn env_places_are_read_together() {
        let dir = tempdir();
        let file = dir.path().join("file.pem");
        std::fs::write(&file, CA).unwrap();
        let sub = dir.path().join("dir");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("x.pem"), OTHER_CA).unwrap();
        let roots = load_all(&[file, sub, dir.path().join("missing")]).unwrap();
        assert_eq!(roots.len(), 2);
    }
}
