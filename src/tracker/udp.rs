//! The UDP tracker protocol (BEP 15): connect, announce, scrape and error
//! packets, as views over bytes ([`RequestPacket`], [`ResponsePacket`]) and
//! owned values ([`Request`], [`Response`]) with `parse`, `emit` and
//! `buffer_len`. No sockets and no clock here: the announcer decides what to
//! send and when; the net thread sends it.
//!
//! Layouts (big-endian; BEP 15 "Connect", "Announce", "Scrape", "Errors"):
//!
//! ```text
//! request header   connection_id u64 | action u32 | transaction_id u32     (16 bytes)
//! connect request  protocol id 0x41727101980 as the connection id, action 0
//! announce request header | info_hash 20 | peer_id 20 | downloaded u64 | left u64
//!                  | uploaded u64 | event u32 | ip u32 | key u32 | num_want i32 | port u16  (98)
//! scrape request   header | info_hash 20 × n                               (16 + 20n)
//! response header  action u32 | transaction_id u32                         (8 bytes)
//! connect resp.    header | connection_id u64                              (16)
//! announce resp.   header | interval u32 | leechers u32 | seeders u32 | peers (20 + 6n or 18n)
//! scrape resp.     header | (seeders u32 | completed u32 | leechers u32) × n  (8 + 12n)
//! error resp.      header (action 3) | message text                        (8 + text)
//! ```
//!
//! The peers of an announce response are 6 bytes each (IPv4 + port) when the
//! request went over IPv4 and 18 bytes each (IPv6 + port) when it went over
//! IPv6 (BEP 15, "IPv6"); the caller says which with [`Family`].
//!
//! # No-panic contract
//!
//! [`RequestPacket::new_checked`], [`ResponsePacket::new_checked`],
//! [`Request::parse`] and [`Response::parse`] accept any bytes and return a
//! value or an [`Error`]; every length is checked before a field is read, and
//! accessors of an unchecked view read missing bytes as zero instead of
//! panicking. `emit` reports a buffer that is too small as an error.
//!
//! # Limits
//!
//! At most [`crate::tracker::MAX_PEERS`] peers are kept from an announce
//! response (the rest are skipped, after checking the layout), at most
//! [`MAX_SCRAPE_HASHES`] info-hashes go in a scrape, and an error message is
//! cut to [`crate::tracker::MAX_TEXT`] bytes.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{text, Event, MAX_PEERS};

/// The magic connection id of a connect request (BEP 15).
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;
/// Most info-hashes in one scrape request (BEP 15: "about 74").
pub const MAX_SCRAPE_HASHES: usize = 74;
/// A receive buffer that holds any announce response we keep in full
/// (20 + 18 × 1,000 bytes); longer datagrams are truncated by the socket.
pub const MAX_PACKET: usize = field::ANNOUNCE_RESPONSE_LEN + 18 * MAX_PEERS;

pub const ACTION_CONNECT: u32 = 0;
pub const ACTION_ANNOUNCE: u32 = 1;
pub const ACTION_SCRAPE: u32 = 2;
pub const ACTION_ERROR: u32 = 3;

/// Byte layout of the fixed parts.
mod field {
    use std::ops::Range;

    // Request header.
    pub const CONNECTION_ID: Range<usize> = 0..8;
    pub const REQ_ACTION: Range<usize> = 8..12;
    pub const REQ_TRANSACTION: Range<usize> = 12..16;
    pub const REQUEST_HEADER_LEN: usize = REQ_TRANSACTION.end;

    // Announce request, after the header.
    pub const INFO_HASH: Range<usize> = 16..36;
    pub const PEER_ID: Range<usize> = 36..56;
    pub const DOWNLOADED: Range<usize> = 56..64;
    pub const LEFT: Range<usize> = 64..72;
    pub const UPLOADED: Range<usize> = 72..80;
    pub const EVENT: Range<usize> = 80..84;
    pub const IP: Range<usize> = 84..88;
    pub const KEY: Range<usize> = 88..92;
    pub const NUM_WANT: Range<usize> = 92..96;
    pub const PORT: Range<usize> = 96..98;
    pub const ANNOUNCE_REQUEST_LEN: usize = PORT.end;

    // Response header.
    pub const RESP_ACTION: Range<usize> = 0..4;
    pub const RESP_TRANSACTION: Range<usize> = 4..8;
    pub const RESPONSE_HEADER_LEN: usize = RESP_TRANSACTION.end;

    // Connect response.
    pub const CONNECTION_ID_RESP: Range<usize> = 8..16;
    pub const CONNECT_RESPONSE_LEN: usize = CONNECTION_ID_RESP.end;

    // Announce response.
    pub const INTERVAL: Range<usize> = 8..12;
    pub const LEECHERS: Range<usize> = 12..16;
    pub const SEEDERS: Range<usize> = 16..20;
    pub const ANNOUNCE_RESPONSE_LEN: usize = SEEDERS.end;

    /// One info-hash of a scrape request.
    pub const SCRAPE_HASH_LEN: usize = 20;
    /// One entry of a scrape response: seeders, completed, leechers.
    pub const SCRAPE_ENTRY_LEN: usize = 12;
}

