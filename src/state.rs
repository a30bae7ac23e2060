//! The state directory: the names of the files in it, and the node's key
//! material kept there (the node key, a private network's secret file).
//!
//! The layout of `<state>` (`/var/lib/peerlet` under systemd):
//!
//! | name | what | written by |
//! |---|---|---|
//! | `node.key` | the node's X25519 secret (32 bytes, mode 0600) | [`load_node_key`], at the first start |
//! | `nodes` | the saved overlay routing table | the engine (`net`), when it changed |
//! | `api.token` | the control API token | `control::token` |
//! | `clean` | present after an orderly stop | the engine, removed at start |
//! | `torrents/<hex>.torrent`, `.resume`, `.journal`, `.peers`, `.magnet` | one torrent's metainfo, resume record, journal, peers given by hand; a magnet waiting for metadata | the engine |
//!
//! Every file is written whole and atomically (`storage::write_atomic`).

use crate::overlay::NodeKey;
use crate::private::NetworkSecret;
use crate::rand;
use crate::storage;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The node key.
pub const NODE_KEY_FILE: &str = "node.key";
/// The saved overlay routing table.
pub const NODES_FILE: &str = "nodes";
/// The Mainline DHT routing table (`dht::encode_saved`).
pub const DHT_NODES_FILE: &str = "dht_nodes";
/// The control API token.
pub const API_TOKEN_FILE: &str = "api.token";
/// Present after an orderly stop.
pub const CLEAN_MARKER: &str = "clean";
/// Torrents, resume records, journals and magnets.
pub const TORRENTS_DIR: &str = "torrents";

