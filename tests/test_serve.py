"""`flw serve` through the real binary and real Python workers: the JSON API
(calls, runs, flows, server-sent events), who may talk to it (token, Origin,
Host, body and client limits), cancellation by DELETE and by a client that
leaves, the drain on SIGTERM, 1,000 concurrent calls, /metrics and /readyz.
MCP over HTTP is in test_serve_mcp.py."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from conftest import alive, group_members, read_pids, run_flw, wait_until
from serving import (
    SERVE_TOOLS,
    Reply,
    Server,
    Sse,
    env_without_token,
    metric_lines,
    post_json_async,
    read_sse,
    serve,
    wait_dead,
    write_serve_config,
)

TOKEN = "t0ken-for-the-e2e-tests-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the tests that leave it as they found it: three
    isolated workers of the serve fixture."""
    tmp = tmp_path_factory.mktemp("serve")
    cfg = write_serve_config(tmp, '[pools.tools]\nscript = "tools.py"\ninstances = 3\n')
    with serve("--config", cfg) as s:
        s.wait_ready()
        yield s


def run_until_ended(s: Server, run_id: str, timeout: float = 30) -> dict:
    """Polls GET /v1/runs/ID until the run is no longer running."""
    seen: dict = {}

    def ended() -> bool:
        r = s.get(f"/v1/runs/{run_id}")
        assert r.status == 200, r.body
        seen.update(r.json())
        return seen["status"] != "running"

    wait_until(ended, timeout, f"run {run_id} to end")
    return seen


# --- listing and calling --------------------------------------------------


def test_probes_openapi_and_the_lists_of_tools_and_flows(server):
    assert server.get("/healthz").json() == {"status": "ok"}
    ready = server.get("/readyz")
    assert ready.status == 200
    assert ready.json() == {"status": "ready", "pools": {"tools": "ready"}}
    spec = server.get("/openapi.json")
    assert spec.status == 200
    assert "/v1/tools/{name}/call" in spec.json()["paths"]

    r = server.get("/v1/tools")
    assert r.status == 200
    tools = {t["name"]: t for t in r.json()["tools"]}
    assert set(tools) == {"echo", "aecho", "steps", "spawn_sleep", "fail"}
    assert tools["echo"]["description"] == "Return the text unchanged."
    assert tools["echo"]["input_schema"]["properties"] == {"text": {"type": "string"}}
    assert tools["echo"]["input_schema"]["required"] == ["text"]
    assert tools["echo"]["pool"] == "tools"

    r = server.get("/v1/flows")
    assert r.status == 200
    flows = {f["name"]: f for f in r.json()["flows"]}
    assert set(flows) == {"agent", "ticker"}
    assert flows["agent"]["pool"] == "tools"
    assert flows["agent"]["input_schema"]["type"] == "object"


def test_a_sync_call_answers_with_the_result(server):
    r = server.post("/v1/tools/echo/call", {"text": "hi"})
    assert r.status == 200, r.body
    body = r.json()
    assert body["status"] == "succeeded"
    assert body["result"] == "hi"
    assert body["id"].startswith("r_")
    # A synchronous call's caller has the result: the run is not kept.
    assert server.get(f"/v1/runs/{body['id']}").status == 404