/// A malformed or unexpected packet, or a buffer too small to emit into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the fixed layout of `what`.
    Truncated {
        what: &'static str,
        len: usize,
        min: usize,
    },
    /// The variable part of `what` is not a whole number of `unit`-byte entries.
    Ragged {
        what: &'static str,
        len: usize,
        unit: usize,
    },
    /// An action code that is not 0..=3.
    UnknownAction(u32),
    /// A connect request without the magic protocol id.
    BadProtocolId(u64),
    /// An announce event code that is not 0..=3.
    BadEvent(u32),
    /// A scrape request with more than [`MAX_SCRAPE_HASHES`] info-hashes.
    TooManyHashes(usize),
    /// `emit` was given fewer bytes than `buffer_len()`.
    BufferTooSmall { len: usize, need: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { what, len, min } => {
                write!(f, "{what} of {len} bytes is shorter than {min}")
            }
            Error::Ragged { what, len, unit } => write!(
                f,
                "{what} of {len} bytes does not end on a whole {unit}-byte entry"
            ),
            Error::UnknownAction(a) => write!(f, "unknown action {a}"),
            Error::BadProtocolId(id) => write!(f, "wrong protocol id {id:#x}"),
            Error::BadEvent(e) => write!(f, "unknown announce event {e}"),
            Error::TooManyHashes(n) => {
                write!(
                    f,
                    "{n} info-hashes in one scrape (at most {MAX_SCRAPE_HASHES})"
                )
            }
            Error::BufferTooSmall { len, need } => {
                write!(f, "buffer of {len} bytes is too small for {need}")
            }
        }
    }
}

impl std::error::Error for Error {}

/// Which compact peer form an announce response uses: the address family of
/// the socket the request was sent over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// 6 bytes per peer.
    V4,
    /// 18 bytes per peer.
    V6,
}

impl Family {
    /// The family of a tracker address; IPv4-mapped IPv6 counts as IPv4,
    /// because the tracker sees an IPv4 connection.
    pub fn of(addr: &SocketAddr) -> Family {
        match super::canonical(*addr) {
            SocketAddr::V4(_) => Family::V4,
            SocketAddr::V6(_) => Family::V6,
        }
    }

    /// Bytes per compact peer.
    pub fn peer_len(self) -> usize {
        match self {
            Family::V4 => 6,
            Family::V6 => 18,
        }
    }
}

/// The transaction id of a response, if `bytes` is long enough to have one.
/// Lets a caller route a datagram before parsing it.
pub fn response_transaction_id(bytes: &[u8]) -> Option<u32> {
    ResponsePacket::new_checked(bytes)
        .ok()
        .map(|p| p.transaction_id())
}

/// True when `bytes` is a response to the request with `transaction_id`.
pub fn matches(bytes: &[u8], transaction_id: u32) -> bool {
    response_transaction_id(bytes) == Some(transaction_id)
}

// ---------------------------------------------------------------------------
// Views.

/// A view of a request (client → tracker): the 16-byte header and the rest.
#[derive(Debug, Clone, Copy)]
pub struct RequestPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RequestPacket<T> {
    /// Wraps bytes without checking; accessors read missing bytes as zero.
    pub fn new_unchecked(buffer: T) -> RequestPacket<T> {
        RequestPacket { buffer }
    }

    /// Wraps untrusted bytes after checking the header fits.
    pub fn new_checked(buffer: T) -> Result<RequestPacket<T>, Error> {
        let packet = RequestPacket::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < field::REQUEST_HEADER_LEN {
            return Err(Error::Truncated {
                what: "request",
                len,
                min: field::REQUEST_HEADER_LEN,
            });
        }
        Ok(())
    }

    pub fn connection_id(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::CONNECTION_ID.start)
    }

    pub fn action(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::REQ_ACTION.start)
    }

    pub fn transaction_id(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::REQ_TRANSACTION.start)
    }

    /// The bytes after the header (empty if there are none).
    pub fn payload(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(field::REQUEST_HEADER_LEN..)
            .unwrap_or(&[])
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RequestPacket<T> {
    pub fn set_connection_id(&mut self, value: u64) {
        write_u64(self.buffer.as_mut(), field::CONNECTION_ID.start, value);
    }

    pub fn set_action(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::REQ_ACTION.start, value);
    }

    pub fn set_transaction_id(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::REQ_TRANSACTION.start, value);
    }
}

/// A view of a response (tracker → client): the 8-byte header and the rest.
#[derive(Debug, Clone, Copy)]
pub struct ResponsePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ResponsePacket<T> {
    /// Wraps bytes without checking; accessors read missing bytes as zero.
    pub fn new_unchecked(buffer: T) -> ResponsePacket<T> {
        ResponsePacket { buffer }
    }

    /// Wraps untrusted bytes after checking the header fits.
    pub fn new_checked(buffer: T) -> Result<ResponsePacket<T>, Error> {
        let packet = ResponsePacket::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < field::RESPONSE_HEADER_LEN {
            return Err(Error::Truncated {
                what: "response",
                len,
                min: field::RESPONSE_HEADER_LEN,
            });
        }
        Ok(())
    }

    pub fn action(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::RESP_ACTION.start)
    }

    pub fn transaction_id(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::RESP_TRANSACTION.start)
    }

    /// The bytes after the header (empty if there are none).
    pub fn payload(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(field::RESPONSE_HEADER_LEN..)
            .unwrap_or(&[])
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ResponsePacket<T> {
    pub fn set_action(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::RESP_ACTION.start, value);
    }

    pub fn set_transaction_id(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::RESP_TRANSACTION.start, value);
    }
}

// ---------------------------------------------------------------------------
// Requests.

/// BEP 15 connect request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectRequest {
    pub transaction_id: u32,
}