/// A problem with the key material in the state directory, or with a
/// network secret file.
#[derive(Debug)]
pub enum Error {
    /// The node key file is not 32 bytes.
    DamagedKey { path: PathBuf, len: usize },
    /// A file or directory could not be read, created or written.
    Io {
        action: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    /// A secret file that is not a network secret.
    BadSecret { path: PathBuf, reason: String },
    /// `peerlet secret FILE` never replaces a file.
    SecretExists(PathBuf),
    /// No randomness for a new key.
    Random(rand::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::DamagedKey { path, len } => write!(
                f,
                "{} is damaged ({len} bytes, expected 32); move it away to create a new node identity",
                path.display()
            ),
            Error::Io {
                action,
                path,
                error,
            } => write!(f, "cannot {action} {}: {error}", path.display()),
            Error::BadSecret { path, reason } => {
                write!(f, "network secret {}: {reason}", path.display())
            }
            Error::SecretExists(path) => write!(
                f,
                "{} exists: not replaced (a network's nodes must share one secret; remove it first to make a new network)",
                path.display()
            ),
            Error::Random(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

impl From<rand::Error> for Error {
    fn from(e: rand::Error) -> Error {
        Error::Random(e)
    }
}

/// Reads the node key from the state directory, or creates it (mode 0600)
/// on the first start. A damaged key is an error, never silently replaced:
/// the key is the node's identity.
pub fn load_node_key(state_dir: &Path) -> Result<NodeKey, Error> {
    load_node_key_from(state_dir, &mut rand::Os)
}

/// [`load_node_key`] with the randomness for a new key from `source`.
pub fn load_node_key_from(
    state_dir: &Path,
    source: &mut dyn rand::Source,
) -> Result<NodeKey, Error> {
    let path = state_dir.join(NODE_KEY_FILE);
    match storage::read_limited(&path, 1024) {
        Ok(bytes) => {
            let secret: [u8; 32] = bytes.as_slice().try_into().map_err(|_| Error::DamagedKey {
                path: path.clone(),
                len: bytes.len(),
            })?;
            Ok(NodeKey::from_secret(secret))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key = NodeKey::from_secret(rand::bytes_from(source)?);
            storage::create_private_dir(state_dir).map_err(|error| Error::Io {
                action: "create",
                path: state_dir.to_path_buf(),
                error,
            })?;
            storage::write_atomic(&path, key.secret_bytes(), 0o600).map_err(|error| Error::Io {
                action: "write",
                path: path.clone(),
                error,
            })?;
            log::info!("created a new node key in {}", path.display());
            Ok(key)
        }
        Err(error) => Err(Error::Io {
            action: "read",
            path,
            error,
        }),
    }
}

/// Reads a private network's secret file. A file that others can read is
/// used, with a warning: anyone who reads it can join the network.
pub fn load_network_secret(path: &Path) -> Result<NetworkSecret, Error> {
    let bytes = storage::read_limited(path, crate::private::MAX_SECRET_FILE).map_err(|error| {
        Error::Io {
            action: "read the network secret",
            path: path.to_path_buf(),
            error,
        }
    })?;
    let secret = NetworkSecret::parse(&bytes).map_err(|e| Error::BadSecret {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if let Ok(mode) = storage::permissions_of(path) {
        if mode & 0o077 != 0 {
            log::warn!(
                "network secret {} is readable by others (mode {mode:o}); anyone who reads it can join: chmod 600 it",
                path.display()
            );
        }
    }
    Ok(secret)
}

/// `peerlet secret FILE`: writes a new random network secret (mode 0600);
/// never replaces an existing file.
pub fn write_network_secret(path: &Path) -> Result<(), Error> {
    write_network_secret_from(path, &mut rand::Os)
}

/// [`write_network_secret`] with the randomness from `source`.
pub fn write_network_secret_from(path: &Path, source: &mut dyn rand::Source) -> Result<(), Error> {
    let secret = NetworkSecret::from_bytes(rand::bytes_from(source)?);
    let created = storage::create_new_atomic(path, secret.to_file_text().as_bytes(), 0o600)
        .map_err(|error| Error::Io {
            action: "write the secret",
            path: path.to_path_buf(),
            error,
        })?;
    if !created {
        return Err(Error::SecretExists(path.to_path_buf()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::tests::tempdir;

    #[test]
    fn a_node_key_is_made_once_and_kept() {
        let dir = tempdir("state-key").join("state");
        let a = load_node_key(&dir).unwrap();
        let b = load_node_key(&dir).unwrap();
        assert_eq!(a.public(), b.public());
        assert_eq!(
            storage::permissions_of(&dir.join(NODE_KEY_FILE)).unwrap() & 0o777,
            0o600
        );
    }

    #[test]
    fn no_randomness_no_key_and_one_clear_line() {
        let dir = tempdir("state-key-broken").join("state");
        let e = load_node_key_from(&dir, &mut rand::Broken).unwrap_err();
        assert!(matches!(e, Error::Random(_)), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("random number generator failed"), "{text}");
        assert!(!text.contains('\n'));
        // Nothing was written: the next start with a working generator
        // makes a real key.
        assert!(storage::read_limited(&dir.join(NODE_KEY_FILE), 64).is_err());
        let secret = dir.join("net.secret");
        let e = write_network_secret_from(&secret, &mut rand::Broken).unwrap_err();
        assert!(matches!(e, Error::Random(_)), "{e:?}");
        assert!(storage::read_limited(&secret, 4096).is_err());
    }

    #[test]
    fn a_damaged_key_is_an_error_not_replaced() {
        let dir = tempdir("state-key-damaged");
        storage::write_atomic(&dir.join(NODE_KEY_FILE), b"short", 0o600).unwrap();
        let e = load_node_key(&dir).unwrap_err();
        assert!(
            e.to_string().contains("is damaged (5 bytes, expected 32)"),
            "{e}"
        );
        assert_eq!(
            storage::read_limited(&dir.join(NODE_KEY_FILE), 64).unwrap(),
            b"short"
        );
    }

    #[test]
    fn a_secret_file_is_never_replaced() {
        let dir = tempdir("state-secret");
        let path = dir.join("net.secret");
        write_network_secret(&path).unwrap();
        let first = load_network_secret(&path).unwrap();
        let e = write_network_secret(&path).unwrap_err();
        assert!(matches!(e, Error::SecretExists(_)), "{e:?}");
        assert_eq!(load_network_secret(&path).unwrap(), first);
    }
}
