//! The blocking client connection of the network workers: a TCP stream
//! whose every read and write ends by a deadline ([`dial`]), with TLS on
//! top for `https://` ([`connect`], [`client`]). Used by the HTTP tracker
//! client (`tracker::http::fetch`) and meant for web seeds too.
//!
//! **Blocking**: for the pool's network threads, never the net thread.
//!
//! # TLS (feature `https`, on by default)
//!
//! rustls (TLS 1.2 and 1.3, client only) over the RustCrypto provider of
//! [`provider`]; certificates checked by rustls-webpki against [`Roots`]:
//! the system's CA bundle, or the `tls_ca_file` of the configuration
//! (`storage::certs` reads them), or with the `bundled-roots` feature
//! Mozilla's roots where the system has none. [`LazyRoots`] reads them once,
//! on the first `https` connection, so a daemon that never speaks TLS never
//! reads a bundle, and the net thread never does.
//!
//! The handshake completes inside [`client`], under the stream's deadline;
//! a certificate refused comes back as [`Error::Certificate`] with rustls's
//! words. A body framed by the end of the connection must end with TLS
//! `close_notify`, else the read fails with `UnexpectedEof` (rustls), so a
//! cut response is never taken for a whole one.
//!
//! Without the feature, [`client`] and [`Roots::from_pem`] return
//! [`Error::Unsupported`].

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

#[cfg(feature = "https")]
pub mod provider;

/// Longest wait for any single read on a [`DeadlineStream`].
pub const RECEIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most addresses of one host tried by [`dial`].
const MAX_ADDRS: usize = 4;

/// What can go wrong in [`dial`], [`connect`], [`client`] and loading roots.
#[derive(Debug)]
pub enum Error {
    /// The host name did not resolve to a usable address.
    Resolve(String),
    /// No address accepted a connection (the last error).
    Connect(String),
    /// The deadline passed.
    Timeout,
    /// Another I/O error (a read timeout, the peer closing) during the
    /// handshake.
    Io(io::Error),
    /// The server's certificate was refused (unknown issuer, wrong name,
    /// expired...).
    Certificate(String),
    /// Another TLS failure: handshake, alert, bad record.
    Tls(String),
    /// Not a name a certificate can be checked against.
    BadName(String),
    /// No usable CA certificate where we looked: the places, and what was
    /// wrong with each.
    NoRoots(String),
    /// The roots could not be loaded earlier (the loader's message, kept by
    /// [`LazyRoots`]).
    RootsUnavailable(String),
    /// Built without the `https` feature.
    Unsupported,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Resolve(host) => write!(f, "could not resolve {host}"),
            Error::Connect(e) => write!(f, "could not connect: {e}"),
            Error::Timeout => write!(f, "timed out"),
            Error::Io(e) => write!(f, "{e}"),
            Error::Certificate(e) => write!(f, "certificate refused: {e}"),
            Error::Tls(e) => write!(f, "TLS error: {e}"),
            Error::BadName(e) => write!(f, "host name {e}"),
            Error::NoRoots(where_) => {
                write!(f, "no CA certificates found at {where_}; set tls_ca_file")
            }
            Error::RootsUnavailable(e) => f.write_str(e),
            Error::Unsupported => write!(
                f,
                "TLS is not supported: peerlet was built without the `https` feature"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// A TCP stream whose every read and write waits at most until the
/// deadline (and at most [`RECEIVE_TIMEOUT`] per read), so a server that
/// trickles bytes cannot hold a worker past it. TLS runs on top of it, so
/// the handshake is bounded the same way.
pub struct DeadlineStream {
    stream: TcpStream,
    deadline: Instant,
}

impl DeadlineStream {
    fn remaining(&self) -> io::Result<Duration> {
        remaining(self.deadline).map_err(|_| io::Error::from(io::ErrorKind::TimedOut))
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let wait = self.remaining()?.min(RECEIVE_TIMEOUT);
        self.stream.set_read_timeout(Some(wait))?;
        self.stream.read(buf)
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let wait = self.remaining()?;
        self.stream.set_write_timeout(Some(wait))?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

fn remaining(deadline: Instant) -> Result<Duration, Error> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or(Error::Timeout)
}

/// Resolves `host` (the system resolver, which the deadline cannot
/// interrupt) and connects to the first of its first few addresses that
/// answers before `deadline`.
pub fn dial(host: &str, port: u16, deadline: Instant) -> Result<DeadlineStream, Error> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|_| Error::Resolve(host.to_string()))?
        .take(MAX_ADDRS)
        .collect();
    if addrs.is_empty() {
        return Err(Error::Resolve(host.to_string()));
    }
    let mut last_error = String::new();
    // Each address may take the rest of the deadline.
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, remaining(deadline)?) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(DeadlineStream { stream, deadline });
            }
            Err(e) => last_error = format!("{addr}: {e}"),
        }
    }
    remaining(deadline)?;
    Err(Error::Connect(last_error))
}

/// [`dial`], then [`client`]: a TLS connection to `host:port` with the
/// handshake done and the certificate checked against `roots`, every step
/// before `deadline`.
pub fn connect(
    host: &str,
    port: u16,
    deadline: Instant,
    roots: &LazyRoots,
) -> Result<Stream<DeadlineStream>, Error> {
    let roots = roots.get()?;
    let stream = dial(host, port, deadline)?;
    client(stream, host, &roots)
}

/// Roots read on first use by a loader (which reads files: it comes from
/// `storage`), then kept, failure included: a daemon that found no CA
/// bundle says so on each `https` announce until it is restarted.
pub struct LazyRoots {
    cell: OnceLock<Result<Arc<Roots>, String>>,
    load: Box<dyn Fn() -> Result<Roots, Error> + Send + Sync>,
}

