#!/usr/bin/env python3
"""Markdown table of a peerbench results.jsonl for benches/transfer.sh.

    transfer_table.py RESULTS.jsonl [RESULTS2.jsonl ...] [--ref aria2:aria2] [--subject peerlet:peerlet]

Per pair (successful, hash-verified runs only): median [min-max] MB/s,
done seconds, time to first byte, the 10->90 % rate, CPU seconds of each side
and per GiB, peak RSS of each side; then the subject/ref ratios, each the
median over rounds of the ratio within one round (same payload, back to
back), and the goals.

CPU columns:
  seed xfer  seeder utime+stime from the leecher's spawn to its done stamp
             (/proc, the harness's seed_cpu_transfer_s)
  seed total seeder CPU over its whole life (wait4 rusage); for peerlet this
             includes the recheck of the payload on `add`, which aria2 skips
             (--bt-seed-unverified)
  leech      leecher CPU over its whole life (wait4 rusage)
  CPU s/GiB  (seed xfer + leech) / GiB moved

RSS columns are VmHWM from /proc (the seeder's just before it is stopped,
the leecher's at its done stamp), not wait4's ru_maxrss: a child that the
harness's python forks and execs inherits python's RSS high-water mark in
ru_maxrss (the kernel carries the old mm's hiwater across exec), so
ru_maxrss is never below the harness's own ~30 MiB.  It is printed below
the table for reference.
"""
import argparse
import json
import statistics
import sys

GIB = float(1 << 30)
MIB = 1024.0


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def f(x, nd=2):
    return "-" if x is None else ("%.*f" % (nd, x))


def mm(xs, nd=2):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    if len(xs) == 1:
        return f(xs[0], nd)
    return "%s [%s–%s]" % (f(med(xs), nd), f(min(xs), nd), f(max(xs), nd))


def metrics(r):
    gib = r["bytes"] / GIB
    seed = r.get("seed") or {}
    leech = r.get("leech") or {}
    sx = r.get("seed_cpu_transfer_s")
    lc = leech.get("cpu_s")
    return {
        "MBps": r.get("MBps"),
        "done_s": r.get("done_s"),
        "ttfb_s": r.get("ttfb_s"),
        "MBps_10_90": r.get("MBps_10_90"),
        "MBps_after_ttfb": (r["bytes"] / (r["done_s"] - r["ttfb_s"]) / 1e6
                            if r.get("ttfb_s") is not None and r.get("done_s") and r["done_s"] - r["ttfb_s"] >= 0.05
                            else None),
        "seed_xfer_cpu": sx,
        "seed_total_cpu": seed.get("cpu_s"),
        "leech_cpu": lc,
        "seed_cpu_gib": None if sx is None else sx / gib,
        "leech_cpu_gib": None if lc is None else lc / gib,
        "cpu_gib": None if sx is None or lc is None else (sx + lc) / gib,
        "seed_rss": kib(r.get("seed_hwm_kib")),
        "leech_rss": kib(r.get("leech_hwm_at_done_kib") or (r.get("leech_at_done") or {}).get("VmHWM")),
        "leech_anon": kib((r.get("leech_at_done") or {}).get("RssAnon")),
        "seed_ru_maxrss": kib(seed.get("maxrss_kib")),
        "leech_ru_maxrss": kib(leech.get("maxrss_kib")),
    }


