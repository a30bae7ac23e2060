//! Peer exchange (BEP 11) bookkeeping, sans I/O.
