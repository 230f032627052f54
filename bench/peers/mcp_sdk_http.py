"""The MCP SDK's Streamable HTTP server: the peer of the http workload (k).

The tools are those of mcp_sdk_server.py (MCPServer, which mcp 2.x calls
what mcp 1.x called FastMCP), served over Streamable HTTP the way
`MCPServer.run("streamable-http")` serves them: `streamable_http_app()` under
one uvicorn server, in one process, on one event loop. The settings are the
fastest the SDK offers: `json_response=True` (a reply is one JSON body, no
SSE stream) and `stateless_http=True` (no session; requests of protocol
2026-07-28 are served statelessly whatever this flag says).

The only difference from `run()` is the socket: this script binds
127.0.0.1 on the port given as argv[1] (default 0: any free port), hands the
socket to uvicorn, and once uvicorn has started prints
`listening on http://127.0.0.1:PORT` on stderr for the driver.
"""

import socket
import sys

import anyio
import uvicorn
from mcp_sdk_server import mcp

HOST = "127.0.0.1"


async def main(port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    app = mcp.streamable_http_app(json_response=True, stateless_http=True, host=HOST)
    # As MCPServer.run_streamable_http_async configures it.
    config = uvicorn.Config(app, host=HOST, port=port, log_level=mcp.settings.log_level.lower())
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        while not server.started:
            if server.should_exit:
                return
            await anyio.sleep(0.01)
        print(f"listening on http://{HOST}:{sock.getsockname()[1]}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 0)
