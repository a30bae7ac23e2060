//! What carries a peer connection's bytes: [`Transport`], one reliable byte
//! stream, beneath the optional private-network `SecureLink` and above the
//! socket.
//!
//! `Conn` reads and writes only through this type, and dialling goes through
//! [`dial`], so the engine sees one byte stream whatever carries it. TCP is
//! the one transport today; uTP (BEP 29, over the shared UDP port of
//! `net::udp`) is to be its second variant.
//!
//! The contract is the one of a non-blocking `mio::net::TcpStream`, and the
//! hot path costs nothing over it (a match on one variant, inlined):
//! - `Read`/`Write` (with `write_vectored`): `WouldBlock` when nothing can
//!   move now, `Ok(0)` from `read` at the end of the stream;
//! - readiness is edge-triggered: after an event the connection reads or
//!   writes until `WouldBlock`; a transport raises events through its
//!   registration (`mio::event::Source`);
//! - an outgoing transport is "connecting" until [`Transport::connect_done`]
//!   says it is connected (checked when it first turns writable).

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};

/// One connection's byte stream. See the module docs.
#[derive(Debug)]
pub enum Transport {
    Tcp(TcpStream),
}

/// Starts a non-blocking connection to `addr`. `local`: the address to dial
/// from (our listening address when it is a specific one, so the peer sees
/// the address we serve on); ignored when unspecified or of the other
/// family. The transport is "connecting" until [`Transport::connect_done`].
pub fn dial(addr: SocketAddr, local: Option<IpAddr>) -> io::Result<Transport> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(local) = local {
        if !local.is_unspecified() && local.is_ipv4() == addr.is_ipv4() {
            socket.bind(&SocketAddr::new(local, 0).into())?;
        }
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e)
            if e.raw_os_error() == Some(libc::EINPROGRESS)
                || e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    let std_stream: std::net::TcpStream = socket.into();
    Ok(Transport::Tcp(TcpStream::from_std(std_stream)))
}

impl Transport {
    /// A connection the TCP listener accepted (Nagle off: messages are
    /// batched by `Conn` already).
    pub fn accepted(sock: TcpStream) -> Transport {
        let _ = sock.set_nodelay(true);
        Transport::Tcp(sock)
    }

    /// An outgoing connection's progress, asked once it is writable:
    /// `Ok(true)` connected, `Ok(false)` not yet (wait for the next event),
    /// `Err` the connection failed.
    pub fn connect_done(&mut self) -> io::Result<bool> {
        match self {
            Transport::Tcp(s) => {
                if let Some(e) = s.take_error()? {
                    return Err(e);
                }
                match s.peer_addr() {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Reads without consuming (for a look at a handshake's first bytes
    /// before a read buffer is spent on the connection).
    pub fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.peek(buf),
        }
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Transport::Tcp(s) => s.peer_addr(),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Transport::Tcp(s) => s.local_addr(),
        }
    }

    /// Closes one or both directions (dropping the transport closes both).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.shutdown(how),
        }
    }

    /// The transport's name for logs and status: `tcp`.
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::Tcp(_) => "tcp",
        }
    }
}

impl Read for Transport {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.write(buf),
        }
    }

    #[inline]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.write_vectored(bufs),
        }
    }

    #[inline]
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.flush(),
        }
    }
}

impl Source for Transport {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.register(registry, token, interests),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.deregister(registry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Waits (bounded) until `f` gives something other than `WouldBlock`.
    fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            match f() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                r => return r,
            }
        }
    }

    #[test]
    fn dial_connects_and_moves_bytes_both_ways() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut out = dial(addr, Some("127.0.0.1".parse().unwrap())).unwrap();
        assert_eq!(out.kind(), "tcp");
        let (accepted, _) = listener.accept().unwrap();
        accepted.set_nonblocking(true).unwrap();
        let mut inc = Transport::accepted(TcpStream::from_std(accepted));
        let until = Instant::now() + Duration::from_secs(5);
        while !out.connect_done().unwrap() {
            assert!(Instant::now() < until, "connect never completed");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(out.peer_addr().unwrap(), addr);
        assert_eq!(inc.local_addr().unwrap(), addr);
        assert_eq!(inc.peer_addr().unwrap(), out.local_addr().unwrap());

        let parts = [IoSlice::new(b"hello "), IoSlice::new(b"world")];
        assert_eq!(retry(|| out.write_vectored(&parts)).unwrap(), 11);
        let mut buf = [0u8; 64];
        let n = retry(|| inc.peek(&mut buf)).unwrap();
        assert!(n > 0 && n <= 11);
        let mut got = Vec::new();
        while got.len() < 11 {
            let n = retry(|| inc.read(&mut buf)).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"hello world");

        retry(|| inc.write(b"back")).unwrap();
        inc.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        loop {
            let n = retry(|| out.read(&mut buf)).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"back");
    }

    #[test]
    fn dial_to_a_closed_port_fails() {
        // A port that was just free: nothing listens there.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let res = dial(addr, None).and_then(|mut t| {
            let until = Instant::now() + Duration::from_secs(5);
            loop {
                if t.connect_done()? {
                    return Ok(());
                }
                assert!(
                    Instant::now() < until,
                    "connect neither failed nor completed"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        assert!(res.is_err());
    }
}
