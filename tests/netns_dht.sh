#!/usr/bin/env bash
# Acceptance test for the Mainline DHT (BEP 5) against real libtorrent: a
# DHT of libtorrent sessions, each in its own network namespace on one
# bridge, and peerlet nodes that join it, find peers through it and are
# found through it. No tracker, no --peer, no overlay neighbour anywhere.
#
#   bash tests/netns_dht.sh               # cargo build (debug), then the test (~1 min)
#   bash tests/netns_dht.sh --bin PATH    # use this peerlet binary, no build
#
# Phases (each timed; all of them after the build bounded by --total):
#   1. DHT    NODES libtorrent sessions (default 20), started one after
#             another, bootstrapped (dht_bootstrap_nodes) from the first
#             three; wait until each has >= 4 DHT nodes. (libtorrent keeps
#             no router in its table: netns_dht_lt.py grows a small table
#             by random lookups, see there.)
#   2a. lt→lt a libtorrent seeder announces torrent A to the DHT only; a
#             libtorrent leecher given only A's magnet completes it (cmp).
#             Needs no peerlet DHT: it proves the harness.
#   2b. get   `peerlet get MAGNET(A)` on a peerlet daemon whose only DHT
#             bootstrap is one libtorrent node completes it (cmp).
#   2c. seed  a peerlet daemon (bootstrap: one libtorrent node) seeds
#             torrent C (`peerlet add`); a libtorrent node stores its
#             announce; a libtorrent leecher given only C's magnet completes
#             it from peerlet (cmp).
#   2d. route the phase 1-2c processes are stopped; a fresh libtorrent DHT
#             whose only bootstrap router is a peerlet daemon (itself with
#             no bootstrap) forms; a libtorrent seeder in it announces
#             torrent D; `peerlet get MAGNET(D)` on another peerlet daemon
#             bootstrapped from one of those libtorrent nodes completes (cmp).
# Phases 2b-2d run when the binary has a DHT (`peerlet dht --help` works);
# otherwise the script prints "peerlet DHT not built: parts b–d skipped" and
# exits 3 (with --require-dht: 1).
#
# Options:
#   --bin PATH      peerlet binary to test (default: `cargo build`, target/debug/peerlet)
#   --log FILTER    RUST_LOG of the daemons (default: $PEERLET_TEST_LOG or info),
#                   e.g. --log info,peerlet::dht=debug
#   --nodes N       libtorrent DHT nodes in phase 1 (default 20, at least 5)
#   --total SECS    bound on everything after the build (default 300)
#   --require-dht   a binary without the DHT fails (exit 1) instead of exit 3
#   --stand-in      play peerlet's parts in 2b-2d with libtorrent sessions (same
#                   addresses, same bootstraps): tests the harness itself today
#   --keep          keep the temporary directory (logs, data) after the run
#                   (NETNS_DHT_KEEP_ON_FAILURE=1: keep it only after a failure)
#
# Exit: 0 passed, 1 failed, 2 cannot run (tools missing), 3 peerlet has no
# DHT (phases 1 and 2a passed, 2b-2d skipped). As non-root: "skipped: needs
# root", exit 0. Needs ip (iproute2), python3, and python3-libtorrent for
# /usr/bin/python3 (`apt-get install -y python3-libtorrent`).
#
# What peerlet must offer (the DHT's interface): `peerlet daemon
# --dht-bootstrap HOST:PORT` (repeatable; replaces the public routers),
# the config key `dht_bootstrap = []` (no router at all: phase 2d's router),
# the DHT on the shared UDP port (= the --listen port), `peerlet dht --help`
# and `peerlet dht [--json]` (the JSON's `nodes`: a count or a list), and as
# today `daemon`, `add --dir`, `status HASH --json`, `get MAGNET --dir
# --timeout` (a magnet with only xt=urn:btih:HEX).
#
# Layout: namespace pldht-hub-S holds bridge br0; every session or daemon
# has a namespace pldht-ROLE-S with eth0 10.213.x.y/16 (veth to br0) and lo,
# and listens on 10.213.x.y:6881 (TCP + UDP). Nothing is created in the
# root namespace; the namespaces have no default route, so no packet can
# leave them. Roles and addresses:
#   n1..nN   10.213.1.1..N   libtorrent DHT nodes (bootstrap: n1-n3)
#   sa la lc 10.213.2.1-3    libtorrent seeder A, leecher A, leecher C
#   gb sc    10.213.3.1-2    peerlet: get A (bootstrap n7), seeder C (bootstrap n8)
#   r gd     10.213.4.1-2    peerlet: router (no bootstrap), get D (bootstrap f4)
#   f1..f10  10.213.5.1..10  fresh libtorrent DHT (bootstrap: r only)
#   sd       10.213.5.100    libtorrent seeder D (bootstrap: r only)
# Every wait is bounded. On exit (success, failure, INT, TERM) every process
# started here is stopped by PID (TERM, up to 10 s for all, then KILL), the
# namespaces deleted and the temporary directory removed; on failure the
# tails of the logs are printed first.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "$here/.." && pwd)
LT=$here/netns_dht_lt.py
PY=/usr/bin/python3

