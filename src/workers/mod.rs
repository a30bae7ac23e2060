//! The worker pool: threads that hash and do disk I/O so the network thread
//! never blocks.
//!
//! Jobs arrive on two *bounded* crossbeam channels. The live queue (writes,
//! reads for upload, hashes of freshly downloaded pieces) always goes first;
//! the background queue (rechecks) is served only when the live queue is
//! empty, and optionally under a byte-rate limit, so a recheck of a large
//! torrent never starves live work. A third queue, network, has threads of
//! its own ([`PoolConfig::network_threads`]) for blocking network calls
//! (name resolution, HTTP tracker requests): a slow or hostile tracker can
//! hold those for the length of its deadline, never the disk and hash work. Submitting with [`Pool::try_submit`]
//! never blocks: a full queue hands the job back (the caller keeps it in a
//! backlog and stops reading from the peers that feed it).
//!
//! Every result goes to the reply channel given with the job, followed by a
//! call to the pool's `notify` hook (the network thread's `mio::Waker`).
//! Shutting down (drop, or [`Pool::shutdown`]) finishes queued live jobs,
//! drops queued background jobs, and joins the threads.

mod job;
mod recheck;

pub use job::{DiskTorrent, Job, JobDone, RunResult};
pub use recheck::{hash_all, PieceCheck};

use crossbeam_channel::{bounded, select, Receiver, Sender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Which queue a job goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// Live work: served first.
    Live,
    /// Rechecks: served when no live work waits, within the recheck rate limit.
    Background,
    /// Blocking network calls, on their own threads.
    Network,
}

/// Pool settings.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Worker threads (default: available cores).
    pub threads: usize,
    /// Capacity of each job queue.
    pub queue_len: usize,
    /// Bytes per second background jobs may read; `None` for no limit.
    pub background_rate: Option<u64>,
    /// Threads for [`Priority::Network`] jobs (0: none; such jobs then wait
    /// forever, so only for pools that never get them).
    pub network_threads: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        PoolConfig {
            threads,
            queue_len: 256,
            background_rate: None,
            network_threads: 4,
        }
    }
}

/// A hook called after every result is sent (wakes the network thread).
pub type Notify = Arc<dyn Fn() + Send + Sync>;

struct Envelope {
    job: Job,
    reply: Sender<JobDone>,
}

/// The worker pool. Dropping it shuts it down.
pub struct Pool {
    live: Option<Sender<Envelope>>,
    background: Option<Sender<Envelope>>,
    network: Option<Sender<Envelope>>,
    threads: Vec<JoinHandle<()>>,
    n_threads: usize,
}

impl Pool {
    pub fn new(config: PoolConfig, notify: Option<Notify>) -> Pool {
        let n_threads = config.threads.max(1);
        let (live_tx, live_rx) = bounded::<Envelope>(config.queue_len.max(1));
        let (bg_tx, bg_rx) = bounded::<Envelope>(config.queue_len.max(1));
        let throttle = Arc::new(Mutex::new(Throttle::new(config.background_rate)));
        let (net_tx, net_rx) = bounded::<Envelope>(config.queue_len.max(1));
        // Not joined at shutdown: a call in progress ends by its own
        // deadline, and nothing waits for it.
        for i in 0..config.network_threads {
            let worker = Worker {
                live: net_rx.clone(),
                background: crossbeam_channel::never(),
                throttle: Arc::new(Mutex::new(Throttle::new(None))),
                notify: notify.clone(),
                scratch: Vec::new(),
            };
            std::thread::Builder::new()
                .name(format!("peerlet-netio-{i}"))
                .spawn(move || worker.run())
                .expect("spawning a network worker thread");
        }
        let threads = (0..n_threads)
            .map(|i| {
                let worker = Worker {
                    live: live_rx.clone(),
                    background: bg_rx.clone(),
                    throttle: throttle.clone(),
                    notify: notify.clone(),
                    scratch: Vec::new(),
                };
                std::thread::Builder::new()
                    .name(format!("peerlet-worker-{i}"))
                    .spawn(move || worker.run())
                    .expect("spawning a worker thread")
            })
            .collect();
        Pool {
            live: Some(live_tx),
            background: Some(bg_tx),
            network: Some(net_tx),
            threads,
            n_threads,
        }
    }

    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    fn queue(&self, priority: Priority) -> &Sender<Envelope> {
        let q = match priority {
            Priority::Live => &self.live,
            Priority::Background => &self.background,
            Priority::Network => &self.network,
        };
        // All are Some until shutdown, which consumes the pool.
        q.as_ref().expect("pool is running")
    }

