//! Trackers, sans I/O: BEP 15 (UDP) and BEP 3/23/7 (HTTP) announce and
//! scrape, and the per-torrent announcer (tiers, schedule, back-off).
//! The net thread does the I/O the announcer asks for.
