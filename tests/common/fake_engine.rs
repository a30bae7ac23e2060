//! A stand-in for the net thread behind a real control server: a thread
//! that answers each `Command` from a test's own loop (canned answers) and
//! keeps a log of what it was asked, in short form.

use crossbeam_channel::{bounded, Receiver};
use peerlet::cli::client::Client;
use peerlet::control::server::{self, Config, ControlServer};
use peerlet::net::api::{Command, EngineHandle, NodeStatus};
use std::sync::{Arc, Mutex};
use std::thread;

/// Every command the fake engine received, in short form.
pub type Log = Arc<Mutex<Vec<String>>>;

/// Runs `engine_loop` on its own thread with the commands sent to the
/// returned handle.
pub fn spawn(engine_loop: fn(Receiver<Command>, Log)) -> (EngineHandle, Log) {
    let (tx, rx) = bounded::<Command>(16);
    let log: Log = Arc::default();
    let log2 = log.clone();
    thread::spawn(move || engine_loop(rx, log2));
    (
        EngineHandle {
            commands: tx,
            wake: Arc::new(|| {}),
        },
        log,
    )
}

/// A control server on a free loopback port over a fake engine.
pub fn serve(config: Config, engine_loop: fn(Receiver<Command>, Log)) -> (ControlServer, Log) {
    let (engine, log) = spawn(engine_loop);
    let server = server::spawn_with("127.0.0.1:0".parse().unwrap(), engine, config).unwrap();
    (server, log)
}

/// The CLI's client of `server`.
pub fn client(server: &ControlServer) -> Client {
    Client::new(&server.local_addr().to_string())
}

/// Whether the engine was asked `line`.
pub fn logged(log: &Log, line: &str) -> bool {
    log.lock().unwrap().iter().any(|l| l == line)
}

/// An idle node's status; tests change the fields they look at.
pub fn node_status(node_id: &str) -> NodeStatus {
    NodeStatus {
        version: "0.1.0".into(),
        listen: "0.0.0.0:6881".into(),
        peer_id: "-PL0010-abcdefghijkl".into(),
        node_id: node_id.into(),
        public_key: "ab".repeat(32),
        network: "public".into(),
        torrents: 0,
        peers: 0,
        download_rate: 0,
        upload_rate: 0,
        download_limit: 0,
        upload_limit: 0,
        bytes_in_flight: 0,
        memory_budget: 64 << 20,
        uptime_secs: 5,
        state_dir_error: None,
    }
}