    /// Queues a job without blocking; a full queue gives the job back.
    pub fn try_submit(
        &self,
        job: Job,
        priority: Priority,
        reply: &Sender<JobDone>,
    ) -> Result<(), Job> {
        match self.queue(priority).try_send(Envelope {
            job,
            reply: reply.clone(),
        }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(env)) | Err(TrySendError::Disconnected(env)) => Err(env.job),
        }
    }

    /// Queues a job, waiting for room. For threads that may block (the CLI), never the network thread.
    pub fn submit(&self, job: Job, priority: Priority, reply: &Sender<JobDone>) {
        let _ = self.queue(priority).send(Envelope {
            job,
            reply: reply.clone(),
        });
    }

    /// Jobs waiting in the (live, background) queues.
    pub fn queued(&self) -> (usize, usize) {
        (
            self.queue(Priority::Live).len(),
            self.queue(Priority::Background).len(),
        )
    }

    /// Jobs waiting in one queue (for metrics).
    pub fn queue_len(&self, priority: Priority) -> usize {
        self.queue(priority).len()
    }

    /// Finishes queued live jobs, drops background ones, joins the disk
    /// threads. Network threads are not joined: each finishes its call in
    /// progress (bounded by that call's deadline) and the queued ones, then exits.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.live = None;
        self.background = None;
        self.network = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A token bucket in bytes for background work.
struct Throttle {
    rate: Option<u64>,
    tokens: f64,
    last: Instant,
}

impl Throttle {
    fn new(rate: Option<u64>) -> Throttle {
        Throttle {
            rate,
            tokens: rate.unwrap_or(0) as f64,
            last: Instant::now(),
        }
    }

    /// How long until background work may start (zero: now).
    fn wait(&mut self, now: Instant) -> Duration {
        let Some(rate) = self.rate.filter(|&r| r > 0) else {
            return Duration::ZERO;
        };
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        // Allow at most one second of burst.
        self.tokens = (self.tokens + elapsed * rate as f64).min(rate as f64);
        if self.tokens > 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((-self.tokens + 1.0) / rate as f64)
                .min(Duration::from_millis(200))
        }
    }

    fn charge(&mut self, bytes: u64) {
        if self.rate.is_some() {
            self.tokens -= bytes as f64;
        }
    }
}

struct Worker {
    live: Receiver<Envelope>,
    background: Receiver<Envelope>,
    throttle: Arc<Mutex<Throttle>>,
    notify: Option<Notify>,
    scratch: Vec<u8>,
}

impl Worker {
    fn run(mut self) {
        loop {
            match self.live.try_recv() {
                Ok(env) => {
                    self.execute(env);
                    continue;
                }
                Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => {}
            }
            let wait = self
                .throttle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .wait(Instant::now());
            if wait.is_zero() {
                select! {
                    recv(self.live) -> msg => match msg {
                        Ok(env) => self.execute(env),
                        Err(_) => return,
                    },
                    recv(self.background) -> msg => match msg {
                        Ok(env) => {
                            let bytes = env.job.cost_bytes();
                            self.throttle.lock().unwrap_or_else(|e| e.into_inner()).charge(bytes);
                            self.execute(env);
                        }
                        // Background closes only at shutdown, with live.
                        Err(_) => return,
                    },
                }
            } else {
                select! {
                    recv(self.live) -> msg => match msg {
                        Ok(env) => self.execute(env),
                        Err(_) => return,
                    },
                    default(wait) => {}
                }
            }
        }
    }

