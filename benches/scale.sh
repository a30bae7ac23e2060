#!/usr/bin/env bash
# Scale benchmark: one peerlet daemon with many peer connections, then with
# many torrents. Loopback only (peers on 127.0.8.x/127.0.9.x, the API on
# 127.0.0.1), no LAN beacons. Results and how to read them: benches/SCALE.md.
#
#   bash benches/scale.sh            # 1,000 connections (4 processes), 10,000 torrents (~4 min + build)
#   bash benches/scale.sh --smoke    # 100 connections (2 processes), 500 torrents (CI; ~90 s + build)
#
# Options:
#   --smoke           100 connections, 2 client processes, 15 s; 500 torrents
#   --conns N         peer connections (default 1000)
#   --procs N         client processes sharing them (default 4)
#   --duration S      seconds every connection stays (default 60)
#   --torrents N      torrents of the second part (default 10000)
#   --size BYTES      data per torrent of the second part (default 4096)
#   --only PART       run one part: peers or torrents
#   --settle S        seconds the first torrents run waits after all seed, before
#                     stopping (default 45; 35 with --smoke)
#   --bin DIR         take peerlet and the examples from DIR (no build), e.g.
#                     /tmp/scale-target/release (examples in DIR/examples)
#   --out DIR         results directory (default /tmp/peerlet-bench/scale-<time>)
#   --keep            keep the data and state directories
#
# Part 1 ("peers"): one daemon seeds ceil(N/500) torrents of 16 MiB (the
# daemon takes one connection per address and torrent, and 127.0.8.1-254 +
# 127.0.9.2-254 give 507 addresses, so 1,000 connections need 2 torrents),
# and --procs processes of examples/scale_peers.rs open N connections in
# all, each from its own source address per torrent: handshake, interested,
# one 16 KiB request a second while unchoked. Reported: connections the
# daemon holds (/api/node, /metrics), RSS (VmRSS, VmHWM), CPU seconds over
# the run, and the latency of GET /api/node during it.
# Part 2 ("torrents"): examples/scale_torrents.rs writes N single-file
# torrents and their data into a fresh state directory; reported: the time
# from start until every torrent is loaded and until every one seeds (first
# start: every piece is checked; restart: resume records), RSS, CPU, the
# latency of GET /api/node and /api/torrents, and the stop (SIGTERM to exit,
# and whether the state was saved within the engine's deadline). The first
# run is stopped --settle seconds after all seed, past its first checkpoint
# (30 s after the check), so that the restart measures the resume path.
#
# Needs curl and jq. The daemon needs a descriptor per connection: the
# script raises its soft limit (ulimit -n) to the hard one, and stops with
# a message when that is still too low. Exit 0 when every check passed;
# 1 when a check failed (the summary says which); 2 for usage/setup errors.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "$here/.." && pwd)
me=scale.sh

conns=1000 procs=4 duration=60 ntorrents=10000 size=4096 only="" bin="" out="" keep=0 smoke=0
idle_s=10 settle_s=45
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1; conns=100; procs=2; duration=15; ntorrents=500; idle_s=5; settle_s=35; shift;;
    --conns) conns=$2; shift 2;;
    --procs) procs=$2; shift 2;;
    --duration) duration=$2; shift 2;;
    --torrents) ntorrents=$2; shift 2;;
    --size) size=$2; shift 2;;
    --only) only=$2; shift 2;;
    --settle) settle_s=$2; shift 2;;
    --bin) bin=$2; shift 2;;
    --out) out=$2; shift 2;;
    --keep) keep=1; shift;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0;;
    *) echo "$me: unknown option $1" >&2; exit 2;;
  esac
done
case "$only" in ""|peers|torrents) ;; *) echo "$me: --only peers|torrents" >&2; exit 2;; esac
for t in curl jq; do
  command -v "$t" >/dev/null || { echo "$me: needs $t (apt-get install -y $t)" >&2; exit 2; }
done

# --- descriptors: the daemon holds one per connection, plus files and its own ---
need=$((conns + 256))
soft=$(ulimit -Sn) hard=$(ulimit -Hn)
if [ "$soft" != unlimited ] && [ "$soft" -lt "$need" ]; then
  ulimit -Sn "$hard" 2>/dev/null || true
  soft=$(ulimit -Sn)
fi
if [ "$soft" != unlimited ] && [ "$soft" -lt "$need" ]; then
  echo "$me: $conns connections need about $need file descriptors, and the limit is $soft (hard $hard);" >&2
  echo "$me: raise it (ulimit -Hn as root, or LimitNOFILE) or use --conns $((soft - 256))" >&2
  exit 2
fi

