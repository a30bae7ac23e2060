//! The extension protocol (BEP 10) handshake and the ut_metadata (BEP 9)
//! and ut_pex (BEP 11) messages: parse and emit, nothing else.
//!
//! These are the payloads of [`Message::Extended`](super::peer::Message):
//! extended id 0 is the [`ExtendedHandshake`]; any other id is one the
//! *receiver* chose in its own handshake. We ask peers to use
//! [`UT_METADATA_ID`] and [`UT_PEX_ID`] when they write to us, so an incoming
//! message is routed with [`parse`]; when we write to a peer we use the id
//! from *its* handshake ([`PeerExtensions`]).
//!
//! ```text
//! handshake    d1:md11:ut_metadatai1e6:ut_pexi2ee13:metadata_sizei31235e1:pi6881e...e
//! ut_metadata  d8:msg_typei1e5:piecei0e10:total_sizei31235ee<16384 raw bytes>
//! ut_pex       d5:added6:<ip4><port>7:added.f1:<flags>6:added60:...e
//! ```
//!
//! # Limits
//!
//! - Payloads are decoded under [`LIMITS`]: at most [`MAX_EXTENDED`] bytes,
//!   depth 16, 10,000 values, 64 KiB strings.
//! - Handshake: at most [`MAX_EXTENSIONS`] entries of `m` are kept (plus
//!   `ut_metadata` and `ut_pex`, wherever they sort), names up to
//!   [`MAX_NAME_LEN`] bytes; `v` is cut to [`MAX_CLIENT_LEN`] bytes.
//! - ut_metadata: a data message carries at most [`METADATA_PIECE_LEN`]
//!   bytes after its dictionary.
//! - ut_pex: at most [`MAX_PEX_ADDED`] added and [`MAX_PEX_DROPPED`] dropped
//!   addresses are kept per message; the rest are counted and ignored.
//!
//! # Leniency
//!
//! The bencode itself must be valid (strict decoder, see [`crate::bencode`]),
//! but fields are read the way libtorrent reads them: unknown keys are
//! ignored, and an optional field of the wrong type or out of range reads as
//! absent. A compact address string whose length is not a multiple of the
//! entry size loses its incomplete tail. Only what a message cannot do
//! without (`msg_type`, `piece`, `total_size`) is an [`Error`].
//!
//! # No-panic contract
//!
//! Every `parse` here takes any bytes and returns a value or an [`Error`]; it
//! never panics, never indexes out of bounds and allocates at most in
//! proportion to the caps above. An `Err` means "this message is malformed";
//! whether that closes the connection is the caller's decision
//! ([`Error::UnknownMsgType`] must be ignored, as BEP 9 asks).

use super::peer::MAX_EXTENDED;
use crate::bencode::{self, Dict, Encoder, Limits};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Extended message id of the handshake.
pub const HANDSHAKE_ID: u8 = 0;
/// The id we ask peers to use for ut_metadata messages sent to us.
pub const UT_METADATA_ID: u8 = 1;
/// The id we ask peers to use for ut_pex messages sent to us.
pub const UT_PEX_ID: u8 = 2;
/// Extension names in `m`.
pub const UT_METADATA: &[u8] = b"ut_metadata";
pub const UT_PEX: &[u8] = b"ut_pex";
/// Our `v`.
pub const CLIENT: &str = concat!("peerlet ", env!("CARGO_PKG_VERSION"));

/// Most entries of a peer's `m` we keep (besides ut_metadata and ut_pex).
pub const MAX_EXTENSIONS: usize = 32;
/// Longest extension name we keep; longer entries are skipped.
pub const MAX_NAME_LEN: usize = 64;
/// Longest client name (`v`) we keep, in bytes; longer ones are cut.
pub const MAX_CLIENT_LEN: usize = 64;
/// Size of a metadata piece (BEP 9); only the last piece is shorter.
pub const METADATA_PIECE_LEN: usize = 16 * 1024;
/// Most added addresses (IPv4 and IPv6 together) kept from one PEX message.
pub const MAX_PEX_ADDED: usize = 200;
/// Most dropped addresses (IPv4 and IPv6 together) kept from one PEX message.
pub const MAX_PEX_DROPPED: usize = 200;

/// Decoding limits for extension payloads.
pub const LIMITS: Limits = Limits {
    max_input: MAX_EXTENDED,
    max_depth: 16,
    max_tokens: 10_000,
    max_string: 64 * 1024,
};

/// PEX flags (BEP 11), one byte per added peer.
pub mod pex_flags {
    /// The peer prefers encrypted connections.
    pub const ENCRYPTION: u8 = 0x01;
    /// The peer is a seed or upload-only.
    pub const SEED: u8 = 0x02;
    /// The peer supports uTP.
    pub const UTP: u8 = 0x04;
    /// The peer supports ut_holepunch.
    pub const HOLEPUNCH: u8 = 0x08;
    /// The sender reached the peer with an outgoing connection.
    pub const REACHABLE: u8 = 0x10;
}

