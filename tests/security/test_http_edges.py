"""HTTP edges of `flw serve`: the body deadline is a total one, the Host
check (DNS rebinding) refuses what is not plainly an allowed host, and
the bearer scheme is matched without regard to case."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from conftest import FIXTURES
from serving import serve, stateless_call

FLOOD = FIXTURES / "flood_tools.py"


def drip(sock: socket.socket, stop: threading.Event) -> None:
    """Sends one byte every 0.3 s until stop: never idle for long."""
    while not stop.wait(0.3):
        try:
            sock.send(b" ")
        except OSError:
            return


def test_a_body_that_trickles_in_is_cut_off_at_the_deadline_however_steady(tmp_path: Path) -> None:
    config = tmp_path / "flw.toml"
    config.write_text(f'[pools.tools]\nscript = "{FLOOD}"\n\n[serve]\nclient_timeout = "2s"\n')
    with serve("--config", config) as server:
        server.wait_ready()
        for path in ("/v1/tools/echo/call", "/mcp"):
            headers = "Content-Type: application/json\r\n"
            if path == "/mcp":
                headers += "".join(f"{k}: {v}\r\n" for k, v in stateless_call(1, "echo", {"text": "x"})[1].items())
            with socket.create_connection(("127.0.0.1", server.port), timeout=20) as s:
                s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Content-Length: 100\r\n\r\n".encode())
                stop = threading.Event()
                dripper = threading.Thread(target=drip, args=(s, stop), daemon=True)
                dripper.start()
                started = time.monotonic()
                try:
                    reply = s.recv(4096)
                finally:
                    stop.set()
                    dripper.join()
                took = time.monotonic() - started
                assert reply.startswith(b"HTTP/1.1 408"), (path, reply[:200])
                assert b"client_timeout" in reply, reply
                assert took < 10, f"{path}: cut off after {took:.1f}s, not at the 2 s deadline"
        # The server still serves.
        assert server.post("/v1/tools/echo/call", {"text": "on"}).json()["result"] == "on"