def test_failed_calls_answer_with_the_status_of_their_kind(server):
    for query in ("", "?async=true"):
        # No run is made for a tool that does not exist, not even with 202.
        r = server.post(f"/v1/tools/nope/call{query}", {})
        assert r.status == 404
        assert "id" not in r.json()
        assert r.json()["error"]["kind"] == "unknown_tool"
        assert 'no tool named "nope"; the tools are: echo' in r.json()["error"]["message"]

    r = server.post("/v1/tools/agent/call", {})
    assert r.status == 404
    assert r.json()["error"]["kind"] == "unknown_tool"
    assert "/v1/flows/agent/runs" in r.json()["error"]["message"]

    r = server.post("/v1/tools/echo/call", b"{not json")
    assert r.status == 400
    assert r.json()["error"]["kind"] == "invalid_request"
    r = server.post("/v1/tools/echo/call", [1, 2])
    assert r.status == 400
    assert "must be a JSON object" in r.json()["error"]["message"]

    r = server.post("/v1/tools/echo/call", {"text": 5})
    assert r.status == 400
    assert r.json()["error"]["kind"] == "invalid_arguments"
    assert '/text: 5 is not of type "string"' in r.json()["error"]["message"]

    r = server.post("/v1/tools/fail/call", {"message": "bad url"})
    assert r.status == 500
    body = r.json()
    assert body["status"] == "failed"
    assert body["error"]["kind"] == "tool_error"
    assert body["error"]["message"] == "ValueError: bad url"
    assert "Traceback (most recent call last)" in body["error"]["traceback"]
    assert "raise ValueError(message)" in body["error"]["traceback"]

    r = server.post("/v1/tools/aecho/call?timeout=300ms", {"text": "late", "delay": 30})
    assert r.status == 504
    assert r.json()["error"]["kind"] == "timeout"

    r = server.post("/v1/tools/echo/call?timeout=soon", {"text": "x"})
    assert r.status == 400
    assert r.json()["error"]["kind"] == "invalid_request"

    r = server.post("/v1/flows/nope/runs", {})
    assert r.status == 404
    assert r.json()["error"]["kind"] == "unknown_flow"
    assert server.get("/v1/runs/r_nope").status == 404
    assert server.request("DELETE", "/v1/runs/r_nope").status == 404
    assert server.get("/v1/runs/r_nope/events").status == 404


def test_an_async_call_answers_202_and_its_run_can_be_polled_and_streamed(server):
    r = server.post("/v1/tools/steps/call?async=true", {"count": 3, "delay": 0.05})
    assert r.status == 202, r.body
    run = r.json()
    assert run["status"] == "running"
    assert run["kind"] == "tool"
    assert run["name"] == "steps"
    assert run["client"] == "127.0.0.1"
    assert r.headers["location"] == f"/v1/runs/{run['id']}"

    ended = run_until_ended(server, run["id"])
    assert ended["status"] == "succeeded"
    assert ended["result"] == "3 steps"
    assert ended["elapsed_ms"] >= 100

    events = server.events(run["id"])
    assert [e.event for e in events] == ["progress", "progress", "progress", "result"]
    assert [e.id for e in events] == ["1", "2", "3", "4"]
    assert [e.json()["progress"] for e in events[:3]] == [1, 2, 3]
    assert events[0].json() == {"progress": 1, "total": 3, "message": "step 1"}
    assert events[-1].json()["status"] == "succeeded"
    assert events[-1].json()["result"] == "3 steps"

    # `Prefer: respond-async` asks for the same.
    r = server.post("/v1/tools/echo/call", {"text": "later"}, headers={"Prefer": "respond-async"})
    assert r.status == 202
    assert run_until_ended(server, r.json()["id"])["result"] == "later"

    listed = {x["id"]: x for x in server.get("/v1/runs?status=succeeded").json()["runs"]}
    assert run["id"] in listed and r.json()["id"] in listed
    running = [x["id"] for x in server.get("/v1/runs?status=running").json()["runs"]]
    assert run["id"] not in running


