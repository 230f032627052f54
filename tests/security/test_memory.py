"""Memory a client can make flw hold: events a client stops reading (MCP on
stdio and over HTTP, a tool's and a flow's), a body sent a byte at a time,
and errors about large requests. In each case flw's peak RSS (VmHWM)
stays under LIMIT_KB, and flw still answers meanwhile."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import threading
import time

from conftest import FIXTURES, FLW, MCP_INITIALIZE
from serving import Server, serve, stateless_call

FLOOD = FIXTURES / "flood_tools.py"
LIMIT_KB = 150 * 1024
# Beyond this the watch kills flw, so that a failing run cannot take the machine's memory.
KILL_KB = 3 * LIMIT_KB


def vm_hwm_kb(pid: int) -> int:
    """The peak resident set size of pid, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


class RssWatch:
    """Samples flw's peak RSS every 100 ms and kills flw past KILL_KB."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.peak_kb = vm_hwm_kb(proc.pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1) and self.proc.poll() is None:
            try:
                self.peak_kb = vm_hwm_kb(self.proc.pid)
            except (OSError, AssertionError):
                return
            if self.peak_kb > KILL_KB:
                self.proc.kill()
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        if self.proc.poll() is None:
            self.peak_kb = vm_hwm_kb(self.proc.pid)
        return self.peak_kb

    def check(self, what: str) -> None:
        peak = self.stop()
        print(f"{what}: flw's peak RSS {peak // 1024} MiB")
        assert peak < LIMIT_KB, f"{what}: flw's peak RSS was {peak // 1024} MiB (limit {LIMIT_KB // 1024} MiB)"


class StdioClient:
    """`flw mcp` on pipes; the test decides when (and whether) stdout is read."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [FLW, "mcp", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self.send(MCP_INITIALIZE)
        assert json.loads(self.readline(30))["id"] == 0
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def send(self, message: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()

    def call(self, request_id: int, tool: str, args: dict) -> None:
        params = {"name": tool, "arguments": args, "_meta": {"progressToken": f"p{request_id}"}}
        self.send({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params})

    def readline(self, timeout: float) -> bytes:
        assert self.proc.stdout is not None
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        assert got and got[0], f"flw mcp wrote no line within {timeout}s"
        return got[0]

    def until_reply(self, request_id: int, timeout: float = 30) -> tuple[dict, list[dict]]:
        """Reads until the reply to request_id; returns it and the messages before it."""
        deadline = time.monotonic() + timeout
        before: list[dict] = []
        while True:
            message = json.loads(self.readline(max(0.1, deadline - time.monotonic())))
            if message.get("id") == request_id:
                return message, before
            before.append(message)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def dropped_warnings(messages: list[dict]) -> list[str]:
    return [
        m["params"]["data"]
        for m in messages
        if m.get("method") == "notifications/message" and "dropped" in str(m["params"].get("data"))
    ]


def test_a_stdio_client_that_stops_reading_a_tool_s_events_costs_no_memory() -> None:
    client = StdioClient(str(FLOOD))
    try:
        watch = RssWatch(client.proc)
        # Chunks of 30 kB, as fast as Python sends them (each also moves the
        # progress on); the client reads nothing while they come.
        client.call(1, "flood", {"seconds": 9, "kind": "chunk", "size": 30_000})
        time.sleep(10)
        watch.check("a stdio client that stopped reading")
        # It reads again: the call's result comes after its last events, a
        # warning says how many were dropped, and the next call works.
        reply, before = client.until_reply(1)
        assert reply["result"]["isError"] is False, reply
        assert int(reply["result"]["content"][0]["text"]) > 0
        assert any(m.get("method") == "notifications/progress" for m in before)
        assert dropped_warnings(before), [m.get("method") for m in before][-20:]
        client.call(2, "echo", {"text": "still here"})
        reply, _ = client.until_reply(2)
        assert reply["result"]["content"][0]["text"] == "still here"
    finally:
        client.close()


def test_a_stdio_client_that_sends_requests_and_never_reads_costs_bounded_memory() -> None:
    """Requests sent back to back with no answer read: flw stops reading
    once MAX_IN_FLIGHT (4096) are unanswered, instead of holding a task and
    an answer for each; every request is answered once the client reads."""
    client = StdioClient(str(FLOOD))
    count = 100_000
    try:
        watch = RssWatch(client.proc)
        lines = b"".join(
            (json.dumps({"jsonrpc": "2.0", "id": i, "method": "ping"}) + "\n").encode() for i in range(1, count + 1)
        )

        def write_all() -> None:
            assert client.proc.stdin is not None
            try:
                client.proc.stdin.write(lines)
                client.proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass

        writer = threading.Thread(target=write_all, daemon=True)
        writer.start()
        time.sleep(8)  # flw reads until the limit, then waits for the client
        watch.check("a stdio client that sends requests and reads nothing")
        seen: set[int] = set()
        errors: list[dict] = []

        def read_all() -> None:
            assert client.proc.stdout is not None
            while len(seen) < count and (line := client.proc.stdout.readline()):
                message = json.loads(line)
                if "id" in message:
                    seen.add(message["id"])
                    if "result" not in message:
                        errors.append(message)

        reader = threading.Thread(target=read_all, daemon=True)
        reader.start()
        reader.join(120)
        writer.join(30)
        assert errors == []
        assert seen == set(range(1, count + 1))
    finally:
        client.close()


def test_a_stdio_client_that_stops_reading_a_flow_s_progress_costs_no_memory() -> None:
    client = StdioClient(str(FLOOD))
    try:
        watch = RssWatch(client.proc)
        client.call(1, "flooding", {"seconds": 9, "size": 30_000})
        time.sleep(10)
        watch.check("a stdio client that stopped reading a flow's progress")
        reply, before = client.until_reply(1)
        assert reply["result"]["structuredContent"]["sent"] > 0, reply
        progress = [m["params"]["progress"] for m in before if m.get("method") == "notifications/progress"]
        assert progress and progress == sorted(progress)
    finally:
        client.close()


def still_serves(server: Server, until: float) -> int:
    """Checks /healthz and a call, again and again until `until`; how many rounds."""
    rounds = 0
    while time.monotonic() < until:
        assert server.get("/healthz", timeout=10).status == 200
        reply = server.post("/v1/tools/echo/call", {"text": "on"}, timeout=20)
        assert reply.status == 200 and reply.json()["result"] == "on", reply
        rounds += 1
        time.sleep(0.2)
    return rounds


def test_an_http_mcp_client_that_stops_reading_costs_no_memory() -> None:
    with serve(FLOOD) as server:
        server.wait_ready()
        watch = RssWatch(server.proc)
        body, headers = stateless_call(1, "flood", {"seconds": 9, "kind": "progress", "size": 30_000}, "p1")
        data = json.dumps(body).encode()
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head = f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n{head}Content-Length: {len(data)}\r\n\r\n"
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", server.port))
        try:
            slow.sendall(head.encode() + data)
            slow.settimeout(20)
            assert slow.recv(64).startswith(b"HTTP/1.1 200"), "the call's event stream did not start"
            # The client reads nothing more; the server serves others meanwhile.
            assert still_serves(server, time.monotonic() + 10) > 0
            watch.check("an HTTP MCP client that stopped reading")
        finally:
            slow.close()


def trickle(port: int, path: str, body: bytes, headers: dict[str, str], out: list) -> None:
    """Sends a request whose body goes one byte per TCP segment; appends the reply's head."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        s.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode()
        )
        for i in range(len(body)):
            s.send(body[i : i + 1])
            time.sleep(0.0001)
        out.append(s.recv(4096))


def test_a_body_sent_a_byte_at_a_time_costs_about_its_size() -> None:
    with serve(FLOOD) as server:
        server.wait_ready()
        watch = RssWatch(server.proc)
        text = "a" * 24_000
        v1 = json.dumps({"text": text}).encode()
        mcp_body, mcp_headers = stateless_call(1, "echo", {"text": text})
        mcp = json.dumps(mcp_body).encode()
        replies: list[bytes] = []
        senders = [
            threading.Thread(
                target=trickle,
                args=(server.port, "/v1/tools/echo/call", v1, {"Content-Type": "application/json"}, replies),
            ),
            threading.Thread(
                target=trickle,
                args=(server.port, "/v1/tools/echo/call", v1, {"Content-Type": "application/json"}, replies),
            ),
            threading.Thread(target=trickle, args=(server.port, "/mcp", mcp, mcp_headers, replies)),
            threading.Thread(target=trickle, args=(server.port, "/mcp", mcp, mcp_headers, replies)),
        ]
        for t in senders:
            t.start()
        while any(t.is_alive() for t in senders):
            still_serves(server, time.monotonic() + 1)
        for t in senders:
            t.join()
        watch.check("four bodies of 24 kB sent a byte at a time")
        assert len(replies) == 4 and all(r.startswith(b"HTTP/1.1 200") for r in replies), [r[:40] for r in replies]


def post_all(server: Server, requests: list[tuple[str, bytes, dict[str, str]]]) -> list[tuple[str, int, bytes]]:
    """Sends the requests at once, each on its own connection, checking meanwhile
    that flw still answers; returns (path, status, body) of each reply."""
    results: list[tuple[str, int, bytes]] = []

    def post(path: str, body: bytes, headers: dict[str, str]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        try:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            results.append((path, resp.status, resp.read()))
        finally:
            conn.close()

    posts = [threading.Thread(target=post, args=r) for r in requests]
    for t in posts:
        t.start()
    while any(t.is_alive() for t in posts):
        still_serves(server, time.monotonic() + 0.5)
    for t in posts:
        t.join()
    assert len(results) == len(requests), "a request got no reply"
    return results


def four_of_each(arguments: bytes) -> list[tuple[str, bytes, dict[str, str]]]:
    """Calls of `echo` with these arguments (JSON), four on /v1 and four on /mcp."""
    mcp_body, mcp_headers = stateless_call(1, "echo", {"PLACEHOLDER": 0})
    mcp = json.dumps(mcp_body).encode().replace(b'{"PLACEHOLDER": 0}', arguments)
    v1 = ("/v1/tools/echo/call", arguments, {"Content-Type": "application/json"})
    return [v1] * 4 + [("/mcp", mcp, mcp_headers)] * 4


def test_an_error_about_a_large_request_quotes_only_an_excerpt() -> None:
    with serve(FLOOD) as server:
        server.wait_ready()
        watch = RssWatch(server.proc)
        # 3.9 MB of arguments the schema refuses: `text` must be a string.
        results = post_all(server, four_of_each(b'{"text": ["' + b"x" * 3_900_000 + b'"]}'))
        watch.check("eight refused requests of 3.9 MB")
        for path, status, reply in results:
            assert len(reply) < 2_000, (path, status, len(reply), reply[:300])
            if path == "/mcp":
                assert status == 200, reply
                result = json.loads(reply.split(b"data: ")[-1])["result"]
                assert result["isError"] is True
                message = result["content"][0]["text"]
            else:
                assert status == 400, reply
                message = json.loads(reply)["error"]["message"]
            assert 'invalid arguments for tool echo: /text: ["xxxx' in message, message
            assert message.endswith('\u2026 is not of type "string"'), message


def test_a_body_of_millions_of_tiny_json_values_is_refused_before_it_is_parsed() -> None:
    with serve(FLOOD) as server:
        server.wait_ready()
        watch = RssWatch(server.proc)
        # 4 MB of `[],`: 1.3 million values, ~70 MB each once parsed.
        results = post_all(server, four_of_each(b'{"text": [' + b"[]," * 1_330_000 + b"[]]}"))
        watch.check("eight requests of 4 MB of empty arrays")
        for path, status, reply in results:
            assert status == 413, (path, status, reply[:300])
            assert json.loads(reply)["error"]["kind"] == "body_too_large"
            assert b"JSON values" in reply
        # A body of as many values as the cap allows is served.
        ok = server.post("/v1/tools/echo/call", {"text": "x", "pad": [[]] * 60_000})
        assert ok.status == 400 and "Additional properties" in ok.json()["error"]["message"], ok


def test_mcp_refusals_quote_only_an_excerpt() -> None:
    with serve(FLOOD) as server:
        server.wait_ready()
        long_name = "n" * 1_000_000
        # rmcp's own refusal: the Mcp-Name header does not match the body.
        body, headers = stateless_call(1, long_name, {})
        headers["Mcp-Name"] = "x"
        reply = server.post("/mcp", json.dumps(body).encode(), headers=headers)
        assert reply.status == 400 and len(reply.body) < 2_000, (reply.status, len(reply.body), reply.body[:300])
        assert "does not match" in json.loads(reply.body)["error"]["message"]
        # flw's: no tool of that name.
        name = "n" * 50_000
        body, headers = stateless_call(2, name, {})
        reply = server.post("/mcp", json.dumps(body).encode(), headers=headers)
        assert len(reply.body) < 2_000, (reply.status, len(reply.body), reply.body[:300])
        assert b"no tool named" in reply.body
