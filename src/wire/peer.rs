//! The BitTorrent peer wire protocol (BEP 3), the Fast extension (BEP 6) and
//! the framing of extension messages (BEP 10).
//!
//! [`Handshake`] is the fixed 68-byte opening; [`Message`] a borrowed view of
//! one length-prefixed message. [`Message::parse`] checks the length prefix
//! against the largest legal size for the message id *before* waiting for
//! the body, so a hostile peer cannot make us buffer more than
//! [`MAX_FRAME`] bytes. Unknown ids are data ([`Message::Unknown`]), not errors.
//!
//! # No-panic contract
//!
//! `parse` accepts any bytes: it returns `Ok(None)` for "need more",
//! `Err(Error)` for a protocol violation, or a message and the number of
//! bytes it used. It never indexes out of bounds.

use std::fmt;

/// The protocol string of the handshake.
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
pub const HANDSHAKE_LEN: usize = 68;
/// Largest block we request, serve or accept (BEP 3 practice).
pub const MAX_BLOCK: u32 = 16 * 1024;
/// Bytes before a piece message's block: length prefix, id, index, begin.
pub const PIECE_HEADER: usize = 13;
/// Largest bitfield accepted before the piece count is known (2,097,152 pieces).
pub const MAX_BITFIELD: usize = 262_144;
/// Largest extension (BEP 10) message payload.
pub const MAX_EXTENDED: usize = 256 * 1024;
/// Largest payload of a message with an id we do not know.
pub const MAX_UNKNOWN: usize = 32 * 1024;
/// Largest length prefix of any message.
pub const MAX_FRAME: usize = 1 + MAX_BITFIELD;

pub const ID_CHOKE: u8 = 0;
pub const ID_UNCHOKE: u8 = 1;
pub const ID_INTERESTED: u8 = 2;
pub const ID_NOT_INTERESTED: u8 = 3;
pub const ID_HAVE: u8 = 4;
pub const ID_BITFIELD: u8 = 5;
pub const ID_REQUEST: u8 = 6;
pub const ID_PIECE: u8 = 7;
pub const ID_CANCEL: u8 = 8;
pub const ID_PORT: u8 = 9;
pub const ID_SUGGEST: u8 = 0x0D;
pub const ID_HAVE_ALL: u8 = 0x0E;
pub const ID_HAVE_NONE: u8 = 0x0F;
pub const ID_REJECT: u8 = 0x10;
pub const ID_ALLOWED_FAST: u8 = 0x11;
pub const ID_EXTENDED: u8 = 20;

/// A protocol violation in a peer's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The handshake does not start with `\x13BitTorrent protocol`.
    NotBitTorrent,
    /// A length prefix larger than any message with this id may be.
    TooLong { id: Option<u8>, len: u32 },
    /// A message whose length does not fit its id.
    BadLength { id: u8, len: u32 },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotBitTorrent => write!(f, "not a BitTorrent handshake"),
            Error::TooLong { id: Some(id), len } => {
                write!(f, "{} message of {len} bytes is too long", id_name(*id))
            }
            Error::TooLong { id: None, len } => write!(f, "message of {len} bytes is too long"),
            Error::BadLength { id, len } => {
                write!(f, "{} message has a wrong length {len}", id_name(*id))
            }
        }
    }
}

impl std::error::Error for Error {}

/// "piece" for 7, for messages.
pub fn id_name(id: u8) -> &'static str {
    match id {
        ID_CHOKE => "choke",
        ID_UNCHOKE => "unchoke",
        ID_INTERESTED => "interested",
        ID_NOT_INTERESTED => "not-interested",
        ID_HAVE => "have",
        ID_BITFIELD => "bitfield",
        ID_REQUEST => "request",
        ID_PIECE => "piece",
        ID_CANCEL => "cancel",
        ID_PORT => "port",
        ID_SUGGEST => "suggest",
        ID_HAVE_ALL => "have-all",
        ID_HAVE_NONE => "have-none",
        ID_REJECT => "reject",
        ID_ALLOWED_FAST => "allowed-fast",
        ID_EXTENDED => "extended",
        _ => "unknown",
    }
}