stamp=$(date +%Y%m%d-%H%M%S)
out=${out:-/tmp/peerlet-bench/scale-$stamp}
mkdir -p "$out"
summary=$out/summary.md
: >"$summary"
fail=0
say() { echo "$*" | tee -a "$summary"; }
bad() { say "FAIL: $*"; fail=1; }

# --- build ---
if [ -z "$bin" ]; then
  target=${CARGO_TARGET_DIR:-$project/target}
  echo "$me: building (release) in $target" >&2
  (cd "$project" && CARGO_TARGET_DIR=$target cargo build --release --quiet --bin peerlet \
    --example scale_peers --example scale_torrents)
  bin=$target/release
fi
peerlet=$bin/peerlet
client=$bin/examples/scale_peers
gen=$bin/examples/scale_torrents
for b in "$peerlet" "$client" "$gen"; do
  [ -x "$b" ] || { echo "$me: $b is missing" >&2; exit 2; }
done

# --- helpers ---
daemon_pid="" client_pids=()
cleanup() {
  for p in "${client_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$daemon_pid" ]; then kill -TERM "$daemon_pid" 2>/dev/null || true; fi
  if [ "$keep" = 0 ]; then rm -rf "$out/peers" "$out/torrents"; fi
}
trap cleanup EXIT

ms_now() { date +%s%3N; }
# Resident and peak memory in KiB, CPU seconds (user+system) of a process.
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
cpu_s() {
  local tck; tck=$(getconf CLK_TCK)
  # Fields after the command name (which may hold spaces): utime is 14, stime 15.
  sed 's/^.*) //' "/proc/$1/stat" | awk -v t="$tck" '{printf "%.2f", ($12 + $13) / t}'
}
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
api_get() { curl -s --max-time 10 "http://$api$1"; }
# Latency of GET PATH in ms, N samples 200 ms apart: "median max".
latency() {
  local path=$1 n=$2 i f
  f=$(mktemp)
  for ((i = 0; i < n; i++)); do
    curl -s -o /dev/null --max-time 10 -w '%{time_total}\n' "http://$api$path" >>"$f" || echo 10 >>"$f"
    sleep 0.2
  done
  sort -g "$f" | awk '{v[NR] = $1 * 1000} END {m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.1f %.1f\n", m, v[NR]}'
  rm -f "$f"
}
# Starts a daemon: start_daemon DIR EXTRA...; sets daemon_pid, api, listen.
start_daemon() {
  local dir=$1; shift
  local try port
  for try in 1 2 3 4 5; do
    port=$((20000 + (RANDOM % 20000)))
    api=127.0.0.1:$port
    listen=127.0.9.1:$((port + 1))
    PEERLET_DHT_BOOTSTRAP= "$peerlet" daemon --listen "$listen" --api "$api" --no-lan-discovery \
      --download-dir "$dir/data" --state-dir "$dir/state" --log info "$@" \
      2>>"$dir/daemon.log" &
    daemon_pid=$!
    local i
    for ((i = 0; i < 600; i++)); do
      if curl -s --max-time 2 -o /dev/null "http://$api/api/node"; then return 0; fi
      kill -0 "$daemon_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -TERM "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
    daemon_pid=""
    echo "$me: the daemon did not start on $api / $listen (try $try); see $dir/daemon.log" >&2
  done
  exit 2
}
stop_daemon() {
  local t0 i
  t0=$(ms_now)
  kill -TERM "$daemon_pid"
  for ((i = 0; i < 300; i++)); do
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$daemon_pid" 2>/dev/null; then
    bad "the daemon did not stop within 30 s; killed"
    kill -KILL "$daemon_pid"
  fi
  wait "$daemon_pid" 2>/dev/null || true
  daemon_pid=""
  stop_ms=$(($(ms_now) - t0))
}

say "# peerlet scale benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
say ""
say "$("$peerlet" --version 2>/dev/null || echo peerlet), $(nproc) cores, $(awk '/MemTotal/ {printf "%d MiB", $2/1024}' /proc/meminfo), $(uname -r); fd limit $(ulimit -Sn)"

