"""HTTP edges of `flw serve`: the body deadline is a total one, the Host
check (DNS rebinding) refuses what is not plainly an allowed host (user
info, a second Host header, an absolute-form URI naming another host),
and the bearer scheme is matched without regard to case."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from conftest import FIXTURES
from serving import env_without_token, serve, stateless_call

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


def raw_request(port: int, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Sends `head` (request line and headers, CRLF-separated, without the
    blank line) and `body` as they are; the status and body of the reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        length = f"Content-Length: {len(body)}\r\n" if body else ""
        s.sendall(f"{head}\r\n{length}Connection: close\r\n\r\n".encode() + body)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    return int(status_line.split(b" ")[1]), rest.partition(b"\r\n\r\n")[2]


MCP_INIT = (
    b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",'
    b'"capabilities":{},"clientInfo":{"name":"t","version":"1"}}}'
)
MCP_HEAD = "Content-Type: application/json\r\nAccept: application/json, text/event-stream"


def test_a_host_with_user_info_is_refused() -> None:
    with serve(FLOOD) as server:
        port = server.port
        assert raw_request(port, f"GET /v1/tools HTTP/1.1\r\nHost: 127.0.0.1:{port}")[0] == 200
        for host in (f"127.0.0.1:{port}@evil.com", "127.0.0.1:80@evil.com", "localhost@evil.com"):
            status, body = raw_request(port, f"GET /v1/tools HTTP/1.1\r\nHost: {host}")
            assert status == 400, (host, status, body)
            assert b"no user info" in body, body
            status, body = raw_request(port, f"POST /mcp HTTP/1.1\r\nHost: {host}\r\n{MCP_HEAD}", MCP_INIT)
            assert status == 400, (host, status, body)


def test_a_second_host_header_is_refused() -> None:
    with serve(FLOOD) as server:
        port = server.port
        for second in ("evil.com", f"127.0.0.1:{port}"):
            head = f"GET /v1/tools HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: {second}"
            status, body = raw_request(port, head)
            assert status == 400 and b"2 Host headers" in body, (second, status, body)
        head = f"POST /mcp HTTP/1.1\r\nHost: localhost:{port}\r\nHost: evil.com\r\n{MCP_HEAD}"
        assert raw_request(port, head, MCP_INIT)[0] == 400


def test_the_host_of_an_absolute_form_uri_is_checked() -> None:
    with serve(FLOOD) as server:
        port = server.port
        # The URI names the host (RFC 9112): it must be allowed, and agree with the Host header.
        status, body = raw_request(port, f"GET http://evil.com/v1/tools HTTP/1.1\r\nHost: 127.0.0.1:{port}")
        assert status == 400 and b"names host" in body, (status, body)
        status, body = raw_request(port, "GET http://evil.com/v1/tools HTTP/1.0")
        assert status == 403 and b"forbidden_host" in body, (status, body)
        head = f"GET http://127.0.0.1:{port}/v1/tools HTTP/1.1\r\nHost: 127.0.0.1:{port}"
        assert raw_request(port, head)[0] == 200


def test_the_bearer_scheme_is_matched_in_any_case() -> None:
    token = "t0ken-for-the-security-tests-0123456789"
    with serve(FLOOD, env=env_without_token(FLW_TOKEN=token)) as server:
        server.wait_ready()
        for scheme in ("Bearer", "bearer", "BEARER"):
            auth = {"Authorization": f"{scheme} {token}"}
            assert server.get("/v1/tools", headers=auth).status == 200, scheme
            assert server.post("/v1/tools/echo/call", {"text": "hi"}, headers=auth).json()["result"] == "hi"
        assert server.get("/v1/tools", headers={"Authorization": f"bearer {token.upper()}"}).status == 401
        assert server.get("/v1/tools", headers={"Authorization": f"Basic {token}"}).status == 401
