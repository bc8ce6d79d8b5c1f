#!/usr/bin/env python3
"""Allocations per notified push: the glibc build under `valgrind --tool=dhat` (valgrind cannot
see a static binary's malloc), a signed 7 KB GitHub push sent PUSHES times on one kept-alive
connection to the nginx fluxd stand-in, less a run that sends none (start-up and shutdown).
Then the floor under it: the notify call alone (`examples/notify_floor.rs`, glibc build), per
call, from the difference between a 1 s and a 3 s run.

    bench/run (or: cargo build --release --bins --example notify_floor)
    python3 bench/allocs.py [BINARY] [PUSHES]      (default: target/release/flux-recv, 300)
"""
import os
import re
import signal
import socket
import subprocess
import sys

import bench


DHAT = ["valgrind", "--tool=dhat", "--dhat-out-file=/dev/null"]
FLOOR = os.path.join(bench.ROOT, "target/release/examples/notify_floor")


def total_blocks(stderr):
    found = re.search(r"Total:\s+[\d,]+ bytes in ([\d,]+) blocks", stderr)
    if not found:
        raise SystemExit(f"no dhat total in:\n{stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def floor_calls(api, seconds):
    """(calls, blocks) of the notify call alone, one thread, for `seconds`."""
    out = subprocess.run([*DHAT, FLOOR, api, "1", str(seconds)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"notify_floor failed:\n{out.stderr[-2000:]}")
    return int(out.stdout.split()[0]), total_blocks(out.stderr)


def blocks(binary, api, pushes, body, sig):
    """dhat's total blocks allocated over a run that sends `pushes` pushes."""
    port = bench.free_port()
    config = os.path.join(bench.WORK, "fluxrecv.yaml")
    with open(os.path.join(bench.WORK, "github.key"), "wb") as f:
        f.write(bench.KEY)
    with open(config, "w") as f:
        f.write(f"fluxRecvVersion: 1\napi: {api}\nendpoints:\n- source: GitHub\n  keyPath: github.key\n")
    proc = subprocess.Popen([*DHAT, binary,
                             f"--config={config}", f"--listen=127.0.0.1:{port}", "--notify-rate=0"],
                            stderr=subprocess.PIPE, text=True)
    if not bench.wait_health(port, limit=60):
        raise SystemExit(f"{binary} did not start under valgrind")
    head = bench.push_head(sig, len(body), "X-GitHub-Delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        for _ in range(pushes):
            s.sendall(head + body)
            reply = b""
            while b"\r\n\r\n" not in reply:
                chunk = s.recv(4096)
                if not chunk:
                    raise SystemExit("the connection closed")
                reply += chunk
            if not reply.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"a push was answered {reply[:40]!r}")
            # The reply's body, if any, is short and arrives with its head.
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    return total_blocks(err)


def main():
    args = sys.argv[1:]
    binary = args.pop(0) if args and not args[0].isdigit() else bench.GLIBC
    pushes = int(args[0]) if args else 300
    nginx = bench.Nginx()
    try:
        api = f"http://127.0.0.1:{nginx.port}/api/flux"
        path, _, sig = bench.bodies()["7KB"]
        with open(path, "rb") as f:
            body = f.read()
        base = blocks(binary, api, 0, body, sig)
        loaded = blocks(binary, api, pushes, body, sig)
        short, long = floor_calls(api, 1), floor_calls(api, 3)
    finally:
        nginx.stop()
    print(f"allocations per notified 7 KB push: {(loaded - base) / pushes:.1f} "
          f"({loaded:,} blocks with {pushes} pushes, {base:,} with none)")
    print(f"allocations per notify call alone (the floor): "
          f"{(long[1] - short[1]) / (long[0] - short[0]):.1f} ({short[0]:,} and {long[0]:,} calls)")


if __name__ == "__main__":
    main()