/// The 68-byte handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
}

impl Handshake {
    /// Reserved bits peerlet sets: extension protocol (BEP 10) and Fast (BEP 6).
    pub fn ours(info_hash: [u8; 20], peer_id: [u8; 20]) -> Handshake {
        let mut reserved = [0u8; 8];
        reserved[5] |= 0x10;
        reserved[7] |= 0x04;
        Handshake {
            reserved,
            info_hash,
            peer_id,
        }
    }

    pub fn supports_extensions(&self) -> bool {
        self.reserved[5] & 0x10 != 0
    }

    pub fn supports_fast(&self) -> bool {
        self.reserved[7] & 0x04 != 0
    }

    /// BEP 5: the sender runs a DHT node (and sends a `port` message).
    pub fn supports_dht(&self) -> bool {
        self.reserved[7] & 0x01 != 0
    }

    /// The same handshake with the DHT bit set (BEP 5).
    pub fn with_dht(mut self) -> Handshake {
        self.reserved[7] |= 0x01;
        self
    }

    /// `Ok(None)` until 68 bytes are there. Checks the protocol string as
    /// soon as its bytes arrive, so garbage is refused early.
    pub fn parse(buf: &[u8]) -> Result<Option<Handshake>, Error> {
        let n = buf.len().min(20);
        let mut expected = [0u8; 20];
        expected[0] = 19;
        expected[1..].copy_from_slice(PROTOCOL);
        if buf[..n] != expected[..n] {
            return Err(Error::NotBitTorrent);
        }
        let Some(bytes) = buf.get(..HANDSHAKE_LEN) else {
            return Ok(None);
        };
        let mut h = Handshake {
            reserved: [0; 8],
            info_hash: [0; 20],
            peer_id: [0; 20],
        };
        h.reserved.copy_from_slice(&bytes[20..28]);
        h.info_hash.copy_from_slice(&bytes[28..48]);
        h.peer_id.copy_from_slice(&bytes[48..68]);
        Ok(Some(h))
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.push(19);
        out.extend_from_slice(PROTOCOL);
        out.extend_from_slice(&self.reserved);
        out.extend_from_slice(&self.info_hash);
        out.extend_from_slice(&self.peer_id);
    }
}

/// A block request, cancel or reject: (piece index, offset, length).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockRef {
    pub index: u32,
    pub begin: u32,
    pub length: u32,
}

/// One peer wire message, borrowing its payload from the read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(&'a [u8]),
    Request(BlockRef),
    Piece {
        index: u32,
        begin: u32,
        data: &'a [u8],
    },
    Cancel(BlockRef),
    Port(u16),
    Suggest(u32),
    HaveAll,
    HaveNone,
    Reject(BlockRef),
    AllowedFast(u32),
    Extended {
        id: u8,
        payload: &'a [u8],
    },
    Unknown {
        id: u8,
        payload: &'a [u8],
    },
}

fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(s) => u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

/// The largest legal length prefix (id byte included) for a message id,
/// and whether it is exact. `bitfield_len` is the exact bitfield size when
/// the piece count is known.
fn allowed_len(id: u8, bitfield_len: Option<usize>) -> (u32, bool) {
    match id {
        ID_CHOKE | ID_UNCHOKE | ID_INTERESTED | ID_NOT_INTERESTED | ID_HAVE_ALL | ID_HAVE_NONE => {
            (1, true)
        }
        ID_HAVE | ID_SUGGEST | ID_ALLOWED_FAST => (5, true),
        ID_REQUEST | ID_CANCEL | ID_REJECT => (13, true),
        ID_PORT => (3, true),
        ID_BITFIELD => match bitfield_len {
            Some(n) => (1 + n as u32, true),
            None => (1 + MAX_BITFIELD as u32, false),
        },
        ID_PIECE => (9 + MAX_BLOCK, false),
        ID_EXTENDED => (1 + 1 + MAX_EXTENDED as u32, false),
        _ => (1 + MAX_UNKNOWN as u32, false),
    }
}

