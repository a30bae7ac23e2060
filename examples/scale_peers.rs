//! Scale benchmark client: many real BitTorrent peer connections to one
//! daemon, from distinct loopback source addresses. Driven by
//! `benches/scale.sh` (see `benches/SCALE.md`); several processes of it
//! make the 1,000 connections.
//!
//! ```text
//! cargo run --release --example scale_peers -- --target 127.0.9.1:PORT \
//!     --torrent a.torrent [--torrent b.torrent] --first 0 --count 250 \
//!     --per-torrent 500 --duration 60
//! ```
//!
//! Connection `g` (from `--first` to `--first + --count - 1`) goes to
//! torrent `g / --per-torrent` (modulo the number of torrents) from source
//! address number `g % --per-torrent` of 127.0.8.1-254, 127.0.9.2-254
//! (507 addresses; 127.0.9.1 is left for the daemon). The daemon allows one
//! connection per address and torrent, so `--per-torrent` must stay at or
//! below 507.
//!
//! Each connection is one thread (small stack) that does what a leecher
//! does, slowly: the BEP 3 handshake (no extension bits, so the daemon
//! answers with a plain bitfield), `interested`, and while unchoked one
//! 16 KiB request every `--interval-ms` (at most 2 outstanding), each
//! `piece` checked for the block asked; choked, a keep-alive every 15 s.
//! Every connection stops at `--duration` seconds. At the end one line:
//!
//! ```text
//! scale_peers first=0 count=250 connected=250 handshakes=250 bitfields=250
//!   unchoked=12 blocks=340 bytes=5570560 closed_early=0 errors=0
//! ```
//!
//! Exit 0 when every connection got the daemon's handshake and bitfield and
//! was still open at the end; 1 otherwise (the line says which).

use argh::FromArgs;
use peerlet::metainfo::{Lengths, Torrent};
use peerlet::wire::peer::{BlockRef, Handshake, Message, HANDSHAKE_LEN};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(FromArgs)]
/// Many slow, real peer connections to one daemon (scale benchmark).
struct Args {
    /// the daemon's peer address
    #[argh(option)]
    target: SocketAddr,
    /// a torrent the daemon seeds (repeat for more)
    #[argh(option)]
    torrent: Vec<PathBuf>,
    /// first global connection number
    #[argh(option, default = "0")]
    first: usize,
    /// connections in this process
    #[argh(option, default = "250")]
    count: usize,
    /// connections per torrent (distinct source addresses), at most 507
    #[argh(option, default = "500")]
    per_torrent: usize,
    /// seconds every connection stays (then the process exits)
    #[argh(option, default = "60")]
    duration: u64,
    /// milliseconds between requests of one unchoked connection
    #[argh(option, default = "1000")]
    interval_ms: u64,
    /// milliseconds between starting two connections of this process
    #[argh(option, default = "2")]
    stagger_ms: u64,
}

/// Source addresses: 127.0.8.1-254, then 127.0.9.2-254.
const ADDRS: usize = 254 + 253;

fn source_ip(n: usize) -> Ipv4Addr {
    let n = n % ADDRS;
    if n < 254 {
        Ipv4Addr::new(127, 0, 8, n as u8 + 1)
    } else {
        Ipv4Addr::new(127, 0, 9, (n - 254) as u8 + 2)
    }
}

#[derive(Default)]
struct Stats {
    connected: AtomicU64,
    handshakes: AtomicU64,
    bitfields: AtomicU64,
    unchoked: AtomicU64,
    blocks: AtomicU64,
    bytes: AtomicU64,
    closed_early: AtomicU64,
    errors: AtomicU64,
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

struct Target {
    info_hash: [u8; 20],
    lengths: Lengths,
}

fn main() {
    let a: Args = argh::from_env();
    if a.torrent.is_empty() || a.per_torrent == 0 || a.per_torrent > ADDRS {
        eprintln!("scale_peers: need --torrent, and --per-torrent from 1 to {ADDRS}");
        std::process::exit(2);
    }
    let targets: Vec<Arc<Target>> = a
        .torrent
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).unwrap_or_else(|e| {
                eprintln!("scale_peers: {}: {e}", p.display());
                std::process::exit(2)
            });
            let t = Torrent::from_bytes(&bytes).unwrap_or_else(|e| {
                eprintln!("scale_peers: {}: {e}", p.display());
                std::process::exit(2)
            });
            Arc::new(Target {
                info_hash: t.info_hash.0,
                lengths: t.lengths,
            })
        })
        .collect();
    let stats = Arc::new(Stats::default());
    let deadline = Instant::now() + Duration::from_secs(a.duration);
    let mut threads = Vec::with_capacity(a.count);
    for g in a.first..a.first + a.count {
        let target = targets[(g / a.per_torrent) % targets.len()].clone();
        let src = source_ip(g % a.per_torrent);
        let mine = stats.clone();
        let (addr, interval) = (a.target, Duration::from_millis(a.interval_ms));
        let spawned = std::thread::Builder::new()
            .name(format!("peer-{g}"))
            .stack_size(128 * 1024)
            .spawn(move || {
                if let Err(e) = peer(g, src, addr, &target, interval, deadline, &mine) {
                    bump(&mine.errors);
                    if mine.errors.load(Ordering::Relaxed) <= 5 {
                        eprintln!("scale_peers: connection {g} from {src}: {e}");
                    }
                }
            });
        match spawned {
            Ok(h) => threads.push(h),
            Err(e) => {
                eprintln!("scale_peers: cannot start a thread: {e}");
                bump(&stats.errors);
            }
        }
        std::thread::sleep(Duration::from_millis(a.stagger_ms));
    }
    for t in threads {
        let _ = t.join();
    }
    let s = &stats;
    let v = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "scale_peers first={} count={} connected={} handshakes={} bitfields={} unchoked={} blocks={} bytes={} closed_early={} errors={}",
        a.first,
        a.count,
        v(&s.connected),
        v(&s.handshakes),
        v(&s.bitfields),
        v(&s.unchoked),
        v(&s.blocks),
        v(&s.bytes),
        v(&s.closed_early),
        v(&s.errors)
    );
    let ok = v(&s.handshakes) == a.count as u64
        && v(&s.bitfields) == a.count as u64
        && v(&s.closed_early) == 0
        && v(&s.errors) == 0;
    std::process::exit(if ok { 0 } else { 1 });
}

