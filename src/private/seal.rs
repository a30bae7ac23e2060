//! Sealed overlay packets of a private network, sans I/O.
//!
//! ```text
//! 's' | session (16) | counter (8, big-endian) | ciphertext | tag (16)
//! ```
//!
//! The plaintext is an ordinary overlay packet (docs/PROTOCOL.md). It is
//! encrypted with XChaCha20-Poly1305 under the overlay key derived from the
//! network secret; the nonce is `session || counter`, the first 25 bytes are
//! the associated data. `session` is random for each run of a node and
//! `counter` counts its packets from 1, so no nonce repeats.
//!
//! Replays are refused with a sliding window of the last 128 counters per
//! session (IPsec/WireGuard style), kept for at most [`MAX_SESSIONS`] sessions
//! (least recently used forgotten first). Only packets that authenticate
//! touch the table, so a node without the secret cannot evict anything.
//!
//! No input makes [`OverlaySeal::open`] panic; it allocates only for a
//! packet that is at least [`SEAL_OVERHEAD`] bytes and at most
//! [`MAX_SEALED`] long.

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, Tag, XChaCha20Poly1305, XNonce};
use std::collections::HashMap;
use std::fmt;

/// First byte of a sealed packet (plain overlay packets start with `d`,
/// UDP tracker packets with 0).
pub const SEAL_TAG: u8 = b's';
const HEADER: usize = 1 + 16 + 8;
/// Bytes a seal adds to a packet.
pub const SEAL_OVERHEAD: usize = HEADER + 16;
/// Longest sealed packet accepted.
pub const MAX_SEALED: usize = 2048;
/// Sessions whose replay windows are kept.
pub const MAX_SESSIONS: usize = 1024;
const WINDOW: u64 = 128;

/// Why a datagram was not opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Not a sealed packet (another first byte) or too short or too long.
    NotSealed,
    /// Did not authenticate: another secret, damage or forgery.
    Forged,
    /// A counter already seen (or too old) in its session.
    Replayed,
    /// One of our own packets (a multicast loop).
    Own,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpenError::NotSealed => "not a sealed packet",
            OpenError::Forged => "does not authenticate (another network secret?)",
            OpenError::Replayed => "replayed",
            OpenError::Own => "our own packet",
        })
    }
}

struct Window {
    top: u64,
    seen: u128,
    used: u64,
}

/// Seals our overlay packets and opens others'. See the module docs.
pub struct OverlaySeal {
    cipher: XChaCha20Poly1305,
    session: [u8; 16],
    counter: u64,
    windows: HashMap<[u8; 16], Window>,
    uses: u64,
}

impl OverlaySeal {
    pub(super) fn new(key: &[u8; 32], session: [u8; 16]) -> OverlaySeal {
        OverlaySeal {
            cipher: XChaCha20Poly1305::new(key.into()),
            session,
            counter: 0,
            windows: HashMap::new(),
            uses: 0,
        }
    }

    /// The sealed form of `packet`.
    pub fn seal(&mut self, packet: &[u8]) -> Vec<u8> {
        self.counter += 1;
        let mut out = Vec::with_capacity(packet.len() + SEAL_OVERHEAD);
        out.push(SEAL_TAG);
        out.extend_from_slice(&self.session);
        out.extend_from_slice(&self.counter.to_be_bytes());
        let nonce = nonce(&self.session, self.counter);
        out.extend_from_slice(packet);
        let (header, body) = out.split_at_mut(HEADER);
        // Encryption with a 24-byte nonce and a buffer of any length
        // cannot fail for our packet sizes.
        let tag = self
            .cipher
            .encrypt_in_place_detached(&nonce, header, body)
            .unwrap_or_default();
        out.extend_from_slice(&tag);
        out
    }

    /// The overlay packet inside `datagram`, if it is sealed under our key,
    /// new in its session, and not ours.
    pub fn open(&mut self, datagram: &[u8]) -> Result<Vec<u8>, OpenError> {
        if datagram.first() != Some(&SEAL_TAG)
            || datagram.len() < SEAL_OVERHEAD
            || datagram.len() > MAX_SEALED
        {
            return Err(OpenError::NotSealed);
        }
        let (header, rest) = datagram.split_at(HEADER);
        let (body, tag) = rest.split_at(rest.len() - 16);
        let mut session = [0u8; 16];
        session.copy_from_slice(&header[1..17]);
        let mut ctr = [0u8; 8];
        ctr.copy_from_slice(&header[17..25]);
        let counter = u64::from_be_bytes(ctr);
        if session == self.session {
            return Err(OpenError::Own);
        }
        // Cheap check before the decryption: a counter the window already
        // refuses is not worth authenticating.
        if let Some(w) = self.windows.get(&session) {
            if !fresh(w, counter) {
                return Err(OpenError::Replayed);
            }
        }
        let mut plain = body.to_vec();
        self.cipher
            .decrypt_in_place_detached(
                &nonce(&session, counter),
                header,
                &mut plain,
                Tag::from_slice(tag),
            )
            .map_err(|_| OpenError::Forged)?;
        self.uses += 1;
        if !self.windows.contains_key(&session) && self.windows.len() >= MAX_SESSIONS {
            if let Some(old) = self
                .windows
                .iter()
                .min_by_key(|(_, w)| w.used)
                .map(|(k, _)| *k)
            {
                self.windows.remove(&old);
            }
        }
        let w = self.windows.entry(session).or_insert(Window {
            top: 0,
            seen: 0,
            used: 0,
        });
        if !fresh(w, counter) {
            return Err(OpenError::Replayed);
        }
        mark(w, counter);
        w.used = self.uses;
        Ok(plain)
    }