impl<'a> Message<'a> {
    /// Parses one message from the front of `buf`. `bitfield_len` is the
    /// exact bitfield length when the torrent's piece count is known.
    pub fn parse(
        buf: &'a [u8],
        bitfield_len: Option<usize>,
    ) -> Result<Option<(Message<'a>, usize)>, Error> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = be32(buf, 0);
        if len == 0 {
            return Ok(Some((Message::KeepAlive, 4)));
        }
        if len as usize > MAX_FRAME {
            return Err(Error::TooLong {
                id: buf.get(4).copied(),
                len,
            });
        }
        let Some(&id) = buf.get(4) else {
            return Ok(None);
        };
        let (max, exact) = allowed_len(id, bitfield_len);
        if exact && len != max {
            return Err(Error::BadLength { id, len });
        }
        if len > max {
            return Err(Error::TooLong { id: Some(id), len });
        }
        let total = 4 + len as usize;
        let Some(frame) = buf.get(5..total) else {
            return Ok(None);
        };
        let block = || BlockRef {
            index: be32(frame, 0),
            begin: be32(frame, 4),
            length: be32(frame, 8),
        };
        let msg = match id {
            ID_CHOKE => Message::Choke,
            ID_UNCHOKE => Message::Unchoke,
            ID_INTERESTED => Message::Interested,
            ID_NOT_INTERESTED => Message::NotInterested,
            ID_HAVE => Message::Have(be32(frame, 0)),
            ID_BITFIELD => Message::Bitfield(frame),
            ID_REQUEST => Message::Request(block()),
            ID_CANCEL => Message::Cancel(block()),
            ID_REJECT => Message::Reject(block()),
            ID_PIECE => {
                if frame.len() < 8 {
                    return Err(Error::BadLength { id, len });
                }
                Message::Piece {
                    index: be32(frame, 0),
                    begin: be32(frame, 4),
                    data: &frame[8..],
                }
            }
            ID_PORT => Message::Port(u16::from_be_bytes([frame[0], frame[1]])),
            ID_SUGGEST => Message::Suggest(be32(frame, 0)),
            ID_HAVE_ALL => Message::HaveAll,
            ID_HAVE_NONE => Message::HaveNone,
            ID_ALLOWED_FAST => Message::AllowedFast(be32(frame, 0)),
            ID_EXTENDED => match frame.split_first() {
                Some((&ext_id, payload)) => Message::Extended {
                    id: ext_id,
                    payload,
                },
                None => return Err(Error::BadLength { id, len }),
            },
            _ => Message::Unknown { id, payload: frame },
        };
        Ok(Some((msg, total)))
    }

    /// The message id, or `None` for keep-alive.
    pub fn id(&self) -> Option<u8> {
        Some(match self {
            Message::KeepAlive => return None,
            Message::Choke => ID_CHOKE,
            Message::Unchoke => ID_UNCHOKE,
            Message::Interested => ID_INTERESTED,
            Message::NotInterested => ID_NOT_INTERESTED,
            Message::Have(_) => ID_HAVE,
            Message::Bitfield(_) => ID_BITFIELD,
            Message::Request(_) => ID_REQUEST,
            Message::Piece { .. } => ID_PIECE,
            Message::Cancel(_) => ID_CANCEL,
            Message::Port(_) => ID_PORT,
            Message::Suggest(_) => ID_SUGGEST,
            Message::HaveAll => ID_HAVE_ALL,
            Message::HaveNone => ID_HAVE_NONE,
            Message::Reject(_) => ID_REJECT,
            Message::AllowedFast(_) => ID_ALLOWED_FAST,
            Message::Extended { .. } => ID_EXTENDED,
            Message::Unknown { id, .. } => *id,
        })
    }

