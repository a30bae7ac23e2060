//! Hostile trackers for tests: an HTTP tracker that answers every request
//! with one scripted misbehaviour, and a UDP tracker that answers every
//! datagram with scripted datagrams. std blocking sockets on a loopback
//! address, port 0; every loop is bounded in count and time, and the server
//! threads stop when dropped (or after [`MAX_LIFE`] at the latest).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest any fake tracker thread lives, dropped or not.
pub const MAX_LIFE: Duration = Duration::from_secs(180);

/// What the HTTP tracker answers to every request.
#[derive(Clone, Debug)]
pub enum HttpScript {
    /// `200 OK` with this body (and a correct Content-Length).
    Body(Vec<u8>),
    /// `302 Found` with `Location:` the very request target (a loop of one).
    RedirectToSelf,
    /// `302 Found` to `/announce/N+1` with the same query: every hop is a
    /// new URL, so only a cap on the number of redirects ends it.
    RedirectChain,
    /// `200 OK` without Content-Length (ends at close), then body bytes as
    /// fast as the client takes them, until the client closes.
    Endless,
    /// `200 OK` with `Content-Length: 800000`, then one byte every `pause`,
    /// until the client closes.
    Trickle { pause: Duration },
}

/// Counters shared by the server threads and the test.
#[derive(Default, Debug)]
pub struct HttpCounters {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Complete request heads read.
    pub requests: AtomicU64,
    /// Response bytes written (heads and bodies).
    pub bytes_sent: AtomicU64,
    /// Connection handlers that have returned.
    pub finished: AtomicU64,
    /// Handlers that ended because the client closed (a write or read failed
    /// or saw EOF), as opposed to the server giving up or being stopped.
    pub client_closed: AtomicU64,
}