/// BEP 15 announce request (the same bytes over IPv4 and IPv6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceRequest {
    pub connection_id: u64,
    pub transaction_id: u32,
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    pub downloaded: u64,
    pub left: u64,
    pub uploaded: u64,
    pub event: Event,
    /// Our IPv4 address, or 0 for "the source address" (always 0 from us).
    pub ip: u32,
    pub key: u32,
    /// Peers wanted; -1 for the tracker's default.
    pub num_want: i32,
    pub port: u16,
}

/// BEP 15 scrape request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrapeRequest {
    pub connection_id: u64,
    pub transaction_id: u32,
    pub info_hashes: Vec<[u8; 20]>,
}

/// A request, as we send it (parse exists for tests and fake trackers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Connect(ConnectRequest),
    Announce(AnnounceRequest),
    Scrape(ScrapeRequest),
}

impl Request {
    /// Parses a request. Never panics; see the module docs.
    pub fn parse(bytes: &[u8]) -> Result<Request, Error> {
        let packet = RequestPacket::new_checked(bytes)?;
        let len = bytes.len();
        match packet.action() {
            ACTION_CONNECT => {
                if packet.connection_id() != PROTOCOL_ID {
                    return Err(Error::BadProtocolId(packet.connection_id()));
                }
                Ok(Request::Connect(ConnectRequest {
                    transaction_id: packet.transaction_id(),
                }))
            }
            ACTION_ANNOUNCE => {
                if len < field::ANNOUNCE_REQUEST_LEN {
                    return Err(Error::Truncated {
                        what: "announce request",
                        len,
                        min: field::ANNOUNCE_REQUEST_LEN,
                    });
                }
                let event_code = read_u32(bytes, field::EVENT.start);
                let event = Event::from_udp_code(event_code).ok_or(Error::BadEvent(event_code))?;
                Ok(Request::Announce(AnnounceRequest {
                    connection_id: packet.connection_id(),
                    transaction_id: packet.transaction_id(),
                    info_hash: read_20(bytes, field::INFO_HASH.start),
                    peer_id: read_20(bytes, field::PEER_ID.start),
                    downloaded: read_u64(bytes, field::DOWNLOADED.start),
                    left: read_u64(bytes, field::LEFT.start),
                    uploaded: read_u64(bytes, field::UPLOADED.start),
                    event,
                    ip: read_u32(bytes, field::IP.start),
                    key: read_u32(bytes, field::KEY.start),
                    num_want: read_u32(bytes, field::NUM_WANT.start) as i32,
                    port: read_u16(bytes, field::PORT.start),
                }))
            }
            ACTION_SCRAPE => {
                let payload = packet.payload();
                if payload.len() % field::SCRAPE_HASH_LEN != 0 {
                    return Err(Error::Ragged {
                        what: "scrape request",
                        len,
                        unit: field::SCRAPE_HASH_LEN,
                    });
                }
                let n = payload.len() / field::SCRAPE_HASH_LEN;
                if n > MAX_SCRAPE_HASHES {
                    return Err(Error::TooManyHashes(n));
                }
                let info_hashes = payload
                    .chunks_exact(field::SCRAPE_HASH_LEN)
                    .map(|c| read_20(c, 0))
                    .collect();
                Ok(Request::Scrape(ScrapeRequest {
                    connection_id: packet.connection_id(),
                    transaction_id: packet.transaction_id(),
                    info_hashes,
                }))
            }
            other => Err(Error::UnknownAction(other)),
        }
    }

    pub fn transaction_id(&self) -> u32 {
        match self {
            Request::Connect(r) => r.transaction_id,
            Request::Announce(r) => r.transaction_id,
            Request::Scrape(r) => r.transaction_id,
        }
    }

    /// Bytes `emit` writes.
    pub fn buffer_len(&self) -> usize {
        match self {
            Request::Connect(_) => field::REQUEST_HEADER_LEN,
            Request::Announce(_) => field::ANNOUNCE_REQUEST_LEN,
            Request::Scrape(r) => {
                field::REQUEST_HEADER_LEN + field::SCRAPE_HASH_LEN * r.info_hashes.len()
            }
        }
    }

    /// Writes every byte of `buf[..buffer_len()]`; returns that length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        if let Request::Scrape(r) = self {
            if r.info_hashes.len() > MAX_SCRAPE_HASHES {
                return Err(Error::TooManyHashes(r.info_hashes.len()));
            }
        }
        let need = self.buffer_len();
        let len = buf.len();
        let buf = buf
            .get_mut(..need)
            .ok_or(Error::BufferTooSmall { len, need })?;
        let (connection_id, action) = match self {
            Request::Connect(_) => (PROTOCOL_ID, ACTION_CONNECT),
            Request::Announce(r) => (r.connection_id, ACTION_ANNOUNCE),
            Request::Scrape(r) => (r.connection_id, ACTION_SCRAPE),
        };
        let mut packet = RequestPacket::new_unchecked(&mut *buf);
        packet.set_connection_id(connection_id);
        packet.set_action(action);
        packet.set_transaction_id(self.transaction_id());
        match self {
            Request::Connect(_) => {}
            Request::Announce(r) => {
                write_bytes(buf, field::INFO_HASH.start, &r.info_hash);
                write_bytes(buf, field::PEER_ID.start, &r.peer_id);
                write_u64(buf, field::DOWNLOADED.start, r.downloaded);
                write_u64(buf, field::LEFT.start, r.left);
                write_u64(buf, field::UPLOADED.start, r.uploaded);
                write_u32(buf, field::EVENT.start, r.event.udp_code());
                write_u32(buf, field::IP.start, r.ip);
                write_u32(buf, field::KEY.start, r.key);
                write_u32(buf, field::NUM_WANT.start, r.num_want as u32);
                write_u16(buf, field::PORT.start, r.port);
            }
            Request::Scrape(r) => {
                for (i, hash) in r.info_hashes.iter().enumerate() {
                    write_bytes(
                        buf,
                        field::REQUEST_HEADER_LEN + i * field::SCRAPE_HASH_LEN,
                        hash,
                    );
                }
            }
        }
        Ok(need)
    }

    /// `emit` into a new vector of exactly `buffer_len()` bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        let mut out = vec![0u8; self.buffer_len()];
        self.emit(&mut out)?;
        Ok(out)
    }
}

