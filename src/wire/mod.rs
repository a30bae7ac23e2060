//! Wire formats: byte layouts only, no I/O, no judgement beyond "well formed".
//!
//! - [`extension`]: BEP 10 handshake, ut_metadata (BEP 9), ut_pex (BEP 11).
//! - [`peer`]: the BitTorrent peer wire protocol (BEP 3, BEP 6, BEP 10 framing).
//!
//! Every parser here takes untrusted bytes and follows the no-panic
//! contract written in its module: `Ok(None)` means "need more bytes", an
//! `Err` is a protocol violation, lengths are checked before buffering.

pub mod extension;
pub mod peer;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Worth connecting to: a real port, a unicast address, and loopback only
/// when the sender is on loopback itself. PEX (BEP 11) and the overlay apply it to
/// the addresses they are told of.
pub fn connectable(addr: SocketAddr, sender: IpAddr) -> bool {
    let ip = addr.ip();
    addr.port() != 0
        && !ip.is_unspecified()
        && !ip.is_multicast()
        && ip != IpAddr::V4(Ipv4Addr::BROADCAST)
        && (!ip.is_loopback() || sender.is_loopback())
}