/// A malformed extension message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The payload is not valid bencode (or breaks [`LIMITS`]).
    Bencode(bencode::Error),
    /// The payload is valid bencode but not a dictionary.
    NotDict,
    /// A required key is missing or has the wrong type.
    Missing(&'static str),
    /// A required key has a value out of range.
    BadValue(&'static str),
    /// A ut_metadata `msg_type` we do not know (ignore it, BEP 9).
    UnknownMsgType(i64),
    /// A ut_metadata data message with more than [`METADATA_PIECE_LEN`] bytes.
    PieceTooLong(usize),
    /// Bytes after the dictionary of a message that carries none.
    TrailingBytes(usize),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Bencode(e) => write!(f, "extension message: {e}"),
            Error::NotDict => write!(f, "extension message is not a dictionary"),
            Error::Missing(k) => write!(f, "extension message without a valid '{k}'"),
            Error::BadValue(k) => write!(f, "extension message: '{k}' out of range"),
            Error::UnknownMsgType(t) => write!(f, "ut_metadata message of unknown type {t}"),
            Error::PieceTooLong(n) => write!(
                f,
                "ut_metadata piece of {n} bytes (at most {METADATA_PIECE_LEN})"
            ),
            Error::TrailingBytes(n) => {
                write!(f, "ut_metadata message with {n} unexpected bytes after it")
            }
        }
    }
}

impl std::error::Error for Error {}

/// An extension message, routed by the extended id it arrived with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExtMessage<'a> {
    Handshake(ExtendedHandshake),
    Metadata(MetadataMsg<'a>),
    Pex(PexMessage),
    /// An id we did not hand out: ignore it.
    Unknown {
        id: u8,
        payload: &'a [u8],
    },
}

/// Parses the payload of `Message::Extended { id, payload }` received from a
/// peer, using the ids *we* advertise ([`UT_METADATA_ID`], [`UT_PEX_ID`]).
pub fn parse(id: u8, payload: &[u8]) -> Result<ExtMessage<'_>, Error> {
    Ok(match id {
        HANDSHAKE_ID => ExtMessage::Handshake(ExtendedHandshake::parse(payload)?),
        UT_METADATA_ID => ExtMessage::Metadata(MetadataMsg::parse(payload)?),
        UT_PEX_ID => ExtMessage::Pex(PexMessage::parse(payload)?),
        _ => ExtMessage::Unknown { id, payload },
    })
}

// ---------------------------------------------------------------------------
// BEP 10 handshake

/// The extended handshake (BEP 10), as sent or received. Every field is
/// optional; a repeated handshake only changes what it mentions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtendedHandshake {
    /// `m`: extension name → the id the sender wants to receive it with;
    /// 0 means "disabled". Sorted by name; entries whose id is not an
    /// integer in 0..=255 or whose name is longer than [`MAX_NAME_LEN`] are
    /// skipped; at most [`MAX_EXTENSIONS`] plus ut_metadata and ut_pex.
    pub m: Vec<(Vec<u8>, u8)>,
    /// `metadata_size` (BEP 9): size of the info dictionary. Not judged
    /// here (see `swarm::metadata` for the limits); negative reads as absent.
    pub metadata_size: Option<u64>,
    /// `p`: the sender's listen port (1..=65535).
    pub port: Option<u16>,
    /// `v`: client name, lossy UTF-8 without control characters, at most
    /// [`MAX_CLIENT_LEN`] bytes.
    pub client: Option<String>,
    /// `reqq`: requests the sender queues (positive; saturates at `u32::MAX`).
    pub reqq: Option<u32>,
    /// `yourip`: our address as the sender sees it (4 or 16 bytes).
    pub yourip: Option<IpAddr>,
    /// `ipv4` / `ipv6`: the sender's own addresses.
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

impl ExtendedHandshake {
    /// Ours: `m` with ut_metadata (always: we serve once we have the info
    /// dictionary, and reject before) and ut_pex (unless `pex` is false, as for
    /// private torrents, BEP 27), and `v`. The caller fills in `port`, `reqq`,
    /// `metadata_size` (when known) and `yourip` (the peer's address).
    pub fn ours(pex: bool) -> ExtendedHandshake {
        let mut m = vec![(UT_METADATA.to_vec(), UT_METADATA_ID)];
        if pex {
            m.push((UT_PEX.to_vec(), UT_PEX_ID));
        }
        ExtendedHandshake {
            m,
            client: Some(CLIENT.to_string()),
            ..ExtendedHandshake::default()
        }
    }

    /// The id the sender listed for `name`: `Some(0)` when it disables the
    /// extension, `None` when it does not mention it.
    pub fn extension(&self, name: &[u8]) -> Option<u8> {
        self.m.iter().find(|(n, _)| n == name).map(|&(_, id)| id)
    }