def test_a_flow_run_streams_node_events_then_the_result(server):
    r = server.post("/v1/flows/ticker/runs", {"ticks": 3, "tick_delay": 0.1})
    assert r.status == 202, r.body
    run = r.json()
    assert run["kind"] == "flow" and run["name"] == "ticker" and run["status"] == "running"
    events = server.events(run["id"])  # opened while the run goes on
    names = [e.event for e in events]
    assert names == [
        "run_started",
        *["node_started", "node_finished"] * 4,
        "run_finished",
        "result",
    ], names
    assert [int(e.id) for e in events] == list(range(1, len(events) + 1))
    started = [e.json()["path"] for e in events if e.event == "node_started"]
    assert started == ["ticker/tick", "ticker/tick", "ticker/tick", "ticker/finish"]
    result = events[-1].json()
    assert result["id"] == run["id"]
    assert result["status"] == "succeeded"
    assert result["store"] == {"ticks": 3, "tick_delay": 0.1, "ticked": 3, "finished": True}

    # ?wait=true answers with the ended run.
    r = server.post("/v1/flows/agent/runs?wait=true", {"question": "why"})
    assert r.status == 200, r.body
    assert r.json()["status"] == "succeeded"
    assert r.json()["store"] == {"question": "why", "notes": ["note 0", "note 1"], "answer": "note 0 / note 1"}


def test_an_event_stream_resumes_after_last_event_id(server):
    r = server.post("/v1/flows/agent/runs?wait=true", {})
    assert r.status == 200
    run_id = r.json()["id"]
    full = server.events(run_id)
    assert len(full) == 15 and full[-1].event == "result"

    resumed = server.events(run_id, headers={"Last-Event-ID": "5"})
    assert [(e.id, e.event, e.data) for e in resumed] == [(e.id, e.event, e.data) for e in full[5:]]
    assert server.events(run_id, query="?after=12") == full[12:]
    # The header wins over ?after.
    assert server.events(run_id, headers={"Last-Event-ID": "13"}, query="?after=2") == full[13:]


def test_an_event_stream_resumed_after_the_result_ends_at_once(server):
    # A client that lost its connection just after the `result` event and
    # resumes has everything: the stream must end, not wait forever.
    r = server.post("/v1/flows/agent/runs?wait=true", {})
    assert r.status == 200
    run_id = r.json()["id"]
    assert server.events(run_id, headers={"Last-Event-ID": "15"}, timeout=5) == []
    assert server.events(run_id, query="?after=15", timeout=5) == []


def test_a_gap_event_says_how_many_events_fell_out_of_the_buffer(tmp_path):
    cfg = write_serve_config(tmp_path, '[pools.tools]\nscript = "tools.py"\ninstances = 1\n[serve]\nrun_events = 4\n')
    with serve("--config", cfg) as s:
        r = s.post("/v1/flows/agent/runs?wait=true", {})
        assert r.status == 200, r.body
        run_id = r.json()["id"]
        # 15 events: the buffer kept the last 4 (12..15).
        events = s.events(run_id)
        assert events[0] == Sse(event="gap", data='{"missed":11}', id=None)
        assert [e.id for e in events[1:]] == ["12", "13", "14", "15"]
        assert events[-1].event == "result"
        assert events[-1].json()["store"]["answer"] == "note 0 / note 1"

        events = s.events(run_id, headers={"Last-Event-ID": "3"})
        assert events[0].event == "gap" and events[0].json() == {"missed": 8}
        assert [e.id for e in events[1:]] == ["12", "13", "14", "15"]

        events = s.events(run_id, headers={"Last-Event-ID": "11"})
        assert [e.event for e in events][0] != "gap"
        assert [e.id for e in events] == ["12", "13", "14", "15"]


# --- cancellation -----------------------------------------------------------


def test_delete_cancels_a_run_through_the_kill_path(server, tmp_path):
    pidfile = tmp_path / "pids"
    r = server.post("/v1/tools/spawn_sleep/call?async=true", {"pidfile": str(pidfile)})
    assert r.status == 202
    run_id = r.json()["id"]
    worker, child = read_pids(pidfile)
    assert alive(child)
    running = [x["id"] for x in server.get("/v1/runs?status=running").json()["runs"]]
    assert run_id in running

    r = server.request("DELETE", f"/v1/runs/{run_id}")
    assert r.status == 200, r.body
    assert r.json()["status"] == "cancelled"
    assert r.json()["error"]["kind"] == "cancelled"
    wait_dead([worker, child], 5, "the worker and its sleep to die")

    events = server.events(run_id)
    assert events[-1].event == "result"
    assert events[-1].json()["status"] == "cancelled"
    # DELETE of an ended run answers how it ended.
    assert server.request("DELETE", f"/v1/runs/{run_id}").json()["status"] == "cancelled"
    assert server.post("/v1/tools/echo/call", {"text": "after"}).json()["result"] == "after"


