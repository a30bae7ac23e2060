//! Torrents added by magnet link, until their info dictionary is known.
//!
//! A magnet-phase torrent has no pieces, no files and no swarm: only peers
//! (from the link's `x.pe`, `--peer`, or those who dial us) and a
//! [`MetadataFetch`]. Its connections speak only the extension protocol
//! (BEP 10) and ut_metadata (BEP 9); everything else they send is ignored.
//! When the fetch yields the info dictionary (already checked against the
//! info-hash), it is saved as a .torrent in the state directory, the
//! magnet-phase connections are closed, and the torrent starts as any other
//! with the same peers, which are dialled again.

use super::*;
use crate::metainfo::{Magnet, TorrentBuilder};
use crate::swarm::metadata::{FetchOut, MetadataFetch};
use crate::wire::extension::{self, ExtendedHandshake, MetadataMsg};
use std::sync::atomic::{AtomicBool, Ordering};

pub(super) struct MagnetEntry {
    /// The link as added (saved in the state directory).
    pub(super) link: String,
    pub(super) info_hash: InfoHash,
    pub(super) name: Option<String>,
    pub(super) place: DataDir,
    pub(super) trackers: Vec<String>,
    pub(super) known: PeerList,
    pub(super) manual_peers: Vec<String>,
    pub(super) fetch: MetadataFetch,
    pub(super) paused: bool,
    /// Why the metadata could not be used (a hostile info dictionary).
    pub(super) error: Option<String>,
    /// False once the magnet is removed or became a torrent: record saves
    /// still queued then write nothing (see `Engine::state_lock`).
    pub(super) alive: Arc<AtomicBool>,
}

impl Engine {
    /// `peerlet add MAGNET`.
    pub(super) fn add_magnet(
        &mut self,
        link: &str,
        dir: Option<DataDir>,
        peers: Vec<String>,
        paused: bool,
        now: Instant,
    ) -> Result<AddResult, ApiError> {
        let m = Magnet::parse(link).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        self.check_not_removing(m.info_hash)?;
        let name = m.name.clone().unwrap_or_else(|| m.info_hash.to_hex());
        let mut all_peers = m.peers.clone();
        all_peers.extend(peers);
        if let Some(&tid) = self.by_hash.get(&m.info_hash) {
            self.add_peers_any(tid, all_peers, now)?;
            return Ok(AddResult {
                info_hash: m.info_hash,
                name,
                added: false,
            });
        }
        let place = self.place_of(dir)?;
        // Checked before anything is added, so a bad peer adds nothing.
        check_peers(&all_peers)?;
        let tid = self.next_tid;
        self.next_tid += 1;
        self.by_hash.insert(m.info_hash, tid);
        self.magnets.insert(
            tid,
            MagnetEntry {
                link: link.to_string(),
                info_hash: m.info_hash,
                name: m.name.clone(),
                place,
                trackers: m.trackers.clone(),
                known: PeerList::default(),
                manual_peers: Vec::new(),
                fetch: MetadataFetch::new(m.info_hash),
                paused,
                error: None,
                alive: Arc::new(AtomicBool::new(true)),
            },
        );
        log::info!(
            "added magnet {name} ({}): fetching its metadata from peers",
            m.info_hash
        );
        self.add_peers_any(tid, all_peers, now)?;
        self.start_announcer(tid, now);
        Ok(AddResult {
            info_hash: m.info_hash,
            name,
            added: true,
        })
    }

    /// Writes a magnet's record (`<hex>.magnet`) so a restart resumes it.
    pub(super) fn save_magnet(&mut self, tid: u32) {
        let Some(m) = self.magnets.get(&tid) else {
            return;
        };
        let record = crate::resume::MagnetRecord {
            link: m.link.clone(),
            dir: m.place.dir().to_path_buf(),
            anchor: Some(m.place.anchor().to_path_buf()),
            local_anchor: m.place.is_local(),
            peers: m.manual_peers.clone(),
            paused: m.paused,
        };
        let path = self.config.state_file(m.info_hash, "magnet");
        let (alive, lock) = (m.alive.clone(), self.state_lock.clone());
        self.run_job(Ctx::Chore(Chore::SaveMagnet), move || {
            // Saves, the .torrent that replaces the record and removals run
            // one at a time, so a late save can never bring a record back.
            let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
            if !alive.load(Ordering::Acquire) {
                return RunResult::Io(Ok(()));
            }
            RunResult::Io(storage::write_atomic(&path, &record.encode(), 0o600))
        });
    }

    /// Adds `host:port` peers to a torrent or a magnet.
    pub(super) fn add_peers_any(
        &mut self,
        tid: u32,
        peers: Vec<String>,
        now: Instant,
    ) -> Result<(), ApiError> {
        if !self.magnets.contains_key(&tid) {
            return self.add_manual_peers(tid, peers, now);
        }
        check_peers(&peers)?;
        for p in peers {
            if let Some(m) = self.magnets.get_mut(&tid) {
                if !m.manual_peers.contains(&p) && m.manual_peers.len() < 200 {
                    m.manual_peers.push(p.clone());
                }
            }
            self.resolve_peer(tid, p, "manual", now);
        }
        self.connect_magnet_peers(tid, now);
        Ok(())
    }

