#!/usr/bin/env python3
"""End-to-end comparison: Switchboard's gateway against the baseline relay (bench/src/bin/
baseline-relay.rs), under identical `loadtest` scenarios, each server pinned to the same
cores. Run it through bench/compare.sh (which builds everything first).

For each server configuration it measures
  - idle memory per connection and handshakes/s (`loadtest connect`),
  - server CPU per WebSocket ping round trip at the fixed rate (`loadtest ping`),
  - a sweep of relay rates (`loadtest chat`, no replies, every message acked and relayed):
    relay p99, ack p99, lost/duplicated, and the server's CPU time per message,
  - system calls per relayed message at the fixed rate (`sendto`, `recvfrom`,
    `io_uring_enter`, `epoll_wait`, ... counted by `perf stat` on the server's syscall
    tracepoints, in a separate run because tracing inflates CPU time),
each figure measured for every configuration in turn before the next figure (so the
machine's drift hits all alike), and prints a table of ratios measured in this run, writes bench/results/compare.json, a flat
bench/results/compare-summary.json (figure -> value, for bench/summary_diff.py between
commits) and plots relay p99 against throughput into bench/results/compare.png.

Both servers run without storage (the gateway with --bridge off; the baseline stores
nothing), so the comparison is of the relay itself.
"""
import argparse, json, os, re, shutil, signal, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
RESULTS = os.path.join(ROOT, "bench", "results")
CORES = os.cpu_count() or 1


def start(cmd, pattern, env=None):
    """Starts a server, waits for its 'listening on ADDR' line; returns (proc, addr)."""
    out = tempfile.TemporaryFile(mode="w+")
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 30
    while time.time() < deadline:
        out.seek(0)
        m = re.search(pattern, out.read())
        if m:
            return p, m.group(1)
        if p.poll() is not None:
            sys.exit(f"compare: {' '.join(cmd)} exited with {p.returncode}")
        time.sleep(0.1)
    p.kill()
    sys.exit(f"compare: {' '.join(cmd)} did not start")


def stop(p):
    p.send_signal(signal.SIGKILL)
    p.wait()


def loadtest(args, json_path):
    cmd = [os.path.join(REL, "loadtest")] + args + ["--json", json_path]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if r.returncode == 2 or not os.path.exists(json_path):
        sys.exit(f"compare: loadtest failed: {' '.join(cmd)}\n{r.stdout}")
    with open(json_path) as f:
        return json.load(f)


SYSCALLS = ["sendto", "recvfrom", "io_uring_enter", "epoll_wait", "epoll_pwait", "write", "read",
            "futex", "membarrier", "mprotect"]


def count_syscalls(pid, seconds):
    """Counts the server's system calls for `seconds` with perf's syscall tracepoints.
    Returns {name: count, "total": count}, or None when perf cannot trace here."""
    if not shutil.which("perf"):
        return None
    events = ["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{n}" for n in SYSCALLS]
    r = subprocess.run(["perf", "stat", "-x,", "-e", ",".join(events), "-p", str(pid), "--", "sleep", str(seconds)],
                       capture_output=True, text=True)
    counts = {}
    for line in r.stderr.splitlines():
        f = line.split(",")
        if len(f) > 3 and f[0].strip().isdigit():
            name = f[2].split(":")[-1].replace("sys_enter_", "")
            counts["total" if name == "sys_enter" else name] = int(f[0])
    return counts if "total" in counts else None