/// One connection until `deadline`.
fn peer(
    g: usize,
    src: Ipv4Addr,
    addr: SocketAddr,
    t: &Target,
    interval: Duration,
    deadline: Instant,
    stats: &Stats,
) -> std::io::Result<()> {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    sock.bind(&SockAddr::from(SocketAddr::new(IpAddr::V4(src), 0)))?;
    sock.connect_timeout(&SockAddr::from(addr), Duration::from_secs(10))?;
    let mut s: TcpStream = sock.into();
    bump(&stats.connected);
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut peer_id = *b"-SC0001-000000000000";
    peer_id[8..].copy_from_slice(format!("{g:012}").as_bytes());
    let mut out = Vec::new();
    Handshake {
        reserved: [0; 8],
        info_hash: t.info_hash,
        peer_id,
    }
    .emit(&mut out);
    Message::Interested.emit(&mut out);
    s.write_all(&out)?;
    let mut last_send = Instant::now();
    let mut buf: Vec<u8> = Vec::with_capacity(32 * 1024);
    let mut chunk = vec![0u8; 32 * 1024];
    let mut handshaken = false;
    let mut choked = true;
    let mut outstanding: Vec<BlockRef> = Vec::new();
    let mut next_request = Instant::now();
    // A cheap per-connection sequence of blocks to ask for.
    let mut rng = (g as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let bitfield_len = t.lengths.bitfield_len();
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        match s.read(&mut chunk) {
            Ok(0) => {
                bump(&stats.closed_early);
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "closed by the daemon",
                ));
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                bump(&stats.closed_early);
                return Err(e);
            }
        }
        if !handshaken {
            match Handshake::parse(&buf) {
                Ok(Some(h)) if h.info_hash == t.info_hash => {
                    buf.drain(..HANDSHAKE_LEN);
                    handshaken = true;
                    bump(&stats.handshakes);
                }
                Ok(Some(_)) => return Err(std::io::Error::other("handshake for another torrent")),
                Ok(None) => continue,
                Err(e) => return Err(std::io::Error::other(format!("handshake: {e:?}"))),
            }
        }
        let mut used = 0;
        loop {
            let parsed = Message::parse(&buf[used..], Some(bitfield_len))
                .map_err(|e| std::io::Error::other(format!("message: {e:?}")))?;
            let Some((msg, n)) = parsed else { break };
            used += n;
            match msg {
                Message::Bitfield(_) | Message::HaveAll => bump(&stats.bitfields),
                Message::Unchoke => {
                    if choked {
                        bump(&stats.unchoked);
                    }
                    choked = false;
                }
                Message::Choke => {
                    choked = true;
                    // Without the Fast extension, pending requests are dropped.
                    outstanding.clear();
                }
                Message::Piece { index, begin, data } => {
                    let want = outstanding
                        .iter()
                        .position(|b| b.index == index && b.begin == begin);
                    match want {
                        Some(i) if outstanding[i].length as usize == data.len() => {
                            outstanding.swap_remove(i);
                            bump(&stats.blocks);
                            stats.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                        }
                        _ => return Err(std::io::Error::other("a block not asked for")),
                    }
                }
                _ => {}
            }
        }
        buf.drain(..used);
        let now = Instant::now();
        out.clear();
        if !choked && outstanding.len() < 2 && now >= next_request {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let Some(piece) = t
                .lengths
                .piece((rng % u64::from(t.lengths.n_pieces())) as u32)
            else {
                continue;
            };
            let nb = t.lengths.n_blocks(piece);
            let Some(block) = t.lengths.block(piece, ((rng >> 32) % u64::from(nb)) as u32) else {
                continue;
            };
            let r = BlockRef {
                index: piece.get(),
                begin: t.lengths.block_begin(block),
                length: t.lengths.block_size(block),
            };
            Message::Request(r).emit(&mut out);
            outstanding.push(r);
            next_request = now + interval;
        } else if now.duration_since(last_send) > Duration::from_secs(15) {
            Message::KeepAlive.emit(&mut out);
        }
        if !out.is_empty() {
            s.write_all(&out)?;
            last_send = now;
        }
    }
}
