#!/usr/bin/env bash
# Fuzz smoke test: build every cargo-fuzz target, then run each one for N
# seconds (default 20; the first argument overrides; CI passes 8, which
# leaves about 3 of 5 CI minutes for the build) starting from its
# committed corpus in fuzz/corpus/<target>/. Exits non-zero when any target
# finds a crash, an invariant failure, a leak, a timeout or an out-of-memory
# (RSS over 512 MB, about a small board's budget).
#
#   fuzz/smoke.sh        # 20 s per target
#   fuzz/smoke.sh 300    # 5 min per target
#
# Needs a nightly toolchain (FUZZ_TOOLCHAIN, default "nightly") and
# cargo-fuzz, which is installed with `cargo install` when missing. Targets
# run one after the other on one core. New inputs go to a scratch directory,
# never into the committed corpus; crash inputs land in fuzz/artifacts/<target>/.
set -euo pipefail

secs="${1:-20}"
case "$secs" in
    '' | *[!0-9]*) echo "usage: $0 [seconds per target]" >&2; exit 2 ;;
esac
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

if ! cargo "+$toolchain" --version >/dev/null 2>&1; then
    echo "smoke.sh: the '$toolchain' toolchain is missing (rustup toolchain install $toolchain --profile minimal)" >&2
    exit 2
fi
if ! cargo "+$toolchain" fuzz --version >/dev/null 2>&1; then
    echo "smoke.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# Every parser of untrusted bytes, and the private-network link.
targets=(
    bencode_decode metainfo_parse magnet_parse overlay_packet
    peer_wire extension_handshake ut_metadata ut_pex
    tracker_udp tracker_http config_file noise_stream udp_datagram
    state_records krpc
)

# Longest input per target: above each parser's own cap where it has a small one.
max_len() {
    case "$1" in
        magnet_parse) echo 17000 ;;  # magnet::MAX_LEN is 16 KiB
        metainfo_parse) echo 8192 ;;
        overlay_packet) echo 8192 ;;  # several datagrams of up to 1,400+ bytes
        peer_wire) echo 20100 ;;  # a whole piece message (16 KiB block) and the frames around it
        ut_metadata) echo 20000 ;;  # a data message (16 KiB piece) in one record
        extension_handshake | ut_pex | tracker_udp | tracker_http | config_file) echo 8192 ;;
        noise_stream) echo 70000 ;;  # a stream of frames up to 65,535 bytes each
        *) echo 4096 ;;
    esac
}

cargo "+$toolchain" fuzz build

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t"
    echo "=== $t: ${secs}s over corpus/$t ($(ls "corpus/$t" | wc -l) inputs)"
    if cargo "+$toolchain" fuzz run "$t" "$scratch/$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=512 -timeout=10 \
        -max_len="$(max_len "$t")" -print_final_stats=1 \
        >"$scratch/$t.log" 2>&1; then
        grep -E '^stat::number_of_executed_units' "$scratch/$t.log" || true
    else
        echo "!!! $t FAILED; last lines of its log:" >&2
        tail -n 40 "$scratch/$t.log" >&2
        failed+=("$t")
    fi
done

if ((${#failed[@]})); then
    echo "fuzz smoke: failures in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz smoke: all ${#targets[@]} targets ran ${secs}s without a failure"
