# shellcheck shell=bash disable=SC2154  # here, project, me, bin, rev: set by the caller
# Shared pieces of benches/transfer.sh and benches/suite.sh (sourced, not run).
#
# The caller sets, before calling these functions:
#   here     benches/ directory          project  the repository root
#   bin      --bin PATH or ""            rev      --rev REV or ""
#   me       script name for messages
#
# Where builds go: $CARGO_TARGET_DIR when set (e.g. CARGO_TARGET_DIR=/tmp/bench-target,
# so a benchmark build does not contend with other people's builds in a
# shared tree); otherwise the working tree's target/ (what CI has already
# built), and /tmp/bench-target for --rev builds.  Either way the binaries
# are copied into the results directory before the run.

# bench_need_root PEERBENCH_DIR: root (the harness re-execs under unshare -n) and the harness.
bench_need_root() {
  [ "$(id -u)" = 0 ] || { echo "$me: needs root (peerbench runs the clients under unshare -n)" >&2; exit 2; }
  [ -f "$1/peerbench.py" ] || { echo "$me: no peerbench.py in $1 (set PEERBENCH_DIR)" >&2; exit 2; }
}

# bench_need_tools "APT PACKAGES" TOOL...: every TOOL on PATH, or exit 2 naming the packages.
bench_need_tools() {
  local pkgs=$1 t; shift
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "$me: $t missing (apt-get install -y $pkgs)" >&2; exit 2; }
  done
}

# bench_build FEATURES DEST [EXAMPLE EXAMPLE_DEST]: builds peerlet (and an
# example of the same source and features) in release, or takes --bin; copies
# the binaries to DEST (and EXAMPLE_DEST) so that a concurrent `cargo build`
# cannot swap them mid-run; prints the version string.
bench_build() {
  local feats=$1 dest=$2 example=${3:-} example_dest=${4:-} src tdir b ver fa=() xa=()
  [ -n "$feats" ] && fa=(--features "$feats")
  [ -n "$example" ] && xa=(--example "$example")
  if [ -n "$bin" ]; then
    b=$bin; ver="peerlet (binary $bin)"
    [ -n "$example" ] && { echo "$me: --bin gives no $example binary" >&2; return 2; }
  else
    if [ -n "$rev" ]; then
      local commit; commit=$(git -C "$project" rev-parse --verify "$rev^{commit}")
      src=/tmp/peerlet-bench/build/${commit:0:12}
      if [ ! -f "$src/Cargo.toml" ]; then
        mkdir -p "$src"
        git -C "$project" archive "$commit" | tar -x -C "$src"
      fi
      ver="peerlet ${commit:0:12}"
    else
      src=$project
      local dirty; dirty=$(git -C "$project" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | head -c1)
      ver="peerlet $(git -C "$project" rev-parse --short HEAD 2>/dev/null || echo '?')${dirty:+-dirty}"
    fi
    if [ -n "$feats" ]; then   # beside the default build, so they do not evict it
      tdir=${CARGO_TARGET_DIR:-/tmp/peerlet-bench/target}-${feats//[^a-z0-9]/_}
    elif [ -n "$rev" ]; then
      tdir=${CARGO_TARGET_DIR:-/tmp/bench-target}
    else
      tdir=${CARGO_TARGET_DIR:-$src/target}
    fi
    echo "$me: cargo build --release ${feats:+--features $feats }--target-dir $tdir in $src" >&2
    (cd "$src" && cargo build --release --quiet --target-dir "$tdir" "${fa[@]}" --bin peerlet "${xa[@]}") >&2
    b=$tdir/release/peerlet
    [ -n "$example" ] && cp "$tdir/release/examples/$example" "$example_dest"
  fi
  cp "$b" "$dest"
  echo "$ver${feats:+ +$feats}"
}

# bench_adapter NAME BINARY VERSION: the harness's PEERBENCH_CLIENT_<NAME>_*
# variables for benches/peerbench-peerlet.sh (adapter name = NAME in lower case).
bench_adapter() {
  local n=$1 b=$2 w="$here/peerbench-peerlet.sh"
  export PEERBENCH_CLIENT_${n}_SEED="bash $w seed --bin $b --torrent {torrent} --dir {data_dir} --port {port} --run-dir {run_dir} --tracker {tracker} --info-hash {info_hash}"
  export PEERBENCH_CLIENT_${n}_LEECH="bash $w leech --bin $b --torrent {torrent} --dir {dl_dir} --port {port} --run-dir {run_dir} --peer 127.0.0.1:{seed_port} --done-file {done_file}"
  export PEERBENCH_CLIENT_${n}_DONE=file
  export PEERBENCH_CLIENT_${n}_STOP=TERM
  export PEERBENCH_CLIENT_${n}_VERSION="$3"
}

# bench_run_transfers PEERBENCH_DIR PAIRS PAYLOADS PIECE RUNS TIMEOUT OUT [REF]:
# one harness invocation (for each round, for each payload, every pair back to
# back); results in OUT/results.jsonl, the harness's stdout in OUT/peerbench.stdout.
bench_run_transfers() {
  python3 "$1/peerbench.py" --root /tmp/peerlet-bench/peerbench run \
    --pairs "$2" --payloads "$3" --pieces "$4" --runs "$5" \
    --ref "${8:-aria2:aria2}" --timeout "$6" --ready-timeout 120 --budget 3000 --out "$7" \
    > "$7/peerbench.stdout"
}

# bench_check_failures RESULTS.jsonl: exit status 1 if any transfer failed
# (CI), except pairs the harness itself reports as impossible on loopback
# (transmission:transmission: neither side dials 127.0.0.1 peers).
bench_check_failures() {
  python3 - "$1" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
bad = [r for r in rows if not r.get("ok") and not (r.get("error") or "").startswith("impossible on loopback")]
for r in bad:
    print("FAILED: %s %s round %s: %s" % (r["pair"], r["case"], r["run"], r.get("error") or "verify"), file=sys.stderr)
sys.exit(1 if bad or not rows else 0)
EOF
}
