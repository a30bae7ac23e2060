#!/usr/bin/env bash
# Acceptance test for LAN discovery: three `peerlet daemon`s, each in its own
# network namespace, joined by a Linux bridge in a fourth ("hub") namespace,
# find each other by multicast beacons alone (no --bootstrap), then node 1
# finds a file on node 3 by `search` and downloads it by info-hash (`get`).
#
#   bash tests/netns_lan.sh               # cargo build (debug), then the test (~15 s)
#   bash tests/netns_lan.sh --bin PATH    # use this peerlet binary, no build
#
# Options:
#   --bin PATH     peerlet binary to test (default: `cargo build`, target/debug/peerlet)
#   --log FILTER   RUST_LOG of the daemons (default: $PEERLET_TEST_LOG or info),
#                  e.g. --log info,peerlet=debug
#   --keep         keep the temporary directory (logs, data) after the run
#                  (NETNS_LAN_KEEP_ON_FAILURE=1: keep it only after a failure)
#
# Needs root and `ip netns` (iproute2) and python3; as non-root it prints
# "skipped: needs root" and exits 0. Layout (names end in a per-run suffix):
#
#   pl-hub-S: bridge br0 (multicast snooping off), veth ends n1 n2 n3
#   pl-n1-S:  eth0 10.231.0.1/24, lo   daemon --listen 10.231.0.1:6881 --api 127.0.0.1:7441
#   pl-n2-S:  eth0 10.231.0.2/24, lo   daemon --listen 10.231.0.2:6881 ...
#   pl-n3-S:  eth0 10.231.0.3/24, lo   daemon --listen 10.231.0.3:6881 ...
#
# Nothing is created in the root namespace; no packet leaves the namespaces
# (beacons go to the default group 239.192.76.80:7442 through each eth0,
# which has the only route for 224.0.0.0/4). Every wait is bounded. On exit
# (success, failure, INT, TERM) the daemons are stopped by PID (TERM, up to
# 10 s, then KILL), the namespaces deleted and the temporary directory
# removed; on failure the tails of the daemon logs are printed first.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "$here/.." && pwd)

bin="" log=${PEERLET_TEST_LOG:-info} keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2;;
    --log) log=$2; shift 2;;
    --keep) keep=1; shift;;
    -h|--help) sed -n '2,30p' "$0"; exit 0;;
    *) echo "netns_lan: unknown option $1" >&2; exit 2;;
  esac
done

if [ "$(id -u)" != 0 ]; then
  echo "skipped: needs root"
  exit 0
fi
for t in ip python3 timeout cmp head; do
  command -v "$t" >/dev/null || { echo "netns_lan: $t missing (apt-get install -y iproute2 python3 coreutils diffutils)" >&2; exit 2; }
done
ip netns list >/dev/null || { echo "netns_lan: \`ip netns\` does not work here" >&2; exit 2; }

t_start=$(date +%s)
say() { echo "netns_lan: [$(( $(date +%s) - t_start ))s] $*"; }
fail() { echo "netns_lan: FAILED: $*" >&2; exit 1; }

# --- state for the cleanup (filled in as things are created) ---
tmp="" created_ns=() pids=() names=() ok=0