def kib(x):
    return None if not x else x / MIB


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results", nargs="+")
    ap.add_argument("--ref", default="aria2:aria2")
    ap.add_argument("--subject", default="peerlet:peerlet")
    a = ap.parse_args()
    rows = []
    for p in a.results:
        with open(p) as fh:
            rows += [json.loads(l) for l in fh if l.strip()]
    out = []
    for case in sorted({(r["case"], r["piece_kib"]) for r in rows}):
        rs = [r for r in rows if (r["case"], r["piece_kib"]) == case]
        pairs = list(dict.fromkeys(r["pair"] for r in rs))
        pairs.sort(key=lambda p: (p != a.subject, p != a.ref, p))
        out.append("**%s, %d KiB pieces** (%d bytes)\n" % (case[0], case[1], rs[0]["bytes"]))
        out.append("| seeder→leecher | ok/runs | MB/s med [min–max] | done s | TTFB s | MB/s after 1st byte | MB/s 10–90 % "
                   "| seed CPU s xfer / total | leech CPU s | CPU s/GiB seed / leech / both "
                   "| seed peak RSS MiB | leech peak RSS MiB (anon) |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        per = {}
        rum = []
        for p in pairs:
            prs = [r for r in rs if r["pair"] == p]
            ok = [r for r in prs if r.get("ok")]
            ms = [metrics(r) for r in ok]
            per[p] = {r["round"]: metrics(r) for r in ok}
            col = lambda k: [m[k] for m in ms]  # noqa: E731
            out.append("| %s | %d/%d | %s | %s | %s | %s | %s | %s / %s | %s | %s / %s / %s | %s | %s |" % (
                p.replace(":", "→"), len(ok), len(prs), mm(col("MBps"), 0), f(med(col("done_s"))),
                f(med(col("ttfb_s"))), f(med(col("MBps_after_ttfb")), 0), f(med(col("MBps_10_90")), 0),
                f(med(col("seed_xfer_cpu"))), f(med(col("seed_total_cpu"))), f(med(col("leech_cpu"))),
                f(med(col("seed_cpu_gib"))), f(med(col("leech_cpu_gib"))), f(med(col("cpu_gib"))),
                f(med(col("seed_rss")), 1), "%s (%s)" % (f(med(col("leech_rss")), 1), f(med(col("leech_anon")), 1))))
            rum.append("%s %s / %s" % (p.replace(":", "→"), f(med(col("seed_ru_maxrss")), 1),
                                         f(med(col("leech_ru_maxrss")), 1)))
            for r in prs:
                if not r.get("ok"):
                    out.append("|  ↳ round %s failed | %s | | | | | | | | | | |" % (
                        r.get("round"), (r.get("error") or "verify failed").replace("|", "/")[:120]))
        out.append("")
        out.append("Peak RSS is VmHWM (/proc). wait4 ru_maxrss, seeder / leecher MiB, for reference (floored at "
                   "the harness's own RSS, see transfer_table.py): " + "; ".join(rum) + "\n")
        if a.ref in per:
            out.append("Ratios to %s, median of the same-round ratios (rounds with both pairs ok):\n"
                       % a.ref.replace(":", "→"))
            out.append("| pair | rounds | MB/s ×(≥1.5 goal) | MB/s after 1st byte × | CPU s/GiB both ×(≤0.5 goal) | seed xfer CPU × "
                       "| leech CPU × | seed peak RSS × | leech peak RSS × |")
            out.append("|---|---|---|---|---|---|---|---|---|")
            ratios = {}
            for p in pairs:
                if p == a.ref:
                    continue
                rounds = sorted(set(per[p]) & set(per[a.ref]))

                def ratio(k):
                    xs = []
                    for rd in rounds:
                        x, y = per[p][rd][k], per[a.ref][rd][k]
                        if x is not None and y:
                            xs.append(x / y)
                    return med(xs), xs
                rr = {k: ratio(k) for k in ("MBps", "MBps_after_ttfb", "cpu_gib", "seed_cpu_gib", "leech_cpu_gib",
                                            "seed_rss", "leech_rss")}
                ratios[p] = rr
                cell = lambda k: "%s (%s)" % (f(rr[k][0]), ", ".join(f(x) for x in rr[k][1])) \
                    if rr[k][0] is not None else "-"  # noqa: E731
                out.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s |" % (
                    p.replace(":", "→"), len(rounds), cell("MBps"), cell("MBps_after_ttfb"), cell("cpu_gib"), cell("seed_cpu_gib"),
                    cell("leech_cpu_gib"), cell("seed_rss"), cell("leech_rss")))
            out.append("")
            if a.subject in ratios:
                rr = ratios[a.subject]
                lrss = med([m["leech_rss"] for m in per[a.subject].values()])

                def verdict(ok):
                    return "**met**" if ok else "**not met**"
                out.append("Goals for %s (vs %s, same-round medians):\n" % (a.subject, a.ref))
                t, c = rr["MBps"][0], rr["cpu_gib"][0]
                out.append("* throughput ≥ 1.5× aria2c: %s× → %s" % (f(t), verdict(t is not None and t >= 1.5)))
                out.append("* CPU s/GiB (seeder during transfer + leecher) ≤ 0.5× aria2c: %s× → %s"
                           % (f(c), verdict(c is not None and c <= 0.5)))
                out.append("* leecher peak RSS ≤ 12 MiB: %s MiB → %s"
                           % (f(lrss, 1), verdict(lrss is not None and lrss <= 12)))
                out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())
