"""flw worker SDK: turn typed Python functions into tools an flw supervisor runs.

Decorate functions with ``@tool``; take a ``Context`` parameter to report
progress, logs and streamed chunks; the supervisor starts the script with
``python -m flw SCRIPT``. ``run()`` serves the tools of a script started by
hand. Graphs: ``@node`` functions and PocketFlow-style class nodes
(``Node``, ``BatchNode``, ``AsyncNode``, ...) linked with ``>>`` into a
``Flow`` (or a ``BatchFlow``, run once per parameter set), which the
supervisor runs (or ``flow.run(shared)`` in-process).
``flw.llm`` calls OpenAI-compatible model endpoints (loaded on first use).
"""

from typing import TYPE_CHECKING, Any

from ._context import Context, Sent, current_context
from ._tool import InvalidArguments, Tool, ToolDefinitionError, registered_tools, tool
from ._version import __version__
from .graph._base import (
    AsyncFlow,
    BaseNode,
    Flow,
    NodeDefinitionError,
    NodeError,
    NodeResultError,
    Parallel,
)
from .graph._batch_flow import AsyncBatchFlow, AsyncParallelBatchFlow, BatchFlow
from .graph._class_node import AsyncBatchNode, AsyncNode, AsyncParallelBatchNode, BatchNode, Node
from .graph._node import FunctionNode, node, registered_nodes
from .worker._entry import run

if TYPE_CHECKING:
    from . import llm

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
    "Context",
    "Flow",
    "FunctionNode",
    "InvalidArguments",
    "Node",
    "NodeDefinitionError",
    "NodeError",
    "NodeResultError",
    "Parallel",
    "Sent",
    "Tool",
    "ToolDefinitionError",
    "__version__",
    "current_context",
    "llm",
    "node",
    "registered_nodes",
    "registered_tools",
    "run",
    "tool",
]


def __getattr__(name: str) -> Any:
    """Load ``flw.llm`` on first use: ``import flw`` stays cheap for workers."""
    if name == "llm":
        import importlib

        return importlib.import_module(".llm", __name__)
    raise AttributeError(f"module 'flw' has no attribute {name!r}")
