"""The smallest flw worker: two tools, one sync and one async with progress."""

import asyncio

from flw import Context, tool


@tool
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@tool
async def slow(seconds: float, steps: int = 10, ctx: Context = None) -> str:
    """Sleep in steps, reporting progress."""
    for i in range(steps):
        await ctx.progress(i + 1, steps, f"step {i + 1}")
        await asyncio.sleep(seconds / steps)
    return "done"
