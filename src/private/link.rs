//! An encrypted, authenticated TCP link of a private network, sans I/O.
//!
//! The byte stream is a sequence of frames: a 2-byte big-endian length, then
//! that many bytes. The first three frames are the Noise handshake
//! (`Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s`, prologue `peerlet private v1`,
//! empty payloads, so they are exactly [`HANDSHAKE_1_LEN`], 96 and 64 bytes
//! long); every later frame is a Noise transport message carrying up to
//! [`MAX_FRAME_PAYLOAD`] bytes of the BitTorrent stream (the 68-byte
//! handshake, then messages). docs/PROTOCOL.md describes it byte for byte.
//!
//! The connection owner moves bytes: ciphertext from the socket goes in with
//! [`SecureLink::read_input`], plaintext comes out of
//! [`SecureLink::read_plain`]; plaintext to send goes in with
//! [`SecureLink::seal_from`] (only once the handshake is done: until then it
//! waits with the caller), ciphertext to write comes out of
//! [`SecureLink::output`]. Handshake replies are produced inside
//! `read_plain` and also wait in `output`.
//!
//! # No-panic contract and limits
//!
//! No input bytes make these functions panic. The responder's first frame
//! must be exactly 48 bytes, later handshake frames exactly their length, and
//! a transport frame at least the 16-byte tag: anything else ends the link
//! with a [`LinkError`] (after which every call returns that error). At most
//! one frame plus one read chunk of ciphertext is buffered
//! ([`MAX_INPUT`]), one frame of plaintext, and
//! about [`OUTPUT_HIGH`] of ciphertext to send.

use super::{AllowList, PrivateNetwork};
use std::fmt;
use std::io;

/// The Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s";
/// Mixed into the handshake hash: both sides must agree on it.
pub const PROLOGUE: &[u8] = b"peerlet private v1";
/// The initiator's first frame: its ephemeral key and an AEAD tag under the
/// pre-shared key.
pub const HANDSHAKE_1_LEN: usize = 48;
const HANDSHAKE_2_LEN: usize = 96;
const HANDSHAKE_3_LEN: usize = 64;
/// Noise transport messages are at most 65,535 bytes, 16 of them the tag.
pub const MAX_FRAME_PAYLOAD: usize = 65535 - TAG;
const TAG: usize = 16;
/// Ciphertext read from the socket at a time.
pub const READ_CHUNK: usize = 32 * 1024;
/// Most ciphertext buffered on input: one whole frame and a read.
pub const MAX_INPUT: usize = 2 + 65535 + READ_CHUNK;
/// `seal_from` stops taking plaintext while this much ciphertext waits.
pub const OUTPUT_HIGH: usize = 64 * 1024;

/// Why a link ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkError {
    /// The other side sent a plain BitTorrent handshake.
    PlainBitTorrent,
    /// The first frame has the wrong length: not one of our nodes.
    NotAHandshake(usize),
    /// A handshake message failed to authenticate: another network secret
    /// (or a forgery).
    Authentication,
    /// The other node's static key is not on our allow-list.
    NotAllowed([u8; 32]),
    /// A frame length no honest node sends.
    BadFrame(usize),
    /// A transport frame failed to authenticate.
    Corrupt,
    /// snow refused something (should not happen).
    Noise(String),
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::PlainBitTorrent => f.write_str(
                "plain BitTorrent refused: this node is in a private network (a network secret is set)",
            ),
            LinkError::NotAHandshake(n) => write!(
                f,
                "not a private-network handshake (first frame of {n} bytes): not a peerlet node of this network"
            ),
            LinkError::Authentication => f.write_str(
                "private-network handshake failed: another network secret, or not a peerlet node",
            ),
            LinkError::NotAllowed(key) => write!(
                f,
                "node key {} is not on the allow-list (allowed_nodes)",
                crate::hash::to_hex(key)
            ),
            LinkError::BadFrame(n) => write!(f, "private-network frame of {n} bytes"),
            LinkError::Corrupt => f.write_str("a private-network frame failed authentication"),
            LinkError::Noise(e) => write!(f, "noise: {e}"),
        }
    }
}

impl std::error::Error for LinkError {}

impl From<LinkError> for io::Error {
    fn from(e: LinkError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e.to_string())
    }
}

enum State {
    /// Waiting for handshake frame `next` (1, 2 or 3).
    Handshake {
        hs: Box<snow::HandshakeState>,
        next: u8,
    },
    Transport(Box<snow::TransportState>),
    Failed(LinkError),
}

