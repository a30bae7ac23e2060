#!/usr/bin/python3
"""Records real peer-wire traffic on loopback and cuts it into fuzz seeds.

Run from the repository root with Debian's /usr/bin/python3 (the
python3-libtorrent bindings load only there), after `cargo build`:

    /usr/bin/python3 fuzz/seeds/capture.py [--peerlet target/debug/peerlet]
                                           [--keep DIR] [--dry-run]

What runs (all on 127.0.4.1-127.0.4.40, ports picked by the kernel, every
process started here and killed by its PID at the end, every wait bounded):

- a 26 MiB file in 32 KiB pieces (832 pieces: a 104-byte bitfield and an
  info dictionary of two ut_metadata pieces), a .torrent made by mktorrent
  with a UDP and an HTTP tracker (two tiers), both fakes served here;
- peerlet daemon A seeds it; a recording TCP proxy stands in front of it;
- python3-libtorrent (default plugins: ut_metadata, ut_pex) fetches it by
  magnet link through the proxy, so the info dictionary comes over BEP 9;
- aria2c downloads the .torrent (rate-limited, so it overlaps with
  libtorrent and PEX has something to say), finding the proxy through the
  fake HTTP tracker;
- peerlet daemon B fetches the magnet from libtorrent (now seeding) through
  a second recording proxy: libtorrent's ut_metadata answers and pieces.

The proxy writes each connection's two directions to files; the script
then cuts them into frames (handshake, then length-prefixed messages) and
writes seeds to fuzz/corpus/<target>/cap_*: peer_wire (stream openings and
piece traffic), extension_handshake, ut_metadata, ut_pex (as event
records), tracker_udp (peerlet's requests and the answers), tracker_http
(the fake tracker's answers as HTTP streams and bodies). The per-target
input layouts are described at the top of each fuzz_targets/<target>.rs.
"""
import argparse
import hashlib
import http.server
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
IP = {
    "peerlet_a": "127.0.4.1",
    "proxy_a": "127.0.4.2",
    "lt": "127.0.4.3",
    "aria": "127.0.4.4",
    "http_tracker": "127.0.4.5",
    "udp_tracker": "127.0.4.6",
    "proxy_a_out": "127.0.4.7",
    "peerlet_b": "127.0.4.8",
    "proxy_b": "127.0.4.9",
    "proxy_b_out": "127.0.4.10",
}
STARTED = []  # Popen objects of processes started here


def log(*a):
    print("capture:", *a, file=sys.stderr, flush=True)


def enc(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(enc(x) for x in v) + b"e"
    if isinstance(v, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, x) for k, x in v.items())
        return b"d" + b"".join(enc(k) + enc(x) for k, x in items) + b"e"
    raise TypeError(v)


def bdecode_prefix(b, i=0):
    """Minimal bencode decoder: (value, end offset)."""
    c = b[i:i + 1]
    if c == b"i":
        j = b.index(b"e", i)
        return int(b[i + 1:j]), j + 1
    if c == b"l":
        i += 1
        out = []
        while b[i:i + 1] != b"e":
            v, i = bdecode_prefix(b, i)
            out.append(v)
        return out, i + 1
    if c == b"d":
        i += 1
        out = {}
        while b[i:i + 1] != b"e":
            k, i = bdecode_prefix(b, i)
            v, i = bdecode_prefix(b, i)
            out[k] = v
        return out, i + 1
    j = b.index(b":", i)
    n = int(b[i:j])
    return b[j + 1:j + 1 + n], j + 1 + n


# ---------------------------------------------------------------------------
# Recording proxy


