"""A quick probe of `flw mcp` echo latency and throughput over stdio.

Usage: python3 bench/probe_echo.py [FLW_BINARY] [--mode isolated|shared] [--instances N]

It speaks newline-delimited JSON-RPC to `flw mcp` directly (no client SDK):
sequential calls for latency, then pipelined batches with 1, 16 and 256 calls
in flight for throughput. A stand-in until the benchmark driver of bench/
(a compiled client comparing flw with its peers) lands; its own overhead is
Python's, so treat its numbers as a lower bound for flw.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AGENT = ROOT / "examples" / "hello-python" / "agent.py"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("flw", nargs="?", default=str(ROOT / "target" / "release" / "flw"))
    ap.add_argument("--mode", default="isolated")
    ap.add_argument("--instances", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--calls", type=int, default=5000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "flw.toml"
        cfg.write_text(f'[pools.hello]\nscript = "{AGENT}"\nmode = "{a.mode}"\ninstances = {a.instances}\n')
        proc = subprocess.Popen(
            [a.flw, "mcp", "--config", str(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=dict(os.environ, FLW_LOG="warn"),
        )
        w, r = proc.stdin, proc.stdout
        next_id = 0

        def send(method: str, params: dict) -> int:
            nonlocal next_id
            next_id += 1
            w.write(json.dumps({"jsonrpc": "2.0", "id": next_id, "method": method, "params": params}).encode() + b"\n")
            return next_id

        client = {"name": "probe", "version": "1"}
        send("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": client})
        w.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        send("tools/list", {})
        w.flush()
        r.readline()
        r.readline()
        call = {"name": "echo", "arguments": {"text": "hello"}}
        lat = []
        for _ in range(2000):
            t = time.perf_counter()
            send("tools/call", call)
            w.flush()
            r.readline()
            lat.append(time.perf_counter() - t)
        lat.sort()
        p50, p99 = statistics.median(lat), lat[int(len(lat) * 0.99)]
        print(f"sequential echo: p50 {p50 * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us")
        for depth in (1, 16, 256):
            done = 0
            t = time.perf_counter()
            while done < a.calls:
                n = min(depth, a.calls - done)
                for _ in range(n):
                    send("tools/call", call)
                w.flush()
                for _ in range(n):
                    r.readline()
                done += n
            el = time.perf_counter() - t
            print(f"echo, {depth:>3} in flight ({a.mode}, {a.instances} workers): {a.calls / el:,.0f} calls/s")
        w.close()
        proc.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
