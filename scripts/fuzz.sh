#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets) for SECONDS each, default 300: the
# client frame decoder, the bridge link codec, the HTTP upgrade request parser, token
# verification and the configuration loader. Seeds come from fuzz/corpus/TARGET (kept as
# they are); what the fuzzer finds on the way goes to a temporary directory. A crash stops
# the run with the input in fuzz/artifacts/TARGET/: make it a regression test.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# The test suite (scripts/test.sh) runs each for 20 s. Needs the nightly toolchain and
# cargo-fuzz (scripts/setup-test-env.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(client_frame bridge_codec http_head token config)
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: needs the nightly toolchain and cargo-fuzz (cargo install cargo-fuzz; scripts/setup-test-env.sh does)" >&2
    exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd fuzz
cargo +nightly fuzz build -O
for t in "${targets[@]}"; do
    mkdir -p "$work/$t"
    echo "fuzz: $t for ${seconds}s"
    if ! cargo +nightly fuzz run -O "$t" "$work/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 >"$work/$t.log" 2>&1; then
        grep -E "panicked|ERROR|SUMMARY|Test unit written|assert" "$work/$t.log" | head -20 >&2
        echo "fuzz: $t found a failure: its input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    grep -E "^Done [0-9]+ runs" "$work/$t.log" || tail -2 "$work/$t.log"
done
echo "fuzz: every target ran ${seconds}s without a failure"
