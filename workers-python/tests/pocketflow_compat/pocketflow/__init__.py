"""``pocketflow`` as flw's SDK: PocketFlow's classes, re-exported from ``flw``.

``scripts/pocketflow_suite.sh`` puts this folder on ``PYTHONPATH`` and runs
PocketFlow's own test suite (from the ``pocketflow`` sdist on PyPI) against it.
"""

from flw import (
    AsyncBatchFlow,
    AsyncBatchNode,
    AsyncFlow,
    AsyncNode,
    AsyncParallelBatchFlow,
    AsyncParallelBatchNode,
    BaseNode,
    BatchFlow,
    BatchNode,
    Flow,
    Node,
)

__all__ = [
    "AsyncBatchFlow",
    "AsyncBatchNode",
    "AsyncFlow",
    "AsyncNode",
    "AsyncParallelBatchFlow",
    "AsyncParallelBatchNode",
    "BaseNode",
    "BatchFlow",
    "BatchNode",
    "Flow",
    "Node",
]
