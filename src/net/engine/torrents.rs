//! Torrent lifecycle on the net thread: loading from the state directory,
//! probing files, rechecking, starting the swarm, disk errors, and the
//! checkpoints that make verified pieces durable and recorded.

use super::*;

impl Engine {
    /// A write or read of piece data failed: stop downloading this torrent
    /// (keep seeding what is verified) and retry later.
    pub(super) fn disk_error(&mut self, tid: u32, e: &io::Error, now: Instant) {
        let retry = self.config.disk_retry;
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        let what = match e.raw_os_error() {
            _ if storage::is_refused(e) => "refused to leave the torrent's directory",
            Some(libc::ENOSPC) => "the disk is full",
            Some(libc::EACCES) | Some(libc::EPERM) => "permission denied",
            Some(libc::EROFS) => "the file system is read-only",
            Some(libc::ENOENT) => "the download directory is gone (is the drive mounted?)",
            _ => "disk error",
        };
        let msg = format!(
            "{what}: {e} (downloading paused; retrying in {}s)",
            retry.as_secs()
        );
        if t.error.as_deref() != Some(msg.as_str()) {
            log::error!("{}: {msg}", t.meta.name);
        }
        t.error = Some(msg);
        t.retry_at = Some(now + retry);
        if let Some(s) = t.swarm.as_mut() {
            s.set_download_enabled(false, now);
        }
    }

    // ----- torrents: loading, probing, checking -----

    /// A new torrent entry; its storage from the factory unless given.
    pub(super) fn new_entry(
        &mut self,
        meta: Torrent,
        place: DataDir,
        storage: Option<Arc<dyn Storage>>,
    ) -> Result<u32, String> {
        let storage = match storage {
            Some(s) => s,
            None => (self.config.storage_factory)(&meta, &place)
                .map_err(|e| format!("cannot open storage: {e}"))?,
        };
        let (n, lengths) = (meta.lengths.n_pieces(), meta.lengths);
        let disk = Arc::new(DiskTorrent::new(
            storage,
            meta.file_map.clone(),
            meta.lengths,
        ));
        let tid = self.next_tid;
        self.next_tid += 1;
        self.by_hash.insert(meta.info_hash, tid);
        if !meta.private {
            self.dht_torrent_nodes(&meta.nodes, Instant::now());
        }
        let mut pex = crate::swarm::pex::PeerExchange::new(meta.private);
        pex.add_own_addr(self.listen_addr);
        self.torrents.insert(
            tid,
            TorrentEntry {
                id: tid,
                meta: Arc::new(meta),
                disk,
                place,
                phase: Phase::Probing,
                paused: false,
                error: None,
                state_error: None,
                retry_at: None,
                swarm: None,
                resume_have: Bitfield::new(n),
                resume_sizes: Vec::new(),
                resume_mtimes: Vec::new(),
                resume_recheck: false,
                record_matches: false,
                down_limit: TokenBucket::new(0),
                up_limit: TokenBucket::new(0),
                journal: Vec::new(),
                check: None,
                known: PeerList::default(),
                manual_peers: Vec::new(),
                peers_saving: false,
                peers_dirty: false,
                checkpoint: Checkpoint::new(
                    lengths,
                    self.config.checkpoint_bytes,
                    self.config.checkpoint_interval,
                ),
                pieces_resumed: 0,
                writes_in_flight: 0,
                closed_transfer: Vec::new(),
                pex,
            },
        );
        Ok(tid)
    }