def test_a_client_that_closes_its_connection_cancels_its_sync_call(server, tmp_path):
    pidfile = tmp_path / "pids"
    conn = server.connection()
    conn.request("POST", "/v1/tools/spawn_sleep/call", body=json.dumps({"pidfile": str(pidfile)}))
    worker, child = read_pids(pidfile)
    running = [x for x in server.get("/v1/runs?status=running").json()["runs"] if x["name"] == "spawn_sleep"]
    assert [x["kind"] for x in running] == ["tool"]
    conn.close()
    wait_dead([worker, child], 10, "the call's worker and its sleep to die")
    wait_until(lambda: server.get(f"/v1/runs/{running[0]['id']}").status == 404, 10, "the run to end")
    assert server.post("/v1/tools/echo/call", {"text": "after"}).json()["result"] == "after"


def test_delete_of_a_sync_call_answers_its_caller_with_409(server, tmp_path):
    pidfile = tmp_path / "pids"
    replies: list[Reply] = []
    caller = threading.Thread(
        target=lambda: replies.append(server.post("/v1/tools/spawn_sleep/call", {"pidfile": str(pidfile)}))
    )
    caller.start()
    worker, child = read_pids(pidfile)
    (run,) = [x for x in server.get("/v1/runs?status=running").json()["runs"] if x["name"] == "spawn_sleep"]
    r = server.request("DELETE", f"/v1/runs/{run['id']}")
    assert r.status == 200
    assert r.json()["status"] == "cancelled"
    caller.join(30)
    (reply,) = replies
    assert reply.status == 409
    assert reply.json() == {"id": run["id"], "status": "cancelled", "error": r.json()["error"]}
    wait_dead([worker, child], 5, "the worker and its sleep to die")


def start_async_on_own_connection(s: Server, path: str, body: dict):
    """Starts an async run on a connection the caller closes later."""
    conn = s.connection()
    conn.request("POST", path, body=json.dumps(body))
    resp = conn.getresponse()
    assert resp.status == 202
    run = json.loads(resp.read())
    return conn, run["id"]


def test_an_async_run_with_on_disconnect_cancel_ends_with_its_connection(server, tmp_path):
    pidfile = tmp_path / "pids"
    conn, run_id = start_async_on_own_connection(
        server, "/v1/tools/spawn_sleep/call?async=true&on_disconnect=cancel", {"pidfile": str(pidfile)}
    )
    worker, child = read_pids(pidfile)
    assert server.get(f"/v1/runs/{run_id}").json()["status"] == "running"
    conn.close()
    wait_dead([worker, child], 10, "the run's worker and its sleep to die")
    assert run_until_ended(server, run_id)["status"] == "cancelled"


def test_an_async_run_goes_on_after_its_connection_closes_by_default(server, tmp_path):
    pidfile = tmp_path / "pids"
    conn, run_id = start_async_on_own_connection(
        server, "/v1/tools/spawn_sleep/call?async=true", {"pidfile": str(pidfile), "seconds": 1.5}
    )
    worker, child = read_pids(pidfile)
    conn.close()
    time.sleep(0.5)
    assert alive(worker) and alive(child)
    assert server.get(f"/v1/runs/{run_id}").json()["status"] == "running"
    ended = run_until_ended(server, run_id)
    assert ended["status"] == "succeeded"
    assert ended["result"] == "slept 1.5"