bin="" log=${PEERLET_TEST_LOG:-info} keep=0 nodes_n=20 total=300 require_dht=0 stand_in=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2;;
    --log) log=$2; shift 2;;
    --nodes) nodes_n=$2; shift 2;;
    --total) total=$2; shift 2;;
    --require-dht) require_dht=1; shift;;
    --stand-in) stand_in=1; shift;;
    --keep) keep=1; shift;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0;;
    *) echo "netns_dht: unknown option $1" >&2; exit 2;;
  esac
done
case "$nodes_n" in ''|*[!0-9]*) echo "netns_dht: --nodes wants a number" >&2; exit 2;; esac
case "$total" in ''|*[!0-9]*) echo "netns_dht: --total wants seconds" >&2; exit 2;; esac
{ [ "$nodes_n" -ge 5 ] && [ "$nodes_n" -le 200 ]; } || { echo "netns_dht: --nodes from 5 to 200" >&2; exit 2; }

if [ "$(id -u)" != 0 ]; then
  echo "skipped: needs root"
  exit 0
fi
for t in ip python3 timeout cmp head tail grep awk; do
  command -v "$t" >/dev/null || { echo "netns_dht: $t missing (apt-get install -y iproute2 python3 coreutils diffutils grep gawk)" >&2; exit 2; }
done
"$PY" -c 'import libtorrent' 2>/dev/null \
  || { echo "netns_dht: python3-libtorrent missing for $PY (apt-get install -y python3-libtorrent)" >&2; exit 2; }
ip netns list >/dev/null || { echo "netns_dht: \`ip netns\` does not work here" >&2; exit 2; }

t_start=$(date +%s)
say() { echo "netns_dht: [$(( $(date +%s) - t_start ))s] $*"; }
fail() { echo "netns_dht: FAILED: $*" >&2; exit 1; }

# --- state for the cleanup (filled in as things are created) ---
tmp="" created_ns=() pids=() names=() ok=0 skipped=0 how=""

