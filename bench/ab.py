#!/usr/bin/env python3
"""A/B of two gateway binaries on the proxied request (memory mode), interleaved rounds, on this
machine: BEFORE_BIN and AFTER_BIN are release binaries (build one from another commit with
`git worktree add` and its own CARGO_TARGET_DIR). Prints one markdown row per binary: req/s
median (min–max), p99 ms, CPU µs per request. ROUNDS (4) and RUN_SECS (8) tune it."""

import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

bins = {"before": os.environ["BEFORE_BIN"], "after": os.environ["AFTER_BIN"]}
try:
    site = os.path.join(bench.WORK, "site")
    os.makedirs(site)
    with open(os.path.join(site, "index.html"), "w") as f:
        f.write("<!doctype html><title>backend</title><p>" + "hello backend " * 40 + "</p>\n")
    port = bench.free_port()
    bench.Nginx("backend", f"server {{ listen 127.0.0.1:{port}; location / {{ root {site}; }} }}", workers=1)
    backend = f"http://127.0.0.1:{port}"
    bench.wait_http(backend + "/")
    bench.BIN = bins["after"]
    emu, emu_url = bench.start_emulator()
    gateways = {}
    for name, path in bins.items():
        bench.BIN = path
        p, url, _ = bench.start_gateway(emu_url, backend, name=f"gateway-{name}")
        gateways[name] = (p, url, bench.sign_in(url, "bench", "bench-password-1"))
    runs = {n: [] for n in bins}
    for rnd in range(int(os.environ.get("ROUNDS", "4"))):
        for name, (p, url, cookie) in gateways.items():
            before = bench.cpu_secs([p.pid])
            r = bench.wrk(url + "/", [f"Cookie: {cookie}"])
            r["cpu_us"] = (bench.cpu_secs([p.pid]) - before) * 1e6 / max(r["requests"], 1)
            runs[name].append(r)
            bench.log(f"  round {rnd + 1} {name}: {r['rps']:.0f} req/s, {r['cpu_us']:.1f} µs/req")
    print("| binary | req/s median (min–max) | p99 ms | CPU µs/req |")
    print("| --- | --- | --- | --- |")
    for name in bins:
        rs = [x["rps"] for x in runs[name]]
        p99 = statistics.median(x["p99"] for x in runs[name]) / 1000
        cpu = statistics.median(x["cpu_us"] for x in runs[name])
        print(f"| {name} | {statistics.median(rs):,.0f} ({min(rs):,.0f}–{max(rs):,.0f}) | {p99:.2f} | {cpu:.1f} |")
finally:
    bench.cleanup()