class Proxy:
    """Accepts on `listen_ip`, connects to `target` from `out_ip`, and records
    both directions of every connection."""

    def __init__(self, name, listen_ip, out_ip, target):
        self.name = name
        self.out_ip = out_ip
        self.target = target
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((listen_ip, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.5)
        self.addr = self.sock.getsockname()
        self.conns = []  # (index, c2s bytearray, s2c bytearray)
        self.stop = threading.Event()
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        n = 0
        while not self.stop.is_set() and n < 32:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s = socket.socket()
            try:
                s.bind((self.out_ip, 0))
                s.settimeout(5)
                s.connect(self.target)
            except OSError as e:
                log(self.name, "connect to target failed:", e)
                c.close()
                continue
            rec = (n, bytearray(), bytearray())
            self.conns.append(rec)
            n += 1
            for a, b, buf in ((c, s, rec[1]), (s, c, rec[2])):
                threading.Thread(target=self.pump, args=(a, b, buf), daemon=True).start()

    def pump(self, src, dst, buf):
        src.settimeout(1.0)
        while not self.stop.is_set():
            try:
                data = src.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            buf.extend(data)
            try:
                dst.sendall(data)
            except OSError:
                break
        for x in (src, dst):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.stop.set()
        self.sock.close()


# ---------------------------------------------------------------------------
# Fake trackers (their answers become tracker seeds)


class Trackers:
    def __init__(self, peers):
        self.peers = peers  # list of (ip, port) handed out
        self.http_answers = []  # raw HTTP responses sent
        self.udp_log = []  # (request bytes, response bytes)
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                compact = b"".join(socket.inet_aton(ip) + struct.pack(">H", p) for ip, p in outer.peers)
                body = enc({"interval": 1800, "min interval": 60, "complete": 1,
                            "incomplete": len(outer.peers), "peers": compact})
                head = ("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                        "Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)).encode()
                outer.http_answers.append(head + body)
                self.wfile.write(head + body)
                self.close_connection = True

            def log_message(self, *a):
                pass

        self.http = http.server.ThreadingHTTPServer((IP["http_tracker"], 0), H)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((IP["udp_tracker"], 0))
        self.udp.settimeout(0.5)
        self.stop = threading.Event()
        threading.Thread(target=self.udp_loop, daemon=True).start()

    def udp_loop(self):
        conn_id = 0x1122334455667788
        while not self.stop.is_set():
            try:
                req, src = self.udp.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            if len(req) < 16:
                continue
            action, tid = struct.unpack(">II", req[8:16])
            if action == 0:
                resp = struct.pack(">IIQ", 0, tid, conn_id)
            elif action == 1:
                peers = b"".join(socket.inet_aton(ip) + struct.pack(">H", p) for ip, p in self.peers)
                resp = struct.pack(">IIIII", 1, tid, 1800, len(self.peers), 1) + peers
            elif action == 2:
                resp = struct.pack(">II", 2, tid) + struct.pack(">III", 1, 5, 2) * ((len(req) - 16) // 20)
            else:
                resp = struct.pack(">II", 3, tid) + b"unknown action"
            self.udp_log.append((bytes(req), resp))
            self.udp.sendto(resp, src)

    def close(self):
        self.stop.set()
        self.http.shutdown()
        self.udp.close()


# ---------------------------------------------------------------------------
# Processes


def start(cmd, log_path, env=None, **kw):
    f = open(log_path, "ab")
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=f, env=env, **kw)
    STARTED.append(p)
    return p


def stop_all():
    for p in STARTED:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.time() + 10
    for p in STARTED:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def peerlet_daemon(binary, tmp, name, ip):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    log_path = os.path.join(d, "log")
    env = dict(os.environ, PEERLET_CONFIG="/dev/null", RUST_LOG="info")
    p = start([binary, "daemon", "--listen", ip + ":0", "--api", ip + ":0",
               "--download-dir", os.path.join(d, "dl"), "--state-dir", os.path.join(d, "state"),
               "--no-lan-discovery", "--no-overlay"], log_path, env=env)
    deadline = time.time() + 20
    while time.time() < deadline:
        text = open(log_path, errors="replace").read()
        line = next((l for l in text.splitlines() if l.startswith("peerlet daemon: peers on ")), None)
        if line:
            words = line.split()
            host, port = words[4].rstrip(",").rsplit(":", 1)
            api = words[8].rstrip(",")
            return p, (host, int(port)), api[len("http://"):] if api.startswith("http://") else api
        if p.poll() is not None:
            sys.exit("capture: peerlet %s exited:\n%s" % (name, text))
        time.sleep(0.05)
    sys.exit("capture: peerlet %s did not start" % name)