// ---------------------------------------------------------------------------
// Responses.

/// BEP 15 announce response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceResponse {
    pub transaction_id: u32,
    /// Seconds until the next regular announce.
    pub interval: u32,
    pub leechers: u32,
    pub seeders: u32,
    /// At most [`MAX_PEERS`], in the order received.
    pub peers: Vec<SocketAddr>,
}

/// One torrent's line of a scrape response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrapeEntry {
    pub seeders: u32,
    /// Times the torrent was downloaded completely.
    pub completed: u32,
    pub leechers: u32,
}

/// A response from a tracker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Connect {
        transaction_id: u32,
        connection_id: u64,
    },
    Announce(AnnounceResponse),
    Scrape {
        transaction_id: u32,
        /// In the order of the request's info-hashes.
        entries: Vec<ScrapeEntry>,
    },
    Error {
        transaction_id: u32,
        /// The tracker's text, printable and at most [`crate::tracker::MAX_TEXT`] bytes.
        message: String,
    },
}

impl Response {
    /// Parses a response; `family` picks the compact peer size (6 or 18
    /// bytes). Never panics; see the module docs.
    pub fn parse(bytes: &[u8], family: Family) -> Result<Response, Error> {
        let packet = ResponsePacket::new_checked(bytes)?;
        let len = bytes.len();
        let transaction_id = packet.transaction_id();
        match packet.action() {
            ACTION_CONNECT => {
                // Bytes past the fixed layout are ignored, as libtorrent does.
                if len < field::CONNECT_RESPONSE_LEN {
                    return Err(Error::Truncated {
                        what: "connect response",
                        len,
                        min: field::CONNECT_RESPONSE_LEN,
                    });
                }
                Ok(Response::Connect {
                    transaction_id,
                    connection_id: read_u64(bytes, field::CONNECTION_ID_RESP.start),
                })
            }
            ACTION_ANNOUNCE => {
                let peer_bytes =
                    bytes
                        .get(field::ANNOUNCE_RESPONSE_LEN..)
                        .ok_or(Error::Truncated {
                            what: "announce response",
                            len,
                            min: field::ANNOUNCE_RESPONSE_LEN,
                        })?;
                let unit = family.peer_len();
                if peer_bytes.len() % unit != 0 {
                    return Err(Error::Ragged {
                        what: "announce response",
                        len,
                        unit,
                    });
                }
                let peers = peer_bytes
                    .chunks_exact(unit)
                    .take(MAX_PEERS)
                    .filter_map(compact_peer)
                    .collect();
                Ok(Response::Announce(AnnounceResponse {
                    transaction_id,
                    interval: read_u32(bytes, field::INTERVAL.start),
                    leechers: read_u32(bytes, field::LEECHERS.start),
                    seeders: read_u32(bytes, field::SEEDERS.start),
                    peers,
                }))
            }
            ACTION_SCRAPE => {
                let body = packet.payload();
                if body.len() % field::SCRAPE_ENTRY_LEN != 0 {
                    return Err(Error::Ragged {
                        what: "scrape response",
                        len,
                        unit: field::SCRAPE_ENTRY_LEN,
                    });
                }
                let entries = body
                    .chunks_exact(field::SCRAPE_ENTRY_LEN)
                    .take(MAX_SCRAPE_HASHES)
                    .map(|c| ScrapeEntry {
                        seeders: read_u32(c, 0),
                        completed: read_u32(c, 4),
                        leechers: read_u32(c, 8),
                    })
                    .collect();
                Ok(Response::Scrape {
                    transaction_id,
                    entries,
                })
            }
            ACTION_ERROR => Ok(Response::Error {
                transaction_id,
                message: text(packet.payload()),
            }),
            other => Err(Error::UnknownAction(other)),
        }
    }

    pub fn transaction_id(&self) -> u32 {
        match self {
            Response::Connect { transaction_id, .. }
            | Response::Scrape { transaction_id, .. }
            | Response::Error { transaction_id, .. } => *transaction_id,
            Response::Announce(r) => r.transaction_id,
        }
    }

    /// Bytes `emit` writes. Each peer takes 6 bytes if IPv4, 18 if IPv6.
    pub fn buffer_len(&self) -> usize {
        match self {
            Response::Connect { .. } => field::CONNECT_RESPONSE_LEN,
            Response::Announce(r) => {
                field::ANNOUNCE_RESPONSE_LEN + r.peers.iter().map(peer_len).sum::<usize>()
            }
            Response::Scrape { entries, .. } => {
                field::RESPONSE_HEADER_LEN + field::SCRAPE_ENTRY_LEN * entries.len()
            }
            Response::Error { message, .. } => field::RESPONSE_HEADER_LEN + message.len(),
        }
    }

