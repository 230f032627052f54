"""Helpers for the `flw serve` end-to-end tests: the real binary listening
on a loopback port, plain HTTP/1.1 requests (stdlib http.client), server-sent
event streams, and many concurrent requests on raw asyncio sockets."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from conftest import FIXTURES, FLW, alive, wait_until, workers

SERVE_TOOLS = FIXTURES / "serve_tools.py"
MODERN = "2026-07-28"  # the MCP version without sessions


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Sse:
    """One server-sent event."""

    event: str
    data: str
    id: str | None = None

    def json(self):
        return json.loads(self.data)


def read_sse(
    resp: http.client.HTTPResponse, stop_after: str | None = "result", into: list[Sse] | None = None
) -> list[Sse]:
    """Reads events (into `into`, if given) until the stream ends, or until
    an event named stop_after."""
    events: list[Sse] = [] if into is None else into
    fields: dict[str, list[str]] = {}
    while True:
        raw = resp.readline()
        if not raw:
            return events
        line = raw.decode().rstrip("\r\n")
        if line == "":
            if "data" in fields or "event" in fields:
                ev = Sse(
                    event=fields.get("event", ["message"])[-1],
                    data="\n".join(fields.get("data", [])),
                    id=fields.get("id", [None])[-1],
                )
                events.append(ev)
                if stop_after is not None and ev.event == stop_after:
                    return events
            fields = {}
            continue
        if line.startswith(":"):
            continue  # a keep-alive comment
        name, _, value = line.partition(":")
        fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)


@dataclass
class Server:
    """`flw serve ARGS` on 127.0.0.1 and a free port (unless ARGS say --listen)."""

    args: tuple[str, ...]
    env: dict[str, str] | None = None
    proc: subprocess.Popen = field(init=False)
    port: int = field(init=False, default=0)
    stderr_lines: list[str] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        args = list(self.args)
        if "--listen" not in args:
            args += ["--listen", "127.0.0.1:0"]
        self.proc = subprocess.Popen(
            [FLW, "serve", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=self.env,
            text=True,
        )
        listening = threading.Event()

        def pump() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.stderr_lines.append(line)
                m = re.search(r"flw serve: listening on http://[^ ]*:(\d+) ", line)
                if m and not self.port:
                    self.port = int(m.group(1))
                    listening.set()
            listening.set()

        threading.Thread(target=pump, daemon=True).start()
        if not listening.wait(30) or not self.port:
            self.proc.kill()
            raise AssertionError(f"flw serve did not start listening: {self.stderr}")

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connection(self, timeout: float = 60) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> Reply:
        """One request on its own connection; a dict or list body is sent as JSON."""
        conn = self.connection(timeout)
        try:
            data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
            h = {"Content-Type": "application/json"} if data is not None else {}
            h.update(headers or {})
            conn.request(method, path, body=data, headers=h)
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def get(self, path: str, **kw) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: object = None, **kw) -> Reply:
        return self.request("POST", path, body, **kw)

    def events(
        self, run_id: str, headers: dict[str, str] | None = None, query: str = "", timeout: float = 30
    ) -> list[Sse]:
        """A run's event stream, read until the server ends it; fails if it
        has not ended after `timeout` seconds without a byte."""
        conn = self.connection(timeout)
        seen: list[Sse] = []
        try:
            conn.request("GET", f"/v1/runs/{run_id}/events{query}", headers=headers or {})
            resp = conn.getresponse()
            assert resp.status == 200, resp.read()
            assert resp.getheader("content-type", "").startswith("text/event-stream")
            return read_sse(resp, stop_after=None, into=seen)
        except (TimeoutError, socket.timeout):
            raise AssertionError(
                f"the event stream of {run_id} ({headers or ''}{query}) did not end: {timeout}s without a byte"
                f" after {[(e.id, e.event) for e in seen]}"
            ) from None
        finally:
            conn.close()

    def wait_ready(self, timeout: float = 30) -> None:
        wait_until(lambda: self.get("/readyz").status == 200, timeout, "/readyz to answer 200")

    def workers(self) -> list[int]:
        return workers(self.proc.pid)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signals flw and waits for it to exit; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def serve(*args: str | Path, env: dict[str, str] | None = None) -> Server:
    return Server(tuple(str(a) for a in args), env=env)


def env_without_token(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FLW_TOKEN"}
    env.update(extra)
    return env


def write_serve_config(tmp_path: Path, body: str) -> Path:
    """Writes flw.toml into tmp_path with a copy of the serve fixture as tools.py."""
    (tmp_path / "tools.py").write_text(SERVE_TOOLS.read_text())
    cfg = tmp_path / "flw.toml"
    cfg.write_text(body)
    return cfg


async def post_json_async(port: int, path: str, body: object, timeout: float = 120) -> tuple[int, object]:
    """One POST on its own raw connection (Connection: close); the status and JSON body."""

    async def go() -> tuple[int, object]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        data = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + data)
        await writer.drain()
        raw = await reader.read()
        writer.close()
        head_bytes, _, payload = raw.partition(b"\r\n\r\n")
        status = int(head_bytes.split(b" ", 2)[1])
        return status, json.loads(payload)

    return await asyncio.wait_for(go(), timeout)


def wait_dead(pids: list[int], timeout: float = 10, what: str = "the call's processes to die") -> None:
    wait_until(lambda: not any(alive(p) for p in pids), timeout, what)


def stateless_call(request_id: int, tool: str, args: dict, progress_token: str | None = None) -> tuple[dict, dict]:
    """The body and headers of a 2026-07-28 tools/call: no session, the
    version and client in `_meta` and in headers."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": {"name": "raw-e2e", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    if progress_token:
        meta["progressToken"] = progress_token
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": args, "_meta": meta},
    }
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": "tools/call",
        "Mcp-Name": tool,
    }
    return body, headers


def metric_lines(text: str) -> dict[str, str]:
    """The samples of an OpenMetrics text: `name{labels}` -> value."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = value
    return out