def cli(binary, api, *args):
    r = subprocess.run([binary, *args, "--api", api], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        log("peerlet", *args, "failed:", r.stderr.strip())
    return r.stdout


def libtorrent_session(ip):
    import libtorrent as lt
    s = lt.session({
        "listen_interfaces": "%s:0" % ip,
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_incoming_utp": False, "enable_outgoing_utp": False,
        "alert_mask": 0,
    })
    return lt, s


# ---------------------------------------------------------------------------
# Cutting streams


def frames(stream):
    """(handshake or None, [(offset, frame bytes incl. prefix)], leftover)."""
    i = 0
    hs = None
    if stream[:20] == b"\x13BitTorrent protocol" and len(stream) >= 68:
        hs = bytes(stream[:68])
        i = 68
    out = []
    while i + 4 <= len(stream):
        n = struct.unpack(">I", stream[i:i + 4])[0]
        if n > 300000 or i + 4 + n > len(stream):
            break
        out.append((i, bytes(stream[i:i + 4 + n])))
        i += 4 + n
    return hs, out, len(stream) - i


def rec(op, payload):
    return bytes([op]) + struct.pack(">H", len(payload)) + payload


class Seeds:
    def __init__(self, dry):
        self.dry = dry
        self.count = {}

    def write(self, target, name, data, limit=40):
        n = self.count.get(target, 0)
        if n >= limit:
            return
        self.count[target] = n + 1
        if self.dry:
            return
        d = os.path.join(CORPUS, target)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "cap_" + name), "wb") as f:
            f.write(data)


def cut(streams, trackers, seeds):
    """streams: [(label, bytes)] in both directions."""
    ext_handshakes = {}
    metadata = []
    pex = []
    n_other = 0
    piece_windows = set()
    for label, s in streams:
        hs, fr, _ = frames(s)
        if not fr and hs is None:
            # Not the plain protocol (aria2c tries an encrypted handshake
            # first): a few of these are hostile openings.
            if s and n_other < 3:
                n_other += 1
                seeds.write("peer_wire", label + "_not_plain", bytes([1, 104, 7]) + s[:1000])
            continue
        # peer_wire: the opening (handshake and first messages, at most
        # 3 KB), and one window around a piece message per sender.
        opening = (hs or b"") + b"".join(f for _, f in fr)
        seeds.write("peer_wire", label + "_opening",
                    bytes([1 if hs else 0, 104, 7]) + opening[:3000])
        seeds.write("peer_wire", label + "_opening_bf104",
                    bytes([(1 if hs else 0) | 2, 104, 9]) + opening[:3000])
        pieces = [k for k, (_, f) in enumerate(fr) if len(f) > 4 and f[4] == 7]
        sender = label.split("_to_")[0].rstrip("0123456789")
        if pieces and sender not in piece_windows:
            piece_windows.add(sender)
            k = pieces[0]
            window = b"".join(f for _, f in fr[max(0, k - 3):k + 1])
            seeds.write("peer_wire", label + "_piece", bytes([0, 104, 3]) + window[:20000])
        small = [f for _, f in fr if len(f) <= 64]
        if small:
            seeds.write("peer_wire", label + "_small", bytes([8, 104, 5]) + b"".join(small[:200]))
        for _, f in fr:
            if len(f) < 6 or f[4] != 20:
                continue
            ext_id, payload = f[5], f[6:]
            if ext_id == 0:
                ext_handshakes.setdefault(label, payload)
            else:
                try:
                    d, end = bdecode_prefix(payload)
                except Exception:
                    continue
                if isinstance(d, dict) and b"msg_type" in d:
                    metadata.append((label, payload))
                elif isinstance(d, dict):
                    # ut_pex (aria2c sends an empty one, "de", at first).
                    pex.append((label, payload))
    for label, payload in ext_handshakes.items():
        seeds.write("extension_handshake", label, payload)
    # ut_metadata: each message alone (op 5: parsed and given to the fetch),
    # and the whole exchange after the sender's handshake (op 1).
    for i, (label, payload) in enumerate(metadata[:12]):
        seeds.write("ut_metadata", "%s_%d" % (label, i), rec(5, payload))
    for label, hs in ext_handshakes.items():
        msgs = [p for l, p in metadata if l == label and b"msg_typei1e" in p]
        if msgs:
            seeds.write("ut_metadata", label + "_fetch",
                        rec(1, hs) + b"".join(rec(5, p) for p in msgs[:2]) + rec(8, b"\x15\x01"))
    # ut_pex: connect, handshake with ut_pex, the message, a tick.
    for i, (label, payload) in enumerate(pex[:10]):
        hs = ext_handshakes.get(label, enc({"m": {"ut_pex": 2}}))
        seeds.write("ut_pex", "%s_%d" % (label, i),
                    b"\x00" + rec(0x00, b"\x02\x07\x1a\xe1") + rec(0x09, hs) + rec(0x02, payload)
                    + rec(0x03, b"") + rec(0x07, b"\x20") + rec(0x03, b""))
    # Trackers.
    for i, (req, resp) in enumerate(trackers.udp_log[:12]):
        seeds.write("tracker_udp", "req_%d" % i, rec(0x0f, req))
        seeds.write("tracker_udp", "resp_%d" % i, rec(0x0f, resp))
    if trackers.udp_log:
        connect = next((r for q, r in trackers.udp_log if r[:4] == b"\0\0\0\0"), None)
        announce = next((r for q, r in trackers.udp_log if r[:4] == b"\0\0\0\1"), None)
        if connect and announce:
            seeds.write("tracker_udp", "flow",
                        rec(7, bytes([0, 1, 0x39])) + rec(1, connect[8:]) + rec(2, announce[8:])
                        + rec(4, b"") + rec(1, connect[8:]) + rec(2, announce[8:]))
    for i, raw in enumerate(trackers.http_answers[:4]):
        seeds.write("tracker_http", "stream_%d" % i, b"\x00\x05" + raw)
        head, body = raw.split(b"\r\n\r\n", 1)
        seeds.write("tracker_http", "body_%d" % i, b"\x02\x00" + body)
        chunked = (head.replace(b"Content-Length: %d" % len(body), b"Transfer-Encoding: chunked")
                   + b"\r\n\r\n" + b"%x\r\n" % 10 + body[:10] + b"\r\n"
                   + b"%x;ext=1\r\n" % (len(body) - 10) + body[10:] + b"\r\n0\r\nX-Trailer: 1\r\n\r\n")
        seeds.write("tracker_http", "chunked_%d" % i, b"\x01\x09" + chunked)


