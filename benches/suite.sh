#!/usr/bin/env bash
# The side-by-side benchmark suite: peerlet against aria2c, libtorrent and
# Transmission on loopback, each as seeder and as leecher, plus the physical
# ceilings (loopback TCP, SHA-1) and peerlet's recheck against sha1sum, all
# in ONE run, so that every ratio compares numbers taken minutes apart on the
# same machine.  Uses the peerbench harness (../shared/peerbench, README.md).
#
#   bash benches/suite.sh            # full: 512M and 1000x64K, 1 MiB pieces, 3 rounds, every pair (~20 min + build)
#   bash benches/suite.sh --smoke    # CI: 64M, 1 round, 4 pairs, small ceilings and recheck (~30 s + build)
#   bash benches/suite.sh --smoke --bin target/release/peerlet \
#        --recheck-bin target/release/examples/recheck_bench      # CI, binaries already built
#   CARGO_TARGET_DIR=/tmp/bench-target bash benches/suite.sh --rev HEAD   # a commit, not the working tree
#
# Steps, in this order, in one invocation:
#   1. build peerlet and examples/recheck_bench (release; --rev or the working tree)
#   2. `peerbench.py micro` on the first single-file payload: loopback TCP
#      ceilings (iperf3 1 and 2 streams, dd|socat, python pump), sha1sum,
#      openssl, page-cache read/write (inside unshare -n)
#   3. recheck: examples/recheck_bench --file <the same payload file>: peerlet's
#      recheck against sha1sum and openssl sha1, same file, same rounds
#   4. `peerbench.py run`: every pair, every payload, N rounds (inside unshare -n)
#   5. benches/suite_table.py: the markdown report (report.md): per-payload
#      table, ceilings, recheck, goals against the best incumbent
#
# Default pairs (seeder:leecher):
#   peerlet:peerlet aria2:aria2 lt:lt transmission:transmission
#   aria2:peerlet peerlet:aria2 lt:peerlet peerlet:lt transmission:peerlet peerlet:transmission
# transmission:transmission is impossible on loopback (Transmission never
# dials 127.x peers it learns from a tracker, BASELINES.md); it stays in the
# list so that the table says so, and it does not count as a failure.
#
# Options:
#   --smoke          64M payload, 1 round, pairs peerlet:peerlet,aria2:aria2,lt:peerlet,peerlet:lt,
#                    micro and recheck with 1 round
#   --runs N         rounds (default 3)
#   --payloads LIST  peerbench payloads (default 512M,1000x64K)
#   --piece SIZE     piece size (default 1M)
#   --pairs LIST     seeder:leecher pairs (default above)
#   --rev REV        build `git archive REV` in a scratch directory instead of the working tree
#   --bin PATH       use this peerlet binary, no build (needs --recheck-bin too, or --no-recheck)
#   --recheck-bin P  a prebuilt examples/recheck_bench binary (with --bin)
#   --features F     cargo features for the build (e.g. hw-sha1)
#   --no-micro       skip step 2 (no TCP ceiling in the report)
#   --no-recheck     skip step 3
#   --out DIR        results directory (default /tmp/peerlet-bench/suite-<time>)
#   --peerbench DIR  harness directory (default: $PEERBENCH_DIR or ../shared/peerbench)
#
# Needs root and: aria2 opentracker mktorrent curl python3-libtorrent, plus
# iperf3 hyperfine (micro; socat optional) and transmission-daemon when a
# pair uses Transmission.  Install those with /usr/sbin/policy-rc.d refusing
# to start services (exit 101): Debian's transmission-daemon and opentracker
# services would run with DHT on.  Exit status 1 if any transfer (other
# than an impossible pair) or any step failed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "$here/.." && pwd)
me=suite.sh
# shellcheck source=benches/common.sh
. "$here/common.sh"

all_pairs="peerlet:peerlet,aria2:aria2,lt:lt,transmission:transmission,aria2:peerlet,peerlet:aria2,lt:peerlet,peerlet:lt,transmission:peerlet,peerlet:transmission"
smoke_pairs="peerlet:peerlet,aria2:aria2,lt:peerlet,peerlet:lt"
payloads=512M,1000x64K piece=1M runs=3 pairs=$all_pairs rev="" bin="" recheck_bin="" features="" out="" smoke=0
do_micro=1 do_recheck=1
pbdir=${PEERBENCH_DIR:-$project/../shared/peerbench}
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1; payloads=64M; runs=1; pairs=$smoke_pairs; shift;;
    --runs) runs=$2; shift 2;;
    --payloads) payloads=$2; shift 2;;
    --piece) piece=$2; shift 2;;
    --pairs) pairs=$2; shift 2;;
    --rev) rev=$2; shift 2;;
    --bin) bin=$2; shift 2;;
    --recheck-bin) recheck_bin=$2; shift 2;;
    --features) features=$2; shift 2;;
    --no-micro) do_micro=0; shift;;
    --no-recheck) do_recheck=0; shift;;
    --out) out=$2; shift 2;;
    --peerbench) pbdir=$2; shift 2;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0;;
    *) echo "suite.sh: unknown option $1" >&2; exit 2;;
  esac