impl LazyRoots {
    pub fn new(load: impl Fn() -> Result<Roots, Error> + Send + Sync + 'static) -> LazyRoots {
        LazyRoots {
            cell: OnceLock::new(),
            load: Box::new(load),
        }
    }

    /// Roots that are already there (tests).
    pub fn ready(roots: Roots) -> LazyRoots {
        let lazy = LazyRoots::new(|| Err(Error::NoRoots("(nowhere)".into())));
        let _ = lazy.cell.set(Ok(Arc::new(roots)));
        lazy
    }

    /// The roots, loading them on the first call (blocking: a worker's).
    pub fn get(&self) -> Result<Arc<Roots>, Error> {
        self.cell
            .get_or_init(|| (self.load)().map(Arc::new).map_err(|e| e.to_string()))
            .clone()
            .map_err(Error::RootsUnavailable)
    }
}

impl fmt::Debug for LazyRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LazyRoots")
    }
}

/// A TLS connection over `S`.
#[cfg(feature = "https")]
pub type Stream<S> = rustls::StreamOwned<rustls::ClientConnection, S>;

#[cfg(feature = "https")]
pub use imp::{client, Roots};

/// A TLS connection over `S` (never made without the `https` feature).
#[cfg(not(feature = "https"))]
pub type Stream<S> = S;

#[cfg(not(feature = "https"))]
pub use none::{client, Roots};

#[cfg(feature = "https")]
mod imp {
    use std::io::{self, Read, Write};
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use rustls::{CertificateError, ClientConfig, ClientConnection, RootCertStore, StreamOwned};

    use super::{Error, Stream};

    /// The certificate authorities servers are checked against, as a ready
    /// rustls client configuration.
    pub struct Roots {
        config: Arc<ClientConfig>,
        len: usize,
    }

    impl Roots {
        /// The CA certificates in PEM `bundles` (each a file's bytes, named
        /// by `origin` for messages). Other PEM sections (keys, CRLs) are
        /// skipped, and so are certificates webpki cannot use; no usable
        /// certificate at all is [`Error::NoRoots`].
        pub fn from_pem(bundles: &[Vec<u8>], origin: &str) -> Result<Roots, Error> {
            let mut store = RootCertStore::empty();
            let mut skipped = 0;
            for bundle in bundles {
                for cert in CertificateDer::pem_slice_iter(bundle) {
                    match cert {
                        Ok(cert) => {
                            if store.add(cert).is_err() {
                                skipped += 1;
                            }
                        }
                        // Broken PEM: the rest of this file is unreadable.
                        Err(_) => {
                            skipped += 1;
                            break;
                        }
                    }
                }
            }
            if store.is_empty() {
                let why = if skipped > 0 {
                    format!("{origin} ({skipped} unusable)")
                } else {
                    origin.to_string()
                };
                return Err(Error::NoRoots(why));
            }
            Ok(Roots::from_store(store))
        }

        /// Mozilla's roots, compiled in (feature `bundled-roots`).
        #[cfg(feature = "bundled-roots")]
        pub fn bundled() -> Roots {
            Roots::from_store(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            })
        }

        fn from_store(store: RootCertStore) -> Roots {
            let len = store.len();
            let config =
                ClientConfig::builder_with_provider(Arc::new(crate::tls::provider::provider()))
                    .with_safe_default_protocol_versions()
                    // Only fails for a provider without suites for TLS 1.2/1.3.
                    .unwrap_or_else(|_| unreachable!("the provider has TLS 1.2 and 1.3 suites"))
                    .with_root_certificates(store)
                    .with_no_client_auth();
            Roots {
                config: Arc::new(config),
                len,
            }
        }

        /// How many CA certificates.
        pub fn len(&self) -> usize {
            self.len
        }

        pub fn is_empty(&self) -> bool {
            self.len == 0
        }
    }

    /// Starts TLS on a connected `stream` for `host` (a name or an
    /// address: the SNI and what the certificate must name) and completes
    /// the handshake. Timeouts are the stream's.
    pub fn client<S: Read + Write>(
        mut stream: S,
        host: &str,
        roots: &Roots,
    ) -> Result<Stream<S>, Error> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| Error::BadName(format!("'{host}': {e}")))?;
        let mut conn =
            ClientConnection::new(Arc::clone(&roots.config), name).map_err(|e| error(&e))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut stream).map_err(io_error)?;
        }
        Ok(StreamOwned::new(conn, stream))
    }

    /// An I/O error from a TLS stream: rustls's own errors apart.
    fn io_error(e: io::Error) -> Error {
        match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            Some(e) => error(e),
            None if e.kind() == io::ErrorKind::TimedOut => Error::Timeout,
            None => Error::Io(e),
        }
    }

    fn error(e: &rustls::Error) -> Error {
        match e {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                Error::Certificate(
                    "not issued by a trusted certificate authority (unknown issuer)".into(),
                )
            }
            rustls::Error::InvalidCertificate(e) => Error::Certificate(e.to_string()),
            e => Error::Tls(e.to_string()),
        }
    }

    impl std::fmt::Debug for Roots {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Roots({} certificates)", self.len)
        }
    }
}

#[cfg(not(feature = "https"))]
mod none {
    use super::{Error, Stream};

    /// No roots without the `https` feature.
    #[derive(Debug)]
    pub struct Roots(());

    impl Roots {
        pub fn from_pem(_: &[Vec<u8>], _: &str) -> Result<Roots, Error> {
            Err(Error::Unsupported)
        }
    }

    pub fn client<S>(_: S, _: &str, _: &Roots) -> Result<Stream<S>, Error> {
        Err(Error::Unsupported)
    }
}