def test_the_on_disconnect_setting_of_the_serve_table_applies_to_async_runs(tmp_path):
    cfg = write_serve_config(
        tmp_path, '[pools.tools]\nscript = "tools.py"\ninstances = 1\n[serve]\non_disconnect = "cancel"\n'
    )
    pidfile = tmp_path / "pids"
    with serve("--config", cfg) as s:
        conn, run_id = start_async_on_own_connection(s, "/v1/flows/ticker/runs", {"ticks": 1000})
        time.sleep(0.3)
        assert s.get(f"/v1/runs/{run_id}").json()["status"] == "running"
        conn.close()
        ended = run_until_ended(s, run_id)
        assert ended["status"] == "cancelled"
        assert ended["store"].get("ticked", 0) < 1000
        # ?on_disconnect=continue overrides the table.
        conn, run_id = start_async_on_own_connection(
            s, "/v1/tools/spawn_sleep/call?async=true&on_disconnect=continue", {"pidfile": str(pidfile), "seconds": 1}
        )
        read_pids(pidfile)
        conn.close()
        assert run_until_ended(s, run_id)["status"] == "succeeded"


# --- who may talk to it -----------------------------------------------------


def test_a_token_is_required_except_on_the_probes():
    with serve(SERVE_TOOLS, env=env_without_token(FLW_TOKEN=TOKEN)) as s:
        assert s.get("/healthz").status == 200
        wait_until(lambda: s.get("/readyz").status == 200, 30, "/readyz without a token")

        for headers in ({}, {"Authorization": f"Bearer {TOKEN[:-1]}"}, {"Authorization": TOKEN}):
            for method, path in (("GET", "/v1/tools"), ("GET", "/metrics"), ("POST", "/mcp")):
                r = s.request(method, path, body={} if method == "POST" else None, headers=headers)
                assert r.status == 401, (headers, path, r.body)
                assert r.headers["www-authenticate"] == "Bearer"
                assert r.json()["error"]["kind"] == "unauthorized"
        r = s.post("/v1/tools/echo/call", {"text": "no token"})
        assert r.status == 401

        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert s.get("/v1/tools", headers=auth).status == 200
        r = s.post("/v1/tools/echo/call", {"text": "with token"}, headers=auth)
        assert r.status == 200
        assert r.json()["result"] == "with token"


def test_listening_beyond_loopback_needs_a_token(tmp_path):
    r = run_flw("serve", str(SERVE_TOOLS), "--listen", "0.0.0.0:0", env=env_without_token())
    assert r.returncode == 2, r.stderr
    assert "refusing to listen on 0.0.0.0:0 without a bearer token" in r.stderr
    assert "--token-file" in r.stderr

    short = tmp_path / "short"
    short.write_text("abc\n")
    r = run_flw("serve", str(SERVE_TOOLS), "--listen", "0.0.0.0:0", "--token-file", str(short), env=env_without_token())
    assert r.returncode == 2
    assert "at least 16" in r.stderr

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    with serve(SERVE_TOOLS, "--listen", "0.0.0.0:0", "--token-file", token_file, env=env_without_token()) as s:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert s.get("/v1/tools").status == 401
        # Not on loopback and no allowed_hosts: any Host name is let in.
        r = s.post("/v1/tools/echo/call", {"text": "far"}, headers={**auth, "Host": "box.example:8077"})
        assert r.status == 200, r.body
        assert r.json()["result"] == "far"


def mcp_initialize() -> dict:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }


MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


