//! The local control API and the command-line client that uses it.
//!
//! - `api`: commands and status types shared with the engine (no I/O).
//! - `server`: the HTTP + JSON server on its own thread; talks to the
//!   engine only through an [`api::EngineHandle`].
//! - `http`: the minimal HTTP/1.1 both ends share (limits, Host check).
//! - `token`: the API token (`api.token` in the state directory).
//! - `metrics`: the Prometheus text that `GET /metrics` answers.
//! - `web`: the web page at `/` (HTML, script, style sheet; no I/O).
//! - `client` / `cmd`: the client side of `peerlet add|get|ls|status|rm|pause|resume|stop`.

pub mod api;
pub mod client;
pub mod cmd;
pub mod http;
pub mod metrics;
pub mod server;
pub mod token;
pub mod web;

/// Default address of the control API.
pub const DEFAULT_API_ADDR: &str = "127.0.0.1:7441";
