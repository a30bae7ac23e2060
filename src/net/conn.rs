//! One peer connection: its socket, capped buffers, readiness and timers.
//!
//! Readiness is edge-triggered (mio): `readable`/`writable` are set by
//! events and cleared only when a read or write returns `WouldBlock`, so the
//! loop can stop reading a socket (backpressure, fairness) and come back to
//! it later without waiting for a new event.

use crate::private::SecureLink;
use crate::swarm::PeerKey;
use crate::wire::peer::{self, Message, MAX_FRAME};
use mio::net::TcpStream;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

/// Initial and shrink-back size of the read buffer.
pub const READ_BUF: usize = 64 * 1024;
/// A fast peer's read buffer grows up to this (fewer, larger reads).
pub const FAST_READ_BUF: usize = 512 * 1024;
/// Largest read buffer (one maximal frame plus a read's worth).
pub const MAX_READ_BUF: usize = MAX_FRAME + 4 + READ_BUF;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Outgoing, TCP connect in progress.
    Connecting,
    /// Waiting for the peer's 68-byte handshake.
    Handshake,
    /// Handshakes done; messages flow.
    Active,
}

pub struct Conn {
    pub key: PeerKey,
    pub sock: TcpStream,
    pub addr: SocketAddr,
    pub outgoing: bool,
    pub state: ConnState,
    /// Torrent id (known at once for outgoing, after the handshake for incoming).
    pub torrent: Option<u32>,
    /// Where the address came from: "manual", "incoming", ...
    pub source: &'static str,
    pub fast: bool,
    pub peer_id: [u8; 20],
    /// The peer's extension ids (BEP 10), from its extended handshake.
    pub ext: crate::wire::extension::PeerExtensions,
    /// Client name from the extended handshake (`v`).
    pub client: Option<String>,
    /// ut_metadata pieces answered on this connection (bounded).
    pub metadata_served: usize,
    /// In a private network: the Noise link every byte goes through (the
    /// buffers below then hold plaintext).
    pub secure: Option<Box<SecureLink>>,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    /// The last read filled all the free space: read more at a time.
    grow: bool,
    wbuf: Vec<u8>,
    wpos: usize,
    pub readable: bool,
    pub writable: bool,
    /// Set when the connection must close (with the reason, for the log).
    pub closing: Option<String>,
    pub created: Instant,
    pub last_recv: Instant,
    pub last_send: Instant,
}

impl Conn {
    pub fn new(
        key: PeerKey,
        sock: TcpStream,
        addr: SocketAddr,
        outgoing: bool,
        now: Instant,
    ) -> Conn {
        Conn {
            key,
            sock,
            addr,
            outgoing,
            state: if outgoing {
                ConnState::Connecting
            } else {
                ConnState::Handshake
            },
            torrent: None,
            source: if outgoing { "manual" } else { "incoming" },
            fast: false,
            peer_id: [0; 20],
            ext: Default::default(),
            client: None,
            metadata_served: 0,
            secure: None,
            rbuf: Vec::new(),
            rstart: 0,
            rend: 0,
            grow: false,
            wbuf: Vec::new(),
            wpos: 0,
            readable: false,
            writable: false,
            closing: None,
            created: now,
            last_recv: now,
            last_send: now,
        }
    }

    pub fn close(&mut self, reason: impl Into<String>) {
        if self.closing.is_none() {
            self.closing = Some(reason.into());
        }
    }

    /// Bytes received and not yet parsed.
    pub fn unparsed(&self) -> &[u8] {
        &self.rbuf[self.rstart..self.rend]
    }

