//! The control API server (HTTP/1.1 + JSON) on its own thread.

use super::api::EngineHandle;
use std::io;
use std::net::SocketAddr;

/// A running control server.
pub struct ControlServer {
    local_addr: SocketAddr,
}

impl ControlServer {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and joins the thread.
    pub fn shutdown(self) {}
}

/// Binds `addr` and serves the API on a new thread.
pub fn spawn(addr: SocketAddr, engine: EngineHandle) -> io::Result<ControlServer> {
    let _ = engine;
    Err(io::Error::other(format!(
        "control API on {addr}: not implemented yet"
    )))
}
