#!/usr/bin/env python3
"""A connection flood from one address, and the latency another address sees meanwhile.

Starts the release gateway (2 shards, no bridge, default per-source limits), then a visitor
and an agent connected from 127.0.0.2 exchange messages at a fixed rate: the visitor's
message to its ack, and to its arrival at the agent, are timed. First for PHASE seconds with
nothing else going on, then for PHASE seconds while one thread floods from 127.0.0.3:
connections opened as fast as they go, never sending a byte, the newest HELD kept open
(the gateway closes what is over its limits at accept). Bounded: at most ATTEMPTS
connections, PHASE seconds. Prints both phases' latencies, the flood's connection rate and
what the gateway refused (`chat_source_refused_total`, read from 127.0.0.1), and the
gateway's CPU.

  .venv/bin/python bench/flood.py [--phase 5] [--rate 50]
Needs `websockets` (scripts/setup-test-env.sh makes .venv with it) and
`cargo build --release -p gateway`.
"""
import argparse, asyncio, json, os, re, socket, statistics, subprocess, sys, tempfile, threading, time
import urllib.request

import websockets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GATEWAY = os.path.join(ROOT, "target", "release", "gateway")
HELD = 3000
ATTEMPTS = 200_000


def start_gateway(tmp):
    p = subprocess.Popen([GATEWAY, "--shards", "2", "--listen", "127.0.0.1:0", "--bridge", "off",
                          "--data-dir", tmp, "--rate-per-sec", "1000", "--rate-burst", "2000"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env=dict(os.environ, SWITCHBOARD_LOG="error"))
    for line in p.stdout:
        m = re.search(r"listening on (\S+)", line)
        if m:
            return p, m.group(1)
    sys.exit("the gateway did not start")


def token(tmp, agent):
    return subprocess.check_output([GATEWAY, "token", "--agent", agent, "--data-dir", tmp,
                                    "--bridge", "off"], text=True).strip()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def refused(addr):
    text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=5).read().decode()
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
               if l.startswith("chat_source_refused_total"))


def flood(addr, stop, out):
    host, port = addr.rsplit(":", 1)
    held, opened, failed = [], 0, 0
    while not stop.is_set() and opened + failed < ATTEMPTS:
        s = socket.socket()
        try:
            s.bind(("127.0.0.3", 0))
            s.connect((host, int(port)))
            opened += 1
            held.append(s)
            if len(held) > HELD:
                held.pop(0).close()
        except OSError:
            failed += 1
            s.close()
    for s in held:
        s.close()
    out.update(opened=opened, failed=failed)


async def measure(addr, tok, seconds, rate):
    kw = dict(local_addr=("127.0.0.2", 0))
    async with websockets.connect(f"ws://{addr}/ws/agent?token={tok}", **kw) as agent, \
            websockets.connect(f"ws://{addr}/ws/visitor?client=api", **kw) as visitor:
        await visitor.recv()
        await agent.recv()
        acks, arrivals, sent = [], [], {}
        conv = None

        async def read_visitor():
            nonlocal conv
            async for m in visitor:
                f = json.loads(m)
                if f["type"] == "ack" and f["cid"] in sent:
                    conv = f["conv"]
                    acks.append(time.perf_counter() - sent[f["cid"]])

        async def read_agent():
            async for m in agent:
                f = json.loads(m)
                if f["type"] == "assigned":
                    await agent.send(json.dumps({"type": "resume", "conv": f["conv"], "last_seq": 0}))
                elif f["type"] == "msg" and f.get("cid") in sent:
                    arrivals.append(time.perf_counter() - sent[f["cid"]])

        readers = [asyncio.create_task(read_visitor()), asyncio.create_task(read_agent())]
        end = time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < end:
            cid = f"m{i}"
            frame = {"type": "msg", "cid": cid, "body": "x" * 100}
            if conv:
                frame["conv"] = conv
            sent[cid] = time.perf_counter()
            await visitor.send(json.dumps(frame))
            i += 1
            await asyncio.sleep(1 / rate)
        await asyncio.sleep(0.5)
        for r in readers:
            r.cancel()
        # The first message waits for the assignment; leave it out.
        return acks[1:], arrivals[1:]


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))] * 1e6 if v else float("nan")


def report(name, acks, arrivals, cpu, seconds):
    print(f"{name:14} ack p50 {pct(acks, .5):7.0f} us  p99 {pct(acks, .99):7.0f} us   "
          f"to the agent p50 {pct(arrivals, .5):7.0f} us  p99 {pct(arrivals, .99):7.0f} us   "
          f"({len(acks)} messages)  gateway CPU {cpu / seconds * 100:5.1f}%")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase", type=float, default=5)
    ap.add_argument("--rate", type=float, default=50)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="sb-flood-")
    p, addr = start_gateway(tmp)
    try:
        tok = token(tmp, "ann")
        c0 = cpu_seconds(p.pid)
        acks, arr = asyncio.run(measure(addr, tok, a.phase, a.rate))
        report("quiet", acks, arr, cpu_seconds(p.pid) - c0, a.phase)
        stop, out = threading.Event(), {}
        t = threading.Thread(target=flood, args=(addr, stop, out))
        c0, t0, r0 = cpu_seconds(p.pid), time.perf_counter(), refused(addr)
        t.start()
        acks, arr = asyncio.run(measure(addr, tok, a.phase, a.rate))
        stop.set()
        t.join()
        elapsed = time.perf_counter() - t0
        report("during flood", acks, arr, cpu_seconds(p.pid) - c0, elapsed)
        print(f"flood from 127.0.0.3: {out['opened']} connections opened "
              f"({out['opened'] / elapsed:.0f}/s), {out['failed']} failed to connect, "
              f"{refused(addr) - r0:.0f} refused at accept by the gateway")
    finally:
        p.terminate()
        p.wait(10)


if __name__ == "__main__":
    main()
