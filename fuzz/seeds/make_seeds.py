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


def main():
    real = real_torrents()
    bencode_seeds()
    metainfo_seeds(real)
    # Real torrents are good bencode seeds too.
    for name, data in real.items():
        write("bencode_decode", name, data)
    magnet_seeds()


if __name__ == "__main__":
    main()
