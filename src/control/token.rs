//! The control API's access token: 32 random bytes from the operating
//! system, written as 64 hex digits to `api.token` in the state directory
//! (mode 0600) at the first start, and never replaced while it is there.
//!
//! The server asks for it when the API listens on an address other than
//! loopback, or always with `api_token_required` ([`required`]); the
//! command-line client sends it when it can read the file (or is given it).
//! Comparisons take the same time whatever the bytes ([`Token::matches`]).
//! This module knows nothing of HTTP; `server.rs` decides where a token
//! may come from (`Authorization: Bearer`, or the web page's cookie).

use crate::storage;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The token's file in the state directory.
pub const TOKEN_FILE: &str = crate::state::API_TOKEN_FILE;
/// The environment variable the client reads the token from.
pub const TOKEN_ENV: &str = "PEERLET_API_TOKEN";
/// Random bytes in a token.
pub const TOKEN_BYTES: usize = 32;

/// A token: 64 lower-case hex digits. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A token as written in the file (one line of 64 hex digits; a final
    /// newline is allowed), or `None`.
    pub fn parse(text: &str) -> Option<Token> {
        let t = text.strip_suffix('\n').unwrap_or(text);
        let t = t.strip_suffix('\r').unwrap_or(t);
        (t.len() == 2 * TOKEN_BYTES && t.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Token(t.to_ascii_lowercase()))
    }

    /// A new token from the operating system's random source. There is no
    /// weaker fallback: without randomness the daemon does not start.
    pub fn generate() -> io::Result<Token> {
        let b: [u8; TOKEN_BYTES] = crate::rand::bytes()
            .map_err(|e| io::Error::other(format!("no random bytes for the API token: {e}")))?;
        Ok(Token(b.iter().map(|x| format!("{x:02x}")).collect()))
    }

    /// The 64 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this token (hex in either case), in time that
    /// depends only on the lengths, never on where the bytes differ.
    pub fn matches(&self, given: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), given.to_ascii_lowercase().as_bytes())
    }
}

/// Byte-wise equality that looks at every byte whatever it finds.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Whether every request to an API bound to `bind` must carry the token:
/// always when the address is not loopback (`0.0.0.0`, a LAN address,
/// `::ffff:127.0.0.1` too), and on loopback when `on_loopback` is set.
pub fn required(bind: SocketAddr, on_loopback: bool) -> bool {
    on_loopback || !bind.ip().is_loopback()
}

/// The token file in `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(TOKEN_FILE)
}

/// Reads the token in `state_dir`, or creates it (mode 0600) when there is
/// none. A file that is there but damaged is an error naming it: it is
/// never replaced behind the owner's back, since clients hold a copy.
pub fn load_or_create(state_dir: &Path) -> Result<Token, String> {
    let path = path(state_dir);
    // Two rounds: another process may create the file between our read
    // and our create, and then we read theirs.
    for _ in 0..2 {
        match read(&path) {
            Ok(Some(token)) => return Ok(token),
            Ok(None) => {}
            Err(e) => return Err(e),
        }
        storage::create_private_dir(state_dir)
            .map_err(|e| format!("cannot create {}: {e}", state_dir.display()))?;
        let token = Token::generate().map_err(|e| e.to_string())?;
        let text = format!("{}\n", token.as_str());
        match storage::create_new_atomic(&path, text.as_bytes(), 0o600) {
            Ok(true) => {
                log::info!("created the control API token in {}", path.display());
                return Ok(token);
            }
            Ok(false) => continue,
            Err(e) => return Err(format!("cannot write {e}")),
        }
    }
    Err(format!("cannot read or create {}", path.display()))
}

/// Reads a token file: `Ok(None)` when it does not exist; an error naming
/// the file when it cannot be read or is damaged. Warns when other users
/// may read it.
pub fn read(path: &Path) -> Result<Option<Token>, String> {
    match storage::read_limited(path, 1024) {
        Ok(bytes) => {
            let token = std::str::from_utf8(&bytes)
                .ok()
                .and_then(Token::parse)
                .ok_or_else(|| {
                    format!(
                        "{} is damaged (expected 64 hex digits); remove it to make a new token \
                         (clients given the old one then need the new one)",
                        path.display()
                    )
                })?;
            warn_if_shared(path);
            Ok(Some(token))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {e}")),
    }
}

fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(md) = path.metadata() {
        if md.permissions().mode() & 0o077 != 0 {
            log::warn!(
                "{} may be read by other users (mode {:o}); chmod 600 it",
                path.display(),
                md.permissions().mode() & 0o777
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_compare() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let t = Token::parse(hex).unwrap();
        assert_eq!(Token::parse(&format!("{hex}\n")), Some(t.clone()));
        assert_eq!(Token::parse(&format!("{hex}\r\n")), Some(t.clone()));
        assert_eq!(Token::parse(&hex.to_uppercase()), Some(t.clone()));
        for bad in [
            "",
            "00",
            &hex[1..],
            &format!("{hex}0"),
            &hex.replace('a', "g"),
            &format!(" {hex}"),
            &format!("{hex}\n\n"),
        ] {
            assert!(Token::parse(bad).is_none(), "{bad:?}");
        }
        assert!(t.matches(hex));
        assert!(t.matches(&hex.to_uppercase()));
        assert!(!t.matches(&hex[..63]));
        assert!(!t.matches(&format!("{}0", &hex[..63])));
        assert!(!t.matches(""));
        assert_eq!(format!("{t:?}"), "Token(..)");
        let a = Token::generate().unwrap();
        let b = Token::generate().unwrap();
        assert_ne!(a, b);
        assert!(Token::parse(a.as_str()).is_some());
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"a", b"b"));
    }

    #[test]
    fn the_file_is_made_once_and_never_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::storage::tests::tempdir("api-token").join("state");
        let t = load_or_create(&dir).unwrap();
        let file = path(&dir);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            format!("{}\n", t.as_str())
        );
        assert_eq!(load_or_create(&dir).unwrap(), t);
        assert_eq!(read(&file).unwrap(), Some(t));
        std::fs::write(&file, "not a token\n").unwrap();
        let e = load_or_create(&dir).unwrap_err();
        assert!(
            e.contains(&file.display().to_string()) && e.contains("damaged"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a token\n");
        assert_eq!(read(&dir.join("none")).unwrap(), None);
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn the_token_is_required_off_loopback() {
        let req = |a: &str, on_loopback| required(a.parse().unwrap(), on_loopback);
        for lo in ["127.0.0.1:7441", "127.0.2.9:0", "[::1]:7441"] {
            assert!(!req(lo, false), "{lo}");
            assert!(req(lo, true), "{lo}");
        }
        for open in [
            "0.0.0.0:7441",
            "[::]:7441",
            "192.168.1.2:7441",
            "10.1.2.3:7441",
            "[2001:db8::1]:7441",
            "[::ffff:127.0.0.1]:7441",
        ] {
            assert!(req(open, false), "{open}");
            assert!(req(open, true), "{open}");
        }
    }
}
