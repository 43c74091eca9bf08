#!/usr/bin/env python3
"""Interleaved A/B runs of gateway variants at one rate: the same `loadtest chat` as
bench/compare.py, alternating the variants round by round (so drift in the machine hits
all of them alike), then the mean server CPU per message and the median relay p99 of each.
A variant is the release gateway with extra environment (any `SWITCHBOARD_*` setting), or
another build of it: the key `BIN` names its binary (e.g. `before=BIN:/tmp/old/gateway`).

  .venv-bench/bin/python bench/ab.py SHARDS RATE ROUNDS [NAME=VAR:VALUE,VAR:VALUE ...]
  e.g. bench/ab.py 1 5000 3 latency1ms=SWITCHBOARD_TASK_QUEUE_LATENCY_US:1000

Build first (bench/compare.sh does, or cargo build --release -p gateway -p loadtest).
"""
import os, statistics, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as c
tmp = tempfile.mkdtemp(prefix="sb-ab-")
open(os.path.join(tmp, 'secret'), 'w').write('compare-secret-0123456789abcdef\n')
GW = os.path.join(c.REL, "gateway")
variants = {
    'default': {},
}
for spec in sys.argv[4:]:
    name, _, kv = spec.partition('=')
    env = dict(x.split(':', 1) for x in kv.split(',') if x)
    variants[name] = env
if len(sys.argv) < 4:
    sys.exit(__doc__)
shards, rate, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cores = '0' if shards == '1' else '0-1'
client = ['--cores', '1'] if shards == '1' else []
res = {k: [] for k in variants}
names = list(variants)
for rnd in range(rounds):
    order = names if rnd % 2 == 0 else names[::-1]
    for name in order:
        settings = dict(variants[name])
        binary = settings.pop('BIN', GW)
        env = dict(os.environ, SWITCHBOARD_LOG='error', **c.NO_SOURCE_LIMITS, **settings)
        full = ['taskset', '-c', cores, binary, '--shards', shards, '--listen', '127.0.0.1:0', '--bridge', 'off',
                '--data-dir', tmp, '--agent-capacity', '100000', '--rate-per-sec', '1000', '--rate-burst', '2000',
                '--idle-api-s', '3600', '--idle-web-s', '3600']
        p, addr = c.start(full, r"gateway listening on (\S+)", env)
        try:
            time.sleep(0.3)
            visitors = max(10, rate // 10)
            r = c.loadtest(["chat", "--url", f"ws://{addr}", "--secret-file", os.path.join(tmp, "secret"),
                            "--agents", str(max(2, visitors // 10)), "--visitors", str(visitors), "--rate", "10",
                            "--size", "200", "--duration", "8", "--drain", "5", "--procs", "2",
                            "--server-pids", str(p.pid)] + client, os.path.join(tmp, "chat.json"))
        finally:
            c.stop(p)
        res[name].append((r['server_cpu_us_per_message'], r['relay_us']['p99'] / 1000))
        print(f"{name:10} {r['server_cpu_us_per_message']:6.1f} us/msg  p99 {r['relay_us']['p99']/1000:7.2f} ms lost {r['lost']}", flush=True)
for name, v in res.items():
    cpu = [x[0] for x in v]; p99 = [x[1] for x in v]
    print(f"== {name:10} shards={shards} rate={rate}: cpu mean {statistics.mean(cpu):.1f} us/msg (min {min(cpu):.1f}), p99 median {statistics.median(p99):.2f} ms")
