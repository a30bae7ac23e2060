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
