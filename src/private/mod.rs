//! Private networks, sans I/O: the network secret, the keys derived from it,
//! the allow-list of node keys, encrypted links ([`SecureLink`], Noise) and
//! sealed overlay packets ([`OverlaySeal`], XChaCha20-Poly1305).
//!
//! A private network is a shared 32-byte secret. Every node that holds it
//! derives two keys with keyed BLAKE2s (the secret is the key, a label is
//! the message, so the two can never be equal or reveal each other or the
//! secret):
//!
//! - the Noise pre-shared key (`peerlet noise psk v1`), mixed into every TCP
//!   link's handshake at its first message (`Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s`),
//!   so a node without the secret gets no second message, learns nothing
//!   (not even our static key) and costs us no Diffie-Hellman;
//! - the overlay key (`peerlet overlay v1`), under which every discovery
//!   packet is sealed.
//!
//! A node's identity is its static X25519 key (the `node.key` of the state
//! directory, the same key the overlay derives its node id from). The
//! optional allow-list names the static public keys that may connect; it is
//! checked as soon as the handshake reveals the other side's key.
//!
//! Nothing here touches a socket, a file or the clock; randomness comes from
//! snow's resolver (ephemeral keys) or from the caller (session ids).

mod link;
mod seal;

pub use link::{LinkError, SecureLink, HANDSHAKE_1_LEN, MAX_FRAME_PAYLOAD};
pub use seal::{OpenError, OverlaySeal, SEAL_OVERHEAD, SEAL_TAG};

use blake2::digest::{KeyInit, Mac};
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

/// Length of the network secret in bytes.
pub const SECRET_LEN: usize = 32;
/// Largest secret file we read.
pub const MAX_SECRET_FILE: u64 = 4096;

/// The shared secret of a private network (never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct NetworkSecret([u8; SECRET_LEN]);

impl fmt::Debug for NetworkSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NetworkSecret(..)")
    }
}

impl NetworkSecret {
    pub fn from_bytes(bytes: [u8; SECRET_LEN]) -> NetworkSecret {
        NetworkSecret(bytes)
    }

    /// Parses a secret file: 64 hex digits, whitespace around them and
    /// lines starting with `#` ignored.
    pub fn parse(text: &[u8]) -> Result<NetworkSecret, String> {
        let text = std::str::from_utf8(text).map_err(|_| "not text".to_string())?;
        let digits: String = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect::<Vec<_>>()
            .concat();
        let bytes = parse_hex32(&digits).ok_or_else(|| {
            format!(
                "expected 64 hex digits (as written by `peerlet secret FILE`), found {} characters",
                digits.chars().count()
            )
        })?;
        if bytes == [0; SECRET_LEN] {
            return Err("the secret is all zeros".into());
        }
        Ok(NetworkSecret(bytes))
    }

    /// The text of a secret file.
    pub fn to_file_text(&self) -> String {
        format!(
            "# peerlet network secret: every node of the private network needs this file.\n\
             # Keep it private (mode 0600); anyone who has it can join.\n{}\n",
            crate::hash::to_hex(&self.0)
        )
    }

    fn derive(&self, label: &[u8]) -> [u8; 32] {
        // A 32-byte key is always a valid BLAKE2s key.
        let mut mac = match <blake2::Blake2sMac256 as KeyInit>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("32-byte BLAKE2s key"),
        };
        mac.update(label);
        mac.finalize().into_bytes().into()
    }
}

/// Parses 64 hex digits into 32 bytes.
pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        let hi = (s[2 * i] as char).to_digit(16)?;
        let lo = (s[2 * i + 1] as char).to_digit(16)?;
        *b = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// The static public keys that may connect (shared by every link).
#[derive(Clone, Debug, Default)]
pub struct AllowList(Option<Arc<HashSet<[u8; 32]>>>);

impl AllowList {
    /// `None`: anyone with the secret.
    pub fn new(keys: Option<HashSet<[u8; 32]>>) -> AllowList {
        AllowList(keys.map(Arc::new))
    }

