//! Control commands on the net thread: add, remove, pause, limits,
//! status and node status for the API.

use super::*;

impl Engine {
    // ----- control commands -----

    pub(super) fn drain_commands(&mut self, now: Instant) {
        while let Ok(cmd) = self.commands.try_recv() {
            self.on_command(cmd, now);
        }
        // Journal appends batch per loop turn.
        let tids: Vec<u32> = self
            .torrents
            .iter()
            .filter(|(_, t)| t.checkpoint.journal_pending())
            .map(|(k, _)| *k)
            .collect();
        for tid in tids {
            self.flush_journal(tid);
        }
    }

    pub(super) fn on_command(&mut self, cmd: Command, now: Instant) {
        if self.shutdown.is_some() {
            if let Command::Shutdown { reply } = cmd {
                if let Some(s) = self.shutdown.as_mut() {
                    s.replies.push(reply);
                }
            }
            return;
        }
        match cmd {
            Command::Add {
                source,
                dir,
                peers,
                paused,
                reply,
            } => {
                let _ = reply.send(self.cmd_add(source, dir, peers, paused, now));
            }
            Command::List { reply } => {
                let mut list: Vec<TorrentStatus> = self
                    .torrents
                    .keys()
                    .copied()
                    .collect::<Vec<_>>()
                    .into_iter()
                    .filter_map(|tid| self.status(tid, now))
                    .collect();
                list.extend(
                    self.magnets
                        .keys()
                        .filter_map(|&tid| self.magnet_status(tid)),
                );
                crate::sort::sort_by(&mut list, |a, b| a.name.cmp(&b.name));
                let _ = reply.send(Ok(list));
            }
            Command::Status { info_hash, reply } => {
                let _ = reply.send(self.detail(info_hash, now));
            }
            Command::Remove {
                info_hash,
                delete_data,
                reply,
            } => {
                self.cmd_remove(info_hash, delete_data, reply, now);
            }
            Command::Pause { info_hash, reply } => {
                let _ = reply.send(self.cmd_pause(info_hash, true, now));
            }
            Command::Resume { info_hash, reply } => {
                let _ = reply.send(self.cmd_pause(info_hash, false, now));
            }
            Command::AddPeers {
                info_hash,
                peers,
                reply,
            } => {
                let res = match self.by_hash.get(&info_hash).copied() {
                    None => Err(ApiError::NotFound(format!("no torrent {info_hash}"))),
                    Some(tid) => self.add_peers_any(tid, peers, now),
                };
                let _ = reply.send(res);
            }
            Command::SetLimits {
                info_hash,
                download,
                upload,
                reply,
            } => {
                let res = match self
                    .by_hash
                    .get(&info_hash)
                    .copied()
                    .and_then(|tid| self.torrents.get_mut(&tid))
                {
                    None => Err(ApiError::NotFound(format!("no torrent {info_hash}"))),
                    Some(t) => {
                        if let Some(d) = download {
                            t.down_limit.set_rate(d);
                        }
                        if let Some(u) = upload {
                            t.up_limit.set_rate(u);
                        }
                        t.checkpoint.record_changed();
                        let tid = t.id;
                        self.save_resume(tid);
                        Ok(())
                    }
                };
                let _ = reply.send(res);
            }
            Command::Node { reply } => {
                let _ = reply.send(Ok(self.node_status(now)));
            }
            Command::Search {
                query,
                timeout,
                reply,
            } => {
                let _ = reply.send(self.cmd_search(query, timeout, now));
            }
            Command::SearchResults { id, reply } => {
                let _ = reply.send(self.cmd_search_results(id, now));
            }
            Command::Nodes { reply } => {
                let _ = reply.send(self.overlay_status(now));
            }
            Command::Dht { reply } => {
                let _ = reply.send(self.dht_status(now));
            }
            Command::Bans { reply } => {
                self.bans.expire(now);
                let _ = reply.send(Ok(self.ban_list(now)));
            }
            Command::Metrics { reply } => {
                let _ = reply.send(Ok(self.metrics(now)));
            }
            Command::Reconfigure {
                download_limit,
                upload_limit,
                add_bootstrap,
                reply,
            } => {
                self.cmd_reconfigure(download_limit, upload_limit, add_bootstrap, now);
                let _ = reply.send(Ok(()));
            }
            Command::Shutdown { reply } => self.begin_shutdown(Some(reply), now),
        }
    }