/// One link's Noise state and buffers. See the module docs.
pub struct SecureLink {
    state: State,
    initiator: bool,
    remote: Option<[u8; 32]>,
    allowed: AllowList,
    /// Ciphertext received, from `in_start`.
    input: Vec<u8>,
    in_start: usize,
    /// Plaintext decrypted and not yet taken, from `plain_pos`.
    plain: Vec<u8>,
    plain_pos: usize,
    /// Ciphertext to send, from `out_pos`.
    out: Vec<u8>,
    out_pos: usize,
}

fn noise_err(e: snow::Error) -> LinkError {
    LinkError::Noise(format!("{e:?}"))
}

impl SecureLink {
    pub(super) fn new(net: &PrivateNetwork, initiator: bool) -> Result<SecureLink, LinkError> {
        let params: snow::params::NoiseParams = NOISE_PARAMS.parse().map_err(noise_err)?;
        let builder = snow::Builder::new(params)
            .local_private_key(&net.static_secret)
            .and_then(|b| b.psk(0, &net.psk))
            .and_then(|b| b.prologue(PROLOGUE))
            .map_err(noise_err)?;
        let hs = if initiator {
            builder.build_initiator()
        } else {
            builder.build_responder()
        }
        .map_err(noise_err)?;
        let mut link = SecureLink {
            state: State::Handshake {
                hs: Box::new(hs),
                next: 1,
            },
            initiator,
            remote: None,
            allowed: net.allowed.clone(),
            input: Vec::new(),
            in_start: 0,
            plain: Vec::new(),
            plain_pos: 0,
            out: Vec::new(),
            out_pos: 0,
        };
        if initiator {
            link.write_handshake()?;
        }
        Ok(link)
    }

