"""How a script that raised while it was imported is reported.

The traceback starts at the script's first frame (flw's import machinery
is not the user's concern). When the exception is flw saying a ``@tool``,
``@node`` or flow is defined wrongly (an unsupported parameter type, say),
the message comes first and only the frames outside the SDK follow: the
SDK's own frames would only bury the line of the script to fix.
"""

from __future__ import annotations

import os
import traceback
from types import TracebackType

from .._tool import ToolDefinitionError
from ..graph._base import NodeDefinitionError

_SDK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def load_failure(exc: BaseException, script: str) -> str:
    """The report of ``exc``, raised while importing ``script`` (an absolute path)."""
    tb: TracebackType | None = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != script:
        tb = tb.tb_next
    if isinstance(exc, (ToolDefinitionError, NodeDefinitionError)):
        frames = [f for f in traceback.extract_tb(tb) if not f.filename.startswith(_SDK_DIR)]
        return f"{exc}\n" + "".join(traceback.format_list(frames))
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    return f"the script raised an exception\n{text}"