    /// Writes every byte of `buf[..buffer_len()]`; returns that length. For
    /// tests and fake trackers: a tracker sends peers of one family only.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let need = self.buffer_len();
        let len = buf.len();
        let buf = buf
            .get_mut(..need)
            .ok_or(Error::BufferTooSmall { len, need })?;
        let action = match self {
            Response::Connect { .. } => ACTION_CONNECT,
            Response::Announce(_) => ACTION_ANNOUNCE,
            Response::Scrape { .. } => ACTION_SCRAPE,
            Response::Error { .. } => ACTION_ERROR,
        };
        let mut packet = ResponsePacket::new_unchecked(&mut *buf);
        packet.set_action(action);
        packet.set_transaction_id(self.transaction_id());
        match self {
            Response::Connect { connection_id, .. } => {
                write_u64(buf, field::CONNECTION_ID_RESP.start, *connection_id);
            }
            Response::Announce(r) => {
                write_u32(buf, field::INTERVAL.start, r.interval);
                write_u32(buf, field::LEECHERS.start, r.leechers);
                write_u32(buf, field::SEEDERS.start, r.seeders);
                let mut at = field::ANNOUNCE_RESPONSE_LEN;
                for peer in &r.peers {
                    match peer.ip() {
                        IpAddr::V4(ip) => write_bytes(buf, at, &ip.octets()),
                        IpAddr::V6(ip) => write_bytes(buf, at, &ip.octets()),
                    }
                    at += peer_len(peer);
                    write_u16(buf, at - 2, peer.port());
                }
            }
            Response::Scrape { entries, .. } => {
                for (i, e) in entries.iter().enumerate() {
                    let at = field::RESPONSE_HEADER_LEN + i * field::SCRAPE_ENTRY_LEN;
                    write_u32(buf, at, e.seeders);
                    write_u32(buf, at + 4, e.completed);
                    write_u32(buf, at + 8, e.leechers);
                }
            }
            Response::Error { message, .. } => {
                write_bytes(buf, field::RESPONSE_HEADER_LEN, message.as_bytes());
            }
        }
        Ok(need)
    }

    /// `emit` into a new vector of exactly `buffer_len()` bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        let mut out = vec![0u8; self.buffer_len()];
        self.emit(&mut out)?;
        Ok(out)
    }
}

/// One compact peer: 4 or 16 address bytes, then the port (BEP 23, BEP 7).
/// `None` for any other length.
pub(crate) fn compact_peer(bytes: &[u8]) -> Option<SocketAddr> {
    match bytes.len() {
        6 => {
            let ip: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
            Some(SocketAddr::new(
                Ipv4Addr::from(ip).into(),
                read_u16(bytes, 4),
            ))
        }
        18 => {
            let ip: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
            Some(SocketAddr::new(
                Ipv6Addr::from(ip).into(),
                read_u16(bytes, 16),
            ))
        }
        _ => None,
    }
}

fn peer_len(peer: &SocketAddr) -> usize {
    match peer {
        SocketAddr::V4(_) => 6,
        SocketAddr::V6(_) => 18,
    }
}

// Field access that cannot panic: missing bytes read as zero, writes past the
// end are dropped. Callers check lengths first; these are the backstop.

fn read_array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = at.checked_add(N).and_then(|end| b.get(at..end)) {
        out.copy_from_slice(src);
    }
    out
}

fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(read_array(b, at))
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(read_array(b, at))
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(read_array(b, at))
}

fn read_20(b: &[u8], at: usize) -> [u8; 20] {
    read_array(b, at)
}

fn write_bytes(b: &mut [u8], at: usize, src: &[u8]) {
    if let Some(dst) = at.checked_add(src.len()).and_then(|end| b.get_mut(at..end)) {
        dst.copy_from_slice(src);
    }
}

fn write_u16(b: &mut [u8], at: usize, v: u16) {
    write_bytes(b, at, &v.to_be_bytes());
}

fn write_u32(b: &mut [u8], at: usize, v: u32) {
    write_bytes(b, at, &v.to_be_bytes());
}