def test_foreign_origins_and_hosts_are_refused():
    with serve(SERVE_TOOLS, "--allow-origin", "https://app.example.com") as s:
        evil = {"Origin": "https://evil.example"}
        r = s.get("/v1/tools", headers=evil)
        assert r.status == 403
        assert r.json()["error"]["kind"] == "forbidden_origin"
        assert s.post("/v1/tools/echo/call", {"text": "x"}, headers=evil).status == 403
        r = s.post("/mcp", mcp_initialize(), headers={**MCP_HEADERS, **evil})
        assert r.status == 403, r.body

        for origin in ("http://localhost:5173", "http://127.0.0.1:3000", "https://app.example.com"):
            assert s.get("/v1/tools", headers={"Origin": origin}).status == 200, origin
            r = s.post("/mcp", mcp_initialize(), headers={**MCP_HEADERS, "Origin": origin})
            assert r.status == 200, (origin, r.body)
        assert s.get("/v1/tools", headers={"Origin": "https://app.example.com:444"}).status == 403

        rebound = {"Host": "evil.example"}
        r = s.get("/v1/tools", headers=rebound)
        assert r.status == 403
        assert r.json()["error"]["kind"] == "forbidden_host"
        r = s.post("/mcp", mcp_initialize(), headers={**MCP_HEADERS, **rebound})
        assert r.status == 403, r.body
        assert s.get("/v1/tools", headers={"Host": f"localhost:{s.port}"}).status == 200


SMALL_BODIES = '[pools.tools]\nscript = "tools.py"\ninstances = 1\n[serve]\nmax_body_bytes = 1024\n'


def test_a_body_over_max_body_bytes_is_refused_with_413(tmp_path):
    cfg = write_serve_config(tmp_path, SMALL_BODIES)
    with serve("--config", cfg) as s:
        assert s.post("/v1/tools/echo/call", {"text": "x" * 900}).json()["result"] == "x" * 900
        assert s.post("/v1/tools/echo/call", {"text": "x" * 2000}).status == 413
        assert s.post("/v1/flows/agent/runs", {"pad": "x" * 2000}).status == 413
        big_init = mcp_initialize()
        big_init["params"]["clientInfo"]["name"] = "x" * 2000
        assert s.post("/mcp", big_init, headers=MCP_HEADERS).status == 413
        assert s.post("/mcp", mcp_initialize(), headers=MCP_HEADERS).status == 200


@pytest.mark.parametrize("path", ["/v1/tools/echo/call", "/mcp"])
def test_a_chunked_body_over_max_body_bytes_is_refused_with_413(tmp_path, path):
    # No Content-Length: the limit is found while the body is read.
    cfg = write_serve_config(tmp_path, SMALL_BODIES)
    with serve("--config", cfg) as s:
        # One write of the whole request, then the answer: the server answers
        # before it has read the body to its end, and closes the connection.
        chunks = [b'{"text": "', *[b"x" * 500] * 4, b'"}']
        body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{s.port}\r\nContent-Type: application/json\r\n"
            "Accept: application/json, text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", s.port), timeout=30) as sock:
            sock.sendall(head.encode() + body)
            status_line = sock.makefile("rb").readline()
        assert status_line.startswith(b"HTTP/1.1 413"), status_line


def test_the_client_limit_refuses_requests_over_it_with_429(tmp_path):
    cfg = write_serve_config(tmp_path, '[pools.tools]\nscript = "tools.py"\ninstances = 2\n')
    with serve("--config", cfg, "--client-limit", "2") as s:
        ids = []
        for i in range(2):
            r = s.post("/v1/tools/aecho/call?async=true", {"text": str(i), "delay": 60})
            assert r.status == 202
            ids.append(r.json()["id"])
        r = s.post("/v1/tools/echo/call", {"text": "one too many"})
        assert r.status == 429, r.body
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"]["kind"] == "overloaded"
        assert s.post("/mcp", mcp_initialize(), headers=MCP_HEADERS).status == 429
        # GETs are not limited.
        assert s.get(f"/v1/runs/{ids[0]}").status == 200
        assert s.request("DELETE", f"/v1/runs/{ids[0]}").json()["status"] == "cancelled"
        assert s.post("/v1/tools/echo/call", {"text": "room again"}).json()["result"] == "room again"
        assert s.request("DELETE", f"/v1/runs/{ids[1]}").json()["status"] == "cancelled"


