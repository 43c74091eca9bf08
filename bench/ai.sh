#!/usr/bin/env bash
# What the AI layer costs on the message path: the same chat load through gateway + storage
# bridge + PostgreSQL with the default plugin chain and without it, at fixed rates, in turns
# (off, on, off, on, ...) so that the machine's drift hits both alike. Prints, per rate and
# setting, the bridge's and the gateway's CPU time per message, the messages the chain
# decided, and the relay latency (visitor -> agent) percentiles. A benchmark, not a test.
#
#   bench/ai.sh [rates, comma-separated] [seconds] [rounds]
#
# AI_NICE=N sets the configuration's `nice` (default 19: the AI thread yields the CPU to the
# message path).
# "on" is storage-bridge/ai/switchboard-ai.toml's chain (intent, sentiment, kb, handoff) in
# mode `when_no_agent`: the loadtest's agents are online, so conversations go to them as
# without a bot (the relay is measured the same way) while the chain decides every visitor
# message: labels, hand-offs, and knowledge-base answers that become drafts for the agent.
# Visitors write the paraphrased questions of storage-bridge/ai/faq-eval.tsv (zh + en).
# Writes bench/results/ai.json.
set -euo pipefail
# A thousand connections from one loopback address in a second: lift the gateway's
# per-source limits (a flood defence; bench/flood.py measures it).
export SWITCHBOARD_MAX_CONNECTIONS_PER_SOURCE=0 SWITCHBOARD_MAX_UNFINISHED_PER_SOURCE=0 \
    SWITCHBOARD_NEW_CONNECTIONS_PER_SOURCE_PER_S=0 SWITCHBOARD_NEW_CONNECTIONS_PER_SOURCE_BURST=0
cd "$(dirname "$0")/.."
rates=${1:-5000,20000}; duration=${2:-15}; rounds=${3:-2}
cargo build --release -q -p gateway -p storage-bridge -p loadtest
bin=./target/release
createdb -h 127.0.0.1 -U postgres switchboard_bench 2>/dev/null || true
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/switchboard_bench
unset REDIS_URL
work=$(mktemp -d /tmp/sb-ai-bench.XXXXXX)
cat > "$work/ai.toml" <<EOF
mode = "when_no_agent"
nice = ${AI_NICE:-19}
[[plugin]]
name = "intent"
rules = "$PWD/storage-bridge/ai/intents.toml"
[[plugin]]
name = "sentiment"
[[plugin]]
name = "kb"
file = "$PWD/storage-bridge/ai/faq.toml"
[[plugin]]
name = "handoff"
EOF
gw=
trap '[ -n "$gw" ] && kill $gw 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
ticks() { local f; read -r -a f < "/proc/$1/stat"; echo $((f[13] + f[14])); }
metric() { curl -s "http://$2/metrics" | awk -v n="$1" '$1 ~ "^"n"({|$)" {s += $2} END {print s + 0}'; }
echo "rate,setting,round,sent,bridge_us_per_msg,gateway_us_per_msg,decided,relay_p50_us,relay_p99_us" > "$work/rows.csv"
for rate in ${rates//,/ }; do
    for round in $(seq 1 "$rounds"); do
        for setting in off on; do
            psql -h 127.0.0.1 -U postgres switchboard_bench -qc \
                "DROP TABLE IF EXISTS messages, conversations, visitors, agents, seq_leases, schema_migrations" 2>/dev/null
            dir="$work/$rate-$setting-$round"; mkdir -p "$dir"
            ai=(); [ "$setting" = on ] && ai=(--ai "$work/ai.toml")
            SWITCHBOARD_LOG=warn "$bin/gateway" --listen 127.0.0.1:0 --data-dir "$dir" \
                --bridge-http 127.0.0.1:18199 "${ai[@]}" \
                --agent-capacity 1000 --rate-per-sec 1000 --rate-burst 2000 > "$dir/gw.out" 2> "$dir/gw.err" &
            gw=$!
            for _ in $(seq 1 100); do grep -q "gateway listening" "$dir/gw.out" 2>/dev/null && break; sleep 0.1; done
            addr=$(grep -o 'gateway listening on [0-9.:]*' "$dir/gw.out" | awk '{print $4}')
            sleep 1
            bridge=$(pgrep -P $gw storage-bridge)
            b0=$(ticks "$bridge"); g0=$(ticks "$gw")
            "$bin/loadtest" chat --url "ws://$addr" --secret-file "$dir/secret" --agents 10 \
                --visitors 1000 --rate "$(awk "BEGIN {print $rate / 1000}")" --duration "$duration" \
                --procs 2 --texts storage-bridge/ai/faq-eval.tsv --json "$dir/lt.json" > "$dir/lt.out" 2>&1
            b1=$(ticks "$bridge"); g1=$(ticks "$gw")
            decided=$(metric bridge_ai_messages_total 127.0.0.1:18199)
            kill $gw; wait $gw 2>/dev/null || true; gw=
            python3 - "$dir/lt.json" "$rate" "$setting" "$round" "$((b1 - b0))" "$((g1 - g0))" "$(getconf CLK_TCK)" "$decided" >> "$work/rows.csv" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
rate, setting, rnd, bt, gt, hz, decided = sys.argv[2:9]
sent = max(r["sent"], 1)
print(",".join(str(x) for x in [rate, setting, rnd, r["sent"],
    "%.1f" % (int(bt) / int(hz) / sent * 1e6), "%.1f" % (int(gt) / int(hz) / sent * 1e6),
    int(float(decided)), r["relay_us"]["p50"], r["relay_us"]["p99"]]))
PY
            tail -1 "$work/rows.csv"
        done
    done
done
python3 - "$work/rows.csv" <<'PY'
import csv, json, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
out = {"rows": rows, "summary": {}}
print("\nrate    setting  bridge us/msg  gateway us/msg  relay p50/p99 us (medians over rounds)")
for rate in sorted({r["rate"] for r in rows}, key=int):
    for setting in ("off", "on"):
        rs = [r for r in rows if r["rate"] == rate and r["setting"] == setting]
        med = lambda k: statistics.median(float(r[k]) for r in rs)
        s = {k: med(k) for k in ("bridge_us_per_msg", "gateway_us_per_msg", "relay_p50_us", "relay_p99_us", "sent", "decided")}
        out["summary"][f"{rate}/{setting}"] = s
        print(f"{rate:>6}  {setting:>7}  {s['bridge_us_per_msg']:>13.1f}  {s['gateway_us_per_msg']:>14.1f}  {s['relay_p50_us']:>7.0f} / {s['relay_p99_us']:.0f}")
    on, off = out["summary"][f"{rate}/on"], out["summary"][f"{rate}/off"]
    print(f"{rate:>6}  chain costs the bridge {on['bridge_us_per_msg'] - off['bridge_us_per_msg']:+.1f} us/msg"
          f" ({on['bridge_us_per_msg'] / max(off['bridge_us_per_msg'], 0.1):.2f}x), the gateway"
          f" {on['gateway_us_per_msg'] - off['gateway_us_per_msg']:+.1f} us/msg; decided {on['decided']:.0f} of {on['sent']:.0f}")
import os
nice = os.environ.get("AI_NICE", "19")
json.dump(out, open("bench/results/ai.json" if nice == "19" else f"bench/results/ai-nice{nice}.json", "w"), indent=1)
PY