    /// Dials a magnet's known peers, within the connection limits.
    pub(super) fn connect_magnet_peers(&mut self, tid: u32, now: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        let Some(m) = self.magnets.get(&tid) else {
            return;
        };
        if m.paused || m.error.is_some() {
            return;
        }
        let budget = self.dial_budget().min(m.known.dial_allowance(now));
        let info_hash = m.info_hash.0;
        let candidates = m.known.candidates(
            now,
            false,
            |a| self.bans.is_banned(a.ip(), now),
            budget + 16,
        );
        self.dial(tid, info_hash, candidates, budget, now);
    }

    /// Reads what a magnet-phase connection sent: extension messages only.
    pub(super) fn process_magnet_input(&mut self, key: PeerKey, tid: u32, now: Instant) {
        loop {
            let Some(c) = self.conns.get_mut(key) else {
                return;
            };
            if c.closing.is_some() {
                return;
            }
            let mut extended: Option<(u8, Vec<u8>)> = None;
            let mut dht_port: Option<u16> = None;
            let peer_ip = c.addr.ip();
            let used = match Message::parse(c.unparsed(), None) {
                Ok(Some((Message::Extended { id, payload }, used))) => {
                    extended = Some((id, payload.to_vec()));
                    used
                }
                Ok(Some((Message::Port(p), used))) => {
                    dht_port = Some(p);
                    used
                }
                Ok(Some((_, used))) => used,
                Ok(None) => return,
                Err(e) => return c.close(format!("protocol error: {e}")),
            };
            c.consume(used);
            if let Some((id, payload)) = extended {
                self.on_magnet_extended(key, tid, id, &payload, now);
            }
            // BEP 5: the peer's DHT node.
            if let Some(p) = dht_port {
                self.dht_add_node(SocketAddr::new(peer_ip, p), now);
            }
        }
    }

    fn on_magnet_extended(&mut self, key: PeerKey, tid: u32, id: u8, payload: &[u8], now: Instant) {
        match id {
            extension::HANDSHAKE_ID => match ExtendedHandshake::parse(payload) {
                Ok(hs) => {
                    if let Some(c) = self.conns.get_mut(key) {
                        if hs.extension(extension::UT_METADATA).unwrap_or(0) == 0 {
                            log::debug!(
                                "{}: its extension handshake offers no ut_metadata: \
                                 it cannot send the metadata",
                                c.addr
                            );
                        }
                        c.ext.update(&hs);
                        if let Some(v) = hs.client.clone() {
                            c.client = Some(v);
                        }
                    }
                    if let Some(m) = self.magnets.get_mut(&tid) {
                        m.fetch.on_handshake(key, &hs, now);
                    }
                }
                Err(e) => log::debug!("bad extension handshake: {e}"),
            },
            extension::UT_METADATA_ID => match MetadataMsg::parse(payload) {
                Ok(MetadataMsg::Request { piece }) => {
                    // We have nothing to serve yet.
                    if let Some(c) = self.conns.get_mut(key) {
                        if let Some(their_id) = c.ext.ut_metadata {
                            c.queue(&Message::Extended {
                                id: their_id,
                                payload: &MetadataMsg::Reject { piece }.to_bytes(),
                            });
                        }
                    }
                }
                Ok(msg) => {
                    if let Some(m) = self.magnets.get_mut(&tid) {
                        m.fetch.on_message(key, &msg, now);
                    }
                }
                Err(e) => log::debug!("bad ut_metadata message: {e}"),
            },
            _ => {}
        }
        self.pump_fetch(tid, now);
    }

    /// Carries out what a metadata fetch asked for.
    pub(super) fn pump_fetch(&mut self, tid: u32, now: Instant) {
        let Some(m) = self.magnets.get_mut(&tid) else {
            return;
        };
        let outs: Vec<FetchOut> = m.fetch.drain().collect();
        for out in outs {
            match out {
                FetchOut::Send {
                    peer,
                    ext_id,
                    payload,
                } => {
                    if let Some(c) = self.conns.get_mut(peer) {
                        c.queue(&Message::Extended {
                            id: ext_id,
                            payload: &payload,
                        });
                    }
                }
                FetchOut::Drop { peer, reason } => {
                    if let Some(c) = self.conns.get_mut(peer) {
                        log::info!("{}: dropped: metadata: {reason}", c.addr);
                        c.close(format!("metadata: {reason}"));
                    }
                }
                FetchOut::Blame { peer, reason } => {
                    let Some(ip) = self.conns.get(peer).map(|c| c.addr.ip()) else {
                        continue;
                    };
                    self.ban(ip, format!("metadata: {reason}"));
                }
                FetchOut::Done(info) => return self.complete_magnet(tid, info, now),
            }
        }
    }

