//! A daemon's overlay as `peerlet peers --json` shows it.
#![allow(dead_code)]

use super::daemon::DaemonProc;
use peerlet::json::{self, Json};

/// `peerlet peers --json` of the daemon.
pub fn nodes(d: &DaemonProc) -> Json {
    let (code, out, err) = d.cli(&["peers", "--json"]);
    assert_eq!(code, 0, "{} peers: {out}{err}", d.name);
    json::parse(&out).unwrap_or_else(|e| panic!("peers JSON: {e}: {out}"))
}

/// One of its counters (`sent_query`, `dropped_unsealed`, ...).
pub fn counter(j: &Json, name: &str) -> u64 {
    j.get("counters")
        .and_then(|c| c.get(name))
        .and_then(Json::as_u64)
        .unwrap_or_else(|| panic!("no counter {name} in {j}"))
}

/// Routing-table entries that ever answered.
pub fn live_nodes(j: &Json) -> usize {
    j.get("nodes")
        .and_then(Json::as_array)
        .unwrap()
        .iter()
        .filter(|n| n.get("last_seen_secs").is_some_and(|v| !v.is_null()))
        .count()
}
