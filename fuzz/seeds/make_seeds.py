#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/.

Run from the repository root after `cargo build` (it uses target/debug/peerlet
and mktorrent for real .torrent files). Files are named by what they hold;
inputs libFuzzer later adds are named by their SHA-1 and are kept as well.
"""
import hashlib, os, shutil, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def enc(v):
    """Bencode, with dictionary keys in the order given (so unsorted is possible)."""
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(enc(x) for x in v) + b"e"
    if isinstance(v, dict):
        return b"d" + b"".join(enc(k) + enc(x) for k, x in v.items()) + b"e"
    raise TypeError(v)


def sdict(d):
    """A dict with keys sorted as bencode requires."""
    return dict(sorted(d.items(), key=lambda kv: kv[0] if isinstance(kv[0], bytes) else kv[0].encode()))


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def info(name="file.bin", length=20000, plen=16384, n=None, **extra):
    if n is None:
        n = min(-(-length // plen), 8) if isinstance(length, int) and length > 0 else 1
    d = {"name": name, "piece length": plen, "pieces": b"\x07" * 20 * n}
    if length is not None:
        d["length"] = length
    d.update(extra)
    return sdict(d)


def torrent(inf, **outer):
    d = {"announce": "http://tracker.example/announce", "info": inf}
    d.update(outer)
    return enc(sdict(d))


def multi(files, plen=16384, name="dir"):
    total = sum(f[1] for f in files)
    n = min(max(1, -(-total // plen)), 8)  # hostile totals keep a small pieces field
    fl = [sdict({"length": ln, "path": p}) for p, ln in files]
    return sdict({"files": fl, "name": name, "piece length": plen, "pieces": b"\x01" * 20 * n})


def bencode_seeds():
    t = "bencode_decode"
    samples = {
        "int": b"i42e", "int_neg": b"i-42e", "int_zero": b"i0e",
        "int_max": b"i9223372036854775807e", "int_min": b"i-9223372036854775808e",
        "str": b"4:spam", "str_empty": b"0:", "list": b"l4:spami42ee",
        "list_empty": b"le", "dict_empty": b"de",
        "dict": b"d3:bar4:spam3:fooi42ee",
        "nested": b"d1:ad1:bli1ei2eee1:c3:xyze",
        "ext_handshake": enc(sdict({"m": sdict({"ut_metadata": 1, "ut_pex": 2}), "p": 6881,
                                    "v": "peerlet 0.1", "yourip": b"\x7f\x00\x00\x01",
                                    "metadata_size": 31235, "reqq": 250})),
        "ut_metadata_data": enc(sdict({"msg_type": 1, "piece": 0, "total_size": 3})) ,
        "tracker_response": enc(sdict({"interval": 1800, "complete": 3, "incomplete": 1,
                                       "peers": b"\x7f\x00\x00\x01\x1a\xe1" * 3})),
        "krpc_ping": enc(sdict({"t": "aa", "y": "q", "q": "ping", "a": sdict({"id": b"A" * 20})})),
        "binary_key": enc(sdict({b"\x00": 1, b"\xff\xfe": b"\x00\x01"})),
        # Hostile: each must be refused (or accepted) without harm.
        "deep_list": b"l" * 200 + b"e" * 200,
        "deep_dict": b"d1:a" * 40 + b"i1e" + b"e" * 40,
        "deep_33": b"l" * 33 + b"e" * 33,
        "deep_32": b"l" * 32 + b"e" * 32,
        "huge_len": b"99999999999999999999:x",
        "huge_len2": b"4294967296:x",
        "len_just_over_message": b"65537:" + b"x" * 10,
        "huge_int": b"i99999999999999999999e",
        "int_overflow_by_one": b"i9223372036854775808e",
        "int_leading_zero": b"i03e", "int_neg_zero": b"i-0e", "int_empty": b"ie",
        "str_leading_zero": b"05:hello",
        "unsorted": b"d1:bi1e1:ai2ee", "dup_key": b"d1:ai1e1:ai2ee",
        "int_key": b"di1ei2ee", "key_no_value": b"d1:ae",
        "trailing": b"i1ei2e", "truncated": b"d4:infod6:lengthi1",
        "many_tokens": b"l" + b"i0e" * 1200 + b"e",
        "many_empty_strings": b"l" + b"0:" * 1500 + b"e",
    }
    for name, data in samples.items():
        write(t, name, data)


def run(*cmd, cwd=None):
    subprocess.run(cmd, check=True, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def real_torrents():
    """Small real torrents from mktorrent and peerlet create."""
    out = {}
    peerlet = os.path.join(ROOT, "target", "debug", "peerlet")
    with tempfile.TemporaryDirectory() as tmp:
        single = os.path.join(tmp, "hello.txt")
        with open(single, "wb") as f:
            f.write(b"hello peerlet\n" * 3000)
        tree = os.path.join(tmp, "tree")
        os.makedirs(os.path.join(tree, "sub", "deeper"))
        for rel, size in [("a.bin", 40000), ("sub/b.txt", 100), ("sub/deeper/c.dat", 17000),
                          ("sub/empty", 0), ("z \u00e9t\u00e9.txt", 5)]:
            with open(os.path.join(tree, rel), "wb") as f:
                f.write(bytes((i * 7) % 251 for i in range(size)))
        jobs = {
            "mktorrent_single": ["mktorrent", "-d", "-l", "15", "-a", "http://t.example/ann", "-o", "{o}", single],
            "mktorrent_multi": ["mktorrent", "-d", "-l", "15", "-a", "http://t1.example/ann",
                                "-a", "udp://t2.example:6969", "-c", "a comment", "-w", "http://ws.example/",
                                "-o", "{o}", tree],
            "mktorrent_private": ["mktorrent", "-d", "-p", "-l", "15", "-a", "http://t.example/ann",
                                  "-s", "SRC", "-o", "{o}", tree],
            "peerlet_single": [peerlet, "create", "--no-date", "--piece-size", "16K",
                               "-t", "http://t.example/ann", "-o", "{o}", single],
            "peerlet_multi": [peerlet, "create", "--no-date", "--piece-size", "32K", "-t", "udp://a:1",
                              "-t", "http://b/ann", "-w", "http://ws/", "-c", "comment", "-o", "{o}", tree],
            "peerlet_private_named": [peerlet, "create", "--no-date", "-p", "-n", "renamed",
                                      "--piece-size", "16K", "-o", "{o}", tree],
        }
        for name, cmd in jobs.items():
            o = os.path.join(tmp, name + ".torrent")
            run(*[c.replace("{o}", o) for c in cmd])
            with open(o, "rb") as f:
                out[name] = f.read()
    return out


def metainfo_seeds(real):
    t = "metainfo_parse"
    for name, data in real.items():
        write(t, name, data)
    seeds = {
        "min_single": torrent(info()),
        "min_multi": torrent(multi([(["a"], 10), (["b", "c"], 20000)])),
        "pad_file": torrent(multi([(["a"], 10), ([".pad", "16374"], 16374), (["b"], 5)])),
        "announce_list": torrent(info(), **{"announce-list": [["http://a/"], ["udp://b:1", ""], "bad"],
                                            "url-list": ["http://w/"], "creation date": 1700000000,
                                            "comment": "c", "created by": "x"}),
        "utf8_name": torrent(info(name="\u00fcber \u2603.txt")),
        "non_utf8_name": torrent(info(name=b"\xff\xfe.bin")),
        # Hostile.
        "dotdot_path": torrent(multi([(["..", "etc", "passwd"], 10)])),
        "dotdot_name": torrent(info(name="..")),
        "slash_in_component": torrent(multi([(["a/../../b"], 10)])),
        "backslash": torrent(multi([(["a\\..\\b"], 10)])),
        "absolute": torrent(multi([(["/etc/passwd"], 10)])),
        "drive_prefix": torrent(multi([(["C:", "x"], 10)])),
        "nul": torrent(multi([([b"a\x00b"], 10)])),
        "empty_component": torrent(multi([(["", "x"], 10)])),
        "empty_path": torrent(multi([([], 10)])),
        "too_deep_path": torrent(multi([(["d"] * 101, 10)])),
        "long_component": torrent(multi([(["a" * 256], 10)])),
        # 100 invalid bytes become 300 bytes of U+FFFD (regression, commit 32b816d).
        "long_lossy_component": torrent(multi([([b"\xff" * 100], 10)])),
        "long_lossy_name": torrent(info(name=b"a" * 155 + b"\xff" * 34)),
        "dup_path": torrent(multi([(["a"], 10), (["a"], 10)])),
        "file_and_dir": torrent(multi([(["a"], 10), (["a", "b"], 10)])),
        "negative_length": torrent(info(length=-1, n=1)),
        "zero_length": torrent(info(length=0, n=1)),
        "huge_length": torrent(info(length=2**62, n=1)),
        "total_overflow": torrent(multi([(["a"], 2**62), (["b"], 2**62), (["c"], 2**62), (["d"], 2**62)])),
        "piece_length_small": torrent(info(plen=1)),
        "piece_length_huge": torrent(info(plen=2**40, n=1)),
        "pieces_mismatch": torrent(info(n=5)),
        "pieces_not_20": enc(sdict({"info": sdict({"length": 5, "name": "x", "piece length": 16384,
                                                   "pieces": b"x" * 19})})),
        "length_and_files": torrent(sdict({**multi([(["a"], 10)]), "length": 10})),
        "unsorted_info": b"d4:infod4:name1:x6:lengthi1e12:piece lengthi16384e6:pieces20:" + b"p" * 20 + b"ee",
        "unsorted_outer": b"d4:infod6:lengthi1e4:name1:x12:piece lengthi16384e6:pieces20:" + b"p" * 20 + b"e8:announce1:ue",
        "info_not_dict": enc({"info": "nope"}),
        "not_dict": b"l4:infoe",
        "deep_outer": b"d1:a" + b"l" * 150 + b"e" * 150 + b"4:info" + enc(info()) + b"e",
        "string_types": torrent(sdict({"files": "x", "name": "n", "piece length": 16384, "pieces": b"p" * 20})),
    }
    for name, data in seeds.items():
        write(t, name, data)


def magnet_seeds():
    t = "magnet_parse"
    hx = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a"
    b32 = "YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK"
    seeds = {
        "hex": f"magnet:?xt=urn:btih:{hx}",
        "base32": f"magnet:?xt=urn:btih:{b32}",
        "base32_lower": f"magnet:?xt=urn:btih:{b32.lower()}",
        "full": f"magnet:?xt=urn:btih:{hx}&dn=Some+File%21&tr=udp%3A%2F%2Ft%3A80"
                f"&tr=http://t2/announce?x=1&x.pe=127.0.0.1:6881&x.pe=[::1]:7000",
        "indexed": f"magnet:?xt.1=urn:btih:{hx}&tr.1=http://a/&tr.2=http://b/&dn=%C3%BCber",
        "upper_prefix": f"MAGNET:?xt=urn:btih:{hx.upper()}&dn=x",
        "same_hash_twice": f"magnet:?xt=urn:btih:{hx}&xt=urn:btih:{b32}",
        "hybrid_v2": f"magnet:?xt=urn:btih:{hx}&xt=urn:btmh:1220" + "ab" * 32,
        "v2_only": "magnet:?xt=urn:btmh:1220" + "ab" * 32,
        "conflict": f"magnet:?xt=urn:btih:{hx}&xt=urn:btih:" + "0" * 40,
        "bad_escape": f"magnet:?xt=urn:btih:{hx}&dn=%zz",
        "truncated_escape": f"magnet:?xt=urn:btih:{hx}&dn=%",
        "non_utf8_escape": f"magnet:?xt=urn:btih:{hx}&dn=%ff",
        "bad_peer": f"magnet:?xt=urn:btih:{hx}&x.pe=h:0&x.pe=nope",
        "empty_params": f"magnet:?&&xt=urn:btih:{hx}&&tr=&dn",
        "no_hash": "magnet:?dn=x&tr=http://t/",
        "short_hash": "magnet:?xt=urn:btih:1234",
        "plus_and_amp": f"magnet:?xt=urn:btih:{hx}&dn=a+b%26c%3Dd%2B&tr=http://t/a?x=1%26y=2",
        # Canonical form (each '+' becomes %20) over MAX_LEN (regression, commit c582da8).
        "canonical_too_long": f"magnet:?xt=urn:btih:{hx}&dn=" + "+" * 5500,
        "unicode": f"magnet:?xt=urn:btih:{hx}&dn=\u00fcber\u2603&tr=http://\u00e9.example/",
    }
    for name, s in seeds.items():
        write(t, name, s.encode())


# ---------------------------------------------------------------------------
# Peer wire, extension messages, trackers, configuration (the targets added
# with capture.py; see the layouts at the top of each fuzz_targets/*.rs).


def rec(op, payload):
    """One record of the record-based targets: [op, len_hi, len_lo, bytes]."""
    return bytes([op]) + len(payload).to_bytes(2, "big") + payload


def msg(mid, payload=b""):
    return (1 + len(payload)).to_bytes(4, "big") + bytes([mid]) + payload


def u32(n):
    return n.to_bytes(4, "big")


HANDSHAKE = b"\x13BitTorrent protocol" + bytes([0, 0, 0, 0, 0, 0x10, 0, 0x04]) + b"\x11" * 20 + b"-PL0001-abcdefghijkl"


def peer_wire_seeds():
    t = "peer_wire"
    block = lambda i, b, n: u32(i) + u32(b) + u32(n)
    every = (
        b"\0\0\0\0" + msg(0) + msg(1) + msg(2) + msg(3) + msg(4, u32(7)) + msg(5, b"\xff" * 3)
        + msg(6, block(1, 0, 16384)) + msg(7, u32(1) + u32(0) + b"x" * 64) + msg(8, block(1, 0, 16384))
        + msg(9, b"\x1a\xe1") + msg(13, u32(2)) + msg(14) + msg(15) + msg(16, block(2, 16384, 16384))
        + msg(17, u32(3)) + msg(20, b"\x00" + b"d1:md11:ut_metadatai1eee") + msg(99, b"hello")
    )
    write(t, "every_id", bytes([1, 3, 1]) + HANDSHAKE + every)
    write(t, "every_id_small_chunks", bytes([9, 3, 2]) + HANDSHAKE + every)
    write(t, "no_handshake_bf3", bytes([2, 3, 4]) + every)
    write(t, "piece_full_block", bytes([0, 0, 5]) + msg(7, u32(0) + u32(0) + bytes(16384)))
    write(t, "piece_too_long", bytes([0, 0, 6]) + (9 + 16385).to_bytes(4, "big") + b"\x07")
    write(t, "frame_too_long", bytes([0, 0, 7]) + (1 << 20).to_bytes(4, "big"))
    write(t, "bitfield_wrong_len", bytes([2, 4, 8]) + msg(5, b"\xff" * 3))
    write(t, "bitfield_max", bytes([6, 0, 9]) + (1 + 262144).to_bytes(4, "big") + b"\x05" + bytes(64))
    write(t, "have_bad_len", bytes([0, 0, 10]) + msg(4, u32(1) + b"x"))
    write(t, "piece_short", bytes([0, 0, 11]) + msg(7, b"\0\0\0"))
    write(t, "extended_empty", bytes([0, 0, 12]) + msg(20))
    write(t, "unknown_max", bytes([0, 0, 13]) + (1 + 32768).to_bytes(4, "big") + b"\x63" + bytes(100))
    write(t, "bad_protocol", bytes([1, 0, 14]) + b"\x13BitTorrent protocoX" + bytes(48))
    write(t, "handshake_split", bytes([9, 0, 15]) + HANDSHAKE + b"\0\0\0\0")


def ext_handshake_seeds():
    t = "extension_handshake"
    ours = enc(sdict({"m": sdict({"ut_metadata": 1, "ut_pex": 2}), "metadata_size": 31235, "p": 6881,
                      "reqq": 250, "v": "peerlet 0.1.0", "yourip": b"\x7f\x00\x00\x01"}))
    write(t, "peerlet", ours)
    write(t, "disable", enc({"m": sdict({"ut_metadata": 0, "ut_pex": 0})}))
    write(t, "many", enc({"m": sdict({("x%02d" % i): i for i in range(40)} | {"ut_metadata": 3, "ut_pex": 4})}))
    write(t, "bad_types", enc(sdict({"m": sdict({"ut_metadata": -1, "ut_pex": 256, "a" * 70: 5}),
                                     "metadata_size": -5, "p": 0, "reqq": -1, "v": b"\xff\x00\x01" * 30,
                                     "yourip": b"\x01\x02\x03", "ipv4": b"\x0a\0\0\x01",
                                     "ipv6": bytes(16)})))
    write(t, "huge", enc(sdict({"metadata_size": 2**62, "reqq": 2**40, "p": 65535,
                                "v": "\u00fc" * 40, "yourip": bytes(range(16))})))
    write(t, "not_dict", b"li1ei2ee")
    write(t, "m_not_dict", b"d1:mi5ee")
    write(t, "unsorted", b"d1:pi1e1:mdee")


def ut_metadata_seeds():
    t = "ut_metadata"
    req = lambda p: enc(sdict({"msg_type": 0, "piece": p}))
    data = lambda p, total, body: enc(sdict({"msg_type": 1, "piece": p, "total_size": total})) + body
    rej = lambda p: enc(sdict({"msg_type": 2, "piece": p}))
    write(t, "parse_only", rec(5, req(0)) + rec(5, data(1, 40000, b"x" * 100)) + rec(5, rej(2))
          + rec(5, enc(sdict({"msg_type": 7, "piece": 0}))) + rec(5, req(0) + b"trailing")
          + rec(5, data(0, 40000, bytes(16385))) + rec(5, enc({"msg_type": 1, "piece": 0})))
    # Two peers handshake with the right size; every request answered: Done.
    hs = lambda p: rec(0x00 | (p << 4), bytes([0x03, 5]))
    answer = lambda p: rec(0x02 | (p << 4), b"\x00")
    write(t, "fetch_done", hs(0) + hs(1) + answer(0) + answer(1) + answer(0) + answer(1) + answer(0))
    write(t, "fetch_corrupt", hs(0) + hs(1) + rec(0x03, b"\x00\x10") + answer(1) + answer(0) + answer(1)
          + answer(0) + hs(2) + answer(2) + answer(2) + answer(2))
    write(t, "fetch_reject_timeout", hs(0) + hs(1) + rec(0x06, b"\x00") + rec(0x08, b"\x19\x01")
          + rec(0x0a, b"") + answer(0) + answer(1) + rec(0x07 | 0x10, b"") + rec(0x09, b"\x30")
          + rec(0x0a, b"") + answer(0) + answer(0))
    write(t, "fetch_sizes", hs(0) + rec(0x10, bytes([0x0b, 7])) + rec(0x20, bytes([0x0d, 9]))
          + rec(0x30, bytes([0x0f, 0]) + (2**40).to_bytes(8, "big")) + rec(0x10, bytes([0x0b, 7]))
          + answer(0) + rec(0x04 | 0x10, b"\x00\x05"))
    write(t, "server", rec(0x0b, b"\x00\x00") + rec(0x0b, b"\x00\x01") + rec(0x0b, b"\x00\x02")
          + rec(0x0b, b"\x00\x03") + rec(0x0b, b"\x00\x09") + rec(0x0b, b"\xff\xff"))


def pex_payload(added=(), added6=(), dropped=(), dropped6=(), flags=None, flags6=None):
    import socket
    c4 = lambda l: b"".join(socket.inet_aton(ip) + p.to_bytes(2, "big") for ip, p in l)
    c6 = lambda l: b"".join(socket.inet_pton(socket.AF_INET6, ip) + p.to_bytes(2, "big") for ip, p in l)
    d = {"added": c4(added), "added.f": flags if flags is not None else bytes([0x10] * len(added)),
         "added6": c6(added6), "added6.f": flags6 if flags6 is not None else bytes([0x02] * len(added6)),
         "dropped": c4(dropped), "dropped6": c6(dropped6)}
    return enc(sdict(d))


def ut_pex_seeds():
    t = "ut_pex"
    connect = lambda p, kind, x, port, out: rec(0x00 | (p << 4), bytes([kind | (4 if out else 0), x]) + port.to_bytes(2, "big"))
    hs = lambda p, pid, port: rec(0x01 | (p << 4), bytes([3, pid]) + port.to_bytes(2, "big"))
    tick = rec(0x03, b"")
    later = rec(0x07, b"\x20")
    lt = pex_payload(added=[("10.0.0.5", 6881), ("127.0.0.1", 7000), ("0.0.0.0", 1), ("10.0.0.6", 0)],
                     added6=[("fd00::5", 6881), ("::ffff:10.0.0.7", 51413)],
                     dropped=[("10.0.0.9", 6881)], dropped6=[("fd00::9", 1)])
    write(t, "exchange", b"\x00" + connect(0, 2, 1, 6881, True) + hs(0, 8, 0) + connect(1, 0, 2, 40000, False)
          + hs(1, 2, 6882) + connect(2, 4, 3, 6883, True) + hs(2, 3, 0) + rec(0x12, lt) + tick + later
          + rec(0x40, b"") + tick + later + rec(0x22, lt) + rec(0x06, bytes([5, 0, 0x1a, 0xe1])) + tick)
    write(t, "private", b"\x01" + connect(0, 2, 1, 6881, True) + hs(0, 8, 0) + rec(0x02, lt) + tick)
    many = pex_payload(added=[("10.1.%d.%d" % (i // 250, i % 250 + 1), 6881) for i in range(260)],
                       dropped=[("10.2.0.%d" % (i + 1), 1) for i in range(210)])
    write(t, "caps", b"\x00" + connect(0, 2, 1, 6881, True) + hs(0, 8, 0) + rec(0x02, many))
    write(t, "ragged", b"\x00" + rec(0x02, enc(sdict({"added": b"\x0a\0\0\x01\x1a\xe1\x0a", "added.f": b"",
                                                       "added6": b"\x01" * 20, "dropped": 5}))))
    write(t, "disable_reenable", b"\x00" + connect(0, 2, 1, 6881, True) + hs(0, 8, 0) + connect(1, 2, 2, 6881, True)
          + hs(1, 9, 0) + tick + rec(0x01, bytes([1, 0, 0, 0])) + later + tick + hs(0, 8, 0) + later + tick
          + rec(0x14, b"") + later + tick)


def tracker_udp_seeds():
    t = "tracker_udp"
    tid = b"\x00\x00\x00\x00"
    connect = u32(0) + tid + (0x1122334455667788).to_bytes(8, "big")
    announce = u32(1) + tid + u32(1800) + u32(3) + u32(5) + bytes([192, 0, 2, 1, 0x1a, 0xe1]) * 3
    announce6 = u32(1) + tid + u32(60) + u32(0) + u32(1) + bytes(15) + b"\x01\x1a\xe1"
    scrape = u32(2) + tid + (u32(1) + u32(2) + u32(3)) * 2
    error = u32(3) + tid + b"connection id expired\x00\xff" + b"x" * 600
    for name, d in {"connect": connect, "announce": announce, "announce6": announce6,
                    "scrape": scrape, "error": error, "ragged": announce + b"\x01",
                    "unknown_action": u32(9) + tid}.items():
        write(t, "packet_" + name, rec(0x0f, d))
    res = lambda addrs: rec(0x07, b"".join(bytes([k, x, p]) for k, x, p in addrs))
    write(t, "flow_v4", res([(0, 1, 0x39)]) + rec(1, connect[8:]) + rec(2, announce[8:]) + rec(4, b"")
          + rec(1, connect[8:]) + rec(2, announce[8:]) + rec(6, b"") + rec(4, b"") + rec(1, connect[8:]))
    write(t, "flow_v6_errors", res([(1, 2, 0x40), (2, 3, 0x41)]) + rec(1, connect[8:]) + rec(0, error)
          + rec(3, b"\x10\x00") + rec(0x11, connect[8:]) + rec(0x21, connect[8:]) + rec(4, b"") + rec(4, b"")
          + rec(1, connect[8:]) + rec(2, announce6[8:]) + rec(5, b"\x01\x00") + rec(4, b""))
    write(t, "flow_timeouts", res([(0, 1, 1)]) + rec(4, b"") * 10 + rec(7, b"") + rec(3, b"\xff\xff"))
    write(t, "add_trackers", rec(8, b"udp://127.0.0.1:6969/announce") + rec(8, b"http://t.example/a")
          + rec(8, b"wss://x") + rec(5, b"\x02\x00") + rec(4, b""))


def tracker_http_seeds():
    t = "tracker_http"
    body = enc(sdict({"interval": 1800, "min interval": 60, "complete": 3, "incomplete": 7,
                      "tracker id": "abc", "warning message": "slow down",
                      "peers": bytes([10, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0x1a, 0xe2]),
                      "peers6": bytes(15) + b"\x01\x1a\xe1"}))
    dict_peers = enc(sdict({"interval": 900, "peers": [sdict({"ip": "10.0.0.1", "peer id": "x" * 20, "port": 6881}),
                                                       sdict({"ip": "2001:db8::1", "port": 80}),
                                                       sdict({"ip": "tracker.example", "port": 1}),
                                                       sdict({"ip": "10.0.0.3", "port": 70000})]}))
    failure = enc({"failure reason": "unregistered torrent"})
    scrape = enc({"files": {b"\x01" * 20: sdict({"complete": 5, "downloaded": 50, "incomplete": 2}),
                            b"short": {"complete": 1}}})
    for name, b in {"compact": body, "dict_peers": dict_peers, "failure": failure, "scrape": scrape,
                    "negative": enc(sdict({"interval": -1, "complete": 2**40, "peers": b"\x01" * 7})),
                    "not_dict": b"le", "empty": b""}.items():
        write(t, "body_" + name, b"\x02\x00" + b)
    ok = lambda extra, b: b"HTTP/1.1 200 OK\r\n" + extra + b"\r\n" + b
    streams = {
        "content_length": ok(b"Content-Length: %d\r\n" % len(body), body),
        "chunked": ok(b"Transfer-Encoding: chunked\r\n", b"5\r\n" + body[:5] + b"\r\n%x\r\n" % (len(body) - 5)
                      + body[5:] + b"\r\n0\r\n\r\n"),
        "until_close": b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\n" + body,
        "continue": b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"Content-Length: %d\r\n" % len(failure), failure),
        "redirect": b"HTTP/1.1 302 Found\r\nLocation: /other?x=1\r\nContent-Length: 0\r\n\r\n",
        "redirect_abs": b"HTTP/1.1 301 Moved\r\nLocation: http://[2001:db8::1]:8080/a\r\n\r\n",
        "no_content": b"HTTP/1.1 204 No Content\r\n\r\n",
        "status_404": b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n" % len(failure) + failure,
        "bad_length": ok(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"12345"),
        "gzip": ok(b"Content-Encoding: gzip\r\n", b""),
        "folded": b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
        "huge_length": ok(b"Content-Length: 99999999999\r\n", b""),
        "chunk_ext_trailer": ok(b"Transfer-Encoding: identity, chunked\r\n", b"3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n"),
        "lf_only": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nle",
    }
    for i, (name, s) in enumerate(streams.items()):
        write(t, "stream_" + name, bytes([i & 1 | (4 if i % 3 == 0 else 0), i]) + s)
    urls = {"plain": "http://tracker.example/announce\nother?x=1",
            "ipv6": "HTTP://[2001:DB8::1]:8080/a/b?q#frag\n//h.example:81/x",
            "no_path": "http://h.example?x\n../up",
            "userinfo": "http://user@h.example/\nhttp://h.example:0/",
            "https": "https://h.example/a\nhttp://h.example/b"}
    for name, u in urls.items():
        write(t, "url_" + name, b"\x03\x00" + u.encode())


def config_seeds():
    t = "config_file"
    with open(os.path.join(ROOT, "examples", "peerlet.toml"), "rb") as f:
        example = f.read()
    write(t, "example", example)
    write(t, "example_uncommented", b"\n".join(l[1:] if l.startswith(b"#") and b" = " in l else l
                                                for l in example.split(b"\n")))
    seeds = {
        "all_kinds": 'listen = "0.0.0.0:6881"\napi = "127.0.0.1:7441"\nweb = false\ndownload_dir = "dl"\n'
                     'state_dir = "/var/lib/peerlet/state"\ndownload_limit = "500K"\nupload_limit = 1048576\n'
                     'memory_limit = "8M"\nworkers = 2\nbootstrap = ["10.0.0.1:7000", "[fd00::1]:7000", "node.example:7000"]\n'
                     'lan_beacon = "239.192.76.80:7442"\nlog = "info,peerlet::net=debug"\nsearch_ttl = 4\n',
        "errors": 'listen = 5\nuploadlimit = "1K"\nworkers = -1\nmemory_limit = "1T"\nbootstrap = ["0.0.0.0:1", 5]\n'
                  'lan_beacon = "10.0.0.1:7442"\nlog = "nonsense=bad"\ndownload_dir = "~/x"\n[section]\na = 1\n',
        "syntax": 'listen = "0.0.0.0:6881\nweb = tru\n',
        "escapes": 'log = "\\u0077arn"\ndownload_dir = \'/tmp/a "b"\'\nstate_dir = """/tmp/\nmulti"""\n',
        "numbers": 'workers = 0x10\ndisk_retry = 1_000\ncheckpoint_mib = 0o7\nupload_limit = 1e3\nbeacon_interval = +5\n',
        "dotted": 'a.b.c = 1\n"listen" = "1.2.3.4:5"\n[[x]]\n',
        "dup": 'web = true\nweb = false\n',
    }
    for name, s in seeds.items():
        write(t, name, s.encode())


def main():
    real = real_torrents()
    bencode_seeds()
    metainfo_seeds(real)
    # Real torrents are good bencode seeds too.
    for name, data in real.items():
        write("bencode_decode", name, data)
    magnet_seeds()
    new_target_seeds()


def new_target_seeds():
    peer_wire_seeds()
    ext_handshake_seeds()
    ut_metadata_seeds()
    ut_pex_seeds()
    tracker_udp_seeds()
    tracker_http_seeds()
    config_seeds()


if __name__ == "__main__":
    main()
