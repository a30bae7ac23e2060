#!/usr/bin/env bash
# Loopback transfer benchmark: peerlet→peerlet against aria2→aria2 with the
# peerbench harness (../shared/peerbench, see its README), one seeder and one
# leecher, inside a private network namespace that only has `lo`.
#
#   bash benches/transfer.sh            # 512 MiB single file, 1 MiB pieces, 3 rounds (~2 min + build)
#   bash benches/transfer.sh --smoke    # 64 MiB, 1 round, both pairs (CI; ~20 s + build)
#
# Options:
#   --smoke          64M payload, 1 round
#   --size SIZE      payload (default 512M; peerbench syntax: 64M, 512M, 1000x64K)
#   --piece SIZE     piece size (default 1M)
#   --runs N         rounds (default 3); each round runs every pair back to back
#   --pairs LIST     pairs (default peerlet:peerlet,aria2:aria2); e.g. add aria2:peerlet,peerlet:aria2
#   --rev REV        build `git archive REV` in a scratch directory instead of the working tree
#                    (the working tree may hold other people's unfinished edits)
#   --bin PATH       use this peerlet binary, no build
#   --features F     cargo features for the build (e.g. hw-sha1)
#   --hw-sha1-too    also build with --features hw-sha1 and add the pair peerlethw:peerlethw
#                    (adapter "peerlethw") to the same rounds
#   --out DIR        results directory (default /tmp/peerlet-bench/transfer-<time>)
#   --peerbench DIR  harness directory (default: $PEERBENCH_DIR or ../shared/peerbench)
#
# Needs root (the harness re-executes itself under `unshare -n`), python3,
# aria2c, opentracker, mktorrent and curl (`apt-get install -y aria2
# opentracker mktorrent curl`).  The table is printed on stdout and saved as
# table.md beside the harness's results.jsonl, summary.md and meta.json.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "$here/.." && pwd)
me=transfer.sh
# shellcheck source=benches/common.sh
. "$here/common.sh"

size=512M piece=1M runs=3 pairs="peerlet:peerlet,aria2:aria2" rev="" bin="" features="" out="" smoke=0 hw_too=0
pbdir=${PEERBENCH_DIR:-$project/../shared/peerbench}
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1; size=64M; runs=1; shift;;
    --size) size=$2; shift 2;;
    --piece) piece=$2; shift 2;;
    --runs) runs=$2; shift 2;;
    --pairs) pairs=$2; shift 2;;
    --rev) rev=$2; shift 2;;
    --bin) bin=$2; shift 2;;
    --features) features=$2; shift 2;;
    --hw-sha1-too) hw_too=1; shift;;
    --out) out=$2; shift 2;;
    --peerbench) pbdir=$2; shift 2;;
    -h|--help) sed -n '2,28p' "$0"; exit 0;;
    *) echo "transfer.sh: unknown option $1" >&2; exit 2;;
  esac
done

[ -n "$bin" ] && [ "$hw_too" = 1 ] && { echo "transfer.sh: --hw-sha1-too builds its own binaries; not with --bin" >&2; exit 2; }
bench_need_root "$pbdir"
bench_need_tools "aria2 opentracker mktorrent curl" python3 aria2c opentracker mktorrent curl unshare ss

stamp=$(date +%Y%m%d-%H%M%S)
out=${out:-/tmp/peerlet-bench/transfer-$stamp}
mkdir -p "$out/bin"
t_start=$(date +%s)

# --- build (release profile of Cargo.toml: LTO, stripped; benches/common.sh) ---
version=$(bench_build "$features" "$out/bin/peerlet")
version_hw=""
[ "$hw_too" = 1 ] && version_hw=$(bench_build hw-sha1 "$out/bin/peerlet-hw")
t_built=$(date +%s)

# --- the peerlet adapter (benches/peerbench-peerlet.sh, via benches/common.sh) ---
bench_adapter PEERLET "$out/bin/peerlet" "$version"
if [ "$hw_too" = 1 ]; then
  bench_adapter PEERLETHW "$out/bin/peerlet-hw" "$version_hw"
  case ",$pairs," in *",peerlethw:peerlethw,"*) ;; *) pairs="peerlet:peerlet,peerlethw:peerlethw,${pairs#peerlet:peerlet,}";; esac
fi

timeout=120; [ "$smoke" = 1 ] && timeout=60
echo "transfer.sh: $version${version_hw:+ and $version_hw}; pairs $pairs; $size, $piece pieces, $runs round(s); results in $out" >&2
bench_run_transfers "$pbdir" "$pairs" "$size" "$piece" "$runs" "$timeout" "$out"

ref=aria2:aria2
case ",$pairs," in *",aria2:aria2,"*) ;; *) ref=${pairs%%,*};; esac
python3 "$here/transfer_table.py" "$out/results.jsonl" --ref "$ref" --subject peerlet:peerlet > "$out/table.md"
if [ "$hw_too" = 1 ]; then
  python3 "$here/transfer_table.py" "$out/results.jsonl" --ref "$ref" --subject peerlethw:peerlethw \
    | sed -n '/^Goals for/,$p' >> "$out/table.md"
fi
t_end=$(date +%s)
{
  echo "peerbench transfer: $version${version_hw:+ and $version_hw} vs $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["versions"].get("aria2", "aria2c"))' "$out/meta.json" 2>/dev/null || echo aria2c), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs"
  echo
  cat "$out/table.md"
  echo "(build $((t_built - t_start)) s, benchmark $((t_end - t_built)) s; results: $out/results.jsonl)"
} | tee "$out/report.md"

# Exit 1 if any transfer failed (CI smoke).
bench_check_failures "$out/results.jsonl"
