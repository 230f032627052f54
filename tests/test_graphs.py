"""Flows (agent graphs) through the real flw binary: `flw run`, `flw graph`
and flows served as MCP tools, with real Python and TypeScript workers; the
PocketFlow patterns are compared with the pocketflow package itself."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT, McpPipe, alive, run_flw, start_flw, wait_until

GRAPHS = FIXTURES / "graphs"
FLOWS = GRAPHS / "flows.py"
PATTERNS = GRAPHS / "patterns.py"
TS_BATCH_FLOWS = GRAPHS / "batch_flows.mjs"


def events_of(stderr: str) -> list[dict]:
    """The JSON events among stderr's lines (log lines are skipped)."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith('{"event":')]


def run_flow(target: Path, flow: str, store: dict | None = None, *extra: str, timeout: float = 120):
    """`flw run` with JSON events; returns (exit code, final store, events, stderr)."""
    p = run_flw(
        "run", str(target), flow, "--json", json.dumps(store or {}), "--events", "jsonl", *extra, timeout=timeout
    )
    out = json.loads(p.stdout) if p.stdout.strip() else None
    return p.returncode, out, events_of(p.stderr), p.stderr


def visited(events: list[dict]) -> list[str]:
    """Worker node visits in order: the last segment of each node path."""
    return [
        e["path"].rsplit("/", 1)[1] for e in events if e["event"] == "node_started" and e["kind"] in ("node", "batch")
    ]


def finished(events: list[dict]) -> dict:
    [end] = [e for e in events if e["event"] == "run_finished"]
    return end


def test_agent_loop_runs_to_its_answer():
    code, store, events, stderr = run_flow(FLOWS, "agent", {"query": "q"})
    assert code == 0, stderr
    assert store == {"query": "q", "notes": ["note 0", "note 1"], "answer": "note 0 / note 1"}
    assert visited(events) == ["decide", "search", "decide", "search", "decide", "answer"]
    end = finished(events)
    assert (end["status"], end["steps"], end["shared"]) == ("succeeded", 6, store)
    actions = [e["action"] for e in events if e["event"] == "node_finished"]
    assert actions == ["search", "default", "search", "default", "answer", "default"]


def test_map_reduce_over_a_batch_of_100_items():
    code, store, events, stderr = run_flow(PATTERNS, "mapreduce", {"n": 100}, "--instances", "2")
    assert code == 0, stderr
    assert store["sum"] == sum(i * i for i in range(100))
    assert store["count"] == 100 and store["squares"] == [0, 1, 4, 9, 16]
    assert store["report"] == f"100 items, sum {store['sum']}"
    items = [e for e in events if e["event"] == "item_finished"]
    assert len(items) == 100 and items[-1]["done"] == 100
    assert sorted(int(e["path"].rsplit("[", 1)[1][:-1]) for e in items) == list(range(100))


def test_batch_items_are_spread_across_the_pools_processes():
    code, store, _, stderr = run_flow(FLOWS, "spread", {"n": 12}, "--max-workers", "3")
    assert code == 0, stderr
    assert store["items"] == list(range(12))  # results in item order
    assert len(store["pids"]) >= 2, store


def test_nested_flows_hand_their_last_action_to_the_parent():
    code, store, events, stderr = run_flow(PATTERNS, "nested")
    assert code == 0, stderr
    assert store["text"] == "INTRO BODY END."
    assert visited(events) == ["outline", "write_section", "write_section", "write_section", "polish"]
    paths = [e["path"] for e in events if e["event"] == "node_started"]
    assert "nested/writing/write_section" in paths and "nested/writing" in paths


def test_retries_with_backoff_then_the_fallback(tmp_path):
    code, store, events, stderr = run_flow(FLOWS, "retry_then_fallback", {"dir": str(tmp_path)})
    assert code == 0, stderr
    assert (tmp_path / "attempts").read_text() == "3"  # 1 + retries=2
    retries = [e for e in events if e["event"] == "node_retry"]
    assert [r["attempt"] for r in retries] == [1, 2]
    assert [r["wait_ms"] for r in retries] == [10, 20]  # backoff doubles
    assert "attempt 1 failed" in retries[0]["error"]["message"]
    assert store["gave_up"].startswith("tool_error: ") and "attempt 3 failed" in store["gave_up"]
    assert store["after_fallback"] is True
    assert "changed_by_a_failed_attempt" not in store
    assert [e["event"] for e in events].count("node_fallback") == 1


def test_a_node_timeout_stops_the_node_and_fails_the_run(tmp_path):
    began = time.monotonic()
    code, store, events, stderr = run_flow(FLOWS, "too_slow", {"dir": str(tmp_path)})
    assert time.monotonic() - began < 30
    assert code == 1, stderr
    end = finished(events)
    assert end["status"] == "failed" and end["error"]["kind"] == "timeout"
    assert "too_slow/slow" in end["error"]["message"]
    assert store == {"dir": str(tmp_path), "before": True}
    pid = int((tmp_path / "slow.pid").read_text())
    assert not alive(pid), "the timed-out node's worker still runs"
    assert "error: timeout" in stderr


def test_max_steps_stops_an_endless_loop():
    code, store, events, stderr = run_flow(FLOWS, "forever")
    assert code == 1, stderr
    end = finished(events)
    assert end["status"] == "failed" and end["error"]["kind"] == "max_steps"
    assert end["steps"] == 50 and store["spins"] == 50
    code, store, events, _ = run_flow(FLOWS, "forever", {}, "--max-steps", "7")
    assert finished(events)["steps"] == 7 and store["spins"] == 7


def test_parallel_branches_merge_in_listed_order():
    code, store, events, stderr = run_flow(FLOWS, "fan_out", {"drop_me": 1, "winner": "none"})
    assert code == 0, stderr
    assert store == {"winner": "right", "left": 1, "right": 2, "joined": [1, 2]}
    [conflict] = [e for e in events if e["event"] == "merge_conflict"]
    assert conflict["keys"] == ["winner"]


@pytest.mark.skipif(shutil.which("node") is None and not os.environ.get("FLW_NODE"), reason="needs node")
def test_a_run_hands_off_from_a_python_node_to_a_typescript_node():
    code, store, events, stderr = run_flow(GRAPHS / "handoff" / "flw.toml", "handoff", {"topic": "graphs"})
    assert code == 0, stderr
    assert store["final"] == "A NOTE ABOUT GRAPHS (PYTHON) + typescript"
    assert store["by"] == ["python", "typescript"]
    assert visited(events) == ["draft", "polish"]
    assert finished(events)["status"] == "succeeded"


def test_ctrl_c_mid_batch_kills_every_item_process(tmp_path):
    proc = start_flw(
        "run",
        str(FLOWS),
        "long_batch",
        "--json",
        json.dumps({"dir": str(tmp_path), "n": 6}),
        "--events",
        "jsonl",
        "--instances",
        "3",
        "--cancel-grace",
        "200ms",
    )
    wait_until(lambda: len(list(tmp_path.glob("item-*.pid"))) == 3, 60, "three items running")
    pids = [int(p) for f in tmp_path.glob("item-*.pid") for p in f.read_text().split()]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    end = finished(events_of(err.decode()))
    assert end["status"] == "cancelled"
    store = json.loads(out)
    assert store == {"dir": str(tmp_path), "n": 6, "started": True}  # as it stood
    wait_until(lambda: not any(alive(p) for p in pids), 10, "every item worker and its child to die")
    assert len(list(tmp_path.glob("item-*.pid"))) == 3, "items past the three in flight must not start"


def test_an_invalid_graph_is_refused_before_it_runs(tmp_path):
    shutil.copy(GRAPHS / "handoff" / "draft.py", tmp_path / "draft.py")
    (tmp_path / "bad.json").write_text(
        json.dumps(
            {
                "name": "bad",
                "start": "draft",
                "nodes": {"draft": {"node": "draft"}, "lost": {"node": "draft"}},
                "edges": [{"from": "draft", "to": "nowhere"}],
            }
        )
    )
    (tmp_path / "flw.toml").write_text('flows = ["bad.json"]\n[pools.py]\nscript = "draft.py"\ninstances = 1\n')
    p = run_flw("run", str(tmp_path / "flw.toml"), "bad", "--json", '{"topic": "x"}')
    assert p.returncode == 2
    assert 'flow "bad", edges[0]' in p.stderr and '"to" "nowhere" is not one of the flow\'s nodes' in p.stderr
    assert p.stdout == ""
    (tmp_path / "bad.json").write_text(
        json.dumps(
            {
                "name": "bad",
                "start": "draft",
                "nodes": {"draft": {"node": "draft"}, "x": {"node": "missing"}},
                "edges": [{"from": "draft", "to": "x"}],
            }
        )
    )
    p = run_flw("run", str(tmp_path / "flw.toml"), "bad")
    assert p.returncode == 2 and 'no pool implements a node named "missing"' in p.stderr
    (tmp_path / "bad.json").write_text('{"name": "bad", "start": "draft", "nodes": {}}')
    p = run_flw("run", str(tmp_path / "flw.toml"), "bad")
    assert p.returncode == 2 and "bad.json" in p.stderr and '"nodes" is empty' in p.stderr
    p = run_flw("run", str(FLOWS), "no_such_flow")
    assert p.returncode == 2 and 'no flow named "no_such_flow"' in p.stderr and "agent" in p.stderr


def test_flw_graph_prints_a_mermaid_flowchart():
    p = run_flw("graph", str(PATTERNS), "nested")
    assert p.returncode == 0, p.stderr
    text = p.stdout
    assert text.startswith("flowchart TD\n")
    assert "start_(( )) --> nested__outline" in text
    assert 'subgraph nested__writing["writing (flow writing)"]' in text
    assert 'nested__writing__write_section -- "more" --> nested__writing__write_section' in text
    assert "nested__writing --> nested__polish" in text


def test_plain_lines_when_stderr_is_not_a_terminal():
    p = run_flw("run", str(FLOWS), "agent")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["answer"] == "note 0 / note 1"
    assert "start    agent/decide" in p.stderr
    assert "done     agent/decide -> search" in p.stderr
    assert "flow agent succeeded after 6 steps" in p.stderr


def test_flows_are_mcp_tools_with_node_events_as_progress():
    mcp = McpPipe(str(FLOWS), "--no-watch")
    try:
        mcp.list_tools(1)
        tools = {t["name"]: t for t in mcp.reply(1, 60)["result"]["tools"]}
        assert {"agent", "retry_then_fallback", "fan_out"} <= set(tools)
        assert tools["agent"]["inputSchema"]["type"] == "object"
        result, progress = mcp.call_with_progress(2, "agent", {"query": "q"})
        assert result.get("isError") is not True, result
        assert result["structuredContent"]["answer"] == "note 0 / note 1"
        messages = [p["message"] for p in progress]
        assert "agent/decide done" in " ".join(messages) and any("-> answer" in m for m in messages)
        values = [p["progress"] for p in progress]
        assert values == sorted(values) and len(set(values)) == len(values)
    finally:
        mcp.close()


def test_mcp_cancel_of_a_flow_kills_its_calls(tmp_path):
    mcp = McpPipe(str(FLOWS), "--no-watch")
    try:
        mcp.call(1, "long_batch", {"dir": str(tmp_path), "n": 2})
        wait_until(lambda: len(list(tmp_path.glob("item-*.pid"))) >= 1, 60, "an item running")
        time.sleep(0.3)
        pids = [int(p) for f in tmp_path.glob("item-*.pid") for p in f.read_text().split()]
        mcp.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}})
        wait_until(lambda: not any(alive(p) for p in pids), 20, "the cancelled run's processes to die")
    finally:
        mcp.close()