    /// Parses a handshake payload. Never panics.
    pub fn parse(payload: &[u8]) -> Result<ExtendedHandshake, Error> {
        let doc = bencode::decode(payload, LIMITS).map_err(Error::Bencode)?;
        let d = doc.root().as_dict().ok_or(Error::NotDict)?;
        let mut hs = ExtendedHandshake::default();
        for (key, value) in d.iter() {
            match key {
                b"m" => {
                    if let Some(m) = value.as_dict() {
                        hs.m = parse_m(&m);
                    }
                }
                b"metadata_size" => {
                    hs.metadata_size = value.as_int().and_then(|n| u64::try_from(n).ok());
                }
                b"p" => {
                    hs.port = value
                        .as_int()
                        .and_then(|n| u16::try_from(n).ok())
                        .filter(|&p| p != 0);
                }
                b"v" => hs.client = value.as_bytes().map(clean_client),
                b"reqq" => {
                    hs.reqq = value
                        .as_int()
                        .filter(|&n| n > 0)
                        .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
                }
                b"yourip" => hs.yourip = value.as_bytes().and_then(ip_from_bytes),
                b"ipv4" => hs.ipv4 = value.as_bytes().and_then(ipv4_from_bytes),
                b"ipv6" => hs.ipv6 = value.as_bytes().and_then(ipv6_from_bytes),
                _ => {}
            }
        }
        Ok(hs)
    }

    /// Appends the bencoded handshake (the payload of extended message 0).
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut e = Encoder { out };
        e.begin_dict();
        // Keys in byte order: ipv4 ipv6 m metadata_size p reqq v yourip.
        if let Some(ip) = self.ipv4 {
            e.bytes(b"ipv4");
            e.bytes(&ip.octets());
        }
        if let Some(ip) = self.ipv6 {
            e.bytes(b"ipv6");
            e.bytes(&ip.octets());
        }
        e.bytes(b"m");
        e.begin_dict();
        let mut m: Vec<&(Vec<u8>, u8)> = self.m.iter().collect();
        crate::sort::sort_by(&mut m, |a, b| a.0.cmp(&b.0));
        m.dedup_by(|a, b| a.0 == b.0);
        for (name, id) in m {
            e.bytes(name);
            e.int(i64::from(*id));
        }
        e.end();
        if let Some(n) = self.metadata_size {
            e.bytes(b"metadata_size");
            e.int(i64::try_from(n).unwrap_or(i64::MAX));
        }
        if let Some(p) = self.port {
            e.bytes(b"p");
            e.int(i64::from(p));
        }
        if let Some(n) = self.reqq {
            e.bytes(b"reqq");
            e.int(i64::from(n));
        }
        if let Some(v) = &self.client {
            e.bytes(b"v");
            e.bytes(v.as_bytes());
        }
        if let Some(ip) = self.yourip {
            e.bytes(b"yourip");
            match ip {
                IpAddr::V4(ip) => e.bytes(&ip.octets()),
                IpAddr::V6(ip) => e.bytes(&ip.octets()),
            }
        }
        e.end();
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.emit(&mut out);
        out
    }
}

/// What we know of a peer's extensions: the ids to use when writing to it.
/// `None` = it does not (or no longer) support the extension.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerExtensions {
    pub ut_metadata: Option<u8>,
    pub ut_pex: Option<u8>,
}

impl PeerExtensions {
    /// Applies a (possibly repeated) handshake: a listed extension takes the
    /// new id, id 0 disables it, an extension not listed keeps its id.
    pub fn update(&mut self, hs: &ExtendedHandshake) {
        if let Some(id) = hs.extension(UT_METADATA) {
            self.ut_metadata = (id != 0).then_some(id);
        }
        if let Some(id) = hs.extension(UT_PEX) {
            self.ut_pex = (id != 0).then_some(id);
        }
    }
}

fn parse_m(m: &Dict<'_, '_>) -> Vec<(Vec<u8>, u8)> {
    let mut out = Vec::new();
    for (name, value) in m.iter() {
        let Some(id) = value.as_int().and_then(|n| u8::try_from(n).ok()) else {
            continue;
        };
        if name.len() > MAX_NAME_LEN {
            continue;
        }
        if out.len() < MAX_EXTENSIONS || name == UT_METADATA || name == UT_PEX {
            out.push((name.to_vec(), id));
        }
    }
    out
}

fn clean_client(raw: &[u8]) -> String {
    crate::text::printable(raw, MAX_CLIENT_LEN)
}

fn ipv4_from_bytes(b: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(b).ok().map(Ipv4Addr::from)
}

fn ipv6_from_bytes(b: &[u8]) -> Option<Ipv6Addr> {
    <[u8; 16]>::try_from(b).ok().map(Ipv6Addr::from)
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => ipv4_from_bytes(b).map(IpAddr::V4),
        16 => ipv6_from_bytes(b).map(IpAddr::V6),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// BEP 9 ut_metadata

const MSG_REQUEST: i64 = 0;
const MSG_DATA: i64 = 1;
const MSG_REJECT: i64 = 2;

/// A ut_metadata message (BEP 9). `piece` counts [`METADATA_PIECE_LEN`]-byte
/// pieces of the info dictionary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataMsg<'a> {
    /// `{msg_type: 0, piece}`.
    Request { piece: u32 },
    /// `{msg_type: 1, piece, total_size}` followed by the piece's bytes.
    Data {
        piece: u32,
        total_size: u64,
        data: &'a [u8],
    },
    /// `{msg_type: 2, piece}`: the sender will not send this piece.
    Reject { piece: u32 },
}

