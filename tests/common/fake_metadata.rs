//! A hostile BEP 9 peer for magnet tests, with std blocking sockets: it
//! answers the handshake for one info-hash, offers ut_metadata with a
//! scripted `metadata_size`, and answers every metadata request from the
//! bytes it was given (which need not hash to the info-hash). Every read has
//! a timeout, every loop is bounded, and the server stops when dropped.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest the server lives, dropped or not.
pub const MAX_LIFE: Duration = Duration::from_secs(180);
/// Our ut_metadata id in the extended handshake we send.
pub const OUR_UT_METADATA: u8 = 3;
const PIECE: usize = 16 * 1024;

#[derive(Default, Debug)]
pub struct MetaCounters {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Handshakes answered (the info-hash matched).
    pub handshakes: AtomicU64,
    /// Metadata requests received.
    pub requests: AtomicU64,
    /// Metadata pieces sent.
    pub served: AtomicU64,
    /// Connections the daemon closed (EOF or reset seen).
    pub closed_by_peer: AtomicU64,
}

pub struct FakeMetadataPeer {
    pub addr: SocketAddr,
    pub counters: Arc<MetaCounters>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeMetadataPeer {
    /// Listens on `ip`; advertises `metadata_size` (the raw bencode integer,
    /// so any value can be sent) and serves `metadata` in 16 KiB pieces,
    /// each with `total_size` = `metadata.len()`.
    pub fn start(
        ip: &str,
        info_hash: [u8; 20],
        metadata_size: i64,
        metadata: Vec<u8>,
    ) -> FakeMetadataPeer {
        FakeMetadataPeer::start_with_delay(ip, info_hash, metadata_size, metadata, Duration::ZERO)
    }

    /// [`FakeMetadataPeer::start`], answering each request only after `delay`
    /// (so that a test can bring in another peer while requests are out).
    pub fn start_with_delay(
        ip: &str,
        info_hash: [u8; 20],
        metadata_size: i64,
        metadata: Vec<u8>,
        delay: Duration,
    ) -> FakeMetadataPeer {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(MetaCounters::default());
        let (stop2, counters2) = (stop.clone(), counters.clone());
        let metadata = Arc::new(metadata);
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut workers = Vec::new();
            // Bounded: MAX_LIFE at 10 ms per idle turn, and until dropped.
            while started.elapsed() < MAX_LIFE && !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        counters2.accepted.fetch_add(1, Ordering::Relaxed);
                        if workers.len() >= 64 {
                            continue;
                        }
                        let (st, c, m) = (stop2.clone(), counters2.clone(), metadata.clone());
                        workers.push(std::thread::spawn(move || {
                            let script = Script {
                                info_hash,
                                metadata_size,
                                metadata: &m,
                                delay,
                            };
                            let closed = serve(sock, &script, &c, &st, started);
                            if closed {
                                c.closed_by_peer.fetch_add(1, Ordering::Relaxed);
                            }
                        }));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            stop2.store(true, Ordering::Relaxed);
            for w in workers {
                let _ = w.join();
            }
        });
        FakeMetadataPeer {
            addr,
            counters,
            stop,
            thread: Some(thread),
        }
    }

    pub fn get(&self, f: fn(&MetaCounters) -> &AtomicU64) -> u64 {
        f(&self.counters).load(Ordering::Relaxed)
    }
}

impl Drop for FakeMetadataPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Script<'a> {
    info_hash: [u8; 20],
    metadata_size: i64,
    metadata: &'a [u8],
    delay: Duration,
}

