//! Disk faults injected through the storage trait into an in-process
//! daemon: a full disk (ENOSPC after a budget, with a short write) and a
//! permission error (EACCES) mid-download pause that torrent with the error
//! shown, the other torrent goes on, nothing verified is lost, and the
//! download resumes once the fault is cleared.

mod common;

use common::daemon::{assert_same_tree, create_torrent, DaemonProc};
use common::{write_random_file, TempDir};
use peerlet::daemon::Daemon;
use peerlet::metainfo::InfoHash;
use peerlet::net::api::{AddSource, Command, TorrentState, TorrentStatus};
use peerlet::net::EngineConfig;
use peerlet::storage::{FaultPlan, FaultyStorage, FilePool, FileStorage, Storage};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Plans = Arc<Mutex<HashMap<String, Arc<Mutex<FaultPlan>>>>>;

fn status(d: &Daemon, hash: InfoHash) -> TorrentStatus {
    d.handle()
        .call(Duration::from_secs(10), |reply| Command::Status {
            info_hash: hash,
            reply,
        })
        .unwrap()
        .status
}

fn wait_for(
    d: &Daemon,
    hash: InfoHash,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&TorrentStatus) -> bool,
) -> TorrentStatus {
    let deadline = Instant::now() + timeout;
    loop {
        let st = status(d, hash);
        if ok(&st) {
            return st;
        }
        assert!(Instant::now() < deadline, "waiting for {what}: {st:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A storage factory giving every torrent a `FaultyStorage` whose plan
/// `setup` may change at once (before the first read or write); the plans
/// by torrent name.
fn faulty_storage(
    setup: impl Fn(&mut FaultPlan) + Send + Sync + 'static,
) -> (peerlet::net::StorageFactory, Plans) {
    let plans: Plans = Default::default();
    let by_name = plans.clone();
    let factory: peerlet::net::StorageFactory = Arc::new(move |t, place| {
        let relative = (0..t.files.len()).map(|i| t.relative_path(i)).collect();
        let files = FileStorage::beneath(place.clone(), relative, FilePool::new(8))?;
        let (faulty, plan) = FaultyStorage::new(files);
        setup(&mut plan.lock().unwrap());
        by_name.lock().unwrap().insert(t.name.clone(), plan);
        Ok(Arc::new(faulty) as Arc<dyn Storage>)
    });
    (factory, plans)
}

/// Adds a .torrent file to an in-process daemon.
fn add_file(d: &Daemon, torrent: &std::path::Path, peers: Vec<String>) {
    let bytes = std::fs::read(torrent).unwrap();
    d.handle()
        .call(Duration::from_secs(10), |reply| Command::Add {
            source: AddSource::Torrent(bytes),
            dir: None,
            peers,
            paused: false,
            reply,
        })
        .unwrap();
}

#[test]
fn full_disk_and_permission_errors_pause_one_torrent_and_recover() {
    let tmp = TempDir::new("faults");
    let mut hashes = Vec::new();
    let mut torrents = Vec::new();
    let seeder = DaemonProc::start(
        tmp.path(),
        "seeder",
        "127.0.0.81",
        &["--upload-limit", "8000000"],
    );
    for (i, name) in ["nospace", "noaccess", "fine"].iter().enumerate() {
        let dir = tmp.join(&format!("src/{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        write_random_file(&dir.join("data.bin"), 8 << 20, 40 + i as u64);
        let t = tmp.join(&format!("{name}.torrent"));
        let h = create_torrent(&dir, &t, "64K");
        let seed_copy = seeder.download_dir.join(name);
        std::fs::create_dir_all(&seed_copy).unwrap();
        std::fs::copy(dir.join("data.bin"), seed_copy.join("data.bin")).unwrap();
        seeder.add(&t, &[]);
        hashes.push(InfoHash::parse(&h).unwrap());
        torrents.push(t);
    }
    for h in &hashes {
        seeder.wait_complete(&h.to_hex(), Duration::from_secs(60));
    }

    // The leecher runs in this process, with faulty storage for two torrents.
    let mut config = EngineConfig::new(
        "127.0.0.82:0".parse().unwrap(),
        tmp.join("leech/downloads"),
        tmp.join("leech/state"),
    );
    config.disk_retry = Duration::from_millis(500);
    let (factory, plans) = faulty_storage(|_| {});
    config.storage_factory = factory;
    let leecher = Daemon::start(config, None).unwrap();
    let plan = |name: &str| plans.lock().unwrap().get(name).cloned().unwrap();
    let add = |i: usize| add_file(&leecher, &torrents[i], vec![seeder.listen.to_string()]);
    add(0);
    add(1);
    // Full disk after 2 MiB (the write that crosses it is short); no access at all for the other from the start.
    plan("nospace").lock().unwrap().write_budget = Some(2 << 20);
    plan("noaccess").lock().unwrap().write_error = Some(libc::EACCES);
    add(2);

    let full = wait_for(
        &leecher,
        hashes[0],
        "the full-disk error",
        Duration::from_secs(60),
        |s| s.state == TorrentState::Error,
    );
    assert!(
        full.error
            .as_deref()
            .unwrap_or("")
            .contains("the disk is full"),
        "{full:?}"
    );
    let denied = wait_for(
        &leecher,
        hashes[1],
        "the permission error",
        Duration::from_secs(60),
        |s| s.state == TorrentState::Error,
    );
    assert!(
        denied
            .error
            .as_deref()
            .unwrap_or("")
            .contains("permission denied"),
        "{denied:?}"
    );
    // The healthy torrent is unaffected.
    let fine = wait_for(
        &leecher,
        hashes[2],
        "the healthy torrent",
        Duration::from_secs(120),
        |s| s.pieces_have == s.pieces,
    );
    assert_eq!(fine.state, TorrentState::Seeding);

    // While the faults last, nothing verified is lost and nothing more is verified.
    let have_full = status(&leecher, hashes[0]).pieces_have;
    assert!(
        have_full > 0 && have_full < full.pieces,
        "some pieces before the disk filled: {have_full}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let again = status(&leecher, hashes[0]);
    assert_eq!(again.pieces_have, have_full);
    assert_eq!(
        again.state,
        TorrentState::Error,
        "retries while the disk is still full fail again"
    );

    // Clear the faults: both resume and complete.
    *plan("nospace").lock().unwrap() = FaultPlan::default();
    *plan("noaccess").lock().unwrap() = FaultPlan::default();
    for h in &hashes[..2] {
        let st = wait_for(&leecher, *h, "recovery", Duration::from_secs(120), |s| {
            s.pieces_have == s.pieces
        });
        assert_eq!(st.state, TorrentState::Seeding);
        assert!(st.error.is_none());
        assert_eq!(
            st.hash_failures, 0,
            "a short write must never pass as a verified piece"
        );
    }
    for name in ["nospace", "noaccess", "fine"] {
        assert_same_tree(
            &tmp.join(&format!("src/{name}")),
            &tmp.join(&format!("leech/downloads/{name}")),
        );
    }
    leecher.stop();
}

/// A read error while checking data already on disk (EIO, or EMFILE past
/// the descriptor limit) stops that torrent with the error and retries; it
/// does not count the pieces as missing and download over good data. A
/// missing file still just means missing pieces.
#[test]
fn a_read_error_during_the_check_is_an_error_not_missing_data() {
    let tmp = TempDir::new("check-faults");
    let src = tmp.join("src/shelf");
    std::fs::create_dir_all(&src).unwrap();
    write_random_file(&src.join("a.bin"), 3 << 20, 71);
    write_random_file(&src.join("b.bin"), 1 << 20, 72);
    let file = tmp.join("shelf.torrent");
    let hash = InfoHash::parse(&create_torrent(&src, &file, "64K")).unwrap();
    let downloads = tmp.join("node/downloads");
    common::daemon::copy_tree(&src, &downloads.join("shelf"));

    let mut config = EngineConfig::new(
        "127.0.0.83:0".parse().unwrap(),
        downloads.clone(),
        tmp.join("node/state"),
    );
    config.disk_retry = Duration::from_millis(500);
    // Every read fails from the start: the check is the first reader.
    let (factory, plans) = faulty_storage(|p| p.read_error = Some(libc::EIO));
    config.storage_factory = factory;
    let node = Daemon::start(config, None).unwrap();
    add_file(&node, &file, Vec::new());
    let failed = wait_for(
        &node,
        hash,
        "the check's read error",
        Duration::from_secs(60),
        |s| s.state == TorrentState::Error,
    );
    let msg = failed.error.clone().unwrap_or_default();
    assert!(
        msg.contains("cannot read the data to check it"),
        "{failed:?}"
    );
    assert_eq!(failed.pieces_have, 0);
    // Retries while reads still fail fail again; nothing is downloaded or
    // written meanwhile.
    std::thread::sleep(Duration::from_millis(1500));
    let again = status(&node, hash);
    assert_eq!(again.state, TorrentState::Error, "{again:?}");
    assert_eq!(again.pieces_have, 0);
    assert_eq!(again.downloaded, 0);

    // Reads work again: the next retry checks and finds every piece.
    *plans.lock().unwrap()["shelf"].lock().unwrap() = FaultPlan::default();
    let st = wait_for(
        &node,
        hash,
        "the data found",
        Duration::from_secs(60),
        |s| s.pieces_have == s.pieces,
    );
    assert_eq!(st.state, TorrentState::Seeding);
    assert!(st.error.is_none(), "{st:?}");
    assert_eq!(st.downloaded, 0);
    assert_same_tree(&src, &downloads.join("shelf"));
    node.stop();
}

/// fdatasync failing (a dying SD card): the torrent shows the error and
/// pauses downloading, nothing is recorded as durable meanwhile, and once
/// syncs work again the record is written: a restart trusts it.
#[test]
fn a_failing_sync_is_shown_and_nothing_is_recorded_until_it_works() {
    let tmp = TempDir::new("sync-faults");
    let src = tmp.join("src/card");
    std::fs::create_dir_all(&src).unwrap();
    write_random_file(&src.join("photo.bin"), 2 << 20, 81);
    let file = tmp.join("card.torrent");
    let hash = InfoHash::parse(&create_torrent(&src, &file, "64K")).unwrap();
    let seeder = common::daemon::start_seeder(
        tmp.path(),
        "seeder",
        "127.0.0.84",
        &src,
        &file,
        &hash.to_hex(),
    );

    let config = || {
        let mut c = EngineConfig::new(
            "127.0.0.85:0".parse().unwrap(),
            tmp.join("leech/downloads"),
            tmp.join("leech/state"),
        );
        c.disk_retry = Duration::from_millis(500);
        c.checkpoint_interval = Duration::from_millis(500);
        c
    };
    let mut faulty = config();
    let (factory, plans) = faulty_storage(|p| p.sync_error = Some(libc::EIO));
    faulty.storage_factory = factory;
    let leecher = Daemon::start(faulty, None).unwrap();
    add_file(&leecher, &file, vec![seeder.listen.to_string()]);
    let failed = wait_for(
        &leecher,
        hash,
        "the sync error",
        Duration::from_secs(60),
        |s| s.state == TorrentState::Error,
    );
    let msg = failed.error.clone().unwrap_or_default();
    assert!(msg.contains("disk error"), "{failed:?}");
    let resume = tmp.join(&format!("leech/state/torrents/{}.resume", hash.to_hex()));
    let recorded = |path: &std::path::Path| {
        std::fs::read(path)
            .ok()
            .and_then(|b| peerlet::resume::Resume::decode(&b).ok())
            .map(|r| r.pieces.iter().map(|b| b.count_ones()).sum::<u32>())
            .unwrap_or(0)
    };
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        recorded(&resume),
        0,
        "pieces recorded as durable while syncs fail"
    );

    // Syncs work again: the record catches up, and a restart trusts it.
    *plans.lock().unwrap()["card"].lock().unwrap() = FaultPlan::default();
    let st = wait_for(&leecher, hash, "recovery", Duration::from_secs(60), |s| {
        s.pieces_have == s.pieces && s.error.is_none()
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while recorded(&resume) < st.pieces {
        assert!(
            std::time::Instant::now() < deadline,
            "the record never caught up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    leecher.stop();
    let again = Daemon::start(config(), None).unwrap();
    let st = wait_for(&again, hash, "the restart", Duration::from_secs(60), |s| {
        s.state == TorrentState::Seeding
    });
    assert_eq!(st.pieces_resumed, st.pieces, "{st:?}");
    assert_same_tree(&src, &tmp.join("leech/downloads/card"));
    again.stop();
}

/// A failed fdatasync may have lost the data it covered although a later
/// one succeeds (the kernel reports a lost writeback once). Those pieces
/// are read back and written again (or downloaded again) before they are
/// recorded: the torrent never seeds, and the record never lists, data the
/// disk does not hold.
#[test]
fn pieces_a_failed_sync_lost_are_never_recorded_on_a_later_sync() {
    let tmp = TempDir::new("sync-lost");
    let src = tmp.join("src/lost");
    std::fs::create_dir_all(&src).unwrap();
    write_random_file(&src.join("video.bin"), 3 << 20, 91);
    let file = tmp.join("lost.torrent");
    let hash = InfoHash::parse(&create_torrent(&src, &file, "64K")).unwrap();
    // Slow enough that syncs fail mid-download, with pieces half written.
    let seeder = DaemonProc::start(
        tmp.path(),
        "seeder",
        "127.0.41.10",
        &["--upload-limit", "1M"],
    );
    common::daemon::copy_tree(&src, &seeder.download_dir.join("lost"));
    seeder.add(&file, &[]);
    seeder.wait_complete(&hash.to_hex(), Duration::from_secs(60));
    let config = || {
        let mut c = EngineConfig::new(
            "127.0.41.11:0".parse().unwrap(),
            tmp.join("leech/downloads"),
            tmp.join("leech/state"),
        );
        c.disk_retry = Duration::from_millis(500);
        c.checkpoint_interval = Duration::from_millis(300);
        c
    };
    let mut faulty = config();
    let (factory, plans) = faulty_storage(|p| {
        p.sync_error = Some(libc::EIO);
        p.sync_loses_writes = true;
    });
    faulty.storage_factory = factory;
    let leecher = Daemon::start(faulty, None).unwrap();
    add_file(&leecher, &file, vec![seeder.listen.to_string()]);
    let failed = wait_for(
        &leecher,
        hash,
        "the sync error",
        Duration::from_secs(60),
        |s| s.state == TorrentState::Error && s.pieces_have > 0,
    );
    assert!(failed.error.is_some(), "{failed:?}");
    assert!(
        failed.pieces_have < failed.pieces,
        "failed mid-download: {failed:?}"
    );
    // The next sync works, but what the failed one covered is gone from
    // the "device" unless written again.
    plans.lock().unwrap()["lost"].lock().unwrap().sync_error = None;
    let st = wait_for(&leecher, hash, "recovery", Duration::from_secs(90), |s| {
        s.pieces_have == s.pieces && s.error.is_none()
    });
    assert_eq!(st.state, TorrentState::Seeding);
    let resume = tmp.join(&format!("leech/state/torrents/{}.resume", hash.to_hex()));
    let recorded = || {
        std::fs::read(&resume)
            .ok()
            .and_then(|b| peerlet::resume::Resume::decode(&b).ok())
            .map(|r| r.pieces.iter().map(|b| b.count_ones()).sum::<u32>())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while recorded() < st.pieces {
        assert!(Instant::now() < deadline, "the record never caught up");
        std::thread::sleep(Duration::from_millis(100));
    }
    leecher.stop();
    assert_same_tree(&src, &tmp.join("leech/downloads/lost"));
}

/// Data changed while the daemon was stopped is suspect: its pieces are
/// checked at the next start. When that check cannot read the data (the
/// check-error state, retrying) and the daemon then dies, the next start
/// is unclean, where modification times are not compared: the suspect
/// pieces must not be trusted from the resume record then.
#[test]
fn a_crash_while_the_check_fails_does_not_trust_the_suspect_pieces() {
    let tmp = TempDir::new("check-error-crash");
    let src = tmp.join("src/shelf");
    std::fs::create_dir_all(&src).unwrap();
    write_random_file(&src.join("a.bin"), 1 << 20, 101);
    let file = tmp.join("shelf.torrent");
    let hash = InfoHash::parse(&create_torrent(&src, &file, "64K")).unwrap();
    let downloads = tmp.join("node/downloads");
    common::daemon::copy_tree(&src, &downloads.join("shelf"));
    let state = tmp.join("node/state");
    let config = || {
        let mut c = EngineConfig::new(
            "127.0.41.12:0".parse().unwrap(),
            downloads.clone(),
            state.clone(),
        );
        c.disk_retry = Duration::from_secs(600);
        c
    };

    // The data is found, checked and recorded; an orderly stop.
    let node = Daemon::start(config(), None).unwrap();
    add_file(&node, &file, Vec::new());
    let st = wait_for(&node, hash, "seeding", Duration::from_secs(60), |s| {
        s.state == TorrentState::Seeding
    });
    let pieces = st.pieces;
    node.stop();

    // Piece 2 changes while stopped (same size, new modification time).
    let data = downloads.join("shelf/a.bin");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[2 * 65536 + 100] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();
    let f = std::fs::File::options().write(true).open(&data).unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    drop(f);

    // The check of the changed file cannot read it: the check-error state.
    let mut faulty = config();
    let (factory, _plans) = faulty_storage(|p| p.read_error = Some(libc::EIO));
    faulty.storage_factory = factory;
    let node = Daemon::start(faulty, None).unwrap();
    let failed = wait_for(
        &node,
        hash,
        "the check's read error",
        Duration::from_secs(60),
        |s| s.state == TorrentState::Error,
    );
    assert!(
        failed
            .error
            .as_deref()
            .unwrap_or("")
            .contains("cannot read the data to check it"),
        "{failed:?}"
    );
    // The daemon dies there: what is on disk is what an orderly stop
    // leaves, without the clean marker.
    node.stop();
    std::fs::remove_file(state.join(peerlet::state::CLEAN_MARKER)).unwrap();

    // An unclean start: the changed piece is checked, found bad, missing.
    let node = Daemon::start(config(), None).unwrap();
    let st = wait_for(&node, hash, "the start", Duration::from_secs(60), |s| {
        matches!(s.state, TorrentState::Seeding | TorrentState::Downloading)
    });
    assert_eq!(
        st.pieces_have,
        pieces - 1,
        "the changed piece was trusted from the record: {st:?}"
    );
    assert_eq!(st.state, TorrentState::Downloading);
    node.stop();
}