impl<'a> MetadataMsg<'a> {
    /// Parses a ut_metadata payload. Never panics. Only the length of the
    /// data is checked here (at most [`METADATA_PIECE_LEN`]); whether it fits
    /// `piece` and `total_size` is for the caller.
    pub fn parse(payload: &'a [u8]) -> Result<MetadataMsg<'a>, Error> {
        let (doc, dict_len) = bencode::decode_prefix(payload, LIMITS).map_err(Error::Bencode)?;
        let d = doc.root().as_dict().ok_or(Error::NotDict)?;
        let msg_type = d
            .get(b"msg_type")
            .and_then(|v| v.as_int())
            .ok_or(Error::Missing("msg_type"))?;
        if !(MSG_REQUEST..=MSG_REJECT).contains(&msg_type) {
            return Err(Error::UnknownMsgType(msg_type));
        }
        let piece = d
            .get(b"piece")
            .and_then(|v| v.as_int())
            .ok_or(Error::Missing("piece"))?;
        let piece = u32::try_from(piece).map_err(|_| Error::BadValue("piece"))?;
        let rest = payload.get(dict_len..).unwrap_or(&[]);
        if msg_type == MSG_DATA {
            let total_size = d
                .get(b"total_size")
                .and_then(|v| v.as_int())
                .ok_or(Error::Missing("total_size"))?;
            let total_size =
                u64::try_from(total_size).map_err(|_| Error::BadValue("total_size"))?;
            if rest.len() > METADATA_PIECE_LEN {
                return Err(Error::PieceTooLong(rest.len()));
            }
            return Ok(MetadataMsg::Data {
                piece,
                total_size,
                data: rest,
            });
        }
        if !rest.is_empty() {
            return Err(Error::TrailingBytes(rest.len()));
        }
        Ok(if msg_type == MSG_REQUEST {
            MetadataMsg::Request { piece }
        } else {
            MetadataMsg::Reject { piece }
        })
    }

    pub fn piece(&self) -> u32 {
        match *self {
            MetadataMsg::Request { piece }
            | MetadataMsg::Data { piece, .. }
            | MetadataMsg::Reject { piece } => piece,
        }
    }

    /// Appends the payload: the dictionary, then for data the raw bytes.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut e = Encoder { out };
        e.begin_dict();
        e.bytes(b"msg_type");
        match *self {
            MetadataMsg::Request { piece } => {
                e.int(MSG_REQUEST);
                e.bytes(b"piece");
                e.int(i64::from(piece));
                e.end();
            }
            MetadataMsg::Reject { piece } => {
                e.int(MSG_REJECT);
                e.bytes(b"piece");
                e.int(i64::from(piece));
                e.end();
            }
            MetadataMsg::Data {
                piece,
                total_size,
                data,
            } => {
                e.int(MSG_DATA);
                e.bytes(b"piece");
                e.int(i64::from(piece));
                e.bytes(b"total_size");
                e.int(i64::try_from(total_size).unwrap_or(i64::MAX));
                e.end();
                e.out.extend_from_slice(data);
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.emit(&mut out);
        out
    }
}

// ---------------------------------------------------------------------------
// BEP 11 ut_pex

/// One added peer of a PEX message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PexPeer {
    pub addr: SocketAddr,
    /// [`pex_flags`]; 0 when the sender gave none.
    pub flags: u8,
}

/// A ut_pex message (BEP 11). Addresses are taken as they are; judging them
/// (port 0, our own address, ...) is for `swarm::pex`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PexMessage {
    /// `added` then `added6`, at most [`MAX_PEX_ADDED`] in all.
    pub added: Vec<PexPeer>,
    /// `dropped` then `dropped6`, at most [`MAX_PEX_DROPPED`] in all.
    pub dropped: Vec<SocketAddr>,
    /// Entries beyond the caps, counted and not kept.
    pub n_ignored: usize,
}

const COMPACT_V4: usize = 6;
const COMPACT_V6: usize = 18;

impl PexMessage {
    /// Parses a ut_pex payload. Never panics; allocates at most for the caps.
    pub fn parse(payload: &[u8]) -> Result<PexMessage, Error> {
        let doc = bencode::decode(payload, LIMITS).map_err(Error::Bencode)?;
        let d = doc.root().as_dict().ok_or(Error::NotDict)?;
        let field = |k: &[u8]| d.get(k).and_then(|v| v.as_bytes()).unwrap_or(&[]);
        let mut msg = PexMessage::default();
        for (addrs, flags, width) in [
            (field(b"added"), field(b"added.f"), COMPACT_V4),
            (field(b"added6"), field(b"added6.f"), COMPACT_V6),
        ] {
            for (i, entry) in addrs.chunks_exact(width).enumerate() {
                if msg.added.len() >= MAX_PEX_ADDED {
                    msg.n_ignored += addrs.len() / width - i;
                    break;
                }
                if let Some(addr) = compact_addr(entry) {
                    let flags = flags.get(i).copied().unwrap_or(0);
                    msg.added.push(PexPeer { addr, flags });
                }
            }
        }
        for (addrs, width) in [
            (field(b"dropped"), COMPACT_V4),
            (field(b"dropped6"), COMPACT_V6),
        ] {
            for (i, entry) in addrs.chunks_exact(width).enumerate() {
                if msg.dropped.len() >= MAX_PEX_DROPPED {
                    msg.n_ignored += addrs.len() / width - i;
                    break;
                }
                if let Some(addr) = compact_addr(entry) {
                    msg.dropped.push(addr);
                }
            }
        }
        Ok(msg)
    }