    pub(super) fn add_manual_peers(
        &mut self,
        tid: u32,
        peers: Vec<String>,
        now: Instant,
    ) -> Result<(), ApiError> {
        for p in &peers {
            if p.rsplit_once(':')
                .is_none_or(|(h, port)| h.is_empty() || port.parse::<u16>().is_err())
            {
                return Err(ApiError::BadRequest(format!("peer '{p}' is not host:port")));
            }
        }
        let mut changed = false;
        for p in peers {
            if let Some(t) = self.torrents.get_mut(&tid) {
                if !t.manual_peers.contains(&p)
                    && t.manual_peers.len() < crate::resume::MAX_MANUAL_PEERS
                {
                    t.manual_peers.push(p.clone());
                    t.checkpoint.record_changed();
                    changed = true;
                }
            }
            self.resolve_peer(tid, p, "manual", now);
        }
        self.connect_peers(tid, now);
        if changed {
            self.save_peers(tid);
        }
        self.save_resume(tid);
        Ok(())
    }

    pub(super) fn cmd_add(
        &mut self,
        source: AddSource,
        dir: Option<DataDir>,
        peers: Vec<String>,
        paused: bool,
        now: Instant,
    ) -> Result<AddResult, ApiError> {
        let bytes = match source {
            AddSource::Torrent(b) => b,
            AddSource::Magnet(link) => {
                let res = self.add_magnet(&link, dir, peers, paused, now)?;
                if let Some(&tid) = self.by_hash.get(&res.info_hash) {
                    // New, or known with more peers: (re)write its record.
                    self.save_magnet(tid);
                }
                return Ok(res);
            }
        };
        let meta = Torrent::from_bytes(&bytes).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        self.check_not_removing(meta.info_hash)?;
        if let Some(&tid) = self.by_hash.get(&meta.info_hash) {
            let name = meta.name.clone();
            self.add_manual_peers(tid, peers, now)?;
            return Ok(AddResult {
                info_hash: meta.info_hash,
                name,
                added: false,
            });
        }
        let place = self.place_of(dir)?;
        let info_hash = meta.info_hash;
        let name = meta.name.clone();
        let tid = self
            .new_entry(meta, place, None)
            .map_err(ApiError::Internal)?;
        if let Some(t) = self.torrents.get_mut(&tid) {
            t.paused = paused;
        }
        log::info!("added {name} ({info_hash})");
        // Keep the metainfo in the state directory (written once).
        let path = self.config.state_file(info_hash, "torrent");
        // The job holds the torrent's storage: a removal waits for it.
        let hold = self.torrents.get(&tid).map(|t| t.disk.clone());
        self.run_job(Ctx::Chore(Chore::SaveTorrentFile), move || {
            let _hold = hold;
            RunResult::Io(storage::write_atomic(&path, &bytes, 0o600))
        });
        self.add_manual_peers(tid, peers, now)?;
        self.probe(tid);
        Ok(AddResult {
            info_hash,
            name,
            added: true,
        })
    }

    /// Where a new torrent's data goes: the place given (checked by the
    /// control server) or the download directory, its own anchor.
    pub(super) fn place_of(&self, dir: Option<DataDir>) -> Result<DataDir, ApiError> {
        match dir {
            Some(d) => Ok(d),
            None => DataDir::anchored_at(self.config.download_dir.clone())
                .map_err(|e| ApiError::BadRequest(format!("download directory: {e}"))),
        }
    }