fn write_u64(b: &mut [u8], at: usize, v: u64) {
    write_bytes(b, at, &v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    static CONNECT_REQUEST_BYTES: [u8; 16] = [
        0x00, 0x00, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80, // protocol id
        0x00, 0x00, 0x00, 0x00, // action: connect
        0xde, 0xad, 0xbe, 0xef, // transaction id
    ];

    static CONNECT_RESPONSE_BYTES: [u8; 16] = [
        0x00, 0x00, 0x00, 0x00, // action: connect
        0xde, 0xad, 0xbe, 0xef, // transaction id
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // connection id
    ];

    fn announce_request_bytes() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]); // connection id
        b.extend_from_slice(&[0, 0, 0, 1]); // action: announce
        b.extend_from_slice(&[0, 0, 0x30, 0x39]); // transaction id 12345
        b.extend_from_slice(&[0xaa; 20]); // info hash
        b.extend_from_slice(b"-PL0001-abcdefghijkl"); // peer id
        b.extend_from_slice(&1000u64.to_be_bytes()); // downloaded
        b.extend_from_slice(&2000u64.to_be_bytes()); // left
        b.extend_from_slice(&3000u64.to_be_bytes()); // uploaded
        b.extend_from_slice(&[0, 0, 0, 2]); // event: started
        b.extend_from_slice(&[0, 0, 0, 0]); // ip
        b.extend_from_slice(&[0x11, 0x22, 0x33, 0x44]); // key
        b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]); // num_want -1
        b.extend_from_slice(&[0x1a, 0xe1]); // port 6881
        b
    }

    fn announce_request() -> AnnounceRequest {
        AnnounceRequest {
            connection_id: 0x0102_0304_0506_0708,
            transaction_id: 12345,
            info_hash: [0xaa; 20],
            peer_id: *b"-PL0001-abcdefghijkl",
            downloaded: 1000,
            left: 2000,
            uploaded: 3000,
            event: Event::Started,
            ip: 0,
            key: 0x1122_3344,
            num_want: -1,
            port: 6881,
        }
    }

    fn announce_response_v4_bytes() -> Vec<u8> {
        let mut b = vec![0, 0, 0, 1, 0, 0, 0x30, 0x39];
        b.extend_from_slice(&1800u32.to_be_bytes()); // interval
        b.extend_from_slice(&5u32.to_be_bytes()); // leechers
        b.extend_from_slice(&7u32.to_be_bytes()); // seeders
        b.extend_from_slice(&[10, 0, 0, 1, 0x1a, 0xe1]); // 10.0.0.1:6881
        b.extend_from_slice(&[192, 168, 1, 2, 0xc8, 0xd5]); // 192.168.1.2:51413
        b
    }

    fn announce_response_v4() -> Response {
        Response::Announce(AnnounceResponse {
            transaction_id: 12345,
            interval: 1800,
            leechers: 5,
            seeders: 7,
            peers: vec![
                "10.0.0.1:6881".parse().unwrap(),
                "192.168.1.2:51413".parse().unwrap(),
            ],
        })
    }

    fn announce_response_v6_bytes() -> Vec<u8> {
        let mut b = vec![0, 0, 0, 1, 0, 0, 0, 9];
        b.extend_from_slice(&600u32.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&1u32.to_be_bytes());
        let ip: Ipv6Addr = "2001:db8::1".parse().unwrap();
        b.extend_from_slice(&ip.octets());
        b.extend_from_slice(&[0x1a, 0xe1]);
        b
    }

    fn scrape_response_bytes() -> Vec<u8> {
        let mut b = vec![0, 0, 0, 2, 0, 0, 0, 7];
        for v in [1u32, 2, 3, 4, 5, 6] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b
    }

    fn error_response_bytes() -> Vec<u8> {
        let mut b = vec![0, 0, 0, 3, 0, 0, 0, 7];
        b.extend_from_slice(b"unregistered torrent");
        b
    }

    /// Emits into a buffer pre-filled with 0xa5 and compares, so every byte
    /// must have been written.
    fn check_emit_request(req: &Request, expect: &[u8]) {
        let mut buf = vec![0xa5u8; expect.len() + 7];
        assert_eq!(req.buffer_len(), expect.len());
        assert_eq!(req.emit(&mut buf), Ok(expect.len()));
        assert_eq!(&buf[..expect.len()], expect);
        assert!(
            buf[expect.len()..].iter().all(|&b| b == 0xa5),
            "wrote past the end"
        );
    }

    fn check_emit_response(resp: &Response, expect: &[u8]) {
        let mut buf = vec![0xa5u8; expect.len() + 7];
        assert_eq!(resp.buffer_len(), expect.len());
        assert_eq!(resp.emit(&mut buf), Ok(expect.len()));
        assert_eq!(&buf[..expect.len()], expect);
        assert!(
            buf[expect.len()..].iter().all(|&b| b == 0xa5),
            "wrote past the end"
        );
    }

    #[test]
    fn deconstruct_request() {
        let p = RequestPacket::new_checked(&CONNECT_REQUEST_BYTES[..]).unwrap();
        assert_eq!(p.connection_id(), PROTOCOL_ID);
        assert_eq!(p.action(), ACTION_CONNECT);
        assert_eq!(p.transaction_id(), 0xdead_beef);
        assert!(p.payload().is_empty());
        let bytes = announce_request_bytes();
        let p = RequestPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.action(), ACTION_ANNOUNCE);
        assert_eq!(p.payload().len(), 98 - 16);
    }

    #[test]
    fn deconstruct_response() {
        let p = ResponsePacket::new_checked(&CONNECT_RESPONSE_BYTES[..]).unwrap();
        assert_eq!(p.action(), ACTION_CONNECT);
        assert_eq!(p.transaction_id(), 0xdead_beef);
        assert_eq!(p.payload(), &[1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn construct_views() {
        let mut buf = [0xa5u8; 16];
        let mut p = RequestPacket::new_unchecked(&mut buf[..]);
        p.set_connection_id(PROTOCOL_ID);
        p.set_action(ACTION_CONNECT);
        p.set_transaction_id(0xdead_beef);
        assert_eq!(buf, CONNECT_REQUEST_BYTES);
        let mut buf = [0xa5u8; 8];
        let mut p = ResponsePacket::new_unchecked(&mut buf[..]);
        p.set_action(ACTION_ERROR);
        p.set_transaction_id(7);
        assert_eq!(buf, [0, 0, 0, 3, 0, 0, 0, 7]);
    }

    #[test]
    fn unchecked_views_read_zero_instead_of_panicking() {
        let p = RequestPacket::new_unchecked(&[1u8, 2, 3][..]);
        assert_eq!(p.connection_id(), 0);
        assert_eq!(p.transaction_id(), 0);
        assert!(p.payload().is_empty());
        let p = ResponsePacket::new_unchecked(&[][..]);
        assert_eq!(p.action(), 0);
        let mut short = [0u8; 3];
        RequestPacket::new_unchecked(&mut short[..]).set_transaction_id(9);
        assert_eq!(short, [0; 3]);
    }

    #[test]
    fn parse_connect_request() {
        assert_eq!(
            Request::parse(&CONNECT_REQUEST_BYTES),
            Ok(Request::Connect(ConnectRequest {
                transaction_id: 0xdead_beef
            }))
        );
        let mut bad = CONNECT_REQUEST_BYTES;
        bad[7] = 0x81;
        assert!(matches!(Request::parse(&bad), Err(Error::BadProtocolId(_))));
    }

    #[test]
    fn emit_connect_request() {
        let req = Request::Connect(ConnectRequest {
            transaction_id: 0xdead_beef,
        });
        check_emit_request(&req, &CONNECT_REQUEST_BYTES);
    }

    #[test]
    fn parse_and_emit_announce_request() {
        let bytes = announce_request_bytes();
        assert_eq!(bytes.len(), 98);
        let req = Request::Announce(announce_request());
        assert_eq!(Request::parse(&bytes), Ok(req.clone()));
        check_emit_request(&req, &bytes);
        let mut bad = bytes.clone();
        bad[83] = 9;
        assert_eq!(Request::parse(&bad), Err(Error::BadEvent(9)));
    }

    #[test]
    fn parse_and_emit_scrape_request() {
        let mut bytes = vec![1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 2, 0, 0, 0, 5];
        bytes.extend_from_slice(&[0x11; 20]);
        bytes.extend_from_slice(&[0x22; 20]);
        let req = Request::Scrape(ScrapeRequest {
            connection_id: 0x0102_0304_0506_0708,
            transaction_id: 5,
            info_hashes: vec![[0x11; 20], [0x22; 20]],
        });
        assert_eq!(Request::parse(&bytes), Ok(req.clone()));
        check_emit_request(&req, &bytes);
        bytes.push(0);
        assert!(matches!(Request::parse(&bytes), Err(Error::Ragged { .. })));
        let too_many = Request::Scrape(ScrapeRequest {
            connection_id: 1,
            transaction_id: 1,
            info_hashes: vec![[0; 20]; MAX_SCRAPE_HASHES + 1],
        });
        assert_eq!(too_many.to_bytes(), Err(Error::TooManyHashes(75)));
        let mut big = vec![0u8; 16 + 20 * 75];
        big[11] = 2;
        assert_eq!(Request::parse(&big), Err(Error::TooManyHashes(75)));
    }

    #[test]
    fn parse_connect_response() {
        assert_eq!(
            Response::parse(&CONNECT_RESPONSE_BYTES, Family::V4),
            Ok(Response::Connect {
                transaction_id: 0xdead_beef,
                connection_id: 0x0102_0304_0506_0708
            })
        );
    }

    #[test]
    fn emit_connect_response() {
        let resp = Response::Connect {
            transaction_id: 0xdead_beef,
            connection_id: 0x0102_0304_0506_0708,
        };
        check_emit_response(&resp, &CONNECT_RESPONSE_BYTES);
    }

    #[test]
    fn parse_and_emit_announce_response_v4() {
        let bytes = announce_response_v4_bytes();
        assert_eq!(
            Response::parse(&bytes, Family::V4),
            Ok(announce_response_v4())
        );
        check_emit_response(&announce_response_v4(), &bytes);
        // Read as IPv6 the same 12 peer bytes are not whole 18-byte peers.
        assert!(matches!(
            Response::parse(&bytes, Family::V6),
            Err(Error::Ragged { unit: 18, .. })
        ));
    }

    #[test]
    fn parse_and_emit_announce_response_v6() {
        let bytes = announce_response_v6_bytes();
        let expect = Response::Announce(AnnounceResponse {
            transaction_id: 9,
            interval: 600,
            leechers: 0,
            seeders: 1,
            peers: vec!["[2001:db8::1]:6881".parse().unwrap()],
        });
        assert_eq!(Response::parse(&bytes, Family::V6), Ok(expect.clone()));
        check_emit_response(&expect, &bytes);
        // 18 bytes are three IPv4 peers.
        match Response::parse(&bytes, Family::V4) {
            Ok(Response::Announce(r)) => assert_eq!(r.peers.len(), 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn announce_response_without_peers() {
        let bytes = &announce_response_v4_bytes()[..20];
        match Response::parse(bytes, Family::V4) {
            Ok(Response::Announce(r)) => {
                assert!(r.peers.is_empty());
                assert_eq!(r.interval, 1800);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn huge_peer_list_is_capped() {
        let mut bytes = announce_response_v4_bytes()[..20].to_vec();
        for i in 0..5000u32 {
            bytes.extend_from_slice(&i.to_be_bytes());
            bytes.extend_from_slice(&[0, 80]);
        }
        match Response::parse(&bytes, Family::V4) {
            Ok(Response::Announce(r)) => {
                assert_eq!(r.peers.len(), MAX_PEERS);
                assert_eq!(r.peers[1], "0.0.0.1:80".parse().unwrap());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parse_and_emit_scrape_response() {
        let bytes = scrape_response_bytes();
        let expect = Response::Scrape {
            transaction_id: 7,
            entries: vec![
                ScrapeEntry {
                    seeders: 1,
                    completed: 2,
                    leechers: 3,
                },
                ScrapeEntry {
                    seeders: 4,
                    completed: 5,
                    leechers: 6,
                },
            ],
        };
        assert_eq!(Response::parse(&bytes, Family::V4), Ok(expect.clone()));
        check_emit_response(&expect, &bytes);
    }

    #[test]
    fn parse_and_emit_error_response() {
        let bytes = error_response_bytes();
        let expect = Response::Error {
            transaction_id: 7,
            message: "unregistered torrent".into(),
        };
        assert_eq!(Response::parse(&bytes, Family::V4), Ok(expect.clone()));
        check_emit_response(&expect, &bytes);
        // Hostile text is made printable and bounded.
        let mut hostile = vec![0, 0, 0, 3, 0, 0, 0, 1];
        hostile.extend_from_slice(b"\x1b[31mred\n");
        hostile.extend_from_slice(&[b'x'; 5000]);
        match Response::parse(&hostile, Family::V4) {
            Ok(Response::Error { message, .. }) => {
                assert!(message.starts_with("?[31mred?x"));
                assert!(message.len() <= crate::tracker::MAX_TEXT + 3);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_action() {
        assert_eq!(
            Response::parse(&[0, 0, 0, 9, 0, 0, 0, 0], Family::V4),
            Err(Error::UnknownAction(9))
        );
        let mut req = CONNECT_REQUEST_BYTES;
        req[11] = 4;
        assert_eq!(Request::parse(&req), Err(Error::UnknownAction(4)));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let responses = [
            CONNECT_RESPONSE_BYTES.to_vec(),
            announce_response_v4_bytes(),
            announce_response_v6_bytes(),
            scrape_response_bytes(),
        ];
        for full in &responses {
            let family = if full == &announce_response_v6_bytes() {
                Family::V6
            } else {
                Family::V4
            };
            assert!(Response::parse(full, family).is_ok());
            for i in 0..full.len() {
                let prefix = &full[..i];
                let res = Response::parse(prefix, family);
                // A prefix that ends on a whole entry is a valid, shorter
                // response (fewer peers or scrape entries); anything else errs.
                let whole = match ResponsePacket::new_unchecked(prefix).action() {
                    ACTION_ANNOUNCE => i >= 20 && (i - 20) % family.peer_len() == 0,
                    ACTION_SCRAPE => i >= 8 && (i - 8) % 12 == 0,
                    _ => false,
                };
                assert_eq!(res.is_ok(), whole, "prefix of {i} bytes: {res:?}");
            }
        }
        let requests = [CONNECT_REQUEST_BYTES.to_vec(), announce_request_bytes()];
        for full in &requests {
            for i in 0..full.len() {
                assert!(Request::parse(&full[..i]).is_err(), "request prefix {i}");
            }
        }
        // The error response is complete after 8 bytes (empty message).
        let err = error_response_bytes();
        for i in 0..8 {
            assert!(Response::parse(&err[..i], Family::V4).is_err());
        }
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic fuzz: every short input, and random long ones.
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 120) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if len > 4 && next() % 2 == 0 {
                bytes[3] = (next() % 4) as u8; // a plausible action
                bytes[0..3].fill(0);
            }
            let _ = Response::parse(&bytes, Family::V4);
            let _ = Response::parse(&bytes, Family::V6);
            let _ = Request::parse(&bytes);
            let _ = response_transaction_id(&bytes);
        }
    }

    #[test]
    fn emit_into_small_buffer_is_an_error() {
        let mut buf = [0u8; 10];
        assert_eq!(
            announce_response_v4().emit(&mut buf),
            Err(Error::BufferTooSmall { len: 10, need: 32 })
        );
        assert_eq!(
            Request::Announce(announce_request()).emit(&mut buf),
            Err(Error::BufferTooSmall { len: 10, need: 98 })
        );
    }

    #[test]
    fn transaction_id_helpers() {
        assert_eq!(
            response_transaction_id(&CONNECT_RESPONSE_BYTES),
            Some(0xdead_beef)
        );
        assert_eq!(response_transaction_id(&[0, 0, 0, 0, 1, 2, 3]), None);
        assert!(matches(&CONNECT_RESPONSE_BYTES, 0xdead_beef));
        assert!(!matches(&CONNECT_RESPONSE_BYTES, 0xdead_beee));
        let r = Response::parse(&error_response_bytes(), Family::V4).unwrap();
        assert_eq!(r.transaction_id(), 7);
        assert_eq!(
            Request::Announce(announce_request()).transaction_id(),
            12345
        );
    }

    #[test]
    fn family_of_addresses() {
        assert_eq!(Family::of(&"1.2.3.4:80".parse().unwrap()), Family::V4);
        assert_eq!(
            Family::of(&"[::ffff:1.2.3.4]:80".parse().unwrap()),
            Family::V4
        );
        assert_eq!(Family::of(&"[2001:db8::2]:80".parse().unwrap()), Family::V6);
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            Error::Truncated {
                what: "connect response",
                len: 12,
                min: 16
            }
            .to_string(),
            "connect response of 12 bytes is shorter than 16"
        );
        assert_eq!(
            Error::Ragged {
                what: "announce response",
                len: 27,
                unit: 6
            }
            .to_string(),
            "announce response of 27 bytes does not end on a whole 6-byte entry"
        );
    }
}