/// Serves one connection; true when the daemon closed it.
fn serve(
    mut sock: TcpStream,
    script: &Script<'_>,
    counters: &MetaCounters,
    stop: &AtomicBool,
    started: Instant,
) -> bool {
    let Script {
        info_hash,
        metadata_size,
        metadata,
        delay,
    } = *script;
    let alive = || !stop.load(Ordering::Relaxed) && started.elapsed() < MAX_LIFE;
    let _ = sock.set_nonblocking(false);
    let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
    let _ = sock.set_write_timeout(Some(Duration::from_secs(5)));
    let mut hs = [0u8; 68];
    match read_full(&mut sock, &mut hs, &alive) {
        Ok(()) => {}
        Err(closed) => return closed,
    }
    if hs[28..48] != info_hash {
        return false;
    }
    counters.handshakes.fetch_add(1, Ordering::Relaxed);
    let mut out = Vec::new();
    out.push(19);
    out.extend_from_slice(b"BitTorrent protocol");
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0]);
    out.extend_from_slice(&info_hash);
    out.extend_from_slice(b"-FM0001-fakemetadata");
    let ext = format!(
        "d1:md11:ut_metadatai{OUR_UT_METADATA}ee13:metadata_sizei{metadata_size}e1:v8:FakeMetae"
    );
    push_extended(&mut out, 0, ext.as_bytes());
    if sock.write_all(&out).is_err() {
        return true;
    }
    // The daemon's ut_metadata id, from its extended handshake.
    let mut their_id: Option<u8> = None;
    // Bounded: MAX_LIFE and 100,000 messages.
    for _ in 0..100_000 {
        let mut len = [0u8; 4];
        if let Err(closed) = read_full(&mut sock, &mut len, &alive) {
            return closed;
        }
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 {
            continue;
        }
        if len > 1 << 20 {
            return false;
        }
        let mut msg = vec![0u8; len];
        if let Err(closed) = read_full(&mut sock, &mut msg, &alive) {
            return closed;
        }
        if msg[0] != 20 || msg.len() < 2 {
            continue;
        }
        let payload = &msg[2..];
        if msg[1] == 0 {
            their_id = int_after(payload, b"11:ut_metadatai").and_then(|n| u8::try_from(n).ok());
        } else if msg[1] == OUR_UT_METADATA {
            if int_after(payload, b"8:msg_typei") != Some(0) {
                continue;
            }
            counters.requests.fetch_add(1, Ordering::Relaxed);
            let (Some(id), Some(piece)) = (their_id, int_after(payload, b"5:piecei")) else {
                continue;
            };
            // Bounded: at most 10 s per answer.
            std::thread::sleep(delay.min(Duration::from_secs(10)));
            let start = (piece.max(0) as usize).saturating_mul(PIECE);
            let data = metadata
                .get(start..metadata.len().min(start + PIECE))
                .unwrap_or(&[]);
            let mut body = format!(
                "d8:msg_typei1e5:piecei{piece}e10:total_sizei{}ee",
                metadata.len()
            )
            .into_bytes();
            body.extend_from_slice(data);
            let mut frame = Vec::new();
            push_extended(&mut frame, id, &body);
            if sock.write_all(&frame).is_err() {
                return true;
            }
            counters.served.fetch_add(1, Ordering::Relaxed);
        }
    }
    false
}

fn push_extended(out: &mut Vec<u8>, id: u8, payload: &[u8]) {
    out.extend_from_slice(&((payload.len() + 2) as u32).to_be_bytes());
    out.push(20);
    out.push(id);
    out.extend_from_slice(payload);
}

/// The bencoded integer right after `key` in `bytes`.
fn int_after(bytes: &[u8], key: &[u8]) -> Option<i64> {
    let at = bytes.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = &bytes[at..];
    let end = rest.iter().position(|&b| b == b'e')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// Reads exactly `buf.len()` bytes; `Err(true)`: the peer closed,
/// `Err(false)`: stopped.
fn read_full(sock: &mut TcpStream, buf: &mut [u8], alive: &dyn Fn() -> bool) -> Result<(), bool> {
    let mut done = 0;
    while done < buf.len() {
        if !alive() {
            return Err(false);
        }
        match sock.read(&mut buf[done..]) {
            Ok(0) => return Err(true),
            Ok(n) => done += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Err(true),
        }
    }
    Ok(())
}
