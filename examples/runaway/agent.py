"""A runaway tool: a model that will not stop writing, and a helper process
that streams a second answer beside it.

Cancel the call (Ctrl-C on `flw call`, or a cancel from an MCP host) and
both stop: flw kills the worker's process group, which holds the tool's
connection and the helper process with its own. The loopback server's log
shows each connection closed (README.md beside this file).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from flw import Context, llm, tool

HELPER = Path(__file__).resolve().parent / "helper.py"


@tool
async def runaway(topic: str, ctx: Context = None) -> str:
    """Write a very long essay on the topic while a helper process streams another one.

    Args:
        topic: what the essays are about.
    """
    # The helper is never stopped here, on purpose: a cancel must stop it anyway.
    helper = await asyncio.create_subprocess_exec(sys.executable, str(HELPER), topic)
    await ctx.log(f"helper process {helper.pid} started")
    reply = await llm.achat(f"Write a very long essay about {topic}.")
    await helper.wait()
    return reply.content
