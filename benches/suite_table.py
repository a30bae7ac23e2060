#!/usr/bin/env python3
"""Markdown report of one benches/suite.sh run.

    suite_table.py --dir OUT [--subject peerlet]

Reads OUT/results.jsonl (peerbench run), OUT/micro/micro.json (peerbench
micro: ceilings) and OUT/recheck.md (examples/recheck_bench), all from the
same suite run, and prints:

1. per payload, one row per seeder→leecher pair: MB/s, CPU s per GiB of each
   side, peak RSS of each side, and why a pair failed or could not run;
2. the ceilings (loopback TCP, SHA-1, page cache) and the subject's leecher
   throughput as a % of the loopback TCP ceiling (iperf3, 1 stream);
3. the recheck table (the subject's recheck against sha1sum on the same file);
4. the goals: the subject against the best incumbent, each ratio the median
   over rounds of the ratio within one round.

Per-row metrics come from transfer_table.metrics (same definitions as
benches/transfer.sh): MB/s = bytes / done_s / 1e6; seeder CPU = utime+stime
during the transfer window; leecher CPU = whole life; RSS = VmHWM (/proc),
not wait4's ru_maxrss (floored at the harness's own RSS, see transfer_table.py).

"Incumbent as leecher" is its self pair X→X, or subject→X where X→X cannot
run (Transmission); "incumbent as seeder" is X→X, or X→subject.
"""
import argparse
import json
import os
import sys

sys.dont_write_bytecode = True   # no benches/__pycache__ in the working tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from transfer_table import f, kib, med, metrics, mm  # noqa: E402

NOTE_LEECH_FIRST = ("leech-first: the clock and the seeder's CPU start at the seeder's spawn "
                    "(they include its start-up and recheck)")


def load(path):
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def row_metrics(r):
    m = metrics(r)
    m["seed_anon"] = kib((r.get("seed_at_done") or {}).get("RssAnon"))
    # A leecher that exits at completion (lt_client.py) has no /proc entry to
    # read at its done stamp: show wait4's ru_maxrss instead, marked, and keep
    # it out of the goals (it is floored at the harness's own ~30 MiB).
    m["leech_rss_shown"], m["leech_rss_ru"] = m["leech_rss"], False
    if m["leech_rss"] is None and m["leech_ru_maxrss"]:
        m["leech_rss_shown"], m["leech_rss_ru"] = m["leech_ru_maxrss"], True
    return m


def short_error(r):
    e = (r.get("error") or ("verify failed: %s bad pieces" % r.get("verify_bad_pieces")
                            if r.get("done_s") else "failed")).replace("|", "/")
    return e if len(e) <= 110 else e[:107] + "..."


def pair_order(subject):
    def key(p):
        s, l = p.split(":")
        return (p != "%s:%s" % (subject, subject), s != l, l != subject, p)
    return key