# --- shutdown -----------------------------------------------------------


def test_sigterm_drains_calls_in_flight_then_cancels_the_rest(tmp_path):
    cfg = write_serve_config(tmp_path, '[pools.tools]\nscript = "tools.py"\ninstances = 4\n[serve]\ndrain = "3s"\n')
    s = serve("--config", cfg)
    with s:
        s.wait_ready()
        replies: dict[str, Reply | Exception] = {}

        def call(key: str, seconds: float) -> None:
            try:
                replies[key] = s.post(
                    "/v1/tools/spawn_sleep/call", {"pidfile": str(tmp_path / key), "seconds": seconds}, timeout=60
                )
            except Exception as e:  # noqa: BLE001 - reported by the assertions below
                replies[key] = e

        threads = [threading.Thread(target=call, args=("long", 300))]
        threads[0].start()
        r = s.post("/v1/tools/spawn_sleep/call?async=true", {"pidfile": str(tmp_path / "detached")})
        assert r.status == 202
        detached = r.json()["id"]
        stream: dict[str, list[Sse]] = {}

        def watch() -> None:
            conn = s.connection()
            conn.request("GET", f"/v1/runs/{detached}/events")
            stream["events"] = read_sse(conn.getresponse())

        watcher = threading.Thread(target=watch)
        watcher.start()
        pids = {k: read_pids(tmp_path / k) for k in ("long", "detached")}
        for key in ("short1", "short2"):
            threads.append(threading.Thread(target=call, args=(key, 1.5)))
            threads[-1].start()
        pids.update({k: read_pids(tmp_path / k) for k in ("short1", "short2")})
        workers = s.workers()
        assert len(workers) == 4
        assert {p[0] for p in pids.values()} == set(workers)

        t0 = time.monotonic()
        code = s.stop(signal.SIGTERM, timeout=30)
        took = time.monotonic() - t0
        for t in (*threads, watcher):
            t.join(10)
        assert code == 0, s.stderr
        assert "SIGTERM: draining" in s.stderr

    for key in ("short1", "short2"):
        r = replies[key]
        assert isinstance(r, Reply), r
        assert r.status == 200, r.body
        assert r.json()["result"] == "slept 1.5"
    long = replies["long"]
    assert isinstance(long, Reply), long
    assert long.status in (409, 503), long.body
    assert long.json()["error"]["kind"] in ("cancelled", "shutting_down")
    assert stream["events"][-1].event == "result"
    assert stream["events"][-1].json()["status"] == "cancelled"
    # It waited for the drain time (the long calls never end by themselves).
    assert took >= 2.5
    left = [p for ps in pids.values() for p in ps if alive(p)]
    assert left == [], f"alive after flw serve exited: {left}"
    assert [g for w in workers for g in group_members(w)] == []
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", s.port), timeout=2).close()


# --- load, metrics, readiness ---------------------------------------------


def test_a_thousand_concurrent_calls_each_get_their_own_result(tmp_path):
    cfg = write_serve_config(
        tmp_path, '[pools.tools]\nscript = "tools.py"\nmode = "shared"\ninstances = 2\nmax_concurrency = 1000\n'
    )
    n = 1000
    with serve("--config", cfg, "--client-limit", "2000") as s:
        s.wait_ready()

        async def all_calls():
            return await asyncio.gather(
                *(
                    post_json_async(s.port, "/v1/tools/aecho/call", {"text": f"call-{i}", "delay": 0.5})
                    for i in range(n)
                )
            )

        replies = asyncio.run(all_calls())
        assert [status for status, _ in replies] == [200] * n
        assert [body["result"] for _, body in replies] == [f"call-{i}" for i in range(n)]
        assert len({body["id"] for _, body in replies}) == n
        metrics = s.get("/metrics").body.decode()
        assert f'flw_calls_total{{tool="aecho",outcome="ok"}} {n}' in metrics