    /// The place a resume or magnet record names, checked again at load:
    /// the anchor must be the download directory or an allowed one still
    /// (or one the local user named when adding), and the directory lie
    /// at or below it as written. A record without an anchor (written
    /// before anchors) gets the deepest such directory holding its dir.
    pub(super) fn place_of_record(
        &self,
        dir: &Path,
        anchor: Option<&Path>,
        local: bool,
    ) -> Result<DataDir, String> {
        let anchors: Vec<&Path> = std::iter::once(self.config.download_dir.as_path())
            .chain(self.config.anchors.iter().map(PathBuf::as_path))
            .collect();
        let known = |a: &Path| anchors.contains(&a);
        let list = || {
            anchors
                .iter()
                .map(|a| a.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let anchor = match anchor {
            Some(a) if local || known(a) => a.to_path_buf(),
            Some(a) => {
                return Err(format!(
                    "its directory {} lies in {}, which is neither the download directory nor an allowed directory now ({}); not used",
                    dir.display(),
                    a.display(),
                    list()
                ))
            }
            None => anchors
                .iter()
                .filter(|a| dir.starts_with(a))
                .max_by_key(|a| a.components().count())
                .map(|a| a.to_path_buf())
                .ok_or_else(|| {
                    format!(
                        "its directory {} is outside the download directory and the allowed directories ({}); not used",
                        dir.display(),
                        list()
                    )
                })?,
        };
        DataDir::new(anchor, dir.to_path_buf())
            .map(|p| p.chosen_locally(local))
            .map_err(|e| format!("its directory: {e}; not used"))
    }

    /// Takes the torrent out at once; its files are deleted by a job (see
    /// [`Removal`]) and `reply` answered when that is done.
    pub(super) fn cmd_remove(
        &mut self,
        info_hash: InfoHash,
        delete_data: bool,
        reply: api::Reply<()>,
        now: Instant,
    ) {
        let Some(tid) = self.by_hash.remove(&info_hash) else {
            let _ = reply.send(Err(ApiError::NotFound(format!("no torrent {info_hash}"))));
            return;
        };
        for c in self.conns.values_mut() {
            if c.torrent == Some(tid) {
                c.close("torrent removed");
            }
        }
        self.retire_announcer(tid, now);
        if let Some(m) = self.magnets.remove(&tid) {
            log::info!(
                "removed magnet {} ({info_hash})",
                m.name.unwrap_or_default()
            );
            let file = self.config.state_file(info_hash, "magnet");
            m.alive.store(false, std::sync::atomic::Ordering::Release);
            let lock = self.state_lock.clone();
            self.queue_removal(
                info_hash,
                None,
                Box::new(move || {
                    let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
                    storage::remove_files(&[file])
                }),
                reply,
                now,
            );
            return;
        }
        let Some(t) = self.torrents.remove(&tid) else {
            let _ = reply.send(Ok(()));
            return;
        };
        self.totals.retire_swarm(t.swarm.as_ref());
        let files: Vec<PathBuf> = ["torrent", "resume", "journal", "magnet", "peers"]
            .iter()
            .map(|ext| self.config.state_file(info_hash, ext))
            .collect();
        let data: Option<(DataDir, Vec<Vec<String>>)> = delete_data.then(|| {
            (
                t.place.clone(),
                (0..t.meta.files.len())
                    .map(|i| t.meta.relative_path(i))
                    .collect(),
            )
        });
        log::info!(
            "removed {} ({info_hash}){}",
            t.meta.name,
            if delete_data { " and its data" } else { "" }
        );
        let lock = self.state_lock.clone();
        self.queue_removal(
            info_hash,
            Some(t.disk),
            Box::new(move || {
                // After a magnet's .torrent save (which holds the lock).
                let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
                let mut res = storage::remove_files(&files);
                if let Some((place, relative)) = data {
                    res = res.and(storage::remove_torrent_data(&place, &relative));
                }
                res
            }),
            reply,
            now,
        );
    }

    fn queue_removal(
        &mut self,
        info_hash: InfoHash,
        disk: Option<Arc<DiskTorrent>>,
        work: Box<dyn FnOnce() -> io::Result<()> + Send>,
        reply: api::Reply<()>,
        now: Instant,
    ) {
        let id = self.next_removal;
        self.next_removal += 1;
        self.removals.push(Removal {
            id,
            info_hash,
            disk,
            work: Some(work),
            reply,
            since: now,
        });
        self.pump_removals(now);
    }

    /// Starts the deletions whose torrent no job holds any more (or that
    /// waited long enough: [`REMOVAL_WAIT`], within the shutdown's
    /// deadline).
    pub(super) fn pump_removals(&mut self, now: Instant) {
        let mut ready = Vec::new();
        for r in &mut self.removals {
            if r.work.is_none() {
                continue;
            }
            let idle = r.disk.as_ref().is_none_or(|d| Arc::strong_count(d) == 1);
            let waited = now.saturating_duration_since(r.since) >= REMOVAL_WAIT;
            if idle || waited {
                if !idle && waited {
                    log::warn!(
                        "{}: deleting its files although its disk jobs have not finished after {}s",
                        r.info_hash,
                        REMOVAL_WAIT.as_secs()
                    );
                }
                r.disk = None;
                if let Some(work) = r.work.take() {
                    ready.push((r.id, work));
                }
            }
        }
        for (id, work) in ready {
            self.run_job(Ctx::Remove { id }, move || RunResult::Io(work()));
        }
    }

    /// A deletion is done: answer whoever asked for the removal.
    pub(super) fn on_removed(&mut self, id: u64, result: io::Result<()>) {
        let Some(at) = self.removals.iter().position(|r| r.id == id) else {
            return;
        };
        let r = self.removals.swap_remove(at);
        let answer = result.map_err(|e| {
            log::warn!("removing {}: {e}", r.info_hash);
            ApiError::Internal(format!("removed, but deleting its files failed: {e}"))
        });
        let _ = r.reply.send(answer);
    }

    /// An add of a torrent whose removal is not finished.
    pub(super) fn check_not_removing(&self, info_hash: InfoHash) -> Result<(), ApiError> {
        if self.removals.iter().any(|r| r.info_hash == info_hash) {
            return Err(ApiError::Unavailable(format!(
                "{info_hash} is still being removed; try again in a moment"
            )));
        }
        Ok(())
    }

    pub(super) fn cmd_pause(
        &mut self,
        info_hash: InfoHash,
        pause: bool,
        now: Instant,
    ) -> Result<(), ApiError> {
        let tid = *self
            .by_hash
            .get(&info_hash)
            .ok_or_else(|| ApiError::NotFound(format!("no torrent {info_hash}")))?;
        if let Some(m) = self.magnets.get_mut(&tid) {
            m.paused = pause;
            if pause {
                for c in self.conns.values_mut() {
                    if c.torrent == Some(tid) {
                        c.close("torrent paused");
                    }
                }
                self.pause_announcer(tid, now);
            } else {
                m.error = None;
                m.known.retry_all(now);
                self.connect_magnet_peers(tid, now);
                self.start_announcer(tid, now);
            }
            self.save_magnet(tid);
            return Ok(());
        }
        let Some(t) = self.torrents.get_mut(&tid) else {
            return Ok(());
        };
        // Resuming a torrent stopped by an error retries at once, paused or not.
        if t.paused == pause && (pause || t.error.is_none()) {
            return Ok(());
        }
        t.paused = pause;
        t.checkpoint.record_changed();
        if pause {
            if let Some(s) = t.swarm.as_mut() {
                s.set_download_enabled(false, now);
            }
            for c in self.conns.values_mut() {
                if c.torrent == Some(tid) {
                    c.close("torrent paused");
                }
            }
            self.pause_announcer(tid, now);
        } else {
            t.error = None;
            t.retry_at = None;
            t.known.retry_all(now);
            match t.phase {
                Phase::Stopped => self.probe(tid),
                Phase::Running => {
                    if let Some(s) = t.swarm.as_mut() {
                        s.set_download_enabled(true, now);
                    }
                    self.start_announcer(tid, now);
                }
                _ => {}
            }
        }
        self.apply_swarm(tid, now);
        self.save_resume(tid);
        self.connect_peers(tid, now);
        Ok(())
    }

    pub(super) fn status(&mut self, tid: u32, now: Instant) -> Option<TorrentStatus> {
        let tracker = self.tracker_summary(tid, now);
        let (swarm_seeders, swarm_leechers) = self.swarm_counts(tid, now);
        let t = self.torrents.get_mut(&tid)?;
        let state = t.api_state();
        let (have_bytes, pieces_have, down, up, stats, peers) = match t.swarm.as_mut() {
            Some(s) => (
                s.have_bytes(),
                s.have().count(),
                s.down.per_second(now),
                s.up.per_second(now),
                s.stats.clone(),
                s.n_peers() as u32,
            ),
            None => (0, 0, 0, 0, Default::default(), 0),
        };
        let error = t.error.clone().or_else(|| t.state_error.clone());
        Some(TorrentStatus {
            info_hash: t.meta.info_hash,
            name: t.meta.name.clone(),
            state,
            error,
            dir: t.place.dir().to_path_buf(),
            total_size: t.meta.total_length(),
            have_bytes,
            pieces: t.meta.lengths.n_pieces(),
            pieces_have,
            download_rate: down,
            upload_rate: up,
            downloaded: stats.downloaded,
            uploaded: stats.uploaded,
            peers,
            hash_failures: stats.hash_failures,
            pieces_downloaded: stats.pieces_downloaded,
            pieces_resumed: t.pieces_resumed,
            download_limit: t.down_limit.rate(),
            upload_limit: t.up_limit.rate(),
            tracker,
            swarm_seeders,
            swarm_leechers,
        })
    }

    pub(super) fn detail(
        &mut self,
        info_hash: InfoHash,
        now: Instant,
    ) -> Result<TorrentDetail, ApiError> {
        let tid = *self
            .by_hash
            .get(&info_hash)
            .ok_or_else(|| ApiError::NotFound(format!("no torrent {info_hash}")))?;
        if let Some(status) = self.magnet_status(tid) {
            let magnet = crate::metainfo::Magnet {
                info_hash,
                name: self.magnets.get(&tid).and_then(|m| m.name.clone()),
                trackers: self
                    .magnets
                    .get(&tid)
                    .map(|m| m.trackers.clone())
                    .unwrap_or_default(),
                peers: Vec::new(),
            };
            return Ok(TorrentDetail {
                status,
                piece_length: 0,
                private: false,
                magnet: magnet.to_string(),
                peers: Vec::new(),
                files: Vec::new(),
                trackers: self.tracker_infos(tid, now),
                sources: Vec::new(),
            });
        }
        let status = self
            .status(tid, now)
            .ok_or_else(|| ApiError::NotFound(format!("no torrent {info_hash}")))?;
        let conns = &self.conns;
        let Some(t) = self.torrents.get_mut(&tid) else {
            return Err(ApiError::NotFound(info_hash.to_string()));
        };
        let meta = t.meta.clone();
        let mut peers = Vec::new();
        let mut files = Vec::new();
        if let Some(s) = t.swarm.as_mut() {
            for p in s.peer_infos(now) {
                let c = conns.get(p.key);
                peers.push(PeerStatus {
                    addr: p.addr.to_string(),
                    source: c.map(|c| c.source).unwrap_or("incoming"),
                    client: c
                        .map(|c| c.client.clone().unwrap_or_else(|| client_name(&c.peer_id)))
                        .unwrap_or_default(),
                    download_rate: p.download_rate,
                    upload_rate: p.upload_rate,
                    downloaded: p.downloaded,
                    uploaded: p.uploaded,
                    progress: p.progress,
                    flags: p.flags,
                });
            }
        }
        let have = t.swarm.as_ref().map(|s| s.have().clone());
        for i in 0..meta.files.len() {
            let mut have_bytes = 0;
            if let Some(have) = &have {
                let start = meta.file_map.file_offset(i);
                let end = start + meta.files[i].length;
                for p in meta.file_map.pieces_of_file(&meta.lengths, i) {
                    if have.get(p) {
                        let Some(pi) = meta.lengths.piece(p) else {
                            continue;
                        };
                        let ps = meta.lengths.piece_offset(pi);
                        let pe = ps + u64::from(meta.lengths.piece_size(pi));
                        have_bytes += pe.min(end) - ps.max(start);
                    }
                }
            }
            files.push(FileStatus {
                path: meta.relative_path(i).join("/"),
                size: meta.files[i].length,
                have_bytes,
            });
        }
        Ok(TorrentDetail {
            status,
            piece_length: meta.lengths.piece_length(),
            private: meta.private,
            magnet: meta.magnet().to_string(),
            peers,
            files,
            sources: t.source_stats(&self.conns),
            trackers: self.tracker_infos(tid, now),
        })
    }

    pub(super) fn node_status(&mut self, now: Instant) -> NodeStatus {
        let mut down = 0;
        let mut up = 0;
        let mut in_flight = 0;
        let mut peers = 0;
        for t in self.torrents.values_mut() {
            if let Some(s) = t.swarm.as_mut() {
                down += s.down.per_second(now);
                up += s.up.per_second(now);
                in_flight += s.in_flight();
                peers += s.n_peers() as u32;
            }
        }
        // What the memory budget counts: downloads above, then uploads
        // being read or waiting to be sent, and grown receive buffers.
        in_flight += self.upload_reading + self.send_buffered + self.read_buffered;
        NodeStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            listen: self.listen_addr.to_string(),
            peer_id: String::from_utf8_lossy(&self.peer_id).into_owned(),
            // Set at start (`spawn`), so never empty.
            node_id: (self.config.overlay.key.as_ref())
                .map_or_else(String::new, |k| k.node_id().to_hex()),
            public_key: (self.config.overlay.key.as_ref())
                .map_or_else(String::new, |k| crate::hash::to_hex(&k.public())),
            network: match self.config.private.as_deref().map(|p| p.allow_list_len()) {
                None => "public".into(),
                Some(None) => "private".into(),
                Some(Some(n)) => format!("private, {n} allowed nodes"),
            },
            torrents: self.torrents.len() as u32,
            peers,
            download_rate: down,
            upload_rate: up,
            download_limit: self.down_bucket.rate(),
            upload_limit: self.up_bucket.rate(),
            bytes_in_flight: in_flight,
            memory_budget: self.config.memory_budget,
            uptime_secs: now.duration_since(self.started).as_secs(),
            state_dir_error: self.state_health.error().map(str::to_string),
        }
    }
}

/// "-PL0100-..." → "PL 0100"; "-lt0D80-" → "lt 0D80"; otherwise hex.
pub(super) fn client_name(peer_id: &[u8; 20]) -> String {
    if peer_id[0] == b'-'
        && peer_id[7] == b'-'
        && peer_id[1..7].iter().all(|b| b.is_ascii_alphanumeric())
    {
        let s = String::from_utf8_lossy(&peer_id[1..7]).into_owned();
        return format!("{} {}", &s[..2], &s[2..]);
    }
    if peer_id[0].is_ascii_alphabetic()
        && peer_id[1..]
            .iter()
            .take(5)
            .all(|b| b.is_ascii_digit() || *b == b'-')
    {
        return String::from_utf8_lossy(&peer_id[..6]).into_owned();
    }
    crate::hash::to_hex(&peer_id[..8])
}