def transfer_tables(rows, subject):
    out = []
    cases = sorted({(r["case"], r["piece_kib"], r["bytes"], r.get("files", 1)) for r in rows},
                   key=lambda c: (c[0].startswith("multi"), c[0]))
    for case, piece, nbytes, files in cases:
        rs = [r for r in rows if r["case"] == case and r["piece_kib"] == piece]
        pairs = sorted(dict.fromkeys(r["pair"] for r in rs), key=pair_order(subject))
        out.append("**%s: %s, %d KiB pieces** (%.1f MiB in %d file%s)\n"
                   % (case, "one file" if files == 1 else "many files", piece, nbytes / 1048576.0, files,
                      "" if files == 1 else "s"))
        out.append("| seeder→leecher | ok/runs | MB/s med [min–max] | TTFB s | CPU s/GiB seeder | CPU s/GiB leecher "
                   "| seeder peak RSS MiB (anon) | leecher peak RSS MiB (anon) | note |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for p in pairs:
            prs = [r for r in rs if r["pair"] == p]
            ok = [r for r in prs if r.get("ok")]
            ms = [row_metrics(r) for r in ok]
            col = lambda k: [m[k] for m in ms]  # noqa: E731
            notes = []
            if any(r.get("order") == "leech-first" for r in ok):
                notes.append(NOTE_LEECH_FIRST)
            errs = list(dict.fromkeys(short_error(r) for r in prs if not r.get("ok")))
            if errs and not ok and all(e.startswith("impossible on loopback") for e in errs):
                out.append("| %s | 0/%d | cannot run | | | | | | %s (Transmission never dials 127.x peers "
                           "from a tracker, BASELINES.md) |" % (p.replace(":", "→"), len(prs), errs[0]))
                continue
            if errs:
                notes.append("failed: " + "; ".join("round %s: %s" % (r.get("run"), short_error(r))
                                                   for r in prs if not r.get("ok")))
            if any(m["leech_rss_ru"] for m in ms):
                notes.append("leecher exits at completion: its peak RSS is wait4 ru_maxrss ¹")
            if p.split(":")[1] == "lt" and ok:
                notes.append("lt's RSS counts its mmap'd payload pages")
            out.append("| %s | %d/%d | %s | %s | %s | %s | %s (%s) | %s (%s) | %s |" % (
                p.replace(":", "→"), len(ok), len(prs), mm(col("MBps"), 0), f(med(col("ttfb_s"))),
                f(med(col("seed_cpu_gib"))), f(med(col("leech_cpu_gib"))),
                f(med(col("seed_rss")), 1), f(med(col("seed_anon")), 1),
                f(med(col("leech_rss_shown")), 1), f(med(col("leech_anon")), 1), "; ".join(notes)))
        out.append("")
        out.append("MB/s = bytes / (leecher spawn → its own hash-checked completion) / 10^6. CPU s/GiB: seeder "
                   "utime+stime during the transfer, leecher over its whole life. Peak RSS: VmHWM from /proc "
                   "(anon: RssAnon at completion). ¹ wait4 ru_maxrss is floored at the harness's own RSS "
                   "(~30 MiB, inherited across exec), so it is not used in the goals.\n")
    return out


def micro_section(micro, rows, subject):
    out = []
    if not micro:
        return out, None
    ip1 = (micro.get("iperf3 loopback P=1") or {}).get("MBps_median")
    out.append("**Ceilings** (`peerbench.py micro`, %.0f MiB file hot in the page cache; MB/s = 10^6 B/s, "
               "median [min–max])\n" % (micro.get("bytes", 0) / 1048576.0))
    out.append("| what | MB/s |")
    out.append("|---|---|")
    for k in ("iperf3 loopback P=1", "iperf3 loopback P=2", "dd|socat loopback 2GiB", "python socket pump 2GiB",
              "sha1sum", "openssl sha1", "openssl speed -evp sha1 (16KiB)", "dd read (page cache)",
              "dd write to page cache"):
        v = micro.get(k)
        if not isinstance(v, dict):
            continue
        if "MBps_median" in v:
            out.append("| %s | %.0f [%.0f–%.0f] |" % (k.replace("|", "\\|"), v["MBps_median"], v["MBps_min"],
                                                   v["MBps_max"]))
        elif v.get("MBps") is not None:
            out.append("| %s | %.0f |" % (k, v["MBps"]))
    out.append("")
    if ip1:
        out.append("Leecher throughput as a share of the loopback TCP ceiling (iperf3, 1 stream, %s MB/s):\n" % ip1)
        out.append("| payload | pair | MB/s med | % of ceiling |")
        out.append("|---|---|---|---|")
        for case in sorted({r["case"] for r in rows}, key=lambda c: (c.startswith("multi"), c)):
            for p in sorted({r["pair"] for r in rows if r["case"] == case and r["pair"].split(":")[0] ==
                             r["pair"].split(":")[1]}, key=pair_order(subject)):
                v = med([r["MBps"] for r in rows if r["case"] == case and r["pair"] == p and r.get("ok")])
                if v is not None:
                    out.append("| %s | %s | %.0f | %.1f %% |" % (case, p.replace(":", "→"), v, 100.0 * v / ip1))
        out.append("")
    return out, ip1


def recheck_section(text):
    if not text or not text.strip():
        return []
    return ["**Recheck** (`examples/recheck_bench --file` on the same payload file, in the same run):\n",
            text.strip(), ""]


def goals(rows, subject, ip1):
    """Per payload, the subject against the best incumbent; same-round ratios."""
    out = []
    S = subject
    ok = [r for r in rows if r.get("ok")]
    clients = sorted({c for r in rows for c in r["pair"].split(":")} - {S})
    if not clients or not any(r["pair"] == "%s:%s" % (S, S) for r in ok):
        return out
    out.append("**Goals**: %s against the best incumbent (%s). Each ratio is the median over rounds of "
               "the ratio within one round; in brackets the best incumbent of each round.\n"
               % (S, ", ".join(clients)))
    out.append("| payload | goal | %s | best incumbent | ratio | target | met? |" % S)
    out.append("|---|---|---|---|---|---|---|")
    verdicts = []
    for case in sorted({r["case"] for r in ok}, key=lambda c: (c.startswith("multi"), c)):
        per = {}
        for r in ok:
            if r["case"] == case:
                per.setdefault(r["round"], {})[r["pair"]] = row_metrics(r)
        self_pair = "%s:%s" % (S, S)

        def role_rows(rd, role):
            """{client: metrics} of each incumbent in ROLE in round rd: seed (X→X, else X→S), leech
            (X→X, else S→X) or leech_same_seeder (S→X only)."""
            d = per[rd]
            res = {}
            for c in clients:
                own = "%s:%s" % (c, c)
                mixed = "%s:%s" % ((S, c) if role != "seed" else (c, S))
                if role == "leech_same_seeder":
                    own = mixed
                if own in d:
                    res[c] = d[own]
                elif mixed in d:
                    res[c] = d[mixed]
            return res

        def goal(name, key, role, better, target, fmt_v, self_only=False):
            ratios, subj, bests = [], [], []
            for rd in sorted(per):
                if self_pair not in per[rd] or per[rd][self_pair].get(key) is None:
                    continue
                if self_only:
                    cand = {c: per[rd]["%s:%s" % (c, c)] for c in clients if "%s:%s" % (c, c) in per[rd]}
                else:
                    cand = role_rows(rd, role)
                cand = {c: m[key] for c, m in cand.items() if m.get(key)}
                if not cand:
                    continue
                pick = max if better == "higher" else min
                bc = pick(cand, key=cand.get)
                x = per[rd][self_pair][key]
                ratios.append(x / cand[bc])
                subj.append(x)
                bests.append((bc, cand[bc]))
            if not ratios:
                out.append("| %s | %s | - | - | - | %s | no data |" % (case, name, target[0]))
                return
            r = med(ratios)
            ok_ = r >= target[1] if better == "higher" else r <= target[1]
            names = sorted({b[0] for b in bests})
            bval = med([b[1] for b in bests])
            out.append("| %s | %s | %s | %s %s | **%s×** (%s) | %s | %s |" % (
                case, name, fmt_v(med(subj)), "/".join(names), fmt_v(bval), f(r),
                ", ".join("%s %s" % (f(x), b[0]) for x, b in zip(ratios, bests)), target[0],
                "**met**" if ok_ else "**not met**"))
            verdicts.append((case, name, ok_))

        mbps = lambda v: "%.0f MB/s" % v  # noqa: E731
        cpu = lambda v: "%.2f s/GiB" % v  # noqa: E731
        mib = lambda v: "%.1f MiB" % v  # noqa: E731
        goal("throughput, self pairs (%s→%s vs X→X)" % (S, S), "MBps", None, "higher", ("≥ 1.5×", 1.5), mbps,
             self_only=True)
        goal("leecher throughput, same seeder (%s→%s vs %s→X)" % (S, S, S), "MBps", "leech_same_seeder", "higher",
             ("≥ 1.5×", 1.5), mbps)
        goal("CPU s/GiB, both sides, self pairs", "cpu_gib", None, "lower", ("≤ 0.6×", 0.6), cpu, self_only=True)
        goal("CPU s/GiB, leecher (X→X or %s→X)" % S, "leech_cpu_gib", "leech", "lower", ("≤ 0.6×", 0.6), cpu)
        goal("CPU s/GiB, seeder in transfer (X→X or X→%s)" % S, "seed_cpu_gib", "seed", "lower", ("≤ 0.6×", 0.6),
             cpu)
        goal("leecher peak RSS (X→X or %s→X)" % S, "leech_rss", "leech", "lower", ("≤ 0.5×", 0.5), mib)
        goal("seeder peak RSS (X→X or X→%s)" % S, "seed_rss", "seed", "lower", ("≤ 0.5×", 0.5), mib)
        if ip1:
            xs = [per[rd][self_pair]["MBps"] for rd in per if self_pair in per[rd]]
            if xs:
                share = med(xs) / ip1
                out.append("| %s | leecher throughput / loopback TCP ceiling | %.0f MB/s | iperf3 %s MB/s | "
                           "**%.0f %%** | ≥ 50 %% | %s |" % (case, med(xs), ip1, 100 * share,
                                                           "**met**" if share >= 0.5 else "**not met**"))
                verdicts.append((case, "ceiling", share >= 0.5))
    out.append("")
    out.append("Met: %d of %d goal rows." % (sum(1 for v in verdicts if v[2]), len(verdicts)))
    out.append("")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True, help="a benches/suite.sh results directory")
    ap.add_argument("--subject", default="peerlet")
    a = ap.parse_args()
    rows = load(os.path.join(a.dir, "results.jsonl"))
    micro = None
    mp = os.path.join(a.dir, "micro", "micro.json")
    if os.path.exists(mp):
        with open(mp) as fh:
            micro = json.load(fh)
    recheck = None
    rp = os.path.join(a.dir, "recheck.md")
    if os.path.exists(rp):
        with open(rp) as fh:
            recheck = fh.read()
    meta = {}
    if os.path.exists(os.path.join(a.dir, "meta.json")):
        with open(os.path.join(a.dir, "meta.json")) as fh:
            meta = json.load(fh)
    out = []
    if meta.get("versions"):
        out.append("Clients: " + "; ".join("%s = %s" % kv for kv in sorted(meta["versions"].items())) + "\n")
    out += transfer_tables(rows, a.subject)
    m, ip1 = micro_section(micro, rows, a.subject)
    out += m
    out += recheck_section(recheck)
    out += goals(rows, a.subject, ip1)
    print("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())