    fn execute(&mut self, env: Envelope) {
        let done = env.job.run(&mut self.scratch);
        if env.reply.send(done).is_ok() {
            if let Some(n) = &self.notify {
                n();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::{FileMap, Lengths};
    use crate::storage::{tests::tempdir, FileStorage};
    use crossbeam_channel::unbounded;

    fn disk(name: &str, len: usize) -> (Arc<DiskTorrent>, std::path::PathBuf) {
        let dir = tempdir(name);
        std::fs::write(dir.join("f"), vec![5u8; len]).unwrap();
        let st = FileStorage::new(dir.clone(), vec![vec!["f".into()]], 4).unwrap();
        let d = DiskTorrent::new(
            Arc::new(st),
            FileMap::new([len as u64]),
            Lengths::new(len as u64, 16384).unwrap(),
        );
        (Arc::new(d), dir)
    }

    #[test]
    fn live_jobs_run_before_background() {
        let (d, dir) = disk("prio", 16384 * 64);
        let pool = Pool::new(
            PoolConfig {
                threads: 1,
                queue_len: 128,
                background_rate: None,
                network_threads: 0,
            },
            None,
        );
        let (tx, rx) = unbounded();
        // Hold the only worker in a gate job while background work and then
        // one live job are queued; once released, the live job goes first.
        let (open_tx, open_rx) = unbounded::<()>();
        pool.submit(
            Job::Run {
                tag: 0,
                work: Box::new(move || {
                    let _ = open_rx.recv_timeout(Duration::from_secs(30));
                    RunResult::Io(Ok(()))
                }),
            },
            Priority::Live,
            &tx,
        );
        for p in d.lengths.pieces() {
            pool.submit(
                Job::HashPiece {
                    tag: 1,
                    torrent: d.clone(),
                    piece: p,
                },
                Priority::Background,
                &tx,
            );
        }
        pool.submit(
            Job::HashPiece {
                tag: 2,
                torrent: d.clone(),
                piece: d.lengths.last_piece(),
            },
            Priority::Live,
            &tx,
        );
        open_tx.send(()).unwrap();
        let tags: Vec<u64> = (0..66).map(|_| rx.recv().unwrap().tag()).collect();
        let live_pos = tags.iter().position(|&t| t == 2).unwrap();
        assert_eq!(tags[0], 0);
        assert_eq!(live_pos, 1, "live job finished at position {live_pos}");
        pool.shutdown();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn background_rate_limit_holds() {
        let (d, dir) = disk("rate", 16384 * 16);
        // 64 KiB/s with a 64 KiB first burst; each of the 2 workers may start
        // one job before the bucket is charged. 16 pieces of 16 KiB: at least
        // (256 - 64 - 2 × 16) KiB / 64 KiB/s = 2.5 s.
        let pool = Pool::new(
            PoolConfig {
                threads: 2,
                queue_len: 16,
                background_rate: Some(64 * 1024),
                network_threads: 0,
            },
            None,
        );
        let (tx, rx) = unbounded();
        let start = Instant::now();
        for p in d.lengths.pieces() {
            pool.submit(
                Job::HashPiece {
                    tag: 0,
                    torrent: d.clone(),
                    piece: p,
                },
                Priority::Background,
                &tx,
            );
        }
        for _ in 0..16 {
            rx.recv().unwrap();
        }
        assert!(
            start.elapsed() >= Duration::from_millis(2200),
            "{:?}",
            start.elapsed()
        );
        drop(pool);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn try_submit_gives_back_when_full() {
        let (d, dir) = disk("full", 16384);
        let pool = Pool::new(
            PoolConfig {
                threads: 1,
                queue_len: 1,
                background_rate: Some(1),
                network_threads: 0,
            },
            None,
        );
        let (tx, _rx) = unbounded();
        let job = || Job::HashPiece {
            tag: 0,
            torrent: d.clone(),
            piece: d.lengths.last_piece(),
        };
        // The worker takes at most one job while throttled; the queue holds one more.
        let mut refused = 0;
        for _ in 0..5 {
            if pool.try_submit(job(), Priority::Background, &tx).is_err() {
                refused += 1;
            }
        }
        assert!(refused >= 3, "refused {refused}");
        drop(pool);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
