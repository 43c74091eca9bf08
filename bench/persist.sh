#!/usr/bin/env bash
# Sustained chat traffic through gateway + storage bridge + store; prints stored messages/s,
# ack latency (= durably stored) and relay latency percentiles, lost/duplicated counts and
# the server's CPU time per stored message. A benchmark, not a test: it asserts nothing
# but zero lost and duplicated messages (its exit status).
#
#   bench/persist.sh [pg|sqlite] [visitors] [messages/s per visitor] [seconds]
#
# pg uses postgres://postgres@127.0.0.1:5432/switchboard_bench (created and emptied here).
set -euo pipefail
cd "$(dirname "$0")/.."
db=${1:-pg}; visitors=${2:-1000}; rate=${3:-20}; duration=${4:-20}
cargo build --release -q -p gateway -p storage-bridge -p loadtest
dir=$(mktemp -d /tmp/sb-bench.XXXXXX)
if [ "$db" = pg ]; then
    createdb -h 127.0.0.1 -U postgres switchboard_bench 2>/dev/null || true
    psql -h 127.0.0.1 -U postgres switchboard_bench -qc \
        "DROP TABLE IF EXISTS messages, conversations, visitors, agents, schema_migrations" 2>/dev/null
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/switchboard_bench
else
    unset DATABASE_URL
fi
SWITCHBOARD_LOG=warn ./target/release/gateway --listen 127.0.0.1:0 --data-dir "$dir" --bridge-http "" \
    --agent-capacity 1000 --rate-per-sec 1000 --rate-burst 2000 > "$dir/gw.out" 2> "$dir/gw.err" &
gw=$!
trap 'kill $gw 2>/dev/null; wait $gw 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 50); do grep -q "gateway listening" "$dir/gw.out" 2>/dev/null && break; sleep 0.1; done
addr=$(grep -o 'gateway listening on [0-9.:]*' "$dir/gw.out" | awk '{print $4}')
sleep 1
bridge=$(pgrep -P $gw storage-bridge)
echo "store: $db; gateway pid $gw, bridge pid $bridge; $(nproc) cores; $(uname -m)"
./target/release/loadtest chat --url "ws://$addr" --secret-file "$dir/secret" --agents 10 \
    --visitors "$visitors" --rate "$rate" --duration "$duration" --procs 2 \
    --server-pids "$gw,$bridge" --json "bench/results/persist-$db.json"
