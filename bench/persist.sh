#!/usr/bin/env bash
# Sustained chat traffic through gateway + storage bridge + store; prints stored messages/s,
# ack latency (= durably stored) and relay latency percentiles, lost/duplicated counts, the
# server's CPU time per stored message, and where the whole machine's CPU went per message
# (load generator, gateway+bridge, PostgreSQL). A benchmark, not a test: it asserts nothing
# but zero lost and duplicated messages (its exit status).
#
#   bench/persist.sh [pg|sqlite] [visitors] [messages/s per visitor] [seconds]
#
# Writes bench/results/persist-<store>-<offered rate>.json.
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
# CPU ticks of every PostgreSQL process (backends are not our children, so the loadtest
# cannot measure them): where the machine's two cores go is the point of this benchmark.
pg_ticks() {
    local s=0 p f
    for p in $(pgrep -x postgres); do
        read -r -a f < "/proc/$p/stat" 2>/dev/null && s=$((s + f[13] + f[14]))
    done
    echo "$s"
}
out=bench/results/persist-$db-$(awk "BEGIN {print $visitors * $rate}").json
pg0=$(pg_ticks); t0=$(date +%s.%N)
./target/release/loadtest chat --url "ws://$addr" --secret-file "$dir/secret" --agents 10 \
    --visitors "$visitors" --rate "$rate" --duration "$duration" --procs 2 \
    --server-pids "$gw,$bridge" --json "$out"
pg1=$(pg_ticks); t1=$(date +%s.%N)
python3 - "$out" "$db" "$(( pg1 - pg0 ))" "$(getconf CLK_TCK)" "$t0" "$t1" <<'PY'
import json, sys
path, db, ticks, hz, t0, t1 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
r = json.load(open(path))
sent = max(r["sent"], 1)
pg = ticks / hz if db == "pg" else 0.0
client = sum(r["worker_cpu_seconds"])
server = r["server_cpu_seconds"]
budget = {
    "client_us_per_message": client / sent * 1e6,
    "gateway_and_bridge_us_per_message": server / sent * 1e6,
    "postgres_us_per_message": pg / sent * 1e6,
}
budget["total_us_per_message"] = sum(budget.values())
budget["busy_cores_during_load"] = (client + server + pg) / r["window_seconds"]
r["cpu_budget"] = budget
json.dump(r, open(path, "w"), indent=1)
print("CPU per message (whole machine): client %.1f + gateway/bridge %.1f + PostgreSQL %.1f = %.1f us;"
      " %.2f of the machine's cores busy during the load" % (
          budget["client_us_per_message"], budget["gateway_and_bridge_us_per_message"],
          budget["postgres_us_per_message"], budget["total_us_per_message"], budget["busy_cores_during_load"]))
PY
