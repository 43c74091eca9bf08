#!/bin/sh
# The checks of an aarch64 host, in order: the unit and property tests built for it,
# `kernel-tuning check`, then the release gateway with 2 shards and its storage bridge on
# the embedded store, carrying a `loadtest chat` and a `loadtest churn` that must lose,
# duplicate and leave undelivered nothing, then a clean stop (SIGTERM). Each check prints
# its outcome; the last line is "aarch64 result: PASS" or "aarch64 result: FAIL: ...", and
# the exit status says the same.
#
# scripts/aarch64.sh runs it as the emulated machines' init (scripts/aarch64/init); on a
# real Kunpeng or Phytium host run it as deploy/README.md says. POSIX sh: busybox's runs it.
#
# Environment:
#   SB_BIN    directory of gateway, storage-bridge, kernel-tuning and loadtest
#             (default: target/release)
#   SB_TESTS  directory of test executables to run first (default: none)
#   SB_APPLY  `yes`: run `kernel-tuning apply` before starting the gateway (it changes the
#             host's sysctls: the emulated machines do it, a real host need not)
#   SB_PORT   the gateway's port on 127.0.0.1 (default 18080; the bridge's API takes the next)

bin=${SB_BIN:-target/release}
port=${SB_PORT:-18080}
export NO_COLOR=1
work=$(mktemp -d)
failures=""
fail() {
    echo "aarch64: FAILED: $*"
    failures="$failures${failures:+; }$*"
}
step() {
    echo
    echo "=== aarch64: $* ($(cut -d' ' -f1 /proc/uptime) s since boot)"
}
# Stops the gateway (and, through it, its bridge) if it still runs.
cleanup() {
    if [ -n "${gw:-}" ]; then
        kill "$gw" 2> /dev/null
        gw=""
    fi
    rm -rf "$work"
}
trap 'cleanup; exit 130' INT TERM
finish() {
    cleanup
    echo
    if [ -z "$failures" ]; then
        echo "aarch64 result: PASS"
        exit 0
    fi
    echo "aarch64 result: FAIL: $failures"
    exit 1
}
# A loadtest scenario, its per-second progress lines left out.
loadtest_run() {
    name=$1
    shift
    "$bin/loadtest" "$@" > "$work/$name.out" 2>&1
    status=$?
    grep -v '| acked ' "$work/$name.out"
    return $status
}
http_get() {
    if command -v wget > /dev/null; then wget -q -O - "$1"; else curl -fsS "$1"; fi
}

for b in gateway storage-bridge kernel-tuning loadtest; do
    [ -x "$bin/$b" ] || { fail "$bin/$b is missing (SB_BIN)"; finish; }
done

