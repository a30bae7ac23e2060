//! A node's identity: a static X25519 key pair (the same key a private
//! network's Noise handshakes will use) and the node id derived from it.

use super::NodeId;
use std::fmt;

/// The node key. The secret never leaves this type except to be saved.
#[derive(Clone)]
pub struct NodeKey {
    secret: [u8; 32],
    public: [u8; 32],
}

impl NodeKey {
    /// The key pair for a 32-byte secret (as read from `node.key`).
    pub fn from_secret(secret: [u8; 32]) -> NodeKey {
        let s = x25519_dalek::StaticSecret::from(secret);
        let public = x25519_dalek::PublicKey::from(&s).to_bytes();
        NodeKey { secret, public }
    }

    pub fn secret_bytes(&self) -> &[u8; 32] {
        &self.secret
    }

    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// SHA-1 of the public key.
    pub fn node_id(&self) -> NodeId {
        NodeId(crate::hash::sha1(&self.public))
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey({})", crate::hash::to_hex(&self.public))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7748_public_key_and_id() {
        // RFC 7748, section 6.1: Alice's private and public keys.
        let hex = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
        let mut full = [0u8; 32];
        for (i, b) in full.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).unwrap();
        }
        let k = NodeKey::from_secret(full);
        assert_eq!(
            crate::hash::to_hex(&k.public()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        assert_eq!(k.node_id().0, crate::hash::sha1(&k.public()));
        assert_ne!(NodeKey::from_secret([1; 32]).public(), k.public());
        assert!(
            !format!("{k:?}").contains("77076d"),
            "Debug never shows the secret"
        );
    }
}