    /// Appends the payload. Every key is written (empty when there is
    /// nothing), as libtorrent does. The caps are the caller's to keep.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut added4 = Vec::new();
        let mut flags4 = Vec::new();
        let mut added6 = Vec::new();
        let mut flags6 = Vec::new();
        for p in &self.added {
            match p.addr {
                SocketAddr::V4(_) => {
                    push_compact(&mut added4, p.addr);
                    flags4.push(p.flags);
                }
                SocketAddr::V6(_) => {
                    push_compact(&mut added6, p.addr);
                    flags6.push(p.flags);
                }
            }
        }
        let mut dropped4 = Vec::new();
        let mut dropped6 = Vec::new();
        for &a in &self.dropped {
            match a {
                SocketAddr::V4(_) => push_compact(&mut dropped4, a),
                SocketAddr::V6(_) => push_compact(&mut dropped6, a),
            }
        }
        let mut e = Encoder { out };
        e.begin_dict();
        for (key, value) in [
            (&b"added"[..], &added4),
            (b"added.f", &flags4),
            (b"added6", &added6),
            (b"added6.f", &flags6),
            (b"dropped", &dropped4),
            (b"dropped6", &dropped6),
        ] {
            e.bytes(key);
            e.bytes(value);
        }
        e.end();
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.emit(&mut out);
        out
    }
}

/// A compact address: 4-byte IPv4 or 16-byte IPv6, then a big-endian port.
fn compact_addr(entry: &[u8]) -> Option<SocketAddr> {
    let (ip, port) = entry.split_at_checked(entry.len().checked_sub(2)?)?;
    let port = u16::from_be_bytes(<[u8; 2]>::try_from(port).ok()?);
    Some(match ip_from_bytes(ip)? {
        IpAddr::V4(ip) => SocketAddr::V4(SocketAddrV4::new(ip, port)),
        IpAddr::V6(ip) => SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)),
    })
}