# ---------------------------------------------------------------------------


def wait_for(pred, secs, what):
    deadline = time.time() + secs
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    log("timed out waiting for", what)
    return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peerlet", default=os.path.join(ROOT, "target", "debug", "peerlet"))
    ap.add_argument("--keep", help="also copy the raw streams to this directory")
    ap.add_argument("--dry-run", action="store_true", help="capture, but write no seeds")
    a = ap.parse_args()
    for tool in ("mktorrent", "aria2c"):
        if not shutil.which(tool):
            sys.exit("capture: %s is missing (apt-get install -y %s)" % (tool, tool))
    try:
        import libtorrent  # noqa: F401
    except ImportError:
        sys.exit("capture: python3-libtorrent is missing (run with /usr/bin/python3)")

    tmp = tempfile.mkdtemp(prefix="peerlet-capture-")
    try:
        run(a, tmp)
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def run(a, tmp):
    # The payload and its torrent.
    # In peerlet A's download directory: it seeds what is there.
    data_dir = os.path.join(tmp, "a", "dl")
    os.makedirs(data_dir)
    payload = os.path.join(data_dir, "payload.bin")
    rnd = random.Random(6)
    with open(payload, "wb") as f:
        for _ in range(832):
            f.write(rnd.randbytes(32768))

    # Trackers first (their addresses go in the torrent), peers filled in later.
    trackers = Trackers([])
    http_url = "http://%s:%d/announce" % trackers.http.server_address
    udp_url = "udp://%s:%d" % trackers.udp.getsockname()
    torrent = os.path.join(tmp, "payload.torrent")
    subprocess.run(["mktorrent", "-l", "15", "-a", udp_url, "-a", http_url, "-o", torrent, payload],
                   check=True, capture_output=True, timeout=120)
    with open(torrent, "rb") as f:
        meta, _ = bdecode_prefix(f.read())
    info_raw = enc(meta[b"info"])
    info_hash = hashlib.sha1(info_raw).hexdigest()
    log("torrent", info_hash, "info dictionary of", len(info_raw), "bytes")

    # peerlet A seeds it, behind proxy A.
    pa, a_listen, a_api = peerlet_daemon(a.peerlet, tmp, "a", IP["peerlet_a"])
    cli(a.peerlet, a_api, "add", torrent)
    wait_for(lambda: "100" in cli(a.peerlet, a_api, "ls"), 60, "peerlet A to seed")
    log("peerlet A:", cli(a.peerlet, a_api, "ls").strip())
    proxy_a = Proxy("A", IP["proxy_a"], IP["proxy_a_out"], a_listen)
    trackers.peers.append(proxy_a.addr)

    # aria2c: the .torrent, rate-limited so it overlaps with libtorrent.
    aria_dir = os.path.join(tmp, "aria")
    os.makedirs(aria_dir)
    aria = start(["aria2c", "--dir", aria_dir, "--seed-time=0", "--enable-dht=false",
                  "--enable-dht6=false", "--bt-enable-lpd=false", "--enable-peer-exchange=true",
                  "--max-download-limit=1200K", "--bt-stop-timeout=60", "--summary-interval=0",
                  "--interface", IP["aria"], "--listen-port=6981-6999", "--console-log-level=warn",
                  "--bt-tracker-interval=5", torrent], os.path.join(tmp, "aria.log"))

    # libtorrent: the magnet link, through proxy A.
    lt, ses = libtorrent_session(IP["lt"])
    p = lt.parse_magnet_uri("magnet:?xt=urn:btih:" + info_hash)
    p.save_path = os.path.join(tmp, "lt")
    h = ses.add_torrent(p)
    h.connect_peer(proxy_a.addr)
    wait_for(lambda: h.status().is_seeding, 90, "libtorrent to finish")
    # Let PEX tick while aria2c still downloads.
    wait_for(lambda: aria.poll() is not None, 45, "aria2c to finish")

    # peerlet B fetches the magnet from libtorrent (seeding), via proxy B.
    lt_port = ses.listen_port()
    proxy_b = Proxy("B", IP["proxy_b"], IP["proxy_b_out"], (IP["lt"], lt_port))
    pb, b_listen, b_api = peerlet_daemon(a.peerlet, tmp, "b", IP["peerlet_b"])
    cli(a.peerlet, b_api, "add", info_hash, "--peer", "%s:%d" % proxy_b.addr)
    wait_for(lambda: any(len(c[2]) > 200000 for c in proxy_b.conns), 60, "peerlet B to get pieces")
    time.sleep(2)

    # One announce of our own, so the HTTP tracker's answer is recorded even
    # when every client stayed with the UDP tracker (the first tier).
    import urllib.request
    try:
        urllib.request.urlopen(http_url + "?info_hash=%01&port=6881", timeout=5).read()
    except OSError as e:
        log("HTTP tracker:", e)
    proxy_a.close()
    proxy_b.close()
    trackers.close()
    streams = []
    for proxy, client in ((proxy_a, "client"), (proxy_b, "peerletb")):
        for n, c2s, s2c in proxy.conns:
            server = "peerleta" if proxy is proxy_a else "libtorrent"
            # Who the client was: libtorrent and aria2c differ in their
            # extension handshakes' client name.
            hs_name = client
            m = re.search(rb"1:v\d+:([A-Za-z0-9]+)", bytes(c2s[:4096]))
            if m:
                hs_name = m.group(1).decode().lower()
            streams.append(("%s_%s%d_to_%s" % (proxy.name, hs_name, n, server), bytes(c2s)))
            streams.append(("%s_%s_to_%s%d" % (proxy.name, server, hs_name, n), bytes(s2c)))
    for label, s in streams:
        log("stream", label, len(s), "bytes")
    if a.keep:
        os.makedirs(a.keep, exist_ok=True)
        for label, s in streams:
            with open(os.path.join(a.keep, label + ".bin"), "wb") as f:
                f.write(s)
    seeds = Seeds(a.dry_run)
    cut(streams, trackers, seeds)
    log("seeds written:", json.dumps(seeds.count))


if __name__ == "__main__":
    main()
