#!/usr/bin/env bash
# Sustained chat traffic through gateway + storage bridge + store; prints stored messages/s,
# ack latency (= durably stored) and relay latency percentiles, lost/duplicated counts, the
# server's CPU time per stored message, and where the whole machine's CPU went per message
# (load generator, gateway+bridge, PostgreSQL). A benchmark, not a test: it asserts nothing
# but zero lost and duplicated messages (its exit status).
#
#   bench/persist.sh [pg|sqlite] [visitors] [messages/s per visitor] [seconds] [redis|none]
#
# SWITCHBOARD_BENCH_BIN=DIR runs the gateway and bridge from DIR instead (e.g. an earlier
# commit's target/release, to compare builds on the same host and load).
# Writes bench/results/persist-<store>-<offered rate>[-redis].json.
# pg uses postgres://postgres@127.0.0.1:5432/switchboard_bench (created and emptied here).
# redis: the bridge also writes its recent-message cache to 127.0.0.1:6379 (keys under
# sbbench:), and Redis's CPU is counted too (every redis-server process on the host).
set -euo pipefail
# A thousand connections from one loopback address in a second: lift the gateway's
# per-source limits (a flood defence; bench/flood.py measures it).
export SWITCHBOARD_MAX_CONNECTIONS_PER_SOURCE=0 SWITCHBOARD_MAX_UNFINISHED_PER_SOURCE=0 \
    SWITCHBOARD_NEW_CONNECTIONS_PER_SOURCE_PER_S=0 SWITCHBOARD_NEW_CONNECTIONS_PER_SOURCE_BURST=0
cd "$(dirname "$0")/.."
db=${1:-pg}; visitors=${2:-1000}; rate=${3:-20}; duration=${4:-20}; cache=${5:-none}
cargo build --release -q -p gateway -p storage-bridge -p loadtest
bin=${SWITCHBOARD_BENCH_BIN:-./target/release}
dir=$(mktemp -d /tmp/sb-bench.XXXXXX)
if [ "$db" = pg ]; then
    createdb -h 127.0.0.1 -U postgres switchboard_bench 2>/dev/null || true
    psql -h 127.0.0.1 -U postgres switchboard_bench -qc \
        "DROP TABLE IF EXISTS messages, conversations, visitors, agents, seq_leases, schema_migrations" 2>/dev/null
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/switchboard_bench
else
    unset DATABASE_URL
fi
suffix=
if [ "$cache" = redis ]; then
    export REDIS_URL=redis://127.0.0.1:6379 SWITCHBOARD_CACHE_PREFIX=sbbench:
    suffix=-redis
else
    unset REDIS_URL
fi
SWITCHBOARD_LOG=warn "$bin/gateway" --listen 127.0.0.1:0 --data-dir "$dir" --bridge-http "" \
    --agent-capacity 1000 --rate-per-sec 1000 --rate-burst 2000 > "$dir/gw.out" 2> "$dir/gw.err" &
gw=$!
trap 'kill $gw 2>/dev/null; wait $gw 2>/dev/null; rm -rf "$dir"
      [ "$cache" = redis ] && redis-cli --scan --pattern "sbbench:*" | xargs -r redis-cli del >/dev/null' EXIT
for _ in $(seq 1 50); do grep -q "gateway listening" "$dir/gw.out" 2>/dev/null && break; sleep 0.1; done
addr=$(grep -o 'gateway listening on [0-9.:]*' "$dir/gw.out" | awk '{print $4}')
sleep 1
bridge=$(pgrep -P $gw storage-bridge)
echo "store: $db; gateway pid $gw, bridge pid $bridge; $(nproc) cores; $(uname -m)"
# CPU ticks of every process named $1 (PostgreSQL backends and Redis are not our children,
# so the loadtest cannot measure them): where the machine's two cores go is the point of
# this benchmark.
ticks_of() {
    local s=0 p f
    for p in $(pgrep -x "$1"); do
        read -r -a f < "/proc/$p/stat" 2>/dev/null && s=$((s + f[13] + f[14]))
    done
    echo "$s"
}
out=bench/results/persist-$db-$(awk "BEGIN {print $visitors * $rate}")$suffix.json
pg0=$(ticks_of postgres); rd0=$(ticks_of redis-server); t0=$(date +%s.%N)
./target/release/loadtest chat --url "ws://$addr" --secret-file "$dir/secret" --agents 10 \
    --visitors "$visitors" --rate "$rate" --duration "$duration" --procs 2 \
    --server-pids "$gw,$bridge" --json "$out"
pg1=$(ticks_of postgres); rd1=$(ticks_of redis-server); t1=$(date +%s.%N)
[ "$cache" = redis ] || rd1=$rd0
python3 - "$out" "$db" "$(( pg1 - pg0 ))" "$(getconf CLK_TCK)" "$t0" "$t1" "$(( rd1 - rd0 ))" <<'PY'
import json, sys
path, db, ticks, hz, t0, t1 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
redis_ticks = int(sys.argv[7])
r = json.load(open(path))
sent = max(r["sent"], 1)
pg = ticks / hz if db == "pg" else 0.0
redis = redis_ticks / hz
client = sum(r["worker_cpu_seconds"])
server = r["server_cpu_seconds"]
budget = {
    "client_us_per_message": client / sent * 1e6,
    "gateway_and_bridge_us_per_message": server / sent * 1e6,
    "postgres_us_per_message": pg / sent * 1e6,
    "redis_us_per_message": redis / sent * 1e6,
}
budget["total_us_per_message"] = sum(budget.values())
budget["busy_cores_during_load"] = (client + server + pg + redis) / r["window_seconds"]
r["cpu_budget"] = budget
json.dump(r, open(path, "w"), indent=1)
print("CPU per message (whole machine): client %.1f + gateway/bridge %.1f + PostgreSQL %.1f + Redis %.1f = %.1f us;"
      " %.2f of the machine's cores busy during the load" % (
          budget["client_us_per_message"], budget["gateway_and_bridge_us_per_message"],
          budget["postgres_us_per_message"], budget["redis_us_per_message"],
          budget["total_us_per_message"], budget["busy_cores_during_load"]))
PY