    pub(super) fn load(&mut self, loaded: LoadedTorrent) {
        let meta = match Torrent::from_bytes(&loaded.torrent_bytes) {
            Ok(m) => m,
            Err(e) => return log::error!("a torrent in the state directory does not load: {e}"),
        };
        let resume = loaded.resume.filter(|r| r.info_hash == meta.info_hash);
        let name = meta.name.clone();
        // The record's directory is checked again: one outside every
        // anchor now gets a storage that refuses everything, and the
        // torrent shows why (its probe fails with the reason).
        let default = DataDir::anchored_at(self.config.download_dir.clone());
        let (place, storage) = match &resume {
            None => match default {
                Ok(p) => (p, None),
                Err(e) => return log::error!("{name}: download directory: {e}"),
            },
            Some(r) => match self.place_of_record(&r.dir, r.anchor.as_deref(), r.local_anchor) {
                Ok(p) => (p, None),
                Err(why) => {
                    let place = DataDir::anchored_at(r.dir.clone())
                        .or(default)
                        .map_err(|e| log::error!("{name}: {e}"));
                    let Ok(place) = place else { return };
                    let n = meta.files.len();
                    let unplaced: Arc<dyn Storage> = Arc::new(storage::Unplaced::new(n, why));
                    (place, Some(unplaced))
                }
            },
        };
        let tid = match self.new_entry(meta, place, storage) {
            Ok(tid) => tid,
            Err(e) => return log::error!("{name}: {e}"),
        };
        let now = Instant::now();
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        let mut recheck = None;
        if let Some(r) = resume {
            recheck = Some(r.recheck);
            if let Some(bits) = Bitfield::from_bytes(&r.pieces, t.meta.lengths.n_pieces()) {
                t.resume_have = bits;
            }
            t.resume_sizes = r.file_sizes;
            t.resume_mtimes = r.file_mtimes;
            t.down_limit.set_rate(r.download_limit);
            t.up_limit.set_rate(r.upload_limit);
            t.paused = r.paused;
            t.manual_peers = r.peers;
        }
        // The peers file has them even when the record is damaged; it is
        // written again when the record lists peers it lacks.
        let file_behind = t.manual_peers.iter().any(|p| !loaded.peers.contains(p));
        let mut missing = false;
        for p in loaded.peers {
            if !t.manual_peers.contains(&p) && t.manual_peers.len() < resume::MAX_MANUAL_PEERS {
                t.manual_peers.push(p);
                missing = true;
            }
        }
        if !self.clean_start {
            t.journal = loaded.journal;
        }
        // Pieces a check found suspect and had not cleared: re-hashed
        // after any stop, clean or not.
        if let Some(bits) =
            recheck.and_then(|b| Bitfield::from_bytes(&b, t.meta.lengths.n_pieces()))
        {
            t.resume_recheck = bits.count() > 0;
            t.journal.extend(bits.ones());
        }
        let peers = t.manual_peers.clone();
        if missing {
            t.checkpoint.record_changed();
        }
        if file_behind {
            self.save_peers(tid);
        }
        for p in peers {
            self.resolve_peer(tid, p, "manual", now);
        }
        self.probe(tid);
    }

    /// Reads file sizes on a worker to decide what to recheck.
    pub(super) fn probe(&mut self, tid: u32) {
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        t.phase = Phase::Probing;
        let disk = t.disk.clone();
        self.run_job(Ctx::Probe { tid }, move || {
            let st = &disk.storage;
            // A refusal (a link where a directory was) stops the torrent;
            // other errors read as a missing file.
            let file = |i: usize| -> io::Result<(Option<u64>, Option<i64>)> {
                let len = match st.file_len(i) {
                    Err(e) if storage::is_refused(&e) => return Err(e),
                    r => r.ok().flatten(),
                };
                Ok((len, st.file_mtime(i).ok().flatten()))
            };
            let files = st
                .check_place()
                .and_then(|()| (0..st.n_files()).map(file).collect());
            RunResult::Files(files)
        });
    }

    /// The probe found the torrent's directory refused (a link on the way
    /// from its anchor, or a record naming a directory outside every
    /// anchor): stopped with the reason, nothing read or written; retried
    /// like a disk error.
    pub(super) fn on_probe_refused(&mut self, tid: u32, e: &io::Error, now: Instant) {
        let retry = self.config.disk_retry;
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        let msg = format!(
            "the data cannot be used: {e} (nothing is read or written there; retrying in {}s)",
            retry.as_secs()
        );
        t.stop_until_retry(msg, now + retry);
    }