pub struct FakeHttpTracker {
    pub addr: SocketAddr,
    pub counters: Arc<HttpCounters>,
    /// Request targets seen, in order (at most 100 kept).
    pub targets: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeHttpTracker {
    pub fn start(ip: &str, script: HttpScript) -> FakeHttpTracker {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(HttpCounters::default());
        let targets = Arc::new(Mutex::new(Vec::new()));
        let (stop2, counters2, targets2) = (stop.clone(), counters.clone(), targets.clone());
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut workers = Vec::new();
            // Bounded: MAX_LIFE at 10 ms per idle turn, and until dropped.
            while started.elapsed() < MAX_LIFE && !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        counters2.accepted.fetch_add(1, Ordering::Relaxed);
                        let (st, c, t, s) = (
                            stop2.clone(),
                            counters2.clone(),
                            targets2.clone(),
                            script.clone(),
                        );
                        // At most 64 handlers: more connections are dropped at once.
                        if workers.len() < 64 {
                            workers.push(std::thread::spawn(move || {
                                let closed = serve_http(sock, &s, &c, &t, &st, started);
                                if closed {
                                    c.client_closed.fetch_add(1, Ordering::Relaxed);
                                }
                                c.finished.fetch_add(1, Ordering::Relaxed);
                            }));
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            stop2.store(true, Ordering::Relaxed);
            for w in workers {
                let _ = w.join();
            }
        });
        FakeHttpTracker {
            addr,
            counters,
            targets,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://ADDR/announce`.
    pub fn url(&self) -> String {
        format!("http://{}/announce", self.addr)
    }

    pub fn accepted(&self) -> u64 {
        self.counters.accepted.load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> u64 {
        self.counters.requests.load(Ordering::Relaxed)
    }

    pub fn finished(&self) -> u64 {
        self.counters.finished.load(Ordering::Relaxed)
    }

    pub fn client_closed(&self) -> u64 {
        self.counters.client_closed.load(Ordering::Relaxed)
    }

    pub fn bytes_sent(&self) -> u64 {
        self.counters.bytes_sent.load(Ordering::Relaxed)
    }
}

impl Drop for FakeHttpTracker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves one connection; true when it ended because the client closed.
fn serve_http(
    mut sock: TcpStream,
    script: &HttpScript,
    counters: &HttpCounters,
    targets: &Mutex<Vec<String>>,
    stop: &AtomicBool,
    started: Instant,
) -> bool {
    let alive = || !stop.load(Ordering::Relaxed) && started.elapsed() < MAX_LIFE;
    let _ = sock.set_nonblocking(false);
    let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
    let _ = sock.set_write_timeout(Some(Duration::from_millis(200)));
    // The request head: at most 16 KiB, within 10 s.
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let t0 = Instant::now();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if !alive() || t0.elapsed() > Duration::from_secs(10) || head.len() > 16 * 1024 {
            return false;
        }
        match sock.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if would_block(&e) => {}
            Err(_) => return true,
        }
    }
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let target = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("/")
        .to_string();
    {
        let mut t = targets.lock().unwrap();
        if t.len() < 100 {
            t.push(target.clone());
        }
    }
    let mut send = |bytes: &[u8]| -> Result<(), bool> {
        // A write blocked by a client that does not read is retried until
        // the server is stopped; an error means the client closed.
        let mut done = 0;
        while done < bytes.len() {
            if !alive() {
                return Err(false);
            }
            match sock.write(&bytes[done..]) {
                Ok(0) => return Err(true),
                Ok(n) => {
                    done += n;
                    counters.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if would_block(&e) => {}
                Err(_) => return Err(true),
            }
        }
        Ok(())
    };
    let result = match script {
        HttpScript::Body(body) => {
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(body);
            send(&r)
        }
        HttpScript::RedirectToSelf => send(
            format!(
                "HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        ),
        HttpScript::RedirectChain => {
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            let n: u64 = path
                .rsplit('/')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            send(
                format!(
                    "HTTP/1.1 302 Found\r\nLocation: /announce/{}?{query}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    n + 1
                )
                .as_bytes(),
            )
        }
        HttpScript::Endless => {
            let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n";
            let chunk = vec![b'x'; 16 * 1024];
            let mut r = send(head);
            // Bounded: 4 GiB at most, and MAX_LIFE.
            for _ in 0..(1u64 << 18) {
                if r.is_err() {
                    break;
                }
                r = send(&chunk);
            }
            r
        }
        HttpScript::Trickle { pause } => {
            let mut r = send(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 800000\r\nConnection: close\r\n\r\nd8:intervali",
            );
            // Bounded: 800,000 bytes at most, and MAX_LIFE.
            for _ in 0..800_000u32 {
                if r.is_err() {
                    break;
                }
                std::thread::sleep(*pause);
                r = send(b"9");
            }
            r
        }
    };
    match result {
        Ok(()) => {
            // Let the client read it all and close first.
            let _ = sock.shutdown(std::net::Shutdown::Write);
            let t0 = Instant::now();
            while alive() && t0.elapsed() < Duration::from_secs(5) {
                match sock.read(&mut buf) {
                    Ok(0) => return true,
                    Ok(_) => {}
                    Err(e) if would_block(&e) => {}
                    Err(_) => return true,
                }
            }
            false
        }
        Err(client_closed) => client_closed,
    }
}

fn would_block(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// A bencoded announce answer with `n` compact IPv4 peers: the addresses
/// in `first`, then `127.201.x.y:1` (loopback addresses nothing listens on).
pub fn compact_peers_body(n: usize, first: &[SocketAddr]) -> Vec<u8> {
    let mut peers = Vec::with_capacity(n * 6);
    for a in first.iter().take(n) {
        let SocketAddr::V4(v4) = a else {
            panic!("IPv4 only")
        };
        peers.extend_from_slice(&v4.ip().octets());
        peers.extend_from_slice(&v4.port().to_be_bytes());
    }
    for i in first.len()..n {
        let i = i as u32;
        peers.extend_from_slice(&[127, 201, (i >> 8) as u8, i as u8]);
        peers.extend_from_slice(&1u16.to_be_bytes());
    }
    let mut body = b"d8:intervali1800e5:peers".to_vec();
    body.extend_from_slice(format!("{}:", peers.len()).as_bytes());
    body.extend_from_slice(&peers);
    body.push(b'e');
    body
}

// ---------------------------------------------------------------------------
// UDP.

/// What a UDP tracker sends back for one datagram it received.
pub type UdpScript = fn(request: &[u8]) -> Vec<Vec<u8>>;

pub struct FakeUdpTracker {
    pub addr: SocketAddr,
    /// Datagrams received.
    pub received: Arc<AtomicU64>,
    /// Datagrams sent.
    pub sent: Arc<AtomicU64>,
    /// Actions (bytes 8..12) of the requests received, in order (at most 100).
    pub actions: Arc<Mutex<Vec<u32>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeUdpTracker {
    pub fn start(ip: &str, script: UdpScript) -> FakeUdpTracker {
        let sock = UdpSocket::bind((ip, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let actions = Arc::new(Mutex::new(Vec::new()));
        let (stop2, received2, sent2, actions2) = (
            stop.clone(),
            received.clone(),
            sent.clone(),
            actions.clone(),
        );
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut buf = vec![0u8; 65536];
            // Bounded: MAX_LIFE, 100 ms per idle turn, and until dropped.
            while started.elapsed() < MAX_LIFE && !stop2.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                received2.fetch_add(1, Ordering::Relaxed);
                if n >= 12 {
                    let mut a = actions2.lock().unwrap();
                    if a.len() < 100 {
                        a.push(u32::from_be_bytes(buf[8..12].try_into().unwrap()));
                    }
                }
                for d in script(&buf[..n]).into_iter().take(10_000) {
                    if sock.send_to(&d, from).is_ok() {
                        sent2.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        FakeUdpTracker {
            addr,
            received,
            sent,
            actions,
            stop,
            thread: Some(thread),
        }
    }

    /// `udp://ADDR/announce`.
    pub fn url(&self) -> String {
        format!("udp://{}/announce", self.addr)
    }

    pub fn actions(&self) -> Vec<u32> {
        self.actions.lock().unwrap().clone()
    }
}

impl Drop for FakeUdpTracker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