# ours PID: PID is a live (not zombie) child of this shell, so it is still
# the daemon we started and not a reused PID.
ours() {
  local st
  st=$(cat "/proc/$1/status" 2>/dev/null) || return 1
  printf '%s\n' "$st" | grep -q "^PPid:[[:space:]]*$$\$" || return 1
  ! printf '%s\n' "$st" | grep -q '^State:[[:space:]]*Z'
}
# stop_pid PID: TERM, up to 10 s, then KILL, only while it is ours.
stop_pid() {
  local pid=$1 i
  ours "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    ours "$pid" || break
    sleep 0.1
  done
  if ours "$pid"; then
    echo "netns_lan: daemon PID $pid still running 10 s after TERM: KILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? i ns
  trap - EXIT INT TERM
  set +e
  # back to the script's own stdout and stderr: a signal handled while a
  # function runs with redirections (cli ... >file) would otherwise leave
  # this output in that file
  exec 1>&8 2>&9
  [ "$ok" = 1 ] || [ "$rc" != 0 ] || rc=1
  if [ "$rc" != 0 ] && [ -n "$tmp" ]; then
    for ((i = 0; i < ${#names[@]}; i++)); do
      [ -f "$tmp/${names[$i]}.log" ] || continue
      echo "----- ${names[$i]} daemon log (last 40 lines of $tmp/${names[$i]}.log) -----" >&2
      tail -n 40 "$tmp/${names[$i]}.log" >&2
    done
  fi
  for i in "${pids[@]}"; do stop_pid "$i"; done
  for ns in "${created_ns[@]}"; do
    ip netns del "$ns" 2>/dev/null || echo "netns_lan: could not delete namespace $ns" >&2
  done
  for ns in "${created_ns[@]}"; do
    [ -e "/var/run/netns/$ns" ] && echo "netns_lan: namespace $ns is still there" >&2
  done
  if [ -n "$tmp" ] && [ -d "$tmp" ]; then
    if [ "$keep" = 1 ] || { [ "$rc" != 0 ] && [ -n "${NETNS_LAN_KEEP_ON_FAILURE:-}" ]; }; then
      echo "netns_lan: kept $tmp" >&2
    else
      rm -rf -- "$tmp"
    fi
  fi
  [ "$rc" = 0 ] || echo "netns_lan: failed (exit $rc) after $(( $(date +%s) - t_start )) s" >&2
  exit "$rc"
}
exec 8>&1 9>&2
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

tmp=$(mktemp -d "${TMPDIR:-/tmp}/netns_lan.XXXXXX")

# --- the binary: built (or --bin), copied so that a concurrent build cannot swap it ---
if [ -z "$bin" ]; then
  say "cargo build"
  (cd "$project" && cargo build --quiet)
  bin=${CARGO_TARGET_DIR:-$project/target}/debug/peerlet
  case "$bin" in /*) ;; *) bin=$project/$bin;; esac
fi
[ -x "$bin" ] || fail "no executable peerlet at $bin"
cp "$bin" "$tmp/peerlet"
P=$tmp/peerlet
t_built=$(date +%s)

# --- JSON checks (python3: no jq on a fresh Debian) ---
cat > "$tmp/check.py" <<'EOF'
import json, sys

def load(path):
    with open(path) as f:
        return json.load(f)

def ip_of(addr):
    return addr.rsplit(":", 1)[0].strip("[]")

mode = sys.argv[1]
if mode == "table":
    # table FILE SELF_IP OTHER_IP...: both others answered a ping; prints the
    # number of entries for them that came from a beacon; exit 1 if not yet.
    t = load(sys.argv[2])
    others = sys.argv[4:]
    seen = {}
    for n in t.get("nodes", []):
        ip = ip_of(n.get("addr", ""))
        if ip in others and n.get("last_seen_secs") is not None:
            seen[ip] = n.get("source")
    if set(seen) != set(others):
        sys.exit(1)
    print(sum(1 for s in seen.values() if s == "beacon"))
elif mode == "counter":
    # counter FILE NAME: a counter's value (0 when missing)
    print(load(sys.argv[2]).get("counters", {}).get(sys.argv[3], 0))
elif mode == "seeding":
    # seeding FILE: pieces_have == pieces > 0 (torrent status)
    s = load(sys.argv[2])
    s = s.get("torrent", s)
    sys.exit(0 if s.get("pieces", 0) > 0 and s.get("pieces_have") == s.get("pieces") else 1)
elif mode == "search":
    # search FILE HASH HOLDER: a result for HASH with HOLDER among its holders
    r = load(sys.argv[2])
    for hit in r.get("results", []):
        if hit.get("info_hash", "").lower() == sys.argv[3].lower() and sys.argv[4] in hit.get("holders", []):
            print("found %s (%s, %s bytes) held by %s" % (hit["info_hash"], hit.get("name"), hit.get("size"), ", ".join(hit["holders"])))
            sys.exit(0)
    sys.exit(1)
else:
    sys.exit("check.py: unknown mode " + mode)
EOF
check() { python3 "$tmp/check.py" "$@"; }

# --- namespaces: a hub with the bridge, three nodes with one veth each ---
suffix=$$
for n in hub n1 n2 n3; do
  [ -e "/var/run/netns/pl-$n-$suffix" ] && { suffix="$$-$RANDOM"; break; }
done
hub=pl-hub-$suffix
nodes=("pl-n1-$suffix" "pl-n2-$suffix" "pl-n3-$suffix")
ips=(10.231.0.1 10.231.0.2 10.231.0.3)
names=(n1 n2 n3)

say "namespaces $hub ${nodes[*]}"
ip netns add "$hub"; created_ns+=("$hub")
for ns in "${nodes[@]}"; do ip netns add "$ns"; created_ns+=("$ns"); done
ip -n "$hub" link set lo up
ip -n "$hub" link add br0 type bridge forward_delay 0 mcast_snooping 0
# (set once more explicitly: older iproute2 ignore options at creation)
ip -n "$hub" link set br0 type bridge mcast_snooping 0
ip -n "$hub" link set br0 up
for i in 0 1 2; do
  ns=${nodes[$i]}
  ip -n "$hub" link add "n$((i + 1))" type veth peer name eth0 netns "$ns"
  ip -n "$hub" link set "n$((i + 1))" master br0
  ip -n "$hub" link set "n$((i + 1))" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "${ips[$i]}/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route add 224.0.0.0/4 dev eth0
done
[ "$(ip netns exec "$hub" cat /sys/class/net/br0/bridge/multicast_snooping)" = 0 ] \
  || fail "multicast snooping is still on on $hub/br0"

# --- the daemons ---
for i in 0 1 2; do
  n=${names[$i]}
  mkdir -p "$tmp/$n/downloads" "$tmp/$n/state"
  RUST_LOG=$log PEERLET_DHT_BOOTSTRAP= ip netns exec "${nodes[$i]}" "$P" daemon \
    --listen "${ips[$i]}:6881" --api 127.0.0.1:7441 \
    --download-dir "$tmp/$n/downloads" --state-dir "$tmp/$n/state" \
    --beacon-interval 1 \
    </dev/null >"$tmp/$n.log" 2>&1 8>&- 9>&- &
  pids+=($!)
done
say "daemons started: PIDs ${pids[*]}"
# cli I ARGS...: `peerlet ARGS --api 127.0.0.1:7441` in node I's namespace,
# killed after $cli_limit seconds (default 30)
cli() {
  local i=$1; shift
  timeout -k 5 "${cli_limit:-30}" ip netns exec "${nodes[$i]}" "$P" "$@" --api 127.0.0.1:7441
}

for i in 0 1 2; do
  n=${names[$i]} up=0
  for ((k = 0; k < 200; k++)); do  # ≤ 20 s
    if grep -q '^peerlet daemon: peers on ' "$tmp/$n.log"; then up=1; break; fi
    ours "${pids[$i]}" || fail "daemon $n exited at start"
    sleep 0.1
  done
  [ "$up" = 1 ] || fail "daemon $n did not start within 20 s"
  grep -q 'LAN discovery: beacons to 239.192.76.80:7442' "$tmp/$n.log" \
    || fail "daemon $n did not start LAN discovery: $(grep -i 'lan' "$tmp/$n.log" | head -3)"
done
t_up=$(date +%s)
say "daemons up, LAN discovery on"

# --- 1. discovery by beacons alone ---
deadline=$(( $(date +%s) + 60 ))
found=0
for ((k = 0; k < 120; k++)); do  # ≤ 60 s, every 0.5 s
  all=1 beacon_entries=0
  for i in 0 1 2; do
    cli "$i" peers --json > "$tmp/peers$i.json" 2>"$tmp/peers$i.err" || { all=0; break; }
    others=()
    for j in 0 1 2; do [ "$j" = "$i" ] || others+=("${ips[$j]}"); done
    if b=$(check table "$tmp/peers$i.json" "${ips[$i]}" "${others[@]}"); then
      beacon_entries=$((beacon_entries + b))
    else
      all=0; break
    fi
  done
  if [ "$all" = 1 ]; then found=1; break; fi
  [ "$(date +%s)" -lt "$deadline" ] || break
  sleep 0.5
done
if [ "$found" != 1 ]; then
  for i in 0 1 2; do
    echo "----- ${names[$i]} (${ips[$i]}) routing table -----" >&2
    cli "$i" peers >&2 || true
  done
  fail "the nodes did not all find each other (verified) within 60 s"
fi
t_found=$(date +%s)
say "every node has both others verified after $((t_found - t_up)) s; entries from beacons: $beacon_entries"
for i in 0 1 2; do
  rb=$(check counter "$tmp/peers$i.json" received_beacon)
  sb=$(check counter "$tmp/peers$i.json" sent_beacon)
  echo "----- ${names[$i]} (${ips[$i]}): sent_beacon $sb, received_beacon $rb -----"
  cli "$i" peers
  [ "$rb" -ge 1 ] || fail "${names[$i]} received no beacon"
done
[ "$beacon_entries" -ge 1 ] || fail "no routing-table entry came from a beacon"

# --- 2. search from node 1 for a file on node 3, then get it by info-hash ---
file=lan-party-video.bin
head -c $((2 * 1024 * 1024)) /dev/urandom > "$tmp/n3/downloads/$file"
out=$("$P" create "$tmp/n3/downloads/$file" -o "$tmp/$file.torrent" --piece-size 256K --no-date --force 2>/dev/null)
hash=$(printf '%s\n' "$out" | sed -n 's/^info_hash: //p')
[ ${#hash} = 40 ] || fail "no info-hash from peerlet create: $out"
cli 2 add "$tmp/$file.torrent" >/dev/null
seeding=0
for ((k = 0; k < 60; k++)); do  # ≤ 30 s
  if cli 2 status "$hash" --json > "$tmp/status3.json" 2>/dev/null && check seeding "$tmp/status3.json"; then
    seeding=1; break
  fi
  sleep 0.5
done
[ "$seeding" = 1 ] || fail "node 3 does not seed $hash after 30 s: $(cat "$tmp/status3.json" 2>/dev/null)"
say "n3 seeds $file ($hash)"

deadline=$(( $(date +%s) + 60 ))
hit=0 tries=0
for ((k = 0; k < 20; k++)); do  # ≤ 60 s (each search takes 3 s)
  tries=$((k + 1))
  cli 0 search lan party --timeout 3 --json > "$tmp/search.json" 2>"$tmp/search.err" || true
  if check search "$tmp/search.json" "$hash" "${ips[2]}:6881"; then hit=1; break; fi
  [ "$(date +%s)" -lt "$deadline" ] || break
  sleep 0.5
done
[ "$hit" = 1 ] || fail "search from n1 did not find $hash at ${ips[2]}:6881 in 60 s; last answer: $(cat "$tmp/search.json" "$tmp/search.err" 2>/dev/null)"
t_search=$(date +%s)
say "search from n1 found it (attempt $tries)"

# `-d` must be inside the daemon's download directory.
got="$tmp/n1/downloads/got"
mkdir -p "$got"
cli_limit=120 cli 0 get "$hash" -d "$got" --timeout 90 || fail "get $hash on n1 failed"
cmp "$tmp/n3/downloads/$file" "$got/$file" || fail "the downloaded file differs"
t_get=$(date +%s)
say "n1 downloaded $file by info-hash in $((t_get - t_search)) s; identical"

say "timings: build $((t_built - t_start)) s, start $((t_up - t_built)) s, discovery $((t_found - t_up)) s, seed+search $((t_search - t_found)) s, get $((t_get - t_search)) s"
ok=1
echo "netns_lan: ok"
