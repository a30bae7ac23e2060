//! Open data files are one budget for all torrents (`max_open_files`): a
//! daemon checking, seeding and downloading many torrents of several files
//! never holds more descriptors into its download directory than that,
//! and every file still reads and writes correctly when its handle was
//! closed and opened again.

mod common;

use common::daemon::{assert_same_tree, create_torrent, DaemonProc};
use common::{write_random_file, TempDir};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TORRENTS: usize = 12;
const FILES: usize = 3;

/// Descriptors of process `pid` open on files below `dir`.
fn fds_below(pid: u32, dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    entries
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

/// Samples [`fds_below`] every few milliseconds until dropped; the most seen.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Sampler {
    fn start(pid: u32, dir: PathBuf) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut most = 0;
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                most = most.max(fds_below(pid, &dir));
                std::thread::sleep(Duration::from_millis(2));
            }
            most
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    fn most(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

#[test]
fn all_torrents_share_the_open_file_budget() {
    let tmp = TempDir::new("open-files");
    let seeder = DaemonProc::start(
        tmp.path(),
        "seeder",
        "127.0.11.1",
        &["--max-open-files", "6"],
    );
    let seeder_dir = std::fs::canonicalize(&seeder.download_dir).unwrap();
    let sampler = Sampler::start(seeder.pid(), seeder_dir.clone());
    let mut torrents = Vec::new();
    for t in 0..TORRENTS {
        let name = format!("set{t:02}");
        let src = seeder.download_dir.join(&name);
        std::fs::create_dir_all(&src).unwrap();
        for f in 0..FILES {
            // Pieces of 32 KiB span the file boundaries.
            write_random_file(
                &src.join(format!("part{f}.bin")),
                100_000 + 7_000 * f as u64,
                (t * FILES + f) as u64,
            );
        }
        let file = tmp.join(&format!("{name}.torrent"));
        let hash = create_torrent(&src, &file, "32K");
        seeder.add(&file, &[]);
        torrents.push((name, file, hash));
    }
    for (_, _, hash) in &torrents {
        seeder.wait_complete(hash, Duration::from_secs(60));
    }
    let seeding = sampler.most();
    assert!(
        seeding <= 6,
        "the seeder held {seeding} data files open (max_open_files 6)"
    );
    assert!(seeding > 0, "the sampler never saw a data file open");

    // A leecher with a budget of 4 downloads every torrent at once: its
    // handles are evicted and reopened all along (dirty ones kept for the
    // sync or remembered), and every byte arrives.
    let leecher = DaemonProc::start(
        tmp.path(),
        "leecher",
        "127.0.11.2",
        &["--max-open-files", "4"],
    );
    let leecher_dir = std::fs::canonicalize(&leecher.download_dir).unwrap();
    let sampler = Sampler::start(leecher.pid(), leecher_dir);
    let serving = Sampler::start(seeder.pid(), seeder_dir);
    for (_, file, _) in &torrents {
        leecher.add(file, &[seeder.listen]);
    }
    for (_, _, hash) in &torrents {
        leecher.wait_complete(hash, Duration::from_secs(120));
    }
    let leeching = sampler.most();
    let served = serving.most();
    assert!(
        leeching <= 4,
        "the leecher held {leeching} data files open (max_open_files 4)"
    );
    assert!(
        served <= 6,
        "the seeder held {served} data files open while serving (max_open_files 6)"
    );
    for (name, _, _) in &torrents {
        assert_same_tree(
            &seeder.download_dir.join(name),
            &leecher.download_dir.join(name),
        );
    }
    eprintln!(
        "most data files open: seeder {seeding} checking, {served} serving; leecher {leeching}"
    );
}