    /// The info dictionary arrived (checked against the info-hash): save it
    /// as a .torrent and start the torrent with the magnet's peers.
    fn complete_magnet(&mut self, tid: u32, info: Vec<u8>, now: Instant) {
        let Some(m) = self.magnets.get_mut(&tid) else {
            return;
        };
        let builder = TorrentBuilder {
            trackers: m.trackers.clone(),
            ..TorrentBuilder::default()
        };
        let bytes = builder.to_bytes(crate::bencode::Value::Raw(info));
        let meta = match Torrent::from_bytes(&bytes) {
            Ok(meta) if meta.info_hash == m.info_hash => meta,
            Ok(_) => return log::error!("metadata does not match its info-hash"),
            Err(e) => {
                let msg = format!("the metadata peers sent is not usable: {e}");
                log::error!("magnet {}: {msg}", m.info_hash);
                m.error = Some(msg);
                return;
            }
        };
        let Some(m) = self.magnets.remove(&tid) else {
            return;
        };
        log::info!(
            "{}: metadata received ({} bytes), starting",
            meta.name,
            meta.info_bytes.len()
        );
        for c in self.conns.values_mut() {
            if c.torrent == Some(tid) {
                c.close("metadata complete: reconnecting for the data");
            }
        }
        let path = self.config.state_file(meta.info_hash, "torrent");
        // The .torrent first: a crash in between leaves both, and the
        // .torrent wins at the next start.
        let magnet_file = self.config.state_file(meta.info_hash, "magnet");
        m.alive.store(false, Ordering::Release);
        let lock = self.state_lock.clone();
        let new_tid = self.new_entry(meta, m.place, None);
        // The job holds the new torrent's storage: a removal waits for it.
        let hold = new_tid
            .as_ref()
            .ok()
            .and_then(|t| self.torrents.get(t))
            .map(|t| t.disk.clone());
        self.run_job(Ctx::Chore(Chore::SaveTorrentFile), move || {
            let _hold = hold;
            let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
            RunResult::Io(
                storage::write_atomic(&path, &bytes, 0o600)
                    .and_then(|()| storage::remove_files(&[magnet_file])),
            )
        });
        let new_tid = match new_tid {
            Ok(t) => t,
            Err(e) => {
                log::error!("magnet {}: {e}", m.info_hash);
                self.by_hash.remove(&m.info_hash);
                self.retire_announcer(tid, now);
                return;
            }
        };
        let has_peers = !m.manual_peers.is_empty();
        if let Some(t) = self.torrents.get_mut(&new_tid) {
            t.paused = m.paused;
            t.manual_peers = m.manual_peers;
        }
        if has_peers {
            self.save_peers(new_tid);
        }
        self.move_announcer(tid, new_tid);
        // A private torrent (BEP 27) keeps only peers from its trackers
        // and the user: none learned through PEX or the overlay.
        let private = self.torrents.get(&new_tid).is_some_and(|t| t.meta.private);
        for k in m.known.iter() {
            if private && !matches!(k.source, "tracker" | "manual" | "magnet") {
                continue;
            }
            self.add_known_peer(new_tid, k.addr, k.source, now);
        }
        self.probe(new_tid);
    }

    /// Timeouts of metadata requests and new connections, once a second.
    pub(super) fn tick_magnets(&mut self, now: Instant) {
        let tids: Vec<u32> = self.magnets.keys().copied().collect();
        for tid in tids {
            if let Some(m) = self.magnets.get_mut(&tid) {
                m.fetch.tick(now);
            }
            self.pump_fetch(tid, now);
            self.connect_magnet_peers(tid, now);
        }
    }

    /// A magnet's status for the API: state `metadata`, no pieces yet.
    pub(super) fn magnet_status(&self, tid: u32) -> Option<TorrentStatus> {
        let m = self.magnets.get(&tid)?;
        let peers = self
            .conns
            .values()
            .filter(|c| c.torrent == Some(tid) && c.state == ConnState::Active)
            .count();
        let (swarm_seeders, swarm_leechers) = self.swarm_counts(tid, Instant::now());
        Some(TorrentStatus {
            info_hash: m.info_hash,
            name: m.name.clone().unwrap_or_else(|| m.info_hash.to_hex()),
            state: if m.paused {
                TorrentState::Paused
            } else if m.error.is_some() {
                TorrentState::Error
            } else {
                TorrentState::Metadata
            },
            error: m.error.clone(),
            dir: m.place.dir().to_path_buf(),
            total_size: 0,
            have_bytes: 0,
            pieces: 0,
            pieces_have: 0,
            download_rate: 0,
            upload_rate: 0,
            downloaded: 0,
            uploaded: 0,
            peers: peers as u32,
            hash_failures: 0,
            pieces_downloaded: 0,
            pieces_resumed: 0,
            download_limit: 0,
            upload_limit: 0,
            tracker: self.tracker_summary(tid, Instant::now()),
            swarm_seeders,
            swarm_leechers,
        })
    }
}

/// Every peer is `host:port`.
fn check_peers(peers: &[String]) -> Result<(), ApiError> {
    for p in peers {
        if p.rsplit_once(':')
            .is_none_or(|(h, port)| h.is_empty() || port.parse::<u16>().is_err())
        {
            return Err(ApiError::BadRequest(format!("peer '{p}' is not host:port")));
        }
    }
    Ok(())
}
