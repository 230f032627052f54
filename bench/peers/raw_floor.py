"""The raw floor: the cost no Python worker behind a pipe can avoid.

A plain loop, stdlib only (no MCP library, no asyncio): read newline-delimited
JSON-RPC from stdin in big chunks, decode each complete line, encode a reply,
and write every reply of a batch with one os.write. It answers `initialize`,
`ping`, `tools/list` and `tools/call` for the benchmark tools; it ignores
notifications, including `notifications/cancelled` (cancellation is not
implemented: the benchmark reports what is observed).

- echo and cpu run inline (the cpu body is the same loop as the other peers');
- sleep and wait_async go on a timer heap, and select() wakes up for the
  earliest one, so calls overlap like on an async server;
- wait_sync runs time.sleep on a thread of its own per call (a sync tool needs
  a thread to wait in); the thread queues its reply and wakes select() through
  a pipe;
- hold starts `sleep 300`, connects to 127.0.0.1:port, sends the request and
  waits for the socket to close (then answers with what it read).

Run it as `python3 bench/peers/raw_floor.py`.
"""

import heapq
import json
import os
import select
import socket
import subprocess
import threading
import time
from collections import deque

PROTOCOL_VERSIONS = ("2025-06-18", "2025-11-25", "2026-07-28")


def _schema(name: str, typ: str) -> dict:
    return {"type": "object", "properties": {name: {"type": typ}}, "required": [name]}


TOOLS = [
    {"name": "echo", "description": "Return the text unchanged.", "inputSchema": _schema("text", "string")},
    {"name": "cpu", "description": "Spin a pure-Python loop n times.", "inputSchema": _schema("n", "integer")},
    {"name": "sleep", "description": "Wait ms milliseconds.", "inputSchema": _schema("ms", "integer")},
    {"name": "hold", "description": "Start `sleep 300`, hold a request.", "inputSchema": _schema("port", "integer")},
    {"name": "wait_async", "description": "Wait ms milliseconds (timers).", "inputSchema": _schema("ms", "integer")},
    {"name": "wait_sync", "description": "Wait ms milliseconds (a thread).", "inputSchema": _schema("ms", "integer")},
]


def cpu(n: int) -> int:
    x = 0
    for i in range(n):
        x = (x * 31 + i) % 1000003
    return x


def _text(rid, text: str) -> bytes:
    result = {"content": [{"type": "text", "text": text}], "isError": False}
    return json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}).encode() + b"\n"


def _result(rid, result: dict) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}).encode() + b"\n"


def _error(rid, code: int, message: str) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}).encode() + b"\n"


def _tool_error(rid, message: str) -> bytes:
    result = {"content": [{"type": "text", "text": message}], "isError": True}
    return json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}).encode() + b"\n"


def _wait_sync(rid, ms: int, done: deque, wake: int) -> None:
    """The body of a wait_sync call, on its own thread."""
    time.sleep(ms / 1000)
    done.append(_text(rid, "ok"))
    os.write(wake, b"x")


def _write_all(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(1, view) :]


def main() -> None:
    timers: list = []  # (deadline, seq, id)
    seq = 0
    held: dict = {}  # socket -> (id, child, received bytes)
    out: list = []
    buf = b""
    stdin = 0
    done: deque = deque()  # replies of wait_sync threads
    wake_r, wake_w = os.pipe()
    while True:
        timeout = None
        if timers:
            timeout = max(0.0, timers[0][0] - time.monotonic())
        readable, _, _ = select.select([stdin, wake_r, *held], [], [], timeout)
        for fd in readable:
            if fd == wake_r:
                os.read(wake_r, 1 << 16)
                while done:
                    out.append(done.popleft())
            elif fd == stdin:
                chunk = os.read(stdin, 1 << 20)
                if not chunk:
                    return
                lines = (buf + chunk).split(b"\n")
                buf = lines.pop()
                for line in lines:
                    if not line.strip():
                        continue
                    try:
                        msg = json.loads(line)
                    except ValueError:
                        out.append(_error(None, -32700, "parse error"))
                        continue
                    rid = msg.get("id")
                    if rid is None:
                        continue  # a notification
                    method = msg.get("method")
                    params = msg.get("params") or {}
                    if method == "tools/call":
                        name = params.get("name")
                        args = params.get("arguments") or {}
                        try:
                            if name == "echo":
                                out.append(_text(rid, args["text"]))
                            elif name == "cpu":
                                out.append(_text(rid, str(cpu(args["n"]))))
                            elif name in ("sleep", "wait_async"):
                                seq += 1
                                heapq.heappush(timers, (time.monotonic() + args["ms"] / 1000, seq, rid))
                            elif name == "wait_sync":
                                call = (rid, args["ms"], done, wake_w)
                                threading.Thread(target=_wait_sync, args=call, daemon=True).start()
                            elif name == "hold":
                                child = subprocess.Popen(["sleep", "300"])
                                sock = socket.create_connection(("127.0.0.1", args["port"]))
                                sock.sendall(f"GET /hold?pid={child.pid} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
                                held[sock] = (rid, child, [])
                            else:
                                out.append(_error(rid, -32602, f"unknown tool {name!r}"))
                        except (KeyError, TypeError, OSError) as e:
                            out.append(_tool_error(rid, f"{type(e).__name__}: {e}"))
                    elif method == "initialize":
                        asked = params.get("protocolVersion")
                        version = asked if asked in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[-1]
                        info = {"name": "raw-floor", "version": "1"}
                        init = {"protocolVersion": version, "capabilities": {"tools": {}}, "serverInfo": info}
                        out.append(_result(rid, init))
                    elif method == "tools/list":
                        out.append(_result(rid, {"tools": TOOLS}))
                    elif method == "ping":
                        out.append(_result(rid, {}))
                    else:
                        out.append(_error(rid, -32601, f"method not found: {method}"))
            else:
                data = fd.recv(65536)
                rid, child, got = held[fd]
                if data:
                    got.append(data)
                else:
                    del held[fd]
                    fd.close()
                    out.append(_text(rid, b"".join(got).decode(errors="replace")))
        if timers:
            now = time.monotonic()
            while timers and timers[0][0] <= now:
                out.append(_text(heapq.heappop(timers)[2], "ok"))
        if out:
            _write_all(b"".join(out))
            out.clear()


if __name__ == "__main__":
    main()