    pub(super) fn on_probe(
        &mut self,
        tid: u32,
        files: Vec<(Option<u64>, Option<i64>)>,
        now: Instant,
    ) {
        let clean = self.clean_start;
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        let sizes: Vec<Option<u64>> = files.iter().map(|(s, _)| *s).collect();
        let meta = t.meta.clone();
        let lengths = meta.lengths;
        let mut have = t.resume_have.clone();
        let any_file = sizes.iter().any(|s| s.is_some());
        if have.count() > 0 && !any_file {
            let msg = format!(
                "no data found at {} although {} pieces were verified before (is the drive mounted?); not downloading again",
                t.place.dir().join(&meta.name).display(),
                have.count()
            );
            t.stop_until_retry(msg, now + self.config.disk_retry);
            return;
        }
        let mut to_check: Vec<u32> = Vec::new();
        // Files that are missing, shorter than the data we had, shorter than
        // when the resume record was written, or (after a clean stop, when
        // nothing of ours wrote to them since) modified: recheck their pieces.
        for (i, size) in sizes.iter().enumerate() {
            let recorded = t.resume_sizes.get(i).copied().unwrap_or(0);
            let recorded_mtime = t.resume_mtimes.get(i).copied().unwrap_or(0);
            let touched =
                clean && recorded_mtime != 0 && files[i].1.is_some_and(|m| m != recorded_mtime);
            let suspect = match size {
                None => meta.files[i].length > 0,
                Some(s) => *s < recorded || (touched && *s > 0),
            };
            if suspect && t.resume_have.count() > 0 {
                log::warn!(
                    "{}: {} changed while peerlet was stopped; rechecking it",
                    meta.name,
                    meta.relative_path(i).join("/")
                );
            }
            if suspect {
                for p in meta.file_map.pieces_of_file(&lengths, i) {
                    if have.clear(p) {
                        to_check.push(p);
                    }
                }
            }
        }
        if t.resume_have.count() == 0 && t.resume_sizes.is_empty() && any_file {
            // A new torrent with data already there: check every piece whose files exist.
            for p in lengths.pieces() {
                let start = lengths.piece_offset(p);
                let exists = meta
                    .file_map
                    .slices(start, u64::from(lengths.piece_size(p)))
                    .all(|s| sizes[s.file_idx].is_some_and(|len| len >= s.offset + s.len));
                if exists {
                    to_check.push(p.get());
                }
            }
        }
        // After an unclean stop, pieces verified since the last checkpoint are re-hashed.
        for &p in &t.journal {
            if lengths.piece(p).is_some() && !have.get(p) && !to_check.contains(&p) {
                to_check.push(p);
            }
        }
        t.journal.clear();
        // Every file as the record has it (sizes and times as `save_resume`
        // writes them) and no recorded piece dropped: no need to write the
        // record again at start (10,000 torrents would cost 20,000 fsyncs,
        // and SD cards wear).
        // Pieces the record lists that are now suspect: the record must
        // stop vouching for them before the check (a crash in the middle
        // of it, or while it waits to retry after a read error, would
        // otherwise trust them at the next start, where only a clean stop
        // compares modification times).
        let cleared = have != t.resume_have;
        t.record_matches = !t.resume_recheck
            && !t.resume_sizes.is_empty()
            && have == t.resume_have
            && files.len() == t.resume_sizes.len()
            && files.len() == t.resume_mtimes.len()
            && files
                .iter()
                .zip(&t.resume_sizes)
                .all(|(f, &s)| f.0.unwrap_or(0) == s)
            && files
                .iter()
                .zip(&t.resume_mtimes)
                .all(|(f, &m)| f.1.unwrap_or(0) == m);
        t.resume_have = have;
        to_check.sort_unstable();
        to_check.dedup();
        if to_check.is_empty() {
            self.start_swarm(tid, Vec::new(), now);
        } else {
            log::info!("{}: checking {} pieces on disk", meta.name, to_check.len());
            t.phase = Phase::Checking;
            if cleared {
                // The record as it is, without the suspect pieces, and
                // with every piece to check listed for a re-hash.
                let mut record = t.resume_record();
                record.pieces = t.resume_have.as_bytes().to_vec();
                let mut recheck = Bitfield::new(lengths.n_pieces());
                for &p in &to_check {
                    recheck.set(p);
                }
                record.recheck = recheck.as_bytes().to_vec();
                t.resume_recheck = true;
                let path = self.config.state_file(meta.info_hash, "resume");
                let hold = t.disk.clone();
                t.check = Some(Check {
                    pieces: to_check,
                    next: 0,
                    in_flight: 0,
                    good: Vec::new(),
                    failed: None,
                });
                self.run_job(Ctx::ClearSuspect { tid }, move || {
                    let _hold = hold;
                    RunResult::Io(storage::write_atomic(&path, &record.encode(), 0o600))
                });
                return;
            }
            t.check = Some(Check {
                pieces: to_check,
                next: 0,
                in_flight: 0,
                good: Vec::new(),
                failed: None,
            });
            self.pump_check(tid);
        }
    }

