"""flw worker SDK: turn typed Python functions into tools an flw supervisor runs.

Decorate functions with ``@tool``; take a ``Context`` parameter to report
progress, logs and streamed chunks; the supervisor starts the script with
``python -m flw SCRIPT``. ``run()`` serves the tools of a script started by
hand.
"""

from ._context import Context, Sent
from ._entry import run
from ._tool import InvalidArguments, Tool, ToolDefinitionError, registered_tools, tool
from ._version import __version__

__all__ = [
    "Context",
    "InvalidArguments",
    "Sent",
    "Tool",
    "ToolDefinitionError",
    "__version__",
    "registered_tools",
    "run",
    "tool",
]
