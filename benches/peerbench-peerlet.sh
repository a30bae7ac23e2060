#!/usr/bin/env bash
export LC_NUMERIC=C   # $EPOCHREALTIME with a decimal point
# peerbench adapter for peerlet: turns one `peerlet daemon` into a peerbench
# seeder or leecher (the harness's PEERBENCH_CLIENT_<NAME>_SEED/_LEECH
# templates call this script; benches/transfer.sh sets them up).
#
#   peerbench-peerlet.sh seed  --bin PEERLET --torrent T --dir DATA_PARENT --port P
#                              --run-dir R --tracker URL --info-hash HEX
#   peerbench-peerlet.sh leech --bin PEERLET --torrent T --dir DL_DIR --port P
#                              --run-dir R --peer 127.0.0.1:SEED_PORT --done-file F
#
# The process the harness spawns *becomes* `peerlet daemon` (exec), so the
# harness's wait4() rusage (CPU, peak RSS) and its /proc samples are the
# daemon's own, with nothing of this script mixed in.  Before the exec the
# script forks one small monitor that reads the daemon's log (stderr, copied
# to the harness's .err file) and reacts to three lines:
#
#   "peerlet daemon: ... control API on http://ADDR, ..."
#        -> `peerlet add T --dir DIR [--peer SEEDER]` (the control API is
#           bound to port 0, so the address comes from this line)
#   seed:  "NAME: N of N pieces verified, seeding"  (after peerlet's recheck)
#        -> one HTTP announce to the run's tracker with left=0, the daemon's
#           peer id and port.  peerlet has no tracker client yet; the harness
#           decides "seeder ready" from the tracker's scrape, and a tracker-
#           announcing leecher (aria2, lt) needs the seeder's address.
#   leech: "NAME: download complete, seeding"  (logged when the last piece has
#           been written and has passed SHA-1)
#        -> writes $EPOCHREALTIME to the done file (peerbench DONE=file).
#
# The leecher gets the seeder's address with --peer (the harness's
# {seed_port}), so peerlet dials it, as the other clients dial what the
# tracker returns.  Everything from spawning this script to the done stamp
# is inside the harness's clock: daemon start-up, the `add` request,
# connecting, the transfer and the final hash check.
#
# What is not in the daemon's rusage: the `peerlet add` CLI process (a few
# ms), the announce (curl) and this monitor (bash reading ~10 log lines);
# they are children of the daemon that it never reaps.
set -u

die() { echo "peerbench-peerlet: $*" >&2; exit 2; }

role=${1:-}; shift || true
case "$role" in seed|leech) ;; *) die "first argument must be seed or leech";; esac
bin= torrent= dir= port= run_dir= tracker= info_hash= peer= done_file=
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2;; --torrent) torrent=$2;; --dir) dir=$2;; --port) port=$2;;
    --run-dir) run_dir=$2;; --tracker) tracker=$2;; --info-hash) info_hash=$2;;
    --peer) peer=$2;; --done-file) done_file=$2;;
    *) die "unknown option $1";;
  esac
  shift 2 || die "missing value"
done
[ -x "$bin" ] || die "--bin $bin is not executable"
[ -n "$torrent" ] && [ -n "$dir" ] && [ -n "$port" ] && [ -n "$run_dir" ] || die "missing options"
if [ "$role" = seed ]; then
  [ -n "$tracker" ] && [ -n "$info_hash" ] || die "seed needs --tracker and --info-hash"
else
  [ -n "$peer" ] && [ -n "$done_file" ] || die "leech needs --peer and --done-file"
fi

state="$run_dir/peerlet-$role-state"
mkdir -p "$state"

# Tracker announce for the seeder: left=0, so the scrape counts it complete.
announce() {  # $1 = peer id
  local ih pid url
  ih=$(printf '%s' "$info_hash" | sed 's/../%&/g')
  pid=$(printf '%s' "$1" | sed 's/-/%2D/g')
  url="$tracker?info_hash=$ih&peer_id=$pid&port=$port&uploaded=0&downloaded=0&left=0&event=started&compact=1&numwant=0"
  # loopback tracker (the harness's opentracker on 127.0.0.1); bounded: 3 tries, 2 s each
  local i
  for i in 1 2 3; do
    if curl -fsS --max-time 2 -o "$run_dir/peerlet-announce.out" "$url"; then
      echo "peerbench-peerlet: announced to $tracker (left=0, port $port)"
      return 0
    fi
    sleep 0.2
  done
  echo "peerbench-peerlet: announce to $tracker failed"
}

monitor() {
  # Keep draining the daemon's stderr until it closes it; the harness stops
  # the whole process group with SIGTERM and the daemon still logs its
  # orderly stop after that.
  trap '' TERM INT
  local line api peer_id="" added=0 fired=0
  while IFS= read -r line; do
    printf '%s\n' "$line" >&2
    case "$line" in
      *"listening on "*" as "*)
        peer_id=${line##* as };;
      "peerlet daemon: "*"control API on http://"*)
        [ $added = 1 ] && continue
        added=1
        api=${line#*control API on http://}; api=${api%%,*}
        if [ "$role" = seed ]; then
          "$bin" add "$torrent" --dir "$dir" --api "$api" >&2
        else
          "$bin" add "$torrent" --dir "$dir" --peer "$peer" --api "$api" >&2
        fi || echo "peerbench-peerlet: add failed" >&2
        ;;
      *": download complete, seeding")
        if [ "$role" = leech ] && [ $fired = 0 ]; then
          fired=1
          printf '%s\n' "$EPOCHREALTIME" > "$done_file.tmp" && mv "$done_file.tmp" "$done_file"
        fi;;
      *" pieces verified, seeding")
        if [ "$role" = seed ] && [ $fired = 0 ]; then
          fired=1
          [ -n "$peer_id" ] || peer_id="-PL0100-$(printf '%012d' "$port")"
          announce "$peer_id" >&2
        fi;;
    esac
  done
}

export RUST_LOG=${PEERLET_BENCH_LOG:-info}
# Benchmarks talk only to loopback: no DHT routers.
export PEERLET_DHT_BOOTSTRAP=
exec "$bin" daemon --listen "127.0.0.1:$port" --api 127.0.0.1:0 \
  --download-dir "$dir" --state-dir "$state" --no-lan-discovery ${PEERLET_DAEMON_ARGS:-} \
  2> >(monitor)