def test_metrics_count_calls_by_tool_and_outcome(tmp_path):
    cfg = write_serve_config(tmp_path, '[pools.tools]\nscript = "tools.py"\ninstances = 2\n')
    with serve("--config", cfg) as s:
        s.wait_ready()
        for text in ("a", "b", "c"):
            assert s.post("/v1/tools/echo/call", {"text": text}).status == 200
        assert s.post("/v1/tools/fail/call", {"message": "no"}).status == 500
        assert s.post("/v1/tools/echo/call", {"text": 1}).status == 400
        assert s.post("/v1/tools/made_up/call", {}).status == 404
        assert s.post("/v1/flows/agent/runs?wait=true", {}).status == 200
        r = s.post("/v1/tools/spawn_sleep/call?async=true", {"pidfile": str(tmp_path / "pids")})
        read_pids(tmp_path / "pids")  # the call runs in its worker
        assert s.request("DELETE", f"/v1/runs/{r.json()['id']}").json()["status"] == "cancelled"

        r = s.get("/metrics")
        assert r.status == 200
        assert r.headers["content-type"].startswith("application/openmetrics-text")
        text = r.body.decode()
        assert text.rstrip().endswith("# EOF")
        m = metric_lines(text)
        assert m['flw_calls_total{tool="echo",outcome="ok"}'] == "3"
        assert m['flw_calls_total{tool="echo",outcome="invalid_arguments"}'] == "1"
        assert m['flw_calls_total{tool="fail",outcome="tool_error"}'] == "1"
        assert m['flw_calls_total{tool="spawn_sleep",outcome="cancelled"}'] == "1"
        assert not any("made_up" in k for k in m), "an unknown tool's name makes no series"
        assert m['flw_call_duration_seconds_count{tool="echo"}'] == "4"
        assert m['flw_call_duration_seconds_bucket{le="+Inf",tool="echo"}'] == "4"
        assert m["flw_cancels_total"] == "1"
        assert m['flw_flow_runs_total{flow="agent",status="succeeded"}'] == "1"
        assert m['flw_in_flight{pool="tools"}'] == "0"
        assert m['flw_queue_depth{pool="tools"}'] == "0"
        assert m['flw_generation{pool="tools"}'] == "1"
        assert s.get("/readyz").status == 200
        # The cancelled call's worker was killed; its slot counts a restart once the new one is up.
        wait_until(
            lambda: metric_lines(s.get("/metrics").body.decode()).get('flw_worker_restarts_total{pool="tools"}') == "1",
            10,
            "flw_worker_restarts_total to count the replaced worker",
        )


def test_readyz_is_503_while_a_pool_has_no_worker(tmp_path):
    (tmp_path / "broken.py").write_text("raise SystemExit(3)\n")
    cfg = write_serve_config(
        tmp_path,
        '[pools.tools]\nscript = "tools.py"\ninstances = 1\n'
        '[pools.broken]\nscript = "broken.py"\ninstances = 1\nmax_restarts = 0\n',
    )
    with serve("--config", cfg) as s:
        wait_until(lambda: s.get("/readyz").json()["pools"].get("tools") == "ready", 30, "the good pool to be ready")
        r = s.get("/readyz")
        assert r.status == 503
        assert r.json() == {"status": "starting", "pools": {"tools": "ready", "broken": "starting"}}
        assert s.get("/healthz").status == 200
        assert s.post("/v1/tools/echo/call", {"text": "still served"}).json()["result"] == "still served"


def test_serve_refuses_unknown_serve_table_keys(tmp_path: Path):
    cfg = write_serve_config(tmp_path, '[pools.tools]\nscript = "tools.py"\n[serve]\nport = 1\n')
    r = run_flw("serve", "--config", str(cfg), "--listen", "127.0.0.1:0")
    assert r.returncode == 2
    assert "flw.toml:4" in r.stderr
