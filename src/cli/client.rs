//! A minimal HTTP/1.1 client for the control API: one request per
//! connection over a `TcpStream`, with connect and read timeouts and a cap
//! on the size of the answer, which is parsed as JSON. With a token, every
//! request carries `Authorization: Bearer TOKEN`.

use crate::control::http::{self, is_timeout};
use crate::json::{self, Json, SchemaError};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Largest answer read (the JSON parser's own limit).
pub const MAX_RESPONSE: usize = json::MAX_LEN;

/// Why a request did not get a successful answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// Nothing listens at the address (refused, unreachable, no answer to connect).
    NoDaemon(String),
    /// The address is malformed or does not resolve.
    BadAddress(String),
    /// The connection broke or the answer was not HTTP + JSON.
    Transport(String),
    /// The daemon answered with an error status and message.
    Api { status: u16, message: String },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::NoDaemon(addr) => {
                write!(
                    f,
                    "no daemon answering on {addr} — is 'peerlet daemon' running?"
                )
            }
            ClientError::BadAddress(m) | ClientError::Transport(m) => f.write_str(m),
            ClientError::Api { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for ClientError {}

/// Where the daemon's API is, and how patient to be with it.
#[derive(Clone, Debug)]
pub struct Client {
    addr: String,
    /// The API token to send (see `control::token`), if any.
    pub token: Option<String>,
    pub connect_timeout: Duration,
    /// Timeout of each read and write, and (times two) of a whole request.
    pub io_timeout: Duration,
    pub max_response: usize,
}

impl Client {
    /// `addr` is `host:port` (for example the default `127.0.0.1:7441`).
    pub fn new(addr: &str) -> Client {
        Client {
            addr: addr.to_string(),
            token: None,
            connect_timeout: Duration::from_secs(3),
            io_timeout: Duration::from_secs(30),
            max_response: MAX_RESPONSE,
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn get(&self, path: &str) -> Result<Json, ClientError> {
        self.request("GET", path, None)
    }

    pub fn post(&self, path: &str, body: Option<(&str, &[u8])>) -> Result<Json, ClientError> {
        self.request("POST", path, body)
    }

    pub fn delete(&self, path: &str) -> Result<Json, ClientError> {
        self.request("DELETE", path, None)
    }

    /// An answer that is JSON but not the shape this client reads (see
    /// `api`'s `FromJson` impls): a daemon of another version, or not peerlet.
    pub fn schema_error(&self, e: SchemaError) -> ClientError {
        ClientError::Transport(format!(
            "the answer from {} does not match this client's API ({e}): is the daemon the same peerlet version?",
            self.addr
        ))
    }

    /// Sends a request (`path` with its query) and parses the JSON answer;
    /// an error status becomes [`ClientError::Api`] with the `error` message.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<Json, ClientError> {
        let resp = self.exchange(method, path, body)?;
        let text = std::str::from_utf8(&resp.body).map_err(|_| {
            ClientError::Transport(format!("the answer from {} is not UTF-8", self.addr))
        })?;
        let parsed = json::parse(text);
        if !(200..300).contains(&resp.status) {
            // peerlet answers every error with `{"error": ...}`: without
            // one, something else listens at the address.
            let message = parsed
                .ok()
                .and_then(|j| j.get("error").and_then(Json::as_str).map(str::to_string))
                .unwrap_or_else(|| {
                    format!(
                        "{} answered HTTP {} {} without a peerlet error: is it peerlet's control API? (check --api)",
                        self.addr,
                        resp.status,
                        http::reason(resp.status)
                    )
                });
            return Err(ClientError::Api {
                status: resp.status,
                message,
            });
        }
        parsed.map_err(|e| {
            ClientError::Transport(format!(
                "the answer from {} is not JSON ({e}): is it peerlet's control API? (check --api)",
                self.addr
            ))
        })
    }

    fn connect(&self) -> Result<(TcpStream, SocketAddr), ClientError> {
        let addrs: Vec<SocketAddr> = self
            .addr
            .to_socket_addrs()
            .map_err(|e| {
                ClientError::BadAddress(format!(
                    "API address '{}': {e} (expected host:port)",
                    self.addr
                ))
            })?
            .collect();
        let mut last = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, self.connect_timeout) {
                Ok(s) => return Ok((s, *a)),
                Err(e) => last = Some(e),
            }
        }
        match last {
            Some(e) if !is_absent(&e) => Err(ClientError::Transport(format!(
                "connecting to {}: {e}",
                self.addr
            ))),
            _ => Err(ClientError::NoDaemon(self.addr.clone())),
        }
    }

    /// One request, one answer (status, headers, body).
    pub fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<http::Response, ClientError> {
        let (mut stream, peer) = self.connect()?;
        let broken =
            |e: io::Error| ClientError::Transport(format!("talking to {}: {e}", self.addr));
        stream
            .set_write_timeout(Some(self.io_timeout))
            .map_err(broken)?;
        stream
            .set_read_timeout(Some(self.io_timeout))
            .map_err(broken)?;
        let _ = stream.set_nodelay(true);
        // The Host is the address connected to, an IP literal, which the
        // server's DNS-rebinding check accepts whatever name was given.
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {peer}\r\nUser-Agent: peerlet/{}\r\nAccept: application/json\r\nConnection: close\r\n",
            env!("CARGO_PKG_VERSION")
        );
        if let Some(token) = &self.token {
            req.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        let body = body.filter(|(_, b)| !b.is_empty());
        if let Some((ctype, bytes)) = body {
            req.push_str(&format!(
                "Content-Type: {ctype}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n",
                bytes.len()
            ));
        } else if method != "GET" {
            req.push_str("Content-Length: 0\r\n");
        }
        req.push_str("\r\n");
        let deadline = Instant::now() + self.io_timeout * 2;
        let mut raw = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        let mut written = stream.write_all(req.as_bytes());
        if let (Some((_, bytes)), Ok(())) = (body, &written) {
            // Send the body once the server says it wants it (100 Continue),
            // so that a refusal (413 and the like) arrives intact instead of
            // being lost to a reset while we are still sending. A server
            // that says nothing for a second gets the body anyway.
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let mut closed = false;
            while http::find_head_end(&raw, 0).is_none() && raw.len() < http::MAX_HEAD {
                match stream.read(&mut chunk) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => raw.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = stream.set_read_timeout(Some(self.io_timeout));
            match http::find_head_end(&raw, 0) {
                Some((_, end)) if raw.starts_with(b"HTTP/1.1 100 ") => {
                    raw.drain(..end);
                    written = stream.write_all(bytes);
                }
                // A final answer: the body is not wanted.
                Some(_) => {}
                None if closed => {}
                None => written = stream.write_all(bytes),
            }
        }
        let written = written.and_then(|_| stream.flush());
        let read_result = loop {
            if raw.len() > self.max_response {
                return Err(ClientError::Transport(format!(
                    "the answer from {} is larger than {} bytes",
                    self.addr, self.max_response
                )));
            }
            if Instant::now() >= deadline {
                break Err(io::Error::from(io::ErrorKind::TimedOut));
            }
            match stream.read(&mut chunk) {
                Ok(0) => break Ok(()),
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        let parsed = http::parse_response(&raw);
        if let Ok(r) = parsed {
            return Ok(r);
        }
        if let Err(e) = read_result.and(written) {
            return Err(if is_timeout(&e) {
                ClientError::Transport(format!(
                    "the daemon on {} did not answer in time",
                    self.addr
                ))
            } else {
                broken(e)
            });
        }
        match parsed {
            _ if raw.is_empty() => Err(ClientError::Transport(format!(
                "{} closed the connection without answering",
                self.addr
            ))),
            Err(m) => Err(ClientError::Transport(format!(
                "bad answer from {}: {m}",
                self.addr
            ))),
            Ok(r) => Ok(r),
        }
    }
}

/// Connect errors that mean "nobody is there".
fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::TimedOut
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::AddrNotAvailable
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::ConnectionReset
    )
}