    /// Whether a node with this static public key may connect.
    pub fn allows(&self, key: &[u8; 32]) -> bool {
        self.0.as_ref().is_none_or(|a| a.contains(key))
    }

    /// Number of keys on the list (`None`: no list).
    pub fn keys(&self) -> Option<usize> {
        self.0.as_ref().map(|a| a.len())
    }
}

/// Everything a node needs to speak in its private network.
pub struct PrivateNetwork {
    /// The node's static X25519 secret (from `node.key`).
    static_secret: [u8; 32],
    psk: [u8; 32],
    overlay_key: [u8; 32],
    allowed: AllowList,
}

impl fmt::Debug for PrivateNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateNetwork")
            .field("allowed", &self.allowed.keys())
            .finish_non_exhaustive()
    }
}

impl PrivateNetwork {
    pub fn new(
        secret: &NetworkSecret,
        static_secret: [u8; 32],
        allowed: Option<HashSet<[u8; 32]>>,
    ) -> PrivateNetwork {
        PrivateNetwork {
            static_secret,
            psk: secret.derive(b"peerlet noise psk v1"),
            overlay_key: secret.derive(b"peerlet overlay v1"),
            allowed: AllowList::new(allowed),
        }
    }

    /// Whether a node with this static public key may connect.
    pub fn allows(&self, key: &[u8; 32]) -> bool {
        self.allowed.allows(key)
    }

    /// Number of keys on the allow-list (`None`: no list).
    pub fn allow_list_len(&self) -> Option<usize> {
        self.allowed.keys()
    }

    /// A new link; the initiator's first handshake message is already in
    /// its output.
    pub fn link(&self, initiator: bool) -> Result<SecureLink, LinkError> {
        SecureLink::new(self, initiator)
    }

    /// The sealer for overlay packets; `session` must be random (it makes
    /// the nonces of this run unique).
    pub fn overlay_seal(&self, session: [u8; 16]) -> OverlaySeal {
        OverlaySeal::new(&self.overlay_key, session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_file_round_trip_and_errors() {
        let s = NetworkSecret::from_bytes([7; 32]);
        let text = s.to_file_text();
        assert!(text.starts_with("# peerlet network secret"));
        assert_eq!(NetworkSecret::parse(text.as_bytes()).unwrap(), s);
        assert_eq!(
            NetworkSecret::parse(format!("  {}  \n\n", "0a".repeat(32)).as_bytes()).unwrap(),
            NetworkSecret::from_bytes([10; 32])
        );
        for bad in [
            "",
            "abc",
            &"0g".repeat(32),
            &"00".repeat(32),
            &"aa".repeat(33),
        ] {
            assert!(NetworkSecret::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(NetworkSecret::parse(&[0xff, 0xfe]).is_err());
        assert_eq!(format!("{s:?}"), "NetworkSecret(..)");
    }

    #[test]
    fn derived_keys_differ_by_label_and_secret() {
        let a = NetworkSecret::from_bytes([1; 32]);
        let b = NetworkSecret::from_bytes([2; 32]);
        let na = PrivateNetwork::new(&a, [9; 32], None);
        let nb = PrivateNetwork::new(&b, [9; 32], None);
        assert_ne!(na.psk, na.overlay_key);
        assert_ne!(na.psk, nb.psk);
        assert_ne!(na.overlay_key, nb.overlay_key);
        assert_ne!(na.psk, [1; 32]);
        // Deterministic: every node derives the same keys.
        assert_eq!(PrivateNetwork::new(&a, [3; 32], None).psk, na.psk);
    }

    #[test]
    fn allow_list() {
        let s = NetworkSecret::from_bytes([1; 32]);
        let open = PrivateNetwork::new(&s, [9; 32], None);
        assert!(open.allows(&[5; 32]));
        let list = PrivateNetwork::new(&s, [9; 32], Some([[5; 32]].into_iter().collect()));
        assert!(list.allows(&[5; 32]));
        assert!(!list.allows(&[6; 32]));
        assert_eq!(list.allow_list_len(), Some(1));
    }
}
