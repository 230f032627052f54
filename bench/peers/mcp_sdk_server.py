"""The benchmark tools, served by the official MCP Python SDK (mcp 2.x, MCPServer) on stdio.

The tool bodies below are byte-identical to those in flw_tools.py, so the
comparison measures the servers, not the tools. Only the decorator differs.
"""

import asyncio
import socket
import time

from mcp.server.mcpserver import MCPServer

mcp = MCPServer("flw-bench", log_level="WARNING")


@mcp.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@mcp.tool()
def cpu(n: int) -> int:
    """Spin a pure-Python loop n times (holds the GIL)."""
    x = 0
    for i in range(n):
        x = (x * 31 + i) % 1000003
    return x


@mcp.tool()
async def sleep(ms: int) -> str:
    """Wait ms milliseconds without blocking the event loop."""
    await asyncio.sleep(ms / 1000)
    return "ok"


@mcp.tool()
async def hold(port: int) -> str:
    """Start `sleep 300`, open a request to 127.0.0.1:port and wait for the answer forever."""
    child = await asyncio.create_subprocess_exec("sleep", "300")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /hold?pid={child.pid} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    await writer.drain()
    body = await reader.read()
    return body.decode()


@mcp.tool()
async def wait_async(ms: int) -> str:
    """Wait ms milliseconds like a model call awaited on the event loop."""
    await asyncio.sleep(ms / 1000)
    return "ok"


@mcp.tool()
def wait_sync(ms: int) -> str:
    """Wait ms milliseconds like a blocking model call (time.sleep holds the thread)."""
    time.sleep(ms / 1000)
    return "ok"


@mcp.tool()
def block(port: int) -> str:
    """Connect to 127.0.0.1:port, then block (sync) until the other end closes the connection."""
    with socket.create_connection(("127.0.0.1", port)) as conn:
        while conn.recv(4096):
            pass
    return "released"


if __name__ == "__main__":
    mcp.run()
