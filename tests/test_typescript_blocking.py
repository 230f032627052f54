"""A TypeScript tool that blocks the Node event loop for longer than the
supervisor's heartbeat timeout still completes: the SDK answers heartbeats
from a thread of its own, as the Python SDK does.

The pool sends a heartbeat every 200 ms and kills a worker that leaves one
unanswered for 2 s (heartbeat_interval and heartbeat_timeout in flw.toml),
so a worker that answered heartbeats on its event loop would be killed
about 2 s into a 5 s block. The tool blocks with `Atomics.wait`, which holds
the event loop as a CPU-bound loop does without taking a core from the
other tests."""

from __future__ import annotations

import os
import time

import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from conftest import FLW

BLOCK_SECONDS = 5

BLOCKING_TOOL = """\
import { tool } from "flw-worker";

export const block = tool({
  description: "Hold the event loop for some seconds, then answer.",
  input: { type: "object", properties: { seconds: { type: "number" } }, required: ["seconds"] },
  run: ({ seconds }, ctx) => {
    ctx.progress(0, 1, "blocking");
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, seconds * 1000);
    return "still here";
  },
});
"""


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_a_tool_that_blocks_the_event_loop_past_the_heartbeat_timeout_completes(tmp_path):
    script = tmp_path / "blocking.mjs"
    script.write_text(BLOCKING_TOOL)
    config = tmp_path / "flw.toml"
    config.write_text(
        '[pools.blocking]\nscript = "blocking.mjs"\ninstances = 1\n'
        'heartbeat_interval = "200ms"\nheartbeat_timeout = "2s"\n'
    )
    params = StdioServerParameters(
        command=FLW, args=["mcp", "--no-watch", "--config", str(config)], env=dict(os.environ)
    )
    with open(os.devnull, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            started = time.monotonic()
            r = await s.call_tool("block", {"seconds": BLOCK_SECONDS})
            took = time.monotonic() - started
            assert not r.is_error, r.content[0].text
            assert r.content[0].text == "still here"
            assert took >= BLOCK_SECONDS
            # The same worker serves on: it was not replaced.
            r = await s.call_tool("block", {"seconds": 0})
            assert r.content[0].text == "still here"