def chat_args(addr, tmp, rate, duration, pid, client_cores):
    per_visitor = 10
    visitors = max(10, rate // per_visitor)
    agents = max(2, visitors // 10)
    return ["chat", "--url", f"ws://{addr}", "--secret-file", os.path.join(tmp, "secret"),
            "--agents", str(agents), "--visitors", str(visitors), "--rate", str(per_visitor),
            "--size", "200", "--duration", str(duration), "--drain", "5", "--procs", "2",
            "--server-pids", str(pid)] + client_cores


def server_configs(all_cores, before=None):
    gw = os.path.join(REL, "gateway")
    base = os.path.join(REL, "baseline-relay")
    n = CORES
    configs = [
        ("switchboard, 1 shard", "0", [gw, "--shards", "1"]),
        ("baseline, 1 core", "0", [base]),
        (f"switchboard, {n} shards", all_cores, [gw, "--shards", str(n)]),
        (f"baseline, {n} cores", all_cores, [base]),
    ]
    if before:
        old = os.path.join(before, "gateway")
        configs += [
            ("switchboard before, 1 shard", "0", [old, "--shards", "1"]),
            (f"switchboard before, {n} shards", all_cores, [old, "--shards", str(n)]),
        ]
    return configs


# The load comes from a few loopback addresses at thousands of connections per second: the
# gateway's per-source limits (flood defence, bench/flood.py) are lifted. By environment, so
# that a build from before they existed starts with the same command.
NO_SOURCE_LIMITS = {k: "0" for k in (
    "SWITCHBOARD_MAX_CONNECTIONS_PER_SOURCE", "SWITCHBOARD_MAX_UNFINISHED_PER_SOURCE",
    "SWITCHBOARD_NEW_CONNECTIONS_PER_SOURCE_PER_S", "SWITCHBOARD_NEW_CONNECTIONS_PER_SOURCE_BURST")}


def launch(name, cores, cmd, tmp):
    env = dict(os.environ, SWITCHBOARD_LOG="error", **NO_SOURCE_LIMITS)
    if cmd[0].endswith("gateway"):
        full = ["taskset", "-c", cores] + cmd + [
            "--listen", "127.0.0.1:0", "--bridge", "off", "--data-dir", tmp,
            "--agent-capacity", "100000", "--rate-per-sec", "1000", "--rate-burst", "2000",
            "--idle-api-s", "3600", "--idle-web-s", "3600"]
        return start(full, r"gateway listening on (\S+)", env)
    full = ["taskset", "-c", cores] + cmd + ["--listen", "127.0.0.1:0"]
    return start(full, r"baseline-relay listening on (\S+)", env)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer connections and rates, shorter runs")
    ap.add_argument("--fixed-rate", type=int, default=5000, help="the common rate for p99 and CPU per message")
    ap.add_argument("--rates", help="comma-separated offered rates of the sweep (default: all)")
    ap.add_argument("--before", metavar="DIR",
                    help="also run the gateway binary in DIR (an earlier commit's target/release) "
                         "and report this build against it, measured in the same run")
    a = ap.parse_args()
    all_cores = f"0-{CORES - 1}"
    conns = 2000 if a.quick else 10000
    rates = [1000, 5000] if a.quick else [1000, 5000, 10000, 15000, 20000, 30000, 40000]
    if a.rates:
        rates = sorted(int(r) for r in a.rates.split(","))
    duration = 3 if a.quick else 8
    if a.fixed_rate not in rates:
        rates = sorted(set(rates + [a.fixed_rate]))
    tmp = tempfile.mkdtemp(prefix="sb-compare-")
    with open(os.path.join(tmp, "secret"), "w") as f:
        f.write("compare-secret-0123456789abcdef\n")
    configs = server_configs(all_cores, a.before)
    results = [{"server": name, "server_cores": cores, "points": []} for name, cores, _ in configs]

    def client_cores(cores):
        # On one server core, the load client gets the other cores; on all, it shares.
        return ["--cores", f"1-{CORES - 1}"] if cores == "0" and CORES > 1 else []

    def measure(i, settle, fn):
        """Runs `fn(proc, addr)` against a fresh server of configuration `i`."""
        name, cores, cmd = configs[i]
        p, addr = launch(name, cores, cmd, tmp)
        try:
            time.sleep(settle)
            return fn(p, addr)
        finally:
            stop(p)

    # Every figure is measured for every configuration before the next figure, so the
    # machine's drift over the run hits all of them alike.
    print(f"== idle connections ({conns}) and handshakes", flush=True)
    for i, entry in enumerate(results):
        c = measure(i, 0.5, lambda p, addr: loadtest(
            ["connect", "--url", f"ws://{addr}/ws/visitor?client=web", "-n", str(conns), "--rate", "50000",
             "--hold", "2", "--procs", "2", "--source", "127.0.0.2-127.0.0.5", "--server-pid", str(p.pid)],
            os.path.join(tmp, "connect.json")))
        entry["idle_bytes_per_connection"] = c["server"]["rss_per_connection_bytes"]
        entry["handshakes_per_second"] = c["handshakes_per_second"]
        entry["handshake_p99_us"] = c["handshake_us"]["p99"]
        print(f"   {entry['server']:32} {entry['idle_bytes_per_connection']:6.0f} B each, "
              f"{entry['handshakes_per_second']:6.0f} handshakes/s", flush=True)

    print(f"== WebSocket ping round trips at {a.fixed_rate}/s (10 per second per connection)", flush=True)
    for i, entry in enumerate(results):
        pr = measure(i, 0.3, lambda p, addr: loadtest(
            ["ping", "--url", f"ws://{addr}/ws/visitor?client=api", "--conns", str(max(10, a.fixed_rate // 10)),
             "--rate", "10", "--duration", str(duration), "--drain", "3", "--procs", "2",
             "--server-pids", str(p.pid)] + client_cores(entry["server_cores"]), os.path.join(tmp, "ping.json")))
        entry["ping_server_cpu_us"] = pr["server_cpu_us_per_ping"]
        entry["ping_rtt_p99_us"] = pr["rtt_us"]["p99"]
        print(f"   {entry['server']:32} {entry['ping_server_cpu_us']:5.1f} us of server CPU per round trip, "
              f"p99 {entry['ping_rtt_p99_us'] / 1000:.2f} ms", flush=True)

    print(f"== system calls per relayed message at {a.fixed_rate}/s (a run of its own: tracing costs CPU)",
          flush=True)
    window = max(2, duration - 4)
    for i, entry in enumerate(results):
        def counted_run(p, addr):
            counted = {}
            counter = threading.Thread(target=lambda: (time.sleep(3), counted.update(c=count_syscalls(p.pid, window))))
            counter.start()
            loadtest(chat_args(addr, tmp, a.fixed_rate, duration, p.pid, client_cores(entry["server_cores"])),
                     os.path.join(tmp, "chat.json"))
            counter.join()
            return counted.get("c")
        counts = measure(i, 0.3, counted_run)
        if counts:
            per = {k: v / (a.fixed_rate * window) for k, v in counts.items() if v}
            entry["syscalls_per_message"] = per
            print("   %-32s %s" % (entry["server"], ", ".join(
                f"{k} {v:.2f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1]))), flush=True)
        else:
            print(f"   {entry['server']:32} (perf cannot trace system calls here: no counts)", flush=True)

    saturated = set()
    for rate in rates:
        print(f"== relay at {rate}/s offered", flush=True)
        for i, entry in enumerate(results):
            if i in saturated:
                continue
            r = measure(i, 0.3, lambda p, addr: loadtest(
                chat_args(addr, tmp, rate, duration, p.pid, client_cores(entry["server_cores"])),
                os.path.join(tmp, "chat.json")))
            point = {
                "offered": rate,
                "relayed_per_second": r["relayed"] / duration,
                "relay_p50_us": r["relay_us"]["p50"], "relay_p99_us": r["relay_us"]["p99"],
                "ack_p99_us": r["ack_us"]["p99"], "lost": r["lost"], "duplicated": r["duplicated"],
                "server_cpu_us_per_message": r["server_cpu_us_per_message"],
                "client_cpu_seconds": r.get("worker_cpu_seconds"),
            }
            entry["points"].append(point)
            print(f"   {entry['server']:32} {point['relayed_per_second']:8.0f}/s relayed, relay p99 "
                  f"{point['relay_p99_us'] / 1000:7.2f} ms, ack p99 {point['ack_p99_us'] / 1000:7.2f} ms, "
                  f"lost {point['lost']}, server {point['server_cpu_us_per_message']:.1f} us/msg", flush=True)
            if point["relay_p99_us"] > 200_000 or point["relayed_per_second"] < 0.8 * rate:
                print(f"   ({entry['server']} saturated: its sweep stops here)", flush=True)
                saturated.add(i)

    for entry in results:
        ok = [pt for pt in entry["points"] if pt["relay_p99_us"] < 5000 and pt["lost"] == 0
              and pt["relayed_per_second"] >= 0.95 * pt["offered"]]
        entry["max_rate_p99_under_5ms"] = max((pt["relayed_per_second"] for pt in ok), default=0)
        fixed = next((pt for pt in entry["points"] if pt["offered"] == a.fixed_rate), None)
        entry["fixed_rate"] = a.fixed_rate
        entry["relay_p99_us_at_fixed_rate"] = fixed and fixed["relay_p99_us"]
        entry["server_cpu_us_per_message_at_fixed_rate"] = fixed and fixed["server_cpu_us_per_message"]
        at20k = next((pt for pt in entry["points"] if pt["offered"] == 20000), None)
        entry["server_cpu_us_per_message_at_20000"] = at20k and at20k["server_cpu_us_per_message"]
        entry["syscalls_total_per_message"] = entry.get("syscalls_per_message", {}).get("total")

    def ratio(a, b, key, invert=False):
        x, y = a.get(key), b.get(key)
        if not x or not y:
            return None
        return (y / x) if invert else (x / y)

    pairs = [(results[0], results[1]), (results[2], results[3])]
    if a.before:
        pairs += [(results[0], results[4]), (results[2], results[5])]
    rows = []
    print()
    print(f"{'':34} {'switchboard':>14} {'other':>14} {'ratio':>8}")
    for sb, base in pairs:
        print(f"-- {sb['server']} vs {base['server']}")
        for label, key, better in [
            ("idle bytes per connection", "idle_bytes_per_connection", "lower"),
            ("handshakes/s", "handshakes_per_second", "higher"),
            ("max relay rate, p99 < 5 ms (msg/s)", "max_rate_p99_under_5ms", "higher"),
            (f"relay p99 at {a.fixed_rate}/s (us)", "relay_p99_us_at_fixed_rate", "lower"),
            (f"server CPU at {a.fixed_rate}/s (us/msg)", "server_cpu_us_per_message_at_fixed_rate", "lower"),
            ("server CPU at 20000/s (us/msg)", "server_cpu_us_per_message_at_20000", "lower"),
            (f"server CPU per ping at {a.fixed_rate}/s (us)", "ping_server_cpu_us", "lower"),
            ("syscalls per message", "syscalls_total_per_message", "lower"),
        ]:
            r = ratio(sb, base, key)
            rows.append({"pair": [sb["server"], base["server"]], "figure": label, "switchboard": sb.get(key),
                         "baseline": base.get(key), "ratio": r, "better": better})
            fmt = lambda v: "-" if v is None else f"{v:,.0f}"
            print(f"{label:34} {fmt(sb.get(key)):>14} {fmt(base.get(key)):>14} {('%.2fx' % r) if r else '-':>8}")
    host = {"cores": CORES, "uname": os.uname().release, "arch": os.uname().machine}
    os.makedirs(RESULTS, exist_ok=True)
    out = {"host": host, "quick": a.quick, "rates": rates, "connections": conns, "duration_s": duration,
           "results": results, "table": rows,
           "note": "ratio = switchboard / baseline (or / the --before build); all without storage; "
                   "loadtest shares the machine"}
    with open(os.path.join(RESULTS, "compare.json"), "w") as f:
        json.dump(out, f, indent=2)
    print(f"\nwrote {os.path.relpath(os.path.join(RESULTS, 'compare.json'), ROOT)}")
    summary_path = os.path.join(RESULTS, "compare-summary.json")
    with open(summary_path, "w") as f:
        json.dump(summary(results, a.fixed_rate, host), f, indent=1, sort_keys=True)
    print(f"wrote {os.path.relpath(summary_path, ROOT)}")
    plot(results, os.path.join(RESULTS, "compare.png"))


def summary(results, fixed_rate, host):
    """One flat mapping `server / figure` -> value, with the commit it was measured on."""
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    figures = {}
    for e in results:
        s = e["server"]
        figures[f"{s} / idle bytes per connection"] = e.get("idle_bytes_per_connection")
        figures[f"{s} / handshakes per second"] = e.get("handshakes_per_second")
        figures[f"{s} / max relay rate with p99 < 5 ms"] = e.get("max_rate_p99_under_5ms")
        figures[f"{s} / server cpu us per ping at {fixed_rate}"] = e.get("ping_server_cpu_us")
        for pt in e["points"]:
            figures[f"{s} / server cpu us per message at {pt['offered']}"] = pt["server_cpu_us_per_message"]
            figures[f"{s} / relay p99 us at {pt['offered']}"] = pt["relay_p99_us"]
        for k, v in (e.get("syscalls_per_message") or {}).items():
            figures[f"{s} / {k} per message at {fixed_rate}"] = round(v, 3)
    return {"commit": commit, "host": host, "figures": {k: v for k, v in figures.items() if v is not None}}


def plot(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing (bench/compare.sh installs it into .venv-bench); no plot")
        return
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for e in results:
        xs = [p["relayed_per_second"] for p in e["points"]]
        ys = [p["relay_p99_us"] / 1000 for p in e["points"]]
        ax.plot(xs, ys, marker="o", label=e["server"], linestyle="-" if "switchboard" in e["server"] else "--")
    ax.axhline(5, color="grey", linewidth=0.8, linestyle=":")
    ax.set_yscale("log")
    ax.set_xlabel("messages relayed per second")
    ax.set_ylabel("relay latency p99 (ms, log)")
    ax.set_title(f"Relay p99 vs throughput, {CORES} cores shared with the load generator")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    print(f"wrote {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
