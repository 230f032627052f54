"""The flows of the graph workload (j), run by `flw run bench/peers/graph_flows.py FLOW`.

- `batch`: one batch node whose `n` items each run `spin(spin)`, a pure-Python
  loop of a few ms; flw spreads the items across the pool's worker processes.
- `loop`: a trivial node that counts to `ticks` by taking its "again" edge back
  to itself, then ends at `stop`: the cost of one transition.

`spin` and the store keys are the same as in pocketflow_batch.py (PocketFlow's
side, in one process), so the comparison measures the runners, not the work.
"""

from flw import BatchNode, Flow, node


def spin(n: int) -> int:
    """Spin a pure-Python loop n times (holds the GIL)."""
    x = 0
    for i in range(n):
        x = (x * 31 + i) % 1000003
    return x


class Crunch(BatchNode):
    """`n` items, each `spin(spin)`; the store gets their sum."""

    def prep(self, shared):
        return [shared["spin"]] * shared["n"]

    def exec(self, item):
        return spin(item)

    def post(self, shared, prep_res, exec_res_list):
        shared["sum"] = sum(exec_res_list)
        shared["items"] = len(exec_res_list)


crunch = Crunch()
batch = Flow(start=crunch)


@node
def tick(shared: dict) -> str:
    """Count one more; go again until the count reaches `ticks`."""
    shared["count"] = shared.get("count", 0) + 1
    return "again" if shared["count"] < shared["ticks"] else "done"


@node
def stop(shared: dict) -> None:
    """The end of the loop (so that "done" has an edge)."""


tick - "again" >> tick
tick - "done" >> stop
loop = Flow(start=tick, max_steps=5000)