    /// True once the handshake is complete (plaintext can be sealed).
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Transport(_))
    }

    /// The other node's static public key, once the handshake revealed it.
    pub fn remote_key(&self) -> Option<[u8; 32]> {
        self.remote
    }

    /// Lets `read` fill the free input space (at most [`READ_CHUNK`]) with
    /// ciphertext and keeps what it says it read. `Ok(0)` from `read` is
    /// passed on; when the input is full, `read` is not called and the
    /// result is `Ok(0)` too (call [`read_plain`](Self::read_plain) first).
    pub fn read_input(
        &mut self,
        read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        if self.in_start > 0 {
            self.input.drain(..self.in_start);
            self.in_start = 0;
        }
        let have = self.input.len();
        let room = MAX_INPUT.saturating_sub(have).min(READ_CHUNK);
        if room == 0 {
            return Ok(0);
        }
        self.input.resize(have + room, 0);
        let res = read(&mut self.input[have..]);
        let n = match &res {
            Ok(n) => (*n).min(room),
            Err(_) => 0,
        };
        self.input.truncate(have + n);
        res.map(|_| n)
    }

    /// Ciphertext received and not yet processed.
    pub fn input_buffered(&self) -> usize {
        self.input.len() - self.in_start
    }

    /// Processes whole frames (handshake messages are answered into the
    /// output) and copies decrypted stream bytes into `dst`. `Ok(0)`: no
    /// whole frame yet (or `dst` is empty).
    pub fn read_plain(&mut self, dst: &mut [u8]) -> Result<usize, LinkError> {
        if dst.is_empty() {
            return Ok(0);
        }
        loop {
            if let State::Failed(e) = &self.state {
                return Err(e.clone());
            }
            if self.plain_pos < self.plain.len() {
                let n = dst.len().min(self.plain.len() - self.plain_pos);
                dst[..n].copy_from_slice(&self.plain[self.plain_pos..self.plain_pos + n]);
                self.plain_pos += n;
                if self.plain_pos == self.plain.len() {
                    self.plain.clear();
                    self.plain_pos = 0;
                }
                return Ok(n);
            }
            let avail = &self.input[self.in_start..];
            let Some(head) = avail.get(..2) else {
                return Ok(0);
            };
            if !self.initiator && matches!(self.state, State::Handshake { next: 1, .. }) {
                if head == [19, b'B'] {
                    return Err(self.fail(LinkError::PlainBitTorrent));
                }
                let len = usize::from(u16::from_be_bytes([head[0], head[1]]));
                if len != HANDSHAKE_1_LEN {
                    return Err(self.fail(LinkError::NotAHandshake(len)));
                }
            }
            let len = usize::from(u16::from_be_bytes([head[0], head[1]]));
            if avail.len() < 2 + len {
                return Ok(0);
            }
            let start = self.in_start + 2;
            self.in_start = start + len;
            if matches!(self.state, State::Handshake { .. }) {
                self.read_handshake(start, len)?;
                continue;
            }
            match &mut self.state {
                State::Handshake { .. } => {}
                State::Transport(t) => {
                    if len < TAG {
                        return Err(self.fail(LinkError::BadFrame(len)));
                    }
                    let frame = &self.input[start..start + len];
                    let plain_len = len - TAG;
                    let res = if plain_len <= dst.len() {
                        // Straight into the caller's buffer.
                        t.read_message(frame, dst)
                    } else {
                        self.plain.resize(plain_len, 0);
                        self.plain_pos = 0;
                        t.read_message(frame, &mut self.plain).map(|n| {
                            self.plain.truncate(n);
                            0
                        })
                    };
                    match res {
                        Ok(0) => {}
                        Ok(n) => return Ok(n),
                        Err(_) => {
                            self.plain.clear();
                            return Err(self.fail(LinkError::Corrupt));
                        }
                    }
                }
                State::Failed(e) => return Err(e.clone()),
            }
        }
    }

    /// Seals as much of `plain` as the output has room for; returns how
    /// many bytes it took (0 before the handshake is done).
    pub fn seal_from(&mut self, plain: &[u8]) -> Result<usize, LinkError> {
        let t = match &mut self.state {
            State::Transport(t) => t,
            State::Handshake { .. } => return Ok(0),
            State::Failed(e) => return Err(e.clone()),
        };
        if self.out_pos > 0 && self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        let mut taken = 0;
        while taken < plain.len() && self.out.len() - self.out_pos < OUTPUT_HIGH {
            let chunk = (plain.len() - taken).min(MAX_FRAME_PAYLOAD);
            let start = self.out.len();
            let frame_len = chunk + TAG;
            self.out
                .extend_from_slice(&(frame_len as u16).to_be_bytes());
            self.out.resize(start + 2 + frame_len, 0);
            match t.write_message(&plain[taken..taken + chunk], &mut self.out[start + 2..]) {
                Ok(n) if n == frame_len => {}
                Ok(n) => {
                    self.out.truncate(start);
                    return Err(self.fail(LinkError::Noise(format!("sealed {n} bytes"))));
                }
                Err(e) => {
                    self.out.truncate(start);
                    return Err(self.fail(noise_err(e)));
                }
            }
            taken += chunk;
        }
        Ok(taken)
    }

    /// Ciphertext waiting to be written.
    pub fn output(&self) -> &[u8] {
        &self.out[self.out_pos..]
    }

    /// `n` bytes of [`output`](Self::output) were written.
    pub fn output_written(&mut self, n: usize) {
        self.out_pos = (self.out_pos + n).min(self.out.len());
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        } else if self.out_pos > OUTPUT_HIGH {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
    }

    /// Bytes held in buffers (for memory accounting).
    pub fn buffered(&self) -> usize {
        self.input.capacity() + self.plain.capacity() + self.out.capacity()
    }

    /// Frees idle buffers.
    pub fn trim(&mut self) {
        if self.in_start == self.input.len() {
            self.input = Vec::new();
            self.in_start = 0;
        }
        if self.plain_pos == self.plain.len() {
            self.plain = Vec::new();
            self.plain_pos = 0;
        }
        if self.out_pos == self.out.len() {
            self.out = Vec::new();
            self.out_pos = 0;
        }
    }

    fn fail(&mut self, e: LinkError) -> LinkError {
        self.state = State::Failed(e.clone());
        e
    }

    /// Reads handshake frame `input[start..start + len]`, answers it.
    fn read_handshake(&mut self, start: usize, len: usize) -> Result<(), LinkError> {
        let State::Handshake { hs, next } = &mut self.state else {
            return Ok(());
        };
        let expected = match next {
            1 => HANDSHAKE_1_LEN,
            2 => HANDSHAKE_2_LEN,
            _ => HANDSHAKE_3_LEN,
        };
        if len != expected {
            return Err(self.fail(LinkError::BadFrame(len)));
        }
        let mut payload = [0u8; 64];
        if hs
            .read_message(&self.input[start..start + len], &mut payload)
            .is_err()
        {
            return Err(self.fail(LinkError::Authentication));
        }
        *next += 1;
        if let Some(key) = hs.get_remote_static() {
            let key: [u8; 32] = match key.try_into() {
                Ok(k) => k,
                Err(_) => return Err(self.fail(LinkError::Noise("remote key length".into()))),
            };
            self.remote = Some(key);
        }
        if let Some(key) = self.remote {
            if !self.allowed.allows(&key) {
                return Err(self.fail(LinkError::NotAllowed(key)));
            }
        }
        self.write_handshake()
    }

    /// Writes our next handshake message when it is our turn; enters
    /// transport mode when the handshake is complete.
    fn write_handshake(&mut self) -> Result<(), LinkError> {
        let State::Handshake { hs, next } = &mut self.state else {
            return Ok(());
        };
        if !hs.is_handshake_finished() && hs.is_my_turn() {
            let mut msg = [0u8; 128];
            let n = match hs.write_message(&[], &mut msg) {
                Ok(n) => n,
                Err(e) => return Err(self.fail(noise_err(e))),
            };
            *next += 1;
            self.out.extend_from_slice(&(n as u16).to_be_bytes());
            self.out.extend_from_slice(&msg[..n]);
        }
        let State::Handshake { hs, .. } = &mut self.state else {
            return Ok(());
        };
        if hs.is_handshake_finished() {
            let State::Handshake { hs, .. } =
                std::mem::replace(&mut self.state, State::Failed(LinkError::Corrupt))
            else {
                return Ok(());
            };
            match hs.into_transport_mode() {
                Ok(t) => self.state = State::Transport(Box::new(t)),
                Err(e) => return Err(self.fail(noise_err(e))),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{NetworkSecret, PrivateNetwork};
    use super::*;

    fn key(n: u8) -> [u8; 32] {
        [n; 32]
    }

    fn public(secret: [u8; 32]) -> [u8; 32] {
        crate::overlay::NodeKey::from_secret(secret).public()
    }

    fn net(secret: u8, node: u8, allowed: Option<&[[u8; 32]]>) -> PrivateNetwork {
        PrivateNetwork::new(
            &NetworkSecret::from_bytes([secret; 32]),
            key(node),
            allowed.map(|a| a.iter().copied().collect()),
        )
    }

    /// Moves `from`'s output into `to`, `chunk` bytes at a time, and
    /// collects the plaintext `to` yields.
    fn pump(
        from: &mut SecureLink,
        to: &mut SecureLink,
        chunk: usize,
        plain: &mut Vec<u8>,
    ) -> Result<(), LinkError> {
        let bytes = from.output().to_vec();
        from.output_written(bytes.len());
        for piece in bytes.chunks(chunk.max(1)) {
            let mut rest = piece;
            while !rest.is_empty() {
                let n = to
                    .read_input(|buf| {
                        let n = buf.len().min(rest.len());
                        buf[..n].copy_from_slice(&rest[..n]);
                        Ok(n)
                    })
                    .unwrap();
                rest = &rest[n..];
                let mut buf = [0u8; 1000];
                loop {
                    let n = to.read_plain(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    plain.extend_from_slice(&buf[..n]);
                }
            }
        }
        Ok(())
    }

    fn handshake(a: &mut SecureLink, b: &mut SecureLink) -> Result<(), LinkError> {
        let mut sink = Vec::new();
        assert_eq!(a.output().len(), 2 + HANDSHAKE_1_LEN);
        pump(a, b, 7, &mut sink)?;
        assert_eq!(b.output().len(), 2 + HANDSHAKE_2_LEN);
        pump(b, a, 13, &mut sink)?;
        assert_eq!(a.output().len(), 2 + HANDSHAKE_3_LEN);
        pump(a, b, 64, &mut sink)?;
        assert!(sink.is_empty());
        Ok(())
    }

    #[test]
    fn handshake_then_a_stream_both_ways() {
        let na = net(1, 10, None);
        let nb = net(1, 20, None);
        let mut a = na.link(true).unwrap();
        let mut b = nb.link(false).unwrap();
        assert!(!a.is_established() && b.seal_from(b"early").unwrap() == 0);
        handshake(&mut a, &mut b).unwrap();
        assert!(a.is_established() && b.is_established());
        assert_eq!(a.remote_key(), Some(public(key(20))));
        assert_eq!(b.remote_key(), Some(public(key(10))));
        // 300 KB, more than several frames and more than OUTPUT_HIGH.
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 + i / 7) as u8).collect();
        let mut got = Vec::new();
        let mut sent = 0;
        while sent < data.len() {
            sent += a.seal_from(&data[sent..]).unwrap();
            assert!(a.output().len() <= OUTPUT_HIGH + 2 + 65535);
            pump(&mut a, &mut b, 5000, &mut got).unwrap();
        }
        assert_eq!(got, data);
        // The ciphertext never shows the plaintext.
        let mut back = Vec::new();
        b.seal_from(b"\x13BitTorrent protocol").unwrap();
        assert!(!b.output().windows(10).any(|w| w == b"BitTorrent"));
        pump(&mut b, &mut a, 3, &mut back).unwrap();
        assert_eq!(back, b"\x13BitTorrent protocol");
        a.trim();
        b.trim();
        assert_eq!(a.buffered() + b.buffered(), 0);
    }

    #[test]
    fn another_secret_gets_no_answer() {
        let mut a = net(1, 10, None).link(true).unwrap();
        let mut b = net(2, 20, None).link(false).unwrap();
        let err = pump(&mut a, &mut b, 100, &mut Vec::new()).unwrap_err();
        assert_eq!(err, LinkError::Authentication);
        assert!(b.output().is_empty(), "no second message, no static key");
        assert_eq!(b.remote_key(), None);
        assert_eq!(b.read_plain(&mut [0; 10]), Err(LinkError::Authentication));
    }

    #[test]
    fn plain_bittorrent_and_junk_are_refused() {
        let nb = net(1, 20, None);
        let mut b = nb.link(false).unwrap();
        b.read_input(|buf| {
            buf[..20].copy_from_slice(b"\x13BitTorrent protocol");
            Ok(20)
        })
        .unwrap();
        assert_eq!(b.read_plain(&mut [0; 64]), Err(LinkError::PlainBitTorrent));
        assert!(b.output().is_empty());
        let mut c = nb.link(false).unwrap();
        c.read_input(|buf| {
            buf[..3].copy_from_slice(&[0, 49, 1]);
            Ok(3)
        })
        .unwrap();
        assert_eq!(
            c.read_plain(&mut [0; 64]),
            Err(LinkError::NotAHandshake(49))
        );
        // Pseudo-random junk, fed in odd chunks: an error, never a panic.
        for seed in 0..200u32 {
            let mut r = nb.link(seed % 2 == 0).unwrap();
            let junk: Vec<u8> = (0..400u32)
                .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed * 97) >> 13) as u8)
                .collect();
            let mut res = Ok(0);
            for piece in junk.chunks(1 + seed as usize % 50) {
                let _ = r.read_input(|buf| {
                    let n = buf.len().min(piece.len());
                    buf[..n].copy_from_slice(&piece[..n]);
                    Ok(n)
                });
                res = r.read_plain(&mut [0; 100]);
                if res.is_err() {
                    break;
                }
            }
            assert!(res.is_err() || r.input_buffered() > 0, "seed {seed}");
        }
    }

    #[test]
    fn allow_lists_on_both_sides() {
        // The responder does not allow the initiator: refused at message 3,
        // before any stream byte.
        let mut a = net(1, 10, None).link(true).unwrap();
        let mut b = net(1, 20, Some(&[public(key(30))])).link(false).unwrap();
        assert_eq!(
            handshake(&mut a, &mut b),
            Err(LinkError::NotAllowed(public(key(10))))
        );
        assert!(!b.is_established());
        // The initiator does not allow the responder: refused at message 2.
        let mut a = net(1, 10, Some(&[public(key(30))])).link(true).unwrap();
        let mut b = net(1, 20, None).link(false).unwrap();
        assert_eq!(
            handshake(&mut a, &mut b),
            Err(LinkError::NotAllowed(public(key(20))))
        );
        assert!(a.output().is_empty(), "no third message");
        // Both allowed.
        let mut a = net(1, 10, Some(&[public(key(20))])).link(true).unwrap();
        let mut b = net(1, 20, Some(&[public(key(10))])).link(false).unwrap();
        handshake(&mut a, &mut b).unwrap();
    }

    #[test]
    fn a_changed_byte_in_the_stream_ends_the_link() {
        let mut a = net(1, 10, None).link(true).unwrap();
        let mut b = net(1, 20, None).link(false).unwrap();
        handshake(&mut a, &mut b).unwrap();
        a.seal_from(b"hello, peer").unwrap();
        let mut bytes = a.output().to_vec();
        a.output_written(bytes.len());
        bytes[5] ^= 0x40;
        b.read_input(|buf| {
            buf[..bytes.len()].copy_from_slice(&bytes);
            Ok(bytes.len())
        })
        .unwrap();
        assert_eq!(b.read_plain(&mut [0; 64]), Err(LinkError::Corrupt));
    }
}
