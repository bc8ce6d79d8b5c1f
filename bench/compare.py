#!/usr/bin/env python3
"""Two flux-recv builds side by side in one run: signed 7 KB GitHub pushes at c=1 and c=16,
A and B in turn (A B A B …), nginx as fluxd. Prints each build's median req/s, p99 and CPU per
push (utime + stime of its process over the run / pushes) and the ratios B/A per round, so a
change is judged against the machine's noise of the same minutes.

    python3 bench/compare.py OLD_BINARY NEW_BINARY [ROUNDS]
"""
import shutil
import statistics
import sys

import bench


def run(binary, nginx, posts, concurrency, seconds):
    api = f"http://127.0.0.1:{nginx.port}/api/flux"
    proc, port, route = bench.start_recv(binary, api)
    path, _, sig = posts["7KB"]
    try:
        before = nginx.count()
        result = bench.load(f"http://127.0.0.1:{port}{route}", concurrency, path, sig, seconds=seconds,
                            cpu_pids=(proc.pid,))
        result["notified"] = nginx.count() - before
    finally:
        proc.terminate()
        proc.wait()
    ok = result["codes"].get("200", 0)
    if ok == 0 or result["notified"] < ok:
        raise SystemExit(f"{binary}: {result['codes']} answered, {result['notified']} notified")
    return result


def main():
    old, new = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    seconds = 3
    nginx = bench.Nginx()
    posts = bench.bodies()
    print(f"A = {old}\nB = {new}\n{rounds} rounds of {seconds} s each, A then B; signed 7 KB push\n")
    try:
        for concurrency in (1, 16):
            a_rps, b_rps, a_p99, b_p99, ratios = [], [], [], [], []
            a_cpu, b_cpu, cpu_ratios = [], [], []
            for _ in range(rounds):
                a = run(old, nginx, posts, concurrency, seconds)
                b = run(new, nginx, posts, concurrency, seconds)
                a_rps.append(a["rps"])
                b_rps.append(b["rps"])
                a_p99.append(a["p99"])
                b_p99.append(b["p99"])
                ratios.append(b["rps"] / a["rps"])
                a_cpu.append(a["cpu_us"])
                b_cpu.append(b["cpu_us"])
                cpu_ratios.append(b["cpu_us"] / a["cpu_us"])
            print(f"c={concurrency:<3} A {statistics.median(a_rps):8,.0f} req/s p99 {statistics.median(a_p99):5.2f} ms"
                  f" | B {statistics.median(b_rps):8,.0f} req/s p99 {statistics.median(b_p99):5.2f} ms"
                  f" | B/A req/s median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
            print(f"      A {statistics.median(a_cpu):5.0f} us CPU per push | B {statistics.median(b_cpu):5.0f} us"
                  f" | B/A CPU median {statistics.median(cpu_ratios):.3f} (min {min(cpu_ratios):.3f}, max {max(cpu_ratios):.3f})")
    finally:
        nginx.stop()
        shutil.rmtree(bench.WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
