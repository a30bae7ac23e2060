//! The extension protocol (BEP 10) handshake and the ut_metadata (BEP 9)
//! and ut_pex (BEP 11) messages.
