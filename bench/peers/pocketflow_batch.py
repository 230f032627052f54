"""PocketFlow's side of the graph workload (j): the same work in one process.

Run by the benchmark driver with bench/.venv-pocketflow's Python; prints one
JSON object on stdout:

    pocketflow_batch.py calibrate MS        n for `spin` so one call takes about MS ms of CPU
    pocketflow_batch.py batch N SPIN        N items of spin(SPIN) in an AsyncParallelBatchNode
    pocketflow_batch.py loop TICKS REPEAT   the tick loop of graph_flows.py, REPEAT times

Times are taken inside the process around the run (`asyncio.run(flow.run_async(...))`,
`flow.run(...)`), so they exclude the interpreter's start-up and the import.
`spin` is byte-identical to the one in graph_flows.py (flw's side).
"""

import asyncio
import json
import statistics
import sys
import time


def spin(n: int) -> int:
    """Spin a pure-Python loop n times (holds the GIL)."""
    x = 0
    for i in range(n):
        x = (x * 31 + i) % 1000003
    return x


def ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


def calibrate(target_ms: float) -> dict:
    """Picks n (a multiple of 1,000) so that spin(n) takes about target_ms of CPU here.

    CPU time (not wall time) keeps the pick steady on a busy machine; "wall_ms"
    is what one call took from start to end (the median of 7).
    """

    def one(n: int) -> tuple:
        w0, c0 = time.perf_counter(), time.process_time()
        spin(n)
        return (time.process_time() - c0) * 1e3, ms_since(w0)

    for _ in range(3):
        one(100_000)
    n = 100_000
    for _ in range(2):  # a first pick, then a correction at the picked size
        cpu = statistics.median(one(n)[0] for _ in range(5))
        n = max(1, round(n * target_ms / cpu / 1000)) * 1000
    runs = [one(n) for _ in range(7)]
    return {
        "spin": n,
        "ms": statistics.median(r[0] for r in runs),
        "wall_ms": statistics.median(r[1] for r in runs),
    }


def batch(n: int, work: int) -> dict:
    from pocketflow import AsyncFlow, AsyncParallelBatchNode

    class Crunch(AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return [shared["spin"]] * shared["n"]

        async def exec_async(self, item):
            return spin(item)

        async def post_async(self, shared, prep_res, exec_res_list):
            shared["sum"] = sum(exec_res_list)
            shared["items"] = len(exec_res_list)

    flow = AsyncFlow(start=Crunch())
    shared = {"n": n, "spin": work}
    t0 = time.perf_counter()
    asyncio.run(flow.run_async(shared))
    return {"ms": ms_since(t0), "sum": shared["sum"], "items": shared["items"]}


def loop(ticks: int, repeat: int) -> dict:
    from pocketflow import Flow, Node

    visits = 0

    class Tick(Node):
        def post(self, shared, prep_res, exec_res):
            nonlocal visits
            visits += 1
            shared["count"] = shared.get("count", 0) + 1
            return "again" if shared["count"] < shared["ticks"] else "done"

    class Stop(Node):
        def post(self, shared, prep_res, exec_res):
            nonlocal visits
            visits += 1

    tick, stop = Tick(), Stop()
    tick - "again" >> tick
    tick - "done" >> stop
    flow = Flow(start=tick)
    times, count = [], 0
    for _ in range(repeat + 1):  # the first run is a warm-up
        shared = {"ticks": ticks}
        visits = 0
        t0 = time.perf_counter()
        flow.run(shared)
        times.append(ms_since(t0))
        count = shared["count"]
    return {"ms": times[1:], "steps": visits, "count": count}


def main(argv: list) -> None:
    what, args = argv[0], [int(a) for a in argv[1:]]
    if what == "calibrate":
        out = calibrate(float(args[0]))
    elif what == "batch":
        out = batch(*args)
    elif what == "loop":
        out = loop(*args)
    else:
        raise SystemExit(f"unknown command {what!r}: use calibrate, batch or loop")
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