    pub(super) fn pump_check(&mut self, tid: u32) {
        let window = (self.config.workers * 2).max(2);
        loop {
            let Some(t) = self.torrents.get_mut(&tid) else {
                return;
            };
            let Some(c) = t.check.as_mut() else { return };
            if c.in_flight >= window || c.next >= c.pieces.len() || c.failed.is_some() {
                return;
            }
            let p = c.pieces[c.next];
            c.next += 1;
            c.in_flight += 1;
            let Some(piece) = t.meta.lengths.piece(p) else {
                continue;
            };
            let disk = t.disk.clone();
            self.submit(
                |tag| Job::HashPiece {
                    tag,
                    torrent: disk,
                    piece,
                },
                Ctx::Check { tid },
                Priority::Background,
            );
        }
    }

    pub(super) fn on_check_result(
        &mut self,
        tid: u32,
        piece: PieceIdx,
        result: io::Result<Digest>,
        now: Instant,
    ) {
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        let expected = t.meta.piece_hash(piece);
        let Some(c) = t.check.as_mut() else { return };
        c.in_flight = c.in_flight.saturating_sub(1);
        match result {
            Ok(d) if d == expected => c.good.push(piece.get()),
            Ok(_) => {}
            // The data is not there (a missing or short file): the piece
            // is missing, the download fills it.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof
                ) => {}
            // Anything else says nothing about the data: counting the
            // piece as missing would download over good data (10,000
            // torrents past the descriptor limit did, with no error shown).
            Err(e) => {
                c.failed.get_or_insert(e);
            }
        }
        if c.in_flight == 0 && c.failed.is_some() {
            let e = c
                .failed
                .take()
                .unwrap_or_else(|| io::Error::other("check failed"));
            // The retry's probe checks these again (the files look as
            // before by then, so it would not pick them itself).
            t.journal = std::mem::take(&mut c.pieces);
            t.check = None;
            let retry = self.config.disk_retry;
            let msg = format!(
                "cannot read the data to check it: {e} (retrying in {}s)",
                retry.as_secs()
            );
            t.stop_until_retry(msg, now + retry);
            return;
        }
        if c.in_flight == 0 && c.next >= c.pieces.len() {
            let good = std::mem::take(&mut c.good);
            t.check = None;
            self.start_swarm(tid, good, now);
        } else {
            self.pump_check(tid);
        }
    }

    /// Starts transfers: `have` = trusted resume pieces + `found` by recheck.
    pub(super) fn start_swarm(&mut self, tid: u32, found: Vec<u32>, now: Instant) {
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        let mut have = t.resume_have.clone();
        // The record is written again unless the probe found it true;
        // pieces found by the check reach it at the next checkpoint.
        t.checkpoint.begin(t.resume_have.clone(), t.record_matches);
        // The record written from now on lists nothing to re-hash.
        t.resume_recheck = false;
        for &p in &found {
            if have.set(p) {
                // Found on disk but not recorded as durable: record at the
                // next checkpoint, and journal it like a downloaded piece so
                // that a crash before then re-hashes it (the resume record
                // written below already has the file sizes, and the probe
                // would otherwise trust its empty piece list).
                t.checkpoint.verified(p, now);
            }
        }
        t.pieces_resumed = have.count();
        let mut config = self.config.swarm.clone();
        // Set for real by `rebalance_downloads` below.
        config.max_in_flight_bytes = self.caps.downloads;
        let seed = crate::rand::seed(tid.into());
        let mut swarm = Swarm::new(config, t.meta.lengths, have, seed);
        if t.paused || t.error.is_some() {
            swarm.set_download_enabled(false, now);
        }
        if swarm.is_complete() {
            swarm.set_download_enabled(false, now);
        }
        log::info!(
            "{}: {} of {} pieces verified, {}",
            t.meta.name,
            swarm.have().count(),
            t.meta.lengths.n_pieces(),
            if swarm.is_complete() {
                "seeding"
            } else {
                "downloading"
            }
        );
        // Only a torrent that downloads changes the shares (and a walk over
        // every torrent per start is O(n^2) for 10,000 seeding at start);
        // the tick rebalances anyway within a second.
        let downloads = swarm.download_enabled() && !swarm.is_complete();
        t.swarm = Some(swarm);
        t.phase = Phase::Running;
        if downloads {
            self.rebalance_downloads();
        }
        self.save_resume(tid);
        self.connect_peers(tid, now);
        self.start_announcer(tid, now);
    }

    /// Divides the download share of the memory budget, less what control
    /// API requests borrow from it now, among the torrents that download
    /// now (when one starts, and every second as torrents finish, pause or
    /// go and requests take and give back).
    pub(super) fn rebalance_downloads(&mut self) {
        let downloading = self
            .torrents
            .values()
            .filter_map(|t| t.swarm.as_ref())
            .filter(|s| s.download_enabled() && !s.is_complete())
            .count();
        let lent = self.config.api_memory.as_ref().map_or(0, |b| b.held());
        let share = self.caps.torrent_downloads(downloading, lent);
        for s in self.torrents.values_mut().filter_map(|t| t.swarm.as_mut()) {
            s.set_max_in_flight(share);
        }
    }

    /// Syncs verified data and records it, when enough has accumulated
    /// (`force`: any pending piece), or writes a record that is behind.
    pub(super) fn checkpoint(&mut self, tid: u32, now: Instant, force: bool) {
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        match t.checkpoint.poll(now, force) {
            Due::Nothing => {}
            Due::Record => self.save_resume(tid),
            Due::Sync(_) => {
                let disk = t.disk.clone();
                self.submit(
                    |tag| Job::Sync { tag, torrent: disk },
                    Ctx::Sync { tid },
                    Priority::Live,
                );
            }
        }
    }

    /// Reads back the pieces a failed sync made suspect (each is written
    /// again when it still passes its hash; see `Checkpoint`).
    pub(super) fn reverify(&mut self, tid: u32, now: Instant) {
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        let Some(pieces) = t.checkpoint.take_suspect() else {
            return;
        };
        log::warn!(
            "{}: reading back {} pieces a failed sync covered",
            t.meta.name,
            pieces.len()
        );
        for p in pieces {
            let Some(t) = self.torrents.get_mut(&tid) else {
                return;
            };
            let Some(piece) = t.meta.lengths.piece(p) else {
                t.checkpoint.reverified(p, false, now);
                continue;
            };
            let (disk, expected) = (t.disk.clone(), t.meta.piece_hash(piece));
            self.submit(
                |tag| Job::Reverify {
                    tag,
                    torrent: disk,
                    piece,
                    expected,
                },
                Ctx::Reverify { tid },
                Priority::Live,
            );
        }
    }

    /// A suspect piece was read back: it waits for the next sync, or it is
    /// lost and downloaded again.
    pub(super) fn on_reverified(
        &mut self,
        tid: u32,
        piece: PieceIdx,
        result: io::Result<bool>,
        now: Instant,
    ) {
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        let ok = matches!(result, Ok(true));
        t.checkpoint.reverified(piece.get(), ok, now);
        if ok {
            return;
        }
        match result {
            Err(e) => log::warn!(
                "{}: cannot read back piece {piece} after a failed sync ({e}); downloading it again",
                t.meta.name
            ),
            _ => log::warn!(
                "{}: piece {piece} did not reach the disk (a sync failed); downloading it again",
                t.meta.name
            ),
        }
        if let Some(s) = t.swarm.as_mut() {
            s.lose_piece(piece, now);
        }
        self.apply_swarm(tid, now);
    }

    /// Writes the resume record if it is behind (and none is being written).
    pub(super) fn save_resume(&mut self, tid: u32) {
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        if t.phase != Phase::Running
            || !self.state_health.may_write(Instant::now())
            || !t.checkpoint.start_record()
        {
            return;
        }
        // Record current file sizes with the pieces (sizes only grow while we download).
        let disk = t.disk.clone();
        let mut record = t.resume_record();
        let path = self.config.state_file(t.meta.info_hash, "resume");
        self.run_job(Ctx::Save { tid }, move || {
            record.file_sizes = (0..disk.storage.n_files())
                .map(|i| disk.storage.file_len(i).ok().flatten().unwrap_or(0))
                .collect();
            record.file_mtimes = (0..disk.storage.n_files())
                .map(|i| disk.storage.file_mtime(i).ok().flatten().unwrap_or(0))
                .collect();
            RunResult::Io(storage::write_atomic(&path, &record.encode(), 0o600))
        });
    }

    /// Writes `<hex>.peers` (the peers given by hand), one write at a time.
    pub(super) fn save_peers(&mut self, tid: u32) {
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        if t.peers_saving {
            t.peers_dirty = true;
            return;
        }
        t.peers_saving = true;
        t.peers_dirty = false;
        let record = resume::ManualPeers {
            peers: t.manual_peers.clone(),
        };
        let path = self.config.state_file(t.meta.info_hash, "peers");
        // Holds the storage: a removal waits for the write.
        let hold = t.disk.clone();
        self.run_job(Ctx::SavePeers { tid }, move || {
            let _hold = hold;
            RunResult::Io(storage::write_atomic(&path, &record.encode(), 0o600))
        });
    }

    pub(super) fn on_peers_saved(&mut self, tid: u32, result: io::Result<()>, now: Instant) {
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        t.peers_saving = false;
        let ok = result.is_ok();
        t.peers_dirty |= !ok;
        self.state_written(Some(tid), StateWrite::Peers, result, now);
        if ok {
            self.retry_peers(tid, now);
        }
    }

    /// Writes the peers file again if it is behind (after a failure, once
    /// the state directory's back-off allows).
    pub(super) fn retry_peers(&mut self, tid: u32, now: Instant) {
        let due = self
            .torrents
            .get(&tid)
            .is_some_and(|t| t.peers_dirty && !t.peers_saving);
        if due && self.state_health.may_write(now) {
            self.save_peers(tid);
        }
    }

    pub(super) fn flush_journal(&mut self, tid: u32) {
        let Some(t) = self.torrents.get_mut(&tid) else {
            return;
        };
        if !self.state_health.may_write(Instant::now()) {
            return;
        }
        let Some(pieces) = t.checkpoint.take_journal() else {
            return;
        };
        let bytes = resume::encode_journal(&pieces);
        let path = self.config.state_file(t.meta.info_hash, "journal");
        // Holds the storage: a removal waits for the append.
        let hold = t.disk.clone();
        self.run_job(Ctx::Journal { tid, pieces }, move || {
            let _hold = hold;
            RunResult::Io(storage::append_file(&path, &bytes))
        });
    }
}