done
case "$runs" in ''|*[!0-9]*) echo "suite.sh: --runs takes a number" >&2; exit 2;; esac
if [ "$runs" -lt 1 ] || [ "$runs" -gt 20 ]; then echo "suite.sh: --runs 1..20" >&2; exit 2; fi

bench_need_root "$pbdir"
bench_need_tools "aria2 opentracker mktorrent curl" python3 aria2c opentracker mktorrent curl unshare ss sha1sum
case ",$pairs," in *lt*) /usr/bin/python3 -c 'import libtorrent' 2>/dev/null \
  || { echo "suite.sh: python3-libtorrent missing for /usr/bin/python3 (apt-get install -y python3-libtorrent)" >&2; exit 2; };; esac
case ",$pairs," in *transmission*) bench_need_tools "transmission-daemon" transmission-daemon;; esac
[ "$do_micro" = 1 ] && bench_need_tools "iperf3 hyperfine" iperf3 hyperfine
[ -n "$bin" ] && [ "$do_recheck" = 1 ] && [ -z "$recheck_bin" ] && {
  echo "suite.sh: with --bin, give --recheck-bin PATH or --no-recheck" >&2; exit 2; }

stamp=$(date +%Y%m%d-%H%M%S)
out=${out:-/tmp/peerlet-bench/suite-$stamp}
mkdir -p "$out/bin"
t_start=$(date +%s)
steps_failed=""

# --- 1. build ---
if [ "$do_recheck" = 1 ] && [ -z "$bin" ]; then
  version=$(bench_build "$features" "$out/bin/peerlet" recheck_bench "$out/bin/recheck_bench")
else
  version=$(bench_build "$features" "$out/bin/peerlet")
  [ -n "$recheck_bin" ] && cp "$recheck_bin" "$out/bin/recheck_bench"
fi
bench_adapter PEERLET "$out/bin/peerlet" "$version"
t_built=$(date +%s)
echo "suite.sh: $version; pairs $pairs; payloads $payloads, $piece pieces, $runs round(s); results in $out" >&2

# The single-file payload the ceilings and the recheck use: the first one in
# the list (peerbench makes it under its --root, the transfers reuse it).
single=""
for p in ${payloads//,/ }; do case "$p" in *x*) ;; *) single=$p; break;; esac; done
pbroot=/tmp/peerlet-bench/peerbench

# --- 2. ceilings (peerbench micro, inside unshare -n) ---
if [ "$do_micro" = 1 ] && [ -n "$single" ]; then
  echo "suite.sh: peerbench micro --file-size $single --runs $runs" >&2
  timeout 900 python3 "$pbdir/peerbench.py" --root "$pbroot" micro --file-size "$single" --runs "$runs" \
    --out "$out/micro" > "$out/micro.stdout" 2> "$out/micro.stderr" || steps_failed+=" micro"
fi

# --- 3. recheck: peerlet vs sha1sum (and openssl) on the same file ---
if [ "$do_recheck" = 1 ] && [ -n "$single" ]; then
  file=$pbroot/payload/single-$single/pb-$single.bin
  if [ ! -f "$file" ]; then   # no micro run made it: let peerbench make it the same way
    python3 - "$pbdir" "$pbroot" "$single" <<'EOF'
import sys; sys.path.insert(0, sys.argv[1])
import peerbench; peerbench.make_payload(sys.argv[2], sys.argv[3])
EOF
  fi
  echo "suite.sh: recheck_bench --file $file --piece-size $piece --rounds $runs" >&2
  timeout 600 "$out/bin/recheck_bench" --file "$file" --piece-size "$piece" --rounds "$runs" --threads 2 \
    > "$out/recheck.md" 2> "$out/recheck.stderr" || steps_failed+=" recheck"
fi

# --- 4. transfers ---
timeout=300; [ "$smoke" = 1 ] && timeout=60   # Transmission pairs at 512M take 60-150 s
bench_run_transfers "$pbdir" "$pairs" "$payloads" "$piece" "$runs" "$timeout" "$out" || steps_failed+=" transfers"

# --- 5. report ---
t_end=$(date +%s)
{
  echo "## peerbench suite: $version, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs"
  echo
  python3 "$here/suite_table.py" --dir "$out" --subject peerlet
  echo
  echo "(build $((t_built - t_start)) s, benchmark $((t_end - t_built)) s; results: $out)"
} | tee "$out/report.md"

[ -z "$steps_failed" ] || { echo "suite.sh: FAILED steps:$steps_failed (logs in $out)" >&2; exit 1; }
bench_check_failures "$out/results.jsonl"
