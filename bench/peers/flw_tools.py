"""The benchmark tools, served by flw (`flw mcp --config ...` runs this script).

The tool bodies below are byte-identical to those in mcp_sdk_server.py, so the
comparison measures the servers, not the tools. Only the decorator differs.
"""

import asyncio

from flw import tool


@tool
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@tool
def cpu(n: int) -> int:
    """Spin a pure-Python loop n times (holds the GIL)."""
    x = 0
    for i in range(n):
        x = (x * 31 + i) % 1000003
    return x


@tool
async def sleep(ms: int) -> str:
    """Wait ms milliseconds without blocking the event loop."""
    await asyncio.sleep(ms / 1000)
    return "ok"


@tool
async def hold(port: int) -> str:
    """Start `sleep 300`, open a request to 127.0.0.1:port and wait for the answer forever."""
    child = await asyncio.create_subprocess_exec("sleep", "300")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /hold?pid={child.pid} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    await writer.drain()
    body = await reader.read()
    return body.decode()
