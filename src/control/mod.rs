//! The local control API: an HTTP + JSON server over the engine's commands
//! (`net::api`). The command-line client of it lives in `cli`.
//!
//! - `server`: the HTTP + JSON server on its own thread; talks to the
//!   engine only through a [`crate::net::api::EngineHandle`].
//! - `admission`: which connections are served (untrusted and trusted
//!   pools, eviction) and the API's share of the memory budget; no I/O.
//! - `http`: the minimal HTTP/1.1 both ends share (limits, Host check).
//! - `token`: the API token (`api.token` in the state directory).
//! - `metrics`: the Prometheus text that `GET /metrics` answers.
//! - `web`: the web page at `/` (HTML, script, style sheet; no I/O).

pub mod admission;
pub mod http;
pub mod metrics;
pub mod server;
pub mod token;
pub mod web;

/// Default address of the control API.
pub const DEFAULT_API_ADDR: &str = "127.0.0.1:7441";