# ---------------------------------------------------------------------------
# Part 1: many connections
# ---------------------------------------------------------------------------
if [ "$only" != torrents ]; then
  dir=$out/peers
  mkdir -p "$dir/torrents"
  per=500
  nt=$(((conns + per - 1) / per))
  per=$(((conns + nt - 1) / nt))
  "$gen" --count "$nt" --size $((16 << 20)) --data-dir "$dir/data" --state-dir "$dir/state" \
    --torrent-dir "$dir/torrents" >"$dir/hashes"
  start_daemon "$dir" --max-connections $((conns + 64)) \
    --max-connections-per-torrent $((per + 16)) --max-connections-per-ip 4
  # Every torrent seeding (a 16 MiB check each).
  for ((i = 0; i < 600; i++)); do
    seeding=$(api_get /api/torrents | jq '[.[] | select(.state == "seeding")] | length' 2>/dev/null || echo 0)
    [ "$seeding" = "$nt" ] && break
    sleep 0.1
  done
  [ "$seeding" = "$nt" ] || bad "peers: $seeding of $nt torrents seeding after 60 s"
  read -r base_med base_max < <(latency /api/node 10)
  rss0=$(rss_kib "$daemon_pid") cpu0=$(cpu_s "$daemon_pid")
  torrent_args=()
  for ((k = 0; k < nt; k++)); do torrent_args+=(--torrent "$(printf '%s/torrents/t%05d.torrent' "$dir" "$k")"); done
  t0=$(ms_now)
  each=$(((conns + procs - 1) / procs))
  for ((p = 0; p < procs; p++)); do
    first=$((p * each)) count=$each
    [ $((first + count)) -gt "$conns" ] && count=$((conns - first))
    [ "$count" -gt 0 ] || continue
    ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
    "$client" --target "$listen" "${torrent_args[@]}" --first "$first" --count "$count" \
      --per-torrent "$per" --duration "$duration" >"$dir/client-$p.out" 2>"$dir/client-$p.err" &
    client_pids+=($!)
  done
  # Until the daemon holds every connection (at most half the run).
  held=0 ramp_ms=""
  for ((i = 0; i < duration * 5; i++)); do
    held=$(api_get /api/node | jq .peers 2>/dev/null || echo 0)
    if [ "$held" -ge "$conns" ]; then ramp_ms=$(($(ms_now) - t0)); break; fi
    [ $(($(ms_now) - t0)) -gt $((duration * 500)) ] && break
    sleep 0.2
  done
  # Steady state: latency samples, then the count again.
  read -r lat_med lat_max < <(latency /api/node 20)
  read -r tl_med tl_max < <(latency /api/torrents 5)
  held=$(api_get /api/node | jq .peers 2>/dev/null || echo 0)
  # The sum over directions of peerlet_connections{direction="..."}.
  metrics_conns=$(api_get /metrics | awk '$1 ~ /^peerlet_connections\{/ {n += $2} END {print n + 0}')
  rss1=$(rss_kib "$daemon_pid")
  upload=$(api_get /api/node | jq .upload_rate 2>/dev/null || echo 0)
  ok_clients=0
  for p in "${client_pids[@]}"; do
    if wait "$p"; then ok_clients=$((ok_clients + 1)); fi
  done
  client_pids=()
  run_s=$(awk -v a="$t0" -v b="$(ms_now)" 'BEGIN {printf "%.1f", (b - a) / 1000}')
  cpu1=$(cpu_s "$daemon_pid") hwm=$(hwm_kib "$daemon_pid")
  totals=$(cat "$dir"/client-*.out | awk '{for (i = 2; i <= NF; i++) {split($i, kv, "="); s[kv[1]] += kv[2]}}
    END {printf "connected=%d handshakes=%d bitfields=%d unchoked=%d blocks=%d closed_early=%d errors=%d", s["connected"], s["handshakes"], s["bitfields"], s["unchoked"], s["blocks"], s["closed_early"], s["errors"]}')
  stop_daemon
  cpu_run=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {printf "%.2f", b - a}')
  per_conn=$(awk -v a="$rss0" -v b="$rss1" -v n="$held" 'BEGIN {if (n > 0) printf "%.1f", (b - a) / n; else print "-"}')
  say ""
  say "## $conns connections ($procs client processes, $nt torrent(s) of 16 MiB, ${duration} s)"
  say ""
  say "| measure | value |"
  say "|---|---|"
  say "| connections held by the daemon (/api/node peers; /metrics peerlet_connections) | $held; ${metrics_conns:-?} |"
  say "| time until all were held | ${ramp_ms:-not reached} ms |"
  say "| clients (summed) | $totals |"
  say "| RSS before clients / with all connections / peak (VmHWM) | $(mib "$rss0") / $(mib "$rss1") / $(mib "$hwm") MiB |"
  say "| RSS per connection | $per_conn KiB |"
  say "| daemon CPU over the run | $cpu_run s in $run_s s ($(awk -v c="$cpu_run" -v r="$run_s" 'BEGIN {printf "%.1f", 100 * c / r}') % of one core) |"
  say "| upload rate at steady state | $upload B/s |"
  say "| GET /api/node before the clients, 10 samples: median / max | $base_med / $base_max ms |"
  say "| GET /api/node with all connections, 20 samples: median / max | $lat_med / $lat_max ms |"
  say "| GET /api/torrents, 5 samples: median / max | $tl_med / $tl_max ms |"
  say "| daemon stop (SIGTERM to exit) | $stop_ms ms |"
  [ "$held" -ge "$conns" ] || bad "peers: the daemon held $held of $conns connections"
  cat "$dir"/client-*.out | grep -q 'closed_early=0 errors=0' || bad "peers: a client process saw closed connections or errors (see $dir/client-*.err)"
  awk -v m="$lat_max" 'BEGIN {exit !(m <= 100)}' || bad "peers: /api/node took $lat_max ms (goal: 100 ms)"
  { grep -E "accept:|Too many open files" "$dir/daemon.log" || true; } | head -3 | while read -r l; do say "daemon log: $l"; done
fi

# ---------------------------------------------------------------------------
# Part 2: many torrents
# ---------------------------------------------------------------------------
# Waits until /api/node counts N torrents and /api/torrents shows N seeding;
# sets loaded_ms and seeding_ms (from t0), or leaves them empty on timeout.
wait_seeding() {
  local n=$1 t0=$2 limit_s=$3 i node
  loaded_ms="" seeding_ms=""
  for ((i = 0; i < limit_s * 2; i++)); do
    if [ -z "$loaded_ms" ]; then
      node=$(api_get /api/node | jq .torrents 2>/dev/null || echo 0)
      [ "$node" = "$n" ] && loaded_ms=$(($(ms_now) - t0))
    fi
    if [ -n "$loaded_ms" ]; then
      seeding=$(api_get /api/torrents | jq '[.[] | select(.state == "seeding")] | length' 2>/dev/null || echo 0)
      if [ "$seeding" = "$n" ]; then seeding_ms=$(($(ms_now) - t0)); return 0; fi
    fi
    [ $(($(ms_now) - t0)) -gt $((limit_s * 1000)) ] && return 1
    sleep 0.5
  done
  return 1
}

if [ "$only" != peers ]; then
  dir=$out/torrents
  mkdir -p "$dir"
  g0=$(ms_now)
  "$gen" --count "$ntorrents" --size "$size" --data-dir "$dir/data" --state-dir "$dir/state" >"$dir/hashes"
  gen_ms=$(($(ms_now) - g0))
  limit=600; [ "$smoke" = 1 ] && limit=60
  say ""
  say "## $ntorrents torrents of $size bytes (fixture written in $gen_ms ms)"
  say ""
  say "| start | all loaded | all seeding | RSS / peak | CPU to seeding | idle CPU ($idle_s s) | /api/node median / max | /api/torrents median / max | stop |"
  say "|---|---|---|---|---|---|---|---|---|"
  for run in first restart; do
    t0=$(ms_now)
    start_daemon "$dir"
    api_ms=$(($(ms_now) - t0))
    if ! wait_seeding "$ntorrents" "$t0" "$limit"; then
      bad "torrents ($run start): ${seeding:-0} of $ntorrents seeding after $limit s"
    fi
    cpu_start=$(cpu_s "$daemon_pid")
    sleep 2
    c0=$(cpu_s "$daemon_pid"); sleep "$idle_s"; c1=$(cpu_s "$daemon_pid")
    idle=$(awk -v a="$c0" -v b="$c1" 'BEGIN {printf "%.2f", b - a}')
    read -r ln_med ln_max < <(latency /api/node 20)
    read -r lt_med lt_max < <(latency /api/torrents 5)
    rss=$(rss_kib "$daemon_pid") hwm=$(hwm_kib "$daemon_pid")
    if [ "$run" = first ]; then
      # Pieces found by the check reach the resume records at the first
      # checkpoint (30 s after they were found): stop after it, so that the
      # restart takes the resume path.
      while [ $(($(ms_now) - t0)) -lt $((${seeding_ms:-0} + settle_s * 1000)) ]; do sleep 1; done
    fi
    warned=$(grep -c "could not be saved in time" "$dir/daemon.log" || true)
    stop_daemon
    orderly=yes
    [ "$(grep -c "could not be saved in time" "$dir/daemon.log" || true)" = "$warned" ] || orderly="no: state not saved in time"
    say "| $run (API up in $api_ms ms) | ${loaded_ms:-timeout} ms | ${seeding_ms:-timeout} ms | $(mib "$rss") / $(mib "$hwm") MiB | $cpu_start s | $idle s | $ln_med / $ln_max ms | $lt_med / $lt_max ms | $stop_ms ms (orderly: $orderly) |"
    [ "$orderly" = yes ] || bad "torrents ($run): the stop did not save the state within the engine's 10 s"
    awk -v m="$ln_max" 'BEGIN {exit !(m <= 100)}' || bad "torrents ($run): /api/node took $ln_max ms (goal: 100 ms)"
  done
  [ -f "$dir/state/torrents/$(head -1 "$dir/hashes").resume" ] || bad "torrents: no resume record after the first run"
fi

say ""
if [ "$fail" = 0 ]; then say "all checks passed"; fi
echo "$me: summary in $summary" >&2
exit "$fail"