# ours PID: PID is a live (not zombie) child of this shell, so it is still
# the process we started and not a reused PID.
# (No pipes: under `pipefail` a `grep -q` that exits early can fail the
# pipeline with SIGPIPE, and this runs dozens of times a second.)
ours() {
  local k v state="" ppid=""
  { while read -r k v _; do
      case "$k" in State:) state=$v;; PPid:) ppid=$v; break;; esac
    done < "/proc/$1/status"; } 2>/dev/null || return 1
  [ "$ppid" = "$$" ] && [ -n "$state" ] && [ "$state" != Z ]
}
# stop_pids PID...: TERM to each that is ours, up to 10 s for all of them to
# go, then KILL to those left (only while still ours).
stop_pids() {
  local pid i left
  for pid in "$@"; do ours "$pid" && kill -TERM "$pid" 2>/dev/null || true; done
  for ((i = 0; i < 100; i++)); do
    left=0
    for pid in "$@"; do ours "$pid" && { left=1; break; }; done
    [ "$left" = 1 ] || break
    sleep 0.1
  done
  for pid in "$@"; do
    if ours "$pid"; then
      echo "netns_dht: PID $pid still running 10 s after TERM: KILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}

print_logs() {
  local i n f
  for ((i = 0; i < ${#names[@]}; i++)); do
    n=${names[$i]} f=$tmp/${names[$i]}.log
    [ -f "$f" ] || continue
    case "$n" in
      n[0-9]*|f[0-9]*)  # DHT nodes: the latest status and what they stored
        echo "----- $n: $(grep '^STATUS' "$f" | tail -n 1); $(grep -c '^ANNOUNCE' "$f" || true) announces stored -----" >&2;;
      *)
        echo "----- $n log (last 40 lines of $f, STATUS lines but the last left out) -----" >&2
        { grep -v '^STATUS' "$f" | tail -n 40; grep '^STATUS' "$f" | tail -n 1; } >&2;;
    esac
  done
}

cleanup() {
  local rc=$? ns
  trap - EXIT INT TERM
  set +e
  # back to the script's own stdout and stderr (see netns_lan.sh)
  exec 1>&8 2>&9
  [ "$ok" = 1 ] || [ "$rc" != 0 ] || rc=1
  if [ "$rc" != 0 ] && [ "$skipped" != 1 ] && [ -n "$tmp" ]; then print_logs; fi
  ((${#pids[@]} == 0)) || stop_pids "${pids[@]}"
  for ns in "${created_ns[@]}"; do
    ip netns del "$ns" 2>/dev/null || echo "netns_dht: could not delete namespace $ns" >&2
  done
  for ns in "${created_ns[@]}"; do
    [ -e "/var/run/netns/$ns" ] && echo "netns_dht: namespace $ns is still there" >&2
  done
  if [ -n "$tmp" ] && [ -d "$tmp" ]; then
    if [ "$keep" = 1 ] || { [ "$rc" != 0 ] && [ "$skipped" != 1 ] && [ -n "${NETNS_DHT_KEEP_ON_FAILURE:-}" ]; }; then
      echo "netns_dht: kept $tmp" >&2
    else
      rm -rf -- "$tmp"
    fi
  fi
  [ "$rc" = 0 ] || [ "$skipped" = 1 ] || echo "netns_dht: failed (exit $rc) after $(( $(date +%s) - t_start )) s" >&2
  exit "$rc"
}
exec 8>&1 9>&2
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

tmp=$(mktemp -d "${TMPDIR:-/tmp}/netns_dht.XXXXXX")
chmod 755 "$tmp"

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
end=$(( t_built + total ))
if "$P" dht --help >/dev/null 2>&1; then have_dht=1; else have_dht=0; fi
if [ "$stand_in" = 1 ]; then
  say "peerlet DHT: $([ "$have_dht" = 1 ] && echo built || echo "not built"); --stand-in: libtorrent plays peerlet's parts"
else
  say "peerlet DHT: $([ "$have_dht" = 1 ] && echo built || echo "not built (parts b–d will be skipped)")"
fi

# left SECS: SECS, or fewer so as to end by the total bound (at least 1)
left() {
  local r=$(( end - $(date +%s) ))
  [ "$r" -ge 1 ] || r=1
  [ "$1" -le "$r" ] && echo "$1" || echo "$r"
}

# --- JSON checks (python3: no jq on a fresh Debian) ---
cat > "$tmp/check.py" <<'EOF'
import json, sys

def load(path):
    with open(path) as f:
        return json.load(f)

mode = sys.argv[1]
if mode == "seeding":
    # seeding FILE: pieces_have == pieces > 0 (torrent status)
    s = load(sys.argv[2])
    s = s.get("torrent", s)
    sys.exit(0 if s.get("pieces", 0) > 0 and s.get("pieces_have") == s.get("pieces") else 1)
elif mode == "dht_nodes":
    # dht_nodes FILE: the number of nodes in `peerlet dht --json` (`nodes`:
    # a count or a list); exit 2 when there is no such field
    n = load(sys.argv[2]).get("nodes")
    if isinstance(n, bool) or not isinstance(n, (int, list)):
        sys.exit(2)
    print(n if isinstance(n, int) else len(n))
else:
    sys.exit("check.py: unknown mode " + mode)
EOF
check() { python3 "$tmp/check.py" "$@"; }

# --- namespaces: a hub with the bridge, one namespace per session/daemon ---
suffix=$$
[ -e "/var/run/netns/pldht-hub-$suffix" ] && suffix="$$-$RANDOM"
hub=pldht-hub-$suffix
ip netns add "$hub"; created_ns+=("$hub")
ip -n "$hub" link set lo up
ip -n "$hub" link add br0 type bridge forward_delay 0
ip -n "$hub" link set br0 up

declare -A ns_of ip_of
# mkns ROLE IP: namespace pldht-ROLE-S with eth0 IP/16 on the hub's bridge
mkns() {
  local role=$1 addr=$2 ns=pldht-$1-$suffix
  ip netns add "$ns"; created_ns+=("$ns")
  ip -n "$hub" link add "v$role" type veth peer name eth0 netns "$ns"
  ip -n "$hub" link set "v$role" master br0
  ip -n "$hub" link set "v$role" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$addr/16" dev eth0
  ip -n "$ns" link set eth0 up
  ns_of[$role]=$ns ip_of[$role]=$addr
}

# lt ROLE MODE [ARGS...]: a libtorrent session (netns_dht_lt.py MODE) in
# ROLE's namespace on ROLE's address, logging to $tmp/ROLE.log, with its
# latest status in $tmp/ROLE.status; it stops by itself after the total bound
lt() {
  local role=$1 mode=$2; shift 2
  : > "$tmp/$role.log"
  ip netns exec "${ns_of[$role]}" "$PY" "$LT" "$mode" --bind "${ip_of[$role]}" \
    --status "$tmp/$role.status" --timeout "$(( total + 60 ))" "$@" \
    </dev/null >"$tmp/$role.log" 2>&1 8>&- 9>&- &
  pids+=($!) names+=("$role")
  eval "pid_$role=$!"
}
# field ROLE NAME: NAME's value in ROLE's latest status ("" before the first)
field() {
  local f=$tmp/$1.status
  [ -f "$f" ] || { echo ""; return; }
  tr ' ' '\n' < "$f" | sed -n "s/^$2=//p"
}
# alive ROLE: its process is still running. (Asked up to three times 0.1 s
# apart while the PID still exists: one run saw a single false "not ours"
# right after a start.)
alive() {
  local v="pid_$1" i
  for i in 1 2 3; do
    ours "${!v}" && return 0
    kill -0 "${!v}" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
# ended ROLE: sets $how to how ROLE's process ended ("exit N"), for a
# message (in this shell: a $(...) subshell cannot wait for our children)
ended() {
  local v="pid_$1" rc=0
  if ours "${!v}"; then how="still running"; return; fi
  wait "${!v}" 2>/dev/null || rc=$?
  how="exit $rc"
  [ "$rc" -le 128 ] || how+=", signal $((rc - 128))"
}
# stop ROLE...: stop these sessions or daemons (TERM, then KILL)
stop() {
  local r v ps=()
  for r in "$@"; do v="pid_$r"; ps+=("${!v}"); done
  stop_pids "${ps[@]}"
}

# peerlet ROLE [FLAGS...]: `peerlet daemon` in ROLE's namespace on ROLE's
# address (API 127.0.0.1:7441 inside it), no LAN beacons; log $tmp/ROLE.log
peerlet_daemon() {
  local role=$1; shift
  mkdir -p "$tmp/$role/downloads" "$tmp/$role/state"
  : > "$tmp/$role.log"
  # (no `timeout` wrapper: the PID kept is the daemon's own, so a KILL
  # after a TERM that did not work reaches the daemon)
  RUST_LOG=$log ip netns exec "${ns_of[$role]}" "$P" daemon \
    --listen "${ip_of[$role]}:6881" --api 127.0.0.1:7441 \
    --download-dir "$tmp/$role/downloads" --state-dir "$tmp/$role/state" \
    --no-lan-discovery "$@" \
    </dev/null >"$tmp/$role.log" 2>&1 8>&- 9>&- &
  pids+=($!) names+=("$role")
  eval "pid_$role=$!"
  local k
  for ((k = 0; k < 200; k++)); do  # ≤ 20 s
    grep -q '^peerlet daemon: peers on ' "$tmp/$role.log" && return 0
    alive "$role" || { ended "$role"; fail "peerlet daemon $role ended at start ($how): $(tail -n 5 "$tmp/$role.log")"; }
    sleep 0.1
  done
  fail "peerlet daemon $role did not start within 20 s"
}
# cli ROLE ARGS...: `peerlet ARGS --api 127.0.0.1:7441` in ROLE's namespace,
# killed after $cli_limit seconds (default 30)
cli() {
  local role=$1; shift
  timeout -k 5 "${cli_limit:-30}" ip netns exec "${ns_of[$role]}" "$P" "$@" --api 127.0.0.1:7441
}
# show_dht ROLE: print `peerlet dht` of ROLE (for the log; never fails)
show_dht() {
  echo "----- peerlet dht on $1 (${ip_of[$1]}) -----"
  cli "$1" dht 2>&1 | head -n 40 || true
}
# wait_dht ROLE SECS: wait until `peerlet dht --json` of ROLE counts a node
wait_dht() {
  local role=$1 until=$(( $(date +%s) + $(left "$2") )) k n=""
  for ((k = 0; k < 600; k++)); do
    if cli "$role" dht --json > "$tmp/$role.dht.json" 2>"$tmp/$role.dht.err"; then
      n=$(check dht_nodes "$tmp/$role.dht.json") \
        || fail "\`peerlet dht --json\` on $role has no \`nodes\` (a count or a list): $(head -c 400 "$tmp/$role.dht.json")"
      [ "$n" -ge 1 ] && { say "$role: peerlet DHT has $n nodes"; return 0; }
    fi
    [ "$(date +%s)" -lt "$until" ] || break
    sleep 0.5
  done
  show_dht "$role"
  fail "$role's DHT has no node after $2 s (bootstrap ${3:-?}): $(cat "$tmp/$role.dht.err" 2>/dev/null | head -n 3)"
}

# wait_formed SECS MIN ROLE...: every ROLE reports at least MIN DHT nodes
wait_formed() {
  local secs=$1 min=$2; shift 2
  local until=$(( $(date +%s) + $(left "$secs") )) k r n short
  for ((k = 0; k < 1200; k++)); do
    short=()
    for r in "$@"; do
      alive "$r" || { ended "$r"; fail "libtorrent session $r ended ($how): $(grep -v '^STATUS' "$tmp/$r.log" | tail -n 5)"; }
      n=$(field "$r" dht_nodes)
      [ -n "$n" ] && [ "$n" -ge "$min" ] || short+=("$r:${n:-?}")
    done
    ((${#short[@]} == 0)) && return 0
    [ "$(date +%s)" -lt "$until" ] || break
    sleep 0.5
  done
  fail "the DHT did not form within $secs s: nodes below $min DHT nodes: ${short[*]}"
}
# wait_announce SECS HASH IP ROLE...: one of ROLEs stored IP's announce of HASH
wait_announce() {
  local secs=$1 hash=$2 addr=$3; shift 3
  local until=$(( $(date +%s) + $(left "$secs") )) k r
  for ((k = 0; k < 1200; k++)); do
    for r in "$@"; do
      if grep -qi "^ANNOUNCE $hash $addr " "$tmp/$r.log" 2>/dev/null; then
        echo "$r"; return 0
      fi
    done
    [ "$(date +%s)" -lt "$until" ] || break
    sleep 0.5
  done
  return 1
}
# wait_done ROLE SECS: a libtorrent `get` session printed DONE and exited 0
wait_done() {
  local role=$1 until=$(( $(date +%s) + $(left "$2") )) k v rc
  for ((k = 0; k < 1200; k++)); do
    if grep -q '^DONE' "$tmp/$role.log"; then
      v="pid_$role"; rc=0; wait "${!v}" || rc=$?
      [ "$rc" = 0 ] || fail "libtorrent leecher $role printed DONE but exited $rc"
      return 0
    fi
    alive "$role" || { ended "$role"; fail "libtorrent leecher $role ended before completing ($how): $(grep -v '^STATUS' "$tmp/$role.log" | tail -n 5)"; }
    [ "$(date +%s)" -lt "$until" ] || break
    sleep 0.5
  done
  fail "libtorrent leecher $role did not complete within $2 s: $(field "$role" state) $(field "$role" progress), $(field "$role" peers) peers, $(field "$role" dht_nodes) DHT nodes"
}
# stagger ROLE: wait until ROLE's session listens (≤ 10 s), then 0.3 s more.
# libtorrent never puts a bootstrap router into its routing table: a node
# learns its first nodes from the routers' find_node answers, which hold only
# nodes the routers already verified. Nodes started all at once would all
# get empty answers (and libtorrent re-bootstraps only much later), so they
# join one after another, as nodes join a real DHT.
stagger() {
  local k
  for ((k = 0; k < 100; k++)); do
    grep -q '^LISTEN' "$tmp/$1.log" && break
    alive "$1" || { ended "$1"; fail "libtorrent session $1 ended at start ($how): $(tail -n 5 "$tmp/$1.log")"; }
    sleep 0.1
  done
  sleep 0.3
}
# make_torrent NAME MIB DIR: random NAME of MIB MiB in DIR, $tmp/NAME.torrent;
# sets $hash and $magnet
make_torrent() {
  mkdir -p "$3"
  head -c $(( $2 * 1024 * 1024 )) /dev/urandom > "$3/$1"
  local o
  o=$("$PY" "$LT" make "$3/$1" "$tmp/$1.torrent") || fail "making $1.torrent failed: $o"
  hash=$(printf '%s\n' "$o" | sed -n 's/^info_hash //p')
  magnet=$(printf '%s\n' "$o" | sed -n 's/^magnet //p')
  [ ${#hash} = 40 ] || fail "no info-hash for $1: $o"
}
# nodes_list ROLE...: "IP:6881,IP:6881,..."
nodes_list() {
  local r s=""
  for r in "$@"; do s+="${s:+,}${ip_of[$r]}:6881"; done
  echo "$s"
}

# --- 1. a DHT of libtorrent sessions ---
lt_nodes=()
for ((i = 1; i <= nodes_n; i++)); do
  mkns "n$i" "10.213.1.$i"
  lt_nodes+=("n$i")
done
mkns sa 10.213.2.1; mkns la 10.213.2.2; mkns lc 10.213.2.3
# the routers: the first three nodes (each node leaves itself out)
routers=(n1 n2 n3)
say "namespaces: $hub, ${#lt_nodes[@]} DHT nodes (${ip_of[n1]}...${ip_of[n$nodes_n]}), sa la lc"
t_ns=$(date +%s)
for r in "${lt_nodes[@]}"; do
  b=()
  for x in "${routers[@]}"; do [ "$x" = "$r" ] || b+=("$x"); done
  lt "$r" node --bootstrap "$(nodes_list "${b[@]}")"
  stagger "$r"
done
t_started=$(date +%s)
min_nodes=4
wait_formed 60 "$min_nodes" "${lt_nodes[@]}"
t_formed=$(date +%s)
counts=()
for r in "${lt_nodes[@]}"; do counts+=("$(field "$r" dht_nodes)"); done
say "1. libtorrent DHT of $nodes_n nodes: started one after another in $((t_started - t_ns)) s, formed $((t_formed - t_started)) s later (every node >= $min_nodes DHT nodes; each: ${counts[*]})"

# --- 2a. libtorrent seeder → libtorrent leecher, through the DHT alone ---
make_torrent dht-a.bin 4 "$tmp/sa/data"
hash_a=$hash magnet_a=$magnet
lt sa seed --bootstrap "$(nodes_list "${routers[@]}")" --torrent "$tmp/dht-a.bin.torrent" --save-path "$tmp/sa/data"
holder=$(wait_announce 45 "$hash_a" "${ip_of[sa]}" "${lt_nodes[@]}") \
  || fail "no libtorrent node stored sa's announce of A ($hash_a) within 45 s"
t_seed_a=$(date +%s)
say "2a. seeder sa announced A ($hash_a): stored by $holder after $((t_seed_a - t_formed)) s"
lt la get --bootstrap "$(nodes_list "${routers[@]}")" --magnet "$magnet_a" --save-path "$tmp/la/data"
wait_done la 60
cmp "$tmp/sa/data/dht-a.bin" "$tmp/la/data/dht-a.bin" || fail "2a: la's copy of A differs"
t_a=$(date +%s)
say "2a. libtorrent leecher la completed A from the magnet alone in $((t_a - t_seed_a)) s; identical"
stop la

if [ "$have_dht" != 1 ] && [ "$stand_in" != 1 ]; then
  say "timings: build $((t_built - t_start)) s, DHT $((t_formed - t_ns)) s, 2a announce $((t_seed_a - t_formed)) s + get $((t_a - t_seed_a)) s"
  echo "peerlet DHT not built: parts b–d skipped"
  if [ "$require_dht" = 1 ]; then fail "--require-dht: the peerlet binary has no DHT (\`peerlet dht --help\` fails)"; fi
  skipped=1
  exit 3
fi

# --- 2b. `peerlet get MAGNET` finds the libtorrent seeder through the DHT ---
mkns gb 10.213.3.1
boot_b=$(nodes_list n7)
t_b0=$(date +%s)
if [ "$stand_in" = 1 ]; then
  lt gb get --bootstrap "$boot_b" --magnet "$magnet_a" --save-path "$tmp/gb/downloads"
  wait_done gb 90
else
  peerlet_daemon gb --dht-bootstrap "$boot_b"
  wait_dht gb 30 "$boot_b"
  say "2b. gb: peerlet get A (bootstrap $boot_b)"
  cli_limit=$(( $(left 90) + 10 )) cli gb get "$magnet_a" --dir "$tmp/gb/downloads" --timeout "$(left 90)" \
    || { show_dht gb; fail "2b: peerlet get of A on gb failed"; }
  show_dht gb
fi
cmp "$tmp/sa/data/dht-a.bin" "$tmp/gb/downloads/dht-a.bin" || fail "2b: gb's copy of A differs"
t_b=$(date +%s)
say "2b. gb completed A through the DHT in $((t_b - t_b0)) s; identical"

# --- 2c. a libtorrent leecher finds a peerlet seeder through the DHT ---
mkns sc 10.213.3.2
boot_c=$(nodes_list n8)
make_torrent dht-c.bin 4 "$tmp/sc/downloads"
hash_c=$hash magnet_c=$magnet
t_c0=$(date +%s)
if [ "$stand_in" = 1 ]; then
  lt sc seed --bootstrap "$boot_c" --torrent "$tmp/dht-c.bin.torrent" --save-path "$tmp/sc/downloads"
else
  peerlet_daemon sc --dht-bootstrap "$boot_c"
  cli sc add "$tmp/dht-c.bin.torrent" --dir "$tmp/sc/downloads" >/dev/null || fail "2c: peerlet add on sc failed"
  seeding=0
  for ((k = 0; k < 60; k++)); do  # ≤ 30 s
    if cli sc status "$hash_c" --json > "$tmp/sc.status.json" 2>/dev/null && check seeding "$tmp/sc.status.json"; then
      seeding=1; break
    fi
    sleep 0.5
  done
  [ "$seeding" = 1 ] || fail "2c: sc does not seed C after 30 s: $(cat "$tmp/sc.status.json" 2>/dev/null)"
  wait_dht sc 30 "$boot_c"
fi
holder=$(wait_announce 60 "$hash_c" "${ip_of[sc]}" "${lt_nodes[@]}") \
  || { [ "$stand_in" = 1 ] || show_dht sc; fail "2c: no libtorrent node stored an announce of C ($hash_c) from sc (${ip_of[sc]}) within 60 s"; }
t_c1=$(date +%s)
say "2c. sc seeds C ($hash_c); its announce stored by $holder after $((t_c1 - t_c0)) s"
lt lc get --bootstrap "$(nodes_list "${routers[@]}")" --magnet "$magnet_c" --save-path "$tmp/lc/data"
wait_done lc 60
cmp "$tmp/sc/downloads/dht-c.bin" "$tmp/lc/data/dht-c.bin" || fail "2c: lc's copy of C differs"
t_c=$(date +%s)
say "2c. libtorrent leecher lc completed C from sc in $((t_c - t_c1)) s; identical"
[ "$stand_in" = 1 ] || show_dht sc

# --- 2d. a fresh libtorrent DHT with a peerlet node as its only router ---
say "2d. stopping the phase 1-2c sessions and daemons"
stop "${lt_nodes[@]}" sa gb sc
t_d0=$(date +%s)
mkns r 10.213.4.1
mkns gd 10.213.4.2
fresh=()
for ((i = 1; i <= 10; i++)); do mkns "f$i" "10.213.5.$i"; fresh+=("f$i"); done
mkns sd 10.213.5.100
boot_r=$(nodes_list r)
if [ "$stand_in" = 1 ]; then
  lt r node
else
  # No bootstrap at all (an empty list replaces the public routers).
  printf 'dht_bootstrap = []\n' > "$tmp/r.toml"
  peerlet_daemon r --config "$tmp/r.toml"
fi
for r in "${fresh[@]}"; do lt "$r" node --bootstrap "$boot_r"; stagger "$r"; done
wait_formed 60 3 "${fresh[@]}"
t_d1=$(date +%s)
counts=()
for r in "${fresh[@]}"; do counts+=("$(field "$r" dht_nodes)"); done
say "2d. fresh libtorrent DHT of ${#fresh[@]} nodes formed through r ($boot_r) alone in $((t_d1 - t_d0)) s (each: ${counts[*]})"
[ "$stand_in" = 1 ] || show_dht r
make_torrent dht-d.bin 4 "$tmp/sd/data"
hash_d=$hash magnet_d=$magnet
lt sd seed --bootstrap "$boot_r" --torrent "$tmp/dht-d.bin.torrent" --save-path "$tmp/sd/data"
holder=$(wait_announce 45 "$hash_d" "${ip_of[sd]}" "${fresh[@]}") \
  || fail "2d: no fresh libtorrent node stored sd's announce of D ($hash_d) within 45 s"
t_d2=$(date +%s)
say "2d. seeder sd announced D ($hash_d): stored by $holder after $((t_d2 - t_d1)) s"
boot_d=$(nodes_list f4)
if [ "$stand_in" = 1 ]; then
  lt gd get --bootstrap "$boot_d" --magnet "$magnet_d" --save-path "$tmp/gd/downloads"
  wait_done gd 90
else
  peerlet_daemon gd --dht-bootstrap "$boot_d"
  wait_dht gd 30 "$boot_d"
  say "2d. gd: peerlet get D (bootstrap $boot_d)"
  cli_limit=$(( $(left 90) + 10 )) cli gd get "$magnet_d" --dir "$tmp/gd/downloads" --timeout "$(left 90)" \
    || { show_dht gd; fail "2d: peerlet get of D on gd failed"; }
  show_dht gd
fi
cmp "$tmp/sd/data/dht-d.bin" "$tmp/gd/downloads/dht-d.bin" || fail "2d: gd's copy of D differs"
t_d=$(date +%s)
say "2d. gd completed D through the fresh DHT in $((t_d - t_d2)) s; identical"

say "timings: build $((t_built - t_start)) s, DHT $((t_formed - t_ns)) s, 2a $((t_a - t_formed)) s, 2b $((t_b - t_b0)) s, 2c $((t_c - t_c0)) s, 2d $((t_d - t_d0)) s (fresh DHT $((t_d1 - t_d0)) s, announce $((t_d2 - t_d1)) s, get $((t_d - t_d2)) s); after the build $((t_d - t_built)) s of $total"
ok=1
if [ "$stand_in" = 1 ]; then echo "netns_dht: ok (--stand-in: libtorrent played peerlet's parts)"; else echo "netns_dht: ok"; fi