@pytest.mark.parametrize(
    ("flow", "store"),
    [
        ("agent", {"query": "graphs"}),
        ("mapreduce", {"n": 100}),
        ("nested", {}),
        ("retrying", {"fail_times": 2}),
        ("retrying", {"fail_times": 5}),
        ("batch_flow", {"inputs": {"b": 2, "a": 1, "c": 3}}),
    ],
)
def test_same_nodes_and_store_as_pocketflow(flow, store):
    expected = run_pocketflow(flow, store)
    code, got, events, stderr = run_flow(PATTERNS, flow, store, "--instances", "2")
    assert code == 0, stderr
    assert visited(events) == expected["sequence"]
    assert got == expected["shared"]


def run_pocketflow(flow: str, store: dict) -> dict:
    """The sequence of nodes and the final store when the pocketflow package runs patterns.py's `flow`."""
    pocket = subprocess.run(
        [sys.executable, str(GRAPHS / "run_pocketflow.py"), flow, json.dumps(store)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(pocket.stdout)


def run_in_node(script: Path, flow: str, store: dict) -> dict:
    """The final store when `flow` of a TypeScript-SDK script runs in-process (`flow.run`) in node."""
    code = (
        'import { register } from "node:module";'
        "register(process.argv[1]);"
        "const flows = await import(process.argv[2]);"
        "const shared = JSON.parse(process.argv[4]);"
        "await flows[process.argv[3]].run(shared);"
        "process.stdout.write(JSON.stringify(shared));"
    )
    resolve = (ROOT / "workers-ts" / "dist" / "resolve.js").as_uri()
    p = subprocess.run(
        ["node", "--input-type=module", "-e", code, resolve, script.as_uri(), flow, json.dumps(store)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_a_typescript_batch_flow_runs_under_flw_as_pocketflow_and_in_process():
    store = {"inputs": {"b": 2, "a": 1, "c": 3}}
    expected = run_pocketflow("batch_flow", store)
    code, got, events, stderr = run_flow(TS_BATCH_FLOWS, "batch_flow", store, "--instances", "2")
    assert code == 0, stderr
    assert visited(events) == expected["sequence"]
    assert got == expected["shared"]
    started = [(e["path"], e["kind"]) for e in events if e["event"] == "node_started"]
    assert ("batch_flow/per_key", "batch_flow") in started
    assert ("batch_flow/per_key[2]/tally", "node") in started
    runs = [e["path"] for e in events if e["event"] == "item_finished"]
    assert runs == [f"batch_flow/per_key[{i}]" for i in range(3)]
    assert run_in_node(TS_BATCH_FLOWS, "batch_flow", store) == got


def test_the_runs_of_a_typescript_parallel_batch_flow_overlap_on_one_store():
    store = {"ids": [1, 2, 3]}
    code, got, events, stderr = run_flow(TS_BATCH_FLOWS, "overlapping", store)
    assert code == 0, stderr
    # Each run added its member to the one object, none lost.
    assert got == {"ids": [1, 2, 3], "squares": {"1": 1, "2": 4, "3": 9}, "count": 3}
    # Run 0 waits 400 ms; with two runs at once, runs 1 and 2 finish before it.
    done = [e["path"] for e in events if e["event"] == "item_finished"]
    assert sorted(done) == ["overlapping[0]", "overlapping[1]", "overlapping[2]"]
    assert done[-1] == "overlapping[0]", done
    assert run_in_node(TS_BATCH_FLOWS, "overlapping", store) == got
