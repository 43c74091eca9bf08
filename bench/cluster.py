#!/usr/bin/env python3
"""Same-node against cross-node conversations, in the same run: two release gateway nodes
(1 shard each, each with its storage bridge) sharing a PostgreSQL schema of their own and a
Redis of their own, and `loadtest chat` at a fixed rate, interleaved round by round:

  - same node:  visitors and agents on node A;
  - cross node: visitors on node B, agents on node A: every message is sequenced on B
    (a visitor's conversation lives on its own shard) and relayed to A through Redis.

Reported per relayed message: the CPU of both gateways, both bridges and Redis (PostgreSQL
is the same work in both and left out), and the relay latency p50/p99.

  .venv-bench/bin/python bench/cluster.py [--rounds 3] [--rate 2000]
Build first: cargo build --release -p gateway -p storage-bridge -p loadtest.
"""
import argparse, os, socket, statistics, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as c

PG = os.environ.get("SWITCHBOARD_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_s(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def psql(sql, url=PG):
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql], check=True,
                   capture_output=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=int, default=2000, help="messages per second, offered")
    ap.add_argument("--duration", type=int, default=10)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="sb-cluster-")
    secret = os.path.join(tmp, "secret")
    open(secret, "w").write("cluster-bench-secret-0123456789abcdef\n")
    schema = f"sbbench_{os.getpid()}"
    psql(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
    db = f"{PG}?options=-c%20search_path%3D{schema}"
    rport = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", tmp],
                             stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    env = dict(os.environ, SWITCHBOARD_LOG="error", DATABASE_URL=db, **c.NO_SOURCE_LIMITS)
    env.pop("REDIS_URL", None)
    nodes = []
    try:
        for name in ("a", "b"):
            cmd = [os.path.join(c.REL, "gateway"), "--shards", "1", "--no-pin", "--listen", "127.0.0.1:0",
                   "--data-dir", os.path.join(tmp, name), "--secret-file", secret, "--bridge-http", "",
                   "--cluster-redis", f"redis://127.0.0.1:{rport}", "--node-id", name,
                   "--agent-capacity", "100000", "--rate-per-sec", "1000", "--rate-burst", "2000",
                   "--idle-api-s", "3600"]
            nodes.append(c.start(cmd, r"gateway listening on (\S+)", env))
        time.sleep(3)  # both see each other (the heartbeat is 500 ms)
        (pa, addr_a), (pb, addr_b) = nodes
        bridges = [ch for p in (pa, pb) for ch in children(p.pid)]
        pids = {"gateways": [pa.pid, pb.pid], "bridges": bridges, "redis": [redis.pid]}
        modes = {"same": (addr_a, addr_a), "cross": (addr_b, addr_a)}
        res = {m: {"cpu": [], "gw": [], "br": [], "rd": [], "p50": [], "p99": []} for m in modes}
        visitors = max(10, a.rate // 10)
        for rnd in range(a.rounds):
            order = list(modes) if rnd % 2 == 0 else list(modes)[::-1]
            for mode in order:
                vis, ag = modes[mode]
                before = {k: sum(cpu_s(p) for p in v) for k, v in pids.items()}
                r = c.loadtest(["chat", "--url", f"ws://{vis}", "--agent-url", f"ws://{ag}",
                                "--secret-file", secret, "--agents", str(max(2, visitors // 10)),
                                "--visitors", str(visitors), "--rate", "10", "--size", "200",
                                "--duration", str(a.duration), "--drain", "5", "--procs", "2"],
                               os.path.join(tmp, "chat.json"))
                used = {k: sum(cpu_s(p) for p in v) - before[k] for k, v in pids.items()}
                n = max(1, r["relayed"])
                row = res[mode]
                row["gw"].append(used["gateways"] * 1e6 / n)
                row["br"].append(used["bridges"] * 1e6 / n)
                row["rd"].append(used["redis"] * 1e6 / n)
                row["cpu"].append(row["gw"][-1] + row["br"][-1] + row["rd"][-1])
                row["p50"].append(r["relay_us"]["p50"] / 1000)
                row["p99"].append(r["relay_us"]["p99"] / 1000)
                print(f"round {rnd + 1} {mode:5}  {row['cpu'][-1]:6.1f} us CPU/msg (gateways {row['gw'][-1]:5.1f}, "
                      f"bridges {row['br'][-1]:5.1f}, redis {row['rd'][-1]:4.1f})  relay p50 {row['p50'][-1]:5.2f} "
                      f"p99 {row['p99'][-1]:6.2f} ms  relayed {r['relayed']} lost {r['lost']} dup {r['duplicated']}",
                      flush=True)
                time.sleep(1)
    finally:
        for p, _ in nodes:
            c.stop(p)
        redis.kill()
        redis.wait()
        psql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    m = {k: {f: statistics.median(v[f]) for f in v} for k, v in res.items()}
    s, x = m["same"], m["cross"]
    print(f"== 2 nodes x 1 shard, {a.rate} msg/s offered, {a.rounds} rounds, medians (cross / same):")
    print(f"CPU per message       {x['cpu']:7.1f} / {s['cpu']:7.1f} us = {x['cpu'] / s['cpu']:.2f}x")
    print(f"  gateways            {x['gw']:7.1f} / {s['gw']:7.1f} us")
    print(f"  bridges             {x['br']:7.1f} / {s['br']:7.1f} us")
    print(f"  redis               {x['rd']:7.1f} / {s['rd']:7.1f} us")
    print(f"relay p50             {x['p50']:7.2f} / {s['p50']:7.2f} ms")
    print(f"relay p99             {x['p99']:7.2f} / {s['p99']:7.2f} ms")


if __name__ == "__main__":
    main()