fn push_compact(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A libtorrent 2.0-style handshake, keys sorted, plus an unknown `e`.
    const LT_HANDSHAKE: &[u8] = b"d1:ei0e1:md11:lt_donthavei7e10:share_modei8e11:upload_onlyi3e\
12:ut_holepunchi4e11:ut_metadatai2e6:ut_pexi1ee13:metadata_sizei31235e1:pi6881e\
4:reqqi500e1:v17:libtorrent 2.0.9 6:yourip4:\xc0\xa8\x01\x02e";

    /// What `ours` emits with every optional field set.
    const OURS: &[u8] = b"d4:ipv44:\x0a\x00\x00\x014:ipv616:\x20\x01\x0d\xb8\
\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\
1:md11:ut_metadatai1e6:ut_pexi2ee13:metadata_sizei5000e1:pi51413e4:reqqi256e\
1:v13:peerlet 0.1.06:yourip4:\x7f\x00\x00\x01e";

    #[test]
    fn parse_libtorrent_handshake() {
        let hs = ExtendedHandshake::parse(LT_HANDSHAKE).unwrap();
        assert_eq!(hs.m.len(), 6);
        assert_eq!(hs.extension(UT_METADATA), Some(2));
        assert_eq!(hs.extension(UT_PEX), Some(1));
        assert_eq!(hs.extension(b"lt_donthave"), Some(7));
        assert_eq!(hs.extension(b"nope"), None);
        assert_eq!(hs.metadata_size, Some(31235));
        assert_eq!(hs.port, Some(6881));
        assert_eq!(hs.reqq, Some(500));
        assert_eq!(hs.client.as_deref(), Some("libtorrent 2.0.9 "));
        assert_eq!(hs.yourip, Some(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2))));
        assert_eq!((hs.ipv4, hs.ipv6), (None, None));
        let mut ext = PeerExtensions::default();
        ext.update(&hs);
        assert_eq!(
            ext,
            PeerExtensions {
                ut_metadata: Some(2),
                ut_pex: Some(1)
            }
        );
    }

    #[test]
    fn emit_ours_exact_bytes_and_round_trip() {
        let mut hs = ExtendedHandshake::ours(true);
        hs.client = Some("peerlet 0.1.0".into());
        hs.port = Some(51413);
        hs.reqq = Some(256);
        hs.metadata_size = Some(5000);
        hs.yourip = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        hs.ipv4 = Some(Ipv4Addr::new(10, 0, 0, 1));
        hs.ipv6 = Some("2001:db8::1".parse().unwrap());
        let bytes = hs.to_bytes();
        assert_eq!(bytes, OURS, "{}", String::from_utf8_lossy(&bytes));
        assert_eq!(ExtendedHandshake::parse(&bytes).unwrap(), hs);
        // The strict decoder accepts our own bytes, so keys are sorted.
        assert!(bencode::decode(&bytes, LIMITS).is_ok());
    }

    #[test]
    fn ours_for_a_private_torrent_has_no_pex() {
        let hs = ExtendedHandshake::ours(false);
        assert_eq!(hs.extension(UT_METADATA), Some(UT_METADATA_ID));
        assert_eq!(hs.extension(UT_PEX), None);
        assert_eq!(
            hs.to_bytes(),
            format!("d1:md11:ut_metadatai1ee1:v{}:{}e", CLIENT.len(), CLIENT).as_bytes()
        );
    }

    #[test]
    fn repeated_handshake_disables_and_keeps() {
        let mut ext = PeerExtensions::default();
        ext.update(&ExtendedHandshake::parse(b"d1:md11:ut_metadatai3e6:ut_pexi4eee").unwrap());
        assert_eq!((ext.ut_metadata, ext.ut_pex), (Some(3), Some(4)));
        // Only ut_pex mentioned, with 0: disabled; ut_metadata unchanged.
        ext.update(&ExtendedHandshake::parse(b"d1:md6:ut_pexi0eee").unwrap());
        assert_eq!((ext.ut_metadata, ext.ut_pex), (Some(3), None));
        // No `m` at all changes nothing.
        ext.update(&ExtendedHandshake::parse(b"d1:pi1ee").unwrap());
        assert_eq!((ext.ut_metadata, ext.ut_pex), (Some(3), None));
    }

    #[test]
    fn hostile_handshake_fields_read_as_absent() {
        let long_v = "x".repeat(1000);
        let payload = format!(
            "d1:md1:ai-1e1:bi256e1:c1:x1:di0e11:ut_metadatai255ee13:metadata_sizei-5e\
1:pi70000e4:reqqi99999999999e1:v{}:{}6:yourip5:12345e",
            long_v.len(),
            long_v
        );
        let hs = ExtendedHandshake::parse(payload.as_bytes()).unwrap();
        assert_eq!(hs.m, vec![(b"d".to_vec(), 0), (UT_METADATA.to_vec(), 255)]);
        assert_eq!(hs.metadata_size, None);
        assert_eq!(hs.port, None);
        assert_eq!(hs.reqq, Some(u32::MAX));
        assert_eq!(hs.client.as_deref().map(str::len), Some(MAX_CLIENT_LEN));
        assert_eq!(hs.yourip, None);
        // Port 0, reqq 0, wrong types.
        let hs = ExtendedHandshake::parse(b"d1:m4:spam1:pi0e4:reqqi0e1:vi5ee").unwrap();
        assert_eq!(hs, ExtendedHandshake::default());
        // Control characters and invalid UTF-8 in `v`.
        let hs = ExtendedHandshake::parse(b"d1:v6:a\nb\xffcde").unwrap();
        assert_eq!(hs.client.as_deref(), Some("a?b\u{fffd}cd"));
        // A 16-byte yourip is IPv6.
        let hs =
            ExtendedHandshake::parse(b"d6:yourip16:\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01e").unwrap();
        assert_eq!(hs.yourip, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    }

    #[test]
    fn handshake_m_is_capped_but_keeps_known_extensions() {
        let mut payload = b"d1:md".to_vec();
        for i in 0..1000 {
            let name = format!("a{i:04}");
            payload.extend_from_slice(format!("{}:{}i1e", name.len(), name).as_bytes());
        }
        payload.extend_from_slice(b"11:ut_metadatai9e6:ut_pexi8eee");
        let hs = ExtendedHandshake::parse(&payload).unwrap();
        assert_eq!(hs.m.len(), MAX_EXTENSIONS + 2);
        assert_eq!(hs.extension(UT_METADATA), Some(9));
        assert_eq!(hs.extension(UT_PEX), Some(8));
        // A long name is skipped.
        let name = "n".repeat(MAX_NAME_LEN + 1);
        let payload = format!("d1:md{}:{}i1eee", name.len(), name);
        assert!(ExtendedHandshake::parse(payload.as_bytes())
            .unwrap()
            .m
            .is_empty());
    }

    #[test]
    fn malformed_handshakes_are_errors() {
        for bad in [
            &b""[..],
            b"d",
            b"le",
            b"i5e",
            b"d1:mi1ee trailing",
            b"d1:pi1e1:mdee",       // unsorted keys
            b"d1:md1:ai1e1:ai2eee", // duplicate key
            b"d1:pi01ee",           // not canonical
            b"\xff\xff\xff\xff",
        ] {
            let res = ExtendedHandshake::parse(bad);
            assert!(
                res.is_err(),
                "{:?} -> {res:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(ExtendedHandshake::parse(b"le"), Err(Error::NotDict));
        // Deep nesting in an unknown key stops at the depth limit.
        let mut deep = b"d1:x".to_vec();
        deep.extend(std::iter::repeat_n(b'l', 100));
        deep.extend(std::iter::repeat_n(b'e', 101));
        assert!(matches!(
            ExtendedHandshake::parse(&deep),
            Err(Error::Bencode(e)) if e.kind == bencode::ErrorKind::TooDeep(16)
        ));
    }

    #[test]
    fn metadata_messages_fixtures() {
        let request = b"d8:msg_typei0e5:piecei3ee";
        let reject = b"d8:msg_typei2e5:piecei7ee";
        let mut data = b"d8:msg_typei1e5:piecei1e10:total_sizei16400ee".to_vec();
        data.extend_from_slice(&[0xab; 16]);
        assert_eq!(
            MetadataMsg::parse(request),
            Ok(MetadataMsg::Request { piece: 3 })
        );
        assert_eq!(
            MetadataMsg::parse(reject),
            Ok(MetadataMsg::Reject { piece: 7 })
        );
        let parsed = MetadataMsg::parse(&data).unwrap();
        assert_eq!(
            parsed,
            MetadataMsg::Data {
                piece: 1,
                total_size: 16400,
                data: &[0xab; 16]
            }
        );
        assert_eq!(parsed.piece(), 1);
        // Emit gives the same bytes back.
        assert_eq!(MetadataMsg::Request { piece: 3 }.to_bytes(), request);
        assert_eq!(MetadataMsg::Reject { piece: 7 }.to_bytes(), reject);
        assert_eq!(parsed.to_bytes(), data);
        // A full piece, and a data message with no bytes.
        let full = [7u8; METADATA_PIECE_LEN];
        let msg = MetadataMsg::Data {
            piece: 0,
            total_size: 20000,
            data: &full,
        };
        assert_eq!(MetadataMsg::parse(&msg.to_bytes()), Ok(msg));
        assert!(matches!(
            MetadataMsg::parse(b"d8:msg_typei1e5:piecei0e10:total_sizei1ee"),
            Ok(MetadataMsg::Data { data: &[], .. })
        ));
        // Extra keys are fine.
        assert_eq!(
            MetadataMsg::parse(b"d1:ai1e8:msg_typei0e5:piecei0e1:zi0ee"),
            Ok(MetadataMsg::Request { piece: 0 })
        );
    }

    #[test]
    fn malformed_metadata_messages() {
        let check = |payload: &[u8], want: Error| {
            assert_eq!(
                MetadataMsg::parse(payload),
                Err(want),
                "{}",
                String::from_utf8_lossy(payload)
            );
        };
        check(b"d8:msg_typei3e5:piecei0ee", Error::UnknownMsgType(3));
        check(b"d8:msg_typei-1ee", Error::UnknownMsgType(-1));
        check(b"d5:piecei0ee", Error::Missing("msg_type"));
        check(b"d8:msg_type1:0e", Error::Missing("msg_type"));
        check(b"d8:msg_typei0ee", Error::Missing("piece"));
        check(b"d8:msg_typei0e5:piecei-1ee", Error::BadValue("piece"));
        check(
            b"d8:msg_typei0e5:piecei4294967296ee",
            Error::BadValue("piece"),
        );
        check(b"d8:msg_typei1e5:piecei0ee", Error::Missing("total_size"));
        check(
            b"d8:msg_typei1e5:piecei0e10:total_sizei-1ee",
            Error::BadValue("total_size"),
        );
        check(b"d8:msg_typei0e5:piecei0eeX", Error::TrailingBytes(1));
        check(b"d8:msg_typei2e5:piecei0eeXY", Error::TrailingBytes(2));
        check(b"i1e", Error::NotDict);
        let mut long = b"d8:msg_typei1e5:piecei0e10:total_sizei99999ee".to_vec();
        long.extend_from_slice(&[0; METADATA_PIECE_LEN + 1]);
        check(&long, Error::PieceTooLong(METADATA_PIECE_LEN + 1));
        assert!(matches!(
            MetadataMsg::parse(b"d8:msg_typei0e5:piece"),
            Err(Error::Bencode(_))
        ));
    }

    #[test]
    fn pex_fixture_parse_and_emit() {
        let payload =
            b"d5:added12:\x0a\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x00\x507:added.f2:\x10\x02\
6:added618:\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x1a\xe18:added6.f1:\x01\
7:dropped6:\xc0\xa8\x00\x01\x1f\x908:dropped60:e";
        let msg = PexMessage::parse(payload).unwrap();
        let v4 = |a, b, c, d, port| SocketAddr::from((Ipv4Addr::new(a, b, c, d), port));
        let v6: SocketAddr = "[2001:db8::1]:6881".parse().unwrap();
        assert_eq!(
            msg.added,
            vec![
                PexPeer {
                    addr: v4(10, 0, 0, 1, 6881),
                    flags: pex_flags::REACHABLE
                },
                PexPeer {
                    addr: v4(10, 0, 0, 2, 80),
                    flags: pex_flags::SEED
                },
                PexPeer {
                    addr: v6,
                    flags: pex_flags::ENCRYPTION
                },
            ]
        );
        assert_eq!(msg.dropped, vec![v4(192, 168, 0, 1, 8080)]);
        assert_eq!(msg.n_ignored, 0);
        assert_eq!(msg.to_bytes(), payload);
        // Through the router.
        assert_eq!(parse(UT_PEX_ID, payload), Ok(ExtMessage::Pex(msg)));
    }

    #[test]
    fn pex_lenient_fields() {
        // Missing flags read as 0, a short tail is dropped, wrong types are absent.
        let msg =
            PexMessage::parse(b"d5:added8:\x01\x02\x03\x04\x00\x01\xff\xff7:droppedi5ee").unwrap();
        assert_eq!(
            msg.added,
            vec![PexPeer {
                addr: SocketAddr::from(([1, 2, 3, 4], 1)),
                flags: 0
            }]
        );
        assert!(msg.dropped.is_empty());
        assert_eq!(PexMessage::parse(b"de").unwrap(), PexMessage::default());
        assert_eq!(
            PexMessage::default().to_bytes(),
            b"d5:added0:7:added.f0:6:added60:8:added6.f0:7:dropped0:8:dropped60:e"
        );
        assert_eq!(PexMessage::parse(b"l5:addede"), Err(Error::NotDict));
    }

    #[test]
    fn pex_flood_is_capped() {
        let n = 5000;
        let mut added = Vec::new();
        let mut dropped = Vec::new();
        for i in 0..n as u32 {
            added.extend_from_slice(&i.to_be_bytes());
            added.extend_from_slice(&1000u16.to_be_bytes());
            dropped.extend_from_slice(&i.to_be_bytes());
            dropped.extend_from_slice(&2000u16.to_be_bytes());
        }
        let mut payload = b"d5:added".to_vec();
        payload.extend_from_slice(format!("{}:", added.len()).as_bytes());
        payload.extend_from_slice(&added);
        payload.extend_from_slice(format!("7:dropped{}:", dropped.len()).as_bytes());
        payload.extend_from_slice(&dropped);
        payload.push(b'e');
        let msg = PexMessage::parse(&payload).unwrap();
        assert_eq!(msg.added.len(), MAX_PEX_ADDED);
        assert_eq!(msg.dropped.len(), MAX_PEX_DROPPED);
        assert_eq!(msg.n_ignored, 2 * n - MAX_PEX_ADDED - MAX_PEX_DROPPED);
        // A string over the 64 KiB string limit is a bencode error.
        let big = vec![0u8; 70_000];
        let mut payload = b"d5:added70000:".to_vec();
        payload.extend_from_slice(&big);
        payload.push(b'e');
        assert!(matches!(
            PexMessage::parse(&payload),
            Err(Error::Bencode(_))
        ));
    }

    #[test]
    fn router_by_our_ids() {
        assert!(matches!(
            parse(HANDSHAKE_ID, b"d1:md6:ut_pexi1eee"),
            Ok(ExtMessage::Handshake(_))
        ));
        assert_eq!(
            parse(UT_METADATA_ID, b"d8:msg_typei0e5:piecei0ee"),
            Ok(ExtMessage::Metadata(MetadataMsg::Request { piece: 0 }))
        );
        assert_eq!(
            parse(77, b"whatever"),
            Ok(ExtMessage::Unknown {
                id: 77,
                payload: b"whatever"
            })
        );
        assert!(parse(UT_PEX_ID, b"garbage").is_err());
    }

    #[test]
    fn compact_addresses() {
        assert_eq!(compact_addr(b""), None);
        assert_eq!(compact_addr(b"\x01"), None);
        assert_eq!(compact_addr(b"\x01\x02\x03\x04\x00"), None);
        assert_eq!(
            compact_addr(b"\x01\x02\x03\x04\x00\x05"),
            Some(SocketAddr::from(([1, 2, 3, 4], 5)))
        );
    }

    /// A small deterministic fuzz: random bytes and mutated fixtures through
    /// every parser; nothing may panic and the caps must hold.
    #[test]
    fn no_panic_on_mutated_inputs() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut data_msg = b"d8:msg_typei1e5:piecei0e10:total_sizei16ee".to_vec();
        data_msg.extend_from_slice(&[1; 16]);
        let pex = PexMessage {
            added: vec![PexPeer {
                addr: SocketAddr::from(([1, 2, 3, 4], 5)),
                flags: 3,
            }],
            dropped: vec!["[::1]:7".parse().unwrap()],
            n_ignored: 0,
        }
        .to_bytes();
        let fixtures: [&[u8]; 4] = [LT_HANDSHAKE, OURS, &data_msg, &pex];
        for round in 0..20_000 {
            let mut input = fixtures[round % fixtures.len()].to_vec();
            if round % 5 == 0 {
                let len = (next() % 64) as usize;
                input = (0..len).map(|_| next() as u8).collect();
            } else {
                for _ in 0..1 + next() % 4 {
                    if input.is_empty() {
                        break;
                    }
                    let at = (next() % input.len() as u64) as usize;
                    match next() % 3 {
                        0 => input[at] = next() as u8,
                        1 => {
                            input.remove(at);
                        }
                        _ => input.truncate(at),
                    }
                }
            }
            for id in [HANDSHAKE_ID, UT_METADATA_ID, UT_PEX_ID] {
                if let Ok(ExtMessage::Pex(m)) = parse(id, &input) {
                    assert!(m.added.len() <= MAX_PEX_ADDED);
                }
                if let Ok(ExtMessage::Metadata(MetadataMsg::Data { data, .. })) = parse(id, &input)
                {
                    assert!(data.len() <= METADATA_PIECE_LEN);
                }
            }
        }
    }
}
