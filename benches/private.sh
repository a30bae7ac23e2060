#!/usr/bin/env bash
# What a private network costs: one peerlet seeder and one peerlet leecher
# on loopback (127.0.5.1 and 127.0.5.2), the same payload in public mode
# (plain BitTorrent) and in private mode (Noise links), alternating, in the
# same run. Prints a markdown table: seconds, MB/s, the leecher's CPU seconds
# and peak RSS, and private/public ratios.
#
#   bash benches/private.sh                 # 512 MiB, 2 rounds (release build first)
#   bash benches/private.sh --smoke         # 32 MiB, 1 round (CI)
#   bash benches/private.sh --size 256 --runs 3 --bin target/release/peerlet
#
# Only loopback addresses; every wait is bounded; only the processes this
# script started are stopped (by PID).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "$here/.." && pwd)
size_mib=512 runs=2 bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) size_mib=32; runs=1; shift;;
    --size) size_mib=$2; shift 2;;
    --runs) runs=$2; shift 2;;
    --bin) bin=$2; shift 2;;
    -h|--help) sed -n '2,13p' "$0"; exit 0;;
    *) echo "private.sh: unknown option $1" >&2; exit 2;;
  esac
done
if [ -z "$bin" ]; then
  (cd "$project" && cargo build --release --quiet)
  bin="$project/target/release/peerlet"
fi

work=$(mktemp -d /tmp/peerlet-private-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

export PEERLET_CONFIG=/dev/null
export PEERLET_DHT_BOOTSTRAP=   # loopback only: no DHT routers
mkdir -p "$work/src"
head -c $((size_mib << 20)) /dev/urandom > "$work/src/payload.bin"
"$bin" create "$work/src/payload.bin" -o "$work/payload.torrent" --piece-size 1M --no-date --force >/dev/null 2>&1
"$bin" secret "$work/net.secret" 2>/dev/null

# start NAME IP [daemon options...]: runs a daemon, prints its API address.
start() {
  local name=$1 ip=$2; shift 2
  mkdir -p "$work/$name"
  "$bin" daemon --listen "$ip:0" --api 127.0.0.1:0 --download-dir "$work/$name/dl" \
    --state-dir "$work/$name/state" --no-lan-discovery --no-overlay "$@" \
    >"$work/$name/log" 2>&1 &
  pids+=($!)
  echo $! >"$work/$name/pid"
  local line
  for _ in $(seq 1 100); do
    # "peerlet daemon: peers on IP:PORT, API on http://IP:PORT, ..."
    line=$(grep -m1 '^peerlet daemon: peers on ' "$work/$name/log" || true)
    if [ -n "$line" ]; then echo "$line" | awk '{print $9}' | sed 's#http://##; s#,$##'; return; fi
    sleep 0.1
  done
  echo "private.sh: $name did not start:" >&2; cat "$work/$name/log" >&2; exit 1
}

listen_of() { grep -m1 '^peerlet daemon: peers on ' "$work/$1/log" | awk '{print $5}' | sed 's#,$##'; }

# one MODE: prints "seconds cpu_seconds peak_rss_kib" of the leecher.
one() {
  local mode=$1 opts=()
  [ "$mode" = private ] && opts=(--network-secret "$work/net.secret")
  rm -rf "$work/seed" "$work/leech"
  mkdir -p "$work/seed/dl"
  cp "$work/src/payload.bin" "$work/seed/dl/"
  local sapi lapi
  sapi=$(start seed 127.0.5.1 "${opts[@]}")
  "$bin" add "$work/payload.torrent" --api "$sapi" >/dev/null
  local hash
  hash=$("$bin" inspect "$work/payload.torrent" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["info_hash"])')
  for _ in $(seq 1 600); do
    "$bin" status "$hash" --api "$sapi" --json | grep -q '"state":"seeding"' && break
    sleep 0.1
  done
  lapi=$(start leech 127.0.5.2 "${opts[@]}")
  local lpid
  lpid=$(cat "$work/leech/pid")
  local t0 t1
  t0=$(date +%s.%N)
  "$bin" add "$work/payload.torrent" --api "$lapi" --peer "$(listen_of seed)" >/dev/null
  local done=0
  for _ in $(seq 1 6000); do
    if "$bin" status "$hash" --api "$lapi" --json | grep -q '"state":"seeding"'; then done=1; break; fi
    sleep 0.05
  done
  t1=$(date +%s.%N)
  [ "$done" = 1 ] || { echo "private.sh: $mode transfer did not finish" >&2; tail "$work/leech/log" >&2; exit 1; }
  local ticks hwm
  ticks=$(awk '{print $14 + $15}' "/proc/$lpid/stat")
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$lpid/status")
  cmp -s "$work/src/payload.bin" "$work/leech/dl/payload.bin" || { echo "private.sh: $mode copy differs" >&2; exit 1; }
  for p in $(cat "$work/seed/pid") "$lpid"; do kill "$p"; wait "$p" 2>/dev/null || true; done
  pids=()
  python3 -c "print(f'{$t1 - $t0:.2f} {$ticks / $(getconf CLK_TCK):.2f} $hwm')"
}

declare -A secs cpu rss
for round in $(seq 1 "$runs"); do
  for mode in public private; do
    read -r s c r < <(one "$mode")
    secs[$mode]="${secs[$mode]:-} $s"; cpu[$mode]="${cpu[$mode]:-} $c"; rss[$mode]="${rss[$mode]:-} $r"
    echo "round $round $mode: ${s}s, leecher CPU ${c}s, peak RSS ${r} KiB" >&2
  done
done

python3 - "$size_mib" "${secs[public]}" "${secs[private]}" "${cpu[public]}" "${cpu[private]}" "${rss[public]}" "${rss[private]}" <<'EOF'
import statistics, sys
size = int(sys.argv[1])
vals = [list(map(float, a.split())) for a in sys.argv[2:]]
sp, sv, cp, cv, rp, rv = (statistics.median(v) for v in vals)
print(f"| {size} MiB, 1 seeder → 1 leecher, loopback | public | private | private/public |")
print("|---|---|---|---|")
print(f"| seconds (median) | {sp:.2f} | {sv:.2f} | {sv/sp:.2f} |")
print(f"| MB/s | {size*1.048576/sp:.0f} | {size*1.048576/sv:.0f} | {sp/sv:.2f} |")
print(f"| leecher CPU s | {cp:.2f} | {cv:.2f} | {cv/cp:.2f} |")
print(f"| leecher peak RSS KiB | {rp:.0f} | {rv:.0f} | {rv/rp:.2f} |")
EOF
