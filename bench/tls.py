#!/usr/bin/env python3
"""TLS against plain, in the same run: one release gateway with both listeners (a
certificate made here with openssl: a CA and a leaf for 127.0.0.1), measured on the same
process, interleaved round by round so drift hits both alike:

  - handshakes per second (`loadtest connect`, N connections at an unbounded rate), which
    for wss:// includes the TLS handshake (ECDSA P-256, TLS 1.3);
  - server CPU per relayed message and relay p99 at a fixed rate (`loadtest chat`).

  .venv-bench/bin/python bench/tls.py [--rounds 3] [--rate 5000] [--conns 2000] [--shards 1]
Build first: cargo build --release -p gateway -p loadtest (bench/compare.sh does).
"""
import argparse, os, socket, statistics, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as c


def make_certificate(tmp):
    """A CA and a leaf it signs for 127.0.0.1; returns (chain, key, ca)."""
    ca_key, ca, key, csr, leaf = (os.path.join(tmp, n) for n in
                                  ("ca.key", "ca.pem", "key.pem", "leaf.csr", "leaf.pem"))
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", ca_key, "-out", ca, "-days", "1", "-subj", "/CN=bench CA")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    ext = os.path.join(tmp, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", leaf, "-days", "1", "-extfile", ext)
    chain = os.path.join(tmp, "chain.pem")
    with open(chain, "w") as f:
        f.write(open(leaf).read() + open(ca).read())
    return chain, key, ca


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--shards", default="1")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="sb-tls-")
    open(os.path.join(tmp, "secret"), "w").write("compare-secret-0123456789abcdef\n")
    chain, key, ca = make_certificate(tmp)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    tls_port = probe.getsockname()[1]
    probe.close()
    cores = "0" if a.shards == "1" else "0-1"
    client = ["--cores", "1"] if a.shards == "1" else []
    env = dict(os.environ, SWITCHBOARD_LOG="error", **c.NO_SOURCE_LIMITS)
    cmd = ["taskset", "-c", cores, os.path.join(c.REL, "gateway"), "--shards", a.shards,
           "--listen", "127.0.0.1:0", "--tls-listen", f"127.0.0.1:{tls_port}", "--tls-cert", chain,
           "--tls-key", key, "--bridge", "off", "--data-dir", tmp, "--agent-capacity", "100000",
           "--rate-per-sec", "1000", "--rate-burst", "2000", "--idle-api-s", "3600", "--idle-web-s", "3600"]
    p, addr = c.start(cmd, r"gateway listening on (\S+)", env)
    urls = {"plain": f"ws://{addr}", "tls": f"wss://127.0.0.1:{tls_port}"}
    res = {k: {"hs": [], "cpu": [], "p99": []} for k in urls}
    try:
        for rnd in range(a.rounds):
            order = list(urls) if rnd % 2 == 0 else list(urls)[::-1]
            for name in order:
                base = urls[name]
                r = c.loadtest(["connect", "--ca", ca, "--url", f"{base}/ws/visitor?client=web", "-n", str(a.conns),
                                "--rate", "50000", "--hold", "1", "--procs", "2", "--source", "127.0.0.2-127.0.0.5",
                                "--server-pid", str(p.pid)], os.path.join(tmp, "connect.json"))
                res[name]["hs"].append(r["handshakes_per_second"])
                time.sleep(1)
                visitors = max(10, a.rate // 10)
                r = c.loadtest(["chat", "--ca", ca, "--url", base, "--secret-file", os.path.join(tmp, "secret"),
                                "--agents", str(max(2, visitors // 10)), "--visitors", str(visitors), "--rate", "10",
                                "--size", "200", "--duration", "8", "--drain", "5", "--procs", "2",
                                "--server-pids", str(p.pid)] + client, os.path.join(tmp, "chat.json"))
                res[name]["cpu"].append(r["server_cpu_us_per_message"])
                res[name]["p99"].append(r["relay_us"]["p99"] / 1000)
                print(f"round {rnd + 1} {name:5}  {res[name]['hs'][-1]:7.0f} handshakes/s  "
                      f"{res[name]['cpu'][-1]:6.1f} us CPU/msg  relay p99 {res[name]['p99'][-1]:6.2f} ms  "
                      f"lost {r['lost']}", flush=True)
                time.sleep(1)
    finally:
        c.stop(p)
    m = {k: {f: statistics.median(v[f]) for f in v} for k, v in res.items()}
    print(f"== {a.shards} shard(s), {a.rounds} rounds, medians (TLS / plain):")
    print(f"handshakes/s          {m['tls']['hs']:8.0f} / {m['plain']['hs']:8.0f}  = {m['tls']['hs'] / m['plain']['hs']:.2f}x")
    print(f"server CPU per msg    {m['tls']['cpu']:8.1f} / {m['plain']['cpu']:8.1f} us = {m['tls']['cpu'] / m['plain']['cpu']:.2f}x")
    print(f"relay p99             {m['tls']['p99']:8.2f} / {m['plain']['p99']:8.2f} ms")


if __name__ == "__main__":
    main()
