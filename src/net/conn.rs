//! One peer connection: its transport, capped buffers, readiness and timers.
//!
//! Readiness is edge-triggered (mio): `readable`/`writable` are set by
//! events and cleared only when a read or write returns `WouldBlock`, so the
//! loop can stop reading a socket (backpressure, fairness) and come back to
//! it later without waiting for a new event.

use super::memory::BASE_READ_BUF;
use super::transport::Transport;
use crate::private::SecureLink;
use crate::swarm::PeerKey;
use crate::wire::peer::{self, Message, MAX_FRAME};
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

/// A fast peer's read buffer grows up to this (fewer, larger reads), as
/// far as the memory budget's share for read buffers allows.
pub const FAST_READ_BUF: usize = 512 * 1024;
/// Largest read buffer (one maximal frame plus a read's worth).
pub const MAX_READ_BUF: usize = MAX_FRAME + 4 + 64 * 1024;
/// Small messages are appended to the last output chunk while it is
/// shorter than this; then a new chunk starts. (A chunk of blocks from an
/// upload read is at least this long, unless it holds one short last block,
/// which takes a few appended bytes just as well.)
const SMALL_CHUNK: usize = 16 * 1024;
/// Most chunks handed to one vectored write.
const MAX_IOV: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Outgoing, the transport's connect in progress.
    Connecting,
    /// Waiting for the peer's 68-byte handshake.
    Handshake,
    /// Handshakes done; messages flow.
    Active,
}

