//! Fetching a torrent's info dictionary from peers (BEP 9), sans I/O.
