#!/usr/bin/env bash
# Runs the criterion micro-benchmarks (bench/benches/) and keeps the summary lines in
# bench/results/micro.txt: client frame decoding (serde_json vs simd-json), server frame
# encoding, routing and assignment, the bridge codec, zstd per level (with ratios).
#
#   bench/micro.sh [criterion filter]
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/results/micro.txt
{
    echo "# cargo bench -p switchboard-bench ($(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m))"
    for b in frames routing bridge_codec zstd_levels; do
        cargo bench -q -p switchboard-bench --bench "$b" -- --warm-up-time 1 --measurement-time 3 "$@" 2>/dev/null \
            | grep -E '^[a-z_0-9]+(/|$| )|time:|thrpt:|zstd level|history block'
    done
} | tee "$out"
echo "wrote $out"
