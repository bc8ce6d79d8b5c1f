#!/usr/bin/env python3
"""Fleet scale: one GitHub endpoint feeding N Flux v2 Receiver downstreams, all served by one
nginx answering 200 on loopback. Two layouts: every Receiver at one address (clusters behind one
ingress: their calls share kept-alive connections), and each at an address of its own
(127.0.x.y, as separate clusters are: no two share a connection). For each N and layout:
threads and RSS at idle, how long one push takes to reach all N (flux-recv answers 200 once
every downstream has), then 5 s of pushes at c=4, the most threads seen during it, and the
threads and RSS after it.

    python3 bench/fleet.py [BINARY] [N ...]      (default: the musl build, N = 1 10 100 1000)
"""
import hashlib
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

import bench

PUSH_RUNS = 11


def start_receivers():
    """nginx answering 200 to any Receiver path on every loopback address, logging each
    request's path unbuffered."""
    port = bench.free_port()
    log = os.path.join(bench.WORK, "receivers.log")
    proc = bench.start_nginx("receivers", port, f"""  log_format p '$uri';
  access_log {log} p;
  keepalive_requests 1000000;
  client_body_temp_path {bench.WORK};
  server {{
    listen {port};
    location /hook/ {{ return 200; }}
    location / {{ return 404; }}
  }}
""")
    return proc, port, log


def config_for(n, port, many_hosts):
    """A config of one GitHub endpoint and n fluxReceiver downstreams."""
    token = os.path.join(bench.WORK, "receiver.token")
    with open(token, "wb") as f:
        f.write(b"fleet-receiver-token-0123456789abcdef")
    with open(os.path.join(bench.WORK, "github.key"), "wb") as f:
        f.write(bench.KEY)
    lines = ["fluxRecvVersion: 1", "notify:"]
    for i in range(n):
        path = hashlib.sha256(f"receiver-{i}".encode()).hexdigest()
        host = f"127.0.{i // 250}.{i % 250 + 1}" if many_hosts else "127.0.0.1"
        lines += [f"- name: cluster-{i}",
                  f"  fluxReceiver: http://{host}:{port}/hook/{path}",
                  "  keyPath: receiver.token"]
    lines += ["endpoints:", "- source: GitHub", "  keyPath: github.key", ""]
    config = os.path.join(bench.WORK, f"fleet-{n}.yaml")
    with open(config, "w") as f:
        f.write("\n".join(lines))
    return config


def post(port, body, sig):
    """One signed push on a new connection: (status, seconds to the reply)."""
    head = bench.push_head(sig, len(body), "Connection: close")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        started = time.monotonic()
        s.sendall(head + body)
        reply = b""
        while b"\r\n" not in reply:
            chunk = s.recv(256)
            if not chunk:
                break
            reply += chunk
        took = time.monotonic() - started
    return int(reply.split()[1]) if reply.startswith(b"HTTP/1.1 ") else 0, took


def lines(log):
    try:
        with open(log, "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return 0


def threads(pid):
    return bench.status_kb(pid, "Threads")


def mib(pid):
    return bench.status_kb(pid, "VmRSS") / 1024


def measure(binary, n, many_hosts, receivers_port, log, posts):
    config = config_for(n, receivers_port, many_hosts)
    port = bench.free_port()
    proc = subprocess.Popen([binary, f"--config={config}", f"--listen=127.0.0.1:{port}",
                             "--max-connections=512"], stderr=subprocess.DEVNULL)
    try:
        if not bench.wait_health(port, limit=30):
            raise SystemExit(f"{binary} did not start with {n} downstreams")
        time.sleep(1)
        idle_threads, idle_rss = threads(proc.pid), mib(proc.pid)
        path, _, sig = posts["7KB"]
        with open(path, "rb") as f:
            body = f.read()
        times = []
        for _ in range(PUSH_RUNS):
            before = lines(log)
            status, took = post(port, body, sig)
            # nginx logs a request just after answering it.
            deadline = time.monotonic() + 1
            while lines(log) - before < n and time.monotonic() < deadline:
                time.sleep(0.001)
            reached = lines(log) - before
            if status != 200 or reached != n:
                raise SystemExit(f"N={n}: push answered {status}, {reached} of {n} reached")
            times.append(took * 1000)
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}{bench.ROUTE}"
        loaded = {}
        load = threading.Thread(target=lambda: loaded.update(bench.load(url, 4, path, sig, seconds=5)))
        load.start()
        peak = threads(proc.pid)
        while load.is_alive():
            peak = max(peak, threads(proc.pid))
            time.sleep(0.05)
        if not loaded:
            raise SystemExit(f"N={n}: the load did not run")
        time.sleep(0.5)
        return {
            "idle_threads": idle_threads, "idle_rss": idle_rss,
            "push_ms": statistics.median(times), "push_max_ms": max(times),
            "load_threads": peak, "after_threads": threads(proc.pid), "after_rss": mib(proc.pid),
            "load": loaded,
        }
    finally:
        proc.terminate()
        proc.wait()


def main():
    args = sys.argv[1:]
    binary = args.pop(0) if args and not args[0].isdigit() else bench.MUSL
    sizes = [int(a) for a in args] or [1, 10, 100, 1000]
    nginx, port, log = start_receivers()
    posts = bench.bodies()
    print(f"{binary}\none GitHub endpoint, N fluxReceiver downstreams on one nginx (200), 7 KB push;"
          f" push time is the median of {PUSH_RUNS} (max after /)\n")
    print("| N | hosts | threads idle | RSS idle | one push reaches all N | threads under c=4 (peak) "
          "| threads after | RSS after 5 s at c=4 |")
    print("|---|---|---|---|---|---|---|---|")
    try:
        for many_hosts, n in [(m, n) for m in (False, True) for n in sizes]:
            r = measure(binary, n, many_hosts, port, log, posts)
            hosts = f"{n:,}" if many_hosts else "1"
            print(f"| {n:,} | {hosts} | {r['idle_threads']} | {r['idle_rss']:.1f} MiB | {r['push_ms']:.1f} ms"
                  f" / {r['push_max_ms']:.1f} | {r['load_threads']} | {r['after_threads']} "
                  f"| {r['after_rss']:.1f} MiB |  ({r['load']['rps']:,.0f} req/s,"
                  f" {bench.codes_text(r['load']['codes'])})", flush=True)
    finally:
        nginx.terminate()
        nginx.wait()


if __name__ == "__main__":
    main()