step "machine"
echo "kernel: $(uname -srvm)"
part=$(grep -m1 '^CPU part' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')
implementer=$(grep -m1 '^CPU implementer' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')
echo "cpu: implementer $implementer part $part, $(grep -c ^processor /proc/cpuinfo) cores, features:$(grep -m1 ^Features /proc/cpuinfo | cut -d: -f2)"
echo "page size: $(grep -m1 KernelPageSize /proc/self/smaps | tr -s ' ' | cut -d' ' -f2-)"
echo "memory: $(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2-)"
echo "locked memory limit: $(ulimit -l) KiB"
[ "$(uname -m)" = aarch64 ] || fail "this is not an aarch64 machine ($(uname -m))"
# glommio starts no shard below 512 KiB (kernels before 5.16 give users 64 KiB).
memlock=$(ulimit -l)
if [ "$memlock" != unlimited ] && [ "$memlock" -lt 512 ]; then
    fail "locked memory limit $memlock KiB: the gateway needs 512 at least (ulimit -l 65536, or run as root)"
    finish
fi

if [ -n "${SB_TESTS:-}" ]; then
    step "unit and property tests built for aarch64"
    for t in "$SB_TESTS"/*; do
        name=$(basename "$t")
        if "$t" --test-threads 2 -q > "$work/test.out" 2>&1; then
            echo "$name: $(grep '^test result' "$work/test.out" | tail -1)"
        else
            cat "$work/test.out"
            fail "tests $name"
        fi
    done
fi

step "kernel-tuning check (as found)"
"$bin/kernel-tuning" check --shards 2 --connections 10000 > "$work/check.out" 2>&1
status=$?
cat "$work/check.out"
echo "cpu model: $(sed -n 's/^info *aarch64 CPU *current: \(.*\)  recommended.*/\1/p' "$work/check.out")"
# 0: tuned; 1: drift (expected on an untuned host); anything else is an error.
[ $status -le 1 ] || fail "kernel-tuning check exited $status"

if [ "${SB_APPLY:-}" = yes ]; then
    step "kernel-tuning apply"
    if "$bin/kernel-tuning" apply > "$work/apply.out" 2>&1; then
        tail -3 "$work/apply.out"
    else
        cat "$work/apply.out"
        fail "kernel-tuning apply"
    fi
fi

step "gateway: 2 shards, storage bridge on the embedded store"
SWITCHBOARD_LOG=warn "$bin/gateway" --listen "127.0.0.1:$port" --shards 2 --data-dir "$work/data" \
    --bridge-http "127.0.0.1:$((port + 1))" > "$work/gateway.log" 2>&1 &
gw=$!
up=""
for _ in $(seq 1 600); do
    if grep -q "switchboard gateway listening on" "$work/gateway.log"; then
        up=yes
        break
    fi
    kill -0 $gw 2> /dev/null || break
    sleep 0.2
done
cat "$work/gateway.log"
if [ -z "$up" ]; then
    fail "the gateway did not start"
    finish
fi
for _ in $(seq 1 100); do
    http_get "http://127.0.0.1:$port/healthz" > "$work/healthz" 2> /dev/null && break
    sleep 0.2
done
echo "healthz: $(cat "$work/healthz")"
grep -q '^ok' "$work/healthz" || fail "healthz"

step "kernel-tuning check with the running gateway's limits"
"$bin/kernel-tuning" check --pid $gw --shards 2 --connections 10000 > "$work/check.out" 2>&1
status=$?
grep -E '^(DRIFT|advice|ok|info) ' "$work/check.out" | grep -E '^(DRIFT|advice)|Max (open files|locked memory)|tcp_[rw]mem'
# After `apply` everything must be tuned; a host checked as found is only reported on.
if [ "${SB_APPLY:-}" = yes ]; then
    [ $status -eq 0 ] || fail "kernel-tuning check after apply exited $status"
fi

step "loadtest chat: 20 visitors, 4 agents; 0 lost, duplicated, undelivered"
loadtest_run chat chat --url "ws://127.0.0.1:$port" --secret-file "$work/data/secret" --agents 4 \
    --visitors 20 --rate 5 --replies 0.2 --duration 5 --drain 30 --procs 2 --server-pids $gw \
    --slo 'lost=0,duplicated=0,undelivered=0,sent>=300' || fail "loadtest chat"

step "loadtest churn: clients reconnecting every 0.7 s and resuming; 0 lost, duplicated, undelivered"
loadtest_run churn churn --url "ws://127.0.0.1:$port" --secret-file "$work/data/secret" --agents 2 \
    --visitors 10 --rate 10 --duration 5 --reconnect-every 0.7 --drain 30 \
    --slo 'lost=0,duplicated=0,undelivered=0,reconnects>=30' || fail "loadtest churn"

step "gateway: clean stop (SIGTERM)"
kill -TERM $gw
# Its shutdown grace is 10 s; past 30, it is stuck.
for _ in $(seq 1 150); do
    kill -0 $gw 2> /dev/null || break
    sleep 0.2
done
if kill -0 $gw 2> /dev/null; then
    kill -KILL $gw
    fail "the gateway was still running 30 s after SIGTERM"
fi
wait $gw
status=$?
gw=""
tail -3 "$work/gateway.log"
[ $status -eq 0 ] || fail "the gateway exited $status on SIGTERM"

finish