    /// Bytes `emit` writes, length prefix included.
    pub fn encoded_len(&self) -> usize {
        4 + match self {
            Message::KeepAlive => 0,
            Message::Choke | Message::Unchoke | Message::Interested | Message::NotInterested => 1,
            Message::HaveAll | Message::HaveNone => 1,
            Message::Have(_) | Message::Suggest(_) | Message::AllowedFast(_) => 5,
            Message::Bitfield(b) => 1 + b.len(),
            Message::Request(_) | Message::Cancel(_) | Message::Reject(_) => 13,
            Message::Piece { data, .. } => 9 + data.len(),
            Message::Port(_) => 3,
            Message::Extended { payload, .. } => 2 + payload.len(),
            Message::Unknown { payload, .. } => 1 + payload.len(),
        }
    }

    /// Appends the message, length prefix included.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&((self.encoded_len() - 4) as u32).to_be_bytes());
        let Some(id) = self.id() else { return };
        out.push(id);
        let block = |out: &mut Vec<u8>, b: &BlockRef| {
            out.extend_from_slice(&b.index.to_be_bytes());
            out.extend_from_slice(&b.begin.to_be_bytes());
            out.extend_from_slice(&b.length.to_be_bytes());
        };
        match self {
            Message::Have(i) | Message::Suggest(i) | Message::AllowedFast(i) => {
                out.extend_from_slice(&i.to_be_bytes())
            }
            Message::Bitfield(b) => out.extend_from_slice(b),
            Message::Request(b) | Message::Cancel(b) | Message::Reject(b) => block(out, b),
            Message::Piece { index, begin, data } => {
                out.extend_from_slice(&index.to_be_bytes());
                out.extend_from_slice(&begin.to_be_bytes());
                out.extend_from_slice(data);
            }
            Message::Port(p) => out.extend_from_slice(&p.to_be_bytes()),
            Message::Extended { id, payload } => {
                out.push(*id);
                out.extend_from_slice(payload);
            }
            Message::Unknown { payload, .. } => out.extend_from_slice(payload),
            _ => {}
        }
    }

    /// Writes only the 13-byte header of a piece message carrying `data_len`
    /// bytes, so the block can be appended without an intermediate copy.
    pub fn emit_piece_header(index: u32, begin: u32, data_len: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(&((9 + data_len) as u32).to_be_bytes());
        out.push(ID_PIECE);
        out.extend_from_slice(&index.to_be_bytes());
        out.extend_from_slice(&begin.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(m: Message<'_>) {
        let mut out = vec![0xa5; 3];
        m.emit(&mut out);
        assert_eq!(out.len(), 3 + m.encoded_len());
        let (back, used) = Message::parse(&out[3..], None).unwrap().unwrap();
        assert_eq!(back, m);
        assert_eq!(used, m.encoded_len());
        // Every strict prefix is "need more", never an error.
        for cut in 0..out.len() - 3 {
            assert_eq!(
                Message::parse(&out[3..3 + cut], None),
                Ok(None),
                "{m:?} cut at {cut}"
            );
        }
    }

    #[test]
    fn all_messages_round_trip() {
        let b = BlockRef {
            index: 7,
            begin: 16384,
            length: 16384,
        };
        for m in [
            Message::KeepAlive,
            Message::Choke,
            Message::Unchoke,
            Message::Interested,
            Message::NotInterested,
            Message::Have(42),
            Message::Bitfield(&[0xff, 0x80]),
            Message::Request(b),
            Message::Piece {
                index: 1,
                begin: 0,
                data: &[1, 2, 3],
            },
            Message::Cancel(b),
            Message::Port(6881),
            Message::Suggest(3),
            Message::HaveAll,
            Message::HaveNone,
            Message::Reject(b),
            Message::AllowedFast(9),
            Message::Extended {
                id: 0,
                payload: b"d1:md11:ut_metadatai1eee",
            },
            Message::Unknown {
                id: 99,
                payload: b"xyz",
            },
        ] {
            round_trip(m);
        }
    }

    #[test]
    fn known_bytes() {
        let mut out = Vec::new();
        Message::Request(BlockRef {
            index: 1,
            begin: 2,
            length: 16384,
        })
        .emit(&mut out);
        assert_eq!(out, [0, 0, 0, 13, 6, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0x40, 0]);
        let mut hdr = Vec::new();
        Message::emit_piece_header(1, 2, 3, &mut hdr);
        let mut full = Vec::new();
        Message::Piece {
            index: 1,
            begin: 2,
            data: &[9, 9, 9],
        }
        .emit(&mut full);
        assert_eq!(&full[..13], &hdr[..]);
    }

    #[test]
    fn lengths_are_checked_before_the_body_arrives() {
        // A 1 GiB length prefix: refused from the first 4 bytes.
        assert_eq!(
            Message::parse(&[0x40, 0, 0, 0], None),
            Err(Error::TooLong {
                id: None,
                len: 1 << 30
            })
        );
        // A piece claiming 32 KiB of data: refused from the first 5 bytes.
        let len = 9 + 32768u32;
        let mut b = len.to_be_bytes().to_vec();
        b.push(ID_PIECE);
        assert_eq!(
            Message::parse(&b, None),
            Err(Error::TooLong {
                id: Some(ID_PIECE),
                len
            })
        );
        // A have with 3 bytes of payload.
        assert_eq!(
            Message::parse(&[0, 0, 0, 4, ID_HAVE], None),
            Err(Error::BadLength {
                id: ID_HAVE,
                len: 4
            })
        );
        // A bitfield of the wrong size once the piece count is known.
        assert_eq!(
            Message::parse(&[0, 0, 0, 3, ID_BITFIELD], Some(1)),
            Err(Error::BadLength {
                id: ID_BITFIELD,
                len: 3
            })
        );
        assert_eq!(
            Message::parse(&[0, 0, 0, 2, ID_BITFIELD, 0xff], Some(1))
                .unwrap()
                .unwrap()
                .1,
            6
        );
        // A piece message without its 8-byte header.
        assert_eq!(
            Message::parse(&[0, 0, 0, 5, ID_PIECE, 0, 0, 0, 0], None),
            Err(Error::BadLength {
                id: ID_PIECE,
                len: 5
            })
        );
        assert_eq!(
            Message::parse(&[0, 0, 0, 1, ID_EXTENDED], None),
            Err(Error::BadLength {
                id: ID_EXTENDED,
                len: 1
            })
        );
    }

    #[test]
    fn handshake() {
        let h = Handshake::ours([1; 20], [2; 20]);
        assert!(h.supports_extensions() && h.supports_fast());
        assert!(!h.supports_dht());
        let d = h.with_dht();
        assert!(d.supports_dht() && d.supports_fast() && d.reserved[7] == 0x05);
        let mut out = Vec::new();
        h.emit(&mut out);
        assert_eq!(out.len(), HANDSHAKE_LEN);
        assert_eq!(Handshake::parse(&out), Ok(Some(h)));
        for cut in 0..HANDSHAKE_LEN {
            assert_eq!(Handshake::parse(&out[..cut]), Ok(None));
        }
        assert_eq!(
            Handshake::parse(b"GET / HTTP/1.1\r\n"),
            Err(Error::NotBitTorrent)
        );
        assert_eq!(
            Handshake::parse(&[19, b'B', b'x']),
            Err(Error::NotBitTorrent)
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut s = 0x9E3779B97F4A7C15u64;
        for _ in 0..50_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let bytes = s.to_le_bytes();
            let len = (s % 9) as usize;
            let mut buf = vec![0, 0, 0];
            buf.extend_from_slice(&bytes[..len]);
            let _ = Message::parse(&buf, Some((s % 5) as usize));
            let _ = Message::parse(&bytes[..len], None);
            let _ = Handshake::parse(&bytes[..len]);
        }
    }
}
