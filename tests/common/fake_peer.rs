//! A minimal BitTorrent seeder for tests, written with std blocking sockets:
//! it answers one handshake per connection, announces every piece, unchokes
//! and serves requests from the real data, corrupting the pieces the test
//! picks. Every read has a timeout and the server stops when dropped.
#![allow(dead_code)]

use peerlet::metainfo::Torrent;
use peerlet::storage::{self, FileStorage};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct FakeSeeder {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicU64>,
    /// Blocks served (corrupt or not).
    pub served: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeSeeder {
    /// Serves `torrent` whose data lives under `dir` (at `dir/<name>`), on
    /// `ip`; blocks of pieces for which `corrupt(piece)` holds are flipped.
    pub fn start(ip: &str, torrent: Torrent, dir: PathBuf, corrupt: fn(u32) -> bool) -> FakeSeeder {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let served = Arc::new(AtomicU64::new(0));
        let (stop2, accepted2, served2) = (stop.clone(), accepted.clone(), served.clone());
        let torrent = Arc::new(torrent);
        let thread = std::thread::spawn(move || {
            let mut workers = Vec::new();
            // Bounded: at most 10 minutes, and until dropped.
            for _ in 0..60_000 {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                match listener.accept() {
                    Ok((sock, _)) => {
                        accepted2.fetch_add(1, Ordering::Relaxed);
                        let (t, d, s, st) =
                            (torrent.clone(), dir.clone(), served2.clone(), stop2.clone());
                        workers.push(std::thread::spawn(move || {
                            let _ = serve(sock, &t, d, corrupt, &s, &st);
                        }));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            for w in workers {
                let _ = w.join();
            }
        });
        FakeSeeder {
            addr,
            stop,
            accepted,
            served,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeSeeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    mut sock: TcpStream,
    t: &Torrent,
    dir: PathBuf,
    corrupt: fn(u32) -> bool,
    served: &AtomicU64,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    sock.set_nonblocking(false)?;
    let mut hs = [0u8; 68];
    read_full(&mut sock, &mut hs, stop)?;
    let mut reply = Vec::new();
    reply.push(19);
    reply.extend_from_slice(b"BitTorrent protocol");
    reply.extend_from_slice(&[0; 8]);
    reply.extend_from_slice(&t.info_hash.0);
    reply.extend_from_slice(b"-FK0001-fakefakefake");
    let bits = vec![0xffu8; t.lengths.bitfield_len()];
    let n = t.lengths.n_pieces();
    let mut bitfield = bits;
    if n % 8 != 0 {
        let last = bitfield.len() - 1;
        bitfield[last] = 0xff << (8 - n % 8);
    }
    reply.extend_from_slice(&((bitfield.len() + 1) as u32).to_be_bytes());
    reply.push(5);
    reply.extend_from_slice(&bitfield);
    reply.extend_from_slice(&[0, 0, 0, 1, 1]); // unchoke
    sock.write_all(&reply)?;
    let relative = (0..t.files.len()).map(|i| t.relative_path(i)).collect();
    let st = FileStorage::new(dir, relative, 8)?;
    loop {
        let mut len = [0u8; 4];
        read_full(&mut sock, &mut len, stop)?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 {
            continue;
        }
        if len > 1 << 20 {
            return Ok(());
        }
        let mut msg = vec![0u8; len];
        read_full(&mut sock, &mut msg, stop)?;
        if msg[0] != 6 || len != 13 {
            continue;
        }
        let index = u32::from_be_bytes(msg[1..5].try_into().unwrap());
        let begin = u32::from_be_bytes(msg[5..9].try_into().unwrap());
        let length = u32::from_be_bytes(msg[9..13].try_into().unwrap());
        let Some(piece) = t.lengths.piece(index) else {
            return Ok(());
        };
        let mut data = vec![0u8; length as usize];
        storage::read_span(
            &st,
            &t.file_map,
            t.lengths.piece_offset(piece) + u64::from(begin),
            &mut data,
        )?;
        if corrupt(index) {
            for b in data.iter_mut().step_by(97) {
                *b ^= 0x5a;
            }
        }
        let mut out = Vec::with_capacity(13 + data.len());
        out.extend_from_slice(&((9 + data.len()) as u32).to_be_bytes());
        out.push(7);
        out.extend_from_slice(&index.to_be_bytes());
        out.extend_from_slice(&begin.to_be_bytes());
        out.extend_from_slice(&data);
        sock.write_all(&out)?;
        served.fetch_add(1, Ordering::Relaxed);
    }
}

/// Reads exactly `buf.len()` bytes, giving up when `stop` is set.
fn read_full(sock: &mut TcpStream, buf: &mut [u8], stop: &AtomicBool) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        if stop.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("stopped"));
        }
        match sock.read(&mut buf[done..]) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed",
                ))
            }
            Ok(n) => done += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