    /// Sessions with a replay window.
    pub fn sessions(&self) -> usize {
        self.windows.len()
    }
}

fn nonce(session: &[u8; 16], counter: u64) -> XNonce {
    let mut n = [0u8; 24];
    n[..16].copy_from_slice(session);
    n[16..].copy_from_slice(&counter.to_be_bytes());
    n.into()
}

/// Whether `counter` is new for the window (counter 0 never is).
fn fresh(w: &Window, counter: u64) -> bool {
    if counter == 0 {
        return false;
    }
    if counter > w.top {
        return true;
    }
    let back = w.top - counter;
    back < WINDOW && w.seen & (1u128 << back) == 0
}

fn mark(w: &mut Window, counter: u64) {
    if counter > w.top {
        let shift = counter - w.top;
        w.seen = if shift >= WINDOW { 0 } else { w.seen << shift };
        w.seen |= 1;
        w.top = counter;
    } else {
        w.seen |= 1u128 << (w.top - counter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (OverlaySeal, OverlaySeal) {
        (
            OverlaySeal::new(&[1; 32], [1; 16]),
            OverlaySeal::new(&[1; 32], [2; 16]),
        )
    }

    #[test]
    fn seal_and_open() {
        let (mut a, mut b) = pair();
        let packet = b"d1:y4:pinge".to_vec();
        let sealed = a.seal(&packet);
        assert_eq!(sealed.len(), packet.len() + SEAL_OVERHEAD);
        assert_eq!(sealed[0], SEAL_TAG);
        assert!(
            !sealed.windows(4).any(|w| w == b"ping"),
            "plaintext visible"
        );
        assert_eq!(b.open(&sealed), Ok(packet.clone()));
        // The same packet again is a replay; our own packet is refused.
        assert_eq!(b.open(&sealed), Err(OpenError::Replayed));
        assert_eq!(a.open(&sealed), Err(OpenError::Own));
        // Two seals of the same packet differ (new nonce).
        assert_ne!(a.seal(&packet), sealed);
    }

    #[test]
    fn another_secret_or_a_changed_byte_is_forged() {
        let (mut a, _) = pair();
        let mut other = OverlaySeal::new(&[2; 32], [3; 16]);
        let sealed = a.seal(b"d1:y4:pinge");
        assert_eq!(other.open(&sealed), Err(OpenError::Forged));
        assert_eq!(other.sessions(), 0, "forgeries never create windows");
        let mut b = OverlaySeal::new(&[1; 32], [4; 16]);
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(b.open(&bad).is_err(), "byte {i}");
        }
        assert_eq!(b.open(&sealed).unwrap(), b"d1:y4:pinge");
    }

    #[test]
    fn junk_is_refused_without_panic() {
        let (_, mut b) = pair();
        for len in 0..100 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 5) as u8).collect();
            assert!(b.open(&junk).is_err());
            let mut s = junk.clone();
            if !s.is_empty() {
                s[0] = SEAL_TAG;
            }
            assert!(b.open(&s).is_err());
        }
        assert_eq!(b.open(&vec![SEAL_TAG; 5000]), Err(OpenError::NotSealed));
    }

    #[test]
    fn window_takes_reordered_packets_once_and_refuses_old_ones() {
        let (mut a, mut b) = pair();
        let sealed: Vec<Vec<u8>> = (0..300).map(|i| a.seal(&[b'd', i as u8])).collect();
        // Out of order within the window: all accepted once.
        for i in [5, 3, 4, 0, 1, 2, 10, 6, 9, 8, 7] {
            assert!(b.open(&sealed[i]).is_ok(), "{i}");
        }
        for (i, s) in sealed.iter().enumerate().take(11) {
            assert_eq!(b.open(s), Err(OpenError::Replayed), "{i}");
        }
        assert!(b.open(&sealed[299]).is_ok());
        // Counter 12 is now 288 behind the newest: outside the window.
        assert_eq!(b.open(&sealed[11]), Err(OpenError::Replayed));
        assert!(b.open(&sealed[250]).is_ok(), "inside the window");
    }

    #[test]
    fn sessions_are_bounded_and_least_recently_used_go_first() {
        let mut b = OverlaySeal::new(&[1; 32], [0; 16]);
        let mut first = OverlaySeal::new(&[1; 32], [0xee; 16]);
        b.open(&first.seal(b"d")).unwrap();
        for i in 0..MAX_SESSIONS as u32 {
            let mut s = [0u8; 16];
            s[..4].copy_from_slice(&(i + 1).to_be_bytes());
            let mut a = OverlaySeal::new(&[1; 32], s);
            b.open(&a.seal(b"d")).unwrap();
            if i == 10 {
                // Keep the first session in use.
                b.open(&first.seal(b"d")).unwrap();
            }
        }
        assert_eq!(b.sessions(), MAX_SESSIONS);
        assert!(b.windows.contains_key(&[0xee; 16]));
    }
}