pub struct Conn {
    pub key: PeerKey,
    /// What carries the bytes (TCP today), beneath `secure`.
    pub sock: Transport,
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
    /// Output waiting for the socket, in order: chunks of small messages,
    /// and the framed blocks that upload reads produced (queued without a
    /// copy). `opos` bytes of the front chunk are written already.
    out: VecDeque<Vec<u8>>,
    opos: usize,
    /// Bytes in `out` not yet written.
    out_len: usize,
    /// Bytes taken from the transport so far (ciphertext on a private link).
    pub received: u64,
    /// Bytes the last peek found waiting, while handshaking.
    pub peeked: usize,
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
        sock: Transport,
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
            out: VecDeque::new(),
            opos: 0,
            out_len: 0,
            received: 0,
            peeked: 0,
            readable: false,
            writable: false,
            closing: None,
            created: now,
            last_recv: now,
            last_send: now,
        }
    }

    /// Bytes of the peer's handshake seen so far (read or waiting).
    pub fn handshake_seen(&self) -> usize {
        usize::try_from(self.received)
            .unwrap_or(usize::MAX)
            .max(self.peeked)
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
    /// cleared) or no room; an error or EOF closes. `may_grow`: the buffer
    /// may grow for a fast peer (it always grows for a frame that does not
    /// fit).
    pub fn read_some(&mut self, max: usize, may_grow: bool) -> io::Result<usize> {
        if self.rbuf.is_empty() {
            self.rbuf.resize(BASE_READ_BUF, 0);
        }
        // Make room: compact, then grow for a frame larger than the buffer.
        if self.rstart > 0 && (self.rend == self.rbuf.len() || self.rstart >= self.rbuf.len() / 2) {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        if self.grow && may_grow && self.rbuf.len() < FAST_READ_BUF {
            let len = (self.rbuf.len() * 2).min(FAST_READ_BUF);
            self.rbuf.resize(len, 0);
            self.grow = false;
        }
        if self.rend == self.rbuf.len() {
            let want = self.frame_need().unwrap_or(0).min(MAX_READ_BUF);
            if want <= self.rbuf.len() {
                return Ok(0);
            }
            self.rbuf.resize(want, 0);
        }
        let end = self.rbuf.len().min(self.rend + max.max(1));
        let dst = &mut self.rbuf[self.rend..end];
        let res = match self.secure.as_deref_mut() {
            Some(link) => read_secure(link, &mut self.sock, dst, &mut self.received),
            None => {
                let res = self.sock.read(dst);
                if let Ok(n) = res {
                    self.received += n as u64;
                }
                res
            }
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

    /// Receive-buffer bytes beyond the base size (what the memory budget's
    /// share for read buffers counts).
    pub fn read_buffer_extra(&self) -> usize {
        self.rbuf.len().saturating_sub(BASE_READ_BUF)
    }

    /// Gives back buffer memory of a connection that has been `idle`: the
    /// empty receive buffer and the private link's buffers. (Output chunks
    /// are freed as they are written.)
    pub fn trim(&mut self, idle: bool) {
        if !idle {
            return;
        }
        if self.out.is_empty() {
            self.out = VecDeque::new();
        }
        if let Some(link) = self.secure.as_deref_mut() {
            link.trim();
        }
        if self.rstart == self.rend {
            self.rbuf = Vec::new();
            self.rstart = 0;
            self.rend = 0;
        }
    }

    /// The chunk small messages go to.
    fn small_chunk(&mut self) -> &mut Vec<u8> {
        if self.out.back().is_none_or(|b| b.len() >= SMALL_CHUNK) {
            self.out.push_back(Vec::with_capacity(256));
        }
        self.out.back_mut().expect("pushed above")
    }

    /// Appends what `emit` writes to the output.
    fn append(&mut self, emit: impl FnOnce(&mut Vec<u8>)) {
        let chunk = self.small_chunk();
        let before = chunk.len();
        emit(chunk);
        let added = chunk.len() - before;
        self.out_len += added;
    }

    pub fn queue(&mut self, msg: &Message<'_>) {
        self.append(|out| msg.emit(out));
    }

    pub fn queue_handshake(&mut self, h: &peer::Handshake) {
        self.append(|out| h.emit(out));
    }

    /// Queues bytes that are already wire format (copied).
    pub fn queue_bytes(&mut self, bytes: &[u8]) {
        self.append(|out| out.extend_from_slice(bytes));
    }

    /// Queues a buffer of whole wire messages as it is (no copy): framed
    /// blocks from an upload read.
    pub fn queue_frames(&mut self, frames: Vec<u8>) {
        if frames.is_empty() {
            return;
        }
        self.out_len += frames.len();
        self.out.push_back(frames);
    }

    /// Bytes waiting to be written (plaintext and, on a private link,
    /// ciphertext).
    pub fn pending_out(&self) -> usize {
        self.out_len + self.secure.as_ref().map_or(0, |l| l.output().len())
    }

    /// Marks `n` written bytes of the output done, freeing drained chunks.
    fn advance(&mut self, mut n: usize) {
        self.out_len -= n;
        while n > 0 {
            let Some(front) = self.out.front() else { break };
            let left = front.len() - self.opos;
            if n < left {
                self.opos += n;
                return;
            }
            n -= left;
            self.out.pop_front();
            self.opos = 0;
        }
    }

    /// Writes until the buffer is empty or the socket would block.
    pub fn flush(&mut self, now: Instant) -> io::Result<()> {
        if self.secure.is_some() {
            // Seal what waits (nothing until the handshake is done), write
            // the ciphertext; `seal_from` takes more as the output drains.
            loop {
                self.seal_queued()?;
                let Some(link) = self.secure.as_deref_mut() else {
                    break;
                };
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
            return Ok(());
        }
        while self.out_len > 0 && self.writable {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut n_iov = 0;
            for (i, chunk) in self.out.iter().take(MAX_IOV).enumerate() {
                let skip = if i == 0 { self.opos } else { 0 };
                iov[i] = IoSlice::new(&chunk[skip..]);
                n_iov += 1;
            }
            match self.sock.write_vectored(&iov[..n_iov]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "socket closed")),
                Ok(n) => {
                    self.advance(n);
                    self.last_send = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Private link: seals queued plaintext until the link's output is full.
    fn seal_queued(&mut self) -> io::Result<()> {
        while self.out_len > 0 {
            let Some(link) = self.secure.as_deref_mut() else {
                return Ok(());
            };
            let Some(front) = self.out.front() else {
                return Ok(());
            };
            let taken = link.seal_from(&front[self.opos..])?;
            if taken == 0 {
                return Ok(());
            }
            self.advance(taken);
        }
        Ok(())
    }
}

/// Reads from a private link: ciphertext from the transport until a whole
/// frame yields plaintext for `dst`. The same contract as `Read::read`:
/// `Ok(0)` is the end of the stream, `WouldBlock` nothing more for now, and
/// `Interrupted` "call again" (handshake frames were answered, or the loop
/// bound was reached).
fn read_secure(
    link: &mut SecureLink,
    sock: &mut Transport,
    dst: &mut [u8],
    received: &mut u64,
) -> io::Result<usize> {
    for _ in 0..8 {
        let n = link.read_plain(dst)?;
        if n > 0 {
            return Ok(n);
        }
        let mut eof = false;
        let got = link.read_input(|buf| {
            let n = sock.read(buf)?;
            *received += n as u64;
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