    pub fn consume(&mut self, n: usize) {
        self.rstart = (self.rstart + n).min(self.rend);
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        }
    }

    /// Reads once into the buffer. `Ok(0)` means WouldBlock (readable
    /// cleared) or no room; an error or EOF closes.
    pub fn read_some(&mut self, max: usize) -> io::Result<usize> {
        if self.rbuf.is_empty() {
            self.rbuf.resize(READ_BUF, 0);
        }
        // Make room: compact, then grow for a frame larger than the buffer.
        if self.rstart > 0 && (self.rend == self.rbuf.len() || self.rstart >= self.rbuf.len() / 2) {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        if self.grow && self.rbuf.len() < FAST_READ_BUF {
            let len = (self.rbuf.len() * 2).min(FAST_READ_BUF);
            self.rbuf.resize(len, 0);
            self.grow = false;
        }
        if self.rend == self.rbuf.len() {
            let want = self
                .frame_need()
                .unwrap_or(0)
                .max(self.rbuf.len() + READ_BUF)
                .min(MAX_READ_BUF);
            if want <= self.rbuf.len() {
                return Ok(0);
            }
            self.rbuf.resize(want, 0);
        }
        let end = self.rbuf.len().min(self.rend + max.max(1));
        let dst = &mut self.rbuf[self.rend..end];
        let res = match self.secure.as_deref_mut() {
            Some(link) => read_secure(link, &mut self.sock, dst),
            None => self.sock.read(dst),
        };
        match res {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by peer",
            )),
            Ok(n) => {
                self.grow = self.rend + n == end && end == self.rbuf.len();
                self.rend += n;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                Ok(0)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Bytes the frame at the front needs in total, from its length prefix.
    fn frame_need(&self) -> Option<usize> {
        let b = self.unparsed();
        let len = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
        Some(self.rstart + 4 + len.min(MAX_FRAME))
    }

    /// Shrinks an idle, grown read buffer back.
    pub fn trim(&mut self) {
        if let Some(link) = self.secure.as_deref_mut() {
            link.trim();
        }
        if self.rstart == self.rend && self.rbuf.len() > READ_BUF {
            self.rbuf.truncate(READ_BUF);
            self.rbuf.shrink_to_fit();
        }
        if self.wpos == self.wbuf.len() && self.wbuf.capacity() > 4 * READ_BUF {
            self.wbuf = Vec::new();
            self.wpos = 0;
        }
    }

    pub fn out(&mut self) -> &mut Vec<u8> {
        &mut self.wbuf
    }

    pub fn queue(&mut self, msg: &Message<'_>) {
        msg.emit(&mut self.wbuf);
    }

    pub fn queue_handshake(&mut self, h: &peer::Handshake) {
        h.emit(&mut self.wbuf);
    }

    /// Bytes waiting to be written (plaintext and, on a private link,
    /// ciphertext).
    pub fn pending_out(&self) -> usize {
        self.wbuf.len() - self.wpos + self.secure.as_ref().map_or(0, |l| l.output().len())
    }

    /// Writes until the buffer is empty or the socket would block.
    pub fn flush(&mut self, now: Instant) -> io::Result<()> {
        if let Some(link) = self.secure.as_deref_mut() {
            // Seal what waits (nothing until the handshake is done), write
            // the ciphertext; `seal_from` takes more as the output drains.
            loop {
                if self.wpos < self.wbuf.len() {
                    self.wpos += link.seal_from(&self.wbuf[self.wpos..])?;
                }
                if link.output().is_empty() || !self.writable {
                    break;
                }
                match self.sock.write(link.output()) {
                    Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "socket closed")),
                    Ok(n) => {
                        link.output_written(n);
                        self.last_send = now;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.compact_out();
            return Ok(());
        }
        while self.wpos < self.wbuf.len() && self.writable {
            match self.sock.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "socket closed")),
                Ok(n) => {
                    self.wpos += n;
                    self.last_send = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.compact_out();
        Ok(())
    }

    fn compact_out(&mut self) {
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        } else if self.wpos > 256 * 1024 {
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
    }
}

/// Reads from a private link: ciphertext from the socket until a whole
/// frame yields plaintext for `dst`. The same contract as `Read::read`:
/// `Ok(0)` is the end of the stream, `WouldBlock` nothing more for now, and
/// `Interrupted` "call again" (handshake frames were answered, or the loop
/// bound was reached).
fn read_secure(link: &mut SecureLink, sock: &mut TcpStream, dst: &mut [u8]) -> io::Result<usize> {
    for _ in 0..8 {
        let n = link.read_plain(dst)?;
        if n > 0 {
            return Ok(n);
        }
        let mut eof = false;
        let got = link.read_input(|buf| {
            let n = sock.read(buf)?;
            eof = n == 0;
            Ok(n)
        })?;
        if eof {
            if link.is_established() {
                return Ok(0);
            }
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed during the private-network handshake \
                 (another network secret, or not on its allow-list?)",
            ));
        }
        if got == 0 {
            break;
        }
    }
    Err(io::ErrorKind::Interrupted.into())
}
